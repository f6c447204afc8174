//! academy-py's Redis exchange (`RedisExchangeFactory`,
//! `academy/exchange/redis.py`): clients keep the mailboxes in Redis
//! themselves, with no server in between.
//!
//! Keys and values are academy-py's byte for byte (see
//! [`crate::transport::redis_keys`]), including the request records and
//! counters that `agent_stats` reads. Where academy-py sends up to five
//! commands one after another, a send here is one Lua script: one round
//! trip, and atomic (a send cannot slip in behind a terminate's sentinel).

use std::sync::Arc;

use ::redis::Script;
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, Result, Status};
use crate::options::exchanges::RedisOptions;
use crate::options::FactoryOptions;
use crate::transport::mailbox::{Inbound, MailboxStatus};
use crate::transport::redis_keys::{self, Layout};
use crate::transport::redis_store::{
    not_receiving, terminated_mailbox, unknown_mailbox, ChannelInbound, Receivers, Receiving,
    RedisStore,
};
use crate::wire::ids::{EntityId, Role};
use crate::wire::message::{
    academy_error_body, header_of, ErrorCode, Header, Message, MessageKind,
};

/// academy-py's `send`. KEYS: status queue request-record counter (the
/// sender's `outgoing` for a request, the responder's `completions` for a
/// response). ARGV: is_request header message.
const SEND: &str = r#"
local status = redis.call('GET', KEYS[1])
if not status then return 'missing' end
if status == 'INACTIVE' then return 'terminated' end
if ARGV[1] == '1' then
  redis.call('SET', KEYS[3], ARGV[2])
  redis.call('INCRBY', KEYS[4], 1)
elseif redis.call('DEL', KEYS[3]) == 1 then
  redis.call('INCRBY', KEYS[4], 1)
end
redis.call('RPUSH', KEYS[2], ARGV[3])
return 'ok'
"#;

/// academy-py's `terminate`, up to the scan of the requests in flight.
/// KEYS: status queue agent. ARGV: is_agent.
const TERMINATE: &str = r#"
redis.call('SET', KEYS[1], 'INACTIVE')
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[2], '<CLOSED>')
if ARGV[1] == '1' then redis.call('DEL', KEYS[3]) end
return 'ok'
"#;

