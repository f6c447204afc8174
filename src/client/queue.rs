//! Completion queues: finished work as events, and a file descriptor that
//! is readable while events wait (DESIGN 2b; gRPC's completion queues,
//! librdkafka's queue events).
//!
//! Why: a program with its own event loop (epoll, libuv, Go's netpoller,
//! Julia's, Python's asyncio) keeps thousands of calls in flight from one
//! thread and must never have its code run on a library thread. The
//! library's runtime only *posts* events here (a push and, when the queue
//! was empty, one write to the fd); the program takes them on its own
//! thread, when it likes, with [`Queue::poll`].
//!
//! The fd follows the queue exactly: readable while the queue holds an
//! event, not readable once it is empty (so a level-triggered poller never
//! spins, and an edge-triggered one sees an edge whenever an empty queue
//! gets an event). Each event goes to exactly one [`Queue::poll`], also
//! with many threads polling; events come out in the order they were
//! posted.
//!
//! A queue is shared by reference counting: clients hold clones while they
//! may post to it. [`Queue::close`] (the program frees its handle) drops
//! the events still queued, closes the fd, and makes every later post a
//! no-op, whoever still holds a clone; a dropped action request is
//! answered with `ActionCancelled` so that its caller does not wait.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::client::serve::Reply;
use crate::error::{Error, Result, Status};
use crate::fork::ProcessBound;
use crate::runtime;
use crate::wire::message::ActionCall;

/// What a call made without a thread ended with.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutput {
    /// The result JSON (an action) or the response message JSON (a request).
    pub json: Option<String>,
    /// The round trip (a ping).
    pub rtt: Option<Duration>,
}

/// An action request handed to the program by
/// [`crate::client::serve_queue::serve_queue`].
#[derive(Debug)]
pub struct ServedRequest {
    /// The request message as it arrived.
    pub request_json: String,
    pub call: ActionCall,
    reply: Option<Reply>,
}

impl ServedRequest {
    pub fn new(request_json: String, call: ActionCall, reply: Reply) -> Self {
        ServedRequest {
            request_json,
            call,
            reply: Some(reply),
        }
    }

    /// The reply, now the program's to complete (once).
    pub fn take_reply(&mut self) -> Option<Reply> {
        self.reply.take()
    }
}

impl Drop for ServedRequest {
    /// Never reached the program (its queue was freed): the caller gets
    /// `ActionCancelled` instead of waiting.
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            reply.abandon();
        }
    }
}

/// What happened.
#[derive(Debug)]
pub enum EventBody {
    /// A call made without a thread ended (exactly one per started call).
    Call(Result<CallOutput>),
    /// A message for a listening client ([`crate::Client::listen`]).
    Message(String),
    /// An action request for an agent served from the queue.
    Request(ServedRequest),
    /// A listen or a serving ended (the last event with its token, calls
    /// aside): `Ok` after a shutdown request or a stop, else why.
    Ended(Result<()>),
}

/// One finished piece of work, with the token the program gave.
#[derive(Debug)]
pub struct Event {
    pub token: u64,
    pub body: EventBody,
}

/// A completion queue. Clones share the queue.
#[derive(Debug, Clone)]
pub struct Queue {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes threads blocked in [`Queue::poll`].
    posted: Condvar,
    bound: ProcessBound,
}

#[derive(Debug)]
struct State {
    events: VecDeque<Event>,
    /// `None` once closed: posts are dropped and polls answer `Closed`.
    wakeup: Option<Wakeup>,
    /// Threads blocked in [`Queue::poll`].
    sleepers: usize,
}

