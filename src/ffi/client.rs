//! `academy_client`: a client bound to one mailbox, and the calls made
//! through it.

use std::ffi::{c_char, c_int, c_void};
use std::future::Future;

use serde_json::Value;

use super::factory::{academy_factory, factory_arg};
use super::handle::{self, Handle, Registry};
use super::queue::{academy_queue, queue_arg};
use super::{
    academy_status, arg_opt_str, arg_str, arg_timeout, boundary, boundary_or, c_text, check_out,
    write_out, write_string,
};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::runtime;
use crate::transport::MailboxStatus;
use crate::wire::ids::EntityId;
use crate::wire::message::parse_json;

/// A client bound to one mailbox (opaque). Thread-safe: any number of threads
/// may use one client at once.
/// @ingroup client
pub struct academy_client {
    pub(crate) client: Client,
}

static CLIENTS: Registry<academy_client> = Registry::new();

impl Handle for academy_client {
    const NAME: &'static str = "client";
    const TAG: usize = 2;
    fn registry() -> &'static Registry<Self> {
        &CLIENTS
    }
}

/// The status of a mailbox.
/// @ingroup client
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum academy_mailbox_status {
    /// The exchange does not know the mailbox.
    ACADEMY_MAILBOX_MISSING = 0,
    /// The mailbox exists and its owner sent a heartbeat recently.
    ACADEMY_MAILBOX_ACTIVE = 1,
    /// The mailbox exists but its heartbeats stopped (or never came).
    ACADEMY_MAILBOX_INACTIVE = 2,
    /// The mailbox was terminated.
    ACADEMY_MAILBOX_TERMINATED = 3,
}

impl From<MailboxStatus> for academy_mailbox_status {
    fn from(s: MailboxStatus) -> Self {
        match s {
            MailboxStatus::Missing => academy_mailbox_status::ACADEMY_MAILBOX_MISSING,
            MailboxStatus::Active => academy_mailbox_status::ACADEMY_MAILBOX_ACTIVE,
            MailboxStatus::Inactive => academy_mailbox_status::ACADEMY_MAILBOX_INACTIVE,
            MailboxStatus::Terminated => academy_mailbox_status::ACADEMY_MAILBOX_TERMINATED,
        }
    }
}

/// Runs a blocking call on the shared runtime from the caller's thread.
pub(crate) fn block<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    runtime::block_on(future)?
}

/// The client behind a handle (see [`handle::get`]).
pub(crate) fn client_arg(client: *const academy_client) -> Result<Client> {
    Ok(handle::get(client, "client")?.client.clone())
}

unsafe fn id_arg(ptr: *const c_char, name: &str) -> Result<EntityId> {
    EntityId::from_json(arg_str(ptr, name)?)
}

unsafe fn new_client(
    out: *mut *mut academy_client,
    make: impl FnOnce() -> Result<Client>,
) -> Result<()> {
    check_out(out, "out")?;
    let client = make()?;
    write_out(out, handle::new_handle(academy_client { client }));
    Ok(())
}

/// Registers a new user mailbox on the exchange and makes its client.
///
/// The client listens to its mailbox and sends heartbeats in the background;
/// requests that reach a user mailbox are answered with an academy error
/// (INVALID_CLIENT), as academy-py's user client does.
///
/// @param factory the exchange's factory; only read, stays owned by the
///        caller. Not NULL.
/// @param name a display name for the mailbox, or NULL for none.
/// @param[out] out receives the client on success (untouched on failure);
///        the caller closes it with academy_client_close() and frees it with
///        academy_client_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL `factory` or
///         `out` or a `name` that is not UTF-8; ACADEMY_ERR_CLOSED for a freed
///         factory or one made before fork() (in the child); the transport
///         errors (ACADEMY_ERR_CONNECTION, ACADEMY_ERR_TIMEOUT,
///         ACADEMY_ERR_UNAUTHORIZED, ACADEMY_ERR_FORBIDDEN,
///         ACADEMY_ERR_HTTP...).
///
/// Blocks: for one round trip to the exchange (bounded by the factory's
/// `request_timeout_s` and `retries`).
///
/// Thread-safety: thread-safe.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_user_client_new(
    factory: *const academy_factory,
    name: *const c_char,
    out: *mut *mut academy_client,
) -> academy_status {
    boundary(|| {
        let factory = factory_arg(factory)?;
        let name = arg_opt_str(name, "name")?;
        new_client(out, || block(factory.create_user_client(name)))
    })
}

/// Makes the client of an agent registered before (here with
/// academy_client_register_agent(), or by Python).
///
/// The client listens and sends heartbeats in the background; it answers
/// nothing by itself: academy_client_recv() returns every message, or
/// academy_agent_serve() serves them. Served, it reads action requests in
/// JSON and in pickle (academy-py's default), or only in those the
/// factory's `allowed_deserializers` names.
///
/// @param factory the exchange's factory; only read, stays owned by the
///        caller. Not NULL.
/// @param registration_json the registration,
///        `{"agent_id": {...}, "exchange_type": "http"}`; read during the call
///        only. Not NULL.
/// @param[out] out receives the client on success (untouched on failure);
///        the caller closes it with academy_client_close() and frees it with
///        academy_client_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_BAD_ENTITY_ID if the mailbox does not
///         exist; ACADEMY_ERR_MAILBOX_TERMINATED if it was terminated;
///         ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument or a malformed
///         registration; ACADEMY_ERR_CLOSED for a freed factory or one made
///         before fork() (in the child); the transport errors.
///
/// Blocks: for two round trips to the exchange.
///
/// Thread-safety: thread-safe.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_agent_client_new(
    factory: *const academy_factory,
    registration_json: *const c_char,
    out: *mut *mut academy_client,
) -> academy_status {
    boundary(|| {
        let factory = factory_arg(factory)?;
        let registration = arg_str(registration_json, "registration_json")?;
        new_client(out, || block(factory.create_agent_client(registration)))
    })
}

