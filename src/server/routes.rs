//! The HTTP routes of academy-py 1.0.0's `academy.exchange.cloud.app`, with
//! the same status codes, texts and JSON bodies; and ours for operations:
//! `GET /health` and `GET /metrics`. Each request is timed for the metrics
//! and gets an access line in the log (target `academy::access`): debug for
//! `PUT /message`, info for the rest, a warning for an answer that points
//! at trouble (any status of 400 or more except the ordinary outcomes 404,
//! 408 and 419).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::error::clip;
use crate::server::auth::{AuthError, Authenticator, ClientInfo};
use crate::server::backend::model::{BackendError, Client, MailboxStatus};
use crate::server::backend::Store;
use crate::server::body::{PeerSocket, ServerBody};
use crate::server::listen_stop::ListenStops;
use crate::server::metrics::{self, Metrics};
use crate::wire::headers::{DEDUP_HEADER, LISTEN_ID_HEADER};
use crate::wire::ids::EntityId;
use crate::wire::message::Message;
use crate::wire::pyjson;

pub(crate) struct App {
    pub(crate) store: Store,
    pub(crate) auth: Option<Arc<dyn Authenticator>>,
    pub(crate) listen_timeout_s: u64,
    pub(crate) body_limit: usize,
    /// A request's body must arrive within this.
    pub(crate) body_read_timeout: Duration,
    pub(crate) metrics: Option<Arc<Metrics>>,
    /// `/metrics` is served on the exchange's port (there is no
    /// `metrics_port`).
    pub(crate) metrics_on_main: bool,
    /// Open listen streams, which their clients may end.
    pub(crate) listen_stops: Arc<ListenStops>,
}

/// The connection a request came on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    pub(crate) socket: PeerSocket,
    pub(crate) addr: SocketAddr,
    /// A connection to the metrics port: only `/metrics` and `/health`.
    pub(crate) metrics_port: bool,
}

/// The log target of access lines.
const ACCESS: &str = "academy::access";

type Resp = Response<ServerBody>;

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn text(code: u16, body: impl Into<String>) -> Resp {
    let mut r = Response::new(ServerBody::full(body.into()));
    *r.status_mut() = status(code);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT));
    r
}

fn ok() -> Resp {
    Response::new(ServerBody::empty())
}

fn json(body: String) -> Resp {
    let mut r = Response::new(ServerBody::full(body));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    r
}

/// An error answer (a small value; turned into a response at the end).
pub(crate) struct Fail {
    code: u16,
    text: String,
    /// Close the connection after the answer (a body not read to its end).
    close: bool,
}

fn fail(code: u16, body: impl Into<String>) -> Fail {
    Fail {
        code,
        text: body.into(),
        close: false,
    }
}

fn key_error(key: &str) -> Fail {
    fail(400, format!("Missing or invalid field: '{key}'"))
}

fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn py_value(v: &Value) -> String {
    match v {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        other => other.to_string(),
    }
}

/// A pydantic `ValidationError` as academy-py's routes answer it.
fn validation_error(model: &str, detail: &str) -> Fail {
    fail(
        400,
        format!("Missing or invalid field: 1 validation error for {model}\n  {detail}"),
    )
}

fn not_a_string(model: &str, v: &Value) -> Fail {
    validation_error(
        model,
        &format!(
            "JSON input should be string, bytes or bytearray [type=json_type, input_value={}, input_type={}]",
            py_value(v),
            py_type(v)
        ),
    )
}

fn backend_error(e: BackendError) -> Fail {
    match e {
        BackendError::BadEntityId => fail(404, "Unknown mailbox ID"),
        BackendError::Forbidden => fail(403, "Incorrect permissions"),
        BackendError::Terminated => fail(419, "Mailbox was closed"),
        BackendError::TooLarge { size, limit } => fail(
            413,
            format!("Message of size {size} larger than limit {limit}."),
        ),
        BackendError::Timeout => fail(408, "Request timeout"),
        BackendError::ShuttingDown => fail(503, "Exchange is shutting down"),
        BackendError::KeyError(k) => fail(400, format!("Missing or invalid field: {k}")),
        BackendError::Unavailable(why) => fail(503, format!("Exchange backend unavailable: {why}")),
    }
}

