//! `academy_reply`: the answer to one action request, completed once,
//! whether the request came to `academy_agent_serve`'s handler or as a
//! queue's ACADEMY_EVENT_REQUEST event.

use std::ffi::c_char;

use super::handle::{self, Handle, Registry};
use super::{academy_status, arg_str, boundary};
use crate::client::serve::Reply;
use crate::error::{Result, Status};
use crate::wire::message::parse_json;

/// The answer to one action request (opaque). Complete it exactly once.
pub struct academy_reply {
    pub(crate) reply: Reply,
}

static REPLIES: Registry<academy_reply> = Registry::new();

impl Handle for academy_reply {
    const NAME: &'static str = "reply";
    const TAG: usize = 3;
    fn registry() -> &'static Registry<Self> {
        &REPLIES
    }
}

/// Completes a reply. A completed reply leaves the registry (a second
/// completion answers CLOSED instead of touching freed memory), and so
/// does one that can no longer be completed (CLOSED: answered already, or
/// its client closed). A reply whose answer could not be sent (the result
/// too large, the exchange down) stays open, so that the handler can
/// complete it again, with an error say.
fn complete(reply: *mut academy_reply, answer: impl FnOnce(&Reply) -> Result<()>) -> Result<()> {
    let open = handle::get(reply, "reply")?;
    let outcome = answer(&open.reply);
    match &outcome {
        Err(e) if e.status != Status::Closed => {}
        _ => drop(handle::take(reply)),
    }
    outcome
}

/// Completes `reply` with the action's result, `result_json` (any JSON
/// value; NULL means `null`). Blocks for one round trip, except for a
/// reply from an ACADEMY_EVENT_REQUEST event: that returns at once and the
/// response goes out in the background (a failure to send it is not
/// reported; the caller's call then times out). Frees `reply`,
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
/// INVALID_ARGUMENT (NULL or invalid UTF-8). Blocks for one round trip,
/// except for a reply from an ACADEMY_EVENT_REQUEST event (see
/// `academy_reply_ok`).
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
