//! The C ABI: a thin layer that converts pointers, strings and errors and
//! calls the Rust core. Every exported function goes through [`boundary`],
//! which turns a panic into `ACADEMY_ERR_INTERNAL` and records
//! `academy_last_error`.

#![allow(non_camel_case_types)]
// Every exported function checks its pointers before use; the C contract
// (documented in the header) is what makes them sound.
#![allow(clippy::missing_safety_doc)]

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::error::{Error, Result, Status};

pub mod client;
pub mod exchange;
pub mod factory;
pub mod messages;
pub mod queue;
pub mod serve;

/// Status codes returned by every libacademy call. The values are fixed.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum academy_status {
    /// Success.
    ACADEMY_OK = 0,
    /// A NULL pointer, invalid UTF-8, malformed JSON or an unknown option.
    ACADEMY_ERR_INVALID_ARGUMENT = 1,
    /// Nothing arrived in time.
    ACADEMY_ERR_TIMEOUT = 2,
    /// The mailbox does not exist on the exchange (HTTP 404).
    ACADEMY_ERR_BAD_ENTITY_ID = 3,
    /// The mailbox was terminated (HTTP 419).
    ACADEMY_ERR_MAILBOX_TERMINATED = 4,
    /// Credentials are missing (HTTP 401).
    ACADEMY_ERR_UNAUTHORIZED = 5,
    /// Credentials do not allow this (HTTP 403).
    ACADEMY_ERR_FORBIDDEN = 6,
    /// The message is larger than the exchange accepts (HTTP 413).
    ACADEMY_ERR_MESSAGE_TOO_LARGE = 7,
    /// The exchange rejected the request as malformed (HTTP 400).
    ACADEMY_ERR_BAD_REQUEST = 8,
    /// The exchange could not be reached.
    ACADEMY_ERR_CONNECTION = 9,
    /// Any other HTTP status.
    ACADEMY_ERR_HTTP = 10,
    /// An answer not understood, an incompatible protocol or serialization,
    /// or an endpoint the exchange lacks.
    ACADEMY_ERR_PROTOCOL = 11,
    /// The handle was closed, or was made before fork() in a parent process.
    ACADEMY_ERR_CLOSED = 12,
    /// The remote agent answered with an error.
    ACADEMY_ERR_REMOTE = 13,
    /// A bug in libacademy (a panic was caught).
    ACADEMY_ERR_INTERNAL = 99,
}

impl From<Status> for academy_status {
    fn from(status: Status) -> Self {
        use academy_status::*;
        match status {
            Status::Ok => ACADEMY_OK,
            Status::InvalidArgument => ACADEMY_ERR_INVALID_ARGUMENT,
            Status::Timeout => ACADEMY_ERR_TIMEOUT,
            Status::BadEntityId => ACADEMY_ERR_BAD_ENTITY_ID,
            Status::MailboxTerminated => ACADEMY_ERR_MAILBOX_TERMINATED,
            Status::Unauthorized => ACADEMY_ERR_UNAUTHORIZED,
            Status::Forbidden => ACADEMY_ERR_FORBIDDEN,
            Status::MessageTooLarge => ACADEMY_ERR_MESSAGE_TOO_LARGE,
            Status::BadRequest => ACADEMY_ERR_BAD_REQUEST,
            Status::Connection => ACADEMY_ERR_CONNECTION,
            Status::Http => ACADEMY_ERR_HTTP,
            Status::Protocol => ACADEMY_ERR_PROTOCOL,
            Status::Closed => ACADEMY_ERR_CLOSED,
            Status::Remote => ACADEMY_ERR_REMOTE,
            Status::Internal => ACADEMY_ERR_INTERNAL,
        }
    }
}

fn status_text(status: academy_status) -> &'static CStr {
    use academy_status::*;
    match status {
        ACADEMY_OK => c"ok",
        ACADEMY_ERR_INVALID_ARGUMENT => c"invalid argument",
        ACADEMY_ERR_TIMEOUT => c"timeout",
        ACADEMY_ERR_BAD_ENTITY_ID => c"unknown mailbox id",
        ACADEMY_ERR_MAILBOX_TERMINATED => c"mailbox terminated",
        ACADEMY_ERR_UNAUTHORIZED => c"unauthorized",
        ACADEMY_ERR_FORBIDDEN => c"forbidden",
        ACADEMY_ERR_MESSAGE_TOO_LARGE => c"message too large",
        ACADEMY_ERR_BAD_REQUEST => c"bad request",
        ACADEMY_ERR_CONNECTION => c"connection error",
        ACADEMY_ERR_HTTP => c"unexpected HTTP status",
        ACADEMY_ERR_PROTOCOL => c"protocol error",
        ACADEMY_ERR_CLOSED => c"handle closed",
        ACADEMY_ERR_REMOTE => c"remote error",
        ACADEMY_ERR_INTERNAL => c"internal error",
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Text for C: a NUL inside (which C cannot see past) is written `\0`.
pub(crate) fn c_text(text: &str) -> CString {
    CString::new(text.replace('\0', "\\0")).unwrap_or_default()
}

fn set_last_error(text: &str) {
    LAST_ERROR.with(|e| *e.borrow_mut() = c_text(text));
}

/// Runs the body of an exported function: catches panics, records the
/// error text for `academy_last_error`, and returns the status.
pub(crate) fn boundary<F: FnOnce() -> Result<()>>(f: F) -> academy_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_last_error("");
            academy_status::ACADEMY_OK
        }
        Ok(Err(err)) => {
            set_last_error(&err.message);
            err.status.into()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            set_last_error(&format!(
                "internal error in libacademy (please report): {what}"
            ));
            academy_status::ACADEMY_ERR_INTERNAL
        }
    }
}

