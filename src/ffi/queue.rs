//! `academy_queue` and `academy_event`: completion queues for C.

use std::ffi::{c_char, c_int, CString};

use super::handle::{self, Handle, Registry};
use super::reply::academy_reply;
use super::{academy_status, arg_timeout, boundary, boundary_or, c_text, check_out, write_out};
use crate::client::queue::{CallOutput, Event, EventBody, Queue};
use crate::error::{Error, Result};

/// A completion queue (opaque): holds finished work as events, and has a
/// file descriptor that is readable while events wait. Thread-safe.
/// @ingroup queue
pub struct academy_queue {
    pub(crate) queue: Queue,
}

static QUEUES: Registry<academy_queue> = Registry::new();

impl Handle for academy_queue {
    const NAME: &'static str = "queue";
    const TAG: usize = 5;
    fn registry() -> &'static Registry<Self> {
        &QUEUES
    }
}

/// What an event reports.
/// @ingroup queue
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum academy_event_kind {
    /// An `_async` request, action or ping ended.
    ACADEMY_EVENT_CALL = 1,
    /// A message for a client given to `academy_client_listen`.
    ACADEMY_EVENT_MESSAGE = 2,
    /// An action request for an agent served with
    /// `academy_agent_serve_queue`.
    ACADEMY_EVENT_REQUEST = 3,
    /// A listen (`academy_client_listen`) or a serving
    /// (`academy_agent_serve_queue`) ended: the last event with its token
    /// (apart from CALL events). `status` says why: ACADEMY_OK after a
    /// shutdown request or `academy_agent_stop`; CLOSED after
    /// `academy_client_close`; MAILBOX_TERMINATED, BAD_ENTITY_ID,
    /// FORBIDDEN... when the mailbox went away; `error` has the text.
    ACADEMY_EVENT_ENDED = 4,
}

/// One event (read-only). The library allocates it and owns its strings;
/// the program frees it, strings and all, with `academy_event_free`.
/// Fields may be added at the end in later versions.
/// @ingroup queue
#[repr(C)]
#[derive(Debug)]
pub struct academy_event {
    /// What the event reports (programs should skip kinds they do not know).
    pub kind: academy_event_kind,
    /// The token given when the call, listen or serving started.
    pub token: u64,
    /// CALL: the outcome; ENDED: why it ended; MESSAGE and REQUEST:
    /// ACADEMY_OK.
    pub status: academy_status,
    /// CALL: the action's result JSON (action), the response message JSON
    /// (request), NULL (ping) or NULL on failure; MESSAGE: the message
    /// JSON; REQUEST: the request message JSON; ENDED: NULL.
    pub json: *const c_char,
    /// CALL and ENDED with status != ACADEMY_OK: the text
    /// `academy_last_error` would give (for REMOTE, the remote traceback);
    /// else NULL.
    pub error: *const c_char,
    /// CALL of a ping: the round trip in seconds; else 0.
    pub rtt_s: f64,
    /// REQUEST: the action's name; else NULL.
    pub action: *const c_char,
    /// REQUEST: the positional arguments (a JSON array of the argument
    /// tuple's items, in the JSON forms of Python values, whether they came
    /// as JSON or pickle); else NULL.
    pub args_json: *const c_char,
    /// REQUEST: the keyword arguments (a JSON object, in the same forms);
    /// else NULL.
    pub kwargs_json: *const c_char,
    /// REQUEST: complete it exactly once with `academy_reply_ok` or
    /// `academy_reply_error`, then or later, from any thread. It belongs to
    /// the program and stays valid until completed, whether or not the
    /// event was freed. Else NULL.
    pub reply: *mut academy_reply,
}

/// The allocation behind an `academy_event`: the event, then the strings
/// its pointers point into (the heap buffers of CStrings never move).
#[repr(C)]
struct OwnedEvent {
    event: academy_event,
    strings: Vec<CString>,
}

