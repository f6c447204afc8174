//! Two JSON forms of Python values as typed buffers, so that a C, Go,
//! Fortran or Julia program handles numbers and bytes instead of base64:
//! a numpy array (`{"py/ndarray": {"dtype", "shape", "order", "data"}}`)
//! as its element type, shape, layout and raw elements in this machine's
//! byte order, and `bytes` / `bytearray` (`{"py/bytes": b64}`,
//! `{"py/bytearray": b64}`) as bytes.
//!
//! Only arrays whose elements are plain numbers (bool, signed and unsigned
//! integers, floats, complex) have a typed buffer; any other dtype (strings,
//! datetimes, objects, records) is refused with its name.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// What an array's elements are (numpy's `dtype.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    UInt,
    Float,
    Complex,
}

impl Kind {
    /// numpy's letter for it.
    pub fn letter(self) -> char {
        match self {
            Kind::Bool => 'b',
            Kind::Int => 'i',
            Kind::UInt => 'u',
            Kind::Float => 'f',
            Kind::Complex => 'c',
        }
    }

    /// The element sizes numpy has for this kind, in bytes.
    fn sizes(self) -> &'static [usize] {
        match self {
            Kind::Bool => &[1],
            Kind::Int | Kind::UInt => &[1, 2, 4, 8],
            Kind::Float => &[2, 4, 8, 16],
            Kind::Complex => &[8, 16, 32],
        }
    }

    /// The bytes swapped as one number when the byte order changes: a
    /// complex number is two floats.
    fn swap_unit(self, itemsize: usize) -> usize {
        match self {
            Kind::Complex => itemsize / 2,
            _ => itemsize,
        }
    }
}

/// How multi-byte elements are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    /// This machine's.
    pub const NATIVE: ByteOrder = if cfg!(target_endian = "big") {
        ByteOrder::Big
    } else {
        ByteOrder::Little
    };

    fn prefix(self) -> char {
        match self {
            ByteOrder::Little => '<',
            ByteOrder::Big => '>',
        }
    }
}

/// An element type numpy writes as `dtype.str`: `<f8`, `|b1`, `>i4`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dtype {
    pub kind: Kind,
    /// Bytes per element.
    pub itemsize: usize,
    pub order: ByteOrder,
}

impl Dtype {
    /// Reads numpy's `dtype.str` (`<f8`, `>i2`, `|u1`, `|b1`), also with
    /// `=` or no prefix for this machine's byte order. Other kinds
    /// (strings, datetimes, objects, records, ...) are refused by name.
    pub fn parse(text: &str) -> Result<Dtype> {
        let (order, rest) = match text.chars().next() {
            Some('<') => (Some(ByteOrder::Little), &text[1..]),
            Some('>') => (Some(ByteOrder::Big), &text[1..]),
            Some('=' | '|') => (None, &text[1..]),
            _ => (None, text),
        };
        let mut chars = rest.chars();
        let letter = chars.next();
        let size = chars.as_str();
        let kind = match letter {
            Some('b') => Kind::Bool,
            Some('i') => Kind::Int,
            Some('u') => Kind::UInt,
            Some('f') => Kind::Float,
            Some('c') => Kind::Complex,
            _ => return Err(unsupported(text)),
        };
        let itemsize: usize = size.parse().map_err(|_| unsupported(text))?;
        if !kind.sizes().contains(&itemsize) {
            return Err(unsupported(text));
        }
        Ok(Dtype {
            kind,
            itemsize,
            order: order.unwrap_or(ByteOrder::NATIVE),
        })
    }

    /// numpy's `dtype.str` of this type: `|` for one-byte elements (no
    /// byte order), else `<` or `>`.
    pub fn name(&self) -> String {
        let prefix = if self.itemsize == 1 {
            '|'
        } else {
            self.order.prefix()
        };
        format!("{prefix}{}{}", self.kind.letter(), self.itemsize)
    }

    /// The same type in this machine's byte order.
    pub fn native(self) -> Dtype {
        Dtype {
            order: ByteOrder::NATIVE,
            ..self
        }
    }
}

fn unsupported(dtype: &str) -> Error {
    Error::invalid(format!(
        "the numpy dtype {dtype:?} has no typed buffer: only bool (|b1), integer (i1 to i8), \
         unsigned integer (u1 to u8), float (f2 to f16) and complex (c8 to c32) elements do"
    ))
}

/// How an array's elements are laid out in `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Row-major (C order, numpy's default).
    C,
    /// Column-major (Fortran order).
    F,
}

impl Layout {
    pub fn letter(self) -> char {
        match self {
            Layout::C => 'C',
            Layout::F => 'F',
        }
    }

    pub fn from_letter(letter: char) -> Result<Layout> {
        match letter {
            'C' => Ok(Layout::C),
            'F' => Ok(Layout::F),
            other => Err(Error::invalid(format!(
                "an array's order must be 'C' (row-major) or 'F' (column-major), not {other:?}"
            ))),
        }
    }
}

