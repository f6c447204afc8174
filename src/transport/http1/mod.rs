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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::options::RESERVED_HEADERS;
use answer::{closed_early, io_failure, remaining, AnswerReader, Step};
pub use answer::{Answer, Attempt, Failure, Reach};
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
/// Bytes asked of the socket per read (more while a long body arrives).
const READ_SIZE: usize = 4096;
/// How far a blocking socket's timeout may be off what is left of its
/// request's time before it is set again (a system call each time).
const TIMEOUT_SLACK: Duration = Duration::from_millis(10);

/// A kept-alive connection: a blocking std socket or a tokio one.
struct Conn<S> {
    stream: S,
    /// Bytes read and not yet parsed (empty between answers: a connection
    /// with bytes left over after an answer is never reused).
    buf: Vec<u8>,
    /// The timeout last set on a blocking socket (a system call to change).
    socket_timeout: Option<Duration>,
}

impl<S> Conn<S> {
    fn new(stream: S) -> Self {
        Conn {
            stream,
            buf: Vec::new(),
            socket_timeout: None,
        }
    }

    /// Room for one more read of up to `want` bytes at the end of `buf`;
    /// returns where it starts.
    fn room(&mut self, want: usize) -> usize {
        let start = self.buf.len();
        self.buf.resize(start + want, 0);
        start
    }

    /// After a read of `n` bytes into the room made at `start`: reads what
    /// there is of the answer. `Ok(None)`: more bytes are needed.
    fn after_read(
        &mut self,
        reader: &mut AnswerReader,
        start: usize,
        n: usize,
    ) -> Result<Option<(Answer, bool)>, Failure> {
        self.buf.truncate(start + n);
        match reader.read(&mut self.buf, n == 0)? {
            // Bytes after the answer: the server and we disagree on where
            // it ended, so the connection is not used again.
            Step::Done { answer, reusable } => Ok(Some((answer, reusable && self.buf.is_empty()))),
            Step::More => Ok(None),
        }
    }

    /// Whether bytes of an answer have arrived.
    fn answer_started(&self, reader: &AnswerReader) -> bool {
        reader.in_body() || !self.buf.is_empty()
    }
}

impl<S: AsRawFd> Conn<S> {
    /// After a failed write: an answer the server sent before it stopped
    /// reading (a 413 for a body it will not take) may be waiting; reads
    /// what is there without waiting.
    fn answer_waiting(&mut self) -> Option<Answer> {
        let mut reader = AnswerReader::new();
        loop {
            let start = self.room(READ_SIZE);
            let read = recv_now(&self.stream, &mut self.buf[start..]);
            let eof = matches!(read, Ok(0));
            self.buf.truncate(start + read.as_ref().map_or(0, |n| *n));
            match reader.read(&mut self.buf, eof) {
                Ok(Step::Done { answer, .. }) => return Some(answer),
                Ok(Step::More) if matches!(read, Ok(n) if n > 0) => {}
                _ => return None,
            }
        }
    }
}

