//! The embedded exchange server: wire-compatible with academy-py 1.0.0's
//! `python -m academy.exchange.cloud`, with its in-memory `PythonBackend`
//! or, to scale out over several processes, its `RedisBackend` (see
//! [`RedisConfig`]), or past one Redis, a Redis Cluster (see
//! [`RedisClusterConfig`]).
//!
//! ```no_run
//! # async fn demo() -> academy::Result<()> {
//! use academy::server::{ExchangeServer, ServerConfig};
//! let server = ExchangeServer::start(ServerConfig::from_json_options(None)?).await?;
//! println!("exchange at {}", server.url());
//! server.stop().await?;
//! # Ok(()) }
//! ```
//!
//! Differences from academy-py, all deliberate:
//! - a message that arrives after an SSE listener disconnected stays queued
//!   for the next listener (academy-py takes it and loses it);
//! - a body that is not JSON, or fields of the wrong JSON type, are 400
//!   (academy-py answers 500 from an uncaught exception);
//! - the responses to pending requests sent at terminate are delivered by
//!   the server whatever the terminating client's permissions, and failures
//!   to deliver them never fail the terminate;
//! - at stop, open listen streams end and waiting receives answer 503.

pub mod auth;
mod backend;
mod body;
pub mod config;
mod listen_stop;
mod logfile;
pub mod logger;
mod metrics;
mod routes;
mod throttle;
mod tls;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use auth::{AuthError, Authenticator, ClientInfo, NullAuthenticator, TokenAuthenticator};
pub use config::{AuthConfig, Durability, RedisClusterConfig, RedisConfig, ServerConfig};

use crate::error::{Error, Result, Status};
use backend::cluster::ClusterBackend;
use backend::memory::Backend;
use backend::redis::RedisBackend;
use backend::Store;
use metrics::Metrics;
use routes::{App, Peer};
use throttle::Throttle;

/// How long `stop` waits for open connections to finish.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Idle keep-alive connections (and slow request heads) are closed after
/// this long (aiohttp's keep-alive timeout is 75 s).
const KEEP_ALIVE: Duration = Duration::from_secs(75);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// File descriptors the default connection cap leaves for everything else
/// (Redis connections, log files, the program's own).
const FD_RESERVE: usize = 64;
/// Connections to the metrics port at most (scrapers and probes).
const METRICS_CONNECTIONS: usize = 64;
static AT_CAP: Throttle = Throttle::new();

/// The default `max_connections`: the open-file limit less
/// [`FD_RESERVE`], so that the cap, not a failing `accept`, is what stops
/// new connections.
pub fn default_max_connections() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !ok || limit.rlim_cur == libc::RLIM_INFINITY {
        return 1_000_000;
    }
    usize::try_from(limit.rlim_cur)
        .unwrap_or(usize::MAX)
        .saturating_sub(FD_RESERVE)
        .clamp(16, 1_000_000)
}

/// For `bench/run`: nanoseconds of bookkeeping per `PUT /message` (route
/// lookup, clock, access line at this process's log level), with the
/// metrics and without.
#[doc(hidden)]
pub fn bookkeeping_cost_ns(requests: u32) -> (f64, f64) {
    (
        routes::bookkeeping_ns(requests, true),
        routes::bookkeeping_ns(requests, false),
    )
}

/// A running exchange server.
pub struct ExchangeServer {
    addrs: Vec<SocketAddr>,
    url: String,
    metrics_url: Option<String>,
    stop_tx: watch::Sender<bool>,
    app: Arc<App>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for ExchangeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeServer")
            .field("url", &self.url)
            .field("addrs", &self.addrs)
            .finish()
    }
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let mut out: Vec<SocketAddr> = Vec::new();
    let found = tokio::net::lookup_host((host, port)).await.map_err(|e| {
        Error::new(
            Status::Connection,
            format!("cannot resolve exchange host {host:?}: {e}"),
        )
    })?;
    for a in found {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    // Prefer IPv4 first: its port (when 0 was asked) is then shared.
    out.sort_by_key(|a| !a.is_ipv4());
    if out.is_empty() {
        return Err(Error::new(
            Status::Connection,
            format!("exchange host {host:?} has no address"),
        ));
    }
    Ok(out)
}

fn bind_error(addr: SocketAddr, e: std::io::Error) -> Error {
    let what = if e.kind() == std::io::ErrorKind::AddrInUse {
        "address already in use".to_owned()
    } else {
        e.to_string()
    };
    Error::new(
        Status::Connection,
        format!("exchange cannot listen on {addr}: {what}"),
    )
}

