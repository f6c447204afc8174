//! Serving an agent: the agent runtime of academy-py (`academy.runtime`),
//! for handlers written in another language.
//!
//! [`serve`] blocks the calling thread. It answers pings, honours shutdown
//! and cancel requests, answers requests it cannot read (a bad pickle, a
//! serialization the agent does not accept, another protocol major
//! version) the way academy-py does, and hands each action
//! request to the handler on one of `max_concurrency` worker threads that
//! the library starts (never on the runtime's threads, so a handler may
//! call any blocking function of the library). A handler completes its
//! [`Reply`] exactly once, then or later, from any thread.
//!
//! Which requests are the program's ([`sort`]) and what the library does
//! by itself with the others (pings, shutdown, cancel, requests it cannot
//! read: [`handle_library`]) is shared with [`crate::client::serve_queue`],
//! which hands action requests to the program's own event loop instead of
//! to handler threads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::client::listener::{OnFailure, Outgoing, Route, Routed, ServeControl};
use crate::client::workers::{Permit, Workers};
use crate::client::Client;
use crate::error::{Error, Result, Status};
use crate::runtime;
use crate::wire::message::{self, ActionCall, ErrorCode, Message};
use crate::wire::payload::Accepted;

/// How long [`serve`] waits for handlers still running when it ends.
const WORKER_JOIN_GRACE: Duration = Duration::from_secs(2);

/// How a serving session's replies go out. Either way most go out in the
/// background on the library's runtime, pipelined with other sends: a
/// thread that waited a round trip per reply would serve one request per
/// round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyMode {
    /// A response larger than every one the exchange accepted in this
    /// session is sent by the completing thread, which waits for the
    /// exchange, so that a result too large for it comes back to the
    /// handler (whose reply stays open); the others go in the background
    /// ([`serve`]: handler threads may block).
    SizeChecked,
    /// Every response goes in the background
    /// ([`crate::client::serve_queue`]: the program's event loop must not
    /// wait).
    Background,
}

/// What the replies of one serving session share.
pub(crate) struct Session {
    pub(crate) client: Client,
    /// Requests handed to the handler and not answered yet, by tag.
    outstanding: Mutex<HashMap<Uuid, Arc<ReplyState>>>,
    ended: AtomicBool,
    mode: ReplyMode,
    /// The size of the largest response the exchange accepted in this
    /// session (see [`ReplyMode::SizeChecked`]).
    accepted: AtomicUsize,
}

struct ReplyState {
    request: Message,
    done: AtomicBool,
    /// The handler thread's slot, held until the request is answered.
    permit: Mutex<Option<Permit>>,
}

impl ReplyState {
    /// How the request wants its answer written.
    fn answer(&self) -> message::Answer {
        message::Answer::of(&self.request.body)
    }
}

/// The answer to one action request. Complete it exactly once with
/// [`ok`](Reply::ok) or [`error`](Reply::error).
pub struct Reply {
    session: Arc<Session>,
    state: Arc<ReplyState>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reply({})", self.tag())
    }
}

impl Reply {
    /// Answers with the action's result (any JSON value).
    pub fn ok(&self, result: &Value) -> Result<()> {
        let answer = self.state.answer();
        self.complete(message::action_response_body(result, answer.result)?)
    }

    /// Answers with an error that a Python caller raises as
    /// `AcademyRemoteError(message)`.
    pub fn error(&self, text: &str) -> Result<()> {
        self.complete(message::error_body(text, self.state.answer().exception))
    }

    /// Whether the request was answered already (completed, cancelled by
    /// its caller, or answered when serving ended or the mailbox was
    /// terminated): a handler may stop working on it.
    pub fn is_answered(&self) -> bool {
        self.state.done.load(Ordering::Acquire)
    }

    /// The tag of the request this reply answers.
    pub fn tag(&self) -> Uuid {
        self.state.request.header.tag
    }

    /// Gives the reply its handler thread's slot, held until the request
    /// is answered. False (the slot freed) if it was answered already.
    pub(crate) fn hold(&self, permit: Permit) -> bool {
        let mut slot = self.state.permit.lock().unwrap();
        *slot = Some(permit);
        if self.is_answered() {
            slot.take();
            return false;
        }
        true
    }

    /// Answers once. A send that fails while the completer waits for it
    /// (see [`ReplyMode`]: a result too large for the exchange) leaves the
    /// request open, so that the handler can answer again, with an error
    /// say.
    fn complete(&self, body: Value) -> Result<()> {
        if self.state.done.load(Ordering::Acquire) {
            return Err(already_answered());
        }
        self.session.answer(&self.state, body, Answerer::Program)
    }