/// Registers a new agent mailbox.
///
/// `discover` finds the agent by its `agent_types`. Make the agent's client
/// with academy_agent_client_new().
///
/// @param client the client that registers; stays owned by the caller. Not
///        NULL.
/// @param agent_types the comma-joined class MRO of the agent, most derived
///        first (e.g. "mymod.Calc,mymod.Base"). Not NULL.
/// @param name a display name for the agent, or NULL for none.
/// @param[out] out_registration_json receives
///        `{"agent_id": {...}, "exchange_type": "http"}` on success; the caller frees it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument,
///         invalid UTF-8 or an empty class name; ACADEMY_ERR_CLOSED for a closed or freed client, or one made before fork() (in the child); the transport
///         errors.
///
/// Blocks: for one round trip to the exchange.
///
/// Thread-safety: thread-safe.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_client_register_agent(
    client: *mut academy_client,
    agent_types: *const c_char,
    name: *const c_char,
    out_registration_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_registration_json, "out_registration_json")?;
        let client = client_arg(client)?;
        let types = arg_str(agent_types, "agent_types")?;
        let name = arg_opt_str(name, "name")?;
        let registration = block(client.register_agent(types, name))?;
        write_string(out_registration_json, registration)
    })
}

/// The id of the client's mailbox as JSON (`{"uid": ..., "name": ...,
/// "role": ...}`).
///
/// Works after academy_client_close() too.
///
/// @param client the client; only read. Not NULL.
/// @param[out] out_id_json receives the id JSON on success; the caller frees it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument;
///         ACADEMY_ERR_CLOSED for a freed client or one made before fork() (in
///         the child).
///
/// Blocks: no.
///
/// Thread-safety: thread-safe.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_client_mailbox_id(
    client: *const academy_client,
    out_id_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_id_json, "out_id_json")?;
        let client = client_arg(client)?;
        write_string(out_id_json, client.mailbox_id().to_json())
    })
}

/// Sends a message and waits until the exchange took it.
///
/// `message_json` is the JSON of an Academy message (see
/// academy_message_new()); it is checked, then sent as given.
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param message_json the message; read during the call only. Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_BAD_ENTITY_ID (unknown destination);
///         ACADEMY_ERR_MAILBOX_TERMINATED; ACADEMY_ERR_MESSAGE_TOO_LARGE;
///         ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument or JSON that is
///         not a message; ACADEMY_ERR_CLOSED for a closed or freed client, or one made before fork() (in the child); the transport errors.
///
/// Blocks: for one round trip to the exchange.
///
/// Thread-safety: thread-safe.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_client_send(
    client: *mut academy_client,
    message_json: *const c_char,
) -> academy_status {
    boundary(|| {
        let client = client_arg(client)?;
        let message = arg_str(message_json, "message_json")?;
        block(client.send(message))
    })
}

/// Called once when a send started by `academy_client_send_async` ends:
/// `status` is ACADEMY_OK when the exchange accepted the message, else the
/// status `academy_client_send` would have returned, and `error` its text
/// (NULL on success; belongs to the library, valid only during the call). Runs
/// on a library thread: keep it short, and make no blocking libacademy call
/// from it (those return ACADEMY_ERR_INVALID_ARGUMENT there).
/// @ingroup client
pub type academy_send_done_fn = Option<
    unsafe extern "C" fn(user_data: *mut c_void, status: academy_status, error: *const c_char),
>;

/// The caller's `user_data`, passed back untouched to the callback.
struct SendUserData(*mut c_void);
// SAFETY: libacademy never dereferences it; the header says the callback
// runs on a library thread.
unsafe impl Send for SendUserData {}

