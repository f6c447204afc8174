//! Factory options: a JSON object whose keys mirror `HttpExchangeFactory`'s
//! arguments; [`exchanges`] has those of the Redis and hybrid factories.
//! Unknown keys and values of the wrong type are errors, caught when the
//! factory is made (a new option never changes the ABI).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

pub mod exchanges;

/// Globus Auth's token endpoint, the default of `globus_token_url`.
pub const DEFAULT_TOKEN_URL: &str = "https://auth.globus.org/v2/oauth2/token";

/// How the client gets authorization headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// Only the `additional_headers` given.
    None,
    /// Globus client credentials from `ACADEMY_GLOBUS_CLIENT_ID` and
    /// `ACADEMY_GLOBUS_CLIENT_SECRET`.
    Globus,
}

/// Options of an HTTP exchange factory, with academy-py's defaults.
#[derive(Debug, Clone)]
pub struct FactoryOptions {
    pub auth_method: AuthMethod,
    pub additional_headers: BTreeMap<String, String>,
    /// `None`: verify for https (academy-py's default).
    pub ssl_verify: Option<bool>,
    /// A PEM file of CA certificates to trust besides the system's.
    pub ca_file: Option<String>,
    /// Bounds one request; never the life of a listen stream.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// How many times a transient failure (429, 5xx, connection) is retried.
    pub retries: u32,
    pub initial_retry_backoff: Duration,
    pub heartbeat_interval: Duration,
    /// How many action requests a served agent runs at once.
    pub max_concurrency: usize,
    /// The OAuth2 token endpoint for `auth_method: "globus"`.
    pub globus_token_url: String,
    /// How long a thread blocked on a call to an agent (request, action,
    /// ping) polls for the exchange's acknowledgement, then for the answer,
    /// before it sleeps; the library's runtime thread, which the round trip
    /// also passes through, polls meanwhile too. A thread that sleeps
    /// leaves its CPU idle, and on virtual machines an idle CPU takes tens
    /// of microseconds to wake; polling keeps the CPUs awake through the
    /// short round trips (MPI libraries poll for the same reason). Costs at
    /// most twice this much CPU time per call in the calling thread, and this
    /// much in the runtime thread (shared by calls made at once). Zero:
    /// sleep at once.
    pub busy_poll: Duration,
    /// How many sends of one client started by `send_in_background`
    /// (`academy_client_send_async`) may wait for the exchange at once; one
    /// more waits for a free slot.
    pub max_in_flight: usize,
}

impl Default for FactoryOptions {
    fn default() -> Self {
        FactoryOptions {
            auth_method: AuthMethod::None,
            additional_headers: BTreeMap::new(),
            ssl_verify: None,
            ca_file: None,
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            retries: 1,
            initial_retry_backoff: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(30),
            max_concurrency: 1,
            globus_token_url: DEFAULT_TOKEN_URL.to_owned(),
            busy_poll: Duration::from_micros(200),
            max_in_flight: 64,
        }
    }
}

/// The JSON shape; every field optional, no other keys allowed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    #[serde(default)]
    auth_method: Option<String>,
    #[serde(default)]
    additional_headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    ssl_verify: Option<bool>,
    #[serde(default)]
    ca_file: Option<String>,
    #[serde(default)]
    request_timeout_s: Option<f64>,
    #[serde(default)]
    connect_timeout_s: Option<f64>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    initial_retry_backoff_s: Option<f64>,
    #[serde(default)]
    heartbeat_interval_s: Option<f64>,
    #[serde(default)]
    max_concurrency: Option<usize>,
    #[serde(default)]
    globus_token_url: Option<String>,
    #[serde(default)]
    busy_poll_us: Option<u64>,
    #[serde(default)]
    max_in_flight: Option<usize>,
}

/// A count option: 1 to 4096, or the default.
fn count(name: &str, value: Option<usize>, default: usize) -> Result<usize> {
    match value.unwrap_or(default) {
        n @ 1..=4096 => Ok(n),
        _ => Err(Error::invalid(format!(
            "option {name} must be between 1 and 4096"
        ))),
    }
}

fn seconds(
    name: &str,
    value: Option<f64>,
    default: Duration,
    allow_zero: bool,
) -> Result<Duration> {
    match value {
        None => Ok(default),
        Some(s) if s.is_finite() && (s > 0.0 || (allow_zero && s == 0.0)) && s < 1e9 => {
            Ok(Duration::from_secs_f64(s))
        }
        Some(s) => Err(Error::invalid(format!(
            "option {name} must be a positive number of seconds, got {s}"
        ))),
    }
}

