//! HTTP/1.1 requests without reqwest, for the request/answer endpoints.
//!
//! Every blocking C call used to hand its request to the library's runtime
//! thread and sleep until that thread handed the answer back: two thread
//! wake-ups per request, which on a small virtual machine cost more than the
//! request itself (tens of microseconds each when a CPU idles). A caller
//! blocked in the library has nothing else to do, so for plain `http://`
//! exchanges it now writes the request and reads the answer on its own
//! thread ([`Pool::request_blocking`]); the kernel wakes it when the answer
//! arrives. Work on the runtime (an agent answering a ping, heartbeats)
//! uses [`Pool::request`], the same on tokio sockets: one future that
//! writes and reads, where reqwest adds a connection task, a pool and
//! channels between them (a fifth of a ping's round trip).
//!
//! Only when reqwest would have connected directly too (no proxy in the
//! environment, no TLS, no Globus tokens to refresh); listen streams always
//! use reqwest. Retries, back-off and the mapping of answers to errors stay
//! in [`crate::transport`]; this module only moves bytes. Answers are
//! parsed by one function of bytes ([`parse_answer`]) that both kinds of
//! connection feed.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use answer::{closed_early, io_failure, parse_answer, remaining, Attempt, Parsed};
pub use answer::{Answer, Failure};
use connect::Connector;
use pipeline::Pipeline;

pub mod answer;
pub mod connect;
pub mod pipeline;

/// Idle connections kept per exchange, kind and shard; more are closed.
/// (Background sends do not use them: they share one pipelined connection.)
const MAX_IDLE: usize = 8;
/// The idle connections are split into shards, a thread using its own, so
/// that threads sending at once do not queue on one lock (with 32 sending
/// threads on 2 cores a preempted lock holder stalled the others).
const SHARDS: usize = 16;
/// A connection idle longer than this is checked before reuse (servers
/// close idle keep-alive connections; aiohttp after 75 s).
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);
/// Bytes asked of the socket per read.
const READ_SIZE: usize = 4096;

/// A kept-alive connection: a blocking std socket or a tokio one.
struct Conn<S> {
    stream: S,
    last_used: Instant,
    /// Bytes read and not yet parsed (kept between answers: it starts with
    /// any bytes read past the end of the previous answer, none with
    /// servers that answer one request at a time).
    buf: Vec<u8>,
    /// The timeout last set on a blocking socket (a system call to change).
    socket_timeout: Option<Duration>,
}

impl<S> Conn<S> {
    fn new(stream: S) -> Self {
        Conn {
            stream,
            last_used: Instant::now(),
            buf: Vec::new(),
            socket_timeout: None,
        }
    }

    /// Room for one more read at the end of `buf`; returns where it starts.
    fn room(&mut self, need: usize) -> usize {
        let start = self.buf.len();
        let want = need.saturating_sub(start).max(READ_SIZE);
        self.buf.resize(start + want, 0);
        start
    }

    /// After a read of `n` bytes into the room made at `start`: parses what
    /// there is. `Ok(None)`: more bytes are needed.
    fn after_read(&mut self, start: usize, n: usize) -> Result<Option<(Answer, bool)>, Failure> {
        self.buf.truncate(start + n);
        let eof = n == 0;
        match parse_answer(&self.buf, eof)? {
            Parsed::Complete {
                answer,
                used,
                reusable,
            } => {
                self.buf.drain(..used);
                Ok(Some((answer, reusable)))
            }
            Parsed::Incomplete { .. } if eof => Err(closed_early()),
            Parsed::Incomplete { .. } => Ok(None),
        }
    }

    /// How many bytes to wait for before parsing again.
    fn need(&self) -> Result<usize, Failure> {
        match parse_answer(&self.buf, false)? {
            Parsed::Incomplete { need } => Ok(need),
            Parsed::Complete { .. } => Ok(self.buf.len()),
        }
    }
}

/// Idle connections of one kind, in shards.
pub(crate) struct Idle<S>([Mutex<Vec<Conn<S>>>; SHARDS]);

impl<S> std::fmt::Debug for Idle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Idle")
    }
}

/// The shard of the calling thread.
fn shard() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

impl<S: AsRawFd> Idle<S> {
    fn new() -> Self {
        Idle(std::array::from_fn(|_| Mutex::new(Vec::new())))
    }

    /// An idle connection: the calling thread's shard first, then others.
    fn take(&self) -> Option<Conn<S>> {
        let own = shard();
        (0..SHARDS).find_map(|i| {
            let shard = &self.0[(own + i) % SHARDS];
            loop {
                let conn = shard.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
                if conn.last_used.elapsed() < CHECK_AFTER_IDLE || still_open(&conn.stream) {
                    return Some(conn);
                }
            }
        })
    }

