//! The C ABI: a thin layer that converts pointers, strings and errors and
//! calls the Rust core. One file per C type; [`handle`] holds the rules
//! every handle follows (registry, fork rule) and the panic boundary that
//! every exported function runs in.

#![allow(non_camel_case_types)]
// Every exported function checks its pointers before use; the C contract
// (documented in the header) is what makes them sound.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, CStr, CString};
use std::time::Duration;

use crate::error::{Error, Result};

pub mod client;
pub mod exchange;
pub mod factory;
pub mod handle;
pub mod info;
pub mod log;
pub mod messages;
pub mod pyvalue;
pub mod queue;
pub mod reply;
pub mod serve;
pub mod status;

pub use handle::academy_last_error;
pub(crate) use handle::c_text;
pub(crate) use handle::{boundary, boundary_or};
pub use status::academy_status;

/// A required string argument.
pub(crate) unsafe fn arg_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::invalid(format!("{name} must not be NULL")));
    }
    CStr::from_ptr(ptr)
        .to_str()
        .map_err(|e| Error::invalid(format!("{name} is not valid UTF-8: {e}")))
}

/// An optional (nullable) string argument.
pub(crate) unsafe fn arg_opt_str<'a>(ptr: *const c_char, name: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        arg_str(ptr, name).map(Some)
    }
}

/// Checks an out-pointer before any work is done.
pub(crate) fn check_out<T>(ptr: *mut T, name: &str) -> Result<()> {
    if ptr.is_null() {
        Err(Error::invalid(format!("{name} must not be NULL")))
    } else {
        Ok(())
    }
}

/// Writes an output (out-pointers are written only on success).
pub(crate) unsafe fn write_out<T>(ptr: *mut T, value: T) {
    ptr.write(value);
}

/// Writes a string output that the caller frees with `academy_string_free`.
pub(crate) unsafe fn write_string(ptr: *mut *mut c_char, text: String) -> Result<()> {
    let c = CString::new(text).map_err(|_| Error::protocol("the output contains a NUL byte"))?;
    ptr.write(c.into_raw());
    Ok(())
}

/// A timeout argument: negative waits forever, NaN is an error.
pub(crate) fn arg_timeout(seconds: f64) -> Result<Option<Duration>> {
    if seconds.is_nan() {
        Err(Error::invalid("timeout_s must be a number, not NaN"))
    } else if seconds < 0.0 {
        Ok(None)
    } else {
        Ok(Some(Duration::from_secs_f64(seconds.min(1e9))))
    }
}

/// Frees a string that libacademy returned through an out-pointer.
///
/// Every `char **out_…` parameter of this API receives a string that belongs
/// to the caller; this is how it is given back. Do not use free() on it.
///
/// @param s the string, or NULL (a no-op). Freeing a string twice, or one the
///        library did not return (such as academy_last_error()'s or an
///        event's), is undefined behaviour, as with free().
///
/// Blocks: no.
///
/// Thread-safety: thread-safe; a string may be freed on another thread than
/// the one that received it, but only once, and not while another thread
/// still reads it.
/// @ingroup basics
#[no_mangle]
pub unsafe extern "C" fn academy_string_free(s: *mut c_char) {
    boundary_or((), || {
        if !s.is_null() {
            drop(CString::from_raw(s));
        }
    })
}
