//! Mailboxes in a Redis Cluster, so that the exchange scales past one
//! Redis: several exchange processes in front of one cluster serve one set
//! of mailboxes, as on one Redis, with the keys spread over the masters by
//! mailbox ([`layout`]). HTTP clients never see the keys, so academy-py's
//! clients work unchanged; academy-py's own exchange cannot share the
//! cluster.
//!
//! Every operation on one mailbox is one Lua script on the node of its
//! slot, atomic as on one Redis. A send to a mailbox also counts, in the
//! sender's or responder's own slot, a second, separate step (statistics
//! only). Discovery reads a class index sharded over
//! [`layout::AGENT_SHARDS`] slots, then checks each candidate on its own
//! node. Waiting receives are woken by sharded pub/sub ([`wait`]).
//!
//! Routing, `MOVED`/`ASK` redirections, retries and topology refreshes
//! are the `redis` crate's; a request rides out a failover or a moving
//! slot within [`OVERALL_TIMEOUT`], and a mailbox whose node is down with
//! no replica left fails at once with an error that says so
//! ([`topology`]).
//!
//! Durability: with [`Durability::Replica`] every write that matters (a
//! mailbox created, terminated or shared, a message queued or taken, an
//! index entry) is followed, on the same connection, by `WAIT 1`;
//! expirations pushed back, heartbeats and statistics are not. A write no
//! replica acknowledges in time is answered 503 (it may still be on the
//! master; sent again, a message is dropped as a repeat, [`layout`]'s
//! `seen:{uid}`).

mod counted;
pub(crate) mod layout;
mod topology;
mod wait;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    Cmd, ConnectionAddr, ConnectionInfo, FromRedisValue, IntoConnectionInfo, ProtocolVersion,
    PushInfo, RedisConnectionInfo,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::{Error, Result, Status};
use crate::server::backend::cluster::counted::{redirections, Counted, Redirection};
use crate::server::backend::cluster::layout::{Lua, Scripts};
use crate::server::backend::cluster::topology::{Snapshot, Topology, SLOTS, WATCH_INTERVAL};
use crate::server::backend::cluster::wait::{Takes, Waits};
use crate::server::backend::dedup;
use crate::server::backend::model::{
    AgentStats, BResult, BackendError, Client, MailboxStatus, Received, Shutdown, StoredQueues,
};
use crate::server::backend::redis_calls::{
    agent_stats, groups, heartbeat_age, mailbox_status, owner_of, terminated_answers, timed,
    unavailable, unexpected, values, within_limit, word, TaskGuard, Tasks, CONNECT_TIMEOUT,
    POP_RETRY, RESPONSE_TIMEOUT,
};
use crate::server::config::{Durability, RedisClusterConfig};
use crate::server::metrics::Metrics;
use crate::wire::ids::EntityId;
use crate::wire::message::Message;

/// The longest a request waits for the cluster (a failover, a moving
/// slot) before it is answered 503; under the clients' default request
/// timeout (60 s), so that they see the answer.
pub(crate) const OVERALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Retries of one command by the `redis` crate, and the bounds of the
/// pause before each (doubling): enough for [`OVERALL_TIMEOUT`].
const RETRIES: u32 = 60;
const MIN_RETRY_WAIT_MS: u64 = 10;
const MAX_RETRY_WAIT_MS: u64 = 500;
/// Candidates of a discovery checked at once, and index shards read at
/// once.
const CHECKS_IN_FLIGHT: usize = 256;
/// The mailbox counts of `GET /metrics` are at most this old (they scan
/// every master).
const COUNTS_MAX_AGE: Duration = Duration::from_secs(30);

pub(crate) struct ClusterBackend {
    /// The connection and how writes are acknowledged.
    handle: Arc<Handle>,
    waits: Arc<Waits>,
    topology: Topology,
    scripts: Arc<Scripts>,
    pub(crate) limit: usize,
    mailbox_s: u64,
    gravestone_s: u64,
    pub(crate) shutdown: Shutdown,
    tasks: Arc<Tasks>,
    pub(crate) metrics: Option<Arc<Metrics>>,
    counts: Mutex<Option<(Instant, (u64, u64))>>,
}

/// A script on the keys of one mailbox.
struct Call<'a> {
    script: &'a Lua,
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
}

