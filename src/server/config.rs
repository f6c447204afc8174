//! Server configuration: the TOML file of `python -m academy.exchange.cloud
//! --config FILE.toml` (academy-py 1.0.0 `ExchangeServingConfig`), and the
//! JSON options of the C call `academy_exchange_spawn`.
//!
//! The TOML file has the same keys and defaults as academy-py, and like
//! pydantic's `extra='forbid'` an unknown key is an error:
//!
//! ```toml
//! host = "localhost"          # default "localhost"
//! port = 8700                 # default 8700
//! certfile = "/path/cert.pem" # optional: serve HTTPS
//! keyfile = "/path/key.pem"   # optional: else the key is read from certfile
//! listen_timeout_s = 60       # default 60: the longest recv/listen timeout
//!
//! [backend]
//! kind = "python"             # "python": in memory (default); "redis": below
//! message_size_limit_kb = 512 # default 512, 1..=512
//!
//! [auth]                      # default: no authentication
//! method = "token"            # extension, see below ("globus" is not supported)
//!
//! [logger]                    # accepted and validated, otherwise ignored
//! level = "INFO"
//! ```
//!
//! Self-hosted authentication with a table of bearer tokens (this library's
//! extension of `[auth]`; the shape follows academy-py's `method` +
//! `kwargs`):
//!
//! ```toml
//! [auth]
//! method = "token"
//!
//! [auth.kwargs.tokens.alice-secret-token]
//! client_id = "alice"
//! groups = ["team-a"]
//!
//! [auth.kwargs.tokens."bob's token"]
//! client_id = "bob"          # groups default to []
//! ```
//!
//! A client then sends `Authorization: Bearer alice-secret-token`.
//!
//! Mailboxes in Redis, shared by every exchange process (ours or
//! academy-py's) configured with the same Redis (academy-py's
//! `RedisBackendConfig`; `kind` may be left out when `hostname` or `port`
//! is given):
//!
//! ```toml
//! [backend]
//! kind = "redis"
//! hostname = "localhost"      # default "localhost"
//! port = 6379                 # default 6379
//! message_size_limit_kb = 512 # default 512, 1..=512
//! mailbox_expiration_d = 7    # default 7: queued messages expire (days)
//! gravestone_expiration_d = 365 # default 365: a terminated id is kept (days)
//! [backend.kwargs]            # optional: db, username, password
//! db = 0
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value as Json;
use toml::Value as Toml;

use crate::error::{Error, Result, Status};
use crate::server::auth::{Authenticator, ClientInfo, TokenAuthenticator};

/// How requests are authenticated.
#[derive(Clone, Default)]
pub enum AuthConfig {
    /// No authentication (academy-py's `NullAuthenticator`): every client is
    /// the anonymous client `""` in no group.
    #[default]
    None,
    /// A fixed table of bearer tokens, token -> client.
    Tokens(HashMap<String, ClientInfo>),
    /// Any other authenticator.
    Custom(Arc<dyn Authenticator>),
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print tokens (academy-py excludes auth kwargs from repr too).
        match self {
            AuthConfig::None => f.write_str("None"),
            AuthConfig::Tokens(t) => write!(f, "Tokens({} tokens)", t.len()),
            AuthConfig::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl AuthConfig {
    pub(crate) fn authenticator(&self) -> Option<Arc<dyn Authenticator>> {
        match self {
            AuthConfig::None => None,
            AuthConfig::Tokens(t) => Some(Arc::new(TokenAuthenticator::new(t.clone()))),
            AuthConfig::Custom(a) => Some(a.clone()),
        }
    }
}

/// The configuration of an [`ExchangeServer`](crate::server::ExchangeServer).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Interface to bind (a name such as `localhost` binds all its addresses).
    pub host: String,
    /// Port to bind; 0 picks a free port.
    pub port: u16,
    /// PEM certificate chain: serve HTTPS when set.
    pub certfile: Option<PathBuf>,
    /// PEM private key; when unset the key is read from `certfile`.
    pub keyfile: Option<PathBuf>,
    /// The longest `timeout` a recv or listen request may ask for, and the
    /// default when it asks for none.
    pub listen_timeout_s: u64,
    /// Largest accepted message (its serialized JSON), in KiB.
    pub message_size_limit_kb: u64,
    /// Authentication.
    pub auth: AuthConfig,
    /// Keep mailboxes in this Redis instead of in memory.
    pub redis: Option<RedisConfig>,
}

/// The Redis of a scaled-out exchange (academy-py's `RedisBackendConfig`).
#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    pub hostname: String,
    pub port: u16,
    /// Database number (`kwargs.db`).
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Queued messages and in-flight request records expire after this long
    /// without activity; 0 never expires them.
    pub mailbox_expiration_s: u64,
    /// Mailbox status, owner, heartbeat and agent type expire after this
    /// long; 0 never expires them.
    pub gravestone_expiration_s: u64,
}

