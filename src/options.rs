//! Factory options: a JSON object whose keys mirror `HttpExchangeFactory`'s
//! arguments; [`exchanges`] has those of the Redis and hybrid factories.
//! Unknown keys and values of the wrong type are errors, caught
//! when the factory is made (a new option never changes the ABI).
//!
//! [`OPTIONS`] is the one table of them, as librdkafka's property table is:
//! the README's options table is made from it, and tests check that the
//! parser, the header and the Go binding agree with it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::redact;
use crate::wire::payload::{Accepted, RequestSerialization, Serialization};

/// Headers that `additional_headers` may not set: the library writes them
/// itself (they frame or route the request; a second copy would make it
/// mean one thing to the exchange and another to a proxy in between).
pub const RESERVED_HEADERS: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "content-type",
];

pub mod exchanges;

/// Globus Auth's token endpoint, the default of `globus_token_url`.
pub const DEFAULT_TOKEN_URL: &str = "https://auth.globus.org/v2/oauth2/token";

/// One factory option, as the docs show it.
#[derive(Debug, Clone, Copy)]
pub struct OptionDoc {
    /// The JSON key.
    pub name: &'static str,
    /// The JSON type it takes.
    pub kind: &'static str,
    /// Its default, as JSON.
    pub default: &'static str,
    /// The factories it applies to.
    pub factories: &'static [&'static str],
    /// What it does.
    pub doc: &'static str,
}

const HTTP: &[&str] = &["http"];
const ALL: &[&str] = &["http", "redis", "hybrid"];
const REDIS: &[&str] = &["redis"];
const HYBRID: &[&str] = &["hybrid"];

