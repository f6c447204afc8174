//! `academy_factory`: the connection settings of one exchange (HTTP,
//! Redis or hybrid).

use std::ffi::c_char;

use super::handle::{self, Handle, Registry};
use super::{academy_status, arg_opt_str, arg_str, boundary, boundary_or, check_out, write_out};
use crate::client::Factory;
use crate::options::exchanges::{HybridOptions, RedisOptions};
use crate::options::FactoryOptions;

/// An exchange to make clients of (opaque): the connection settings of one
/// HTTP, Redis or hybrid exchange. Thread-safe: any number of threads may make
/// clients of one factory at once.
/// @ingroup factory
pub struct academy_factory {
    pub(crate) factory: Factory,
}

static FACTORIES: Registry<academy_factory> = Registry::new();

impl Handle for academy_factory {
    const NAME: &'static str = "factory";
    const TAG: usize = 1;
    fn registry() -> &'static Registry<Self> {
        &FACTORIES
    }
}

/// The factory behind a handle (see [`handle::get`]).
pub(crate) fn factory_arg(factory: *const academy_factory) -> crate::error::Result<Factory> {
    Ok(handle::get(factory, "factory")?.factory.clone())
}

/// Makes a factory for the HTTP exchange at `url`.
///
/// The factory is academy-py's `HttpExchangeFactory`: `url` is
/// `http://host:port` or `https://…`. Proxies come from `HTTPS_PROXY`,
/// `HTTP_PROXY` and `NO_PROXY`, as for the Python client. The exchange is not
/// contacted: the first client does that.
///
/// A URL with `user:password@` (percent-encoded) sends them with every
/// request as `Authorization: Basic`, byte for byte as academy-py (aiohttp)
/// does, and never in the URL itself. An `Authorization` header in
/// `additional_headers`, or `auth_method: "globus"`, wins over it (academy-py
/// refuses those combinations: every request raises ValueError). Error texts
/// and log lines show URLs without their `user:password@`.
///
/// `options_json` is a JSON object with any of `auth_method`,
/// `additional_headers`, `ssl_verify`, `ca_file`, `request_timeout_s`,
/// `connect_timeout_s`, `retries`, `initial_retry_backoff_s`,
/// `heartbeat_interval_s`, `max_concurrency`, `globus_token_url`,
/// `busy_poll_us`, `max_in_flight`, `resend_unacknowledged`,
/// `allowed_deserializers` (the serializations a served agent reads,
/// `["json", "pickle"]`) and `request_serialization` (how calls write
/// arguments: `"auto"`, `"json"` or `"pickle"`); the README's "Factory
/// options" table says what each does and its default.
///
/// @param url the exchange's URL; read during the call only. Not NULL.
/// @param options_json the options, or NULL for the defaults; copied, so the
///        caller may free it on return.
/// @param[out] out receives the factory on success (untouched on failure);
///        the caller frees it with academy_factory_free(). Clients made from
///        it stay valid after that. Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL `url` or
///         `out`, a bad URL, malformed options, an unknown option or a value
///         of the wrong type, a header that `additional_headers` may not set,
///         an unreadable `ca_file`, or `auth_method: "globus"` without the
///         client credentials in the environment.
///
/// Blocks: no (no network).
///
/// Thread-safety: thread-safe.
/// @ingroup factory
#[no_mangle]
pub unsafe extern "C" fn academy_http_factory_new(
    url: *const c_char,
    options_json: *const c_char,
    out: *mut *mut academy_factory,
) -> academy_status {
    boundary(|| {
        check_out(out, "out")?;
        let url = arg_str(url, "url")?;
        let options = FactoryOptions::from_json(arg_opt_str(options_json, "options_json")?)?;
        let factory = Factory::new(url, options)?;
        write_out(out, handle::new_handle(academy_factory { factory }));
        Ok(())
    })
}

