//! The rules every C handle follows, in one place: how a Rust value
//! becomes an opaque pointer, how each call gets it back, how it is freed,
//! what a forked child may do with it, and the panic boundary that every
//! exported function runs in.
//!
//! # Handles are checked, never trusted
//!
//! A handle given to C is not the address of its value but a token: the
//! index of a slot in a registry of live handles of its type, and that
//! slot's generation. Every call looks the token up ([`get`]), so a handle
//! used after it was freed, freed twice, or passed as the wrong type finds
//! no live slot and the call answers `ACADEMY_ERR_CLOSED` instead of
//! reading freed memory. A call holds its own reference (`Arc`) to the
//! value while it runs, so freeing a client while another thread is
//! blocked on it closes the client (that thread wakes with CLOSED) and the
//! memory goes when the last call returns.
//!
//! The cost is one read lock and one reference count per call: a few tens
//! of nanoseconds against the microseconds of the cheapest call that talks
//! to an exchange.
//!
//! Tokens are `generation << 36 | (index + 1) << 4 | type`: never NULL,
//! never taken for a handle of another type, and never an address a
//! program could own (generations start at 2^11, so every token is at
//! least 2^47, and user-space addresses are below 2^47), so Go's and
//! Julia's garbage collectors treat them as foreign pointers. Up to 2^32 - 1
//! handles of one type may be live at once.
//!
//! A stale handle must never match a live one, however long the process
//! runs: a slot's generation (28 bits) goes up by one each time the slot
//! is freed, and a slot whose generation reached the last value is retired,
//! never handed out again, instead of wrapping around. A slot serves about
//! 268 million handles one after another; retiring one costs the 16 bytes
//! of its entry.
//!
//! # fork()
//!
//! Each slot remembers the process that made it. In a forked child, a
//! handle of the parent answers `ACADEMY_ERR_CLOSED` with a message saying
//! why, and freeing it only forgets it: its threads and tasks belong to
//! the parent's runtime, which the child does not have.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, RwLock};

use super::status::academy_status;
use crate::error::{Error, Result};
use crate::fork::current_pid;

/// A Rust value that C holds through an opaque handle.
pub(crate) trait Handle: Send + Sync + Sized + 'static {
    /// What the handle is called in error messages, e.g. "client".
    const NAME: &'static str;

    /// A number of its own (1 to 15), part of every token, so that a
    /// handle of one type is never taken for one of another.
    const TAG: usize;

    /// The registry of the live handles of this type.
    fn registry() -> &'static Registry<Self>;
}

/// One slot of a [`Registry`].
struct Slot<T> {
    generation: u32,
    /// The process that made the handle.
    pid: u32,
    value: Option<Arc<T>>,
}

struct Slots<T> {
    slots: Vec<Slot<T>>,
    /// Indices of empty slots, reused before the vector grows.
    free: Vec<usize>,
}

/// The live handles of one type.
pub(crate) struct Registry<T> {
    slots: RwLock<Slots<T>>,
    _type: PhantomData<T>,
}

const INDEX_BITS: u32 = 32;
const INDEX_SHIFT: u32 = 4;
const GENERATION_SHIFT: u32 = INDEX_SHIFT + INDEX_BITS;
/// A new slot's generation: the smallest that puts a token above every
/// user-space address (2^47).
const FIRST_GENERATION: u32 = 1 << (47 - GENERATION_SHIFT);
/// The last generation a slot may have; then it is retired.
const LAST_GENERATION: u32 = (1 << (usize::BITS - GENERATION_SHIFT)) - 1;

fn token(tag: usize, index: usize, generation: u32) -> usize {
    ((generation as usize) << GENERATION_SHIFT) | ((index + 1) << INDEX_SHIFT) | tag
}

/// The slot index and generation of a token of type `tag`, if it is one.
fn untoken(tag: usize, token: usize) -> Option<(usize, u32)> {
    let low = token & ((1 << INDEX_SHIFT) - 1);
    let index = (token >> INDEX_SHIFT) & ((1 << INDEX_BITS) - 1);
    let generation = (token >> GENERATION_SHIFT) as u32;
    (low == tag && index > 0 && generation >= FIRST_GENERATION).then(|| (index - 1, generation))
}

