//! Response bodies: a fixed buffer, or a server-sent-event stream of a
//! mailbox (`GET /mailbox/listen`).
//!
//! The listen stream is a body that takes a message off the queue only when
//! hyper asks for the next frame. hyper polls the connection's read side
//! while it waits on the body and drops the body as soon as the client has
//! gone (EOF or reset), so a message that arrives after a listener
//! disconnected stays queued for the next listener. academy-py's handler
//! instead takes it off the queue and writes it to the dead stream, which
//! loses it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::futures::OwnedNotified;
use tokio::time::Sleep;

use crate::server::backend::memory::{Backend, Batch, Mailbox};
use crate::server::backend::model::{Received, Shutdown, StoredQueues};
use crate::server::listen_stop::ListenStop;
use crate::server::metrics::{Metrics, OpenStream};
use crate::wire::ids::EntityId;

/// aiohttp-sse's keep-alive comment interval.
pub(crate) const PING_INTERVAL: Duration = Duration::from_secs(15);
const PING: &[u8] = b": ping\r\n\r\n";

pub(crate) enum ServerBody {
    Full(Option<Bytes>),
    Sse(Box<SseStream>),
    RedisSse(Box<RedisSseStream>),
}

impl ServerBody {
    pub(crate) fn empty() -> Self {
        ServerBody::Full(None)
    }

    pub(crate) fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        if data.is_empty() {
            ServerBody::Full(None)
        } else {
            ServerBody::Full(Some(data))
        }
    }
}

impl Body for ServerBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ServerBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ServerBody::Sse(stream) => stream.poll_next(cx).map(|o| o.map(|d| Ok(Frame::data(d)))),
            ServerBody::RedisSse(stream) => {
                stream.poll_next(cx).map(|o| o.map(|d| Ok(Frame::data(d))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ServerBody::Full(data) => data.is_none(),
            ServerBody::Sse(stream) => stream.life.done,
            ServerBody::RedisSse(stream) => stream.life.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ServerBody::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            ServerBody::Full(None) => SizeHint::with_exact(0),
            ServerBody::Sse(_) | ServerBody::RedisSse(_) => SizeHint::default(),
        }
    }
}

/// The socket of the connection a request came on, to see whether the
/// client is still there before a message is taken off its queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerSocket(pub(crate) std::os::fd::RawFd);

