//! Options of the Redis and hybrid exchange factories: a JSON object whose
//! keys mirror `RedisExchangeFactory` and `HybridExchangeFactory`, plus the
//! common client options that apply to them. HTTP-only options and unknown
//! keys are errors, caught when the factory is made.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::options::FactoryOptions;
use crate::redact;
use crate::wire::base32;

/// Common options that only the HTTP exchange has.
const HTTP_ONLY: [&str; 6] = [
    "auth_method",
    "additional_headers",
    "ssl_verify",
    "ca_file",
    "globus_token_url",
    "resend_unacknowledged",
];

/// Where Redis is and how to log in (`redis.asyncio.Redis(host, port,
/// **kwargs)` of academy-py, with the kwargs we support). Its `Debug` never
/// shows the login.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisServer {
    pub hostname: String,
    pub port: u16,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("at", &self.describe())
            .field("username", &self.username.as_ref().map(|_| "…"))
            .field("password", &self.password.as_ref().map(|_| "…"))
            .finish()
    }
}

impl RedisServer {
    /// `redis://host:port` (and `/db` when not 0), for messages; never the
    /// login (not even one written into the host name as `user:pw@host`).
    pub fn describe(&self) -> String {
        let hostname = redact::url(&self.hostname);
        let host = if hostname.contains(':') {
            format!("[{hostname}]")
        } else {
            hostname
        };
        match self.db {
            0 => format!("redis://{host}:{}", self.port),
            db => format!("redis://{host}:{}/{db}", self.port),
        }
    }
}

/// Options of `academy_redis_factory_new`.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub server: RedisServer,
    pub client: FactoryOptions,
}

/// Options of `academy_hybrid_factory_new`.
#[derive(Debug, Clone)]
pub struct HybridOptions {
    pub server: RedisServer,
    /// The network interface (or IPv4 address) whose address clients
    /// advertise; `None`: the address of this host's name, as academy-py.
    pub interface: Option<String>,
    /// The prefix of every key (`null` in the JSON: a random one).
    pub namespace: String,
    /// The ports clients may listen on; `None`: any free port.
    pub ports: Option<Vec<u16>>,
    pub client: FactoryOptions,
}

/// The options object, or an empty one for `None`, `""` and `"null"`.
fn object(text: Option<&str>) -> Result<Map<String, Value>> {
    match text.map(str::trim) {
        None | Some("") | Some("null") => Ok(Map::new()),
        Some(t) => match crate::wire::message::parse_json("options_json", t)? {
            Value::Object(map) => Ok(map),
            _ => Err(Error::invalid("options_json must be a JSON object")),
        },
    }
}

fn string(map: &mut Map<String, Value>, key: &str, default: &str) -> Result<String> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(default.to_owned()),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(other) => Err(Error::invalid(format!(
            "option {key} must be a non-empty string, got {other}"
        ))),
    }
}

/// A string or null under `key`; an error names the key (`what`) and the
/// type found, never the value (it may be a password).
fn optional_string(map: &mut Map<String, Value>, key: &str, what: &str) -> Result<Option<String>> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Error::invalid(format!(
            "option {what} must be a string or null, not {}",
            redact::json_type(&other)
        ))),
    }
}

fn port(value: Option<Value>, what: &str, default: u16) -> Result<u16> {
    match value {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|p| (1..=65535).contains(p))
            .map(|p| p as u16)
            .ok_or_else(|| Error::invalid(format!("{what} must be a port (1 to 65535), got {v}"))),
    }
}

/// The redis kwargs we support (academy-py hands any to redis-py): the
/// database number, user name and password.
type Login = (i64, Option<String>, Option<String>);

/// Parses the Redis connection arguments under `key`. They hold the login,
/// so an error names the key and the type found, never a value.
fn redis_kwargs(value: Option<Value>, key: &str) -> Result<Login> {
    let mut kwargs = match value {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(Error::invalid(format!(
                "option {key} must be an object of Redis connection arguments (db, username, password), not {}",
                redact::json_type(&other)
            )))
        }
    };
    let db = match kwargs.remove("db") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_i64().filter(|d| *d >= 0).ok_or_else(|| {
            Error::invalid(format!(
                "option {key}.db must be a database number (an integer, 0 or more), not {}",
                match v {
                    Value::Number(_) => "this number",
                    ref other => redact::json_type(other),
                }
            ))
        })?,
    };
    let username = optional_string(&mut kwargs, "username", &format!("{key}.username"))?;
    let password = optional_string(&mut kwargs, "password", &format!("{key}.password"))?;
    if let Some(other) = kwargs.keys().next() {
        return Err(Error::invalid(format!(
            "option {key}.{other} is not supported (supported: db, username, password)"
        )));
    }
    Ok((db, username, password))
}

