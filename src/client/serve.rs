//! Serving an agent: the agent runtime of academy-py (`academy.runtime`),
//! for handlers written in another language.
//!
//! [`serve`] blocks the calling thread. It answers pings, honours shutdown
//! and cancel requests, answers requests it cannot read (pickle, another
//! protocol major version) the way academy-py does, and hands each action
//! request to the handler on one of `max_concurrency` worker threads that
//! the library starts (never on the runtime's threads, so a handler may
//! call any blocking function of the library). A handler completes its
//! [`Reply`] exactly once, then or later, from any thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::client::listener::ServeControl;
use crate::client::Client;
use crate::error::{Error, Result, Status};
use crate::runtime;
use crate::wire::message::{self, ActionCall, ErrorCode, Message};

/// How long [`serve`] waits for handlers still running when it ends.
const WORKER_JOIN_GRACE: Duration = Duration::from_secs(2);

/// What the replies of one serving session share.
struct Session {
    client: Client,
    /// Requests handed to the handler and not answered yet, by tag.
    outstanding: Mutex<HashMap<Uuid, Arc<ReplyState>>>,
    ended: AtomicBool,
}

struct ReplyState {
    request: Message,
    done: AtomicBool,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

/// The answer to one action request. Complete it exactly once with
/// [`ok`](Reply::ok) or [`error`](Reply::error).
pub struct Reply {
    session: Arc<Session>,
    state: Arc<ReplyState>,
}

impl Reply {
    /// Answers with the action's result (any JSON value).
    pub fn ok(&self, result: &Value) -> Result<()> {
        self.complete(message::action_response_body(result))
    }

    /// Answers with an error that a Python caller raises as
    /// `AcademyRemoteError(message)`.
    pub fn error(&self, text: &str) -> Result<()> {
        self.complete(message::user_error_body(text))
    }

    /// The tag of the request this reply answers.
    pub fn tag(&self) -> Uuid {
        self.state.request.header.tag
    }

    fn complete(&self, body: Value) -> Result<()> {
        if self.state.done.load(Ordering::Acquire) {
            return Err(Error::closed(
                "the request was already answered with ActionCancelledError (cancelled by the caller, or the agent stopped serving)",
            ));
        }
        self.session.answer(&self.state, body)
    }
}

impl Session {
    /// Sends the response to an outstanding request, once.
    fn answer(&self, state: &ReplyState, body: Value) -> Result<()> {
        if state.done.swap(true, Ordering::AcqRel) {
            return Err(Error::invalid("this request was already answered"));
        }
        self.outstanding
            .lock()
            .unwrap()
            .remove(&state.request.header.tag);
        state.permit.lock().unwrap().take();
        respond(&self.client, &state.request, body)
    }

    /// Answers every outstanding request with `ActionCancelled`.
    fn cancel_all(&self) {
        let states: Vec<_> = self.outstanding.lock().unwrap().values().cloned().collect();
        for state in states {
            let _ = self.answer(
                &state,
                message::academy_error_body(ErrorCode::ActionCancelled, None),
            );
        }
    }
}

/// Sends the response to `request` (blocking; never on runtime threads).
fn respond(client: &Client, request: &Message, body: Value) -> Result<()> {
    let response = request.response(body)?;
    match runtime::block_on(client.send(&response.to_json()))? {
        // The caller went away: nobody to tell, as academy-py logs and goes on.
        Err(e) if matches!(e.status, Status::MailboxTerminated | Status::BadEntityId) => Ok(()),
        other => other,
    }
}

/// One unit of work for a worker thread.
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
    outcome
}

