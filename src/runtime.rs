//! The one tokio runtime behind every handle, started on first use.
//!
//! Threads do not survive `fork()`: the runtime remembers the pid that made
//! it, and a child process gets a fresh runtime on first use while the
//! parent's (whose threads the child does not have) is leaked, never
//! dropped, since dropping it would wait for threads that do not exist.
//! Handles remember their pid too ([`crate::fork::ProcessBound`]) and refuse to work in
//! a child.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};

use crate::error::{Error, Result};
use crate::fork::current_pid;

struct Owned {
    pid: u32,
    runtime: &'static Runtime,
}

/// One lazily started runtime, remade in a child process after fork().
struct Slot {
    name: &'static str,
    /// Environment variable that sets the number of worker threads.
    threads_var: &'static str,
    default_threads: usize,
    /// Whether its threads count as the library's client threads
    /// ([`on_library_thread`]).
    marks_threads: bool,
    owned: Mutex<Option<Owned>>,
}

/// The library's runtime: clients' listeners, heartbeats and requests.
/// One worker by default: a client's work is small and latency-bound, and
/// with a second worker every request also wakes (and costs) a second
/// thread, about a third of a send's CPU time on a 2-core machine.
static CLIENTS: Slot = Slot {
    name: "academy-rt",
    threads_var: "ACADEMY_RUNTIME_THREADS",
    default_threads: 1,
    marks_threads: true,
    owned: Mutex::new(None),
};

/// The runtime of exchange servers started in this process
/// (`academy_exchange_spawn`): their own threads, so that a busy server
/// and the process's clients do not slow each other down.
static SERVERS: Slot = Slot {
    name: "academy-exchange",
    threads_var: "ACADEMY_EXCHANGE_THREADS",
    default_threads: 2,
    marks_threads: false,
    owned: Mutex::new(None),
};

impl Slot {
    /// Worker threads: the environment variable (1 to 64), or the default.
    fn threads(&self) -> usize {
        std::env::var(self.threads_var)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| (1..=64).contains(n))
            .unwrap_or(self.default_threads)
    }

    fn build(&self) -> Result<&'static Runtime> {
        let marks = self.marks_threads;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads())
            .thread_name(self.name)
            .on_thread_start(move || {
                // Panics on the library's threads are not printed on the
                // host program's stderr.
                crate::panics::mark_library_thread();
                if marks {
                    LIBRARY_THREAD.with(|b| b.set(true));
                }
            })
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("cannot start the tokio runtime: {e}")))?;
        Ok(Box::leak(Box::new(runtime)))
    }

    fn get(&self) -> Result<&'static Runtime> {
        let mut guard = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        let pid = current_pid();
        let parent = match &*guard {
            Some(owned) if owned.pid == pid => return Ok(owned.runtime),
            other => other.as_ref().map(|o| o.pid),
        };
        let runtime = self.build()?;
        *guard = Some(Owned { pid, runtime });
        drop(guard);
        // Logged after the lock: the log callback may call the library.
        if let Some(parent) = parent {
            tracing::debug!(
                runtime = self.name,
                "fork detected: process {pid} is a child of {parent}; its runtime's threads did not come along, started a fresh one"
            );
        }
        Ok(runtime)
    }
}

/// The runtime of this process, started on first use.
pub fn runtime() -> Result<&'static Runtime> {
    CLIENTS.get()
}

/// A handle to the runtime, for spawning background tasks.
pub fn handle() -> Result<Handle> {
    Ok(runtime()?.handle().clone())
}

/// A handle to the runtime of embedded exchange servers.
pub fn server_handle() -> Result<Handle> {
    Ok(SERVERS.get()?.handle().clone())
}