impl Default for RedisConfig {
    /// academy-py's defaults: `localhost:6379`, 7 and 365 days.
    fn default() -> Self {
        RedisConfig {
            hostname: "localhost".to_owned(),
            port: 6379,
            db: 0,
            username: None,
            password: None,
            mailbox_expiration_s: 7 * 86_400,
            gravestone_expiration_s: 365 * 86_400,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password.
        f.debug_struct("RedisConfig")
            .field("hostname", &self.hostname)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("mailbox_expiration_s", &self.mailbox_expiration_s)
            .field("gravestone_expiration_s", &self.gravestone_expiration_s)
            .finish()
    }
}

impl Default for ServerConfig {
    /// academy-py's defaults: `localhost:8700`, 60 s, 512 KiB, no auth.
    fn default() -> Self {
        ServerConfig {
            host: "localhost".to_owned(),
            port: 8700,
            certfile: None,
            keyfile: None,
            listen_timeout_s: 60,
            message_size_limit_kb: 512,
            auth: AuthConfig::None,
            redis: None,
        }
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(Status::InvalidArgument, msg)
}

fn type_name(v: &Toml) -> &'static str {
    v.type_str()
}

fn toml_str(key: &str, v: &Toml) -> Result<String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid(format!("{key}: expected a string, got {}", type_name(v))))
}

/// A pydantic `int` in lax mode: an integer, or a float without fraction.
fn toml_int(key: &str, v: &Toml) -> Result<i64> {
    match v {
        Toml::Integer(i) => Ok(*i),
        Toml::Float(f) if f.fract() == 0.0 && f.is_finite() => Ok(*f as i64),
        _ => Err(invalid(format!("{key}: expected an integer, got {v:?}"))),
    }
}

fn toml_table<'a>(key: &str, v: &'a Toml) -> Result<&'a toml::Table> {
    v.as_table()
        .ok_or_else(|| invalid(format!("{key}: expected a table, got {}", type_name(v))))
}

fn extra(section: &str, key: &str) -> Error {
    let at = if section.is_empty() {
        key.to_owned()
    } else {
        format!("{section}.{key}")
    };
    invalid(format!(
        "{at}: extra inputs are not permitted (unknown key)"
    ))
}

