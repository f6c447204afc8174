//! Mailboxes in Redis, in academy-py 1.0.0's `RedisBackend` layout, so that
//! several exchange processes (ours and academy-py's) on one Redis serve one
//! set of mailboxes.
//!
//! Keys and values are academy-py's, byte for byte:
//!
//! | key                     | value                                        |
//! |-------------------------|----------------------------------------------|
//! | `active:{uid}`          | `ACTIVE` or `TERMINATED`                     |
//! | `owner:{uid}`           | the owning client id followed by `_`         |
//! | `agent:{uid}`           | the agent's MRO joined by `,`                |
//! | `queue:{uid}`           | list of messages (pydantic JSON); `<CLOSED>` |
//! | `share:{uid}`           | set of group ids                             |
//! | `request:{uid}:{tag}`   | the header (JSON) of a request in flight     |
//! | `heartbeat:{uid}`       | Redis `TIME` of the last heartbeat, seconds  |
//! | `completions:{uid}`     | requests answered by the agent (counter)     |
//! | `outgoing:{uid}`        | requests sent by the entity (counter)        |
//!
//! and one key of ours, which academy-py neither reads nor writes:
//! `pending:{uid}`, the set of tags of requests in flight to `uid`, so that
//! terminating a mailbox finds them without scanning the key space (academy-py
//! scans `request:{uid}:*`).
//!
//! Each operation is one Lua script (one round trip, atomic) where
//! academy-py makes up to 17 sequential commands; a receive takes a waiting
//! message with `LPOP`, and otherwise waits in a `BLPOP` that it shares with
//! other waiting receives on one of a fixed number of connections
//! ([`crate::server::backend::redis_wait`]).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Script};
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::{Error, Result, Status};
use crate::redact;
use crate::server::backend::model::{
    AgentStats, BResult, BackendError, Client, MailboxStatus, Received, Shutdown, StoredQueues,
};
use crate::server::backend::redis_calls::{
    agent_stats, groups, heartbeat_age, mailbox_status, owner_of, terminated_answers, timed,
    unavailable, values, within_limit, word, TaskGuard, Tasks, CONNECT_TIMEOUT, POP_RETRY,
    RESPONSE_TIMEOUT,
};
use crate::server::backend::redis_wait::CLOSE_SENTINEL;
use crate::server::backend::redis_wait::{Lanes, Queues};
use crate::server::config::RedisConfig;
use crate::server::metrics::Metrics;
use crate::wire::ids::EntityId;
use crate::wire::message::Message;

/// Functions shared by the scripts. `permitted` is academy-py's
/// `_has_permissions`: no owner, the owner, or a member of a shared group.
const PRELUDE: &str = r#"
local function permitted(owner_key, share_key, me, first_group)
  local owner = redis.call('GET', owner_key)
  if (not owner) or owner == me then return true end
  for i = first_group, #ARGV do
    if redis.call('SISMEMBER', share_key, ARGV[i]) == 1 then return true end
  end
  return false
end
local function expire_all(seconds, ...)
  local s = tonumber(seconds)
  if s > 0 then
    for _, k in ipairs({...}) do redis.call('EXPIRE', k, s) end
  end
end
"#;

/// KEYS: owner share active. ARGV: me groups...
const CHECK: &str = r#"
if not permitted(KEYS[1], KEYS[2], ARGV[1], 2) then return 'forbidden' end
local status = redis.call('GET', KEYS[3])
if not status then return 'MISSING' end
if status == 'TERMINATED' then return 'TERMINATED' end
return 'ACTIVE'
"#;

