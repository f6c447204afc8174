//! The serialized parts of action messages: arguments, results and
//! exceptions, as JSON text or as base64 of a pickle (academy-py's
//! `academy.serialize`, whose default is pickle).
//!
//! Whichever way a value travels, this side sees its JSON form (plain JSON,
//! plus `{"py/tuple": [...]}`, `{"py/ndarray": {...}}`, ...: see
//! [`crate::wire::pickle`]). A pickle is read as data, never run, within
//! limits that follow its size.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::error::{Error, Result, Status};
use crate::wire::pickle::{self, Limits};
use crate::wire::pyjson;

/// How a part of an action message is written (`academy.serialize.SerializationStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Serialization {
    /// JSON text (Python's `json.dumps`).
    Json,
    /// base64 of a pickle.
    Pickle,
}

impl Serialization {
    /// The name academy-py writes in messages.
    pub fn name(self) -> &'static str {
        match self {
            Serialization::Json => "json",
            Serialization::Pickle => "pickle",
        }
    }

    /// The serialization with this name.
    pub fn from_name(name: &str) -> Option<Serialization> {
        match name {
            "json" => Some(Serialization::Json),
            "pickle" => Some(Serialization::Pickle),
            _ => None,
        }
    }
}

/// The serializations an agent reads requests in (academy-py's
/// `allowed_deserializers`); a request in another is refused with
/// `DeserializationMethodProhibitedError`, as academy-py refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub json: bool,
    pub pickle: bool,
}

impl Accepted {
    /// Both, academy-py's default.
    pub const ALL: Accepted = Accepted {
        json: true,
        pickle: true,
    };

    /// Whether requests in `serialization` are read.
    pub fn allows(self, serialization: Serialization) -> bool {
        match serialization {
            Serialization::Json => self.json,
            Serialization::Pickle => self.pickle,
        }
    }

    /// The accepted names, for messages (`json, pickle`).
    pub fn names(self) -> String {
        let names: Vec<&str> = [Serialization::Json, Serialization::Pickle]
            .into_iter()
            .filter(|s| self.allows(*s))
            .map(Serialization::name)
            .collect();
        names.join(", ")
    }
}

/// How a caller writes an action's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestSerialization {
    /// JSON when the arguments hold no `py/` form, pickle when they do
    /// (only pickle gives Python a tuple, bytes, an array, ...).
    Auto,
    /// Always JSON (a `py/` form arrives in Python as a dict).
    Json,
    /// Always pickle.
    Pickle,
}