impl<'a> Call<'a> {
    fn new(script: &'a Lua) -> Self {
        Call {
            script,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    fn key(mut self, key: String) -> Self {
        self.keys.push(key);
        self
    }

    fn arg(mut self, arg: impl redis::ToRedisArgs) -> Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    /// `EVALSHA`, or `EVAL` (for a node that does not have the script yet:
    /// a replica just promoted has none).
    fn command(&self, by_hash: bool) -> Cmd {
        let mut cmd = if by_hash {
            let mut c = redis::cmd("EVALSHA");
            c.arg(self.script.script.get_hash());
            c
        } else {
            let mut c = redis::cmd("EVAL");
            c.arg(&self.script.code);
            c
        };
        cmd.arg(self.keys.len()).arg(&self.keys).arg(&self.args);
        cmd
    }
}

/// Milliseconds since the Unix epoch, by this process's clock.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The hash slot of a key with a hash tag (`{…}`), as Redis computes it.
fn slot_of_tag(tag: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes()) % SLOTS
}

fn connect_error(nodes: &[String]) -> impl Fn(redis::RedisError) -> Error + '_ {
    move |e| {
        Error::new(
            Status::Connection,
            format!(
                "exchange cannot use the Redis Cluster at {}: {e}",
                nodes.join(", ")
            ),
        )
    }
}

/// Runs `f` on every item, at most `limit` at once; the answers in order
/// (an error for one whose task was lost).
async fn each<T, R, F, Fut>(items: Vec<T>, limit: usize, f: F) -> Vec<BResult<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
{
    let mut out: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let mut running = tokio::task::JoinSet::new();
    for (i, item) in items.into_iter().enumerate() {
        if running.len() >= limit {
            if let Some(Ok((j, r))) = running.join_next().await {
                out[j] = Some(r);
            }
        }
        let fut = f(item);
        running.spawn(async move { (i, fut.await) });
    }
    while let Some(done) = running.join_next().await {
        if let Ok((j, r)) = done {
            out[j] = Some(r);
        }
    }
    out.into_iter()
        .map(|r| {
            r.ok_or_else(|| BackendError::Unavailable("a Redis round trip was lost".to_owned()))
        })
        .collect()
}

