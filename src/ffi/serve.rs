//! Serving an agent from C: `academy_agent_serve` and `academy_reply`.

use std::ffi::{c_char, c_void, CString};

use super::client::{academy_client, client_arg};
use super::handle;
use super::queue::{academy_queue, queue_arg};
use super::reply::academy_reply;
use super::{academy_status, boundary};
use crate::client::serve::{self as agent, Reply};
use crate::client::serve_queue;
use crate::error::Error;
use crate::runtime;
use crate::wire::message::ActionCall;

/// An action handler: called for each action request with the action name,
/// its positional arguments (a JSON array of the argument tuple's items) and
/// keyword arguments (a JSON object), in the JSON forms of Python values
/// whether the caller sent JSON or pickle (see the "Python values" group).
/// The strings belong to the library and are valid only during the call. The handler completes `reply` exactly once, during the call or later
/// from any thread, with `academy_reply_ok` or `academy_reply_error`. It runs
/// on threads the library starts for serving, never on the library's runtime
/// threads, so it may call any libacademy function.
/// @ingroup serving
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

/// Serves the agent whose client is `client` on the calling thread, until
/// serving ends.
///
/// It answers pings, honours shutdown requests (terminating the mailbox unless
/// the request says `terminate: false`) and cancel requests, and calls
/// `handler` for each action request. Handlers run on up to `max_concurrency`
/// (a factory option) threads that the library starts, never on its
/// runtime's threads, so they may call any libacademy function. A request
/// waits for a handler while `max_concurrency` requests are in progress (a
/// request is in progress until its reply is completed, which may be after
/// its handler returned). Replies go out in the background, pipelined (see
/// academy_reply_ok()); this function returns after they have gone out
/// (waiting at most the request timeout).
///
/// Requests come in JSON or in pickle (academy-py's default): the handler
/// sees the same JSON form of the arguments either way (a tuple as
/// `{"py/tuple": [...]}`, a numpy array as `{"py/ndarray": {...}}`, ...;
/// pickles are read as data, never run). The result goes back in the
/// serialization the request asks for (`result_serialization`, else the
/// arguments'), an error in `exception_serialization` (else the result's);
/// a Python caller raises `AcademyRemoteError(message)` for
/// academy_reply_error() either way. The factory option
/// `allowed_deserializers` restricts what the agent reads: a request in
/// another serialization is answered with academy-py's
/// DeserializationMethodProhibitedError, and one that cannot be read (a
/// malformed or hostile pickle) with an error saying why; serving goes on.
/// Requests of another protocol major version get academy-py's
/// INCOMPATIBLE_PROTOCOL error. When serving ends, requests whose reply was
/// not completed are answered with ActionCancelledError, so no caller waits
/// forever.
///
/// @param client the agent's client (from academy_agent_client_new()); stays
///        owned by the caller. Not NULL.
/// @param handler called for each action request (see ::academy_action_fn).
///        Not NULL.
/// @param user_data passed to every call of `handler` untouched, from the
///        handler threads; the library never reads or frees it. It must stay
///        valid until this function returns and every reply is completed.
/// @return ACADEMY_OK after a shutdown request or academy_agent_stop();
///         ACADEMY_ERR_MAILBOX_TERMINATED if the mailbox was terminated by
///         someone else (requests received but not yet handed to a handler
///         never run; it returns after at most about 2 s more for handlers
///         still running, whose replies then get ACADEMY_ERR_CLOSED);
///         ACADEMY_ERR_BAD_ENTITY_ID, ACADEMY_ERR_UNAUTHORIZED
///         or ACADEMY_ERR_FORBIDDEN when the mailbox vanished or may no
///         longer be read (other failures of the exchange are waited out:
///         the listener reconnects); ACADEMY_ERR_INVALID_ARGUMENT for a NULL
///         argument or a
///         client already serving (or listening to a queue);
///         ACADEMY_ERR_CLOSED after academy_client_close() (also from another
///         thread, or academy_client_free(); the requests in progress are
///         answered with ActionCancelledError first), for a freed client, or for one
///         made before fork() (in the child); ACADEMY_ERR_INVALID_ARGUMENT
///         from inside the log callback.
///
/// Blocks: until serving ends (a shutdown request, academy_agent_stop(),
/// academy_client_close(), or the mailbox goes away); no timeout.
///
/// Thread-safety: thread-safe; one serving per client at a time.
/// @ingroup serving
#[no_mangle]
pub unsafe extern "C" fn academy_agent_serve(
    client: *mut academy_client,
    handler: academy_action_fn,
    user_data: *mut c_void,
) -> academy_status {
    boundary(|| {
        runtime::may_wait()?;
        let client = client_arg(client)?;
        let handler = handler.ok_or_else(|| Error::invalid("handler must not be NULL"))?;
        let user_data = UserData(user_data);
        agent::serve(&client, move |call, reply| {
            call_handler(handler, user_data, call, reply)
        })
    })
}

