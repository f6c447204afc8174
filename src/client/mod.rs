//! Exchange clients: a factory bound to one exchange, and clients bound to
//! one mailbox each (`HttpExchangeFactory`, `UserExchangeClient` and
//! `AgentExchangeClient` of academy-py).
//!
//! Every client runs two background tasks on the shared runtime:
//! - a listener that keeps one `GET /mailbox/listen` stream open (falling
//!   back to long-poll `GET /message` on servers without it) and routes
//!   each message: a response that a pending [`Client::request`] waits for
//!   goes to that call, anything else to the inbox that
//!   [`Client::recv`] takes from (or, after [`Client::listen_with`], to
//!   the listener's route). The stream stays open across receives
//!   that time out, so academy-py's exchange never writes a message to a
//!   stream nobody reads (it loses such a message).
//! - a heartbeat that keeps the mailbox ACTIVE for Python peers.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

use crate::error::{Error, Result, Status};
use crate::fork::ProcessBound;
use crate::options::exchanges::{HybridOptions, RedisOptions};
use crate::options::FactoryOptions;
use crate::runtime;
use crate::transport::{MailboxStatus, Transport};
use crate::wire::ids::{EntityId, Role};
use crate::wire::message::{self, Message, MessageKind};
use listener::{
    heartbeat_loop, listen_loop, Deadlines, Inner, ListenerState, RecentTags, ServeControl, Waiter,
};
use send_async::InFlight;

pub mod calls;
pub mod listener;
pub mod queue;
pub mod send_async;
pub mod serve;
pub mod serve_queue;
mod workers;

/// Builds clients of one exchange. Cheap to share between threads.
#[derive(Debug, Clone)]
pub struct Factory {
    transport: Arc<Transport>,
    bound: ProcessBound,
}

impl Factory {
    /// A factory for the exchange at `url` with the given options.
    pub fn new(url: &str, options: FactoryOptions) -> Result<Self> {
        Ok(Factory {
            transport: Arc::new(Transport::http(url, options)?),
            bound: ProcessBound::default(),
        })
    }

    /// A factory for academy-py's Redis exchange (`RedisExchangeFactory`).
    /// Does not connect yet: the first client does.
    pub fn redis(options: RedisOptions) -> Result<Self> {
        Ok(Factory {
            transport: Arc::new(Transport::redis(options)?),
            bound: ProcessBound::default(),
        })
    }

    /// A factory for academy-py's hybrid exchange (`HybridExchangeFactory`).
    /// Does not connect yet: the first client does.
    pub fn hybrid(options: HybridOptions) -> Result<Self> {
        Ok(Factory {
            transport: Arc::new(Transport::hybrid(options)?),
            bound: ProcessBound::default(),
        })
    }

    /// Where the exchange is (a URL; `redis://host:port` for the Redis and
    /// hybrid exchanges).
    pub fn url(&self) -> &str {
        self.transport.url()
    }

    /// The `exchange_type` of this exchange's registrations: `"http"`,
    /// `"redis"` or `"hybrid"`.
    pub fn exchange_type(&self) -> &'static str {
        self.transport.exchange_type()
    }

    pub fn options(&self) -> &FactoryOptions {
        self.transport.options()
    }

    pub fn check_process(&self) -> Result<()> {
        self.bound.check("factory")
    }

    /// Registers a new user mailbox and returns its client.
    pub async fn create_user_client(&self, name: Option<&str>) -> Result<Client> {
        self.check_process()?;
        let id = EntityId::new_user(name);
        self.transport.create_mailbox(&id, None).await?;
        Client::start(self.transport.clone(), id).await
    }

    /// A client for an agent mailbox registered before (by
    /// [`Client::register_agent`], here or in Python).
    pub async fn create_agent_client(&self, registration_json: &str) -> Result<Client> {
        self.check_process()?;
        let id = parse_registration(registration_json, self.transport.exchange_type())?;
        match self.transport.mailbox_status(&id).await? {
            MailboxStatus::Missing => {
                return Err(Error::new(
                    Status::BadEntityId,
                    format!("agent {id} is not registered on the exchange"),
                ))
            }
            MailboxStatus::Terminated => {
                return Err(Error::new(
                    Status::MailboxTerminated,
                    format!("the mailbox of agent {id} was terminated"),
                ))
            }
            MailboxStatus::Active | MailboxStatus::Inactive => {}
        }
        Client::start(self.transport.clone(), id).await
    }
}

