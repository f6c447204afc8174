//! `academy_exchange`: the embedded exchange server.

use std::ffi::c_char;

use super::client::block;
use super::handle::{self, Handle, Registry};
use super::{
    academy_status, arg_opt_str, boundary, boundary_or, check_out, write_out, write_string,
};
use crate::runtime;
use crate::server::{ExchangeServer, ServerConfig};

/// An exchange server running inside this process (opaque). Thread-safe.
/// @ingroup exchange
pub struct academy_exchange {
    server: ExchangeServer,
}

static EXCHANGES: Registry<academy_exchange> = Registry::new();

impl Handle for academy_exchange {
    const NAME: &'static str = "exchange";
    const TAG: usize = 4;
    fn registry() -> &'static Registry<Self> {
        &EXCHANGES
    }
}

/// Starts an exchange server in this process.
///
/// The server is wire-compatible with academy-py 1.0's
/// `python -m academy.exchange.cloud` and runs on the library's runtime
/// threads. `options_json` is a JSON object with the keys of the
/// `academy-exchange` TOML file (README, "Running the exchange as a
/// service"), except `logger`: `host` ("127.0.0.1"), `port` (0 = any free
/// port), `listen_timeout_s`, `message_size_limit_kb`, `certfile`,
/// `keyfile`, `auth`, `metrics`, `metrics_port`, `max_connections`,
/// `body_read_timeout_s` and `backend`: absent for mailboxes in memory, or
/// `{"kind": "redis", "hostname": "localhost", "port": 6379}` (the keys of
/// academy-py's `[backend]` TOML table) to keep them in Redis, shared with
/// every other exchange process on that Redis, or
/// `{"kind": "redis-cluster", "nodes": ["host:port", ...]}` to keep them in
/// a Redis Cluster (README, "Scaling out: past one Redis"). Its log lines
/// go where the library's do (academy_set_log_callback(), `ACADEMY_LOG`).
///
/// @param options_json the options, or NULL for the defaults; read during the
///        call only.
/// @param[out] out receives the running server on success (untouched on
///        failure); the caller stops it with academy_exchange_stop() and
///        frees it with academy_exchange_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL `out` or bad
///         options; ACADEMY_ERR_CONNECTION when the address cannot be bound
///         or Redis (or every seed node of the cluster) cannot be reached.
///
/// Blocks: until the server listens (with a Redis backend, until Redis
/// answered).
///
/// Thread-safety: thread-safe.
/// @ingroup exchange
#[no_mangle]
pub unsafe extern "C" fn academy_exchange_spawn(
    options_json: *const c_char,
    out: *mut *mut academy_exchange,
) -> academy_status {
    boundary(|| {
        check_out(out, "out")?;
        let config = ServerConfig::from_json_options(arg_opt_str(options_json, "options_json")?)?;
        let handle = runtime::server_handle()?;
        let server = block(async move {
            handle
                .spawn(ExchangeServer::start(config))
                .await
                .map_err(join_error)?
        })?;
        write_out(out, handle::new_handle(academy_exchange { server }));
        Ok(())
    })
}

fn join_error(e: tokio::task::JoinError) -> crate::error::Error {
    crate::error::Error::internal(format!("the exchange task failed: {e}"))
}

/// The URL clients use to reach the server, e.g. "http://127.0.0.1:5463".
///
/// @param exchange the server; only read. Not NULL.
/// @param[out] out_url receives the URL on success; the caller frees it with
///        academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument;
///         ACADEMY_ERR_CLOSED for a freed server or one made before fork() (in
///         the child).
///
/// Blocks: no.
///
/// Thread-safety: thread-safe.
/// @ingroup exchange
#[no_mangle]
pub unsafe extern "C" fn academy_exchange_url(
    exchange: *const academy_exchange,
    out_url: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_url, "out_url")?;
        let exchange = handle::get(exchange, "exchange")?;
        write_string(out_url, exchange.server.url())
    })
}

/// Stops the server.
///
/// It stops accepting connections and ends open listen streams. Stopping
/// twice is a no-op. The handle stays valid (academy_exchange_url() still
/// answers) until academy_exchange_free().
///
/// @param exchange the server; stays owned by the caller. Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for NULL;
///         ACADEMY_ERR_CLOSED for a freed server or one made before fork() (in
///         the child).
///
/// Blocks: until the server has stopped.
///
/// Thread-safety: thread-safe.
/// @ingroup exchange
#[no_mangle]
pub unsafe extern "C" fn academy_exchange_stop(exchange: *mut academy_exchange) -> academy_status {
    boundary(|| {
        let exchange = handle::get(exchange, "exchange")?;
        block(exchange.server.stop())
    })
}

/// Stops the server if needed, then frees it.
///
/// Later calls with the freed handle answer ACADEMY_ERR_CLOSED. In a child
/// process after fork(), a server made by the parent is only forgotten,
/// never touched.
///
/// @param exchange the server, owned by the caller and given up here; NULL,
///        or a server already freed, is a no-op.
///
/// Blocks: until the server has stopped; from inside the log callback not
/// at all (the server stops in the background).
///
/// Thread-safety: thread-safe.
/// @ingroup exchange
#[no_mangle]
pub unsafe extern "C" fn academy_exchange_free(exchange: *mut academy_exchange) {
    boundary_or((), || {
        if let Some(owned) = handle::take(exchange) {
            if runtime::may_wait().is_ok() {
                let _ = block(owned.server.stop());
            } else if let Ok(handle) = runtime::handle() {
                // From the log callback, which may not wait.
                handle.spawn(async move {
                    let _ = owned.server.stop().await;
                });
            }
        }
    })
}
