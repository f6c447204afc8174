//! `academy_factory`: the connection settings of one exchange.

use std::ffi::c_char;

use super::{academy_status, arg_opt_str, arg_str, boundary, boundary_void, check_out, write_out};
use crate::client::Factory;
use crate::options::FactoryOptions;

/// An exchange to make clients of (opaque).
pub struct academy_factory {
    pub(crate) factory: Factory,
}

/// Makes a factory for the HTTP exchange at `url` (`http://host:port` or
/// `https://...`). `options_json` (nullable) is a JSON object with any of
/// `auth_method` (null | "globus"), `additional_headers` (object of
/// strings; not Content-Length, Transfer-Encoding, Host, Connection or
/// Content-Type, which the library writes itself), `ssl_verify` (null =
/// verify for https), `ca_file` (PEM path; trusted besides the system's
/// roots, `SSL_CERT_FILE` / `SSL_CERT_DIR` and the bundled Mozilla roots),
/// `request_timeout_s` (60), `connect_timeout_s` (30, per address tried),
/// `retries` (1: transient failures, 429 and 5xx are tried again after a
/// random wait of up to `initial_retry_backoff_s` doubled each time, at most
/// 30 s, or after the server's `Retry-After` if that is longer, up to 120
/// s), `initial_retry_backoff_s` (1.0), `heartbeat_interval_s` (30),
/// `max_concurrency` (1, for serving), `busy_poll_us` (200: how long a
/// thread blocked on a call to an agent polls for the acknowledgement and
/// then for the answer before it sleeps, while the library's runtime
/// thread polls too, which keeps the CPUs from idling through short round
/// trips; costs at most twice that much CPU time per call in the caller and
/// that much in the runtime thread; 0 sleeps at once), `max_in_flight` (64:
/// how many `academy_client_send_async` sends of a client may be pending),
/// `resend_unacknowledged` (false: a message whose request was written but
/// never answered is sent again only to an exchange that drops repeated
/// messages, as libacademy's does; otherwise the send fails with
/// ACADEMY_ERR_CONNECTION or ACADEMY_ERR_TIMEOUT saying that the message may
/// or may not have been delivered. true sends it again to any exchange,
/// which can deliver it twice to academy-py's) and
/// `globus_token_url` (Globus Auth's;
/// for `auth_method: "globus"`, which reads `ACADEMY_GLOBUS_CLIENT_ID` and
/// `ACADEMY_GLOBUS_CLIENT_SECRET`; tokens are replaced before they expire).
/// The options are copied. Does not contact
/// the exchange and does not block. Proxies come from `HTTPS_PROXY`,
/// `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`, as for the Python client.
///
/// On success `*out` gets a factory that the caller frees with
/// `academy_factory_free` (clients made from it stay valid after that).
/// Returns ACADEMY_ERR_INVALID_ARGUMENT for a NULL `url` or `out`, a bad
/// URL, malformed options JSON, unknown keys, values of the wrong type or
/// a header that `additional_headers` may not set.
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
        write_out(out, Box::into_raw(Box::new(academy_factory { factory })));
        Ok(())
    })
}

/// Frees a factory. Freeing NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn academy_factory_free(factory: *mut academy_factory) {
    boundary_void(|| {
        if !factory.is_null() {
            drop(Box::from_raw(factory));
        }
    })
}
