//! numpy's arrays and scalars as pickles hold them, read from the graph
//! without numpy: the dtype (a call of `numpy.dtype` and its state), the
//! array (`_reconstruct` and its state, or `_frombuffer` in protocol 5) and
//! the scalar (`scalar(dtype, raw bytes)`).
//!
//! Only dtypes of one number (bool, integers, floats, complex) in either
//! byte order are read as such; arrays of objects, records, strings or
//! dates stay in the general form, which keeps everything.

use std::borrow::Cow;

use serde_json::{Number, Value};

use super::graph::{Graph, Id, Made, Node};
use crate::wire::pyjson;

/// The modules numpy 1.x and 2.x write for `_reconstruct` and `scalar`.
pub const MULTIARRAY: [&str; 2] = ["numpy.core.multiarray", "numpy._core.multiarray"];
/// The modules numpy 1.x and 2.x write for `_frombuffer`.
pub const NUMERIC: [&str; 2] = ["numpy.core.numeric", "numpy._core.numeric"];

/// A dtype of one number: numpy's `dtype.str` (`<f8`, `|b1`, `>i4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dtype {
    /// `<`, `>`, or `|` (one byte: no order).
    pub order: u8,
    /// `b`, `i`, `u`, `f` or `c`.
    pub kind: u8,
    pub size: usize,
}

impl Dtype {
    /// Reads `dtype.str`; also `=` (native) and a size-1 dtype with a byte
    /// order, which numpy accepts and writes as `|`.
    pub fn parse(text: &str) -> Option<Dtype> {
        let b = text.as_bytes();
        let (order, code) = match b.first()? {
            o @ (b'<' | b'>' | b'|') => (*o, &text[1..]),
            b'=' => (
                if cfg!(target_endian = "little") {
                    b'<'
                } else {
                    b'>'
                },
                &text[1..],
            ),
            _ => return None,
        };
        let d = Dtype::from_code(code, order)?;
        (d.order != b'|' || d.size == 1).then_some(d)
    }

    /// A dtype from numpy's pickled code (`f8`) and byte order.
    fn from_code(code: &str, order: u8) -> Option<Dtype> {
        let kind = *code.as_bytes().first()?;
        let size: usize = code.get(1..)?.parse().ok()?;
        let sizes: &[usize] = match kind {
            b'b' => &[1],
            b'i' | b'u' => &[1, 2, 4, 8],
            b'f' => &[2, 4, 8, 12, 16],
            b'c' => &[8, 16, 24, 32],
            _ => return None,
        };
        if !sizes.contains(&size) || code.get(1..2) == Some("0") {
            return None;
        }
        let order = if size == 1 { b'|' } else { order };
        Some(Dtype { order, kind, size })
    }

    /// numpy's `dtype.str`.
    pub fn str(&self) -> String {
        format!("{}{}{}", self.order as char, self.kind as char, self.size)
    }

    /// The code numpy's `dtype.__reduce__` gives (`f8`).
    pub fn code(&self) -> String {
        format!("{}{}", self.kind as char, self.size)
    }

    fn big_endian(&self) -> bool {
        self.order == b'>'
    }
}

/// A call of `numpy.dtype(code, False, True)` with the state numpy gives a
/// dtype of one number: `(3, order, None, None, None, -1, -1, 0)`.
pub fn dtype(g: &Graph, id: Id) -> Option<Dtype> {
    let call = g.call(id)?;
    if call.made != Made::Call
        || !g.global(call.callable)?.is("numpy", "dtype")
        || call.kwargs.is_some()
        || !call.listitems.is_empty()
        || !call.dictitems.is_empty()
    {
        return None;
    }
    let [code, align, copy] = call.args[..] else {
        return None;
    };
    if !matches!(g.get(align), Node::Bool(false)) || !matches!(g.get(copy), Node::Bool(true)) {
        return None;
    }
    let state = g.tuple(call.state?)?;
    let [version, order, n1, n2, n3, elsize, align, flags] = state[..] else {
        return None;
    };
    let order = match g.str(order)? {
        "<" => b'<',
        ">" => b'>',
        "|" => b'|',
        _ => return None,
    };
    if g.small_int(version)? != 3
        || [n1, n2, n3]
            .iter()
            .any(|n| !matches!(g.get(*n), Node::None))
        || g.small_int(elsize)? != -1
        || g.small_int(align)? != -1
        || g.small_int(flags)? != 0
    {
        return None;
    }
    let d = Dtype::from_code(g.str(code)?, order)?;
    (d.order != b'|' || d.size == 1).then_some(d)
}

