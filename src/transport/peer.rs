//! Direct TCP between the peers of a hybrid exchange (academy-py's
//! `academy/socket.py`): a frame is a 4-byte big-endian length and that
//! many bytes of message JSON; nothing is ever written back.
//!
//! Sending ([`PeerPool`]): one connection per peer address, shared by the
//! clients of a factory. A frame is written whole, header and payload in
//! one write: academy-py's receiver breaks on a header split across reads,
//! and hangs on a connection that ends in the middle of a frame, so a frame
//! that was started is always finished (by a writer task that nothing
//! cancels) or the connection is given up because the peer reset it.
//! Frames on one connection go out in the order their sends were made.
//! A send reports whether its frame was handed whole to the kernel; one
//! that was not can be sent another way without a duplicate.
//!
//! Receiving ([`PeerListener`]): every accepted connection is read frame by
//! frame into the mailbox's channel. A connection that ends in the middle
//! of a frame only loses that frame.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{Error, Result};
use crate::runtime;

/// Longest frame accepted from a peer (academy-py has no limit besides
/// 2^32 - 1; this keeps a hostile length from costing that much memory).
pub const MAX_FRAME: usize = 1 << 30;
/// After a failed connect, sends to that address go another way for this
/// long before connecting is tried again.
const CONNECT_BACKOFF: Duration = Duration::from_secs(2);
/// The longest connect to a peer (a peer on a dead host would otherwise
/// hold a send for the whole connect timeout, with Redis there to use).
const MAX_CONNECT: Duration = Duration::from_secs(5);
/// How many frames one write takes at most.
const WRITE_BATCH: usize = 64;
/// When a listener stops, connections are read on while frames keep
/// coming at least this often.
const GRACE: Duration = Duration::from_millis(100);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A message JSON as a frame.
pub fn frame(message_json: &str) -> Result<Vec<u8>> {
    let len = u32::try_from(message_json.len()).map_err(|_| {
        Error::new(
            crate::error::Status::MessageTooLarge,
            format!(
                "a message of {} bytes is larger than a hybrid exchange frame can carry (4 GiB)",
                message_json.len()
            ),
        )
    })?;
    let mut out = Vec::with_capacity(4 + message_json.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message_json.as_bytes());
    Ok(out)
}

/// The frame could not be handed whole to a live connection: it was not
/// delivered, and may be sent another way.
#[derive(Debug)]
pub struct NotSent(pub String);

// ---- sending ----

/// A frame waiting for the writer task, and who waits for it.
struct Pending {
    bytes: Vec<u8>,
    written: usize,
    done: oneshot::Sender<bool>,
}

#[derive(Default)]
struct WriteState {
    backlog: VecDeque<Pending>,
    writer_running: bool,
    broken: bool,
}

/// One connection to a peer.
struct PeerConn {
    stream: TcpStream,
    state: Mutex<WriteState>,
    closing: watch::Sender<bool>,
}

impl PeerConn {
    fn is_broken(&self) -> bool {
        lock(&self.state).broken
    }

    fn mark_broken(&self) {
        let pending: Vec<Pending> = {
            let mut st = lock(&self.state);
            st.broken = true;
            st.backlog.drain(..).collect()
        };
        for p in pending {
            let _ = p.done.send(false);
        }
        self.closing.send_replace(true);
    }

