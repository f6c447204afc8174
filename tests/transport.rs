//! Issue 2: the transport calls of the C API against the real academy-py
//! exchange and against our embedded one, with the same assertions.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use academy::ffi::academy_status::*;
use academy::ffi::client::academy_mailbox_status::*;
use common::*;
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Runs `test` against each exchange, naming the exchange on failure.
fn on_each_exchange(test: impl Fn(&str)) {
    for (name, url) in exchanges() {
        eprintln!("-- against the {name} exchange at {url}");
        test(&url);
    }
}

#[test]
fn users_agents_status_discover_and_terminate() {
    on_each_exchange(|url| {
        let factory = Factory::new(url, None).unwrap();
        let user = factory.user(Some("tester")).unwrap();
        let user_id = json(&user.id());
        assert_eq!(user_id["role"], "user");
        assert_eq!(user_id["name"], "tester");

        let class = format!("test_{}.Calc", uuid::Uuid::new_v4().simple());
        let reg = user
            .register_agent(&format!("{class},test.Base"), Some("calc"))
            .unwrap();
        assert_eq!(json(&reg)["exchange_type"], "http");
        let agent_id = agent_id_of(&reg);
        // Registered but never heartbeating: INACTIVE, as academy-py says.
        assert_eq!(user.status(&agent_id).unwrap(), ACADEMY_MAILBOX_INACTIVE);
        let agent = factory.agent(&reg).unwrap();
        assert_eq!(json(&agent.id()), json(&agent_id));
        // The agent client sends a heartbeat when it starts.
        assert_eq!(user.status(&agent_id).unwrap(), ACADEMY_MAILBOX_ACTIVE);
        let age = user.heartbeat_status(&agent_id).unwrap();
        assert!((0.0..5.0).contains(&age), "age {age}");
        agent.heartbeat().unwrap();

        let uid = json(&agent_id)["uid"].clone();
        let found = json(&user.discover(&class, false).unwrap());
        assert_eq!(found.as_array().unwrap().len(), 1);
        assert_eq!(found[0]["uid"], uid);
        assert_eq!(found[0]["role"], "agent");
        assert_eq!(
            json(&user.discover("test.Base", false).unwrap())
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["uid"] == uid)
                .count(),
            0
        );
        assert_eq!(
            json(&user.discover("test.Base", true).unwrap())
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["uid"] == uid)
                .count(),
            1
        );

        let stats = json(&user.agent_stats(&agent_id).unwrap());
        for key in ["incoming", "outgoing", "completed", "in_progress", "queued"] {
            assert_eq!(stats[key], 0, "{key} in {stats}");
        }

        user.terminate(&agent_id).unwrap();
        user.terminate(&agent_id).unwrap(); // idempotent
        assert_eq!(user.status(&agent_id).unwrap(), ACADEMY_MAILBOX_TERMINATED);
        assert_eq!(json(&user.discover(&class, true).unwrap()), json("[]"));
        expect_err(factory.agent(&reg), ACADEMY_ERR_MAILBOX_TERMINATED);
        expect_err(
            user.heartbeat_status(&agent_id),
            ACADEMY_ERR_MAILBOX_TERMINATED,
        );

        let unknown = format!(
            r#"{{"agent_id": {}, "exchange_type": "http"}}"#,
            academy_agent_id()
        );
        expect_err(factory.agent(&unknown), ACADEMY_ERR_BAD_ENTITY_ID);
        assert_eq!(
            user.status(&agent_id_of(&unknown)).unwrap(),
            ACADEMY_MAILBOX_MISSING
        );
        user.terminate(&agent_id_of(&unknown)).unwrap(); // unknown: a no-op
        expect_err(
            user.heartbeat_status(&agent_id_of(&unknown)),
            ACADEMY_ERR_BAD_ENTITY_ID,
        );
    });
}

fn academy_agent_id() -> String {
    let mut out = std::ptr::null_mut();
    unsafe { academy::ffi::messages::academy_agent_id_new(std::ptr::null(), &mut out) };
    take_string(out)
}