/// The common client options left in `map`, refusing those of the HTTP
/// exchange only.
fn client_options(map: Map<String, Value>, exchange: &str) -> Result<FactoryOptions> {
    if let Some(key) = HTTP_ONLY.iter().find(|k| map.contains_key(**k)) {
        return Err(Error::invalid(format!(
            "option {key} applies only to the HTTP exchange, not to the {exchange} exchange"
        )));
    }
    if map.is_empty() {
        return Ok(FactoryOptions::default());
    }
    FactoryOptions::from_json(Some(&Value::Object(map).to_string()))
}

fn server(hostname: String, port: u16, (db, username, password): Login) -> RedisServer {
    RedisServer {
        hostname,
        port,
        db,
        username,
        password,
    }
}

impl RedisOptions {
    /// Parses `{"hostname", "port", "kwargs", ...common options}` (`None`
    /// or `"null"`: Redis on localhost:6379, db 0).
    pub fn from_json(text: Option<&str>) -> Result<Self> {
        let mut map = object(text)?;
        let hostname = string(&mut map, "hostname", "localhost")?;
        let port = port(map.remove("port"), "option port", 6379)?;
        let login = redis_kwargs(map.remove("kwargs"), "kwargs")?;
        Ok(RedisOptions {
            server: server(hostname, port, login),
            client: client_options(map, "redis")?,
        })
    }
}