impl ServerConfig {
    /// Reads a TOML config file as `python -m academy.exchange.cloud --config`.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<ServerConfig> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("cannot read config file {}: {e}", path.display())))?;
        Self::from_toml_str(&text)
            .map_err(|e| invalid(format!("config file {}: {}", path.display(), e.message)))
    }

    /// Parses TOML text as academy-py's `ExchangeServingConfig`.
    pub fn from_toml_str(text: &str) -> Result<ServerConfig> {
        let table: toml::Table = text
            .parse()
            .map_err(|e| invalid(format!("invalid TOML: {e}")))?;
        let mut config = ServerConfig::default();
        for (key, value) in &table {
            match key.as_str() {
                "host" => config.host = toml_str(key, value)?,
                "port" => {
                    let p = toml_int(key, value)?;
                    config.port = u16::try_from(p)
                        .map_err(|_| invalid(format!("port: {p} is not a valid port")))?;
                }
                "certfile" => config.certfile = Some(toml_str(key, value)?.into()),
                "keyfile" => config.keyfile = Some(toml_str(key, value)?.into()),
                "listen_timeout_s" => {
                    let t = toml_int(key, value)?;
                    if t <= 0 {
                        return Err(invalid(format!(
                            "listen_timeout_s: {t} must be greater than 0"
                        )));
                    }
                    config.listen_timeout_s = t as u64;
                }
                "auth" => config.auth = parse_auth(toml_table(key, value)?)?,
                "backend" => {
                    let (limit, redis) = parse_backend(toml_table(key, value)?)?;
                    config.message_size_limit_kb = limit;
                    config.redis = redis;
                }
                "logger" => check_logger(toml_table(key, value)?)?,
                _ => return Err(extra("", key)),
            }
        }
        if config.keyfile.is_some() && config.certfile.is_none() {
            return Err(invalid("keyfile is set but certfile is not"));
        }
        Ok(config)
    }

    /// The options of `academy_exchange_spawn(options_json)`: a JSON object
    /// (or NULL / empty for all defaults) with `host` (default
    /// `"127.0.0.1"`), `port` (default 0: any free port), `listen_timeout_s`
    /// (default 60) and `message_size_limit_kb` (default 512). Unknown keys
    /// and values of the wrong type are `InvalidArgument` errors.
    pub fn from_json_options(options: Option<&str>) -> Result<ServerConfig> {
        let mut config = ServerConfig {
            host: "127.0.0.1".to_owned(),
            port: 0,
            ..ServerConfig::default()
        };
        let text = match options {
            None => return Ok(config),
            Some(t) if t.trim().is_empty() => return Ok(config),
            Some(t) => t,
        };
        let value: Json = serde_json::from_str(text)
            .map_err(|e| invalid(format!("exchange options are not valid JSON: {e}")))?;
        let object = match value {
            Json::Object(o) => o,
            Json::Null => return Ok(config),
            other => {
                return Err(invalid(format!(
                    "exchange options must be a JSON object, got {other}"
                )))
            }
        };
        let uint = |key: &str, v: &Json| -> Result<u64> {
            v.as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u32::MAX as f64)
                        .map(|f| f as u64)
                })
                .ok_or_else(|| {
                    invalid(format!(
                        "exchange option {key}: expected a non-negative integer, got {v}"
                    ))
                })
        };
        for (key, v) in &object {
            match key.as_str() {
                "host" => {
                    if !v.is_null() {
                        config.host = v
                            .as_str()
                            .ok_or_else(|| {
                                invalid(format!("exchange option host: expected a string, got {v}"))
                            })?
                            .to_owned();
                    }
                }
                "port" => {
                    if !v.is_null() {
                        let p = uint(key, v)?;
                        config.port = u16::try_from(p).map_err(|_| {
                            invalid(format!("exchange option port: {p} is not a valid port"))
                        })?;
                    }
                }
                "listen_timeout_s" => {
                    if !v.is_null() {
                        let t = uint(key, v)?;
                        if t == 0 {
                            return Err(invalid("exchange option listen_timeout_s must be greater than 0"));
                        }
                        config.listen_timeout_s = t;
                    }
                }
                "message_size_limit_kb" => {
                    if !v.is_null() {
                        let l = uint(key, v)?;
                        if l == 0 || l > 1024 * 1024 {
                            return Err(invalid(
                                "exchange option message_size_limit_kb must be between 1 and 1048576",
                            ));
                        }
                        config.message_size_limit_kb = l;
                    }
                }
                "backend" => {
                    if !v.is_null() {
                        let Toml::Table(table) = json_to_toml(key, v)? else {
                            return Err(invalid(format!(
                                "exchange option backend: expected an object, got {v}"
                            )));
                        };
                        // The top-level option stands unless the table sets one.
                        let (limit, redis) = parse_backend(&table)?;
                        if table.contains_key("message_size_limit_kb") {
                            config.message_size_limit_kb = limit;
                        }
                        config.redis = redis;
                    }
                }
                _ => {
                    return Err(invalid(format!(
                        "unknown exchange option {key:?} (known: host, port, listen_timeout_s, message_size_limit_kb, backend)"
                    )))
                }
            }
        }
        Ok(config)
    }
}

