//! The JSON form of a pickle's graph: shared objects are copied, an
//! object that contains itself is an error, and the copying stops at the
//! limits. The walk keeps its own stack (no recursion), and the value it
//! builds is never deeper than the limit, so neither building nor
//! dropping it can overflow the thread's stack.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::graph::{Call, Graph, Id, Made, Node, TRUE_ID};
use super::numpy;
use super::text::Int;
use super::Limits;
use crate::error::{Error, Result};
use crate::wire::pyjson;

/// The JSON form of the object `top` of `graph`.
pub fn build(graph: &Graph, top: Id, limits: &Limits) -> Result<Value> {
    let mut walk = Walk {
        g: graph,
        limits,
        budget: limits.max_output_bytes,
        open: vec![false; graph.nodes.len()],
        seen: vec![false; graph.nodes.len()],
        copying: false,
    };
    walk.run(top)
}

struct Walk<'g, 'a> {
    g: &'g Graph<'a>,
    limits: &'g Limits,
    /// Bytes of JSON text that copies of shared objects may still take.
    budget: usize,
    /// The objects being built (on the walk's stack): meeting one again
    /// means it contains itself.
    open: Vec<bool>,
    /// The objects met before: meeting one again makes a copy.
    seen: Vec<bool>,
    /// Whether the object being read is such a copy.
    copying: bool,
}

/// A container whose parts are being built.
struct Frame<'g> {
    node: Id,
    kind: Kind<'g>,
    kids: Vec<Id>,
    next: usize,
    values: Vec<Value>,
    /// The JSON nesting of the built value so far.
    height: usize,
    /// Containers above this one.
    depth: usize,
}

