//! The handler threads of [`crate::client::serve::serve`]: threads that
//! take jobs from a queue, with at most `limit` jobs in progress at once.
//!
//! A job in progress holds a slot ([`Permit`]) until the permit is dropped,
//! which may be after its thread took the next job (a handler that answers
//! later, from another thread): `limit` bounds the jobs in progress, not
//! only the threads that are busy.
//!
//! Handing over a job takes one lock, and wakes a thread only if one
//! sleeps and a slot is free; a freed slot wakes a thread only if a job
//! waits. A burst of jobs is thus taken by running threads without a
//! wake-up each.

use std::collections::VecDeque;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Threads taking jobs of type `J` (see the module's documentation).
pub(crate) struct Workers<J> {
    shared: Arc<Shared<J>>,
    /// One message from each thread as it ends.
    done: mpsc::Receiver<()>,
    threads: usize,
}

struct Shared<J> {
    state: Mutex<State<J>>,
    ready: Condvar,
}

struct State<J> {
    waiting: VecDeque<J>,
    /// Permits not dropped yet.
    busy: usize,
    limit: usize,
    /// Threads waiting on `ready`.
    idle: usize,
    closed: bool,
}

/// Hands jobs to [`Workers`]; cheap to clone.
pub(crate) struct Jobs<J>(Arc<Shared<J>>);

impl<J> Jobs<J> {
    /// Queues `job` for the next free thread with a free slot. Never
    /// blocks (but for the queue's lock).
    pub(crate) fn push(&self, job: J) {
        let wake = {
            let mut state = self.0.state.lock().unwrap();
            state.waiting.push_back(job);
            state.idle > 0 && state.busy < state.limit
        };
        if wake {
            self.0.ready.notify_one();
        }
    }
}

/// A slot of [`Workers`], held by a job in progress; dropping it frees the
/// slot.
pub(crate) struct Permit(Arc<dyn Slots>);

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Permit")
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Frees a slot (the job type erased, so that a permit has one type).
trait Slots: Send + Sync {
    fn release(&self);
}

impl<J: Send> Slots for Shared<J> {
    fn release(&self) {
        let wake = {
            let mut state = self.state.lock().unwrap();
            state.busy -= 1;
            state.idle > 0 && !state.waiting.is_empty()
        };
        if wake {
            self.ready.notify_one();
        }
    }
}

impl<J: Send + 'static> Workers<J> {
    /// Starts `limit` threads named `name-N`, each calling `work` with the
    /// jobs it takes and their permits.
    pub(crate) fn start<W>(name: &str, limit: usize, work: W) -> Result<Workers<J>>
    where
        W: Fn(J, Permit) + Send + Sync + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                waiting: VecDeque::new(),
                busy: 0,
                limit,
                idle: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let work = Arc::new(work);
        let (done_tx, done) = mpsc::channel();
        let mut workers = Workers {
            shared: shared.clone(),
            done,
            threads: 0,
        };
        for n in 0..limit {
            let (shared, work, done_tx) = (shared.clone(), work.clone(), done_tx.clone());
            let started = thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    while let Some(job) = take(&shared) {
                        work(job, Permit(shared.clone()));
                    }
                    let _ = done_tx.send(());
                });
            if let Err(e) = started {
                workers.close();
                return Err(Error::internal(format!(
                    "cannot start a serving thread: {e}"
                )));
            }
            workers.threads += 1;
        }
        Ok(workers)
    }

    /// Where jobs are handed to these threads.
    pub(crate) fn jobs(&self) -> Jobs<J> {
        Jobs(self.shared.clone())
    }

    /// Ends the threads once their jobs in hand are done; the jobs still
    /// waiting are dropped.
    pub(crate) fn close(&self) {
        let dropped = {
            let mut state = self.shared.state.lock().unwrap();
            state.closed = true;
            std::mem::take(&mut state.waiting)
        };
        self.shared.ready.notify_all();
        drop(dropped); // outside the lock: dropping a job may take others
    }

    /// [`close`](Self::close)s, then waits up to `grace` for the threads
    /// to end; a thread still busy then ends when its job is done.
    pub(crate) fn join(self, grace: Duration) {
        self.close();
        let deadline = Instant::now() + grace;
        for _ in 0..self.threads {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.done.recv_timeout(left).is_err() {
                return;
            }
        }
    }
}

/// The next job a thread may start, with its slot taken; `None` once
/// closed.
fn take<J>(shared: &Shared<J>) -> Option<J> {
    let mut state = shared.state.lock().unwrap();
    loop {
        if state.closed {
            return None;
        }
        if state.busy < state.limit {
            if let Some(job) = state.waiting.pop_front() {
                state.busy += 1;
                return Some(job);
            }
        }
        state.idle += 1;
        state = shared.ready.wait(state).unwrap();
        state.idle -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn at_most_limit_jobs_hold_a_permit_at_once() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let (r, m, f) = (running.clone(), most.clone(), finished.clone());
        // Each job hands its permit to another thread, which drops it later:
        // the slot stays taken after the worker moved on.
        let workers = Workers::start("test-worker", 3, move |_: u32, permit: Permit| {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let (r, f) = (r.clone(), f.clone());
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(5));
                r.fetch_sub(1, Ordering::SeqCst);
                f.fetch_add(1, Ordering::SeqCst);
                drop(permit);
            });
        })
        .unwrap();
        for job in 0..60 {
            workers.jobs().push(job);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while finished.load(Ordering::SeqCst) < 60 {
            assert!(Instant::now() < deadline, "60 jobs within 20 s");
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(most.load(Ordering::SeqCst), 3);
        workers.join(Duration::from_secs(5));
    }

    #[test]
    fn closing_drops_the_jobs_still_waiting() {
        let (tx, rx) = mpsc::channel::<u32>();
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let g = gate.clone();
        let workers = Workers::start("test-worker", 1, move |job: u32, _permit| {
            drop(g.lock().unwrap());
            tx.send(job).unwrap();
        })
        .unwrap();
        for job in 0..5 {
            workers.jobs().push(job);
        }
        // The one thread is stuck in job 0; jobs 1..5 wait.
        while workers.shared.state.lock().unwrap().waiting.len() == 5 {
            thread::sleep(Duration::from_millis(1));
        }
        workers.close();
        drop(held);
        workers.join(Duration::from_secs(5));
        assert_eq!(rx.iter().collect::<Vec<_>>(), vec![0]);
    }
}
