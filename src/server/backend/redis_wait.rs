//! Receives that wait for a message in Redis, on a bounded number of
//! connections.
//!
//! A `BLPOP` holds its connection until it returns, so one connection per
//! waiting receive made 10,000 listeners 10,000 Redis clients, past Redis'
//! `maxclients`. Here waiting receives share [`LANES`] connections: each
//! lane is one connection and one task that blocks in one `BLPOP` over the
//! queues of every receive waiting in it, and hands what it pops to the
//! first of them. A receive that joins a lane whose `BLPOP` does not cover
//! its queue yet pushes to the lane's wake-up list (which every `BLPOP` of
//! the lane also covers), so that the lane starts over with the new queue.
//!
//! A message popped for a receiver that has gone goes back to the head of
//! its queue, as before.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::AsyncConnectionConfig;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::server::backend::model::{BackendError, Received, Shutdown};

/// academy-py's queue sentinel, pushed at terminate to end a blocked get.
pub(crate) const CLOSE_SENTINEL: &[u8] = b"<CLOSED>";

/// What the lanes need of the Redis backend.
pub(crate) trait Queues: Send + Sync + 'static {
    /// Held while a popped message is in hand (`stop` waits for it).
    type Busy: Send;
    /// The shared, pipelined connection.
    fn shared_connection(&self) -> ConnectionManager;
    /// The client that makes the lanes' connections.
    fn client(&self) -> &redis::Client;
    fn shutdown(&self) -> &Shutdown;
    fn busy(&self) -> Self::Busy;
    /// Puts a message back at the head of its queue.
    fn put_back(&self, queue: &str, item: Vec<u8>) -> impl std::future::Future<Output = ()> + Send;
}

/// Connections used for waiting receives, whatever their number.
pub(crate) const LANES: usize = 16;
/// A `BLPOP` waits at most this long at a time, so that a stopping server
/// and receives that time out are noticed soon.
const POP_SLICE: Duration = Duration::from_secs(2);
/// Pause before a lane tries again after a Redis error (Redis restarting):
/// receives wait it out until their deadlines.
const POP_RETRY: Duration = Duration::from_millis(100);

/// A receive waiting for a message.
struct Waiter {
    tx: oneshot::Sender<Received>,
    deadline: Instant,
}

#[derive(Default)]
struct LaneState {
    /// Waiting receives by queue key, oldest first.
    waiting: HashMap<String, VecDeque<Waiter>>,
    /// The queues the lane's current `BLPOP` covers, and when it ends.
    covered: HashSet<String>,
    blocked_until: Option<Instant>,
    /// Where the next `BLPOP` starts in its list of queues (turns, so that
    /// a busy queue does not starve the others: `BLPOP` takes the first
    /// non-empty one).
    turn: usize,
    running: bool,
}

/// One connection and the receives waiting on it.
struct Lane {
    wake_key: String,
    state: Mutex<LaneState>,
    /// Wakes an idle lane (no queue to wait on, so no `BLPOP`).
    idle: Notify,
}

fn lock(m: &Mutex<LaneState>) -> MutexGuard<'_, LaneState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The lanes of one backend.
pub(crate) struct Lanes {
    lanes: Vec<Arc<Lane>>,
}

impl Lanes {
    pub(crate) fn new() -> Lanes {
        // A key of this process' own: academy-py never reads it.
        let me = uuid::Uuid::new_v4();
        Lanes {
            lanes: (0..LANES)
                .map(|index| {
                    Arc::new(Lane {
                        wake_key: format!("academy-exchange:wake:{me}:{index}"),
                        state: Mutex::new(LaneState::default()),
                        idle: Notify::new(),
                    })
                })
                .collect(),
        }
    }

    /// Waits in a lane for the next message of `queue` (already found
    /// empty), until `deadline`.
    pub(crate) async fn wait<B: Queues>(
        &self,
        backend: &Arc<B>,
        queue: String,
        tx: oneshot::Sender<Received>,
        deadline: Instant,
    ) {
        let lane = &self.lanes[lane_of(&queue)];
        let (start, wake) = {
            let mut state = lock(&lane.state);
            // The lane's BLPOP must start over if it does not cover this
            // queue, or would end after this receive's time is up.
            let wake = state.running
                && (!state.covered.contains(&queue)
                    || state.blocked_until.is_some_and(|until| deadline < until));
            state
                .waiting
                .entry(queue)
                .or_default()
                .push_back(Waiter { tx, deadline });
            let start = !state.running;
            state.running = true;
            (start, wake)
        };
        if start {
            tokio::spawn(run(backend.clone(), lane.clone()));
        }
        lane.idle.notify_one();
        if wake {
            let _: redis::RedisResult<()> = redis::cmd("RPUSH")
                .arg(&lane.wake_key)
                .arg(1)
                .query_async(&mut backend.shared_connection())
                .await;
        }
    }
}

