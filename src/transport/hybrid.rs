//! academy-py's hybrid exchange (`HybridExchangeFactory`,
//! `academy/exchange/hybrid.py`): mailbox state in Redis, messages straight
//! from peer to peer over TCP ([`crate::transport::peer`]), and each
//! mailbox's Redis queue as the fallback for a peer that cannot be reached.
//!
//! Every client listens on a port of its own and advertises `ip:port` in
//! `{ns}:address:{b32}` once it listens (academy-py advertises first, so a
//! fast peer may find nothing listening yet). A send goes to the cached
//! address of its destination without touching Redis; else it looks up the
//! destination's status and address in one round trip, and sends over TCP
//! or, when there is no address or the peer cannot be reached, pushes the
//! message to the destination's Redis queue, which every client reads too.
//! Unlike academy-py, a peer that refuses the connection (it crashed and
//! left its address behind) does not fail the send: the message is queued.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::Script;
use serde_json::Value;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::error::{Error, Result, Status};
use crate::options::exchanges::HybridOptions;
use crate::options::FactoryOptions;
use crate::transport::mailbox::{Inbound, MailboxStatus, NextMessage};
use crate::transport::peer::{self, PeerListener, PeerPool};
use crate::transport::redis::no_sharing;
use crate::transport::redis_keys::{Layout, CLOSE_SENTINEL};
use crate::transport::redis_store::{
    not_receiving, terminated_mailbox, unknown_mailbox, ChannelInbound, Receivers, Receiving,
    RedisStore,
};
use crate::wire::ids::{EntityId, Role};
use crate::wire::message::{academy_error_body, header_of, ErrorCode, Message, MessageKind};

/// A message at most this long rides along with the address lookup, so
/// that a destination without an address costs one round trip, not two.
const PUSH_WITH_LOOKUP: usize = 64 * 1024;
/// Destinations whose address is remembered at most.
const MAX_ADDRESSES: usize = 100_000;
/// How long closing waits for frames being written and read.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The destination's status, then its address, or the message queued when
/// it has none. KEYS: status address queue. ARGV: message (or '' to only
/// look up).
const ROUTE: &str = r#"
local status = redis.call('GET', KEYS[1])
if not status then return {'missing'} end
if status == 'INACTIVE' then return {'terminated'} end
local address = redis.call('GET', KEYS[2])
if address then return {'address', address} end
if ARGV[1] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[1])
  return {'queued'}
end
return {'push'}
"#;

/// academy-py's hybrid `terminate`. KEYS: status queue agent. ARGV:
/// is_agent. Returns what was queued.
const TERMINATE: &str = r#"
redis.call('SET', KEYS[1], 'INACTIVE')
local pending = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[2], '<CLOSED>')
if ARGV[1] == '1' then redis.call('DEL', KEYS[3]) end
return pending
"#;

/// Deletes an address key if it still holds this client's address.
const UNPUBLISH: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 'ok'
"#;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The ports a factory's clients may listen on.
#[derive(Debug)]
struct Ports {
    allowed: Option<Vec<u16>>,
    used: Mutex<HashSet<u16>>,
}

impl Ports {
    /// Binds a listener on `ip`: on the first free allowed port, or on any.
    async fn bind(&self, ip: Ipv4Addr) -> Result<(TcpListener, Option<u16>)> {
        let Some(allowed) = &self.allowed else {
            let listener = TcpListener::bind((ip, 0)).await.map_err(|e| {
                Error::new(
                    Status::Connection,
                    format!("cannot listen on {ip} for peers: {e}"),
                )
            })?;
            return Ok((listener, None));
        };
        let mut last = None;
        for &port in allowed {
            if !lock(&self.used).insert(port) {
                continue;
            }
            match TcpListener::bind((ip, port)).await {
                Ok(listener) => return Ok((listener, Some(port))),
                Err(e) => {
                    lock(&self.used).remove(&port);
                    last = Some(format!("{port}: {e}"));
                }
            }
        }
        Err(Error::new(
            Status::Connection,
            format!(
                "none of the factory's ports {allowed:?} is free to listen on {ip} ({} held by this factory's clients{})",
                lock(&self.used).len(),
                last.map(|l| format!("; last failure {l}")).unwrap_or_default()
            ),
        ))
    }

