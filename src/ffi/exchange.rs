//! `academy_exchange`: the embedded exchange server.

use std::ffi::c_char;

use super::client::block;
use super::handle::{self, Handle, Registry};
use super::{
    academy_status, arg_opt_str, boundary, boundary_or, check_out, write_out, write_string,
};
use crate::runtime;
use crate::server::{ExchangeServer, ServerConfig};

/// An exchange server running inside this process (opaque).
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

/// Starts an exchange server in this process, wire-compatible with
/// academy-py 1.0's `python -m academy.exchange.cloud`, on the library's
/// runtime. `options_json` (nullable) is a JSON object with the keys of the
/// `academy-exchange` TOML file (README, "Running the exchange as a
/// service"), except `logger`: `host` ("127.0.0.1"), `port` (0 = any free
/// port), `listen_timeout_s`, `message_size_limit_kb`, `certfile`,
/// `keyfile`, `auth`, `metrics`, `metrics_port`, `max_connections`,
/// `body_read_timeout_s` and `backend`: absent for mailboxes in memory, or
/// `{"kind": "redis", "hostname": "localhost", "port": 6379}` (the keys of
/// academy-py's `[backend]` TOML table) to keep them in Redis, shared with
/// every other exchange process on that Redis. Returns once the server
/// listens. On success `*out` gets the server: stop it with
/// `academy_exchange_stop`, free it with `academy_exchange_free`. Returns
/// INVALID_ARGUMENT for bad options and CONNECTION when the address cannot
/// be bound or Redis cannot be reached. Its log lines go where the
/// library's do (`academy_set_log_callback`, `ACADEMY_LOG`).
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

/// The URL clients use to reach the server, e.g. "http://127.0.0.1:5463"
/// (free with `academy_string_free`). Does not block.
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

/// Stops the server: it stops accepting connections and ends open listen
/// streams. Blocks until it has stopped. Stopping twice is a no-op.
#[no_mangle]
pub unsafe extern "C" fn academy_exchange_stop(exchange: *mut academy_exchange) -> academy_status {
    boundary(|| {
        let exchange = handle::get(exchange, "exchange")?;
        block(exchange.server.stop())
    })
}

/// Stops (if needed) and frees the server. Freeing NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn academy_exchange_free(exchange: *mut academy_exchange) {
    boundary_or((), || {
        if let Some(owned) = handle::take(exchange) {
            let _ = block(owned.server.stop());
        }
    })
}
