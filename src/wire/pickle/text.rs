//! The text inside pickles: Python's integers of any size (two's complement
//! bytes, decimal lines), str as UTF-8 that may hold lone surrogates, and
//! the escapes of protocol 0's text opcodes.

use std::borrow::Cow;

/// The most decimal digits of an integer, Python's default limit for
/// converting between int and str (`sys.get_int_max_str_digits()`): a
/// Python peer could neither write nor read a longer one as JSON, and the
/// conversion's cost grows with the square of the length.
pub const MAX_INT_DIGITS: usize = 4300;

/// The most bytes of a two's complement integer that can have at most
/// [`MAX_INT_DIGITS`] digits (256^1786 > 10^4300).
pub const MAX_INT_BYTES: usize = 1786;

/// A Python str: UTF-8, or (when it holds lone surrogates, which Rust's
/// strings cannot) the UTF-8 bytes with each surrogate encoded on its own,
/// as Python's `surrogatepass` error handler writes them.
pub enum Text<'a> {
    Str(Cow<'a, str>),
    Surrogates(Cow<'a, [u8]>),
}

/// Reads UTF-8 as Python's `str(data, 'utf-8', 'surrogatepass')` does.
pub fn utf8(data: Cow<'_, [u8]>) -> Option<Text<'_>> {
    let mut rest: &[u8] = &data;
    loop {
        match std::str::from_utf8(rest) {
            Ok(_) if rest.len() == data.len() => break,
            Ok(_) => return Some(Text::Surrogates(data)),
            Err(e) => {
                let at = e.valid_up_to();
                match rest.get(at..at + 3) {
                    Some([0xed, 0xa0..=0xbf, 0x80..=0xbf]) => rest = &rest[at + 3..],
                    _ => return None,
                }
            }
        }
    }
    Some(Text::Str(match data {
        Cow::Borrowed(b) => Cow::Borrowed(std::str::from_utf8(b).ok()?),
        Cow::Owned(v) => Cow::Owned(String::from_utf8(v).ok()?),
    }))
}

/// Appends a code point (a surrogate too) as (generalized) UTF-8.
fn push_code_point(out: &mut Vec<u8>, c: u32) {
    if let Some(ch) = char::from_u32(c) {
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    } else {
        // A surrogate, U+D800..U+DFFF: three bytes, as surrogatepass.
        out.extend_from_slice(&[
            0xe0 | (c >> 12) as u8,
            0x80 | ((c >> 6) & 0x3f) as u8,
            0x80 | (c & 0x3f) as u8,
        ]);
    }
}

/// Protocol 0's `UNICODE` line: Python's `raw-unicode-escape` codec, where
/// `\uXXXX` and `\UXXXXXXXX` after an odd number of backslashes are code
/// points and every other byte is the Latin-1 character of its value.
pub fn raw_unicode_escape(data: &[u8]) -> Option<Text<'static>> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while let Some(&b) = data.get(i) {
        if b != b'\\' {
            push_code_point(&mut out, b as u32);
            i += 1;
            continue;
        }
        let run = data[i..].iter().take_while(|c| **c == b'\\').count();
        let digits = match data.get(i + run) {
            Some(b'u') if run % 2 == 1 => 4,
            Some(b'U') if run % 2 == 1 => 8,
            _ => 0,
        };
        if digits == 0 {
            out.extend(std::iter::repeat_n(b'\\', run));
            i += run;
            continue;
        }
        out.extend(std::iter::repeat_n(b'\\', run - 1));
        let hex = data.get(i + run + 1..i + run + 1 + digits)?;
        let hex = std::str::from_utf8(hex).ok()?;
        if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let c = u32::from_str_radix(hex, 16)
            .ok()
            .filter(|c| *c <= 0x10ffff)?;
        push_code_point(&mut out, c);
        i += run + 1 + digits;
    }
    utf8(Cow::Owned(out)).map(|t| match t {
        Text::Str(s) => Text::Str(Cow::Owned(s.into_owned())),
        Text::Surrogates(b) => Text::Surrogates(Cow::Owned(b.into_owned())),
    })
}