    fn release(&self, port: Option<u16>) {
        if let Some(port) = port {
            lock(&self.used).remove(&port);
        }
    }
}

/// The IPv4 address of a network interface, or the interface text itself
/// when it is an IPv4 address.
fn interface_address(interface: &str) -> Result<Ipv4Addr> {
    if let Ok(ip) = interface.parse::<Ipv4Addr>() {
        return Ok(ip);
    }
    let mut names = Vec::new();
    let mut found = None;
    // SAFETY: getifaddrs fills a list that freeifaddrs frees; every entry
    // is read while the list lives, and only through its own pointers.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return Err(Error::invalid(format!(
                "cannot list network interfaces to find {interface:?}: {}",
                std::io::Error::last_os_error()
            )));
        }
        let mut entry = list;
        while !entry.is_null() {
            let e = &*entry;
            let name = std::ffi::CStr::from_ptr(e.ifa_name).to_string_lossy();
            if !e.ifa_addr.is_null() && i32::from((*e.ifa_addr).sa_family) == libc::AF_INET {
                if !names.contains(&name.to_string()) {
                    names.push(name.to_string());
                }
                if name == interface && found.is_none() {
                    let sin = &*(e.ifa_addr as *const libc::sockaddr_in);
                    found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
                }
            }
            entry = e.ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found.ok_or_else(|| {
        Error::invalid(format!(
            "option interface: no network interface {interface:?} with an IPv4 address (interfaces: {})",
            names.join(", ")
        ))
    })
}

/// The IPv4 address of this host's name (academy-py's
/// `socket.gethostbyname(platform.node())`).
async fn hostname_address() -> Result<Ipv4Addr> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if rc != 0 || name.is_empty() {
        return Err(Error::new(
            Status::Connection,
            "cannot read this host's name to advertise an address; set the interface option",
        ));
    }
    let addrs = tokio::net::lookup_host((name.as_str(), 0)).await.map_err(|e| {
        Error::new(
            Status::Connection,
            format!("cannot resolve this host's name {name:?} to advertise an address ({e}); set the interface option"),
        )
    })?;
    let first = addrs
        .filter_map(|a| match a.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
        .next();
    first.ok_or_else(|| {
            Error::new(
                Status::Connection,
                format!("this host's name {name:?} has no IPv4 address to advertise; set the interface option"),
            )
        })
}

/// A mailbox's receiving on the hybrid exchange: its TCP listener beside
/// the reader of its Redis queue, both feeding one channel.
#[derive(Debug)]
struct HybridReceiving {
    base: Arc<Receiving>,
    listener: PeerListener,
    address: String,
    port: Option<u16>,
}

/// What a factory's clients share.
#[derive(Debug)]
struct Shared {
    store: Arc<RedisStore>,
    peers: PeerPool,
    /// The address each destination was last reached at.
    addresses: Mutex<HashMap<Uuid, String>>,
    receivers: Receivers<HybridReceiving>,
    ports: Ports,
    /// The address to advertise: the interface's, or (looked up on first
    /// use) the host name's.
    ip: tokio::sync::OnceCell<Ipv4Addr>,
    route: Script,
    terminate: Script,
    unpublish: Script,
}

/// The hybrid exchange, shared by the clients of one factory.
#[derive(Debug)]
pub struct HybridTransport {
    shared: Arc<Shared>,
}

impl HybridTransport {
    pub fn new(options: HybridOptions) -> Result<Self> {
        let ip = tokio::sync::OnceCell::new();
        if let Some(interface) = &options.interface {
            let _ = ip.set(interface_address(interface)?);
        }
        let layout = Layout::Hybrid {
            namespace: options.namespace.clone(),
        };
        let peers = PeerPool::new(options.client.connect_timeout);
        let store = RedisStore::new(&options.server, layout, options.client)?;
        Ok(HybridTransport {
            shared: Arc::new(Shared {
                store: Arc::new(store),
                peers,
                addresses: Mutex::new(HashMap::new()),
                receivers: Receivers::default(),
                ports: Ports {
                    allowed: options.ports,
                    used: Mutex::new(HashSet::new()),
                },
                ip,
                route: Script::new(ROUTE),
                terminate: Script::new(TERMINATE),
                unpublish: Script::new(UNPUBLISH),
            }),
        })
    }

