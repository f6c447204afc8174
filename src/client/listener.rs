//! A client's listener: the state a client shares with its background
//! tasks, and those tasks.
//!
//! - The listener keeps one `GET /mailbox/listen` stream open (falling back
//!   to long-poll `GET /message` on servers without it) and routes each
//!   message ([`Inner::deliver`]): a response that a pending request waits
//!   for goes to that call (a blocked caller, or the completion of a call
//!   made without a thread, [`CallDone`]), anything else to the route a
//!   listen set ([`Routed`]) or else to the inbox that `recv` takes from.
//!   The stream stays open across receives that time out, so academy-py's
//!   exchange never writes a message to a stream nobody reads (it loses
//!   such a message).
//! - Calls made without a thread have their deadlines in [`Deadlines`]:
//!   one timer task per client (started by the first such call) for all
//!   of them, not one per call.
//! - The heartbeat keeps the mailbox ACTIVE for Python peers.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::client::send_async::InFlight;
use crate::error::{Error, Result, Status};
use crate::fork::ProcessBound;
use crate::transport::Transport;
use crate::wire::ids::{EntityId, Role};
use crate::wire::message::{self, ErrorCode, Message, MessageKind};

/// Wait before reconnecting after a failure, unless the server said
/// otherwise with `retry:` (academy-py's default).
const DEFAULT_RETRY: Duration = Duration::from_millis(1000);
/// The longest wait between reconnect attempts while the exchange is down.
const MAX_RETRY: Duration = Duration::from_secs(10);
/// How much longer than the request timeout a close waits for its listen
/// stream to end.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// How long a close lets a receive being opened finish, to end it properly.
const OPEN_GRACE: Duration = Duration::from_secs(2);

/// Stops a running [`crate::client::serve::serve`] from another thread.
#[derive(Debug, Default)]
pub struct ServeControl {
    stopped: AtomicBool,
    pub(crate) wake: Notify,
    /// Set once serving has answered the requests it leaves, so that
    /// [`crate::client::Client::close`] ends the client only after that.
    wound_down: AtomicBool,
    wound_down_changed: Notify,
}

impl ServeControl {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Asks serving to return; requests not yet answered get an
    /// `ActionCancelled` error response, so no caller waits forever.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.nudge();
    }

    /// Wakes serving without stopping it: the listener ended, and serving
    /// finds out why.
    pub(crate) fn nudge(&self) {
        self.wake.notify_waiters();
        self.wake.notify_one();
    }

    /// Serving has answered the requests it leaves.
    pub(crate) fn mark_wound_down(&self) {
        self.wound_down.store(true, Ordering::Release);
        self.wound_down_changed.notify_waiters();
    }

    /// Waits (at most `limit`) until serving has answered the requests it
    /// leaves.
    pub(crate) async fn wound_down(&self, limit: Duration) {
        let wait = async {
            loop {
                let changed = self.wound_down_changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if self.wound_down.load(Ordering::Acquire) {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

/// What a waiting request gets: the response, or why none will come.
pub(crate) type Reply = Result<Message>;

/// The end of a call made without a thread: told the outcome exactly once.
/// Dropped untold (its client freed, say), it is told `Closed`, so that
/// every started call ends in exactly one outcome whatever happens.
pub struct CallDone(Option<Box<dyn FnOnce(Reply) + Send>>);

impl CallDone {
    pub fn new(done: impl FnOnce(Reply) + Send + 'static) -> Self {
        CallDone(Some(Box::new(done)))
    }

    /// Tells the outcome.
    pub fn finish(mut self, outcome: Reply) {
        if let Some(done) = self.0.take() {
            done(outcome);
        }
    }

    /// Drops it untold: for a call that was never started.
    pub fn defuse(mut self) {
        self.0 = None;
    }
}

impl Drop for CallDone {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            done(Err(Error::closed(
                "the client was closed or freed before the call ended",
            )));
        }
    }
}

impl std::fmt::Debug for CallDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallDone")
    }
}