    /// Answers `ActionCancelled` in the background unless answered
    /// already: for a reply that will never reach the program (its event
    /// was dropped with a freed queue), so that its caller is not left
    /// waiting. Never blocks.
    pub fn abandon(self) {
        let body = message::academy_error_body(ErrorCode::ActionCancelled, None);
        let _ = self
            .session
            .answer_in_background(&self.state, body, Answerer::Program);
    }
}

/// A reply dropped before it was completed (a handler that returned, or
/// panicked, without answering) answers its caller with an error in the
/// background rather than leaving it waiting.
impl Drop for Reply {
    fn drop(&mut self) {
        if self.state.done.load(Ordering::Acquire) {
            return;
        }
        let body = message::error_body(
            "the agent's handler returned without answering this request",
            self.state.answer().exception,
        );
        let _ = self
            .session
            .answer_in_background(&self.state, body, Answerer::Program);
    }
}

/// Who answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answerer {
    /// The program, through its reply.
    Program,
    /// The session itself: a cancel request, or the end of serving.
    Session,
}

fn already_answered() -> Error {
    Error::closed(
        "the request was already answered (with ActionCancelledError if cancelled by the caller or if the agent stopped serving)",
    )
}

impl Session {
    pub(crate) fn new(client: Client, mode: ReplyMode) -> Arc<Session> {
        Arc::new(Session {
            client,
            outstanding: Mutex::new(HashMap::new()),
            ended: AtomicBool::new(false),
            mode,
            accepted: AtomicUsize::new(0),
        })
    }

    /// The reply to an action request handed to the program; it counts as
    /// outstanding until completed (or cancelled).
    pub(crate) fn reply_for(self: &Arc<Self>, request: Message) -> Reply {
        let state = Arc::new(ReplyState {
            request,
            done: AtomicBool::new(false),
            permit: Mutex::new(None),
        });
        self.outstanding
            .lock()
            .unwrap()
            .insert(state.request.header.tag, state.clone());
        Reply {
            session: self.clone(),
            state,
        }
    }

    /// Takes the right to answer an outstanding request (once, unless
    /// [`settle`](Self::settle) gives it back), under the lock of
    /// `outstanding` that [`end`](Self::end) takes too. Once the session
    /// has ended only the session answers: the program's completion then
    /// answers `Closed`, and the session answers the request with
    /// `ActionCancelled`.
    fn claim(
        &self,
        outstanding: &mut HashMap<Uuid, Arc<ReplyState>>,
        state: &ReplyState,
        by: Answerer,
    ) -> Result<()> {
        if by == Answerer::Program && self.ended.load(Ordering::Acquire) {
            return Err(already_answered());
        }
        if state.done.swap(true, Ordering::AcqRel) {
            return Err(already_answered());
        }
        outstanding.remove(&state.request.header.tag);
        Ok(())
    }

    /// After an answer was sent (`Ok`) or not: a sent answer frees its
    /// worker's permit; a failed one makes the request outstanding again,
    /// so that the program can answer it another way, or, if serving ended
    /// meanwhile, answers it with `ActionCancelled` in the background.
    fn settle(&self, state: &Arc<ReplyState>, sent: Result<()>) -> Result<()> {
        if sent.is_ok() {
            state.permit.lock().unwrap().take();
            return sent;
        }
        let mut outstanding = self.outstanding.lock().unwrap();
        if self.ended.load(Ordering::Acquire) {
            drop(outstanding);
            state.permit.lock().unwrap().take();
            if let Ok(response) = state.request.response(cancelled()) {
                respond_in_background(&self.client, &state.request, response.to_json());
            }
        } else {
            state.done.store(false, Ordering::Release);
            outstanding.insert(state.request.header.tag, state.clone());
        }
        sent
    }

    /// Sends the response to an outstanding request, once, from a thread
    /// outside the runtime (a handler's, the program's): in the background,
    /// or waiting for the exchange (see [`ReplyMode`]).
    fn answer(&self, state: &Arc<ReplyState>, body: Value, by: Answerer) -> Result<()> {
        let response = state.request.response(body)?.to_json();
        if self.mode == ReplyMode::Background
            || response.len() <= self.accepted.load(Ordering::Acquire)
        {
            self.queue_answer(state, response, by)?;
            return self.settle(state, Ok(()));
        }
        self.claim(&mut self.outstanding.lock().unwrap(), state, by)?;
        let size = response.len();
        let sent = respond(&self.client, &response);
        if sent.is_ok() {
            self.accepted.fetch_max(size, Ordering::AcqRel);
        }
        self.settle(state, sent)
    }

