//! Credentials never show in an error text or a log line, through the C
//! API: options of the wrong type (passwords, user names, tokens, headers,
//! anything under `kwargs` / `redis_kwargs`) are named with the type
//! expected, never echoed; URLs with `user:password@` lose their userinfo
//! wherever they are printed.

mod common;

use std::ptr;
use std::time::{Duration, Instant};

use academy::ffi::academy_status::{self, *};
use academy::ffi::exchange::*;
use academy::ffi::factory::*;
use common::*;

/// What every secret in these tests contains.
const SECRET: &str = "sekrit";
const SECRET_NUMBER: &str = "987654321";

/// Checks a failed call: INVALID_ARGUMENT, its text names `says`, and
/// holds no secret.
#[track_caller]
fn refused_without_secret(what: &str, status: academy_status, says: &str) {
    let text = last_error();
    assert_eq!(status, ACADEMY_ERR_INVALID_ARGUMENT, "{what}: {text}");
    assert!(text.contains(says), "{what}: {text:?} should name {says:?}");
    assert!(
        !text.contains(SECRET) && !text.contains(SECRET_NUMBER),
        "{what}: the error shows a credential: {text}"
    );
}

#[test]
fn options_of_the_wrong_type_name_the_key_never_the_value() {
    let redis = [
        (r#"{"kwargs": {"password": 987654321}}"#, "kwargs.password"),
        (r#"{"kwargs": {"password": ["sekrit"]}}"#, "kwargs.password"),
        (
            r#"{"kwargs": {"password": {"p": "sekrit"}}}"#,
            "kwargs.password",
        ),
        (r#"{"kwargs": {"username": 987654321}}"#, "kwargs.username"),
        (r#"{"kwargs": {"db": "sekrit"}}"#, "kwargs.db"),
        (r#"{"kwargs": {"db": -987654321}}"#, "kwargs.db"),
        (r#"{"kwargs": "sekrit"}"#, "kwargs"),
        (r#"{"kwargs": ["sekrit"]}"#, "kwargs"),
        (r#"{"kwargs": 987654321}"#, "kwargs"),
    ];
    for (options, says) in redis {
        let o = c(options);
        let mut f = ptr::null_mut();
        let status = unsafe { academy_redis_factory_new(o.as_ptr(), &mut f) };
        refused_without_secret(options, status, says);
    }
    let hybrid = [
        (
            r#"{"redis_kwargs": {"password": {"p": "sekrit"}}}"#,
            "redis_kwargs.password",
        ),
        (
            r#"{"redis_kwargs": {"password": 987654321}}"#,
            "redis_kwargs.password",
        ),
        (r#"{"redis_kwargs": "sekrit"}"#, "redis_kwargs"),
        (
            r#"{"redis_kwargs": {"username": ["sekrit"]}}"#,
            "redis_kwargs.username",
        ),
    ];
    for (options, says) in hybrid {
        let o = c(options);
        let mut f = ptr::null_mut();
        let status = unsafe { academy_hybrid_factory_new(o.as_ptr(), &mut f) };
        refused_without_secret(options, status, says);
    }
    let http = [
        (
            r#"{"additional_headers": "Bearer sekrit"}"#,
            "additional_headers",
        ),
        (
            r#"{"additional_headers": ["sekrit"]}"#,
            "additional_headers",
        ),
        (
            r#"{"additional_headers": {"Authorization": 987654321}}"#,
            "Authorization",
        ),
        (
            r#"{"additional_headers": {"Authorization": {"v": "sekrit"}}}"#,
            "Authorization",
        ),
        (
            r#"{"additional_headers": {"X-Token": "sekrit\u0001"}}"#,
            "X-Token",
        ),
        (r#"{"globus_token_url": ["sekrit"]}"#, "bad factory option"),
    ];
    let url = c("http://127.0.0.1:9");
    for (options, says) in http {
        let o = c(options);
        let mut f = ptr::null_mut();
        let status = unsafe { academy_http_factory_new(url.as_ptr(), o.as_ptr(), &mut f) };
        refused_without_secret(options, status, says);
    }
    let exchange = [
        (
            r#"{"backend": {"kind": "redis", "kwargs": {"password": 987654321}}}"#,
            "exchange options",
        ),
        (
            r#"{"backend": {"kind": "redis", "kwargs": {"password": ["sekrit"]}}}"#,
            "exchange options",
        ),
        (
            r#"{"backend": {"kind": "redis", "kwargs": "sekrit"}}"#,
            "exchange options",
        ),
        (
            r#"{"auth": {"method": "token", "kwargs": {"tokens": {"sekrit": {"client_id": 987654321}}}}}"#,
            "auth.kwargs",
        ),
        (
            r#"{"auth": {"method": "token", "kwargs": {"tokens": {"sekrit": "x"}}}}"#,
            "auth.kwargs",
        ),
        (r#"["sekrit"]"#, "a JSON object"),
    ];
    for (options, says) in exchange {
        let o = c(options);
        let mut e = ptr::null_mut();
        let status = unsafe { academy_exchange_spawn(o.as_ptr(), &mut e) };
        refused_without_secret(options, status, says);
    }
}

/// The exchange's TOML config (academy-exchange --config): errors give the
/// line, column and key, never the line itself or a value.
#[test]
fn the_exchange_config_names_the_line_and_key_never_the_value() {
    use academy::server::config::ServerConfig;
    for (toml, says) in [
        (
            "[backend]\nkind = \"redis\"\n[backend.kwargs]\npassword = 987654321",
            "line 4, column 12 (key password)",
        ),
        (
            "[backend]\nkind = \"redis\"\n[backend.kwargs]\npassword = [\"sekrit\"]",
            "(key password)",
        ),
        (
            "[backend]\nkind = \"redis\"\nkwargs = \"sekrit\"",
            "(key kwargs)",
        ),
        (
            "[backend.kwargs]\nusername = { u = \"sekrit\" }",
            "(key username)",
        ),
        (
            "[auth]\nmethod = \"token\"\n[auth.kwargs.tokens]\nsekrit = 987654321",
            "auth.kwargs",
        ),
        (
            "[auth]\nmethod = \"token\"\n[auth.kwargs.tokens.sekrit]\nclient_id = 987654321",
            "auth.kwargs",
        ),
        (
            "[auth.kwargs.tokens.sekrit]\n[auth.kwargs.tokens.sekrit]",
            "line 2",
        ),
    ] {
        let e = ServerConfig::from_toml_str(toml).unwrap_err();
        assert_eq!(e.status, academy::Status::InvalidArgument, "{toml}");
        assert!(
            e.message.contains(says),
            "{toml}: {:?} should say {says:?}",
            e.message
        );
        assert!(
            !e.message.contains(SECRET) && !e.message.contains(SECRET_NUMBER),
            "{toml}: the error shows a credential: {}",
            e.message
        );
    }
}

// ---- user:password@ in URLs ----

/// One request as the header stub saw it.
#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    authorization: Option<String>,
    user_agent: String,
}

/// A stub exchange (it stands in for one, only to record what clients
/// send): every request is recorded and answered `200 {}`, except listen
/// streams, answered 503 so that clients back off.
struct HeaderStub {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

impl HeaderStub {
    fn start() -> HeaderStub {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = record.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut out = stream;
                    loop {
                        let mut request_line = String::new();
                        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                            return;
                        }
                        let (mut length, mut authorization, mut user_agent) =
                            (0usize, None, String::new());
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            let line = line.trim_end();
                            if line.is_empty() {
                                break;
                            }
                            let (name, value) = line.split_once(':').unwrap_or((line, ""));
                            let value = value.trim().to_owned();
                            match name.to_ascii_lowercase().as_str() {
                                "content-length" => length = value.parse().unwrap_or(0),
                                "authorization" => authorization = Some(value),
                                "user-agent" => user_agent = value,
                                _ => {}
                            }
                        }
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        let listen = request_line.contains("/mailbox/listen");
                        record.lock().unwrap().push(Seen {
                            request_line: request_line.trim_end().to_owned(),
                            authorization,
                            user_agent,
                        });
                        let answer: &[u8] = if listen {
                            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nretry-after: 5\r\n\r\n"
                        } else {
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
                        };
                        if out.write_all(answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        HeaderStub { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until a request with `what` in its request line came from a
    /// client whose user agent has `agent`.
    fn wait_for(&self, what: &str, agent: &str) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = self.seen();
            if seen
                .iter()
                .any(|s| s.request_line.contains(what) && s.user_agent.contains(agent))
            {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} request from {agent}: {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The Authorization that academy-py 1.0.0 (aiohttp) sends for `url`,
/// as the stub saw it (a real academy-py client against the stub), or
/// what academy-py printed when it sent nothing.
fn academy_py_sends(
    stub: &HeaderStub,
    url: &str,
    additional_headers: &str,
) -> Result<Option<String>, String> {
    let script = r#"
import asyncio, json, sys
from academy.exchange.cloud.client import HttpExchangeFactory

async def main():
    factory = HttpExchangeFactory(sys.argv[1], additional_headers=json.loads(sys.argv[2]))
    try:
        client = await asyncio.wait_for(factory.create_user_client(start_listener=False), 10)
        await client.close()
    except Exception as e:
        print('academy-py:', type(e).__name__, e)

asyncio.run(main())
"#;
    let out = std::process::Command::new(python())
        .args(["-c", script, url, additional_headers])
        .output()
        .expect("run academy-py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    if printed.contains("academy-py:") {
        return Err(printed);
    }
    let seen = stub.wait_for("POST /mailbox", "aiohttp");
    Ok(seen
        .iter()
        .find(|s| s.request_line.starts_with("POST /mailbox") && s.user_agent.contains("aiohttp"))
        .and_then(|s| s.authorization.clone()))
}

/// The Authorization our client sent with every request (of the direct
/// path, the blocking calls, and of reqwest, the listen stream).
fn we_send(stub: &HeaderStub, url: &str, additional_headers: &str) -> Option<String> {
    let options = format!(r#"{{"additional_headers": {additional_headers}}}"#);
    let factory = Factory::new(url, Some(&options)).unwrap();
    let _user = factory.user(None).unwrap();
    let seen = stub.wait_for("/mailbox/listen", "");
    let ours: Vec<&Seen> = seen
        .iter()
        .filter(|s| !s.user_agent.contains("aiohttp"))
        .collect();
    assert!(ours.len() >= 3, "{ours:?}");
    for s in &ours {
        assert_eq!(s.authorization, ours[0].authorization, "{url}: {ours:?}");
    }
    ours[0].authorization.clone()
}

#[test]
fn a_url_with_user_and_password_sends_basic_auth_as_academy_py_does() {
    for userinfo in ["adv2user:urlPW-sekrit", "%C3%A9l%40ve:p%3Aw", "only-user"] {
        let stub = HeaderStub::start();
        let url = format!("http://{userinfo}@{}", stub.url);
        let python = academy_py_sends(&stub, &url, "{}").unwrap();
        assert!(
            python.as_deref().is_some_and(|a| a.starts_with("Basic ")),
            "academy-py sends Basic auth for {url}: {python:?}"
        );
        assert_eq!(we_send(&stub, &url, "{}"), python, "{url}");
    }
    // With an Authorization in additional_headers academy-py refuses
    // every request; ours sends the header given.
    let stub = HeaderStub::start();
    let url = format!("http://adv2user:urlPW-sekrit@{}", stub.url);
    let headers = r#"{"Authorization": "Bearer from-headers"}"#;
    let refused = academy_py_sends(&stub, &url, headers).unwrap_err();
    assert!(
        refused.contains("Cannot combine AUTHORIZATION header"),
        "{refused}"
    );
    assert_eq!(
        we_send(&stub, &url, headers).as_deref(),
        Some("Bearer from-headers")
    );
}

/// Failures to reach an exchange, Redis or a proxy never show the
/// `user:password@` of a URL, in the error text or in the log.
static LOG: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

unsafe extern "C" fn keep_line(
    _: *mut std::ffi::c_void,
    _: academy::ffi::log::academy_log_level,
    target: *const std::ffi::c_char,
    message: *const std::ffi::c_char,
) {
    let (target, message) = (text(target), text(message));
    LOG.lock().unwrap().push(format!("{target}: {message}"));
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn unreachable_urls_never_show_their_password() {
    let status =
        unsafe { academy::ffi::log::academy_set_log_callback(Some(keep_line), ptr::null_mut(), 5) };
    assert_eq!(status, ACADEMY_OK);
    let port = closed_port();
    let fast = r#"{"retries": 0, "connect_timeout_s": 2, "request_timeout_s": 2}"#;
    for url in [
        format!("http://adv2user:urlPW-sekrit@127.0.0.1:{port}"),
        format!("https://adv2user:urlPW-sekrit@127.0.0.1:{port}/base/"),
        format!("http://adv2user:urlPW-sekrit@127.0.0.1:{port}/a b"),
    ] {
        let failure = Factory::new(&url, Some(fast))
            .and_then(|f| f.user(None))
            .unwrap_err();
        assert!(
            !failure.message.contains("sekrit") && !failure.message.contains("adv2user"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains(&format!("127.0.0.1:{port}")),
            "{}",
            failure.message
        );
    }
    let redis_options = [
        format!(r#"{{"hostname": "ruser:sekrit@127.0.0.1", "port": {port}}}"#),
        format!(r#"{{"port": {port}, "kwargs": {{"username": "ruser", "password": "sekrit"}}}}"#),
    ];
    for options in &redis_options {
        let o = c(options);
        let mut f = ptr::null_mut();
        check(unsafe { academy_redis_factory_new(o.as_ptr(), &mut f) }).unwrap();
        let factory = Factory(f);
        let failure = factory.user(None).unwrap_err();
        assert!(!failure.message.contains("sekrit"), "{}", failure.message);
    }
    let hybrid = format!(
        r#"{{"redis_host": "ruser:sekrit@127.0.0.1", "redis_port": {port}, "interface": "127.0.0.1"}}"#
    );
    let o = c(&hybrid);
    let mut f = ptr::null_mut();
    check(unsafe { academy_hybrid_factory_new(o.as_ptr(), &mut f) }).unwrap();
    let failure = Factory(f).user(None).unwrap_err();
    assert!(!failure.message.contains("sekrit"), "{}", failure.message);
    let exchange = format!(
        r#"{{"backend": {{"kind": "redis", "hostname": "ruser:sekrit@127.0.0.1", "port": {port}, "kwargs": {{"password": "sekrit"}}}}}}"#
    );
    let o = c(&exchange);
    let mut e = ptr::null_mut();
    let status = unsafe { academy_exchange_spawn(o.as_ptr(), &mut e) };
    assert_ne!(status, ACADEMY_OK);
    assert!(!last_error().contains("sekrit"), "{}", last_error());
    unsafe { academy::ffi::log::academy_set_log_callback(None, ptr::null_mut(), 0) };
    let log = LOG.lock().unwrap();
    assert!(
        log.iter().any(|l| l.contains(&format!("127.0.0.1:{port}"))),
        "{log:?}"
    );
    let leaks: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("sekrit") || l.contains("adv2user"))
        .collect();
    assert!(leaks.is_empty(), "log lines with a credential: {leaks:?}");
}

/// A proxy with `user:password@` (HTTP_PROXY, as for the Python client):
/// run in a child process of this test, whose environment has it.
#[test]
fn an_unreachable_proxy_never_shows_its_password() {
    const CHILD: &str = "ACADEMY_TEST_PROXY_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let failure = Factory::new("http://127.0.0.2:9", Some(r#"{"retries": 0}"#))
            .and_then(|f| f.user(None))
            .unwrap_err();
        assert!(
            !failure.message.contains("sekrit") && !failure.message.contains("puser"),
            "{}",
            failure.message
        );
        println!("child: {}", failure.message);
        return;
    }
    let proxy = format!("http://puser:proxyPW-sekrit@127.0.0.1:{}", closed_port());
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_unreachable_proxy_never_shows_its_password",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("HTTP_PROXY", &proxy)
        .env("http_proxy", &proxy)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("child: "),
        "the child ran the check: {stdout}"
    );
}