/// Who waits for the response to a request, by its tag.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// A caller blocked in `Client::request`.
    Blocked(oneshot::Sender<Reply>),
    /// A call made without a thread.
    Async(AsyncCall),
    /// Nobody: the response is dropped when it comes.
    Nobody,
}

/// A pending call made without a thread: what it costs while it waits.
#[derive(Debug)]
pub(crate) struct AsyncCall {
    pub(crate) done: CallDone,
    /// When it times out, and the timeout asked for (for the error text).
    pub(crate) deadline: Option<(Instant, Duration)>,
    pub(crate) dest: EntityId,
}

/// What a listen route is told ([`Inner::route`]).
#[derive(Debug)]
// Moved once per message; a Box would add an allocation to each.
#[allow(clippy::large_enum_variant)]
pub enum Routed {
    /// A message that no call waits for, as it arrived, and parsed if it
    /// could be.
    Message {
        raw: String,
        parsed: Option<Message>,
    },
    /// The listen ended (the client closed, the mailbox went away): the
    /// last thing the route is told.
    Ended(Result<()>),
}

/// Where a listening client's messages go instead of its inbox.
pub(crate) struct Route(pub(crate) Box<dyn Fn(Routed) + Send + Sync>);

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Route")
    }
}

/// The deadlines of a client's calls made without a thread, earliest
/// first, and what wakes its timer task when an earlier one comes.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    pub(crate) set: Mutex<BTreeSet<(Instant, Uuid)>>,
    pub(crate) changed: Notify,
    /// Whether the timer task runs (started by the first deadline).
    pub(crate) started: AtomicBool,
}

impl Deadlines {
    /// Adds one; wakes the timer when it is the earliest.
    pub(crate) fn add(&self, at: Instant, tag: Uuid) {
        let mut set = self.set.lock().unwrap();
        let earliest = set.first().is_none_or(|(first, _)| at < *first);
        set.insert((at, tag));
        drop(set);
        if earliest {
            self.changed.notify_one();
        }
    }

    pub(crate) fn remove(&self, at: Instant, tag: Uuid) {
        self.set.lock().unwrap().remove(&(at, tag));
    }

    pub(crate) fn earliest(&self) -> Option<Instant> {
        self.set.lock().unwrap().first().map(|(at, _)| *at)
    }

    /// Takes the tags whose deadline has passed.
    pub(crate) fn take_expired(&self, now: Instant) -> Vec<Uuid> {
        let mut set = self.set.lock().unwrap();
        let mut expired = Vec::new();
        while let Some(&(at, tag)) = set.first() {
            if at > now {
                break;
            }
            set.pop_first();
            expired.push(tag);
        }
        expired
    }
}

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
    pub(crate) pending: Mutex<HashMap<Uuid, Waiter>>,
    /// Deadlines of the calls in `pending` made without a thread.
    pub(crate) deadlines: Arc<Deadlines>,
    /// Set by a listen: where messages go instead of `inbox`.
    pub(crate) route: Mutex<Option<Route>>,
    pub(crate) state: Mutex<ListenerState>,
    pub(crate) closed: AtomicBool,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The listener's task, which a close stops and waits for.
    pub(crate) listen_task: Mutex<Option<JoinHandle<()>>>,
    /// Tells the listener to end its receive (with `closed` set).
    pub(crate) stop_listen: Arc<Notify>,
    /// Messages the listener read while its receive was ending: put back
    /// with the inbox at close.
    pub(crate) left_over: Mutex<Vec<String>>,
    /// Set while [`crate::client::serve::serve`] runs on this client.
    pub(crate) serving: Mutex<Option<Arc<ServeControl>>>,
    /// Answers to this client's calls that came after the call ended
    /// (timed out), dropped.
    pub(crate) late_answers: AtomicU64,
    /// Tags of the messages delivered lately, to drop duplicates.
    pub(crate) recent: Mutex<RecentTags>,
    /// Sends started by [`Client::send_in_background`].
    pub(crate) in_flight: InFlight,
    /// Sends of calls made without a thread and of queue-served replies.
    pub(crate) outbox: Outbox,
}

