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
/// `https://...`). `options_json` (nullable) is a JSON object with any of
/// `auth_method` (null | "globus"), `additional_headers` (object of
/// strings), `ssl_verify` (null = verify for https), `ca_file` (PEM path),
/// `request_timeout_s` (60), `connect_timeout_s` (30), `retries` (1),
/// `initial_retry_backoff_s` (1.0), `heartbeat_interval_s` (30),
/// `max_concurrency` (1, for serving), `busy_poll_us` (200: how long a
/// thread blocked on a call to an agent polls for the acknowledgement and
/// then for the answer before it sleeps, while the library's runtime
/// thread polls too, which keeps the CPUs from idling through short round
/// trips; costs at most twice that much CPU time per call in the caller and
/// that much in the runtime thread; 0 sleeps at once), `max_in_flight` (64:
/// how many `academy_client_send_async` sends of a client may be pending)
/// and
/// `globus_token_url` (Globus Auth's;
/// for `auth_method: "globus"`, which reads `ACADEMY_GLOBUS_CLIENT_ID` and
/// `ACADEMY_GLOBUS_CLIENT_SECRET`). The options are copied. Does not contact
/// the exchange and does not block. Proxies come from `HTTPS_PROXY`,
/// `HTTP_PROXY` and `NO_PROXY`, as for the Python client.
///
/// On success `*out` gets a factory that the caller frees with
/// `academy_factory_free` (clients made from it stay valid after that).
/// Returns ACADEMY_ERR_INVALID_ARGUMENT for a NULL `url` or `out`, a bad
/// URL, malformed options JSON, unknown keys or values of the wrong type.
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