/// Starts sending a message and returns without waiting for the exchange.
///
/// The message (the JSON of an Academy message) is checked, then sent as given
/// by the library's thread. Use it to keep many messages in flight from one
/// thread: a C program then needs no thread per message. On ACADEMY_OK `done`
/// is called exactly once, on a library thread, with the outcome and
/// `user_data`. academy_client_flush() waits for the pending sends and reports
/// their failures; academy_client_close() waits for them too, so closing
/// loses none. Send order between pending sends is not guaranteed.
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param message_json the message; copied, so the caller may free it at
///        once. Not NULL.
/// @param done called once with the outcome if this returns ACADEMY_OK (see
///        ::academy_send_done_fn), or NULL for no call.
/// @param user_data passed to `done` untouched; the library never reads or
///        frees it. It must stay valid until `done` has been called.
/// @return ACADEMY_OK (the send started); any other status means it was not
///         started and `done` is never called: ACADEMY_ERR_INVALID_ARGUMENT
///         (not a message, NULL arguments, or called from a callback while
///         every slot is taken); ACADEMY_ERR_CLOSED for a closed or freed client, or one made before fork() (in the child).
///
/// Blocks: only while `max_in_flight` (a factory option, 64 by default) sends
/// of this client are pending, until one ends.
///
/// Thread-safety: thread-safe.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_client_send_async(
    client: *mut academy_client,
    message_json: *const c_char,
    done: academy_send_done_fn,
    user_data: *mut c_void,
) -> academy_status {
    boundary(|| {
        let client = client_arg(client)?;
        let message = arg_str(message_json, "message_json")?;
        let user_data = SendUserData(user_data);
        client.send_in_background(message, move |outcome| {
            let user_data = user_data;
            if let Some(done) = done {
                let (status, text) = match outcome {
                    Ok(()) => (academy_status::ACADEMY_OK, None),
                    Err(e) => (e.status.into(), Some(c_text(&e.message))),
                };
                let error = text.as_ref().map_or(std::ptr::null(), |t| t.as_ptr());
                // SAFETY: the caller's callback with the documented signature;
                // the error text lives until it returns.
                unsafe { done(user_data.0, status, error) };
            }
        })
    })
}

/// Waits until every academy_client_send_async() send of this client started
/// before this call has ended.
///
/// Also works after academy_client_close().
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param timeout_s how long to wait, in seconds; < 0: without a limit. Not
///        NaN.
/// @return ACADEMY_OK if every background send since the previous flush
///         succeeded; else the status of the first that failed, with its text
///         (and how many failed) in academy_last_error();
///         ACADEMY_ERR_TIMEOUT when sends were still pending at the deadline
///         (their failures are then reported by the next flush);
///         ACADEMY_ERR_INVALID_ARGUMENT for NULL or a NaN timeout;
///         ACADEMY_ERR_CLOSED for a freed client or one made before fork() (in
///         the child).
///
/// Blocks: up to `timeout_s`.
///
/// Thread-safety: thread-safe.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_client_flush(
    client: *mut academy_client,
    timeout_s: f64,
) -> academy_status {
    boundary(|| {
        let client = client_arg(client)?;
        let timeout = arg_timeout(timeout_s)?;
        block(client.flush(timeout))
    })
}

/// Takes the next message that arrived for this mailbox (and that no
/// academy_client_request() waits for).
///
/// Each message goes to exactly one caller, also with many threads receiving.
/// A receive that times out leaves the listen stream open, so nothing is lost.
/// While the client listens (academy_client_listen()) or is served from a
/// queue (academy_agent_serve_queue()), messages go to the queue instead and
/// this only times out. Answers to this client's own calls that already
/// timed out never come here: they are dropped, as academy-py drops them.
/// Once the mailbox is terminated, requests that were waiting here are
/// dropped too (never handed out) and this returns
/// ACADEMY_ERR_MAILBOX_TERMINATED.
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param timeout_s how long to wait, in seconds; < 0: forever; 0: only what
///        has already arrived. Not NaN.
/// @param[out] out_message_json receives the message JSON, exactly as the
///        exchange delivered it, on success; the caller frees it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_TIMEOUT when nothing came in time
///         (ACADEMY_ERR_CONNECTION instead while the exchange cannot be
///         reached); ACADEMY_ERR_MAILBOX_TERMINATED once the mailbox is
///         terminated; ACADEMY_ERR_BAD_ENTITY_ID if it vanished;
///         ACADEMY_ERR_INVALID_ARGUMENT for NULL arguments or a NaN timeout;
///         ACADEMY_ERR_CLOSED for a closed or freed client, or one made before fork() (in the child) (also when the client is closed or freed during the
///         wait).
///
/// Blocks: up to `timeout_s`.
///
/// Thread-safety: thread-safe.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_client_recv(
    client: *mut academy_client,
    timeout_s: f64,
    out_message_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_message_json, "out_message_json")?;
        let client = client_arg(client)?;
        let timeout = arg_timeout(timeout_s)?;
        let message = block(client.recv(timeout))?;
        write_string(out_message_json, message)
    })
}

/// The status of the mailbox `id_json`, as academy-py's client derives it.
///
/// ACTIVE while its heartbeat is younger than 3 heartbeat intervals, INACTIVE
/// after, MISSING or TERMINATED.
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param id_json the mailbox's id (JSON). Not NULL.
/// @param[out] out receives the status on success. Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument or a
///         bad id; ACADEMY_ERR_CLOSED for a closed or freed client, or one made before fork() (in the child); the transport errors.
///
/// Blocks: for one round trip to the exchange.
///
/// Thread-safety: thread-safe.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_client_status(
    client: *mut academy_client,
    id_json: *const c_char,
    out: *mut academy_mailbox_status,
) -> academy_status {
    boundary(|| {
        check_out(out, "out")?;
        let client = client_arg(client)?;
        let id = id_arg(id_json, "id_json")?;
        let status = block(client.status(&id))?;
        write_out(out, status.into());
        Ok(())
    })
}

/// Terminates the mailbox `id_json`.
///
/// It takes no more messages, and requests still queued in it are answered
/// with an error. Terminating an unknown or terminated mailbox succeeds.
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param id_json the mailbox's id (JSON). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument or a
///         bad id; ACADEMY_ERR_CLOSED for a closed or freed client, or one made before fork() (in the child); the transport errors (ACADEMY_ERR_FORBIDDEN
///         for a mailbox the credentials do not own).
///
/// Blocks: for one round trip to the exchange.
///
/// Thread-safety: thread-safe.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_client_terminate(
    client: *mut academy_client,
    id_json: *const c_char,
) -> academy_status {
    boundary(|| {
        let client = client_arg(client)?;
        let id = id_arg(id_json, "id_json")?;
        block(client.terminate(&id))
    })
}