/// How many tasks at most send a client's [`Outbox`] (each waits for one
/// exchange answer at a time; on plain http they share one pipelined
/// connection, so this is how many of its requests are in flight).
const OUTBOX_SENDERS: usize = 256;

/// Messages a client sends in the background without a caller waiting for
/// the send: the requests of calls made without a thread, and replies from
/// a queue-served agent. They wait here as strings; at most
/// [`OUTBOX_SENDERS`] tasks send them. Why not a task per message: 10,000
/// calls started at once would then hold 10,000 tasks (about 1.5 KB each)
/// until their requests were sent.
///
/// A close drops the requests still waiting (their calls end `Closed`) but
/// not the replies: a reply whose completion returned OK goes out, and the
/// close waits for it ([`Outbox::replies_sent`]).
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    state: Mutex<OutboxState>,
    /// Told when the last reply waiting or being sent has gone.
    replies_gone: Notify,
}

#[derive(Debug, Default)]
struct OutboxState {
    waiting: VecDeque<Outgoing>,
    senders: usize,
    /// Replies waiting or being sent.
    replies: usize,
}

impl Outbox {
    /// One reply has gone (sent, or its failure answered).
    fn reply_gone(&self) {
        let mut state = self.state.lock().unwrap();
        state.replies -= 1;
        if state.replies == 0 {
            self.replies_gone.notify_waiters();
        }
    }

    /// Waits (at most `limit`) until the replies queued before have gone.
    pub(crate) async fn replies_sent(&self, limit: Duration) {
        let wait = async {
            loop {
                let gone = self.replies_gone.notified();
                tokio::pin!(gone);
                gone.as_mut().enable();
                if self.state.lock().unwrap().replies == 0 {
                    return;
                }
                gone.await;
            }
        };
        if tokio::time::timeout(limit, wait).await.is_err() {
            tracing::debug!(
                "replies still being sent after {limit:?}; they go on in the background"
            );
        }
    }
}

/// A message waiting in the [`Outbox`], and who hears of its failure.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) json: String,
    pub(crate) on_failure: OnFailure,
}

impl Outgoing {
    /// Whether it answers a request (rather than being one).
    fn is_reply(&self) -> bool {
        matches!(self.on_failure, OnFailure::AnswerError(_))
    }
}