struct Ctx<'a> {
    app: &'a App,
    client: Client,
    data: Value,
}

impl Ctx<'_> {
    fn store(&self) -> &Store {
        &self.app.store
    }

    fn field(&self, key: &str) -> Result<&Value, Fail> {
        self.data.get(key).ok_or_else(|| key_error(key))
    }

    fn id(&self, key: &str) -> Result<EntityId, Fail> {
        let v = self.field(key)?;
        let s = v
            .as_str()
            .ok_or_else(|| not_a_string("union[AgentId,UserId]", v))?;
        EntityId::from_json(s).map_err(|e| {
            validation_error(
                "union[AgentId,UserId]",
                &format!("{} [input_value={}]", e.message, pyjson::dumps(v)),
            )
        })
    }

    fn mailbox(&self) -> Result<EntityId, Fail> {
        self.id("mailbox")
    }

    /// The `timeout` of recv and listen: 0 < t <= listen_timeout_s.
    fn timeout(&self) -> Result<Duration, Fail> {
        let max = self.app.listen_timeout_s;
        let t = match self.data.get("timeout") {
            None => Some(max as f64),
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::Bool(b)) => Some(if *b { 1.0 } else { 0.0 }),
            Some(_) => None,
        };
        match t {
            Some(t) if t > 0.0 && t <= max as f64 => Ok(Duration::from_secs_f64(t)),
            _ => Err(fail(
                400,
                format!("Invalid timeout (must be less than {max} and greater than 0)"),
            )),
        }
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

const ROUTES: &[(&str, &str)] = &[
    ("/mailbox", "DELETE,GET,HEAD,POST"),
    ("/mailbox/share", "DELETE,GET,HEAD,POST"),
    ("/message", "GET,HEAD,PUT"),
    ("/discover", "GET,HEAD"),
    ("/mailbox/listen", "DELETE,GET,HEAD"),
    ("/mailbox/heartbeat", "GET,HEAD,POST"),
    ("/mailbox/stats", "GET,HEAD"),
];

/// Every endpoint, (method, path); a request's index here labels its
/// metrics. The last stands for every other request.
pub(crate) const ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/mailbox"),
    ("GET", "/mailbox"),
    ("DELETE", "/mailbox"),
    ("POST", "/mailbox/share"),
    ("GET", "/mailbox/share"),
    ("DELETE", "/mailbox/share"),
    ("PUT", "/message"),
    ("GET", "/message"),
    ("GET", "/discover"),
    ("GET", "/mailbox/listen"),
    ("DELETE", "/mailbox/listen"),
    ("POST", "/mailbox/heartbeat"),
    ("GET", "/mailbox/heartbeat"),
    ("GET", "/mailbox/stats"),
    ("GET", "/metrics"),
    ("GET", "/health"),
    ("other", "other"),
];
const OTHER: usize = ENDPOINTS.len() - 1;
const PUT_MESSAGE: usize = 6;

/// The index in [`ENDPOINTS`] of a request (HEAD counts as GET).
fn endpoint(method: &Method, path: &str) -> usize {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ENDPOINTS
        .iter()
        .position(|&(m, p)| m == method && p == path)
        .unwrap_or(OTHER)
}

/// Whether a status is one of the ordinary outcomes of the protocol rather
/// than trouble: a mailbox unknown (404) or terminated (419), a receive
/// that timed out (408).
fn ordinary(status: u16) -> bool {
    status < 400 || matches!(status, 404 | 408 | 419)
}

