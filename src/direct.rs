//! Blocking HTTP/1.1 requests made on the calling thread.
//!
//! Every blocking C call used to hand its request to the library's runtime
//! thread and sleep until that thread handed the answer back: two thread
//! wake-ups per request, which on a small virtual machine cost more than the
//! request itself (tens of microseconds each when a CPU idles). A caller
//! blocked in the library has nothing else to do, so for plain `http://`
//! exchanges it now writes the request and reads the answer on its own
//! thread, over a keep-alive connection taken from this pool; the kernel
//! wakes it directly when the answer arrives.
//!
//! Only request/answer endpoints go this way, only from threads blocked in
//! [`crate::runtime::block_on`], and only when reqwest would have connected
//! directly too (no proxy in the environment, no TLS, no Globus tokens to
//! refresh). Everything else (listen streams, work on the runtime, async
//! Rust callers) uses reqwest. Retries, back-off and the mapping of answers
//! to errors stay in [`crate::transport`]; this module only moves bytes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Idle connections kept per exchange and shard; more are closed after use.
const MAX_IDLE: usize = 8;
/// The idle connections are split into shards, a thread using its own, so
/// that threads sending at once do not queue on one lock (with 32 sending
/// threads on 2 cores a preempted lock holder stalled the others).
const SHARDS: usize = 16;
/// A connection idle longer than this is checked before reuse (servers
/// close idle keep-alive connections; aiohttp after 75 s).
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);
/// Longest answer head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Longest answer body accepted (far above any exchange's message limit).
const MAX_BODY: usize = 1 << 30;
/// Headers in an answer head.
const MAX_HEADERS: usize = 64;

/// An answer: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why a request failed before an answer was read.
#[derive(Debug)]
pub enum Failure {
    /// No connection could be made.
    Connect(io::Error),
    /// The deadline passed.
    Timeout,
    /// The connection failed mid-request.
    Io(io::Error),
    /// The server answered something that is not HTTP/1.1.
    Protocol(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connection refused or unreachable: {e}"),
            Failure::Timeout => write!(f, "operation timed out"),
            Failure::Io(e) => write!(f, "connection failed: {e}"),
            Failure::Protocol(e) => write!(f, "bad HTTP answer: {e}"),
        }
    }
}

struct Conn {
    stream: TcpStream,
    /// The read timeout last set on the socket (a syscall to change).
    read_timeout: Option<Duration>,
    last_used: Instant,
    /// Read buffer, kept between answers: it starts with any bytes read
    /// past the end of the previous answer (none with servers that answer
    /// one request at a time, kept for correctness).
    buf: Vec<u8>,
}