/// Finds the agents registered with `agent_type` as their class, not
/// terminated.
///
/// Python agents register their MRO without `academy.agent.Agent`.
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param agent_type the class name, e.g. "mymod.Calc". Not NULL.
/// @param allow_subclasses also find agents with `agent_type` anywhere in
///        their MRO.
/// @param[out] out_ids_json receives a JSON array of agent ids on success;
///        the caller frees it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument or
///         invalid UTF-8; ACADEMY_ERR_CLOSED for a closed or freed client, or one made before fork() (in the child); the transport errors.
///
/// Blocks: for one round trip to the exchange.
///
/// Thread-safety: thread-safe.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_client_discover(
    client: *mut academy_client,
    agent_type: *const c_char,
    allow_subclasses: bool,
    out_ids_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_ids_json, "out_ids_json")?;
        let client = client_arg(client)?;
        let agent_type = arg_str(agent_type, "agent_type")?;
        let ids = block(client.discover(agent_type, allow_subclasses))?;
        write_string(
            out_ids_json,
            serde_json::to_string(&ids).map_err(|e| Error::internal(e.to_string()))?,
        )
    })
}

/// Sends a heartbeat for the client's mailbox now.
///
/// The client also sends one every `heartbeat_interval_s` by itself.
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_PROTOCOL against an exchange without
///         heartbeats (academy-py < 0.6); ACADEMY_ERR_INVALID_ARGUMENT for
///         NULL; ACADEMY_ERR_CLOSED for a closed or freed client, or one made before fork() (in the child); the transport errors.
///
/// Blocks: for one round trip to the exchange.
///
/// Thread-safety: thread-safe.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_client_heartbeat(client: *mut academy_client) -> academy_status {
    boundary(|| block(client_arg(client)?.heartbeat()))
}

/// Seconds since the last heartbeat of the mailbox `id_json`, as the exchange
/// reports it.
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param id_json the mailbox's id (JSON). Not NULL.
/// @param[out] out_age_s receives the age in seconds on success, or NaN if
///        the mailbox never sent a heartbeat. Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_BAD_ENTITY_ID;
///         ACADEMY_ERR_MAILBOX_TERMINATED; ACADEMY_ERR_PROTOCOL (an exchange
///         without heartbeats); ACADEMY_ERR_INVALID_ARGUMENT for a NULL
///         argument or a bad id; ACADEMY_ERR_CLOSED for a closed or freed client, or one made before fork() (in the child); the transport errors.
///
/// Blocks: for one round trip to the exchange.
///
/// Thread-safety: thread-safe.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_client_heartbeat_status(
    client: *mut academy_client,
    id_json: *const c_char,
    out_age_s: *mut f64,
) -> academy_status {
    boundary(|| {
        check_out(out_age_s, "out_age_s")?;
        let client = client_arg(client)?;
        let id = id_arg(id_json, "id_json")?;
        let age = block(client.heartbeat_status(&id))?;
        write_out(out_age_s, age.unwrap_or(f64::NAN));
        Ok(())
    })
}

/// The exchange's counters for the agent `id_json`.
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param id_json the agent's id (JSON). Not NULL.
/// @param[out] out_stats_json receives a JSON object (`incoming`,
///        `outgoing`, `completed`, `in_progress`, `queued`) on success;
///        the caller frees it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument or a
///         bad id; ACADEMY_ERR_CLOSED for a closed or freed client, or one made before fork() (in the child); the transport errors (ACADEMY_ERR_PROTOCOL
///         for an exchange without the endpoint).
///
/// Blocks: for one round trip to the exchange.
///
/// Thread-safety: thread-safe.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_client_agent_stats(
    client: *mut academy_client,
    id_json: *const c_char,
    out_stats_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_stats_json, "out_stats_json")?;
        let client = client_arg(client)?;
        let id = id_arg(id_json, "id_json")?;
        let stats = block(client.agent_stats(&id))?;
        write_string(out_stats_json, stats.to_string())
    })
}

/// Shares the mailbox `id_json` with a group.
///
/// For exchanges with authentication; the owner must belong to the group.
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param id_json the mailbox's id (JSON). Not NULL.
/// @param group_id the group's id. Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_FORBIDDEN when the owner is not in the
///         group; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument or a bad
///         id; ACADEMY_ERR_CLOSED for a closed or freed client, or one made before fork() (in the child); the transport errors.
///
/// Blocks: for one round trip to the exchange.
///
/// Thread-safety: thread-safe.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_client_share_mailbox(
    client: *mut academy_client,
    id_json: *const c_char,
    group_id: *const c_char,
) -> academy_status {
    boundary(|| {
        let client = client_arg(client)?;
        let id = id_arg(id_json, "id_json")?;
        let group = arg_str(group_id, "group_id")?;
        block(client.share_mailbox(&id, group))
    })
}

