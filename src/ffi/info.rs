//! What the library says about itself: its version and the text and name
//! of each status code. Apart from `status.rs` so that the enum stays below
//! the panic boundary (`handle.rs` uses the enum; these functions use the
//! boundary).

use std::ffi::{c_char, c_int, CStr};

use super::handle::boundary_or;
use crate::error::Status;

/// What [`academy_status_str`] and [`academy_status_name`] answer for a
/// number that is no status.
const UNKNOWN: &CStr = c"unknown status";

/// The version of libacademy, e.g. "0.1.0".
///
/// It is the version of the library loaded at run time; the
/// `ACADEMY_VERSION_*` macros give the version of the header a program was
/// compiled with (they agree when both come from one build).
///
/// @return a static string; never free it. Never NULL.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe.
/// @ingroup basics
#[no_mangle]
pub extern "C" fn academy_version() -> *const c_char {
    static VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// A static, human-readable text of a status code, e.g. "timeout" for
/// ACADEMY_ERR_TIMEOUT.
///
/// @param status any int (bindings may pass a plain number), usually an
///        ::academy_status.
/// @return a static string, "unknown status" for a number that is no status;
///         never free it. Never NULL.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe.
/// @ingroup basics
#[no_mangle]
pub extern "C" fn academy_status_str(status: c_int) -> *const c_char {
    boundary_or(UNKNOWN.as_ptr(), || {
        Status::from_code(status.into())
            .map_or(UNKNOWN, Status::text)
            .as_ptr()
    })
}

/// The name of a status code as in this header, e.g. "ACADEMY_ERR_TIMEOUT".
///
/// For logs and for bindings that generate their error types.
///
/// @param status any int (bindings may pass a plain number), usually an
///        ::academy_status.
/// @return a static string, "unknown status" for a number that is no status;
///         never free it. Never NULL.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe.
/// @ingroup basics
#[no_mangle]
pub extern "C" fn academy_status_name(status: c_int) -> *const c_char {
    boundary_or(UNKNOWN.as_ptr(), || {
        Status::from_code(status.into())
            .map_or(UNKNOWN, Status::name)
            .as_ptr()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::status::academy_status;

    fn text(p: *const c_char) -> &'static str {
        unsafe { CStr::from_ptr(p) }.to_str().unwrap()
    }

    #[test]
    fn every_status_has_its_number_name_and_text() {
        for status in Status::ALL {
            let c: academy_status = status.into();
            assert_eq!(c as i64, status as i64, "{status:?}");
            let code = status as c_int;
            assert_eq!(text(academy_status_str(code)), status.as_str());
            assert!(!status.as_str().is_empty());
            let name = text(academy_status_name(code));
            assert_eq!(format!("{c:?}"), name, "the C enum's variant is the name");
        }
        let texts: std::collections::HashSet<_> = Status::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(texts.len(), Status::ALL.len(), "every text differs");
    }

    #[test]
    fn unknown_numbers_have_a_text_too() {
        for code in [-1, 14, 42, 98, 100, c_int::MAX, c_int::MIN] {
            assert_eq!(text(academy_status_str(code)), "unknown status");
            assert_eq!(text(academy_status_name(code)), "unknown status");
        }
    }
}
