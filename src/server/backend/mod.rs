//! Where the mailboxes of a server live: in memory (one process), in Redis
//! (shared by several exchange processes), or in a Redis Cluster (the same,
//! past one Redis). The routes call these and never look at which one it
//! is.

pub(crate) mod cluster;
pub(crate) mod dedup;
pub(crate) mod memory;
pub(crate) mod model;
pub(crate) mod redis;
pub(crate) mod redis_calls;
pub(crate) mod redis_wait;

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::server::backend::cluster::ClusterBackend;
use crate::server::backend::memory::Backend;
use crate::server::backend::model::{
    AgentStats, BResult, BackendError, Client, MailboxStatus, StoredQueues,
};
use crate::server::backend::redis::RedisBackend;
use crate::server::body::{PeerSocket, RedisSseStream, ServerBody, SseStream};
use crate::server::listen_stop::ListenStop;
use crate::wire::ids::EntityId;
use crate::wire::message::Message;

pub(crate) enum Store {
    Memory(Arc<Backend>),
    Redis(Arc<RedisBackend>),
    Cluster(Arc<ClusterBackend>),
}

/// What `GET /health` says of the backend.
pub(crate) struct Health {
    /// A round trip to Redis.
    pub(crate) round_trip: Option<Duration>,
    /// The cluster's nodes and what was seen of them.
    pub(crate) cluster: Option<serde_json::Value>,
    /// Every mailbox can be served (false: some cluster slots cannot).
    pub(crate) whole: bool,
}

impl Store {
    /// Whether a message sent again (same tag, kind and mailbox) is
    /// dropped: in memory and on a cluster yes; on one Redis no, since
    /// academy-py's exchanges on the same Redis would not.
    pub(crate) fn drops_repeats(&self) -> bool {
        !matches!(self, Store::Redis(_))
    }

    /// The largest message accepted, in bytes.
    pub(crate) fn limit(&self) -> usize {
        match self {
            Store::Memory(b) => b.limit,
            Store::Redis(r) => r.limit,
            Store::Cluster(c) => c.limit,
        }
    }

    pub(crate) async fn check_mailbox(
        &self,
        client: &Client,
        uid: &EntityId,
    ) -> BResult<MailboxStatus> {
        match self {
            Store::Memory(b) => b.check_mailbox(client, uid),
            Store::Redis(r) => r.check_mailbox(client, uid).await,
            Store::Cluster(c) => c.check_mailbox(client, uid).await,
        }
    }

    pub(crate) async fn create_mailbox(
        &self,
        client: &Client,
        uid: &EntityId,
        agent: Option<Vec<String>>,
    ) -> BResult<()> {
        match self {
            Store::Memory(b) => b.create_mailbox(client, uid, agent),
            Store::Redis(r) => r.create_mailbox(client, uid, agent).await,
            Store::Cluster(c) => c.create_mailbox(client, uid, agent).await,
        }
    }

    pub(crate) async fn terminate(&self, client: &Client, uid: &EntityId) -> BResult<()> {
        match self {
            Store::Memory(b) => b.terminate(client, uid),
            Store::Redis(r) => r.terminate(client, uid).await,
            Store::Cluster(c) => c.terminate(client, uid).await,
        }
    }

    pub(crate) async fn update_heartbeat(&self, client: &Client, uid: &EntityId) -> BResult<()> {
        match self {
            Store::Memory(b) => b.update_heartbeat(client, uid),
            Store::Redis(r) => r.update_heartbeat(client, uid).await,
            Store::Cluster(c) => c.update_heartbeat(client, uid).await,
        }
    }

    pub(crate) async fn heartbeat_status(
        &self,
        client: &Client,
        uid: &EntityId,
    ) -> BResult<Option<f64>> {
        match self {
            Store::Memory(b) => b.heartbeat_status(client, uid),
            Store::Redis(r) => r.heartbeat_status(client, uid).await,
            Store::Cluster(c) => c.heartbeat_status(client, uid).await,
        }
    }

