//! The embedded exchange server (`academy::server`) against academy-py
//! 1.0.0's own server (`python -m academy.exchange.cloud`), driven with raw
//! HTTP through the same code; plus tests of what only ours does.
//!
//! The Python interpreter (with academy-py 1.0.0 installed) comes from
//! `ACADEMY_TEST_PYTHON` (tests/common/procs.rs); the tests fail (never
//! skip) without one.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use academy::server::{ExchangeServer, ServerConfig};
use academy::Status;
use common::{free_port, python, self_signed, spawn_guarded, PyExchange};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

const LISTEN_TIMEOUT_S: u64 = 5;
const LIMIT_KB: u64 = 1;

// ---------------------------------------------------------------- helpers

/// academy-py's server with the same settings as ours.
fn start_python_server() -> PyExchange {
    PyExchange::start_config(
        &python(),
        free_port(),
        &format!("listen_timeout_s = {LISTEN_TIMEOUT_S}\n[backend]\nmessage_size_limit_kb = {LIMIT_KB}\n"),
    )
}

fn temp_dir() -> PathBuf {
    common::temp_dir("server-wire")
}

async fn start_rust_server() -> ExchangeServer {
    let config = ServerConfig::from_json_options(Some(
        &json!({"listen_timeout_s": LISTEN_TIMEOUT_S, "message_size_limit_kb": LIMIT_KB})
            .to_string(),
    ))
    .unwrap();
    ExchangeServer::start(config).await.unwrap()
}