impl OwnedEvent {
    fn new(kind: academy_event_kind, token: u64) -> OwnedEvent {
        OwnedEvent {
            event: academy_event {
                kind,
                token,
                status: academy_status::ACADEMY_OK,
                json: std::ptr::null(),
                error: std::ptr::null(),
                rtt_s: 0.0,
                action: std::ptr::null(),
                args_json: std::ptr::null(),
                kwargs_json: std::ptr::null(),
                reply: std::ptr::null_mut(),
            },
            strings: Vec::new(),
        }
    }

    /// Keeps `text` for the event's life; returns its C pointer.
    fn keep(&mut self, text: &str) -> *const c_char {
        let c = c_text(text);
        let ptr = c.as_ptr();
        self.strings.push(c);
        ptr
    }

    fn failure(&mut self, error: &Error) {
        self.event.status = error.status.into();
        self.event.error = self.keep(&error.message);
    }

    fn from_event(event: Event) -> OwnedEvent {
        use academy_event_kind::*;
        match event.body {
            EventBody::Call(outcome) => {
                let mut owned = OwnedEvent::new(ACADEMY_EVENT_CALL, event.token);
                match outcome {
                    Ok(CallOutput { json, rtt }) => {
                        if let Some(json) = json {
                            owned.event.json = owned.keep(&json);
                        }
                        owned.event.rtt_s = rtt.map_or(0.0, |d| d.as_secs_f64());
                    }
                    Err(e) => owned.failure(&e),
                }
                owned
            }
            EventBody::Message(raw) => {
                let mut owned = OwnedEvent::new(ACADEMY_EVENT_MESSAGE, event.token);
                owned.event.json = owned.keep(&raw);
                owned
            }
            EventBody::Request(mut served) => {
                let mut owned = OwnedEvent::new(ACADEMY_EVENT_REQUEST, event.token);
                owned.event.json = owned.keep(&served.request_json);
                owned.event.action = owned.keep(&served.call.action);
                owned.event.args_json = owned.keep(&served.call.args_json);
                owned.event.kwargs_json = owned.keep(&served.call.kwargs_json);
                if let Some(reply) = served.take_reply() {
                    owned.event.reply = handle::new_handle(academy_reply { reply });
                }
                owned
            }
            EventBody::Ended(outcome) => {
                let mut owned = OwnedEvent::new(ACADEMY_EVENT_ENDED, event.token);
                if let Err(e) = outcome {
                    owned.failure(&e);
                }
                owned
            }
        }
    }
}

/// The queue behind a handle (see [`handle::get`]), open.
pub(crate) fn queue_arg(queue: *const academy_queue) -> Result<Queue> {
    let queue = handle::get(queue, "queue")?.queue.clone();
    queue.check()?;
    Ok(queue)
}

/// Makes a completion queue.
///
/// A queue may be shared by many clients, calls, listens and servings, and
/// polled by one thread or several.
///
/// @param[out] out_queue receives the queue on success (untouched on
///        failure); the program frees it with academy_queue_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL `out_queue`;
///         ACADEMY_ERR_INTERNAL when the system refused a file descriptor.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe.
/// @ingroup queue
#[no_mangle]
pub unsafe extern "C" fn academy_queue_new(out_queue: *mut *mut academy_queue) -> academy_status {
    boundary(|| {
        check_out(out_queue, "out_queue")?;
        let queue = Queue::new()?;
        write_out(out_queue, handle::new_handle(academy_queue { queue }));
        Ok(())
    })
}

/// Frees a queue, with the events still in it, and closes its fd.
///
/// An action request among the events freed is answered with
/// ActionCancelledError. Remove the fd from your poller first.
///
/// Freeing a queue that clients still use (calls in flight, a listen, a
/// serving) is safe: the library holds the queue internally by reference
/// count, and this drops only the program's reference. Their later events are
/// dropped: calls end unseen, and action requests are answered with
/// ActionCancelledError so that no caller waits; serving and listening go on
/// until stopped. Later calls with the handle answer ACADEMY_ERR_CLOSED. In a
/// child process after fork(), a queue made by the parent is only forgotten,
/// never touched.
///
/// @param queue the queue, owned by the program and given up here; NULL, or a
///        queue already freed, is a no-op.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe; a thread blocked in academy_queue_poll() on
/// the queue wakes with ACADEMY_ERR_CLOSED.
/// @ingroup queue
#[no_mangle]
pub unsafe extern "C" fn academy_queue_free(queue: *mut academy_queue) {
    boundary_or((), || {
        // A queue of the parent, in a forked child, is only forgotten.
        if let Some(owned) = handle::take(queue) {
            owned.queue.close();
        }
    })
}

