//! Calls without a thread each, and listening to a queue.
//!
//! [`Client::request_with`] starts a request and returns: the request goes
//! out on the library's runtime through the client's outbox (a few sender
//! tasks per client, on a plain http exchange pipelined on one connection,
//! [`crate::transport::Transport::send_background`]), and while it waits
//! for its response the call is only an entry in the client's pending map
//! (`listener::Waiter::Async`) plus one in its deadline set, which one
//! timer task per client watches (`listener::deadline_loop`). No thread,
//! and no task, waits per call, so 10,000 calls in flight cost a few
//! hundred bytes each.
//!
//! Every started call ends exactly once: with its response, an error from
//! the exchange, `Timeout` at its deadline, or `Closed` when the client
//! closes first (`listener::CallDone` makes the last one hold even if the
//! client is freed). A call that returns an error was not started.
//!
//! The `_async` methods end in a [`Completion`] (a `Call` event on a
//! queue); [`Client::listen`] routes the messages no call waits for to a
//! queue as `Message` events.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::listener::{
    deadline_loop, AsyncCall, CallDone, OnFailure, Outgoing, Route, Routed, Waiter,
};
use crate::client::queue::{CallOutput, Completion, Event, EventBody, Queue};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::runtime;
use crate::wire::ids::EntityId;
use crate::wire::message::{self, Message, MessageKind};

impl Client {
    /// Starts a request (matched to its response by tag and label) and
    /// returns at once; `done` gets the response, or why none came, exactly
    /// once, on a library thread (it must not block). `Err`: not started,
    /// and `done` is never called.
    pub fn request_with(
        &self,
        dest: EntityId,
        body: Value,
        timeout: Option<Duration>,
        done: impl FnOnce(Result<Message>) + Send + 'static,
    ) -> Result<()> {
        self.check()?;
        let message = Message::create(
            self.inner.id.clone(),
            dest.clone(),
            body,
            Some(self.inner.label),
        )?;
        if message.header.kind != MessageKind::Request {
            return Err(Error::invalid(format!(
                "a {:?} body is not a request",
                message.kind()
            )));
        }
        let handle = runtime::handle()?;
        self.ensure_deadline_timer(&handle, timeout);
        let tag = message.header.tag;
        let deadline = timeout.and_then(|t| Some((Instant::now().checked_add(t)?, t)));
        // Waiting before the request goes out, so no response is missed.
        self.inner.pending.lock().unwrap().insert(
            tag,
            Waiter::Async(AsyncCall {
                done: CallDone::new(done),
                deadline,
                dest,
            }),
        );
        if let Some((at, _)) = deadline {
            self.inner.deadlines.add(at, tag);
        }
        if self.inner.closed.load(Ordering::Acquire) {
            // Closed meanwhile: if the close already ended the call, its
            // outcome was told and the call counts as started.
            return match self.inner.take_waiter(tag) {
                Some(Waiter::Async(call)) => {
                    call.done.defuse();
                    self.check()
                }
                _ => Ok(()),
            };
        }
        self.inner.send_soon(
            &handle,
            Outgoing {
                json: message.to_json(),
                on_failure: OnFailure::EndCall(tag),
            },
        );
        Ok(())
    }

    /// Starts the timer task of calls without a thread, on the first call
    /// with a timeout.
    fn ensure_deadline_timer(&self, handle: &tokio::runtime::Handle, timeout: Option<Duration>) {
        if timeout.is_none() || self.inner.deadlines.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let task = handle.spawn(deadline_loop(
            std::sync::Arc::downgrade(&self.inner),
            self.inner.deadlines.clone(),
        ));
        self.inner.tasks.lock().unwrap().push(task);
    }

    /// [`action`](Self::action) without waiting: `done` gets the result
    /// JSON, or the error (`Remote` when the action raised), once.
    pub fn action_with(
        &self,
        agent: EntityId,
        action: &str,
        args: &Value,
        kwargs: &Value,
        timeout: Option<Duration>,
        done: impl FnOnce(Result<Value>) + Send + 'static,
    ) -> Result<()> {
        let body = self.action_body(action, args, kwargs)?;
        self.request_with(agent, body, timeout, move |response| {
            done(response.and_then(|m| message::response_result(&m)))
        })
    }

    /// [`ping`](Self::ping) without waiting: `done` gets the round trip.
    pub fn ping_with(
        &self,
        agent: EntityId,
        timeout: Option<Duration>,
        done: impl FnOnce(Result<Duration>) + Send + 'static,
    ) -> Result<()> {
        let start = Instant::now();
        self.request_with(
            agent,
            json!({"kind": "ping-request"}),
            timeout,
            move |response| {
                done(response.and_then(|m| {
                    message::response_result(&m)?;
                    Ok(start.elapsed())
                }))
            },
        )
    }

    /// [`request_with`](Self::request_with) ending in a `Call` event whose
    /// JSON is the response message.
    pub fn request_async(
        &self,
        dest: EntityId,
        body: Value,
        timeout: Option<Duration>,
        to: Completion,
    ) -> Result<()> {
        to.queue().check()?;
        self.request_with(dest, body, timeout, move |r| {
            to.finish(r.map(|m| CallOutput {
                json: Some(m.to_json()),
                rtt: None,
            }))
        })
    }

    /// [`action_with`](Self::action_with) ending in a `Call` event whose
    /// JSON is the action's result.
    pub fn action_async(
        &self,
        agent: EntityId,
        action: &str,
        args: &Value,
        kwargs: &Value,
        timeout: Option<Duration>,
        to: Completion,
    ) -> Result<()> {
        to.queue().check()?;
        self.action_with(agent, action, args, kwargs, timeout, move |r| {
            to.finish(r.map(|v| CallOutput {
                json: Some(v.to_string()),
                rtt: None,
            }))
        })
    }

    /// [`ping_with`](Self::ping_with) ending in a `Call` event with the
    /// round trip.
    pub fn ping_async(
        &self,
        agent: EntityId,
        timeout: Option<Duration>,
        to: Completion,
    ) -> Result<()> {
        to.queue().check()?;
        self.ping_with(agent, timeout, move |r| {
            to.finish(r.map(|rtt| CallOutput {
                json: None,
                rtt: Some(rtt),
            }))
        })
    }

    /// Routes every message that no call waits for to `route` instead of
    /// the inbox that [`recv`](Self::recv) takes from, starting with those
    /// already in the inbox; `route` is called on a library thread (it must
    /// not block), and last with [`Routed::Ended`] when the client closes
    /// or its mailbox goes away. One listen per client; not while serving.
    pub fn listen_with(&self, route: impl Fn(Routed) + Send + Sync + 'static) -> Result<()> {
        self.check()?;
        // Lock order: serving, then route (as begin_serving).
        let serving = self.inner.serving.lock().unwrap();
        if serving.is_some() {
            return Err(Error::invalid(format!(
                "{} is being served: its messages go to the serving loop",
                self.inner.id
            )));
        }
        self.inner.set_route(Route(Box::new(route)))
    }

    /// [`listen_with`](Self::listen_with) into a queue: `Message` events,
    /// then one `Ended` event, all with `token`.
    pub fn listen(&self, queue: &Queue, token: u64) -> Result<()> {
        queue.check()?;
        let queue = queue.clone();
        self.listen_with(move |routed| {
            let body = match routed {
                Routed::Message { raw, .. } => EventBody::Message(raw),
                Routed::Ended(outcome) => EventBody::Ended(outcome),
            };
            queue.post(Event { token, body });
        })
    }
}