#[derive(Clone)]
struct Target {
    name: &'static str,
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Target {
    fn new(name: &'static str, base: String) -> Target {
        Target {
            name,
            base,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            token: None,
        }
    }

    fn with_token(&self, token: &str) -> Target {
        Target {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    fn request(&self, method: &str, path: &str, body: &Value) -> reqwest::RequestBuilder {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = &self.token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r
    }

    /// (status, body text).
    async fn call(&self, method: &str, path: &str, body: Value) -> (u16, String) {
        let r = self.request(method, path, &body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }

    async fn raw(&self, method: &str, path: &str, body: &'static str) -> (u16, String) {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }
}

fn user(name: Option<&str>) -> Value {
    json!({"uid": Uuid::new_v4().to_string(), "name": name, "role": "user"})
}

fn agent(name: Option<&str>) -> Value {
    json!({"uid": Uuid::new_v4().to_string(), "name": name, "role": "agent"})
}

/// An id as it travels: a JSON string holding the id's JSON.
fn enc(id: &Value) -> String {
    id.to_string()
}

/// A message in pydantic's field order, so both servers echo it verbatim.
fn request_msg(src: &Value, dest: &Value, tag: Uuid, body: Value) -> String {
    json!({
        "header": {"src": src, "dest": dest, "tag": tag.to_string(), "label": null,
                   "kind": "request", "protocol_version": "1.1", "academy_version": "1.0.0"},
        "body": body,
    })
    .to_string()
}

fn response_msg(src: &Value, dest: &Value, tag: Uuid) -> String {
    json!({
        "header": {"src": src, "dest": dest, "tag": tag.to_string(), "label": null,
                   "kind": "response", "protocol_version": "1.1", "academy_version": "1.0.0"},
        "body": {"kind": "success-response"},
    })
    .to_string()
}

fn ping() -> Value {
    json!({"kind": "ping-request"})
}

/// What one scenario saw, one line per call, compared across servers.
#[derive(Default)]
struct Log(Vec<String>);

impl Log {
    fn add(&mut self, label: &str, (status, body): (u16, String)) {
        self.0.push(format!("{label}: {status} {body}"));
    }

    fn note(&mut self, line: String) {
        self.0.push(line);
    }
}

// -------------------------------------------------- scenarios for both servers

struct Ids {
    user: Value,
    agent: Value,
    other: Value,
    unknown: Value,
    class: String,
    tags: Vec<Uuid>,
}

impl Ids {
    fn new() -> Ids {
        Ids {
            // A non-ASCII name: the message travels ensure_ascii-escaped.
            user: user(Some("ré's")),
            agent: agent(Some("calc")),
            other: agent(None),
            unknown: agent(None),
            class: format!("test_{}", Uuid::new_v4().simple()),
            tags: (0..8).map(|_| Uuid::new_v4()).collect(),
        }
    }
}

async fn lifecycle(t: &Target, ids: &Ids) -> Log {
    let mut log = Log::default();
    let (u, a, x) = (enc(&ids.user), enc(&ids.agent), enc(&ids.unknown));
    log.add(
        "status unknown",
        t.call("GET", "/mailbox", json!({"mailbox": x})).await,
    );
    log.add(
        "create user",
        t.call("POST", "/mailbox", json!({"mailbox": u})).await,
    );
    log.add(
        "create agent",
        t.call(
            "POST",
            "/mailbox",
            json!({"mailbox": a, "agent": format!("{}.A,base.B", ids.class)}),
        )
        .await,
    );
    log.add(
        "create again",
        t.call("POST", "/mailbox", json!({"mailbox": u})).await,
    );
    log.add(
        "status user",
        t.call("GET", "/mailbox", json!({"mailbox": u})).await,
    );
    log.add(
        "status agent",
        t.call("GET", "/mailbox", json!({"mailbox": a})).await,
    );
    log.add(
        "terminate agent",
        t.call("DELETE", "/mailbox", json!({"mailbox": a})).await,
    );
    log.add(
        "status terminated",
        t.call("GET", "/mailbox", json!({"mailbox": a})).await,
    );
    log.add(
        "terminate again",
        t.call("DELETE", "/mailbox", json!({"mailbox": a})).await,
    );
    log.add(
        "re-create terminated",
        t.call("POST", "/mailbox", json!({"mailbox": a})).await,
    );
    log.add(
        "status still terminated",
        t.call("GET", "/mailbox", json!({"mailbox": a})).await,
    );
    log.add(
        "terminate unknown",
        t.call("DELETE", "/mailbox", json!({"mailbox": x})).await,
    );
    log.add(
        "status unknown after terminate",
        t.call("GET", "/mailbox", json!({"mailbox": x})).await,
    );
    log.add("missing field", t.call("GET", "/mailbox", json!({})).await);
    // pydantic adds a version-specific help line: compare the first two.
    let (status, text) = t.call("GET", "/mailbox", json!({"mailbox": 5})).await;
    let head: Vec<&str> = text.lines().take(2).collect();
    log.note(format!("id not a string: {status} {head:?}"));
    log.add("unknown path", t.call("GET", "/nothing", json!({})).await);
    log.add(
        "wrong method",
        t.call("PATCH", "/mailbox", json!({"mailbox": u})).await,
    );
    log
}

async fn send_recv(t: &Target, ids: &Ids) -> Log {
    let mut log = Log::default();
    let (u, a, x) = (enc(&ids.user), enc(&ids.agent), enc(&ids.unknown));
    t.call("POST", "/mailbox", json!({"mailbox": u})).await;
    t.call("POST", "/mailbox", json!({"mailbox": a, "agent": "m.A"}))
        .await;
    let action = json!({"action": "add", "serialization": "json", "result_serialization": null,
                        "exception_serialization": null, "pargs": "[2, 3]", "kargs": "{\"s\": \"h\\u00e9\"}",
                        "kind": "action-request"});
    let m1 = request_msg(&ids.user, &ids.agent, ids.tags[0], action);
    let m2 = request_msg(&ids.user, &ids.agent, ids.tags[1], ping());
    log.add(
        "send 1",
        t.call("PUT", "/message", json!({"message": m1})).await,
    );
    log.add(
        "send 2",
        t.call("PUT", "/message", json!({"message": m2})).await,
    );
    log.add(
        "recv 1",
        t.call("GET", "/message", json!({"mailbox": a, "timeout": 1}))
            .await,
    );
    log.add(
        "recv 2",
        t.call("GET", "/message", json!({"mailbox": a, "timeout": 1.5}))
            .await,
    );
    log.add(
        "recv timeout 0",
        t.call("GET", "/message", json!({"mailbox": a, "timeout": 0}))
            .await,
    );
    log.add(
        "recv timeout -1",
        t.call("GET", "/message", json!({"mailbox": a, "timeout": -1}))
            .await,
    );
    log.add(
        "recv timeout too long",
        t.call(
            "GET",
            "/message",
            json!({"mailbox": a, "timeout": LISTEN_TIMEOUT_S + 1}),
        )
        .await,
    );
    log.add(
        "recv 408",
        t.call("GET", "/message", json!({"mailbox": a, "timeout": 0.2}))
            .await,
    );
    log.add(
        "recv unknown",
        t.call("GET", "/message", json!({"mailbox": x, "timeout": 0.2}))
            .await,
    );
    let to_unknown = request_msg(&ids.user, &ids.unknown, ids.tags[2], ping());
    log.add(
        "send unknown",
        t.call("PUT", "/message", json!({"message": to_unknown}))
            .await,
    );
    let big = request_msg(
        &ids.user,
        &ids.agent,
        ids.tags[3],
        json!({"kind": "ping-request", "pad": "x".repeat(2000)}),
    );
    log.add(
        "send too large",
        t.call("PUT", "/message", json!({"message": big})).await,
    );
    log.add(
        "terminate",
        t.call("DELETE", "/mailbox", json!({"mailbox": a})).await,
    );
    let m3 = request_msg(&ids.user, &ids.agent, ids.tags[4], ping());
    log.add(
        "send terminated",
        t.call("PUT", "/message", json!({"message": m3})).await,
    );
    log.add(
        "recv terminated",
        t.call("GET", "/message", json!({"mailbox": a, "timeout": 0.2}))
            .await,
    );
    // pydantic's exact validation texts are not reproduced: compare the
    // status and the prefix.
    for (label, body) in [
        ("message not JSON", json!({"message": "x"})),
        ("message not a message", json!({"message": "{}"})),
        ("message missing", json!({})),
        ("message not a string", json!({"message": {}})),
    ] {
        let (status, text) = t.call("PUT", "/message", body).await;
        log.note(format!(
            "{label}: {status} {}",
            text.starts_with("Missing or invalid field: ")
        ));
    }
    log.add(
        "recv missing mailbox",
        t.call("GET", "/message", json!({"timeout": 1})).await,
    );
    log
}

async fn discover(t: &Target, ids: &Ids) -> Log {
    let mut log = Log::default();
    let c = &ids.class;
    let (a, o) = (enc(&ids.agent), enc(&ids.other));
    t.call(
        "POST",
        "/mailbox",
        json!({"mailbox": a, "agent": format!("{c}.A,{c}.Base")}),
    )
    .await;
    t.call(
        "POST",
        "/mailbox",
        json!({"mailbox": o, "agent": format!("{c}.B,{c}.Base")}),
    )
    .await;
    // A user mailbox with an agent field is no agent.
    t.call(
        "POST",
        "/mailbox",
        json!({"mailbox": enc(&ids.user), "agent": format!("{c}.A")}),
    )
    .await;
    let d = |agent: String, sub: Value| json!({"agent": agent, "allow_subclasses": sub});
    log.add(
        "A exact",
        t.call("GET", "/discover", d(format!("{c}.A"), json!(false)))
            .await,
    );
    log.add(
        "Base exact",
        t.call("GET", "/discover", d(format!("{c}.Base"), json!(false)))
            .await,
    );
    log.add(
        "Base subclasses",
        t.call("GET", "/discover", d(format!("{c}.Base"), json!(true)))
            .await,
    );
    log.add(
        "Base subclasses 1",
        t.call("GET", "/discover", d(format!("{c}.Base"), json!(1)))
            .await,
    );
    log.add(
        "none",
        t.call("GET", "/discover", d(format!("{c}.None"), json!(true)))
            .await,
    );
    t.call("DELETE", "/mailbox", json!({"mailbox": a})).await;
    log.add(
        "after terminate",
        t.call("GET", "/discover", d(format!("{c}.Base"), json!(true)))
            .await,
    );
    log.add(
        "A after terminate",
        t.call("GET", "/discover", d(format!("{c}.A"), json!(true)))
            .await,
    );
    log.add(
        "missing allow_subclasses",
        t.call("GET", "/discover", json!({"agent": "x"})).await,
    );
    log.add("missing agent", t.call("GET", "/discover", json!({})).await);
    log
}

async fn heartbeat(t: &Target, ids: &Ids) -> Log {
    let mut log = Log::default();
    let (a, x) = (enc(&ids.agent), enc(&ids.unknown));
    t.call("POST", "/mailbox", json!({"mailbox": a, "agent": "m.A"}))
        .await;
    log.add(
        "before",
        t.call("GET", "/mailbox/heartbeat", json!({"mailbox": a}))
            .await,
    );
    log.add(
        "beat",
        t.call("POST", "/mailbox/heartbeat", json!({"mailbox": a}))
            .await,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = t
        .call("GET", "/mailbox/heartbeat", json!({"mailbox": a}))
        .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let age = v["heartbeat"].as_f64().unwrap();
    log.note(format!("age: {status} {}", (0.3..3.0).contains(&age)));
    log.add(
        "get unknown",
        t.call("GET", "/mailbox/heartbeat", json!({"mailbox": x}))
            .await,
    );
    log.add(
        "beat unknown",
        t.call("POST", "/mailbox/heartbeat", json!({"mailbox": x}))
            .await,
    );
    t.call("DELETE", "/mailbox", json!({"mailbox": a})).await;
    log.add(
        "beat terminated",
        t.call("POST", "/mailbox/heartbeat", json!({"mailbox": a}))
            .await,
    );
    log.add(
        "get terminated",
        t.call("GET", "/mailbox/heartbeat", json!({"mailbox": a}))
            .await,
    );
    log
}

async fn stats(t: &Target, ids: &Ids) -> Log {
    let mut log = Log::default();
    let (u, a, x) = (enc(&ids.user), enc(&ids.agent), enc(&ids.unknown));
    t.call("POST", "/mailbox", json!({"mailbox": u})).await;
    t.call("POST", "/mailbox", json!({"mailbox": a, "agent": "m.A"}))
        .await;
    let st = |id: &String| json!({"mailbox": id});
    log.add("fresh", t.call("GET", "/mailbox/stats", st(&a)).await);
    log.add("unknown", t.call("GET", "/mailbox/stats", st(&x)).await);
    for tag in &ids.tags[..3] {
        let m = request_msg(&ids.user, &ids.agent, *tag, ping());
        t.call("PUT", "/message", json!({"message": m})).await;
    }
    log.add("3 queued", t.call("GET", "/mailbox/stats", st(&a)).await);
    t.call("GET", "/message", json!({"mailbox": a, "timeout": 1}))
        .await;
    t.call("GET", "/message", json!({"mailbox": a, "timeout": 1}))
        .await;
    log.add("2 taken", t.call("GET", "/mailbox/stats", st(&a)).await);
    let r = response_msg(&ids.agent, &ids.user, ids.tags[0]);
    log.add(
        "respond",
        t.call("PUT", "/message", json!({"message": r})).await,
    );
    let stray = response_msg(&ids.agent, &ids.user, ids.tags[7]);
    log.add(
        "stray response",
        t.call("PUT", "/message", json!({"message": stray})).await,
    );
    log.add("1 completed", t.call("GET", "/mailbox/stats", st(&a)).await);
    log.add("user", t.call("GET", "/mailbox/stats", st(&u)).await);
    log.add(
        "user recv response",
        t.call("GET", "/message", json!({"mailbox": u, "timeout": 1}))
            .await,
    );
    log.add(
        "user recv stray",
        t.call("GET", "/message", json!({"mailbox": u, "timeout": 1}))
            .await,
    );
    // Terminating answers the two requests still pending (one taken, one
    // queued), in the order they arrived.
    log.add(
        "terminate",
        t.call("DELETE", "/mailbox", json!({"mailbox": a})).await,
    );
    log.add(
        "after terminate",
        t.call("GET", "/mailbox/stats", st(&a)).await,
    );
    log.add(
        "pending answer 1",
        t.call("GET", "/message", json!({"mailbox": u, "timeout": 1}))
            .await,
    );
    log.add(
        "pending answer 2",
        t.call("GET", "/message", json!({"mailbox": u, "timeout": 1}))
            .await,
    );
    log.add(
        "no more",
        t.call("GET", "/message", json!({"mailbox": u, "timeout": 0.2}))
            .await,
    );
    let late = request_msg(&ids.user, &ids.agent, ids.tags[5], ping());
    log.add(
        "request to terminated",
        t.call("PUT", "/message", json!({"message": late})).await,
    );
    log.add(
        "tracked anyway",
        t.call("GET", "/mailbox/stats", st(&a)).await,
    );
    log.add(
        "user outgoing",
        t.call("GET", "/mailbox/stats", st(&u)).await,
    );
    log
}

async fn shares(t: &Target, ids: &Ids) -> Log {
    let mut log = Log::default();
    let (u, x) = (enc(&ids.user), enc(&ids.unknown));
    t.call("POST", "/mailbox", json!({"mailbox": u})).await;
    let s = |id: &String, g: &str| json!({"mailbox": id, "group_id": g});
    log.add(
        "list own",
        t.call("GET", "/mailbox/share", json!({"mailbox": u})).await,
    );
    log.add(
        "share with a group",
        t.call("POST", "/mailbox/share", s(&u, "g")).await,
    );
    log.add(
        "unshare never shared",
        t.call("DELETE", "/mailbox/share", s(&u, "g")).await,
    );
    log.add(
        "unshare missing group",
        t.call("DELETE", "/mailbox/share", json!({"mailbox": u}))
            .await,
    );
    // The anonymous client is in the group "" (academy-py splits an empty
    // groups header).
    log.add(
        "share with \"\"",
        t.call("POST", "/mailbox/share", s(&u, "")).await,
    );
    log.add(
        "list shared",
        t.call("GET", "/mailbox/share", json!({"mailbox": u})).await,
    );
    log.add(
        "unshare",
        t.call("DELETE", "/mailbox/share", s(&u, "")).await,
    );
    log.add(
        "unshare again",
        t.call("DELETE", "/mailbox/share", s(&u, "zz")).await,
    );
    log.add(
        "list after",
        t.call("GET", "/mailbox/share", json!({"mailbox": u})).await,
    );
    log.add(
        "list unknown",
        t.call("GET", "/mailbox/share", json!({"mailbox": x})).await,
    );
    log.add(
        "share unknown",
        t.call("POST", "/mailbox/share", s(&x, "")).await,
    );
    log.add(
        "unshare unknown",
        t.call("DELETE", "/mailbox/share", s(&x, "")).await,
    );
    t.call("DELETE", "/mailbox", json!({"mailbox": u})).await;
    log.add(
        "list terminated",
        t.call("GET", "/mailbox/share", json!({"mailbox": u})).await,
    );
    log.add(
        "share terminated",
        t.call("POST", "/mailbox/share", s(&u, "")).await,
    );
    log.add(
        "unshare terminated",
        t.call("DELETE", "/mailbox/share", s(&u, "")).await,
    );
    log
}

/// Reads a listen stream to its end (the server ends it after `timeout`
/// seconds without a message). Returns (status, content type, body).
async fn listen_all(t: &Target, mailbox: &str, timeout: f64) -> (u16, String, String) {
    let r = t
        .request(
            "GET",
            "/mailbox/listen",
            &json!({"mailbox": mailbox, "timeout": timeout}),
        )
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ctype, r.text().await.unwrap())
}

async fn listen(t: &Target, ids: &Ids) -> Log {
    let mut log = Log::default();
    let (u, a, x) = (enc(&ids.user), enc(&ids.agent), enc(&ids.unknown));
    t.call("POST", "/mailbox", json!({"mailbox": u})).await;
    t.call("POST", "/mailbox", json!({"mailbox": a, "agent": "m.A"}))
        .await;
    for tag in &ids.tags[..2] {
        let m = request_msg(&ids.user, &ids.agent, *tag, ping());
        t.call("PUT", "/message", json!({"message": m})).await;
    }
    // A third message while the stream is open.
    let late = {
        let t = t.clone();
        let m = request_msg(&ids.user, &ids.agent, ids.tags[2], ping());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            t.call("PUT", "/message", json!({"message": m})).await
        })
    };
    let (status, ctype, body) = listen_all(t, &a, 1.0).await;
    late.await.unwrap();
    log.note(format!("stream: {status} {ctype}"));
    log.note(format!("stream body: {body:?}"));
    log.add(
        "recv after stream",
        t.call("GET", "/message", json!({"mailbox": a, "timeout": 0.2}))
            .await,
    );
    log.add(
        "timeout 0",
        t.call(
            "GET",
            "/mailbox/listen",
            json!({"mailbox": a, "timeout": 0}),
        )
        .await,
    );
    log.add(
        "timeout too long",
        t.call(
            "GET",
            "/mailbox/listen",
            json!({"mailbox": a, "timeout": LISTEN_TIMEOUT_S + 1}),
        )
        .await,
    );
    log.add(
        "unknown",
        t.call(
            "GET",
            "/mailbox/listen",
            json!({"mailbox": x, "timeout": 1}),
        )
        .await,
    );
    t.call("DELETE", "/mailbox", json!({"mailbox": a})).await;
    log.add(
        "terminated",
        t.call(
            "GET",
            "/mailbox/listen",
            json!({"mailbox": a, "timeout": 1}),
        )
        .await,
    );
    log
}

async fn repr_of_ids(t: &Target, ids: &Ids) -> Log {
    // DELETE /mailbox/share of a never-shared mailbox answers the repr of
    // the id (a KeyError in academy-py).
    let mut log = Log::default();
    let names = [
        json!("it's"),
        json!("a\"b"),
        Value::Null,
        json!("tab\there\\"),
    ];
    for (i, name) in names.into_iter().enumerate() {
        let role = if i == 2 { "agent" } else { "user" };
        let id = json!({"uid": ids.tags[i].to_string(), "name": name, "role": role});
        let i = enc(&id);
        t.call("POST", "/mailbox", json!({"mailbox": i})).await;
        log.add(
            "repr",
            t.call(
                "DELETE",
                "/mailbox/share",
                json!({"mailbox": i, "group_id": "g"}),
            )
            .await,
        );
    }
    log
}

macro_rules! compare {
    ($py:expr, $rs:expr, $($scenario:ident),+) => {
        $(
            let ids = Ids::new();
            let expected = $scenario(&$py, &ids).await.0;
            let got = $scenario(&$rs, &ids).await.0;
            for (i, (e, g)) in expected.iter().zip(got.iter()).enumerate() {
                assert_eq!(g, e, "scenario {} line {i}: {} differs from {}", stringify!($scenario), $rs.name, $py.name);
            }
            assert_eq!(got.len(), expected.len(), "scenario {}", stringify!($scenario));
        )+
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_like_academy_py() {
    let python = start_python_server();
    let py_url = python.url.clone();
    let ours = start_rust_server().await;
    let py = Target::new("academy-py", py_url);
    let rs = Target::new("ours", ours.url());
    compare!(
        py,
        rs,
        lifecycle,
        send_recv,
        discover,
        heartbeat,
        stats,
        shares,
        listen,
        repr_of_ids
    );

    // A body that is not JSON: academy-py answers 500 (an uncaught
    // JSONDecodeError, which clients retry as transient); ours says 400.
    let (status, _) = py.raw("POST", "/mailbox", "not json").await;
    assert_eq!(status, 500);
    let (status, text) = rs.raw("POST", "/mailbox", "not json").await;
    assert_eq!(status, 400);
    assert!(text.starts_with("Missing or invalid field: "), "{text}");
    // A non-number timeout: 500 there, the invalid-timeout 400 here.
    let mb = enc(&user(None));
    let (status, text) = rs
        .call("GET", "/message", json!({"mailbox": mb, "timeout": "x"}))
        .await;
    assert_eq!(
        (status, text.as_str()),
        (
            400,
            "Invalid timeout (must be less than 5 and greater than 0)"
        )
    );
    ours.stop().await.unwrap();
}

// ------------------------------------------------------------ ours only

/// academy-py's listen handler keeps waiting on the queue after its client
/// has gone; the next message is taken off the queue and written to the
/// dead stream, so it is lost. Ours takes a message only when the stream
/// asks for one, and hyper drops the stream as soon as the client has gone:
/// the message waits for the next listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_after_listener_disconnect_reaches_next_listener() {
    let server = start_rust_server().await;
    let t = Target::new("ours", server.url());
    let (u, a) = (user(None), agent(None));
    t.call("POST", "/mailbox", json!({"mailbox": enc(&u)}))
        .await;
    t.call("POST", "/mailbox", json!({"mailbox": enc(&a)}))
        .await;

    // A listener that connects, then goes away without reading anything.
    let r = t
        .request(
            "GET",
            "/mailbox/listen",
            &json!({"mailbox": enc(&a), "timeout": 5}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    drop(r);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let tag = Uuid::new_v4();
    let m = request_msg(&u, &a, tag, ping());
    assert_eq!(
        t.call("PUT", "/message", json!({"message": m})).await.0,
        200
    );
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut r = t
        .request(
            "GET",
            "/mailbox/listen",
            &json!({"mailbox": enc(&a), "timeout": 5}),
        )
        .send()
        .await
        .unwrap();
    let chunk = tokio::time::timeout(Duration::from_secs(3), r.chunk())
        .await
        .expect("the message was lost")
        .unwrap()
        .unwrap();
    let text = String::from_utf8(chunk.to_vec()).unwrap();
    assert!(text.starts_with("data: "), "{text}");
    assert!(text.contains(&tag.to_string()), "{text}");
    drop(r);
    server.stop().await.unwrap();
}

/// `DELETE /mailbox/listen` ends the named stream after what it took (and
/// only that stream, only for its mailbox); `"requeue": true` puts a
/// message back at the head of the queue, also one the exchange saw
/// before (no repeat check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_stream_ends_on_request_and_messages_go_back_at_the_head() {
    let server = start_rust_server().await;
    let t = Target::new("ours", server.url());
    let (u, a, b) = (user(None), agent(None), agent(None));
    for id in [&u, &a, &b] {
        t.call("POST", "/mailbox", json!({"mailbox": enc(id)}))
            .await;
    }
    let open = |mailbox: &Value| {
        t.request(
            "GET",
            "/mailbox/listen",
            &json!({"mailbox": enc(mailbox), "timeout": LISTEN_TIMEOUT_S}),
        )
        .send()
    };
    let mut r = open(&a).await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.headers());
    let name = r.headers()["academy-listen-id"]
        .to_str()
        .unwrap()
        .to_owned();
    // Not by another mailbox, and not with a bad name.
    let end = |mailbox: &Value, name: &str| {
        t.call(
            "DELETE",
            "/mailbox/listen",
            json!({"mailbox": enc(mailbox), "listen_id": name}),
        )
    };
    assert_eq!(end(&b, &name).await.0, 200);
    assert_eq!(end(&a, "nope").await.0, 400);
    let first = request_msg(&u, &a, Uuid::new_v4(), ping());
    t.call("PUT", "/message", json!({"message": first})).await;
    let chunk = tokio::time::timeout(Duration::from_secs(3), r.chunk())
        .await
        .expect("the stream still runs")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&chunk).contains("data: "));
    // Ended by its own mailbox: the body ends, and nothing more is taken.
    assert_eq!(end(&a, &name).await.0, 200);
    let end_of_body = tokio::time::timeout(Duration::from_secs(3), r.chunk())
        .await
        .expect("the stream ends at once")
        .unwrap();
    assert!(end_of_body.is_none(), "{end_of_body:?}");
    let second = request_msg(&u, &a, Uuid::new_v4(), ping());
    t.call("PUT", "/message", json!({"message": second})).await;
    // The first goes back at the head (sent before: no repeat check).
    assert_eq!(
        t.call(
            "PUT",
            "/message",
            json!({"message": first, "requeue": true})
        )
        .await
        .0,
        200
    );
    let (status, body) = t
        .call("GET", "/message", json!({"mailbox": enc(&a), "timeout": 1}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["message"],
        first
    );
    // Only a receiver of the mailbox may put back (here: unknown mailbox).
    let stray = request_msg(&u, &agent(None), Uuid::new_v4(), ping());
    let (status, _) = t
        .call(
            "PUT",
            "/message",
            json!({"message": stray, "requeue": true}),
        )
        .await;
    assert_ne!(status, 200);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_lose_and_duplicate_nothing() {
    const CLIENTS: usize = 32;
    const PER: usize = 60;
    let server = start_rust_server().await;
    let t = Target::new("ours", server.url());
    let ids: Vec<Value> = (0..CLIENTS).map(|_| user(None)).collect();
    for id in &ids {
        assert_eq!(
            t.call("POST", "/mailbox", json!({"mailbox": enc(id)}))
                .await
                .0,
            200
        );
    }
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let t = Target::new("ours", server.url());
        let me = ids[i].clone();
        let dest = ids[(i + 1) % CLIENTS].clone();
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            let sender = {
                let t = t.clone();
                let me = me.clone();
                tokio::spawn(async move {
                    let mut sent = Vec::new();
                    for _ in 0..PER {
                        let tag = Uuid::new_v4();
                        let m = request_msg(&me, &dest, tag, ping());
                        assert_eq!(
                            t.call("PUT", "/message", json!({"message": m})).await.0,
                            200
                        );
                        sent.push(tag.to_string());
                    }
                    sent
                })
            };
            let mut got = Vec::new();
            if i % 2 == 0 {
                // Long polls.
                while got.len() < PER {
                    let (status, body) = t
                        .call(
                            "GET",
                            "/message",
                            json!({"mailbox": enc(&me), "timeout": 5}),
                        )
                        .await;
                    assert_eq!(status, 200, "{body}");
                    let v: Value = serde_json::from_str(&body).unwrap();
                    let m: Value = serde_json::from_str(v["message"].as_str().unwrap()).unwrap();
                    got.push(m["header"]["tag"].as_str().unwrap().to_owned());
                }
            } else {
                // Listen streams that the server ends after 1 s without a
                // message; the client reconnects until it has all. (A client
                // that hangs up mid-stream may lose what was already written
                // to its socket: SSE has no acknowledgements.)
                while got.len() < PER {
                    let mut r = t
                        .request(
                            "GET",
                            "/mailbox/listen",
                            &json!({"mailbox": enc(&me), "timeout": 1}),
                        )
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                    let mut buf = String::new();
                    while let Some(chunk) = r.chunk().await.unwrap() {
                        buf.push_str(std::str::from_utf8(&chunk).unwrap());
                        while let Some(end) = buf.find("\r\n\r\n") {
                            let event: String = buf.drain(..end + 4).collect();
                            if let Some(data) = event.strip_prefix("data: ") {
                                let m: Value = serde_json::from_str(data.trim_end()).unwrap();
                                got.push(m["header"]["tag"].as_str().unwrap().to_owned());
                            }
                        }
                        if got.len() == PER {
                            break;
                        }
                    }
                    assert!(buf.is_empty(), "partial event left: {buf:?}");
                }
            }
            received.lock().unwrap().extend(got);
            sender.await.unwrap()
        }));
    }
    let mut sent = Vec::new();
    for task in tasks {
        sent.extend(task.await.unwrap());
    }
    let mut got = received.lock().unwrap().clone();
    assert_eq!(got.len(), CLIENTS * PER);
    got.sort();
    sent.sort();
    let before = got.len();
    got.dedup();
    assert_eq!(got.len(), before, "duplicates delivered");
    assert_eq!(got, sent);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_table_authentication() {
    let config = ServerConfig::from_toml_str(
        r#"
host = "127.0.0.1"
port = 0
[auth]
method = "token"
[auth.kwargs.tokens.alice-token]
client_id = "alice"
groups = ["team"]
[auth.kwargs.tokens.bob-token]
client_id = "bob"
[auth.kwargs.tokens.carol-token]
client_id = "carol"
groups = ["team", "other"]
"#,
    )
    .unwrap();
    let server = ExchangeServer::start(config).await.unwrap();
    let anon = Target::new("ours", server.url());
    let (alice, bob, carol) = (
        anon.with_token("alice-token"),
        anon.with_token("bob-token"),
        anon.with_token("carol-token"),
    );
    let mb = enc(&user(Some("alice")));
    let body = json!({"mailbox": mb});

    assert_eq!(
        anon.call("GET", "/mailbox", body.clone()).await,
        (401, "Missing required headers.".into())
    );
    let malformed = anon
        .http
        .get(format!("{}/mailbox", server.url()))
        .header("authorization", "Token alice-token")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status().as_u16(), 401);
    assert_eq!(
        anon.with_token("nope")
            .call("GET", "/mailbox", body.clone())
            .await,
        (403, "Token expired or revoked.".into())
    );

