//! JSON as Python's `json` module reads and writes it.
//!
//! [`dumps`] writes `json.dumps` defaults: `", "` and `": "` separators,
//! `ensure_ascii` (non-ASCII as `\uXXXX`), floats as Python's `repr`
//! (`1e-05`, `2.5e-07`, `1e+16`, `NaN`, `Infinity`) and integers exactly,
//! however long (serde_json keeps number text as written:
//! `arbitrary_precision`). Action arguments and results travel as such
//! text inside JSON strings, and matching Python's format keeps our
//! messages byte-identical to a Python `Handle`'s.
//!
//! [`loads`] reads what `json.loads` reads: JSON, plus `NaN`, `Infinity`
//! and `-Infinity`, which Python writes for non-finite floats.

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};
use serde_json::{Map, Number, Value};
use std::io::{self, Write};

/// Nesting accepted by [`loads`] (serde_json's own limit).
const MAX_DEPTH: usize = 128;

/// Python's `repr()` of a float, as `json.dumps` writes it.
pub fn float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    let (digits, exp) = shortest_digits(f.abs());
    let sign = if f < 0.0 { "-" } else { "" };
    if !(-4..16).contains(&exp) {
        let mantissa = match digits.split_at(1) {
            (first, "") => first.to_owned(),
            (first, rest) => format!("{first}.{rest}"),
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{esign}{:02}", exp.abs())
    } else if exp < 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else {
        let point = exp as usize + 1;
        if digits.len() <= point {
            format!("{sign}{digits}{}.0", "0".repeat(point - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..point], &digits[point..])
        }
    }
}

/// The shortest decimal digits that read back as `a` (positive, finite,
/// not zero) and the exponent of the first, as Python's `repr` picks them:
/// Rust's shortest digits, except that of two equally near (an exact tie)
/// Python takes the one with an even last digit, where Rust rounds up.
fn shortest_digits(a: f64) -> (String, i32) {
    let text = format!("{a:e}");
    let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let n = digits.len();
    // A tie needs the exact value to be those digits and a 5 after them.
    let near = format!("{a:.n$e}");
    if !near
        .split_once('e')
        .is_some_and(|(m, e)| m.ends_with('5') && e.parse() == Ok(exp))
    {
        return (digits, exp);
    }
    let exact = format!("{a:.1100e}");
    let exact_digits: String = exact
        .split_once('e')
        .map_or("", |(m, _)| m)
        .chars()
        .filter(|c| *c != '.')
        .collect();
    let exact_digits = exact_digits.trim_end_matches('0');
    if exact_digits.len() != n + 1 || !exact_digits.ends_with('5') {
        return (digits, exp);
    }
    let floor = &exact_digits[..n];
    let even = if floor.ends_with(['0', '2', '4', '6', '8']) {
        floor.to_owned()
    } else {
        // floor + 1 (its last digit is odd, so no carry past it).
        let mut up = floor.as_bytes().to_vec();
        *up.last_mut().unwrap_or(&mut b'0') += 1;
        String::from_utf8(up).unwrap_or_default()
    };
    let back = format!("{}.{}e{exp}", &even[..1], &even[1..]);
    if back.parse::<f64>() == Ok(a) {
        (even, exp)
    } else {
        (digits, exp)
    }
}

/// A number's JSON text as Python writes the value it reads from it: an
/// integer exactly (`-0` is `0`), anything else as the float it is.
fn number(text: &str) -> String {
    match text {
        "NaN" | "Infinity" | "-Infinity" => text.to_owned(),
        "-0" => "0".to_owned(),
        _ if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) => text
            .parse::<f64>()
            .map(float)
            .unwrap_or_else(|_| text.to_owned()),
        _ => text.to_owned(),
    }
}

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
    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(float(value).as_bytes())
    }

    fn write_f32<W: ?Sized + Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, value as f64)
    }

    fn write_number_str<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        value: &str,
    ) -> io::Result<()> {
        writer.write_all(number(value).as_bytes())
    }

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

/// Parses JSON as Python's `json.loads` does: also `NaN`, `Infinity` and
/// `-Infinity` (kept as such, and written back as such). Errors are
/// serde_json's.
pub fn loads(text: &str) -> serde_json::Result<Value> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        // Only text that has one of Python's words takes the slow path.
        Err(e) if !(text.contains("NaN") || text.contains("Infinity")) => Err(e),
        Err(e) => {
            let mut p = Loads { text, pos: 0 };
            let value = p.value(0).ok_or(e)?;
            p.space();
            if p.pos == text.len() {
                Ok(value)
            } else {
                serde_json::from_str(text)
            }
        }
    }
}

