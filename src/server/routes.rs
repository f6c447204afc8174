//! The HTTP routes of academy-py 1.0.0's `academy.exchange.cloud.app`, with
//! the same status codes, texts and JSON bodies.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;

use crate::server::auth::{AuthError, Authenticator, ClientInfo};
use crate::server::backend::model::{BackendError, Client, MailboxStatus};
use crate::server::backend::Store;
use crate::server::body::{PeerSocket, ServerBody};
use crate::wire::ids::EntityId;
use crate::wire::message::Message;
use crate::wire::pyjson;

/// The answer header that says this exchange drops repeated messages
/// (the same name the client looks for).
const DEDUP_HEADER: &str = "academy-dedup";

pub(crate) struct App {
    pub(crate) store: Store,
    pub(crate) auth: Option<Arc<dyn Authenticator>>,
    pub(crate) listen_timeout_s: u64,
    pub(crate) body_limit: usize,
}

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
pub(crate) struct Fail(u16, String);

fn fail(code: u16, body: impl Into<String>) -> Fail {
    Fail(code, body.into())
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
    ("/mailbox/listen", "GET,HEAD"),
    ("/mailbox/heartbeat", "GET,HEAD,POST"),
    ("/mailbox/stats", "GET,HEAD"),
];

/// Bytes of a too-large request body read (and dropped) before the 413 is
/// sent: a server that answers and closes with the body unread makes the
/// kernel reset the connection, and the client may lose the answer; reading
/// it to the end lets the client see the 413 whatever the size (academy-py
/// answers 413 at every size). Past this, the 413 goes with
/// `connection: close`.
const DRAIN_LIMIT: u64 = 256 * 1024 * 1024;
/// How long the rest of a too-large body may take to arrive.
const DRAIN_TIME: Duration = Duration::from_secs(30);

/// Answers one request; every answer of an exchange that drops repeated
/// messages says so (`academy-dedup: tag`), so that clients may send again
/// a message whose answer they never got.
pub(crate) async fn handle(app: &Arc<App>, req: Request<Incoming>) -> Resp {
    let mut response = answer(app, req).await;
    if app.store.drops_repeats() {
        response
            .headers_mut()
            .insert(DEDUP_HEADER, HeaderValue::from_static("tag"));
    }
    response
}

/// The whole request body, or the answer to give instead: a 413 once it
/// passes `limit` (the rest read and dropped, see [`DRAIN_LIMIT`]).
async fn read_body(body: Incoming, declared: Option<u64>, limit: usize) -> Result<Bytes, Resp> {
    let too_large = || text(413, format!("Maximum request body size {limit} exceeded."));
    let mut body = body;
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(drain(body, too_large()).await);
    }
    let mut data = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => return Err(text(400, format!("Could not read the request body: {e}"))),
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
async fn drain(mut body: Incoming, mut answer: Resp) -> Resp {
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
    if !drained {
        answer
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    answer
}

async fn answer(app: &Arc<App>, req: Request<Incoming>) -> Resp {
    // Authentication first, for every request (an aiohttp middleware).
    let info = match &app.auth {
        None => ClientInfo::default(),
        Some(auth) => match auth.authenticate(req.headers()) {
            Ok(info) => info,
            Err(AuthError::Unauthorized) => return text(401, "Missing required headers."),
            Err(AuthError::Forbidden) => return text(403, "Token expired or revoked."),
        },
    };
    let path = req.uri().path();
    let Some(&(route, allow)) = ROUTES.iter().find(|(p, _)| *p == path) else {
        return text(404, "404: Not Found");
    };
    let peer = req.extensions().get::<PeerSocket>().copied();
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
        return r;
    }

    // Every body is JSON, also on GET and DELETE.
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bytes = match read_body(req.into_body(), declared, app.body_limit).await {
        Ok(bytes) => bytes,
        Err(answer) => return answer,
    };
    // academy-py answers 500 (an uncaught JSONDecodeError) here; a 400 is
    // the honest answer and is not retried by clients.
    let data: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return text(
                400,
                format!("Missing or invalid field: the body is not valid JSON ({e})"),
            )
        }
    };
    let ctx = Ctx {
        app,
        client: Client::from_info(&info),
        data,
    };
    let result = match (route, m) {
        ("/mailbox", Method::POST) => create(&ctx).await,
        ("/mailbox", Method::GET) => check(&ctx).await,
        ("/mailbox", Method::DELETE) => terminate(&ctx).await,
        ("/mailbox/share", Method::POST) => share(&ctx).await,
        ("/mailbox/share", Method::GET) => shares(&ctx).await,
        ("/mailbox/share", Method::DELETE) => unshare(&ctx).await,
        ("/message", Method::PUT) => send(&ctx).await,
        ("/message", Method::GET) => recv(&ctx).await,
        ("/discover", Method::GET) => discover(&ctx).await,
        ("/mailbox/listen", Method::GET) => listen(&ctx, peer).await,
        ("/mailbox/heartbeat", Method::POST) => heartbeat(&ctx).await,
        ("/mailbox/heartbeat", Method::GET) => heartbeat_status(&ctx).await,
        ("/mailbox/stats", Method::GET) => stats(&ctx).await,
        _ => Err(fail(405, "405: Method Not Allowed")),
    };
    result.unwrap_or_else(|Fail(code, body)| text(code, body))
}

type R = Result<Resp, Fail>;

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
    ctx.store()
        .put(&ctx.client, &message)
        .await
        .map_err(backend_error)?;
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
    let body = store
        .listen(&ctx.client, &id, timeout, peer)
        .await
        .map_err(backend_error)?;
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
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
