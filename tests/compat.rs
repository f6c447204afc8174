//! Older exchanges. academy-py 0.5.0 speaks protocol 1.x but has no
//! `POST /mailbox/heartbeat` and no stats endpoint; 0.3.1 also has no SSE
//! listen. Our client keeps working (long-poll `GET /message` where listen
//! is missing) and reports what the server lacks as ACADEMY_ERR_PROTOCOL.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use academy::ffi::academy_status::*;
use academy::ffi::client::academy_mailbox_status::*;
use common::*;
use serde_json::Value;

fn python_0_5() -> PathBuf {
    match std::env::var_os("ACADEMY_TEST_PYTHON_0_5") {
        Some(p) => PathBuf::from(p),
        None => panic!("ACADEMY_TEST_PYTHON_0_5 is not set: scripts/test.sh installs academy-py==0.5.0 and sets it"),
    }
}

/// A 0.5 server re-serializes messages with its own model, which has no
/// `academy_version` field; everything else must arrive unchanged.
fn without_academy_version(message: &str) -> Value {
    let mut v: Value = serde_json::from_str(message).unwrap();
    v["header"]
        .as_object_mut()
        .unwrap()
        .remove("academy_version");
    v
}

#[test]
fn a_0_5_exchange_works_and_says_what_it_lacks() {
    let exchange = PyExchange::start_with(&python_0_5(), "", "");
    let factory = Factory::new(&exchange.url, None).unwrap();
    let user = factory.user(None).unwrap();
    let reg = user.register_agent("old.Agent", None).unwrap();
    let agent = factory.agent(&reg).unwrap();
    let agent_id = agent_id_of(&reg);

    let sent = message(&user.id(), &agent_id, r#"{"kind": "ping-request"}"#);
    user.send(&sent).unwrap();
    assert_eq!(
        without_academy_version(&agent.recv(10.0).unwrap()),
        without_academy_version(&sent)
    );
    let start = Instant::now();
    expect_err(agent.recv(0.5), ACADEMY_ERR_TIMEOUT);
    assert!(start.elapsed() < Duration::from_secs(5));
    let back = message(&agent_id, &user.id(), r#"{"kind": "success-response"}"#);
    agent.send(&back).unwrap();
    assert_eq!(
        without_academy_version(&user.recv(10.0).unwrap()),
        without_academy_version(&back)
    );

    assert_eq!(user.status(&agent_id).unwrap(), ACADEMY_MAILBOX_ACTIVE);
    let uid = without_academy_version(&sent)["header"]["dest"]["uid"].clone();
    assert_eq!(
        serde_json::from_str::<Value>(&user.discover("old.Agent", false).unwrap()).unwrap()[0]
            ["uid"],
        uid
    );

    // What the server lacks is a clear protocol error, not a mailbox error.
    let text = expect_err(user.heartbeat(), ACADEMY_ERR_PROTOCOL);
    assert!(text.contains("does not implement"), "{text}");
    expect_err(user.agent_stats(&agent_id), ACADEMY_ERR_PROTOCOL);

    user.terminate(&agent_id).unwrap();
    assert_eq!(user.status(&agent_id).unwrap(), ACADEMY_MAILBOX_TERMINATED);
    expect_err(agent.recv(10.0), ACADEMY_ERR_MAILBOX_TERMINATED);
}

fn python_0_3() -> PathBuf {
    match std::env::var_os("ACADEMY_TEST_PYTHON_0_3") {
        Some(p) => PathBuf::from(p),
        None => panic!("ACADEMY_TEST_PYTHON_0_3 is not set: scripts/test.sh installs academy-py==0.3.1 and sets it"),
    }
}

/// A message in academy-py 0.3's format: no version fields in the header.
fn in_0_3_format(message: &str) -> String {
    let mut v = without_academy_version(message);
    v["header"]
        .as_object_mut()
        .unwrap()
        .remove("protocol_version");
    v.to_string()
}

/// academy-py 0.3.1 has no `GET /mailbox/listen`: the client falls back to
/// long-poll `GET /message` and delivers what the server sends, unchanged.
/// (Its message format predates protocol 1.x, so the messages here are
/// written in that format.)
#[test]
fn a_0_3_exchange_is_read_by_long_polling() {
    let exchange = PyExchange::start_with(&python_0_3(), "", "");
    let factory = Factory::new(&exchange.url, None).unwrap();
    let user = factory.user(None).unwrap();
    let reg = user.register_agent("old.Agent", None).unwrap();
    let agent = factory.agent(&reg).unwrap();
    let agent_id = agent_id_of(&reg);

    for _ in 0..3 {
        let sent = in_0_3_format(&message(
            &user.id(),
            &agent_id,
            r#"{"kind": "ping-request"}"#,
        ));
        user.send(&sent).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&agent.recv(10.0).unwrap()).unwrap(),
            serde_json::from_str::<Value>(&sent).unwrap()
        );
    }
    let start = Instant::now();
    expect_err(agent.recv(0.5), ACADEMY_ERR_TIMEOUT);
    assert!(start.elapsed() < Duration::from_secs(5));
    // A message that arrives while no receive is waiting is kept.
    let later = in_0_3_format(&message(
        &user.id(),
        &agent_id,
        r#"{"kind": "ping-request"}"#,
    ));
    user.send(&later).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        serde_json::from_str::<Value>(&agent.recv(0.0).unwrap()).unwrap(),
        serde_json::from_str::<Value>(&later).unwrap()
    );

    assert_eq!(user.status(&agent_id).unwrap(), ACADEMY_MAILBOX_ACTIVE);
    expect_err(user.heartbeat(), ACADEMY_ERR_PROTOCOL);
    expect_err(user.heartbeat_status(&agent_id), ACADEMY_ERR_PROTOCOL);
    user.terminate(&agent_id).unwrap();
    assert_eq!(user.status(&agent_id).unwrap(), ACADEMY_MAILBOX_TERMINATED);
    expect_err(agent.recv(10.0), ACADEMY_ERR_MAILBOX_TERMINATED);
}
