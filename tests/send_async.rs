//! `academy_client_send_async` and `academy_client_flush`: many messages
//! in flight from one thread, against the real academy-py exchange and
//! our embedded one; and the pipelined connection under servers that close
//! it (stub servers that stand in for a misbehaving exchange or proxy).

mod common;

use std::collections::HashSet;
use std::ffi::{c_char, c_void, CStr};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use academy::ffi::academy_status::{self, *};
use academy::ffi::client::*;
use common::*;
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// What the callbacks of one test were told: (status, error text).
#[derive(Default)]
struct Outcomes(Mutex<Vec<(academy_status, Option<String>)>>);

unsafe extern "C" fn record(user_data: *mut c_void, status: academy_status, error: *const c_char) {
    let outcomes = &*(user_data as *const Outcomes);
    let text = (!error.is_null()).then(|| CStr::from_ptr(error).to_string_lossy().into_owned());
    outcomes.0.lock().unwrap().push((status, text));
}

impl Outcomes {
    fn ptr(&self) -> *mut c_void {
        self as *const Outcomes as *mut c_void
    }

    fn take(&self) -> Vec<(academy_status, Option<String>)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn send_async(client: &Client, message: &str, outcomes: &Outcomes) -> R<()> {
    let m = c(message);
    check(unsafe { academy_client_send_async(client.0, m.as_ptr(), Some(record), outcomes.ptr()) })
}

fn flush(client: &Client, timeout_s: f64) -> R<()> {
    check(unsafe { academy_client_flush(client.0, timeout_s) })
}

fn tag(message: &str) -> String {
    json(message)["header"]["tag"].as_str().unwrap().to_owned()
}

/// Receives until `n` messages came or none comes for 5 s.
fn receive_tags(agent: &Client, n: usize) -> Vec<String> {
    let mut tags = Vec::new();
    while tags.len() < n {
        match agent.recv(5.0) {
            Ok(m) => tags.push(tag(&m)),
            Err(_) => break,
        }
    }
    tags
}

#[test]
fn many_async_sends_from_one_thread_arrive_once_and_each_callback_runs_once() {
    for (name, url) in exchanges() {
        eprintln!("-- against the {name} exchange at {url}");
        let factory = Factory::new(&url, Some(r#"{"max_in_flight": 16}"#)).unwrap();
        let user = factory.user(None).unwrap();
        let reg = user.register_agent("test.Sink", None).unwrap();
        let agent = factory.agent(&reg).unwrap();
        let (user_id, agent_id) = (user.id(), agent_id_of(&reg));
        let outcomes = Outcomes::default();
        let n = 1500;
        let mut sent = HashSet::new();
        for i in 0..n {
            let m = message(&user_id, &agent_id, r#"{"kind": "ping-request"}"#);
            sent.insert(tag(&m));
            send_async(&user, &m, &outcomes).unwrap();
            if i == 10 {
                // A flush in the middle waits for what was started so far.
                flush(&user, -1.0).unwrap();
                assert!(outcomes.0.lock().unwrap().len() >= 11);
            }
        }
        flush(&user, -1.0).unwrap();
        let told = outcomes.take();
        assert_eq!(
            told.len(),
            n,
            "one callback per send, all before flush returns"
        );
        assert!(
            told.iter().all(|(s, e)| *s == ACADEMY_OK && e.is_none()),
            "{told:?}"
        );
        let received = receive_tags(&agent, n);
        assert_eq!(received.len(), n, "every message arrives");
        assert_eq!(
            received.into_iter().collect::<HashSet<_>>(),
            sent,
            "each once"
        );
        assert!(agent.recv(0.3).is_err(), "and nothing more");
    }
}

#[test]
fn failed_async_sends_reach_the_callback_and_the_next_flush_once() {
    for (name, url) in exchanges() {
        eprintln!("-- against the {name} exchange at {url}");
        let factory = Factory::new(&url, None).unwrap();
        let user = factory.user(None).unwrap();
        let nobody =
            r#"{"uid": "2d6a1e1c-3f55-4d1e-9f0b-3b1c1d2e3f40", "name": null, "role": "agent"}"#;
        let outcomes = Outcomes::default();
        for _ in 0..3 {
            let m = message(&user.id(), nobody, r#"{"kind": "ping-request"}"#);
            send_async(&user, &m, &outcomes).unwrap();
        }
        let text = expect_err(flush(&user, -1.0), ACADEMY_ERR_BAD_ENTITY_ID);
        assert!(text.starts_with("3 background sends failed"), "{text}");
        let told = outcomes.take();
        assert_eq!(told.len(), 3);
        for (status, error) in told {
            assert_eq!(status, ACADEMY_ERR_BAD_ENTITY_ID);
            assert!(
                error.is_some_and(|e| !e.is_empty()),
                "the callback gets the text"
            );
        }
        // Reported once: the next flush has nothing to report.
        flush(&user, -1.0).unwrap();
    }
}

#[test]
fn close_sends_what_was_started_first() {
    let url = shared_embedded_exchange();
    let factory = Factory::new(&url, Some(r#"{"max_in_flight": 64}"#)).unwrap();
    let user = factory.user(None).unwrap();
    let reg = user.register_agent("test.Sink", None).unwrap();
    let agent = factory.agent(&reg).unwrap();
    let outcomes = Outcomes::default();
    let mut sent = HashSet::new();
    for _ in 0..300 {
        let m = message(
            &user.id(),
            &agent_id_of(&reg),
            r#"{"kind": "ping-request"}"#,
        );
        sent.insert(tag(&m));
        send_async(&user, &m, &outcomes).unwrap();
    }
    user.close().unwrap();
    assert_eq!(outcomes.take().len(), 300, "close waited for every send");
    let received: HashSet<String> = receive_tags(&agent, 300).into_iter().collect();
    assert_eq!(received, sent);
    // After close: new sends are refused, flush still answers.
    let m = message(
        &user.id(),
        &agent_id_of(&reg),
        r#"{"kind": "ping-request"}"#,
    );
    expect_err(send_async(&user, &m, &outcomes), ACADEMY_ERR_CLOSED);
    flush(&user, 1.0).unwrap();
    assert!(outcomes.take().is_empty());
}

/// Calls back into the library from a send's callback.
struct Reentry {
    client: *mut academy_client,
    message: std::ffi::CString,
    blocking: Mutex<Option<academy_status>>,
    nested: Outcomes,
    nested_start: Mutex<Option<academy_status>>,
}

unsafe extern "C" fn reenter(user_data: *mut c_void, status: academy_status, _: *const c_char) {
    let r = &*(user_data as *const Reentry);
    assert_eq!(status, ACADEMY_OK);
    *r.blocking.lock().unwrap() = Some(academy_client_send(r.client, r.message.as_ptr()));
    let started =
        academy_client_send_async(r.client, r.message.as_ptr(), Some(record), r.nested.ptr());
    if started != ACADEMY_OK {
        eprintln!(
            "{}",
            CStr::from_ptr(academy::ffi::academy_last_error()).to_string_lossy()
        );
    }
    *r.nested_start.lock().unwrap() = Some(started);
}

#[test]
fn a_callback_may_start_a_send_but_not_block() {
    let url = shared_embedded_exchange();
    let factory = Factory::new(&url, None).unwrap();
    let user = factory.user(None).unwrap();
    let reg = user.register_agent("test.Sink", None).unwrap();
    let _agent = factory.agent(&reg).unwrap();
    let r = Reentry {
        client: user.0,
        message: c(&message(
            &user.id(),
            &agent_id_of(&reg),
            r#"{"kind": "ping-request"}"#,
        )),
        blocking: Mutex::new(None),
        nested: Outcomes::default(),
        nested_start: Mutex::new(None),
    };
    let ptr = &r as *const Reentry as *mut c_void;
    check(unsafe { academy_client_send_async(user.0, r.message.as_ptr(), Some(reenter), ptr) })
        .unwrap();
    flush(&user, 10.0).unwrap();
    assert_eq!(
        *r.blocking.lock().unwrap(),
        Some(ACADEMY_ERR_INVALID_ARGUMENT)
    );
    assert_eq!(*r.nested_start.lock().unwrap(), Some(ACADEMY_OK));
    flush(&user, 10.0).unwrap();
    assert_eq!(r.nested.take().len(), 1);
}

/// A stub HTTP server standing in for a faulty exchange. Sends (`PUT
/// /message`): answers each connection's first `answers` with 200 and
/// `connection: close` on the last, then closes; `answers == 0` reads
/// them and never answers (a hung exchange). Anything else: 200, empty.
/// Returns its URL.
fn stub_exchange(answers: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut answered = 0;
                loop {
                    // One request: head lines, then content-length bytes.
                    let mut length = 0;
                    let mut is_send = None;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        is_send.get_or_insert(line.starts_with("PUT /message "));
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    if is_send != Some(true) {
                        let ok =
                            "HTTP/1.1 200 OK\r\ncontent-length: 19\r\n\r\n{\"status\":\"ACTIVE\"}";
                        if conn.write_all(ok.as_bytes()).is_err() {
                            return;
                        }
                        continue;
                    }
                    if answers == 0 {
                        continue;
                    }
                    answered += 1;
                    let last = answered == answers;
                    let close = if last { "connection: close\r\n" } else { "" };
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n{close}\r\n");
                    if conn.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    if last {
                        // Close as RFC 9112 9.6 asks: stop writing, then read
                        // (and drop) what the client sent meanwhile until it
                        // closes, so the kernel does not reset the answer away.
                        let _ = conn.shutdown(std::net::Shutdown::Write);
                        let _ = std::io::copy(&mut reader, &mut std::io::sink());
                        return;
                    }
                }
            });
        }
    });
    url
}

/// A message between two made-up mailboxes (the stub does not look).
fn any_message() -> String {
    let user = r#"{"uid": "2d6a1e1c-3f55-4d1e-9f0b-3b1c1d2e3f41", "name": null, "role": "user"}"#;
    let agent = r#"{"uid": "2d6a1e1c-3f55-4d1e-9f0b-3b1c1d2e3f42", "name": null, "role": "agent"}"#;
    message(user, agent, r#"{"kind": "ping-request"}"#)
}

fn stub_client(url: &str, options: &str) -> Client {
    // No user client (the stub cannot register one): a client of an agent
    // mailbox the stub "accepts" (it answers 200 to everything).
    let factory = Factory::new(url, Some(options)).unwrap();
    let reg = format!(
        r#"{{"agent_id": {}, "exchange_type": "http"}}"#,
        r#"{"uid": "2d6a1e1c-3f55-4d1e-9f0b-3b1c1d2e3f42", "name": null, "role": "agent"}"#
    );
    factory.agent(&reg).unwrap()
}

#[test]
fn requests_a_server_closed_the_connection_before_reading_go_again() {
    for answers in [1, 3] {
        let url = stub_exchange(answers);
        let client = stub_client(&url, r#"{"max_in_flight": 32, "retries": 0}"#);
        let outcomes = Outcomes::default();
        for _ in 0..100 {
            send_async(&client, &any_message(), &outcomes).unwrap();
        }
        flush(&client, 30.0).unwrap();
        let told = outcomes.take();
        assert_eq!(told.len(), 100);
        assert!(
            told.iter().all(|(s, _)| *s == ACADEMY_OK),
            "{answers}: {told:?}"
        );
    }
}

#[test]
fn flush_times_out_while_the_exchange_hangs_and_reports_later() {
    let url = stub_exchange(0);
    let client = stub_client(&url, r#"{"request_timeout_s": 1, "retries": 0}"#);
    let outcomes = Outcomes::default();
    for _ in 0..5 {
        send_async(&client, &any_message(), &outcomes).unwrap();
    }
    let start = Instant::now();
    expect_err(flush(&client, 0.2), ACADEMY_ERR_TIMEOUT);
    assert!(start.elapsed() < Duration::from_millis(900));
    // The sends time out on their own (request_timeout_s) and say so.
    let err = flush(&client, 10.0).unwrap_err();
    assert!(
        matches!(err.status, ACADEMY_ERR_TIMEOUT | ACADEMY_ERR_CONNECTION),
        "{err:?}"
    );
    let told = outcomes.take();
    assert_eq!(told.len(), 5);
    assert!(told.iter().all(|(s, _)| *s != ACADEMY_OK));
}

#[test]
fn a_panicking_rust_callback_does_not_hold_up_flush() {
    use academy::{EntityId, Factory as RustFactory, FactoryOptions, Message};
    let url = shared_embedded_exchange();
    use academy::runtime::block_on;
    let factory = RustFactory::new(&url, FactoryOptions::default()).unwrap();
    let user = block_on(factory.create_user_client(None)).unwrap().unwrap();
    let registration = block_on(user.register_agent("test.Sink", None))
        .unwrap()
        .unwrap();
    let dest = EntityId::from_value(&json(&registration)["agent_id"]).unwrap();
    let message = Message::create(
        user.mailbox_id().clone(),
        dest,
        serde_json::json!({"kind": "ping-request"}),
        None,
    )
    .unwrap();
    user.send_in_background(&message.to_json(), |_| panic!("a callback that panics"))
        .unwrap();
    // The send itself succeeded; its end is counted although `done` panicked.
    block_on(user.flush(Some(Duration::from_secs(10))))
        .unwrap()
        .unwrap();
}
