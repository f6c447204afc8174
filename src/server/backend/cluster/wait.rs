//! Receives that wait for a message in a Redis Cluster.
//!
//! A `BLPOP` over the queues of many mailboxes (how one Redis shares its
//! waiting connections) is refused on a cluster: its keys must share one
//! slot. Instead every queued message is announced on its mailbox's
//! sharded pub/sub channel (`SPUBLISH`, by the script that queues it, on
//! the node that holds the queue), and each exchange process subscribes to
//! the channels of the mailboxes it has receives waiting for, over one
//! connection per node (the `redis` crate's cluster connection, which
//! sends each `SSUBSCRIBE` to the node of its slot and subscribes again
//! after it reconnects). An announcement makes the process take the next
//! message for the oldest receive waiting on that mailbox.
//!
//! Nothing waits for an announcement that may never come: a receive takes
//! once when it starts (unless a take found the queue empty since the
//! subscription was confirmed, and nothing was announced since) and once
//! more when its subscription is confirmed; a
//! node that moves a slot away ends the subscriptions of its channels
//! (each is subscribed again, where the slot lives now, then the mailbox is
//! taken from); when the slots change master ([`Waits::slots_moved`])
//! every subscription is made again and every waiting mailbox taken from;
//! and every [`SAFETY_TAKE`] each waiting mailbox is taken from anyway.
//!
//! Takes are idempotent per taker (see the `POP` script): a take whose
//! answer was lost, retried, gets the same message, so a failover or a
//! moving slot neither loses a message nor hands it out twice. A message
//! taken for a receive that has gone goes back to the head of its queue.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use crate::server::backend::cluster::counted::Counted;
use crate::server::backend::cluster::layout;
use crate::server::backend::model::{BResult, BackendError, Received, Shutdown};
use crate::server::backend::redis_calls::TaskGuard;
use crate::server::backend::redis_wait::CLOSE_SENTINEL;

/// How often waiting receives are checked for their deadlines.
const TICK: Duration = Duration::from_millis(100);
/// How often every mailbox watched is looked at (receives gone, failed
/// subscriptions, safety takes, subscriptions to drop): in ticks.
const SWEEP_TICKS: u32 = 10;
/// A waiting mailbox is taken from at least this often, announcement or
/// not.
pub(crate) const SAFETY_TAKE: Duration = Duration::from_secs(30);
/// A subscription outlives its last waiting receive this long (a listen
/// stream waits again right after each message).
const LINGER: Duration = Duration::from_secs(30);
/// Pause before a take that failed is tried again (its own retries, in
/// the `redis` crate, have waited out the usual failover already).
const TAKE_RETRY: Duration = Duration::from_secs(1);

/// What the waits need of the cluster backend.
pub(crate) trait Takes: Send + Sync + 'static {
    /// Takes the next message of the mailbox for `taker`; the same taker
    /// asking again before its next take gets the same message.
    fn take(
        &self,
        uid: &Uuid,
        taker: &str,
    ) -> impl Future<Output = BResult<Option<Vec<u8>>>> + Send;
    /// Puts a message back at the head of its queue.
    fn put_back(&self, uid: &Uuid, item: Vec<u8>) -> impl Future<Output = ()> + Send;
    /// Why the mailbox cannot be served now and will not be soon (its node
    /// is down for good), if so.
    fn unservable(&self, uid: &Uuid) -> Option<String>;
    fn shutdown(&self) -> &Shutdown;
    /// Held while a taken message is in hand (`stop` waits for it).
    fn busy(&self) -> TaskGuard;
}