/// Serves the agent whose client is `client` from the program's own loop,
/// through `queue`, and returns at once.
///
/// The library answers pings, honours shutdown requests (terminating the
/// mailbox unless the request says `terminate: false`) and cancel requests,
/// reads JSON and pickle requests (as `allowed_deserializers` allows) and
/// answers those it cannot read, exactly as academy_agent_serve() does,
/// on its own threads; no program code runs there. Each action request
/// becomes an ACADEMY_EVENT_REQUEST event with `token` on `queue`, with
/// `action`, `args_json`, `kwargs_json`, the request message in `json`, and a
/// `reply` that the program completes exactly once, then or later, from any
/// thread, with academy_reply_ok() / academy_reply_error() (which do not
/// block for these replies). `max_concurrency` does not apply: every request
/// becomes an event at once.
///
/// Serving ends after a shutdown request, academy_agent_stop(),
/// academy_client_close(), or when the mailbox goes away. Its last event is
/// an ACADEMY_EVENT_ENDED event with `token`, whose status is what
/// academy_agent_serve() would have returned: ACADEMY_OK after a shutdown
/// request or academy_agent_stop(), ACADEMY_ERR_CLOSED after
/// academy_client_close(), ACADEMY_ERR_MAILBOX_TERMINATED if someone else
/// terminated the mailbox. Requests not yet answered then are answered with
/// ActionCancelledError (a later academy_reply_ok() returns
/// ACADEMY_ERR_CLOSED). If `queue` is freed while serving goes on, action
/// requests are answered with ActionCancelledError.
///
/// @param client the agent's client; stays owned by the caller. Not NULL.
/// @param queue the queue that gets the events; stays owned by the caller
///        (the library keeps its own reference while serving). Not NULL.
/// @param token the program's number for this serving, returned untouched in
///        each of its events.
/// @return ACADEMY_OK (serving started); ACADEMY_ERR_INVALID_ARGUMENT for
///         NULL arguments or a client that is already serving or listening
///         (academy_client_listen()); ACADEMY_ERR_CLOSED for a closed or freed
///         client, a freed queue, or a handle made before fork() (in the
///         child).
///
/// Blocks: no.
///
/// Thread-safety: thread-safe; one serving per client at a time.
/// @ingroup serving
#[no_mangle]
pub unsafe extern "C" fn academy_agent_serve_queue(
    client: *mut academy_client,
    queue: *mut academy_queue,
    token: u64,
) -> academy_status {
    boundary(|| {
        let client = client_arg(client)?;
        client.check_process()?;
        let queue = queue_arg(queue)?;
        serve_queue::serve_queue(&client, &queue, token)
    })
}

/// Ends academy_agent_serve() or academy_agent_serve_queue() running on
/// `client`.
///
/// academy_agent_serve() returns soon after, and a queue gets the serving's
/// ACADEMY_EVENT_ENDED event.
///
/// @param client the serving client; stays owned by the caller. Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for NULL or a client that
///         is not serving; ACADEMY_ERR_CLOSED for a freed client or one made
///         before fork() (in the child).
///
/// Blocks: no.
///
/// Thread-safety: thread-safe: from any thread, including a handler.
/// @ingroup serving
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
