//! Python's pickle, read and written as data, never run: the bridge between
//! the pickles academy-py sends by default and the JSON form of a Python
//! value that C handlers and callers see (`{"py/tuple": [...]}`,
//! `{"py/ndarray": {...}}`, `{"py/object": "module:QualName", ...}`, ...).
//!
//! [`to_json_form`] reads pickle opcodes as data: it imports nothing, calls
//! nothing, and keeps its memory within [`Limits`]. [`from_json_form`]
//! writes a pickle that Python's `pickle.loads` turns into the value the
//! JSON form describes. Plain JSON (no `py/` key anywhere) round-trips as
//! the same JSON.

mod compat;
mod form;
mod graph;
mod numpy;
mod ops;
mod read;
#[cfg(test)]
mod tests;
mod text;
mod write;

use serde_json::Value;

use crate::error::Result;

/// Bounds that hold a decode's memory and time to a small multiple of the
/// pickle's size, whatever the pickle claims.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most nesting of JSON arrays and objects in the value's JSON
    /// form (a tuple is two: `{"py/tuple": [...]}`). It also bounds the
    /// stack that dropping the value takes.
    pub max_depth: usize,
    /// The most bytes of JSON text that shared references (the memo) may
    /// expand into: an object met a second time is copied, and its copy
    /// counts (as do the data of arrays and bytes read from inside a
    /// call, which may be shared unseen). Objects met once are paid for
    /// by the pickle's own bytes. A value over this is an error.
    pub max_output_bytes: usize,
}

impl Limits {
    /// The limits for a pickle of `size` bytes.
    pub fn for_size(size: usize) -> Self {
        Limits {
            max_depth: 1000,
            max_output_bytes: size.saturating_mul(8).max(1 << 20),
        }
    }
}

/// Reads a pickle (protocols 0 to 5) into the JSON form of its value.
pub fn to_json_form(pickle: &[u8], limits: &Limits) -> Result<Value> {
    let (graph, top) = read::run(pickle)?;
    form::build(&graph, top, limits)
}

/// Writes the value that a JSON form describes as a pickle Python reads.
pub fn from_json_form(value: &Value) -> Result<Vec<u8>> {
    write::write(value)
}

/// Whether a JSON value holds a `py/` form anywhere (an object with a key
/// that starts with `py/`), so that it can travel only as pickle.
pub fn has_py_form(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().any(has_py_form),
        Value::Object(map) => {
            map.keys().any(|k| k.starts_with("py/")) || map.values().any(has_py_form)
        }
        _ => false,
    }
}
