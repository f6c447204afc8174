//! The objects a pickle builds, as a graph: what the pickle machine
//! ([`super::read`]) makes and the JSON form ([`super::form`]) is read
//! from. Objects refer to each other by index, as pickle's memo shares
//! them; nothing here is recursive, so dropping a graph of any shape is
//! flat.

use std::borrow::Cow;

use super::text::Int;

/// An object's index in [`Graph::nodes`].
pub type Id = u32;

/// One Python object.
pub enum Node<'a> {
    None,
    Bool(bool),
    Int(Int),
    Float(f64),
    Str(Cow<'a, str>),
    /// A str with lone surrogates, as UTF-8 with surrogates encoded.
    Surrogates(Cow<'a, [u8]>),
    Bytes(Cow<'a, [u8]>),
    ByteArray(Cow<'a, [u8]>),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    FrozenSet(Vec<Id>),
    /// A module's attribute: a class, a function, an enum member, ...
    Global(Box<Name>),
    /// An object made by a call, with what the pickle then adds to it.
    Call(Box<Call>),
}

/// A global's module and qualified name.
#[derive(PartialEq, Eq)]
pub struct Name {
    pub module: String,
    pub qualname: String,
}

impl Name {
    pub fn is(&self, module: &str, qualname: &str) -> bool {
        self.module == module && self.qualname == qualname
    }
}

/// How the object was made.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Made {
    /// `callable(*args)`: pickle's `REDUCE`.
    Call,
    /// `cls.__new__(cls, *args, **kwargs)`: `NEWOBJ`, `NEWOBJ_EX` and their
    /// older spellings.
    New,
}

pub struct Call {
    pub made: Made,
    pub callable: Id,
    pub args: Vec<Id>,
    pub kwargs: Option<Id>,
    /// Items appended (`APPEND`, `APPENDS`), for list subclasses.
    pub listitems: Vec<Id>,
    /// Items set (`SETITEM`, `SETITEMS`), for dict subclasses.
    pub dictitems: Vec<(Id, Id)>,
    /// The state given to `__setstate__` (`BUILD`).
    pub state: Option<Id>,
    /// Where the opcode that made it is (for errors).
    pub at: usize,
}

impl Call {
    /// Whether nothing was added to the object after the call.
    pub fn bare(&self) -> bool {
        self.kwargs.is_none()
            && self.listitems.is_empty()
            && self.dictitems.is_empty()
            && self.state.is_none()
    }
}

/// All objects of one pickle.
pub struct Graph<'a> {
    pub nodes: Vec<Node<'a>>,
}

/// The shared objects every graph starts with.
pub const NONE_ID: Id = 0;
pub const FALSE_ID: Id = 1;
pub const TRUE_ID: Id = 2;

impl<'a> Graph<'a> {
    pub fn new() -> Self {
        Graph {
            nodes: vec![Node::None, Node::Bool(false), Node::Bool(true)],
        }
    }

    pub fn add(&mut self, node: Node<'a>) -> Id {
        self.nodes.push(node);
        (self.nodes.len() - 1) as Id
    }

    pub fn get(&self, id: Id) -> &Node<'a> {
        // Ids are only made by `add`, so they are always in range.
        &self.nodes[id as usize]
    }

    pub fn get_mut(&mut self, id: Id) -> &mut Node<'a> {
        &mut self.nodes[id as usize]
    }

    /// The global a node is, if it is one.
    pub fn global(&self, id: Id) -> Option<&Name> {
        match self.get(id) {
            Node::Global(name) => Some(name),
            _ => None,
        }
    }

    pub fn str(&self, id: Id) -> Option<&str> {
        match self.get(id) {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn small_int(&self, id: Id) -> Option<i64> {
        match self.get(id) {
            Node::Int(Int::Small(v)) => Some(*v),
            _ => None,
        }
    }

    pub fn tuple(&self, id: Id) -> Option<&[Id]> {
        match self.get(id) {
            Node::Tuple(items) => Some(items),
            _ => None,
        }
    }

    pub fn call(&self, id: Id) -> Option<&Call> {
        match self.get(id) {
            Node::Call(call) => Some(call),
            _ => None,
        }
    }

    /// A call of the global `module.qualname` with nothing added after
    /// it: its arguments.
    pub fn bare_call_of(&self, id: Id, module: &str, qualname: &str) -> Option<&[Id]> {
        let call = self.call(id)?;
        (call.made == Made::Call && call.bare() && self.global(call.callable)?.is(module, qualname))
            .then_some(&call.args[..])
    }
}