/// `[backend]`: the message size limit, and the Redis when kind = "redis".
fn parse_backend(table: &toml::Table) -> Result<(u64, Option<RedisConfig>)> {
    let mut limit = 512;
    let kind = match table.get("kind") {
        Some(k) => toml_str("backend.kind", k)?,
        None if table.contains_key("hostname") || table.contains_key("port") => "redis".to_owned(),
        None => "python".to_owned(),
    };
    let mut redis = match kind.as_str() {
        "python" => None,
        "redis" => Some(RedisConfig::default()),
        _ => {
            return Err(invalid(format!(
                "backend.kind: input should be 'python' or 'redis', got {kind:?}"
            )))
        }
    };
    for (key, value) in table {
        let at = format!("backend.{key}");
        match (key.as_str(), redis.as_mut()) {
            ("kind", _) => {}
            ("message_size_limit_kb", _) => {
                let l = toml_int(&at, value)?;
                if !(1..=512).contains(&l) {
                    return Err(invalid(format!(
                        "{at}: {l} must be greater than 0 and at most 512"
                    )));
                }
                limit = l as u64;
            }
            ("hostname", Some(r)) => r.hostname = toml_str(&at, value)?,
            ("port", Some(r)) => {
                let p = toml_int(&at, value)?;
                r.port = u16::try_from(p)
                    .map_err(|_| invalid(format!("{at}: {p} is not a valid port")))?;
            }
            ("mailbox_expiration_d", Some(r)) => r.mailbox_expiration_s = toml_days(&at, value)?,
            ("gravestone_expiration_d", Some(r)) => {
                r.gravestone_expiration_s = toml_days(&at, value)?
            }
            ("kwargs", Some(r)) => parse_redis_kwargs(r, toml_table(&at, value)?)?,
            _ => return Err(extra("backend", key)),
        }
    }
    Ok((limit, redis))
}

/// A positive number of days, in whole seconds as academy-py rounds it.
fn toml_days(key: &str, v: &Toml) -> Result<u64> {
    let days = match v {
        Toml::Integer(i) => *i as f64,
        Toml::Float(f) => *f,
        _ => return Err(invalid(format!("{key}: expected a number, got {v:?}"))),
    };
    if !(days > 0.0 && days.is_finite()) {
        return Err(invalid(format!("{key}: {days} must be greater than 0")));
    }
    Ok((days * 86_400.0) as u64)
}

/// academy-py passes `kwargs` on to `redis.asyncio.Redis`; the connection
/// settings that mean the same here are accepted, anything else is an error
/// rather than silently ignored.
fn parse_redis_kwargs(redis: &mut RedisConfig, table: &toml::Table) -> Result<()> {
    for (key, value) in table {
        let at = format!("backend.kwargs.{key}");
        match key.as_str() {
            "db" => redis.db = toml_int(&at, value)?,
            "username" => redis.username = Some(toml_str(&at, value)?),
            "password" => redis.password = Some(toml_str(&at, value)?),
            _ => {
                return Err(invalid(format!(
                    "{at}: not supported by this server (supported: db, username, password)"
                )))
            }
        }
    }
    Ok(())
}

