//! Academy messages (`academy.message` in academy-py, protocol 1.1).
//!
//! A message is `{"header": {...}, "body": {"kind": ...}}`. The header is
//! typed; bodies stay JSON values so that every body kind academy-py knows
//! (and ones a later minor version adds) passes through unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::error::{Error, Result, Status};
use crate::wire::ids::EntityId;
use crate::wire::payload::{self, Accepted, RequestSerialization, Serialization};
use crate::wire::pyjson;

/// The Academy wire protocol this library speaks.
pub const PROTOCOL_VERSION: &str = "1.1";
/// The academy-py release whose wire format this library matches; sent in
/// message headers and in the `academy_version` HTTP header.
pub const ACADEMY_COMPAT_VERSION: &str = "1.0.0";

/// Request body kinds.
pub const REQUEST_KINDS: [&str; 4] = [
    "action-request",
    "ping-request",
    "cancel-request",
    "shutdown-request",
];
/// Response body kinds.
pub const RESPONSE_KINDS: [&str; 4] = [
    "action-response",
    "success-response",
    "user-error-response",
    "academy-error-response",
];

/// `academy.message.ErrorCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    MailboxTerminated = 0,
    PingCancelled = 1,
    ActionInvalidState = 2,
    ActionCancelled = 3,
    InvalidClient = 4,
    IncompatibleProtocol = 5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Request,
    Response,
}

fn default_academy_version() -> String {
    // academy-py: messages without the field are assumed to be v0.5.0.
    "0.5.0".to_owned()
}

fn default_protocol_version() -> Option<String> {
    Some(PROTOCOL_VERSION.to_owned())
}

/// `academy.message.Header`, fields in pydantic's order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub src: EntityId,
    pub dest: EntityId,
    pub tag: Uuid,
    #[serde(default)]
    pub label: Option<Uuid>,
    pub kind: MessageKind,
    #[serde(default = "default_protocol_version")]
    pub protocol_version: Option<String>,
    #[serde(default = "default_academy_version")]
    pub academy_version: String,
}

impl Header {
    /// The header of the response to this request: same tag and label,
    /// src and dest swapped (names included).
    pub fn response_header(&self) -> Header {
        Header {
            src: self.dest.clone(),
            dest: self.src.clone(),
            tag: self.tag,
            label: self.label,
            kind: MessageKind::Response,
            protocol_version: Some(PROTOCOL_VERSION.to_owned()),
            academy_version: ACADEMY_COMPAT_VERSION.to_owned(),
        }
    }

    /// Whether the sender speaks a protocol this library understands (same
    /// major version and local tag, as `academy.message.check_version`).
    pub fn compatible(&self) -> bool {
        self.protocol_version.as_deref().is_some_and(|v| {
            protocol_major_and_local(v) == protocol_major_and_local(PROTOCOL_VERSION)
        })
    }
}

fn protocol_major_and_local(version: &str) -> (Option<u64>, Option<&str>) {
    let (public, local) = match version.split_once('+') {
        Some((p, l)) => (p, Some(l)),
        None => (version, None),
    };
    let major = public
        .trim_start_matches(['v', 'V'])
        .split('.')
        .next()
        .and_then(|m| m.parse().ok());
    (major, local)
}

/// A complete message. The body is a JSON object with a `kind`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub header: Header,
    pub body: Value,
}

impl Message {
    /// A new message with a fresh tag; the header kind follows the body kind.
    pub fn create(src: EntityId, dest: EntityId, body: Value, label: Option<Uuid>) -> Result<Self> {
        let kind = body_kind(&body)?;
        let kind = if REQUEST_KINDS.contains(&kind) {
            MessageKind::Request
        } else if RESPONSE_KINDS.contains(&kind) {
            MessageKind::Response
        } else {
            return Err(Error::invalid(format!(
                "unknown message body kind {kind:?}"
            )));
        };
        Ok(Message {
            header: Header {
                src,
                dest,
                tag: crate::wire::ids::random_uuid(),
                label,
                kind,
                protocol_version: Some(PROTOCOL_VERSION.to_owned()),
                academy_version: ACADEMY_COMPAT_VERSION.to_owned(),
            },
            body,
        })
    }

    /// Parses and checks a message (header fields, a body with a kind).
    pub fn from_json(text: &str) -> Result<Self> {
        let message: Message = serde_json::from_str(text)
            .map_err(|e| Error::invalid(format!("not an Academy message: {e}")))?;
        body_kind(&message.body)?;
        Ok(message)
    }

