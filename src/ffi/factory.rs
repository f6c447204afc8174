//! `academy_factory`: the connection settings of one exchange.

use std::ffi::c_char;

use super::handle::{self, Handle, Registry};
use super::{academy_status, arg_opt_str, arg_str, boundary, boundary_or, check_out, write_out};
use crate::client::Factory;
use crate::options::FactoryOptions;

/// An exchange to make clients of (opaque).
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

/// Makes a factory for the HTTP exchange at `url` (`http://host:port` or
/// `https://…`, academy-py's `HttpExchangeFactory`). Does not contact the
/// exchange. Proxies come from `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`,
/// as for the Python client.
///
/// `options_json` (nullable: the defaults) is a JSON object with any of
/// `auth_method`, `additional_headers`, `ssl_verify`, `ca_file`,
/// `request_timeout_s`, `connect_timeout_s`, `retries`,
/// `initial_retry_backoff_s`, `heartbeat_interval_s`, `max_concurrency`,
/// `globus_token_url`, `busy_poll_us`, `max_in_flight` and
/// `resend_unacknowledged`; the README's
/// "Factory options" table says what each does and its default. The
/// options are copied.
///
/// @param url the exchange's URL.
/// @param options_json the options, or NULL.
/// @param out receives the factory on success; free it with
///        academy_factory_free (clients made from it stay valid after).
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL `url` or
///         `out`, a bad URL, malformed options, an unknown option or a
///         value of the wrong type, a header that `additional_headers`
///         may not set, an unreadable `ca_file`, or
///         `auth_method: "globus"` without the client credentials in the
///         environment.
///
/// Does not block. Thread-safe.
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

/// Frees a factory. Freeing NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn academy_factory_free(factory: *mut academy_factory) {
    boundary_or((), || drop(handle::take(factory)))
}
