//! Message helpers with no network: ids, messages, action bodies, results.

use std::ffi::c_char;

use serde_json::{Map, Value};

use super::{academy_status, arg_opt_str, arg_str, boundary, check_out, write_string};
use crate::error::Result;
use crate::wire::ids::EntityId;
use crate::wire::message::{self, parse_json, Message};

/// Positional arguments: a JSON array, NULL meaning `[]`.
pub(crate) unsafe fn args_arg(ptr: *const c_char) -> Result<Value> {
    match arg_opt_str(ptr, "args_json")? {
        None => Ok(Value::Array(Vec::new())),
        Some(text) => parse_json("args_json", text),
    }
}

/// Keyword arguments: a JSON object, NULL meaning `{}`.
pub(crate) unsafe fn kwargs_arg(ptr: *const c_char) -> Result<Value> {
    match arg_opt_str(ptr, "kwargs_json")? {
        None => Ok(Value::Object(Map::new())),
        Some(text) => parse_json("kwargs_json", text),
    }
}

/// Makes a message from `src_json` to `dest_json` with `body_json` (an
/// object with a `kind`, e.g. `{"kind": "ping-request"}`): a fresh tag, no
/// label, and the protocol 1.1 header. The header kind (request or
/// response) follows the body kind. `*out_message_json` gets the message
/// (free with `academy_string_free`). Returns INVALID_ARGUMENT for a bad
/// id, malformed JSON or an unknown body kind. Does not block.
#[no_mangle]
pub unsafe extern "C" fn academy_message_new(
    src_json: *const c_char,
    dest_json: *const c_char,
    body_json: *const c_char,
    out_message_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_message_json, "out_message_json")?;
        let src = EntityId::from_json(arg_str(src_json, "src_json")?)?;
        let dest = EntityId::from_json(arg_str(dest_json, "dest_json")?)?;
        let body = parse_json("body_json", arg_str(body_json, "body_json")?)?;
        let message = Message::create(src, dest, body, None)?;
        write_string(out_message_json, message.to_json())
    })
}

/// Makes the response to the request message `request_json` with
/// `body_json` (a response body): same tag and label, src and dest
/// swapped. Returns INVALID_ARGUMENT if `request_json` is not a request.
/// Does not block.
#[no_mangle]
pub unsafe extern "C" fn academy_message_response(
    request_json: *const c_char,
    body_json: *const c_char,
    out_message_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_message_json, "out_message_json")?;
        let request = Message::from_json(arg_str(request_json, "request_json")?)?;
        let body = parse_json("body_json", arg_str(body_json, "body_json")?)?;
        write_string(out_message_json, request.response(body)?.to_json())
    })
}

/// Makes the body of an action request with JSON serialization, as a
/// Python `Handle` sends it. `args_json` is a JSON array (NULL = []),
/// `kwargs_json` a JSON object (NULL = {}). Does not block.
#[no_mangle]
pub unsafe extern "C" fn academy_action_request_body(
    action: *const c_char,
    args_json: *const c_char,
    kwargs_json: *const c_char,
    out_body_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_body_json, "out_body_json")?;
        let action = arg_str(action, "action")?;
        let body =
            message::action_request_body(action, &args_arg(args_json)?, &kwargs_arg(kwargs_json)?)?;
        write_string(out_body_json, body.to_string())
    })
}

/// Decodes the response message `response_json`: the result of an action
/// response as JSON, or `null` for a success response. Returns REMOTE with
/// the remote exception text in `academy_last_error` for an error
/// response, MAILBOX_TERMINATED or PROTOCOL for academy error responses,
/// PROTOCOL for a result that is not JSON-serialized. Does not block.
#[no_mangle]
pub unsafe extern "C" fn academy_message_result(
    response_json: *const c_char,
    out_result_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_result_json, "out_result_json")?;
        let response = Message::from_json(arg_str(response_json, "response_json")?)?;
        let result = message::response_result(&response)?;
        write_string(out_result_json, result.to_string())
    })
}

/// A new user id (random uuid) with an optional `name`, as JSON. Does not
/// block.
#[no_mangle]
pub unsafe extern "C" fn academy_user_id_new(
    name: *const c_char,
    out_id_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_id_json, "out_id_json")?;
        let name = arg_opt_str(name, "name")?;
        write_string(out_id_json, EntityId::new_user(name).to_json())
    })
}

/// A new agent id (random uuid) with an optional `name`, as JSON. Does not
/// block. (It is not registered; see `academy_client_register_agent`.)
#[no_mangle]
pub unsafe extern "C" fn academy_agent_id_new(
    name: *const c_char,
    out_id_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_id_json, "out_id_json")?;
        let name = arg_opt_str(name, "name")?;
        write_string(out_id_json, EntityId::new_agent(name).to_json())
    })
}
