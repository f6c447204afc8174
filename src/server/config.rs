//! Server configuration: the TOML file of `python -m academy.exchange.cloud
//! --config FILE.toml` (academy-py 1.0.0 `ExchangeServingConfig`), and the
//! JSON options of the C call `academy_exchange_spawn`.
//!
//! Both are read by serde into one set of structs ([`Options`] and its
//! sections), with `deny_unknown_fields` as pydantic's `extra='forbid'`:
//! an unknown key is an error. One set of limits holds for both. The keys
//! and defaults are academy-py's, plus a few of ours (marked; academy-py
//! refuses a file that has them):
//!
//! ```toml
//! host = "localhost"          # default "localhost" (JSON: "127.0.0.1")
//! port = 8700                 # default 8700 (JSON: 0, any free port)
//! certfile = "/path/cert.pem" # optional: serve HTTPS
//! keyfile = "/path/key.pem"   # optional: else the key is read from certfile
//! listen_timeout_s = 60       # default 60: the longest recv/listen timeout
//!
//! # ours:
//! metrics = true              # default true: GET /metrics (Prometheus text)
//! metrics_port = 9700         # optional: serve /metrics and /health there only
//! max_connections = 10000     # default: the open-file limit less 64
//! body_read_timeout_s = 60    # default 60: a request body must arrive within this
//! message_size_limit_kb = 512 # also accepted here (was JSON-only); same as [backend]'s
//!
//! [backend]
//! kind = "python"             # "python": in memory (default); "redis": below
//! message_size_limit_kb = 512 # default 512, 1..=1048576 (academy-py: 1..=512)
//!
//! [auth]                      # default: no authentication
//! method = "token"            # ours, see below ("globus" is not supported)
//!
//! [logger]                    # academy-py's LogConfig (the command only)
//! level = "WARNING"           # stdout: a level name or number (default WARNING)
//! logfile = "/var/log/x.log"  # optional: also write to this file
//! logfile_level = "INFO"      # default INFO
//! rotate = false              # rotate the file every rotation_interval_days
//! rotation_interval_days = 1  # default 1
//! backup_count = 7            # default 7: rotated files kept
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
//! `RedisBackendConfig`; as pydantic picks the union member, `kind` may be
//! left out when a key only Redis has is given):
//!
//! ```toml
//! [backend]
//! kind = "redis"
//! hostname = "localhost"      # default "localhost"
//! port = 6379                 # default 6379
//! message_size_limit_kb = 512 # default 512
//! mailbox_expiration_d = 7    # default 7: queued messages expire (days)
//! gravestone_expiration_d = 365 # default 365: a terminated id is kept (days)
//! [backend.kwargs]            # optional: db, username, password (academy-py
//! db = 0                      # passes any redis-py argument; others are errors)
//! ```
//!
//! Mailboxes in a Redis Cluster (ours; academy-py has no such backend and
//! its exchange cannot share the cluster: the keys are laid out so that a
//! mailbox's keys share one hash slot, see
//! `crate::server::backend::cluster`):
//!
//! ```toml
//! [backend]
//! kind = "redis-cluster"
//! nodes = ["10.0.0.1:7000", "10.0.0.2:7000"] # seed nodes; the rest are discovered
//! durability = "master"       # default; "replica": acknowledged after WAIT 1
//! durability_timeout_ms = 1000 # default 1000: how long a write waits for a replica
//! message_size_limit_kb = 512 # and mailbox_expiration_d, gravestone_expiration_d as above
//! [backend.kwargs]            # optional: username, password (db must be 0)
//! ```
//!
//! Integers may be written as whole floats (`8700.0`), as pydantic's lax
//! mode allows.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result, Status};
use crate::redact;
use crate::server::auth::{Authenticator, ClientInfo, TokenAuthenticator};

/// The largest `message_size_limit_kb`: 1 GiB.
pub const MAX_MESSAGE_SIZE_LIMIT_KB: u64 = 1024 * 1024;
/// The default `body_read_timeout_s`: a client's default request timeout,
/// past which nobody waits for the answer anyway.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// Keep mailboxes in this Redis Cluster instead (at most one of
    /// `redis` and `redis_cluster` is set).
    pub redis_cluster: Option<RedisClusterConfig>,
    /// Count requests, messages and Redis round trips and serve them at
    /// `GET /metrics`.
    pub metrics: bool,
    /// Serve `/metrics` and `/health` on this port (of `host`) instead of
    /// the exchange's; 0 picks a free port.
    pub metrics_port: Option<u16>,
    /// Open connections at most; past it, new connections wait in the
    /// listen backlog until one closes. `None`: the process's open-file
    /// limit less 64 (kept for Redis connections and log files).
    pub max_connections: Option<usize>,
    /// A request's body must arrive within this after its head (else 408).
    pub body_read_timeout: Duration,
    /// academy-py's `[logger]`: used by the `academy-exchange` command.
    pub logger: LoggerConfig,
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