/// The groups the mailbox `id_json` is shared with.
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param id_json the mailbox's id (JSON). Not NULL.
/// @param[out] out_group_ids_json receives a JSON array of strings on
///        success; the caller frees it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument or a
///         bad id; ACADEMY_ERR_CLOSED for a closed or freed client, or one made before fork() (in the child); the transport errors.
///
/// Blocks: for one round trip to the exchange.
///
/// Thread-safety: thread-safe.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_client_shared_groups(
    client: *mut academy_client,
    id_json: *const c_char,
    out_group_ids_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_group_ids_json, "out_group_ids_json")?;
        let client = client_arg(client)?;
        let id = id_arg(id_json, "id_json")?;
        let groups = block(client.shared_groups(&id))?;
        write_string(out_group_ids_json, Value::from(groups).to_string())
    })
}

/// Stops sharing the mailbox `id_json` with a group.
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param id_json the mailbox's id (JSON). Not NULL.
/// @param group_id the group's id. Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument or a
///         bad id; ACADEMY_ERR_CLOSED for a closed or freed client, or one made before fork() (in the child); the transport errors.
///
/// Blocks: for one round trip to the exchange.
///
/// Thread-safety: thread-safe.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_client_unshare_mailbox(
    client: *mut academy_client,
    id_json: *const c_char,
    group_id: *const c_char,
) -> academy_status {
    boundary(|| {
        let client = client_arg(client)?;
        let id = id_arg(id_json, "id_json")?;
        let group = arg_str(group_id, "group_id")?;
        block(client.unshare_mailbox(&id, group))
    })
}

/// Closes the client.
///
/// It waits for its pending academy_client_send_async() sends, stops its
/// listener and heartbeat, ends a running academy_agent_serve() or
/// academy_agent_serve_queue() and a listen (their queues get an
/// ACADEMY_EVENT_ENDED; academy_agent_serve() returns ACADEMY_ERR_CLOSED
/// after the requests in progress were answered with academy-py's
/// ActionCancelledError, sent before the client's connections close; a
/// reply completed with ACADEMY_OK before, also one from an
/// ACADEMY_EVENT_REQUEST event whose response was still going out in the
/// background, reaches the exchange before close returns), and
/// fails calls waiting on it with
/// ACADEMY_ERR_CLOSED (an `_async` call's event then says CLOSED). A user
/// client also terminates its own mailbox (an agent's mailbox stays, so the
/// agent can come back). Later calls on the client return ACADEMY_ERR_CLOSED
/// (except academy_client_mailbox_id(), academy_client_flush() and
/// academy_agent_stop()); closing twice is a no-op. The memory stays until
/// academy_client_free().
///
/// Nothing is lost when an agent's client closes and the agent comes back:
/// close returns only after its listen stream is gone (on our exchange it
/// asks the exchange to end the stream and reads it to its end), and the
/// messages that reached the client and were not taken with
/// academy_client_recv() go back to the agent's mailbox, in order, for its
/// next client: at the head of the queue on our exchange, Redis and hybrid,
/// at the tail on academy-py's HTTP exchange. academy-py's exchange keeps
/// a listen handler waiting after its client has gone, which takes and
/// loses the next message; the client sends its own mailbox one wake-up
/// message for it (a response with a label of its own that receivers
/// drop).
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @return ACADEMY_OK (also for a client closed before);
///         ACADEMY_ERR_INVALID_ARGUMENT for NULL; ACADEMY_ERR_CLOSED for a
///         freed client or one made before fork() (in the child); for a user
///         client, the transport errors of terminating its mailbox, and for
///         an agent client those of putting unread messages back (the
///         client is closed all the same; the text says how many messages).
///
/// Blocks: until the pending sends have ended, until the listen stream has
/// ended (at most `request_timeout_s` and a second), on a serving client
/// until serving has answered its requests in progress (at most
/// `request_timeout_s`), until the replies completed before have gone out
/// (at most `request_timeout_s` and a second), and for one round trip
/// (user clients) or one per unread message put back (agent clients).
///
/// Thread-safety: thread-safe: calls on other threads wake with
/// ACADEMY_ERR_CLOSED.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_client_close(client: *mut academy_client) -> academy_status {
    boundary(|| block(client_arg(client)?.close()))
}

/// Frees a client, closing it first if needed (see academy_client_close()).
///
/// Later calls with the freed handle answer ACADEMY_ERR_CLOSED. In a child
/// process after fork(), a client made by the parent is only forgotten,
/// never touched.
///
/// @param client the client, owned by the caller and given up here; NULL, or
///        a client already freed, is a no-op.
///
/// Blocks: as academy_client_close(), if the client was not closed; from
/// inside the log callback not at all (the close goes on in the
/// background).
///
/// Thread-safety: thread-safe: a thread still inside a call on the client
/// (for example academy_client_recv() or academy_agent_serve()) wakes with
/// ACADEMY_ERR_CLOSED, and the memory goes when the last such call returns.
/// @ingroup client
#[no_mangle]
pub unsafe extern "C" fn academy_client_free(client: *mut academy_client) {
    boundary_or((), || {
        // Out of the registry first: calls made from now on answer CLOSED.
        // Calls still running hold their own reference; closing wakes them.
        if let Some(owned) = handle::take(client) {
            if runtime::may_wait().is_ok() {
                let _ = block(owned.client.close());
            } else if let Ok(handle) = runtime::handle() {
                // From the log callback, which may not wait.
                handle.spawn(async move {
                    let _ = owned.client.close().await;
                });
            }
        }
    })
}