#[test]
fn messages_arrive_unchanged_and_errors_map() {
    on_each_exchange(|url| {
        let factory = Factory::new(url, None).unwrap();
        let user = factory.user(None).unwrap();
        let reg = user.register_agent("test.Echo", None).unwrap();
        let agent = factory.agent(&reg).unwrap();
        let agent_id = agent_id_of(&reg);

        let sent = message(&user.id(), &agent_id, r#"{"kind": "ping-request"}"#);
        user.send(&sent).unwrap();
        assert_eq!(
            agent.recv(10.0).unwrap(),
            sent,
            "the message must arrive byte for byte"
        );

        // Timeouts: 0 returns at once (the bound leaves room for a busy CI
        // machine), a positive one on time.
        let start = Instant::now();
        expect_err(agent.recv(0.0), ACADEMY_ERR_TIMEOUT);
        assert!(start.elapsed() < Duration::from_millis(500));
        let start = Instant::now();
        let msg = expect_err(agent.recv(0.3), ACADEMY_ERR_TIMEOUT);
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
            "{waited:?}: {msg}"
        );

        // A message that arrives after a timed-out receive is not lost.
        let later = message(&user.id(), &agent_id, r#"{"kind": "ping-request"}"#);
        user.send(&later).unwrap();
        assert_eq!(agent.recv(10.0).unwrap(), later);
        // The same message (same tag) sent again is a duplicate: dropped.
        user.send(&later).unwrap();
        expect_err(agent.recv(0.5), ACADEMY_ERR_TIMEOUT);

        // Unknown and terminated destinations.
        let nowhere = message(
            &user.id(),
            &academy_agent_id(),
            r#"{"kind": "ping-request"}"#,
        );
        let text = expect_err(user.send(&nowhere), ACADEMY_ERR_BAD_ENTITY_ID);
        assert!(text.contains("404"), "{text}");
        user.terminate(&agent_id).unwrap();
        // A new message (a repeat of a delivered one is acknowledged again
        // by an exchange that drops repeats).
        let fresh = message(&user.id(), &agent_id, r#"{"kind": "ping-request"}"#);
        let text = expect_err(user.send(&fresh), ACADEMY_ERR_MAILBOX_TERMINATED);
        assert!(
            text.contains("419") && text.contains("Mailbox was closed"),
            "{text}"
        );
        // The terminated agent's receive says so.
        expect_err(agent.recv(10.0), ACADEMY_ERR_MAILBOX_TERMINATED);

        // Not a message at all.
        expect_err(user.send("{}"), ACADEMY_ERR_INVALID_ARGUMENT);
        expect_err(user.send("not json"), ACADEMY_ERR_INVALID_ARGUMENT);
    });
}

#[test]
fn message_over_the_size_limit_is_refused() {
    let mut python = PyExchange::start("", "message_size_limit_kb = 1");
    let mut ours = std::ptr::null_mut();
    let options = c(r#"{"message_size_limit_kb": 1}"#);
    check(unsafe { academy::ffi::exchange::academy_exchange_spawn(options.as_ptr(), &mut ours) })
        .unwrap();
    let mut our_url = std::ptr::null_mut();
    check(unsafe { academy::ffi::exchange::academy_exchange_url(ours, &mut our_url) }).unwrap();
    for url in [python.url.clone(), take_string(our_url)] {
        let factory = Factory::new(&url, None).unwrap();
        let user = factory.user(None).unwrap();
        let reg = user.register_agent("test.Big", None).unwrap();
        let agent_id = agent_id_of(&reg);
        let big = format!(
            r#"{{"kind": "action-request", "action": "x", "serialization": "json", "pargs": "{}", "kargs": "{{}}"}}"#,
            "7".repeat(2000)
        );
        let text = expect_err(
            user.send(&message(&user.id(), &agent_id, &big)),
            ACADEMY_ERR_MESSAGE_TOO_LARGE,
        );
        assert!(text.contains("413"), "{text}");
        let small = message(&user.id(), &agent_id, r#"{"kind": "ping-request"}"#);
        user.send(&small).unwrap();
    }
    python.kill();
    check(unsafe { academy::ffi::exchange::academy_exchange_stop(ours) }).unwrap();
    unsafe { academy::ffi::exchange::academy_exchange_free(ours) };
}

#[test]
fn an_exchange_that_is_not_running_is_a_connection_error() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let factory = Factory::new(
        &url,
        Some(r#"{"retries": 1, "initial_retry_backoff_s": 0.05}"#),
    )
    .unwrap();
    let text = expect_err(factory.user(None), ACADEMY_ERR_CONNECTION);
    assert!(
        text.contains("127.0.0.1") && text.contains("could not be reached"),
        "{text}"
    );
}

#[test]
fn sharing_answers_like_academy_py() {
    on_each_exchange(|url| {
        let factory = Factory::new(url, None).unwrap();
        let user = factory.user(None).unwrap();
        let id = user.id();
        assert_eq!(json(&user.shared_groups(&id).unwrap()), json("[]"));
        // Without authentication the owner is in no group.
        let group = uuid::Uuid::new_v4().to_string();
        expect_err(user.share(&id, &group), ACADEMY_ERR_FORBIDDEN);
        expect_err(user.unshare(&id, &group), ACADEMY_ERR_BAD_REQUEST);
        expect_err(
            user.shared_groups(&academy_agent_id()),
            ACADEMY_ERR_BAD_ENTITY_ID,
        );
    });
}

#[test]
fn close_terminates_a_user_and_later_calls_say_closed() {
    on_each_exchange(|url| {
        let factory = Factory::new(url, None).unwrap();
        let observer = factory.user(None).unwrap();
        let user = factory.user(None).unwrap();
        let id = user.id();
        assert_eq!(observer.status(&id).unwrap(), ACADEMY_MAILBOX_ACTIVE);
        user.close().unwrap();
        user.close().unwrap(); // twice is fine
        assert_eq!(observer.status(&id).unwrap(), ACADEMY_MAILBOX_TERMINATED);
        expect_err(user.recv(0.0), ACADEMY_ERR_CLOSED);
        expect_err(
            user.send(&message(&id, &id, r#"{"kind": "ping-request"}"#)),
            ACADEMY_ERR_CLOSED,
        );
        expect_err(user.discover("x", true), ACADEMY_ERR_CLOSED);
        expect_err(user.heartbeat(), ACADEMY_ERR_CLOSED);

        // An agent client's close keeps the mailbox.
        let reg = observer.register_agent("test.Keep", None).unwrap();
        let agent = factory.agent(&reg).unwrap();
        agent.close().unwrap();
        assert_ne!(
            observer.status(&agent_id_of(&reg)).unwrap(),
            ACADEMY_MAILBOX_TERMINATED
        );
        let again = factory.agent(&reg).unwrap();
        again.close().unwrap();
    });
}

#[test]
fn eight_threads_send_two_hundred_each_and_all_arrive_once() {
    on_each_exchange(|url| {
        let factory = Factory::new(url, None).unwrap();
        let user = Arc::new(factory.user(None).unwrap());
        let reg = user.register_agent("test.Sink", None).unwrap();
        let agent = Arc::new(factory.agent(&reg).unwrap());
        let agent_id = agent_id_of(&reg);
        let user_id = user.id();

        let receivers: Vec<_> = (0..4)
            .map(|_| {
                let agent = agent.clone();
                std::thread::spawn(move || {
                    let mut tags = Vec::new();
                    while let Ok(m) = agent.recv(3.0) {
                        tags.push(json(&m)["header"]["tag"].as_str().unwrap().to_owned());
                    }
                    tags
                })
            })
            .collect();
        let senders: Vec<_> = (0..8)
            .map(|_| {
                let (user, user_id, agent_id) = (user.clone(), user_id.clone(), agent_id.clone());
                std::thread::spawn(move || {
                    (0..200)
                        .map(|_| {
                            let m = message(&user_id, &agent_id, r#"{"kind": "ping-request"}"#);
                            user.send(&m).unwrap();
                            json(&m)["header"]["tag"].as_str().unwrap().to_owned()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let sent: HashSet<String> = senders
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let received: Vec<String> = receivers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(sent.len(), 1600);
        assert_eq!(
            received.len(),
            1600,
            "every message arrives once (no loss, no duplicate)"
        );
        assert_eq!(received.into_iter().collect::<HashSet<_>>(), sent);
    });
}

#[test]
fn python_transport_sees_our_messages_and_we_see_its() {
    on_each_exchange(|url| {
        let factory = Factory::new(url, None).unwrap();
        let user = factory.user(None).unwrap();
        let class = format!("xcheck_{}.Agent", uuid::Uuid::new_v4().simple());
        let reg = user.register_agent(&class, None).unwrap();
        let agent_id = agent_id_of(&reg);
        let first_agent_id = agent_id.clone();

        // Ours -> Python's HttpExchangeTransport.listen, unchanged.
        let mut py = PyPeer::start("xcheck.py", &[url, "recv", &agent_id]);
        assert_eq!(py.line(), "ready");
        let sent = message(&user.id(), &agent_id, r#"{"kind": "ping-request"}"#);
        user.send(&sent).unwrap();
        assert_eq!(py.line(), sent);
        assert!(py.wait(Duration::from_secs(20)));

        // Python's transport -> ours. (A fresh mailbox: academy-py's exchange
        // keeps the listen handler of the Python transport that just left
        // waiting, and it would swallow the next message sent to that one.)
        let reg = user.register_agent(&class, None).unwrap();
        let agent_id = agent_id_of(&reg);
        let agent = factory.agent(&reg).unwrap();
        let mut py = PyPeer::start("xcheck.py", &[url, "send", &user.id(), &agent_id]);
        let python_sent = py.line();
        assert!(py.wait(Duration::from_secs(20)));
        assert_eq!(agent.recv(10.0).unwrap(), python_sent);

        // Python's discover finds the agent we registered.
        let mut py = PyPeer::start("xcheck.py", &[url, "discover", &class]);
        let mut found: Vec<String> = py.line().split(',').map(str::to_owned).collect();
        found.sort();
        let mut expected = vec![
            json(&first_agent_id)["uid"].as_str().unwrap().to_owned(),
            json(&agent_id)["uid"].as_str().unwrap().to_owned(),
        ];
        expected.sort();
        assert_eq!(found, expected);
        assert!(py.wait(Duration::from_secs(20)));
    });
}