/// A JSON value as TOML, so that JSON options share the TOML parser.
fn json_to_toml(key: &str, v: &Json) -> Result<Toml> {
    Ok(match v {
        Json::Bool(b) => Toml::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Toml::Integer(i),
            None => Toml::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Toml::String(s.clone()),
        Json::Array(a) => Toml::Array(
            a.iter()
                .map(|x| json_to_toml(key, x))
                .collect::<Result<_>>()?,
        ),
        Json::Object(o) => {
            let mut t = toml::Table::new();
            for (k, x) in o {
                t.insert(k.clone(), json_to_toml(key, x)?);
            }
            Toml::Table(t)
        }
        Json::Null => {
            return Err(invalid(format!(
                "exchange option {key}: null is not allowed here"
            )))
        }
    })
}

fn parse_auth(table: &toml::Table) -> Result<AuthConfig> {
    let mut method: Option<String> = None;
    let mut kwargs: Option<&toml::Table> = None;
    for (key, value) in table {
        match key.as_str() {
            "method" => method = Some(toml_str("auth.method", value)?),
            "kwargs" => kwargs = Some(toml_table("auth.kwargs", value)?),
            _ => return Err(extra("auth", key)),
        }
    }
    match method.as_deref() {
        None => Ok(AuthConfig::None),
        Some("globus") => Err(invalid(
            "auth.method = \"globus\" is not supported by this server; use method = \"token\" with [auth.kwargs.tokens] (see the documentation of academy::server::config)",
        )),
        Some("token") => {
            let empty = toml::Table::new();
            let kwargs = kwargs.unwrap_or(&empty);
            let mut tokens = HashMap::new();
            for (key, value) in kwargs {
                if key != "tokens" {
                    return Err(extra("auth.kwargs", key));
                }
                for (token, entry) in toml_table("auth.kwargs.tokens", value)? {
                    let entry = toml_table("auth.kwargs.tokens.<token>", entry)?;
                    let mut client_id = None;
                    let mut groups = Vec::new();
                    for (k, v) in entry {
                        match k.as_str() {
                            "client_id" => client_id = Some(toml_str("client_id", v)?),
                            "groups" => {
                                let list = v.as_array().ok_or_else(|| {
                                    invalid("auth.kwargs.tokens.<token>.groups: expected a list of strings")
                                })?;
                                for g in list {
                                    groups.push(toml_str("groups", g)?);
                                }
                            }
                            _ => return Err(extra("auth.kwargs.tokens.<token>", k)),
                        }
                    }
                    let client_id = client_id.ok_or_else(|| {
                        invalid("auth.kwargs.tokens.<token>.client_id is required")
                    })?;
                    if token.is_empty() || token.contains(' ') {
                        return Err(invalid("auth tokens must be non-empty and contain no spaces"));
                    }
                    tokens.insert(token.clone(), ClientInfo { client_id, groups });
                }
            }
            if tokens.is_empty() {
                return Err(invalid(
                    "auth.method = \"token\" needs at least one token in [auth.kwargs.tokens]",
                ));
            }
            Ok(AuthConfig::Tokens(tokens))
        }
        Some(other) => Err(invalid(format!(
            "auth.method: unknown authentication method {other:?} (supported: \"token\")"
        ))),
    }
}