/// What a failed background send does.
#[derive(Debug)]
pub(crate) enum OnFailure {
    /// Ends the call that waits with this tag.
    EndCall(Uuid),
    /// The send was a reply to the request with this header: its caller
    /// is answered with an error saying why instead (once), rather than
    /// left waiting for its timeout.
    AnswerError(Box<message::Header>),
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
        if let Some(task) = self.listen_task.get_mut().unwrap().take() {
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
    /// Stops the tasks and wakes everyone waiting: blocked callers see
    /// their call fail, calls made without a thread end `Closed`, and a
    /// listen route is told it ended.
    pub(crate) fn shutdown(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        if let Some(task) = self.listen_task.lock().unwrap().take() {
            task.abort();
        }
        let closed = Error::closed(format!("the client of {} was closed", self.id));
        // Requests of calls that end here now must not go out later;
        // replies still go out.
        self.outbox
            .state
            .lock()
            .unwrap()
            .waiting
            .retain(Outgoing::is_reply);
        self.fail_pending(&closed);
        self.end_route(Err(closed));
        self.changed.notify_waiters();
    }

    /// Ends the listener's receive and waits until it is gone (`closed`
    /// is set): our exchange's stream is asked to end and read to its
    /// end; other receives end where they are. Bounded by the request
    /// timeout, after which the task is stopped where it is.
    pub(crate) async fn stop_listener(&self) {
        self.stop_listen.notify_waiters();
        let Some(task) = self.listen_task.lock().unwrap().take() else {
            return;
        };
        let abort = task.abort_handle();
        let limit = self.transport.options().request_timeout + STOP_GRACE;
        if tokio::time::timeout(limit, task).await.is_err() {
            tracing::debug!(mailbox = %self.id.uid, "the listen stream did not end in {limit:?}; dropped");
            abort.abort();
        }
    }

    /// Puts the messages that arrived and nobody took (the inbox, then
    /// what the ending receive brought) back into the mailbox, in order.
    /// Answers to this client's own calls (which have ended) and repeats
    /// are dropped. Nothing when the mailbox is gone.
    pub(crate) async fn put_back_unread(&self) -> Result<()> {
        if matches!(&*self.state.lock().unwrap(), ListenerState::Ended(_)) {
            return Ok(());
        }
        let inbox: Vec<String> = self.inbox.lock().unwrap().drain(..).collect();
        let left: Vec<String> = std::mem::take(&mut *self.left_over.lock().unwrap());
        let mut unread = inbox;
        for raw in left {
            let keep = match Message::from_json(&raw) {
                Ok(m) => {
                    let own_answer = m.header.kind == MessageKind::Response
                        && m.header.label == Some(self.label);
                    !own_answer
                        && !message::is_wake_up(&m.header)
                        && self
                            .recent
                            .lock()
                            .unwrap()
                            .first_time(m.header.tag, m.header.kind)
                }
                Err(_) => false,
            };
            if keep {
                unread.push(raw);
            }
        }
        unread.retain(|raw| message::header_of(raw).is_ok());
        if unread.is_empty() {
            return Ok(());
        }
        tracing::debug!(mailbox = %self.id.uid, count = unread.len(), "putting unread messages back");
        self.transport
            .requeue(&self.id, &unread)
            .await
            .map_err(|e| {
                Error::new(
                    e.status,
                    format!(
                        "{} message(s) received for {} and not taken could not be put back in its mailbox: {}",
                        unread.len(),
                        self.id,
                        e.message
                    ),
                )
            })
    }

    /// Sends `message_json` soon, in the background (see [`Outbox`]); a
    /// failure ends the call waiting with `tag`, if any.
    pub(crate) fn send_soon(self: &Arc<Self>, handle: &tokio::runtime::Handle, outgoing: Outgoing) {
        let start = {
            let mut state = self.outbox.state.lock().unwrap();
            state.replies += usize::from(outgoing.is_reply());
            state.waiting.push_back(outgoing);
            let start = state.senders < OUTBOX_SENDERS;
            state.senders += usize::from(start);
            start
        };
        if start {
            handle.spawn(send_outbox(self.clone()));
        }
    }

    /// Takes the waiter of a request, and its deadline.
    pub(crate) fn take_waiter(&self, tag: Uuid) -> Option<Waiter> {
        let waiter = self.pending.lock().unwrap().remove(&tag);
        if let Some(Waiter::Async(AsyncCall {
            deadline: Some((at, _)),
            ..
        })) = &waiter
        {
            self.deadlines.remove(*at, tag);
        }
        waiter
    }

    /// Routes the messages that no call waits for to `route` from now on,
    /// starting with those waiting in the inbox. `InvalidArgument` if a
    /// route is set already. A route set after a close or the listener's
    /// end is ended at once.
    pub(crate) fn set_route(&self, route: Route) -> Result<()> {
        let mut slot = self.route.lock().unwrap();
        if slot.is_some() {
            return Err(Error::invalid(format!(
                "the messages of {} go to a queue already",
                self.id
            )));
        }
        for raw in self.inbox.lock().unwrap().drain(..) {
            let parsed = Message::from_json(&raw).ok();
            (route.0)(Routed::Message { raw, parsed });
        }
        *slot = Some(route);
        drop(slot);
        let ended = self.state.lock().unwrap().clone();
        if self.closed.load(Ordering::Acquire) {
            self.end_route(Err(Error::closed(format!(
                "the client of {} was closed",
                self.id
            ))));
        } else if let ListenerState::Ended(e) = ended {
            self.end_route(Err(e));
        }
        Ok(())
    }

    /// Removes the route without telling it (its owner ends it); messages
    /// go to the inbox again.
    pub(crate) fn clear_route(&self) {
        self.route.lock().unwrap().take();
    }

    /// Ends a listen route, telling it why (once: it is removed).
    pub(crate) fn end_route(&self, outcome: Result<()>) {
        let mut route = self.route.lock().unwrap();
        if let Some(r) = route.take() {
            (r.0)(Routed::Ended(outcome));
        }
    }

    pub(crate) fn set_state(&self, state: ListenerState) {
        *self.state.lock().unwrap() = state;
        self.changed.notify_waiters();
    }

    /// Routes one message from the exchange.
    pub(crate) async fn deliver(&self, raw: String) {
        let mut parsed = None;
        if let Ok(message) = Message::from_json(&raw) {
            if message::is_wake_up(&message.header) {
                return; // a closed client's wake-up (see message::wake_message)
            }
            if !self
                .recent
                .lock()
                .unwrap()
                .first_time(message.header.tag, message.header.kind)
            {
                return; // a duplicate (a send retried after its answer was lost)
            }
            if message.header.kind == MessageKind::Response {
                match self.take_waiter(message.header.tag) {
                    Some(Waiter::Blocked(tx)) => {
                        let _ = tx.send(Ok(message));
                        return;
                    }
                    Some(Waiter::Async(call)) => {
                        call.done.finish(Ok(message));
                        return;
                    }
                    Some(Waiter::Nobody) => return, // a response nobody waits for
                    // A late answer to one of this client's calls (it timed
                    // out): dropped, as academy-py drops it.
                    None if message.header.label == Some(self.label) => {
                        let late = self.late_answers.fetch_add(1, Ordering::Relaxed) + 1;
                        tracing::debug!(
                            mailbox = %self.id.uid,
                            tag = %message.header.tag,
                            late,
                            "dropped an answer to a call that had ended"
                        );
                        return;
                    }
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
            parsed = Some(message);
        }
        // Told under the lock, so that nothing follows a route's end.
        if let Some(route) = self.route.lock().unwrap().as_ref() {
            (route.0)(Routed::Message { raw, parsed });
            return;
        }
        self.inbox.lock().unwrap().push_back(raw);
        self.changed.notify_waiters();
    }

    /// Drops the requests waiting in the inbox of a terminated mailbox:
    /// the exchange answered them (MailboxTerminated), and academy-py's
    /// agent runs none of them.
    fn drop_queued_requests(&self) {
        let mut inbox = self.inbox.lock().unwrap();
        let before = inbox.len();
        inbox.retain(|raw| !Message::from_json(raw).is_ok_and(|m| m.is_request()));
        let dropped = before - inbox.len();
        // Logged after the lock: the log callback may call the library.
        drop(inbox);
        if dropped > 0 {
            tracing::debug!(mailbox = %self.id.uid, dropped, "dropped the requests queued for a terminated mailbox");
        }
    }

    /// Fails every waiting request with `err`.
    pub(crate) fn fail_pending(&self, err: &Error) {
        // Told outside the lock: a completion may take other locks.
        let waiters: Vec<Waiter> = self
            .pending
            .lock()
            .unwrap()
            .drain()
            .map(|(_, w)| w)
            .collect();
        self.deadlines.set.lock().unwrap().clear();
        for waiter in waiters {
            match waiter {
                Waiter::Blocked(tx) => {
                    let _ = tx.send(Err(err.clone()));
                }
                Waiter::Async(call) => call.done.finish(Err(err.clone())),
                Waiter::Nobody => {}
            }
        }
    }
}

/// One sender of a client's [`Outbox`]: sends until it is empty. After a
/// close, only replies.
async fn send_outbox(inner: Arc<Inner>) {
    loop {
        let next = {
            let mut state = inner.outbox.state.lock().unwrap();
            match state.waiting.pop_front() {
                Some(next) => next,
                None => {
                    state.senders -= 1;
                    return;
                }
            }
        };
        let reply = next.is_reply();
        if !reply && inner.closed.load(Ordering::Acquire) {
            continue; // its call ends `Closed` with the client
        }
        send_one(&inner, next).await;
        if reply {
            inner.outbox.reply_gone();
        }
    }
}

/// Sends one message of the [`Outbox`]; a failure ends its call, or
/// answers the request it replied to with an error.
async fn send_one(inner: &Inner, next: Outgoing) {
    let Err(e) = inner.transport.send_background(&next.json).await else {
        return;
    };
    match next.on_failure {
        OnFailure::EndCall(tag) => {
            if let Some(Waiter::Async(call)) = inner.take_waiter(tag) {
                call.done.finish(Err(e));
            }
        }
        // The caller went away: nobody to tell.
        OnFailure::AnswerError(_)
            if matches!(e.status, Status::MailboxTerminated | Status::BadEntityId) => {}
        OnFailure::AnswerError(request) => {
            let why = format!("the agent's reply could not be sent: {}", e.message);
            tracing::debug!(mailbox = %inner.id.uid, tag = %request.tag, "{why}");
            let answer = Message {
                header: request.response_header(),
                body: message::user_error_body(&why),
            };
            let _ = inner.transport.send_background(&answer.to_json()).await;
        }
    }
}

/// The wait before the next attempt after `failures` failures in a row:
/// doubling from `retry`, at most [`MAX_RETRY`] (or `retry` if longer).
fn reconnect_wait(retry: Duration, failures: u32) -> Duration {
    retry
        .saturating_mul(1 << failures.saturating_sub(1).min(4))
        .min(MAX_RETRY.max(retry))
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
                tracing::debug!(mailbox = %inner.id.uid, "receiving stopped: {}", e.message);
                inner.fail_pending(&e);
                inner.end_route(Err(e.clone()));
                if e.status == Status::MailboxTerminated {
                    inner.drop_queued_requests();
                }
                inner.set_state(ListenerState::Ended(e));
                if let Some(control) = inner.serving.lock().unwrap().clone() {
                    control.nudge();
                }
                return;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = reconnect_wait(retry, failures);
                tracing::debug!(
                    mailbox = %inner.id.uid,
                    failures,
                    "receiving failed: {}; reconnecting in {wait:?}",
                    e.message
                );
                inner.set_state(ListenerState::Failing(e));
            }
        }
        let stop = inner.stop_listen.clone().notified_owned();
        tokio::pin!(stop);
        stop.as_mut().enable();
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        drop(inner);
        let wait = reconnect_wait(retry, failures);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop => return,
        }
    }
}

