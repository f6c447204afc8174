//! What every mailbox backend shares: the errors the routes turn into HTTP
//! answers, mailbox states, the client as a backend sees it, agent
//! statistics, the server-wide shutdown signal, what a listen stream needs
//! of a backend whose queues live in Redis, and Python's `repr()` (part of
//! academy-py's error texts).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::server::auth::ClientInfo;
use crate::server::metrics::Metrics;
use crate::wire::ids::EntityId;

/// Errors of backend operations; the routes turn them into HTTP answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BackendError {
    BadEntityId,
    Forbidden,
    Terminated,
    TooLarge {
        size: usize,
        limit: usize,
    },
    Timeout,
    ShuttingDown,
    /// A `KeyError` in academy-py: 400 "Missing or invalid field: {0}".
    KeyError(String),
    /// The backend store (Redis) cannot be reached: 503, which clients retry.
    Unavailable(String),
}

pub(crate) type BResult<T> = std::result::Result<T, BackendError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MailboxStatus {
    Missing,
    Active,
    Terminated,
}

impl MailboxStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MailboxStatus::Missing => "MISSING",
            MailboxStatus::Active => "ACTIVE",
            MailboxStatus::Terminated => "TERMINATED",
        }
    }
}

/// The client as the backend sees it. academy-py's middleware joins the
/// groups with ',' into a header and the routes split it again, so a client
/// in no group is in the group `""`; we keep that quirk.
pub(crate) struct Client {
    pub(crate) id: String,
    pub(crate) groups: HashSet<String>,
}

impl Client {
    pub(crate) fn from_info(info: &ClientInfo) -> Client {
        let joined = info.groups.join(",");
        Client {
            id: info.client_id.clone(),
            groups: joined.split(',').map(str::to_owned).collect(),
        }
    }
}

/// `academy.stats.AgentStats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AgentStats {
    pub(crate) incoming: u64,
    pub(crate) outgoing: u64,
    pub(crate) completed: u64,
    pub(crate) in_progress: u64,
    pub(crate) queued: u64,
}

impl AgentStats {
    /// academy-py's figures from its counters: requests in flight
    /// (`pending`) count as incoming, and those not queued any more as in
    /// progress.
    pub(crate) fn from_counts(queued: u64, pending: u64, completed: u64, outgoing: u64) -> Self {
        AgentStats {
            incoming: completed + pending,
            outgoing,
            completed,
            in_progress: pending.saturating_sub(queued),
            queued,
        }
    }
}

/// Server-wide shutdown signal, observed by long polls and listen streams.
#[derive(Default)]
pub(crate) struct Shutdown {
    flag: AtomicBool,
    pub(crate) notify: Arc<Notify>,
}

impl Shutdown {
    pub(crate) fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    pub(crate) fn trigger(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// What a receive hands to the request that wanted it.
pub(crate) type Received = BResult<Vec<u8>>;

/// A backend whose queues live outside this process (one Redis, or a
/// Redis cluster): a receive runs as a background task that hands what it
/// takes over a channel, and puts it back at the head of the queue when
/// the channel's receiver has gone.
pub(crate) trait StoredQueues: Send + Sync + 'static {
    /// Waits until `deadline` for the next message of the mailbox (already
    /// found receivable by the caller).
    fn receive(self: Arc<Self>, uid: &EntityId, deadline: Instant) -> oneshot::Receiver<Received>;

    /// Puts a message taken for a receiver that has gone back at the head
    /// of its queue, in the background (a stopping server waits for it).
    fn unpop_later(self: Arc<Self>, uid: &EntityId, item: Vec<u8>);

    /// The server-wide shutdown signal.
    fn shutdown_signal(&self) -> &Shutdown;

    fn metrics(&self) -> Option<&Arc<Metrics>>;
}

/// Python's `repr()` of a str.
pub(crate) fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr()` of an `AgentId` / `UserId`.
pub(crate) fn py_repr_id(id: &EntityId) -> String {
    let kind = if id.is_agent() { "AgentId" } else { "UserId" };
    let name = match &id.name {
        Some(n) => py_repr_str(n),
        None => "None".to_owned(),
    };
    format!("{kind}(uid=UUID('{}'), name={name})", id.uid)
}
