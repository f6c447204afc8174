//! In-memory mailboxes: academy-py 1.0.0's `PythonBackend`, with
//! fine-grained locking.
//!
//! Locks: the mailbox map is a `RwLock` taken only to look up or insert an
//! `Arc<Mailbox>`; each mailbox has its own queue mutex and `Notify`. The
//! request-tracking statistics have one mutex, always taken after a queue
//! mutex (never the other way round). No lock is held across an await.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use uuid::Uuid;

use crate::server::backend::dedup::RecentTags;
use crate::server::backend::model::{
    py_repr_id, AgentStats, BResult, BackendError, Client, MailboxStatus, Shutdown,
};
use crate::server::metrics::Metrics;
use crate::wire::ids::EntityId;
use crate::wire::message::{academy_error_body, ErrorCode, Header, Message};

pub(crate) struct Queue {
    pub(crate) items: VecDeque<Arc<str>>,
    /// Terminated (academy-py shuts the queue down immediately).
    pub(crate) closed: bool,
    /// Tags taken recently: a message sent again is dropped.
    recent: RecentTags,
}

pub(crate) struct Mailbox {
    owner: String,
    pub(crate) queue: Mutex<Queue>,
    pub(crate) notify: Arc<Notify>,
    /// `None` until shared once (academy-py raises a KeyError when removing
    /// a share from a never-shared mailbox).
    shares: Mutex<Option<Vec<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a receive or a listen stream found in its mailbox.
pub(crate) enum Batch {
    /// One or more messages, oldest first.
    Messages(Vec<Arc<str>>),
    Empty,
    Terminated,
}

impl Mailbox {
    /// The oldest waiting message (a long-poll receive).
    pub(crate) fn try_pop(&self) -> Batch {
        // At least one message is taken, and a size of 0 stops after it;
        // the receiver is always there.
        self.take_batch(0, || true).unwrap_or(Batch::Empty)
    }

    /// The messages waiting, oldest first, up to about `max_bytes` (at
    /// least one), taken only if `deliverable()` still holds: it is checked
    /// only when there is something to take, since it is a system call.
    /// `None` when it does not hold.
    pub(crate) fn take_batch(
        &self,
        max_bytes: usize,
        deliverable: impl FnOnce() -> bool,
    ) -> Option<Batch> {
        let mut q = lock(&self.queue);
        if q.closed {
            return Some(Batch::Terminated);
        }
        if q.items.is_empty() {
            return Some(Batch::Empty);
        }
        if !deliverable() {
            return None;
        }
        let mut taken = Vec::new();
        let mut bytes = 0;
        while let Some(next) = q.items.front() {
            if !taken.is_empty() && bytes + next.len() > max_bytes {
                break;
            }
            bytes += next.len();
            taken.extend(q.items.pop_front());
        }
        Some(Batch::Messages(taken))
    }

    fn is_closed(&self) -> bool {
        lock(&self.queue).closed
    }
}

#[derive(Default)]
struct Stats {
    /// Requests in flight per destination: tag -> (arrival order, header).
    requests: HashMap<EntityId, HashMap<Uuid, (u64, Header)>>,
    completions: HashMap<EntityId, u64>,
    outgoing: HashMap<EntityId, u64>,
    seq: u64,
}

pub(crate) struct Backend {
    mailboxes: RwLock<HashMap<EntityId, Arc<Mailbox>>>,
    /// Agents in registration order (discovery answers in that order).
    agents: RwLock<Vec<(EntityId, Vec<String>)>>,
    stats: Mutex<Stats>,
    heartbeats: Mutex<HashMap<EntityId, Instant>>,
    pub(crate) limit: usize,
    pub(crate) shutdown: Shutdown,
    pub(crate) metrics: Option<Arc<Metrics>>,
}

impl Backend {
    pub(crate) fn new(message_size_limit_kb: u64, metrics: Option<Arc<Metrics>>) -> Backend {
        Backend {
            mailboxes: RwLock::new(HashMap::new()),
            agents: RwLock::new(Vec::new()),
            stats: Mutex::new(Stats::default()),
            heartbeats: Mutex::new(HashMap::new()),
            limit: (message_size_limit_kb as usize).saturating_mul(1024),
            shutdown: Shutdown::default(),
            metrics,
        }
    }