/// One receive (a listen stream, a long poll), read until it ends (`Ok`)
/// or fails.
async fn listen_once(inner: &Inner, retry: &mut Duration, failures: &mut u32) -> Result<()> {
    let stop = inner.stop_listen.notified();
    tokio::pin!(stop);
    stop.as_mut().enable();
    if inner.closed.load(Ordering::Acquire) {
        return Ok(());
    }
    let opening = inner.transport.inbound(&inner.id);
    tokio::pin!(opening);
    let mut inbound = tokio::select! {
        biased;
        opened = &mut opening => opened?,
        () = &mut stop => {
            // A stream being opened may have begun on the exchange: it is
            // let open (briefly: a long poll would wait for a message) and
            // then ended properly.
            let limit = inner.transport.options().request_timeout.min(OPEN_GRACE);
            match tokio::time::timeout(limit, opening).await {
                Ok(Ok(inbound)) => return end_receive(inner, inbound).await,
                Ok(Err(_)) => return Ok(()),
                Err(_) => {
                    wake_left_handler(inner).await;
                    return Ok(());
                }
            }
        }
    };
    if *failures > 0 {
        tracing::debug!(mailbox = %inner.id.uid, "listen stream reconnected");
    }
    // Connected: the back-off starts over at the next failure.
    *failures = 0;
    inner.set_state(ListenerState::Running);
    loop {
        let next = tokio::select! {
            biased;
            () = &mut stop => return end_receive(inner, inbound).await,
            next = inbound.next() => next,
        };
        if let Some(hint) = inbound.retry_hint() {
            *retry = hint;
        }
        match next? {
            Some(message) => inner.deliver(message).await,
            None => return Ok(()),
        }
    }
}