    /// Parses a message whose body may be anything (an exchange relays
    /// every body, as academy-py's does; only the header must be valid).
    pub fn from_json_any_body(text: &str) -> Result<Self> {
        serde_json::from_str(text)
            .map_err(|e| Error::invalid(format!("not an Academy message: {e}")))
    }

    /// The response to this request with the given body.
    pub fn response(&self, body: Value) -> Result<Self> {
        if self.header.kind != MessageKind::Request {
            return Err(Error::invalid(
                "cannot create a response to a message that is itself a response",
            ));
        }
        body_kind(&body)?;
        Ok(Message {
            header: self.header.response_header(),
            body,
        })
    }

    /// The compact JSON of the message, as pydantic's `model_dump_json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("messages always serialize")
    }

    pub fn kind(&self) -> &str {
        self.body.get("kind").and_then(Value::as_str).unwrap_or("")
    }

    pub fn is_request(&self) -> bool {
        self.header.kind == MessageKind::Request
    }
}

/// The `kind` of a body, or an error if the body is not an object with one.
pub fn body_kind(body: &Value) -> Result<&str> {
    body.as_object()
        .and_then(|o| o.get("kind"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::invalid("a message body must be a JSON object with a string \"kind\"")
        })
}

/// Parses JSON text given by a caller, with a clear error (Python's
/// `NaN`, `Infinity` and `-Infinity` included, as `json.loads` reads them).
pub fn parse_json(what: &str, text: &str) -> Result<Value> {
    pyjson::loads(text).map_err(|e| Error::invalid(format!("{what} is not valid JSON: {e}")))
}

/// The body of an action request, as a Python `Handle` sends it: the
/// arguments in the serialization `mode` picks for them (JSON text or
/// base64 pickle inside JSON strings; a pickle holds the positional
/// arguments as a tuple). The result is asked for as pickle, so that any
/// picklable Python result arrives (JSON cannot carry a tuple, bytes, a
/// set, an array, ...), and an exception as JSON, which keeps the remote
/// traceback's text (a pickled exception has none).
pub fn action_request_body(
    action: &str,
    args: &Value,
    kwargs: &Value,
    mode: RequestSerialization,
) -> Result<Value> {
    if !args.is_array() {
        return Err(Error::invalid("action arguments must be a JSON array"));
    }
    if !kwargs.is_object() {
        return Err(Error::invalid(
            "action keyword arguments must be a JSON object",
        ));
    }
    let serialization = mode.pick(args, kwargs);
    let unpicklable = |e: Error| {
        Error::invalid(format!(
            "the arguments cannot be written as {}: {}",
            serialization.name(),
            e.message
        ))
    };
    Ok(json!({
        "action": action,
        "serialization": serialization.name(),
        "result_serialization": Serialization::Pickle.name(),
        "exception_serialization": Serialization::Json.name(),
        "pargs": payload::encode_args(args, serialization).map_err(unpicklable)?,
        "kargs": payload::encode(kwargs, serialization).map_err(unpicklable)?,
        "kind": "action-request",
    }))
}

/// How the answer to an action request is written, as academy-py's agent
/// runtime decides: the result in `result_serialization`, else in the
/// arguments' serialization; an exception in `exception_serialization`,
/// else as the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub result: Serialization,
    pub exception: Serialization,
}

impl Answer {
    /// The answer an action request body asks for (JSON where it names
    /// none this library knows).
    pub fn of(body: &Value) -> Answer {
        let named = |field: &str| {
            body.get(field)
                .and_then(Value::as_str)
                .and_then(Serialization::from_name)
        };
        let result = named("result_serialization")
            .or_else(|| named("serialization"))
            .unwrap_or(Serialization::Json);
        Answer {
            result,
            exception: named("exception_serialization").unwrap_or(result),
        }
    }
}

/// A decoded action request (what a C handler sees).
#[derive(Debug, Clone)]
pub struct ActionCall {
    pub action: String,
    /// JSON text of the positional arguments (an array of the tuple's
    /// items, in their JSON forms).
    pub args_json: String,
    /// JSON text of the keyword arguments (an object).
    pub kwargs_json: String,
    /// How the caller wants the answer written.
    pub answer: Answer,
}

