//! The connection to one cluster node, as the `redis` crate's cluster
//! client makes it, with the node's redirections counted on the way back:
//! the crate follows `MOVED` and `ASK` and retries `TRYAGAIN` itself and
//! says nothing of it, and the exchange's metrics report how often.
//!
//! The counts are the process's: the crate opens node connections without
//! telling whose they are.

use std::sync::atomic::{AtomicU64, Ordering};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::Connect;
use redis::{
    AsyncConnectionConfig, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, Value,
};

/// What a node answered instead of running a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Redirection {
    /// The slot lives on another node now.
    Moved,
    /// The slot is moving; ask the other node this once.
    Ask,
    /// The slot is moving and the keys are split between the nodes.
    TryAgain,
}

impl Redirection {
    pub(crate) const ALL: [Redirection; 3] =
        [Redirection::Moved, Redirection::Ask, Redirection::TryAgain];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Redirection::Moved => "moved",
            Redirection::Ask => "ask",
            Redirection::TryAgain => "tryagain",
        }
    }

    fn of(code: &str) -> Option<Redirection> {
        match code {
            "MOVED" => Some(Redirection::Moved),
            "ASK" => Some(Redirection::Ask),
            "TRYAGAIN" => Some(Redirection::TryAgain),
            _ => None,
        }
    }
}

static SEEN: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// How many of each this process has been answered.
pub(crate) fn redirections(kind: Redirection) -> u64 {
    SEEN[kind as usize].load(Ordering::Relaxed)
}

fn note(value: &Value) {
    match value {
        Value::ServerError(e) => {
            if let Some(kind) = Redirection::of(e.code()) {
                SEEN[kind as usize].fetch_add(1, Ordering::Relaxed);
            }
        }
        Value::Array(items) => items.iter().for_each(note),
        _ => {}
    }
}

fn note_result<T>(result: &RedisResult<T>, values: impl Fn(&T) -> Vec<&Value>) {
    match result {
        Ok(v) => values(v).into_iter().for_each(note),
        Err(e) => {
            if let Some(kind) = e.code().and_then(Redirection::of) {
                SEEN[kind as usize].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A node connection that counts the redirections it is answered.
#[derive(Clone)]
pub(crate) struct Counted(MultiplexedConnection);

impl ConnectionLike for Counted {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.0.req_packed_command(cmd).await;
            note_result(&result, |v| vec![v]);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self.0.req_packed_commands(pipeline, offset, count).await;
            note_result(&result, |v| v.iter().collect());
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

impl Connect for Counted {
    fn connect_with_config<'a, T>(info: T, config: AsyncConnectionConfig) -> RedisFuture<'a, Self>
    where
        T: IntoConnectionInfo + Send + 'a,
    {
        Box::pin(async move {
            MultiplexedConnection::connect_with_config(info, config)
                .await
                .map(Counted)
        })
    }
}
