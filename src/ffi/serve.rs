//! Serving an agent from C: `academy_agent_serve` and `academy_reply`.

use std::ffi::{c_char, c_void, CString};

use super::client::{academy_client, client_arg};
use super::handle::{self, Handle, Registry};
use super::{academy_status, arg_str, boundary};
use crate::client::serve::{self as agent, Reply};
use crate::error::{Error, Result};
use crate::wire::message::{parse_json, ActionCall};

/// The answer to one action request (opaque). Complete it exactly once.
pub struct academy_reply {
    reply: Reply,
}

static REPLIES: Registry<academy_reply> = Registry::new();

impl Handle for academy_reply {
    const NAME: &'static str = "reply";
    const TAG: usize = 3;
    fn registry() -> &'static Registry<Self> {
        &REPLIES
    }
}

/// An action handler: called for each action request with the action name,
/// its positional arguments (a JSON array) and keyword arguments (a JSON
/// object). The strings are valid only during the call. The handler
/// completes `reply` exactly once, during the call or later from any
/// thread, with `academy_reply_ok` or `academy_reply_error`.
pub type academy_action_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        action: *const c_char,
        args_json: *const c_char,
        kwargs_json: *const c_char,
        reply: *mut academy_reply,
    ),
>;

/// The caller's `user_data`, passed back untouched to the handler threads.
#[derive(Clone, Copy)]
struct UserData(*mut c_void);
// SAFETY: libacademy never dereferences it; the C caller promises (as the
// header says) that its handler may be called from library threads.
unsafe impl Send for UserData {}
unsafe impl Sync for UserData {}

fn call_handler(
    handler: unsafe extern "C" fn(
        *mut c_void,
        *const c_char,
        *const c_char,
        *const c_char,
        *mut academy_reply,
    ),
    user_data: UserData,
    call: ActionCall,
    reply: Reply,
) {
    let strings = (
        CString::new(call.action),
        CString::new(call.args_json),
        CString::new(call.kwargs_json),
    );
    let (Ok(action), Ok(args), Ok(kwargs)) = strings else {
        let _ = reply
            .error("the action name or arguments contain a NUL character, which C cannot receive");
        return;
    };
    let reply = handle::new_handle(academy_reply { reply });
    // SAFETY: the handler is the caller's C function with the documented
    // signature; the strings live until it returns.
    unsafe {
        handler(
            user_data.0,
            action.as_ptr(),
            args.as_ptr(),
            kwargs.as_ptr(),
            reply,
        )
    };
}

/// Serves the agent whose client is `client`: blocks the calling thread,
/// answering pings, honouring shutdown requests (terminating the mailbox
/// unless the request says `terminate: false`) and cancel requests, and
/// calling `handler` for each action request. Handlers run on up to
/// `max_concurrency` (a factory option) threads that the library starts,
/// never on its runtime's threads, so they may call any libacademy
/// function; `user_data` is passed to them untouched.
///
/// Requests serialized with pickle are answered with an error that a
/// Python caller sees as an exception saying that only JSON is accepted;
/// requests of another protocol major version get academy-py's
/// INCOMPATIBLE_PROTOCOL error. When serving ends, requests whose reply
/// was not completed are answered with ActionCancelledError, so no caller
/// waits forever.
///
/// Returns OK after a shutdown request or `academy_agent_stop`,
/// MAILBOX_TERMINATED if the mailbox was terminated by someone else,
/// INVALID_ARGUMENT for a NULL handler or a client already serving,
/// CLOSED after `academy_client_close`.
#[no_mangle]
pub unsafe extern "C" fn academy_agent_serve(
    client: *mut academy_client,
    handler: academy_action_fn,
    user_data: *mut c_void,
) -> academy_status {
    boundary(|| {
        let client = client_arg(client)?;
        let handler = handler.ok_or_else(|| Error::invalid("handler must not be NULL"))?;
        let user_data = UserData(user_data);
        agent::serve(&client, move |call, reply| {
            call_handler(handler, user_data, call, reply)
        })
    })
}

/// Ends `academy_agent_serve` running on `client` (from any thread,
/// including a handler). Does not block. Returns INVALID_ARGUMENT if the
/// client is not serving.
#[no_mangle]
pub unsafe extern "C" fn academy_agent_stop(client: *mut academy_client) -> academy_status {
    boundary(|| {
        let client = client_arg(client)?;
        if client.stop_serving()? {
            Ok(())
        } else {
            Err(Error::invalid("the client is not serving"))
        }
    })
}

/// Takes ownership of a reply on every outcome but a bad argument.
/// Completes a reply, which leaves the registry: a second completion
/// answers CLOSED instead of touching freed memory.
fn complete(reply: *mut academy_reply, answer: impl FnOnce(&Reply) -> Result<()>) -> Result<()> {
    handle::get(reply, "reply")?;
    let open = handle::take(reply)
        .ok_or_else(|| Error::closed("reply was completed by another thread meanwhile"))?;
    answer(&open.reply)
}

/// Completes `reply` with the action's result, `result_json` (any JSON
/// value; NULL means `null`). Blocks for one round trip. Frees `reply`,
/// except when it returns INVALID_ARGUMENT (malformed JSON), so that the
/// caller can complete it again. Returns CLOSED if the request was already
/// answered (cancelled, or serving ended).
#[no_mangle]
pub unsafe extern "C" fn academy_reply_ok(
    reply: *mut academy_reply,
    result_json: *const c_char,
) -> academy_status {
    boundary(|| {
        let result = if result_json.is_null() {
            serde_json::Value::Null
        } else {
            parse_json("result_json", arg_str(result_json, "result_json")?)?
        };
        complete(reply, |r| r.ok(&result))
    })
}

/// Completes `reply` with an error; a Python caller raises
/// `AcademyRemoteError(message)`. Frees `reply`, except when it returns
/// INVALID_ARGUMENT (NULL or invalid UTF-8). Blocks for one round trip.
#[no_mangle]
pub unsafe extern "C" fn academy_reply_error(
    reply: *mut academy_reply,
    message: *const c_char,
) -> academy_status {
    boundary(|| {
        let text = arg_str(message, "message")?;
        complete(reply, |r| r.error(text))
    })
}