/// Answers a request, then counts it and writes its access line.
pub(crate) async fn handle(app: &Arc<App>, req: Request<Incoming>, peer: Peer) -> Resp {
    let start = Instant::now();
    let route = endpoint(req.method(), req.uri().path());
    let method = req.method().clone();
    // Known paths are logged by their static name; others as sent.
    let other_path = (route == OTHER).then(|| clip_path(req.uri().path()));
    let path = other_path.as_deref().unwrap_or(ENDPOINTS[route].1);
    let (response, error) = match answer(app, req, peer).await {
        Ok(r) => (r, None),
        Err(f) => {
            let mut r = text(f.code, f.text.as_str());
            if f.close {
                r.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            (r, Some(f))
        }
    };
    let answered = Answered {
        route,
        method: &method,
        path,
        addr: peer.addr,
        status: response.status().as_u16(),
        took: start.elapsed(),
        why: error.as_ref().map_or("", |f| f.text.as_str()),
        closed: error.as_ref().is_some_and(|f| f.close),
    };
    note(app.metrics.as_deref(), &answered);
    // An exchange that drops repeated messages says so on every answer
    // (`academy-dedup: tag`), so that clients may send again a message
    // whose answer they never got.
    let mut response = response;
    if app.store.drops_repeats() {
        response
            .headers_mut()
            .insert(DEDUP_HEADER, HeaderValue::from_static("tag"));
    }
    response
}

/// An answered request, as the metrics and the access line see it.
pub(crate) struct Answered<'a> {
    /// Its index in [`ENDPOINTS`].
    pub(crate) route: usize,
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) addr: SocketAddr,
    pub(crate) status: u16,
    pub(crate) took: Duration,
    /// The text of an error answer of ours; else "".
    pub(crate) why: &'a str,
    /// The connection is closed after it (a body not read to its end).
    pub(crate) closed: bool,
}

/// Counts an answered request and writes its access line.
pub(crate) fn note(metrics: Option<&Metrics>, a: &Answered<'_>) {
    if let Some(m) = metrics {
        m.request(a.route, a.status, a.took);
    }
    let Answered {
        method,
        path,
        addr,
        status,
        why,
        ..
    } = a;
    let ms = a.took.as_secs_f64() * 1000.0;
    if !ordinary(*status) || a.closed {
        tracing::warn!(
            target: ACCESS,
            "{addr} \"{method} {path}\" {status} {ms:.3} ms{}",
            if why.is_empty() { String::new() } else { format!(": {}", clip(why)) }
        );
    } else if a.route == PUT_MESSAGE {
        tracing::debug!(target: ACCESS, "{addr} \"{method} {path}\" {status} {ms:.3} ms");
    } else {
        tracing::info!(target: ACCESS, "{addr} \"{method} {path}\" {status} {ms:.3} ms");
    }
}

/// What the bookkeeping of one `PUT /message` costs (the route lookup, the
/// clock, the metrics with `metrics`, the access line at the level this
/// process logs at): nanoseconds per request over `requests`.
pub(crate) fn bookkeeping_ns(requests: u32, metrics: bool) -> f64 {
    let m = metrics.then(|| Metrics::new(ENDPOINTS, 1000));
    let addr = SocketAddr::from(([127, 0, 0, 1], 40000));
    let put = Method::PUT;
    let start = Instant::now();
    for _ in 0..requests {
        let began = Instant::now();
        let route = endpoint(std::hint::black_box(&put), std::hint::black_box("/message"));
        let answered = Answered {
            route,
            method: &put,
            path: ENDPOINTS[route].1,
            addr,
            status: 200,
            took: began.elapsed(),
            why: "",
            closed: false,
        };
        note(m.as_ref(), std::hint::black_box(&answered));
        if let Some(m) = &m {
            m.accepted.inc();
        }
    }
    start.elapsed().as_nanos() as f64 / f64::from(requests.max(1))
}

