//! `academy_status`: the status codes of the C API, their texts and names,
//! and the library's version.
//!
//! The numbers, C names and texts live in one table, [`Status`]'s in
//! `crate::error`; this file only gives cbindgen the enum it writes into
//! the header (tests check that the two agree on every status).

use std::ffi::{c_char, c_int, CStr};

use super::handle::boundary_or;
use crate::error::Status;

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

/// What [`academy_status_str`] and [`academy_status_name`] answer for a
/// number that is no status.
const UNKNOWN: &CStr = c"unknown status";

/// The version of libacademy, e.g. "0.1.0", as in the
/// `ACADEMY_VERSION_*` macros of the header this library was built with.
///
/// @return a static string; never free it. Never NULL.
///
/// Does not block. Thread-safe.
#[no_mangle]
pub extern "C" fn academy_version() -> *const c_char {
    static VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// A static, human-readable text of a status code, e.g. "timeout" for
/// ACADEMY_ERR_TIMEOUT.
///
/// @param status any int: bindings may pass a plain number.
/// @return a static string, "unknown status" for a number that is no
///         status; never free it. Never NULL.
///
/// Does not block. Thread-safe.
#[no_mangle]
pub extern "C" fn academy_status_str(status: c_int) -> *const c_char {
    boundary_or(UNKNOWN.as_ptr(), || {
        Status::from_code(status.into())
            .map_or(UNKNOWN, Status::text)
            .as_ptr()
    })
}

/// The name of a status code as in this header, e.g. "ACADEMY_ERR_TIMEOUT"
/// (for logs and for bindings that generate their error types).
///
/// @param status any int.
/// @return a static string, "unknown status" for a number that is no
///         status; never free it. Never NULL.
///
/// Does not block. Thread-safe.
#[no_mangle]
pub extern "C" fn academy_status_name(status: c_int) -> *const c_char {
    boundary_or(UNKNOWN.as_ptr(), || {
        Status::from_code(status.into())
            .map_or(UNKNOWN, Status::name)
            .as_ptr()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(p: *const c_char) -> &'static str {
        unsafe { CStr::from_ptr(p) }.to_str().unwrap()
    }

    #[test]
    fn every_status_has_its_number_name_and_text() {
        for status in Status::ALL {
            let c: academy_status = status.into();
            assert_eq!(c as i64, status as i64, "{status:?}");
            let code = status as c_int;
            assert_eq!(text(academy_status_str(code)), status.as_str());
            assert!(!status.as_str().is_empty());
            let name = text(academy_status_name(code));
            assert_eq!(format!("{c:?}"), name, "the C enum's variant is the name");
        }
        let texts: std::collections::HashSet<_> = Status::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(texts.len(), Status::ALL.len(), "every text differs");
    }

    #[test]
    fn unknown_numbers_have_a_text_too() {
        for code in [-1, 14, 42, 98, 100, c_int::MAX, c_int::MIN] {
            assert_eq!(text(academy_status_str(code)), "unknown status");
            assert_eq!(text(academy_status_name(code)), "unknown status");
        }
    }
}