thread_local! {
    /// Set while this thread is blocked in [`block_on`].
    static BLOCKED_CALLER: Cell<bool> = const { Cell::new(false) };
    /// Set on the threads of the library's client runtime.
    static LIBRARY_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is one of the library's client runtime:
/// sockets registered there are driven for as long as the process lives,
/// unlike those of a runtime a Rust caller made (and may stop polling).
pub fn on_library_thread() -> bool {
    LIBRARY_THREAD.with(Cell::get)
}

/// Whether the current thread is a caller blocked in [`block_on`] (not a
/// runtime worker): such a thread may do its own blocking I/O, since it
/// would only sleep otherwise (see `crate::transport::http1`).
pub fn on_blocked_caller() -> bool {
    BLOCKED_CALLER.with(Cell::get)
}

/// `InvalidArgument` on a thread that may not wait in the library: one
/// running the program's log callback, which holds up the thread that
/// logged (a runtime thread whose work the wait may need, the embedded
/// exchange's, or the program's own inside another call). Every call that
/// waits asks this first.
pub fn may_wait() -> Result<()> {
    if crate::logging::in_sink() {
        return Err(Error::invalid(
            "a libacademy call that waits cannot be made from inside the log callback \
             (it would hold up the thread that logged); queue the work and do it on a thread of your own",
        ));
    }
    Ok(())
}

/// Runs a future to completion on the runtime from a thread outside it
/// (every blocking C call does this on the caller's thread).
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
    may_wait()?;
    if Handle::try_current().is_ok() {
        return Err(Error::invalid(
            "a blocking libacademy call was made from inside the library's own runtime",
        ));
    }
    let runtime = runtime()?;
    struct Unmark;
    impl Drop for Unmark {
        fn drop(&mut self) {
            BLOCKED_CALLER.with(|b| b.set(false));
        }
    }
    BLOCKED_CALLER.with(|b| b.set(true));
    let _unmark = Unmark;
    Ok(runtime.block_on(future))
}

/// `future`, polled over and over (yielding the CPU to any other runnable
/// thread in between) instead of sleeping, for up to `budget` while the
/// caller is a thread blocked in [`block_on`]; after that, or on a runtime
/// thread, it waits as usual. See `FactoryOptions::busy_poll` for why.
pub async fn busy_polled<F: Future>(future: F, budget: Duration) -> F::Output {
    let mut until =
        (budget > Duration::ZERO && on_blocked_caller()).then(|| Instant::now() + budget);
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        let poll = future.as_mut().poll(cx);
        if poll.is_pending() {
            match until {
                Some(t) if Instant::now() < t => {
                    std::thread::yield_now();
                    cx.waker().wake_by_ref(); // poll again rather than park
                }
                _ => until = None,
            }
        }
        poll
    })
    .await
}

/// While a caller is blocked on a call to an agent, the library's runtime
/// thread polls too instead of sleeping (see [`keep_runtime_awake`]).
static AWAKE_CALLS: AtomicU32 = AtomicU32::new(0);
/// Until when (microseconds after [`AWAKE_EPOCH`]) the latest caller asked.
static AWAKE_UNTIL: AtomicU64 = AtomicU64::new(0);
static AWAKE_EPOCH: once_cell::sync::Lazy<Instant> = once_cell::sync::Lazy::new(Instant::now);
/// Whether the task that keeps the runtime thread awake is running.
static KEEPING_AWAKE: AtomicBool = AtomicBool::new(false);

fn awake_micros() -> u64 {
    AWAKE_EPOCH.elapsed().as_micros() as u64
}

/// Whether a blocked caller still wants the runtime thread awake.
fn wanted_awake() -> bool {
    AWAKE_CALLS.load(Ordering::Acquire) > 0 && awake_micros() < AWAKE_UNTIL.load(Ordering::Acquire)
}

/// Ends a caller's claim on the runtime thread's attention.
#[must_use]
pub struct AwakeGuard(());

impl Drop for AwakeGuard {
    fn drop(&mut self) {
        AWAKE_CALLS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Keeps the library's runtime thread from sleeping until the guard is
/// dropped or `budget` passes, so that every hop of a round trip that
/// comes back through it (the agent's listen stream, the answer on the
/// user's) finds its CPU awake; the blocked caller polls on its own CPU
/// (see [`busy_polled`]). Whoever else is runnable gets the CPU: the task
/// yields to tokio and to the kernel in every turn. One task serves all
/// callers; zero `budget` or a caller that is not blocked: nothing.
pub fn keep_runtime_awake(budget: Duration) -> Option<AwakeGuard> {
    if budget.is_zero() || !on_blocked_caller() {
        return None;
    }
    let handle = handle().ok()?;
    AWAKE_UNTIL.fetch_max(awake_micros() + budget.as_micros() as u64, Ordering::AcqRel);
    AWAKE_CALLS.fetch_add(1, Ordering::AcqRel);
    let guard = AwakeGuard(());
    if !KEEPING_AWAKE.swap(true, Ordering::AcqRel) {
        handle.spawn(async {
            loop {
                while wanted_awake() {
                    std::thread::yield_now();
                    tokio::task::yield_now().await;
                }
                KEEPING_AWAKE.store(false, Ordering::Release);
                // A caller that came between the last check and the store
                // found the task running: keep going for it.
                if !wanted_awake() || KEEPING_AWAKE.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        });
    }
    Some(guard)
}
