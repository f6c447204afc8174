//! Sends that return before the exchange answers
//! ([`crate::client::Client::send_in_background`],
//! `academy_client_send_async`).
//!
//! Why: with only a blocking send, a C program that wants 32 messages in
//! flight needs 32 threads, and every answer from the exchange wakes one of
//! them; on a small machine those wake-ups cost more than the sends. Here
//! the caller hands the message over and goes on, the library's runtime
//! thread makes the requests (many answers per wake-up), and the outcome
//! comes back through a callback, as in librdkafka's produce and delivery
//! reports. A bounded number of slots keeps memory and connections bounded:
//! a caller that gets ahead of the exchange waits for a free slot.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::error::{Error, Result};
use crate::runtime;
use crate::transport::Transport;

/// What the caller is told when a background send ends.
pub type Done = Box<dyn FnOnce(Result<()>) + Send>;

/// Failures since the last [`InFlight::flush`].
#[derive(Debug, Default)]
struct Failures {
    count: usize,
    first: Option<Error>,
}

/// The sends still pending, by the order they started in: a flush waits
/// for those that started before it, not for later ones (so a callback or
/// another thread may go on sending while one thread flushes).
#[derive(Debug, Default)]
struct Pending {
    started: u64,
    unfinished: BTreeSet<u64>,
}

/// The background sends of one client.
#[derive(Debug)]
pub struct InFlight {
    slots: Arc<Semaphore>,
    max: usize,
    pending: Arc<Mutex<Pending>>,
    /// Signalled when a send ends (flushes wait on it).
    ended: Arc<Notify>,
    failures: Arc<Mutex<Failures>>,
}

/// The semaphore is never closed; this only keeps its API honest.
fn slots_closed() -> Error {
    Error::internal("the send slots were closed")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One started send: when dropped, frees its slot and counts as ended.
struct Ending {
    pending: Arc<Mutex<Pending>>,
    ended: Arc<Notify>,
    seq: u64,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Ending {
    fn drop(&mut self) {
        lock(&self.pending).unfinished.remove(&self.seq);
        self.ended.notify_waiters();
    }
}

impl InFlight {
    /// At most `max` sends at once.
    pub fn new(max: usize) -> Self {
        InFlight {
            slots: Arc::new(Semaphore::new(max)),
            max,
            pending: Arc::default(),
            ended: Arc::default(),
            failures: Arc::default(),
        }
    }

    /// Takes a slot, waiting on this thread while all are taken, checks
    /// `still_open` (the client may have closed meanwhile), then sends
    /// `message` on the library's runtime; `done` is called there with the
    /// outcome before the send counts as ended, so [`flush`](Self::flush)
    /// returns only after its callbacks have run.
    pub fn start(
        &self,
        still_open: impl Fn() -> Result<()>,
        transport: Arc<Transport>,
        message: String,
        done: Done,
    ) -> Result<()> {
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(TryAcquireError::Closed) => return Err(slots_closed()),
            Err(TryAcquireError::NoPermits) => {
                runtime::may_wait()?;
                if runtime::on_library_thread() {
                    // Waiting here would stall the thread that frees slots.
                    return Err(Error::invalid(format!(
                        "all {} send slots are taken, and a library thread (a callback) cannot wait for one",
                        self.max
                    )));
                }
                runtime::block_on(self.slots.clone().acquire_owned())?
                    .map_err(|_| slots_closed())?
            }
        };
        still_open()?;
        let handle = runtime::handle()?;
        let seq = {
            let mut pending = lock(&self.pending);
            pending.started += 1;
            let seq = pending.started;
            pending.unfinished.insert(seq);
            seq
        };
        // Ends the send when dropped: also if `done` panics (a Rust
        // caller's closure), so that no flush waits for it forever.
        let ending = Ending {
            pending: self.pending.clone(),
            ended: self.ended.clone(),
            seq,
            _slot: slot,
        };
        let failures = self.failures.clone();
        handle.spawn(async move {
            let outcome = transport.send_background(&message).await;
            if let Err(e) = &outcome {
                let mut failures = lock(&failures);
                failures.count += 1;
                failures.first.get_or_insert_with(|| e.clone());
            }
            done(outcome);
            drop(ending);
        });
        Ok(())
    }

    /// Waits until every send started before this call has ended.
    pub async fn wait_idle(&self) {
        let last = lock(&self.pending).started;
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            // Registered before the check, so no end is missed in between.
            ended.as_mut().enable();
            if lock(&self.pending)
                .unfinished
                .first()
                .is_none_or(|&seq| seq > last)
            {
                return;
            }
            ended.await;
        }
    }

    /// Waits until every send started before this call has ended (`None`:
    /// without a time limit), then reports the failures since the last
    /// flush: `Ok` if there were none, else the first one's error.
    pub async fn flush(&self, timeout: Option<Duration>) -> Result<()> {
        match timeout {
            None => self.wait_idle().await,
            Some(t) => tokio::time::timeout(t, self.wait_idle())
                .await
                .map_err(|_| {
                    let pending = lock(&self.pending).unfinished.len();
                    Error::timeout(format!(
                        "flush: {pending} sends still waited for the exchange after {t:?}"
                    ))
                })?,
        }
        let failures = std::mem::take(&mut *lock(&self.failures));
        match failures.first {
            None => Ok(()),
            Some(first) if failures.count == 1 => Err(first),
            Some(first) => Err(Error::new(
                first.status,
                format!(
                    "{} background sends failed; the first: {}",
                    failures.count, first.message
                ),
            )),
        }
    }
}