    /// [`queue_answer`](Self::queue_answer) of `body`. Never blocks.
    fn answer_in_background(&self, state: &ReplyState, body: Value, by: Answerer) -> Result<()> {
        let response = state.request.response(body)?.to_json();
        self.queue_answer(state, response, by)
    }

    /// Claims a request and queues its answer in the client's outbox,
    /// both under the lock that [`end`](Self::end) takes: once the session
    /// has ended, every answer the program was told went out is in the
    /// outbox, where a close waits for it. Never blocks.
    fn queue_answer(&self, state: &ReplyState, response: String, by: Answerer) -> Result<()> {
        let mut outstanding = self.outstanding.lock().unwrap();
        self.claim(&mut outstanding, state, by)?;
        respond_in_background(&self.client, &state.request, response);
        Ok(())
    }

    /// [`answer`](Self::answer) by the session, from a task on the runtime.
    async fn answer_async(&self, state: &Arc<ReplyState>, body: Value) -> Result<()> {
        self.claim(
            &mut self.outstanding.lock().unwrap(),
            state,
            Answerer::Session,
        )?;
        let sent = respond_async(&self.client, &state.request, body).await;
        self.settle(state, sent)
    }

    /// Marks the session ended, under the lock that claims and
    /// [`settle`](Self::settle) take: no failed answer is made outstanding
    /// after it, and every answer the program claimed before it has been
    /// sent or queued in the client's outbox.
    fn end(&self) {
        let _outstanding = self.outstanding.lock().unwrap();
        self.ended.store(true, Ordering::Release);
    }

    fn outstanding(&self) -> Vec<Arc<ReplyState>> {
        self.outstanding.lock().unwrap().values().cloned().collect()
    }

    /// Ends the session: later replies are refused, and every outstanding
    /// request is answered with `ActionCancelled` (blocking).
    fn wind_down(&self) {
        self.end();
        for state in self.outstanding() {
            let _ = self.answer(&state, cancelled(), Answerer::Session);
        }
    }

    /// [`wind_down`](Self::wind_down) from a task on the runtime.
    pub(crate) async fn wind_down_async(&self) {
        self.end();
        for state in self.outstanding() {
            let _ = self.answer_async(&state, cancelled()).await;
        }
    }

    /// Ends the session after serving ended with `outcome`: answers the
    /// requests left with `ActionCancelled`, unless the exchange answered
    /// them itself. An HTTP exchange's terminate answers every request in
    /// progress with MailboxTerminated; a second answer would make
    /// academy-py's Handle fail on a tag it no longer knows (a KeyError
    /// that ends the Python client's listener). Redis and hybrid exchanges
    /// answer only the requests still queued, so the agent answers the
    /// rest.
    pub(crate) fn wind_down_after(&self, outcome: &Result<()>) {
        if self.terminate_answered(outcome) {
            self.end_answered();
        } else {
            self.wind_down();
        }
    }

    /// [`wind_down_after`](Self::wind_down_after) from a task on the
    /// runtime.
    pub(crate) async fn wind_down_after_async(&self, outcome: &Result<()>) {
        if self.terminate_answered(outcome) {
            self.end_answered();
        } else {
            self.wind_down_async().await;
        }
    }

    fn terminate_answered(&self, outcome: &Result<()>) -> bool {
        matches!(outcome, Err(e) if e.status == Status::MailboxTerminated)
            && self.client.inner.transport.answers_pending_at_terminate()
    }

    /// Ends the session with nothing more to send: the requests left were
    /// answered by the exchange; later replies are refused.
    fn end_answered(&self) {
        self.end();
        let left: Vec<Arc<ReplyState>> = self
            .outstanding
            .lock()
            .unwrap()
            .drain()
            .map(|(_, s)| s)
            .collect();
        for state in left {
            state.done.store(true, Ordering::Release);
            state.permit.lock().unwrap().take();
        }
    }
}

fn cancelled() -> Value {
    message::academy_error_body(ErrorCode::ActionCancelled, None)
}

/// Sends the response to `request`. A caller that went away is no error.
async fn respond_async(client: &Client, request: &Message, body: Value) -> Result<()> {
    let response = request.response(body)?;
    match client.send_response(&response).await {
        // The caller went away: nobody to tell, as academy-py logs and goes on.
        Err(e) if matches!(e.status, Status::MailboxTerminated | Status::BadEntityId) => Ok(()),
        other => other,
    }
}