impl FactoryOptions {
    /// Parses the options JSON (`None` or `"null"` gives the defaults).
    pub fn from_json(text: Option<&str>) -> Result<Self> {
        let text = match text.map(str::trim) {
            None | Some("") | Some("null") => return Ok(Self::default()),
            Some(t) => t,
        };
        let value: serde_json::Value = crate::wire::message::parse_json("options_json", text)?;
        if !value.is_object() {
            return Err(Error::invalid("options_json must be a JSON object"));
        }
        let raw: RawOptions = serde_json::from_value(value)
            .map_err(|e| Error::invalid(format!("bad factory option: {e}")))?;
        let d = Self::default();
        let auth_method = match raw.auth_method.as_deref() {
            None => AuthMethod::None,
            Some("globus") => AuthMethod::Globus,
            Some(other) => {
                return Err(Error::invalid(format!(
                    "option auth_method must be null or \"globus\", got {other:?}"
                )))
            }
        };
        let max_concurrency = count("max_concurrency", raw.max_concurrency, d.max_concurrency)?;
        let max_in_flight = count("max_in_flight", raw.max_in_flight, d.max_in_flight)?;
        let busy_poll = match raw.busy_poll_us {
            None => d.busy_poll,
            Some(us) if us <= 1_000_000 => Duration::from_micros(us),
            Some(us) => {
                return Err(Error::invalid(format!(
                    "option busy_poll_us must be between 0 and 1000000 (one second), got {us}"
                )))
            }
        };
        for (k, v) in raw.additional_headers.iter().flatten() {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(v).is_err()
            {
                return Err(Error::invalid(format!(
                    "additional_headers has an invalid header {k:?}"
                )));
            }
        }
        Ok(FactoryOptions {
            auth_method,
            additional_headers: raw.additional_headers.unwrap_or_default(),
            ssl_verify: raw.ssl_verify,
            ca_file: raw.ca_file,
            request_timeout: seconds(
                "request_timeout_s",
                raw.request_timeout_s,
                d.request_timeout,
                false,
            )?,
            connect_timeout: seconds(
                "connect_timeout_s",
                raw.connect_timeout_s,
                d.connect_timeout,
                false,
            )?,
            retries: raw.retries.unwrap_or(d.retries),
            initial_retry_backoff: seconds(
                "initial_retry_backoff_s",
                raw.initial_retry_backoff_s,
                d.initial_retry_backoff,
                true,
            )?,
            heartbeat_interval: seconds(
                "heartbeat_interval_s",
                raw.heartbeat_interval_s,
                d.heartbeat_interval,
                false,
            )?,
            max_concurrency,
            globus_token_url: raw.globus_token_url.unwrap_or(d.globus_token_url),
            busy_poll,
            max_in_flight,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Status;

    #[test]
    fn defaults_match_academy_py() {
        let o = FactoryOptions::from_json(None).unwrap();
        assert_eq!(o.request_timeout, Duration::from_secs(60));
        assert_eq!(o.retries, 1);
        assert_eq!(o.max_concurrency, 1);
        assert_eq!(o.heartbeat_interval, Duration::from_secs(30));
    }

    #[test]
    fn parses_every_option() {
        let o = FactoryOptions::from_json(Some(
            r#"{"auth_method":null,"additional_headers":{"X-A":"b"},"ssl_verify":false,"ca_file":"/x.pem",
               "request_timeout_s":5,"connect_timeout_s":1.5,"retries":3,"initial_retry_backoff_s":0.1,
               "heartbeat_interval_s":2,"max_concurrency":8,"busy_poll_us":0,
               "max_in_flight":7}"#,
        ))
        .unwrap();
        assert_eq!(o.additional_headers["X-A"], "b");
        assert_eq!(o.ssl_verify, Some(false));
        assert_eq!(o.connect_timeout, Duration::from_millis(1500));
        assert_eq!(o.retries, 3);
        assert_eq!(o.max_concurrency, 8);
        assert_eq!(o.busy_poll, Duration::ZERO);
        assert_eq!(o.max_in_flight, 7);
    }

    #[test]
    fn rejects_bad_options() {
        for bad in [
            r#"{"nope":1}"#,
            r#"{"retries":"3"}"#,
            r#"{"request_timeout_s":-1}"#,
            r#"{"auth_method":"kerberos"}"#,
            r#"{"max_concurrency":0}"#,
            r#"{"busy_poll_us":-1}"#,
            r#"{"busy_poll_us":2000000}"#,
            r#"{"max_in_flight":0}"#,
            r#"{"max_in_flight":5000}"#,
            r#"{"additional_headers":{"bad header":"x"}}"#,
            "[1,2]",
            "{",
        ] {
            let err = FactoryOptions::from_json(Some(bad)).unwrap_err();
            assert_eq!(err.status, Status::InvalidArgument, "{bad}");
            assert!(!err.message.is_empty());
        }
    }
}
