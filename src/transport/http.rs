//! The HTTP transport to an Academy exchange (`HttpExchangeTransport` of
//! academy-py): one request path that every endpoint goes through, with
//! retries on transient failures (exponential back-off with full jitter
//! and a cap, or the server's `Retry-After`), one refresh of the auth
//! headers on 403 (and before the token expires), and one mapping of HTTP
//! statuses to errors.
//!
//! Once only: a `PUT /message` that may have reached the exchange (all of
//! it was written, and no answer came) is sent again only to an exchange
//! that drops repeated messages (it says so with the `academy-dedup`
//! header, as libacademy's in-memory exchange does) or when the factory
//! option `resend_unacknowledged` asks for it; otherwise the send fails
//! with an error that says the message may or may not have been delivered.
//! Every other request is safe to repeat.
//!
//! Each attempt goes out through [`crate::transport::http1`] (plain `http://`: on the
//! caller's own thread when it is blocked in the library, else on the
//! runtime) or through reqwest (listen streams, TLS, proxies, Globus).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::{clip, Error, Result, Status};
use crate::options::{AuthMethod, FactoryOptions};
use crate::redact;
use crate::runtime;
use crate::transport::auth;
use crate::transport::http1;
use crate::transport::mailbox::MailboxStatus;
use crate::transport::url_login;
use crate::wire::headers::DEDUP_HEADER;
use crate::wire::ids::EntityId;
use crate::wire::message::ACADEMY_COMPAT_VERSION;

/// A heartbeat older than this many intervals makes a mailbox INACTIVE
/// (academy-py's `stale_heartbeat_threshold`).
const STALE_HEARTBEATS: f64 = 3.0;
/// Statuses academy-py retries (`TRANSIENT_STATUSES`).
const TRANSIENT: [u16; 5] = [429, 500, 502, 503, 504];
/// How much of a server's error text goes into an error message.
const MAX_ERROR_TEXT: usize = 400;
/// The longest wait between two tries (the back-off doubles up to this).
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured; a server that asks for more gets
/// the failure reported instead of a caller blocked for that long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// What the exchange has said about dropping repeated messages.
const DEDUP_UNKNOWN: u8 = 0;
const DEDUP_YES: u8 = 1;
/// Sticky: one answer without the header, and resends stay off (several
/// exchanges may serve one URL, not all of them ours).
const DEDUP_NO: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    fn as_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// The kinds of request, which differ in how long they may take and how
/// their answer is waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bounded by the factory's `request_timeout_s`.
    Plain,
    /// A plain request whose caller then waits for a reply from an agent:
    /// a blocked caller polls for the answer before sleeping
    /// (`FactoryOptions::busy_poll`).
    BeforeReply,
    /// A plain request made in the background on the library's runtime
    /// (a send nobody waits on): pipelined with the others of its kind.
    Background,
    /// A long poll: the factory's timeout plus this much server-side
    /// waiting.
    LongPoll(Duration),
    /// A listen stream: an event-stream answer, no bound on its life.
    Stream,
}

/// A connection to one exchange, shared by the clients of one factory.
#[derive(Debug)]
pub struct HttpTransport {
    http: reqwest::Client,
    base: String,
    /// `base` parsed once: every request's URL is this with its path set,
    /// since parsing the whole URL (host included) was a fifth of the
    /// instructions of a send.
    base_url: reqwest::Url,
    options: FactoryOptions,
    /// Authorization headers (Globus); fetched before the first request,
    /// again before the token expires, and when the exchange answers 403.
    auth: RwLock<auth::Token>,
    /// One refresh at a time (the others wait for it and use its token).
    refreshing: tokio::sync::Mutex<()>,
    /// Whether the exchange drops repeated messages (`DEDUP_*`).
    dedup: AtomicU8,
    /// Set once the server turned out to have no `POST /mailbox/heartbeat`
    /// (academy-py < 1.0): heartbeat ages then say nothing about liveness.
    lacks_heartbeats: AtomicBool,
    /// Set once the server turned out to have no `GET /mailbox/listen`
    /// (academy-py < 1.0): clients then long-poll `GET /message`.
    pub(crate) lacks_sse: AtomicBool,
    /// The timeout asked of listen streams and long polls, in ms: the
    /// request timeout, or the server's maximum if that is less.
    pub(crate) listen_timeout_ms: AtomicU64,
    /// Set once a listen stream came from our exchange, which ends listen
    /// streams on request and takes messages back at a queue's head.
    pub(crate) takes_back: AtomicBool,
    /// Connections of the direct path (callers blocked in the library make
    /// their requests on their own thread; the runtime's requests and the
    /// pipelined background sends use tokio sockets); `None` where only
    /// reqwest may connect.
    direct: Option<http1::Pool>,
}