fn serve_with<H>(client: &Client, control: &Arc<ServeControl>, handler: H) -> Result<()>
where
    H: Fn(ActionCall, Reply) + Send + Sync + 'static,
{
    let workers = client.options().max_concurrency;
    let session = Arc::new(Session {
        client: client.clone(),
        outstanding: Mutex::new(HashMap::new()),
        ended: AtomicBool::new(false),
    });
    let permits = Arc::new(Semaphore::new(workers));
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let handler = Arc::new(handler);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    for n in 0..workers {
        let rx = rx.clone();
        let handler = handler.clone();
        let done_tx = done_tx.clone();
        thread::Builder::new()
            .name(format!("academy-agent-{n}"))
            .spawn(move || {
                loop {
                    let job = rx.lock().unwrap().recv();
                    match job {
                        Ok(job) => handler(job.call, job.reply),
                        Err(_) => break,
                    }
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| Error::internal(format!("cannot start a serving thread: {e}")))?;
    }
    drop(done_tx);

    let outcome = dispatch(&session, control, &permits, &tx);

    // Wind down: no new jobs, answer what is left, give handlers a moment.
    drop(tx);
    session.ended.store(true, Ordering::Release);
    session.cancel_all();
    let deadline = std::time::Instant::now() + WORKER_JOIN_GRACE;
    for _ in 0..workers {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break; // a handler still runs; its thread ends when it returns
        }
    }
    outcome
}

/// The receive loop of [`serve`].
fn dispatch(
    session: &Arc<Session>,
    control: &Arc<ServeControl>,
    permits: &Arc<Semaphore>,
    jobs: &mpsc::Sender<Job>,
) -> Result<()> {
    let client = &session.client;
    loop {
        if control.is_stopped() {
            return Ok(());
        }
        let received = runtime::block_on(async {
            tokio::select! {
                _ = control.wake.notified() => None,
                m = client.recv(Some(Duration::from_millis(500))) => Some(m),
            }
        })?;
        let raw = match received {
            None => continue,
            Some(Ok(raw)) => raw,
            // The mailbox is gone, not ours, or the client closed: stop.
            Some(Err(e)) if e.is_final() || e.status == Status::Closed => return Err(e),
            // Anything else (a timeout, the exchange down or answering 5xx)
            // is transient: the listener keeps reconnecting.
            Some(Err(_)) => continue,
        };
        let Ok(request) = Message::from_json(&raw) else {
            continue;
        };
        if !request.is_request() {
            continue; // a stray response: academy-py logs and drops it
        }
        if !request.header.compatible() {
            let body = message::academy_error_body(
                ErrorCode::IncompatibleProtocol,
                Some(client.mailbox_id()),
            );
            respond(client, &request, body)?;
            continue;
        }
        match request.kind() {
            "ping-request" => respond(client, &request, message::success_body())?,
            "shutdown-request" => {
                respond(client, &request, message::success_body())?;
                // terminate: null means academy-py's default, terminate_on_success.
                let terminate = request
                    .body
                    .get("terminate")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                if terminate {
                    runtime::block_on(client.terminate(client.mailbox_id()))??;
                }
                return Ok(());
            }
            "cancel-request" => cancel(session, &request)?,
            "action-request" => match message::decode_action_request(&request.body) {
                Err(e) => respond(client, &request, message::user_error_body(&e.message))?,
                Ok(call) => {
                    let permit = runtime::block_on(async {
                        tokio::select! {
                            _ = control.wake.notified() => None,
                            p = permits.clone().acquire_owned() => p.ok(),
                        }
                    })?;
                    let Some(permit) = permit else {
                        // Stopped while waiting: this one is answered too.
                        respond(
                            client,
                            &request,
                            message::academy_error_body(ErrorCode::ActionCancelled, None),
                        )?;
                        return Ok(());
                    };
                    let state = Arc::new(ReplyState {
                        request,
                        done: AtomicBool::new(false),
                        permit: Mutex::new(Some(permit)),
                    });
                    session
                        .outstanding
                        .lock()
                        .unwrap()
                        .insert(state.request.header.tag, state.clone());
                    let reply = Reply {
                        session: session.clone(),
                        state,
                    };
                    if jobs.send(Job { call, reply }).is_err() {
                        return Err(Error::internal("the serving threads are gone"));
                    }
                }
            },
            other => {
                let text = format!("this agent cannot handle a request of kind {other:?}");
                respond(client, &request, message::user_error_body(&text))?;
            }
        }
    }
}

/// A cancel request: the target, if it is still running, is answered with
/// `ActionCancelled` (its handler's later reply is dropped), and the cancel
/// itself gets success; an unknown target gets `ActionInvalidState`.
fn cancel(session: &Arc<Session>, request: &Message) -> Result<()> {
    let target = request
        .body
        .get("target_tag")
        .and_then(Value::as_str)
        .and_then(|t| Uuid::parse_str(t).ok());
    let state = target.and_then(|t| session.outstanding.lock().unwrap().get(&t).cloned());
    let body = match state {
        Some(state) => {
            let cancelled = session.answer(
                &state,
                message::academy_error_body(ErrorCode::ActionCancelled, None),
            );
            match cancelled {
                Ok(()) => message::success_body(),
                Err(_) => message::academy_error_body(ErrorCode::ActionInvalidState, None),
            }
        }
        None => message::academy_error_body(ErrorCode::ActionInvalidState, None),
    };
    respond(&session.client, request, body)
}
