//! The one tokio runtime behind every handle, started on first use.
//!
//! Threads do not survive `fork()`: the runtime remembers the pid that made
//! it, and a child process gets a fresh runtime on first use while the
//! parent's (whose threads the child does not have) is leaked, never
//! dropped, since dropping it would wait for threads that do not exist.
//! Handles remember their pid too ([`ProcessBound`]) and refuse to work in
//! a child.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};

use crate::error::{Error, Result};

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

/// This process's id, cached: every call checks it (fork safety) and
/// `getpid()` is a system call each time. A child of `fork()` refreshes it
/// in an atfork handler before any of its code runs.
static PID: AtomicU32 = AtomicU32::new(0);
/// Counts forks into this process's ancestry line, so that per-thread
/// state copied into a child (random bytes) can tell it is stale.
static FORK_GENERATION: AtomicU32 = AtomicU32::new(0);

extern "C" fn after_fork_in_child() {
    PID.store(std::process::id(), Ordering::Relaxed);
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// The id of this process.
pub fn current_pid() -> u32 {
    let pid = PID.load(Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    static HANDLER: Once = Once::new();
    HANDLER.call_once(|| {
        // SAFETY: registers a handler that only stores to atomics.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
    let pid = std::process::id();
    PID.store(pid, Ordering::Relaxed);
    pid
}

/// Changes in a child process after `fork()`.
pub fn fork_generation() -> u32 {
    current_pid(); // the handler is registered
    FORK_GENERATION.load(Ordering::Relaxed)
}

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
        match &*guard {
            Some(owned) if owned.pid == pid => Ok(owned.runtime),
            _ => {
                let runtime = self.build()?;
                *guard = Some(Owned { pid, runtime });
                Ok(runtime)
            }
        }
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
/// would only sleep otherwise (see `crate::direct`).
pub fn on_blocked_caller() -> bool {
    BLOCKED_CALLER.with(Cell::get)
}

/// Runs a future to completion on the runtime from a thread outside it
/// (every blocking C call does this on the caller's thread).
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
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

/// Marks a handle with the process that made it.
#[derive(Debug, Clone, Copy)]
pub struct ProcessBound {
    pid: u32,
}

impl Default for ProcessBound {
    fn default() -> Self {
        ProcessBound { pid: current_pid() }
    }
}

impl ProcessBound {
    /// `Closed` in a process other than the one that made the handle.
    pub fn check(&self, what: &str) -> Result<()> {
        let pid = current_pid();
        if pid == self.pid {
            Ok(())
        } else {
            Err(Error::closed(format!(
                "this {what} was made in process {} before fork(); in the child process {pid} make a new factory and client",
                self.pid
            )))
        }
    }
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