/// Decodes an action request body whose arguments are in a serialization
/// that `accepted` allows; the handler sees the same JSON form of the
/// arguments whether they came as JSON or as pickle.
pub fn decode_action_request(body: &Value, accepted: Accepted) -> Result<ActionCall> {
    let field = |name: &str| body.get(name).and_then(Value::as_str);
    let action =
        field("action").ok_or_else(|| Error::protocol("action request without an action name"))?;
    let serialization = arguments_serialization(body)?;
    if !accepted.allows(serialization) {
        return Err(Error::protocol(prohibited_text(serialization, accepted)));
    }
    let args = match body.get("pargs") {
        None | Some(Value::Null) => Value::Array(vec![]),
        Some(Value::String(text)) => payload::decode_args(text, serialization)?,
        // Leniently, JSON not wrapped in a string.
        Some(other) if serialization == Serialization::Json && other.is_array() => other.clone(),
        Some(_) => return Err(Error::protocol("the action's positional arguments are not a string")),
    };
    let kwargs = match body.get("kargs") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::String(text)) => payload::decode_kwargs(text, serialization)?,
        Some(other) if serialization == Serialization::Json && other.is_object() => other.clone(),
        Some(_) => return Err(Error::protocol("the action's keyword arguments are not a string")),
    };
    Ok(ActionCall {
        action: action.to_owned(),
        args_json: args.to_string(),
        kwargs_json: kwargs.to_string(),
        answer: Answer::of(body),
    })
}

/// The serialization an action request's arguments are in.
fn arguments_serialization(body: &Value) -> Result<Serialization> {
    let name = body.get("serialization").and_then(Value::as_str).unwrap_or("");
    Serialization::from_name(name).ok_or_else(|| {
        Error::protocol(format!(
            "the action request's arguments are in an unknown serialization {name:?}"
        ))
    })
}

fn prohibited_text(serialization: Serialization, accepted: Accepted) -> String {
    format!(
        "DeserializationMethodProhibitedError: this agent accepts only {} serialization \
         (allowed_deserializers), not {}",
        accepted.names(),
        serialization.name()
    )
}

/// The answer to an action request that [`decode_action_request`]
/// refused, written as the request asks: academy-py's
/// `DeserializationMethodProhibitedError` for arguments in a serialization
/// the agent does not accept, else an error that a Python caller raises
/// as `AcademyRemoteError` saying why the request could not be read.
pub fn unreadable_request_body(body: &Value, accepted: Accepted) -> Value {
    let answer = Answer::of(body);
    if let Ok(serialization) = arguments_serialization(body) {
        if !accepted.allows(serialization) {
            let text = prohibited_text(serialization, accepted);
            return exception_body(payload::PROHIBITED_ERROR, &text, answer.exception);
        }
    }
    let why = match decode_action_request(body, accepted) {
        Err(e) => e.message,
        Ok(_) => "the action request could not be read".to_owned(),
    };
    error_body(&why, answer.exception)
}

/// The body of a successful action response, the result written in
/// `serialization`. `InvalidArgument` for a result holding a `py/` form
/// that cannot be pickled.
pub fn action_response_body(result: &Value, serialization: Serialization) -> Result<Value> {
    let data = payload::encode(result, serialization).map_err(|e| {
        Error::invalid(format!(
            "the result cannot be written as {}: {}",
            serialization.name(),
            e.message
        ))
    })?;
    Ok(json!({
        "result": ["__serialized__", data],
        "serialization": serialization.name(),
        "kind": "action-response",
    }))
}

/// The body of an error that a Python caller raises as
/// `AcademyRemoteError(message)`, with JSON serialization (which every
/// Python caller reads, whatever it asked for).
pub fn user_error_body(message: &str) -> Value {
    error_body(message, Serialization::Json)
}

/// The body of an error that a Python caller raises as
/// `AcademyRemoteError(message)`, written in `serialization`.
pub fn error_body(message: &str, serialization: Serialization) -> Value {
    exception_body(payload::REMOTE_ERROR, message, serialization)
}

/// A `user-error-response` with an exception of `class` (pickle) or its
/// text (JSON). Falls back to JSON if the pickle cannot be written.
fn exception_body(class: &str, text: &str, serialization: Serialization) -> Value {
    let (serialization, exception) = match payload::encode_exception(class, text, serialization) {
        Ok(exception) => (serialization, exception),
        Err(_) => (
            Serialization::Json,
            payload::encode_exception(class, text, Serialization::Json).unwrap_or_default(),
        ),
    };
    json!({
        "serialization": serialization.name(),
        "exception": exception,
        "kind": "user-error-response",
    })
}