/// Every factory option.
pub const OPTIONS: &[OptionDoc] = &[
    OptionDoc {
        name: "auth_method",
        kind: "null or \"globus\"",
        default: "null",
        factories: HTTP,
        doc: "`\"globus\"`: bearer tokens from Globus Auth with the client credentials in `ACADEMY_GLOBUS_CLIENT_ID` and `ACADEMY_GLOBUS_CLIENT_SECRET` (unless `additional_headers` has an Authorization header).",
    },
    OptionDoc {
        name: "additional_headers",
        kind: "object of strings",
        default: "{}",
        factories: HTTP,
        doc: "Headers sent with every request; not Content-Length, Transfer-Encoding, Host, Connection or Content-Type, which the library writes itself.",
    },
    OptionDoc {
        name: "ssl_verify",
        kind: "boolean or null",
        default: "null",
        factories: HTTP,
        doc: "Whether to verify the exchange's TLS certificate; null verifies for https.",
    },
    OptionDoc {
        name: "ca_file",
        kind: "string (a path)",
        default: "null",
        factories: HTTP,
        doc: "A PEM file of CA certificates to trust besides the system's roots, `SSL_CERT_FILE` / `SSL_CERT_DIR` and the bundled Mozilla roots.",
    },
    OptionDoc {
        name: "request_timeout_s",
        kind: "number of seconds",
        default: "60",
        factories: ALL,
        doc: "Bounds one request (never the life of a listen stream).",
    },
    OptionDoc {
        name: "connect_timeout_s",
        kind: "number of seconds",
        default: "30",
        factories: ALL,
        doc: "Bounds making a connection, per address tried.",
    },
    OptionDoc {
        name: "retries",
        kind: "integer",
        default: "1",
        factories: ALL,
        doc: "How many times a transient failure (429, 5xx, a lost connection) is tried again, after a random wait (full jitter) or the server's `Retry-After` if longer, up to 120 s.",
    },
    OptionDoc {
        name: "initial_retry_backoff_s",
        kind: "number of seconds",
        default: "1.0",
        factories: ALL,
        doc: "The bound of the random wait before the first retry; it doubles for each further one, up to 30 s.",
    },
    OptionDoc {
        name: "heartbeat_interval_s",
        kind: "number of seconds",
        default: "30",
        factories: ALL,
        doc: "How often clients mark their mailbox alive; peers see a mailbox INACTIVE after three intervals without.",
    },
    OptionDoc {
        name: "max_concurrency",
        kind: "integer, 1 to 4096",
        default: "1",
        factories: ALL,
        doc: "How many action requests a served agent handles at once.",
    },
    OptionDoc {
        name: "globus_token_url",
        kind: "string (a URL)",
        default: "Globus Auth's",
        factories: HTTP,
        doc: "The OAuth2 token endpoint for `auth_method: \"globus\"`.",
    },
    OptionDoc {
        name: "busy_poll_us",
        kind: "integer, 0 to 1000000",
        default: "200",
        factories: ALL,
        doc: "How long a thread blocked on a call to an agent polls for the answer before it sleeps, while the library's thread polls too (keeps the CPUs awake through short round trips; costs at most twice this much CPU per call); 0 sleeps at once.",
    },
    OptionDoc {
        name: "max_in_flight",
        kind: "integer, 1 to 4096",
        default: "64",
        factories: ALL,
        doc: "How many `academy_client_send_async` sends of a client may be pending; one more waits for a free slot.",
    },
    OptionDoc {
        name: "resend_unacknowledged",
        kind: "boolean",
        default: "false",
        factories: HTTP,
        doc: "Whether a message whose request was written but never answered is sent again to any exchange. false: only to one that drops repeated messages (libacademy's says so with `academy-dedup`); otherwise the send fails with CONNECTION or TIMEOUT saying it may or may not have been delivered. true can deliver it twice through academy-py's exchange.",
    },
    OptionDoc {
        name: "allowed_deserializers",
        kind: "array of \"json\", \"pickle\"",
        default: "[\"json\", \"pickle\"]",
        factories: ALL,
        doc: "The serializations a served agent reads action requests in (academy-py's `allowed_deserializers`); a request in another is answered with `DeserializationMethodProhibitedError`. Pickles are read as data, never run.",
    },
    OptionDoc {
        name: "request_serialization",
        kind: "\"auto\", \"json\" or \"pickle\"",
        default: "\"auto\"",
        factories: ALL,
        doc: "How calls write action arguments: `\"auto\"` as JSON unless they hold a `py/` form (a tuple, bytes, an array, ...), then as pickle; `\"json\"` always (a `py/` form arrives as a dict); `\"pickle\"` always. Results are asked for as pickle and exceptions as JSON either way.",
    },
    OptionDoc {
        name: "hostname",
        kind: "string",
        default: "\"localhost\"",
        factories: REDIS,
        doc: "The Redis server's host.",
    },
    OptionDoc {
        name: "port",
        kind: "integer, 1 to 65535",
        default: "6379",
        factories: REDIS,
        doc: "The Redis server's port.",
    },
    OptionDoc {
        name: "kwargs",
        kind: "object",
        default: "{}",
        factories: REDIS,
        doc: "Redis connection arguments as academy-py passes them to redis-py: any of `db` (0), `username` and `password`.",
    },
    OptionDoc {
        name: "redis_host",
        kind: "string",
        default: "\"localhost\"",
        factories: HYBRID,
        doc: "The Redis server's host.",
    },
    OptionDoc {
        name: "redis_port",
        kind: "integer, 1 to 65535",
        default: "6379",
        factories: HYBRID,
        doc: "The Redis server's port.",
    },
    OptionDoc {
        name: "redis_kwargs",
        kind: "object",
        default: "{}",
        factories: HYBRID,
        doc: "As `kwargs` of the Redis factory.",
    },
    OptionDoc {
        name: "interface",
        kind: "string or null",
        default: "null",
        factories: HYBRID,
        doc: "The network interface (e.g. \"eth0\") or IPv4 address whose address clients advertise to their peers; null: the address of this host's name, as academy-py.",
    },
    OptionDoc {
        name: "namespace",
        kind: "string or null",
        default: "\"default\"",
        factories: HYBRID,
        doc: "The prefix of every Redis key; it must match the Python peers'. null: a random one.",
    },
    OptionDoc {
        name: "ports",
        kind: "array of ports or null",
        default: "null",
        factories: HYBRID,
        doc: "The TCP ports clients may listen on for their peers, one each while it is open; null: any free port.",
    },
];

/// The options table in Markdown (the README's, made by the tests).
pub fn options_markdown() -> String {
    let mut out = String::from(
        "| option | type | default | factories | what it does |\n|---|---|---|---|---|\n",
    );
    for o in OPTIONS {
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} | {} |\n",
            o.name,
            o.kind,
            o.default,
            o.factories.join(", "),
            o.doc
        ));
    }
    out
}

/// How the client gets authorization headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// Only the `additional_headers` given.
    None,
    /// Globus client credentials from `ACADEMY_GLOBUS_CLIENT_ID` and
    /// `ACADEMY_GLOBUS_CLIENT_SECRET`.
    Globus,
}