impl Queue {
    /// A new, empty queue with its fd.
    pub fn new() -> Result<Queue> {
        let wakeup = Wakeup::new()?;
        Ok(Queue {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    events: VecDeque::new(),
                    wakeup: Some(wakeup),
                    sleepers: 0,
                }),
                posted: Condvar::new(),
                bound: ProcessBound::default(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Closed` in a forked child, or once closed.
    pub fn check(&self) -> Result<()> {
        self.shared.bound.check("queue")?;
        if self.lock().wakeup.is_none() {
            return Err(closed());
        }
        Ok(())
    }

    /// Whether this process made the queue (false in a forked child).
    pub fn in_this_process(&self) -> bool {
        self.shared.bound.check("queue").is_ok()
    }

    /// The fd that is readable while events wait (valid until
    /// [`close`](Self::close)).
    pub fn fd(&self) -> Result<i32> {
        self.shared.bound.check("queue")?;
        self.lock()
            .wakeup
            .as_ref()
            .map(Wakeup::fd)
            .ok_or_else(closed)
    }

    /// Adds an event; dropped if the queue was closed. Never blocks for
    /// long (a lock and, when the queue was empty, one write to the fd).
    pub fn post(&self, event: Event) {
        let mut state = self.lock();
        let st = &mut *state;
        let Some(wakeup) = st.wakeup.as_ref() else {
            drop(state);
            drop(event); // after the lock: a dropped request answers
            return;
        };
        if st.events.is_empty() {
            wakeup.raise();
        }
        st.events.push_back(event);
        if st.sleepers > 0 {
            self.shared.posted.notify_one();
        }
    }

    /// Takes the oldest event, waiting up to `timeout` (`None`: without a
    /// limit; zero: not at all). `Timeout` if none came, `Closed` if the
    /// queue was closed (or this is a forked child). A library thread may
    /// only take what is there (it would stall the thread that posts).
    pub fn poll(&self, timeout: Option<Duration>) -> Result<Event> {
        self.shared.bound.check("queue")?;
        if timeout != Some(Duration::ZERO) {
            runtime::may_wait()?;
            if runtime::on_library_thread() {
                return Err(Error::invalid(
                    "a library thread (a callback) cannot wait on a queue; poll it with timeout 0",
                ));
            }
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut state = self.lock();
        loop {
            let st = &mut *state;
            let Some(wakeup) = st.wakeup.as_ref() else {
                return Err(closed());
            };
            if let Some(event) = st.events.pop_front() {
                if st.events.is_empty() {
                    wakeup.lower();
                } else if st.sleepers > 0 {
                    // Another sleeper may take the next one.
                    self.shared.posted.notify_one();
                }
                return Ok(event);
            }
            let wait = match (timeout, deadline) {
                (None, _) | (Some(_), None) => None,
                (Some(_), Some(deadline)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::timeout(format!(
                            "no event within {:.3} s",
                            timeout.unwrap_or_default().as_secs_f64()
                        )));
                    }
                    Some(left)
                }
            };
            state.sleepers += 1;
            state = match wait {
                None => self
                    .shared
                    .posted
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(left) => {
                    self.shared
                        .posted
                        .wait_timeout(state, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            state.sleepers -= 1;
        }
    }

    /// Events waiting now.
    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The program is done with the queue: drops the events still in it,
    /// closes the fd, wakes blocked polls (they answer `Closed`), and
    /// makes later posts no-ops. Clients that still hold the queue keep
    /// working; their events are dropped.
    pub fn close(&self) {
        let (events, wakeup) = {
            let mut state = self.lock();
            (std::mem::take(&mut state.events), state.wakeup.take())
        };
        self.shared.posted.notify_all();
        drop(wakeup);
        drop(events);
    }

    /// A target for one call made without a thread: its outcome becomes a
    /// `Call` event with `token`.
    pub fn completion(&self, token: u64) -> Completion {
        Completion {
            queue: self.clone(),
            token,
        }
    }
}

fn closed() -> Error {
    Error::new(Status::Closed, "the queue was freed")
}

/// Where one call made without a thread ends: a `Call` event on a queue.
#[derive(Debug)]
pub struct Completion {
    queue: Queue,
    token: u64,
}

impl Completion {
    /// Posts the outcome.
    pub fn finish(self, outcome: Result<CallOutput>) {
        self.queue.post(Event {
            token: self.token,
            body: EventBody::Call(outcome),
        });
    }

    /// The queue this completion posts to.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }
}

/// The fd side of a queue: an eventfd (a pipe where there is none) whose
/// counter is 1 while the queue holds events and 0 while it is empty.
/// Only touched under the queue's lock, so it follows the queue exactly.
#[derive(Debug)]
struct Wakeup {
    read: std::os::fd::OwnedFd,
    #[cfg(not(target_os = "linux"))]
    write: std::os::fd::OwnedFd,
}

impl Wakeup {
    #[cfg(target_os = "linux")]
    fn new() -> Result<Wakeup> {
        use std::os::fd::FromRawFd;
        // SAFETY: eventfd returns a new fd that we own, or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(os_error("eventfd"));
        }
        // SAFETY: fd is new and ours.
        Ok(Wakeup {
            read: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn new() -> Result<Wakeup> {
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: pipe fills two new fds that we own.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(os_error("pipe"));
        }
        for fd in fds {
            // SAFETY: plain fcntl calls on fds we own.
            unsafe {
                libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        // SAFETY: both fds are new and ours.
        Ok(unsafe {
            Wakeup {
                read: std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                write: std::os::fd::OwnedFd::from_raw_fd(fds[1]),
            }
        })
    }

    fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.read.as_raw_fd()
    }

    /// Makes the fd readable.
    fn raise(&self) {
        use std::os::fd::AsRawFd;
        #[cfg(target_os = "linux")]
        let fd = self.read.as_raw_fd();
        #[cfg(not(target_os = "linux"))]
        let fd = self.write.as_raw_fd();
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an fd we own. It only
        // fails if the counter would overflow, which 0/1 never does.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }

    /// Makes the fd not readable.
    fn lower(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: reads into a live buffer from a non-blocking fd we own.
        unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) };
    }
}

fn os_error(what: &str) -> Error {
    Error::internal(format!(
        "cannot make the queue's fd ({what}): {}",
        std::io::Error::last_os_error()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(q: &Queue) -> bool {
        let mut p = libc::pollfd {
            fd: q.fd().unwrap(),
            events: libc::POLLIN,
            revents: 0,
        };
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    fn message(token: u64) -> Event {
        Event {
            token,
            body: EventBody::Message(format!("m{token}")),
        }
    }

    #[test]
    fn the_fd_is_readable_exactly_while_events_wait() {
        let q = Queue::new().unwrap();
        assert!(!readable(&q));
        q.post(message(1));
        q.post(message(2));
        assert!(readable(&q));
        assert_eq!(q.poll(Some(Duration::ZERO)).unwrap().token, 1);
        assert!(readable(&q), "one event still waits");
        assert_eq!(q.poll(None).unwrap().token, 2);
        assert!(!readable(&q));
        let err = q.poll(Some(Duration::ZERO)).unwrap_err();
        assert_eq!(err.status, Status::Timeout);
    }

    #[test]
    fn a_blocked_poll_wakes_for_a_post_from_another_thread() {
        let q = Queue::new().unwrap();
        let poster = q.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            poster.post(message(7));
        });
        let start = Instant::now();
        assert_eq!(q.poll(Some(Duration::from_secs(10))).unwrap().token, 7);
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
        let start = Instant::now();
        let err = q.poll(Some(Duration::from_millis(100))).unwrap_err();
        assert_eq!(err.status, Status::Timeout);
        assert!(start.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn many_pollers_take_each_event_once() {
        let q = Queue::new().unwrap();
        let pollers: Vec<_> = (0..4)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Ok(e) = q.poll(Some(Duration::from_millis(300))) {
                        got.push(e.token);
                    }
                    got
                })
            })
            .collect();
        for t in 0..10_000 {
            q.post(message(t));
        }
        let mut all: Vec<u64> = pollers
            .into_iter()
            .flat_map(|p| p.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn a_closed_queue_drops_posts_and_wakes_pollers_with_closed() {
        let q = Queue::new().unwrap();
        q.post(message(1));
        let poller = q.clone();
        let t = std::thread::spawn(move || {
            // Takes the one event, then sleeps until the close.
            let first = poller.poll(None).map(|e| e.token);
            (first, poller.poll(None).map(|e| e.token))
        });
        std::thread::sleep(Duration::from_millis(50));
        q.close();
        let (first, second) = t.join().unwrap();
        assert_eq!(first.unwrap(), 1);
        assert_eq!(second.unwrap_err().status, Status::Closed);
        q.post(message(2)); // no crash, no event
        assert_eq!(q.len(), 0);
        assert_eq!(q.fd().unwrap_err().status, Status::Closed);
        assert_eq!(q.check().unwrap_err().status, Status::Closed);
    }
}