    pub fn url(&self) -> &str {
        &self.shared.store.where_
    }

    pub fn options(&self) -> &FactoryOptions {
        &self.shared.store.options
    }

    pub async fn create_mailbox(&self, id: &EntityId, agent_mro: Option<&str>) -> Result<()> {
        self.shared.store.register(id, agent_mro).await
    }

    pub async fn mailbox_status(&self, id: &EntityId) -> Result<MailboxStatus> {
        self.shared.store.mailbox_status(id).await
    }

    pub async fn status(&self, id: &EntityId) -> Result<MailboxStatus> {
        self.shared.store.status(id).await
    }

    pub async fn terminate(&self, id: &EntityId) -> Result<()> {
        self.shared.terminate(id).await
    }

    pub async fn send(&self, message_json: &str) -> Result<()> {
        self.shared.send(message_json).await
    }

    /// A send whose caller then waits for the answer (as [`send`](Self::send)).
    pub async fn send_request(&self, message_json: &str) -> Result<()> {
        self.send(message_json).await
    }

    /// A send made in the background (as [`send`](Self::send)).
    pub async fn send_background(&self, message_json: &str) -> Result<()> {
        self.send(message_json).await
    }

    pub async fn start_receiving(&self, id: &EntityId) -> Result<()> {
        self.shared.start_receiving(id).await
    }

    pub async fn stop_receiving(&self, id: &EntityId) {
        self.shared.stop_receiving(id).await
    }

    /// Puts messages back at the head of `id`'s Redis queue, in their
    /// order (where a restarted receiver looks first).
    pub async fn requeue(&self, id: &EntityId, messages: &[String]) -> Result<()> {
        self.shared.store.requeue(id, messages).await
    }

    pub async fn inbound(&self, id: &EntityId) -> Result<Box<dyn Inbound>> {
        match self.shared.receivers.get(&id.uid) {
            Some(r) => Ok(Box::new(HybridInbound {
                shared: self.shared.clone(),
                channel: ChannelInbound(r.base.clone()),
            })),
            None => Err(not_receiving(id)),
        }
    }

    pub async fn discover(&self, agent: &str, allow_subclasses: bool) -> Result<Vec<Uuid>> {
        self.shared.store.discover(agent, allow_subclasses).await
    }

    pub async fn heartbeat(&self, id: &EntityId) -> Result<()> {
        self.shared.store.heartbeat(id).await
    }

    pub async fn heartbeat_status(&self, id: &EntityId) -> Result<Option<f64>> {
        self.shared.store.heartbeat_status(id).await
    }

    /// academy-py's hybrid exchange keeps no counters
    /// (`NotImplementedError`).
    pub async fn agent_stats(&self, _id: &EntityId) -> Result<Value> {
        Err(Error::protocol(
            "agent_stats is not supported by the hybrid exchange (academy-py's raises NotImplementedError: it keeps no counters)",
        ))
    }

    pub async fn share_mailbox(&self, _id: &EntityId, _group_id: &str) -> Result<()> {
        Err(no_sharing("hybrid"))
    }

    pub async fn shared_groups(&self, _id: &EntityId) -> Result<Vec<String>> {
        Err(no_sharing("hybrid"))
    }

    pub async fn unshare_mailbox(&self, _id: &EntityId, _group_id: &str) -> Result<()> {
        Err(no_sharing("hybrid"))
    }
}

/// How a send's lookup came out.
enum Route {
    Address(String),
    Queued,
    Push,
}

impl Shared {
    async fn advertised_ip(&self) -> Result<Ipv4Addr> {
        self.ip.get_or_try_init(hostname_address).await.copied()
    }