    /// Mailboxes by state: (active, terminated).
    pub(crate) fn mailbox_counts(&self) -> (u64, u64) {
        let boxes: Vec<Arc<Mailbox>> = self
            .mailboxes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let terminated = boxes.iter().filter(|m| m.is_closed()).count() as u64;
        (boxes.len() as u64 - terminated, terminated)
    }

    pub(crate) fn mailbox(&self, uid: &EntityId) -> Option<Arc<Mailbox>> {
        self.mailboxes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(uid)
            .cloned()
    }

    /// `_has_mailbox_ownership`: an unknown mailbox is owned by everybody.
    fn owns(client: &Client, mb: Option<&Mailbox>) -> bool {
        mb.is_none_or(|m| m.owner == client.id)
    }

    /// `_has_permissions`: ownership or a share with one of the groups.
    fn permitted(client: &Client, mb: Option<&Mailbox>) -> bool {
        Self::owns(client, mb)
            || mb.is_some_and(|m| {
                lock(&m.shares)
                    .as_ref()
                    .is_some_and(|s| s.iter().any(|g| client.groups.contains(g)))
            })
    }

    fn check(client: &Client, mb: Option<&Mailbox>) -> BResult<()> {
        if Self::permitted(client, mb) {
            Ok(())
        } else {
            Err(BackendError::Forbidden)
        }
    }

    pub(crate) fn check_mailbox(&self, client: &Client, uid: &EntityId) -> BResult<MailboxStatus> {
        let Some(mb) = self.mailbox(uid) else {
            return Ok(MailboxStatus::Missing);
        };
        Self::check(client, Some(&mb))?;
        Ok(if mb.is_closed() {
            MailboxStatus::Terminated
        } else {
            MailboxStatus::Active
        })
    }

    pub(crate) fn create_mailbox(
        &self,
        client: &Client,
        uid: &EntityId,
        agent: Option<Vec<String>>,
    ) -> BResult<()> {
        let existing = self.mailbox(uid);
        Self::check(client, existing.as_deref())?;
        if existing.is_some() {
            return Ok(());
        }
        let mut map = self.mailboxes.write().unwrap_or_else(|e| e.into_inner());
        if map.contains_key(uid) {
            return Ok(());
        }
        map.insert(
            uid.clone(),
            Arc::new(Mailbox {
                owner: client.id.clone(),
                queue: Mutex::new(Queue {
                    items: VecDeque::new(),
                    closed: false,
                    recent: RecentTags::default(),
                }),
                notify: Arc::new(Notify::new()),
                shares: Mutex::new(None),
            }),
        );
        if let Some(agent) = agent {
            if uid.is_agent() {
                self.agents
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((uid.clone(), agent));
            }
        }
        drop(map);
        Ok(())
    }

    /// Terminates a mailbox: a gravestone (the id stays TERMINATED), waiting
    /// receivers end, queued messages are dropped, and every request still
    /// in flight to it (queued or taken but unanswered) is answered with an
    /// `academy-error-response` (`MAILBOX_TERMINATED`), as academy-py's
    /// `_respond_pending_requests_on_terminate`.
    pub(crate) fn terminate(&self, client: &Client, uid: &EntityId) -> BResult<()> {
        let mb = self.mailbox(uid);
        Self::check(client, mb.as_deref())?;
        let Some(mb) = mb else { return Ok(()) };
        let pending = {
            let mut q = lock(&mb.queue);
            q.closed = true;
            q.items.clear();
            q.items.shrink_to_fit();
            let mut stats = lock(&self.stats);
            stats.requests.remove(uid)
        };
        mb.notify.notify_waiters();
        if let Some(pending) = pending {
            let mut pending: Vec<_> = pending.into_values().collect();
            pending.sort_by_key(|(seq, _)| *seq);
            for (_, header) in pending {
                let response = Message {
                    header: header.response_header(),
                    body: academy_error_body(ErrorCode::MailboxTerminated, Some(&header.dest)),
                };
                // academy-py sends these with the terminating client's
                // permissions and lets errors other than "terminated" escape
                // from terminate(); we deliver them as the server and ignore
                // failures (an unknown or terminated requester needs no answer).
                let _ = self.put_message(&response, None);
            }
        }
        Ok(())
    }