/// An `academy-error-response` body.
pub fn academy_error_body(code: ErrorCode, mailbox: Option<&EntityId>) -> Value {
    json!({
        "error_code": code as u8,
        "mailbox_id": mailbox,
        "kind": "academy-error-response",
    })
}

/// The label of a wake-up message (see [`wake_message`]).
pub const WAKE_LABEL: Uuid = Uuid::from_u128(0x5a4e_7c1b_0d2f_4b8e_9c61_a3e5_f7b9_d2c4);

/// A wake-up message: a success response with [`WAKE_LABEL`], from and to
/// `id`. academy-py's exchange keeps a listen handler waiting after its
/// client has gone; the handler takes the next message of the mailbox,
/// writes it to the dead connection, loses it, and only then ends. A
/// client that leaves such a handler behind sends this first, so that the
/// handler takes it instead of a real message. Receivers drop it (ours
/// by its label; academy-py's drop a response that has no handle).
pub fn wake_message(id: &EntityId) -> Result<String> {
    Message::create(id.clone(), id.clone(), success_body(), Some(WAKE_LABEL)).map(|m| m.to_json())
}

/// Whether a message is a wake-up ([`wake_message`]), which receivers drop.
pub fn is_wake_up(header: &Header) -> bool {
    header.kind == MessageKind::Response && header.label == Some(WAKE_LABEL)
}

/// `{"kind": "success-response"}`.
pub fn success_body() -> Value {
    json!({"kind": "success-response"})
}

/// The result of a response message: the decoded result of an action
/// response (JSON), `null` for a success response, and an error for the
/// error responses (`Remote` with the remote exception text).
pub fn response_result(message: &Message) -> Result<Value> {
    let body = &message.body;
    match message.kind() {
        "action-response" => {
            let serialization = body
                .get("serialization")
                .and_then(Value::as_str)
                .unwrap_or("");
            let result = body.get("result").cloned().unwrap_or(Value::Null);
            let data = match result {
                Value::Array(ref items) if items.len() == 2 && items[0] == "__serialized__" => {
                    items[1].clone()
                }
                other => return Ok(other),
            };
            let Some(serialization) = Serialization::from_name(serialization) else {
                return Err(Error::protocol(format!(
                    "the result is serialized with {serialization:?}, which this library does not know"
                )));
            };
            match data {
                Value::String(text) => payload::decode(&text, serialization, "the action result"),
                other => Ok(other),
            }
        }
        "success-response" => Ok(Value::Null),
        "user-error-response" => Err(remote_exception(body)),
        "academy-error-response" => Err(academy_error(body)),
        kind => Err(Error::protocol(format!(
            "expected a response body, got kind {kind:?}"
        ))),
    }
}

fn remote_exception(body: &Value) -> Error {
    let name = body
        .get("serialization")
        .and_then(Value::as_str)
        .unwrap_or("");
    match (Serialization::from_name(name), body.get("exception")) {
        (Some(serialization), Some(Value::String(text))) => {
            payload::decode_exception(text, serialization)
        }
        _ => Error::new(
            Status::Remote,
            format!(
                "the remote agent raised an exception serialized with {name:?}, which cannot be decoded here"
            ),
        ),
    }
}