    pub(crate) async fn agent_stats(&self, client: &Client, uid: &EntityId) -> BResult<AgentStats> {
        match self {
            Store::Memory(b) => b.agent_stats(client, uid),
            Store::Redis(r) => r.agent_stats(client, uid).await,
            Store::Cluster(c) => c.agent_stats(client, uid).await,
        }
    }

    pub(crate) async fn discover(
        &self,
        client: &Client,
        agent: &str,
        allow_subclasses: bool,
    ) -> BResult<Vec<Uuid>> {
        match self {
            Store::Memory(b) => Ok(b.discover(client, agent, allow_subclasses)),
            Store::Redis(r) => r.discover(client, agent, allow_subclasses).await,
            Store::Cluster(c) => c.discover(client, agent, allow_subclasses).await,
        }
    }

    pub(crate) async fn put(&self, client: &Client, message: &Message) -> BResult<()> {
        match self {
            Store::Memory(b) => b.put(client, message),
            Store::Redis(r) => r.put(client, message).await,
            Store::Cluster(c) => c.put(client, message).await,
        }
    }

    /// Puts a message its receiver took and did not hand out back at the
    /// head of its mailbox's queue: no repeat check, no counting (it was
    /// counted when first sent). Receivers put several back newest first.
    pub(crate) async fn requeue(&self, client: &Client, message: &Message) -> BResult<()> {
        match self {
            Store::Memory(b) => b.requeue(client, message),
            Store::Redis(r) => r.requeue(client, message).await,
            Store::Cluster(c) => c.requeue(client, message).await,
        }
    }

    /// Waits up to `timeout` for the next message of a mailbox (the
    /// long-poll `GET /message`).
    pub(crate) async fn get(
        &self,
        client: &Client,
        uid: &EntityId,
        timeout: Duration,
    ) -> BResult<String> {
        match self {
            Store::Memory(b) => {
                let mb = b.receivable(client, uid)?;
                b.get(&mb, timeout).await.map(|m| m.to_string())
            }
            Store::Redis(r) => {
                r.receivable(client, uid).await?;
                Self::stored_get(r.clone(), uid, timeout).await
            }
            Store::Cluster(c) => {
                c.receivable(client, uid).await?;
                Self::stored_get(c.clone(), uid, timeout).await
            }
        }
    }

