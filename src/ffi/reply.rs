//! `academy_reply`: the answer to one action request, completed once,
//! whether the request came to `academy_agent_serve`'s handler or as a
//! queue's ACADEMY_EVENT_REQUEST event.

use std::ffi::c_char;

use super::handle::{self, Handle, Registry};
use super::{academy_status, arg_str, boundary, check_out, write_out};
use crate::client::serve::Reply;
use crate::error::{Result, Status};
use crate::wire::message::parse_json;

/// The answer to one action request (opaque). Complete it once, with
/// academy_reply_ok() or academy_reply_error(), from any thread; a
/// completion that succeeds frees it, one whose response could not be sent
/// while it waited (academy_reply_ok()) leaves it open for another try.
/// @ingroup serving
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
/// its client closed). A reply whose answer could not be sent while the
/// completion waited for it (the result too large) stays open, so that the
/// handler can complete it again, with an error say.
fn complete(reply: *mut academy_reply, answer: impl FnOnce(&Reply) -> Result<()>) -> Result<()> {
    let open = handle::get(reply, "reply")?;
    let outcome = answer(&open.reply);
    match &outcome {
        Err(e) if e.status != Status::Closed => {}
        _ => drop(handle::take(reply)),
    }
    outcome
}

/// Completes `reply` with the action's result.
///
/// The result, the JSON form of a Python value, goes back in the
/// serialization the request asked for: as pickle for academy-py's default
/// Handle, so a `py/` form arrives as its Python value (`{"py/tuple": [1, 2]}`
/// as the tuple (1, 2), academy_ndarray_write()'s form as a numpy array); as
/// JSON text (forms and all) to a caller that asked for JSON.
///
/// The response goes out in the background, pipelined with the client's
/// other sends, and the call returns at once; if that send fails (the
/// exchange down past the retries, say), the library answers the caller
/// with an error that says why (a Python caller raises AcademyRemoteError),
/// so no caller waits out its timeout. One exception, for a reply given to
/// an academy_agent_serve() handler: a response larger than every one the
/// exchange accepted from this serving so far (the first one, say) is sent
/// while the call waits for the exchange, so that a result too large for
/// it returns ACADEMY_ERR_MESSAGE_TOO_LARGE with the reply still open.
///
/// Every request gets exactly one answer: this reply, or the
/// ActionCancelledError that ending serving (academy_agent_stop(),
/// academy_client_close(), a shutdown request) sends for the requests left.
/// A completion that returns ACADEMY_OK was the answer, and it goes out
/// even if serving ends or the client closes right after (a close, and
/// academy_agent_serve() before it returns, wait for it); one that comes
/// after serving ended returns ACADEMY_ERR_CLOSED, its caller having been
/// answered with ActionCancelledError.
///
/// @param reply the reply, owned by the program until this call: freed here
///        on ACADEMY_OK and ACADEMY_ERR_CLOSED. After any other status
///        (a bad argument, or a response sent while the call waited that
///        could not be sent: MESSAGE_TOO_LARGE, TIMEOUT, the transport
///        errors) it stays open, and the program completes it again, e.g.
///        with academy_reply_error(). Not NULL.
/// @param result_json the result, any JSON value; NULL means `null`. Read
///        during the call only.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL `reply`,
///         malformed `result_json`, or a `py/` form in it that cannot be
///         pickled when the caller asked for pickle (the reply stays open);
///         ACADEMY_ERR_CLOSED if the request was already answered (completed
///         before, cancelled, or serving ended) or the reply is not a live
///         reply; for a response sent while the call waited (see above),
///         the statuses of academy_client_send() when it cannot be sent.
///
/// Blocks: not with a reply from an ACADEMY_EVENT_REQUEST event; with a
/// reply of academy_agent_serve(), for one round trip when the response is
/// larger than every one accepted before in this serving, else not.
///
/// Thread-safety: thread-safe: any thread may complete a reply; if two
/// threads complete one reply at once, one wins and the other gets
/// ACADEMY_ERR_CLOSED.
/// @ingroup serving
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

/// Tells whether the request of `reply` was answered without it: its
/// caller cancelled it, serving ended (the client closed or
/// academy_agent_stop()), or its mailbox was terminated.
///
/// academy-py cancels a running action in these cases; a C handler cannot
/// be interrupted, so a long one may ask now and then and stop early. A
/// cancelled reply is still the program's: complete it (the completion
/// answers ACADEMY_ERR_CLOSED and frees it).
///
/// @param reply the reply; stays owned by the program. Not NULL.
/// @param[out] out_cancelled receives true if the request was answered
///        already, else false. Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument;
///         ACADEMY_ERR_CLOSED if `reply` is not a live reply (completed or
///         freed).
///
/// Blocks: no.
///
/// Thread-safety: thread-safe.
/// @ingroup serving
#[no_mangle]
pub unsafe extern "C" fn academy_reply_cancelled(
    reply: *mut academy_reply,
    out_cancelled: *mut bool,
) -> academy_status {
    boundary(|| {
        check_out(out_cancelled, "out_cancelled")?;
        let open = handle::get(reply, "reply")?;
        write_out(out_cancelled, open.reply.is_answered());
        Ok(())
    })
}

/// Completes `reply` with an error; a Python caller raises
/// `AcademyRemoteError(message)`, whether it asked for the exception as JSON
/// or as pickle.
///
/// Sends the response as academy_reply_ok() does: in the background, but
/// for a response of an academy_agent_serve() handler larger than every one
/// the exchange accepted from this serving so far, which the call waits
/// for.
///
/// @param reply the reply, owned by the program until this call: freed here
///        on ACADEMY_OK and ACADEMY_ERR_CLOSED; after any other status it
///        stays open, as for academy_reply_ok(). Not NULL.
/// @param message the error text (UTF-8); read during the call only. Not
///        NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument or
///         invalid UTF-8 (the reply stays open); ACADEMY_ERR_CLOSED if the
///         request was already answered (completed before, cancelled, or
///         serving ended) or the reply is not a live reply; for a response
///         sent while the call waited, the statuses of academy_client_send()
///         when it cannot be sent.
///
/// Blocks: as academy_reply_ok().
///
/// Thread-safety: thread-safe, as academy_reply_ok().
/// @ingroup serving
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
