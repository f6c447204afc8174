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
//! kind = "python"             # the in-memory backend (only one supported)
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
                "backend" => config.message_size_limit_kb = parse_backend(toml_table(key, value)?)?,
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
                _ => {
                    return Err(invalid(format!(
                        "unknown exchange option {key:?} (known: host, port, listen_timeout_s, message_size_limit_kb)"
                    )))
                }
            }
        }
        Ok(config)
    }
}

fn parse_backend(table: &toml::Table) -> Result<u64> {
    let mut limit = 512;
    let kind = match table.get("kind") {
        Some(k) => toml_str("backend.kind", k)?,
        None if table.contains_key("hostname") || table.contains_key("port") => "redis".to_owned(),
        None => "python".to_owned(),
    };
    if kind == "redis" {
        return Err(invalid(
            "backend.kind = \"redis\" is not supported by this server (only the in-memory \"python\" backend)",
        ));
    }
    if kind != "python" {
        return Err(invalid(format!(
            "backend.kind: input should be 'python' or 'redis', got {kind:?}"
        )));
    }
    for (key, value) in table {
        match key.as_str() {
            "kind" => {}
            "message_size_limit_kb" => {
                let l = toml_int("backend.message_size_limit_kb", value)?;
                if !(1..=512).contains(&l) {
                    return Err(invalid(format!(
                        "backend.message_size_limit_kb: {l} must be greater than 0 and at most 512"
                    )));
                }
                limit = l as u64;
            }
            _ => return Err(extra("backend", key)),
        }
    }
    Ok(limit)
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
            "[backend]\nkind = \"redis\"",
            "[auth]\nmethod = \"globus\"",
        ] {
            let e = ServerConfig::from_toml_str(bad).unwrap_err();
            assert_eq!(e.status, Status::InvalidArgument, "{bad}");
        }
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
