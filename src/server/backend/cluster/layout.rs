//! Where a Redis Cluster backend keeps mailboxes: the keys, and the Lua
//! scripts that are its operations.
//!
//! Every key of one mailbox has the mailbox's uid as its hash tag (the
//! `{…}` part, which alone picks the hash slot), so all of a mailbox lives
//! on one node and each operation on it is one atomic script there:
//!
//! | key                     | value                                              |
//! |-------------------------|----------------------------------------------------|
//! | `mailbox:{uid}`         | hash: `status` (`ACTIVE`/`TERMINATED`), `owner`, `agent` (the MRO joined by `,`), `heartbeat`, `completions`, `outgoing`, and `share:{group}` per group it is shared with |
//! | `queue:{uid}`           | list of messages (pydantic JSON); `<CLOSED>` once terminated |
//! | `pending:{uid}`         | hash: tag → header of each request in flight to the mailbox |
//! | `seen:{uid}`            | sorted set: tags queued lately (by time), so that a message sent again is dropped |
//! | `popped:{uid}`          | hash: the last message taken and who took it, so that a take retried after a lost answer gets it again |
//! | `terminated:{uid}`      | `1` once terminated (counted for the metrics) |
//! | channel `wake:{uid}`    | sharded pub/sub: a message was queued or the mailbox closed |
//!
//! Operations across mailboxes use keys of their own, spread over slots:
//! `agents:{class#n}`, for each class of an agent's MRO, is shard `n` (of
//! [`AGENT_SHARDS`], by the uid) of the set of agents with that class;
//! discovery reads the shards of one class, so that no key and no node
//! holds every agent of a popular class.
//!
//! The layout is not academy-py's (its keys of one mailbox fall in several
//! slots): academy-py's exchange cannot share the cluster.

use redis::Script;
use uuid::Uuid;

/// Shards of each agent-class index: enough to spread a class over the
/// masters of a mid-size cluster, few enough that a discovery's fixed cost
/// (one read per shard) stays small.
pub(crate) const AGENT_SHARDS: u128 = 16;
/// How long a taken message is kept for a retried take (covers the
/// client's retries through a failover).
pub(crate) const POPPED_TTL_S: u64 = 60;

pub(crate) fn mailbox(uid: &Uuid) -> String {
    format!("mailbox:{{{uid}}}")
}

pub(crate) fn queue(uid: &Uuid) -> String {
    format!("queue:{{{uid}}}")
}

pub(crate) fn pending(uid: &Uuid) -> String {
    format!("pending:{{{uid}}}")
}

pub(crate) fn seen(uid: &Uuid) -> String {
    format!("seen:{{{uid}}}")
}

pub(crate) fn popped(uid: &Uuid) -> String {
    format!("popped:{{{uid}}}")
}

pub(crate) fn terminated(uid: &Uuid) -> String {
    format!("terminated:{{{uid}}}")
}

pub(crate) fn wake_channel(uid: &Uuid) -> String {
    format!("wake:{{{uid}}}")
}

/// The mailbox a wake-up channel is about.
pub(crate) fn uid_of_channel(channel: &[u8]) -> Option<Uuid> {
    let text = std::str::from_utf8(channel).ok()?;
    let inner = text.strip_prefix("wake:{")?.strip_suffix('}')?;
    Uuid::parse_str(inner).ok()
}

/// The shard of the index of `class` that holds `uid`.
pub(crate) fn agent_index(class: &str, uid: &Uuid) -> String {
    agent_shard(class, uid.as_u128() % AGENT_SHARDS)
}

pub(crate) fn agent_shard(class: &str, shard: u128) -> String {
    format!("agents:{{{class}#{shard}}}")
}

/// Functions shared by the scripts. `permitted` is academy-py's
/// `_has_permissions`: no owner, the owner, or a member of a shared group
/// (groups are ARGV from `first_group` on).
const PRELUDE: &str = r#"
local function permitted_by(mailbox, owner, me, first_group)
  if (not owner) or owner == me then return true end
  for i = first_group, #ARGV do
    if redis.call('HEXISTS', mailbox, 'share:' .. ARGV[i]) == 1 then return true end
  end
  return false