/// An answer to a request: a reqwest response (which may still be
/// streaming), or one read in full by [`crate::transport::http1`].
#[derive(Debug)]
pub enum Reply {
    Streamed(reqwest::Response),
    Read(http1::Answer),
}

impl Reply {
    pub fn status(&self) -> u16 {
        match self {
            Reply::Streamed(r) => r.status().as_u16(),
            Reply::Read(a) => a.status,
        }
    }

    /// The server's `Retry-After`, if it sent one.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Reply::Read(a) => a.retry_after,
            Reply::Streamed(r) => r
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| http1::answer::retry_after(v.as_bytes())),
        }
    }

    /// Whether the exchange says that it drops repeated messages.
    fn dedups(&self) -> bool {
        match self {
            Reply::Read(a) => a.dedups,
            Reply::Streamed(r) => r
                .headers()
                .get(DEDUP_HEADER)
                .is_some_and(|v| http1::answer::has_token(v.as_bytes(), "tag")),
        }
    }

    /// The whole body.
    async fn bytes(self, method: Method, path: &str) -> Result<Vec<u8>> {
        match self {
            Reply::Read(a) => Ok(a.body),
            Reply::Streamed(r) => r.bytes().await.map(|b| b.to_vec()).map_err(|e| {
                Error::new(
                    Status::Connection,
                    format!(
                        "{} {path}: reading the answer failed: {}",
                        method.as_str(),
                        describe(&e)
                    ),
                )
            }),
        }
    }

    /// The response of a stream (listen requests always go through
    /// reqwest).
    fn into_stream(self) -> Result<reqwest::Response> {
        match self {
            Reply::Streamed(r) => Ok(r),
            Reply::Read(_) => Err(Error::internal("a stream was read in full")),
        }
    }
}

/// A failed attempt at a request, whether to try again, and whether the
/// exchange may have acted on it.
struct Failed {
    transient: bool,
    reach: http1::Reach,
    error: Error,
}

fn header_map(headers: &std::collections::BTreeMap<String, String>) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| Error::invalid(format!("invalid header name {k:?}")))?;
        let mut value = HeaderValue::from_str(v)
            .map_err(|_| Error::invalid(format!("invalid value for header {k:?}")))?;
        // Any of them may carry a credential: never shown by Debug.
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// The error chain of a reqwest error, in one line (never headers).
fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

