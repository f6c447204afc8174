//! A client's listener: the state a client shares with its background
//! tasks, and those tasks.
//!
//! - The listener keeps one `GET /mailbox/listen` stream open (falling back
//!   to long-poll `GET /message` on servers without it) and routes each
//!   message ([`Inner::deliver`]): a response that a pending request waits
//!   for goes to that call, anything else to the inbox that `recv` takes
//!   from. The stream stays open across receives that time out, so
//!   academy-py's exchange never writes a message to a stream nobody reads
//!   (it loses such a message).
//! - The heartbeat keeps the mailbox ACTIVE for Python peers.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::client::send_async::InFlight;
use crate::error::{Error, Result};
use crate::fork::ProcessBound;
use crate::transport::Transport;
use crate::wire::ids::{EntityId, Role};
use crate::wire::message::{self, ErrorCode, Message, MessageKind};

/// Wait before reconnecting after a failure, unless the server said
/// otherwise with `retry:` (academy-py's default).
const DEFAULT_RETRY: Duration = Duration::from_millis(1000);
/// The longest wait between reconnect attempts while the exchange is down.
const MAX_RETRY: Duration = Duration::from_secs(10);

/// Stops a running [`crate::client::serve::serve`] from another thread.
#[derive(Debug, Default)]
pub struct ServeControl {
    stopped: AtomicBool,
    pub(crate) wake: Notify,
}

impl ServeControl {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Asks serving to return; requests not yet answered get an
    /// `ActionCancelled` error response, so no caller waits forever.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_waiters();
        self.wake.notify_one();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

/// What a waiting request gets: the response, or why none will come.
pub(crate) type Reply = Result<Message>;

/// Why the listener stopped for good, or is failing for now.
#[derive(Debug, Clone)]
pub(crate) enum ListenerState {
    Running,
    /// Reconnecting after this error (the exchange may come back).
    Failing(Error),
    /// Stopped for good (mailbox terminated, unknown, or not allowed).
    Ended(Error),
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) transport: Arc<Transport>,
    pub(crate) id: EntityId,
    /// The label of this client's requests (a Python handle's `handle_id`).
    pub(crate) label: Uuid,
    pub(crate) bound: ProcessBound,
    pub(crate) inbox: Mutex<VecDeque<String>>,
    /// Wakes receivers: a message arrived or the state changed.
    pub(crate) changed: Notify,
    pub(crate) pending: Mutex<HashMap<Uuid, Option<oneshot::Sender<Reply>>>>,
    pub(crate) state: Mutex<ListenerState>,
    pub(crate) closed: AtomicBool,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Set while [`crate::client::serve::serve`] runs on this client.
    pub(crate) serving: Mutex<Option<Arc<ServeControl>>>,
    /// Tags of the messages delivered lately, to drop duplicates.
    pub(crate) recent: Mutex<RecentTags>,
    /// Sends started by [`Client::send_in_background`].
    pub(crate) in_flight: InFlight,
}

/// How many delivered tags are remembered to drop duplicates.
const RECENT_TAGS: usize = 8192;

/// The tags of the last [`RECENT_TAGS`] messages delivered. A sender whose
/// `PUT /message` was accepted but whose answer was lost retries it (as
/// academy-py does); the exchange then holds the message twice, and this
/// keeps the second copy from reaching the application.
#[derive(Debug, Default)]
pub(crate) struct RecentTags {
    seen: std::collections::HashSet<(Uuid, bool)>,
    order: VecDeque<(Uuid, bool)>,
}

impl RecentTags {
    fn first_time(&mut self, tag: Uuid, kind: MessageKind) -> bool {
        let key = (tag, kind == MessageKind::Request);
        if !self.seen.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > RECENT_TAGS {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().unwrap().drain(..) {
            task.abort();
        }
        // A client dropped without close: its receiving (a Redis queue's
        // reader, a hybrid listener) ends in the background.
        if !self.closed.load(Ordering::Acquire) && self.bound.check("client").is_ok() {
            if let Ok(handle) = crate::runtime::handle() {
                let (transport, id) = (self.transport.clone(), self.id.clone());
                handle.spawn(async move { transport.stop_receiving(&id).await });
            }
        }
    }
}

impl Inner {
    /// Stops the tasks and wakes everyone waiting.
    pub(crate) fn shutdown(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        self.pending.lock().unwrap().clear();
        self.changed.notify_waiters();
    }