struct Waiter {
    tx: oneshot::Sender<Received>,
    deadline: Instant,
    taker: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Subscription {
    None,
    Asked,
    Confirmed,
}

struct Watch {
    waiters: VecDeque<Waiter>,
    subscription: Subscription,
    /// A take loop runs for the mailbox; `again`: something was announced
    /// while it ran.
    taking: bool,
    again: bool,
    /// A take found the queue empty while subscribed, and nothing was
    /// announced since: a new receive need not take first.
    known_empty: bool,
    last_take: Instant,
    /// Since when nobody waits (for [`LINGER`]).
    idle_since: Option<Instant>,
    /// When the tick looks at this mailbox's deadlines next (it has an
    /// entry in [`Waits::deadlines`] for then).
    next_check: Option<Instant>,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            waiters: VecDeque::new(),
            subscription: Subscription::None,
            taking: false,
            again: false,
            known_empty: false,
            last_take: Instant::now(),
            idle_since: None,
            next_check: None,
        }
    }

    /// The earliest deadline of the receives still waiting.
    fn earliest(&self) -> Option<Instant> {
        self.waiters.iter().map(|w| w.deadline).min()
    }

    /// Answers the receives whose time is up and forgets those that have
    /// gone.
    fn prune(&mut self, now: Instant) {
        self.waiters.retain_mut(|w| {
            if w.tx.is_closed() {
                return false;
            }
            if w.deadline <= now {
                let (tx, _) = oneshot::channel();
                let _ = std::mem::replace(&mut w.tx, tx).send(Err(BackendError::Timeout));
                return false;
            }
            true
        });
        if self.waiters.is_empty() && self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
    }

    fn answer_all(&mut self, answer: impl Fn() -> Received) {
        for w in self.waiters.drain(..) {
            let _ = w.tx.send(answer());
        }
    }

    /// Hands a message to the oldest receive still waiting; `Some` when
    /// none took it.
    fn deliver(&mut self, item: Vec<u8>) -> Option<Vec<u8>> {
        let mut item = item;
        while let Some(w) = self.waiters.pop_front() {
            match w.tx.send(Ok(item)) {
                Ok(()) => return None,
                Err(Ok(back)) => item = back,
                Err(Err(_)) => return None,
            }
        }
        Some(item)
    }
}

/// The waiting receives of one backend and their subscriptions.
pub(crate) struct Waits {
    subscriber: ClusterConnection<Counted>,
    watches: Mutex<HashMap<Uuid, Watch>>,
    /// When each waiting receive's time is up (so that a tick answers
    /// those without looking at every mailbox).
    deadlines: Mutex<BinaryHeap<Reverse<(Instant, Uuid)>>>,
    /// Names this process's takers.
    process: Uuid,
    next_taker: AtomicU64,
}

fn lock(m: &Mutex<HashMap<Uuid, Watch>>) -> MutexGuard<'_, HashMap<Uuid, Watch>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The channel name in a subscription push.
fn channel_of(push: &PushInfo) -> Option<Uuid> {
    match push.data.first()? {
        Value::BulkString(b) => layout::uid_of_channel(b),
        Value::SimpleString(s) => layout::uid_of_channel(s.as_bytes()),
        _ => None,
    }
}

impl Waits {
    /// The waits over `subscriber`, a RESP3 cluster connection.
    pub(crate) fn new(subscriber: ClusterConnection<Counted>) -> Arc<Waits> {
        Arc::new(Waits {
            subscriber,
            watches: Mutex::new(HashMap::new()),
            deadlines: Mutex::new(BinaryHeap::new()),
            process: Uuid::new_v4(),
            next_taker: AtomicU64::new(0),
        })
    }

    /// Starts reading the subscriber's pushes (from `pushes`) and the
    /// tick; both run until `backend` is dropped or stops.
    pub(crate) fn start<B: Takes>(
        &self,
        backend: Weak<B>,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
        waits_of: fn(&B) -> &Arc<Waits>,
    ) {
        tokio::spawn(read_pushes(backend.clone(), waits_of, pushes));
        tokio::spawn(tick(backend, waits_of));
    }