enum Kind<'g> {
    List,
    /// `py/tuple`, `py/set`, `py/frozenset`.
    Seq(&'static str),
    Dict,
    Call(&'g Call),
}

/// Where the parts of a call's form go, in the order of `Frame::kids`.
struct CallParts {
    callable: bool,
    args: usize,
    kwargs: bool,
    listitems: usize,
    dictitems: usize,
    state: bool,
}

impl CallParts {
    fn of(g: &Graph, call: &Call) -> Self {
        CallParts {
            callable: callable_is_value(g, call),
            args: call.args.len(),
            kwargs: call.kwargs.is_some(),
            listitems: call.listitems.len(),
            dictitems: call.dictitems.len() * 2,
            state: call.state.is_some(),
        }
    }
}

/// A built part or a container to descend into.
enum Step<'g> {
    Leaf(Value, usize),
    Open(Kind<'g>, Vec<Id>),
}

impl<'g, 'a> Walk<'g, 'a> {
    fn error(&self, what: impl std::fmt::Display) -> Error {
        Error::protocol(format!("pickle: {what}"))
    }

    /// Counts the JSON text of the object being read against the limit
    /// when it is a copy (the first time, the pickle's own bytes pay for
    /// it: every object costs at least one).
    fn charge(&mut self, bytes: usize) -> Result<()> {
        if self.copying {
            self.charge_always(bytes)
        } else {
            Ok(())
        }
    }

    /// Counts bytes against the limit: for data that a form takes from an
    /// object inside it, which may be shared without the walk seeing it.
    fn charge_always(&mut self, bytes: usize) -> Result<()> {
        match self.budget.checked_sub(bytes) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => Err(self.error(format_args!(
                "the value's JSON form is larger than {} bytes (shared objects are copied)",
                self.limits.max_output_bytes
            ))),
        }
    }

    fn too_deep(&self) -> Error {
        self.error(format_args!(
            "the value is nested deeper than {} levels",
            self.limits.max_depth
        ))
    }

    fn run(&mut self, top: Id) -> Result<Value> {
        let mut stack: Vec<Frame<'g>> = Vec::new();
        let mut pending = Some(top);
        loop {
            if let Some(id) = pending.take() {
                let depth = stack.last().map_or(0, |f| f.depth + 1);
                match self.step(id)? {
                    Step::Leaf(v, h) => {
                        if h > self.limits.max_depth {
                            return Err(self.too_deep());
                        }
                        match stack.last_mut() {
                            Some(parent) => self.give(parent, v, h),
                            None => return Ok(v),
                        }
                    }
                    Step::Open(kind, kids) => {
                        if depth >= self.limits.max_depth {
                            return Err(self.too_deep());
                        }
                        if std::mem::replace(&mut self.open[id as usize], true) {
                            return Err(
                                self.error("a value that contains itself (a reference cycle)")
                            );
                        }
                        // The nesting of the form when its parts are scalars.
                        let base = match &kind {
                            Kind::Dict => 0,
                            Kind::List => 1,
                            Kind::Seq(_) => 2,
                            Kind::Call(c) if c.made == Made::New => 1,
                            Kind::Call(_) => 3,
                        };
                        stack.push(Frame {
                            node: id,
                            values: Vec::with_capacity(kids.len()),
                            kind,
                            kids,
                            next: 0,
                            height: base,
                            depth,
                        });
                    }
                }
            }
            let Some(frame) = stack.last_mut() else {
                return Err(self.error("internal: the walk ended without a value"));
            };
            if let Some(&kid) = frame.kids.get(frame.next) {
                frame.next += 1;
                pending = Some(kid);
                continue;
            }
            let Some(frame) = stack.pop() else { continue };
            self.open[frame.node as usize] = false;
            let (value, height) = self.finish(frame)?;
            if height > self.limits.max_depth {
                return Err(self.too_deep());
            }
            match stack.last_mut() {
                Some(parent) => self.give(parent, value, height),
                None => return Ok(value),
            }
        }
    }

    /// Hands a built part to its container, noting how deep it nests.
    fn give(&self, parent: &mut Frame<'g>, value: Value, height: usize) {
        let index = parent.values.len();
        let offset = match &parent.kind {
            Kind::List => 1,
            Kind::Seq(_) => 2,
            // A dict's keys and values: 1 as an object, 3 as py/dict
            // (settled when it is finished).
            Kind::Dict => 0,
            Kind::Call(call) => call_offset(&CallParts::of(self.g, call), call.made, index),
        };
        parent.height = parent.height.max(height + offset);
        parent.values.push(value);
    }

    /// What one object is: a finished leaf, or a container to fill.
    fn step(&mut self, id: Id) -> Result<Step<'g>> {
        let g: &'g Graph<'a> = self.g;
        // None, False and True are shared by every pickle without cost.
        self.copying = std::mem::replace(&mut self.seen[id as usize], true) && id > TRUE_ID;
        let leaf = |v: Value, h: usize| Ok(Step::Leaf(v, h));
        match g.get(id) {
            Node::None => {
                self.charge(6)?;
                leaf(Value::Null, 0)
            }
            Node::Bool(b) => {
                self.charge(7)?;
                leaf(Value::Bool(*b), 0)
            }
            Node::Int(Int::Small(v)) => {
                self.charge(24)?;
                leaf(Value::from(*v), 0)
            }
            Node::Int(Int::Big(text)) => {
                self.charge(text.len() + 2)?;
                leaf(
                    Value::Number(Number::from_string_unchecked(text.clone())),
                    0,
                )
            }
            Node::Float(f) => {
                self.charge(26)?;
                leaf(float(*f), 0)
            }
            Node::Str(s) => {
                self.charge(s.len() + 4)?;
                leaf(Value::String(s.to_string()), 0)
            }
            Node::Surrogates(raw) => {
                self.charge(raw.len() * 4 / 3 + 100)?;
                leaf(surrogates(raw), 4)
            }
            Node::Bytes(b) => self.bytes_leaf("py/bytes", b),
            Node::ByteArray(b) => self.bytes_leaf("py/bytearray", b),
            Node::Global(name) => {
                self.charge(name.module.len() + name.qualname.len() + 20)?;
                leaf(
                    one(
                        "py/global",
                        Value::String(format!("{}:{}", name.module, name.qualname)),
                    ),
                    1,
                )
            }
            Node::List(items) => {
                self.charge(4)?;
                Ok(Step::Open(Kind::List, items.clone()))
            }
            Node::Tuple(items) => {
                self.charge(16)?;
                Ok(Step::Open(Kind::Seq("py/tuple"), items.clone()))
            }
            Node::Set(items) => {
                self.charge(16)?;
                Ok(Step::Open(Kind::Seq("py/set"), items.clone()))
            }
            Node::FrozenSet(items) => {
                self.charge(20)?;
                Ok(Step::Open(Kind::Seq("py/frozenset"), items.clone()))
            }
            Node::Dict(pairs) => {
                self.charge(4 + pairs.len() * 8)?;
                Ok(Step::Open(
                    Kind::Dict,
                    pairs.iter().flat_map(|(k, v)| [*k, *v]).collect(),
                ))
            }
            Node::Call(call) => self.call_step(id, call),
        }
    }

    fn bytes_leaf(&mut self, form: &str, data: &[u8]) -> Result<Step<'g>> {
        self.charge(data.len().div_ceil(3) * 4 + 20)?;
        Ok(Step::Leaf(one(form, Value::String(base64(data))), 1))
    }

    /// Bytes a call's form holds (from an object inside the call).
    fn payload_leaf(&mut self, form: &str, data: &[u8]) -> Result<Step<'g>> {
        self.charge_always(data.len().div_ceil(3) * 4 + 20)?;
        Ok(Step::Leaf(one(form, Value::String(base64(data))), 1))
    }

    /// A call: one of the forms of a known call, or the general
    /// `py/object` / `py/reduce`.
    fn call_step(&mut self, id: Id, call: &'g Call) -> Result<Step<'g>> {
        let g: &'g Graph<'a> = self.g;
        if let Some(a) = numpy::array(g, id) {
            self.charge_always(a.data.len().div_ceil(3) * 4 + 80 + a.shape.len() * 22)?;
            let mut m = Map::new();
            m.insert("dtype".into(), a.dtype.str().into());
            m.insert(
                "shape".into(),
                Value::Array(a.shape.iter().map(|d| Value::from(*d)).collect()),
            );
            m.insert("order".into(), (if a.fortran { "F" } else { "C" }).into());
            m.insert("data".into(), Value::String(base64(&a.data)));
            return Ok(Step::Leaf(one("py/ndarray", Value::Object(m)), 3));
        }
        if let Some((dtype, value)) = numpy::scalar(g, id) {
            self.charge(80)?;
            let mut m = Map::new();
            m.insert("dtype".into(), dtype.str().into());
            m.insert("value".into(), value);
            return Ok(Step::Leaf(one("py/npscalar", Value::Object(m)), 3));
        }
        if let Some(b) = numpy::bytes_of(g, id) {
            return self.payload_leaf("py/bytes", &b);
        }
        if let Some(args) = g.bare_call_of(id, "builtins", "bytearray") {
            match args {
                [] => return self.payload_leaf("py/bytearray", b""),
                [b] => {
                    if let Some(b) = numpy::bytes_of(g, *b) {
                        return self.payload_leaf("py/bytearray", &b);
                    }
                }
                _ => {}
            }
        }
        if let Some([re, im]) = g.bare_call_of(id, "builtins", "complex") {
            if let (Node::Float(re), Node::Float(im)) = (g.get(*re), g.get(*im)) {
                self.charge(60)?;
                return Ok(Step::Leaf(
                    one("py/complex", Value::Array(vec![float(*re), float(*im)])),
                    2,
                ));
            }
        }
        for (name, form) in [("set", "py/set"), ("frozenset", "py/frozenset")] {
            match g.bare_call_of(id, "builtins", name) {
                Some([]) => {
                    self.charge(20)?;
                    return Ok(Step::Open(Kind::Seq(form), Vec::new()));
                }
                Some([list]) => {
                    if let Node::List(items) = g.get(*list) {
                        self.charge(20)?;
                        return Ok(Step::Open(Kind::Seq(form), items.clone()));
                    }
                }
                _ => {}
            }
        }
        let name = g.global(call.callable);
        self.charge(60 + name.map_or(0, |n| n.module.len() + n.qualname.len()))?;
        let mut kids = Vec::with_capacity(
            call.args.len() + call.listitems.len() + 2 * call.dictitems.len() + 3,
        );
        if name.is_none() {
            kids.push(call.callable);
        }
        kids.extend(&call.args);
        kids.extend(call.kwargs);
        kids.extend(&call.listitems);
        kids.extend(call.dictitems.iter().flat_map(|(k, v)| [*k, *v]));
        kids.extend(call.state);
        Ok(Step::Open(Kind::Call(call), kids))
    }

    /// Builds a container from its finished parts: the value and its
    /// nesting.
    fn finish(&self, frame: Frame<'g>) -> Result<(Value, usize)> {
        let Frame {
            kind,
            values,
            height,
            ..
        } = frame;
        Ok(match kind {
            Kind::List => (Value::Array(values), height),
            Kind::Seq(form) => (one(form, Value::Array(values)), height),
            Kind::Dict => dict(values, height),
            Kind::Call(call) => {
                if callable_is_value(self.g, call) {
                    callable_form(values.first()).map_err(|e| {
                        self.error(format_args!("{e} (the call at byte {})", call.at))
                    })?;
                }
                (self.call_form(call, values), height)
            }
        })
    }

    fn call_form(&self, call: &Call, values: Vec<Value>) -> Value {
        let g = self.g;
        let parts = CallParts::of(g, call);
        let mut values = values.into_iter();
        let callable = match g.global(call.callable) {
            Some(n) => Value::String(format!("{}:{}", n.module, n.qualname)),
            None => values.next().unwrap_or(Value::Null),
        };
        let args: Vec<Value> = values.by_ref().take(parts.args).collect();
        let kwargs = if parts.kwargs { values.next() } else { None };
        let listitems: Vec<Value> = values.by_ref().take(parts.listitems).collect();
        let dictitems: Vec<Value> = values.by_ref().take(parts.dictitems).collect();
        let state = if parts.state { values.next() } else { None };
        let mut m = Map::new();
        let outer_key = match call.made {
            Made::New => {
                m.insert("py/object".into(), callable);
                if !args.is_empty() {
                    m.insert("args".into(), Value::Array(args));
                }
                None
            }
            Made::Call => {
                m.insert("callable".into(), callable);
                m.insert("args".into(), Value::Array(args));
                Some("py/reduce")
            }
        };
        if let Some(kwargs) = kwargs {
            m.insert("kwargs".into(), kwargs);
        }
        if let Some(state) = state {
            m.insert("state".into(), state);
        }
        if parts.listitems > 0 {
            m.insert("listitems".into(), Value::Array(listitems));
        }
        if parts.dictitems > 0 {
            m.insert("dictitems".into(), pairs(dictitems));
        }
        match outer_key {
            Some(key) => one(key, Value::Object(m)),
            None => Value::Object(m),
        }
    }
}