    async fn start_receiving(&self, id: &EntityId) -> Result<()> {
        if self.receivers.join(&id.uid) {
            return Ok(());
        }
        let ip = self.advertised_ip().await?;
        let (listener, port) = self.ports.bind(ip).await?;
        let layout = &self.store.layout;
        let base = Receiving::new(id.clone(), layout.queue(&id.uid));
        let listener = match PeerListener::start(listener, base.tx.clone()) {
            Ok(l) => l,
            Err(e) => {
                self.ports.release(port);
                return Err(e);
            }
        };
        let address = format!("{ip}:{}", listener.local.port());
        // Published once listening: a peer that reads it can connect.
        let key = layout.address(&id.uid);
        let published = self
            .store
            .run("advertise address", |mut c| {
                let (key, address) = (&key, &address);
                async move {
                    ::redis::cmd("SET")
                        .arg(key)
                        .arg(address)
                        .query_async::<()>(&mut c)
                        .await
                }
            })
            .await;
        if let Err(e) = published {
            listener.stop(Duration::ZERO).await;
            self.ports.release(port);
            return Err(e);
        }
        if let Err(e) = base.start_reader(self.store.clone(), layout.status(&id.uid)) {
            self.stop_one(&HybridReceiving {
                base,
                listener,
                address,
                port,
            })
            .await;
            return Err(e);
        }
        let receiving = Arc::new(HybridReceiving {
            base,
            listener,
            address,
            port,
        });
        if let Some(extra) = self.receivers.insert(id.uid, receiving) {
            self.stop_one(&extra).await;
        }
        Ok(())
    }

    async fn stop_receiving(&self, id: &EntityId) {
        if let Some(receiving) = self.receivers.leave(&id.uid) {
            self.stop_one(&receiving).await;
        }
    }

    /// Takes the address down (new senders then queue in Redis), reads
    /// what peers are still sending, stops the queue's reader, and puts
    /// every message not handed out back in the Redis queue.
    async fn stop_one(&self, receiving: &HybridReceiving) {
        let key = self.store.layout.address(&receiving.base.id.uid);
        let _ = self
            .store
            .run("withdraw address", |mut c| {
                let mut call = self.unpublish.prepare_invoke();
                call.key(&key).arg(&receiving.address);
                async move { call.invoke_async::<()>(&mut c).await }
            })
            .await;
        receiving.listener.stop(CLOSE_WAIT).await;
        receiving.base.stop(&self.store).await;
        self.ports.release(receiving.port);
    }

    fn cached(&self, dest: &Uuid) -> Option<String> {
        lock(&self.addresses).get(dest).cloned()
    }

    async fn send(&self, message_json: &str) -> Result<()> {
        let header = header_of(message_json)?;
        let dest = header.dest.uid;
        let frame = peer::frame(message_json)?;
        if let Some(address) = self.cached(&dest) {
            if self.peers.send(&address, frame.clone()).await.is_ok() {
                return Ok(());
            }
            let mut cache = lock(&self.addresses);
            if cache.get(&dest) == Some(&address) {
                cache.remove(&dest);
            }
        }
        let queue = self.store.layout.queue(&dest);
        match self.route(&header.dest, &queue, message_json).await? {
            Route::Queued => Ok(()),
            Route::Push => self.store.push(&queue, message_json).await,
            Route::Address(address) => match self.peers.send(&address, frame).await {
                Ok(()) => {
                    let mut cache = lock(&self.addresses);
                    if cache.len() >= MAX_ADDRESSES {
                        cache.clear(); // very many peers over time: start over
                    }
                    cache.insert(dest, address);
                    Ok(())
                }
                // Unreachable (gone, restarting, crashed): its queue keeps
                // the message until it reads it.
                Err(_) => self.store.push(&queue, message_json).await,
            },
        }
    }