/// Sends a response (JSON) and waits for the exchange (blocking; never on
/// runtime threads). A caller that went away is no error.
fn respond(client: &Client, response: &str) -> Result<()> {
    runtime::block_on(async {
        match client.send_response_json(response).await {
            Err(e) if matches!(e.status, Status::MailboxTerminated | Status::BadEntityId) => Ok(()),
            other => other,
        }
    })?
}

/// Starts sending `response` (JSON) to `request` on the library's runtime
/// (pipelined with other background sends) and returns. A failed send
/// answers the caller with an error saying why (when that can be sent).
fn respond_in_background(client: &Client, request: &Message, response: String) {
    let (Ok(()), Ok(handle)) = (client.check_process(), runtime::handle()) else {
        return;
    };
    client.inner.send_soon(
        &handle,
        Outgoing {
            json: response,
            on_failure: OnFailure::AnswerError(Box::new(request.header.clone())),
        },
    );
}

/// One action request for a handler thread.
struct Job {
    call: ActionCall,
    reply: Reply,
}

/// Serves action requests arriving at `client`'s mailbox until a shutdown
/// request, [`ServeControl::stop`], or the mailbox's termination. Blocks.
///
/// Returns `Ok` after a shutdown request or a stop, and the error
/// (`MailboxTerminated`, ...) when the mailbox went away otherwise.
pub fn serve<H>(client: &Client, handler: H) -> Result<()>
where
    H: Fn(ActionCall, Reply) + Send + Sync + 'static,
{
    let control = client.begin_serving()?;
    let outcome = serve_with(client, &control, handler);
    client.end_serving();
    match outcome {
        Ok(()) if client.is_closed() => Err(Error::closed(format!(
            "the client of {} was closed",
            client.mailbox_id()
        ))),
        other => other,
    }
}

/// [`serve`]: the listener hands each action request to the handler
/// threads as it arrives ([`route`]), with no hop through this thread;
/// this thread does the library's part ([`serve_loop`]).
fn serve_with<H>(client: &Client, control: &Arc<ServeControl>, handler: H) -> Result<()>
where
    H: Fn(ActionCall, Reply) + Send + Sync + 'static,
{
    let session = Session::new(client.clone(), ReplyMode::SizeChecked);
    let workers = Workers::start(
        "academy-agent",
        client.options().max_concurrency,
        move |job: Job, permit| {
            // Not if answered (cancelled) before a thread was free.
            if job.reply.hold(permit) {
                handler(job.call, job.reply)
            }
        },
    )?;
    let (work, inbox) = mpsc::unbounded_channel();
    let jobs = workers.jobs();
    let route = route(session.clone(), work, move |call, reply, _raw| {
        jobs.push(Job { call, reply })
    });
    let outcome = match client.inner.set_route(route) {
        Ok(()) => runtime::block_on(serve_loop(&session, control, inbox)).and_then(|o| o),
        Err(e) => Err(e),
    };
    // No request reaches the handlers after this: the route is gone.
    client.inner.clear_route();
    session.wind_down_after(&outcome);
    workers.close();
    control.mark_wound_down();
    // The answers queued go out before serving returns (bounded).
    let limit = client.options().request_timeout + Duration::from_secs(1);
    let _ = runtime::block_on(client.inner.outbox.replies_sent(limit));
    workers.join(WORKER_JOIN_GRACE);
    outcome
}

/// What the serving loop is handed by the route.
// Moved once per message; a Box would add an allocation to each.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Work {
    /// A request the library answers itself.
    Library(Message),
    /// The listener ended (the client closed, the mailbox went away).
    Ended(Result<()>),
}

/// The route of a served client: each action request goes to `take` at
/// once, with its reply and the message as received, on the listener's
/// thread (it must not block); the rest goes to [`serve_loop`] through
/// `work`.
pub(crate) fn route<T>(session: Arc<Session>, work: mpsc::UnboundedSender<Work>, take: T) -> Route
where
    T: Fn(ActionCall, Reply, String) + Send + Sync + 'static,
{
    let accepted = session.client.options().allowed_deserializers;
    Route(Box::new(move |routed| match routed {
        Routed::Message { raw, parsed } => match sort(raw, parsed, accepted) {
            Sorted::Ignore => {}
            Sorted::Action { call, request, raw } => take(call, session.reply_for(request), raw),
            Sorted::Library(request) => {
                let _ = work.send(Work::Library(request));
            }
        },
        Routed::Ended(outcome) => {
            let _ = work.send(Work::Ended(outcome));
        }
    }))
}

