//! What every kind of exchange (HTTP, Redis, hybrid) answers about a
//! mailbox: its status, and the stream of its incoming messages.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::error::Result;

/// The status of a mailbox, as a client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub enum MailboxStatus {
    Missing = 0,
    Active = 1,
    Inactive = 2,
    Terminated = 3,
}

/// A boxed future of the messages of an [`Inbound`].
pub type NextMessage<'a> = Pin<Box<dyn Future<Output = Result<Option<String>>> + Send + 'a>>;

/// An open receive of one mailbox's messages: an SSE stream, one long
/// poll, a Redis queue, a peer socket. The client's listener reads it until
/// it ends, then opens the next one (after [`retry_hint`](Self::retry_hint)
/// when it failed).
pub trait Inbound: Send {
    /// The next message as its JSON text; `Ok(None)` when this receive
    /// ended normally (the server closed the stream, a poll timed out).
    fn next(&mut self) -> NextMessage<'_>;

    /// How long to wait before opening the next receive after a failure,
    /// if the exchange said (SSE `retry:`).
    fn retry_hint(&self) -> Option<Duration> {
        None
    }

    /// The name of this receive when the exchange ends it on request (our
    /// exchange's listen streams, `DELETE /mailbox/listen`). A closing
    /// client asks for the end, then reads on until [`next`](Self::next)
    /// says it ended, so that no message is left on the way.
    fn stop_token(&self) -> Option<&str> {
        None
    }

    /// Whether the exchange may go on serving this receive after it is
    /// dropped: academy-py's listen handler waits on, takes the next
    /// message and loses it (see [`crate::wire::message::wake_message`]).
    fn outlives_drop(&self) -> bool {
        false
    }
}