/// When a Redis Cluster backend acknowledges a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// When the master of the mailbox's slot has it (a failover may lose
    /// what its replica had not received yet).
    #[default]
    Master,
    /// When at least one replica has it too (`WAIT 1`); a write no replica
    /// acknowledges in time is answered 503.
    Replica,
}

/// The Redis Cluster of a scaled-out exchange (`kind = "redis-cluster"`).
#[derive(Clone, PartialEq)]
pub struct RedisClusterConfig {
    /// Seed nodes as `host:port`; the other nodes are discovered.
    pub nodes: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// As [`RedisConfig::mailbox_expiration_s`].
    pub mailbox_expiration_s: u64,
    /// As [`RedisConfig::gravestone_expiration_s`].
    pub gravestone_expiration_s: u64,
    pub durability: Durability,
    /// With [`Durability::Replica`], how long a write waits for a replica.
    pub durability_timeout: Duration,
}

impl RedisClusterConfig {
    /// A cluster reached through these seed nodes, with academy-py's
    /// expirations and [`Durability::Master`].
    pub fn new(nodes: Vec<String>) -> Self {
        let d = RedisConfig::default();
        RedisClusterConfig {
            nodes,
            username: None,
            password: None,
            mailbox_expiration_s: d.mailbox_expiration_s,
            gravestone_expiration_s: d.gravestone_expiration_s,
            durability: Durability::Master,
            durability_timeout: DEFAULT_DURABILITY_TIMEOUT,
        }
    }
}

impl fmt::Debug for RedisClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password.
        f.debug_struct("RedisClusterConfig")
            .field("nodes", &self.nodes)
            .field("username", &self.username)
            .field("mailbox_expiration_s", &self.mailbox_expiration_s)
            .field("gravestone_expiration_s", &self.gravestone_expiration_s)
            .field("durability", &self.durability)
            .field("durability_timeout", &self.durability_timeout)
            .finish()
    }
}

/// The default `durability_timeout_ms`.
pub const DEFAULT_DURABILITY_TIMEOUT: Duration = Duration::from_secs(1);

/// A Python logging level number (`logging.DEBUG` is 10, `INFO` 20,
/// `WARNING` 30, `ERROR` 40, `CRITICAL` 50): a record passes when its level
/// is at least this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PyLevel(pub i64);

impl fmt::Display for PyLevel {
    /// `logging.getLevelName`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            50 => f.write_str("CRITICAL"),
            40 => f.write_str("ERROR"),
            30 => f.write_str("WARNING"),
            20 => f.write_str("INFO"),
            10 => f.write_str("DEBUG"),
            0 => f.write_str("NOTSET"),
            n => write!(f, "Level {n}"),
        }
    }
}

impl PyLevel {
    pub const DEBUG: PyLevel = PyLevel(10);
    pub const INFO: PyLevel = PyLevel(20);
    pub const WARNING: PyLevel = PyLevel(30);

    /// `logging.getLevelName`'s names (case-sensitive, as `setLevel`).
    fn from_name(name: &str) -> Option<PyLevel> {
        Some(PyLevel(match name {
            "CRITICAL" | "FATAL" => 50,
            "ERROR" => 40,
            "WARNING" | "WARN" => 30,
            "INFO" => 20,
            "DEBUG" => 10,
            "NOTSET" => 0,
            _ => return None,
        }))
    }
}

/// academy-py's `LogConfig`: where the `academy-exchange` command writes
/// its log and how much.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggerConfig {
    /// Level of the lines written to stdout.
    pub level: PyLevel,
    /// Also write to this file (its folder is created).
    pub logfile: Option<PathBuf>,
    /// Level of the lines written to the file.
    pub logfile_level: PyLevel,
    /// Start a new file every `rotation_interval_days`, keeping
    /// `backup_count` old ones (Python's `TimedRotatingFileHandler`).
    pub rotate: bool,
    pub rotation_interval_days: u32,
    pub backup_count: u32,
}

impl Default for LoggerConfig {
    /// academy-py's defaults.
    fn default() -> Self {
        LoggerConfig {
            level: PyLevel::WARNING,
            logfile: None,
            logfile_level: PyLevel::INFO,
            rotate: false,
            rotation_interval_days: 1,
            backup_count: 7,
        }
    }
}

impl Default for ServerConfig {
    /// academy-py's defaults: `localhost:8700`, 60 s, 512 KiB, no auth;
    /// and ours: metrics on the exchange's port.
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
            redis_cluster: None,
            metrics: true,
            metrics_port: None,
            max_connections: None,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            logger: LoggerConfig::default(),
        }
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(Status::InvalidArgument, msg)
}