    fn give_back(&self, mut conn: Conn<S>) {
        conn.last_used = Instant::now();
        let mut idle = self.0[shard()].lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.iter().all(|s| s.lock().unwrap().is_empty())
    }
}

/// Peeks at a socket without blocking: `Ok(true)` with bytes waiting,
/// `Ok(false)` at the end of the stream, `Err(WouldBlock)` with nothing yet.
fn peek(stream: &impl AsRawFd) -> io::Result<bool> {
    let mut byte = 0u8;
    // SAFETY: a valid socket and a one-byte buffer we own.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n > 0)
    }
}

fn nothing_yet(peeked: &io::Result<bool>) -> bool {
    matches!(peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Whether the server has not closed an idle connection (nothing to read,
/// no end of stream).
fn still_open(stream: &impl AsRawFd) -> bool {
    nothing_yet(&peek(stream))
}

/// Waits for `stream` to have something to read (or to fail) by polling,
/// yielding the CPU to other runnable threads in between, until `until`.
fn poll_until_readable(stream: &TcpStream, until: Instant) {
    while Instant::now() < until && nothing_yet(&peek(stream)) {
        std::thread::yield_now();
    }
}

/// Keep-alive connections to one `http://` exchange.
#[derive(Debug)]
pub struct Pool {
    connector: Connector,
    /// The fixed header lines of every request (`Host:`, the factory's
    /// headers), rendered once.
    head_lines: Vec<u8>,
    blocking: Idle<TcpStream>,
    pub(crate) nonblocking: Idle<tokio::net::TcpStream>,
    /// The connection background sends are pipelined on, started by the
    /// first (on the library's runtime).
    pipeline: std::sync::OnceLock<Pipeline>,
}

/// Whether reqwest would route `http://` requests through a proxy.
fn proxy_configured() -> bool {
    ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

impl Pool {
    /// A pool for `url`, or `None` where requests must go through reqwest
    /// (not `http`, or a proxy is configured). `headers` are sent with
    /// every request.
    pub fn new(
        url: &reqwest::Url,
        headers: &[(String, String)],
        connect_timeout: Duration,
    ) -> Option<Pool> {
        if url.scheme() != "http" {
            tracing::debug!(
                url = url.as_str(),
                "fast path off: {} goes through reqwest (only plain http:// has the direct path)",
                url.scheme()
            );
            return None;
        }
        if proxy_configured() {
            tracing::debug!(
                url = url.as_str(),
                "fast path off: a proxy is configured (HTTP_PROXY / ALL_PROXY), requests go through reqwest"
            );
            return None;
        }
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut head_lines = format!("host: {authority}\r\n").into_bytes();
        for (name, value) in headers {
            head_lines.extend_from_slice(name.as_bytes());
            head_lines.extend_from_slice(b": ");
            head_lines.extend_from_slice(value.as_bytes());
            head_lines.extend_from_slice(b"\r\n");
        }
        Some(Pool {
            connector: Connector::new(authority, connect_timeout),
            head_lines,
            pipeline: std::sync::OnceLock::new(),
            blocking: Idle::new(),
            nonblocking: Idle::new(),
        })
    }

    fn render(&self, method: &str, target: &str, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head_lines.len() + body.len() + 128);
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        out.extend_from_slice(&self.head_lines);
        out.extend_from_slice(b"content-type: application/json\r\ncontent-length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
        out
    }

    /// Sends one request and reads its answer, blocking the calling thread
    /// for at most `timeout` (`None`: no bound). `target` is the path. The
    /// thread polls for the answer for up to `busy_poll` before it sleeps.
    pub fn request_blocking(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
        timeout: Option<Duration>,
        busy_poll: Duration,
    ) -> Result<Answer, Failure> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let request = self.render(method, target, body);
        // A kept-alive connection the server has closed fails before any
        // answer arrives; then the request goes again on a new connection.
        if let Some(mut conn) = self.blocking.take() {
            match exchange_blocking(&mut conn, &request, timeout, deadline, busy_poll) {
                Ok(answer) => return Ok(self.keep_blocking(conn, answer)),
                Err(Attempt::Untouched(_)) => {}
                Err(Attempt::Failed(f)) => return Err(f),
            }
        }
        let mut conn = Conn::new(self.connector.connect_blocking(deadline)?);
        match exchange_blocking(&mut conn, &request, timeout, deadline, busy_poll) {
            Ok(answer) => Ok(self.keep_blocking(conn, answer)),
            Err(Attempt::Untouched(f) | Attempt::Failed(f)) => Err(f),
        }
    }

    fn keep_blocking(&self, conn: Conn<TcpStream>, (answer, reusable): (Answer, bool)) -> Answer {
        if reusable {
            self.blocking.give_back(conn);
        }
        answer
    }

    /// [`request_blocking`](Self::request_blocking) for tasks on the
    /// runtime: the same on a tokio socket.
    pub async fn request(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Answer, Failure> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let request = self.render(method, target, body);
        if let Some(mut conn) = self.nonblocking.take() {
            match exchange(&mut conn, &request, deadline).await {
                Ok(answer) => return Ok(self.keep(conn, answer)),
                Err(Attempt::Untouched(_)) => {}
                Err(Attempt::Failed(f)) => return Err(f),
            }
        }
        let mut conn = Conn::new(self.connector.connect(deadline).await?);
        match exchange(&mut conn, &request, deadline).await {
            Ok(answer) => Ok(self.keep(conn, answer)),
            Err(Attempt::Untouched(f) | Attempt::Failed(f)) => Err(f),
        }
    }

    /// [`request`](Self::request) pipelined with the other requests made
    /// this way on one connection ([`crate::transport::http1::pipeline`]); only for requests
    /// the server answers at once, made on the library's runtime.
    pub async fn request_pipelined(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Answer, Failure> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let request = self.render(method, target, body);
        let pipeline = self
            .pipeline
            .get_or_init(|| Pipeline::start(self.connector.clone()));
        // Requests the server never read (it closed the connection first)
        // go again once, on the connection the pipeline makes next.
        match pipeline.request(request.clone(), deadline).await {
            Err(Attempt::Untouched(_)) => {}
            done => return done.map_err(Attempt::into_failure),
        }
        pipeline
            .request(request, deadline)
            .await
            .map_err(Attempt::into_failure)
    }

    fn keep(
        &self,
        conn: Conn<tokio::net::TcpStream>,
        (answer, reusable): (Answer, bool),
    ) -> Answer {
        if reusable {
            self.nonblocking.give_back(conn);
        }
        answer
    }
}

/// Writes `request` and reads one answer on a blocking socket. Returns it
/// and whether the connection may be used again.
fn exchange_blocking(
    conn: &mut Conn<TcpStream>,
    request: &[u8],
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    busy_poll: Duration,
) -> Result<(Answer, bool), Attempt> {
    // The socket's timeouts bound each read and write by the whole
    // request's timeout (set only when it changes: a system call each);
    // the deadline is checked between reads.
    if conn.socket_timeout != timeout {
        conn.stream
            .set_read_timeout(timeout)
            .and_then(|()| conn.stream.set_write_timeout(timeout))
            .map_err(|e| Attempt::Failed(Failure::Io(e)))?;
        conn.socket_timeout = timeout;
    }
    conn.stream
        .write_all(request)
        .map_err(|e| Attempt::of(io_failure(e), false))?;
    if !busy_poll.is_zero() {
        poll_until_readable(&conn.stream, Instant::now() + busy_poll);
    }
    loop {
        if let Some(d) = deadline {
            remaining(d).map_err(Attempt::Failed)?;
        }
        let need = conn.need().map_err(Attempt::Failed)?;
        let start = conn.room(need);
        let read = conn.stream.read(&mut conn.buf[start..]);
        let n = match read {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                conn.buf.truncate(start);
                continue;
            }
            Err(e) => {
                conn.buf.truncate(start);
                return Err(Attempt::of(io_failure(e), start > 0));
            }
        };
        match conn.after_read(start, n) {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => {}
            Err(f) => return Err(Attempt::of(f, start > 0)),
        }
    }
}

/// [`exchange_blocking`] on a tokio socket.
async fn exchange(
    conn: &mut Conn<tokio::net::TcpStream>,
    request: &[u8],
    deadline: Option<Instant>,
) -> Result<(Answer, bool), Attempt> {
    within(deadline, conn.stream.write_all(request))
        .await
        .map_err(|f| Attempt::of(f, false))?;
    loop {
        let need = conn.need().map_err(Attempt::Failed)?;
        let start = conn.room(need);
        let read = within(deadline, conn.stream.read(&mut conn.buf[start..])).await;
        let n = match read {
            Ok(n) => n,
            Err(f) => {
                conn.buf.truncate(start);
                return Err(Attempt::of(f, start > 0));
            }
        };
        match conn.after_read(start, n) {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => {}
            Err(f) => return Err(Attempt::of(f, start > 0)),
        }
    }
}

/// An I/O future, failed with `Timeout` at `deadline`.
async fn within<T>(
    deadline: Option<Instant>,
    io: impl std::future::Future<Output = io::Result<T>>,
) -> Result<T, Failure> {
    match deadline {
        None => io.await.map_err(io_failure),
        Some(d) => match tokio::time::timeout_at(d.into(), io).await {
            Ok(r) => r.map_err(io_failure),
            Err(_) => Err(Failure::Timeout),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves each accepted connection with `answers`, one per request
    /// head read (a stand-in server: these tests are about framing).
    fn serve(answers: Vec<&'static [u8]>) -> (Pool, std::thread::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let mut accepted = 0;
            let mut answers = answers.into_iter();
            while let Ok((mut s, _)) = listener.accept() {
                accepted += 1;
                let mut buf = [0u8; 4096];
                loop {
                    let n = s.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    match answers.next() {
                        Some(b"") => break, // close without answering
                        Some(a) => {
                            s.write_all(a).unwrap();
                            if answers.len() == 0 {
                                return accepted; // and close
                            }
                        }
                        None => return accepted,
                    }
                }
            }
            accepted
        });
        let url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let pool = Pool::new(&url, &[], Duration::from_secs(2)).unwrap();
        (pool, server)
    }

    /// Each kind of request: blocking (with and without busy polling), and
    /// on a runtime of the test's.
    struct Asker {
        runtime: Option<tokio::runtime::Runtime>,
        poll: Duration,
    }

    impl Asker {
        /// Blocking, blocking with busy polling, and async.
        fn all() -> [Asker; 3] {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let blocking = |poll| Asker {
                runtime: None,
                poll,
            };
            [
                blocking(Duration::ZERO),
                blocking(Duration::from_millis(50)),
                Asker {
                    runtime: Some(runtime),
                    poll: Duration::ZERO,
                },
            ]
        }

        fn ask(&self, pool: &Pool, target: &str, t: Duration) -> Result<Answer, Failure> {
            match &self.runtime {
                None => pool.request_blocking("PUT", target, b"{}", Some(t), self.poll),
                Some(rt) => rt.block_on(pool.request("PUT", target, b"{}", Some(t))),
            }
        }
    }

    #[test]
    fn reads_length_chunked_and_close_framed_answers_and_reuses_connections() {
        for asker in Asker::all() {
            let (pool, server) = serve(vec![
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end",
            ]);
            let t = Duration::from_secs(5);
            let a = asker.ask(&pool, "/message", t).unwrap();
            assert_eq!((a.status, a.body.as_slice()), (200, &b"ok"[..]));
            let b = asker.ask(&pool, "/x", t).unwrap();
            assert_eq!((b.status, b.body.as_slice()), (404, &b"abcde"[..]));
            // The server sends the third answer and closes: read to the end.
            let c = asker.ask(&pool, "/y", t).unwrap();
            assert_eq!((c.status, c.body.as_slice()), (200, &b"until the end"[..]));
            assert!(
                pool.blocking.is_empty() && pool.nonblocking.is_empty(),
                "a close-framed connection is not kept"
            );
            assert_eq!(server.join().unwrap(), 1, "one connection for all three");
        }
    }

    #[test]
    fn a_kept_connection_the_server_closed_is_replaced() {
        for asker in Asker::all() {
            // First connection: one answer, then closed on the next request.
            let (pool, server) = serve(vec![
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na",
                b"",
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb",
            ]);
            let t = Duration::from_secs(5);
            assert_eq!(asker.ask(&pool, "/m", t).unwrap().body, b"a");
            assert_eq!(asker.ask(&pool, "/m", t).unwrap().body, b"b");
            assert_eq!(server.join().unwrap(), 2);
        }
    }

    #[test]
    fn times_out_and_refuses_on_time() {
        for asker in Asker::all() {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = reqwest::Url::parse(&format!(
                "http://127.0.0.1:{}",
                listener.local_addr().unwrap().port()
            ))
            .unwrap();
            let pool = Pool::new(&url, &[], Duration::from_secs(2)).unwrap();
            let start = Instant::now();
            let err = asker
                .ask(&pool, "/", Duration::from_millis(200))
                .unwrap_err();
            assert!(matches!(err, Failure::Timeout), "{err}");
            assert!(start.elapsed() < Duration::from_secs(2));
            drop(listener);
            let err = asker.ask(&pool, "/", Duration::from_secs(1)).unwrap_err();
            assert!(matches!(err, Failure::Connect(_)), "{err}");
        }
    }
}