/// Options of an HTTP exchange factory, with academy-py's defaults. Its
/// `Debug` shows the names of `additional_headers`, never their values
/// (they may carry credentials).
#[derive(Clone)]
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
    /// Whether a message whose request was written but never answered (the
    /// connection died, or the answer did not come in time) is sent again
    /// to an exchange that does not drop repeated messages (academy-py's),
    /// which can deliver it twice. Off by default: such a send fails with
    /// an error that says the message may or may not have been delivered.
    /// Exchanges that drop repeated messages (libacademy's in-memory one,
    /// which says so in its answers) get it again whatever this says.
    pub resend_unacknowledged: bool,
    /// The serializations a served agent reads requests in.
    pub allowed_deserializers: Accepted,
    /// How calls write action arguments.
    pub request_serialization: RequestSerialization,
}

impl std::fmt::Debug for FactoryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&String> = self.additional_headers.keys().collect();
        f.debug_struct("FactoryOptions")
            .field("auth_method", &self.auth_method)
            .field("additional_headers (names)", &headers)
            .field("ssl_verify", &self.ssl_verify)
            .field("ca_file", &self.ca_file)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retries", &self.retries)
            .field("initial_retry_backoff", &self.initial_retry_backoff)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("max_concurrency", &self.max_concurrency)
            .field("globus_token_url", &redact::url(&self.globus_token_url))
            .field("busy_poll", &self.busy_poll)
            .field("max_in_flight", &self.max_in_flight)
            .field("resend_unacknowledged", &self.resend_unacknowledged)
            .field("allowed_deserializers", &self.allowed_deserializers)
            .field("request_serialization", &self.request_serialization)
            .finish()
    }
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
            resend_unacknowledged: false,
            allowed_deserializers: Accepted::ALL,
            request_serialization: RequestSerialization::Auto,
        }
    }
}

/// The JSON shape; every field optional, no other keys allowed.
#[derive(Debug, Deserialize)]
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
    #[serde(default)]
    resend_unacknowledged: Option<bool>,
    #[serde(default)]
    allowed_deserializers: Option<Vec<String>>,
    #[serde(default)]
    request_serialization: Option<String>,
}

