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
use crate::transport::http::{HttpTransport, Kind, Method};
use crate::transport::mailbox::{Inbound, NextMessage};
use crate::wire::headers::LISTEN_ID_HEADER;
use crate::wire::ids::EntityId;
use crate::wire::sse::SseParser;

/// Extra silence tolerated on a listen stream beyond its timeout before it
/// is considered dead (servers send keep-alives every 15 s).
const STREAM_GRACE: Duration = Duration::from_secs(30);
/// How long after dropping a receive its wake-up message is sent.
const WAKE_DELAY: Duration = Duration::from_millis(50);
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
                    let stop_token = response
                        .headers()
                        .get(LISTEN_ID_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    if stop_token.is_some() {
                        self.takes_back.store(true, Ordering::Relaxed);
                    }
                    Box::new(SseInbound {
                        stop_token,
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
    /// The stream's name, when the exchange ends it on request.
    stop_token: Option<String>,
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

    fn stop_token(&self) -> Option<&str> {
        self.stop_token.as_deref()
    }

    fn outlives_drop(&self) -> bool {
        self.stop_token.is_none()
    }
}

impl HttpTransport {
    /// Asks our exchange to end the listen stream `token` of `id` (see
    /// [`Inbound::stop_token`]).
    pub async fn end_listen(&self, id: &EntityId, token: &str) -> Result<()> {
        let body = serde_json::json!({"mailbox": id.to_json(), "listen_id": token});
        self.call(Method::Delete, "/mailbox/listen", &body, Kind::Plain)
            .await
            .map(drop)
    }

    /// Sends `id` the wake-up message
    /// ([`crate::wire::message::wake_message`]) after a receive was
    /// dropped whose handler may wait on at the exchange; our exchange
    /// needs none.
    pub async fn wake_left_handler(&self, id: &EntityId) -> Result<()> {
        if self.takes_back.load(Ordering::Relaxed) {
            return Ok(());
        }
        // The dropped connection's end reaches the exchange first.
        tokio::time::sleep(WAKE_DELAY).await;
        self.send(&crate::wire::message::wake_message(id)?).await
    }

    /// Puts messages `id` received and did not hand out back into its
    /// mailbox, oldest first in `messages`. Our exchange puts them at the
    /// head of the queue (`"requeue": true`, sent newest first); other
    /// exchanges ignore the field and queue them at the tail, in order.
    pub async fn requeue(&self, _id: &EntityId, messages: &[String]) -> Result<()> {
        let at_head = self.takes_back.load(Ordering::Relaxed);
        let mut order: Vec<&String> = messages.iter().collect();
        if at_head {
            order.reverse();
        }
        for message in order {
            let body = serde_json::json!({"message": message, "requeue": true});
            self.call(Method::Put, "/message", &body, Kind::Plain)
                .await?;
        }
        Ok(())
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