impl ClusterBackend {
    /// Connects to the cluster through its seed nodes (failing now if none
    /// answers as a cluster node).
    pub(crate) async fn connect(
        config: &RedisClusterConfig,
        message_size_limit_kb: u64,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Arc<Self>> {
        let fail = connect_error(&config.nodes);
        let mut settings = RedisConnectionInfo::default();
        if let Some(u) = &config.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &config.password {
            settings = settings.set_password(p);
        }
        let nodes: Vec<ConnectionInfo> = config
            .nodes
            .iter()
            .map(|n| {
                let (host, port) = n.rsplit_once(':').unwrap_or((n, "6379"));
                ConnectionAddr::Tcp(host.to_owned(), port.parse().unwrap_or(6379))
                    .into_connection_info()
                    .map(|i| i.set_redis_settings(settings.clone()))
            })
            .collect::<redis::RedisResult<_>>()
            .map_err(&fail)?;
        let builder = || {
            ClusterClientBuilder::new(nodes.clone())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .overall_response_timeout(Some(OVERALL_TIMEOUT))
                .retries(RETRIES)
                .min_retry_wait(MIN_RETRY_WAIT_MS)
                .max_retry_wait(MAX_RETRY_WAIT_MS)
        };
        let client = builder().build().map_err(&fail)?;
        let conn = client
            .get_async_generic_connection::<Counted>()
            .await
            .map_err(&fail)?;
        let (push_tx, pushes) = mpsc::unbounded_channel::<PushInfo>();
        let subscriber = builder()
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(push_tx)
            .build()
            .map_err(&fail)?
            .get_async_generic_connection::<Counted>()
            .await
            .map_err(&fail)?;
        let backend = Arc::new(ClusterBackend {
            handle: Arc::new(Handle {
                conn,
                durability: config.durability,
                durability_timeout_ms: config.durability_timeout.as_millis() as u64,
                metrics: metrics.clone(),
            }),
            waits: Waits::new(subscriber),
            topology: Topology::default(),
            scripts: Arc::new(Scripts::new()),
            limit: (message_size_limit_kb as usize).saturating_mul(1024),
            mailbox_s: config.mailbox_expiration_s,
            gravestone_s: config.gravestone_expiration_s,
            shutdown: Shutdown::default(),
            tasks: Arc::new(Tasks::default()),
            metrics,
            counts: Mutex::new(None),
        });
        let snapshot = backend.read_topology().await.map_err(|e| {
            Error::new(
                Status::Connection,
                format!(
                    "exchange cannot read the Redis Cluster's nodes at {}: {e:?}",
                    config.nodes.join(", ")
                ),
            )
        })?;
        if backend.handle.durability == Durability::Replica {
            for master in snapshot.masters() {
                let replicas = snapshot
                    .nodes
                    .iter()
                    .filter(|n| n.master_id.as_deref() == Some(master.id.as_str()))
                    .count();
                if replicas == 0 {
                    tracing::warn!(
                        "Redis Cluster: master {} has no replica: with durability = \"replica\" its mailboxes refuse every write",
                        master.address
                    );
                }
            }
        }
        backend.topology.update(snapshot);
        backend
            .waits
            .start(Arc::downgrade(&backend), pushes, |b: &ClusterBackend| {
                &b.waits
            });
        tokio::spawn(watch(Arc::downgrade(&backend)));
        Ok(backend)
    }

    fn conn(&self) -> ClusterConnection<Counted> {
        self.handle.conn.clone()
    }

    /// One round trip, counted, timed, and logged when slow.
    async fn timed<T>(
        &self,
        op: &'static str,
        round_trip: impl Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        timed(self.metrics.as_deref(), op, round_trip).await
    }

    /// Why the mailbox cannot be served now (its node is down with no
    /// replica left to take over), if so.
    fn down(&self, uid: &Uuid) -> Option<String> {
        self.topology.down(slot_of_tag(&uid.to_string()))
    }

    /// Runs a script on one mailbox's slot; `durable`: a write that, with
    /// [`Durability::Replica`], is acknowledged only once a replica has it
    /// (not so for what a failover may lose harmlessly: expirations pushed
    /// back, heartbeats, statistics).
    async fn run<T: FromRedisValue>(
        &self,
        uid: &Uuid,
        call: Call<'_>,
        durable: bool,
    ) -> BResult<T> {
        if let Some(why) = self.down(uid) {
            return Err(BackendError::Unavailable(why));
        }
        self.handle.call(&call, durable).await.map_err(|f| match f {
            Failure::Redis(e) => self.failed(uid, e),
            other => other.into_error(),
        })
    }

    /// A failed round trip as a backend error, naming the node when it is
    /// down for good.
    fn failed(&self, uid: &Uuid, e: redis::RedisError) -> BackendError {
        match self.down(uid) {
            Some(why) => BackendError::Unavailable(why),
            None => unavailable(e),
        }
    }

    /// Runs a per-mailbox script: KEYS are the mailbox's keys made by
    /// `keys`, ARGV the client's owner value, `args`, then its groups (the
    /// shape every such script shares).
    #[allow(clippy::too_many_arguments)] // the script's keys, arguments and error mapping, as its callers name them
    async fn mailbox_script<T: FromRedisValue>(
        &self,
        script: &Lua,
        uid: &EntityId,
        keys: &[fn(&Uuid) -> String],
        client: &Client,
        args: &[String],
        durable: bool,
    ) -> BResult<T> {
        let mut call = Call::new(script);
        for key in keys {
            call = call.key(key(&uid.uid));
        }
        call = call.arg(owner_of(client));
        for arg in args {
            call = call.arg(arg);
        }
        call = call.arg(groups(client));
        self.run(&uid.uid, call, durable).await
    }

    /// The nodes as one of them sees them now.
    async fn read_topology(&self) -> BResult<Snapshot> {
        let text: String = self
            .timed(
                "CLUSTER NODES",
                self.conn().route_command(
                    redis::cmd("CLUSTER").arg("NODES").to_owned(),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                ),
            )
            .await
            .and_then(|v| Ok(redis::from_redis_value::<String>(v)?))
            .map_err(unavailable)?;
        Ok(Snapshot::parse(&text))
    }

    /// Whether the cluster answers (`GET /health`): the round trip and a
    /// description of the nodes, the failovers and redirections seen.
    pub(crate) async fn health(self: &Arc<Self>) -> BResult<(Duration, serde_json::Value, bool)> {
        let start = Instant::now();
        let snapshot = self.read_topology().await?;
        let took = start.elapsed();
        let whole = snapshot.slots_served() == u32::from(SLOTS);
        let mut described = snapshot.describe();
        if self.topology.update(snapshot) {
            self.waits.slots_moved(self);
        }
        described["failovers_seen"] = self.topology.failovers().into();
        described["redirections"] = Redirection::ALL
            .iter()
            .map(|r| (r.label().to_owned(), redirections(*r).into()))
            .collect::<serde_json::Map<_, _>>()
            .into();
        let (waiting, subscribed) = self.waits.counts();
        described["waiting_receives"] = waiting.into();
        described["subscriptions"] = subscribed.into();
        Ok((took, described, whole))
    }

    /// Mailboxes by state, (active, terminated), of the whole cluster: a
    /// scan of every master, at most every [`COUNTS_MAX_AGE`].
    pub(crate) async fn mailbox_counts(&self) -> BResult<(u64, u64)> {
        if let Some((at, counts)) = *self.counts.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < COUNTS_MAX_AGE {
                return Ok(counts);
            }
        }
        let snapshot = self.topology.latest().unwrap_or_default();
        let (mut all, mut terminated) = (0, 0);
        for master in snapshot.masters() {
            all += self.count_keys(&master.address, "mailbox:*").await?;
            terminated += self.count_keys(&master.address, "terminated:*").await?;
        }
        let counts = (all.saturating_sub(terminated), terminated);
        *self.counts.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), counts));
        Ok(counts)
    }

    /// Keys matching `pattern` on one node (SCAN, in batches).
    async fn count_keys(&self, address: &str, pattern: &str) -> BResult<u64> {
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| unexpected(address))?;
        let port: u16 = port.parse().map_err(|_| unexpected(address))?;
        let mut cursor: u64 = 0;
        let mut count = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: host.to_owned(),
                port,
            });
            let (next, keys): (u64, Vec<String>) = self
                .timed("SCAN", self.conn().route_command(scan, routing))
                .await
                .and_then(|v| Ok(redis::from_redis_value(v)?))
                .map_err(unavailable)?;
            count += keys.len() as u64;
            cursor = next;
            if cursor == 0 {
                return Ok(count);
            }
        }
    }

    pub(crate) async fn check_mailbox(
        &self,
        client: &Client,
        uid: &EntityId,
    ) -> BResult<MailboxStatus> {
        let answer: String = self
            .mailbox_script(
                &self.scripts.check,
                uid,
                &[layout::mailbox],
                client,
                &[],
                false,
            )
            .await?;
        mailbox_status(&answer)
    }

    /// Creates (or registers again) a mailbox; an agent's is added to the
    /// index of each class of its MRO.
    pub(crate) async fn create_mailbox(
        &self,
        client: &Client,
        uid: &EntityId,
        agent: Option<Vec<String>>,
    ) -> BResult<()> {
        let mro = agent.as_ref().map(|a| a.join(","));
        let answer: String = self
            .mailbox_script(
                &self.scripts.create,
                uid,
                &[layout::mailbox],
                client,
                &[
                    if mro.is_some() { "1" } else { "0" }.to_owned(),
                    mro.unwrap_or_default(),
                    self.gravestone_s.to_string(),
                ],
                true,
            )
            .await?;
        match answer.as_str() {
            "gravestone" => Ok(()),
            "ok" => {
                self.index(&uid.uid, agent.as_deref().unwrap_or(&[]), true)
                    .await
            }
            other => word(other),
        }
    }

    /// Adds the agent to (or removes it from) the indexes of its classes.
    async fn index(&self, uid: &Uuid, classes: &[String], add: bool) -> BResult<()> {
        let commands: Vec<Cmd> = classes
            .iter()
            .filter(|c| !c.is_empty())
            .map(|class| {
                let mut cmd = redis::cmd(if add { "SADD" } else { "SREM" });
                cmd.arg(layout::agent_index(class, uid))
                    .arg(uid.to_string());
                cmd
            })
            .collect();
        let handle = self.handle.clone();
        let outcomes = each(commands, CHECKS_IN_FLIGHT, move |cmd| {
            let handle = handle.clone();
            async move { handle.write("index", cmd).await }
        })
        .await;
        outcomes
            .into_iter()
            .try_for_each(|outcome| outcome.and_then(|written| written))
    }

    /// Terminates a mailbox and answers the requests in flight to it with
    /// `MAILBOX_TERMINATED` errors, as the in-memory backend does.
    pub(crate) async fn terminate(&self, client: &Client, uid: &EntityId) -> BResult<()> {
        let answer: Vec<String> = self
            .mailbox_script(
                &self.scripts.terminate,
                uid,
                &[
                    layout::mailbox,
                    layout::queue,
                    layout::pending,
                    layout::terminated,
                ],
                client,
                &[
                    self.gravestone_s.to_string(),
                    layout::wake_channel(&uid.uid),
                ],
                true,
            )
            .await?;
        let rest = values(&answer)?;
        let Some((mro, headers)) = rest.split_first() else {
            return Err(unexpected(&answer.join(" ")));
        };
        let classes: Vec<String> = mro.split(',').map(str::to_owned).collect();
        if let Err(e) = self.index(&uid.uid, &classes, false).await {
            // Discovery skips (and removes) entries of terminated agents.
            tracing::debug!(
                "Redis Cluster: index clean-up of {} cut short: {e:?}",
                uid.uid
            );
        }
        for response in terminated_answers(headers) {
            let _ = self.put_message(&response, None).await;
        }
        Ok(())
    }

    pub(crate) async fn update_heartbeat(&self, client: &Client, uid: &EntityId) -> BResult<()> {
        let answer: String = self
            .mailbox_script(
                &self.scripts.heartbeat,
                uid,
                &[layout::mailbox],
                client,
                &[self.gravestone_s.to_string()],
                false,
            )
            .await?;
        word(&answer)
    }

    /// Seconds since the last heartbeat (by the clock of the mailbox's
    /// master), or None.
    pub(crate) async fn heartbeat_status(
        &self,
        client: &Client,
        uid: &EntityId,
    ) -> BResult<Option<f64>> {
        let answer: Vec<String> = self
            .mailbox_script(
                &self.scripts.heartbeat_status,
                uid,
                &[layout::mailbox],
                client,
                &[],
                false,
            )
            .await?;
        heartbeat_age(&answer, uid)
    }

    pub(crate) async fn agent_stats(&self, client: &Client, uid: &EntityId) -> BResult<AgentStats> {
        let answer: Vec<String> = self
            .mailbox_script(
                &self.scripts.stats,
                uid,
                &[layout::mailbox, layout::queue, layout::pending],
                client,
                &[],
                false,
            )
            .await?;
        agent_stats(&answer, None)
    }

    /// Agents whose MRO starts with (or, with subclasses, contains)
    /// `agent`: the shards of the class's index, then each candidate
    /// checked on its own node (active, visible to the client, of the
    /// class). Entries of agents no longer active are removed.
    pub(crate) async fn discover(
        &self,
        client: &Client,
        agent: &str,
        allow_subclasses: bool,
    ) -> BResult<Vec<Uuid>> {
        let handle = self.handle.clone();
        let shards: Vec<String> = (0..layout::AGENT_SHARDS)
            .map(|n| layout::agent_shard(agent, n))
            .collect();
        let members = each(shards, CHECKS_IN_FLIGHT, |key| {
            let handle = handle.clone();
            async move {
                let mut cmd = redis::cmd("SMEMBERS");
                cmd.arg(key);
                handle.command::<Vec<String>>("SMEMBERS", cmd, false).await
            }
        })
        .await;
        let mut candidates: Vec<Uuid> = Vec::new();
        for shard in members {
            for uid in shard?? {
                if let Ok(uid) = Uuid::parse_str(&uid) {
                    candidates.push(uid);
                }
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        let me = owner_of(client);
        let groups: Vec<String> = groups(client).into_iter().map(str::to_owned).collect();
        let agent_owned = agent.to_owned();
        let checks = each(candidates.clone(), CHECKS_IN_FLIGHT, |uid| {
            let (handle, scripts) = (handle.clone(), self.scripts.clone());
            let (me, groups, agent) = (me.clone(), groups.clone(), agent_owned.clone());
            async move {
                let call = Call::new(&scripts.discover_check)
                    .key(layout::mailbox(&uid))
                    .arg(me)
                    .arg(agent)
                    .arg(if allow_subclasses { "1" } else { "0" })
                    .arg(groups);
                handle
                    .call::<String>(&call, false)
                    .await
                    .map_err(Failure::into_error)
            }
        })
        .await;
        let mut found = Vec::new();
        let mut gone = Vec::new();
        for (uid, check) in candidates.into_iter().zip(checks) {
            match check??.as_str() {
                "yes" => found.push(uid),
                "gone" => gone.push(uid),
                _ => {}
            }
        }
        if !gone.is_empty() {
            let agent = agent.to_owned();
            tokio::spawn(async move {
                for uid in gone {
                    let mut cmd = redis::cmd("SREM");
                    cmd.arg(layout::agent_index(&agent, &uid))
                        .arg(uid.to_string());
                    let _ = handle.write("index", cmd).await;
                }
            });
        }
        Ok(found)
    }

    /// Checks that the client may receive from the mailbox and pushes its
    /// expirations back.
    pub(crate) async fn receivable(&self, client: &Client, uid: &EntityId) -> BResult<()> {
        let answer: String = self
            .mailbox_script(
                &self.scripts.recv_check,
                uid,
                &[layout::mailbox, layout::queue],
                client,
                &[self.gravestone_s.to_string(), self.mailbox_s.to_string()],
                false,
            )
            .await?;
        word(&answer)
    }

    pub(crate) async fn put(&self, client: &Client, message: &Message) -> BResult<()> {
        self.put_message(message, Some(client)).await
    }

    /// A message its receiver took and did not hand out, back at the head
    /// of the queue (see [`crate::server::backend::Store::requeue`]).
    pub(crate) async fn requeue(&self, client: &Client, message: &Message) -> BResult<()> {
        self.receivable(client, &message.header.dest).await?;
        let text = message.to_json();
        within_limit(&text, self.limit)?;
        let answer: String = self
            .push_front(&message.header.dest.uid, text.into_bytes(), true)
            .await?;
        word(&answer)
    }

    async fn push_front(&self, uid: &Uuid, item: Vec<u8>, check: bool) -> BResult<String> {
        let call = Call::new(&self.scripts.push_front)
            .key(layout::mailbox(uid))
            .key(layout::queue(uid))
            .arg(item)
            .arg(layout::wake_channel(uid))
            .arg(if check { "1" } else { "0" });
        self.run(uid, call, true).await
    }

    /// Queues a message in its receiver's slot (permission, status, size,
    /// repeat check and the request's record, atomically), then counts it
    /// in the sender's (a request sent) or the responder's (a request
    /// answered) own slot.
    async fn put_message(&self, message: &Message, client: Option<&Client>) -> BResult<()> {
        let text = message.to_json();
        let h = &message.header;
        let dest = h.dest.uid;
        let request = message.is_request();
        let header_json = if request {
            serde_json::to_string(h).unwrap_or_default()
        } else {
            String::new()
        };
        let (me, groups) = match client {
            Some(c) => (owner_of(c), groups(c)),
            None => (String::new(), Vec::new()),
        };
        let call = Call::new(&self.scripts.put)
            .key(layout::mailbox(&dest))
            .key(layout::queue(&dest))
            .key(layout::pending(&dest))
            .key(layout::seen(&dest))
            .arg(me)
            .arg(if request { "1" } else { "0" })
            .arg(header_json)
            .arg(&text)
            .arg(self.mailbox_s)
            .arg(h.tag.to_string())
            .arg(if text.len() > self.limit { "1" } else { "0" })
            .arg(if client.is_none() { "1" } else { "0" })
            .arg(format!("{}:{}", h.tag, if request { "q" } else { "r" }))
            .arg(dedup::WINDOW.as_millis() as u64)
            .arg(dedup::MAX_PER_MAILBOX)
            .arg(layout::wake_channel(&dest))
            .arg(now_ms())
            .arg(groups);
        let answer: String = self.run(&dest, call, true).await?;
        if answer == "too_large" {
            return Err(BackendError::TooLarge {
                size: text.len(),
                limit: self.limit,
            });
        }
        let fresh = answer == "ok";
        if answer != "repeat" {
            word(&answer)?;
        }
        let src = h.src.uid;
        let counted = if request && fresh {
            let mut cmd = redis::cmd("HINCRBY");
            cmd.arg(layout::mailbox(&src)).arg("outgoing").arg(1);
            self.handle
                .command::<redis::Value>("count", cmd, false)
                .await
                .map(|_| ())
        } else if !request && client.is_some() {
            // Also for a repeat: the first try may have stopped before it.
            let call = Call::new(&self.scripts.answered)
                .key(layout::mailbox(&src))
                .key(layout::pending(&src))
                .arg(h.tag.to_string());
            self.run::<String>(&src, call, false).await.map(|_| ())
        } else {
            Ok(())
        };
        if let Err(e) = counted {
            // The message is queued; only the statistics miss it.
            tracing::warn!(
                "Redis Cluster: message {} queued, but not counted in {}'s statistics: {e:?}",
                h.tag,
                src
            );
        }
        Ok(())
    }

    /// KEYS mailbox; the share scripts' common call (`op`: add, list or
    /// remove).
    pub(crate) async fn shares_call(
        &self,
        client: &Client,
        uid: &EntityId,
        op: &str,
        group: &str,
    ) -> BResult<Vec<String>> {
        let member = if client.groups.contains(group) {
            "1"
        } else {
            "0"
        };
        let call = Call::new(&self.scripts.shares)
            .key(layout::mailbox(&uid.uid))
            .arg(owner_of(client))
            .arg(op)
            .arg(group)
            .arg(member);
        let answer: Vec<String> = self.run(&uid.uid, call, op != "list").await?;
        Ok(values(&answer)?.to_vec())
    }

    /// Puts a message taken for a receiver that has gone back at the head
    /// of its queue, trying for a while through errors.
    async fn unpop(&self, uid: &Uuid, item: Vec<u8>) {
        for _ in 0..50 {
            if self.push_front(uid, item.clone(), false).await.is_ok() {
                return;
            }
            tokio::time::sleep(POP_RETRY).await;
        }
        tracing::warn!("Redis Cluster: a message taken for {uid} could not be put back");
    }

    /// Ends waiting receives (within a tick).
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.trigger();
    }

    /// Waits until no background receive is running.
    pub(crate) async fn drained(&self) {
        self.tasks.drained().await
    }

    /// Reads the topology, reports it to the metrics, and restarts the
    /// waits when slots moved.
    async fn watch_once(self: &Arc<Self>, seen: &mut [u64; 4]) {
        let Ok(snapshot) = self.read_topology().await else {
            return;
        };
        if let Some(m) = &self.metrics {
            let mut nodes: Vec<(&'static str, &'static str, i64)> = Vec::new();
            for n in &snapshot.nodes {
                let role = if n.master { "master" } else { "replica" };
                let state = n.state.label();
                match nodes.iter_mut().find(|(r, s, _)| *r == role && *s == state) {
                    Some(entry) => entry.2 += 1,
                    None => nodes.push((role, state, 1)),
                }
            }
            m.cluster_topology(&nodes, snapshot.slots_served());
        }
        if self.topology.update(snapshot) {
            self.waits.slots_moved(self);
        }
        if let Some(m) = &self.metrics {
            let now = [
                self.topology.failovers(),
                redirections(Redirection::Moved),
                redirections(Redirection::Ask),
                redirections(Redirection::TryAgain),
            ];
            m.cluster_failovers(now[0] - seen[0]);
            for (i, kind) in Redirection::ALL.iter().enumerate() {
                m.cluster_redirections(kind.label(), now[i + 1] - seen[i + 1]);
            }
            let (waiting, subscribed) = self.waits.counts();
            m.cluster_waits(waiting, subscribed);
            *seen = now;
        }
    }
}