/// A TOML error by line, column and key, without the line itself nor the
/// values the parser quotes: the file holds passwords and tokens.
fn toml_error(text: &str, e: &toml::de::Error) -> Error {
    let at = e.span().map(|span| {
        let before = up_to(text, span.start);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        let line_text = text[line_start..].lines().next().unwrap_or("");
        let key = (!among_tokens(before))
            .then(|| toml_key(line_text))
            .flatten()
            .map(|k| format!(" (key {k})"))
            .unwrap_or_default();
        format!(" at line {line}, column {column}{key}")
    });
    let mut message = redact::parser_message(e.message().trim());
    let near_tokens = e
        .span()
        .is_some_and(|span| among_tokens(up_to(text, span.end)))
        || message.contains("tokens");
    if near_tokens {
        // The keys of [auth.kwargs.tokens] are tokens.
        message = message.split('`').step_by(2).collect::<Vec<_>>().join("…");
    }
    invalid(format!("TOML error{}: {message}", at.unwrap_or_default()))
}

/// `text` up to byte `end` (or the character boundary before it).
fn up_to(text: &str, end: usize) -> &str {
    let mut end = end.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Whether TOML text that ends with `before` is inside `[auth.kwargs…]`,
/// whose keys may be tokens.
fn among_tokens(before: &str) -> bool {
    before
        .lines()
        .rev()
        .map(str::trim_start)
        .find(|l| l.starts_with('['))
        .is_some_and(|header| {
            let path: String = header.chars().filter(|c| !" \t[\"'".contains(*c)).collect();
            path.starts_with("auth.kwargs")
        })
}

/// The key a `key = value` line sets (its last dotted part), to name in
/// an error; `None` for a line that sets none.
fn toml_key(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let last = key.trim().rsplit('.').next()?.trim();
    let bare = !last.is_empty()
        && last
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    bare.then_some(last)
}

/// A serde message about the config, without the values it quotes.
fn parser_error(what: &str, e: &serde_json::Error) -> Error {
    invalid(format!(
        "{what}: {}",
        redact::parser_message(&e.to_string())
    ))
}

/// A pydantic `int` in lax mode: an integer, or a float without fraction.
#[derive(Debug, Clone, Copy)]
struct LaxInt(i64);

impl<'de> Deserialize<'de> for LaxInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = LaxInt;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<LaxInt, E> {
                Ok(LaxInt(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<LaxInt, E> {
                i64::try_from(v)
                    .map(LaxInt)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<LaxInt, E> {
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(LaxInt(v as i64))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A `[logger]` level: a name or a number, as `logging.setLevel` takes.
#[derive(Debug, Clone, Copy)]
struct LevelValue(PyLevel);

impl<'de> Deserialize<'de> for LevelValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = LevelValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a level name (DEBUG, INFO, WARNING, ERROR, CRITICAL) or number")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<LevelValue, E> {
                Ok(LevelValue(PyLevel(v)))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<LevelValue, E> {
                Ok(LevelValue(PyLevel(v.min(i64::MAX as u64) as i64)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<LevelValue, E> {
                PyLevel::from_name(v).map(LevelValue).ok_or_else(|| {
                    E::custom(format!(
                        "unknown level {v:?}: use DEBUG, INFO, WARNING, ERROR or CRITICAL (upper case, as Python's logging), or a number"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The file (or JSON options) as written: every key optional, nothing
/// else allowed.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Options {
    host: Option<String>,
    port: Option<LaxInt>,
    certfile: Option<String>,
    keyfile: Option<String>,
    listen_timeout_s: Option<LaxInt>,
    message_size_limit_kb: Option<LaxInt>,
    auth: Option<AuthSection>,
    backend: Option<BackendSection>,
    logger: Option<LoggerSection>,
    metrics: Option<bool>,
    metrics_port: Option<LaxInt>,
    max_connections: Option<LaxInt>,
    body_read_timeout_s: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    method: Option<String>,
    /// academy-py passes these on to the authenticator; read per method.
    kwargs: Option<serde_json::Value>,
}

/// `[auth.kwargs]` of `method = "token"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenKwargs {
    #[serde(default)]
    tokens: BTreeMap<String, TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    client_id: String,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum BackendKind {
    Python,
    Redis,
    #[serde(rename = "redis-cluster")]
    RedisCluster,
}

impl BackendKind {
    fn name(self) -> &'static str {
        match self {
            BackendKind::Python => "python",
            BackendKind::Redis => "redis",
            BackendKind::RedisCluster => "redis-cluster",
        }
    }
}

/// `[backend]`: academy-py's `PythonBackendConfig | RedisBackendConfig`,
/// and ours for a Redis Cluster.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BackendSection {
    kind: Option<BackendKind>,
    message_size_limit_kb: Option<LaxInt>,
    hostname: Option<String>,
    port: Option<LaxInt>,
    mailbox_expiration_d: Option<f64>,
    gravestone_expiration_d: Option<f64>,
    kwargs: Option<RedisKwargs>,
    nodes: Option<Vec<String>>,
    durability: Option<String>,
    durability_timeout_ms: Option<LaxInt>,
}

/// academy-py passes `kwargs` on to `redis.asyncio.Redis`; the connection
/// settings that mean the same here are accepted, anything else is an error
/// rather than silently ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisKwargs {
    db: Option<LaxInt>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoggerSection {
    level: Option<LevelValue>,
    logfile: Option<String>,
    logfile_level: Option<LevelValue>,
    rotate: Option<bool>,
    rotation_interval_days: Option<LaxInt>,
    backup_count: Option<LaxInt>,
}

/// An integer key within `range`, or the error naming it.
fn ranged(key: &str, v: LaxInt, range: std::ops::RangeInclusive<i64>) -> Result<i64> {
    if range.contains(&v.0) {
        Ok(v.0)
    } else {
        Err(invalid(format!(
            "{key}: {} must be between {} and {}",
            v.0,
            range.start(),
            range.end()
        )))
    }
}

fn port(key: &str, v: LaxInt) -> Result<u16> {
    u16::try_from(v.0).map_err(|_| invalid(format!("{key}: {} is not a valid port", v.0)))
}

/// A positive number of days, in whole seconds as academy-py rounds it.
fn days(key: &str, days: f64) -> Result<u64> {
    if !(days > 0.0 && days.is_finite()) {
        return Err(invalid(format!("{key}: {days} must be greater than 0")));
    }
    Ok((days * 86_400.0).min(u64::MAX as f64) as u64)
}

impl Options {
    /// Checks the values and applies them over `config`'s defaults.
    fn apply(self, mut config: ServerConfig) -> Result<ServerConfig> {
        if let Some(h) = self.host {
            config.host = h;
        }
        if let Some(p) = self.port {
            config.port = port("port", p)?;
        }
        config.certfile = self.certfile.map(PathBuf::from);
        config.keyfile = self.keyfile.map(PathBuf::from);
        if config.keyfile.is_some() && config.certfile.is_none() {
            return Err(invalid("keyfile is set but certfile is not"));
        }
        if let Some(t) = self.listen_timeout_s {
            config.listen_timeout_s = ranged("listen_timeout_s", t, 1..=i64::MAX)? as u64;
        }
        let limit_range = 1..=MAX_MESSAGE_SIZE_LIMIT_KB as i64;
        let top_limit = self
            .message_size_limit_kb
            .map(|l| ranged("message_size_limit_kb", l, limit_range.clone()))
            .transpose()?;
        let backend = self.backend.unwrap_or_default();
        let backend_limit = backend
            .message_size_limit_kb
            .map(|l| ranged("backend.message_size_limit_kb", l, limit_range))
            .transpose()?;
        config.message_size_limit_kb = match (top_limit, backend_limit) {
            (Some(a), Some(b)) if a != b => {
                return Err(invalid(format!(
                    "message_size_limit_kb is {a} but backend.message_size_limit_kb is {b}: set it once"
                )))
            }
            (Some(l), _) | (None, Some(l)) => l as u64,
            (None, None) => config.message_size_limit_kb,
        };
        (config.redis, config.redis_cluster) = backend.stores()?;
        if let Some(auth) = self.auth {
            config.auth = auth.config()?;
        }
        if let Some(logger) = self.logger {
            config.logger = logger.config()?;
        }
        if let Some(m) = self.metrics {
            config.metrics = m;
        }
        if let Some(p) = self.metrics_port {
            let p = port("metrics_port", p)?;
            if p != 0 && p == config.port {
                return Err(invalid(format!(
                    "metrics_port: {p} is the exchange's port; leave metrics_port out to serve /metrics there"
                )));
            }
            config.metrics_port = Some(p);
        }
        if let Some(n) = self.max_connections {
            config.max_connections = Some(ranged("max_connections", n, 1..=1_000_000)? as usize);
        }
        if let Some(t) = self.body_read_timeout_s {
            if !(t > 0.0 && t <= 86_400.0) {
                return Err(invalid(format!(
                    "body_read_timeout_s: {t} must be greater than 0 and at most 86400"
                )));
            }
            config.body_read_timeout = Duration::from_secs_f64(t);
        }
        Ok(config)
    }
}

impl BackendSection {
    /// Which backend: `kind`, or as pydantic's union picks when it is left
    /// out (Python's config forbids Redis' keys, so any of them means Redis;
    /// keys only a cluster has mean a cluster).
    fn kind(&self) -> BackendKind {
        let cluster_keys = self.nodes.is_some()
            || self.durability.is_some()
            || self.durability_timeout_ms.is_some();
        let redis_keys = self.hostname.is_some()
            || self.port.is_some()
            || self.mailbox_expiration_d.is_some()
            || self.gravestone_expiration_d.is_some()
            || self.kwargs.is_some();
        match self.kind {
            Some(k) => k,
            None if cluster_keys => BackendKind::RedisCluster,
            None if redis_keys => BackendKind::Redis,
            None => BackendKind::Python,
        }
    }

    /// The keys set that `kind` does not have, as an error.
    fn refuse_foreign_keys(&self, kind: BackendKind) -> Result<()> {
        let keys: [(&str, bool, &[BackendKind]); 8] = [
            ("hostname", self.hostname.is_some(), &[BackendKind::Redis]),
            ("port", self.port.is_some(), &[BackendKind::Redis]),
            (
                "mailbox_expiration_d",
                self.mailbox_expiration_d.is_some(),
                &[BackendKind::Redis, BackendKind::RedisCluster],
            ),
            (
                "gravestone_expiration_d",
                self.gravestone_expiration_d.is_some(),
                &[BackendKind::Redis, BackendKind::RedisCluster],
            ),
            (
                "kwargs",
                self.kwargs.is_some(),
                &[BackendKind::Redis, BackendKind::RedisCluster],
            ),
            ("nodes", self.nodes.is_some(), &[BackendKind::RedisCluster]),
            (
                "durability",
                self.durability.is_some(),
                &[BackendKind::RedisCluster],
            ),
            (
                "durability_timeout_ms",
                self.durability_timeout_ms.is_some(),
                &[BackendKind::RedisCluster],
            ),
        ];
        for (key, set, kinds) in keys {
            if set && !kinds.contains(&kind) {
                let owners: Vec<String> = kinds
                    .iter()
                    .map(|k| format!("kind = \"{}\"", k.name()))
                    .collect();
                let hint = if kind == BackendKind::RedisCluster && key != "nodes" {
                    " (a cluster is reached through nodes = [\"host:port\", ...])"
                } else {
                    ""
                };
                return Err(invalid(format!(
                    "backend.{key}: extra inputs are not permitted with kind = \"{}\" (it is a key of {}){hint}",
                    kind.name(),
                    owners.join(" and ")
                )));
            }
        }
        Ok(())
    }

    /// The Redis or Redis Cluster the section describes, if any.
    fn stores(self) -> Result<(Option<RedisConfig>, Option<RedisClusterConfig>)> {
        let kind = self.kind();
        self.refuse_foreign_keys(kind)?;
        match kind {
            BackendKind::Python => Ok((None, None)),
            BackendKind::Redis => Ok((Some(self.redis()?), None)),
            BackendKind::RedisCluster => Ok((None, Some(self.cluster()?))),
        }
    }

    /// The expirations (mailbox, gravestone) in seconds, academy-py's
    /// defaults where unset.
    fn expirations(&self) -> Result<(u64, u64)> {
        let d = RedisConfig::default();
        let mailbox = match self.mailbox_expiration_d {
            Some(v) => days("backend.mailbox_expiration_d", v)?,
            None => d.mailbox_expiration_s,
        };
        let gravestone = match self.gravestone_expiration_d {
            Some(v) => days("backend.gravestone_expiration_d", v)?,
            None => d.gravestone_expiration_s,
        };
        Ok((mailbox, gravestone))
    }

    fn redis(self) -> Result<RedisConfig> {
        let mut r = RedisConfig::default();
        (r.mailbox_expiration_s, r.gravestone_expiration_s) = self.expirations()?;
        if let Some(h) = self.hostname {
            r.hostname = h;
        }
        if let Some(p) = self.port {
            r.port = port("backend.port", p)?;
        }
        if let Some(k) = self.kwargs {
            if let Some(db) = k.db {
                r.db = db.0;
            }
            r.username = k.username;
            r.password = k.password;
        }
        Ok(r)
    }

    fn cluster(self) -> Result<RedisClusterConfig> {
        let nodes = self.nodes.clone().unwrap_or_default();
        if nodes.is_empty() {
            return Err(invalid(
                "backend.nodes: kind = \"redis-cluster\" needs at least one seed node, as nodes = [\"host:port\", ...]",
            ));
        }
        for node in &nodes {
            let ok = node
                .rsplit_once(':')
                .is_some_and(|(host, p)| !host.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                return Err(invalid(format!("backend.nodes: {node:?} is not host:port")));
            }
        }
        let mut c = RedisClusterConfig::new(nodes);
        (c.mailbox_expiration_s, c.gravestone_expiration_s) = self.expirations()?;
        c.durability = match self.durability.as_deref() {
            None | Some("master") => Durability::Master,
            Some("replica") => Durability::Replica,
            Some(other) => {
                return Err(invalid(format!(
                    "backend.durability: {other:?} is not \"master\" or \"replica\""
                )))
            }
        };
        if let Some(t) = self.durability_timeout_ms {
            c.durability_timeout =
                Duration::from_millis(
                    ranged("backend.durability_timeout_ms", t, 1..=60_000)? as u64
                );
        }
        if let Some(k) = self.kwargs {
            if k.db.is_some_and(|db| db.0 != 0) {
                return Err(invalid(
                    "backend.kwargs.db: a Redis Cluster has only database 0",
                ));
            }
            c.username = k.username;
            c.password = k.password;
        }
        Ok(c)
    }
}

impl AuthSection {
    fn config(self) -> Result<AuthConfig> {
        match self.method.as_deref() {
            None => Ok(AuthConfig::None),
            Some("globus") => Err(invalid(
                "auth.method = \"globus\" is not supported by this server; use method = \"token\" with [auth.kwargs.tokens] (see the documentation of academy::server::config)",
            )),
            Some("token") => {
                let kwargs = self.kwargs.unwrap_or(serde_json::Value::Null);
                let kwargs: TokenKwargs = if kwargs.is_null() {
                    TokenKwargs {
                        tokens: BTreeMap::new(),
                    }
                } else {
                    serde_json::from_value(kwargs).map_err(|e| parser_error("auth.kwargs", &e))?
                };
                let mut tokens = HashMap::new();
                for (token, entry) in kwargs.tokens {
                    if token.is_empty() || token.contains(' ') {
                        return Err(invalid("auth tokens must be non-empty and contain no spaces"));
                    }
                    let info = ClientInfo {
                        client_id: entry.client_id,
                        groups: entry.groups,
                    };
                    tokens.insert(token, info);
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
}

impl LoggerSection {
    fn config(self) -> Result<LoggerConfig> {
        let d = LoggerConfig::default();
        let positive = |key: &str, v: Option<LaxInt>, default: u32| -> Result<u32> {
            match v {
                None => Ok(default),
                Some(v) => Ok(ranged(key, v, 1..=u32::MAX as i64)? as u32),
            }
        };
        Ok(LoggerConfig {
            level: self.level.map_or(d.level, |l| l.0),
            logfile: self.logfile.map(PathBuf::from),
            logfile_level: self.logfile_level.map_or(d.logfile_level, |l| l.0),
            rotate: self.rotate.unwrap_or(d.rotate),
            rotation_interval_days: positive(
                "logger.rotation_interval_days",
                self.rotation_interval_days,
                d.rotation_interval_days,
            )?,
            backup_count: positive("logger.backup_count", self.backup_count, d.backup_count)?,
        })
    }
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
        let options: Options = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        options.apply(ServerConfig::default())
    }

    /// The options of `academy_exchange_spawn(options_json)`: a JSON object
    /// (or NULL / empty / `null` for all defaults) with the keys of the TOML
    /// file (`null` for a key is its default), except `logger`: an exchange
    /// inside a program logs through the library's logging. The defaults
    /// differ in two: `host` is `"127.0.0.1"` and `port` 0 (any free port).
    /// Unknown keys and values of the wrong type are `InvalidArgument`
    /// errors.
    pub fn from_json_options(options: Option<&str>) -> Result<ServerConfig> {
        let defaults = ServerConfig {
            host: "127.0.0.1".to_owned(),
            port: 0,
            ..ServerConfig::default()
        };
        let text = match options {
            Some(t) if !t.trim().is_empty() => t,
            _ => return Ok(defaults),
        };
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| invalid(format!("exchange options are not valid JSON: {e}")))?;
        let options: Options = match value {
            serde_json::Value::Null => return Ok(defaults),
            // From a `Value`, so that only an object is taken (serde would
            // also fill a struct from an array, by position).
            serde_json::Value::Object(_) => {
                serde_json::from_value(value).map_err(|e| parser_error("exchange options", &e))?
            }
            other => {
                return Err(invalid(format!(
                    "exchange options must be a JSON object, not {}",
                    redact::json_type(&other)
                )))
            }
        };
        if options.logger.is_some() {
            return Err(invalid(
                "exchange option logger: an exchange inside a program logs through the library \
                 (academy_set_log_callback or ACADEMY_LOG); [logger] is for the academy-exchange command",
            ));
        }
        options.apply(defaults)
    }
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
        assert_eq!(c.logger, LoggerConfig::default());
        assert_eq!(c.logger.level, PyLevel(30));
        assert!(c.metrics && c.metrics_port.is_none() && c.max_connections.is_none());
        assert_eq!(c.body_read_timeout, Duration::from_secs(60));
    }

    #[test]
    fn full_file() {
        let c = ServerConfig::from_toml_str(
            r#"
host = "0.0.0.0"
port = 1234.0
listen_timeout_s = 5
metrics_port = 1235
max_connections = 100
body_read_timeout_s = 2.5
[backend]
kind = "python"
message_size_limit_kb = 10
[logger]
level = "INFO"
logfile = "/tmp/x/exchange.log"
logfile_level = 10
rotate = true
rotation_interval_days = 2
backup_count = 3
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
        assert_eq!(c.metrics_port, Some(1235));
        assert_eq!(c.max_connections, Some(100));
        assert_eq!(c.body_read_timeout, Duration::from_millis(2500));
        assert_eq!(
            c.logger,
            LoggerConfig {
                level: PyLevel::INFO,
                logfile: Some("/tmp/x/exchange.log".into()),
                logfile_level: PyLevel::DEBUG,
                rotate: true,
                rotation_interval_days: 2,
                backup_count: 3,
            }
        );
        match c.auth {
            AuthConfig::Tokens(t) => {
                assert_eq!(t["abc"].client_id, "alice");
                assert_eq!(t["abc"].groups, ["g"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_values_are_errors_that_name_the_key() {
        for (bad, says) in [
            ("nope = 1", "nope"),
            ("[backend]\nx = 1", "x"),
            ("[auth]\nfoo = 1", "foo"),
            ("[logger]\nx = 1", "x"),
            ("[logger]\nlevel = \"info\"", "upper case"),
            ("[logger]\nlevel = true", "level name"),
            ("[logger]\nbackup_count = 0", "logger.backup_count"),
            ("port = \"x\"", "integer"),
            ("port = 1.5", "integer"),
            ("port = 70000", "port: 70000"),
            ("listen_timeout_s = 0", "listen_timeout_s"),
            (
                "[backend]\nmessage_size_limit_kb = 0",
                "backend.message_size_limit_kb",
            ),
            ("[backend]\nmessage_size_limit_kb = 1048577", "1048576"),
            (
                "message_size_limit_kb = 4\n[backend]\nmessage_size_limit_kb = 5",
                "set it once",
            ),
            ("[backend]\nkind = \"redis\"\nx = 1", "x"),
            (
                "[backend]\nkind = \"redis\"\n[backend.kwargs]\nssl = true",
                "ssl",
            ),
            (
                "[backend]\nkind = \"redis\"\nmailbox_expiration_d = 0",
                "mailbox_expiration_d",
            ),
            ("[backend]\nkind = \"mongo\"", "(key kind): unknown variant"),
            (
                "[backend]\nkind = \"python\"\nhostname = \"h\"",
                "backend.hostname",
            ),
            ("[backend]\nhostname = 5", "hostname"),
            ("[auth]\nmethod = \"globus\"", "globus"),
            ("[auth]\nmethod = \"token\"", "at least one token"),
            (
                "[auth]\nmethod = \"token\"\n[auth.kwargs.tokens.t]\ngroups = []",
                "client_id",
            ),
            (
                "[auth]\nmethod = \"token\"\n[auth.kwargs]\nx = 1",
                "auth.kwargs",
            ),
            ("keyfile = \"k\"", "certfile"),
            ("metrics_port = 8700", "metrics_port"),
            ("max_connections = 0", "max_connections"),
            ("body_read_timeout_s = 0", "body_read_timeout_s"),
            ("metrics = 1", "metrics"),
        ] {
            let e = ServerConfig::from_toml_str(bad).unwrap_err();
            assert_eq!(e.status, Status::InvalidArgument, "{bad}");
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn levels_are_python_names_or_numbers() {
        for (text, level) in [
            ("\"DEBUG\"", 10),
            ("\"WARN\"", 30),
            ("\"CRITICAL\"", 50),
            ("\"NOTSET\"", 0),
            ("25", 25),
        ] {
            let c = ServerConfig::from_toml_str(&format!("[logger]\nlevel = {text}")).unwrap();
            assert_eq!(c.logger.level, PyLevel(level), "{text}");
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
        // As pydantic's union: a key only Redis has picks Redis.
        let c = ServerConfig::from_toml_str("[backend]\nmailbox_expiration_d = 1").unwrap();
        assert_eq!(c.redis.map(|r| r.mailbox_expiration_s), Some(86_400));
        assert!(
            ServerConfig::from_toml_str("[backend]\nmessage_size_limit_kb = 4")
                .unwrap()
                .redis
                .is_none()
        );
        let c = ServerConfig::from_json_options(Some(
            r#"{"backend": {"kind": "redis", "port": 6390}, "message_size_limit_kb": 9}"#,
        ))
        .unwrap();
        assert_eq!(c.redis.map(|r| r.port), Some(6390));
        assert_eq!(c.message_size_limit_kb, 9);
        assert!(ServerConfig::from_json_options(Some(r#"{"backend": 1}"#)).is_err());
    }

    #[test]
    fn redis_cluster_backend() {
        let c = ServerConfig::from_toml_str(
            "[backend]\nkind = \"redis-cluster\"\nnodes = [\"10.0.0.1:7000\", \"h:7001\"]",
        )
        .unwrap();
        assert!(c.redis.is_none());
        let r = c.redis_cluster.unwrap();
        assert_eq!(r.nodes, ["10.0.0.1:7000", "h:7001"]);
        assert_eq!(r.durability, Durability::Master);
        assert_eq!(r.durability_timeout, DEFAULT_DURABILITY_TIMEOUT);
        assert_eq!(r.gravestone_expiration_s, 365 * 86_400);
        let c = ServerConfig::from_toml_str(
            "[backend]\nnodes = [\"h:1\"]\ndurability = \"replica\"\ndurability_timeout_ms = 250\nmailbox_expiration_d = 1\n[backend.kwargs]\nusername = \"u\"\npassword = \"pw\"\ndb = 0",
        )
        .unwrap();
        let r = c.redis_cluster.unwrap();
        assert_eq!(r.durability, Durability::Replica);
        assert_eq!(r.durability_timeout, Duration::from_millis(250));
        assert_eq!(r.mailbox_expiration_s, 86_400);
        assert_eq!(r.username.as_deref(), Some("u"));
        assert!(!format!("{r:?}").contains("pw"));
        let c = ServerConfig::from_json_options(Some(
            r#"{"backend": {"kind": "redis-cluster", "nodes": ["127.0.0.1:7000"], "durability": "replica"}}"#,
        ))
        .unwrap();
        assert_eq!(
            c.redis_cluster.map(|r| r.durability),
            Some(Durability::Replica)
        );
        for (bad, says) in [
            (
                "[backend]\nkind = \"redis-cluster\"",
                "at least one seed node",
            ),
            (
                "[backend]\nkind = \"redis-cluster\"\nnodes = []",
                "at least one seed node",
            ),
            ("[backend]\nnodes = [\"nohost\"]", "not host:port"),
            ("[backend]\nnodes = [\"h:0\"]", "not host:port"),
            ("[backend]\nnodes = [\":7000\"]", "not host:port"),
            (
                "[backend]\nnodes = [\"h:1\"]\nhostname = \"h\"",
                "backend.hostname",
            ),
            (
                "[backend]\nnodes = [\"h:1\"]\nport = 1",
                "nodes = [\"host:port\"",
            ),
            (
                "[backend]\nkind = \"redis\"\nnodes = [\"h:1\"]",
                "backend.nodes",
            ),
            (
                "[backend]\nkind = \"python\"\ndurability = \"replica\"",
                "backend.durability",
            ),
            (
                "[backend]\nnodes = [\"h:1\"]\ndurability = \"all\"",
                "\"all\"",
            ),
            (
                "[backend]\nnodes = [\"h:1\"]\ndurability_timeout_ms = 0",
                "durability_timeout_ms",
            ),
            (
                "[backend]\nnodes = [\"h:1\"]\n[backend.kwargs]\ndb = 2",
                "only database 0",
            ),
            ("[backend]\nkind = \"cluster\"", "cluster"),
        ] {
            let e = ServerConfig::from_toml_str(bad).unwrap_err();
            assert_eq!(e.status, Status::InvalidArgument, "{bad}");
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn one_limit_for_toml_and_json() {
        for text in [
            "message_size_limit_kb = 1048576",
            "[backend]\nmessage_size_limit_kb = 1048576",
        ] {
            let c = ServerConfig::from_toml_str(text).unwrap();
            assert_eq!(c.message_size_limit_kb, 1_048_576, "{text}");
        }
        for text in [
            r#"{"message_size_limit_kb": 1048576}"#,
            r#"{"backend": {"message_size_limit_kb": 1048576}}"#,
        ] {
            let c = ServerConfig::from_json_options(Some(text)).unwrap();
            assert_eq!(c.message_size_limit_kb, 1_048_576, "{text}");
            let over = text.replace("1048576", "1048577");
            assert!(
                ServerConfig::from_json_options(Some(&over)).is_err(),
                "{over}"
            );
        }
    }

    #[test]
    fn json_options() {
        let c = ServerConfig::from_json_options(None).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 0));
        let c = ServerConfig::from_json_options(Some("null")).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 0));
        let c = ServerConfig::from_json_options(Some(
            r#"{"port": 5, "listen_timeout_s": 3.0, "message_size_limit_kb": 7, "host": null, "metrics": false}"#,
        ))
        .unwrap();
        assert_eq!(
            (c.port, c.listen_timeout_s, c.message_size_limit_kb),
            (5, 3, 7)
        );
        assert_eq!(c.host, "127.0.0.1");
        assert!(!c.metrics);
        let c = ServerConfig::from_json_options(Some(
            r#"{"auth": {"method": "token", "kwargs": {"tokens": {"t": {"client_id": "a"}}}}}"#,
        ))
        .unwrap();
        assert!(matches!(c.auth, AuthConfig::Tokens(ref t) if t["t"].client_id == "a"));
        for (bad, says) in [
            (r#"{"x": 1}"#, "unknown field `x`"),
            (r#"{"port": "1"}"#, "integer"),
            ("[1]", "JSON object"),
            ("{", "not valid JSON"),
            (r#"{"port": 70000}"#, "not a valid port"),
            (r#"{"port": -1}"#, "not a valid port"),
            (
                r#"{"logger": {"level": "INFO"}}"#,
                "academy_set_log_callback",
            ),
        ] {
            let e = ServerConfig::from_json_options(Some(bad)).unwrap_err();
            assert_eq!(e.status, Status::InvalidArgument, "{bad}");
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
    }
}