    /// `get` of a backend whose queues live in Redis.
    async fn stored_get(
        queues: Arc<dyn StoredQueues>,
        uid: &EntityId,
        timeout: Duration,
    ) -> BResult<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        match queues.receive(uid, deadline).await {
            Ok(item) => item.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
            Err(_) => Err(BackendError::ShuttingDown),
        }
    }

    /// The server-sent-event body of `GET /mailbox/listen`, once the
    /// mailbox is known to be active.
    pub(crate) async fn listen(
        &self,
        client: &Client,
        uid: &EntityId,
        timeout: Duration,
        peer: Option<PeerSocket>,
        stop: ListenStop,
    ) -> BResult<ServerBody> {
        match self {
            Store::Memory(b) => {
                let mb = b.receivable(client, uid)?;
                Ok(ServerBody::Sse(Box::new(SseStream::new(
                    b.clone(),
                    mb,
                    timeout,
                    peer,
                    stop,
                ))))
            }
            Store::Redis(r) => {
                r.receivable(client, uid).await?;
                Ok(Self::stored_listen(r.clone(), uid, timeout, peer, stop))
            }
            Store::Cluster(c) => {
                c.receivable(client, uid).await?;
                Ok(Self::stored_listen(c.clone(), uid, timeout, peer, stop))
            }
        }
    }

    /// The listen stream of a backend whose queues live in Redis.
    fn stored_listen(
        queues: Arc<dyn StoredQueues>,
        uid: &EntityId,
        timeout: Duration,
        peer: Option<PeerSocket>,
        stop: ListenStop,
    ) -> ServerBody {
        ServerBody::RedisSse(Box::new(RedisSseStream::new(
            queues,
            uid.clone(),
            timeout,
            peer,
            stop,
        )))
    }

    pub(crate) async fn share_mailbox(
        &self,
        client: &Client,
        uid: &EntityId,
        group: &str,
    ) -> BResult<()> {
        self.shares(client, uid, "add", group).await.map(|_| ())
    }

    pub(crate) async fn get_mailbox_shares(
        &self,
        client: &Client,
        uid: &EntityId,
    ) -> BResult<Vec<String>> {
        self.shares(client, uid, "list", "").await
    }

    /// Removing a group the mailbox is not shared with is a no-op in Redis
    /// (as academy-py's `RedisBackend`), and no group only checks the
    /// mailbox there.
    pub(crate) async fn remove_mailbox_shares(
        &self,
        client: &Client,
        uid: &EntityId,
        group: Option<&str>,
    ) -> BResult<()> {
        match (self, group) {
            (Store::Memory(b), None) => b.remove_mailbox_shares(client, uid, None),
            (_, Some(g)) => self.shares(client, uid, "remove", g).await.map(|_| ()),
            (_, None) => self.shares(client, uid, "list", "").await.map(|_| ()),
        }
    }

    /// A share operation (`op`: add, list or remove): the groups, for list.
    async fn shares(
        &self,
        client: &Client,
        uid: &EntityId,
        op: &str,
        group: &str,
    ) -> BResult<Vec<String>> {
        match (self, op) {
            (Store::Memory(b), "add") => b.share_mailbox(client, uid, group).map(|()| Vec::new()),
            (Store::Memory(b), "remove") => b
                .remove_mailbox_shares(client, uid, Some(group))
                .map(|()| Vec::new()),
            (Store::Memory(b), _) => b.get_mailbox_shares(client, uid),
            (Store::Redis(r), _) => r.shares_call(client, uid, op, group).await,
            (Store::Cluster(c), _) => c.shares_call(client, uid, op, group).await,
        }
    }

    /// Mailboxes by state: (active, terminated).
    pub(crate) async fn mailbox_counts(&self) -> BResult<(u64, u64)> {
        match self {
            Store::Memory(b) => Ok(b.mailbox_counts()),
            Store::Redis(r) => r.mailbox_counts().await,
            Store::Cluster(c) => c.mailbox_counts().await,
        }
    }

    /// The name of the backend kind (academy-py's, and ours for a
    /// cluster).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "python",
            Store::Redis(_) => "redis",
            Store::Cluster(_) => "redis-cluster",
        }
    }

    /// Whether the backend works (`GET /health`), or why Redis does not
    /// answer.
    pub(crate) async fn check_health(&self) -> BResult<Health> {
        match self {
            Store::Memory(_) => Ok(Health {
                round_trip: None,
                cluster: None,
                whole: true,
            }),
            Store::Redis(r) => r.ping().await.map(|t| Health {
                round_trip: Some(t),
                cluster: None,
                whole: true,
            }),
            Store::Cluster(c) => c.health().await.map(|(t, described, whole)| Health {
                round_trip: Some(t),
                cluster: Some(described),
                whole,
            }),
        }
    }

    /// Whether the server is stopping.
    pub(crate) fn stopping(&self) -> bool {
        match self {
            Store::Memory(b) => b.shutdown.is_set(),
            Store::Redis(r) => r.shutdown.is_set(),
            Store::Cluster(c) => c.shutdown.is_set(),
        }
    }

    /// Ends waiting receives and open listen streams.
    pub(crate) fn begin_shutdown(&self) {
        match self {
            Store::Memory(b) => b.begin_shutdown(),
            Store::Redis(r) => r.begin_shutdown(),
            Store::Cluster(c) => c.begin_shutdown(),
        }
    }

    /// Waits for background work that must finish before the process may
    /// exit (receives that hold a message taken from Redis).
    pub(crate) async fn drained(&self) {
        match self {
            Store::Memory(_) => {}
            Store::Redis(r) => r.drained().await,
            Store::Cluster(c) => c.drained().await,
        }
    }
}
