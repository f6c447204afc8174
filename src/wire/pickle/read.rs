//! The pickle machine, run on data: each opcode's effect on the stack and
//! the memo is applied to a [`Graph`] of objects, and no class is ever
//! looked up, imported or called (a call is recorded as a [`Call`]).
//!
//! Every length the pickle claims is checked against the bytes left
//! before anything is allocated, and every object made costs at least one
//! byte of input, so the graph stays within a small multiple of the
//! pickle's size.

use std::borrow::Cow;
use std::collections::HashMap;

use super::compat;
use super::graph::{Call, Graph, Id, Made, Name, Node, FALSE_ID, NONE_ID, TRUE_ID};
use super::ops::*;
use super::text::{self, Text, MAX_INT_BYTES};
use crate::error::{Error, Result};

/// Runs the pickle; the graph and the object `STOP` returned.
pub fn run(data: &[u8]) -> Result<(Graph<'_>, Id)> {
    let mut m = Machine {
        data,
        pos: 0,
        at: 0,
        proto: 0,
        graph: Graph::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Memo::new(data.len()),
    };
    let top = m.run()?;
    Ok((m.graph, top))
}

struct Machine<'a> {
    data: &'a [u8],
    /// The next byte to read.
    pos: usize,
    /// Where the current opcode starts (for errors).
    at: usize,
    proto: u8,
    graph: Graph<'a>,
    stack: Vec<Id>,
    /// Stack lengths at each `MARK`.
    marks: Vec<usize>,
    memo: Memo,
}

/// Pickle's memo: dense indices (what picklers write) in a vector, any
/// other in a map.
struct Memo {
    dense: Vec<Option<Id>>,
    sparse: HashMap<u64, Id>,
    /// How many indices are stored (`MEMOIZE` stores at this one).
    count: usize,
    /// Indices below this go to `dense`: at most one per byte of input.
    dense_limit: u64,
}

impl Memo {
    fn new(input: usize) -> Self {
        Memo {
            dense: Vec::new(),
            sparse: HashMap::new(),
            count: 0,
            dense_limit: input as u64 + 1,
        }
    }

    fn len(&self) -> usize {
        self.count
    }

    fn put(&mut self, key: u64, id: Id) {
        if key < self.dense_limit {
            let k = key as usize;
            if k >= self.dense.len() {
                self.dense.resize(k + 1, None);
            }
            if self.dense[k].replace(id).is_none() {
                self.count += 1;
            }
        } else if self.sparse.insert(key, id).is_none() {
            self.count += 1;
        }
    }

    fn get(&self, key: u64) -> Option<Id> {
        if key < self.dense_limit {
            self.dense.get(key as usize).copied().flatten()
        } else {
            self.sparse.get(&key).copied()
        }
    }
}

