//! Transports to an Academy exchange: what a client asks of the exchange,
//! whichever kind it is.
//!
//! [`Transport`] is the one face the client layer sees. Each kind of
//! exchange answers it in its own module:
//! - [`http`]: academy-py's HTTP exchange (`HttpExchangeTransport`), with
//!   the one request path (retries, back-off, auth refresh, status
//!   mapping), over [`http1`] (our HTTP/1.1 client) or reqwest, and
//!   [`http_listen`] for receiving.
//! - [`redis`]: academy-py's Redis exchange (`RedisExchangeTransport`):
//!   clients keep the mailboxes in Redis themselves.
//! - [`hybrid`]: academy-py's hybrid exchange (`HybridExchangeTransport`):
//!   mailbox state in Redis, messages from peer to peer over TCP
//!   ([`peer`]), Redis queues as the fallback.
//!
//! The last two share [`redis_keys`] (academy-py's keys and values) and
//! [`redis_store`] (the connection to Redis and the reading of queues).
//!
//! [`mailbox`] holds what every kind shares: mailbox statuses and the
//! [`Inbound`](mailbox::Inbound) stream of a mailbox's messages.

use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use crate::error::Result;
use crate::options::exchanges::{HybridOptions, RedisOptions};
use crate::options::FactoryOptions;
use crate::wire::ids::EntityId;

pub mod auth;
pub mod http;
pub mod http1;
pub mod http_listen;
pub mod hybrid;
pub mod mailbox;
pub mod peer;
pub mod redis;
pub mod redis_keys;
pub mod redis_store;
pub mod url_login;

pub use http::HttpTransport;
pub use hybrid::HybridTransport;
pub use mailbox::{Inbound, MailboxStatus};
pub use redis::RedisTransport;

/// A connection to one exchange, shared by the clients of one factory.
// One per factory, behind an Arc: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Transport {
    /// academy-py's HTTP exchange, or ours.
    Http(HttpTransport),
    /// academy-py's Redis exchange.
    Redis(RedisTransport),
    /// academy-py's hybrid exchange.
    Hybrid(HybridTransport),
}

/// Runs the same expression on whichever transport `self` is.
macro_rules! each {
    ($self:ident, $t:ident => $e:expr) => {
        match $self {
            Transport::Http($t) => $e,
            Transport::Redis($t) => $e,
            Transport::Hybrid($t) => $e,
        }
    };
}

impl Transport {
    /// A transport to the HTTP exchange at `url` (`http://` or `https://`).
    pub fn http(url: &str, options: FactoryOptions) -> Result<Transport> {
        HttpTransport::new(url, options).map(Transport::Http)
    }

    /// A transport to academy-py's Redis exchange (connects on first use).
    pub fn redis(options: RedisOptions) -> Result<Transport> {
        RedisTransport::new(options).map(Transport::Redis)
    }

    /// A transport to academy-py's hybrid exchange (connects on first use).
    pub fn hybrid(options: HybridOptions) -> Result<Transport> {
        HybridTransport::new(options).map(Transport::Hybrid)
    }