    assert_eq!(alice.call("POST", "/mailbox", body.clone()).await.0, 200);
    assert_eq!(
        alice.call("GET", "/mailbox", body.clone()).await,
        (200, "{\"status\": \"ACTIVE\"}".into())
    );
    let forbidden = (403, "Incorrect permissions".to_owned());
    assert_eq!(bob.call("GET", "/mailbox", body.clone()).await, forbidden);
    assert_eq!(
        bob.call("GET", "/message", json!({"mailbox": mb, "timeout": 1}))
            .await,
        forbidden
    );
    assert_eq!(
        bob.call("DELETE", "/mailbox", body.clone()).await,
        forbidden
    );
    assert_eq!(bob.call("POST", "/mailbox", body.clone()).await, forbidden);
    let bob_id = user(Some("bob"));
    let m = request_msg(
        &bob_id,
        &serde_json::from_str(&mb).unwrap(),
        Uuid::new_v4(),
        ping(),
    );
    assert_eq!(
        bob.call("PUT", "/message", json!({"message": m})).await,
        forbidden
    );
    assert_eq!(carol.call("GET", "/mailbox", body.clone()).await, forbidden);

    // Sharing: only with a group of the owner's, then members get access
    // but only the owner sees the shares.
    assert_eq!(
        alice
            .call(
                "POST",
                "/mailbox/share",
                json!({"mailbox": mb, "group_id": "other"})
            )
            .await,
        forbidden
    );
    assert_eq!(
        alice
            .call(
                "POST",
                "/mailbox/share",
                json!({"mailbox": mb, "group_id": "team"})
            )
            .await
            .0,
        200
    );
    assert_eq!(
        alice.call("GET", "/mailbox/share", body.clone()).await,
        (200, "{\"group_ids\": [\"team\"]}".into())
    );
    assert_eq!(
        carol.call("GET", "/mailbox", body.clone()).await,
        (200, "{\"status\": \"ACTIVE\"}".into())
    );
    assert_eq!(
        carol.call("PUT", "/message", json!({"message": m})).await.0,
        200
    );
    assert_eq!(
        carol.call("GET", "/mailbox/share", body.clone()).await,
        forbidden
    );
    assert_eq!(bob.call("GET", "/mailbox", body.clone()).await, forbidden);
    // Discovery only shows what the client may see.
    let a = agent(None);
    assert_eq!(
        alice
            .call(
                "POST",
                "/mailbox",
                json!({"mailbox": enc(&a), "agent": "auth.Agent"})
            )
            .await
            .0,
        200
    );
    let d = json!({"agent": "auth.Agent", "allow_subclasses": false});
    assert_eq!(
        alice.call("GET", "/discover", d.clone()).await.1,
        format!("{{\"agent_ids\": \"{}\"}}", a["uid"].as_str().unwrap())
    );
    assert_eq!(
        bob.call("GET", "/discover", d).await.1,
        "{\"agent_ids\": \"\"}"
    );
    assert_eq!(
        alice
            .call(
                "DELETE",
                "/mailbox/share",
                json!({"mailbox": mb, "group_id": "team"})
            )
            .await
            .0,
        200
    );
    assert_eq!(carol.call("GET", "/mailbox", body.clone()).await, forbidden);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_listen_streams_and_is_idempotent() {
    let server = start_rust_server().await;
    let t = Target::new("ours", server.url());
    let a = agent(None);
    t.call("POST", "/mailbox", json!({"mailbox": enc(&a)}))
        .await;
    let mut r = t
        .request(
            "GET",
            "/mailbox/listen",
            &json!({"mailbox": enc(&a), "timeout": 5}),
        )
        .send()
        .await
        .unwrap();
    let recv = {
        let t = t.clone();
        let a = enc(&a);
        tokio::spawn(async move {
            t.call("GET", "/message", json!({"mailbox": a, "timeout": 5}))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    server.stop().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        started.elapsed()
    );
    let end = tokio::time::timeout(Duration::from_secs(2), r.chunk())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    assert_eq!(recv.await.unwrap().0, 503);
    server.stop().await.unwrap();
    assert!(reqwest::get(format!("{}/mailbox", server.url()))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_errors() {
    let server = start_rust_server().await;
    let port = server.local_addr().port();
    let busy = ServerConfig::from_json_options(Some(&format!("{{\"port\": {port}}}"))).unwrap();
    let err = ExchangeServer::start(busy).await.unwrap_err();
    assert_eq!(err.status, Status::Connection);
    assert!(err.message.contains("in use"), "{}", err.message);
    let err = ServerConfig::from_json_options(Some("{\"colour\": 1}")).unwrap_err();
    assert_eq!(err.status, Status::InvalidArgument);
    server.stop().await.unwrap();
}

#[test]
fn binary_serves_from_toml_and_exits_0_on_sigterm() {
    let dir = temp_dir();
    let port = free_port();
    let config = dir.join("exchange.toml");
    std::fs::write(
        &config,
        format!("host = \"127.0.0.1\"\nport = {port}\nlisten_timeout_s = 7\n[backend]\nkind = \"python\"\n[logger]\nlevel = \"INFO\"\n"),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_academy-exchange"));
    cmd.arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_guarded(cmd);
    let mut line = String::new();
    BufReader::new(child.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        format!("Exchange listening on http://127.0.0.1:{port}")
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let t = Target::new("binary", format!("http://127.0.0.1:{port}"));
        let mb = enc(&user(None));
        assert_eq!(
            t.call("POST", "/mailbox", json!({"mailbox": mb})).await.0,
            200
        );
        let (status, text) = t
            .call("GET", "/message", json!({"mailbox": mb, "timeout": 8}))
            .await;
        assert_eq!(
            (status, text.as_str()),
            (
                400,
                "Invalid timeout (must be less than 7 and greater than 0)"
            )
        );
    });

    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A bad config file is an error exit with a message.
    std::fs::write(&config, "port = 1\nbogus = true\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_academy-exchange"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_certfile_and_keyfile() {
    let dir = temp_dir();
    let (cert, key) = self_signed(&dir);
    let config = ServerConfig::from_toml_str(&format!(
        "host = \"127.0.0.1\"\nport = 0\ncertfile = {:?}\nkeyfile = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    ))
    .unwrap();
    let server = ExchangeServer::start(config).await.unwrap();
    assert!(
        server.url().starts_with("https://127.0.0.1:"),
        "{}",
        server.url()
    );
    // Serving is checked here, not verification (tests/http_behaviour.rs
    // checks that).
    let http = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let t = Target {
        name: "tls",
        base: server.url(),
        http,
        token: None,
    };
    let mb = enc(&user(None));
    assert_eq!(
        t.call("POST", "/mailbox", json!({"mailbox": mb})).await.0,
        200
    );
    assert_eq!(
        t.call("GET", "/mailbox", json!({"mailbox": mb})).await,
        (200, "{\"status\": \"ACTIVE\"}".into())
    );
    server.stop().await.unwrap();
}
