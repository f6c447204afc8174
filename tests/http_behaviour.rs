//! HTTP behaviour of the client: retries and back-off, headers, TLS,
//! Globus client credentials with re-authentication on 403, listen
//! streams that the server ends, and background heartbeats.
//!
//! `StubServer` below is a stand-in for third parties that cannot run here
//! (a flaky proxy answering 503, a Globus token endpoint); the exchanges
//! are the real academy-py one and ours.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use academy::ffi::academy_status::*;
use academy::ffi::client::academy_mailbox_status::*;
use academy::server::{ClientInfo, ExchangeServer, ServerConfig};
use common::*;

/// One request the stub saw.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    headers: HashMap<String, String>,
    body: String,
}

/// A stand-in HTTP server: answers with the scripted (status, body) pairs
/// in order, then repeats the last one; records every request.
struct StubServer {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl StubServer {
    fn start(script: Vec<(u16, &'static str)>) -> StubServer {
        StubServer::start_with_headers(script.into_iter().map(|(s, b)| (s, b, "")).collect())
    }

    /// As [`StubServer::start`], each answer with extra header lines.
    fn start_with_headers(script: Vec<(u16, &'static str, &'static str)>) -> StubServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut headers = HashMap::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                log.lock().unwrap().push(Seen {
                    line: line.trim_end().to_owned(),
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                let (status, text, extra) = script[n.min(script.len() - 1)];
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        StubServer { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn transport(url: &str, options: &str) -> academy::transport::Transport {
    academy::transport::Transport::http(
        url,
        academy::FactoryOptions::from_json(Some(options)).unwrap(),
    )
    .unwrap()
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    academy::runtime::block_on(f).unwrap()
}

#[test]
fn transient_failures_are_retried_with_jittered_back_off() {
    let id = academy::EntityId::new_user(None);
    let stub = StubServer::start(vec![
        (503, "busy"),
        (429, "slow down"),
        (200, r#"{"status": "ACTIVE"}"#),
    ]);
    let t = transport(
        &stub.url,
        r#"{"retries": 2, "initial_retry_backoff_s": 0.1}"#,
    );
    let start = Instant::now();
    assert_eq!(
        block(t.mailbox_status(&id)).unwrap(),
        academy::MailboxStatus::Active
    );
    // Full jitter: each wait is random, up to 0.1 s then 0.2 s.
    assert!(
        start.elapsed() < Duration::from_millis(300) + Duration::from_millis(250),
        "waits at most 0.1 s then 0.2 s: {:?}",
        start.elapsed()
    );
    assert_eq!(stub.seen().len(), 3);

    // Clients failed by one outage do not come back in step: the waits of
    // many clients spread over the back-off.
    let mut waits = Vec::new();
    for _ in 0..8 {
        let stub = StubServer::start(vec![(503, "busy"), (200, r#"{"status": "ACTIVE"}"#)]);
        let t = transport(
            &stub.url,
            r#"{"retries": 1, "initial_retry_backoff_s": 0.4}"#,
        );
        let start = Instant::now();
        block(t.mailbox_status(&id)).unwrap();
        waits.push(start.elapsed());
    }
    let (min, max) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
    assert!(*max < Duration::from_millis(400 + 200), "{waits:?}");
    assert!(
        *max - *min > Duration::from_millis(40),
        "jittered: {waits:?}"
    );

    let stub = StubServer::start(vec![
        (503, "busy"),
        (503, "still busy"),
        (200, r#"{"status": "ACTIVE"}"#),
    ]);
    let t = transport(
        &stub.url,
        r#"{"retries": 1, "initial_retry_backoff_s": 0.01}"#,
    );
    let err = block(t.mailbox_status(&id)).unwrap_err();
    assert_eq!(err.status, academy::Status::Http);
    assert!(
        err.message.contains("503") && err.message.contains("still busy"),
        "{}",
        err.message
    );
    assert_eq!(stub.seen().len(), 2, "one try and one retry");

    // Not transient: no retry.
    let stub = StubServer::start(vec![(419, "Mailbox was closed")]);
    let t = transport(
        &stub.url,
        r#"{"retries": 3, "initial_retry_backoff_s": 0.01}"#,
    );
    assert_eq!(
        block(t.terminate(&id)).unwrap_err().status,
        academy::Status::MailboxTerminated
    );
    assert_eq!(stub.seen().len(), 1);
}

#[test]
fn retry_after_is_honoured_up_to_a_limit() {
    let id = academy::EntityId::new_user(None);
    let stub = StubServer::start_with_headers(vec![
        (503, "busy", "retry-after: 1\r\n"),
        (200, r#"{"status": "ACTIVE"}"#, ""),
    ]);
    let t = transport(
        &stub.url,
        r#"{"retries": 1, "initial_retry_backoff_s": 0.01}"#,
    );
    let start = Instant::now();
    block(t.mailbox_status(&id)).unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "waited as the server asked: {:?}",
        start.elapsed()
    );
    // Asked to wait for hours: not retried, and the error says so.
    let stub = StubServer::start_with_headers(vec![
        (429, "come back tomorrow", "retry-after: 86400\r\n"),
        (200, r#"{"status": "ACTIVE"}"#, ""),
    ]);
    let t = transport(
        &stub.url,
        r#"{"retries": 3, "initial_retry_backoff_s": 0.01}"#,
    );
    let err = block(t.mailbox_status(&id)).unwrap_err();
    assert!(err.message.contains("86400"), "{}", err.message);
    assert_eq!(stub.seen().len(), 1);
}

#[test]
fn requests_carry_the_academy_version_and_additional_headers_and_json_bodies() {
    let stub = StubServer::start(vec![(200, r#"{"agent_ids": ""}"#)]);
    let t = transport(&stub.url, r#"{"additional_headers": {"X-Site": "alcf"}}"#);
    assert!(block(t.discover("a.B", true)).unwrap().is_empty());
    let seen = &stub.seen()[0];
    assert_eq!(seen.line, "GET /discover HTTP/1.1");
    assert_eq!(seen.headers["academy_version"], "1.0.0");
    assert_eq!(seen.headers["x-site"], "alcf");
    assert_eq!(seen.headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"agent": "a.B", "allow_subclasses": true})
    );
}

#[test]
fn tls_with_a_private_ca_file_and_a_clear_refusal_without_it() {
    let dir = std::env::temp_dir().join(format!("academy-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = self_signed(&dir);
    let config = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        certfile: Some(cert.clone()),
        keyfile: Some(key),
        ..ServerConfig::default()
    };
    let server = block(async { ExchangeServer::start(config).await }).unwrap();
    let url = server.url();
    assert!(url.starts_with("https://"), "{url}");

    let trusted = Factory::new(
        &url,
        Some(&format!(r#"{{"ca_file": "{}"}}"#, cert.display())),
    )
    .unwrap();
    let user = trusted.user(None).unwrap();
    assert_eq!(user.status(&user.id()).unwrap(), ACADEMY_MAILBOX_ACTIVE);

    let untrusted = Factory::new(&url, Some(r#"{"retries": 0}"#)).unwrap();
    let text = expect_err(untrusted.user(None), ACADEMY_ERR_CONNECTION);
    assert!(
        text.to_lowercase().contains("certificate"),
        "the error says why: {text}"
    );

    let unverified = Factory::new(&url, Some(r#"{"ssl_verify": false}"#)).unwrap();
    unverified.user(None).unwrap();
    block(server.stop()).unwrap();
}

#[test]
fn globus_client_credentials_and_one_reauthentication_on_403() {
    // The stand-in token endpoint hands out a stale token first.
    let tokens = StubServer::start(vec![
        (
            200,
            r#"{"access_token": "stale-token-1", "token_type": "Bearer"}"#,
        ),
        (
            200,
            r#"{"access_token": "fresh-token-2", "token_type": "Bearer"}"#,
        ),
    ]);
    let mut table = HashMap::new();
    table.insert(
        "fresh-token-2".to_owned(),
        ClientInfo {
            client_id: "alice".into(),
            groups: vec![],
        },
    );
    let config = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        auth: academy::server::AuthConfig::Tokens(table),
        ..ServerConfig::default()
    };
    let server = block(async { ExchangeServer::start(config).await }).unwrap();
    std::env::set_var("ACADEMY_GLOBUS_CLIENT_ID", "my-client");
    std::env::set_var("ACADEMY_GLOBUS_CLIENT_SECRET", "my-secret");
    let factory = Factory::new(
        &server.url(),
        Some(&format!(
            r#"{{"auth_method": "globus", "globus_token_url": "{}/token"}}"#,
            tokens.url
        )),
    )
    .unwrap();
    let user = factory.user(None).unwrap();
    let seen = tokens.seen();
    assert_eq!(seen.len(), 2, "one token, then one refresh after the 403");
    assert_eq!(seen[0].line, "POST /token HTTP/1.1");
    // Basic auth of my-client:my-secret.
    assert_eq!(
        seen[0].headers["authorization"],
        "Basic bXktY2xpZW50Om15LXNlY3JldA=="
    );
    assert!(
        seen[0].body.contains("grant_type=client_credentials"),
        "{}",
        seen[0].body
    );
    assert!(
        seen[0].body.contains("academy_exchange"),
        "{}",
        seen[0].body
    );

    // Tokens never show in errors.
    let other = academy::EntityId::new_agent(None).to_json();
    let err = user.agent_stats(&other);
    if let Err(f) = err {
        assert!(
            !f.message.contains("token-") && !f.message.contains("my-secret"),
            "{}",
            f.message
        );
    }
    let text = expect_err(
        Factory::new(&server.url(), None).unwrap().user(None),
        ACADEMY_ERR_UNAUTHORIZED,
    );
    assert!(!text.contains("fresh-token"), "{text}");
    drop(user);
    block(server.stop()).unwrap();
}

#[test]
fn globus_tokens_are_replaced_before_they_expire() {
    // The stand-in token endpoint hands out tokens that live 2 s; the
    // exchange takes both, so no 403 prompts the refresh.
    let tokens = StubServer::start(vec![
        (
            200,
            r#"{"access_token": "short-token-1", "token_type": "Bearer", "expires_in": 2}"#,
        ),
        (
            200,
            r#"{"access_token": "short-token-2", "token_type": "Bearer", "expires_in": 2}"#,
        ),
    ]);
    let mut table = HashMap::new();
    for token in ["short-token-1", "short-token-2"] {
        table.insert(
            token.to_owned(),
            ClientInfo {
                client_id: "dana".into(),
                groups: vec![],
            },
        );
    }
    let config = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        auth: academy::server::AuthConfig::Tokens(table),
        ..ServerConfig::default()
    };
    let server = block(async { ExchangeServer::start(config).await }).unwrap();
    std::env::set_var("ACADEMY_GLOBUS_CLIENT_ID", "my-client");
    std::env::set_var("ACADEMY_GLOBUS_CLIENT_SECRET", "my-secret");
    let t = transport(
        &server.url(),
        &format!(
            r#"{{"auth_method": "globus", "globus_token_url": "{}/token"}}"#,
            tokens.url
        ),
    );
    let id = academy::EntityId::new_user(None);
    block(t.create_mailbox(&id, None)).unwrap();
    assert_eq!(tokens.seen().len(), 1);
    block(t.heartbeat(&id)).unwrap();
    assert_eq!(tokens.seen().len(), 1, "the token is still fresh");
    std::thread::sleep(Duration::from_millis(2000));
    block(t.heartbeat(&id)).unwrap();
    assert_eq!(tokens.seen().len(), 2, "replaced before it expired");
    block(server.stop()).unwrap();
}

#[test]
fn listen_streams_that_the_server_ends_are_reopened() {
    // Servers whose longest listen is 2 s: the client learns the limit from
    // the 400 answer, and reconnects each time a stream ends.
    let python = PyExchange::start("listen_timeout_s = 2", "");
    let mut ours = std::ptr::null_mut();
    let options = c(r#"{"listen_timeout_s": 2}"#);
    check(unsafe { academy::ffi::exchange::academy_exchange_spawn(options.as_ptr(), &mut ours) })
        .unwrap();
    let mut our_url = std::ptr::null_mut();
    check(unsafe { academy::ffi::exchange::academy_exchange_url(ours, &mut our_url) }).unwrap();
    let urls = [python.url.clone(), take_string(our_url)];
    let handles: Vec<_> = urls
        .into_iter()
        .map(|url| {
            std::thread::spawn(move || {
                let factory = Factory::new(&url, None).unwrap();
                let user = factory.user(None).unwrap();
                let reg = user.register_agent("test.Late", None).unwrap();
                let agent = factory.agent(&reg).unwrap();
                let agent_id = agent_id_of(&reg);
                for _ in 0..2 {
                    // Idle past two server-side stream ends, then send.
                    expect_err(agent.recv(4.5), ACADEMY_ERR_TIMEOUT);
                    let m = message(&user.id(), &agent_id, r#"{"kind": "ping-request"}"#);
                    user.send(&m).unwrap();
                    assert_eq!(agent.recv(5.0).unwrap(), m);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    drop(python);
    check(unsafe { academy::ffi::exchange::academy_exchange_stop(ours) }).unwrap();
    unsafe { academy::ffi::exchange::academy_exchange_free(ours) };
}

#[test]
fn clients_keep_their_heartbeat_fresh_in_the_background() {
    for (_, url) in exchanges() {
        let factory = Factory::new(&url, Some(r#"{"heartbeat_interval_s": 0.3}"#)).unwrap();
        let observer = Factory::new(&url, None).unwrap().user(None).unwrap();
        let user = factory.user(None).unwrap();
        let id = user.id();
        let mut ages = Vec::new();
        for _ in 0..6 {
            std::thread::sleep(Duration::from_millis(300));
            ages.push(observer.heartbeat_status(&id).unwrap());
        }
        assert!(
            ages.iter().all(|a| *a < 1.0),
            "ages stay below 1 s with a 0.3 s interval: {ages:?}"
        );
        user.close().unwrap();
    }
}

#[test]
fn the_embedded_exchange_keeps_one_users_mailboxes_from_another() {
    let mut table = HashMap::new();
    table.insert(
        "alice-token".to_owned(),
        ClientInfo {
            client_id: "alice".into(),
            groups: vec!["team".into()],
        },
    );
    table.insert(
        "bob-token".to_owned(),
        ClientInfo {
            client_id: "bob".into(),
            groups: vec![],
        },
    );
    table.insert(
        "carol-token".to_owned(),
        ClientInfo {
            client_id: "carol".into(),
            groups: vec!["team".into()],
        },
    );
    let config = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        auth: academy::server::AuthConfig::Tokens(table),
        ..ServerConfig::default()
    };
    let server = block(async { ExchangeServer::start(config).await }).unwrap();
    let as_user = |token: &str| {
        Factory::new(
            &server.url(),
            Some(&format!(
                r#"{{"additional_headers": {{"Authorization": "Bearer {token}"}}}}"#
            )),
        )
        .unwrap()
    };
    let (alice_f, bob_f, carol_f) = (
        as_user("alice-token"),
        as_user("bob-token"),
        as_user("carol-token"),
    );
    let alice = alice_f.user(None).unwrap();
    let reg = alice.register_agent("private.Agent", None).unwrap();
    let agent_id = agent_id_of(&reg);
    let bob = bob_f.user(None).unwrap();
    let ping = message(&bob.id(), &agent_id, r#"{"kind": "ping-request"}"#);
    let text = expect_err(bob.send(&ping), ACADEMY_ERR_FORBIDDEN);
    assert!(!text.contains("bob-token"), "no token in errors: {text}");
    expect_err(bob.status(&agent_id), ACADEMY_ERR_FORBIDDEN);
    expect_err(bob.terminate(&agent_id), ACADEMY_ERR_FORBIDDEN);
    expect_err(bob_f.agent(&reg), ACADEMY_ERR_FORBIDDEN);
    assert_eq!(bob.discover("private.Agent", true).unwrap(), "[]");
    // Shared with a group: a member gets in, others still do not.
    alice.share(&agent_id, "team").unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&alice.shared_groups(&agent_id).unwrap())
            .unwrap(),
        serde_json::json!(["team"])
    );
    let carol = carol_f.user(None).unwrap();
    carol
        .send(&message(
            &carol.id(),
            &agent_id,
            r#"{"kind": "ping-request"}"#,
        ))
        .unwrap();
    expect_err(bob.send(&ping), ACADEMY_ERR_FORBIDDEN);
    // Without a token at all.
    expect_err(
        Factory::new(&server.url(), None).unwrap().user(None),
        ACADEMY_ERR_UNAUTHORIZED,
    );
    drop((alice, bob, carol));
    block(server.stop()).unwrap();
}