    pub(crate) fn update_heartbeat(&self, client: &Client, uid: &EntityId) -> BResult<()> {
        let mb = self.mailbox(uid);
        Self::check(client, mb.as_deref())?;
        lock(&self.heartbeats).insert(uid.clone(), Instant::now());
        Ok(())
    }

    /// Seconds since the last heartbeat, or None.
    pub(crate) fn heartbeat_status(&self, client: &Client, uid: &EntityId) -> BResult<Option<f64>> {
        let mb = self.mailbox(uid);
        Self::check(client, mb.as_deref())?;
        let mb = mb.ok_or(BackendError::BadEntityId)?;
        if mb.is_closed() {
            return Err(BackendError::Terminated);
        }
        Ok(lock(&self.heartbeats)
            .get(uid)
            .map(|t| t.elapsed().as_secs_f64()))
    }

    pub(crate) fn agent_stats(&self, client: &Client, uid: &EntityId) -> BResult<AgentStats> {
        let mb = self.mailbox(uid);
        Self::check(client, mb.as_deref())?;
        let queued = mb.map_or(0, |m| lock(&m.queue).items.len() as u64);
        let stats = lock(&self.stats);
        let pending = stats.requests.get(uid).map_or(0, |r| r.len() as u64);
        let completed = stats.completions.get(uid).copied().unwrap_or(0);
        let outgoing = stats.outgoing.get(uid).copied().unwrap_or(0);
        Ok(AgentStats::from_counts(
            queued, pending, completed, outgoing,
        ))
    }

    pub(crate) fn discover(
        &self,
        client: &Client,
        agent: &str,
        allow_subclasses: bool,
    ) -> Vec<Uuid> {
        let candidates: Vec<(EntityId, bool)> = {
            let agents = self.agents.read().unwrap_or_else(|e| e.into_inner());
            agents
                .iter()
                .map(|(aid, mro)| {
                    let hit = mro.first().is_some_and(|m| m == agent)
                        || (allow_subclasses && mro.iter().any(|m| m == agent));
                    (aid.clone(), hit)
                })
                .filter(|(_, hit)| *hit)
                .collect()
        };
        candidates
            .into_iter()
            .filter_map(|(aid, _)| {
                let mb = self.mailbox(&aid);
                if !Self::permitted(client, mb.as_deref()) {
                    return None;
                }
                if mb.is_some_and(|m| m.is_closed()) {
                    return None;
                }
                Some(aid.uid)
            })
            .collect()
    }

    /// The mailbox a client may receive from, or the error for the route.
    pub(crate) fn receivable(&self, client: &Client, uid: &EntityId) -> BResult<Arc<Mailbox>> {
        let mb = self.mailbox(uid);
        Self::check(client, mb.as_deref())?;
        mb.ok_or(BackendError::BadEntityId)
    }

    /// Waits up to `timeout` for a message (academy-py's `get`).
    pub(crate) async fn get(&self, mb: &Mailbox, timeout: Duration) -> BResult<Arc<str>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let shutdown = self.shutdown.notify.notified();
        tokio::pin!(shutdown);
        shutdown.as_mut().enable();
        loop {
            let notified = mb.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match mb.try_pop() {
                Batch::Messages(m) => {
                    if let Some(m) = m.into_iter().next() {
                        return Ok(m);
                    }
                }
                Batch::Terminated => return Err(BackendError::Terminated),
                Batch::Empty => {}
            }
            if self.shutdown.is_set() {
                return Err(BackendError::ShuttingDown);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => return Err(BackendError::Timeout),
                _ = &mut shutdown => return Err(BackendError::ShuttingDown),
            }
        }
    }

    /// `put` for a client: permission on the destination, then as
    /// [`Backend::put_message`].
    pub(crate) fn put(&self, client: &Client, message: &Message) -> BResult<()> {
        self.put_message(message, Some(client))
    }