/// Protocol 0's `STRING` line without its quotes: the escapes of a Python 2
/// str's `repr` (`codecs.escape_decode`).
pub fn escape_decode(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while let Some(&b) = data.get(i) {
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let e = *data.get(i)?;
        i += 1;
        match e {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(e),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = (e - b'0') as u32;
                for _ in 0..2 {
                    match data.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let hex = std::str::from_utf8(data.get(i..i + 2)?).ok()?;
                if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            _ => {
                out.push(b'\\');
                out.push(e);
            }
        }
    }
    Some(out)
}

/// An integer as the JSON form holds it: an `i64` when it fits, else its
/// decimal text.
pub enum Int {
    Small(i64),
    Big(String),
}

/// A decimal integer line of protocol 0 (`INT`, `LONG` without its `L`):
/// an optional sign and digits without leading zeros. (Python reads more,
/// `int(text, 0)`, but its pickler writes only this.)
pub fn int_line(text: &[u8]) -> Option<Int> {
    let (neg, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty()
        || digits.len() > MAX_INT_DIGITS
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits[0] == b'0')
    {
        return None;
    }
    let digits = std::str::from_utf8(digits).ok()?;
    let text = if neg && digits != "0" {
        format!("-{digits}")
    } else {
        digits.to_owned()
    };
    Some(match text.parse::<i64>() {
        Ok(v) => Int::Small(v),
        Err(_) => Int::Big(text),
    })
}

/// The value of little-endian two's complement bytes (`LONG1`, `LONG4`).
/// The caller bounds the length ([`MAX_INT_BYTES`]).
pub fn int_from_le(bytes: &[u8]) -> Int {
    if bytes.len() <= 8 {
        let mut buf = [0u8; 8];
        buf[..bytes.len()].copy_from_slice(bytes);
        let v = i64::from_le_bytes(buf);
        let shift = 64 - 8 * bytes.len() as u32;
        // Sign-extends the bytes read (shifting by 64 is not allowed).
        return Int::Small(if shift == 64 {
            0
        } else {
            (v << shift) >> shift
        });
    }
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude: Vec<u8> = bytes.to_vec();
    if negative {
        negate(&mut magnitude);
    }
    // Little-endian base 2^32 limbs, divided by 10^9 until zero.
    let mut limbs: Vec<u32> = magnitude
        .chunks(4)
        .map(|c| {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(b)
        })
        .collect();
    while limbs.last() == Some(&0) {
        limbs.pop();
    }
    let mut chunks = Vec::new();
    while !limbs.is_empty() {
        let mut rem: u64 = 0;
        for limb in limbs.iter_mut().rev() {
            let cur = (rem << 32) | *limb as u64;
            *limb = (cur / 1_000_000_000) as u32;
            rem = cur % 1_000_000_000;
        }
        chunks.push(rem as u32);
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
    }
    if chunks.is_empty() {
        // Zero, written with more bytes than it needs.
        return Int::Small(0);
    }
    let mut text = String::with_capacity(chunks.len() * 9 + 1);
    if negative {
        text.push('-');
    }
    let mut iter = chunks.iter().rev();
    if let Some(first) = iter.next() {
        text.push_str(&first.to_string());
    }
    for c in iter {
        text.push_str(&format!("{c:09}"));
    }
    Int::Big(text)
}

/// Two's complement negation in place (little-endian).
fn negate(bytes: &mut [u8]) {
    let mut carry = true;
    for b in bytes.iter_mut() {
        let (v, c) = (!*b).overflowing_add(carry as u8);
        *b = v;
        carry = c;
    }
}

/// The bytes `LONG1` and `LONG4` hold for a decimal integer (an optional
/// `-` and digits), as Python's `pickle.encode_long` writes them: the
/// shortest little-endian two's complement (empty for zero). `None` for
/// text that is not such an integer or has too many digits.
pub fn int_to_le(text: &str) -> Option<Vec<u8>> {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if digits.is_empty()
        || digits.len() > MAX_INT_DIGITS
        || !digits.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let mut limbs: Vec<u32> = Vec::new();
    let head = digits.len() % 9;
    let mut pieces = Vec::new();
    if head > 0 {
        pieces.push(&digits[..head]);
    }
    pieces.extend(
        digits.as_bytes()[head..]
            .chunks(9)
            .filter_map(|c| std::str::from_utf8(c).ok()),
    );
    for piece in pieces {
        let mut carry: u64 = piece.parse().ok()?;
        let scale = 10u64.pow(piece.len() as u32);
        for limb in limbs.iter_mut() {
            let cur = *limb as u64 * scale + carry;
            *limb = cur as u32;
            carry = cur >> 32;
        }
        if carry > 0 {
            limbs.push(carry as u32);
        }
    }
    let mut bytes: Vec<u8> = limbs.iter().flat_map(|l| l.to_le_bytes()).collect();
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Some(bytes);
    }
    // One more byte than the magnitude's bit length needs, as Python
    // (room for the sign), then the negative's redundant 0xff dropped.
    let bits = bytes.len() * 8 - bytes.last().map_or(0, |b| b.leading_zeros() as usize);
    bytes.resize(bits / 8 + 1, 0);
    if neg {
        negate(&mut bytes);
        let n = bytes.len();
        if n > 1 && bytes[n - 1] == 0xff && bytes[n - 2] & 0x80 != 0 {
            bytes.pop();
        }
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(bytes: &[u8]) -> String {
        match int_from_le(bytes) {
            Int::Small(v) => v.to_string(),
            Int::Big(s) => s,
        }
    }

    #[test]
    fn integers_both_ways_as_python_encode_long() {
        // (value, pickle.encode_long(value)) from Python.
        for (text, bytes) in [
            ("0", &b""[..]),
            ("1", b"\x01"),
            ("-1", b"\xff"),
            ("127", b"\x7f"),
            ("128", b"\x80\x00"),
            ("-128", b"\x80"),
            ("-129", b"\x7f\xff"),
            ("255", b"\xff\x00"),
            ("-256", b"\x00\xff"),
            (
                "18446744073709551616",
                b"\x00\x00\x00\x00\x00\x00\x00\x00\x01",
            ),
            (
                "-18446744073709551616",
                b"\x00\x00\x00\x00\x00\x00\x00\x00\xff",
            ),
            ("-9223372036854775808", b"\x00\x00\x00\x00\x00\x00\x00\x80"),
            (
                "9223372036854775808",
                b"\x00\x00\x00\x00\x00\x00\x00\x80\x00",
            ),
        ] {
            assert_eq!(int_to_le(text).unwrap(), bytes, "{text}");
            assert_eq!(big(bytes), text, "{text}");
        }
        assert_eq!(big(&[0; 12]), "0");
        assert_eq!(big(&[0xff; 12]), "-1");
        let huge = format!("-{}", "9".repeat(100));
        assert_eq!(big(&int_to_le(&huge).unwrap()), huge);
        assert!(int_to_le(&"9".repeat(MAX_INT_DIGITS + 1)).is_none());
        assert!(int_to_le("1.5").is_none());
    }

    #[test]
    fn protocol_0_text() {
        assert!(matches!(int_line(b"-0"), Some(Int::Small(0))));
        assert!(int_line(b"007").is_none());
        assert!(
            matches!(int_line(b"99999999999999999999"), Some(Int::Big(s)) if s == "99999999999999999999")
        );
        let t = raw_unicode_escape(b"a\\u00e9\\\\u0041\\U0001f600\xe9").unwrap();
        assert!(matches!(t, Text::Str(s) if s == "a\u{e9}\\\\u0041\u{1f600}\u{e9}"));
        assert!(
            matches!(raw_unicode_escape(b"\\ud800"), Some(Text::Surrogates(b)) if *b == b"\xed\xa0\x80"[..])
        );
        assert!(raw_unicode_escape(b"\\u12").is_none());
        assert_eq!(escape_decode(b"a\\'\\x41\\101\\n").unwrap(), b"a'AA\n");
        assert!(matches!(
            utf8(Cow::Borrowed(b"\xed\xb0\x80x")),
            Some(Text::Surrogates(_))
        ));
        assert!(utf8(Cow::Borrowed(b"\xff")).is_none());
    }
}