/// A numpy array of numbers as a typed buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    pub dtype: Dtype,
    /// One entry per dimension; empty for a 0-d array.
    pub shape: Vec<usize>,
    pub layout: Layout,
    /// `product(shape) * itemsize` bytes, in `dtype.order`.
    pub data: Vec<u8>,
}

/// `product(shape) * itemsize`, or an error if it does not fit in memory.
pub fn byte_count(shape: &[usize], itemsize: usize) -> Result<usize> {
    shape
        .iter()
        .try_fold(itemsize, |n, d| n.checked_mul(*d))
        .filter(|n| isize::try_from(*n).is_ok())
        .ok_or_else(|| Error::invalid(format!("an array of shape {shape:?} is too large")))
}

impl NdArray {
    /// An array from its parts; `data` must hold `product(shape) *
    /// itemsize` bytes.
    pub fn new(dtype: Dtype, shape: Vec<usize>, layout: Layout, data: Vec<u8>) -> Result<NdArray> {
        let want = byte_count(&shape, dtype.itemsize)?;
        if data.len() != want {
            return Err(Error::invalid(format!(
                "an array of dtype {} and shape {shape:?} holds {want} bytes, not {}",
                dtype.name(),
                data.len()
            )));
        }
        Ok(NdArray {
            dtype,
            shape,
            layout,
            data,
        })
    }

    /// Reads a `{"py/ndarray": {...}}` form.
    pub fn from_form(value: &Value) -> Result<NdArray> {
        let form = value
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.get("py/ndarray"))
            .ok_or_else(|| not_the_form(value, "{\"py/ndarray\": {...}}"))?;
        let field = |name: &str| {
            form.get(name).ok_or_else(|| {
                Error::invalid(format!("the py/ndarray form has no {name:?}: {form}"))
            })
        };
        let dtype_name = field("dtype")?
            .as_str()
            .ok_or_else(|| Error::invalid("the py/ndarray form's dtype is not a string"))?;
        let dtype = Dtype::parse(dtype_name)?;
        let shape = field("shape")?
            .as_array()
            .and_then(|dims| {
                dims.iter()
                    .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .collect::<Option<Vec<usize>>>()
            })
            .ok_or_else(|| {
                Error::invalid("the py/ndarray form's shape is not a list of sizes")
            })?;
        let layout = match field("order")?.as_str() {
            Some("C") => Layout::C,
            Some("F") => Layout::F,
            _ => return Err(Error::invalid("the py/ndarray form's order is not \"C\" or \"F\"")),
        };
        let data = field("data")?
            .as_str()
            .ok_or_else(|| Error::invalid("the py/ndarray form's data is not a string"))?;
        let want = byte_count(&shape, dtype.itemsize)?;
        let data = BASE64
            .decode(data)
            .map_err(|e| Error::invalid(format!("the py/ndarray form's data is not base64: {e}")))?;
        if data.len() != want {
            return Err(length_mismatch(dtype_name, &shape, want));
        }
        Ok(NdArray {
            dtype,
            shape,
            layout,
            data,
        })
    }

    /// The `{"py/ndarray": {...}}` form of this array.
    pub fn to_form(&self) -> Value {
        json!({"py/ndarray": {
            "dtype": self.dtype.name(),
            "shape": self.shape,
            "order": self.layout.letter().to_string(),
            "data": BASE64.encode(&self.data),
        }})
    }

    /// The array with its elements in this machine's byte order.
    pub fn into_native(mut self) -> NdArray {
        if self.dtype.order != ByteOrder::NATIVE && self.dtype.itemsize > 1 {
            let unit = self.dtype.kind.swap_unit(self.dtype.itemsize);
            for number in self.data.chunks_exact_mut(unit) {
                number.reverse();
            }
        }
        self.dtype = self.dtype.native();
        self
    }
}

fn length_mismatch(dtype: &str, shape: &[usize], want: usize) -> Error {
    Error::invalid(format!(
        "the py/ndarray form's data does not hold {want} bytes, as dtype {dtype:?} and shape {shape:?} need"
    ))
}

fn not_the_form(value: &Value, form: &str) -> Error {
    let mut shown = value.to_string();
    if shown.len() > 80 {
        let cut = (0..=80).rev().find(|i| shown.is_char_boundary(*i)).unwrap_or(0);
        shown.truncate(cut);
        shown.push_str("...");
    }
    Error::invalid(format!("the value is not of the form {form}: {shown}"))
}

/// Reads a `{"py/bytes": b64}` or `{"py/bytearray": b64}` form.
pub fn bytes_from_form(value: &Value) -> Result<Vec<u8>> {
    let data = value
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get("py/bytes").or_else(|| o.get("py/bytearray")))
        .ok_or_else(|| not_the_form(value, "{\"py/bytes\": ...} or {\"py/bytearray\": ...}"))?;
    let data = data
        .as_str()
        .ok_or_else(|| Error::invalid("the bytes form does not hold a base64 string"))?;
    BASE64
        .decode(data)
        .map_err(|e| Error::invalid(format!("the bytes form's data is not base64: {e}")))
}

/// The `{"py/bytes": b64}` form of `data`.
pub fn bytes_form(data: &[u8]) -> Value {
    json!({ "py/bytes": BASE64.encode(data) })
}