impl<'a> Machine<'a> {
    fn error(&self, what: impl std::fmt::Display) -> Error {
        Error::protocol(format!("pickle: {what} (opcode at byte {})", self.at))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let data: &'a [u8] = self.data;
        match data.get(self.pos..).and_then(|rest| rest.get(..n)) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(self.error(format_args!(
                "truncated: needs {n} bytes, {} left",
                data.len().saturating_sub(self.pos)
            ))),
        }
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(self.u32()? as i32)
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length of 8 bytes: more than what is left is an error here, not
    /// an allocation.
    fn len8(&mut self) -> Result<usize> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.data.len() - self.pos)
            .ok_or_else(|| self.error(format_args!("claims {n} bytes, more than the pickle holds")))
    }

    /// A signed length of 4 bytes (`BINSTRING`, `LONG4`).
    fn len4_signed(&mut self) -> Result<usize> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| self.error(format_args!("negative length {n}")))
    }

    /// A protocol 0 argument: the bytes up to the next newline.
    fn line(&mut self) -> Result<&'a [u8]> {
        let data: &'a [u8] = self.data;
        let rest = &data[self.pos..];
        match rest.iter().position(|b| *b == b'\n') {
            Some(n) => {
                self.pos += n + 1;
                Ok(&rest[..n])
            }
            None => Err(self.error("truncated: a line without its newline")),
        }
    }

    fn push(&mut self, node: Node<'a>) -> Result<()> {
        if self.graph.nodes.len() >= Id::MAX as usize {
            return Err(self.error("too many objects"));
        }
        let id = self.graph.add(node);
        self.stack.push(id);
        Ok(())
    }

    /// The stack's length at the last mark (items below it are out of
    /// reach until `POP_MARK` or a mark-taking opcode).
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Id> {
        if self.stack.len() <= self.fence() {
            return Err(self.error("stack underflow"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.error("stack underflow"))
    }

    fn top(&self) -> Result<Id> {
        if self.stack.len() <= self.fence() {
            return Err(self.error("stack underflow"));
        }
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.error("stack underflow"))
    }

    /// The items since the last mark, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Id>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.error("no MARK before an opcode that needs one"))?;
        Ok(self.stack.split_off(mark))
    }

    fn str_node(&mut self, data: Cow<'a, [u8]>) -> Result<()> {
        let node = match text::utf8(data) {
            Some(Text::Str(s)) => Node::Str(s),
            Some(Text::Surrogates(b)) => Node::Surrogates(b),
            None => return Err(self.error("a str that is not UTF-8")),
        };
        self.push(node)
    }

    /// A Python 2 str (`STRING`, `BINSTRING`, `SHORT_BINSTRING`): Python 3
    /// reads it as an ASCII str by default.
    fn py2_str(&mut self, data: Cow<'a, [u8]>) -> Result<()> {
        if !data.is_ascii() {
            return Err(
                self.error("a Python 2 str with non-ASCII bytes (Python 3 reads these as ASCII)")
            );
        }
        self.str_node(data)
    }

    fn int(&mut self, v: text::Int) -> Result<()> {
        self.push(Node::Int(v))
    }

    fn long(&mut self, n: usize) -> Result<()> {
        if n > MAX_INT_BYTES {
            return Err(self.error(format_args!(
                "an integer of {n} bytes, more than the {} digits Python converts to text",
                text::MAX_INT_DIGITS
            )));
        }
        let bytes = self.take(n)?;
        self.int(text::int_from_le(bytes))
    }

    fn global(&mut self, module: &str, qualname: &str) -> Result<()> {
        let (module, qualname) = if self.proto < 3 {
            match compat::python3_name(module, qualname) {
                Some((m, n)) => (m, n),
                None => (compat::python3_module(module).unwrap_or(module), qualname),
            }
        } else {
            (module, qualname)
        };
        self.push(Node::Global(Box::new(Name {
            module: module.to_owned(),
            qualname: qualname.to_owned(),
        })))
    }

    fn line_str(&mut self) -> Result<&'a str> {
        let line = self.line()?;
        std::str::from_utf8(line).map_err(|_| self.error("a name that is not UTF-8"))
    }

    /// `callable(*args)`, with the spellings of older protocols read as the
    /// newer opcodes they mean.
    fn call(&mut self, callable: Id, args: Vec<Id>) -> Result<()> {
        let g = &self.graph;
        let node =
            match g.global(callable) {
                // A nested class in protocols 0 to 3: getattr(Outer, "Inner").
                Some(f) if f.is("builtins", "getattr") && args.len() == 2 => {
                    match (g.global(args[0]), g.str(args[1])) {
                        (Some(outer), Some(attr)) => Some(Node::Global(Box::new(Name {
                            module: outer.module.clone(),
                            qualname: format!("{}.{attr}", outer.qualname),
                        }))),
                        _ => None,
                    }
                }
                // NEWOBJ's spelling as a call.
                Some(f) if f.is("copyreg", "__newobj__") && !args.is_empty() => Some(new_object(
                    args[0],
                    args[1..].to_vec(),
                    Vec::new(),
                    Vec::new(),
                    self.at,
                )),
                // Protocols 0 and 1: copyreg._reconstructor(cls, base, state).
                Some(f) if f.is("copyreg", "_reconstructor") && args.len() == 3 => {
                    let base = g.global(args[1]);
                    match (base, g.get(args[2])) {
                        (Some(b), Node::None) if b.is("builtins", "object") => Some(new_object(
                            args[0],
                            Vec::new(),
                            Vec::new(),
                            Vec::new(),
                            self.at,
                        )),
                        (Some(b), Node::List(items)) if b.is("builtins", "list") => Some(
                            new_object(args[0], Vec::new(), items.clone(), Vec::new(), self.at),
                        ),
                        (Some(b), Node::Dict(pairs)) if b.is("builtins", "dict") => Some(
                            new_object(args[0], Vec::new(), Vec::new(), pairs.clone(), self.at),
                        ),
                        _ => None,
                    }
                }
                _ => None,
            };
        let node = node.unwrap_or_else(|| {
            Node::Call(Box::new(Call {
                made: Made::Call,
                callable,
                args,
                kwargs: None,
                listitems: Vec::new(),
                dictitems: Vec::new(),
                state: None,
                at: self.at,
            }))
        });
        self.push(node)
    }

    /// `INST` and `OBJ`: a class and arguments. Without arguments the
    /// class's `__new__` alone makes the object (as `NEWOBJ`); with them
    /// the class is called.
    fn instantiate(&mut self, cls: Id, args: Vec<Id>) -> Result<()> {
        if args.is_empty() {
            self.push(new_object(cls, args, Vec::new(), Vec::new(), self.at))
        } else {
            self.call(cls, args)
        }
    }

    fn tuple_items(&self, id: Id, what: &str) -> Result<Vec<Id>> {
        self.graph
            .tuple(id)
            .map(<[Id]>::to_vec)
            .ok_or_else(|| self.error(format_args!("{what} needs a tuple of arguments")))
    }

    /// The call's made object that items and state may be added to, or an
    /// error naming what the opcode met instead.
    fn open_call(&mut self, id: Id, what: &str) -> Result<&mut Call> {
        let problem = match self.graph.get(id) {
            Node::Call(call) if call.state.is_none() => None,
            Node::Call(_) => Some("an object after its BUILD".to_owned()),
            other => Some(kind(other).to_owned()),
        };
        if let Some(problem) = problem {
            return Err(self.error(format_args!("{what} on {problem}")));
        }
        match self.graph.get_mut(id) {
            Node::Call(call) => Ok(call),
            _ => Err(Error::protocol("pickle: internal: not a call")),
        }
    }

    fn append(&mut self, target: Id, items: Vec<Id>) -> Result<()> {
        if let Node::List(list) = self.graph.get_mut(target) {
            list.extend(items);
            return Ok(());
        }
        self.open_call(target, "APPEND")?.listitems.extend(items);
        Ok(())
    }

    fn set_items(&mut self, target: Id, items: Vec<Id>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return Err(self.error("SETITEMS with an odd number of items"));
        }
        let pairs = items.chunks(2).map(|p| (p[0], p[1]));
        if let Node::Dict(dict) = self.graph.get_mut(target) {
            dict.extend(pairs);
            return Ok(());
        }
        self.open_call(target, "SETITEM")?.dictitems.extend(pairs);
        Ok(())
    }

    fn run(&mut self) -> Result<Id> {
        loop {
            self.at = self.pos;
            let op = self.byte()?;
            match op {
                STOP => return self.pop(),
                PROTO => {
                    let p = self.byte()?;
                    if p > HIGHEST_PROTOCOL {
                        return Err(self.error(format_args!("unsupported protocol {p}")));
                    }
                    self.proto = p;
                }
                FRAME => {
                    // Frames only group reads; the bytes they claim must be there.
                    self.len8()?;
                }
                MARK => self.marks.push(self.stack.len()),
                POP => {
                    if self.stack.len() > self.fence() {
                        self.stack.pop();
                    } else if self.marks.pop().is_none() {
                        return Err(self.error("stack underflow"));
                    }
                }
                POP_MARK => {
                    self.pop_mark()?;
                }
                DUP => {
                    let top = self.top()?;
                    self.stack.push(top);
                }
                NONE => self.stack.push(NONE_ID),
                NEWTRUE => self.stack.push(TRUE_ID),
                NEWFALSE => self.stack.push(FALSE_ID),
                INT => {
                    let line = self.line()?;
                    match line {
                        b"00" => self.stack.push(FALSE_ID),
                        b"01" => self.stack.push(TRUE_ID),
                        _ => {
                            let v = text::int_line(line)
                                .ok_or_else(|| self.error("INT: not a decimal integer"))?;
                            self.int(v)?;
                        }
                    }
                }
                LONG => {
                    let line = self.line()?;
                    let digits = line.strip_suffix(b"L").unwrap_or(line);
                    let v = text::int_line(digits)
                        .ok_or_else(|| self.error("LONG: not a decimal integer"))?;
                    self.int(v)?;
                }
                BININT => {
                    let v = self.i32()?;
                    self.int(text::Int::Small(v as i64))?;
                }
                BININT1 => {
                    let v = self.byte()?;
                    self.int(text::Int::Small(v as i64))?;
                }
                BININT2 => {
                    let v = self.u16()?;
                    self.int(text::Int::Small(v as i64))?;
                }
                LONG1 => {
                    let n = self.byte()? as usize;
                    self.long(n)?;
                }
                LONG4 => {
                    let n = self.len4_signed()?;
                    self.long(n)?;
                }
                FLOAT => {
                    let line = self.line()?;
                    let v = std::str::from_utf8(line)
                        .ok()
                        .and_then(|s| s.parse::<f64>().ok())
                        .ok_or_else(|| self.error("FLOAT: not a number"))?;
                    self.push(Node::Float(v))?;
                }
                BINFLOAT => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Node::Float(f64::from_be_bytes(a)))?;
                }
                STRING => {
                    let line = self.line()?;
                    let inner = match line {
                        [q @ (b'\'' | b'"'), inner @ .., e] if q == e => inner,
                        _ => return Err(self.error("STRING: not a quoted string")),
                    };
                    let bytes = text::escape_decode(inner)
                        .ok_or_else(|| self.error("STRING: a bad escape"))?;
                    self.py2_str(Cow::Owned(bytes))?;
                }
                BINSTRING => {
                    let n = self.len4_signed()?;
                    let b = self.take(n)?;
                    self.py2_str(Cow::Borrowed(b))?;
                }
                SHORT_BINSTRING => {
                    let n = self.byte()? as usize;
                    let b = self.take(n)?;
                    self.py2_str(Cow::Borrowed(b))?;
                }
                UNICODE => {
                    let line = self.line()?;
                    let node = match text::raw_unicode_escape(line) {
                        Some(Text::Str(s)) => Node::Str(s),
                        Some(Text::Surrogates(b)) => Node::Surrogates(b),
                        None => return Err(self.error("UNICODE: a bad escape")),
                    };
                    self.push(node)?;
                }
                BINUNICODE => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    self.str_node(Cow::Borrowed(b))?;
                }
                SHORT_BINUNICODE => {
                    let n = self.byte()? as usize;
                    let b = self.take(n)?;
                    self.str_node(Cow::Borrowed(b))?;
                }
                BINUNICODE8 => {
                    let n = self.len8()?;
                    let b = self.take(n)?;
                    self.str_node(Cow::Borrowed(b))?;
                }
                BINBYTES => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    self.push(Node::Bytes(Cow::Borrowed(b)))?;
                }
                SHORT_BINBYTES => {
                    let n = self.byte()? as usize;
                    let b = self.take(n)?;
                    self.push(Node::Bytes(Cow::Borrowed(b)))?;
                }
                BINBYTES8 => {
                    let n = self.len8()?;
                    let b = self.take(n)?;
                    self.push(Node::Bytes(Cow::Borrowed(b)))?;
                }
                BYTEARRAY8 => {
                    let n = self.len8()?;
                    let b = self.take(n)?;
                    self.push(Node::ByteArray(Cow::Borrowed(b)))?;
                }
                EMPTY_LIST => self.push(Node::List(Vec::new()))?,
                EMPTY_DICT => self.push(Node::Dict(Vec::new()))?,
                EMPTY_TUPLE => self.push(Node::Tuple(Vec::new()))?,
                EMPTY_SET => self.push(Node::Set(Vec::new()))?,
                LIST => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items))?;
                }
                TUPLE => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items))?;
                }
                TUPLE1 | TUPLE2 | TUPLE3 => {
                    let n = (op - TUPLE1 + 1) as usize;
                    if self.stack.len() < self.fence() + n {
                        return Err(self.error("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Node::Tuple(items))?;
                }
                DICT => {
                    let items = self.pop_mark()?;
                    if !items.len().is_multiple_of(2) {
                        return Err(self.error("DICT with an odd number of items"));
                    }
                    let pairs = items.chunks(2).map(|p| (p[0], p[1])).collect();
                    self.push(Node::Dict(pairs))?;
                }
                FROZENSET => {
                    let items = self.pop_mark()?;
                    self.push(Node::FrozenSet(items))?;
                }
                APPEND => {
                    let item = self.pop()?;
                    let target = self.top()?;
                    self.append(target, vec![item])?;
                }
                APPENDS => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.append(target, items)?;
                }
                SETITEM => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let target = self.top()?;
                    self.set_items(target, vec![key, value])?;
                }
                SETITEMS => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.set_items(target, items)?;
                }
                ADDITEMS => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    let at = self.at;
                    match self.graph.get_mut(target) {
                        Node::Set(set) => set.extend(items),
                        other => {
                            return Err(Error::protocol(format!(
                                "pickle: ADDITEMS on {} (opcode at byte {at})",
                                kind(other)
                            )))
                        }
                    }
                }
                GLOBAL => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    self.global(module, name)?;
                }
                STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (self.graph.str(module), self.graph.str(name)) {
                        (Some(m), Some(n)) => {
                            let (m, n) = (m.to_owned(), n.to_owned());
                            self.global(&m, &n)?;
                        }
                        _ => return Err(self.error("STACK_GLOBAL needs two str")),
                    }
                }
                REDUCE => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let args = self.tuple_items(args, "REDUCE")?;
                    self.call(callable, args)?;
                }
                NEWOBJ => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let args = self.tuple_items(args, "NEWOBJ")?;
                    self.push(new_object(cls, args, Vec::new(), Vec::new(), self.at))?;
                }
                NEWOBJ_EX => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let args = self.tuple_items(args, "NEWOBJ_EX")?;
                    if !matches!(self.graph.get(kwargs), Node::Dict(_)) {
                        return Err(self.error("NEWOBJ_EX needs a dict of keyword arguments"));
                    }
                    let mut node = new_object(cls, args, Vec::new(), Vec::new(), self.at);
                    if let Node::Call(call) = &mut node {
                        call.kwargs = Some(kwargs);
                    }
                    self.push(node)?;
                }
                INST => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    let args = self.pop_mark()?;
                    self.global(module, name)?;
                    let cls = self.pop()?;
                    self.instantiate(cls, args)?;
                }
                OBJ => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return Err(self.error("OBJ without a class"));
                    }
                    let args = items.split_off(1);
                    self.instantiate(items[0], args)?;
                }
                BUILD => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    self.open_call(target, "BUILD")?.state = Some(state);
                }
                PUT | BINPUT | LONG_BINPUT => {
                    let key = self.memo_key(op)?;
                    self.put(key)?;
                }
                MEMOIZE => {
                    let key = self.memo.len() as u64;
                    self.put(key)?;
                }
                GET | BINGET | LONG_BINGET => {
                    let key = self.memo_key(op)?;
                    self.get(key)?;
                }
                PERSID | BINPERSID => {
                    return Err(self.error("persistent ids are not supported"));
                }
                EXT1 | EXT2 | EXT4 => {
                    return Err(
                        self.error("extension codes (copyreg's registry) are not supported")
                    );
                }
                NEXT_BUFFER | READONLY_BUFFER => {
                    return Err(self.error("out-of-band buffers are not supported"));
                }
                other => return Err(self.error(format_args!("unknown opcode 0x{other:02x}"))),
            }
        }
    }

    /// The memo index of a `PUT` or `GET` (text, one byte or four).
    fn memo_key(&mut self, op: u8) -> Result<u64> {
        match op {
            BINPUT | BINGET => Ok(self.byte()? as u64),
            LONG_BINPUT | LONG_BINGET => Ok(self.u32()? as u64),
            _ => {
                let line = self.line()?;
                std::str::from_utf8(line)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| {
                        let name = if op == PUT { "PUT" } else { "GET" };
                        self.error(format_args!("{name}: not a memo index"))
                    })
            }
        }
    }

    fn put(&mut self, key: u64) -> Result<()> {
        let top = self.top()?;
        self.memo.put(key, top);
        Ok(())
    }

    fn get(&mut self, key: u64) -> Result<()> {
        let id = self
            .memo
            .get(key)
            .ok_or_else(|| self.error(format_args!("memo index {key} was never stored")))?;
        self.stack.push(id);
        Ok(())
    }
}

fn new_object<'a>(
    cls: Id,
    args: Vec<Id>,
    listitems: Vec<Id>,
    dictitems: Vec<(Id, Id)>,
    at: usize,
) -> Node<'a> {
    Node::Call(Box::new(Call {
        made: Made::New,
        callable: cls,
        args,
        kwargs: None,
        listitems,
        dictitems,
        state: None,
        at,
    }))
}

/// What a node is, for errors.
fn kind(node: &Node) -> &'static str {
    match node {
        Node::None => "None",
        Node::Bool(_) => "a bool",
        Node::Int(_) => "an int",
        Node::Float(_) => "a float",
        Node::Str(_) | Node::Surrogates(_) => "a str",
        Node::Bytes(_) => "bytes",
        Node::ByteArray(_) => "a bytearray",
        Node::List(_) => "a list",
        Node::Tuple(_) => "a tuple",
        Node::Dict(_) => "a dict",
        Node::Set(_) => "a set",
        Node::FrozenSet(_) => "a frozenset",
        Node::Global(_) => "a global",
        Node::Call(_) => "an object",
    }
}