    /// Writes a frame: at once when the caller is a thread blocked on this
    /// send (latency), nothing waits before it and the socket takes it
    /// all; else through the writer task, which writes the frames of
    /// concurrent sends together (one system call and segment for many
    /// background sends).
    async fn send(self: &Arc<Self>, bytes: Vec<u8>) -> std::result::Result<(), NotSent> {
        let rx = {
            let mut st = lock(&self.state);
            if st.broken {
                return Err(NotSent("the connection was closed".into()));
            }
            let mut written = 0;
            if st.backlog.is_empty() && !runtime::on_library_thread() {
                if closed_by_peer(&self.stream) {
                    drop(st);
                    self.mark_broken();
                    return Err(NotSent("the peer closed the connection".into()));
                }
                loop {
                    match self.stream.try_write(&bytes[written..]) {
                        Ok(n) => {
                            written += n;
                            if written == bytes.len() {
                                return Ok(());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            drop(st);
                            self.mark_broken();
                            return Err(NotSent(e.to_string()));
                        }
                    }
                }
            }
            let (tx, rx) = oneshot::channel();
            st.backlog.push_back(Pending {
                bytes,
                written,
                done: tx,
            });
            if !st.writer_running {
                st.writer_running = true;
                let me = self.clone();
                match runtime::handle() {
                    Ok(h) => {
                        h.spawn(me.write_backlog());
                    }
                    Err(_) => {
                        tokio::spawn(me.write_backlog());
                    }
                }
            }
            rx
        };
        match rx.await {
            Ok(true) => Ok(()),
            _ => Err(NotSent("the peer closed the connection".into())),
        }
    }

    /// Writes the backlog until it is empty or the connection fails, many
    /// frames per system call.
    async fn write_backlog(self: Arc<Self>) {
        // Sends made in the same turn of the runtime join this write.
        tokio::task::yield_now().await;
        loop {
            if self.stream.writable().await.is_err() {
                self.mark_broken();
                return;
            }
            let mut st = lock(&self.state);
            loop {
                if st.backlog.is_empty() {
                    st.writer_running = false;
                    return;
                }
                let slices: Vec<io::IoSlice<'_>> = st
                    .backlog
                    .iter()
                    .take(WRITE_BATCH)
                    .map(|p| io::IoSlice::new(&p.bytes[p.written..]))
                    .collect();
                let wrote = self.stream.try_write_vectored(&slices);
                drop(slices);
                match wrote {
                    Ok(mut n) => {
                        while n > 0 {
                            let Some(front) = st.backlog.front_mut() else {
                                break;
                            };
                            let left = front.bytes.len() - front.written;
                            if n < left {
                                front.written += n;
                                break;
                            }
                            n -= left;
                            if let Some(done) = st.backlog.pop_front() {
                                let _ = done.done.send(true);
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        st.writer_running = false;
                        drop(st);
                        self.mark_broken();
                        return;
                    }
                }
            }
        }
    }

    /// Peers never write: a readable connection has been closed (or reset)
    /// by the peer. Marks it broken then, or when the pool closes.
    async fn watch(self: Arc<Self>, address: String, conns: std::sync::Weak<Mutex<Conns>>) {
        self.clone().watch_until_closed().await;
        if let Some(conns) = conns.upgrade() {
            let mut conns = lock(&conns);
            if conns.get(&address).is_some_and(|c| Arc::ptr_eq(c, &self)) {
                conns.remove(&address);
            }
        }
    }

    async fn watch_until_closed(self: Arc<Self>) {
        let mut closing = self.closing.subscribe();
        let mut buf = [0u8; 256];
        loop {
            tokio::select! {
                ready = self.stream.readable() => {
                    if ready.is_err() {
                        break;
                    }
                    match self.stream.try_read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => {} // a peer that talks back: ignored
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => break,
                    }
                }
                _ = closing.changed() => {
                    if *closing.borrow() {
                        return;
                    }
                }
            }
        }
        self.mark_broken();
    }

    /// Waits (up to `limit`) until every frame started is written.
    async fn drain(&self, limit: Duration) {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            {
                let st = lock(&self.state);
                if st.backlog.is_empty() || st.broken {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Whether the peer has closed (or reset) the connection, as far as this
/// host knows now. A frame written after that would be lost without an
/// error; this looks without waiting for the runtime to notice.
fn closed_by_peer(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: a one-byte peek into a local buffer on a socket we own.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => true,
        n if n > 0 => false, // a peer that talks back: still open
        _ => !matches!(
            std::io::Error::last_os_error().kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ),
    }
}

type Conns = HashMap<String, Arc<PeerConn>>;

/// Lookups remembered at most: a long-running process that talked to very
/// many short-lived peers starts over rather than grow without bound.
const MAX_REMEMBERED: usize = 100_000;

/// Connections to peers, one per address, shared by a factory's clients.
pub struct PeerPool {
    /// Shared with each connection's watcher, which removes its connection
    /// when the peer closes it (so no socket of a gone peer stays open).
    conns: Arc<Mutex<Conns>>,
    /// One connect at a time per address.
    connecting: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Addresses a connect failed to lately.
    refused: Mutex<HashMap<String, Instant>>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for PeerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerPool")
            .field("connections", &lock(&self.conns).len())
            .finish()
    }
}

/// `host:port` as academy-py writes it (IPv4 or a name, no brackets).
fn parse_address(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.trim().parse::<u16>().ok()?;
    (!host.is_empty() && port != 0).then_some((host, port))
}

impl PeerPool {
    pub fn new(connect_timeout: Duration) -> Self {
        PeerPool {
            conns: Arc::new(Mutex::new(HashMap::new())),
            connecting: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            connect_timeout: connect_timeout.min(MAX_CONNECT),
        }
    }

    /// Sends a frame to the peer at `address`.
    pub async fn send(&self, address: &str, bytes: Vec<u8>) -> std::result::Result<(), NotSent> {
        let conn = self.connection(address).await?;
        let sent = conn.send(bytes).await;
        if sent.is_err() {
            self.forget(address, &conn);
        }
        sent
    }

    fn forget(&self, address: &str, conn: &Arc<PeerConn>) {
        let mut conns = lock(&self.conns);
        if conns.get(address).is_some_and(|c| Arc::ptr_eq(c, conn)) {
            conns.remove(address);
        }
    }

    fn live(&self, address: &str) -> Option<Arc<PeerConn>> {
        let conn = lock(&self.conns).get(address).cloned()?;
        if conn.is_broken() {
            self.forget(address, &conn);
            return None;
        }
        Some(conn)
    }

    async fn connection(&self, address: &str) -> std::result::Result<Arc<PeerConn>, NotSent> {
        if let Some(conn) = self.live(address) {
            return Ok(conn);
        }
        if let Some(at) = lock(&self.refused).get(address) {
            if at.elapsed() < CONNECT_BACKOFF {
                return Err(NotSent(format!("{address} refused connections lately")));
            }
        }
        let gate = lock(&self.connecting)
            .entry(address.to_owned())
            .or_default()
            .clone();
        let _one_at_a_time = gate.lock().await;
        if let Some(conn) = self.live(address) {
            return Ok(conn);
        }
        let (host, port) = parse_address(address)
            .ok_or_else(|| NotSent(format!("{address:?} is not a host:port address")))?;
        let connected =
            tokio::time::timeout(self.connect_timeout, TcpStream::connect((host, port)))
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                });
        let stream = match connected {
            Ok(s) => s,
            Err(e) => {
                let mut refused = lock(&self.refused);
                refused.retain(|_, at| at.elapsed() < CONNECT_BACKOFF);
                refused.insert(address.to_owned(), Instant::now());
                return Err(NotSent(format!("cannot connect to {address}: {e}")));
            }
        };
        lock(&self.refused).remove(address);
        {
            let mut gates = lock(&self.connecting);
            if gates.len() > MAX_REMEMBERED {
                gates.retain(|_, g| Arc::strong_count(g) > 1);
            }
        }
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(PeerConn {
            stream,
            state: Mutex::new(WriteState::default()),
            closing: watch::channel(false).0,
        });
        let watcher = conn
            .clone()
            .watch(address.to_owned(), Arc::downgrade(&self.conns));
        match runtime::handle() {
            Ok(h) => drop(h.spawn(watcher)),
            Err(_) => drop(tokio::spawn(watcher)),
        }
        lock(&self.conns).insert(address.to_owned(), conn.clone());
        Ok(conn)
    }

    /// Finishes the frames started (up to `limit`), then closes every
    /// connection.
    pub async fn close(&self, limit: Duration) {
        let conns: Vec<Arc<PeerConn>> = lock(&self.conns).drain().map(|(_, c)| c).collect();
        for conn in &conns {
            conn.drain(limit).await;
            conn.closing.send_replace(true);
        }
    }
}

impl Drop for PeerPool {
    fn drop(&mut self) {
        for (_, conn) in lock(&self.conns).drain() {
            // The writer task, if any, still finishes its frames.
            conn.closing.send_replace(true);
        }
    }
}

// ---- receiving ----

/// Reads frames off one connection; keeps a partial frame across reads, so
/// that waiting for the next frame can be given up without losing bytes.
pub(crate) struct FrameReader {
    buf: BytesMut,
}

/// What reading a connection gave.
pub(crate) enum Read {
    Frame(Vec<u8>),
    /// The peer closed the connection (or sent an empty frame, which
    /// academy-py's receiver also takes as the end).
    End,
}

impl FrameReader {
    pub(crate) fn new() -> Self {
        FrameReader {
            buf: BytesMut::with_capacity(64 * 1024),
        }
    }

    /// Adds bytes as if read from the connection (for the fuzz target).
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// A whole frame from the bytes read so far.
    pub(crate) fn parse(&mut self) -> io::Result<Option<Read>> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len == 0 {
            return Ok(Some(Read::End));
        }
        if len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a frame of {len} bytes is larger than the limit ({MAX_FRAME})"),
            ));
        }
        if self.buf.len() < 4 + len {
            // Room for the rest, a bounded step at a time.
            let want = (4 + len - self.buf.len()).min(16 << 20);
            self.buf.reserve(want);
            return Ok(None);
        }
        self.buf.advance(4);
        Ok(Some(Read::Frame(self.buf.split_to(len).to_vec())))
    }

    /// The next frame. Cancel-safe: bytes read stay in the buffer.
    async fn next(&mut self, stream: &mut TcpStream) -> io::Result<Read> {
        loop {
            if let Some(read) = self.parse()? {
                return Ok(read);
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(64 * 1024);
            }
            if stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(Read::End);
            }
        }
    }
}