/// The value at an RFC 6901 JSON pointer (`""` is the whole value, `/0`
/// the first item of an array, `/a/b` key `b` of key `a`).
pub fn at_pointer<'a>(value: &'a Value, pointer: &str) -> Result<&'a Value> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(Error::invalid(format!(
            "{pointer:?} is not a JSON pointer: it must be empty or start with '/'"
        )));
    }
    value
        .pointer(pointer)
        .ok_or_else(|| Error::invalid(format!("nothing is at the JSON pointer {pointer:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtypes_read_as_numpy_writes_them() {
        let f8 = Dtype::parse("<f8").unwrap();
        assert_eq!((f8.kind, f8.itemsize, f8.order), (Kind::Float, 8, ByteOrder::Little));
        assert_eq!(f8.name(), "<f8");
        assert_eq!(Dtype::parse(">i4").unwrap().name(), ">i4");
        assert_eq!(Dtype::parse("|b1").unwrap().name(), "|b1");
        assert_eq!(Dtype::parse("|u1").unwrap().kind, Kind::UInt);
        assert_eq!(Dtype::parse("<c16").unwrap().kind, Kind::Complex);
        for native in ["=f8", "f8"] {
            assert_eq!(Dtype::parse(native).unwrap(), f8.native());
        }
        for refused in ["<U5", "|S3", "|O", "<M8[ns]", "|V16", "<m8", "<f3", "<i16", "", "<", "<f"] {
            let e = Dtype::parse(refused).unwrap_err();
            assert!(e.message.contains(&format!("{refused:?}")), "{}", e.message);
        }
    }

    #[test]
    fn arrays_read_back_and_swap_to_this_machine() {
        let data: Vec<u8> = [1.5f64, -2.0].iter().flat_map(|f| f.to_le_bytes()).collect();
        let a = NdArray::new(Dtype::parse("<f8").unwrap(), vec![2], Layout::C, data).unwrap();
        let form = a.to_form();
        assert_eq!(form["py/ndarray"]["shape"], json!([2]));
        assert_eq!(NdArray::from_form(&form).unwrap(), a);

        let big = json!({"py/ndarray": {"dtype": ">i2", "shape": [2], "order": "F",
                         "data": BASE64.encode([0u8, 1, 1, 0])}});
        let native = NdArray::from_form(&big).unwrap().into_native();
        let values: Vec<i16> = native
            .data
            .chunks_exact(2)
            .map(|b| i16::from_ne_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(values, [1, 256]);
        assert_eq!(native.layout, Layout::F);

        // A complex number swaps as two floats.
        let c = json!({"py/ndarray": {"dtype": ">c8", "shape": [], "order": "C",
                       "data": BASE64.encode([1.0f32.to_be_bytes(), 2.0f32.to_be_bytes()].concat())}});
        let c = NdArray::from_form(&c).unwrap().into_native();
        assert_eq!(c.shape, Vec::<usize>::new());
        assert_eq!(
            c.data,
            [1.0f32.to_ne_bytes(), 2.0f32.to_ne_bytes()].concat()
        );
    }

    #[test]
    fn bad_array_forms_are_refused() {
        let form = |dtype: &str, shape: Value, data: &[u8]| {
            json!({"py/ndarray": {"dtype": dtype, "shape": shape, "order": "C", "data": BASE64.encode(data)}})
        };
        for (bad, says) in [
            (form("<f8", json!([2]), &[0; 8]), "16 bytes"),
            (form("<f8", json!([usize::MAX, 2]), &[0; 8]), "too large"),
            (form("<U1", json!([1]), &[0; 4]), "\"<U1\""),
            (form("<f8", json!([-1]), &[]), "shape"),
            (json!({"py/bytes": ""}), "not of the form"),
            (json!([1]), "not of the form"),
        ] {
            let e = NdArray::from_form(&bad).unwrap_err();
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
        assert!(NdArray::new(Dtype::parse("<i4").unwrap(), vec![3], Layout::C, vec![0; 11]).is_err());
    }

    #[test]
    fn bytes_and_pointers() {
        let form = bytes_form(b"\x00\xffab");
        assert_eq!(form, json!({"py/bytes": "AP9hYg=="}));
        assert_eq!(bytes_from_form(&form).unwrap(), b"\x00\xffab");
        assert_eq!(
            bytes_from_form(&json!({"py/bytearray": "YQ=="})).unwrap(),
            b"a"
        );
        assert!(bytes_from_form(&json!({"py/bytes": 5})).is_err());
        assert!(bytes_from_form(&json!("YQ==")).is_err());
        let v = json!({"a": [1, {"b/c": 2}], "~": 3});
        assert_eq!(at_pointer(&v, "").unwrap(), &v);
        assert_eq!(at_pointer(&v, "/a/1/b~1c").unwrap(), &json!(2));
        assert_eq!(at_pointer(&v, "/~0").unwrap(), &json!(3));
        assert!(at_pointer(&v, "/a/2").is_err());
        assert!(at_pointer(&v, "a").is_err());
    }
}