fn academy_error(body: &Value) -> Error {
    let code = body
        .get("error_code")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let mailbox = body
        .get("mailbox_id")
        .and_then(|m| EntityId::from_value(m).ok())
        .map(|m| m.to_string())
        .unwrap_or_else(|| "the remote mailbox".to_owned());
    match code {
        0 => Error::new(Status::MailboxTerminated, format!("mailbox {mailbox} was terminated")),
        1 => Error::new(Status::Remote, "the ping was cancelled by the agent (PingCancelledError)"),
        2 => Error::new(Status::Remote, "the action is not in a state that allows this (ActionInvalidStateError)"),
        3 => Error::new(Status::Remote, "the action was cancelled by the agent (ActionCancelledError)"),
        4 => Error::new(Status::Remote, format!("{mailbox} cannot fulfill requests (it is a user, not an agent)")),
        5 => Error::new(
            Status::Protocol,
            format!("{mailbox} speaks an incompatible Academy protocol version (ours is {PROTOCOL_VERSION})"),
        ),
        _ => Error::protocol(format!("unknown academy error code in response: {body}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &str = include_str!("../../tests/data/wire_samples.json");

    fn sample(name: &str, field: &str) -> String {
        let all: Value = serde_json::from_str(SAMPLES).unwrap();
        all[name][field].as_str().unwrap().to_owned()
    }

    #[test]
    fn reserializes_python_messages_byte_for_byte() {
        for name in [
            "action_add",
            "action_echo_kwargs",
            "action_fail",
            "ping",
            "shutdown",
        ] {
            for field in ["request_wire", "response_wire"] {
                let wire = sample(name, field);
                assert_eq!(
                    Message::from_json(&wire).unwrap().to_json(),
                    wire,
                    "{name}.{field}"
                );
            }
        }
    }

    #[test]
    fn builds_action_bodies_like_a_python_handle() {
        let wire = Message::from_json(&sample("action_echo_kwargs", "request_wire")).unwrap();
        let kwargs: Value =
            serde_json::from_str(r#"{"x": {"k": [1, 2], "s": "hé", "n": null, "f": 1.5}}"#)
                .unwrap();
        let body =
            action_request_body("echo", &json!([]), &kwargs, RequestSerialization::Auto).unwrap();
        // As a Handle with request_serializer=JSON, result_serializer=PICKLE
        // and exception_serializer=JSON writes it.
        let mut want = wire.body.clone();
        want["result_serialization"] = json!("pickle");
        want["exception_serialization"] = json!("json");
        assert_eq!(body, want);
        let answer = Answer::of(&body);
        assert_eq!(
            (answer.result, answer.exception),
            (Serialization::Pickle, Serialization::Json)
        );
    }

    #[test]
    fn answers_follow_the_request_as_academy_py_decides() {
        let answer = |body: Value| {
            let a = Answer::of(&body);
            (a.result.name(), a.exception.name())
        };
        assert_eq!(answer(json!({"serialization": "pickle"})), ("pickle", "pickle"));
        assert_eq!(
            answer(json!({"serialization": "pickle", "result_serialization": null, "exception_serialization": "json"})),
            ("pickle", "json")
        );
        assert_eq!(
            answer(json!({"serialization": "json", "result_serialization": "pickle"})),
            ("pickle", "pickle")
        );
        assert_eq!(answer(json!({"serialization": "yaml"})), ("json", "json"));
    }

    #[test]
    fn refused_requests_are_answered_as_academy_py_answers_them() {
        let json_only = Accepted {
            json: true,
            pickle: false,
        };
        let pickle = Message::from_json(&sample(
            "pickle_request_to_json_only_python_agent",
            "request_wire",
        ))
        .unwrap();
        let err = decode_action_request(&pickle.body, json_only).unwrap_err();
        assert!(err.message.contains("DeserializationMethodProhibitedError"), "{}", err.message);
        let mut asks_json = pickle.body.clone();
        asks_json["exception_serialization"] = json!("json");
        let answer = unreadable_request_body(&asks_json, json_only);
        let response = pickle.response(answer).unwrap();
        let e = response_result(&response).unwrap_err();
        assert_eq!(e.status, Status::Remote);
        assert!(
            e.message.contains("DeserializationMethodProhibitedError")
                && e.message.contains("accepts only json"),
            "{}",
            e.message
        );
        let mut unknown = asks_json.clone();
        unknown["serialization"] = json!("yaml");
        let e = decode_action_request(&unknown, Accepted::ALL).unwrap_err();
        assert!(e.message.contains("yaml"), "{}", e.message);
        let answer = unreadable_request_body(&unknown, Accepted::ALL);
        assert_eq!(answer["serialization"], "json");
        assert!(answer["exception"].as_str().unwrap().contains("yaml"));
    }

    #[test]
    fn decodes_results_and_errors() {
        let add = Message::from_json(&sample("action_add", "response_wire")).unwrap();
        assert_eq!(response_result(&add).unwrap(), json!(5));
        let fail = Message::from_json(&sample("action_fail", "response_wire")).unwrap();
        let err = response_result(&fail).unwrap_err();
        assert_eq!(err.status, Status::Remote);
        assert!(err.message.ends_with("ValueError: boom"), "{}", err.message);
        let pickle = Message::from_json(&sample(
            "pickle_request_to_json_only_python_agent",
            "response_wire",
        ))
        .unwrap();
        assert_eq!(response_result(&pickle).unwrap_err().status, Status::Remote);
        let proto = Message::from_json(&sample(
            "protocol_2_0_ping_to_python_agent",
            "response_wire",
        ))
        .unwrap();
        assert_eq!(
            response_result(&proto).unwrap_err().status,
            Status::Protocol
        );
    }

    #[test]
    fn responses_keep_tag_and_label_and_swap_ends() {
        let req = Message::from_json(&sample("ping", "request_wire")).unwrap();
        let resp = req.response(success_body()).unwrap();
        assert_eq!(resp.to_json(), sample("ping", "response_wire"));
        assert!(resp.response(success_body()).is_err());
    }

    #[test]
    fn checks_protocol_versions() {
        let mut req = Message::from_json(&sample("ping", "request_wire")).unwrap();
        assert!(req.header.compatible());
        for (v, ok) in [
            ("1.0", true),
            ("1.7", true),
            ("2.0", false),
            ("1.1+fork", false),
        ] {
            req.header.protocol_version = Some(v.to_owned());
            assert_eq!(req.header.compatible(), ok, "{v}");
        }
        req.header.protocol_version = None;
        assert!(!req.header.compatible());
    }

    #[test]
    fn decodes_action_requests() {
        let req = Message::from_json(&sample("action_echo_kwargs", "request_wire")).unwrap();
        let call = decode_action_request(&req.body, Accepted::ALL).unwrap();
        assert_eq!(call.action, "echo");
        assert_eq!(call.args_json, "[]");
        let kwargs: Value = serde_json::from_str(&call.kwargs_json).unwrap();
        assert_eq!(kwargs["x"]["s"], "hé");
        assert_eq!(call.answer.result, Serialization::Json);
        // academy-py's default Handle: pickle, add(2, 3).
        let pickle = Message::from_json(&sample(
            "pickle_request_to_json_only_python_agent",
            "request_wire",
        ))
        .unwrap();
        let call = decode_action_request(&pickle.body, Accepted::ALL).unwrap();
        assert_eq!((call.args_json.as_str(), call.kwargs_json.as_str()), ("[2,3]", "{}"));
        assert_eq!(call.answer.result, Serialization::Pickle);
        assert_eq!(call.answer.exception, Serialization::Pickle);
    }

    #[test]
    fn pickled_bodies_read_back() {
        let args = json!([{"py/tuple": [1, "a"]}, 2.5]);
        let kwargs = json!({"b": {"py/bytes": "AAE="}});
        let body = action_request_body("f", &args, &kwargs, RequestSerialization::Auto).unwrap();
        assert_eq!(body["serialization"], "pickle");
        let call = decode_action_request(&body, Accepted::ALL).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&call.args_json).unwrap(), args);
        assert_eq!(serde_json::from_str::<Value>(&call.kwargs_json).unwrap(), kwargs);
        let forced =
            action_request_body("f", &json!([1]), &json!({}), RequestSerialization::Pickle).unwrap();
        assert_eq!(forced["serialization"], "pickle");
        let call = decode_action_request(&forced, Accepted::ALL).unwrap();
        assert_eq!(call.args_json, "[1]");
        let bad = action_request_body("f", &json!([{"py/tuple": 5}]), &json!({}), RequestSerialization::Auto)
            .unwrap_err();
        assert_eq!(bad.status, Status::InvalidArgument);

        let request = Message::from_json(&sample("action_add", "request_wire")).unwrap();
        for serialization in [Serialization::Json, Serialization::Pickle] {
            let result = json!([{"py/tuple": [1, {"py/set": [2]}]}, "s", 1.5]);
            let ok = request
                .response(action_response_body(&result, serialization).unwrap())
                .unwrap();
            let back = response_result(&Message::from_json(&ok.to_json()).unwrap()).unwrap();
            assert_eq!(back, result);
            let failed = request.response(error_body("it broke", serialization)).unwrap();
            let e = response_result(&failed).unwrap_err();
            assert_eq!(e.status, Status::Remote);
            assert!(e.message.ends_with("it broke"), "{}", e.message);
        }
    }
}

/// The header of a message; the body is skipped, not parsed.
#[derive(Deserialize)]
struct Envelope {
    header: Header,
}

/// The header of a message given as JSON (its body is not looked at), or
/// `InvalidArgument` for text that is no Academy message.
pub fn header_of(message_json: &str) -> Result<Header> {
    serde_json::from_str::<Envelope>(message_json)
        .map(|e| e.header)
        .map_err(|e| Error::invalid(format!("not an Academy message: {e}")))
}