/// Checks the shape of `additional_headers` (an object of strings, or
/// null). Header values carry credentials: an error names the header and
/// the type found, never a value.
fn check_headers(headers: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    match headers {
        Value::Null => Ok(()),
        Value::Object(map) => match map.iter().find(|(_, v)| !v.is_string()) {
            None => Ok(()),
            Some((name, v)) => Err(Error::invalid(format!(
                "option additional_headers: the value of header {} must be a string, not {}",
                crate::error::clip(name),
                redact::json_type(v)
            ))),
        },
        other => Err(Error::invalid(format!(
            "option additional_headers must be an object of strings (header name: value), not {}",
            redact::json_type(other)
        ))),
    }
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

/// `allowed_deserializers`: a non-empty list of serialization names.
fn accepted(names: Option<Vec<String>>) -> Result<Accepted> {
    let Some(names) = names else {
        return Ok(Accepted::ALL);
    };
    let mut accepted = Accepted {
        json: false,
        pickle: false,
    };
    for name in &names {
        match Serialization::from_name(name) {
            Some(Serialization::Json) => accepted.json = true,
            Some(Serialization::Pickle) => accepted.pickle = true,
            None => {
                return Err(Error::invalid(format!(
                    "option allowed_deserializers takes \"json\" and \"pickle\", not {name:?}"
                )))
            }
        }
    }
    if names.is_empty() {
        return Err(Error::invalid(
            "option allowed_deserializers must name at least one serialization",
        ));
    }
    Ok(accepted)
}

fn request_serialization(name: Option<String>) -> Result<RequestSerialization> {
    match name {
        None => Ok(RequestSerialization::Auto),
        Some(name) => RequestSerialization::from_name(&name).ok_or_else(|| {
            Error::invalid(format!(
                "option request_serialization must be one of {}, not {name:?}",
                RequestSerialization::NAMES.join(", ")
            ))
        }),
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
        if let Some(headers) = value.get("additional_headers") {
            check_headers(headers)?;
        }
        let raw: RawOptions = serde_json::from_value(value).map_err(|e| {
            Error::invalid(format!(
                "bad factory option: {}",
                redact::parser_message(&e.to_string())
            ))
        })?;
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
            if RESERVED_HEADERS.iter().any(|r| k.eq_ignore_ascii_case(r)) {
                return Err(Error::invalid(format!(
                    "additional_headers may not set {k:?}: libacademy writes {} itself",
                    RESERVED_HEADERS.join(", ")
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
            resend_unacknowledged: raw.resend_unacknowledged.unwrap_or(d.resend_unacknowledged),
            allowed_deserializers: accepted(raw.allowed_deserializers)?,
            request_serialization: request_serialization(raw.request_serialization)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Status;

    /// The field names serde's derive gives the parser: a deserializer
    /// that only records what `deserialize_struct` is asked for.
    fn parser_fields() -> Vec<&'static str> {
        use serde::de::{self, Visitor};
        #[derive(Debug)]
        struct Fields(Vec<&'static str>);
        impl std::fmt::Display for Fields {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
        impl std::error::Error for Fields {}
        impl de::Error for Fields {
            fn custom<T: std::fmt::Display>(_: T) -> Self {
                Fields(Vec::new())
            }
        }
        struct Recorder;
        impl<'de> de::Deserializer<'de> for Recorder {
            type Error = Fields;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
                Err(Fields(Vec::new()))
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Fields> {
                Err(Fields(fields.to_vec()))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
                bytes byte_buf option unit unit_struct newtype_struct seq tuple
                tuple_struct map enum identifier ignored_any
            }
        }
        RawOptions::deserialize(Recorder).unwrap_err().0
    }

    #[test]
    fn the_table_lists_exactly_the_options_the_parser_takes() {
        let mut parsed = parser_fields();
        let mut documented: Vec<_> = OPTIONS
            .iter()
            .filter(|o| o.factories.contains(&"http"))
            .map(|o| o.name)
            .collect();
        parsed.sort_unstable();
        documented.sort_unstable();
        assert!(!parsed.is_empty());
        assert_eq!(parsed, documented);
        // Each documented default is what the parser gives.
        for o in OPTIONS.iter().filter(|o| {
            o.factories.contains(&"http") && o.default.starts_with(|c: char| c.is_ascii_digit())
        }) {
            let text = format!("{{\"{}\": {}}}", o.name, o.default);
            let with = FactoryOptions::from_json(Some(&text)).unwrap();
            assert_eq!(
                format!("{with:?}"),
                format!("{:?}", FactoryOptions::default()),
                "{} defaults to {}",
                o.name,
                o.default
            );
        }
    }

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
               "max_in_flight":7,"resend_unacknowledged":true,
               "allowed_deserializers":["json"],"request_serialization":"pickle"}"#,
        ))
        .unwrap();
        assert_eq!(o.additional_headers["X-A"], "b");
        assert_eq!(o.ssl_verify, Some(false));
        assert_eq!(o.connect_timeout, Duration::from_millis(1500));
        assert_eq!(o.retries, 3);
        assert_eq!(o.max_concurrency, 8);
        assert_eq!(o.busy_poll, Duration::ZERO);
        assert_eq!(o.max_in_flight, 7);
        assert!(o.resend_unacknowledged);
        assert!(!FactoryOptions::default().resend_unacknowledged);
        assert!(!o.allowed_deserializers.allows(Serialization::Pickle));
        assert!(o.allowed_deserializers.allows(Serialization::Json));
        assert_eq!(o.request_serialization, RequestSerialization::Pickle);
        let d = FactoryOptions::default();
        assert_eq!(d.allowed_deserializers, Accepted::ALL);
        assert_eq!(d.request_serialization, RequestSerialization::Auto);
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
            r#"{"additional_headers":{"Content-Length":"5"}}"#,
            r#"{"additional_headers":{"transfer-encoding":"chunked"}}"#,
            r#"{"additional_headers":{"HOST":"evil"}}"#,
            r#"{"additional_headers":{"Connection":"close"}}"#,
            r#"{"additional_headers":{"content-type":"text/plain"}}"#,
            r#"{"resend_unacknowledged":1}"#,
            r#"{"allowed_deserializers":[]}"#,
            r#"{"allowed_deserializers":["yaml"]}"#,
            r#"{"allowed_deserializers":"json"}"#,
            r#"{"request_serialization":"yaml"}"#,
            "[1,2]",
            "{",
        ] {
            let err = FactoryOptions::from_json(Some(bad)).unwrap_err();
            assert_eq!(err.status, Status::InvalidArgument, "{bad}");
            assert!(!err.message.is_empty());
        }
    }
}
