//! Receiving a mailbox's messages from an HTTP exchange: the SSE stream of
//! `GET /mailbox/listen`, or long polls of `GET /message` on servers
//! without it (academy-py 0.3 to 0.5), found out on first use.
//!
//! The listen timeout starts at the factory's request timeout and drops to
//! the server's maximum when the server refuses it with a 400 that says
//! what its maximum is.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::error::{Error, Result, Status};
use crate::transport::http::HttpTransport;
use crate::transport::mailbox::{Inbound, NextMessage};
use crate::wire::ids::EntityId;
use crate::wire::sse::SseParser;

/// Extra silence tolerated on a listen stream beyond its timeout before it
/// is considered dead (servers send keep-alives every 15 s).
const STREAM_GRACE: Duration = Duration::from_secs(30);
/// Longest SSE line accepted (a message is one line; limits are MiBs).
const MAX_EVENT_BYTES: usize = 256 * 1024 * 1024;

impl HttpTransport {
    /// Opens the next receive of `id`'s messages: a listen stream, or one
    /// long poll (which has already waited for its message).
    pub async fn inbound(&self, id: &EntityId) -> Result<Box<dyn Inbound>> {
        loop {
            let timeout = Duration::from_millis(self.listen_timeout_ms.load(Ordering::Relaxed));
            let opened = if self.lacks_sse.load(Ordering::Relaxed) {
                self.poll_message(id, timeout)
                    .await
                    .map(|m| Box::new(Polled(m)) as Box<dyn Inbound>)
            } else {
                self.listen(id, timeout).await.map(|response| {
                    Box::new(SseInbound {
                        response,
                        parser: SseParser::new().with_max_line(MAX_EVENT_BYTES),
                        ready: VecDeque::new(),
                        silence: timeout + STREAM_GRACE,
                    }) as Box<dyn Inbound>
                })
            };
            match opened {
                Err(e) if e.is_missing_endpoint() && !self.lacks_sse.load(Ordering::Relaxed) => {
                    tracing::debug!(
                        mailbox = %id.uid,
                        "the exchange has no SSE listen endpoint; receiving by long poll (GET /message) instead"
                    );
                    self.lacks_sse.store(true, Ordering::Relaxed);
                }
                Err(e) if server_max_timeout(&e).is_some_and(|max| max < timeout) => {
                    let max = server_max_timeout(&e).unwrap_or(timeout);
                    self.listen_timeout_ms
                        .store(max.as_millis().max(1) as u64, Ordering::Relaxed);
                }
                other => return other,
            }
        }
    }
}

/// One listen stream, read until the server ends it or it fails.
struct SseInbound {
    response: reqwest::Response,
    parser: SseParser,
    /// Messages parsed and not handed out yet.
    ready: VecDeque<String>,
    /// How long the stream may stay silent.
    silence: Duration,
}

impl SseInbound {
    async fn next_message(&mut self) -> Result<Option<String>> {
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Ok(Some(message));
            }
            let chunk = match tokio::time::timeout(self.silence, self.response.chunk()).await {
                Err(_) => {
                    return Err(Error::new(
                        Status::Connection,
                        "the listen stream went silent; reconnecting",
                    ))
                }
                Ok(Err(e)) => {
                    return Err(Error::new(
                        Status::Connection,
                        format!("the listen stream broke: {e}"),
                    ))
                }
                Ok(Ok(None)) => return Ok(None),
                Ok(Ok(Some(chunk))) => chunk,
            };
            let events = self.parser.feed(&chunk).map_err(|e| {
                Error::protocol(format!("the listen stream is not valid SSE: {}", e.0))
            })?;
            self.ready.extend(events.into_iter().map(|e| e.data));
        }
    }
}

impl Inbound for SseInbound {
    fn next(&mut self) -> NextMessage<'_> {
        Box::pin(self.next_message())
    }

    fn retry_hint(&self) -> Option<Duration> {
        self.parser.retry_ms().map(Duration::from_millis)
    }
}

/// The answer of one long poll: at most one message.
struct Polled(Option<String>);

impl Inbound for Polled {
    fn next(&mut self) -> NextMessage<'_> {
        let message = self.0.take();
        Box::pin(async move { Ok(message) })
    }
}

/// The server's maximum listen timeout, from its 400 answer
/// ("Invalid timeout (must be less than 60 and greater than 0)").
fn server_max_timeout(err: &Error) -> Option<Duration> {
    if err.status != Status::BadRequest {
        return None;
    }
    let rest = err.message.split("must be less than ").nth(1)?;
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let secs: f64 = number.parse().ok()?;
    (secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_server_maximum_timeout() {
        let err = Error::new(
            Status::BadRequest,
            "GET /mailbox/listen: HTTP 400: Invalid timeout (must be less than 60 and greater than 0)",
        );
        assert_eq!(server_max_timeout(&err), Some(Duration::from_secs(60)));
        assert_eq!(
            server_max_timeout(&Error::new(Status::BadRequest, "other")),
            None
        );
    }
}