/// What concurrent calls and background work need: the connection and how
/// writes are acknowledged.
struct Handle {
    conn: ClusterConnection<Counted>,
    durability: Durability,
    durability_timeout_ms: u64,
    metrics: Option<Arc<Metrics>>,
}

/// Why a round trip failed.
enum Failure {
    Redis(redis::RedisError),
    /// No replica acknowledged a write within this many milliseconds.
    NotReplicated(u64),
}

impl Failure {
    fn into_error(self) -> BackendError {
        match self {
            Failure::Redis(e) => unavailable(e),
            Failure::NotReplicated(ms) => BackendError::Unavailable(format!(
                "Redis Cluster: no replica acknowledged the write within {ms} ms (durability = \"replica\"); it may still be on the master (a message sent again is dropped as a repeat)"
            )),
        }
    }
}

impl Handle {
    /// A script; a durable write waits for a replica with
    /// [`Durability::Replica`].
    async fn call<T: FromRedisValue>(
        &self,
        call: &Call<'_>,
        durable: bool,
    ) -> std::result::Result<T, Failure> {
        let op = call.script.name;
        match self.once(op, call.command(true), durable).await {
            Err(Failure::Redis(e)) if e.kind() == redis::ServerErrorKind::NoScript.into() => {
                self.once(op, call.command(false), durable).await
            }
            other => other,
        }
    }