/// Sends a request to `dest_json` and waits for its response.
///
/// The response is matched by tag and label. Many requests may be in flight
/// at once from many threads. The response itself is not interpreted (see
/// academy_message_result()).
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param dest_json the receiver's id (JSON). Not NULL.
/// @param body_json a request body, e.g. `{"kind": "ping-request"}`. Not
///        NULL.
/// @param timeout_s how long to wait for the response, in seconds; < 0:
///        forever. Not NaN.
/// @param[out] out_response_json receives the whole response message on
///        success; the caller frees it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_TIMEOUT; ACADEMY_ERR_INVALID_ARGUMENT for
///         NULL or malformed arguments or a NaN timeout; ACADEMY_ERR_CLOSED for a closed or freed client, or one made before fork() (in the child); the
///         transport errors (ACADEMY_ERR_BAD_ENTITY_ID,
///         ACADEMY_ERR_MAILBOX_TERMINATED for the destination).
///
/// Blocks: up to `timeout_s`.
///
/// Thread-safety: thread-safe.
/// @ingroup calls
#[no_mangle]
pub unsafe extern "C" fn academy_client_request(
    client: *mut academy_client,
    dest_json: *const c_char,
    body_json: *const c_char,
    timeout_s: f64,
    out_response_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_response_json, "out_response_json")?;
        let client = client_arg(client)?;
        let dest = id_arg(dest_json, "dest_json")?;
        let body = parse_json("body_json", arg_str(body_json, "body_json")?)?;
        let timeout = arg_timeout(timeout_s)?;
        let response = block(client.request(dest, body, timeout))?;
        write_string(out_response_json, response.to_json())
    })
}

/// Calls the action `action` of the agent `agent_id_json` and waits for its
/// result.
///
/// The arguments go as JSON when they hold no `py/` form and as pickle when
/// they do (the factory option `request_serialization` can force either;
/// academy_action_request_body_as() forces one per call), so a Python agent
/// receives tuples, bytes, numpy arrays, dataclasses (`py/object`) as such.
/// The result is asked for as pickle and arrives in its JSON form, whatever
/// picklable value the action returned (see the README, section Python values);
/// an exception is asked for as JSON, which keeps its traceback.
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param agent_id_json the agent's id (JSON). Not NULL.
/// @param action the action's name. Not NULL.
/// @param args_json the positional arguments, a JSON array; NULL means `[]`.
/// @param kwargs_json the keyword arguments, a JSON object; NULL means `{}`.
/// @param timeout_s how long to wait for the result, in seconds; < 0:
///        forever. Not NaN.
/// @param[out] out_result_json receives the result's JSON form on success;
///        the caller frees it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_REMOTE when the action raised (the remote
///         traceback is in academy_last_error()), also when the agent refuses
///         the arguments' serialization (a JSON-only Python agent given a
///         pickle says DeserializationMethodProhibitedError);
///         ACADEMY_ERR_TIMEOUT; ACADEMY_ERR_MAILBOX_TERMINATED (the agent is
///         gone); ACADEMY_ERR_PROTOCOL (a result that cannot be read, or an
///         agent that speaks another protocol); ACADEMY_ERR_INVALID_ARGUMENT
///         for NULL or malformed arguments (a `py/` form that cannot be
///         pickled) or a NaN timeout; ACADEMY_ERR_CLOSED for a closed or freed client, or one made before fork() (in the child); the transport errors.
///
/// Blocks: up to `timeout_s`.
///
/// Thread-safety: thread-safe.
/// @ingroup calls
#[no_mangle]
pub unsafe extern "C" fn academy_client_action(
    client: *mut academy_client,
    agent_id_json: *const c_char,
    action: *const c_char,
    args_json: *const c_char,
    kwargs_json: *const c_char,
    timeout_s: f64,
    out_result_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_result_json, "out_result_json")?;
        let client = client_arg(client)?;
        let agent = id_arg(agent_id_json, "agent_id_json")?;
        let action = arg_str(action, "action")?;
        let args = super::messages::args_arg(args_json)?;
        let kwargs = super::messages::kwargs_arg(kwargs_json)?;
        let timeout = arg_timeout(timeout_s)?;
        let result = block(client.action(agent, action, &args, &kwargs, timeout))?;
        write_string(out_result_json, result.to_string())
    })
}

/// Pings the agent `agent_id_json` and waits for its answer.
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param agent_id_json the agent's id (JSON). Not NULL.
/// @param timeout_s how long to wait, in seconds; < 0: forever. Not NaN.
/// @param[out] out_rtt_s receives the round-trip time in seconds on success.
///        Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_TIMEOUT; ACADEMY_ERR_MAILBOX_TERMINATED;
///         ACADEMY_ERR_REMOTE (the agent cancelled the ping);
///         ACADEMY_ERR_INVALID_ARGUMENT for NULL arguments, a bad id or a NaN
///         timeout; ACADEMY_ERR_CLOSED for a closed or freed client, or one made before fork() (in the child); the transport errors.
///
/// Blocks: up to `timeout_s`.
///
/// Thread-safety: thread-safe.
/// @ingroup calls
#[no_mangle]
pub unsafe extern "C" fn academy_client_ping(
    client: *mut academy_client,
    agent_id_json: *const c_char,
    timeout_s: f64,
    out_rtt_s: *mut f64,
) -> academy_status {
    boundary(|| {
        check_out(out_rtt_s, "out_rtt_s")?;
        let client = client_arg(client)?;
        let agent = id_arg(agent_id_json, "agent_id_json")?;
        let timeout = arg_timeout(timeout_s)?;
        let rtt = block(client.ping(agent, timeout))?;
        write_out(out_rtt_s, rtt.as_secs_f64());
        Ok(())
    })
}