    /// Has the tick look at the mailbox's deadlines at `at`.
    fn check_at(&self, at: Instant, uid: Uuid) {
        self.deadlines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Reverse((at, uid)));
    }

    /// A name for the takes of one receive.
    pub(crate) fn new_taker(&self) -> String {
        format!(
            "{}:{}",
            self.process,
            self.next_taker.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Waits until `deadline` for the next message of the mailbox; the
    /// answer comes on `tx`.
    pub(crate) fn wait<B: Takes>(
        self: &Arc<Self>,
        backend: &Arc<B>,
        uid: Uuid,
        tx: oneshot::Sender<Received>,
        deadline: Instant,
    ) {
        let taker = self.new_taker();
        let (subscribe, take) = {
            let mut watches = lock(&self.watches);
            let watch = watches.entry(uid).or_insert_with(Watch::new);
            watch.waiters.push_back(Waiter {
                tx,
                deadline,
                taker,
            });
            if watch.next_check.is_none_or(|at| deadline < at) {
                watch.next_check = Some(deadline);
                self.check_at(deadline, uid);
            }
            watch.idle_since = None;
            let subscribe = watch.subscription == Subscription::None;
            let known_empty = watch.known_empty && watch.subscription == Subscription::Confirmed;
            (subscribe, !known_empty)
        };
        if subscribe {
            self.subscribe(backend, uid);
        }
        if take {
            self.take_for(backend, uid);
        }
    }

    /// Subscribes to the mailbox's channel in the background, then takes.
    fn subscribe<B: Takes>(self: &Arc<Self>, backend: &Arc<B>, uid: Uuid) {
        if let Some(watch) = lock(&self.watches).get_mut(&uid) {
            // Until confirmed, nothing is known of what was queued.
            watch.subscription = Subscription::Asked;
            watch.known_empty = false;
        }
        let (waits, backend) = (self.clone(), backend.clone());
        tokio::spawn(async move {
            let mut conn = waits.subscriber.clone();
            let done = conn.ssubscribe(layout::wake_channel(&uid)).await;
            if let Some(watch) = lock(&waits.watches).get_mut(&uid) {
                watch.subscription = match done {
                    Ok(()) => Subscription::Confirmed,
                    // Tried again by the tick.
                    Err(_) => Subscription::None,
                };
            }
            waits.take_for(&backend, uid);
        });
    }

    /// Starts a take loop for the mailbox, or tells the running one to go
    /// round again (something may have been queued).
    fn take_for<B: Takes>(self: &Arc<Self>, backend: &Arc<B>, uid: Uuid) {
        {
            let mut watches = lock(&self.watches);
            let Some(watch) = watches.get_mut(&uid) else {
                return;
            };
            watch.known_empty = false;
            if watch.taking {
                watch.again = true;
                return;
            }
            if watch.waiters.is_empty() {
                return;
            }
            watch.taking = true;
            watch.again = false;
        }
        tokio::spawn(take_loop(self.clone(), backend.clone(), uid));
    }

    /// The slots changed master: every subscription is made again (where
    /// its slot lives now) and every waiting mailbox taken from.
    pub(crate) fn slots_moved<B: Takes>(self: &Arc<Self>, backend: &Arc<B>) {
        let uids: Vec<Uuid> = lock(&self.watches).keys().copied().collect();
        for uid in uids {
            self.subscribe(backend, uid);
        }
    }

    /// Waiting receives, and mailboxes subscribed to.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let watches = lock(&self.watches);
        (
            watches.values().map(|w| w.waiters.len()).sum(),
            watches.len(),
        )
    }
}

/// What a take loop does after a take.
enum Next {
    Stop,
    Again,
    PutBack(Vec<u8>),
    Retry,
}

/// Takes for the mailbox's waiting receives until its queue is empty or
/// nobody waits.
async fn take_loop<B: Takes>(waits: Arc<Waits>, backend: Arc<B>, uid: Uuid) {
    loop {
        let (taker, subscribed) = {
            let mut watches = lock(&waits.watches);
            let Some(watch) = watches.get_mut(&uid) else {
                return;
            };
            watch.prune(Instant::now());
            let Some(first) = watch.waiters.front() else {
                watch.taking = false;
                return;
            };
            watch.again = false;
            watch.last_take = Instant::now();
            (
                first.taker.clone(),
                watch.subscription == Subscription::Confirmed,
            )
        };
        let busy = backend.busy();
        let taken = backend.take(&uid, &taker).await;
        let next = after_take(&waits, backend.as_ref(), uid, taken, subscribed);
        match next {
            Next::Stop => return,
            Next::Again => {}
            Next::PutBack(item) => backend.put_back(&uid, item).await,
            Next::Retry => tokio::time::sleep(TAKE_RETRY).await,
        }
        drop(busy);
    }
}

/// Hands what a take got to the waiting receives.
fn after_take<B: Takes>(
    waits: &Waits,
    backend: &B,
    uid: Uuid,
    taken: BResult<Option<Vec<u8>>>,
    subscribed: bool,
) -> Next {
    let mut watches = lock(&waits.watches);
    let Some(watch) = watches.get_mut(&uid) else {
        // Forgotten meanwhile (the server stops): back to the queue.
        return match taken {
            Ok(Some(item)) if item != CLOSE_SENTINEL => Next::PutBack(item),
            _ => Next::Stop,
        };
    };
    let stop = |watch: &mut Watch| {
        watch.taking = false;
        Next::Stop
    };
    match taken {
        Ok(Some(item)) if item == CLOSE_SENTINEL => {
            watch.answer_all(|| Err(BackendError::Terminated));
            stop(watch)
        }
        Ok(Some(item)) => match watch.deliver(item) {
            Some(item) => Next::PutBack(item),
            None => Next::Again,
        },
        Ok(None) if watch.again => Next::Again,
        Ok(None) => {
            // Empty, and any message queued from now on is announced.
            watch.known_empty = subscribed;
            stop(watch)
        }
        Err(e) => {
            if let Some(why) = backend.unservable(&uid) {
                watch.answer_all(|| Err(BackendError::Unavailable(why.clone())));
                return stop(watch);
            }
            tracing::debug!("Redis Cluster: a take for {uid} failed ({e:?}); trying again");
            Next::Retry
        }
    }
}

