//! What the Redis and hybrid exchanges share: one connection to Redis per
//! factory with the request path (retries with back-off on connection
//! failures, one mapping of Redis errors to statuses), the operations whose
//! keys differ only by [`Layout`], and the receiving side of a mailbox's
//! Redis queue.
//!
//! Receiving: a mailbox's queue is read by a task of its own on a
//! connection of its own (a `BLPOP` holds its connection), in slices so
//! that it notices when to stop, and never cancelled in the middle of a
//! pop: a message taken from Redis always reaches the client's channel or
//! goes back to the head of the queue.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, ConnectionAddr, ErrorKind, RedisError, RedisResult, Script};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::error::{Error, Result, Status};
use crate::options::exchanges::RedisServer;
use crate::options::FactoryOptions;
use crate::runtime;
use crate::transport::mailbox::{Inbound, MailboxStatus, NextMessage};
use crate::transport::redis_keys::{self, Layout, ACTIVE, CLOSE_SENTINEL, INACTIVE};
use crate::wire::ids::EntityId;
use crate::wire::message::header_of;

/// A heartbeat older than this many intervals makes a mailbox INACTIVE
/// (academy-py's `stale_heartbeat_threshold`).
const STALE_HEARTBEATS: f64 = 3.0;
/// A blocking pop waits at most this long at a time; stopping wakes it
/// sooner with `CLIENT UNBLOCK`.
const POP_SLICE: Duration = Duration::from_secs(5);
/// How many messages a reader takes at once, when they are there already.
const POP_BATCH: usize = 256;
/// The longest wait between attempts while the queue's reader cannot reach
/// Redis.
const MAX_POP_RETRY: Duration = Duration::from_secs(5);
/// How long stopping waits for a queue's reader to end.
const STOP_WAIT: Duration = Duration::from_secs(3);