/// Asks the agent `agent_id_json` to shut down.
///
/// Sends the request and returns without waiting for the agent (as
/// academy-py's `Handle.shutdown`).
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param agent_id_json the agent's id (JSON). Not NULL.
/// @param terminate -1 lets the agent decide (academy-py agents then
///        terminate their mailbox), 0 keeps the mailbox, 1 terminates it.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for NULL arguments, a bad
///         id or a `terminate` other than -1, 0 or 1; ACADEMY_ERR_CLOSED for a closed or freed client, or one made before fork() (in the child); the
///         transport errors (ACADEMY_ERR_BAD_ENTITY_ID,
///         ACADEMY_ERR_MAILBOX_TERMINATED for the agent).
///
/// Blocks: for one round trip to the exchange.
///
/// Thread-safety: thread-safe.
/// @ingroup calls
#[no_mangle]
pub unsafe extern "C" fn academy_client_shutdown_agent(
    client: *mut academy_client,
    agent_id_json: *const c_char,
    terminate: c_int,
) -> academy_status {
    boundary(|| {
        let client = client_arg(client)?;
        let agent = id_arg(agent_id_json, "agent_id_json")?;
        let terminate = match terminate {
            -1 => None,
            0 => Some(false),
            1 => Some(true),
            other => {
                return Err(Error::invalid(format!(
                    "terminate must be -1, 0 or 1, not {other}"
                )))
            }
        };
        block(client.shutdown_agent(agent, terminate))
    })
}

/// Starts academy_client_request() without waiting.
///
/// Sends the request (`body_json`, a request body) to `dest_json` and returns
/// at once. When the call ends, one ACADEMY_EVENT_CALL event with `token`
/// comes to `queue`: status ACADEMY_OK with the whole response message in
/// `json`, or the failure (ACADEMY_ERR_TIMEOUT after `timeout_s`,
/// ACADEMY_ERR_CLOSED if the client is closed first,
/// ACADEMY_ERR_MAILBOX_TERMINATED, the transport errors) with its text in
/// `error`. The response itself is not interpreted. The request goes out on
/// the library's runtime, on a plain http exchange pipelined on one connection
/// with the client's other background sends. There is no limit on calls in
/// flight but memory (a few hundred bytes each while waiting; no thread or
/// task waits per call).
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param dest_json the receiver's id (JSON); read during the call only. Not
///        NULL.
/// @param body_json a request body; read during the call only. Not NULL.
/// @param timeout_s how long the call waits for its response, in seconds;
///        < 0: never times out. Not NaN.
/// @param queue the queue that gets the event; stays owned by the caller (the
///        library keeps its own reference until the call ends). Not NULL.
/// @param token the program's number for this call, returned untouched in
///        its event.
/// @return ACADEMY_OK (the call started); any other status means it was not
///         started and no event will come: ACADEMY_ERR_INVALID_ARGUMENT (NULL
///         or malformed arguments, a body that is not a request, a NaN
///         timeout); ACADEMY_ERR_CLOSED (a closed or freed client, a freed queue, or a handle made before fork(), in the child).
///
/// Blocks: no.
///
/// Thread-safety: thread-safe.
/// @ingroup calls
#[no_mangle]
pub unsafe extern "C" fn academy_client_request_async(
    client: *mut academy_client,
    dest_json: *const c_char,
    body_json: *const c_char,
    timeout_s: f64,
    queue: *mut academy_queue,
    token: u64,
) -> academy_status {
    boundary(|| {
        let client = client_arg(client)?;
        let dest = id_arg(dest_json, "dest_json")?;
        let body = parse_json("body_json", arg_str(body_json, "body_json")?)?;
        let timeout = arg_timeout(timeout_s)?;
        let queue = queue_arg(queue)?;
        client.request_async(dest, body, timeout, queue.completion(token))
    })
}