/// Keep-alive connections to one `http://` exchange.
#[derive(Debug)]
pub struct Pool {
    /// `host:port` as written in the URL, for connecting and `Host:`.
    authority: String,
    /// The fixed header lines of every request (`Host:`, the factory's
    /// headers), rendered once.
    head_lines: Vec<u8>,
    connect_timeout: Duration,
    idle: [Mutex<Vec<Conn>>; SHARDS],
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

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("stream", &self.stream)
            .finish()
    }
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
        if url.scheme() != "http" || proxy_configured() {
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
            authority,
            head_lines,
            connect_timeout,
            idle: std::array::from_fn(|_| Mutex::new(Vec::new())),
        })
    }

    /// Sends one request and reads its answer, blocking the calling thread
    /// for at most `timeout` (`None`: no bound). `target` is the path.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Answer, Failure> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let request = self.render(method, target, body);
        // A kept-alive connection the server has closed fails before any
        // answer arrives; then the request goes again on a new connection.
        if let Some(mut conn) = self.take_idle() {
            match exchange(&mut conn, &request, timeout, deadline) {
                Ok((answer, keep)) => {
                    self.give_back(conn, keep);
                    return Ok(answer);
                }
                Err(Attempt::Untouched(_)) => {}
                Err(Attempt::Failed(f)) => return Err(f),
            }
        }
        let mut conn = self.connect(deadline)?;
        match exchange(&mut conn, &request, timeout, deadline) {
            Ok((answer, keep)) => {
                self.give_back(conn, keep);
                Ok(answer)
            }
            Err(Attempt::Untouched(f) | Attempt::Failed(f)) => Err(f),
        }
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

    /// An idle connection: the calling thread's shard first, then others.
    fn take_idle(&self) -> Option<Conn> {
        let own = shard();
        (0..SHARDS).find_map(|i| self.take_from(&self.idle[(own + i) % SHARDS]))
    }

    fn take_from(&self, shard: &Mutex<Vec<Conn>>) -> Option<Conn> {
        loop {
            let conn = shard.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
            if conn.last_used.elapsed() < CHECK_AFTER_IDLE || still_open(&conn.stream) {
                return Some(conn);
            }
        }
    }

    fn give_back(&self, mut conn: Conn, keep: bool) {
        if !keep {
            return;
        }
        conn.last_used = Instant::now();
        let mut idle = self.idle[shard()].lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    fn connect(&self, deadline: Option<Instant>) -> Result<Conn, Failure> {
        let addrs: Vec<SocketAddr> = self
            .authority
            .to_socket_addrs()
            .map_err(Failure::Connect)?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            let mut limit = self.connect_timeout;
            if let Some(d) = deadline {
                limit = limit.min(remaining(d)?);
            }
            match TcpStream::connect_timeout(&addr, limit) {
                Ok(stream) => {
                    stream.set_nodelay(true).map_err(Failure::Connect)?;
                    return Ok(Conn {
                        stream,
                        read_timeout: None,
                        last_used: Instant::now(),
                        buf: Vec::new(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(Failure::Timeout),
                Err(e) => last = e,
            }
        }
        Err(Failure::Connect(last))
    }
}

/// A failed attempt: `Untouched` when nothing of an answer was read (so
/// the request may go again on a new connection).
enum Attempt {
    Untouched(Failure),
    Failed(Failure),
}

fn remaining(deadline: Instant) -> Result<Duration, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(Failure::Timeout)
    } else {
        Ok(left)
    }
}

/// Whether the server has not closed an idle connection (nothing to read,
/// no end of stream), without blocking.
fn still_open(stream: &TcpStream) -> bool {
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
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

fn io_failure(e: io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Timeout,
        _ => Failure::Io(e),
    }
}

/// Writes `request` and reads one answer. Returns it and whether the
/// connection may be used again.
fn exchange(
    conn: &mut Conn,
    request: &[u8],
    timeout: Option<Duration>,
    deadline: Option<Instant>,
) -> Result<(Answer, bool), Attempt> {
    // The socket's timeouts bound each read and write by the whole
    // request's timeout (set only when it changes: a system call each);
    // `Reader::fill` checks the deadline itself between reads.
    if let Some(d) = deadline {
        remaining(d).map_err(Attempt::Failed)?;
    }
    if conn.read_timeout != timeout {
        conn.stream
            .set_read_timeout(timeout)
            .and_then(|()| conn.stream.set_write_timeout(timeout))
            .map_err(|e| Attempt::Failed(Failure::Io(e)))?;
        conn.read_timeout = timeout;
    }
    conn.stream
        .write_all(request)
        .map_err(|e| Attempt::Untouched(io_failure(e)))?;
    let buf = std::mem::take(&mut conn.buf);
    let mut reader = Reader {
        conn,
        buf,
        pos: 0,
        deadline,
    };
    let got_any = |r: &Reader| !r.buf.is_empty();
    let head = match reader.head() {
        Ok(head) => head,
        Err(f) if !got_any(&reader) && !matches!(f, Failure::Timeout) => {
            return Err(Attempt::Untouched(f))
        }
        Err(f) => return Err(Attempt::Failed(f)),
    };
    let (body, framed) = reader.body(&head).map_err(Attempt::Failed)?;
    let keep = framed && head.keep_alive;
    if keep {
        reader.buf.drain(..reader.pos);
        reader.conn.buf = reader.buf;
    }
    Ok((
        Answer {
            status: head.status,
            body,
        },
        keep,
    ))
}

struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    keep_alive: bool,
}

/// Reads an answer from a connection; `buf[pos..]` is read but unparsed.
struct Reader<'a> {
    conn: &'a mut Conn,
    buf: Vec<u8>,
    pos: usize,
    deadline: Option<Instant>,
}