// Tokens need 64-bit pointers.
const _: () = assert!(
    usize::BITS == 64,
    "libacademy's handles need a 64-bit platform"
);

impl<T> Registry<T> {
    pub(crate) const fn new() -> Self {
        Registry {
            slots: RwLock::new(Slots {
                slots: Vec::new(),
                free: Vec::new(),
            }),
            _type: PhantomData,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Slots<T>> {
        self.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Slots<T>> {
        self.slots.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the generation of the slot of a live handle (for tests: a slot
    /// near its last generation without freeing it 2^28 times).
    #[cfg(test)]
    fn set_generation(&self, token: usize, tag: usize, generation: u32) -> usize {
        let (index, _) = untoken(tag, token).expect("a token");
        self.write().slots[index].generation = generation;
        self::token(tag, index, generation)
    }

    /// How many handles of this type are live (for tests).
    #[cfg(test)]
    fn live(&self) -> usize {
        self.read()
            .slots
            .iter()
            .filter(|s| s.value.is_some())
            .count()
    }
}

/// Registers `value` and returns its handle for C.
pub(crate) fn new_handle<T: Handle>(value: T) -> *mut T {
    let mut slots = T::registry().write();
    let pid = current_pid();
    let value = Some(Arc::new(value));
    let index = match slots.free.pop() {
        Some(index) => {
            let slot = &mut slots.slots[index];
            slot.pid = pid;
            slot.value = value;
            index
        }
        None => {
            // Beyond 2^32 - 1 live handles of one type a token has no room.
            assert!(
                slots.slots.len() < (1 << INDEX_BITS) - 1,
                "more than 2^32 - 1 live {} handles",
                T::NAME
            );
            slots.slots.push(Slot {
                generation: FIRST_GENERATION,
                pid,
                value,
            });
            slots.slots.len() - 1
        }
    };
    token(T::TAG, index, slots.slots[index].generation) as *mut T
}

/// The value behind a handle, checked: `INVALID_ARGUMENT` for NULL,
/// `CLOSED` for a handle that was freed (or is not a handle of this type)
/// and for a handle of the parent process in a forked child.
pub(crate) fn get<T: Handle>(ptr: *const T, arg: &str) -> Result<Arc<T>> {
    if ptr.is_null() {
        return Err(Error::invalid(format!("{arg} must not be NULL")));
    }
    let freed = || {
        Error::closed(format!(
            "{arg} is not a live {}: it was freed, or it is not a {} handle",
            T::NAME,
            T::NAME
        ))
    };
    let (index, generation) = untoken(T::TAG, ptr as usize).ok_or_else(freed)?;
    let slots = T::registry().read();
    let slot = slots
        .slots
        .get(index)
        .filter(|s| s.generation == generation)
        .ok_or_else(freed)?;
    let value = slot.value.as_ref().ok_or_else(freed)?;
    let pid = current_pid();
    if slot.pid != pid {
        return Err(Error::closed(format!(
            "this {} was made in process {} before fork(); in the child process {pid} make a new factory and client",
            T::NAME,
            slot.pid
        )));
    }
    Ok(value.clone())
}

/// Takes a handle out of the registry: later calls with it answer CLOSED.
/// Returns the value if this process made it; a forked child's copy of a
/// parent's value is forgotten, never dropped (its threads and tasks are
/// the parent's). NULL and handles already freed: `None`.
pub(crate) fn take<T: Handle>(ptr: *const T) -> Option<Arc<T>> {
    let (index, generation) = untoken(T::TAG, ptr as usize)?;
    let mut slots = T::registry().write();
    let slot = slots
        .slots
        .get_mut(index)
        .filter(|s| s.generation == generation && s.value.is_some())?;
    let value = slot.value.take();
    let made_here = slot.pid == current_pid();
    // Retired rather than wrapped: its old handles stay dead for good.
    if slot.generation < LAST_GENERATION {
        slot.generation += 1;
        slots.free.push(index);
    }
    drop(slots);
    if made_here {
        value
    } else {
        std::mem::forget(value);
        None
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Text for C: a NUL inside (which C cannot see past) is written `\0`.
pub(crate) fn c_text(text: &str) -> CString {
    CString::new(text.replace('\0', "\\0")).unwrap_or_default()
}

fn set_last_error(text: &str) {
    LAST_ERROR.with(|e| *e.borrow_mut() = c_text(text));
}

/// The text of a caught panic: as the panic hook recorded it, with its
/// location (see [`crate::panics`]), else its payload.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let what = crate::panics::take_last().unwrap_or_else(|| {
        panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned())
    });
    format!("internal error in libacademy (please report): {what}")
}

/// Runs the body of an exported function that returns a status: catches
/// panics (`ACADEMY_ERR_INTERNAL`), records the error text for
/// `academy_last_error` ("" on success), and returns the status.
pub(crate) fn boundary<F: FnOnce() -> Result<()>>(f: F) -> academy_status {
    // The first C call sets up ACADEMY_LOG (see crate::logging).
    crate::logging::init_from_env();
    match crate::panics::quiet(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(Ok(())) => {
            set_last_error("");
            academy_status::ACADEMY_OK
        }
        Ok(Err(err)) => {
            set_last_error(&err.message);
            err.status.into()
        }
        Err(panic) => {
            set_last_error(&panic_text(&*panic));
            academy_status::ACADEMY_ERR_INTERNAL
        }
    }
}

/// Runs the body of an exported function that returns no status (getters,
/// frees): a panic gives `fallback` (and its text to `academy_last_error`),
/// never an unwind into C.
pub(crate) fn boundary_or<T, F: FnOnce() -> T>(fallback: T, f: F) -> T {
    match crate::panics::quiet(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(value) => value,
        Err(panic) => {
            set_last_error(&panic_text(&*panic));
            fallback
        }
    }
}

/// Details of this thread's last libacademy call if it failed.
///
/// The text says what went wrong: the URL and HTTP status, the server's text,
/// the remote exception; it never contains a token.
///
/// @return "" if the last call succeeded, else the text. The string belongs
///         to the library and stays valid until this thread's next libacademy
///         call: copy it to keep it; never free it. Never NULL.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe: each thread has its own last error.
/// @ingroup basics
#[no_mangle]
pub extern "C" fn academy_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Status;
    use std::ffi::CStr;

    #[derive(Debug)]
    struct Thing(u32);
    static THINGS: Registry<Thing> = Registry::new();
    impl Handle for Thing {
        const NAME: &'static str = "thing";
        const TAG: usize = 14;
        fn registry() -> &'static Registry<Self> {
            &THINGS
        }
    }

    #[derive(Debug)]
    struct Other;
    static OTHERS: Registry<Other> = Registry::new();
    impl Handle for Other {
        const NAME: &'static str = "other";
        const TAG: usize = 15;
        fn registry() -> &'static Registry<Self> {
            &OTHERS
        }
    }

