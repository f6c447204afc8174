//! Message helpers with no network: ids, messages, action bodies, results.

use std::ffi::c_char;

use serde_json::{Map, Value};

use super::{academy_status, arg_opt_str, arg_str, boundary, check_out, write_string};
use crate::error::{Error, Result};
use crate::wire::ids::EntityId;
use crate::wire::message::{self, parse_json, Message};
use crate::wire::payload::RequestSerialization;

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

/// Makes a message from `src_json` to `dest_json` with the body `body_json`.
///
/// The message gets a fresh tag, no label, and the protocol 1.1 header; the
/// header kind (request or response) follows the body kind. No network: send
/// it with academy_client_send().
///
/// @param src_json the sender's id (JSON, as academy_client_mailbox_id()
///        gives). Not NULL.
/// @param dest_json the receiver's id (JSON). Not NULL.
/// @param body_json the body: an object with a `kind`, e.g.
///        `{"kind": "ping-request"}`. Not NULL.
/// @param[out] out_message_json receives the message JSON on success;
///        the caller frees it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument, a
///         bad id, malformed JSON or an unknown body kind.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe (no shared state).
/// @ingroup messages
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

/// Makes the response to the request message `request_json`.
///
/// The response has the same tag and label, with src and dest swapped, and
/// the body `body_json`.
///
/// @param request_json the request message (JSON). Not NULL.
/// @param body_json a response body (JSON object with a `kind`). Not NULL.
/// @param[out] out_message_json receives the response message JSON on
///        success; the caller frees it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument,
///         malformed JSON, or a `request_json` that is not a request.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe (no shared state).
/// @ingroup messages
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

/// Makes the body of an action request, as a Python `Handle` sends it.
///
/// The arguments are written as JSON when they hold no `py/` form, and as
/// pickle when they do (a pickle is the only way a Python agent receives a
/// tuple, bytes, a set, a numpy array, a dataclass, ...): the positional
/// arguments as a tuple of their items. The body asks for the result as
/// pickle (any picklable Python result arrives; academy_message_result()
/// decodes it to its JSON form) and for an exception as JSON (which keeps
/// the remote traceback's text). academy_action_request_body_as() chooses
/// the arguments' serialization.
///
/// @param action the action's name. Not NULL.
/// @param args_json the positional arguments, a JSON array; NULL means `[]`.
/// @param kwargs_json the keyword arguments, a JSON object; NULL means `{}`.
/// @param[out] out_body_json receives the body JSON on success;
///        the caller frees it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL `action` or
///         `out_body_json`, invalid UTF-8, malformed JSON, or a `py/` form
///         that cannot be pickled (e.g. `{"py/tuple": 5}`).
///
/// Blocks: no.
///
/// Thread-safety: thread-safe (no shared state).
/// @ingroup messages
#[no_mangle]
pub unsafe extern "C" fn academy_action_request_body(
    action: *const c_char,
    args_json: *const c_char,
    kwargs_json: *const c_char,
    out_body_json: *mut *mut c_char,
) -> academy_status {
    academy_action_request_body_as(action, args_json, kwargs_json, std::ptr::null(), out_body_json)
}

/// Makes the body of an action request whose arguments are written in the
/// serialization named, for a call that forces one.
///
/// As academy_action_request_body(), which is this with `serialization`
/// "auto". Send the body with academy_client_request() or
/// academy_client_request_async() and decode the response with
/// academy_message_result(): a call with a serialization of its own,
/// whatever the factory's `request_serialization` says.
///
/// @param action the action's name. Not NULL.
/// @param args_json the positional arguments, a JSON array; NULL means `[]`.
/// @param kwargs_json the keyword arguments, a JSON object; NULL means `{}`.
/// @param serialization "auto" (JSON unless the arguments hold a `py/` form,
///        then pickle), "json" (always; a `py/` form arrives in Python as a
///        dict) or "pickle" (always); NULL means "auto".
/// @param[out] out_body_json receives the body JSON on success;
///        the caller frees it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL `action` or
///         `out_body_json`, invalid UTF-8, malformed JSON, an unknown
///         `serialization`, or a `py/` form that cannot be pickled.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe (no shared state).
/// @ingroup messages
#[no_mangle]
pub unsafe extern "C" fn academy_action_request_body_as(
    action: *const c_char,
    args_json: *const c_char,
    kwargs_json: *const c_char,
    serialization: *const c_char,
    out_body_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_body_json, "out_body_json")?;
        let action = arg_str(action, "action")?;
        let mode = match arg_opt_str(serialization, "serialization")? {
            None => RequestSerialization::Auto,
            Some(name) => RequestSerialization::from_name(name).ok_or_else(|| {
                Error::invalid(format!(
                    "serialization must be one of {}, not {name:?}",
                    RequestSerialization::NAMES.join(", ")
                ))
            })?,
        };
        let body = message::action_request_body(
            action,
            &args_arg(args_json)?,
            &kwargs_arg(kwargs_json)?,
            mode,
        )?;
        write_string(out_body_json, body.to_string())
    })
}

/// Decodes the response message `response_json`.
///
/// The result of an action response in its JSON form (decoded from JSON or
/// from pickle: a tuple arrives as `{"py/tuple": [...]}`, a numpy array as
/// `{"py/ndarray": {...}}`, ...), or `null` for a success response.
///
/// @param response_json the response message (JSON). Not NULL.
/// @param[out] out_result_json receives the result JSON on success;
///        the caller frees it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_REMOTE for an error response, with the
///         remote exception text in academy_last_error(), and for academy
///         error responses that say the call was cancelled or refused;
///         ACADEMY_ERR_MAILBOX_TERMINATED for an academy error response
///         saying the mailbox was terminated; ACADEMY_ERR_PROTOCOL for other
///         academy error responses, a result that cannot be read (a
///         serialization other than JSON and pickle, a pickle that is
///         malformed or holds what this library does not read), or a body
///         that is no response; ACADEMY_ERR_INVALID_ARGUMENT for a
///         NULL argument or JSON that is not a message.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe (no shared state).
/// @ingroup messages
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

/// A new user id (random uuid) with an optional name, as JSON.
///
/// @param name the display name, or NULL for none.
/// @param[out] out_id_json receives the id JSON on success;
///        the caller frees it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL `out_id_json`
///         or a `name` that is not UTF-8.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe.
/// @ingroup messages
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

/// A new agent id (random uuid) with an optional name, as JSON.
///
/// The id is not registered; see academy_client_register_agent().
///
/// @param name the display name, or NULL for none.
/// @param[out] out_id_json receives the id JSON on success;
///        the caller frees it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL `out_id_json`
///         or a `name` that is not UTF-8.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe.
/// @ingroup messages
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