/// The bytes a node holds: bytes, or bytes as protocols 0 to 2 write them
/// (`_codecs.encode(latin-1 str, "latin1")`, `bytes()`).
pub fn bytes_of<'g>(g: &'g Graph, id: Id) -> Option<Cow<'g, [u8]>> {
    match g.get(id) {
        Node::Bytes(b) => Some(Cow::Borrowed(b)),
        Node::Call(_) => {
            if let Some(args) = g.bare_call_of(id, "_codecs", "encode") {
                let [text, codec] = args else { return None };
                if g.str(*codec)? != "latin1" {
                    return None;
                }
                return g
                    .str(*text)?
                    .chars()
                    .map(|c| u8::try_from(c as u32).ok())
                    .collect::<Option<Vec<u8>>>()
                    .map(Cow::Owned);
            }
            g.bare_call_of(id, "builtins", "bytes")?
                .is_empty()
                .then_some(Cow::Borrowed(&[][..]))
        }
        _ => None,
    }
}

/// An array read from the graph.
pub struct Array<'g> {
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    pub fortran: bool,
    pub data: Cow<'g, [u8]>,
}

fn shape(g: &Graph, id: Id) -> Option<Vec<u64>> {
    g.tuple(id)?
        .iter()
        .map(|d| g.small_int(*d).and_then(|v| u64::try_from(v).ok()))
        .collect()
}

/// Whether the data's length is what the shape and dtype need.
fn fits(shape: &[u64], dtype: Dtype, len: usize) -> bool {
    shape
        .iter()
        .try_fold(dtype.size as u64, |n, d| n.checked_mul(*d))
        .is_some_and(|n| n == len as u64)
}

/// `_reconstruct(ndarray, (0,), b"b")` with the state
/// `(1, shape, dtype, is_fortran, data)`, or protocol 5's
/// `_frombuffer(buffer, dtype, shape, order)`.
pub fn array<'g>(g: &'g Graph, id: Id) -> Option<Array<'g>> {
    let call = g.call(id)?;
    let f = g.global(call.callable)?;
    if call.made != Made::Call {
        return None;
    }
    if MULTIARRAY.contains(&f.module.as_str()) && f.qualname == "_reconstruct" {
        let [cls, zero, b] = call.args[..] else {
            return None;
        };
        if call.kwargs.is_some() || !call.listitems.is_empty() || !call.dictitems.is_empty() {
            return None;
        }
        if !g.global(cls)?.is("numpy", "ndarray")
            || g.tuple(zero)?.iter().map(|z| g.small_int(*z)).ne([Some(0)])
            || bytes_of(g, b)?.as_ref() != b"b"
        {
            return None;
        }
        let [version, dims, dt, fortran, data] = g.tuple(call.state?)?[..] else {
            return None;
        };
        let fortran = match g.get(fortran) {
            Node::Bool(f) => *f,
            _ => return None,
        };
        let a = Array {
            dtype: dtype(g, dt)?,
            shape: shape(g, dims)?,
            fortran,
            data: bytes_of(g, data)?,
        };
        return (g.small_int(version)? == 1 && fits(&a.shape, a.dtype, a.data.len())).then_some(a);
    }
    if NUMERIC.contains(&f.module.as_str()) && f.qualname == "_frombuffer" && call.bare() {
        let [buf, dt, dims, order] = call.args[..] else {
            return None;
        };
        let data = match g.get(buf) {
            Node::ByteArray(b) => Cow::Borrowed(&b[..]),
            _ => bytes_of(g, buf)?,
        };
        let fortran = match g.str(order)? {
            "C" => false,
            "F" => true,
            _ => return None,
        };
        let a = Array {
            dtype: dtype(g, dt)?,
            shape: shape(g, dims)?,
            fortran,
            data,
        };
        return fits(&a.shape, a.dtype, a.data.len()).then_some(a);
    }
    None
}