/// The queue's file descriptor, readable (POLLIN) while at least one event
/// waits.
///
/// It is not readable while the queue is empty. Watch it with poll, epoll
/// (level- or edge-triggered), libuv, Go's netpoller (os.NewFile on a dup() of
/// it) or Julia's FileWatching.poll_fd, then take the events with
/// `academy_queue_poll(queue, 0, ...)` until it returns ACADEMY_ERR_TIMEOUT.
///
/// @param queue the queue; only read. Not NULL.
/// @param[out] out_fd receives the fd on success. It belongs to the queue
///        and is closed by academy_queue_free(): never read, write or close
///        it. Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument;
///         ACADEMY_ERR_CLOSED for a freed queue or one made before fork() (in
///         the child).
///
/// Blocks: no.
///
/// Thread-safety: thread-safe.
/// @ingroup queue
#[no_mangle]
pub unsafe extern "C" fn academy_queue_fd(
    queue: *const academy_queue,
    out_fd: *mut c_int,
) -> academy_status {
    boundary(|| {
        check_out(out_fd, "out_fd")?;
        let fd = queue_arg(queue)?.fd()?;
        write_out(out_fd, fd);
        Ok(())
    })
}

/// Takes the oldest event of the queue, waiting up to `timeout_s` seconds for
/// one.
///
/// Each event goes to exactly one caller, also when several threads poll one
/// queue; events come out in the order they were posted (the events of one
/// call, listen or serving are in order).
///
/// @param queue the queue. Not NULL.
/// @param timeout_s how long to wait: 0 does not wait; < 0 waits without a
///        limit. Not NaN.
/// @param[out] out_event receives the event on success; the program frees it
///        with academy_event_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_TIMEOUT when the queue is still empty at
///         the deadline; ACADEMY_ERR_CLOSED for a queue freed before or
///         during the wait, or made before fork() (in the child);
///         ACADEMY_ERR_INVALID_ARGUMENT for NULL arguments, a NaN timeout, or
///         a wait (`timeout_s` != 0) from a library thread (such as an
///         academy_client_send_async() callback).
///
/// Blocks: up to `timeout_s` (never with 0).
///
/// Thread-safety: thread-safe: any number of threads may poll one queue, each
/// event goes to one of them.
/// @ingroup queue
#[no_mangle]
pub unsafe extern "C" fn academy_queue_poll(
    queue: *mut academy_queue,
    timeout_s: f64,
    out_event: *mut *mut academy_event,
) -> academy_status {
    boundary(|| {
        check_out(out_event, "out_event")?;
        // Its own reference while it waits.
        let queue = queue_arg(queue)?;
        let timeout = arg_timeout(timeout_s)?;
        let event = queue.poll(timeout)?;
        let owned = Box::new(OwnedEvent::from_event(event));
        // The event is the first field of the #[repr(C)] allocation.
        write_out(out_event, Box::into_raw(owned).cast::<academy_event>());
        Ok(())
    })
}

/// Frees an event and its strings.
///
/// A REQUEST event's `reply` is not freed: it stays valid until completed.
///
/// @param event the event, owned by the program and given up here; NULL is a
///        no-op. Freeing an event twice is undefined behaviour (events are
///        plain memory, not checked handles).
///
/// Blocks: no.
///
/// Thread-safety: thread-safe: from any thread, once, and not while another
/// thread still reads the event.
/// @ingroup queue
#[no_mangle]
pub unsafe extern "C" fn academy_event_free(event: *mut academy_event) {
    boundary_or((), || {
        if !event.is_null() {
            drop(Box::from_raw(event.cast::<OwnedEvent>()));
        }
    })
}