/// Runs a function that returns no status (free functions): panics are
/// swallowed, never unwound into C.
pub(crate) fn boundary_void<F: FnOnce()>(f: F) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

/// A required string argument.
pub(crate) unsafe fn arg_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::invalid(format!("{name} must not be NULL")));
    }
    CStr::from_ptr(ptr)
        .to_str()
        .map_err(|e| Error::invalid(format!("{name} is not valid UTF-8: {e}")))
}

/// An optional (nullable) string argument.
pub(crate) unsafe fn arg_opt_str<'a>(ptr: *const c_char, name: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        arg_str(ptr, name).map(Some)
    }
}

/// A required handle argument.
pub(crate) unsafe fn arg_ref<'a, T>(ptr: *const T, name: &str) -> Result<&'a T> {
    ptr.as_ref()
        .ok_or_else(|| Error::invalid(format!("{name} must not be NULL")))
}

/// Checks an out-pointer before any work is done.
pub(crate) fn check_out<T>(ptr: *mut T, name: &str) -> Result<()> {
    if ptr.is_null() {
        Err(Error::invalid(format!("{name} must not be NULL")))
    } else {
        Ok(())
    }
}

/// Writes an output (out-pointers are written only on success).
pub(crate) unsafe fn write_out<T>(ptr: *mut T, value: T) {
    ptr.write(value);
}

/// Writes a string output that the caller frees with `academy_string_free`.
pub(crate) unsafe fn write_string(ptr: *mut *mut c_char, text: String) -> Result<()> {
    let c = CString::new(text).map_err(|_| Error::protocol("the output contains a NUL byte"))?;
    ptr.write(c.into_raw());
    Ok(())
}

/// A timeout argument: negative waits forever, NaN is an error.
pub(crate) fn arg_timeout(seconds: f64) -> Result<Option<Duration>> {
    if seconds.is_nan() {
        Err(Error::invalid("timeout_s must be a number, not NaN"))
    } else if seconds < 0.0 {
        Ok(None)
    } else {
        Ok(Some(Duration::from_secs_f64(seconds.min(1e9))))
    }
}

/// The version of libacademy, e.g. "0.1.0". Static; never free it.
#[no_mangle]
pub extern "C" fn academy_version() -> *const c_char {
    static VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// A static, human-readable name of a status code. Never free it.
#[no_mangle]
pub extern "C" fn academy_status_str(status: academy_status) -> *const c_char {
    status_text(status).as_ptr()
}

/// Details of this thread's last libacademy call if it failed (the URL and
/// HTTP status, the server's text, the remote exception; never a token),
/// or "" if it succeeded. The string belongs to the library and stays valid
/// until this thread's next libacademy call. Never NULL.
#[no_mangle]
pub extern "C" fn academy_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Frees a string that libacademy returned through an out-pointer.
/// Freeing NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn academy_string_free(s: *mut c_char) {
    boundary_void(|| {
        if !s.is_null() {
            drop(CString::from_raw(s));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> String {
        unsafe { CStr::from_ptr(academy_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_internal_and_never_unwinds_into_c() {
        let status = boundary(|| panic!("something impossible"));
        assert_eq!(status, academy_status::ACADEMY_ERR_INTERNAL);
        assert!(last().contains("something impossible"), "{}", last());
        boundary_void(|| panic!("in a free function"));
        assert_eq!(boundary(|| Ok(())), academy_status::ACADEMY_OK);
        assert_eq!(last(), "", "success clears the last error");
    }

    #[test]
    fn errors_set_the_thread_local_last_error() {
        let status = boundary(|| Err(Error::new(Status::Timeout, "slow")));
        assert_eq!(status, academy_status::ACADEMY_ERR_TIMEOUT);
        assert_eq!(last(), "slow");
        std::thread::spawn(|| assert_eq!(last(), "", "another thread has its own"))
            .join()
            .unwrap();
    }

    #[test]
    fn every_status_has_a_text() {
        for s in [
            Status::Ok,
            Status::InvalidArgument,
            Status::Remote,
            Status::Internal,
        ] {
            let text = unsafe { CStr::from_ptr(academy_status_str(s.into())) };
            assert_eq!(text.to_str().unwrap(), s.as_str());
        }
    }
}