impl HttpTransport {
    /// A transport to the exchange at `url` (`http://` or `https://`).
    pub fn new(url: &str, options: FactoryOptions) -> Result<Self> {
        let mut parsed = reqwest::Url::parse(url.trim_end_matches('/')).map_err(|e| {
            Error::invalid(format!("bad exchange URL {}: {e}", clip(&redact::url(url))))
        })?;
        // Sent as a header (as aiohttp does), never printed.
        let url_login = url_login::take(&mut parsed)?;
        let base = parsed.as_str().trim_end_matches('/').to_owned();
        let https = match parsed.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(Error::invalid(format!(
                    "exchange URL scheme must be http or https, not {}",
                    clip(other)
                )))
            }
        };
        let mut defaults = HeaderMap::new();
        defaults.insert(
            "academy_version",
            HeaderValue::from_static(ACADEMY_COMPAT_VERSION),
        );
        let additional = header_map(&options.additional_headers)?;
        defaults.extend(additional);
        // An Authorization of additional_headers, or Globus tokens, win
        // over the URL's (academy-py refuses the combination: aiohttp
        // raises ValueError on every request).
        let explicit = options
            .additional_headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("authorization"))
            || options.auth_method == AuthMethod::Globus;
        if let Some(login) = url_login.filter(|_| !explicit) {
            defaults.insert(reqwest::header::AUTHORIZATION, login);
        }
        let fixed_headers: Vec<(String, String)> = defaults
            .iter()
            .map(|(k, v)| {
                let value = v.to_str().map(str::to_owned).unwrap_or_default();
                (k.as_str().to_owned(), value)
            })
            .collect();

        // TLS trusts the system's roots (and SSL_CERT_FILE / SSL_CERT_DIR)
        // besides the bundled Mozilla roots; a ca_file adds to them. Plain
        // http does not read the system's store (it takes milliseconds).
        let mut builder = reqwest::Client::builder()
            .default_headers(defaults)
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .tls_built_in_native_certs(https);
        let verify = options.ssl_verify.unwrap_or(https);
        if !verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(path) = &options.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| Error::invalid(format!("cannot read ca_file {}: {e}", clip(path))))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::invalid(format!(
                    "ca_file {} holds no PEM certificates: {e}",
                    clip(path)
                ))
            })?;
            if certs.is_empty() {
                return Err(Error::invalid(format!(
                    "ca_file {} holds no PEM certificates",
                    clip(path)
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| {
            Error::invalid(format!("cannot set up the HTTP client: {}", describe(&e)))
        })?;
        let direct = http1::Pool::new(&parsed, &fixed_headers, options.connect_timeout);
        let listen_timeout_ms = options.request_timeout.as_millis().max(1) as u64;
        let mut transport = HttpTransport {
            http,
            base_url: parsed.clone(),
            base,
            options,
            auth: RwLock::new(auth::Token::default()),
            refreshing: tokio::sync::Mutex::new(()),
            dedup: AtomicU8::new(DEDUP_UNKNOWN),
            lacks_heartbeats: AtomicBool::new(false),
            lacks_sse: AtomicBool::new(false),
            listen_timeout_ms: AtomicU64::new(listen_timeout_ms),
            takes_back: AtomicBool::new(false),
            direct,
        };
        if transport.uses_globus() {
            auth::client_credentials()?; // fail at creation, not at first use
            transport.direct = None; // tokens come and go: reqwest only
            tracing::debug!("fast path off: Globus auth goes through reqwest");
        }
        Ok(transport)
    }

    /// Whether the server has no heartbeat endpoint (found out by use).
    pub fn lacks_heartbeats(&self) -> bool {
        self.lacks_heartbeats.load(Ordering::Relaxed)
    }

    /// The exchange's URL, without any `user:password@` it was given with.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The URL of an endpoint: the base URL's path followed by `path`.
    fn endpoint(&self, path: &str) -> reqwest::Url {
        let mut url = self.base_url.clone();
        let full = format!("{}{}", self.base_url.path().trim_end_matches('/'), path);
        url.set_path(&full);
        url
    }

    pub fn options(&self) -> &FactoryOptions {
        &self.options
    }

    /// The one request path: sends `body` as JSON, retries transient
    /// failures (a request that may have reached the exchange only if it
    /// may be repeated, see the module's notes), refreshes auth on 403 and
    /// before the token expires, and maps any non-2xx answer to an
    /// [`Error`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        kind: Kind,
    ) -> Result<Reply> {
        let url = self.endpoint(path);
        let payload = serde_json::to_vec(body).expect("JSON values serialize");
        let mut backoff = self.backoff();
        let mut may_refresh = self.uses_globus();
        if may_refresh && self.auth_due() {
            self.refresh_auth(None).await?;
        }
        loop {
            let repeatable = self.repeatable(method, path);
            let outcome = self
                .attempt(method, path, &url, &payload, kind, repeatable)
                .await;
            let retry = match &outcome {
                Ok(r) => {
                    let code = r.status();
                    if (200..300).contains(&code) {
                        self.note_dedup(r.dedups());
                    }
                    // 429 and 503 say the request was not acted on.
                    TRANSIENT.contains(&code) && (repeatable || code == 429 || code == 503)
                }
                Err(f) => f.transient && (repeatable || f.reach == http1::Reach::NotSent),
            };
            if retry {
                let server_wait = outcome.as_ref().ok().and_then(Reply::retry_after);
                if let Some(wait) = next_wait(&mut backoff, server_wait) {
                    tracing::debug!(
                        "{}; retrying in {wait:?}",
                        match &outcome {
                            Ok(r) => format!("answer {}", r.status()),
                            Err(f) => f.error.message.clone(),
                        }
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            let response = outcome.map_err(|f| self.unacknowledged(f, repeatable))?;
            let code = response.status();
            if code == 403 && may_refresh {
                may_refresh = false;
                let stale = self.auth.read().unwrap_or_else(|p| p.into_inner()).serial;
                if self.refresh_auth(Some(stale)).await? {
                    continue;
                }
            }
            if (200..300).contains(&code) {
                return Ok(response);
            }
            let retry_after = response.retry_after();
            let text = response.bytes(method, path).await.unwrap_or_default();
            let mut error = http_error(method, path, code, &String::from_utf8_lossy(&text));
            if TRANSIENT.contains(&code) && !repeatable && !(code == 429 || code == 503) {
                error.message.push_str(UNACKNOWLEDGED);
            }
            if let Some(wait) = retry_after.filter(|w| *w > MAX_RETRY_AFTER) {
                error.message.push_str(&format!(
                    " (the exchange asked to try again after {} s, longer than libacademy waits)",
                    wait.as_secs()
                ));
            }
            return Err(error);
        }
    }

    /// The waits between tries: exponential from the factory's initial
    /// back-off, capped, as many as the factory's retries.
    fn backoff(&self) -> backon::ExponentialBackoff {
        use backon::BackoffBuilder;
        backon::ExponentialBuilder::default()
            .with_min_delay(self.options.initial_retry_backoff)
            .with_factor(2.0)
            .with_max_delay(MAX_BACKOFF.max(self.options.initial_retry_backoff))
            .with_max_times(self.options.retries as usize)
            .build()
    }

    /// Whether this request may be sent again after it may have reached
    /// the exchange: anything but a `PUT /message`, which only if the
    /// exchange drops repeats or the factory says to resend.
    fn repeatable(&self, method: Method, path: &str) -> bool {
        !(method == Method::Put && path == "/message")
            || self.options.resend_unacknowledged
            || self.dedup.load(Ordering::Relaxed) == DEDUP_YES
    }

    /// Learns from a successful answer whether the exchange drops
    /// repeated messages.
    fn note_dedup(&self, dedups: bool) {
        if !dedups {
            self.dedup.store(DEDUP_NO, Ordering::Relaxed);
        } else {
            let _ = self.dedup.compare_exchange(
                DEDUP_UNKNOWN,
                DEDUP_YES,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// The error of a failed request; for one that may have reached the
    /// exchange and was not sent again, it says so.
    fn unacknowledged(&self, failed: Failed, repeatable: bool) -> Error {
        let mut error = failed.error;
        if failed.reach == http1::Reach::Unknown && !repeatable {
            error.message.push_str(UNACKNOWLEDGED);
        }
        error
    }

    /// One try at a request: through [`crate::transport::http1`] where it may go (on
    /// the caller's own thread when that thread is blocked in the library),
    /// else through reqwest.
    async fn attempt(
        &self,
        method: Method,
        path: &str,
        url: &reqwest::Url,
        payload: &[u8],
        kind: Kind,
        resend: bool,
    ) -> std::result::Result<Reply, Failed> {
        let timeout = match kind {
            Kind::Plain | Kind::BeforeReply | Kind::Background => {
                Some(self.options.request_timeout)
            }
            Kind::LongPoll(extra) => Some(self.options.request_timeout + extra),
            Kind::Stream => None,
        };
        let accept_sse = kind == Kind::Stream;
        if let Some(pool) = self.direct.as_ref().filter(|_| !accept_sse) {
            let (verb, target) = (method.as_str(), url.path());
            // The pool's tokio sockets belong to the library's runtime;
            // futures of a caller's own runtime go through reqwest.
            let answer = if runtime::on_blocked_caller() {
                let poll = match kind {
                    Kind::BeforeReply => self.options.busy_poll,
                    _ => Duration::ZERO,
                };
                Some(pool.request_blocking(verb, target, payload, timeout, poll, resend))
            } else if runtime::on_library_thread() && kind == Kind::Background {
                Some(
                    pool.request_pipelined(verb, target, payload, timeout, resend)
                        .await,
                )
            } else if runtime::on_library_thread() {
                Some(pool.request(verb, target, payload, timeout, resend).await)
            } else {
                None
            };
            if let Some(answer) = answer {
                return answer
                    .map(Reply::Read)
                    .map_err(|f| self.direct_failure(method, path, f));
            }
        }
        let mut request = self
            .http
            .request(method.as_reqwest(), url.clone())
            .header(CONTENT_TYPE, "application/json")
            .headers(
                self.auth
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .headers
                    .clone(),
            )
            .body(payload.to_vec());
        if accept_sse {
            request = request
                .header(ACCEPT, "text/event-stream")
                .header(CACHE_CONTROL, "no-cache");
        }
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        request
            .send()
            .await
            .map(Reply::Streamed)
            .map_err(|e| Failed {
                transient: e.is_connect() || e.is_timeout() || e.is_request() || e.is_body(),
                // reqwest (hyper) sends again by itself only requests it
                // never wrote; a failed connect wrote nothing.
                reach: if e.is_connect() {
                    http1::Reach::NotSent
                } else {
                    http1::Reach::Unknown
                },
                error: self.connection_error(method, path, e.is_timeout(), &describe(&e)),
            })
    }

    fn direct_failure(&self, method: Method, path: &str, attempt: http1::Attempt) -> Failed {
        let http1::Attempt { failure, reach } = attempt;
        let (transient, error) = match failure {
            http1::Failure::Protocol(_) => (
                false,
                Error::protocol(format!(
                    "{} {}{path}: {failure}",
                    method.as_str(),
                    self.base
                )),
            ),
            http1::Failure::Timeout => (
                true,
                self.connection_error(method, path, true, &failure.to_string()),
            ),
            http1::Failure::Connect(_) | http1::Failure::Io(_) => (
                true,
                self.connection_error(method, path, false, &failure.to_string()),
            ),
        };
        Failed {
            transient,
            reach,
            error,
        }
    }

    /// [`call`](Self::call) for an endpoint whose answer has no body.
    async fn call_ok(&self, method: Method, path: &str, body: &Value) -> Result<()> {
        self.call(method, path, body, Kind::Plain).await.map(drop)
    }

    /// [`call`](Self::call) and read the answer as JSON.
    pub async fn call_json(&self, method: Method, path: &str, body: &Value) -> Result<Value> {
        let response = self.call(method, path, body, Kind::Plain).await?;
        read_json(method, path, response).await
    }

    fn connection_error(&self, method: Method, path: &str, timeout: bool, why: &str) -> Error {
        let (status, what) = if timeout {
            (Status::Timeout, "did not answer in time")
        } else {
            (Status::Connection, "could not be reached")
        };
        Error::new(
            status,
            format!(
                "{} {}{}: the exchange {what}: {why}",
                method.as_str(),
                self.base,
                path,
            ),
        )
    }

    /// Globus auth applies unless the caller gave an Authorization header
    /// (academy-py's factory makes the same choice).
    fn uses_globus(&self) -> bool {
        self.options.auth_method == AuthMethod::Globus
            && !self
                .options
                .additional_headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("authorization"))
    }

    /// Whether the Globus token is missing or about to expire.
    fn auth_due(&self) -> bool {
        self.auth
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .due(Instant::now())
    }

    /// Gets a new Globus token, once for all the requests that ask at the
    /// same time: `stale` is the serial of the token a 403 refused (a
    /// refresh since then is enough), `None` a refresh because it is due.
    async fn refresh_auth(&self, stale: Option<u64>) -> Result<bool> {
        if !self.uses_globus() {
            return Ok(false);
        }
        let _one = self.refreshing.lock().await;
        let serial = {
            let token = self.auth.read().unwrap_or_else(|p| p.into_inner());
            let fresh = match stale {
                Some(s) => token.serial != s,
                None => !token.due(Instant::now()),
            };
            if fresh {
                return Ok(true);
            }
            token.serial
        };
        let mut token = auth::globus_token(&self.http, &self.options.globus_token_url).await?;
        token.serial = serial + 1;
        *self.auth.write().unwrap_or_else(|p| p.into_inner()) = token;
        Ok(true)
    }

    // ---- endpoints: one line each on top of `call` ----

    /// `POST /mailbox`: register a user or (with its class MRO) an agent.
    pub async fn create_mailbox(&self, id: &EntityId, agent_mro: Option<&str>) -> Result<()> {
        let mut body = json!({"mailbox": id.to_json()});
        if let Some(mro) = agent_mro {
            body["agent"] = Value::String(mro.to_owned());
        }
        self.call_ok(Method::Post, "/mailbox", &body).await
    }

    /// `GET /mailbox`: MISSING, ACTIVE or TERMINATED as the server stores it.
    pub async fn mailbox_status(&self, id: &EntityId) -> Result<MailboxStatus> {
        let answer = self
            .call_json(Method::Get, "/mailbox", &mailbox_body(id))
            .await?;
        match answer.get("status").and_then(Value::as_str) {
            Some("MISSING") => Ok(MailboxStatus::Missing),
            Some("ACTIVE") => Ok(MailboxStatus::Active),
            Some("INACTIVE") => Ok(MailboxStatus::Inactive),
            Some("TERMINATED") => Ok(MailboxStatus::Terminated),
            _ => Err(Error::protocol(format!("GET /mailbox answered {answer}"))),
        }
    }

    /// The status of a mailbox as academy-py's client derives it: from the
    /// heartbeat age (ACTIVE while younger than 3 intervals), or from
    /// `GET /mailbox` on servers that take no heartbeats.
    pub async fn status(&self, id: &EntityId) -> Result<MailboxStatus> {
        if self.lacks_heartbeats() {
            return self.mailbox_status(id).await;
        }
        let stale = self.options.heartbeat_interval.as_secs_f64() * STALE_HEARTBEATS;
        match self.heartbeat_status(id).await {
            Ok(Some(age)) if age < stale => Ok(MailboxStatus::Active),
            Ok(_) => Ok(MailboxStatus::Inactive),
            Err(e) if e.status == Status::BadEntityId => Ok(MailboxStatus::Missing),
            Err(e) if e.status == Status::MailboxTerminated => Ok(MailboxStatus::Terminated),
            Err(e) if e.is_missing_endpoint() => self.mailbox_status(id).await,
            Err(e) => Err(e),
        }
    }

    /// `DELETE /mailbox` (a no-op for unknown or terminated mailboxes).
    pub async fn terminate(&self, id: &EntityId) -> Result<()> {
        self.call_ok(Method::Delete, "/mailbox", &mailbox_body(id))
            .await
    }

    /// `PUT /message` with the message JSON as given.
    pub async fn send(&self, message_json: &str) -> Result<()> {
        self.put_message(message_json, Kind::Plain).await
    }

    /// [`send`](Self::send) for a request whose caller then waits for the
    /// answer: a blocked caller polls for the exchange's acknowledgement
    /// before sleeping, as it will for the answer (see
    /// `FactoryOptions::busy_poll`).
    pub async fn send_request(&self, message_json: &str) -> Result<()> {
        self.put_message(message_json, Kind::BeforeReply).await
    }

    /// [`send`](Self::send) for a send made in the background: pipelined
    /// with the others on one connection where the direct path may go.
    pub async fn send_background(&self, message_json: &str) -> Result<()> {
        self.put_message(message_json, Kind::Background).await
    }

    async fn put_message(&self, message_json: &str, kind: Kind) -> Result<()> {
        let body = json!({"message": message_json});
        self.call(Method::Put, "/message", &body, kind)
            .await
            .map(drop)
    }

    /// `GET /message`: long poll; `None` when the server says 408.
    pub async fn poll_message(&self, id: &EntityId, timeout: Duration) -> Result<Option<String>> {
        let body = json!({"mailbox": id.to_json(), "timeout": timeout.as_secs_f64()});
        let response = match self
            .call(Method::Get, "/message", &body, Kind::LongPoll(timeout))
            .await
        {
            Err(e) if e.status == Status::Timeout && e.http_status() == Some(408) => {
                return Ok(None)
            }
            other => other?,
        };
        let answer = read_json(Method::Get, "/message", response).await?;
        match answer.get("message").and_then(Value::as_str) {
            Some(m) => Ok(Some(m.to_owned())),
            None => Err(Error::protocol(format!(
                "GET /message answered without a message: {answer}"
            ))),
        }
    }

    /// `GET /mailbox/listen`: opens the event stream.
    pub async fn listen(&self, id: &EntityId, timeout: Duration) -> Result<reqwest::Response> {
        let body = json!({"mailbox": id.to_json(), "timeout": timeout.as_secs_f64()});
        self.call(Method::Get, "/mailbox/listen", &body, Kind::Stream)
            .await?
            .into_stream()
    }

    /// `GET /discover`: uids of the agents of a class.
    pub async fn discover(&self, agent: &str, allow_subclasses: bool) -> Result<Vec<Uuid>> {
        let body = json!({"agent": agent, "allow_subclasses": allow_subclasses});
        let answer = self.call_json(Method::Get, "/discover", &body).await?;
        let ids = answer
            .get("agent_ids")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::protocol(format!("GET /discover answered {answer}")))?;
        ids.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                Uuid::parse_str(s).map_err(|e| {
                    Error::protocol(format!("GET /discover returned a bad uid {s:?}: {e}"))
                })
            })
            .collect()
    }

    /// `POST /mailbox/heartbeat`.
    pub async fn heartbeat(&self, id: &EntityId) -> Result<()> {
        let sent = self
            .call_ok(Method::Post, "/mailbox/heartbeat", &mailbox_body(id))
            .await;
        if matches!(&sent, Err(e) if e.is_missing_endpoint()) {
            self.lacks_heartbeats.store(true, Ordering::Relaxed);
        }
        sent
    }

    /// `GET /mailbox/heartbeat`: seconds since the last heartbeat, if any.
    pub async fn heartbeat_status(&self, id: &EntityId) -> Result<Option<f64>> {
        let answer = self
            .call_json(Method::Get, "/mailbox/heartbeat", &mailbox_body(id))
            .await?;
        match answer.get("heartbeat") {
            Some(Value::Null) => Ok(None),
            Some(v) if v.is_number() => Ok(v.as_f64()),
            _ => Err(Error::protocol(format!(
                "GET /mailbox/heartbeat answered {answer}"
            ))),
        }
    }

    /// `GET /mailbox/stats`: the exchange's counters for an agent.
    pub async fn agent_stats(&self, id: &EntityId) -> Result<Value> {
        let answer = self
            .call_json(Method::Get, "/mailbox/stats", &mailbox_body(id))
            .await?;
        if !answer.is_object() {
            return Err(Error::protocol(format!(
                "GET /mailbox/stats answered {answer}"
            )));
        }
        Ok(answer)
    }

    /// `POST /mailbox/share`.
    pub async fn share_mailbox(&self, id: &EntityId, group_id: &str) -> Result<()> {
        let body = json!({"mailbox": id.to_json(), "group_id": group_id});
        self.call_ok(Method::Post, "/mailbox/share", &body).await
    }

    /// `GET /mailbox/share`: the groups a mailbox is shared with.
    pub async fn shared_groups(&self, id: &EntityId) -> Result<Vec<String>> {
        let answer = self
            .call_json(Method::Get, "/mailbox/share", &mailbox_body(id))
            .await?;
        serde_json::from_value(answer.get("group_ids").cloned().unwrap_or(Value::Null))
            .map_err(|_| Error::protocol(format!("GET /mailbox/share answered {answer}")))
    }

    /// `DELETE /mailbox/share`.
    pub async fn unshare_mailbox(&self, id: &EntityId, group_id: &str) -> Result<()> {
        let body = json!({"mailbox": id.to_json(), "group_id": group_id});
        self.call_ok(Method::Delete, "/mailbox/share", &body).await
    }
}

/// Said of a request that may have reached the exchange and was not sent
/// again (so that a message is never delivered twice).
const UNACKNOWLEDGED: &str = "; the exchange may or may not have delivered the message: it was \
     not sent again, since this exchange does not say that it drops repeated messages (set the \
     factory option resend_unacknowledged to send it again anyway)";

/// The wait before the next try: full jitter (a random time up to the
/// back-off, so that clients failed by one outage do not retry in step),
/// but at least what the server asked for with `Retry-After`. `None`: no
/// tries left, or the server asked for more than [`MAX_RETRY_AFTER`].
fn next_wait(
    backoff: &mut backon::ExponentialBackoff,
    server_wait: Option<Duration>,
) -> Option<Duration> {
    let ceiling = backoff.next()?;
    let jittered = ceiling.mul_f64(unit_random());
    match server_wait {
        Some(wait) if wait > MAX_RETRY_AFTER => None,
        Some(wait) => Some(wait.max(jittered)),
        None => Some(jittered),
    }
}

/// A random number in [0, 1).
fn unit_random() -> f64 {
    // The low 53 bits of a v4 uuid are all random.
    let bits = crate::wire::ids::random_uuid().as_u128() as u64 & ((1 << 53) - 1);
    bits as f64 / (1u64 << 53) as f64
}

fn mailbox_body(id: &EntityId) -> Value {
    json!({"mailbox": id.to_json()})
}

async fn read_json(method: Method, path: &str, response: Reply) -> Result<Value> {
    let bytes = response.bytes(method, path).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::protocol(format!(
            "{} {path} answered something that is not JSON: {e}",
            method.as_str()
        ))
    })
}