end
local function permitted(mailbox, me, first_group)
  return permitted_by(mailbox, redis.call('HGET', mailbox, 'owner'), me, first_group)
end
local function expire(key, seconds)
  local s = tonumber(seconds)
  if s > 0 then redis.call('EXPIRE', key, s) end
end
"#;

/// KEYS: mailbox. ARGV: me groups...
const CHECK: &str = r#"
if not permitted(KEYS[1], ARGV[1], 2) then return 'forbidden' end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'MISSING' end
return status
"#;

/// KEYS: mailbox. ARGV: me has_agent mro gravestone_s groups...
/// A terminated id stays terminated (a gravestone).
const CREATE: &str = r#"
if not permitted(KEYS[1], ARGV[1], 5) then return 'forbidden' end
if redis.call('HGET', KEYS[1], 'status') == 'TERMINATED' then return 'gravestone' end
redis.call('HSET', KEYS[1], 'status', 'ACTIVE', 'owner', ARGV[1])
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'agent', ARGV[3]) end
expire(KEYS[1], ARGV[4])
return 'ok'
"#;

/// KEYS: mailbox queue pending terminated. ARGV: me gravestone_s channel
/// groups... Returns {status, the MRO or '', headers of the requests in
/// flight...}; a mailbox terminated before answers its MRO again (so that
/// an index clean-up cut short is done on a second try) and no headers.
const TERMINATE: &str = r#"
if not permitted(KEYS[1], ARGV[1], 4) then return {'forbidden'} end
local status = redis.call('HGET', KEYS[1], 'status')
local mro = redis.call('HGET', KEYS[1], 'agent') or ''
if not status then return {'ok', ''} end
if status == 'TERMINATED' then return {'ok', mro} end
redis.call('HSET', KEYS[1], 'status', 'TERMINATED')
expire(KEYS[1], ARGV[2])
redis.call('SET', KEYS[4], '1')
expire(KEYS[4], ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[2], '<CLOSED>')
expire(KEYS[2], ARGV[2])
redis.call('SPUBLISH', ARGV[3], 'closed')
local out = {'ok', mro}
for _, header in ipairs(redis.call('HVALS', KEYS[3])) do
  out[#out + 1] = header
end
redis.call('DEL', KEYS[3])
return out
"#;

/// KEYS: mailbox. ARGV: me gravestone_s groups...
const HEARTBEAT: &str = r#"
if not permitted(KEYS[1], ARGV[1], 3) then return 'forbidden' end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'heartbeat', string.format('%s.%06d', t[1], tonumber(t[2])))
expire(KEYS[1], ARGV[2])
return 'ok'
"#;

/// KEYS: mailbox. ARGV: me groups...
/// Returns {status, heartbeat or '', now seconds, now microseconds}.
const HEARTBEAT_STATUS: &str = r#"
if not permitted(KEYS[1], ARGV[1], 2) then return {'forbidden'} end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
if status == 'TERMINATED' then return {'terminated'} end
local hb = redis.call('HGET', KEYS[1], 'heartbeat') or ''
local t = redis.call('TIME')
return {'ok', hb, t[1], t[2]}
"#;

/// KEYS: mailbox queue pending. ARGV: me groups...
/// Returns {status, queued, completed, outgoing, in flight}.
const STATS: &str = r#"
if not permitted(KEYS[1], ARGV[1], 2) then return {'forbidden'} end
local queued = redis.call('LLEN', KEYS[2])
local completed = redis.call('HGET', KEYS[1], 'completions') or '0'
local outgoing = redis.call('HGET', KEYS[1], 'outgoing') or '0'
local pending = redis.call('HLEN', KEYS[3])
return {'ok', tostring(queued), completed, outgoing, tostring(pending)}
"#;