    pub(crate) fn set_state(&self, state: ListenerState) {
        *self.state.lock().unwrap() = state;
        self.changed.notify_waiters();
    }

    /// Routes one message from the exchange.
    pub(crate) async fn deliver(&self, raw: String) {
        if let Ok(message) = Message::from_json(&raw) {
            if !self
                .recent
                .lock()
                .unwrap()
                .first_time(message.header.tag, message.header.kind)
            {
                return; // a duplicate (a send retried after its answer was lost)
            }
            if message.header.kind == MessageKind::Response {
                let waiter = self.pending.lock().unwrap().remove(&message.header.tag);
                match waiter {
                    Some(Some(tx)) => {
                        let _ = tx.send(Ok(message));
                        return;
                    }
                    Some(None) => return, // a response nobody waits for
                    None => {}
                }
            } else if message.kind() == "ping-request"
                && message.header.compatible()
                && self.serving.lock().unwrap().is_some()
            {
                // A served agent answers pings here, on the runtime thread
                // that read the ping, as academy-py's agent answers them on
                // its event loop: no hop to the serving thread and back,
                // which is most of a ping's round trip on a small machine.
                if let Ok(response) = message.response(message::success_body()) {
                    let transport = self.transport.clone();
                    tokio::spawn(async move {
                        let _ = transport.send(&response.to_json()).await;
                    });
                }
                return;
            } else if self.id.role == Role::User {
                // A user cannot serve requests: answer as academy-py's
                // UserExchangeClient does.
                let code = if message.header.compatible() {
                    ErrorCode::InvalidClient
                } else {
                    ErrorCode::IncompatibleProtocol
                };
                if let Ok(response) =
                    message.response(message::academy_error_body(code, Some(&self.id)))
                {
                    let _ = self.transport.send(&response.to_json()).await;
                }
                return;
            }
        }
        self.inbox.lock().unwrap().push_back(raw);
        self.changed.notify_waiters();
    }

    /// Fails every waiting request with `err`.
    pub(crate) fn fail_pending(&self, err: &Error) {
        for (_, waiter) in self.pending.lock().unwrap().drain() {
            if let Some(tx) = waiter {
                let _ = tx.send(Err(err.clone()));
            }
        }
    }
}

pub(crate) async fn listen_loop(weak: std::sync::Weak<Inner>) {
    let mut retry = DEFAULT_RETRY;
    let mut failures: u32 = 0;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        match listen_once(&inner, &mut retry, &mut failures).await {
            Ok(()) => {
                failures = 0;
                continue;
            }
            Err(e) if e.is_final() => {
                inner.fail_pending(&e);
                inner.set_state(ListenerState::Ended(e));
                return;
            }
            Err(e) => {
                inner.set_state(ListenerState::Failing(e));
                failures = failures.saturating_add(1);
            }
        }
        drop(inner);
        let wait = retry
            .saturating_mul(1 << failures.saturating_sub(1).min(4))
            .min(MAX_RETRY.max(retry));
        tokio::time::sleep(wait).await;
    }
}

/// One receive (a listen stream, a long poll), read until it ends (`Ok`)
/// or fails.
async fn listen_once(inner: &Inner, retry: &mut Duration, failures: &mut u32) -> Result<()> {
    let mut inbound = inner.transport.inbound(&inner.id).await?;
    // Connected: the back-off starts over at the next failure.
    *failures = 0;
    inner.set_state(ListenerState::Running);
    loop {
        let next = inbound.next().await;
        if let Some(hint) = inbound.retry_hint() {
            *retry = hint;
        }
        match next? {
            Some(message) => inner.deliver(message).await,
            None => return Ok(()),
        }
    }
}

pub(crate) async fn heartbeat_loop(weak: std::sync::Weak<Inner>) {
    loop {
        let interval = match weak.upgrade() {
            Some(inner) => inner.transport.options().heartbeat_interval,
            None => return,
        };
        tokio::time::sleep(interval).await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        match inner.transport.heartbeat(&inner.id).await {
            Err(e) if e.is_final() || e.is_missing_endpoint() => return,
            _ => {}
        }
    }
}