    fn last() -> String {
        unsafe { CStr::from_ptr(academy_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn handles_are_checked_on_every_use() {
        let a = new_handle(Thing(7));
        assert_eq!(get(a, "a").unwrap().0, 7);
        let held = get(a, "a").unwrap();
        assert_eq!(take(a).map(|t| t.0), Some(7));
        assert_eq!(held.0, 7, "a call in progress keeps its value");
        // Use after free, double free.
        assert_eq!(get(a, "a").unwrap_err().status, Status::Closed);
        assert!(take(a).is_none());
        // The slot is reused with a new generation: the old handle stays dead.
        let b = new_handle(Thing(8));
        assert_ne!(a, b);
        assert_eq!(get(a, "a").unwrap_err().status, Status::Closed);
        assert_eq!(get(b, "b").unwrap().0, 8);
        // NULL, garbage, and a handle of another type.
        let null: *const Thing = std::ptr::null();
        assert_eq!(get(null, "x").unwrap_err().status, Status::InvalidArgument);
        for junk in [1usize, 0x1000, 0xdead_beef, usize::MAX] {
            assert_eq!(
                get(junk as *const Thing, "x").unwrap_err().status,
                Status::Closed
            );
        }
        let other = new_handle(Other);
        let err = get(other as *const Thing, "x").unwrap_err();
        assert_eq!(err.status, Status::Closed, "an Other is never a Thing");
        assert!(
            err.message.contains("not a thing handle"),
            "{}",
            err.message
        );
        take(b);
        take(other);
        assert_eq!(THINGS.live(), 0);
    }

    #[test]
    fn tokens_are_not_addresses() {
        let t = token(3, 0, FIRST_GENERATION);
        assert!(t >= 1 << 47 && t & 0xf == 3);
        assert_eq!(untoken(3, t), Some((0, FIRST_GENERATION)));
        assert_eq!(untoken(4, t), None, "another type");
        let big = token(3, u32::MAX as usize - 1, LAST_GENERATION);
        assert_eq!(
            untoken(3, big),
            Some((u32::MAX as usize - 1, LAST_GENERATION))
        );
        assert_eq!(untoken(3, 0), None);
        assert_eq!(untoken(0, 0x7fff_1234_5670), None, "a real address");
        assert_eq!(untoken(0, 0x7fff_ffff_fff0), None, "the top address");
        const { assert!(LAST_GENERATION - FIRST_GENERATION > 1 << 27) };
    }

    #[derive(Debug)]
    struct Cycled(u32);
    static CYCLED: Registry<Cycled> = Registry::new();
    impl Handle for Cycled {
        const NAME: &'static str = "cycled";
        const TAG: usize = 13;
        fn registry() -> &'static Registry<Self> {
            &CYCLED
        }
    }

    /// A slot at its last generation is retired when freed, never handed
    /// out again with a generation that wrapped around: a stale handle of
    /// it stays dead, and freeing that stale handle frees nothing.
    #[test]
    fn a_slot_is_retired_at_its_last_generation_instead_of_wrapping() {
        let first = new_handle(Cycled(0));
        let token = CYCLED.set_generation(first as usize, Cycled::TAG, LAST_GENERATION - 2);
        let mut stale = Vec::new();
        let mut handle = token as *mut Cycled;
        for n in 1..=5 {
            assert!(take(handle).is_some());
            stale.push(handle);
            handle = new_handle(Cycled(n));
            for old in &stale {
                assert_ne!(*old, handle, "a stale handle came back");
                assert!(take(*old).is_none(), "a stale handle freed a live one");
            }
            assert_eq!(get(handle, "h").unwrap().0, n);
        }
        // Three generations were left: the slot gave its last, then was
        // retired and new handles went to a new slot.
        let (index_now, generation_now) = untoken(Cycled::TAG, handle as usize).unwrap();
        let (index_then, _) = untoken(Cycled::TAG, token).unwrap();
        assert_ne!(index_now, index_then);
        assert!(generation_now < LAST_GENERATION - 2);
        take(handle);
        assert_eq!(CYCLED.live(), 0);
    }

    #[test]
    fn a_panic_in_a_call_is_internal_with_its_text_and_location() {
        let status = boundary(|| panic!("boom {}", 7));
        assert_eq!(status, academy_status::ACADEMY_ERR_INTERNAL);
        let text = last();
        assert!(
            text.contains("boom 7") && text.contains("src/ffi/handle.rs"),
            "{text}"
        );
        assert!(!crate::panics::inside(), "the boundary is left");
    }

    #[test]
    fn a_panic_becomes_internal_and_never_unwinds_into_c() {
        let status = boundary(|| panic!("something impossible"));
        assert_eq!(status, academy_status::ACADEMY_ERR_INTERNAL);
        assert!(last().contains("something impossible"), "{}", last());
        assert_eq!(boundary_or(5, || panic!("in a getter")), 5);
        assert!(last().contains("in a getter"));
        assert_eq!(boundary(|| Ok(())), academy_status::ACADEMY_OK);
        assert_eq!(last(), "", "success clears the last error");
    }

    #[test]
    fn errors_set_the_thread_local_last_error() {
        let status = boundary(|| Err(Error::new(Status::Timeout, "slow")));
        assert_eq!(status, academy_status::ACADEMY_ERR_TIMEOUT);
        assert_eq!(last(), "slow");
        std::thread::spawn(|| assert_eq!(last(), "", "another thread has its own"))
            .join()
            .unwrap();
    }
}