/// A path as sent, cut to at most 200 bytes (URI paths are ASCII).
fn clip_path(path: &str) -> String {
    match path.get(..200) {
        Some(head) if path.len() > 200 => format!("{head}…"),
        _ => path.to_owned(),
    }
}

/// The 405 answer to anything but GET (and HEAD) on the operations
/// endpoints.
fn unless_get(method: &Method) -> Option<Resp> {
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    let mut r = text(405, "405: Method Not Allowed");
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET,HEAD"));
    Some(r)
}

async fn answer(app: &Arc<App>, req: Request<Incoming>, peer: Peer) -> R {
    let path = req.uri().path();
    // For probes and load balancers: no credentials, nothing secret.
    if path == "/health" {
        if let Some(r) = unless_get(req.method()) {
            return Ok(r);
        }
        return health(app).await;
    }
    let serves_metrics = app.metrics.is_some() && (peer.metrics_port || app.metrics_on_main);
    if peer.metrics_port && !(path == "/metrics" && serves_metrics) {
        return Err(fail(404, "404: Not Found"));
    }
    // Authentication first, for every other request (an aiohttp
    // middleware).
    /// Bytes of a too-large request body read (and dropped) before the 413 is
    /// sent: a server that answers and closes with the body unread makes the
    /// kernel reset the connection, and the client may lose the answer; reading
    /// it to the end lets the client see the 413 whatever the size (academy-py
    /// answers 413 at every size). Past this, the 413 goes with
    /// `connection: close`.
    const DRAIN_LIMIT: u64 = 256 * 1024 * 1024;
    /// How long the rest of a too-large body may take to arrive.
    const DRAIN_TIME: Duration = Duration::from_secs(30);

    /// The whole request body, or the answer to give instead: a 413 once it
    /// passes the limit (the rest read and dropped, see [`DRAIN_LIMIT`]), a 408
    /// (closing the connection) when it takes longer than `body_read_timeout_s`.
    async fn read_body(
        app: &App,
        mut body: Incoming,
        declared: Option<u64>,
    ) -> Result<Bytes, Fail> {
        let limit = app.body_limit;
        let too_large = || fail(413, format!("Maximum request body size {limit} exceeded."));
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(drain(body, too_large()).await);
        }
        let deadline = tokio::time::Instant::now() + app.body_read_timeout;
        let mut data = Vec::new();
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(None) => break,
                Ok(Some(Ok(frame))) => frame,
                Ok(Some(Err(e))) => {
                    return Err(fail(400, format!("Could not read the request body: {e}")))
                }
                Err(_) => {
                    return Err(Fail {
                        code: 408,
                        text: format!(
                            "Timed out reading the request body (body_read_timeout_s = {})",
                            app.body_read_timeout.as_secs_f64()
                        ),
                        close: true,
                    })
                }
            };
            if let Ok(chunk) = frame.into_data() {
                if data.len() + chunk.len() > limit {
                    return Err(drain(body, too_large()).await);
                }
                data.extend_from_slice(&chunk);
            }
        }
        Ok(Bytes::from(data))
    }

    /// Reads the rest of a body and drops it, then gives `answer` (which
    /// closes the connection if the body could not be read to its end).
    async fn drain(mut body: Incoming, mut answer: Fail) -> Fail {
        let rest = async {
            let mut read = 0u64;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        read += frame.data_ref().map_or(0, |d| d.len() as u64);
                        if read > DRAIN_LIMIT {
                            return false;
                        }
                    }
                    Err(_) => return false,
                }
            }
            true
        };
        let drained = matches!(tokio::time::timeout(DRAIN_TIME, rest).await, Ok(true));
        answer.close |= !drained;
        answer
    }

    let info = match &app.auth {
        None => ClientInfo::default(),
        Some(auth) => match auth.authenticate(req.headers()) {
            Ok(info) => info,
            Err(AuthError::Unauthorized) => return Err(fail(401, "Missing required headers.")),
            Err(AuthError::Forbidden) => return Err(fail(403, "Token expired or revoked.")),
        },
    };
    if path == "/metrics" && serves_metrics {
        if let Some(r) = unless_get(req.method()) {
            return Ok(r);
        }
        return Ok(scrape(app).await);
    }
    let Some(&(route, allow)) = ROUTES.iter().find(|(p, _)| *p == path) else {
        return Err(fail(404, "404: Not Found"));
    };
    let method = req.method().clone();
    let m = if method == Method::HEAD {
        Method::GET
    } else {
        method.clone()
    };
    let allowed = allow.split(',').any(|a| a == m.as_str());
    if !allowed {
        let mut r = text(405, "405: Method Not Allowed");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
        return Ok(r);
    }

    // Every body is JSON, also on GET and DELETE.
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bytes = read_body(app, req.into_body(), declared).await?;
    // academy-py answers 500 (an uncaught JSONDecodeError) here; a 400 is
    // the honest answer and is not retried by clients.
    let data: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return Err(fail(
                400,
                format!("Missing or invalid field: the body is not valid JSON ({e})"),
            ))
        }
    };
    let ctx = Ctx {
        app,
        client: Client::from_info(&info),
        data,
    };
    match (route, m) {
        ("/mailbox", Method::POST) => create(&ctx).await,
        ("/mailbox", Method::GET) => check(&ctx).await,
        ("/mailbox", Method::DELETE) => terminate(&ctx).await,
        ("/mailbox/share", Method::POST) => share(&ctx).await,
        ("/mailbox/share", Method::GET) => shares(&ctx).await,
        ("/mailbox/share", Method::DELETE) => unshare(&ctx).await,
        ("/message", Method::PUT) => send(&ctx).await,
        ("/message", Method::GET) => recv(&ctx).await,
        ("/discover", Method::GET) => discover(&ctx).await,
        ("/mailbox/listen", Method::GET) => listen(&ctx, Some(peer.socket)).await,
        ("/mailbox/listen", Method::DELETE) => end_listen(&ctx).await,
        ("/mailbox/heartbeat", Method::POST) => heartbeat(&ctx).await,
        ("/mailbox/heartbeat", Method::GET) => heartbeat_status(&ctx).await,
        ("/mailbox/stats", Method::GET) => stats(&ctx).await,
        _ => Err(fail(405, "405: Method Not Allowed")),
    }
}