/// Does the library's part of serving until serving ends; returns why.
pub(crate) async fn serve_loop(
    session: &Arc<Session>,
    control: &Arc<ServeControl>,
    mut inbox: mpsc::UnboundedReceiver<Work>,
) -> Result<()> {
    let client = &session.client;
    loop {
        if control.is_stopped() {
            return match client.is_closed() {
                true => Err(Error::closed(format!(
                    "the client of {} was closed",
                    client.mailbox_id()
                ))),
                false => Ok(()),
            };
        }
        let work = tokio::select! {
            _ = control.wake.notified() => continue,
            work = inbox.recv() => work,
        };
        match work {
            Some(Work::Library(request)) => match handle_library(session, request).await? {
                Step::Stop => return Ok(()),
                Step::Continue => {}
            },
            Some(Work::Ended(outcome)) => return outcome,
            None => return Err(Error::internal("the serving route went away")),
        }
    }
}

/// What serving does next, after [`handle_library`] of one request.
pub(crate) enum Step {
    /// Handled by the library: take the next message.
    Continue,
    /// A shutdown request was honoured: serving ends.
    Stop,
}

/// What a message from a served mailbox is for.
pub(crate) enum Sorted {
    /// Not a request (a stray response: academy-py logs and drops it).
    Ignore,
    /// An action request for the program's handler.
    Action {
        call: ActionCall,
        request: Message,
        raw: String,
    },
    /// A request the library answers itself ([`handle_library`]).
    Library(Message),
}

/// Sorts one message from the mailbox (`parsed`: the message, if the
/// caller parsed it already). Never blocks.
pub(crate) fn sort(raw: String, parsed: Option<Message>, accepted: Accepted) -> Sorted {
    let Some(request) = parsed.or_else(|| Message::from_json(&raw).ok()) else {
        return Sorted::Ignore;
    };
    if !request.is_request() {
        return Sorted::Ignore;
    }
    if request.header.compatible() && request.kind() == "action-request" {
        if let Ok(call) = message::decode_action_request(&request.body, accepted) {
            return Sorted::Action { call, request, raw };
        }
    }
    Sorted::Library(request)
}

/// The library's part of serving, as academy-py's agent runtime does it:
/// answers pings, shutdown and cancel requests, and requests it cannot
/// read. An error (the response could not be sent) ends serving.
pub(crate) async fn handle_library(session: &Arc<Session>, request: Message) -> Result<Step> {
    let client = &session.client;
    if !request.header.compatible() {
        let body =
            message::academy_error_body(ErrorCode::IncompatibleProtocol, Some(client.mailbox_id()));
        respond_async(client, &request, body).await?;
        return Ok(Step::Continue);
    }
    match request.kind() {
        "ping-request" => respond_async(client, &request, message::success_body()).await?,
        "shutdown-request" => {
            respond_async(client, &request, message::success_body()).await?;
            // terminate: null means academy-py's default, terminate_on_success.
            let terminate = request
                .body
                .get("terminate")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if terminate {
                client.terminate(client.mailbox_id()).await?;
            }
            return Ok(Step::Stop);
        }
        "cancel-request" => cancel(session, &request).await?,
        "action-request" => {
            // Sorted here only when its body cannot be read.
            let accepted = client.options().allowed_deserializers;
            let body = message::unreadable_request_body(&request.body, accepted);
            respond_async(client, &request, body).await?;
        }
        other => {
            let text = format!("this agent cannot handle a request of kind {other:?}");
            respond_async(client, &request, message::user_error_body(&text)).await?;
        }
    }
    Ok(Step::Continue)
}

/// A cancel request: the target, if it is still running, is answered with
/// `ActionCancelled` (its handler's later reply is dropped), and the cancel
/// itself gets success; an unknown target gets `ActionInvalidState`.
async fn cancel(session: &Arc<Session>, request: &Message) -> Result<()> {
    let target = request
        .body
        .get("target_tag")
        .and_then(Value::as_str)
        .and_then(|t| Uuid::parse_str(t).ok());
    let state = target.and_then(|t| session.outstanding.lock().unwrap().get(&t).cloned());
    let body = match state {
        Some(state) => match session.answer_async(&state, cancelled()).await {
            Ok(()) => message::success_body(),
            Err(_) => message::academy_error_body(ErrorCode::ActionInvalidState, None),
        },
        None => message::academy_error_body(ErrorCode::ActionInvalidState, None),
    };
    respond_async(&session.client, request, body).await
}