impl ExchangeServer {
    /// Binds and starts serving on the current tokio runtime; returns once
    /// listening.
    pub async fn start(config: ServerConfig) -> Result<ExchangeServer> {
        let tls = match &config.certfile {
            Some(cert) => Some(tls::acceptor(cert, config.keyfile.as_deref())?),
            None => None,
        };
        let addrs = resolve(&config.host, config.port).await?;
        let (listeners, bound) = bind(&addrs, config.port).await?;
        let first = bound[0];
        let scheme = if tls.is_some() { "https" } else { "http" };
        let host = if config
            .host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok()
        {
            match first.ip() {
                IpAddr::V6(ip) => format!("[{ip}]"),
                IpAddr::V4(ip) => ip.to_string(),
            }
        } else {
            config.host.clone()
        };
        let url = format!("{scheme}://{host}:{}", first.port());

        let max_connections = config
            .max_connections
            .unwrap_or_else(default_max_connections);
        let metrics = config.metrics.then(|| {
            let m = Metrics::new(routes::ENDPOINTS, max_connections);
            Arc::new(match config.redis_cluster {
                Some(_) => m.with_cluster(),
                None => m,
            })
        });
        let (metrics_listeners, metrics_url) = match (&metrics, config.metrics_port) {
            (None, _) => (Vec::new(), None),
            (Some(_), None) => (Vec::new(), Some(format!("{url}/metrics"))),
            (Some(_), Some(port)) => {
                let (listeners, bound) = bind(&addrs, port).await?;
                let url = format!("{scheme}://{host}:{}/metrics", bound[0].port());
                (listeners, Some(url))
            }
        };

        let limit_kb = config.message_size_limit_kb;
        let store = match (&config.redis, &config.redis_cluster) {
            (Some(redis), _) => Store::Redis(Arc::new(
                RedisBackend::connect(redis, limit_kb, metrics.clone()).await?,
            )),
            (None, Some(cluster)) => {
                Store::Cluster(ClusterBackend::connect(cluster, limit_kb, metrics.clone()).await?)
            }
            (None, None) => Store::Memory(Arc::new(Backend::new(limit_kb, metrics.clone()))),
        };
        let limit = store.limit();
        let app = Arc::new(App {
            store,
            auth: config.auth.authenticator(),
            listen_timeout_s: config.listen_timeout_s,
            // aiohttp's client_max_size is 1 MiB; allow for larger limits
            // (a message travels JSON-escaped inside the body).
            body_limit: (1024 * 1024).max(limit.saturating_mul(2).saturating_add(64 * 1024)),
            body_read_timeout: config.body_read_timeout,
            metrics,
            metrics_on_main: config.metrics_port.is_none(),
            listen_stops: Default::default(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let gates = [
            (listeners, Gate::new(max_connections, false)),
            (metrics_listeners, Gate::new(METRICS_CONNECTIONS, true)),
        ];
        let task = tokio::spawn(run(gates, app.clone(), tls, stop_rx));
        tracing::debug!(
            "exchange listening on {url} (max_connections {max_connections}{})",
            metrics_url
                .as_deref()
                .map(|m| format!(", metrics at {m}"))
                .unwrap_or_default()
        );
        Ok(ExchangeServer {
            addrs: bound,
            url,
            metrics_url,
            stop_tx,
            app,
            task: tokio::sync::Mutex::new(Some(task)),
        })
    }

    /// The base URL clients use, e.g. `http://127.0.0.1:8700`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Where the metrics are served (`…/metrics`), if they are on.
    pub fn metrics_url(&self) -> Option<String> {
        self.metrics_url.clone()
    }

    /// The (first) address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// All the addresses the server listens on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops accepting, ends open listen streams and waiting receives, and
    /// waits for the server task (open connections get a few seconds to
    /// finish). Idempotent.
    pub async fn stop(&self) -> Result<()> {
        let mut task = self.task.lock().await;
        self.app.store.begin_shutdown();
        let _ = self.stop_tx.send(true);
        if let Some(handle) = task.take() {
            handle
                .await
                .map_err(|e| Error::internal(format!("exchange server task failed: {e}")))?;
            // Receives that took a message from Redis put it back or hand it
            // on before the process may exit.
            let _ = tokio::time::timeout(STOP_GRACE, self.app.store.drained()).await;
        }
        Ok(())
    }
}

impl Drop for ExchangeServer {
    fn drop(&mut self) {
        // Without a stop, the server task still ends (in the background).
        self.app.store.begin_shutdown();
        let _ = self.stop_tx.send(true);
    }
}

/// Resolves once the server is told to stop.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // A closed channel means the server handle is gone: stop as well.
    let _ = stop.wait_for(|s| *s).await;
}

/// Binds `port` (0: a free one, the same for every address) on each of
/// `addrs`; returns the listeners and the addresses bound, at least one.
async fn bind(addrs: &[SocketAddr], port: u16) -> Result<(Vec<TcpListener>, Vec<SocketAddr>)> {
    let mut listeners = Vec::new();
    let mut port = port;
    for (i, addr) in addrs.iter().enumerate() {
        let addr = SocketAddr::new(addr.ip(), port);
        match TcpListener::bind(addr).await {
            Ok(l) => {
                if port == 0 {
                    port = l.local_addr().map_err(|e| bind_error(addr, e))?.port();
                }
                listeners.push(l);
            }
            // A name such as localhost may resolve to an address family
            // the host lacks (::1 in some containers): the first counts.
            Err(e) if i == 0 => return Err(bind_error(addr, e)),
            Err(_) => {}
        }
    }
    let bound: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    if bound.is_empty() {
        return Err(Error::new(Status::Connection, "exchange bound no address"));
    }
    Ok((listeners, bound))
}

/// The connections a set of listeners may hold at once.
#[derive(Clone)]
struct Gate {
    slots: Arc<Semaphore>,
    max: usize,
    /// The metrics port (only `/metrics` and `/health`; not counted in
    /// `academy_connections`).
    metrics_port: bool,
}

impl Gate {
    fn new(max: usize, metrics_port: bool) -> Gate {
        Gate {
            slots: Arc::new(Semaphore::new(max)),
            max,
            metrics_port,
        }
    }
}

/// A connection's slot under the cap, and its count in the metrics.
struct Slot {
    _permit: OwnedSemaphorePermit,
    counted: Option<Arc<Metrics>>,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, gate: &Gate, app: &App) -> Slot {
        let counted = app.metrics.clone().filter(|_| !gate.metrics_port);
        if let Some(m) = &counted {
            m.connections.inc();
        }
        Slot {
            _permit: permit,
            counted,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(m) = &self.counted {
            m.connections.dec();
        }
    }
}

async fn run(
    gates: [(Vec<TcpListener>, Gate); 2],
    app: Arc<App>,
    tls: Option<TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    let mut loops = JoinSet::new();
    for (listeners, gate) in gates {
        for l in listeners {
            loops.spawn(accept_loop(
                l,
                gate.clone(),
                app.clone(),
                tls.clone(),
                stop.clone(),
            ));
        }
    }
    while loops.join_next().await.is_some() {}
}

async fn accept_loop(
    listener: TcpListener,
    gate: Gate,
    app: Arc<App>,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns: JoinSet<()> = JoinSet::new();
    loop {
        // A free slot first: at the cap, new connections wait in the
        // listen backlog until one closes.
        let permit = match gate.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if let Some(skipped) = AT_CAP.admit() {
                    tracing::warn!(
                        "connection limit reached: {} connections open (max_connections); new ones wait until one closes ({skipped} more times since the last warning)",
                        gate.max
                    );
                }
                tokio::select! {
                    biased;
                    _ = stopped(&mut stop) => break,
                    Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                    p = gate.slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    let slot = Slot::new(permit, &gate, &app);
                    let peer = Peer {
                        socket: body::PeerSocket(std::os::fd::AsRawFd::as_raw_fd(&stream)),
                        addr,
                        metrics_port: gate.metrics_port,
                    };
                    conns.spawn(connection(stream, peer, slot, app.clone(), tls.clone(), stop.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off a bit.
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                    ) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            },
        }
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(STOP_GRACE, drain).await.is_err() {
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

async fn connection(
    stream: TcpStream,
    peer: Peer,
    _slot: Slot,
    app: Arc<App>,
    tls: Option<TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve(stream, app, stop, peer).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            if let Ok(Ok(tls_stream)) = handshake.await {
                serve(tls_stream, app, stop, peer).await;
            }
        }
    }
}

async fn serve<I>(io: I, app: Arc<App>, mut stop: watch::Receiver<bool>, peer: Peer)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(routes::handle(&app, req, peer).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        // Pipelined requests (libacademy's background sends) are answered
        // in one write, not one each.
        .pipeline_flush(true)
        .header_read_timeout(KEEP_ALIVE)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
