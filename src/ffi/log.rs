//! `academy_set_log_callback`: the library's log into the program's logger.

use std::ffi::{c_char, c_int, c_void, CString};

use tracing::level_filters::LevelFilter;
use tracing::Level;

use super::{academy_status, boundary, c_text};
use crate::error::Error;
use crate::logging;

/// Levels of the library's log lines, most severe first.
/// @ingroup basics
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum academy_log_level {
    /// Nothing (only as the level of `academy_set_log_callback`).
    ACADEMY_LOG_OFF = 0,
    /// Failures the library cannot recover from by itself.
    ACADEMY_LOG_ERROR = 1,
    /// Trouble it works around (slow Redis, refused requests of an exchange).
    ACADEMY_LOG_WARN = 2,
    /// The exchange's requests; rare events.
    ACADEMY_LOG_INFO = 3,
    /// Reconnects, retries with their back-off, why the fast path is off,
    /// fork detection, the exchange's sends.
    ACADEMY_LOG_DEBUG = 4,
    /// Everything, including the debug lines of the libraries libacademy
    /// uses (at the other levels only their warnings and errors come).
    ACADEMY_LOG_TRACE = 5,
}

/// Receives one log line: its level, its target (the part of the library
/// that logged, e.g. "academy::transport") and its message. Both strings
/// belong to the library and are valid only during the call. See
/// academy_set_log_callback() for the threads it runs on and what it may do.
/// @ingroup basics
pub type academy_log_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: academy_log_level,
        target: *const c_char,
        message: *const c_char,
    ),
>;

/// The caller's `user_data`, passed back untouched from any thread.
struct LogUserData(*mut c_void);
// SAFETY: the header documents that the callback is called from any thread
// with this pointer; making that safe is the caller's part of the contract.
unsafe impl Send for LogUserData {}
unsafe impl Sync for LogUserData {}

impl LogUserData {
    /// The pointer (a method, so that closures capture the whole wrapper).
    fn ptr(&self) -> *mut c_void {
        self.0
    }
}

fn filter_of(level: c_int) -> Option<LevelFilter> {
    Some(match level {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        5 => LevelFilter::TRACE,
        _ => return None,
    })
}

fn c_level(level: Level) -> academy_log_level {
    match level {
        Level::ERROR => academy_log_level::ACADEMY_LOG_ERROR,
        Level::WARN => academy_log_level::ACADEMY_LOG_WARN,
        Level::INFO => academy_log_level::ACADEMY_LOG_INFO,
        Level::DEBUG => academy_log_level::ACADEMY_LOG_DEBUG,
        Level::TRACE => academy_log_level::ACADEMY_LOG_TRACE,
    }
}

/// Routes libacademy's log lines to a callback of the program.
///
/// Lines at `level` or more severe go to
/// `callback(user_data, level, target, message)`, replacing any callback set
/// before. A NULL `callback` or ACADEMY_LOG_OFF stops it. By default the
/// library logs nothing; setting the environment variable `ACADEMY_LOG`
/// (e.g. `ACADEMY_LOG=debug`, or `academy::transport=debug`) also writes
/// lines to stderr, whatever the callback.
///
/// The callback is called on the thread that logs: inside a libacademy call
/// on the caller's own thread, on the library's runtime threads
/// ("academy-rt", "academy-exchange"), or on threads serving an agent; from
/// several threads at once. So it must be thread-safe, and `user_data`
/// usable from any thread. It must return quickly: it holds up the library
/// thread that logged (network I/O of every client, or the embedded
/// exchange). To write to a slow place, queue the line and write it from a
/// thread of your own. Lines the library logs while the callback runs on
/// that thread are dropped.
///
/// From inside the callback, every call that waits returns
/// ACADEMY_ERR_INVALID_ARGUMENT without waiting: each whose "Blocks:" says
/// it may wait (the calls that make a round trip to the exchange,
/// academy_client_recv(), academy_client_request(), academy_client_action(),
/// academy_client_ping(), academy_client_flush(), academy_client_close(),
/// academy_queue_poll() with a timeout other than 0, academy_agent_serve(),
/// academy_reply_ok() and academy_reply_error() of an academy_agent_serve()
/// reply (which stays open), academy_client_send_async() when all its send
/// slots are taken, academy_exchange_spawn(), academy_exchange_stop()), and
/// academy_set_log_callback(). academy_client_free() and
/// academy_exchange_free() do not wait there: the close goes on in the
/// background. Calls that never wait may be made: the `_async` calls,
/// academy_queue_poll() with timeout 0, completing a queue-served reply,
/// academy_agent_stop(), the message helpers, the getters and the other
/// frees.
///
/// @param callback the function to call, or NULL to stop logging to a
///        callback.
/// @param user_data passed to every call of `callback` untouched; the library
///        never reads or frees it. It must stay valid until the callback is
///        replaced: when a later academy_set_log_callback() returns, the
///        callback it replaced is not running and will not be called again,
///        so its `user_data` may then be freed.
/// @param level an ::academy_log_level (0 to 5): the least severe level that
///        is passed on.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a level outside 0..5,
///         a call from inside the callback, or when the process already has
///         another `tracing` subscriber as its global one (a Rust program that
///         links libacademy and set up its own: the library's lines go to it
///         instead).
///
/// Blocks: only until a callback being replaced has returned on every thread
/// that is running it.
///
/// Thread-safety: thread-safe, except from inside the log callback
/// (ACADEMY_ERR_INVALID_ARGUMENT).
/// @ingroup basics
#[no_mangle]
pub unsafe extern "C" fn academy_set_log_callback(
    callback: academy_log_fn,
    user_data: *mut c_void,
    level: c_int,
) -> academy_status {
    boundary(|| {
        let filter = filter_of(level).ok_or_else(|| {
            Error::invalid(format!(
                "level must be an academy_log_level (0 to 5), not {level}"
            ))
        })?;
        let sink = callback.map(|callback| {
            let user_data = LogUserData(user_data);
            Box::new(move |level: Level, target: &str, message: &str| {
                let (target, message): (CString, CString) = (c_text(target), c_text(message));
                // SAFETY: the caller's callback with its user_data, as the
                // header documents; the strings live through the call.
                unsafe {
                    callback(
                        user_data.ptr(),
                        c_level(level),
                        target.as_ptr(),
                        message.as_ptr(),
                    )
                };
            }) as logging::Sink
        });
        logging::set_sink(sink, filter)
    })
}