/// A JSON reader that also takes Python's non-finite floats; strings and
/// numbers are read by serde_json. `None` on anything else it cannot read
/// (the caller then reports serde_json's error).
struct Loads<'a> {
    text: &'a str,
    pos: usize,
}

impl Loads<'_> {
    fn rest(&self) -> &[u8] {
        &self.text.as_bytes()[self.pos..]
    }

    fn space(&mut self) {
        while matches!(self.rest().first(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.rest().starts_with(word.as_bytes()) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.space();
        let word = |w: &str| Some(Value::Number(Number::from_string_unchecked(w.to_owned())));
        let first = *self.rest().first()?;
        match first {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string().map(Value::String),
            _ if self.eat("NaN") => word("NaN"),
            _ if self.eat("Infinity") => word("Infinity"),
            _ if self.eat("-Infinity") => word("-Infinity"),
            _ if self.eat("true") => Some(Value::Bool(true)),
            _ if self.eat("false") => Some(Value::Bool(false)),
            _ if self.eat("null") => Some(Value::Null),
            _ => {
                let len = self
                    .rest()
                    .iter()
                    .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .unwrap_or(self.rest().len());
                let n: Number = serde_json::from_str(&self.text[self.pos..self.pos + len]).ok()?;
                self.pos += len;
                Some(Value::Number(n))
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        let mut i = 1;
        let rest = self.rest();
        loop {
            match rest.get(i)? {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        let s = serde_json::from_str(&self.text[self.pos..self.pos + i + 1]).ok()?;
        self.pos += i + 1;
        Some(s)
    }

    fn array(&mut self, depth: usize) -> Option<Value> {
        self.pos += 1;
        let mut items = Vec::new();
        self.space();
        if self.eat("]") {
            return Some(Value::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.space();
            if self.eat("]") {
                return Some(Value::Array(items));
            }
            if !self.eat(",") {
                return None;
            }
        }
    }

    fn object(&mut self, depth: usize) -> Option<Value> {
        self.pos += 1;
        let mut map = Map::new();
        self.space();
        if self.eat("}") {
            return Some(Value::Object(map));
        }
        loop {
            self.space();
            if self.rest().first() != Some(&b'"') {
                return None;
            }
            let key = self.string()?;
            self.space();
            if !self.eat(":") {
                return None;
            }
            let value = self.value(depth + 1)?;
            map.insert(key, value);
            self.space();
            if self.eat("}") {
                return Some(Value::Object(map));
            }
            if !self.eat(",") {
                return None;
            }
        }
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

    #[test]
    fn floats_like_python_repr() {
        for (f, text) in [
            (0.5, "0.5"),
            (2.0, "2.0"),
            (2.5e-5, "2.5e-05"),
            (1e-5, "1e-05"),
            (2.5e-7, "2.5e-07"),
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (0.0001, "0.0001"),
            (123.456, "123.456"),
            (-0.0, "-0.0"),
            // A tie between two shortest texts: Python takes the even digit.
            #[allow(clippy::excessive_precision)]
            (2018822251877034.25, "2018822251877034.2"),
            (1e15, "1000000000000000.0"),
            (1.5, "1.5"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.1, "0.1"),
            (1234.5e-9, "1.2345e-06"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(float(f), text);
        }
        assert_eq!(dumps(&json!([0.00001, 2.5e-7])), "[1e-05, 2.5e-07]");
    }

    #[test]
    fn big_integers_stay_exact_and_non_finite_floats_are_read() {
        let text = "[123456789012345678901234567890, -18446744073709551617, 1.0e2, -0]";
        let v = loads(text).unwrap();
        assert_eq!(
            dumps(&v),
            "[123456789012345678901234567890, -18446744073709551617, 100.0, 0]"
        );
        let v = loads(r#"{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN"}"#).unwrap();
        assert_eq!(
            dumps(&v),
            r#"{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN"}"#
        );
        assert_eq!(
            v.to_string(),
            r#"{"a":NaN,"b":[Infinity,-Infinity],"c":"NaN"}"#
        );
        for bad in [
            "[NaN",
            "nan",
            "[1, Inf]",
            "{\"a\": NaN,}",
            "NaN x",
            "[Infinity1]",
        ] {
            assert!(loads(bad).is_err(), "{bad}");
        }
        let deep = "[".repeat(200) + "NaN" + &"]".repeat(200);
        assert!(loads(&deep).is_err(), "nesting is limited");
    }
}