/// Before a receive: permission, status, and the expirations pushed back.
/// KEYS: mailbox queue. ARGV: me gravestone_s mailbox_s groups...
const RECV_CHECK: &str = r#"
if not permitted(KEYS[1], ARGV[1], 4) then return 'forbidden' end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == 'TERMINATED' then return 'terminated' end
expire(KEYS[1], ARGV[2])
expire(KEYS[2], ARGV[3])
return 'ok'
"#;

/// Queues a message. KEYS: mailbox queue pending seen (all of the
/// receiver). ARGV: me is_request header message mailbox_s tag too_large
/// as_server repeat_key window_ms max_seen channel now_ms groups...
/// Returns ok, repeat (the same tag and kind queued within the window:
/// dropped), or an error word. A repeat still writes (the time it was
/// seen), so that `WAIT` after it waits for the first copy's replication.
/// The time is the exchange's (clocks a few seconds apart matter little
/// to a window of minutes).
const PUT: &str = r#"
local state = redis.call('HMGET', KEYS[1], 'owner', 'status')
if ARGV[8] ~= '1' and not permitted_by(KEYS[1], state[1], ARGV[1], 14) then return 'forbidden' end
local status = state[2]
if not status then return 'missing' end
if status == 'TERMINATED' then return 'terminated' end
if ARGV[7] == '1' then return 'too_large' end
local now = tonumber(ARGV[13])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[10]))
local fresh = redis.call('ZADD', KEYS[4], now, ARGV[9])
redis.call('PEXPIRE', KEYS[4], ARGV[10])
if fresh == 0 then return 'repeat' end
if redis.call('ZCARD', KEYS[4]) > tonumber(ARGV[11]) then redis.call('ZPOPMIN', KEYS[4]) end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[3], ARGV[6], ARGV[3])
  expire(KEYS[3], ARGV[5])
end
redis.call('RPUSH', KEYS[2], ARGV[4])
if tonumber(ARGV[5]) > 0 then redis.call('EXPIRE', KEYS[2], ARGV[5], 'NX') end
redis.call('SPUBLISH', ARGV[12], 'put')
return 'ok'
"#;

/// A response was queued: the request leaves the responder's requests in
/// flight and counts as completed (once). KEYS: mailbox pending (of the
/// responder). ARGV: tag.
const ANSWERED: &str = r#"
if redis.call('HDEL', KEYS[2], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'completions', 1)
end
return 'ok'
"#;

