//! What both Redis backends (one Redis, and a Redis cluster) share about
//! their round trips: timing and counting them, reading the answers of
//! their scripts, the caller as the scripts see it (owner value and
//! groups), and the background work that a stopping server waits for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::server::backend::model::{AgentStats, BResult, BackendError, Client, MailboxStatus};
use crate::server::metrics::Metrics;
use crate::server::throttle::Throttle;
use crate::wire::ids::EntityId;
use crate::wire::message::{academy_error_body, ErrorCode, Header, Message};

/// academy-py appends this to the client id in its owner record.
const OWNER_SUFFIX: &str = "_";
/// Commands other than blocking ones answer within this (Redis is local to
/// the exchange; a stuck Redis becomes a 503 the client retries).
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between tries to put a message back after a Redis error.
pub(crate) const POP_RETRY: Duration = Duration::from_millis(100);
/// A round trip slower than this is logged as a warning (Redis is meant
/// to be close to the exchange; one takes well under a millisecond there).
pub(crate) const SLOW_REDIS: Duration = Duration::from_millis(100);
static SLOW: Throttle = Throttle::new();

/// One round trip, counted, timed, and logged when slow.
pub(crate) async fn timed<T>(
    metrics: Option<&Metrics>,
    op: &'static str,
    round_trip: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    let start = Instant::now();
    let outcome = round_trip.await;
    let took = start.elapsed();
    if let Some(m) = metrics {
        m.redis(took, outcome.is_ok());
    }
    if took >= SLOW_REDIS {
        if let Some(skipped) = SLOW.admit() {
            // Under the name it has always had in the log (filters name it).
            tracing::warn!(
                target: "academy::server::backend::redis",
                "slow Redis: {op} took {:.0} ms (over {} ms; {skipped} more slow round trips since the last warning)",
                took.as_secs_f64() * 1000.0,
                SLOW_REDIS.as_millis()
            );
        }
    }
    outcome
}

/// The value a mailbox's owner record holds for this client.
pub(crate) fn owner_of(client: &Client) -> String {
    format!("{}{OWNER_SUFFIX}", client.id)
}

/// The client's groups, sorted so that scripts see a stable argument list.
pub(crate) fn groups(client: &Client) -> Vec<&str> {
    let mut g: Vec<&str> = client.groups.iter().map(String::as_str).collect();
    g.sort_unstable();
    g
}

pub(crate) fn unavailable(e: redis::RedisError) -> BackendError {
    BackendError::Unavailable(format!("Redis: {e}"))
}

pub(crate) fn unexpected(answer: &str) -> BackendError {
    BackendError::Unavailable(format!("unexpected answer from Redis: {answer:?}"))
}

/// The word a script answers with, as a backend result.
pub(crate) fn word(w: &str) -> BResult<()> {
    match w {
        "ok" => Ok(()),
        "forbidden" => Err(BackendError::Forbidden),
        "missing" => Err(BackendError::BadEntityId),
        "terminated" => Err(BackendError::Terminated),
        other => Err(unexpected(other)),
    }
}

/// A script's list answer: a leading word ("ok" or an error word), then
/// the values.
pub(crate) fn values(answer: &[String]) -> BResult<&[String]> {
    let (status, rest) = answer.split_first().ok_or_else(|| unexpected(""))?;
    word(status)?;
    Ok(rest)
}

/// A check script's answer as a mailbox status.
pub(crate) fn mailbox_status(answer: &str) -> BResult<MailboxStatus> {
    match answer {
        "MISSING" => Ok(MailboxStatus::Missing),
        "ACTIVE" => Ok(MailboxStatus::Active),
        "TERMINATED" => Ok(MailboxStatus::Terminated),
        other => word(other).and(Err(unexpected(other))),
    }
}

/// Seconds since the last heartbeat of `uid` (by Redis' clock), or None,
/// from a heartbeat script's answer: {status, heartbeat or '', now
/// seconds, now microseconds}.
pub(crate) fn heartbeat_age(answer: &[String], uid: &EntityId) -> BResult<Option<f64>> {
    let [hb, secs, micros] = values(answer)? else {
        return Err(unexpected(&answer.join(" ")));
    };
    if hb.is_empty() {
        return Ok(None);
    }
    let parse = |s: &str| s.parse::<f64>().ok();
    match (parse(hb), parse(secs), parse(micros)) {
        (Some(hb), Some(s), Some(us)) => Ok(Some(s + us / 1e6 - hb)),
        _ => Err(BackendError::Unavailable(format!(
            "heartbeat record of {} is not a number: {hb:?}",
            uid.uid
        ))),
    }
}

/// academy-py's statistics from a statistics script's answer: {status,
/// queued, completed, outgoing} and the requests in flight, from the
/// answer or counted apart (`pending`).
pub(crate) fn agent_stats(answer: &[String], pending: Option<u64>) -> BResult<AgentStats> {
    let counts: Vec<u64> = values(answer)?
        .iter()
        .map(|n| n.parse().map_err(|_| unexpected(n)))
        .collect::<BResult<_>>()?;
    match (counts.as_slice(), pending) {
        (&[queued, completed, outgoing], Some(pending))
        | (&[queued, completed, outgoing, pending], None) => Ok(AgentStats::from_counts(
            queued, pending, completed, outgoing,
        )),
        _ => Err(unexpected(&answer.join(" "))),
    }
}

/// The `MAILBOX_TERMINATED` answers to the requests in flight whose
/// headers (JSON) a terminate script returned, to be delivered as the
/// server (as the in-memory backend does; failures ignored).
pub(crate) fn terminated_answers(headers: &[String]) -> Vec<Message> {
    headers
        .iter()
        .filter_map(|h| serde_json::from_str::<Header>(h).ok())
        .map(|header| Message {
            header: header.response_header(),
            body: academy_error_body(ErrorCode::MailboxTerminated, Some(&header.dest)),
        })
        .collect()
}

/// A message's JSON, if within the limit.
pub(crate) fn within_limit(text: &str, limit: usize) -> BResult<()> {
    if text.len() > limit {
        return Err(BackendError::TooLarge {
            size: text.len(),
            limit,
        });
    }
    Ok(())
}

/// Counts the background work still running (receives that took a
/// message must put it back or hand it on), so that `stop` can wait for it.
#[derive(Default)]
pub(crate) struct Tasks {
    running: AtomicUsize,
    idle: Notify,
}

/// Held while a piece of background work runs.
pub(crate) struct TaskGuard(Arc<Tasks>);

impl Tasks {
    pub(crate) fn enter(self: &Arc<Self>) -> TaskGuard {
        self.running.fetch_add(1, Ordering::AcqRel);
        TaskGuard(self.clone())
    }

    /// Waits until no background work is running.
    pub(crate) async fn drained(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.running.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
