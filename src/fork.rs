//! Fork tracking: which process this is, and handles bound to the process
//! that made them.
//!
//! HPC launchers fork. Threads do not survive `fork()`, so a child must not
//! use the parent's runtime or handles: handles remember the pid that made
//! them ([`ProcessBound`]) and refuse to work in a child, and per-thread
//! state copied into a child (random bytes) checks [`fork_generation`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use crate::error::{Error, Result};

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
            tracing::debug!(
                "fork detected: a {what} made in process {} was used in the child process {pid}",
                self.pid
            );
            Err(Error::closed(format!(
                "this {what} was made in process {} before fork(); in the child process {pid} make a new factory and client",
                self.pid
            )))
        }
    }
}