/// A mailbox's TCP listener.
pub struct PeerListener {
    pub local: SocketAddr,
    stop: watch::Sender<bool>,
    done: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for PeerListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerListener")
            .field("local", &self.local)
            .finish()
    }
}

impl PeerListener {
    /// Listens on `listener`; every frame's text goes to `tx` (frames that
    /// are not UTF-8 are dropped).
    pub fn start(
        listener: TcpListener,
        tx: mpsc::UnboundedSender<crate::error::Result<String>>,
    ) -> Result<Self> {
        let local = listener
            .local_addr()
            .map_err(|e| Error::internal(format!("listener without an address: {e}")))?;
        let (stop, stop_rx) = watch::channel(false);
        let task = runtime::handle()?.spawn(accept_loop(listener, tx, stop_rx));
        Ok(PeerListener {
            local,
            stop,
            done: Mutex::new(Some(task)),
        })
    }

    /// Stops accepting and reading: connections are read on while frames
    /// keep coming (see [`GRACE`]), then closed. Waits up to `limit`.
    pub async fn stop(&self, limit: Duration) {
        self.stop.send_replace(true);
        let task = lock(&self.done).take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(limit, task).await;
        }
    }
}

impl Drop for PeerListener {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    tx: mpsc::UnboundedSender<crate::error::Result<String>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut readers = tokio::task::JoinSet::new();
    let mut until: Option<tokio::time::Instant> = None;
    loop {
        let deadline = async {
            match until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    readers.spawn(read_connection(stream, tx.clone(), stop.clone()));
                }
            }
            changed = stop.changed(), if until.is_none() => {
                // Accept a little longer: a peer that just read the address
                // may be connecting now.
                let _ = changed;
                until = Some(tokio::time::Instant::now() + GRACE);
            }
            _ = deadline => break,
        }
    }
    drop(listener);
    while readers.join_next().await.is_some() {}
}