impl Reader<'_> {
    /// Reads more bytes; `Ok(false)` at the end of the stream.
    fn fill(&mut self) -> Result<bool, Failure> {
        if let Some(d) = self.deadline {
            remaining(d)?;
        }
        let start = self.buf.len();
        self.buf.resize(start + 4096, 0);
        let read = self.conn.stream.read(&mut self.buf[start..]);
        let n = match read {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => {
                self.buf.truncate(start);
                return Err(io_failure(e));
            }
        };
        self.buf.truncate(start + n);
        Ok(n > 0)
    }

    fn eof(&self) -> Failure {
        Failure::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection before answering",
        ))
    }

    /// The answer head, skipping `100 Continue` and other 1xx heads.
    fn head(&mut self) -> Result<Head, Failure> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&self.buf[self.pos..]) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = parsed.code.unwrap_or(0);
                    let mut head = Head {
                        status,
                        content_length: None,
                        chunked: false,
                        keep_alive: parsed.version == Some(1),
                    };
                    for h in parsed.headers.iter() {
                        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
                        if h.name.eq_ignore_ascii_case("content-length") {
                            head.content_length = Some(value.parse().map_err(|_| {
                                Failure::Protocol(format!("bad content-length {value:?}"))
                            })?);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            head.chunked = value.to_ascii_lowercase().ends_with("chunked");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            head.keep_alive &= !value.eq_ignore_ascii_case("close");
                        }
                    }
                    self.pos += len;
                    if (100..200).contains(&status) {
                        continue;
                    }
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) => {
                    if self.buf.len() - self.pos > MAX_HEAD {
                        return Err(Failure::Protocol("answer head too long".into()));
                    }
                    if !self.fill()? {
                        return Err(self.eof());
                    }
                }
                Err(e) => return Err(Failure::Protocol(e.to_string())),
            }
        }
    }

    /// Makes `n` unparsed bytes available.
    fn want(&mut self, n: usize) -> Result<(), Failure> {
        while self.buf.len() - self.pos < n {
            if !self.fill()? {
                return Err(self.eof());
            }
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        out
    }

    /// The body, and whether its end was framed (so the connection may be
    /// reused) rather than marked by the server closing it.
    fn body(&mut self, head: &Head) -> Result<(Vec<u8>, bool), Failure> {
        if head.status == 204 || head.status == 304 {
            return Ok((Vec::new(), true));
        }
        if head.chunked {
            return self.chunked().map(|b| (b, true));
        }
        if let Some(len) = head.content_length {
            if len > MAX_BODY {
                return Err(Failure::Protocol(format!("answer of {len} bytes")));
            }
            self.want(len)?;
            return Ok((self.take(len).to_vec(), true));
        }
        while self.fill()? {
            if self.buf.len() - self.pos > MAX_BODY {
                return Err(Failure::Protocol("answer too long".into()));
            }
        }
        let len = self.buf.len() - self.pos;
        Ok((self.take(len).to_vec(), false))
    }

    fn line(&mut self) -> Result<String, Failure> {
        loop {
            if let Some(i) = self.buf[self.pos..].windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(self.take(i)).into_owned();
                self.pos += 2;
                return Ok(line);
            }
            if self.buf.len() - self.pos > MAX_HEAD {
                return Err(Failure::Protocol("chunk line too long".into()));
            }
            if !self.fill()? {
                return Err(self.eof());
            }
        }
    }

    fn chunked(&mut self) -> Result<Vec<u8>, Failure> {
        let mut body = Vec::new();
        loop {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| Failure::Protocol(format!("bad chunk size {size:?}")))?;
            if size == 0 {
                // Trailers, then an empty line.
                while !self.line()?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(Failure::Protocol("answer too long".into()));
            }
            self.want(size + 2)?;
            body.extend_from_slice(self.take(size));
            if self.take(2) != b"\r\n" {
                return Err(Failure::Protocol("chunk not followed by CRLF".into()));
            }
        }
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

    #[test]
    fn reads_length_chunked_and_close_framed_answers_and_reuses_connections() {
        let (pool, server) = serve(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end",
        ]);
        let t = Some(Duration::from_secs(5));
        let a = pool.request("PUT", "/message", b"{}", t).unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"ok"[..]));
        let b = pool.request("GET", "/x", b"{}", t).unwrap();
        assert_eq!((b.status, b.body.as_slice()), (404, &b"abcde"[..]));
        // The server sends the third answer and closes: read to the end.
        let c = pool.request("GET", "/y", b"{}", t).unwrap();
        assert_eq!((c.status, c.body.as_slice()), (200, &b"until the end"[..]));
        assert!(
            pool.idle.iter().all(|s| s.lock().unwrap().is_empty()),
            "a close-framed connection is not kept"
        );
        assert_eq!(server.join().unwrap(), 1, "one connection for all three");
    }

    #[test]
    fn a_kept_connection_the_server_closed_is_replaced() {
        // First connection: one answer, then closed on the next request.
        let (pool, server) = serve(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na",
            b"",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb",
        ]);
        let t = Some(Duration::from_secs(5));
        assert_eq!(pool.request("PUT", "/m", b"{}", t).unwrap().body, b"a");
        assert_eq!(pool.request("PUT", "/m", b"{}", t).unwrap().body, b"b");
        assert_eq!(server.join().unwrap(), 2);
    }

    #[test]
    fn times_out_and_refuses_on_time() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = reqwest::Url::parse(&format!(
            "http://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        ))
        .unwrap();
        let pool = Pool::new(&url, &[], Duration::from_secs(2)).unwrap();
        let start = Instant::now();
        let err = pool
            .request("GET", "/", b"", Some(Duration::from_millis(200)))
            .unwrap_err();
        assert!(matches!(err, Failure::Timeout), "{err}");
        assert!(start.elapsed() < Duration::from_secs(2));
        drop(listener);
        let err = pool
            .request("GET", "/", b"", Some(Duration::from_secs(1)))
            .unwrap_err();
        assert!(matches!(err, Failure::Connect(_)), "{err}");
    }
}