    /// The destination's status and address in one round trip; a small
    /// message is queued on the way when there is no address.
    async fn route(&self, dest: &EntityId, queue: &str, message_json: &str) -> Result<Route> {
        let layout = &self.store.layout;
        let keys = [layout.status(&dest.uid), layout.address(&dest.uid)];
        let attached = if message_json.len() <= PUSH_WITH_LOOKUP {
            message_json
        } else {
            ""
        };
        let answer: Vec<String> = self
            .store
            .run("send", |mut c| {
                let mut call = self.route.prepare_invoke();
                call.key(&keys[..]).key(queue).arg(attached);
                async move { call.invoke_async(&mut c).await }
            })
            .await?;
        match answer.as_slice() {
            [w] if w == "missing" => Err(unknown_mailbox(dest)),
            [w] if w == "terminated" => Err(terminated_mailbox(dest)),
            [w] if w == "queued" => Ok(Route::Queued),
            [w] if w == "push" => Ok(Route::Push),
            [w, a] if w == "address" => Ok(Route::Address(a.clone())),
            _ => Err(self.store.unexpected("send", &answer.join(" "))),
        }
    }

    /// academy-py's hybrid `terminate`: `INACTIVE`, the queue replaced by
    /// the sentinel (its requests answered with `MAILBOX_TERMINATED`), the
    /// agent key removed. (academy-py fails when the queue holds a
    /// response; responses are skipped here.)
    async fn terminate(&self, id: &EntityId) -> Result<()> {
        let layout = &self.store.layout;
        let keys = [
            layout.status(&id.uid),
            layout.queue(&id.uid),
            layout.agent(&id.uid),
        ];
        let is_agent = if id.role == Role::Agent { "1" } else { "0" };
        let pending: Vec<Vec<u8>> = self
            .store
            .run("terminate", |mut c| {
                let mut call = self.terminate.prepare_invoke();
                call.key(&keys[..]).arg(is_agent);
                async move { call.invoke_async(&mut c).await }
            })
            .await?;
        lock(&self.addresses).remove(&id.uid);
        let pending: Vec<String> = pending
            .into_iter()
            .filter(|raw| raw != CLOSE_SENTINEL)
            .filter_map(|raw| String::from_utf8(raw).ok())
            .collect();
        self.answer_terminated(&pending).await
    }

    /// Answers the requests among `messages` with `MAILBOX_TERMINATED`
    /// errors; requesters that are gone need no answer.
    async fn answer_terminated(&self, messages: &[String]) -> Result<()> {
        for raw in messages {
            let Ok(header) = header_of(raw) else { continue };
            if header.kind != MessageKind::Request {
                continue;
            }
            let reply = Message {
                header: header.response_header(),
                body: academy_error_body(ErrorCode::MailboxTerminated, Some(&header.dest)),
            };
            match self.send(&reply.to_json()).await {
                Err(e) if !matches!(e.status, Status::MailboxTerminated | Status::BadEntityId) => {
                    return Err(e)
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The client's view of its mailbox. When the mailbox is terminated, the
/// requests that reached it and were not handed out yet (over TCP, which
/// academy-py's terminate cannot see) are answered with `MAILBOX_TERMINATED`
/// errors, so that their callers do not wait for nothing.
struct HybridInbound {
    shared: Arc<Shared>,
    channel: ChannelInbound,
}

impl Inbound for HybridInbound {
    fn next(&mut self) -> NextMessage<'_> {
        Box::pin(async move {
            let next = self.channel.next().await;
            if matches!(&next, Err(e) if e.status == Status::MailboxTerminated) {
                let left = self.channel.0.take_ready();
                if !left.is_empty() {
                    let shared = self.shared.clone();
                    if let Ok(handle) = crate::runtime::handle() {
                        handle.spawn(async move {
                            let _ = shared.answer_terminated(&left).await;
                        });
                    }
                }
            }
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_interface_addresses() {
        assert_eq!(interface_address("lo").unwrap(), Ipv4Addr::LOCALHOST);
        assert_eq!(
            interface_address("10.1.2.3").unwrap(),
            Ipv4Addr::new(10, 1, 2, 3)
        );
        let err = interface_address("no-such-if0").unwrap_err();
        assert_eq!(err.status, Status::InvalidArgument);
        assert!(err.message.contains("lo"), "{}", err.message);
    }
}
