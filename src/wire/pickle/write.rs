//! Writes the value a JSON form describes as a pickle of protocol 4, which
//! every Python 3 (3.4 on) reads, with the opcodes Python's own pickler
//! writes for the same value, so that reading it back gives the same JSON
//! form. numpy arrays and scalars name `numpy.core.multiarray`, which both
//! numpy 1.x and 2.x load without a warning (numpy 2 keeps those two names
//! for old pickles; numpy 1.x before 1.26 has no `numpy._core`).
//!
//! The walk keeps its own stack, so a value of any depth is written
//! without recursion.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::numpy::{self, Dtype};
use super::ops::*;
use super::text;
use crate::error::{Error, Result};

/// The pickle of the value `value` describes.
pub fn write(value: &Value) -> Result<Vec<u8>> {
    let mut w = Writer {
        out: Vec::with_capacity(64),
    };
    w.out.extend([PROTO, 4]);
    let mut tasks = vec![Task::Value(value)];
    while let Some(task) = tasks.pop() {
        match task {
            Task::Op(op) => w.out.push(op),
            Task::Str(s) => w.str(s),
            Task::Value(v) => w.value(v, &mut tasks)?,
        }
    }
    w.out.push(STOP);
    Ok(w.out)
}

/// What is left to write, last first.
enum Task<'v> {
    Value(&'v Value),
    Op(u8),
    Str(&'v str),
}

/// Tasks in the order they are written (pushed reversed on the stack).
struct Plan<'v>(Vec<Task<'v>>);

impl<'v> Plan<'v> {
    fn new() -> Self {
        Plan(Vec::new())
    }
    fn op(&mut self, op: u8) -> &mut Self {
        self.0.push(Task::Op(op));
        self
    }
    fn value(&mut self, v: &'v Value) -> &mut Self {
        self.0.push(Task::Value(v));
        self
    }
    fn values(&mut self, vs: &'v [Value]) -> &mut Self {
        self.0.extend(vs.iter().map(Task::Value));
        self
    }
    /// A tuple of `items`.
    fn tuple(&mut self, items: &'v [Value]) -> &mut Self {
        match items.len() {
            0 => self.op(EMPTY_TUPLE),
            n @ 1..=3 => self.values(items).op(TUPLE1 + n as u8 - 1),
            _ => self.op(MARK).values(items).op(TUPLE),
        }
    }
    /// `items` appended to the list (or object) on the stack.
    fn appends(&mut self, items: &'v [Value]) -> &mut Self {
        if items.is_empty() {
            return self;
        }
        self.op(MARK).values(items).op(APPENDS)
    }
    fn push_to(self, tasks: &mut Vec<Task<'v>>) {
        tasks.extend(self.0.into_iter().rev());
    }
}

struct Writer {
    out: Vec<u8>,
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::protocol(format!("JSON form to pickle: {what}"))
}

/// The forms, by their key.
const FORMS: [&str; 12] = [
    "py/tuple",
    "py/set",
    "py/frozenset",
    "py/bytes",
    "py/bytearray",
    "py/complex",
    "py/dict",
    "py/ndarray",
    "py/npscalar",
    "py/global",
    "py/object",
    "py/reduce",
];