/// GET and DEL of every key given; returns the values found.
const TAKE_ALL: &str = r#"
local out = {}
for _, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v then
    out[#out + 1] = v
    redis.call('DEL', k)
  end
end
return out
"#;

/// KEYS: queue completions outgoing. Returns {queued, completed, outgoing}.
const STATS: &str = r#"
return {redis.call('LLEN', KEYS[1]), redis.call('GET', KEYS[2]) or '0', redis.call('GET', KEYS[3]) or '0'}
"#;

/// The Redis exchange, shared by the clients of one factory.
#[derive(Debug)]
pub struct RedisTransport {
    store: Arc<RedisStore>,
    receivers: Receivers<Receiving>,
    send: Script,
    terminate: Script,
    take_all: Script,
    stats: Script,
}

impl RedisTransport {
    pub fn new(options: RedisOptions) -> Result<Self> {
        let store = RedisStore::new(&options.server, Layout::Redis, options.client)?;
        Ok(RedisTransport {
            store: Arc::new(store),
            receivers: Receivers::default(),
            send: Script::new(SEND),
            terminate: Script::new(TERMINATE),
            take_all: Script::new(TAKE_ALL),
            stats: Script::new(STATS),
        })
    }

    pub fn url(&self) -> &str {
        &self.store.where_
    }

    pub fn options(&self) -> &FactoryOptions {
        &self.store.options
    }

    /// `SET active:{uid} ACTIVE` (and for an agent `SET agent:{uid} <mro>`).
    pub async fn create_mailbox(&self, id: &EntityId, agent_mro: Option<&str>) -> Result<()> {
        self.store.register(id, agent_mro).await
    }

    pub async fn mailbox_status(&self, id: &EntityId) -> Result<MailboxStatus> {
        self.store.mailbox_status(id).await
    }

    pub async fn status(&self, id: &EntityId) -> Result<MailboxStatus> {
        self.store.status(id).await
    }

    /// academy-py's `terminate`: `INACTIVE`, the queue replaced by the
    /// sentinel, the agent key removed, and every request in flight to the
    /// mailbox answered with a `MAILBOX_TERMINATED` error. Terminating an
    /// unknown mailbox leaves it terminated, as academy-py does.
    pub async fn terminate(&self, id: &EntityId) -> Result<()> {
        let layout = &self.store.layout;
        let keys = [
            layout.status(&id.uid),
            layout.queue(&id.uid),
            layout.agent(&id.uid),
        ];
        let is_agent = if id.role == Role::Agent { "1" } else { "0" };
        self.store
            .run("terminate", |mut c| {
                let mut call = self.terminate.prepare_invoke();
                call.key(&keys[..]).arg(is_agent);
                async move { call.invoke_async::<()>(&mut c).await }
            })
            .await?;
        let pending = self.store.scan(&Layout::requests_pattern(&id.uid)).await?;
        let mut headers: Vec<String> = Vec::new();
        for batch in pending.chunks(500) {
            let got: Vec<String> = self
                .store
                .run("terminate", |mut c| {
                    let mut call = self.take_all.prepare_invoke();
                    call.key(batch);
                    async move { call.invoke_async(&mut c).await }
                })
                .await?;
            headers.extend(got);
        }
        for header in headers {
            let Ok(header) = serde_json::from_str::<Header>(&header) else {
                continue;
            };
            let reply = Message {
                header: header.response_header(),
                body: academy_error_body(ErrorCode::MailboxTerminated, Some(&header.dest)),
            };
            // A requester that is gone needs no answer (academy-py ignores
            // a terminated one; an unknown one too, here).
            match self.send(&reply.to_json()).await {
                Err(e) if !matches!(e.status, Status::MailboxTerminated | Status::BadEntityId) => {
                    return Err(e)
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// academy-py's `send`: the destination's status, the request record
    /// and counter, then `RPUSH` of the message JSON as given.
    pub async fn send(&self, message_json: &str) -> Result<()> {
        let header = header_of(message_json)?;
        let (src, dest, tag) = (&header.src.uid, &header.dest.uid, &header.tag);
        let is_request = header.kind == MessageKind::Request;
        let (record, counter, header_json) = if is_request {
            (
                Layout::request(dest, tag),
                Layout::outgoing(src),
                serde_json::to_string(&header).unwrap_or_default(),
            )
        } else {
            (
                Layout::request(src, tag),
                Layout::completions(src),
                String::new(),
            )
        };
        let layout = &self.store.layout;
        let keys = [layout.status(dest), layout.queue(dest), record, counter];
        let flag = if is_request { "1" } else { "0" };
        let answer: String = self
            .store
            .run("send", |mut c| {
                let mut call = self.send.prepare_invoke();
                call.key(&keys[..])
                    .arg(flag)
                    .arg(&header_json)
                    .arg(message_json);
                async move { call.invoke_async(&mut c).await }
            })
            .await?;
        match answer.as_str() {
            "ok" => Ok(()),
            "missing" => Err(unknown_mailbox(&header.dest)),
            "terminated" => Err(terminated_mailbox(&header.dest)),
            other => Err(self.store.unexpected("send", other)),
        }
    }

    /// A send whose caller then waits for the answer (as [`send`](Self::send)).
    pub async fn send_request(&self, message_json: &str) -> Result<()> {
        self.send(message_json).await
    }

    /// A send made in the background (as [`send`](Self::send)).
    pub async fn send_background(&self, message_json: &str) -> Result<()> {
        self.send(message_json).await
    }

    /// Starts reading the mailbox's queue for a client of it.
    pub async fn start_receiving(&self, id: &EntityId) -> Result<()> {
        if self.receivers.join(&id.uid) {
            return Ok(());
        }
        let layout = &self.store.layout;
        let receiving = Receiving::new(id.clone(), layout.queue(&id.uid));
        receiving.start_reader(self.store.clone(), layout.status(&id.uid))?;
        if let Some(extra) = self.receivers.insert(id.uid, receiving) {
            extra.stop(&self.store).await;
        }
        Ok(())
    }

    /// Ends a client's receiving; the last client of a mailbox stops the
    /// reader and puts what it took and nobody received back in the queue.
    pub async fn stop_receiving(&self, id: &EntityId) {
        if let Some(receiving) = self.receivers.leave(&id.uid) {
            receiving.stop(&self.store).await;
        }
    }

    /// Puts messages back at the head of `id`'s queue, in their order.
    pub async fn requeue(&self, id: &EntityId, messages: &[String]) -> Result<()> {
        self.store.requeue(id, messages).await
    }

    pub async fn inbound(&self, id: &EntityId) -> Result<Box<dyn Inbound>> {
        match self.receivers.get(&id.uid) {
            Some(r) => Ok(Box::new(ChannelInbound(r))),
            None => Err(not_receiving(id)),
        }
    }

    pub async fn discover(&self, agent: &str, allow_subclasses: bool) -> Result<Vec<Uuid>> {
        self.store.discover(agent, allow_subclasses).await
    }

    pub async fn heartbeat(&self, id: &EntityId) -> Result<()> {
        self.store.heartbeat(id).await
    }

    pub async fn heartbeat_status(&self, id: &EntityId) -> Result<Option<f64>> {
        self.store.heartbeat_status(id).await
    }

    /// academy-py's `agent_stats`: the queue's length, the requests in
    /// flight (a scan of their records) and the two counters.
    pub async fn agent_stats(&self, id: &EntityId) -> Result<Value> {
        let keys = [
            self.store.layout.queue(&id.uid),
            Layout::completions(&id.uid),
            Layout::outgoing(&id.uid),
        ];
        let (queued, completed, outgoing): (u64, String, String) = self
            .store
            .run("agent stats", |mut c| {
                let mut call = self.stats.prepare_invoke();
                call.key(&keys[..]);
                async move { call.invoke_async(&mut c).await }
            })
            .await?;
        let pending = self
            .store
            .scan(&Layout::requests_pattern(&id.uid))
            .await?
            .len() as u64;
        let number = |text: &str| {
            text.parse::<u64>()
                .map_err(|_| self.store.unexpected("agent stats", text))
        };
        Ok(redis_keys::agent_stats(
            queued,
            pending,
            number(&completed)?,
            number(&outgoing)?,
        ))
    }

    pub async fn share_mailbox(&self, _id: &EntityId, _group_id: &str) -> Result<()> {
        Err(no_sharing("redis"))
    }

    pub async fn shared_groups(&self, _id: &EntityId) -> Result<Vec<String>> {
        Err(no_sharing("redis"))
    }

    pub async fn unshare_mailbox(&self, _id: &EntityId, _group_id: &str) -> Result<()> {
        Err(no_sharing("redis"))
    }
}

/// Mailbox sharing exists only on academy-py's HTTP exchange.
pub(crate) fn no_sharing(exchange: &str) -> Error {
    Error::protocol(format!(
        "mailbox sharing is not supported by the {exchange} exchange (academy-py has it only on the HTTP exchange)"
    ))
}