impl RequestSerialization {
    /// The names the options take.
    pub const NAMES: [&'static str; 3] = ["auto", "json", "pickle"];

    /// The mode with this name.
    pub fn from_name(name: &str) -> Option<RequestSerialization> {
        match name {
            "auto" => Some(RequestSerialization::Auto),
            "json" => Some(RequestSerialization::Json),
            "pickle" => Some(RequestSerialization::Pickle),
            _ => None,
        }
    }

    /// The serialization for these arguments.
    pub fn pick(self, args: &Value, kwargs: &Value) -> Serialization {
        match self {
            RequestSerialization::Json => Serialization::Json,
            RequestSerialization::Pickle => Serialization::Pickle,
            RequestSerialization::Auto if pickle::has_py_form(args) => Serialization::Pickle,
            RequestSerialization::Auto if pickle::has_py_form(kwargs) => Serialization::Pickle,
            RequestSerialization::Auto => Serialization::Json,
        }
    }
}

/// A value written in `serialization`.
pub fn encode(value: &Value, serialization: Serialization) -> Result<String> {
    match serialization {
        Serialization::Json => Ok(pyjson::dumps(value)),
        Serialization::Pickle => Ok(BASE64.encode(pickle::from_json_form(value)?)),
    }
}

/// The JSON form of a value written in `serialization`; `what` names it
/// in errors. A pickle is read within limits that follow its size.
pub fn decode(text: &str, serialization: Serialization, what: &str) -> Result<Value> {
    match serialization {
        Serialization::Json => pyjson::loads(text)
            .map_err(|e| Error::protocol(format!("{what}: not valid JSON ({e})"))),
        Serialization::Pickle => {
            let bytes = BASE64
                .decode(text)
                .map_err(|e| Error::protocol(format!("{what}: not valid base64 ({e})")))?;
            pickle::to_json_form(&bytes, &Limits::for_size(bytes.len())).map_err(|e| {
                Error::protocol(format!(
                    "{what}: not a pickle this library reads ({})",
                    e.message
                ))
            })
        }
    }
}

/// Positional arguments (a JSON array) as academy-py writes them: a tuple.
/// JSON has no tuple, so JSON text holds the array.
pub fn encode_args(args: &Value, serialization: Serialization) -> Result<String> {
    match (serialization, args) {
        (Serialization::Pickle, Value::Array(items)) => {
            // Built by hand: json! would reparse the numbers it holds (and
            // fail on Python's NaN and Infinity).
            let tuple = Map::from_iter([("py/tuple".to_owned(), Value::Array(items.clone()))]);
            encode(&Value::Object(tuple), serialization)
        }
        (_, Value::Array(_)) => encode(args, serialization),
        _ => Err(Error::invalid("action arguments must be a JSON array")),
    }
}

/// Positional arguments read back as a JSON array of their items.
pub fn decode_args(text: &str, serialization: Serialization) -> Result<Value> {
    match decode(text, serialization, "the action's positional arguments")? {
        Value::Array(items) => Ok(Value::Array(items)),
        Value::Object(mut form) if form.len() == 1 => match form.remove("py/tuple") {
            Some(Value::Array(items)) => Ok(Value::Array(items)),
            _ => Err(Error::protocol(
                "the action's positional arguments are not a tuple",
            )),
        },
        _ => Err(Error::protocol(
            "the action's positional arguments are not a tuple",
        )),
    }
}

/// Keyword arguments read back as a JSON object (a dict with str keys).
pub fn decode_kwargs(text: &str, serialization: Serialization) -> Result<Value> {
    match decode(text, serialization, "the action's keyword arguments")? {
        Value::Object(map) if !map.keys().any(|k| k.starts_with("py/")) => Ok(Value::Object(map)),
        _ => Err(Error::protocol(
            "the action's keyword arguments are not a dict with str keys",
        )),
    }
}

/// academy-py's exception for an error whose type did not travel
/// (`academy.exception.AcademyRemoteError`): what a Python caller raises
/// for an error from a C agent, whichever serialization carries it.
pub const REMOTE_ERROR: &str = "academy.exception:AcademyRemoteError";
/// academy-py's exception for a request in a serialization the agent
/// does not read.
pub const PROHIBITED_ERROR: &str = "academy.exception:DeserializationMethodProhibitedError";

/// An exception of the class `class` (`module:QualName`) with the text
/// `text`, written in `serialization`: JSON as academy-py writes any
/// exception (`{"__exception__": true, "exception_str": ...}`), which a
/// Python caller raises as `AcademyRemoteError(text)`; pickle as the
/// exception itself.
pub fn encode_exception(class: &str, text: &str, serialization: Serialization) -> Result<String> {
    match serialization {
        Serialization::Json => Ok(pyjson::dumps(
            &json!({"__exception__": true, "exception_str": text}),
        )),
        Serialization::Pickle => encode(
            &json!({"py/reduce": {"callable": class, "args": [text]}}),
            serialization,
        ),
    }
}

/// The error that an exception written in `serialization` stands for:
/// `Remote` with its text (a JSON exception's `exception_str`, academy-py's
/// traceback; a pickled one as Python prints its last line).
pub fn decode_exception(text: &str, serialization: Serialization) -> Error {
    let value = match decode(text, serialization, "the remote exception") {
        Ok(value) => value,
        Err(e) => return Error::new(Status::Remote, e.message),
    };
    let described = match serialization {
        Serialization::Json => match value.get("exception_str").and_then(Value::as_str) {
            Some(s) => s.trim_end().to_owned(),
            None => value.to_string(),
        },
        Serialization::Pickle => describe_exception(&value),
    };
    Error::new(Status::Remote, described)
}

/// A pickled exception's JSON form as Python prints the last line of its
/// traceback: `ValueError: boom`, `academy.exception.AcademyRemoteError: text`.
fn describe_exception(value: &Value) -> String {
    let reduce = value.get("py/reduce").or_else(|| value.get("py/object"));
    let class = reduce
        .and_then(|r| r.get("callable").or(Some(r)))
        .and_then(Value::as_str)
        .or_else(|| value.get("py/object").and_then(Value::as_str));
    let Some(class) = class else {
        return format!("the remote agent raised {value}");
    };
    let name = match class.split_once(':') {
        Some(("builtins", name)) => name.to_owned(),
        Some((module, name)) => format!("{module}.{name}"),
        None => class.to_owned(),
    };
    let args = reduce
        .and_then(|r| r.get("args"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match args.as_slice() {
        [] => name,
        [Value::String(text)] => format!("{name}: {text}"),
        [one] => format!("{name}: {one}"),
        many => format!("{name}: {}", Value::Array(many.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in [Serialization::Json, Serialization::Pickle] {
            assert_eq!(Serialization::from_name(s.name()), Some(s));
        }
        assert_eq!(Serialization::from_name("yaml"), None);
        for name in RequestSerialization::NAMES {
            assert!(RequestSerialization::from_name(name).is_some());
        }
        assert_eq!(Accepted::ALL.names(), "json, pickle");
        let json_only = Accepted {
            json: true,
            pickle: false,
        };
        assert_eq!(json_only.names(), "json");
        assert!(!json_only.allows(Serialization::Pickle));
    }

    fn no_kwargs() -> Value {
        json!({})
    }

    #[test]
    fn auto_picks_pickle_only_for_py_forms() {
        let plain = json!([1, "a", {"k": [null]}]);
        let tuple = json!([{"py/tuple": [1, 2]}]);
        let auto = RequestSerialization::Auto;
        assert_eq!(auto.pick(&plain, &no_kwargs()), Serialization::Json);
        assert_eq!(auto.pick(&tuple, &no_kwargs()), Serialization::Pickle);
        assert_eq!(
            auto.pick(&plain, &json!({"b": {"py/bytes": ""}})),
            Serialization::Pickle
        );
        assert_eq!(
            RequestSerialization::Json.pick(&tuple, &no_kwargs()),
            Serialization::Json
        );
        assert_eq!(
            RequestSerialization::Pickle.pick(&plain, &no_kwargs()),
            Serialization::Pickle
        );
    }

    #[test]
    fn json_parts_read_back() {
        let args = json!([1, 2.5, "hé", null]);
        let text = encode_args(&args, Serialization::Json).unwrap();
        assert_eq!(text, r#"[1, 2.5, "h\u00e9", null]"#);
        assert_eq!(decode_args(&text, Serialization::Json).unwrap(), args);
        assert!(encode_args(&json!({}), Serialization::Json).is_err());
        assert!(decode_args("{}", Serialization::Json).is_err());
        assert!(decode_kwargs("[]", Serialization::Json).is_err());
        assert_eq!(
            decode_kwargs(r#"{"a": 1}"#, Serialization::Json).unwrap(),
            json!({"a": 1})
        );
        let exception = encode_exception(REMOTE_ERROR, "boom\n", Serialization::Json).unwrap();
        let e = decode_exception(&exception, Serialization::Json);
        assert_eq!((e.status, e.message.as_str()), (Status::Remote, "boom"));
    }

    #[test]
    fn pickled_arguments_keep_pythons_non_finite_floats() {
        let args = pyjson::loads("[NaN, -Infinity, 1e400, {\"py/tuple\": [NaN]}]").unwrap();
        let text = encode_args(&args, Serialization::Pickle).unwrap();
        let back = decode_args(&text, Serialization::Pickle).unwrap();
        assert_eq!(
            pyjson::dumps(&back),
            "[NaN, -Infinity, Infinity, {\"py/tuple\": [NaN]}]"
        );
    }

    #[test]
    fn pickled_exceptions_read_as_python_prints_them() {
        let remote = json!({"py/reduce": {"callable": REMOTE_ERROR, "args": ["it broke"]}});
        assert_eq!(
            describe_exception(&remote),
            "academy.exception.AcademyRemoteError: it broke"
        );
        let value_error =
            json!({"py/reduce": {"callable": "builtins:ValueError", "args": ["boom"]}});
        assert_eq!(describe_exception(&value_error), "ValueError: boom");
        let bare = json!({"py/reduce": {"callable": PROHIBITED_ERROR, "args": []}});
        assert_eq!(
            describe_exception(&bare),
            "academy.exception.DeserializationMethodProhibitedError"
        );
        assert!(describe_exception(&json!(5)).contains('5'));
    }

    #[test]
    fn bad_pickles_are_protocol_errors() {
        for text in ["not base64!", "gASV", ""] {
            let e = decode_args(text, Serialization::Pickle).unwrap_err();
            assert_eq!(e.status, Status::Protocol, "{text}");
        }
        let e = decode_exception("%%%", Serialization::Pickle);
        assert_eq!(e.status, Status::Remote);
    }
}