/// The error for a non-2xx answer. A 404 or 405 that is not the exchange's
/// "Unknown mailbox ID" means the server lacks the endpoint (academy-py
/// 0.3 to 0.5 have no listen, heartbeat or stats routes).
fn http_error(method: Method, path: &str, code: u16, text: &str) -> Error {
    let mut text = text.trim().to_owned();
    if text.len() > MAX_ERROR_TEXT {
        let mut cut = MAX_ERROR_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    let missing_endpoint = (code == 404 && text != "Unknown mailbox ID") || code == 405;
    let status = if missing_endpoint {
        Status::Protocol
    } else {
        Status::from_http(code)
    };
    let detail = if missing_endpoint {
        format!(
            "{} {path}: the exchange does not implement this endpoint (HTTP {code}: {text}); it may be an older academy-py server",
            method.as_str()
        )
    } else {
        format!("{} {path}: HTTP {code}: {text}", method.as_str())
    };
    Error::new(status, detail).with_http_status(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in server answering every request on a connection with 200.
    fn answers_200() -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while s.read(&mut buf).is_ok_and(|n| n > 0) {
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if s.write_all(answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        url
    }

    #[test]
    fn only_the_librarys_runtime_keeps_tokio_connections() {
        let transport = std::sync::Arc::new(
            HttpTransport::new(&answers_200(), FactoryOptions::default()).unwrap(),
        );
        let pool = transport.direct.as_ref().expect("a plain http URL");
        // A runtime of the caller's: its sockets are driven only while it
        // runs, so none may stay in the pool for the library's tasks.
        let own = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        own.block_on(transport.send("{}")).unwrap();
        assert!(
            pool.nonblocking.is_empty(),
            "a caller's runtime left a connection"
        );
        // The library's runtime keeps its connections.
        let t = transport.clone();
        runtime::handle()
            .unwrap()
            .block_on(async move { tokio::spawn(async move { t.send("{}").await }).await })
            .unwrap()
            .unwrap();
        assert!(
            !pool.nonblocking.is_empty(),
            "the library's runtime kept none"
        );
    }

    #[test]
    fn endpoints_keep_the_base_path() {
        for (base, want) in [
            ("http://127.0.0.1:8700", "http://127.0.0.1:8700/message"),
            ("http://127.0.0.1:8700/", "http://127.0.0.1:8700/message"),
            (
                "https://example.org/academy/",
                "https://example.org/academy/message",
            ),
            ("http://[::1]:5/a/b", "http://[::1]:5/a/b/message"),
        ] {
            let t = HttpTransport::new(base, FactoryOptions::default()).unwrap();
            assert_eq!(t.endpoint("/message").as_str(), want, "{base}");
        }
    }

    #[test]
    fn maps_statuses_like_academy_py() {
        for (code, text, status) in [
            (400, "Missing or invalid field", Status::BadRequest),
            (401, "Missing required headers.", Status::Unauthorized),
            (403, "Incorrect permissions", Status::Forbidden),
            (404, "Unknown mailbox ID", Status::BadEntityId),
            (404, "404: Not Found", Status::Protocol),
            (405, "405: Method Not Allowed", Status::Protocol),
            (408, "Request timeout", Status::Timeout),
            (
                413,
                "Message of size 2 larger than limit 1.",
                Status::MessageTooLarge,
            ),
            (419, "Mailbox was closed", Status::MailboxTerminated),
            (500, "oops", Status::Http),
        ] {
            let err = http_error(Method::Get, "/x", code, text);
            assert_eq!(err.status, status, "{code} {text}");
            assert!(err.message.contains(text), "{}", err.message);
            assert_eq!(err.http_status(), Some(code));
        }
    }

    #[test]
    fn rejects_bad_urls() {
        for url in ["", "ftp://x", "not a url"] {
            assert_eq!(
                HttpTransport::new(url, FactoryOptions::default())
                    .unwrap_err()
                    .status,
                Status::InvalidArgument
            );
        }
    }
}