/// Ends a receive for a closing client, keeping what it still brings in
/// [`Inner::left_over`]: a receive the exchange ends on request is asked
/// to and read to its end (within the request timeout); of any other, what
/// has arrived already is kept.
async fn end_receive(inner: &Inner, mut inbound: Box<dyn crate::transport::Inbound>) -> Result<()> {
    let mut left = Vec::new();
    if let Some(token) = inbound.stop_token().map(str::to_owned) {
        let read_to_end = async {
            if let Err(e) = inner.transport.end_receive(&inner.id, &token).await {
                tracing::debug!(mailbox = %inner.id.uid, "could not end the listen stream: {}", e.message);
                return;
            }
            while let Ok(Some(message)) = inbound.next().await {
                left.push(message);
            }
        };
        let limit = inner.transport.options().request_timeout;
        if tokio::time::timeout(limit, read_to_end).await.is_err() {
            tracing::debug!(mailbox = %inner.id.uid, "the listen stream did not end in {limit:?}");
        }
    }
    while let Ok(Ok(Some(message))) = tokio::time::timeout(Duration::ZERO, inbound.next()).await {
        left.push(message);
    }
    let outlives = inbound.outlives_drop();
    drop(inbound);
    inner.left_over.lock().unwrap().extend(left);
    if outlives {
        wake_left_handler(inner).await;
    }
    Ok(())
}