type R = Result<Resp, Fail>;

/// `GET /health`: 200 when the exchange serves and its Redis (if any)
/// answers ("degraded" when some of a cluster's slots cannot be served);
/// 503 when Redis does not answer, or the server is stopping.
async fn health(app: &App) -> R {
    let kind = app.store.kind();
    let (code, body) = if app.store.stopping() {
        (
            503,
            serde_json::json!({"status": "stopping", "backend": kind}),
        )
    } else {
        match app.store.check_health().await {
            Ok(h) => {
                let status = if h.whole { "ok" } else { "degraded" };
                let mut body = serde_json::json!({"status": status, "backend": kind});
                if let Some(t) = h.round_trip {
                    body["redis_round_trip_s"] = t.as_secs_f64().into();
                }
                if let Some(c) = h.cluster {
                    body["cluster"] = c;
                }
                (200, body)
            }
            Err(e) => {
                let why = match e {
                    BackendError::Unavailable(why) => why,
                    other => format!("{other:?}"),
                };
                (
                    503,
                    serde_json::json!({"status": "unavailable", "backend": kind, "error": why}),
                )
            }
        }
    };
    let mut r = json(body.to_string());
    *r.status_mut() = status(code);
    Ok(r)
}

/// `GET /metrics`: the Prometheus text, with the mailboxes counted now.
async fn scrape(app: &App) -> Resp {
    let Some(m) = &app.metrics else {
        return text(404, "404: Not Found");
    };
    let counts = match app.store.mailbox_counts().await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("metrics: cannot count the mailboxes: {e:?}");
            None
        }
    };
    let mut r = Response::new(ServerBody::full(m.encode(counts)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    r
}

async fn create(ctx: &Ctx<'_>) -> R {
    let id = ctx.mailbox()?;
    let agent = match ctx.data.get("agent") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.split(',').map(str::to_owned).collect()),
        Some(other) => {
            return Err(fail(
                400,
                format!("Missing or invalid field: agent must be a string, got {other}"),
            ))
        }
    };
    ctx.store()
        .create_mailbox(&ctx.client, &id, agent)
        .await
        .map_err(backend_error)?;
    Ok(ok())
}

