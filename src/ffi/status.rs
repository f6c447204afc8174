//! `academy_status`: the status codes of the C API.
//!
//! The numbers, C names and texts live in one table, [`Status`]'s in
//! `crate::error`; this file only gives cbindgen the enum it writes into
//! the header (tests check that the two agree on every status).

use crate::error::Status;

/// Status codes returned by every libacademy call that can fail. The values
/// are fixed.
/// @ingroup basics
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
