//! The one error type of the crate, and its mapping to the C status codes.

use std::ffi::CStr;
use std::fmt;

/// Status codes of the C API. The numbers are part of the ABI and never change.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The call succeeded.
    Ok = 0,
    /// A NULL pointer, invalid UTF-8, malformed JSON or an unknown option.
    InvalidArgument = 1,
    /// Nothing arrived in time (a receive, a call or the server said 408).
    Timeout = 2,
    /// The mailbox does not exist on the exchange (404).
    BadEntityId = 3,
    /// The mailbox was terminated (419).
    MailboxTerminated = 4,
    /// The exchange needs credentials that were not given (401).
    Unauthorized = 5,
    /// The credentials do not allow this (403).
    Forbidden = 6,
    /// The message is larger than the exchange accepts (413).
    MessageTooLarge = 7,
    /// The exchange rejected the request as malformed (400).
    BadRequest = 8,
    /// The exchange could not be reached.
    Connection = 9,
    /// Any other HTTP status.
    Http = 10,
    /// An answer not understood, an incompatible protocol or serialization.
    Protocol = 11,
    /// The handle was closed (or was made before a `fork()`).
    Closed = 12,
    /// The remote agent answered with an error.
    Remote = 13,
    /// A bug in the library (a panic was caught).
    Internal = 99,
}

impl Status {
    /// Every status, in the order of their numbers.
    pub const ALL: [Status; 15] = [
        Status::Ok,
        Status::InvalidArgument,
        Status::Timeout,
        Status::BadEntityId,
        Status::MailboxTerminated,
        Status::Unauthorized,
        Status::Forbidden,
        Status::MessageTooLarge,
        Status::BadRequest,
        Status::Connection,
        Status::Http,
        Status::Protocol,
        Status::Closed,
        Status::Remote,
        Status::Internal,
    ];

    /// The one table of the statuses' names and texts: the C name (as in
    /// the header, for `academy_status_name`) and a static, human-readable
    /// text (`academy_status_str`), NUL-terminated for C.
    fn table(self) -> (&'static CStr, &'static CStr) {
        match self {
            Status::Ok => (c"ACADEMY_OK", c"ok"),
            Status::InvalidArgument => (c"ACADEMY_ERR_INVALID_ARGUMENT", c"invalid argument"),
            Status::Timeout => (c"ACADEMY_ERR_TIMEOUT", c"timeout"),
            Status::BadEntityId => (c"ACADEMY_ERR_BAD_ENTITY_ID", c"unknown mailbox id"),
            Status::MailboxTerminated => (c"ACADEMY_ERR_MAILBOX_TERMINATED", c"mailbox terminated"),
            Status::Unauthorized => (c"ACADEMY_ERR_UNAUTHORIZED", c"unauthorized"),
            Status::Forbidden => (c"ACADEMY_ERR_FORBIDDEN", c"forbidden"),
            Status::MessageTooLarge => (c"ACADEMY_ERR_MESSAGE_TOO_LARGE", c"message too large"),
            Status::BadRequest => (c"ACADEMY_ERR_BAD_REQUEST", c"bad request"),
            Status::Connection => (c"ACADEMY_ERR_CONNECTION", c"connection error"),
            Status::Http => (c"ACADEMY_ERR_HTTP", c"unexpected HTTP status"),
            Status::Protocol => (c"ACADEMY_ERR_PROTOCOL", c"protocol error"),
            Status::Closed => (c"ACADEMY_ERR_CLOSED", c"handle closed"),
            Status::Remote => (c"ACADEMY_ERR_REMOTE", c"remote error"),
            Status::Internal => (c"ACADEMY_ERR_INTERNAL", c"internal error"),
        }
    }

    /// The status with this number, if there is one.
    pub fn from_code(code: i64) -> Option<Status> {
        Status::ALL.into_iter().find(|s| *s as i64 == code)
    }

    /// A static, human-readable text of the status.
    pub fn as_str(self) -> &'static str {
        self.text().to_str().unwrap_or("")
    }

    /// [`as_str`](Self::as_str), NUL-terminated.
    pub fn text(self) -> &'static CStr {
        self.table().1
    }

    /// The status's name in the C header, e.g. `ACADEMY_ERR_TIMEOUT`.
    pub fn name(self) -> &'static CStr {
        self.table().0
    }

    /// The status for an HTTP error answer of the exchange, as academy-py's
    /// `_raise_for_status` maps it.
    pub fn from_http(code: u16) -> Status {
        match code {
            400 => Status::BadRequest,
            401 => Status::Unauthorized,
            403 => Status::Forbidden,
            404 => Status::BadEntityId,
            408 => Status::Timeout,
            413 => Status::MessageTooLarge,
            419 => Status::MailboxTerminated,
            _ => Status::Http,
        }
    }
}

/// An error: a status code and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    pub message: String,
    /// The HTTP status of the exchange's answer, when it came from one.
    http_status: Option<u16>,
}

impl Error {
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Error {
            status,
            message: message.into(),
            http_status: None,
        }
    }

    /// Records the HTTP status the error came from.
    pub fn with_http_status(mut self, code: u16) -> Self {
        self.http_status = Some(code);
        self
    }

    /// The HTTP status the error came from, if any.
    pub fn http_status(&self) -> Option<u16> {
        self.http_status
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(Status::InvalidArgument, message)
    }

    pub fn protocol(message: impl Into<String>) -> Self {
        Error::new(Status::Protocol, message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Error::new(Status::Timeout, message)
    }

    pub fn closed(message: impl Into<String>) -> Self {
        Error::new(Status::Closed, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(Status::Internal, message)
    }

    /// Whether trying again cannot help: the mailbox is gone or unknown, or
    /// the credentials do not allow it (a listener stops; serving ends).
    pub fn is_final(&self) -> bool {
        matches!(
            self.status,
            Status::MailboxTerminated
                | Status::BadEntityId
                | Status::Unauthorized
                | Status::Forbidden
        )
    }

    /// Whether the exchange lacks the endpoint: a 404 that is not "Unknown
    /// mailbox ID", or a 405 (academy-py 0.3 to 0.5 have no listen,
    /// heartbeat or stats routes).
    pub fn is_missing_endpoint(&self) -> bool {
        self.status == Status::Protocol && matches!(self.http_status, Some(404) | Some(405))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.as_str(), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A caller's string, shortened for an error message (callers may pass
/// megabytes; messages stay readable).
pub fn clip(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return format!("{text:?}");
    }
    let mut cut = MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{:?}… ({} bytes)", &text[..cut], text.len())
}