/// See [`Transport::wake_left_handler`]. Not for a user: its close
/// terminates the mailbox, which ends the handler.
async fn wake_left_handler(inner: &Inner) {
    if inner.id.role == Role::User {
        return;
    }
    if let Err(e) = inner.transport.wake_left_handler(&inner.id).await {
        tracing::debug!(mailbox = %inner.id.uid, "could not send the wake-up message: {}", e.message);
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

/// The timer of a client's calls made without a thread: ends each with
/// `Timeout` at its deadline unless its response came first.
pub(crate) async fn deadline_loop(weak: std::sync::Weak<Inner>, deadlines: Arc<Deadlines>) {
    loop {
        let changed = deadlines.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        match deadlines.earliest() {
            None => changed.await,
            Some(at) if at > Instant::now() => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = changed => {}
                }
            }
            Some(_) => {}
        }
        let expired = deadlines.take_expired(Instant::now());
        if expired.is_empty() {
            continue;
        }
        let Some(inner) = weak.upgrade() else { return };
        for tag in expired {
            let waiter = inner.pending.lock().unwrap().remove(&tag);
            let call = match waiter {
                Some(Waiter::Async(call)) => call,
                Some(other) => {
                    // Not a timed call (cannot happen: tags are unique).
                    inner.pending.lock().unwrap().insert(tag, other);
                    continue;
                }
                None => continue,
            };
            let waited = call.deadline.map(|(_, t)| t).unwrap_or_default();
            let error = Error::timeout(format!(
                "no response from {} within {:.3} s",
                call.dest,
                waited.as_secs_f64()
            ));
            call.done.finish(Err(error));
        }
    }
}