impl PeerSocket {
    /// Whether the client closed its side: a peek reads end-of-file (or the
    /// socket is in error). A message written now would be lost, so the
    /// stream ends and the message stays queued for the next listener.
    fn closed(self) -> bool {
        let mut byte = 0u8;
        // SAFETY: the connection owns the fd and outlives its response body;
        // MSG_PEEK leaves any data in place, MSG_DONTWAIT never blocks.
        let n = unsafe {
            libc::recv(
                self.0,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n == 0 {
            return true;
        }
        n < 0 && {
            let err = std::io::Error::last_os_error().raw_os_error();
            !matches!(err, Some(libc::EAGAIN) | Some(libc::EINTR))
        }
    }
}

/// How much of a mailbox's backlog one write to a listen stream carries:
/// under load, one write and one chunk for many messages instead of one each.
const BATCH_BYTES: usize = 64 * 1024;

/// Server-sent events carrying messages, in one buffer.
fn data_frames<'a, I>(messages: I) -> Bytes
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: Clone,
{
    let messages = messages.into_iter();
    let size = messages.clone().map(|m| m.len() + 10).sum();
    let mut frames = Vec::with_capacity(size);
    for m in messages {
        frames.extend_from_slice(b"data: ");
        frames.extend_from_slice(m);
        frames.extend_from_slice(b"\r\n\r\n");
    }
    Bytes::from(frames)
}

/// What both listen streams keep besides their source of messages: the
/// client's socket, the keep-alive timer, the two ways they are told to end
/// (the client's stop, the server's shutdown) and their place in the
/// metrics.
struct StreamLife {
    peer: Option<PeerSocket>,
    ping: Pin<Box<Sleep>>,
    shutdown: Pin<Box<OwnedNotified>>,
    /// Set when the client asks for the stream to end.
    stop: ListenStop,
    done: bool,
    open: OpenStream,
}

impl StreamLife {
    fn new(
        shutdown: &Shutdown,
        metrics: Option<&Arc<Metrics>>,
        peer: Option<PeerSocket>,
        stop: ListenStop,
    ) -> Self {
        let mut notified = Box::pin(shutdown.notify.clone().notified_owned());
        notified.as_mut().enable();
        StreamLife {
            peer,
            ping: Box::pin(tokio::time::sleep(PING_INTERVAL)),
            shutdown: notified,
            stop,
            done: false,
            open: OpenStream::new(metrics),
        }
    }

    /// Whether the client closed its side (see [`PeerSocket::closed`]).
    fn client_gone(&self) -> bool {
        self.peer.is_some_and(PeerSocket::closed)
    }

    /// Whether the server is stopping (`shutdown` is the backend's).
    fn server_stopping(&mut self, shutdown: &Shutdown, cx: &mut Context<'_>) -> bool {
        shutdown.is_set() || self.shutdown.as_mut().poll(cx).is_ready()
    }

    /// The end of the stream.
    fn end(&mut self) -> Poll<Option<Bytes>> {
        self.done = true;
        Poll::Ready(None)
    }

    /// The keep-alive comment, when its timer is due (then re-armed);
    /// pending otherwise.
    fn ping(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.ping.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let next = tokio::time::Instant::now() + PING_INTERVAL;
        self.ping.as_mut().reset(next);
        // Register the new deadline with the waker.
        let _ = self.ping.as_mut().poll(cx);
        Poll::Ready(Some(Bytes::from_static(PING)))
    }
}

pub(crate) struct SseStream {
    backend: Arc<Backend>,
    mailbox: Arc<Mailbox>,
    timeout: Duration,
    idle: Pin<Box<Sleep>>,
    notified: Option<Pin<Box<OwnedNotified>>>,
    life: StreamLife,
}

impl SseStream {
    /// A stream that ends after `timeout` without a message (academy-py
    /// ends it when its `get` times out), when the mailbox is terminated,
    /// when its client asks (`stop`) or when the server stops.
    pub(crate) fn new(
        backend: Arc<Backend>,
        mailbox: Arc<Mailbox>,
        timeout: Duration,
        peer: Option<PeerSocket>,
        stop: ListenStop,
    ) -> Self {
        SseStream {
            life: StreamLife::new(&backend.shutdown, backend.metrics.as_ref(), peer, stop),
            backend,
            mailbox,
            timeout,
            idle: Box::pin(tokio::time::sleep(timeout)),
            notified: None,
        }
    }

    fn finish(&mut self) -> Poll<Option<Bytes>> {
        self.notified = None;
        self.life.end()
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.life.done {
            return Poll::Ready(None);
        }
        loop {
            // Asked to end: nothing more is taken off the queue.
            if self.life.stop.poll_stopped(cx) {
                return self.finish();
            }
            // Register for a wake-up before looking at the queue, so that a
            // message put in between is never missed.
            let notified = self.notified.get_or_insert_with(|| {
                let mut n = Box::pin(self.mailbox.notify.clone().notified_owned());
                n.as_mut().enable();
                n
            });
            let life = &self.life;
            let Some(batch) = self.mailbox.take_batch(BATCH_BYTES, || !life.client_gone()) else {
                return self.finish(); // the listener went away
            };
            match batch {
                Batch::Messages(messages) => {
                    // Dropping an unused notification passes it on to the
                    // next waiter of the mailbox.
                    self.notified = None;
                    let deadline = tokio::time::Instant::now() + self.timeout;
                    self.idle.as_mut().reset(deadline);
                    self.life.open.delivered(messages.len());
                    return Poll::Ready(Some(data_frames(messages.iter().map(|m| m.as_bytes()))));
                }
                Batch::Terminated => return self.finish(),
                Batch::Empty => {}
            }
            if notified.as_mut().poll(cx).is_ready() {
                self.notified = None;
                continue;
            }
            break;
        }
        if self.life.server_stopping(&self.backend.shutdown, cx) {
            return self.finish();
        }
        if self.idle.as_mut().poll(cx).is_ready() {
            return self.finish();
        }
        self.life.ping(cx)
    }
}

/// The listen stream of a mailbox in Redis (one, or a cluster). Each
/// message is taken by a background receive ([`StoredQueues::receive`]);
/// when this stream is
/// dropped (the client went away) while a receive is under way, the receive
/// puts what it took back at the head of the queue.
pub(crate) struct RedisSseStream {
    backend: Arc<dyn StoredQueues>,
    uid: EntityId,
    timeout: Duration,
    receiving: Option<tokio::sync::oneshot::Receiver<Received>>,
    life: StreamLife,
}

impl RedisSseStream {
    /// A stream that ends after `timeout` without a message, when the
    /// mailbox is terminated, when its client asks (`stop`) or when the
    /// server stops.
    pub(crate) fn new(
        backend: Arc<dyn StoredQueues>,
        uid: EntityId,
        timeout: Duration,
        peer: Option<PeerSocket>,
        stop: ListenStop,
    ) -> Self {
        RedisSseStream {
            life: StreamLife::new(backend.shutdown_signal(), backend.metrics(), peer, stop),
            backend,
            uid,
            timeout,
            receiving: None,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.life.done {
            return Poll::Ready(None);
        }
        // Asked to end: no new receive starts; one under way still hands
        // over what it took (the client reads the stream to its end), or
        // puts it back when dropped below.
        let stopped = self.life.stop.poll_stopped(cx);
        if stopped && self.receiving.is_none() {
            return self.life.end();
        }
        let receiving = self.receiving.get_or_insert_with(|| {
            let deadline = tokio::time::Instant::now() + self.timeout;
            self.backend.clone().receive(&self.uid, deadline)
        });
        if let Poll::Ready(received) = Pin::new(receiving).poll(cx) {
            self.receiving = None;
            // Anything but a message (timeout, terminated, stopping, the
            // receive task lost) ends the stream.
            if let Ok(Ok(message)) = received {
                if !self.life.client_gone() {
                    self.life.open.delivered(1);
                    return Poll::Ready(Some(data_frames([message.as_slice()])));
                }
                // Too late to deliver: back to the queue.
                self.backend.clone().unpop_later(&self.uid, message);
            }
            return self.life.end();
        }
        if stopped
            || self
                .life
                .server_stopping(self.backend.shutdown_signal(), cx)
        {
            // Dropping the receive makes it put back what it takes.
            self.receiving = None;
            return self.life.end();
        }
        self.life.ping(cx)
    }
}