/// Starts academy_client_action() without waiting.
///
/// Calls the action `action` of the agent `agent_id_json` (arguments and
/// result written as academy_client_action() writes them) and returns at
/// once. When the call ends, one ACADEMY_EVENT_CALL event with `token` comes
/// to `queue`: status ACADEMY_OK with the result's JSON form in `json`, or
/// the failure with its text in `error`:
/// ACADEMY_ERR_REMOTE when the action raised (the remote traceback),
/// ACADEMY_ERR_TIMEOUT after `timeout_s`, ACADEMY_ERR_CLOSED if the client is
/// closed first, ACADEMY_ERR_MAILBOX_TERMINATED (the agent is gone),
/// ACADEMY_ERR_PROTOCOL (a result that cannot be read), the transport
/// errors. No limit on calls in flight but memory (see
/// academy_client_request_async()).
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param agent_id_json the agent's id (JSON); read during the call only. Not
///        NULL.
/// @param action the action's name. Not NULL.
/// @param args_json the positional arguments, a JSON array; NULL means `[]`.
/// @param kwargs_json the keyword arguments, a JSON object; NULL means `{}`.
/// @param timeout_s how long the call waits for its result, in seconds; < 0:
///        never times out. Not NaN.
/// @param queue the queue that gets the event; stays owned by the caller. Not
///        NULL.
/// @param token the program's number for this call, returned untouched in
///        its event.
/// @return ACADEMY_OK (the call started); any other status means it was not
///         started and no event will come: ACADEMY_ERR_INVALID_ARGUMENT (NULL
///         or malformed arguments, a `py/` form that cannot be pickled, a NaN
///         timeout); ACADEMY_ERR_CLOSED (a closed or freed client, a freed queue, or a handle made before fork(), in the child).
///
/// Blocks: no.
///
/// Thread-safety: thread-safe.
/// @ingroup calls
#[no_mangle]
pub unsafe extern "C" fn academy_client_action_async(
    client: *mut academy_client,
    agent_id_json: *const c_char,
    action: *const c_char,
    args_json: *const c_char,
    kwargs_json: *const c_char,
    timeout_s: f64,
    queue: *mut academy_queue,
    token: u64,
) -> academy_status {
    boundary(|| {
        let client = client_arg(client)?;
        let agent = id_arg(agent_id_json, "agent_id_json")?;
        let action = arg_str(action, "action")?;
        let args = super::messages::args_arg(args_json)?;
        let kwargs = super::messages::kwargs_arg(kwargs_json)?;
        let timeout = arg_timeout(timeout_s)?;
        let queue = queue_arg(queue)?;
        client.action_async(
            agent,
            action,
            &args,
            &kwargs,
            timeout,
            queue.completion(token),
        )
    })
}

/// Starts academy_client_ping() without waiting.
///
/// When the ping ends, one ACADEMY_EVENT_CALL event with `token` comes to
/// `queue`: status ACADEMY_OK with the round trip in `rtt_s` (and `json`
/// NULL), or the failure (ACADEMY_ERR_TIMEOUT after `timeout_s`,
/// ACADEMY_ERR_CLOSED, ACADEMY_ERR_MAILBOX_TERMINATED, ACADEMY_ERR_REMOTE, the
/// transport errors) with its text in `error`.
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param agent_id_json the agent's id (JSON). Not NULL.
/// @param timeout_s how long the ping waits for its answer, in seconds; < 0:
///        never times out. Not NaN.
/// @param queue the queue that gets the event; stays owned by the caller. Not
///        NULL.
/// @param token the program's number for this call, returned untouched in
///        its event.
/// @return ACADEMY_OK (the ping started); any other status means it was not
///         started and no event will come: ACADEMY_ERR_INVALID_ARGUMENT (NULL
///         arguments, a bad id, a NaN timeout); ACADEMY_ERR_CLOSED (a closed or freed client, a freed queue, or a handle made before fork(), in the child).
///
/// Blocks: no.
///
/// Thread-safety: thread-safe.
/// @ingroup calls
#[no_mangle]
pub unsafe extern "C" fn academy_client_ping_async(
    client: *mut academy_client,
    agent_id_json: *const c_char,
    timeout_s: f64,
    queue: *mut academy_queue,
    token: u64,
) -> academy_status {
    boundary(|| {
        let client = client_arg(client)?;
        let agent = id_arg(agent_id_json, "agent_id_json")?;
        let timeout = arg_timeout(timeout_s)?;
        let queue = queue_arg(queue)?;
        client.ping_async(agent, timeout, queue.completion(token))
    })
}

/// Routes the client's incoming messages to `queue` instead of to
/// academy_client_recv().
///
/// Every message that arrives for this client's mailbox and that no call
/// waits for becomes an ACADEMY_EVENT_MESSAGE event with `token` and the
/// message JSON exactly as the exchange delivered it (messages received
/// before and not yet taken go first). It lasts as long as the client: one
/// ACADEMY_EVENT_ENDED event with `token` ends it, with ACADEMY_ERR_CLOSED
/// after academy_client_close(), or ACADEMY_ERR_MAILBOX_TERMINATED /
/// ACADEMY_ERR_BAD_ENTITY_ID when the mailbox goes away. A user client still
/// answers requests itself (as academy-py's does), and responses to calls
/// still go to the calls.
///
/// @param client the client; stays owned by the caller. Not NULL.
/// @param queue the queue that gets the events; stays owned by the caller
///        (the library keeps its own reference while listening). Not NULL.
/// @param token the program's number for this listen, returned untouched in
///        each of its events.
/// @return ACADEMY_OK (listening started); ACADEMY_ERR_INVALID_ARGUMENT for
///         NULL arguments, a client that listens already, or one being served
///         (academy_agent_serve(), academy_agent_serve_queue(): serving takes
///         the messages); ACADEMY_ERR_CLOSED (a closed or freed client, a freed queue, or a handle made before fork(), in the child).
///
/// Blocks: no.
///
/// Thread-safety: thread-safe.
/// @ingroup queue
#[no_mangle]
pub unsafe extern "C" fn academy_client_listen(
    client: *mut academy_client,
    queue: *mut academy_queue,
    token: u64,
) -> academy_status {
    boundary(|| {
        let client = client_arg(client)?;
        let queue = queue_arg(queue)?;
        client.listen(&queue, token)
    })
}