/// Takes up to ARGV[1] more items from the head of list KEYS[1] (`LPOP
/// key count` of Redis 6.2, for any version).
const TAKE_MORE: &str = r#"
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items > 0 then redis.call('LTRIM', KEYS[1], #items, -1) end
return items
"#;

/// academy-py's `heartbeat_status` in one round trip. KEYS: status
/// heartbeat. Returns {word, heartbeat or '', now s, now us}.
const HEARTBEAT_STATUS: &str = r#"
local status = redis.call('GET', KEYS[1])
if not status then return {'missing'} end
if status == 'INACTIVE' then return {'terminated'} end
local hb = redis.call('GET', KEYS[2]) or ''
local t = redis.call('TIME')
return {'ok', hb, t[1], t[2]}
"#;

/// What a mailbox's receive channel carries: a message's JSON, or why
/// receiving failed (for now, or for good).
pub type Item = Result<String>;

/// One Redis server, as a factory's clients share it.
#[derive(Debug)]
pub struct RedisStore {
    client: ::redis::Client,
    /// `redis://host:port[/db]`, for messages.
    pub where_: String,
    pub layout: Layout,
    pub options: FactoryOptions,
    /// The pipelined connection of every command but blocking pops, and
    /// its generation (so that a failure drops only the connection that
    /// failed, not one made since).
    conn: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    connecting: tokio::sync::Mutex<()>,
    take_more: Script,
    heartbeat_status: Script,
    /// Set once Redis turned out to lack `BLMPOP` (before 7.0).
    no_blmpop: std::sync::atomic::AtomicBool,
}

impl RedisStore {
    /// A store for the Redis at `server`; connects on first use.
    pub fn new(server: &RedisServer, layout: Layout, options: FactoryOptions) -> Result<Self> {
        let where_ = server.describe();
        let mut settings = ::redis::RedisConnectionInfo::default().set_db(server.db);
        if let Some(u) = &server.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &server.password {
            settings = settings.set_password(p);
        }
        let info = ::redis::IntoConnectionInfo::into_connection_info(ConnectionAddr::Tcp(
            server.hostname.clone(),
            server.port,
        ))
        .map_err(|e| Error::invalid(format!("bad Redis address {where_}: {e}")))?
        .set_redis_settings(settings);
        let client = ::redis::Client::open(info)
            .map_err(|e| Error::invalid(format!("bad Redis address {where_}: {e}")))?;
        Ok(RedisStore {
            client,
            where_,
            layout,
            options,
            conn: Mutex::new(None),
            generation: AtomicU64::new(0),
            connecting: tokio::sync::Mutex::new(()),
            take_more: Script::new(TAKE_MORE),
            heartbeat_status: Script::new(HEARTBEAT_STATUS),
            no_blmpop: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A new connection, made on the library's runtime (whose tasks drive
    /// it for as long as the process lives).
    async fn open(&self, response_timeout: Duration) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(Some(response_timeout));
        let client = self.client.clone();
        let connect = async move {
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
        };
        match runtime::handle() {
            Ok(handle) => handle.spawn(connect).await.unwrap_or_else(|e| {
                Err(RedisError::from((
                    ErrorKind::Client,
                    "connecting failed",
                    e.to_string(),
                )))
            }),
            Err(_) => connect.await,
        }
    }

    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(c) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(c);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(c) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(c);
        }
        let conn = self.open(self.options.request_timeout).await?;
        let made = (self.generation.fetch_add(1, Ordering::AcqRel) + 1, conn);
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(made.clone());
        Ok(made)
    }

    fn drop_connection(&self, generation: u64) {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if conn.as_ref().is_some_and(|(g, _)| *g == generation) {
            *conn = None;
        }
    }

    /// Runs `op` on the shared connection; a connection failure is retried
    /// `retries` times with exponential back-off (the factory's options),
    /// on a new connection. `what` names the operation in errors.
    pub async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.run_tries(what, self.options.retries, op).await
    }

    /// [`run`](Self::run) with `retries` retries.
    pub async fn run_tries<T, F, Fut>(&self, what: &str, retries: u32, op: F) -> Result<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let mut attempts_left = retries;
        let mut backoff = self.options.initial_retry_backoff;
        loop {
            let failure = match self.connection().await {
                Ok((generation, conn)) => match op(conn).await {
                    Ok(v) => return Ok(v),
                    Err(e) => {
                        if broken(&e) {
                            self.drop_connection(generation);
                        }
                        e
                    }
                },
                Err(e) => e,
            };
            if transient(&failure) && attempts_left > 0 {
                attempts_left -= 1;
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                continue;
            }
            return Err(self.error(what, &failure));
        }
    }

    /// The error for a failed Redis operation.
    pub fn error(&self, what: &str, e: &RedisError) -> Error {
        let text = e.to_string();
        let status = if e.is_timeout() {
            Status::Timeout
        } else if e.kind() == ErrorKind::AuthenticationFailed
            || text.contains("WRONGPASS")
            || text.contains("NOAUTH")
        {
            Status::Unauthorized
        } else if text.contains("NOPERM") {
            Status::Forbidden
        } else if broken(e) || transient(e) {
            Status::Connection
        } else {
            Status::Protocol
        };
        let detail = match status {
            Status::Connection => format!("cannot reach Redis at {}: {text}", self.where_),
            Status::Timeout => format!(
                "Redis at {} did not answer within {:.1} s: {text}",
                self.where_,
                self.options.request_timeout.as_secs_f64()
            ),
            _ => format!("Redis at {} answered: {text}", self.where_),
        };
        Error::new(status, format!("{what}: {detail}"))
    }

    // ---- operations shared by both exchanges ----

    /// Registers a mailbox: `ACTIVE`, and for an agent its MRO.
    pub async fn register(&self, id: &EntityId, agent_mro: Option<&str>) -> Result<()> {
        let status = self.layout.status(&id.uid);
        let agent = self.layout.agent(&id.uid);
        self.run("register", |mut c| {
            let mut cmd = ::redis::cmd("MSET");
            cmd.arg(&status).arg(ACTIVE);
            if let Some(mro) = agent_mro {
                cmd.arg(&agent).arg(mro);
            }
            async move { cmd.query_async::<()>(&mut c).await }
        })
        .await
    }

    /// The stored status: MISSING, ACTIVE, or TERMINATED for `INACTIVE`.
    pub async fn mailbox_status(&self, id: &EntityId) -> Result<MailboxStatus> {
        let key = self.layout.status(&id.uid);
        let value: Option<Vec<u8>> = self
            .run("mailbox status", |mut c| {
                let key = &key;
                async move { ::redis::cmd("GET").arg(key).query_async(&mut c).await }
            })
            .await?;
        Ok(match value {
            None => MailboxStatus::Missing,
            Some(v) if v == INACTIVE.as_bytes() => MailboxStatus::Terminated,
            Some(_) => MailboxStatus::Active,
        })
    }

    /// Redis' clock: (seconds, microseconds).
    async fn time(&self) -> Result<(u64, u64)> {
        let (secs, micros): (String, String) = self
            .run("time", |mut c| async move {
                ::redis::cmd("TIME").query_async(&mut c).await
            })
            .await?;
        match (secs.parse(), micros.parse()) {
            (Ok(s), Ok(us)) => Ok((s, us)),
            _ => Err(Error::protocol(format!(
                "Redis at {} answered TIME with {secs:?} {micros:?}",
                self.where_
            ))),
        }
    }

    /// academy-py's `update_heartbeat`: Redis' time, as Python's float text.
    pub async fn heartbeat(&self, id: &EntityId) -> Result<()> {
        let (secs, micros) = self.time().await?;
        let key = self.layout.heartbeat(&id.uid);
        let value = redis_keys::heartbeat_text(secs, micros);
        self.run("heartbeat", |mut c| {
            let (key, value) = (&key, &value);
            async move {
                ::redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .query_async::<()>(&mut c)
                    .await
            }
        })
        .await
    }

    /// Seconds since the mailbox's last heartbeat (by Redis' clock).
    pub async fn heartbeat_status(&self, id: &EntityId) -> Result<Option<f64>> {
        let keys = [self.layout.status(&id.uid), self.layout.heartbeat(&id.uid)];
        let answer: Vec<String> = self
            .run("heartbeat status", |mut c| {
                let mut call = self.heartbeat_status.prepare_invoke();
                call.key(&keys[0]).key(&keys[1]);
                async move { call.invoke_async(&mut c).await }
            })
            .await?;
        match answer.as_slice() {
            [w] if w == "missing" => Err(unknown_mailbox(id)),
            [w] if w == "terminated" => Err(terminated_mailbox(id)),
            [w, hb, _, _] if w == "ok" && hb.is_empty() => Ok(None),
            [w, hb, secs, micros] if w == "ok" => {
                let now = match (secs.parse::<u64>(), micros.parse::<u64>()) {
                    (Ok(s), Ok(us)) => s as f64 + us as f64 / 1e6,
                    _ => return Err(self.unexpected("heartbeat status", &answer.join(" "))),
                };
                let then = redis_keys::parse_heartbeat(hb).ok_or_else(|| {
                    Error::protocol(format!(
                        "the heartbeat of {id} in Redis at {} is not a number: {hb:?}",
                        self.where_
                    ))
                })?;
                Ok(Some(now - then))
            }
            _ => Err(self.unexpected("heartbeat status", &answer.join(" "))),
        }
    }

    /// academy-py's client status: ACTIVE while the heartbeat is younger
    /// than 3 intervals, MISSING for an unknown mailbox, TERMINATED for a
    /// terminated one, INACTIVE otherwise.
    pub async fn status(&self, id: &EntityId) -> Result<MailboxStatus> {
        let stale = self.options.heartbeat_interval.as_secs_f64() * STALE_HEARTBEATS;
        match self.heartbeat_status(id).await {
            Ok(Some(age)) if age < stale => Ok(MailboxStatus::Active),
            Ok(_) => Ok(MailboxStatus::Inactive),
            Err(e) if e.status == Status::BadEntityId => Ok(MailboxStatus::Missing),
            Err(e) if e.status == Status::MailboxTerminated => Ok(MailboxStatus::Terminated),
            Err(e) => Err(e),
        }
    }

    /// Every key matching `pattern` (SCAN in batches).
    pub async fn scan(&self, pattern: &str) -> Result<Vec<String>> {
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .run("scan", |mut c| async move {
                    ::redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            found.extend(keys);
            cursor = next;
            if cursor == 0 {
                return Ok(found);
            }
        }
    }

    /// `MGET` of many keys, in batches.
    async fn mget(&self, keys: &[String]) -> Result<Vec<Option<String>>> {
        let mut values = Vec::with_capacity(keys.len());
        for batch in keys.chunks(1000) {
            let got: Vec<Option<String>> = self
                .run("discover", |mut c| async move {
                    ::redis::cmd("MGET").arg(batch).query_async(&mut c).await
                })
                .await?;
            values.extend(got);
        }
        Ok(values)
    }

    /// academy-py's `discover`: agents whose MRO starts with `agent` (or,
    /// with subclasses, contains it) and whose status is `ACTIVE`.
    pub async fn discover(&self, agent: &str, allow_subclasses: bool) -> Result<Vec<Uuid>> {
        let keys = self.scan(&self.layout.agents_pattern()).await?;
        let mros = self.mget(&keys).await?;
        let mut found: Vec<Uuid> = Vec::new();
        for (key, mro) in keys.iter().zip(mros) {
            let Some(mro) = mro else { continue };
            let mut classes = mro.split(',');
            let hit = classes.next() == Some(agent)
                || (allow_subclasses && mro.split(',').any(|c| c == agent));
            if let (true, Some(uid)) = (hit, self.layout.uid_of_agent_key(key)) {
                if !found.contains(&uid) {
                    found.push(uid);
                }
            }
        }
        let status_keys: Vec<String> = found.iter().map(|u| self.layout.status(u)).collect();
        let statuses = self.mget(&status_keys).await?;
        Ok(found
            .into_iter()
            .zip(statuses)
            .filter(|(_, s)| s.as_deref() == Some(ACTIVE))
            .map(|(u, _)| u)
            .collect())
    }

    /// `RPUSH` of one message to a mailbox's queue.
    pub async fn push(&self, queue: &str, message: &str) -> Result<()> {
        self.run("send", |mut c| async move {
            ::redis::cmd("RPUSH")
                .arg(queue)
                .arg(message)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// Puts messages back at the head of `id`'s queue, in their order.
    pub async fn requeue(&self, id: &EntityId, messages: &[String]) -> Result<()> {
        let items: Vec<Vec<u8>> = messages.iter().map(|m| m.as_bytes().to_vec()).collect();
        self.push_front(&self.layout.queue(&id.uid), &items).await
    }

    /// Puts items back at the head of a queue, in their order.
    pub async fn push_front(&self, queue: &str, items: &[Vec<u8>]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.run("put back", |mut c| async move {
            let mut cmd = ::redis::cmd("LPUSH");
            cmd.arg(queue);
            for item in items.iter().rev() {
                cmd.arg(item);
            }
            cmd.query_async::<()>(&mut c).await
        })
        .await
    }

    pub fn unexpected(&self, what: &str, answer: &str) -> Error {
        Error::protocol(format!(
            "{what}: unexpected answer from Redis at {}: {answer:?}",
            self.where_
        ))
    }
}

/// Whether the connection that gave this error cannot be used again.
fn broken(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

/// Whether trying again may succeed (Redis down, restarting or loading).
fn transient(e: &RedisError) -> bool {
    if e.is_timeout() {
        return false; // it may have run: trying again could do it twice
    }
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ::redis::ServerErrorKind::BusyLoading
                    | ::redis::ServerErrorKind::TryAgain
                    | ::redis::ServerErrorKind::MasterDown
            )
        )
}

pub fn unknown_mailbox(id: &EntityId) -> Error {
    Error::new(
        Status::BadEntityId,
        format!("no mailbox {id} ({}) on the exchange", id.uid),
    )
}

pub fn terminated_mailbox(id: &EntityId) -> Error {
    Error::new(
        Status::MailboxTerminated,
        format!("the mailbox of {id} ({}) was terminated", id.uid),
    )
}

// ---- receiving a mailbox's queue ----

/// The receiving side of one mailbox: a channel fed by the reader of its
/// Redis queue (and, on the hybrid exchange, by its peers' connections).
#[derive(Debug)]
pub struct Receiving {
    pub id: EntityId,
    pub queue: String,
    pub tx: mpsc::UnboundedSender<Item>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Item>>,
    stop: watch::Sender<bool>,
    /// The Redis `CLIENT ID` of the reader's connection, to wake it.
    reader_client: Arc<AtomicI64>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl Receiving {
    pub fn new(id: EntityId, queue: String) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        Arc::new(Receiving {
            id,
            queue,
            tx,
            rx: tokio::sync::Mutex::new(rx),
            stop: watch::channel(false).0,
            reader_client: Arc::new(AtomicI64::new(0)),
            reader: Mutex::new(None),
        })
    }

    /// Starts the reader of the Redis queue (`status` is the mailbox's
    /// status key, checked before the first pop and after reconnecting).
    pub fn start_reader(self: &Arc<Self>, store: Arc<RedisStore>, status: String) -> Result<()> {
        let reader = QueueReader {
            store,
            receiving: Arc::downgrade(self),
            queue: self.queue.clone(),
            status,
            tx: self.tx.clone(),
            stop: self.stop.subscribe(),
            client_id: self.reader_client.clone(),
        };
        let task = runtime::handle()?.spawn(reader.run());
        *self.reader.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(())
    }

    /// Stops receiving: wakes and waits for the queue's reader, then puts
    /// every message received and not yet handed out back at the head of
    /// the Redis queue (so the mailbox's next client gets them).
    pub async fn stop(&self, store: &RedisStore) {
        self.stop.send_replace(true);
        let client = self.reader_client.load(Ordering::Acquire);
        if client > 0 {
            // One try: the pop ends within its slice anyway.
            let _ = store
                .run_tries("stop receiving", 0, |mut c| async move {
                    ::redis::cmd("CLIENT")
                        .arg("UNBLOCK")
                        .arg(client)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await;
        }
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(reader) = reader {
            let _ = tokio::time::timeout(STOP_WAIT, reader).await;
        }
        let mut left = Vec::new();
        {
            let mut rx = self.rx.lock().await;
            while let Ok(item) = rx.try_recv() {
                if let Ok(message) = item {
                    left.push(message.into_bytes());
                }
            }
        }
        let _ = store.push_front(&self.queue, &left).await;
    }

    /// The next item, or `None` once stopping began.
    async fn next_item(&self) -> Option<Item> {
        let mut stop = self.stop.subscribe();
        if *stop.borrow_and_update() {
            return None;
        }
        let mut rx = self.rx.lock().await;
        tokio::select! {
            item = rx.recv() => item,
            _ = stop.changed() => None,
        }
    }

    /// Items already in the channel (on termination: what arrived and was
    /// not handed out).
    pub fn take_ready(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(mut rx) = self.rx.try_lock() {
            while let Ok(item) = rx.try_recv() {
                if let Ok(m) = item {
                    out.push(m);
                }
            }
        }
        out
    }
}

/// The mailboxes a factory's clients receive from, counted per client (two
/// clients of one mailbox share its receiving).
#[derive(Debug)]
pub struct Receivers<T> {
    map: Mutex<HashMap<Uuid, (usize, Arc<T>)>>,
}

impl<T> Default for Receivers<T> {
    fn default() -> Self {
        Receivers {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Receivers<T> {
    pub fn get(&self, uid: &Uuid) -> Option<Arc<T>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(uid).map(|(_, r)| r.clone())
    }

    /// Counts one more client of a mailbox already received from.
    pub fn join(&self, uid: &Uuid) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(uid) {
            Some((n, _)) => {
                *n += 1;
                true
            }
            None => false,
        }
    }

    /// Records a new receiving (or, if another client started one meanwhile,
    /// joins that and gives `receiving` back to be stopped).
    pub fn insert(&self, uid: Uuid, receiving: Arc<T>) -> Option<Arc<T>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(&uid) {
            Some((n, _)) => {
                *n += 1;
                Some(receiving)
            }
            None => {
                map.insert(uid, (1, receiving));
                None
            }
        }
    }

    /// One client fewer; the receiving when it was the last.
    pub fn leave(&self, uid: &Uuid) -> Option<Arc<T>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let last = match map.get_mut(uid) {
            Some((n, _)) => {
                *n -= 1;
                *n == 0
            }
            None => false,
        };
        if last {
            map.remove(uid).map(|(_, r)| r)
        } else {
            None
        }
    }
}

/// The task that moves a mailbox's Redis queue into its channel.
struct QueueReader {
    store: Arc<RedisStore>,
    receiving: std::sync::Weak<Receiving>,
    queue: String,
    status: String,
    tx: mpsc::UnboundedSender<Item>,
    stop: watch::Receiver<bool>,
    client_id: Arc<AtomicI64>,
}

/// `BLMPOP`'s answer: the key, and the items taken.
type KeyAndItems = (Vec<u8>, Vec<Vec<u8>>);

/// What one pop brought.
enum Popped {
    Nothing,
    Items(Vec<Vec<u8>>),
}

impl QueueReader {
    fn stopping(&self) -> bool {
        *self.stop.borrow() || self.receiving.strong_count() == 0
    }

    async fn run(self) {
        let mut conn: Option<MultiplexedConnection> = None;
        let mut checked = false;
        let mut retry = Duration::from_millis(100);
        let mut reported = false;
        while !self.stopping() {
            let step = self.step(&mut conn, &mut checked).await;
            match step {
                Ok(Popped::Nothing) => {}
                Ok(Popped::Items(items)) => {
                    retry = Duration::from_millis(100);
                    reported = false;
                    if !self.hand_over(items).await {
                        return;
                    }
                }
                Err(e) if e.is_final() => {
                    let _ = self.tx.send(Err(e));
                    return;
                }
                Err(e) => {
                    // Redis down or restarting: say so once, then keep trying.
                    conn = None;
                    checked = false;
                    if !reported {
                        reported = true;
                        let _ = self.tx.send(Err(e));
                    }
                    let mut stop = self.stop.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => {}
                        _ = stop.changed() => {}
                    }
                    retry = (retry * 2).min(MAX_POP_RETRY);
                }
            }
        }
    }

    /// Connects if needed, checks the status once per connection, then pops.
    async fn step(
        &self,
        conn: &mut Option<MultiplexedConnection>,
        checked: &mut bool,
    ) -> Result<Popped> {
        let what = "receiving";
        let fail = |e: RedisError| self.store.error(what, &e);
        if conn.is_none() {
            let response = POP_SLICE + self.store.options.request_timeout;
            let mut c = self.store.open(response).await.map_err(fail)?;
            let id: i64 = ::redis::cmd("CLIENT")
                .arg("ID")
                .query_async(&mut c)
                .await
                .unwrap_or(0);
            self.client_id.store(id, Ordering::Release);
            *conn = Some(c);
        }
        let Some(c) = conn.as_mut() else {
            return Ok(Popped::Nothing);
        };
        if !*checked {
            let status: Option<Vec<u8>> = ::redis::cmd("GET")
                .arg(&self.status)
                .query_async(c)
                .await
                .map_err(fail)?;
            let id = self.receiving.upgrade().map(|r| r.id.clone());
            let id = id.unwrap_or_else(|| EntityId::agent_from_uid(Uuid::nil()));
            match status {
                None => return Err(unknown_mailbox(&id)),
                Some(s) if s == INACTIVE.as_bytes() => return Err(terminated_mailbox(&id)),
                Some(_) => *checked = true,
            }
        }
        if self.stopping() {
            return Ok(Popped::Nothing);
        }
        if !self.store.no_blmpop.load(Ordering::Relaxed) {
            // Redis 7: waits for the first message and takes those behind
            // it in the same round trip.
            let popped: RedisResult<Option<KeyAndItems>> = ::redis::cmd("BLMPOP")
                .arg(POP_SLICE.as_secs())
                .arg(1)
                .arg(&self.queue)
                .arg("LEFT")
                .arg("COUNT")
                .arg(POP_BATCH)
                .query_async(c)
                .await;
            match popped {
                Ok(None) => return Ok(Popped::Nothing),
                Ok(Some((_, items))) => return Ok(Popped::Items(items)),
                Err(e) if e.to_string().to_lowercase().contains("unknown command") => {
                    self.store.no_blmpop.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(fail(e)),
            }
        }
        let popped: Option<(Vec<u8>, Vec<u8>)> = ::redis::cmd("BLPOP")
            .arg(&self.queue)
            .arg(POP_SLICE.as_secs())
            .query_async(c)
            .await
            .map_err(fail)?;
        let Some((_, first)) = popped else {
            return Ok(Popped::Nothing);
        };
        let mut items = vec![first];
        if items[0] != CLOSE_SENTINEL {
            // Redis before 7: more may be waiting; take them in one trip.
            let more: RedisResult<Vec<Vec<u8>>> = self
                .store
                .take_more
                .key(&self.queue)
                .arg(POP_BATCH)
                .invoke_async(c)
                .await;
            match more {
                Ok(more) => items.extend(more),
                Err(_) => {
                    // Hand over the one taken; reconnect for the next.
                    *conn = None;
                    *checked = false;
                }
            }
        }
        Ok(Popped::Items(items))
    }

    /// Sends the items to the channel (up to a sentinel, which ends the
    /// mailbox); when stopping, puts them back instead. Returns whether to
    /// go on.
    async fn hand_over(&self, items: Vec<Vec<u8>>) -> bool {
        if self.stopping() {
            let _ = self.store.push_front(&self.queue, &items).await;
            return false;
        }
        for (i, item) in items.iter().enumerate() {
            if item == CLOSE_SENTINEL {
                // Messages pushed after the sentinel raced a terminate.
                let id = self.receiving.upgrade().map(|r| r.id.clone());
                let id = id.unwrap_or_else(|| EntityId::agent_from_uid(Uuid::nil()));
                let _ = self.tx.send(Err(terminated_mailbox(&id)));
                return false;
            }
            let Ok(text) = String::from_utf8(item.clone()) else {
                continue; // not a message: academy-py's reader would fail on it too
            };
            if self.tx.send(Ok(text)).is_err() {
                let _ = self.store.push_front(&self.queue, &items[i..]).await;
                return false;
            }
        }
        true
    }
}

/// A view of a mailbox's channel for the client's listener.
pub struct ChannelInbound(pub Arc<Receiving>);

impl Inbound for ChannelInbound {
    fn next(&mut self) -> NextMessage<'_> {
        Box::pin(async move {
            // What Redis queues and hybrid peers hand over is untrusted:
            // text that is no Academy message is dropped here, as academy-py's
            // exchange refuses it, and never reaches `recv`.
            let mut item = self.0.next_item().await;
            while let Some(Ok(text)) = &item {
                match header_of(text) {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::debug!(mailbox = %self.0.id, "dropped: {}", e.message);
                        item = self.0.next_item().await;
                    }
                }
            }
            match item {
                Some(Ok(message)) => Ok(Some(message)),
                Some(Err(e)) => Err(e),
                None => Err(Error::closed(format!(
                    "the client of {} stopped receiving",
                    self.0.id
                ))),
            }
        })
    }
}

/// `Closed` for a mailbox whose receiving was stopped (or never started).
pub fn not_receiving(id: &EntityId) -> Error {
    Error::closed(format!("the client of {id} is not receiving (closed)"))
}