/// Whether a call's callable (or class) is a value of the pickle rather
/// than a global.
fn callable_is_value(g: &Graph, call: &Call) -> bool {
    g.global(call.callable).is_none()
}

/// A callable that is not a global is what another call made (a bound
/// method, a partial, an instance): bytes, a set or an array cannot be
/// called, and a string would read as a global's name.
fn callable_form(v: Option<&Value>) -> std::result::Result<(), String> {
    match v {
        Some(Value::Object(m)) if m.contains_key("py/reduce") || m.contains_key("py/object") => {
            Ok(())
        }
        other => Err(format!(
            "a call of {}, which is not callable",
            other.map_or_else(String::new, |v| v.to_string().chars().take(60).collect())
        )),
    }
}

/// The JSON nesting a call's part `index` (in `Frame::kids` order) gets
/// inside the form: `py/object`'s fields are one level down,
/// `py/reduce`'s two; items of arrays one more, pairs two more.
fn call_offset(parts: &CallParts, made: Made, index: usize) -> usize {
    let field = match made {
        Made::New => 1,
        Made::Call => 2,
    };
    let mut i = index;
    for (n, extra) in [
        (parts.callable as usize, 0),
        (parts.args, 1),
        (parts.kwargs as usize, 0),
        (parts.listitems, 1),
        (parts.dictitems, 2),
    ] {
        if i < n {
            return field + extra;
        }
        i -= n;
    }
    field
}