impl Writer {
    fn value<'v>(&mut self, v: &'v Value, tasks: &mut Vec<Task<'v>>) -> Result<()> {
        match v {
            Value::Null => self.out.push(NONE),
            Value::Bool(b) => self.out.push(if *b { NEWTRUE } else { NEWFALSE }),
            Value::Number(n) => self.number(n)?,
            Value::String(s) => self.str(s),
            Value::Array(items) => {
                self.out.push(EMPTY_LIST);
                let mut p = Plan::new();
                p.appends(items);
                p.push_to(tasks);
            }
            Value::Object(m) if m.keys().any(|k| k.starts_with("py/")) => self.form(m, tasks)?,
            Value::Object(m) => {
                self.out.push(EMPTY_DICT);
                if !m.is_empty() {
                    let mut p = Plan::new();
                    p.op(MARK);
                    for (k, v) in m {
                        p.0.push(Task::Str(k));
                        p.value(v);
                    }
                    p.op(SETITEMS);
                    p.push_to(tasks);
                }
            }
        }
        Ok(())
    }

    fn form<'v>(&mut self, m: &'v Map<String, Value>, tasks: &mut Vec<Task<'v>>) -> Result<()> {
        if let Some(cls) = m.get("py/object") {
            return self.object(cls, m, tasks);
        }
        let mut entries = m.iter();
        let (Some((key, body)), None) = (entries.next(), entries.next()) else {
            return Err(bad(format_args!(
                "an object with a py/ key must be one form alone, not {:?}",
                m.keys().collect::<Vec<_>>()
            )));
        };
        let items = || {
            body.as_array()
                .map(Vec::as_slice)
                .ok_or_else(|| bad(format_args!("{key} needs an array")))
        };
        let mut p = Plan::new();
        match key.as_str() {
            "py/tuple" => {
                p.tuple(items()?);
            }
            "py/set" => {
                self.out.push(EMPTY_SET);
                let items = items()?;
                if !items.is_empty() {
                    p.op(MARK).values(items).op(ADDITEMS);
                }
            }
            "py/frozenset" => {
                p.op(MARK).values(items()?).op(FROZENSET);
            }
            "py/bytes" => self.bytes(base64_text(key, body)?)?,
            "py/bytearray" => {
                self.global("builtins", "bytearray");
                self.bytes(base64_text(key, body)?)?;
                self.out.extend([TUPLE1, REDUCE]);
            }
            "py/complex" => {
                let parts = match items()? {
                    [Value::Number(re), Value::Number(im)] => [re, im],
                    _ => return Err(bad("py/complex needs [real, imag]")),
                };
                self.global("builtins", "complex");
                for part in parts {
                    self.float(numpy::number_f64(part).map_err(bad)?);
                }
                self.out.extend([TUPLE2, REDUCE]);
            }
            "py/dict" => {
                self.out.push(EMPTY_DICT);
                let pairs = items()?;
                if !pairs.is_empty() {
                    p.op(MARK);
                    for pair in pairs {
                        match pair.as_array().map(Vec::as_slice) {
                            Some([k, v]) => p.value(k).value(v),
                            _ => return Err(bad("py/dict needs [key, value] pairs")),
                        };
                    }
                    p.op(SETITEMS);
                }
            }
            "py/ndarray" => self.ndarray(body)?,
            "py/npscalar" => self.npscalar(body)?,
            "py/global" => {
                let name = body
                    .as_str()
                    .ok_or_else(|| bad("py/global needs a \"module:QualName\" string"))?;
                self.name(name)?;
            }
            "py/reduce" => return self.reduce(body, tasks),
            other => {
                return Err(bad(format_args!(
                    "unknown form {other:?} (the forms: {})",
                    FORMS.join(", ")
                )))
            }
        }
        p.push_to(tasks);
        Ok(())
    }

    /// `{"py/object": cls, "args", "kwargs", "state", "listitems", "dictitems"}`:
    /// `cls.__new__(cls, *args, **kwargs)`, then the items and the state.
    fn object<'v>(
        &mut self,
        cls: &'v Value,
        m: &'v Map<String, Value>,
        tasks: &mut Vec<Task<'v>>,
    ) -> Result<()> {
        const KEYS: [&str; 6] = [
            "py/object",
            "args",
            "kwargs",
            "state",
            "listitems",
            "dictitems",
        ];
        if let Some(k) = m.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(bad(format_args!(
                "py/object does not take {k:?} (it takes {})",
                KEYS.join(", ")
            )));
        }
        let mut p = Plan::new();
        self.callable(cls, &mut p, "py/object")?;
        p.tuple(array_field(m, "args", "py/object")?);
        match m.get("kwargs") {
            Some(kw @ Value::Object(_)) => p.value(kw).op(NEWOBJ_EX),
            Some(_) => return Err(bad("py/object's kwargs must be an object")),
            None => p.op(NEWOBJ),
        };
        self.after_call(m, &mut p, "py/object")?;
        p.push_to(tasks);
        Ok(())
    }

    /// `{"py/reduce": {"callable", "args", "state", "listitems", "dictitems"}}`.
    fn reduce<'v>(&mut self, body: &'v Value, tasks: &mut Vec<Task<'v>>) -> Result<()> {
        const KEYS: [&str; 5] = ["callable", "args", "state", "listitems", "dictitems"];
        let m = body
            .as_object()
            .ok_or_else(|| bad("py/reduce needs an object"))?;
        if let Some(k) = m.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(bad(format_args!(
                "py/reduce does not take {k:?} (it takes {})",
                KEYS.join(", ")
            )));
        }
        let callable = m
            .get("callable")
            .ok_or_else(|| bad("py/reduce needs a callable"))?;
        let mut p = Plan::new();
        self.callable(callable, &mut p, "py/reduce")?;
        p.tuple(array_field(m, "args", "py/reduce")?).op(REDUCE);
        self.after_call(m, &mut p, "py/reduce")?;
        p.push_to(tasks);
        Ok(())
    }

    /// A class or callable: `"module:QualName"`, or the form of a value.
    fn callable<'v>(&mut self, v: &'v Value, p: &mut Plan<'v>, form: &str) -> Result<()> {
        match v {
            Value::String(name) => self.name(name),
            Value::Object(_) => {
                p.value(v);
                Ok(())
            }
            _ => Err(bad(format_args!(
                "{form} needs \"module:QualName\" or a form"
            ))),
        }
    }

    /// The items and the state a `py/object` or `py/reduce` adds to the
    /// object made, in the order Python's pickler writes them.
    fn after_call<'v>(
        &mut self,
        m: &'v Map<String, Value>,
        p: &mut Plan<'v>,
        form: &str,
    ) -> Result<()> {
        p.appends(array_field(m, "listitems", form)?);
        let pairs = array_field(m, "dictitems", form)?;
        if !pairs.is_empty() {
            p.op(MARK);
            for pair in pairs {
                match pair.as_array().map(Vec::as_slice) {
                    Some([k, v]) => p.value(k).value(v),
                    _ => {
                        return Err(bad(format_args!(
                            "{form}'s dictitems needs [key, value] pairs"
                        )))
                    }
                };
            }
            p.op(SETITEMS);
        }
        if let Some(state) = m.get("state") {
            p.value(state).op(BUILD);
        }
        Ok(())
    }

    fn ndarray(&mut self, body: &Value) -> Result<()> {
        let m = body
            .as_object()
            .ok_or_else(|| bad("py/ndarray needs an object"))?;
        for k in m.keys() {
            if !["dtype", "shape", "order", "data"].contains(&k.as_str()) {
                return Err(bad(format_args!("py/ndarray does not take {k:?}")));
            }
        }
        let dtype = dtype_field(m, "py/ndarray")?;
        let shape: Vec<u64> = m
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|dims| {
                dims.iter()
                    .map(|d| d.as_i64().and_then(|d| u64::try_from(d).ok()))
                    .collect()
            })
            .ok_or_else(|| bad("py/ndarray needs a shape: an array of sizes"))?;
        let fortran = match m.get("order").and_then(Value::as_str) {
            Some("C") => false,
            Some("F") => true,
            _ => return Err(bad("py/ndarray's order is \"C\" or \"F\"")),
        };
        let data = m
            .get("data")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("py/ndarray needs data: base64"))?;
        let need = shape
            .iter()
            .try_fold(dtype.size as u64, |n, d| n.checked_mul(*d))
            .ok_or_else(|| bad("py/ndarray's shape is too large"))?;
        let have = base64_len(data).ok_or_else(|| bad("py/ndarray's data is not base64"))?;
        if have as u64 != need {
            return Err(bad(format_args!(
                "py/ndarray's data has {have} bytes; shape {shape:?} of {} needs {need}",
                dtype.str()
            )));
        }
        self.global(numpy::MULTIARRAY[0], "_reconstruct");
        self.global("numpy", "ndarray");
        self.out
            .extend([BININT1, 0, TUPLE1, SHORT_BINBYTES, 1, b'b', TUPLE3, REDUCE]);
        self.out.extend([MARK, BININT1, 1]);
        self.out.push(MARK);
        for d in &shape {
            self.int(*d as i64);
        }
        self.out.push(TUPLE);
        self.dtype(dtype);
        self.out.push(if fortran { NEWTRUE } else { NEWFALSE });
        self.bytes(data)?;
        self.out.extend([TUPLE, BUILD]);
        Ok(())
    }

    fn npscalar(&mut self, body: &Value) -> Result<()> {
        let m = body
            .as_object()
            .ok_or_else(|| bad("py/npscalar needs an object"))?;
        if let Some(k) = m.keys().find(|k| !["dtype", "value"].contains(&k.as_str())) {
            return Err(bad(format_args!("py/npscalar does not take {k:?}")));
        }
        let dtype = dtype_field(m, "py/npscalar")?;
        let value = m
            .get("value")
            .ok_or_else(|| bad("py/npscalar needs a value"))?;
        let raw =
            numpy::scalar_bytes(dtype, value).map_err(|e| bad(format_args!("py/npscalar: {e}")))?;
        self.global(numpy::MULTIARRAY[0], "scalar");
        self.dtype(dtype);
        self.raw_bytes(&raw);
        self.out.extend([TUPLE2, REDUCE]);
        Ok(())
    }

    /// `numpy.dtype(code, False, True)` with its state, as numpy pickles it.
    fn dtype(&mut self, d: Dtype) {
        self.global("numpy", "dtype");
        self.str(&d.code());
        self.out.extend([NEWFALSE, NEWTRUE, TUPLE3, REDUCE]);
        self.out.extend([MARK, BININT1, 3]);
        self.str(&(d.order as char).to_string());
        self.out.extend([NONE, NONE, NONE]);
        self.int(-1);
        self.int(-1);
        self.int(0);
        self.out.extend([TUPLE, BUILD]);
    }

    fn number(&mut self, n: &Number) -> Result<()> {
        let text = n.as_str();
        if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            if let Ok(v) = text.parse::<i64>() {
                self.int(v);
                return Ok(());
            }
            let bytes = text::int_to_le(text).ok_or_else(|| {
                bad(format_args!(
                    "integer {}... is not an integer of at most {} digits",
                    &text[..text.len().min(20)],
                    text::MAX_INT_DIGITS
                ))
            })?;
            self.long(&bytes);
            return Ok(());
        }
        self.float(numpy::number_f64(n).map_err(bad)?);
        Ok(())
    }

    /// An int as Python's pickler writes it.
    fn int(&mut self, v: i64) {
        if (0..=0xff).contains(&v) {
            self.out.extend([BININT1, v as u8]);
        } else if (0..=0xffff).contains(&v) {
            self.out.push(BININT2);
            self.out.extend((v as u16).to_le_bytes());
        } else if let Ok(v) = i32::try_from(v) {
            self.out.push(BININT);
            self.out.extend(v.to_le_bytes());
        } else {
            let bytes = text::int_to_le(&v.to_string()).unwrap_or_default();
            self.long(&bytes);
        }
    }

    fn long(&mut self, bytes: &[u8]) {
        if let Ok(n) = u8::try_from(bytes.len()) {
            self.out.extend([LONG1, n]);
        } else {
            self.out.push(LONG4);
            self.out.extend((bytes.len() as u32).to_le_bytes());
        }
        self.out.extend(bytes);
    }

    fn float(&mut self, f: f64) {
        self.out.push(BINFLOAT);
        self.out.extend(f.to_be_bytes());
    }

    fn str(&mut self, s: &str) {
        self.head([SHORT_BINUNICODE, BINUNICODE, BINUNICODE8], s.len());
        self.out.extend(s.as_bytes());
    }

    fn bytes_head(&mut self, n: usize) {
        self.head([SHORT_BINBYTES, BINBYTES, BINBYTES8], n);
    }

    /// The opcode and length of `n` bytes of data: the opcode for a one,
    /// four or eight byte length (`ops`), the shortest that holds `n`.
    fn head(&mut self, ops: [u8; 3], n: usize) {
        if let Ok(short) = u8::try_from(n) {
            self.out.extend([ops[0], short]);
        } else if let Ok(n) = u32::try_from(n) {
            self.out.push(ops[1]);
            self.out.extend(n.to_le_bytes());
        } else {
            self.out.push(ops[2]);
            self.out.extend((n as u64).to_le_bytes());
        }
    }

    fn raw_bytes(&mut self, b: &[u8]) {
        self.bytes_head(b.len());
        self.out.extend(b);
    }

    /// Bytes given as base64, decoded straight into the pickle.
    fn bytes(&mut self, b64: &str) -> Result<()> {
        let n = base64_len(b64).ok_or_else(|| bad("not base64 (standard alphabet, padded)"))?;
        self.bytes_head(n);
        let start = self.out.len();
        self.out.resize(start + n, 0);
        match base64::engine::general_purpose::STANDARD.decode_slice(b64, &mut self.out[start..]) {
            Ok(written) if written == n => Ok(()),
            _ => Err(bad("not base64 (standard alphabet, padded)")),
        }
    }

    fn global(&mut self, module: &str, qualname: &str) {
        self.str(module);
        self.str(qualname);
        self.out.push(STACK_GLOBAL);
    }

    /// `"module:QualName"` (split at the first colon).
    fn name(&mut self, name: &str) -> Result<()> {
        match name.split_once(':') {
            Some((m, q)) => {
                self.global(m, q);
                Ok(())
            }
            _ => Err(bad(format_args!("{name:?} is not \"module:QualName\""))),
        }
    }
}

fn base64_text<'v>(form: &str, body: &'v Value) -> Result<&'v str> {
    body.as_str()
        .ok_or_else(|| bad(format_args!("{form} needs a base64 string")))
}

/// The length of the bytes that padded base64 text holds, if its length
/// is one base64 can have.
fn base64_len(text: &str) -> Option<usize> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let pad = text
        .bytes()
        .rev()
        .take(2)
        .take_while(|b| *b == b'=')
        .count();
    Some(text.len() / 4 * 3 - pad)
}

/// An optional array field of a form (absent: empty).
fn array_field<'v>(m: &'v Map<String, Value>, key: &str, form: &str) -> Result<&'v [Value]> {
    match m.get(key) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(bad(format_args!("{form}'s {key} must be an array"))),
    }
}

fn dtype_field(m: &Map<String, Value>, form: &str) -> Result<Dtype> {
    m.get("dtype")
        .and_then(Value::as_str)
        .and_then(Dtype::parse)
        .ok_or_else(|| {
            bad(format_args!(
                "{form} needs a dtype of bool, integers, floats or complex, as numpy's dtype.str (\"<f8\", \"|b1\", \">i4\")"
            ))
        })
}