    /// The `exchange_type` of this exchange's agent registrations, as
    /// academy-py writes it.
    pub fn exchange_type(&self) -> &'static str {
        match self {
            Transport::Http(_) => "http",
            Transport::Redis(_) => "redis",
            Transport::Hybrid(_) => "hybrid",
        }
    }

    /// Where the exchange is, for messages.
    pub fn url(&self) -> &str {
        each!(self, t => t.url())
    }

    pub fn options(&self) -> &FactoryOptions {
        each!(self, t => t.options())
    }

    /// Registers a user or (with its class MRO) an agent mailbox.
    pub async fn create_mailbox(&self, id: &EntityId, agent_mro: Option<&str>) -> Result<()> {
        each!(self, t => t.create_mailbox(id, agent_mro).await)
    }

    /// The mailbox's status as the exchange stores it (MISSING, ACTIVE or
    /// TERMINATED).
    pub async fn mailbox_status(&self, id: &EntityId) -> Result<MailboxStatus> {
        each!(self, t => t.mailbox_status(id).await)
    }

    /// The mailbox's status as academy-py's client derives it (ACTIVE only
    /// while its heartbeats are fresh).
    pub async fn status(&self, id: &EntityId) -> Result<MailboxStatus> {
        each!(self, t => t.status(id).await)
    }

    /// Terminates a mailbox (a no-op for unknown or terminated ones).
    pub async fn terminate(&self, id: &EntityId) -> Result<()> {
        each!(self, t => t.terminate(id).await)
    }

    /// Sends a message (its JSON, as given).
    pub async fn send(&self, message_json: &str) -> Result<()> {
        each!(self, t => t.send(message_json).await)
    }

    /// [`send`](Self::send) for a request whose caller then waits for the
    /// answer (a blocked caller may poll for it before sleeping).
    pub async fn send_request(&self, message_json: &str) -> Result<()> {
        each!(self, t => t.send_request(message_json).await)
    }

    /// [`send`](Self::send) made in the background on the library's
    /// runtime (pipelined where the exchange allows).
    pub async fn send_background(&self, message_json: &str) -> Result<()> {
        each!(self, t => t.send_background(message_json).await)
    }

    /// Whether terminating a mailbox answers every request in progress to
    /// it (academy-py's HTTP exchange and ours), or only those still
    /// queued (the Redis and hybrid exchanges).
    pub fn answers_pending_at_terminate(&self) -> bool {
        matches!(self, Transport::Http(_))
    }

    /// Opens the next receive of a mailbox's messages.
    pub async fn inbound(&self, id: &EntityId) -> Result<Box<dyn Inbound>> {
        each!(self, t => t.inbound(id).await)
    }

    /// Starts what a client of the mailbox needs to receive: nothing on
    /// the HTTP exchange (each [`inbound`](Self::inbound) opens a stream);
    /// the reader of the mailbox's Redis queue on the Redis exchange; that
    /// and a TCP listener, advertised to peers, on the hybrid exchange.
    /// Each call is ended by one [`stop_receiving`](Self::stop_receiving).
    pub async fn start_receiving(&self, id: &EntityId) -> Result<()> {
        match self {
            Transport::Http(_) => Ok(()),
            Transport::Redis(t) => t.start_receiving(id).await,
            Transport::Hybrid(t) => t.start_receiving(id).await,
        }
    }

    /// Ends a [`start_receiving`](Self::start_receiving). Messages taken
    /// from the exchange and not handed out go back to the mailbox's queue.
    pub async fn stop_receiving(&self, id: &EntityId) {
        match self {
            Transport::Http(_) => {}
            Transport::Redis(t) => t.stop_receiving(id).await,
            Transport::Hybrid(t) => t.stop_receiving(id).await,
        }
    }

    /// Asks the exchange to end a receive that has a
    /// [`stop_token`](Inbound::stop_token) (our HTTP exchange's listen
    /// streams); nothing to do elsewhere.
    pub async fn end_receive(&self, id: &EntityId, token: &str) -> Result<()> {
        match self {
            Transport::Http(t) => t.end_listen(id, token).await,
            Transport::Redis(_) | Transport::Hybrid(_) => Ok(()),
        }
    }

    /// After a receive of `id` was dropped that the exchange may go on
    /// serving ([`Inbound::outlives_drop`], or one dropped while opening),
    /// makes sure the handler left behind takes no real message.
    pub async fn wake_left_handler(&self, id: &EntityId) -> Result<()> {
        match self {
            Transport::Http(t) => t.wake_left_handler(id).await,
            Transport::Redis(_) | Transport::Hybrid(_) => Ok(()),
        }
    }

    /// Puts messages that a client of `id` received and did not hand out
    /// back into the mailbox, oldest first in `messages`: at the head of
    /// the queue where the exchange allows (Redis, hybrid, our HTTP
    /// exchange), else at its tail.
    pub async fn requeue(&self, id: &EntityId, messages: &[String]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        match self {
            Transport::Http(t) => t.requeue(id, messages).await,
            Transport::Redis(t) => t.requeue(id, messages).await,
            Transport::Hybrid(t) => t.requeue(id, messages).await,
        }
    }

    /// Uids of the agents of a class (or of its subclasses).
    pub async fn discover(&self, agent: &str, allow_subclasses: bool) -> Result<Vec<Uuid>> {
        each!(self, t => t.discover(agent, allow_subclasses).await)
    }

    /// Marks the mailbox alive now.
    pub async fn heartbeat(&self, id: &EntityId) -> Result<()> {
        each!(self, t => t.heartbeat(id).await)
    }

    /// Seconds since a mailbox's last heartbeat (`None`: never).
    pub async fn heartbeat_status(&self, id: &EntityId) -> Result<Option<f64>> {
        each!(self, t => t.heartbeat_status(id).await)
    }

    /// How often clients send heartbeats.
    pub fn heartbeat_interval(&self) -> Duration {
        self.options().heartbeat_interval
    }

    /// The exchange's counters for an agent, as a JSON object.
    pub async fn agent_stats(&self, id: &EntityId) -> Result<Value> {
        each!(self, t => t.agent_stats(id).await)
    }

    pub async fn share_mailbox(&self, id: &EntityId, group_id: &str) -> Result<()> {
        each!(self, t => t.share_mailbox(id, group_id).await)
    }

    pub async fn shared_groups(&self, id: &EntityId) -> Result<Vec<String>> {
        each!(self, t => t.shared_groups(id).await)
    }

    pub async fn unshare_mailbox(&self, id: &EntityId, group_id: &str) -> Result<()> {
        each!(self, t => t.unshare_mailbox(id, group_id).await)
    }
}