/// Takes the next message. KEYS: queue popped. ARGV: taker popped_ttl_s.
/// A take retried by the same taker (its answer was lost) gets the same
/// message again; the closing sentinel stays for every other receiver.
const POP: &str = r#"
local last = redis.call('GET', KEYS[2])
local mark = ARGV[1] .. '\n'
if last and string.sub(last, 1, #mark) == mark then return string.sub(last, #mark + 1) end
local m = redis.call('LPOP', KEYS[1])
if not m then return false end
if m == '<CLOSED>' then
  redis.call('LPUSH', KEYS[1], m)
  return m
end
redis.call('SET', KEYS[2], mark .. m, 'EX', ARGV[2])
return m
"#;

/// Puts a message back at the head of the queue. KEYS: mailbox queue.
/// ARGV: message channel check (1: only while the mailbox is active).
const PUSH_FRONT: &str = r#"
if ARGV[3] == '1' then
  local status = redis.call('HGET', KEYS[1], 'status')
  if not status then return 'missing' end
  if status == 'TERMINATED' then return 'terminated' end
end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('SPUBLISH', ARGV[2], 'put')
return 'ok'
"#;

/// KEYS: mailbox. ARGV: me op(add|list|remove) group member.
/// academy-py's share calls check the status first, then ownership.
const SHARES: &str = r#"
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
if status == 'TERMINATED' then return {'terminated'} end
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= ARGV[1] then return {'forbidden'} end
if ARGV[2] == 'add' then
  if ARGV[4] ~= '1' then return {'forbidden'} end
  redis.call('HSET', KEYS[1], 'share:' .. ARGV[3], '1')
elseif ARGV[2] == 'remove' then
  redis.call('HDEL', KEYS[1], 'share:' .. ARGV[3])
else
  local out = {'ok'}
  for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(field, 1, 6) == 'share:' then out[#out + 1] = string.sub(field, 7) end
  end
  return out
end
return {'ok'}
"#;

/// Whether a candidate from a class index is found: active, visible to the
/// client, and of the class (first in its MRO, or anywhere with
/// subclasses). KEYS: mailbox. ARGV: me class subclasses groups...
/// Returns yes, no, or gone (not active: an index entry to remove).
const DISCOVER_CHECK: &str = r#"
if redis.call('HGET', KEYS[1], 'status') ~= 'ACTIVE' then return 'gone' end
if not permitted(KEYS[1], ARGV[1], 4) then return 'no' end
local mro = redis.call('HGET', KEYS[1], 'agent') or ''
local first = true
for class in string.gmatch(mro, '[^,]+') do
  if class == ARGV[2] and (first or ARGV[3] == '1') then return 'yes' end
  first = false
end
return 'no'
"#;

/// A script, its text (sent with `EVAL` to a node that does not have it
/// yet), and its name in logs.
pub(crate) struct Lua {
    pub(crate) script: Script,
    pub(crate) code: String,
    pub(crate) name: &'static str,
}

pub(crate) struct Scripts {
    pub(crate) check: Lua,
    pub(crate) create: Lua,
    pub(crate) terminate: Lua,
    pub(crate) heartbeat: Lua,
    pub(crate) heartbeat_status: Lua,
    pub(crate) stats: Lua,
    pub(crate) recv_check: Lua,
    pub(crate) put: Lua,
    pub(crate) answered: Lua,
    pub(crate) pop: Lua,
    pub(crate) push_front: Lua,
    pub(crate) shares: Lua,
    pub(crate) discover_check: Lua,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        let s = |name: &'static str, body: &str| {
            let code = format!("{PRELUDE}{body}");
            Lua {
                script: Script::new(&code),
                code,
                name,
            }
        };
        Scripts {
            check: s("check", CHECK),
            create: s("create", CREATE),
            terminate: s("terminate", TERMINATE),
            heartbeat: s("heartbeat", HEARTBEAT),
            heartbeat_status: s("heartbeat_status", HEARTBEAT_STATUS),
            stats: s("stats", STATS),
            recv_check: s("recv_check", RECV_CHECK),
            put: s("put", PUT),
            answered: s("answered", ANSWERED),
            pop: s("pop", POP),
            push_front: s("push_front", PUSH_FRONT),
            shares: s("shares", SHARES),
            discover_check: s("discover_check", DISCOVER_CHECK),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mailbox_keys_share_one_hash_tag() {
        let uid = Uuid::new_v4();
        let tag = format!("{{{uid}}}");
        for key in [
            mailbox(&uid),
            queue(&uid),
            pending(&uid),
            seen(&uid),
            popped(&uid),
            terminated(&uid),
            wake_channel(&uid),
        ] {
            assert!(key.contains(&tag), "{key}");
            assert_eq!(key.matches('{').count(), 1, "{key}");
        }
        assert_eq!(uid_of_channel(wake_channel(&uid).as_bytes()), Some(uid));
        assert_eq!(uid_of_channel(b"wake:{nope}"), None);
    }

    #[test]
    fn the_shards_of_a_class_index_have_tags_of_their_own() {
        let tags: std::collections::HashSet<String> = (0..AGENT_SHARDS)
            .map(|n| agent_shard("m.Agent", n))
            .collect();
        assert_eq!(tags.len(), AGENT_SHARDS as usize);
        let uid = Uuid::new_v4();
        assert!(tags.contains(&agent_index("m.Agent", &uid)));
    }
}