/// A dict: a JSON object when every key is a str that does not start
/// with `py/`, else `{"py/dict": [[key, value], ...]}`.
fn dict(values: Vec<Value>, height: usize) -> (Value, usize) {
    let plain = values
        .iter()
        .step_by(2)
        .all(|k| matches!(k, Value::String(s) if !s.starts_with("py/")));
    // `height` is the parts' own deepest nesting.
    if plain {
        let mut m = Map::with_capacity(values.len() / 2);
        let mut it = values.into_iter();
        while let (Some(Value::String(k)), Some(v)) = (it.next(), it.next()) {
            m.insert(k, v);
        }
        (Value::Object(m), height + 1)
    } else {
        (one("py/dict", pairs(values)), height + 3)
    }
}

/// `[k, v, k, v]` as `[[k, v], [k, v]]`.
fn pairs(values: Vec<Value>) -> Value {
    let mut out = Vec::with_capacity(values.len() / 2);
    let mut it = values.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push(Value::Array(vec![k, v]));
    }
    Value::Array(out)
}

/// `{key: value}`.
fn one(key: &str, value: Value) -> Value {
    let mut m = Map::with_capacity(1);
    m.insert(key.to_owned(), value);
    Value::Object(m)
}

pub fn float(f: f64) -> Value {
    Value::Number(Number::from_string_unchecked(pyjson::float(f)))
}

pub fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A str with lone surrogates, which JSON strings cannot hold: the call
/// that makes it from its bytes, `_codecs.decode(b, "utf-8", "surrogatepass")`.
fn surrogates(raw: &[u8]) -> Value {
    let mut m = Map::new();
    m.insert("callable".into(), "_codecs:decode".into());
    m.insert(
        "args".into(),
        Value::Array(vec![
            one("py/bytes", Value::String(base64(raw))),
            "utf-8".into(),
            "surrogatepass".into(),
        ]),
    );
    one("py/reduce", Value::Object(m))
}