/// The agent id in a registration `{"agent_id": {...}, "exchange_type": "http"}`
/// for an exchange of type `exchange_type`.
pub fn parse_registration(text: &str, exchange_type: &str) -> Result<EntityId> {
    let value = message::parse_json("registration_json", text)?;
    if let Some(kind) = value.get("exchange_type") {
        if kind != exchange_type {
            return Err(Error::invalid(format!(
                "registration is for a {kind} exchange, not a {exchange_type:?} one"
            )));
        }
    }
    let id = value
        .get("agent_id")
        .ok_or_else(|| Error::invalid("registration_json has no agent_id"))
        .and_then(EntityId::from_value)?;
    if id.role != Role::Agent {
        return Err(Error::invalid(
            "registration agent_id must have role \"agent\"",
        ));
    }
    Ok(id)
}

/// A client bound to one mailbox. Clones share the client.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    async fn start(transport: Arc<Transport>, id: EntityId) -> Result<Client> {
        let inner = Arc::new(Inner {
            id,
            label: crate::wire::ids::random_uuid(),
            bound: ProcessBound::default(),
            inbox: Mutex::new(VecDeque::new()),
            changed: Notify::new(),
            pending: Mutex::new(HashMap::new()),
            deadlines: Arc::new(Deadlines::default()),
            route: Mutex::new(None),
            state: Mutex::new(ListenerState::Running),
            closed: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            listen_task: Mutex::new(None),
            stop_listen: Arc::new(Notify::new()),
            left_over: Mutex::new(Vec::new()),
            serving: Mutex::new(None),
            recent: Mutex::new(RecentTags::default()),
            late_answers: Default::default(),
            in_flight: InFlight::new(transport.options().max_in_flight),
            outbox: Default::default(),
            transport,
        });
        // Receiving starts before the first heartbeat (on the hybrid
        // exchange, the client listens for peers as academy-py's does).
        if let Err(e) = inner.transport.start_receiving(&inner.id).await {
            inner.closed.store(true, Ordering::Release); // nothing to stop
            return Err(e);
        }
        // The first heartbeat before returning, so peers see ACTIVE at once.
        match inner.transport.heartbeat(&inner.id).await {
            Ok(()) => {}
            Err(e) if e.is_missing_endpoint() => {}
            Err(e) => {
                inner.closed.store(true, Ordering::Release);
                inner.transport.stop_receiving(&inner.id).await;
                return Err(e);
            }
        }
        let handle = runtime::handle()?;
        let listener = handle.spawn(listen_loop(Arc::downgrade(&inner)));
        let heartbeat = handle.spawn(heartbeat_loop(Arc::downgrade(&inner)));
        *inner.listen_task.lock().unwrap() = Some(listener);
        inner.tasks.lock().unwrap().push(heartbeat);
        Ok(Client { inner })
    }

    /// The id of this client's mailbox.
    pub fn mailbox_id(&self) -> &EntityId {
        &self.inner.id
    }

    pub fn options(&self) -> &FactoryOptions {
        self.inner.transport.options()
    }

    fn check(&self) -> Result<()> {
        self.inner.bound.check("client")?;
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::closed(format!(
                "the client of {} was closed",
                self.inner.id
            )));
        }
        Ok(())
    }

    /// Whether this process made the client (false in a forked child).
    pub fn in_this_process(&self) -> bool {
        self.check_process().is_ok()
    }

    /// `Closed`, with the reason, in a process other than the one that
    /// made the client (a forked child).
    pub fn check_process(&self) -> Result<()> {
        self.inner.bound.check("client")
    }

    /// How many answers to this client's calls came after the call had
    /// ended (timed out) and were dropped, as academy-py drops them,
    /// instead of reaching [`recv`](Self::recv).
    pub fn late_answers(&self) -> u64 {
        self.inner.late_answers.load(Ordering::Relaxed)
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    fn transport(&self) -> Result<&Arc<Transport>> {
        self.check()?;
        Ok(&self.inner.transport)
    }

    /// Registers a new agent mailbox. `agent_types` is the comma-joined
    /// class MRO, most derived first. Returns the registration JSON.
    pub async fn register_agent(&self, agent_types: &str, name: Option<&str>) -> Result<String> {
        let types: Vec<&str> = agent_types.split(',').map(str::trim).collect();
        if types.iter().any(|t| t.is_empty()) {
            return Err(Error::invalid(
                "agent_types must be a comma-joined list of class names, most derived first (e.g. \"mymod.Calc\")",
            ));
        }
        let id = EntityId::new_agent(name);
        self.transport()?
            .create_mailbox(&id, Some(&types.join(",")))
            .await?;
        let exchange_type = self.inner.transport.exchange_type();
        Ok(json!({"agent_id": id, "exchange_type": exchange_type}).to_string())
    }

    /// Sends a message (its JSON, checked first, goes out as given).
    pub async fn send(&self, message_json: &str) -> Result<()> {
        Message::from_json(message_json)?;
        self.transport()?.send(message_json).await
    }

    /// Starts sending a message (its JSON, checked first, goes out as given)
    /// and returns without waiting for the exchange: `done` gets the
    /// outcome, once, on a library thread. While `max_in_flight` (a factory
    /// option) sends of this client are pending, waits for one to end.
    pub fn send_in_background(
        &self,
        message_json: &str,
        done: impl FnOnce(Result<()>) + Send + 'static,
    ) -> Result<()> {
        Message::from_json(message_json)?;
        let transport = self.transport()?.clone();
        self.inner.in_flight.start(
            || self.check(),
            transport,
            message_json.to_owned(),
            Box::new(done),
        )
    }

    /// Waits until the background sends started before this call have
    /// ended (`None`: without a time limit). `Ok` if every background send
    /// since the previous flush succeeded, else the first failure's error.
    pub async fn flush(&self, timeout: Option<Duration>) -> Result<()> {
        self.check_process()?;
        self.inner.in_flight.flush(timeout).await
    }

    async fn send_message(&self, message: &Message) -> Result<()> {
        self.transport()?.send(&message.to_json()).await
    }

    /// The next message for this mailbox that no call is waiting for.
    /// `None` waits forever; a zero timeout only takes what has arrived.
    pub async fn recv(&self, timeout: Option<Duration>) -> Result<String> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            self.check()?;
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(message) = self.inner.inbox.lock().unwrap().pop_front() {
                return Ok(message);
            }
            let state = self.inner.state.lock().unwrap().clone();
            if let ListenerState::Ended(e) = state {
                return Err(e);
            }
            match deadline {
                None => notified.await,
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline
                        || tokio::time::timeout(deadline - now, notified)
                            .await
                            .is_err()
                    {
                        // One last look: a message may have come in just now.
                        if let Some(message) = self.inner.inbox.lock().unwrap().pop_front() {
                            return Ok(message);
                        }
                        return Err(match self.inner.state.lock().unwrap().clone() {
                            ListenerState::Failing(e) | ListenerState::Ended(e) => e,
                            ListenerState::Running => Error::timeout(format!(
                                "no message for {} within {:.3} s",
                                self.inner.id,
                                timeout.unwrap_or_default().as_secs_f64()
                            )),
                        });
                    }
                }
            }
        }
    }

    /// Sends a request and waits for its response (matched by tag and
    /// label). Many requests may be in flight at once from many threads.
    pub async fn request(
        &self,
        dest: EntityId,
        body: Value,
        timeout: Option<Duration>,
    ) -> Result<Message> {
        self.check()?;
        let message = Message::create(self.inner.id.clone(), dest, body, Some(self.inner.label))?;
        if message.header.kind != MessageKind::Request {
            return Err(Error::invalid(format!(
                "a {:?} body is not a request",
                message.kind()
            )));
        }
        let (tx, rx) = oneshot::channel();
        let tag = message.header.tag;
        self.inner
            .pending
            .lock()
            .unwrap()
            .insert(tag, Waiter::Blocked(tx));
        let _guard = PendingGuard {
            inner: &self.inner,
            tag,
        };
        // A caller blocked in the library sends on its own thread (see
        // `crate::transport::http1`), then waits until the listener hands it the
        // answer, polling for a while first (`FactoryOptions::busy_poll`).
        let transport = self.transport()?;
        // The runtime thread stays awake through the round trip too, for
        // about as long as the caller polls (the acknowledgement comes at
        // once; then the answer).
        let _awake = runtime::keep_runtime_awake(transport.options().busy_poll);
        transport.send_request(&message.to_json()).await?;
        let answer = async {
            match timeout {
                None => Ok(rx.await),
                Some(t) => tokio::time::timeout(t, rx).await.map_err(|_| {
                    Error::timeout(format!(
                        "no response from {} within {:.3} s",
                        message.header.dest,
                        t.as_secs_f64()
                    ))
                }),
            }
        };
        let outcome = runtime::busy_polled(answer, transport.options().busy_poll).await?;
        match outcome {
            Ok(reply) => reply,
            Err(_) => Err(Error::closed(format!(
                "the client of {} was closed",
                self.inner.id
            ))),
        }
    }

    /// Sends a request whose response nobody waits for (it is dropped when
    /// it arrives instead of reaching [`recv`](Self::recv)).
    pub async fn request_no_wait(&self, dest: EntityId, body: Value) -> Result<()> {
        self.check()?;
        let message = Message::create(self.inner.id.clone(), dest, body, Some(self.inner.label))?;
        self.inner
            .pending
            .lock()
            .unwrap()
            .insert(message.header.tag, Waiter::Nobody);
        let sent = self.send_message(&message).await;
        if sent.is_err() {
            self.inner
                .pending
                .lock()
                .unwrap()
                .remove(&message.header.tag);
        }
        sent
    }

    /// Calls an action (its arguments written as the factory's
    /// `request_serialization` says); returns the JSON form of its result.
    pub async fn action(
        &self,
        agent: EntityId,
        action: &str,
        args: &Value,
        kwargs: &Value,
        timeout: Option<Duration>,
    ) -> Result<Value> {
        let body = self.action_body(action, args, kwargs)?;
        let response = self.request(agent, body, timeout).await?;
        message::response_result(&response)
    }

    /// The body of an action request, its arguments written as the
    /// factory's `request_serialization` says.
    fn action_body(&self, action: &str, args: &Value, kwargs: &Value) -> Result<Value> {
        let mode = self.options().request_serialization;
        message::action_request_body(action, args, kwargs, mode)
    }

    /// Pings an agent; returns the round-trip time.
    pub async fn ping(&self, agent: EntityId, timeout: Option<Duration>) -> Result<Duration> {
        let start = Instant::now();
        let response = self
            .request(agent, json!({"kind": "ping-request"}), timeout)
            .await?;
        message::response_result(&response)?;
        Ok(start.elapsed())
    }

    /// Asks an agent to shut down (`terminate`: `None` lets the agent
    /// decide, as academy-py's default). Does not wait for the agent.
    pub async fn shutdown_agent(&self, agent: EntityId, terminate: Option<bool>) -> Result<()> {
        self.request_no_wait(
            agent,
            json!({"terminate": terminate, "kind": "shutdown-request"}),
        )
        .await
    }

    /// The status of a mailbox as academy-py's client derives it: from the
    /// heartbeat age (ACTIVE while younger than 3 intervals), or from
    /// `GET /mailbox` on servers that take no heartbeats.
    pub async fn status(&self, id: &EntityId) -> Result<MailboxStatus> {
        self.transport()?.status(id).await
    }

    /// Terminates a mailbox (a no-op for unknown or terminated ones).
    pub async fn terminate(&self, id: &EntityId) -> Result<()> {
        self.transport()?.terminate(id).await
    }

    /// Agents of a class (or, with `allow_subclasses`, of its subclasses).
    pub async fn discover(
        &self,
        agent_type: &str,
        allow_subclasses: bool,
    ) -> Result<Vec<EntityId>> {
        let uids = self
            .transport()?
            .discover(agent_type, allow_subclasses)
            .await?;
        Ok(uids.into_iter().map(EntityId::agent_from_uid).collect())
    }

    /// Sends a heartbeat for this client's mailbox now.
    pub async fn heartbeat(&self) -> Result<()> {
        self.transport()?.heartbeat(&self.inner.id).await
    }

    /// Seconds since a mailbox's last heartbeat (`None`: never).
    pub async fn heartbeat_status(&self, id: &EntityId) -> Result<Option<f64>> {
        self.transport()?.heartbeat_status(id).await
    }

    /// The exchange's counters for an agent, as a JSON object.
    pub async fn agent_stats(&self, id: &EntityId) -> Result<Value> {
        self.transport()?.agent_stats(id).await
    }

    pub async fn share_mailbox(&self, id: &EntityId, group_id: &str) -> Result<()> {
        self.transport()?.share_mailbox(id, group_id).await
    }

    pub async fn shared_groups(&self, id: &EntityId) -> Result<Vec<String>> {
        self.transport()?.shared_groups(id).await
    }

    pub async fn unshare_mailbox(&self, id: &EntityId, group_id: &str) -> Result<()> {
        self.transport()?.unshare_mailbox(id, group_id).await
    }

    /// Marks the client as serving; one serve at a time.
    pub(crate) fn begin_serving(&self) -> Result<Arc<ServeControl>> {
        self.check()?;
        let mut serving = self.inner.serving.lock().unwrap();
        if serving.is_some() {
            return Err(Error::invalid(format!(
                "{} is already being served",
                self.inner.id
            )));
        }
        if self.inner.route.lock().unwrap().is_some() {
            return Err(Error::invalid(format!(
                "the messages of {} go to a queue (academy_client_listen), so it cannot serve",
                self.inner.id
            )));
        }
        let control = ServeControl::new();
        *serving = Some(control.clone());
        Ok(control)
    }

    pub(crate) fn end_serving(&self) {
        if let Some(control) = self.inner.serving.lock().unwrap().take() {
            control.mark_wound_down();
        }
    }

    /// Sends a serving session's response. Unlike [`send`](Self::send),
    /// allowed while [`close`](Self::close) winds the session down, so that
    /// the requests in progress are answered before the client ends.
    pub(crate) async fn send_response(&self, response: &Message) -> Result<()> {
        self.send_response_json(&response.to_json()).await
    }

    /// [`send_response`](Self::send_response) of a response as JSON.
    pub(crate) async fn send_response_json(&self, response: &str) -> Result<()> {
        self.check_process()?;
        self.inner.transport.send(response).await
    }

    /// Ends a [`crate::client::serve::serve`] or
    /// [`crate::client::serve_queue::serve_queue`] running on this client
    /// (from any thread). Returns whether one was running.
    pub fn stop_serving(&self) -> Result<bool> {
        self.inner.bound.check("client")?;
        let control = self.inner.serving.lock().unwrap().clone();
        Ok(control.map(|c| c.stop()).is_some())
    }

    /// Stops the background tasks; a user client also terminates its own
    /// mailbox (an agent's mailbox stays, so the agent can come back).
    /// Closing twice is a no-op.
    pub async fn close(&self) -> Result<()> {
        self.inner.bound.check("client")?;
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Messages handed to send_in_background go out before the mailbox
        // is terminated (each send is bounded by the request timeout).
        self.inner.in_flight.wait_idle().await;
        // The listen stream ends first and is gone before close goes on
        // (what it brought past this point is kept to be put back), so
        // that what arrives from now on waits in the mailbox's queue.
        self.inner.stop_listener().await;
        // Redis and hybrid exchanges: receiving stops too (what the reader
        // took goes back to the queue's head), and a user's terminate
        // answers the requests left in the queue.
        self.inner.transport.stop_receiving(&self.inner.id).await;
        // Terminate first: the server then ends the listen stream itself.
        let terminated = if self.inner.id.role == Role::User {
            self.inner.transport.terminate(&self.inner.id).await
        } else {
            Ok(())
        };
        let serving = self.inner.serving.lock().unwrap().clone();
        if let Some(control) = serving {
            control.stop();
            // The requests in progress are answered (ActionCancelled)
            // before the client ends.
            control.wound_down(self.options().request_timeout).await;
        }
        // Replies the program completed (academy_reply_ok returned OK) go
        // out before the client ends, also those completed just before
        // serving ended.
        self.inner
            .outbox
            .replies_sent(self.options().request_timeout + Duration::from_secs(1))
            .await;
        self.inner.shutdown();
        // An agent's messages that arrived and nobody took go back to its
        // mailbox for its next client.
        let put_back = if self.inner.id.role == Role::User {
            Ok(())
        } else {
            self.inner.put_back_unread().await
        };
        terminated.and(put_back)
    }
}

/// Removes a pending entry when its request ends in any way.
struct PendingGuard<'a> {
    inner: &'a Inner,
    tag: Uuid,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.inner.pending.lock().unwrap().remove(&self.tag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registrations() {
        let id = EntityId::new_agent(Some("a"));
        let reg = json!({"agent_id": id, "exchange_type": "http"}).to_string();
        assert_eq!(parse_registration(&reg, "http").unwrap(), id);
        for bad in [
            "{}",
            "nope",
            r#"{"agent_id": {"uid": "80b78938-3bd9-4a0e-85ec-e2cb02f3a507", "name": null, "role": "user"}}"#,
            r#"{"agent_id": {"uid": "80b78938-3bd9-4a0e-85ec-e2cb02f3a507", "name": null, "role": "agent"}, "exchange_type": "redis"}"#,
        ] {
            assert_eq!(
                parse_registration(bad, "http").unwrap_err().status,
                Status::InvalidArgument,
                "{bad}"
            );
        }
    }
}
