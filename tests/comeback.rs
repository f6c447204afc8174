//! Issue 16, findings 3 and 4: an agent whose client closes and comes back
//! loses no message, through the C API.
//!
//! - Finding 3: register; open a client; close it; send the agent a
//!   message; open a new client; the message arrives. Before the fix about
//!   8% of runs lost it on our exchange: close returned before its listen
//!   stream was gone, and the exchange wrote the message to it. Repeated
//!   200 times in one process and 200 times in fresh processes.
//! - Finding 4: messages that reached a client and were not taken with
//!   recv go back to the mailbox when it closes, in order.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// How many times the sequence of finding 3 runs.
const ROUNDS: usize = 200;

/// One message the agent's next client must get: a ping from `user`.
fn ping(user: &Client, agent_id: &str) -> (String, String) {
    let m = message(&user.id(), agent_id, r#"{"kind": "ping-request"}"#);
    let tag = serde_json::from_str::<serde_json::Value>(&m).unwrap()["header"]["tag"]
        .as_str()
        .unwrap()
        .to_owned();
    (m, tag)
}

/// The tag of a received message.
fn tag_of(raw: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(raw).unwrap();
    v["header"]["tag"].as_str().unwrap().to_owned()
}

/// The sequence of finding 3, once: `Err` says what went wrong.
fn come_back_once(
    factory: &Factory,
    user: &Client,
    reg: &str,
    agent_id: &str,
) -> Result<(), String> {
    let first = factory
        .agent(reg)
        .map_err(|e| format!("first client: {e:?}"))?;
    std::thread::sleep(Duration::from_millis(100));
    first.close().map_err(|e| format!("close: {e:?}"))?;
    drop(first);
    let (m, tag) = ping(user, agent_id);
    user.send(&m).map_err(|e| format!("send: {e:?}"))?;
    let second = factory
        .agent(reg)
        .map_err(|e| format!("second client: {e:?}"))?;
    let got = second
        .recv(3.0)
        .map_err(|e| format!("the message was lost: {e:?}"))?;
    second.close().map_err(|e| format!("close: {e:?}"))?;
    if tag_of(&got) != tag {
        return Err(format!("got another message: {got}"));
    }
    Ok(())
}

/// Where an agent comes back: an HTTP exchange (academy-py's or ours, in
/// memory or over Redis), or academy-py's Redis or hybrid exchange.
#[derive(Clone, Debug)]
enum Target {
    Http(String),
    Redis(String),
    Hybrid(String),
}

impl Target {
    fn factory(&self) -> Factory {
        use academy::ffi::factory::{academy_hybrid_factory_new, academy_redis_factory_new};
        let mut out = std::ptr::null_mut();
        match self {
            Target::Http(url) => return Factory::new(url, None).unwrap(),
            Target::Redis(o) => unsafe { academy_redis_factory_new(c(o).as_ptr(), &mut out) },
            Target::Hybrid(o) => unsafe { academy_hybrid_factory_new(c(o).as_ptr(), &mut out) },
        };
        assert!(!out.is_null(), "{self:?}: {}", last_error());
        Factory(out)
    }

    /// As one line, for a child process.
    fn encode(&self) -> String {
        match self {
            Target::Http(s) => format!("http {s}"),
            Target::Redis(s) => format!("redis {s}"),
            Target::Hybrid(s) => format!("hybrid {s}"),
        }
    }

    fn decode(line: &str) -> Target {
        let (kind, rest) = line.split_once(' ').unwrap();
        match kind {
            "http" => Target::Http(rest.into()),
            "redis" => Target::Redis(rest.into()),
            _ => Target::Hybrid(rest.into()),
        }
    }
}

/// Every place an agent may come back, with what keeps them running.
struct Places {
    targets: Vec<(&'static str, Target)>,
    _redis: RedisServer,
    _over_redis: OurExchange,
}

fn places() -> Places {
    let redis = RedisServer::start();
    let over_redis = OurExchange::start(&redis.backend_toml());
    let port = redis.port;
    let ns = format!("c{}", uuid::Uuid::new_v4().simple());
    Places {
        targets: vec![
            (
                "academy-py's exchange",
                Target::Http(shared_python_exchange()),
            ),
            ("ours in memory", Target::Http(shared_embedded_exchange())),
            ("ours over Redis", Target::Http(over_redis.url.clone())),
            (
                "redis",
                Target::Redis(format!(r#"{{"hostname": "127.0.0.1", "port": {port}}}"#)),
            ),
            (
                "hybrid",
                Target::Hybrid(format!(
                    r#"{{"redis_host": "127.0.0.1", "redis_port": {port}, "namespace": "{ns}"}}"#
                )),
            ),
        ],
        _redis: redis,
        _over_redis: over_redis,
    }
}

#[test]
fn an_agent_that_comes_back_gets_every_message_in_one_process() {
    let places = places();
    for (name, target) in &places.targets {
        let factory = target.factory();
        let user = factory.user(None).unwrap();
        let reg = user.register_agent("comeback.Agent", None).unwrap();
        let agent_id = agent_id_of(&reg);
        let started = std::time::Instant::now();
        let lost: Vec<String> = (0..ROUNDS)
            .filter_map(|round| {
                come_back_once(&factory, &user, &reg, &agent_id)
                    .err()
                    .map(|e| format!("round {round}: {e}"))
            })
            .collect();
        eprintln!("-- {name}: {ROUNDS} rounds in {:?}", started.elapsed());
        assert!(
            lost.is_empty(),
            "{name}: {} of {ROUNDS} rounds failed: {lost:#?}",
            lost.len()
        );
        // Nothing was delivered twice: the mailbox is empty.
        let last = factory.agent(&reg).unwrap();
        expect_err(
            last.recv(0.5),
            academy::ffi::academy_status::ACADEMY_ERR_TIMEOUT,
        );
        last.close().unwrap();
    }
}

/// Set in the child processes of the test below: where to come back.
const CHILD_ENV: &str = "ACADEMY_COMEBACK_CHILD";

#[test]
fn an_agent_that_comes_back_gets_every_message_in_fresh_processes() {
    if let Ok(line) = std::env::var(CHILD_ENV) {
        // In a child: one round in a fresh process, with an agent of its
        // own (children run side by side).
        let factory = Target::decode(&line).factory();
        let user = factory.user(None).unwrap();
        let reg = user.register_agent("comeback.Agent", None).unwrap();
        let outcome = come_back_once(&factory, &user, &reg, &agent_id_of(&reg));
        let empty = factory.agent(&reg).unwrap();
        let extra = empty.recv(0.3);
        empty.close().unwrap();
        user.close().unwrap();
        if let Err(e) = outcome {
            panic!("COMEBACK FAILED: {e}");
        }
        if let Ok(extra) = extra {
            panic!("COMEBACK FAILED: delivered twice: {extra}");
        }
        return;
    }
    let places = places();
    // The two HTTP exchanges (the Redis and hybrid clients keep nothing
    // across processes that one process does not show).
    for (name, target) in &places.targets[..2] {
        let exe = std::env::current_exe().unwrap();
        let mut failed = Vec::new();
        let started = std::time::Instant::now();
        // Four children at a time (the machine has two cores).
        for batch in (0..ROUNDS).collect::<Vec<_>>().chunks(4) {
            let children: Vec<_> = batch
                .iter()
                .map(|&round| {
                    let child = Command::new(&exe)
                        .args([
                            "--exact",
                            "an_agent_that_comes_back_gets_every_message_in_fresh_processes",
                            "--nocapture",
                            "--test-threads=1",
                        ])
                        .env(CHILD_ENV, target.encode())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::piped())
                        .spawn()
                        .unwrap();
                    (round, child)
                })
                .collect();
            for (round, child) in children {
                let out = child.wait_with_output().unwrap();
                if !out.status.success() {
                    failed.push(format!(
                        "round {round}: {}",
                        String::from_utf8_lossy(&out.stderr)
                            .lines()
                            .filter(|l| l.contains("COMEBACK FAILED") || l.contains("panicked"))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    ));
                }
            }
        }
        eprintln!("-- {name}: {ROUNDS} processes in {:?}", started.elapsed());
        assert!(
            failed.is_empty(),
            "{name}: {} of {ROUNDS} fresh processes failed: {failed:#?}",
            failed.len()
        );
    }
}

#[test]
fn messages_not_taken_go_back_to_the_mailbox_in_order_at_close() {
    let places = places();
    for (name, target) in &places.targets {
        eprintln!("-- {name}");
        let factory = target.factory();
        let user = factory.user(None).unwrap();
        let reg = user.register_agent("comeback.Agent", None).unwrap();
        let agent_id = agent_id_of(&reg);
        let first = factory.agent(&reg).unwrap();
        let tags: Vec<String> = (0..3)
            .map(|_| {
                let (m, tag) = ping(&user, &agent_id);
                user.send(&m).unwrap();
                tag
            })
            .collect();
        // Streamed to the first client, which never takes them.
        std::thread::sleep(Duration::from_millis(500));
        first.close().unwrap();
        drop(first);
        let second = factory.agent(&reg).unwrap();
        let got: Vec<String> = (0..3)
            .map(|i| {
                let raw = second
                    .recv(5.0)
                    .unwrap_or_else(|e| panic!("{name}: message {i} was lost: {e:?}"));
                tag_of(&raw)
            })
            .collect();
        assert_eq!(got, tags, "{name}: the messages came back out of order");
        expect_err(
            second.recv(0.5),
            academy::ffi::academy_status::ACADEMY_ERR_TIMEOUT,
        );
        second.close().unwrap();
    }
}