/// Answers the receives whose time is up (every tick), and every
/// [`SWEEP_TICKS`] forgets receives that have gone, takes for mailboxes not
/// taken from lately, subscribes where a subscription failed, and drops
/// subscriptions nobody has used for a while.
async fn tick<B: Takes>(backend: Weak<B>, waits_of: fn(&B) -> &Arc<Waits>) {
    for n in 1u32.. {
        tokio::time::sleep(TICK).await;
        let Some(backend) = backend.upgrade() else {
            return;
        };
        let waits = waits_of(&backend).clone();
        let now = Instant::now();
        if backend.shutdown().is_set() {
            for (_, mut watch) in lock(&waits.watches).drain() {
                watch.answer_all(|| Err(BackendError::ShuttingDown));
            }
            return;
        }
        let due: Vec<Uuid> = {
            let mut deadlines = waits.deadlines.lock().unwrap_or_else(|p| p.into_inner());
            let mut due = Vec::new();
            while deadlines.peek().is_some_and(|Reverse((at, _))| *at <= now) {
                if let Some(Reverse((_, uid))) = deadlines.pop() {
                    due.push(uid);
                }
            }
            due
        };
        {
            let mut watches = lock(&waits.watches);
            for uid in due {
                let Some(watch) = watches.get_mut(&uid) else {
                    continue;
                };
                if watch.next_check.is_some_and(|at| at > now) {
                    continue; // An earlier entry, since moved on.
                }
                watch.prune(now);
                watch.next_check = watch.earliest();
                if let Some(at) = watch.next_check {
                    waits.check_at(at, uid);
                }
            }
        }
        if n % SWEEP_TICKS == 0 {
            sweep(&waits, &backend, now);
        }
    }
}

/// [`tick`]'s look at every mailbox watched.
fn sweep<B: Takes>(waits: &Arc<Waits>, backend: &Arc<B>, now: Instant) {
    let (mut take, mut subscribe, mut leave) = (Vec::new(), Vec::new(), Vec::new());
    lock(&waits.watches).retain(|uid, watch| {
        watch.prune(now);
        if watch.waiters.is_empty() {
            let idle = watch.idle_since.is_some_and(|t| now - t >= LINGER);
            if idle && !watch.taking {
                leave.push(*uid);
                return false;
            }
            return true;
        }
        if watch.subscription == Subscription::None {
            subscribe.push(*uid);
        } else if now - watch.last_take >= SAFETY_TAKE {
            take.push(*uid);
        }
        true
    });
    for uid in subscribe {
        waits.subscribe(backend, uid);
    }
    for uid in take {
        waits.take_for(backend, uid);
    }
    if !leave.is_empty() {
        let mut conn = waits.subscriber.clone();
        tokio::spawn(async move {
            for uid in leave {
                let _ = conn.sunsubscribe(layout::wake_channel(&uid)).await;
            }
        });
    }
}

/// Reacts to what the nodes push: an announcement or a confirmed
/// subscription makes the process take for the mailbox; a subscription the
/// node ended (its slot moved away) is made again.
async fn read_pushes<B: Takes>(
    backend: Weak<B>,
    waits_of: fn(&B) -> &Arc<Waits>,
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
) {
    while let Some(push) = pushes.recv().await {
        let Some(backend) = backend.upgrade() else {
            return;
        };
        if backend.shutdown().is_set() {
            return;
        }
        let waits = waits_of(&backend).clone();
        match push.kind {
            PushKind::SMessage => {
                if let Some(uid) = channel_of(&push) {
                    waits.take_for(&backend, uid);
                }
            }
            PushKind::SSubscribe => {
                if let Some(uid) = channel_of(&push) {
                    if let Some(w) = lock(&waits.watches).get_mut(&uid) {
                        w.subscription = Subscription::Confirmed;
                    }
                    waits.take_for(&backend, uid);
                }
            }
            PushKind::SUnsubscribe => {
                let Some(uid) = channel_of(&push) else {
                    continue;
                };
                // Still watched: the node let go of the slot, not we.
                if lock(&waits.watches).contains_key(&uid) {
                    waits.subscribe(&backend, uid);
                }
            }
            PushKind::Disconnection => {
                // The crate subscribes again on the new connection; the
                // confirmations make the takes. Meanwhile, take anyway.
                let uids: Vec<Uuid> = lock(&waits.watches).keys().copied().collect();
                for uid in uids {
                    waits.take_for(&backend, uid);
                }
            }
            _ => {}
        }
    }
}
