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

/// The body of an action request with JSON serialization, as a Python
/// `Handle` sends it: `pargs`/`kargs` are JSON text (Python's `json.dumps`
/// format) inside JSON strings.
pub fn action_request_body(action: &str, args: &Value, kwargs: &Value) -> Result<Value> {
    if !args.is_array() {
        return Err(Error::invalid("action arguments must be a JSON array"));
    }
    if !kwargs.is_object() {
        return Err(Error::invalid(
            "action keyword arguments must be a JSON object",
        ));
    }
    Ok(json!({
        "action": action,
        "serialization": "json",
        "result_serialization": null,
        "exception_serialization": null,
        "pargs": pyjson::dumps(args),
        "kargs": pyjson::dumps(kwargs),
        "kind": "action-request",
    }))
}

/// A decoded action request (what a C handler sees).
#[derive(Debug, Clone)]
pub struct ActionCall {
    pub action: String,
    /// JSON text of the positional arguments (an array).
    pub args_json: String,
    /// JSON text of the keyword arguments (an object).
    pub kwargs_json: String,
    /// The serialization the caller wants for the result.
    pub result_serialization: String,
}

/// Decodes an action request body; only JSON serialization can be read.
pub fn decode_action_request(body: &Value) -> Result<ActionCall> {
    let field = |name: &str| body.get(name).and_then(Value::as_str);
    let action =
        field("action").ok_or_else(|| Error::protocol("action request without an action name"))?;
    let serialization = field("serialization").unwrap_or("");
    if serialization != "json" {
        return Err(Error::protocol(format!(
            "this agent accepts only JSON serialization, but the request uses {serialization:?}"
        )));
    }
    let args = decode_json_field(body.get("pargs"), Value::Array(vec![]))?;
    let kwargs = decode_json_field(body.get("kargs"), Value::Object(Map::new()))?;
    if !args.is_array() || !kwargs.is_object() {
        return Err(Error::protocol(
            "action request arguments are not an array and an object",
        ));
    }
    let result_serialization = field("result_serialization")
        .filter(|s| !s.is_empty())
        .unwrap_or(serialization)
        .to_owned();
    Ok(ActionCall {
        action: action.to_owned(),
        args_json: args.to_string(),
        kwargs_json: kwargs.to_string(),
        result_serialization,
    })
}

/// A `pargs`/`kargs` field: JSON text in a string (or, leniently, the value).
fn decode_json_field(field: Option<&Value>, default: Value) -> Result<Value> {
    match field {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(text)) => pyjson::loads(text)
            .map_err(|e| Error::protocol(format!("action arguments are not JSON: {e}"))),
        Some(other) => Ok(other.clone()),
    }
}

/// The body of a successful action response with JSON serialization.
pub fn action_response_body(result: &Value) -> Value {
    json!({
        "result": ["__serialized__", pyjson::dumps(result)],
        "serialization": "json",
        "kind": "action-response",
    })
}

/// The body of an error that a Python caller raises as `AcademyRemoteError`.
pub fn user_error_body(message: &str) -> Value {
    let exception = json!({"__exception__": true, "exception_str": message});
    json!({
        "serialization": "json",
        "exception": pyjson::dumps(&exception),
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
            if serialization != "json" {
                return Err(Error::protocol(format!(
                    "the result is serialized with {serialization:?}; only JSON can be decoded here"
                )));
            }
            match data {
                Value::String(text) => pyjson::loads(&text).map_err(|e| {
                    Error::protocol(format!("the action result is not valid JSON: {e}"))
                }),
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
    let serialization = body
        .get("serialization")
        .and_then(Value::as_str)
        .unwrap_or("");
    let exception = body.get("exception");
    if serialization == "json" {
        if let Some(Value::String(text)) = exception {
            if let Ok(value) = pyjson::loads(text) {
                if let Some(s) = value.get("exception_str").and_then(Value::as_str) {
                    return Error::new(Status::Remote, s.trim_end().to_owned());
                }
                return Error::new(Status::Remote, value.to_string());
            }
            return Error::new(Status::Remote, text.clone());
        }
    }
    Error::new(
        Status::Remote,
        format!(
            "the remote agent raised an exception serialized with {serialization:?}, which cannot be decoded here \
             (a JSON-only Python agent answers a pickle request this way: DeserializationMethodProhibitedError)"
        ),
    )
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
        let body = action_request_body("echo", &json!([]), &kwargs).unwrap();
        assert_eq!(body, wire.body);
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
        let call = decode_action_request(&req.body).unwrap();
        assert_eq!(call.action, "echo");
        assert_eq!(call.args_json, "[]");
        let kwargs: Value = serde_json::from_str(&call.kwargs_json).unwrap();
        assert_eq!(kwargs["x"]["s"], "hé");
        let pickle = Message::from_json(&sample(
            "pickle_request_to_json_only_python_agent",
            "request_wire",
        ))
        .unwrap();
        assert_eq!(
            decode_action_request(&pickle.body).unwrap_err().status,
            Status::Protocol
        );
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