    /// One command (or a write and `WAIT 1` after it, on the same
    /// connection).
    async fn once<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: Cmd,
        durable: bool,
    ) -> std::result::Result<T, Failure> {
        let metrics = self.metrics.as_deref();
        let mut conn = self.conn.clone();
        if !(durable && self.durability == Durability::Replica) {
            return timed(metrics, op, cmd.query_async(&mut conn))
                .await
                .map_err(Failure::Redis);
        }
        let mut pipe = redis::pipe();
        pipe.add_command(cmd)
            .cmd("WAIT")
            .arg(1)
            .arg(self.durability_timeout_ms);
        let (value, acks): (T, i64) = timed(metrics, op, pipe.query_async(&mut conn))
            .await
            .map_err(Failure::Redis)?;
        if acks < 1 {
            if let Some(m) = metrics {
                m.cluster_unreplicated();
            }
            return Err(Failure::NotReplicated(self.durability_timeout_ms));
        }
        Ok(value)
    }

    /// A command that is not a script.
    async fn command<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: Cmd,
        durable: bool,
    ) -> BResult<T> {
        self.once(op, cmd, durable)
            .await
            .map_err(Failure::into_error)
    }

    /// A single-key write that is not a script (index entries), durable.
    async fn write(&self, op: &'static str, cmd: Cmd) -> BResult<()> {
        self.command::<redis::Value>(op, cmd, true)
            .await
            .map(|_| ())
    }
}