async fn check(ctx: &Ctx<'_>) -> R {
    let id = ctx.mailbox()?;
    let status = ctx
        .store()
        .check_mailbox(&ctx.client, &id)
        .await
        .map_err(backend_error)?;
    Ok(json(format!("{{\"status\": \"{}\"}}", status.as_str())))
}

async fn terminate(ctx: &Ctx<'_>) -> R {
    let id = ctx.mailbox()?;
    ctx.store()
        .terminate(&ctx.client, &id)
        .await
        .map_err(backend_error)?;
    Ok(ok())
}

fn group_id<'c>(ctx: &'c Ctx) -> Result<Option<&'c str>, Fail> {
    Ok(ctx.field("group_id")?.as_str())
}

async fn share(ctx: &Ctx<'_>) -> R {
    let id = ctx.mailbox()?;
    let group = group_id(ctx)?;
    let store = ctx.store();
    match group {
        Some(g) => store.share_mailbox(&ctx.client, &id, g).await,
        // Not a string: never one of the client's groups.
        None => store
            .get_mailbox_shares(&ctx.client, &id)
            .await
            .and(Err(BackendError::Forbidden)),
    }
    .map_err(backend_error)?;
    Ok(ok())
}

async fn shares(ctx: &Ctx<'_>) -> R {
    let id = ctx.mailbox()?;
    let groups = ctx
        .store()
        .get_mailbox_shares(&ctx.client, &id)
        .await
        .map_err(backend_error)?;
    let list = Value::Array(groups.into_iter().map(Value::String).collect());
    Ok(json(format!("{{\"group_ids\": {}}}", pyjson::dumps(&list))))
}

async fn unshare(ctx: &Ctx<'_>) -> R {
    let id = ctx.mailbox()?;
    let group = group_id(ctx)?;
    ctx.store()
        .remove_mailbox_shares(&ctx.client, &id, group)
        .await
        .map_err(backend_error)?;
    Ok(ok())
}

async fn send(ctx: &Ctx<'_>) -> R {
    let raw = ctx.data.get("message").unwrap_or(&Value::Null);
    let Some(raw) = raw.as_str() else {
        return Err(not_a_string("Message", raw));
    };
    // Any body is relayed, as academy-py's exchange does (its `Message`
    // skips validating the body): a peer of a later protocol version must
    // get its message through to be answered that it is incompatible.
    let message =
        Message::from_json_any_body(raw).map_err(|e| validation_error("Message", &e.message))?;
    // A receiver putting back what it took and did not hand out (an
    // extension of ours; academy-py's exchange ignores the field and
    // queues the message at the tail).
    if ctx.data.get("requeue").is_some_and(truthy) {
        ctx.store()
            .requeue(&ctx.client, &message)
            .await
            .map_err(backend_error)?;
        return Ok(ok());
    }
    ctx.store()
        .put(&ctx.client, &message)
        .await
        .map_err(backend_error)?;
    if let Some(m) = &ctx.app.metrics {
        m.accepted.inc();
    }
    Ok(ok())
}

