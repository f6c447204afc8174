//! JSON text in the format of Python's `json.dumps` defaults: `", "` and
//! `": "` separators and `ensure_ascii` (non-ASCII as `\uXXXX`). Action
//! arguments and results travel as such text inside JSON strings, and
//! matching Python's format keeps our messages byte-identical to a Python
//! `Handle`'s.

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};
use serde_json::Value;
use std::io::{self, Write};

/// `json.dumps(value)` as Python writes it.
pub fn dumps(value: &Value) -> String {
    let mut out = Vec::with_capacity(64);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value
        .serialize(&mut ser)
        .expect("serializing a Value cannot fail");
    String::from_utf8(out).expect("the formatter writes ASCII only")
}

struct PythonFormatter;

/// Python's item separator, `", "`, before every item but the first.
fn separator<W: ?Sized + Write>(writer: &mut W, first: bool) -> io::Result<()> {
    if first {
        Ok(())
    } else {
        writer.write_all(b", ")
    }
}

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        separator(writer, first)
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        separator(writer, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            if ch.is_ascii() {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = i + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        // Python writes control characters as \u00XX, like serde_json,
        // and the named escapes the same way; only the letters differ.
        let s: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"\\/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => return write!(writer, "\\u{byte:04x}"),
        };
        writer.write_all(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python_json_dumps() {
        let v: Value =
            serde_json::from_str(r#"{"x": {"k": [1, 2], "s": "hé", "n": null, "f": 1.5}}"#)
                .unwrap();
        assert_eq!(
            dumps(&v),
            r#"{"x": {"k": [1, 2], "s": "h\u00e9", "n": null, "f": 1.5}}"#
        );
        assert_eq!(dumps(&json!([2, 3])), "[2, 3]");
        assert_eq!(dumps(&json!({})), "{}");
        assert_eq!(
            dumps(&json!("a\"\\\n\u{1}😀")),
            r#""a\"\\\n\u0001\ud83d\ude00""#
        );
    }
}