async fn read_connection(
    mut stream: TcpStream,
    tx: mpsc::UnboundedSender<crate::error::Result<String>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut reader = FrameReader::new();
    let mut stopping = *stop.borrow();
    loop {
        let read = if stopping {
            match tokio::time::timeout(GRACE, reader.next(&mut stream)).await {
                Ok(r) => r,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                r = reader.next(&mut stream) => r,
                _ = stop.changed() => {
                    stopping = true;
                    continue;
                }
            }
        };
        match read {
            Ok(Read::Frame(bytes)) => {
                if let Ok(text) = String::from_utf8(bytes) {
                    if tx.send(Ok(text)).is_err() {
                        return;
                    }
                }
            }
            Ok(Read::End) | Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_length_prefixed() {
        assert_eq!(frame("{}").unwrap(), b"\x00\x00\x00\x02{}");
    }

    #[test]
    fn parses_frames_from_any_split() {
        let mut all = Vec::new();
        for m in ["{\"a\":1}", "x", &"y".repeat(70_000)] {
            all.extend(frame(m).unwrap());
        }
        for cut in [1, 2, 3, 5, 9, 4096, 70_000] {
            let mut r = FrameReader::new();
            let mut got = Vec::new();
            for chunk in all.chunks(cut) {
                r.buf.extend_from_slice(chunk);
                while let Some(Read::Frame(f)) = r.parse().unwrap() {
                    got.push(f.len());
                }
            }
            assert_eq!(got, vec![7, 1, 70_000], "cut {cut}");
        }
        let mut r = FrameReader::new();
        r.buf.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(r.parse().is_err());
    }

    #[test]
    fn reads_addresses_as_academy_py_writes_them() {
        assert_eq!(parse_address("127.0.0.1:33263"), Some(("127.0.0.1", 33263)));
        assert_eq!(parse_address("host:1"), Some(("host", 1)));
        assert_eq!(parse_address("nope"), None);
        assert_eq!(parse_address(":1"), None);
        assert_eq!(parse_address("h:0"), None);
    }
}