/// `scalar(dtype, raw bytes)`: the dtype and the value as JSON (a complex
/// as `[real, imag]`). Only dtypes whose values JSON holds exactly.
pub fn scalar(g: &Graph, id: Id) -> Option<(Dtype, Value)> {
    let call = g.call(id)?;
    let f = g.global(call.callable)?;
    if call.made != Made::Call
        || !call.bare()
        || !(MULTIARRAY.contains(&f.module.as_str()) && f.qualname == "scalar")
    {
        return None;
    }
    let [dt, raw] = call.args[..] else {
        return None;
    };
    let dtype = dtype(g, dt)?;
    let raw = bytes_of(g, raw)?;
    Some((dtype, scalar_value(dtype, &raw)?))
}

fn float_value(f: f64) -> Value {
    Value::Number(Number::from_string_unchecked(pyjson::float(f)))
}

/// Reads `N` bytes in the dtype's byte order as little-endian.
fn le<const N: usize>(d: Dtype, raw: &[u8]) -> Option<[u8; N]> {
    let mut a: [u8; N] = raw.try_into().ok()?;
    if d.big_endian() {
        a.reverse();
    }
    Some(a)
}

fn real(d: Dtype, raw: &[u8]) -> Option<f64> {
    Some(match raw.len() {
        2 => half_to_f64(u16::from_le_bytes(le(d, raw)?)),
        4 => f32::from_le_bytes(le(d, raw)?) as f64,
        8 => f64::from_le_bytes(le(d, raw)?),
        _ => return None,
    })
}

fn scalar_value(d: Dtype, raw: &[u8]) -> Option<Value> {
    if raw.len() != d.size {
        return None;
    }
    Some(match d.kind {
        b'b' => Value::Bool(raw[0] != 0),
        b'i' => {
            let a: [u8; 8] = match d.size {
                1 => (raw[0] as i8 as i64).to_le_bytes(),
                2 => (i16::from_le_bytes(le(d, raw)?) as i64).to_le_bytes(),
                4 => (i32::from_le_bytes(le(d, raw)?) as i64).to_le_bytes(),
                _ => le(d, raw)?,
            };
            Value::from(i64::from_le_bytes(a))
        }
        b'u' => {
            let mut a = [0u8; 8];
            let n = d.size;
            let l: Vec<u8> = if d.big_endian() {
                raw.iter().rev().copied().collect()
            } else {
                raw.to_vec()
            };
            a[..n].copy_from_slice(&l);
            Value::from(u64::from_le_bytes(a))
        }
        b'f' => float_value(real(d, raw)?),
        b'c' if d.size == 8 || d.size == 16 => {
            let half = d.size / 2;
            let part = Dtype {
                size: half,
                kind: b'f',
                ..d
            };
            Value::Array(vec![
                float_value(real(part, &raw[..half])?),
                float_value(real(part, &raw[half..])?),
            ])
        }
        _ => return None,
    })
}