impl HybridOptions {
    /// Parses `{"redis_host", "redis_port", "redis_kwargs", "interface",
    /// "namespace", "ports", ...common options}`.
    pub fn from_json(text: Option<&str>) -> Result<Self> {
        let mut map = object(text)?;
        let hostname = string(&mut map, "redis_host", "localhost")?;
        let redis_port = port(map.remove("redis_port"), "option redis_port", 6379)?;
        let login = redis_kwargs(map.remove("redis_kwargs"), "redis_kwargs")?;
        let interface = optional_string(&mut map, "interface", "interface")?;
        let namespace = match map.remove("namespace") {
            None => "default".to_owned(),
            // academy-py: None gives a random namespace.
            Some(Value::Null) => base32::encode_uid(&crate::wire::ids::random_uuid()),
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(Error::invalid(format!(
                    "option namespace must be a string or null, got {other}"
                )))
            }
        };
        let ports = match map.remove("ports") {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) if !list.is_empty() => Some(
                list.into_iter()
                    .map(|p| port(Some(p), "every entry of option ports", 0))
                    .collect::<Result<Vec<u16>>>()?,
            ),
            Some(other) => {
                return Err(Error::invalid(format!(
                    "option ports must be a non-empty array of ports or null, got {other}"
                )))
            }
        };
        Ok(HybridOptions {
            server: server(hostname, redis_port, login),
            interface,
            namespace,
            ports,
            client: client_options(map, "hybrid")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_options_table_knows_which_options_are_http_only() {
        let http_only: Vec<&str> = crate::options::OPTIONS
            .iter()
            .filter(|o| o.factories == ["http"])
            .map(|o| o.name)
            .collect();
        let mut want = HTTP_ONLY.to_vec();
        want.sort_unstable();
        let mut got = http_only.clone();
        got.sort_unstable();
        assert_eq!(got, want);
        for name in HTTP_ONLY {
            let text = format!("{{\"{name}\": null}}");
            let e = RedisOptions::from_json(Some(&text)).unwrap_err();
            assert!(
                e.message.contains("only to the HTTP exchange"),
                "{}",
                e.message
            );
        }
        // Every option the table gives the Redis and hybrid factories is
        // one they take (null is each one's default).
        for o in crate::options::OPTIONS {
            if o.factories.contains(&"redis") && o.default != "null" {
                let text = format!("{{\"{}\": {}}}", o.name, o.default);
                RedisOptions::from_json(Some(&text))
                    .unwrap_or_else(|e| panic!("redis {}: {}", o.name, e.message));
            }
            if o.factories.contains(&"hybrid")
                && o.default != "null"
                && o.default.starts_with([
                    '"', '{', '[', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9',
                ])
            {
                let text = format!("{{\"{}\": {}}}", o.name, o.default);
                HybridOptions::from_json(Some(&text))
                    .unwrap_or_else(|e| panic!("hybrid {}: {}", o.name, e.message));
            }
        }
    }
    use crate::error::Status;
    use std::time::Duration;

    #[test]
    fn redis_defaults_and_every_option() {
        let o = RedisOptions::from_json(None).unwrap();
        assert_eq!(o.server.hostname, "localhost");
        assert_eq!(o.server.port, 6379);
        assert_eq!(o.server.db, 0);
        assert_eq!(o.server.describe(), "redis://localhost:6379");
        let o = RedisOptions::from_json(Some(
            r#"{"hostname": "r.example", "port": 6390, "kwargs": {"db": 2, "username": "u", "password": "p"},
                "request_timeout_s": 5, "retries": 3, "heartbeat_interval_s": 2, "max_concurrency": 4,
                "max_in_flight": 8, "busy_poll_us": 0, "connect_timeout_s": 1}"#,
        ))
        .unwrap();
        assert_eq!(o.server.port, 6390);
        assert_eq!(o.server.db, 2);
        assert_eq!(o.server.username.as_deref(), Some("u"));
        assert_eq!(o.server.password.as_deref(), Some("p"));
        assert_eq!(o.server.describe(), "redis://r.example:6390/2");
        assert_eq!(o.client.retries, 3);
        assert_eq!(o.client.max_in_flight, 8);
        assert_eq!(o.client.request_timeout, Duration::from_secs(5));
    }

    #[test]
    fn hybrid_defaults_and_every_option() {
        let o = HybridOptions::from_json(Some("{}")).unwrap();
        assert_eq!(o.namespace, "default");
        assert_eq!(o.ports, None);
        assert_eq!(o.interface, None);
        let o = HybridOptions::from_json(Some(
            r#"{"redis_host": "h", "redis_port": 1, "redis_kwargs": {"db": 1}, "interface": "lo",
                "namespace": null, "ports": [7001, 7002], "heartbeat_interval_s": 1}"#,
        ))
        .unwrap();
        assert_eq!(o.namespace.len(), 26);
        assert_eq!(o.ports, Some(vec![7001, 7002]));
        assert_eq!(o.interface.as_deref(), Some("lo"));
        assert_eq!(o.server.db, 1);
    }

    #[test]
    fn rejects_bad_options() {
        for bad in [
            r#"{"nope": 1}"#,
            r#"{"port": 0}"#,
            r#"{"port": "6379"}"#,
            r#"{"hostname": 5}"#,
            r#"{"kwargs": {"ssl": true}}"#,
            r#"{"kwargs": {"db": -1}}"#,
            r#"{"kwargs": []}"#,
            r#"{"auth_method": "globus"}"#,
            r#"{"additional_headers": {}}"#,
            r#"{"ssl_verify": false}"#,
            r#"{"retries": "1"}"#,
            r#"{"redis_host": "x"}"#,
            "[1]",
            "{",
        ] {
            let err = RedisOptions::from_json(Some(bad)).unwrap_err();
            assert_eq!(err.status, Status::InvalidArgument, "{bad}");
        }
        for bad in [
            r#"{"hostname": "x"}"#,
            r#"{"ports": []}"#,
            r#"{"ports": [0]}"#,
            r#"{"ports": 7000}"#,
            r#"{"namespace": 3}"#,
            r#"{"interface": 3}"#,
            r#"{"redis_kwargs": {"socket_timeout": 3}}"#,
            r#"{"ca_file": "/x"}"#,
        ] {
            let err = HybridOptions::from_json(Some(bad)).unwrap_err();
            assert_eq!(err.status, Status::InvalidArgument, "{bad}");
        }
        let err = RedisOptions::from_json(Some(r#"{"ssl_verify": true}"#)).unwrap_err();
        assert!(
            err.message.contains("only to the HTTP exchange"),
            "{}",
            err.message
        );
    }
}