/// Reads what a socket holds without blocking.
fn recv_now(stream: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: a valid socket and a buffer we own, of the length given.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
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
    /// Each is checked first (one system call): one the server closed, or
    /// one with bytes the server sent after its last answer, is dropped.
    fn take(&self) -> Option<Conn<S>> {
        let own = shard();
        (0..SHARDS).find_map(|i| {
            let shard = &self.0[(own + i) % SHARDS];
            loop {
                let conn = shard.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
                if still_open(&conn.stream) {
                    return Some(conn);
                }
            }
        })
    }

    fn give_back(&self, conn: Conn<S>) {
        if !conn.buf.is_empty() {
            return;
        }
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

/// Whether an idle connection may carry a request: nothing to read (no
/// stray bytes), no end of stream, no error.
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

/// Keep-alive connections to one `http://` exchange. Its `Debug` leaves
/// out the header lines (they may carry credentials).
pub struct Pool {
    connector: Connector,
    /// The fixed header lines of every request (`Host:`, the factory's
    /// headers), rendered once.
    head_lines: Vec<u8>,
    blocking: Idle<TcpStream>,
    pub(crate) nonblocking: Idle<tokio::net::TcpStream>,
    /// The connection background sends are pipelined on, started by the
    /// first (on the library's runtime), and again if its task ended.
    pipeline: Mutex<Option<Arc<Pipeline>>>,
}

/// Whether reqwest would send requests to `url` through a proxy: the same
/// matcher it uses (`HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY` and the lower
/// case names, as curl reads them).
fn proxied(url: &reqwest::Url) -> bool {
    proxied_by(
        url,
        &hyper_util::client::proxy::matcher::Matcher::from_system(),
    )
}

fn proxied_by(url: &reqwest::Url, matcher: &hyper_util::client::proxy::matcher::Matcher) -> bool {
    match url.as_str().parse::<hyper::Uri>() {
        Ok(uri) => matcher.intercept(&uri).is_some(),
        Err(_) => true,
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool for `url`, or `None` where requests must go through reqwest
    /// (not `http`, or a proxy applies to it). `headers` are sent with
    /// every request; none of them may be one of [`RESERVED_HEADERS`].
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
        if proxied(url) {
            tracing::debug!(
                url = url.as_str(),
                "fast path off: a proxy applies to this URL (HTTP_PROXY / ALL_PROXY, not NO_PROXY), requests go through reqwest"
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
            if RESERVED_HEADERS
                .iter()
                .any(|r| name.eq_ignore_ascii_case(r))
            {
                continue;
            }
            head_lines.extend_from_slice(name.as_bytes());
            head_lines.extend_from_slice(b": ");
            head_lines.extend_from_slice(value.as_bytes());
            head_lines.extend_from_slice(b"\r\n");
        }
        Some(Pool {
            connector: Connector::new(authority, connect_timeout),
            head_lines,
            pipeline: Mutex::new(None),
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
    ///
    /// A request on a kept-alive connection that fails before any answer
    /// arrives goes again on a new connection if the server cannot have
    /// acted on it, or if `resend` (the request may safely be repeated).
    pub fn request_blocking(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
        timeout: Option<Duration>,
        busy_poll: Duration,
        resend: bool,
    ) -> Result<Answer, Attempt> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let request = self.render(method, target, body);
        if let Some(mut conn) = self.blocking.take() {
            match exchange_blocking(&mut conn, &request, deadline, busy_poll) {
                Ok(answer) => return Ok(self.keep_blocking(conn, answer)),
                Err(a) if may_go_again(&a, resend) => {}
                Err(a) => return Err(a),
            }
        }
        let mut conn = Conn::new(self.connector.connect_blocking(deadline)?);
        exchange_blocking(&mut conn, &request, deadline, busy_poll)
            .map(|answer| self.keep_blocking(conn, answer))
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
        resend: bool,
    ) -> Result<Answer, Attempt> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let request = self.render(method, target, body);
        if let Some(mut conn) = self.nonblocking.take() {
            match exchange(&mut conn, &request, deadline).await {
                Ok(answer) => return Ok(self.keep(conn, answer)),
                Err(a) if may_go_again(&a, resend) => {}
                Err(a) => return Err(a),
            }
        }
        let mut conn = Conn::new(self.connector.connect(deadline).await?);
        exchange(&mut conn, &request, deadline)
            .await
            .map(|answer| self.keep(conn, answer))
    }

    /// The pipelined connection, started again if its task has ended.
    fn pipeline(&self) -> Arc<Pipeline> {
        let mut slot = self.pipeline.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(p) if p.is_running() => p.clone(),
            _ => {
                let p = Arc::new(Pipeline::start(self.connector.clone()));
                *slot = Some(p.clone());
                p
            }
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
        resend: bool,
    ) -> Result<Answer, Attempt> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let request = self.render(method, target, body);
        // A request the connection failed under goes again once, on the
        // connection the pipeline makes next, if that cannot deliver it
        // twice.
        match self.pipeline().request(request.clone(), deadline).await {
            Err(a) if may_go_again(&a, resend) => {}
            done => return done,
        }
        self.pipeline().request(request, deadline).await
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

/// Whether a failed request may go again at once on a new connection: the
/// server cannot have acted on it, or it may safely be repeated; never
/// after a timeout (its time is up) or a bad answer.
fn may_go_again(attempt: &Attempt, resend: bool) -> bool {
    let connection_failed = matches!(attempt.failure, Failure::Io(_) | Failure::Connect(_));
    connection_failed && (attempt.reach == Reach::NotSent || resend)
}

/// Sets a blocking socket's timeouts to what is left of its request's time
/// (`None`: no bound), unless they are already that within
/// [`TIMEOUT_SLACK`]: a slow server cannot stretch a request past its
/// deadline by more than that.
fn bound_socket(conn: &mut Conn<TcpStream>, left: Option<Duration>) -> io::Result<()> {
    let close_enough = match (conn.socket_timeout, left) {
        (None, None) => true,
        (Some(set), Some(left)) => set <= left + TIMEOUT_SLACK && set + TIMEOUT_SLACK >= left,
        _ => false,
    };
    if !close_enough {
        conn.stream.set_read_timeout(left)?;
        conn.stream.set_write_timeout(left)?;
        conn.socket_timeout = left;
    }
    Ok(())
}

fn left(deadline: Option<Instant>) -> Result<Option<Duration>, Failure> {
    deadline.map(remaining).transpose()
}

/// Writes `request` and reads one answer on a blocking socket. Returns it
/// and whether the connection may be used again.
fn exchange_blocking(
    conn: &mut Conn<TcpStream>,
    request: &[u8],
    deadline: Option<Instant>,
    busy_poll: Duration,
) -> Result<(Answer, bool), Attempt> {
    let time = left(deadline)?;
    bound_socket(conn, time).map_err(|e| Attempt::not_sent(Failure::Io(e)))?;
    if let Err(e) = conn.stream.write_all(request) {
        // Not all of it went out, so the server cannot have acted on it;
        // but it may have answered already (and stopped reading).
        return match conn.answer_waiting() {
            Some(answer) => Ok((answer, false)),
            None => Err(Attempt::not_sent(io_failure(e))),
        };
    }
    if !busy_poll.is_zero() {
        poll_until_readable(&conn.stream, Instant::now() + busy_poll);
    }
    let mut reader = AnswerReader::new();
    loop {
        let time = left(deadline).map_err(Attempt::unknown)?;
        bound_socket(conn, time).map_err(|e| Attempt::unknown(Failure::Io(e)))?;
        let start = conn.room(reader.want(READ_SIZE));
        let n = match conn.stream.read(&mut conn.buf[start..]) {
            Ok(n) => n,
            Err(e) => {
                conn.buf.truncate(start);
                match e.kind() {
                    // Interrupted, or the socket's timeout ran out before
                    // the deadline (it may be up to the slack short).
                    io::ErrorKind::Interrupted
                    | io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut => continue,
                    _ => return Err(Attempt::unknown(io_failure(e))),
                }
            }
        };
        let started = conn.answer_started(&reader);
        match conn.after_read(&mut reader, start, n) {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => {}
            Err(f) => return Err(failed_read(f, started)),
        }
    }
}

/// A read that ended the connection: with no byte of an answer yet, the
/// server closed it (reach unknown: it may have acted on the request).
fn failed_read(failure: Failure, started: bool) -> Attempt {
    if started {
        Attempt::unknown(failure)
    } else {
        Attempt::unknown(match failure {
            Failure::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => closed_early(),
            other => other,
        })
    }
}

/// [`exchange_blocking`] on a tokio socket.
async fn exchange(
    conn: &mut Conn<tokio::net::TcpStream>,
    request: &[u8],
    deadline: Option<Instant>,
) -> Result<(Answer, bool), Attempt> {
    if let Err(f) = within(deadline, conn.stream.write_all(request)).await {
        return match conn.answer_waiting() {
            Some(answer) => Ok((answer, false)),
            None => Err(Attempt::not_sent(f)),
        };
    }
    let mut reader = AnswerReader::new();
    loop {
        let start = conn.room(reader.want(READ_SIZE));
        let read = within(deadline, conn.stream.read(&mut conn.buf[start..])).await;
        let n = match read {
            Ok(n) => n,
            Err(f) => {
                conn.buf.truncate(start);
                return Err(Attempt::unknown(f));
            }
        };
        let started = conn.answer_started(&reader);
        match conn.after_read(&mut reader, start, n) {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => {}
            Err(f) => return Err(failed_read(f, started)),
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

    /// A stub server (a stand-in: these tests are about framing and
    /// hostile bytes): serves each accepted connection with `answers`, one
    /// per request read; `b""` closes the connection without answering.
    /// Returns the number of connections it accepted.
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
        (pool_at(port), server)
    }

    fn pool_at(port: u16) -> Pool {
        let url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        Pool::new(&url, &[], Duration::from_secs(2)).unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Each kind of request: blocking (with and without busy polling), on
    /// a runtime of the test's, and pipelined.
    struct Asker {
        runtime: Option<tokio::runtime::Runtime>,
        poll: Duration,
        pipelined: bool,
    }

    impl Asker {
        /// Blocking, blocking with busy polling, and async.
        fn all() -> [Asker; 3] {
            let blocking = |poll| Asker {
                runtime: None,
                poll,
                pipelined: false,
            };
            [
                blocking(Duration::ZERO),
                blocking(Duration::from_millis(50)),
                Asker {
                    runtime: Some(runtime()),
                    poll: Duration::ZERO,
                    pipelined: false,
                },
            ]
        }

        /// The three of [`Asker::all`] and the pipelined one.
        fn every() -> [Asker; 4] {
            let [a, b, c] = Asker::all();
            [
                a,
                b,
                c,
                Asker {
                    runtime: Some(runtime()),
                    poll: Duration::ZERO,
                    pipelined: true,
                },
            ]
        }

        fn ask(&self, pool: &Pool, target: &str, t: Duration) -> Result<Answer, Failure> {
            self.ask_resending(pool, target, t, true)
                .map_err(|a| a.failure)
        }

        fn ask_resending(
            &self,
            pool: &Pool,
            target: &str,
            t: Duration,
            resend: bool,
        ) -> Result<Answer, Attempt> {
            self.ask_body(pool, target, b"{}", t, resend)
        }

        fn ask_body(
            &self,
            pool: &Pool,
            target: &str,
            body: &[u8],
            t: Duration,
            resend: bool,
        ) -> Result<Answer, Attempt> {
            match (&self.runtime, self.pipelined) {
                (None, _) => pool.request_blocking("PUT", target, body, Some(t), self.poll, resend),
                (Some(rt), false) => {
                    rt.block_on(pool.request("PUT", target, body, Some(t), resend))
                }
                (Some(rt), true) => {
                    rt.block_on(pool.request_pipelined("PUT", target, body, Some(t), resend))
                }
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
    fn a_request_that_may_have_arrived_is_not_sent_again_unless_allowed() {
        for asker in Asker::all() {
            // The server reads the second request and closes without an
            // answer: it may have acted on it.
            let (pool, server) = serve(vec![
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na",
                b"",
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb",
            ]);
            let t = Duration::from_secs(5);
            assert_eq!(asker.ask(&pool, "/m", t).unwrap().body, b"a");
            // Wait until the server has closed, so that the pool's check
            // does not see it first (the race this is about).
            let err = asker.ask_resending(&pool, "/m", t, false).unwrap_err();
            assert_eq!(err.reach, Reach::Unknown, "{:?}", err.failure);
            assert!(
                err.failure.to_string().contains("closed"),
                "{}",
                err.failure
            );
            assert_eq!(asker.ask(&pool, "/m", t).unwrap().body, b"b");
            assert_eq!(server.join().unwrap(), 2);
        }
    }

    #[test]
    fn connections_with_bytes_left_over_are_not_reused() {
        for asker in Asker::all() {
            let (pool, server) = serve(vec![
                // A body on a 204, and more bytes than the length says.
                b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\nhello",
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA",
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            ]);
            let t = Duration::from_secs(5);
            let a = asker.ask(&pool, "/m", t).unwrap();
            assert_eq!((a.status, a.body.len()), (204, 0));
            let b = asker.ask(&pool, "/m", t).unwrap();
            assert_eq!(b.body, b"ok");
            let c = asker.ask(&pool, "/m", t).unwrap();
            assert_eq!(c.body, b"ok", "not the left-over EXTRA");
            // Three answers on three connections: the stub counts them
            // until its script ends.
            drop(pool);
            assert_eq!(server.join().unwrap(), 3);
        }
    }

    #[test]
    fn a_huge_chunk_fails_one_request_and_the_pipeline_goes_on() {
        for asker in Asker::every() {
            let (pool, server) = serve(vec![
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\nb",
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            ]);
            let t = Duration::from_secs(5);
            let err = asker.ask(&pool, "/m", t).unwrap_err();
            assert!(matches!(err, Failure::Protocol(_)), "{err}");
            assert_eq!(asker.ask(&pool, "/m", t).unwrap().body, b"ok");
            drop(pool);
            assert_eq!(server.join().unwrap(), 2);
        }
    }

    #[test]
    fn pipelined_requests_behind_a_timed_out_one_are_not_sent_again() {
        // A stub that reads whatever comes and never answers; it counts
        // the requests it read.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let pool = pool_at(listener.local_addr().unwrap().port());
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                let count = count.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            return;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        count.fetch_add(
                            text.matches("PUT /m").count(),
                            std::sync::atomic::Ordering::SeqCst,
                        );
                    }
                });
            }
        });
        let rt = runtime();
        let (first, second) = rt.block_on(async {
            let a =
                pool.request_pipelined("PUT", "/m", b"{}", Some(Duration::from_millis(300)), false);
            let b = pool.request_pipelined("PUT", "/m", b"{}", Some(Duration::from_secs(5)), false);
            tokio::join!(a, b)
        });
        let first = first.unwrap_err();
        assert!(
            matches!(first.failure, Failure::Timeout),
            "{}",
            first.failure
        );
        let second = second.unwrap_err();
        assert_eq!(second.reach, Reach::Unknown, "{}", second.failure);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            seen.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "each written once"
        );
    }

    #[test]
    fn a_pipeline_whose_task_died_is_replaced() {
        let (pool, _server) = serve(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb",
        ]);
        let t = Some(Duration::from_secs(5));
        let first = runtime();
        let a = first
            .block_on(pool.request_pipelined("PUT", "/m", b"{}", t, false))
            .unwrap();
        assert_eq!(a.body, b"a");
        // The runtime that ran the pipeline's task goes away, and the task
        // with it.
        drop(first);
        let b = runtime()
            .block_on(pool.request_pipelined("PUT", "/m", b"{}", t, false))
            .unwrap();
        assert_eq!(b.body, b"b");
    }

    #[test]
    fn times_out_and_refuses_on_time() {
        for asker in Asker::every() {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let pool = pool_at(listener.local_addr().unwrap().port());
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

    #[test]
    fn a_slow_server_cannot_stretch_a_request_past_its_deadline() {
        for asker in Asker::every() {
            // A stub that sends part of an answer just before the deadline,
            // then nothing.
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let pool = pool_at(listener.local_addr().unwrap().port());
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                std::thread::sleep(Duration::from_millis(400));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab");
                std::thread::sleep(Duration::from_secs(2));
            });
            let start = Instant::now();
            let err = asker
                .ask(&pool, "/", Duration::from_millis(500))
                .unwrap_err();
            let took = start.elapsed();
            assert!(matches!(err, Failure::Timeout), "{err}");
            assert!(
                took < Duration::from_millis(800),
                "a 500 ms request took {took:?}"
            );
            server.join().unwrap();
        }
    }

    #[test]
    fn an_answer_sent_before_the_body_was_read_is_not_lost() {
        for asker in Asker::every() {
            // A stub that answers 413 after the head and closes without
            // reading the body (as our exchange once did).
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let pool = pool_at(listener.local_addr().unwrap().port());
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo long",
                );
                std::thread::sleep(Duration::from_millis(100));
            });
            let body = vec![b'x'; 16 << 20];
            let answer = asker
                .ask_body(&pool, "/message", &body, Duration::from_secs(5), false)
                .map_err(|a| a.failure.to_string())
                .unwrap();
            assert_eq!(
                (answer.status, answer.body.as_slice()),
                (413, &b"too long"[..])
            );
            server.join().unwrap();
        }
    }

    #[test]
    fn a_connect_timeout_goes_on_to_the_next_address() {
        // An address whose listen queue is full drops connection attempts,
        // so connecting to it times out.
        let full = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as _;
            addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            assert_eq!(
                libc::bind(
                    fd,
                    (&addr as *const libc::sockaddr_in).cast(),
                    std::mem::size_of_val(&addr) as _
                ),
                0
            );
            assert_eq!(libc::listen(fd, 0), 0);
            let mut len = std::mem::size_of_val(&addr) as libc::socklen_t;
            libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_in).cast(), &mut len);
            std::net::SocketAddr::from(([127, 0, 0, 1], u16::from_be(addr.sin_port)))
        };
        // Fill its queue.
        let mut held = Vec::new();
        for _ in 0..8 {
            if let Ok(s) = TcpStream::connect_timeout(&full, Duration::from_millis(100)) {
                held.push(s);
            }
        }
        let good = TcpListener::bind("127.0.0.1:0").unwrap();
        let connector = Connector::with_addresses(
            &[full, good.local_addr().unwrap()],
            Duration::from_millis(200),
        );
        let deadline = Some(Instant::now() + Duration::from_secs(5));
        connector
            .connect_blocking(deadline)
            .expect("the second address after the first timed out");
        runtime()
            .block_on(connector.connect(deadline))
            .expect("the second address after the first timed out");
    }

    #[test]
    fn no_proxy_keeps_the_direct_path() {
        use hyper_util::client::proxy::matcher::Matcher;
        let url = reqwest::Url::parse("http://127.0.0.1:8700").unwrap();
        let with = |no: &str| {
            Matcher::builder()
                .http("http://proxy.example:3128")
                .no(no)
                .build()
        };
        assert!(proxied_by(&url, &with("")));
        assert!(!proxied_by(&url, &with("127.0.0.1")));
        assert!(!proxied_by(&url, &with("example.org, 127.0.0.0/8")));
        let named = reqwest::Url::parse("http://exchange.lab.example:8700").unwrap();
        assert!(!proxied_by(&named, &with(".lab.example")));
        assert!(proxied_by(&named, &with("other.example")));
    }
}