/// KEYS: owner share active agent heartbeat. ARGV: me has_agent mro
/// gravestone_s groups... A terminated id stays terminated (a gravestone).
const CREATE: &str = r#"
if not permitted(KEYS[1], KEYS[2], ARGV[1], 5) then return 'forbidden' end
if redis.call('GET', KEYS[3]) == 'TERMINATED' then return 'ok' end
redis.call('SET', KEYS[3], 'ACTIVE')
if ARGV[2] == '1' then redis.call('SET', KEYS[4], ARGV[3]) end
redis.call('SET', KEYS[1], ARGV[1])
expire_all(ARGV[4], KEYS[3], KEYS[1], KEYS[5], KEYS[4])
return 'ok'
"#;

/// KEYS: owner share active queue agent pending. ARGV: me gravestone_s uid
/// groups... Returns {status, headers of the requests in flight...}.
const TERMINATE: &str = r#"
if not permitted(KEYS[1], KEYS[2], ARGV[1], 4) then return {'forbidden'} end
local status = redis.call('GET', KEYS[3])
if (not status) or status == 'TERMINATED' then return {'ok'} end
redis.call('SET', KEYS[3], 'TERMINATED')
expire_all(ARGV[2], KEYS[3])
redis.call('DEL', KEYS[4])
redis.call('RPUSH', KEYS[4], '<CLOSED>')
redis.call('DEL', KEYS[5])
local out = {'ok'}
for _, tag in ipairs(redis.call('SMEMBERS', KEYS[6])) do
  local rk = 'request:' .. ARGV[3] .. ':' .. tag
  local header = redis.call('GET', rk)
  if header then
    out[#out + 1] = header
    redis.call('DEL', rk)
  end
end
redis.call('DEL', KEYS[6])
return out
"#;

/// KEYS: owner share heartbeat active agent. ARGV: me gravestone_s groups...
const HEARTBEAT: &str = r#"
if not permitted(KEYS[1], KEYS[2], ARGV[1], 3) then return 'forbidden' end
local t = redis.call('TIME')
redis.call('SET', KEYS[3], string.format('%s.%06d', t[1], tonumber(t[2])))
expire_all(ARGV[2], KEYS[4], KEYS[1], KEYS[3], KEYS[5])
return 'ok'
"#;

/// KEYS: owner share active heartbeat. ARGV: me groups...
/// Returns {status, heartbeat or '', now seconds, now microseconds}.
const HEARTBEAT_STATUS: &str = r#"
if not permitted(KEYS[1], KEYS[2], ARGV[1], 2) then return {'forbidden'} end
local status = redis.call('GET', KEYS[3])
if not status then return {'missing'} end
if status == 'TERMINATED' then return {'terminated'} end
local hb = redis.call('GET', KEYS[4]) or ''
local t = redis.call('TIME')
return {'ok', hb, t[1], t[2]}
"#;

/// KEYS: owner share queue completions outgoing. ARGV: me groups...
/// (The requests in flight are counted by the caller.)
const STATS: &str = r#"
if not permitted(KEYS[1], KEYS[2], ARGV[1], 2) then return {'forbidden'} end
local queued = redis.call('LLEN', KEYS[3])
local completed = redis.call('GET', KEYS[4]) or '0'
local outgoing = redis.call('GET', KEYS[5]) or '0'
return {'ok', tostring(queued), completed, outgoing}
"#;

/// Before a receive (academy-py's `get`): permission, status, and the
/// expirations pushed back. KEYS: owner share active heartbeat agent queue.
/// ARGV: me gravestone_s mailbox_s groups...
const RECV_CHECK: &str = r#"
if not permitted(KEYS[1], KEYS[2], ARGV[1], 4) then return 'forbidden' end
local status = redis.call('GET', KEYS[3])
if not status then return 'missing' end
if status == 'TERMINATED' then return 'terminated' end
expire_all(ARGV[2], KEYS[3], KEYS[1], KEYS[4], KEYS[5])
expire_all(ARGV[3], KEYS[6])
return 'ok'
"#;

/// academy-py's `put`. KEYS: owner share active queue request-record
/// pending-set counter (outgoing of the sender for a request, completions
/// of the responder for a response). ARGV: me is_request header message
/// mailbox_s tag too_large as_server groups...
const PUT: &str = r#"
if ARGV[8] ~= '1' and not permitted(KEYS[1], KEYS[2], ARGV[1], 9) then return 'forbidden' end
local status = redis.call('GET', KEYS[3])
if not status then return 'missing' end
if status == 'TERMINATED' then return 'terminated' end
if ARGV[7] == '1' then return 'too_large' end
local exp = tonumber(ARGV[5])
if ARGV[2] == '1' then
  redis.call('SET', KEYS[5], ARGV[3])
  redis.call('INCR', KEYS[7])
  redis.call('SADD', KEYS[6], ARGV[6])
  if exp > 0 then
    redis.call('EXPIRE', KEYS[5], exp)
    redis.call('EXPIRE', KEYS[6], exp)
  end
elseif redis.call('DEL', KEYS[5]) == 1 then
  redis.call('INCR', KEYS[7])
  redis.call('SREM', KEYS[6], ARGV[6])
end
redis.call('RPUSH', KEYS[4], ARGV[4])
if exp > 0 then redis.call('EXPIRE', KEYS[4], exp, 'NX') end
return 'ok'
"#;

/// KEYS: active owner share. ARGV: me op(add|list|remove) group member
/// (then the groups, unused).
/// academy-py's share calls check the status first, then ownership.
const SHARES: &str = r#"
local status = redis.call('GET', KEYS[1])
if not status then return {'missing'} end
if status == 'TERMINATED' then return {'terminated'} end
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[1] then return {'forbidden'} end
if ARGV[2] == 'add' then
  if ARGV[4] ~= '1' then return {'forbidden'} end
  redis.call('SADD', KEYS[3], ARGV[3])
elseif ARGV[2] == 'remove' then
  redis.call('SREM', KEYS[3], ARGV[3])
else
  local out = redis.call('SMEMBERS', KEYS[3])
  table.insert(out, 1, 'ok')
  return out
end
return {'ok'}
"#;

/// Of the candidate agents in ARGV[3..], those the client may see and that
/// are active. ARGV: me ngroups groups... uids...
const DISCOVER_FILTER: &str = r#"
local me = ARGV[1]
local ngroups = tonumber(ARGV[2])
local out = {}
for i = 3 + ngroups, #ARGV do
  local uid = ARGV[i]
  local ok = true
  local owner = redis.call('GET', 'owner:' .. uid)
  if owner and owner ~= me then
    ok = false
    for g = 3, 2 + ngroups do
      if redis.call('SISMEMBER', 'share:' .. uid, ARGV[g]) == 1 then ok = true end
    end
  end
  if ok and redis.call('GET', 'active:' .. uid) == 'ACTIVE' then
    out[#out + 1] = uid
  end
end
return out
"#;

struct Scripts {
    check: Script,
    create: Script,
    terminate: Script,
    heartbeat: Script,
    heartbeat_status: Script,
    stats: Script,
    recv_check: Script,
    put: Script,
    shares: Script,
    discover_filter: Script,
}

impl Scripts {
    fn new() -> Scripts {
        let s = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Scripts {
            check: s(CHECK),
            create: s(CREATE),
            terminate: s(TERMINATE),
            heartbeat: s(HEARTBEAT),
            heartbeat_status: s(HEARTBEAT_STATUS),
            stats: s(STATS),
            recv_check: s(RECV_CHECK),
            put: s(PUT),
            shares: s(SHARES),
            discover_filter: s(DISCOVER_FILTER),
        }
    }
}

fn key(prefix: &str, uid: &EntityId) -> String {
    format!("{prefix}:{}", uid.uid)
}

pub(crate) struct RedisBackend {
    conn: ConnectionManager,
    client: redis::Client,
    /// The connections waiting receives share.
    lanes: Lanes,
    scripts: Scripts,
    pub(crate) limit: usize,
    mailbox_s: u64,
    gravestone_s: u64,
    pub(crate) shutdown: Shutdown,
    tasks: Arc<Tasks>,
    pub(crate) metrics: Option<Arc<Metrics>>,
}

impl RedisBackend {
    /// Connects to Redis (failing now if it cannot be reached).
    pub(crate) async fn connect(
        config: &RedisConfig,
        message_size_limit_kb: u64,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self> {
        let mut settings = RedisConnectionInfo::default().set_db(config.db);
        if let Some(u) = &config.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &config.password {
            settings = settings.set_password(p);
        }
        // Never a login, not even one written into the host name.
        let where_ = redact::url(&format!("{}:{}", config.hostname, config.port));
        let connect_error = |e: redis::RedisError| {
            Error::new(
                Status::Connection,
                format!(
                    "exchange cannot use Redis at {where_}: {}",
                    redact::url(&e.to_string())
                ),
            )
        };
        let info = ConnectionAddr::Tcp(config.hostname.clone(), config.port)
            .into_connection_info()
            .map_err(connect_error)?
            .set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(connect_error)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_millis(500));
        let mut conn = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .map_err(connect_error)?;
        // Fail at start, not at the first request, when Redis says no.
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(connect_error)?;
        Ok(RedisBackend {
            conn,
            client,
            lanes: Lanes::new(),
            scripts: Scripts::new(),
            limit: (message_size_limit_kb as usize).saturating_mul(1024),
            mailbox_s: config.mailbox_expiration_s,
            gravestone_s: config.gravestone_expiration_s,
            shutdown: Shutdown::default(),
            tasks: Arc::new(Tasks::default()),
            metrics,
        })
    }

    /// One round trip, counted, timed, and logged when slow.
    async fn timed<T>(
        &self,
        op: &'static str,
        round_trip: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        timed(self.metrics.as_deref(), op, round_trip).await
    }

    /// Whether Redis answers (`GET /health`), with the round trip time.
    pub(crate) async fn ping(&self) -> BResult<Duration> {
        let start = Instant::now();
        self.timed(
            "PING",
            redis::cmd("PING").query_async::<()>(&mut self.conn()),
        )
        .await
        .map_err(unavailable)?;
        Ok(start.elapsed())
    }

    /// Mailboxes by state, (active, terminated), of every exchange on this
    /// Redis: a scan of `active:*` (as academy-py's discovery scans).
    pub(crate) async fn mailbox_counts(&self) -> BResult<(u64, u64)> {
        let keys = self.scan("active:*").await?;
        let (mut active, mut terminated) = (0, 0);
        for batch in keys.chunks(1000) {
            let states: Vec<Option<String>> = self
                .timed(
                    "MGET",
                    redis::cmd("MGET").arg(batch).query_async(&mut self.conn()),
                )
                .await
                .map_err(unavailable)?;
            for state in states.iter().flatten() {
                match state.as_str() {
                    "ACTIVE" => active += 1,
                    "TERMINATED" => terminated += 1,
                    _ => {}
                }
            }
        }
        Ok((active, terminated))
    }

    fn conn(&self) -> ConnectionManager {
        // A cheap handle on the shared, pipelined connection.
        self.conn.clone()
    }

    /// Runs a per-mailbox script: KEYS are the keys of `uid` with these
    /// prefixes, in order; ARGV is the client's owner value, `args`, then
    /// the client's groups (the shape every such script shares).
    async fn mailbox_script<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        script: &Script,
        uid: &EntityId,
        prefixes: &[&str],
        client: &Client,
        args: &[String],
    ) -> BResult<T> {
        let mut call = script.prepare_invoke();
        for prefix in prefixes {
            call.key(key(prefix, uid));
        }
        call.arg(owner_of(client));
        for arg in args {
            call.arg(arg);
        }
        call.arg(groups(client));
        self.timed(op, call.invoke_async(&mut self.conn()))
            .await
            .map_err(unavailable)
    }

    pub(crate) async fn check_mailbox(
        &self,
        client: &Client,
        uid: &EntityId,
    ) -> BResult<MailboxStatus> {
        let answer: String = self
            .mailbox_script(
                "check",
                &self.scripts.check,
                uid,
                &["owner", "share", "active"],
                client,
                &[],
            )
            .await?;
        mailbox_status(&answer)
    }

    pub(crate) async fn create_mailbox(
        &self,
        client: &Client,
        uid: &EntityId,
        agent: Option<Vec<String>>,
    ) -> BResult<()> {
        let mro = agent.as_ref().map(|a| a.join(","));
        let answer: String = self
            .mailbox_script(
                "create",
                &self.scripts.create,
                uid,
                &["owner", "share", "active", "agent", "heartbeat"],
                client,
                &[
                    if mro.is_some() { "1" } else { "0" }.to_owned(),
                    mro.unwrap_or_default(),
                    self.gravestone_s.to_string(),
                ],
            )
            .await?;
        word(&answer)
    }

    /// Terminates a mailbox and answers the requests in flight to it with
    /// `MAILBOX_TERMINATED` errors, as the in-memory backend does.
    pub(crate) async fn terminate(&self, client: &Client, uid: &EntityId) -> BResult<()> {
        let answer: Vec<String> = self
            .mailbox_script(
                "terminate",
                &self.scripts.terminate,
                uid,
                &["owner", "share", "active", "queue", "agent", "pending"],
                client,
                &[self.gravestone_s.to_string(), uid.uid.to_string()],
            )
            .await?;
        for response in terminated_answers(values(&answer)?) {
            let _ = self.put_message(&response, None).await;
        }
        Ok(())
    }

    pub(crate) async fn update_heartbeat(&self, client: &Client, uid: &EntityId) -> BResult<()> {
        let answer: String = self
            .mailbox_script(
                "heartbeat",
                &self.scripts.heartbeat,
                uid,
                &["owner", "share", "heartbeat", "active", "agent"],
                client,
                &[self.gravestone_s.to_string()],
            )
            .await?;
        word(&answer)
    }

    /// Seconds since the last heartbeat (by Redis' clock, shared by every
    /// exchange process), or None.
    pub(crate) async fn heartbeat_status(
        &self,
        client: &Client,
        uid: &EntityId,
    ) -> BResult<Option<f64>> {
        let answer: Vec<String> = self
            .mailbox_script(
                "heartbeat_status",
                &self.scripts.heartbeat_status,
                uid,
                &["owner", "share", "active", "heartbeat"],
                client,
                &[],
            )
            .await?;
        heartbeat_age(&answer, uid)
    }

    /// academy-py's counters; the requests in flight are counted as
    /// academy-py counts them (a scan of `request:{uid}:*`), so that every
    /// exchange process answers the same whichever one a request came
    /// through. (Statistics are rare; the hot paths never scan.)
    pub(crate) async fn agent_stats(&self, client: &Client, uid: &EntityId) -> BResult<AgentStats> {
        let answer: Vec<String> = self
            .mailbox_script(
                "stats",
                &self.scripts.stats,
                uid,
                &["owner", "share", "queue", "completions", "outgoing"],
                client,
                &[],
            )
            .await?;
        values(&answer)?;
        let pending = self.scan(&format!("request:{}:*", uid.uid)).await?.len() as u64;
        agent_stats(&answer, Some(pending))
    }

    /// Every key matching `pattern` (SCAN, in batches).
    async fn scan(&self, pattern: &str) -> BResult<Vec<String>> {
        let mut conn = self.conn();
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) = self
                .timed("SCAN", scan.query_async(&mut conn))
                .await
                .map_err(unavailable)?;
            found.extend(keys);
            cursor = next;
            if cursor == 0 {
                return Ok(found);
            }
        }
    }

    /// Agents whose MRO starts with (or, with subclasses, contains) `agent`.
    /// Like academy-py this scans `agent:*`, so that agents registered
    /// through any exchange process are found.
    pub(crate) async fn discover(
        &self,
        client: &Client,
        agent: &str,
        allow_subclasses: bool,
    ) -> BResult<Vec<Uuid>> {
        let mut conn = self.conn();
        let keys = self.scan("agent:*").await?;
        let mut candidates: Vec<String> = Vec::new();
        // SCAN may return a key twice; a set keeps this linear.
        let mut seen = std::collections::HashSet::new();
        for batch in keys.chunks(1000) {
            let mros: Vec<Option<String>> = self
                .timed("MGET", redis::cmd("MGET").arg(batch).query_async(&mut conn))
                .await
                .map_err(unavailable)?;
            for (k, mro) in batch.iter().zip(mros) {
                let Some(mro) = mro else { continue };
                let hit = mro.split(',').next() == Some(agent)
                    || (allow_subclasses && mro.split(',').any(|c| c == agent));
                if let (true, Some(uid)) = (hit, k.strip_prefix("agent:")) {
                    if seen.insert(uid) {
                        candidates.push(uid.to_owned());
                    }
                }
            }
        }
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let groups = groups(client);
        let mut filter = self.scripts.discover_filter.prepare_invoke();
        filter
            .arg(owner_of(client))
            .arg(groups.len())
            .arg(&groups)
            .arg(&candidates);
        let active: Vec<String> = self
            .timed("discover", filter.invoke_async(&mut conn))
            .await
            .map_err(unavailable)?;
        Ok(active
            .iter()
            .filter_map(|u| Uuid::parse_str(u).ok())
            .collect())
    }

    /// Checks that the client may receive from the mailbox and pushes its
    /// expirations back (academy-py's `get`, before it blocks).
    pub(crate) async fn receivable(&self, client: &Client, uid: &EntityId) -> BResult<()> {
        let answer: String = self
            .mailbox_script(
                "recv_check",
                &self.scripts.recv_check,
                uid,
                &["owner", "share", "active", "heartbeat", "agent", "queue"],
                client,
                &[self.gravestone_s.to_string(), self.mailbox_s.to_string()],
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
        let mut push = redis::cmd("LPUSH");
        push.arg(key("queue", &message.header.dest)).arg(text);
        self.timed("LPUSH", push.query_async::<()>(&mut self.conn()))
            .await
            .map_err(unavailable)
    }

    async fn put_message(&self, message: &Message, client: Option<&Client>) -> BResult<()> {
        let text = message.to_json();
        let h = &message.header;
        let (record, pending, counter) = if message.is_request() {
            (
                format!("request:{}:{}", h.dest.uid, h.tag),
                key("pending", &h.dest),
                key("outgoing", &h.src),
            )
        } else {
            (
                format!("request:{}:{}", h.src.uid, h.tag),
                key("pending", &h.src),
                key("completions", &h.src),
            )
        };
        let header_json = if message.is_request() {
            serde_json::to_string(h).unwrap_or_default()
        } else {
            String::new()
        };
        let (me, groups) = match client {
            Some(c) => (owner_of(c), groups(c)),
            None => (String::new(), Vec::new()),
        };
        let mut call = self.scripts.put.prepare_invoke();
        call.key(key("owner", &h.dest))
            .key(key("share", &h.dest))
            .key(key("active", &h.dest))
            .key(key("queue", &h.dest))
            .key(record)
            .key(pending)
            .key(counter)
            .arg(me)
            .arg(if message.is_request() { "1" } else { "0" })
            .arg(header_json)
            .arg(&text)
            .arg(self.mailbox_s)
            .arg(h.tag.to_string())
            .arg(if text.len() > self.limit { "1" } else { "0" })
            .arg(if client.is_none() { "1" } else { "0" })
            .arg(groups);
        let answer: String = self
            .timed("put", call.invoke_async(&mut self.conn()))
            .await
            .map_err(unavailable)?;
        if answer == "too_large" {
            return Err(BackendError::TooLarge {
                size: text.len(),
                limit: self.limit,
            });
        }
        word(&answer)
    }

    /// KEYS active owner share; the share scripts' common call (`op`: add,
    /// list or remove).
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
        let answer: Vec<String> = self
            .mailbox_script(
                "shares",
                &self.scripts.shares,
                uid,
                &["active", "owner", "share"],
                client,
                &[op.to_owned(), group.to_owned(), member.to_owned()],
            )
            .await?;
        Ok(values(&answer)?.to_vec())
    }

    /// Puts a message taken for a receiver that has gone back at the head
    /// of its queue, so that the next receiver gets it first.
    async fn unpop(&self, uid: &EntityId, item: Vec<u8>) {
        self.unpop_queue(&key("queue", uid), item).await
    }

    /// [`RedisBackend::unpop`] by the queue's key.
    async fn unpop_queue(&self, queue: &str, item: Vec<u8>) {
        for _ in 0..50 {
            let mut push = redis::cmd("LPUSH");
            push.arg(queue).arg(&item);
            let mut conn = self.conn();
            let r: redis::RedisResult<()> = self.timed("LPUSH", push.query_async(&mut conn)).await;
            if r.is_ok() {
                return;
            }
            tokio::time::sleep(POP_RETRY).await;
        }
    }

    /// Ends waiting receives (within one pop slice).
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.trigger();
    }

    /// Waits until no background receive is running.
    pub(crate) async fn drained(&self) {
        self.tasks.drained().await
    }
}

