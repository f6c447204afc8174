//! The one tokio runtime behind every handle, started on first use.
//!
//! Threads do not survive `fork()`: the runtime remembers the pid that made
//! it, and a child process gets a fresh runtime on first use while the
//! parent's (whose threads the child does not have) is leaked, never
//! dropped, since dropping it would wait for threads that do not exist.
//! Handles remember their pid too ([`ProcessBound`]) and refuse to work in
//! a child.

use std::future::Future;
use std::sync::Mutex;

use once_cell::sync::Lazy;
use tokio::runtime::{Handle, Runtime};

use crate::error::{Error, Result};

struct Owned {
    pid: u32,
    runtime: &'static Runtime,
}

static RUNTIME: Lazy<Mutex<Option<Owned>>> = Lazy::new(|| Mutex::new(None));

/// The id of this process.
pub fn current_pid() -> u32 {
    std::process::id()
}

fn build() -> Result<&'static Runtime> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("academy-rt")
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the tokio runtime: {e}")))?;
    Ok(Box::leak(Box::new(runtime)))
}

/// The runtime of this process, started on first use.
pub fn runtime() -> Result<&'static Runtime> {
    let mut guard = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    let pid = current_pid();
    match &*guard {
        Some(owned) if owned.pid == pid => Ok(owned.runtime),
        _ => {
            let runtime = build()?;
            *guard = Some(Owned { pid, runtime });
            Ok(runtime)
        }
    }
}

/// A handle to the runtime, for spawning background tasks.
pub fn handle() -> Result<Handle> {
    Ok(runtime()?.handle().clone())
}

/// Runs a future to completion on the runtime from a thread outside it
/// (every blocking C call does this on the caller's thread).
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
    if Handle::try_current().is_ok() {
        return Err(Error::invalid(
            "a blocking libacademy call was made from inside the library's own runtime",
        ));
    }
    Ok(runtime()?.block_on(future))
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