/// The raw bytes of a scalar of `dtype` with the JSON value `value`, or
/// why not.
pub fn scalar_bytes(d: Dtype, value: &Value) -> Result<Vec<u8>, String> {
    let mut raw = match (d.kind, value) {
        (b'b', Value::Bool(b)) => vec![*b as u8],
        (b'i', Value::Number(n)) => {
            let v = n.as_i64().ok_or("not an integer in range")?;
            let bits = d.size as u32 * 8;
            if bits < 64 && (v < -(1i64 << (bits - 1)) || v >= 1i64 << (bits - 1)) {
                return Err(format!("{v} does not fit {} bytes", d.size));
            }
            v.to_le_bytes()[..d.size].to_vec()
        }
        (b'u', Value::Number(n)) => {
            let v = n.as_u64().ok_or("not an unsigned integer in range")?;
            if d.size < 8 && v >= 1u64 << (d.size * 8) {
                return Err(format!("{v} does not fit {} bytes", d.size));
            }
            v.to_le_bytes()[..d.size].to_vec()
        }
        (b'f', Value::Number(n)) => float_bytes(d.size, number_f64(n)?)?,
        (b'c', Value::Array(parts)) if parts.len() == 2 && (d.size == 8 || d.size == 16) => {
            let mut raw = Vec::with_capacity(d.size);
            for p in parts {
                let Value::Number(n) = p else {
                    return Err("a complex value is [real, imag]".into());
                };
                let mut b = float_bytes(d.size / 2, number_f64(n)?)?;
                if d.big_endian() {
                    b.reverse();
                }
                raw.extend(b);
            }
            // Each half is already in order.
            return Ok(raw);
        }
        _ => return Err(format!("a value of dtype {} cannot be {value}", d.str())),
    };
    if d.big_endian() {
        raw.reverse();
    }
    Ok(raw)
}

/// A JSON number (Python's words for non-finite floats too) as f64.
pub fn number_f64(n: &Number) -> Result<f64, String> {
    match n.as_str() {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        s => s.parse().map_err(|_| format!("{s} is not a number")),
    }
}

fn float_bytes(size: usize, f: f64) -> Result<Vec<u8>, String> {
    Ok(match size {
        2 => f64_to_half(f).to_le_bytes().to_vec(),
        4 => (f as f32).to_le_bytes().to_vec(),
        8 => f.to_le_bytes().to_vec(),
        _ => return Err(format!("no float of {size} bytes in JSON")),
    })
}

/// IEEE half precision to double (exact).
fn half_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// Double to IEEE half precision, rounding to nearest even.
fn f64_to_half(f: f64) -> u16 {
    let sign: u16 = if f.is_sign_negative() { 0x8000 } else { 0 };
    let a = f.abs();
    if a.is_nan() {
        return sign | 0x7e00;
    }
    if a >= 65520.0 {
        return sign | 0x7c00;
    }
    // In units of the smallest subnormal (2^-24), or of the exponent's
    // unit for normal numbers; the rounding of `round_ties_even` is the
    // rule.
    if a < 2f64.powi(-14) {
        return sign | (a * 2f64.powi(24)).round_ties_even() as u16;
    }
    let exp = a.log2().floor() as i32;
    // log2 can be one off near powers of two.
    let exp = if 2f64.powi(exp) > a {
        exp - 1
    } else if 2f64.powi(exp + 1) <= a {
        exp + 1
    } else {
        exp
    };
    let mant = (a / 2f64.powi(exp) - 1.0) * 1024.0;
    let m = mant.round_ties_even() as u32;
    // A mantissa rounded up to 1024 carries into the exponent.
    let bits = (((exp + 15) as u32) << 10) + m;
    sign | bits as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_both_ways() {
        for (h, f) in [
            (0x3c00u16, 1.0),
            (0xc000, -2.0),
            (0x0001, 2f64.powi(-24)),
            (0x7bff, 65504.0),
            (0x3555, 0.333251953125),
            (0x7c00, f64::INFINITY),
            (0x8000, -0.0),
        ] {
            assert_eq!(half_to_f64(h).to_bits(), f64::to_bits(f), "{h:x}");
            assert_eq!(f64_to_half(f), h, "{f}");
        }
        for h in 0..0x7c00u16 {
            assert_eq!(f64_to_half(half_to_f64(h)), h);
        }
        assert!(half_to_f64(0x7e00).is_nan());
    }

    #[test]
    fn dtype_strings() {
        for s in ["<f8", ">i4", "|b1", "|u1", "<c16", "<f2", "<f16"] {
            assert_eq!(Dtype::parse(s).unwrap().str(), s);
        }
        assert_eq!(Dtype::parse("<i1").unwrap().str(), "|i1");
        for bad in ["f8", "<f3", "|f8", "<U5", "<O8", "<i08", "<M8", ""] {
            assert!(Dtype::parse(bad).is_none(), "{bad}");
        }
    }
}
