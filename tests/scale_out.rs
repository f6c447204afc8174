//! Issue 8: several exchange processes over one Redis. Two of our exchange
//! processes (`academy-exchange` with `[backend] kind = "redis"`) and one
//! academy-py 1.0.0 exchange with its `RedisBackend`, all on one real
//! redis-server started here; clients spread across them must see one set
//! of mailboxes.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use academy::ffi::academy_status::*;
use academy::ffi::client::academy_mailbox_status::*;
use common::*;
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

/// Redis and three exchanges on it: ours, ours, academy-py's.
struct Cluster {
    redis: RedisServer,
    ours: [OurExchange; 2],
    python: PyExchange,
}

impl Cluster {
    fn start() -> Cluster {
        let redis = RedisServer::start();
        let backend = redis.backend_toml();
        let ours = [OurExchange::start(&backend), OurExchange::start(&backend)];
        let python = PyExchange::start_config(&python(), free_port(), &backend);
        Cluster {
            redis,
            ours,
            python,
        }
    }

    fn urls(&self) -> [String; 3] {
        [
            self.ours[0].url.clone(),
            self.ours[1].url.clone(),
            self.python.url.clone(),
        ]
    }
}

fn uids(found: &str) -> HashSet<String> {
    json(found)
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["uid"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn three_exchanges_on_one_redis_share_mailboxes() {
    let cluster = Cluster::start();
    let urls = cluster.urls();
    let factories: Vec<Factory> = urls
        .iter()
        .map(|u| Factory::new(u, None).unwrap())
        .collect();
    let users: Vec<Client> = factories.iter().map(|f| f.user(None).unwrap()).collect();

    // Registered through ours (0), the agent's client on ours (1).
    let class = format!("scale_{}.Worker", uuid::Uuid::new_v4().simple());
    let reg = users[0]
        .register_agent(&format!("{class},scale.Base"), Some("w"))
        .unwrap();
    let agent_id = agent_id_of(&reg);
    let uid = json(&agent_id)["uid"].as_str().unwrap().to_owned();
    let agent = factories[1].agent(&reg).unwrap();

    // Every exchange sees it: status, heartbeat (kept by the agent client
    // through exchange 1, by Redis' clock), discovery with and without
    // subclasses, and the key layout academy-py reads.
    for (i, user) in users.iter().enumerate() {
        assert_eq!(
            user.status(&agent_id).unwrap(),
            ACADEMY_MAILBOX_ACTIVE,
            "exchange {i}"
        );
        let age = user.heartbeat_status(&agent_id).unwrap();
        assert!(
            (0.0..10.0).contains(&age),
            "exchange {i}: heartbeat age {age}"
        );
        assert!(
            uids(&user.discover(&class, false).unwrap()).contains(&uid),
            "exchange {i}"
        );
        assert!(!uids(&user.discover("scale.Base", false).unwrap()).contains(&uid));
        assert!(uids(&user.discover("scale.Base", true).unwrap()).contains(&uid));
    }
    assert_eq!(
        cluster.redis.cli(&["GET", &format!("active:{uid}")]),
        "ACTIVE"
    );
    assert_eq!(
        cluster.redis.cli(&["GET", &format!("agent:{uid}")]),
        format!("{class},scale.Base")
    );
    assert_eq!(cluster.redis.cli(&["GET", &format!("owner:{uid}")]), "_");
    // academy-py's default expirations: 365 days for the mailbox records.
    let ttl: i64 = cluster
        .redis
        .cli(&["TTL", &format!("active:{uid}")])
        .parse()
        .unwrap();
    assert!(
        (365 * 86_400 - 60..=365 * 86_400).contains(&ttl),
        "TTL {ttl}"
    );

    // Messages from users on every exchange reach the agent listening on
    // exchange 1, unchanged; responses go back the same way.
    for (i, user) in users.iter().enumerate() {
        let sent = message(&user.id(), &agent_id, r#"{"kind": "ping-request"}"#);
        user.send(&sent).unwrap();
        let got = agent.recv(10.0).unwrap();
        assert_eq!(got, sent, "message from exchange {i}");
        let request = json(&got);
        let response = message(&agent_id, &user.id(), r#"{"kind": "success-response"}"#);
        // Answer with the request's tag, as a reply would.
        let mut response = json(&response);
        response["header"]["tag"] = request["header"]["tag"].clone();
        agent.send(&response.to_string()).unwrap();
        let back = json(&user.recv(10.0).unwrap());
        assert!(back["header"]["tag"].is_string());
        assert_eq!(
            back["header"]["tag"], request["header"]["tag"],
            "response to exchange {i}"
        );
    }
    // Request accounting in the shared counters, the same from everywhere.
    for user in &users {
        let stats = json(&user.agent_stats(&agent_id).unwrap());
        assert_eq!(stats["completed"], 3, "{stats}");
        assert_eq!(stats["incoming"], 3, "{stats}");
        assert_eq!(stats["queued"], 0, "{stats}");
    }

    // A request in flight through exchange 1, terminate through exchange
    // 0: every exchange sees the gravestone, discovery drops the agent, and
    // the requester is answered MAILBOX_TERMINATED.
    let requester = factories[1].user(None).unwrap();
    let pending = message(&requester.id(), &agent_id, r#"{"kind": "ping-request"}"#);
    requester.send(&pending).unwrap();
    assert_eq!(agent.recv(10.0).unwrap(), pending);
    users[0].terminate(&agent_id).unwrap();
    let answer = json(&requester.recv(10.0).unwrap());
    assert!(answer["header"]["tag"].is_string());
    assert_eq!(answer["header"]["tag"], json(&pending)["header"]["tag"]);
    assert_eq!(answer["body"]["kind"], "academy-error-response", "{answer}");
    let terminated = academy::wire::message::academy_error_body(
        academy::wire::message::ErrorCode::MailboxTerminated,
        None,
    );
    assert_eq!(
        answer["body"]["error_code"], terminated["error_code"],
        "{answer}"
    );
    for (i, user) in users.iter().enumerate() {
        assert_eq!(
            user.status(&agent_id).unwrap(),
            ACADEMY_MAILBOX_TERMINATED,
            "exchange {i}"
        );
        assert!(!uids(&user.discover(&class, true).unwrap()).contains(&uid));
        expect_err(
            user.heartbeat_status(&agent_id),
            ACADEMY_ERR_MAILBOX_TERMINATED,
        );
    }
    expect_err(agent.recv(5.0), ACADEMY_ERR_MAILBOX_TERMINATED);
    expect_err(factories[2].agent(&reg), ACADEMY_ERR_MAILBOX_TERMINATED);
    // Our pending-request index is gone with the mailbox.
    assert_eq!(
        cluster.redis.cli(&["EXISTS", &format!("pending:{uid}")]),
        "0"
    );
}

#[test]
fn a_c_user_on_ours_calls_a_python_agent_on_academys_exchange() {
    let cluster = Cluster::start();
    // A real academy agent, launched by academy's Manager, through the
    // academy-py exchange; called from C through each of ours.
    let mut py = PyPeer::start("interop_agent.py", &[&cluster.python.url]);
    let agent = py.line();
    for ours in &cluster.ours {
        let factory = Factory::new(&ours.url, None).unwrap();
        let user = factory.user(None).unwrap();
        assert_eq!(
            user.action(&agent, "add", Some("[2, 3]"), None, 30.0)
                .unwrap(),
            "5"
        );
        assert!(user.ping(&agent, 30.0).unwrap() > 0.0);
    }
    let factory = Factory::new(&cluster.ours[0].url, None).unwrap();
    let user = factory.user(None).unwrap();
    user.shutdown_agent(&agent, 1).unwrap();
    assert!(
        py.wait(Duration::from_secs(30)),
        "the Python agent did not exit"
    );
}

#[test]
fn sharing_and_permissions_hold_across_exchanges() {
    let redis = RedisServer::start();
    let auth = "[auth]\nmethod = \"token\"\n[auth.kwargs.tokens.alice-token]\nclient_id = \"alice\"\ngroups = [\"team\"]\n[auth.kwargs.tokens.bob-token]\nclient_id = \"bob\"\ngroups = [\"team\"]\n[auth.kwargs.tokens.eve-token]\nclient_id = \"eve\"\n";
    let config = format!("{auth}{}", redis.backend_toml());
    let a = OurExchange::start(&config);
    let b = OurExchange::start(&config);
    let as_ = |url: &str, token: &str| {
        Factory::new(
            url,
            Some(&format!(
                r#"{{"additional_headers": {{"Authorization": "Bearer {token}"}}}}"#
            )),
        )
        .unwrap()
    };
    let alice = as_(&a.url, "alice-token").user(None).unwrap();
    let bob = as_(&b.url, "bob-token").user(None).unwrap();
    let eve = as_(&b.url, "eve-token").user(None).unwrap();
    let mailbox = alice.id();
    let uid = json(&mailbox)["uid"].as_str().unwrap().to_owned();
    assert_eq!(redis.cli(&["GET", &format!("owner:{uid}")]), "alice_");

    // A response nobody waits for goes to the inbox of a user client.
    let note = message(&bob.id(), &mailbox, r#"{"kind": "success-response"}"#);
    expect_err(bob.send(&note), ACADEMY_ERR_FORBIDDEN);
    alice.share(&mailbox, "team").unwrap();
    assert_eq!(
        json(&alice.shared_groups(&mailbox).unwrap()),
        json(r#"["team"]"#)
    );
    bob.send(&note).unwrap();
    assert_eq!(alice.recv(10.0).unwrap(), note);
    expect_err(eve.send(&note), ACADEMY_ERR_FORBIDDEN);
    expect_err(bob.share(&mailbox, "team"), ACADEMY_ERR_FORBIDDEN);
    alice.unshare(&mailbox, "team").unwrap();
    expect_err(bob.send(&note), ACADEMY_ERR_FORBIDDEN);
}

/// Redis is killed and restarted while messages flow between two of our
/// exchanges: every send that was accepted arrives (at least once; the
/// receiving client drops duplicates of a retried send).
#[test]
fn redis_restart_loses_no_accepted_message() {
    let mut redis = RedisServer::start();
    let backend = redis.backend_toml();
    let sender_ex = OurExchange::start(&backend);
    let receiver_ex = OurExchange::start(&backend);
    let options = r#"{"retries": 20, "initial_retry_backoff_s": 0.1}"#;
    let sender_f = Factory::new(&sender_ex.url, Some(options)).unwrap();
    let receiver_f = Factory::new(&receiver_ex.url, Some(options)).unwrap();
    let sender = Arc::new(sender_f.user(None).unwrap());
    let receiver = Arc::new(receiver_f.user(None).unwrap());
    let dest = receiver.id();

    const TOTAL: usize = 400;
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let sending = {
        let (sender, accepted, refused) = (sender.clone(), accepted.clone(), refused.clone());
        let dest = dest.clone();
        std::thread::spawn(move || {
            for i in 0..TOTAL {
                let body = format!(r#"{{"kind": "success-response", "n": "n{i}"}}"#);
                let m = message(&sender.id(), &dest, &body);
                match sender.send(&m) {
                    Ok(()) => {
                        accepted.lock().unwrap().insert(format!("n{i}"));
                    }
                    Err(e) => refused.lock().unwrap().push(format!("n{i}: {e:?}")),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let done = Arc::new(AtomicBool::new(false));
    let receiving = {
        let (receiver, done) = (receiver.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seen = HashSet::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while seen.len() < TOTAL && Instant::now() < deadline {
                match receiver.recv(1.0) {
                    Ok(m) => {
                        let action = json(&m)["body"]["n"].as_str().unwrap().to_owned();
                        seen.insert(action);
                    }
                    Err(_) if done.load(Ordering::Acquire) => break,
                    Err(_) => {}
                }
            }
            seen
        })
    };
    // Restart Redis twice while the sender is busy.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(500));
        redis.restart(Duration::from_millis(300));
    }
    sending.join().unwrap();
    // Let what was accepted drain, then stop the receiver.
    let accepted = accepted.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !receiving.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    done.store(true, Ordering::Release);
    let seen = receiving.join().unwrap();
    let lost: Vec<_> = accepted.difference(&seen).collect();
    assert!(
        lost.is_empty(),
        "{} accepted messages lost: {lost:?}",
        lost.len()
    );
    assert!(
        accepted.len() >= TOTAL * 9 / 10,
        "too few sends accepted ({}); refused: {:?}",
        accepted.len(),
        refused.lock().unwrap()
    );
    // Still working after the restarts.
    let m = message(
        &sender.id(),
        &dest,
        r#"{"kind": "success-response", "n": "last"}"#,
    );
    sender.send(&m).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = receiver.recv(10.0).unwrap();
        if got == m {
            break;
        }
        assert!(Instant::now() < deadline);
    }
}

#[test]
fn an_unreachable_redis_fails_the_start_with_a_clear_error() {
    let port = free_port();
    let mut ex = std::ptr::null_mut();
    let options = c(&format!(
        r#"{{"backend": {{"kind": "redis", "hostname": "127.0.0.1", "port": {port}}}}}"#
    ));
    let status =
        unsafe { academy::ffi::exchange::academy_exchange_spawn(options.as_ptr(), &mut ex) };
    assert_eq!(status, ACADEMY_ERR_CONNECTION);
    let why = last_error();
    assert!(
        why.contains("Redis") && why.contains(&port.to_string()),
        "{why}"
    );
    assert!(ex.is_null());
}

/// `academy_exchange_spawn` with a Redis backend, beside an
/// `academy-exchange` process on the same Redis.
#[test]
fn an_in_process_exchange_on_redis_shares_mailboxes_with_a_process() {
    let redis = RedisServer::start();
    let process = OurExchange::start(&redis.backend_toml());
    let options = c(&format!(
        r#"{{"backend": {{"kind": "redis", "hostname": "127.0.0.1", "port": {}}}}}"#,
        redis.port
    ));
    let mut ex = std::ptr::null_mut();
    let status =
        unsafe { academy::ffi::exchange::academy_exchange_spawn(options.as_ptr(), &mut ex) };
    assert_eq!(status, ACADEMY_OK, "{}", last_error());
    let mut url = std::ptr::null_mut();
    assert_eq!(
        unsafe { academy::ffi::exchange::academy_exchange_url(ex, &mut url) },
        ACADEMY_OK
    );
    let url = take_string(url);
    {
        let here = Factory::new(&url, None).unwrap().user(None).unwrap();
        let there = Factory::new(&process.url, None)
            .unwrap()
            .user(None)
            .unwrap();
        let note = message(&here.id(), &there.id(), r#"{"kind": "success-response"}"#);
        here.send(&note).unwrap();
        assert_eq!(there.recv(10.0).unwrap(), note);
        let back = message(&there.id(), &here.id(), r#"{"kind": "success-response"}"#);
        there.send(&back).unwrap();
        assert_eq!(here.recv(10.0).unwrap(), back);
    }
    assert_eq!(
        unsafe { academy::ffi::exchange::academy_exchange_stop(ex) },
        ACADEMY_OK
    );
    unsafe { academy::ffi::exchange::academy_exchange_free(ex) };
}