impl StoredQueues for RedisBackend {
    fn unpop_later(self: Arc<Self>, uid: &EntityId, item: Vec<u8>) {
        let guard = self.tasks.enter();
        let me = self;
        let uid = uid.clone();
        tokio::spawn(async move {
            let _guard = guard;
            me.unpop(&uid, item).await;
        });
    }

    /// Waits until `deadline` for the next message of the mailbox: one
    /// waiting is taken at once; otherwise the receive waits in a lane
    /// ([`Lanes`]). If the receiver is gone when a message is taken (the
    /// HTTP client disconnected), the message goes back to the queue.
    fn receive(self: Arc<Self>, uid: &EntityId, deadline: Instant) -> oneshot::Receiver<Received> {
        let (tx, rx) = oneshot::channel();
        let queue = key("queue", uid);
        let guard = self.tasks.enter();
        let me = self;
        tokio::spawn(async move {
            let _guard = guard;
            if me.shutdown.is_set() {
                let _ = tx.send(Err(BackendError::ShuttingDown));
                return;
            }
            let waiting: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("LPOP")
                .arg(&queue)
                .query_async(&mut me.conn())
                .await;
            match waiting {
                Ok(Some(item)) if item == CLOSE_SENTINEL => {
                    let _ = tx.send(Err(BackendError::Terminated));
                }
                Ok(Some(item)) => {
                    if let Err(Ok(item)) = tx.send(Ok(item)) {
                        me.unpop_queue(&queue, item).await;
                    }
                }
                // Nothing yet, or Redis restarting (the lane waits it out).
                _ => me.lanes.wait(&me, queue, tx, deadline).await,
            }
        });
        rx
    }

    fn shutdown_signal(&self) -> &Shutdown {
        &self.shutdown
    }

    fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }
}

impl Queues for RedisBackend {
    type Busy = TaskGuard;

    fn shared_connection(&self) -> ConnectionManager {
        self.conn()
    }

    fn client(&self) -> &redis::Client {
        &self.client
    }

    fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    fn busy(&self) -> TaskGuard {
        self.tasks.enter()
    }

    async fn put_back(&self, queue: &str, item: Vec<u8>) {
        self.unpop_queue(queue, item).await
    }
}