    /// A message its receiver took and did not hand out, back at the head
    /// of the queue (see [`crate::server::backend::Store::requeue`]).
    pub(crate) fn requeue(&self, client: &Client, message: &Message) -> BResult<()> {
        let mb = self.receivable(client, &message.header.dest)?;
        let text: Arc<str> = Arc::from(message.to_json());
        if text.len() > self.limit {
            return Err(BackendError::TooLarge {
                size: text.len(),
                limit: self.limit,
            });
        }
        let mut q = lock(&mb.queue);
        if q.closed {
            return Err(BackendError::Terminated);
        }
        q.items.push_front(text);
        drop(q);
        mb.notify.notify_one();
        Ok(())
    }

    fn put_message(&self, message: &Message, client: Option<&Client>) -> BResult<()> {
        let mb = self.mailbox(&message.header.dest);
        if let Some(client) = client {
            Self::check(client, mb.as_deref())?;
        }
        let text: Arc<str> = Arc::from(message.to_json());
        if text.len() > self.limit {
            return Err(BackendError::TooLarge {
                size: text.len(),
                limit: self.limit,
            });
        }
        let mb = mb.ok_or(BackendError::BadEntityId)?;
        let header = &message.header;
        let mut q = lock(&mb.queue);
        let now = Instant::now();
        if q.recent.seen(header.tag, message.is_request(), now) {
            // Sent again by a client that never got the first answer: it
            // was delivered once, and that is the answer.
            return Ok(());
        }
        {
            // Tracked before the terminated check, as academy-py does.
            let mut stats = lock(&self.stats);
            if message.is_request() {
                stats.seq += 1;
                let seq = stats.seq;
                stats
                    .requests
                    .entry(header.dest.clone())
                    .or_default()
                    .entry(header.tag)
                    .and_modify(|e| e.1 = header.clone())
                    .or_insert_with(|| (seq, header.clone()));
                *stats.outgoing.entry(header.src.clone()).or_insert(0) += 1;
            } else if let Some(reqs) = stats.requests.get_mut(&header.src) {
                if reqs.remove(&header.tag).is_some() {
                    if reqs.is_empty() {
                        stats.requests.remove(&header.src);
                    }
                    *stats.completions.entry(header.src.clone()).or_insert(0) += 1;
                }
            }
        }
        if q.closed {
            return Err(BackendError::Terminated);
        }
        q.recent.remember(header.tag, message.is_request(), now);
        q.items.push_back(text);
        drop(q);
        mb.notify.notify_one();
        Ok(())
    }

    pub(crate) fn share_mailbox(
        &self,
        client: &Client,
        uid: &EntityId,
        group: &str,
    ) -> BResult<()> {
        let mb = self.shareable(client, uid)?;
        if !client.groups.contains(group) {
            return Err(BackendError::Forbidden);
        }
        let mut shares = lock(&mb.shares);
        let shares = shares.get_or_insert_with(Vec::new);
        if !shares.iter().any(|g| g == group) {
            shares.push(group.to_owned());
        }
        Ok(())
    }

    pub(crate) fn get_mailbox_shares(
        &self,
        client: &Client,
        uid: &EntityId,
    ) -> BResult<Vec<String>> {
        let mb = self.shareable(client, uid)?;
        let shares = lock(&mb.shares).clone().unwrap_or_default();
        Ok(shares)
    }

    /// `group` is None when the JSON value was not a string (never a member).
    pub(crate) fn remove_mailbox_shares(
        &self,
        client: &Client,
        uid: &EntityId,
        group: Option<&str>,
    ) -> BResult<()> {
        let mb = self.shareable(client, uid)?;
        let mut shares = lock(&mb.shares);
        match shares.as_mut() {
            None => Err(BackendError::KeyError(py_repr_id(uid))),
            Some(s) => {
                if let Some(group) = group {
                    s.retain(|g| g != group);
                }
                Ok(())
            }
        }
    }

    fn shareable(&self, client: &Client, uid: &EntityId) -> BResult<Arc<Mailbox>> {
        let mb = self.mailbox(uid).ok_or(BackendError::BadEntityId)?;
        if mb.is_closed() {
            return Err(BackendError::Terminated);
        }
        if !Self::owns(client, Some(&mb)) {
            return Err(BackendError::Forbidden);
        }
        Ok(mb)
    }

    /// Ends everything at server stop.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.trigger();
        let boxes: Vec<Arc<Mailbox>> = self
            .mailboxes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for mb in boxes {
            mb.notify.notify_waiters();
        }
    }
}