fn check_logger(table: &toml::Table) -> Result<()> {
    for (key, value) in table {
        match key.as_str() {
            "level" | "logfile_level" => {
                if !(value.is_integer() || value.is_str()) {
                    return Err(invalid(format!(
                        "logger.{key}: expected an integer or a string"
                    )));
                }
            }
            "logfile" => {
                toml_str("logger.logfile", value)?;
            }
            "rotate" => {
                if !value.is_bool() {
                    return Err(invalid("logger.rotate: expected a boolean"));
                }
            }
            "rotation_interval_days" | "backup_count" => {
                if toml_int(key, value)? <= 0 {
                    return Err(invalid(format!("logger.{key}: must be greater than 0")));
                }
            }
            _ => return Err(extra("logger", key)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_academy_py() {
        let c = ServerConfig::from_toml_str("").unwrap();
        assert_eq!(c.host, "localhost");
        assert_eq!(c.port, 8700);
        assert_eq!(c.listen_timeout_s, 60);
        assert_eq!(c.message_size_limit_kb, 512);
    }

    #[test]
    fn full_file() {
        let c = ServerConfig::from_toml_str(
            r#"
host = "0.0.0.0"
port = 1234
listen_timeout_s = 5
[backend]
kind = "python"
message_size_limit_kb = 10
[logger]
level = "INFO"
[auth]
method = "token"
[auth.kwargs.tokens.abc]
client_id = "alice"
groups = ["g"]
"#,
        )
        .unwrap();
        assert_eq!(c.port, 1234);
        assert_eq!(c.message_size_limit_kb, 10);
        match c.auth {
            AuthConfig::Tokens(t) => assert_eq!(t["abc"].client_id, "alice"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        for bad in [
            "nope = 1",
            "[backend]\nx = 1",
            "[auth]\nfoo = 1",
            "[logger]\nx = 1",
            "port = \"x\"",
            "[backend]\nmessage_size_limit_kb = 513",
            "[backend]\nkind = \"redis\"\nx = 1",
            "[backend]\nkind = \"redis\"\n[backend.kwargs]\nssl = true",
            "[backend]\nkind = \"redis\"\nmailbox_expiration_d = 0",
            "[backend]\nkind = \"mongo\"",
            "[backend]\nhostname = 5",
            "[auth]\nmethod = \"globus\"",
        ] {
            let e = ServerConfig::from_toml_str(bad).unwrap_err();
            assert_eq!(e.status, Status::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn redis_backend() {
        let c = ServerConfig::from_toml_str("[backend]\nkind = \"redis\"").unwrap();
        assert_eq!(c.redis, Some(RedisConfig::default()));
        let c = ServerConfig::from_toml_str(
            "[backend]\nhostname = \"h\"\nport = 7\nmailbox_expiration_d = 0.5\ngravestone_expiration_d = 2\n[backend.kwargs]\ndb = 3\npassword = \"pw\"",
        )
        .unwrap();
        let r = c.redis.unwrap();
        assert_eq!((r.hostname.as_str(), r.port, r.db), ("h", 7, 3));
        assert_eq!(
            (r.mailbox_expiration_s, r.gravestone_expiration_s),
            (43_200, 172_800)
        );
        assert!(!format!("{r:?}").contains("pw"));
        let c = ServerConfig::from_json_options(Some(
            r#"{"backend": {"kind": "redis", "port": 6390}, "message_size_limit_kb": 9}"#,
        ))
        .unwrap();
        assert_eq!(c.redis.map(|r| r.port), Some(6390));
        assert_eq!(c.message_size_limit_kb, 9);
        assert!(ServerConfig::from_json_options(Some(r#"{"backend": 1}"#)).is_err());
    }

    #[test]
    fn json_options() {
        let c = ServerConfig::from_json_options(None).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 0));
        let c = ServerConfig::from_json_options(Some(
            r#"{"port": 5, "listen_timeout_s": 3, "message_size_limit_kb": 7}"#,
        ))
        .unwrap();
        assert_eq!(
            (c.port, c.listen_timeout_s, c.message_size_limit_kb),
            (5, 3, 7)
        );
        for bad in [
            r#"{"x": 1}"#,
            r#"{"port": "1"}"#,
            "[1]",
            "{",
            r#"{"port": 70000}"#,
        ] {
            let e = ServerConfig::from_json_options(Some(bad)).unwrap_err();
            assert_eq!(e.status, Status::InvalidArgument, "{bad}");
        }
    }
}