/// Reads the topology every [`WATCH_INTERVAL`] until the backend stops.
async fn watch(backend: std::sync::Weak<ClusterBackend>) {
    let mut seen = [0u64; 4];
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let Some(backend) = backend.upgrade() else {
            return;
        };
        if backend.shutdown.is_set() {
            return;
        }
        backend.watch_once(&mut seen).await;
    }
}

impl Takes for ClusterBackend {
    async fn take(&self, uid: &Uuid, taker: &str) -> BResult<Option<Vec<u8>>> {
        let call = Call::new(&self.scripts.pop)
            .key(layout::queue(uid))
            .key(layout::popped(uid))
            .arg(taker)
            .arg(layout::POPPED_TTL_S);
        self.run(uid, call, true).await
    }

    async fn put_back(&self, uid: &Uuid, item: Vec<u8>) {
        self.unpop(uid, item).await
    }

    fn unservable(&self, uid: &Uuid) -> Option<String> {
        self.down(uid)
    }

    fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    fn busy(&self) -> TaskGuard {
        self.tasks.enter()
    }
}

impl StoredQueues for ClusterBackend {
    /// Waits until `deadline` for the next message of the mailbox, in
    /// [`Waits`].
    fn receive(self: Arc<Self>, uid: &EntityId, deadline: Instant) -> oneshot::Receiver<Received> {
        let (tx, rx) = oneshot::channel();
        if self.shutdown.is_set() {
            let _ = tx.send(Err(BackendError::ShuttingDown));
            return rx;
        }
        self.waits.wait(&self, uid.uid, tx, deadline);
        rx
    }

    fn unpop_later(self: Arc<Self>, uid: &EntityId, item: Vec<u8>) {
        let guard = self.tasks.enter();
        let uid = uid.uid;
        tokio::spawn(async move {
            let _guard = guard;
            self.unpop(&uid, item).await;
        });
    }

    fn shutdown_signal(&self) -> &Shutdown {
        &self.shutdown
    }

    fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_own() {
        // Redis' CLUSTER KEYSLOT of "{abc}..." and of a uuid tag.
        assert_eq!(slot_of_tag("abc"), 7638);
        assert_eq!(slot_of_tag("123456789"), 0x31C3 % SLOTS);
    }
}