/// Makes a factory for academy-py's Redis exchange (`RedisExchangeFactory`).
///
/// Clients keep their mailboxes in Redis themselves, with no exchange server,
/// in academy-py's key layout, so C and Python clients of one Redis talk to
/// each other. Registrations carry `"exchange_type": "redis"`. Redis is not
/// contacted here: the first client does (ACADEMY_ERR_CONNECTION, with the
/// address in academy_last_error(), when Redis cannot be reached). Each
/// listening client holds one Redis connection of its own besides the
/// factory's shared one. Use a Redis database of its own: the HTTP exchange's
/// Redis backend writes the same keys with other values (academy-py's too).
///
/// `options_json` is a JSON object with `hostname` ("localhost"), `port`
/// (6379) and `kwargs` (an object with any of `db` (0), `username` and
/// `password`, as academy-py passes to redis-py), and any of the common client
/// options `request_timeout_s` (60: bounds one Redis command),
/// `connect_timeout_s` (30), `retries` (1: how many times a command that
/// could not reach Redis is tried again, after `initial_retry_backoff_s`
/// (1.0), doubling), `heartbeat_interval_s` (30), `max_concurrency` (1),
/// `max_in_flight` (64), `busy_poll_us` (200), `allowed_deserializers`
/// (`["json", "pickle"]`) and `request_serialization` (`"auto"`), as for
/// academy_http_factory_new(). The HTTP-only options (`auth_method`,
/// `additional_headers`, `ssl_verify`, `ca_file`, `globus_token_url`) and
/// unknown keys are errors.
///
/// @param options_json the options, or NULL for the defaults; copied, so the
///        caller may free it on return.
/// @param[out] out receives the factory on success (untouched on failure);
///        the caller frees it with academy_factory_free(). Clients made from
///        it stay valid after that. Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL `out`,
///         malformed options JSON, unknown keys, HTTP-only options or values
///         of the wrong type.
///
/// Blocks: no (Redis is not contacted).
///
/// Thread-safety: thread-safe.
/// @ingroup factory
#[no_mangle]
pub unsafe extern "C" fn academy_redis_factory_new(
    options_json: *const c_char,
    out: *mut *mut academy_factory,
) -> academy_status {
    boundary(|| {
        check_out(out, "out")?;
        let options = RedisOptions::from_json(arg_opt_str(options_json, "options_json")?)?;
        let factory = Factory::redis(options)?;
        write_out(out, handle::new_handle(academy_factory { factory }));
        Ok(())
    })
}

/// Makes a factory for academy-py's hybrid exchange (`HybridExchangeFactory`).
///
/// Mailbox state lives in Redis; messages go straight from peer to peer over
/// TCP, with each mailbox's Redis queue as the fallback when a peer cannot be
/// reached. Registrations carry `"exchange_type": "hybrid"`. Every client
/// made from it listens on a TCP port of its own for its peers and advertises
/// it in Redis until it is closed. Connections to peers are shared by the
/// factory's clients. Redis is not contacted here: the first client does.
///
/// `options_json` is a JSON object with `redis_host` ("localhost"),
/// `redis_port` (6379), `redis_kwargs` (as `kwargs` of
/// `academy_redis_factory_new`), `interface` (null: advertise the IPv4
/// address of this host's name, as academy-py; or a network interface name
/// such as "eth0", or an IPv4 address), `namespace` ("default"; null: a
/// random one; the prefix of every key, which must match the Python peers')
/// and `ports` (null: any free port; or an array of the ports clients may
/// listen on, one each while it is open), plus the common client options
/// listed for `academy_redis_factory_new` (`connect_timeout_s` also bounds a
/// connect to a peer, at most 5 s). Unknown keys are errors.
///
/// @param options_json the options, or NULL for the defaults; copied, so the
///        caller may free it on return.
/// @param[out] out receives the factory on success (untouched on failure);
///        the caller frees it with academy_factory_free(). Clients made from
///        it stay valid after that. Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL `out`,
///         malformed options JSON, unknown keys, HTTP-only options, values of
///         the wrong type, or an `interface` that has no IPv4 address.
///
/// Blocks: no (Redis is not contacted).
///
/// Thread-safety: thread-safe.
/// @ingroup factory
#[no_mangle]
pub unsafe extern "C" fn academy_hybrid_factory_new(
    options_json: *const c_char,
    out: *mut *mut academy_factory,
) -> academy_status {
    boundary(|| {
        check_out(out, "out")?;
        let options = HybridOptions::from_json(arg_opt_str(options_json, "options_json")?)?;
        let factory = Factory::hybrid(options)?;
        write_out(out, handle::new_handle(academy_factory { factory }));
        Ok(())
    })
}

/// Frees a factory.
///
/// Clients made from it stay valid and keep working. Later calls with the
/// freed handle answer ACADEMY_ERR_CLOSED. In a child process after fork(), a
/// factory made by the parent is only forgotten, never touched.
///
/// @param factory the factory, owned by the caller and given up here; NULL,
///        or a factory already freed, is a no-op.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe; a call using the factory on another thread at
/// the same time either finishes with it or answers ACADEMY_ERR_CLOSED.
/// @ingroup factory
#[no_mangle]
pub unsafe extern "C" fn academy_factory_free(factory: *mut academy_factory) {
    boundary_or((), || drop(handle::take(factory)))
}
