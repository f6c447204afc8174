//! Panics inside libacademy are the library's business, not its host
//! program's: a C library must not print on its host's stderr. A panic
//! hook, installed once, records the text (message and location) of a
//! panic that happens inside the library (inside an exported function,
//! see [`quiet`], or on one of the library's own threads) for the caller's
//! `academy_last_error`, and prints nothing; it hands every other panic to
//! the hook that was installed before it (the host program's, or Rust's
//! default), so the host's own panics look as they always did.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::sync::Once;

thread_local! {
    /// How many library calls this thread is inside.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Set on the library's own threads, which run nothing but its code.
    static LIBRARY_THREAD: Cell<bool> = const { Cell::new(false) };
    /// The text of this thread's last panic inside the library.
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

static INSTALL: Once = Once::new();

/// Installs the hook (once per process), chained to the one before it.
pub fn install() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if inside() {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                let text = describe(info.payload(), at);
                LAST.with(|last| *last.borrow_mut() = Some(text));
            } else {
                previous(info);
            }
        }));
    });
}

/// Whether this thread runs library code now.
pub fn inside() -> bool {
    DEPTH.with(Cell::get) > 0 || LIBRARY_THREAD.with(Cell::get)
}

/// Runs `f` as library code: a panic in it is recorded, not printed (the
/// caller catches it and takes the text with [`take_last`]).
pub fn quiet<R>(f: impl FnOnce() -> R) -> R {
    install();
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        }
    }
    DEPTH.with(|d| d.set(d.get() + 1));
    let _leave = Leave;
    f()
}

/// Marks the calling thread as one of the library's own for its life.
pub fn mark_library_thread() {
    install();
    LIBRARY_THREAD.with(|t| t.set(true));
}

/// The text of this thread's last panic inside the library, taken.
pub fn take_last() -> Option<String> {
    LAST.with(|last| last.borrow_mut().take())
}

fn describe(payload: &(dyn Any + Send), at: Option<String>) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    match at {
        Some(at) => format!("{message} (at {at})"),
        None => message,
    }
}