/// A queue's lane: the same one always, so that its receives share a
/// `BLPOP`.
fn lane_of(queue: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    queue.hash(&mut h);
    (h.finish() as usize) % LANES
}

/// What a lane does next.
enum Next {
    /// Pop from these queues for at most this long.
    Pop(Vec<String>, Duration),
    /// Nothing to wait for: sleep until a receive comes.
    Idle,
    /// The server is stopping.
    Stop,
}

impl Lane {
    /// Drops receives that have gone, answers those whose time is up, and
    /// says what to wait on.
    fn next(&self, shutdown: &Shutdown) -> Next {
        let now = Instant::now();
        let mut state = lock(&self.state);
        if shutdown.is_set() {
            for (_, waiters) in state.waiting.drain() {
                for w in waiters {
                    let _ = w.tx.send(Err(BackendError::ShuttingDown));
                }
            }
            state.running = false;
            return Next::Stop;
        }
        let mut earliest: Option<Instant> = None;
        state.waiting.retain(|_, waiters| {
            for w in std::mem::take(waiters) {
                if w.tx.is_closed() {
                    continue;
                }
                if w.deadline <= now {
                    let _ = w.tx.send(Err(BackendError::Timeout));
                    continue;
                }
                earliest = Some(earliest.map_or(w.deadline, |e| e.min(w.deadline)));
                waiters.push_back(w);
            }
            !waiters.is_empty()
        });
        let mut keys: Vec<String> = state.waiting.keys().cloned().collect();
        if keys.is_empty() {
            state.covered.clear();
            state.blocked_until = None;
            return Next::Idle;
        }
        keys.sort_unstable();
        let turn = state.turn % keys.len();
        keys.rotate_left(turn);
        state.turn = state.turn.wrapping_add(1);
        state.covered = keys.iter().cloned().collect();
        let wait = earliest
            .map_or(POP_SLICE, |e| e.saturating_duration_since(now))
            .clamp(Duration::from_millis(1), POP_SLICE);
        state.blocked_until = Some(now + wait);
        Next::Pop(keys, wait)
    }

    /// Hands a popped message to the first receive still waiting for it;
    /// the closing sentinel ends every receive of the queue. `Some`: nobody
    /// took it.
    fn deliver(&self, queue: &str, item: Vec<u8>) -> Option<Vec<u8>> {
        let mut state = lock(&self.state);
        let waiters = state.waiting.get_mut(queue)?;
        if item == CLOSE_SENTINEL {
            for w in waiters.drain(..) {
                let _ = w.tx.send(Err(BackendError::Terminated));
            }
            return None;
        }
        let mut item = item;
        while let Some(w) = waiters.pop_front() {
            match w.tx.send(Ok(item)) {
                Ok(()) => return None,
                Err(Ok(back)) => item = back,
                Err(Err(_)) => return None,
            }
        }
        Some(item)
    }
}

/// A lane's task: pops for its receives until none is left.
async fn run<B: Queues>(backend: Arc<B>, lane: Arc<Lane>) {
    let mut conn: Option<MultiplexedConnection> = None;
    loop {
        let (keys, wait) = match lane.next(backend.shutdown()) {
            Next::Stop => return,
            Next::Idle => {
                let notified = lane.idle.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let stop = backend.shutdown().notify.notified();
                tokio::pin!(stop);
                stop.as_mut().enable();
                if lock(&lane.state).waiting.is_empty() && !backend.shutdown().is_set() {
                    tokio::select! {
                        _ = notified => {}
                        _ = stop => {}
                        // A lane idle this long ends (and starts again
                        // with its next receive).
                        _ = tokio::time::sleep(POP_SLICE * 5) => {
                            let mut state = lock(&lane.state);
                            if state.waiting.is_empty() {
                                state.running = false;
                                return;
                            }
                        }
                    }
                }
                continue;
            }
            Next::Pop(keys, wait) => (keys, wait),
        };
        let mut c = match conn.take() {
            Some(c) => c,
            None => match connect(backend.client()).await {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(POP_RETRY).await;
                    continue;
                }
            },
        };
        let popped: redis::RedisResult<Option<(String, Vec<u8>)>> = redis::cmd("BLPOP")
            .arg(&lane.wake_key)
            .arg(&keys)
            .arg(format!("{:.3}", wait.as_secs_f64()))
            .query_async(&mut c)
            .await;
        match popped {
            Ok(None) => conn = Some(c),
            Ok(Some((key, _))) if key == lane.wake_key => conn = Some(c),
            Ok(Some((queue, item))) => {
                conn = Some(c);
                let busy = backend.busy();
                if let Some(item) = lane.deliver(&queue, item) {
                    backend.put_back(&queue, item).await;
                }
                drop(busy);
            }
            // Redis restarting, or the connection broke: a new one.
            Err(_) => tokio::time::sleep(POP_RETRY).await,
        }
    }
}

/// A connection for a lane: a pop answers within its slice; past that plus
/// some slack, Redis is stuck and the connection is given up.
async fn connect(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(POP_SLICE + Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}