async fn recv(ctx: &Ctx<'_>) -> R {
    let id = ctx.mailbox()?;
    let timeout = ctx.timeout()?;
    let message = ctx
        .store()
        .get(&ctx.client, &id, timeout)
        .await
        .map_err(backend_error)?;
    if let Some(m) = &ctx.app.metrics {
        m.delivered.inc();
    }
    let mut out = String::with_capacity(message.len() + message.len() / 4 + 16);
    out.push_str("{\"message\": ");
    out.push_str(&pyjson::dumps(&Value::String(message)));
    out.push('}');
    Ok(json(out))
}

async fn discover(ctx: &Ctx<'_>) -> R {
    let agent = ctx.field("agent")?;
    let allow_subclasses = truthy(ctx.field("allow_subclasses")?);
    let ids = match agent.as_str() {
        Some(agent) => ctx
            .store()
            .discover(&ctx.client, agent, allow_subclasses)
            .await
            .map_err(backend_error)?,
        None => Vec::new(),
    };
    let joined = ids
        .iter()
        .map(|u| u.to_string())
        .collect::<Vec<_>>()
        .join(",");
    Ok(json(format!("{{\"agent_ids\": \"{joined}\"}}")))
}

async fn listen(ctx: &Ctx<'_>, peer: Option<PeerSocket>) -> R {
    let id = ctx.mailbox()?;
    let timeout = ctx.timeout()?;
    let store = ctx.store();
    match store
        .check_mailbox(&ctx.client, &id)
        .await
        .map_err(backend_error)?
    {
        MailboxStatus::Missing => return Err(fail(404, "Unknown mailbox ID")),
        MailboxStatus::Terminated => return Err(fail(419, "Mailbox was closed")),
        MailboxStatus::Active => {}
    }
    let stop = ctx.app.listen_stops.open(&id);
    let name = HeaderValue::from_str(&stop.id().to_string()).map_err(|_| fail(500, "bad id"))?;
    let body = store
        .listen(&ctx.client, &id, timeout, peer, stop)
        .await
        .map_err(backend_error)?;
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(LISTEN_ID_HEADER, name);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

/// `DELETE /mailbox/listen` (ours; see [`crate::server::listen_stop`]):
/// ends the listen stream `listen_id` of `mailbox` once it has written
/// what it took. 200 also when the stream has ended already.
async fn end_listen(ctx: &Ctx<'_>) -> R {
    let id = ctx.mailbox()?;
    let raw = ctx.field("listen_id")?;
    let name = raw
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| fail(400, format!("listen_id is not a stream's id: {raw}")))?;
    // Only a client that may receive from the mailbox may end its stream.
    if ctx
        .store()
        .check_mailbox(&ctx.client, &id)
        .await
        .map_err(backend_error)?
        == MailboxStatus::Missing
    {
        return Err(fail(404, "Unknown mailbox ID"));
    }
    ctx.app.listen_stops.stop(&id, name);
    Ok(ok())
}

async fn heartbeat(ctx: &Ctx<'_>) -> R {
    let id = ctx.mailbox()?;
    ctx.store()
        .update_heartbeat(&ctx.client, &id)
        .await
        .map_err(backend_error)?;
    Ok(ok())
}

async fn heartbeat_status(ctx: &Ctx<'_>) -> R {
    let id = ctx.mailbox()?;
    let age = ctx
        .store()
        .heartbeat_status(&ctx.client, &id)
        .await
        .map_err(backend_error)?;
    let age = age.map_or_else(|| "null".to_owned(), pyjson::float);
    Ok(json(format!("{{\"heartbeat\": {age}}}")))
}

async fn stats(ctx: &Ctx<'_>) -> R {
    let id = ctx.mailbox()?;
    let s = ctx
        .store()
        .agent_stats(&ctx.client, &id)
        .await
        .map_err(backend_error)?;
    Ok(json(format!(
        "{{\"incoming\": {}, \"outgoing\": {}, \"completed\": {}, \"in_progress\": {}, \"queued\": {}}}",
        s.incoming, s.outgoing, s.completed, s.in_progress, s.queued
    )))
}
