//! Issue 17: academy-py's Redis and hybrid exchanges from C, against a real
//! redis-server and real academy-py 1.0.0 peers, both ways, on each
//! exchange: a C user calls a Python agent; a Python user calls a C agent
//! through academy's Handle; one academy-py program runs a Python agent
//! and the C calculator_agent; academy-py reads every key C wrote as its
//! own; Redis unreachable, Redis restarting, and a hybrid peer dying.

mod common;

use std::ffi::{c_char, CStr};
use std::process::Command;
use std::ptr::{self, null_mut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use academy::ffi::academy_status::{self, *};
use academy::ffi::client::academy_mailbox_status::*;
use academy::ffi::factory::{academy_hybrid_factory_new, academy_redis_factory_new};
use academy::ffi::messages::*;
use academy::ffi::reply::*;
use academy::ffi::serve::*;
use common::*;
use serde_json::{json, Value};

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Redis,
    Hybrid,
}

const KINDS: [Kind; 2] = [Kind::Redis, Kind::Hybrid];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::Hybrid => "hybrid",
        }
    }

    /// The factory options for Redis on `port` (and, for hybrid, `ns`),
    /// with `extra` JSON members.
    fn options(self, port: u16, ns: &str, extra: &str) -> String {
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(", {extra}")
        };
        match self {
            Kind::Redis => format!(r#"{{"hostname": "127.0.0.1", "port": {port}{extra}}}"#),
            Kind::Hybrid => format!(
                r#"{{"redis_host": "127.0.0.1", "redis_port": {port}, "namespace": "{ns}"{extra}}}"#
            ),
        }
    }

    fn factory(self, options: &str) -> R<Factory> {
        let options = c(options);
        let mut out = ptr::null_mut();
        check(unsafe {
            match self {
                Kind::Redis => academy_redis_factory_new(options.as_ptr(), &mut out),
                Kind::Hybrid => academy_hybrid_factory_new(options.as_ptr(), &mut out),
            }
        })?;
        Ok(Factory(out))
    }
}

/// A Redis of the test's own, a namespace, and factories on them.
struct Setup {
    kind: Kind,
    redis: RedisServer,
    ns: String,
}

impl Setup {
    fn new(kind: Kind) -> Setup {
        Setup {
            kind,
            redis: RedisServer::start(),
            ns: format!("t{}", uuid::Uuid::new_v4().simple()),
        }
    }

    fn options(&self, extra: &str) -> String {
        self.kind.options(self.redis.port, &self.ns, extra)
    }

    fn factory(&self, extra: &str) -> Factory {
        self.kind.factory(&self.options(extra)).unwrap()
    }

    /// A tests/py/redis_peer.py mode on this exchange.
    fn python(&self, mode: &str, args: &[&str]) -> PyPeer {
        let port = self.redis.port.to_string();
        let mut all = vec![mode, self.kind.name(), &port, &self.ns];
        all.extend_from_slice(args);
        PyPeer::start("redis_peer.py", &all)
    }

    fn redis(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.redis.port))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// The key of `what` for the uid of `id_json`, in this exchange's layout.
    fn key(&self, what: &str, id_json: &str) -> String {
        let uid = uuid::Uuid::parse_str(parse(id_json)["uid"].as_str().unwrap()).unwrap();
        match self.kind {
            Kind::Redis => {
                let what = if what == "status" { "active" } else { what };
                format!("{what}:{uid}")
            }
            Kind::Hybrid => format!(
                "{}:{what}:{}",
                self.ns,
                academy::wire::base32::encode_uid(&uid)
            ),
        }
    }
}

fn get(con: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(con).unwrap()
}

fn llen(con: &mut redis::Connection, key: &str) -> usize {
    redis::cmd("LLEN").arg(key).query(con).unwrap()
}

/// Serves `agent` on a thread; the thread yields academy_agent_serve's status.
fn serve(agent: &Arc<Client>) -> std::thread::JoinHandle<academy_status> {
    let serving = agent.clone();
    std::thread::spawn(move || unsafe {
        academy_agent_serve(serving.0, Some(calculator), null_mut())
    })
}

fn agent_id_of(registration: &str) -> String {
    parse(registration)["agent_id"].to_string()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn message(src: &str, dest: &str, body: &str) -> String {
    let (s, d, b) = (c(src), c(dest), c(body));
    let mut out = null_mut();
    assert_eq!(
        unsafe { academy_message_new(s.as_ptr(), d.as_ptr(), b.as_ptr(), &mut out) },
        ACADEMY_OK
    );
    take_string(out)
}

// ---- options and faults ----

#[test]
fn options_are_checked_when_the_factory_is_made() {
    for kind in KINDS {
        for bad in [
            "{",
            "[]",
            r#"{"nope": 1}"#,
            r#"{"auth_method": "globus"}"#,
            r#"{"additional_headers": {"a": "b"}}"#,
            r#"{"ssl_verify": false}"#,
            r#"{"retries": -1}"#,
            r#"{"max_concurrency": 0}"#,
        ] {
            let message = expect_err(kind.factory(bad), ACADEMY_ERR_INVALID_ARGUMENT);
            assert!(!message.is_empty());
        }
        assert!(kind.factory("null").is_ok());
        let mut out = ptr::null_mut();
        let status = unsafe {
            match kind {
                Kind::Redis => academy_redis_factory_new(ptr::null(), &mut out),
                Kind::Hybrid => academy_hybrid_factory_new(ptr::null(), &mut out),
            }
        };
        assert_eq!(status, ACADEMY_OK);
        drop(Factory(out));
        let status = unsafe {
            match kind {
                Kind::Redis => academy_redis_factory_new(ptr::null(), ptr::null_mut()),
                Kind::Hybrid => academy_hybrid_factory_new(ptr::null(), ptr::null_mut()),
            }
        };
        assert_eq!(status, ACADEMY_ERR_INVALID_ARGUMENT);
    }
    let http_only = expect_err(
        Kind::Redis.factory(r#"{"ca_file": "/x.pem"}"#),
        ACADEMY_ERR_INVALID_ARGUMENT,
    );
    assert!(
        http_only.contains("only to the HTTP exchange"),
        "{http_only}"
    );
    for bad in [
        r#"{"kwargs": {"ssl": true}}"#,
        r#"{"port": 70000}"#,
        r#"{"redis_port": 1}"#,
    ] {
        expect_err(Kind::Redis.factory(bad), ACADEMY_ERR_INVALID_ARGUMENT);
    }
    for bad in [
        r#"{"ports": []}"#,
        r#"{"ports": [0]}"#,
        r#"{"interface": "no-such-if0"}"#,
        r#"{"hostname": "x"}"#,
    ] {
        expect_err(Kind::Hybrid.factory(bad), ACADEMY_ERR_INVALID_ARGUMENT);
    }
}

#[test]
fn unreachable_redis_is_a_connection_error_naming_it() {
    for kind in KINDS {
        let port = free_port();
        let factory = kind
            .factory(&kind.options(port, "x", r#""initial_retry_backoff_s": 0.1"#))
            .unwrap();
        let start = Instant::now();
        let message = expect_err(factory.user(None), ACADEMY_ERR_CONNECTION);
        assert!(
            message.contains(&format!("127.0.0.1:{port}")),
            "{kind:?}: {message}"
        );
        assert!(start.elapsed() < Duration::from_secs(20), "{kind:?}");
        let registration =
            json!({"agent_id": {"uid": uuid::Uuid::new_v4(), "name": null, "role": "agent"},
                                   "exchange_type": kind.name()})
            .to_string();
        expect_err(factory.agent(&registration), ACADEMY_ERR_CONNECTION);
    }
}

// ---- across languages ----

#[test]
fn c_calls_a_python_agent_launched_by_academys_manager() {
    for kind in KINDS {
        eprintln!("-- {kind:?}");
        let setup = Setup::new(kind);
        let mut py = setup.python("agent", &[]);
        let agent = py.line();
        let registration = py.line();
        let spare = py.line();
        assert_eq!(parse(&registration)["exchange_type"], kind.name());
        let factory = setup.factory(r#""max_concurrency": 4"#);
        let user = Arc::new(factory.user(Some("c-user")).unwrap());

        calls_the_python_calc(&user, &agent, "hé ✓");
        for _ in 0..20 {
            assert!(user.ping(&agent, 30.0).unwrap() > 0.0);
        }
        // 40 calls in flight from 4 threads on one client.
        calls_the_python_calc_from_four_threads(&user, &agent, 10);

        // Discovery, status and heartbeats agree with academy-py's own client.
        let found = parse(&user.discover("__main__.Calc", false).unwrap());
        assert!(
            found
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["uid"] == parse(&agent)["uid"]),
            "{found}"
        );
        let everyone = parse(&user.discover("academy.agent.Agent", true).unwrap());
        assert!(everyone.as_array().unwrap().len() >= 2, "{everyone}");
        assert_eq!(user.status(&agent).unwrap(), ACADEMY_MAILBOX_ACTIVE);
        let age = user.heartbeat_status(&agent).unwrap();
        assert!((0.0..30.0).contains(&age), "{age}");
        let mut inspect = setup.python("inspect", &[&agent]);
        let theirs = parse(&inspect.line());
        assert_eq!(theirs["status"], "ACTIVE");
        assert!(theirs["heartbeat"].as_f64().unwrap() < 30.0, "{theirs}");
        if kind == Kind::Redis {
            let ours = parse(&user.agent_stats(&agent).unwrap());
            assert_eq!(theirs["stats"], ours, "agent_stats from Python and C");
            assert!(ours["completed"].as_u64().unwrap() >= 65, "{ours}");
        } else {
            let message = expect_err(user.agent_stats(&agent), ACADEMY_ERR_PROTOCOL);
            assert!(
                message.contains("not supported by the hybrid exchange"),
                "{message}"
            );
        }
        expect_err(user.share(&agent, "g"), ACADEMY_ERR_PROTOCOL);

        // A registration made by academy-py: C serves it; one of another
        // exchange type is refused.
        let spare_client = Arc::new(factory.agent(&spare).unwrap());
        let serving = serve(&spare_client);
        let spare_id = agent_id_of(&spare);
        assert_eq!(
            user.action(&spare_id, "add", Some("[20, 22]"), None, 30.0)
                .unwrap(),
            "42.0"
        );
        let other = if kind == Kind::Redis {
            "hybrid"
        } else {
            "redis"
        };
        for wrong in [other, "http"] {
            let mut reg = parse(&spare);
            reg["exchange_type"] = json!(wrong);
            let message = expect_err(
                factory.agent(&reg.to_string()),
                ACADEMY_ERR_INVALID_ARGUMENT,
            );
            assert!(message.contains(wrong), "{message}");
        }
        user.terminate(&spare_id).unwrap();
        assert_eq!(serving.join().unwrap(), ACADEMY_ERR_MAILBOX_TERMINATED);

        user.shutdown_agent(&agent, -1).unwrap();
        assert!(
            py.wait(Duration::from_secs(30)),
            "the Python agent process exits 0 after shutdown"
        );
        wait_for(
            "the agent's mailbox terminated",
            Duration::from_secs(15),
            || user.status(&agent).unwrap() == ACADEMY_MAILBOX_TERMINATED,
        );
        expect_err(user.ping(&agent, 5.0), ACADEMY_ERR_MAILBOX_TERMINATED);
        let mut con = setup.redis();
        assert_eq!(
            get(&mut con, &setup.key("status", &agent)).as_deref(),
            Some("INACTIVE")
        );
        let unknown_id =
            json!({"uid": uuid::Uuid::new_v4(), "name": null, "role": "agent"}).to_string();
        assert_eq!(user.status(&unknown_id).unwrap(), ACADEMY_MAILBOX_MISSING);
        expect_err(user.ping(&unknown_id, 5.0), ACADEMY_ERR_BAD_ENTITY_ID);
    }
}

#[test]
fn a_python_user_calls_a_c_agent_through_academys_handle() {
    for kind in KINDS {
        eprintln!("-- {kind:?}");
        let setup = Setup::new(kind);
        let factory = setup.factory(r#""max_concurrency": 8"#);
        let registrar = factory.user(None).unwrap();
        let class = format!("cagent_{}.Calc", uuid::Uuid::new_v4().simple());
        let registration = registrar
            .register_agent(&format!("{class},cagent.Base"), Some("c-calc"))
            .unwrap();
        assert_eq!(parse(&registration)["exchange_type"], kind.name());
        let agent = Arc::new(factory.agent(&registration).unwrap());
        let serving = serve(&agent);
        let agent_id = agent_id_of(&registration);

        let mut py = setup.python("user", &[&agent_id, &class]);
        assert_eq!(py.line(), "add 5.0");
        assert_eq!(py.line(), r#"echo {"k": [1, "h\u00e9", null, 1.5]}"#);
        assert_eq!(py.line(), "kwargs 42.0");
        assert_eq!(py.line(), "fail AcademyRemoteError it broke");
        assert_eq!(py.line(), "concurrent True True");
        assert_eq!(py.line(), "ping True");
        assert_eq!(py.line(), "json 3.0");
        assert_eq!(py.line(), "discover True");
        assert_eq!(py.line(), "status ACTIVE");
        if kind == Kind::Redis {
            assert_eq!(py.line(), "stats True 0 0");
        }
        assert_eq!(py.line(), "done");
        assert!(py.wait(Duration::from_secs(30)));
        assert_eq!(
            serving.join().unwrap(),
            ACADEMY_OK,
            "serving ends with OK after the shutdown request"
        );
        wait_for(
            "the C agent's mailbox terminated",
            Duration::from_secs(15),
            || registrar.status(&agent_id).unwrap() == ACADEMY_MAILBOX_TERMINATED,
        );
    }
}

/// One academy-py program runs a Python agent and spawns the C
/// calculator_agent (examples-c, `make examples`) on the same exchange,
/// and calls both.
#[test]
fn one_academy_program_runs_a_python_and_a_c_agent() {
    let calculator = repo().join("examples-c/build/calculator_agent");
    assert!(
        calculator.exists(),
        "{} is missing: build the examples with `make examples` (scripts/test.sh does)",
        calculator.display()
    );
    for kind in KINDS {
        eprintln!("-- {kind:?}");
        let setup = Setup::new(kind);
        let options = setup.options(r#""max_concurrency": 4"#);
        let mut py = setup.python("mixed", &[calculator.to_str().unwrap(), &options]);
        assert_eq!(py.line(), "python add 5");
        assert_eq!(py.line(), "c add 5");
        assert_eq!(py.line(), "c echo hé");
        assert_eq!(py.line(), "together True");
        assert_eq!(py.line(), "discover True True");
        assert_eq!(py.line(), "status ACTIVE");
        assert_eq!(py.line(), "c error True");
        assert_eq!(py.line(), "c exit 0");
        assert_eq!(py.line(), "done");
        assert!(py.wait(Duration::from_secs(30)));
    }
}

/// Everything C writes reads in academy-py as its own writing, byte for
/// byte: statuses, heartbeats, request records, counters, queued messages,
/// addresses and base32 uids.
#[test]
fn academy_py_reads_every_key_c_writes_as_its_own() {
    for kind in KINDS {
        eprintln!("-- {kind:?}");
        let setup = Setup::new(kind);
        let factory = setup.factory("");
        let user = factory.user(Some("é/\"\u{1}\u{7f}\u{2028} ✓")).unwrap();
        let registration = user.register_agent("bytes.Agent,bytes.Base", None).unwrap();
        let agent_id = agent_id_of(&registration);
        let agent = Arc::new(factory.agent(&registration).unwrap());
        let mut con = setup.redis();
        assert_eq!(
            get(&mut con, &setup.key("status", &user.id())).as_deref(),
            Some("ACTIVE")
        );
        assert_eq!(
            get(&mut con, &setup.key("agent", &agent_id)).as_deref(),
            Some("bytes.Agent,bytes.Base")
        );
        // Requests queued for an agent nobody serves yet.
        let queued = user.send(&message(
            &user.id(),
            &agent_id,
            r#"{"kind": "ping-request"}"#,
        ));
        queued.unwrap();
        let serving = serve(&agent);
        assert_eq!(
            user.action(
                &agent_id,
                "echo",
                Some(r#"["h\u00e9 \u0001 ✓"]"#),
                None,
                30.0
            )
            .unwrap(),
            r#""hé \u0001 ✓""#
        );
        let mut bytes = setup.python("bytes", &[]);
        let report = parse(&bytes.line());
        assert_eq!(report["bad"], json!([]), "{report}");
        assert!(report["keys"].as_u64().unwrap() >= 5, "{report}");
        if kind == Kind::Redis {
            let outgoing = format!("outgoing:{}", parse(&user.id())["uid"].as_str().unwrap());
            assert_eq!(get(&mut con, &outgoing).as_deref(), Some("2"));
            wait_for("both requests completed", Duration::from_secs(10), || {
                parse(&user.agent_stats(&agent_id).unwrap())["completed"] == 2
            });
            let stats = parse(&user.agent_stats(&agent_id).unwrap());
            let mut inspect = setup.python("inspect", &[&agent_id]);
            assert_eq!(parse(&inspect.line())["stats"], stats);
        } else {
            let address = get(&mut con, &setup.key("address", &agent_id)).unwrap();
            assert!(
                address.split(':').nth(1).unwrap().parse::<u16>().is_ok(),
                "{address}"
            );
        }
        // Terminate as academy-py does: INACTIVE, the sentinel queued.
        user.terminate(&agent_id).unwrap();
        assert_eq!(serving.join().unwrap(), ACADEMY_ERR_MAILBOX_TERMINATED);
        assert_eq!(
            get(&mut con, &setup.key("status", &agent_id)).as_deref(),
            Some("INACTIVE")
        );
        assert_eq!(get(&mut con, &setup.key("agent", &agent_id)), None);
        drop(agent);
        let queue: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(setup.key("queue", &agent_id))
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .unwrap();
        // The sentinel, unless the agent's reader took it (as academy-py's
        // listener does).
        assert!(queue.iter().all(|q| q == b"<CLOSED>"), "{queue:?}");
        let user_id = user.id();
        user.close().unwrap();
        assert_eq!(
            get(&mut con, &setup.key("status", &user_id)).as_deref(),
            Some("INACTIVE")
        );
        if kind == Kind::Hybrid {
            assert_eq!(get(&mut con, &setup.key("address", &user_id)), None);
        }
        let mut bytes = setup.python("bytes", &[]);
        let report = parse(&bytes.line());
        assert_eq!(report["bad"], json!([]), "{report}");
    }
}

// ---- faults ----

/// Redis killed and started again: listeners reconnect, calls made while
/// it is down are retried, and nothing sent is lost.
#[test]
fn clients_ride_out_a_redis_restart() {
    for kind in KINDS {
        eprintln!("-- {kind:?}");
        let mut setup = Setup::new(kind);
        let factory = setup.factory(r#""retries": 4, "initial_retry_backoff_s": 0.3"#);
        let user = Arc::new(factory.user(None).unwrap());
        let registration = user.register_agent("restart.Calc", None).unwrap();
        let agent_id = agent_id_of(&registration);
        let agent = Arc::new(factory.agent(&registration).unwrap());
        let serving = serve(&agent);
        assert_eq!(
            user.action(&agent_id, "add", Some("[1, 2]"), None, 30.0)
                .unwrap(),
            "3.0"
        );
        setup.redis.restart(Duration::from_millis(700));
        // A second user needs Redis for everything (no cached peer).
        let other = factory.user(None).unwrap();
        for i in 0..20 {
            let r = other
                .action(&agent_id, "add", Some(&format!("[{i}, 1]")), None, 30.0)
                .unwrap();
            assert_eq!(parse(&r).as_f64().unwrap(), f64::from(i) + 1.0);
        }
        assert_eq!(
            user.action(&agent_id, "add", Some("[2, 2]"), None, 30.0)
                .unwrap(),
            "4.0"
        );
        // Down while calls are made: they wait for it, within their retries.
        let caller = {
            let (user, agent_id) = (user.clone(), agent_id.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                user.action(&agent_id, "add", Some("[5, 5]"), None, 30.0)
            })
        };
        setup.redis.restart(Duration::from_millis(1000));
        assert_eq!(caller.join().unwrap().unwrap(), "10.0");
        user.terminate(&agent_id).unwrap();
        assert_eq!(serving.join().unwrap(), ACADEMY_ERR_MAILBOX_TERMINATED);
    }
}

/// The C calculator_agent in a child process, on the hybrid exchange.
fn spawn_calculator(setup: &Setup, registration: Option<&str>) -> (std::process::Child, String) {
    let calculator = repo().join("examples-c/build/calculator_agent");
    assert!(
        calculator.exists(),
        "build the examples with `make examples`"
    );
    let mut cmd = Command::new(calculator);
    cmd.arg("hybrid")
        .arg(setup.options(r#""max_concurrency": 4"#));
    if let Some(r) = registration {
        cmd.arg(r);
    }
    spawn_with_first_line(&mut cmd)
}

/// A hybrid peer killed while a C user sends to it: every send still
/// succeeds (academy-py's raises once the dead peer refuses connections),
/// what cannot reach the peer waits in its Redis queue, and the agent
/// started again on the same registration answers every message that was
/// not already taken by the dead process.
#[test]
fn a_dead_hybrid_peer_loses_no_message_it_did_not_take() {
    let setup = Setup::new(Kind::Hybrid);
    let factory = setup.factory("");
    let user = factory.user(None).unwrap();
    let (mut child, agent_id) = spawn_calculator(&setup, None);
    let registration = json!({"agent_id": parse(&agent_id), "exchange_type": "hybrid"}).to_string();
    assert_eq!(
        user.action(&agent_id, "add", Some("[1, 1]"), None, 30.0)
            .unwrap(),
        "2"
    );
    let mut con = setup.redis();
    let address = get(&mut con, &setup.key("address", &agent_id)).unwrap();
    // Mid-stream: requests keep going out while the peer is killed.
    let mut tags = Vec::new();
    let mut sent_after_death = 0;
    let mut killed = false;
    for i in 0..400 {
        if i == 100 {
            child.kill().unwrap();
            child.wait().unwrap();
            killed = true;
        }
        let body = format!(
            r#"{{"action": "add", "pargs": "[{i}, 0]", "kargs": "{{}}", "serialization": "json", "kind": "action-request"}}"#
        );
        let m = message(&user.id(), &agent_id, &body);
        user.send(&m).unwrap();
        tags.push((i, parse(&m)["header"]["tag"].as_str().unwrap().to_owned()));
        if killed {
            sent_after_death += 1;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(sent_after_death, 300);
    // The dead peer's address stays behind (it could not withdraw it).
    assert_eq!(
        get(&mut con, &setup.key("address", &agent_id)),
        Some(address)
    );
    let queued = llen(&mut con, &setup.key("queue", &agent_id));
    assert!(queued >= 250, "only {queued} of 300 messages wait in Redis");
    // The agent comes back on its registration and answers what waited.
    let (mut back, back_id) = spawn_calculator(&setup, Some(&registration));
    assert_eq!(parse(&back_id)["uid"], parse(&agent_id)["uid"]);
    let mut answered = std::collections::HashSet::new();
    while let Ok(m) = user.recv(10.0) {
        let m = parse(&m);
        answered.insert(m["header"]["tag"].as_str().unwrap().to_owned());
    }
    let lost: Vec<usize> = tags
        .iter()
        .filter(|(_, t)| !answered.contains(t))
        .map(|(i, _)| *i)
        .collect();
    eprintln!(
        "{} of 400 answered; {queued} waited in Redis; not answered: {lost:?}",
        answered.len()
    );
    assert!(
        lost.iter().all(|i| (95..=110).contains(i) || *i < 100),
        "messages sent after the death was visible were lost: {lost:?}"
    );
    assert!(
        lost.len() <= 20,
        "only messages in flight at the death may be lost: {lost:?}"
    );
    user.shutdown_agent(&agent_id, 1).unwrap();
    assert!(back.wait().unwrap().success());
}

/// A closed agent client's mailbox stays: its address is withdrawn,
/// messages sent meanwhile wait in Redis, and the next client of the
/// registration gets them all; a user client's close terminates it.
#[test]
fn closing_keeps_an_agents_mailbox_and_terminates_a_users() {
    for kind in KINDS {
        eprintln!("-- {kind:?}");
        let setup = Setup::new(kind);
        let factory = setup.factory("");
        let user = factory.user(None).unwrap();
        let registration = user.register_agent("closing.Agent", None).unwrap();
        let agent_id = agent_id_of(&registration);
        let agent = factory.agent(&registration).unwrap();
        let mut con = setup.redis();
        if kind == Kind::Hybrid {
            assert!(get(&mut con, &setup.key("address", &agent_id)).is_some());
        }
        let ping = |i: usize| {
            message(
                &user.id(),
                &agent_id,
                &format!(
                    r#"{{"action": "n{i}", "pargs": "[]", "kargs": "{{}}", "serialization": "json", "kind": "action-request"}}"#
                ),
            )
        };
        user.send(&ping(0)).unwrap();
        assert!(parse(&agent.recv(10.0).unwrap())["body"]["action"] == "n0");
        agent.close().unwrap();
        if kind == Kind::Hybrid {
            assert_eq!(get(&mut con, &setup.key("address", &agent_id)), None);
        }
        for i in 1..=50 {
            user.send(&ping(i)).unwrap();
        }
        assert_eq!(llen(&mut con, &setup.key("queue", &agent_id)), 50);
        let again = factory.agent(&registration).unwrap();
        for i in 1..=50 {
            let m = parse(&again.recv(10.0).unwrap());
            assert_eq!(m["body"]["action"], format!("n{i}"), "in order");
        }
        let user_id = user.id();
        user.close().unwrap();
        assert_eq!(
            get(&mut con, &setup.key("status", &user_id)).as_deref(),
            Some("INACTIVE")
        );
        assert_eq!(again.status(&user_id).unwrap(), ACADEMY_MAILBOX_TERMINATED);
    }
}

/// Every client call answers on these exchanges as on the HTTP exchange,
/// with the same statuses.
#[test]
fn every_call_answers_with_the_statuses_of_the_http_exchange() {
    for kind in KINDS {
        eprintln!("-- {kind:?}");
        let setup = Setup::new(kind);
        let factory = setup.factory(r#""heartbeat_interval_s": 1"#);
        let user = factory.user(Some("calls")).unwrap();
        let other = factory.user(None).unwrap();
        let unknown =
            json!({"uid": uuid::Uuid::new_v4(), "name": null, "role": "agent"}).to_string();
        let ping = r#"{"kind": "ping-request"}"#;

        expect_err(
            user.send(&message(&user.id(), &unknown, ping)),
            ACADEMY_ERR_BAD_ENTITY_ID,
        );
        expect_err(user.ping(&unknown, 5.0), ACADEMY_ERR_BAD_ENTITY_ID);
        expect_err(user.recv(0.0), ACADEMY_ERR_TIMEOUT);
        let start = Instant::now();
        expect_err(user.recv(0.3), ACADEMY_ERR_TIMEOUT);
        assert!(start.elapsed() >= Duration::from_millis(290));
        expect_err(user.send("{}"), ACADEMY_ERR_INVALID_ARGUMENT);
        assert_eq!(user.discover("no.such.Class", true).unwrap(), "[]");
        expect_err(
            factory.agent(
                &json!({"agent_id": parse(&unknown), "exchange_type": kind.name()}).to_string(),
            ),
            ACADEMY_ERR_BAD_ENTITY_ID,
        );
        // A request to a user is answered INVALID_CLIENT, as academy-py's
        // user clients answer.
        let answer = parse(&user.request(&other.id(), ping, 10.0).unwrap());
        assert_eq!(answer["body"]["error_code"], 4, "{answer}");
        // Messages between two users, both ways.
        user.send(&message(
            &user.id(),
            &other.id(),
            r#"{"kind": "success-response"}"#,
        ))
        .unwrap();
        assert_eq!(
            parse(&other.recv(10.0).unwrap())["body"]["kind"],
            "success-response"
        );

        // Heartbeats: sent at creation and every interval.
        user.heartbeat().unwrap();
        assert!(other.heartbeat_status(&user.id()).unwrap() < 1.0);
        std::thread::sleep(Duration::from_millis(1500));
        assert!(other.heartbeat_status(&user.id()).unwrap() < 1.2);
        assert_eq!(other.status(&user.id()).unwrap(), ACADEMY_MAILBOX_ACTIVE);
        assert_eq!(other.status(&unknown).unwrap(), ACADEMY_MAILBOX_MISSING);
        expect_err(other.heartbeat_status(&unknown), ACADEMY_ERR_BAD_ENTITY_ID);

        // Sends in the background, then a flush.
        let registration = user.register_agent("calls.Sink", None).unwrap();
        let sink = factory.agent(&registration).unwrap();
        let sink_id = agent_id_of(&registration);
        for _ in 0..200 {
            let m = c(&message(&user.id(), &sink_id, ping));
            let status = unsafe {
                academy::ffi::client::academy_client_send_async(
                    user.0,
                    m.as_ptr(),
                    None,
                    null_mut(),
                )
            };
            assert_eq!(status, ACADEMY_OK);
        }
        check(unsafe { academy::ffi::client::academy_client_flush(user.0, 30.0) }).unwrap();
        let mut got = std::collections::HashSet::new();
        while got.len() < 200 {
            got.insert(parse(&sink.recv(10.0).unwrap())["header"]["tag"].to_string());
        }
        expect_err(sink.recv(0.2), ACADEMY_ERR_TIMEOUT);

        // Terminated: sends, calls and new clients say so.
        user.terminate(&sink_id).unwrap();
        expect_err(sink.recv(10.0), ACADEMY_ERR_MAILBOX_TERMINATED);
        assert_eq!(user.status(&sink_id).unwrap(), ACADEMY_MAILBOX_TERMINATED);
        expect_err(
            user.heartbeat_status(&sink_id),
            ACADEMY_ERR_MAILBOX_TERMINATED,
        );
        expect_err(
            user.send(&message(&user.id(), &sink_id, ping)),
            ACADEMY_ERR_MAILBOX_TERMINATED,
        );
        expect_err(user.ping(&sink_id, 5.0), ACADEMY_ERR_MAILBOX_TERMINATED);
        expect_err(factory.agent(&registration), ACADEMY_ERR_MAILBOX_TERMINATED);
        assert_eq!(user.discover("calls.Sink", true).unwrap(), "[]");
        // Terminating again, or an unknown mailbox, is no error.
        user.terminate(&sink_id).unwrap();
        user.terminate(&unknown).unwrap();

        for call in [
            user.share(&user.id(), "g").map(drop),
            user.shared_groups(&user.id()).map(drop),
            user.unshare(&user.id(), "g").map(drop),
        ] {
            let message = expect_err(call, ACADEMY_ERR_PROTOCOL);
            assert!(message.contains("sharing is not supported"), "{message}");
        }

        // Closed: every call says CLOSED; closing twice is fine.
        let other_id = other.id();
        other.close().unwrap();
        other.close().unwrap();
        expect_err(other.recv(0.0), ACADEMY_ERR_CLOSED);
        expect_err(
            other.send(&message(&other_id, &user.id(), ping)),
            ACADEMY_ERR_CLOSED,
        );
        expect_err(other.ping(&user.id(), 1.0), ACADEMY_ERR_CLOSED);
        assert_eq!(user.status(&other_id).unwrap(), ACADEMY_MAILBOX_TERMINATED);
    }
}

/// The hybrid exchange's `interface` picks the advertised address and
/// `ports` the ports clients listen on, one each while it is open.
#[test]
fn hybrid_clients_listen_where_the_options_say() {
    let setup = Setup::new(Kind::Hybrid);
    let ports = [free_port(), free_port()];
    let factory = setup.factory(&format!(
        r#""interface": "lo", "ports": [{}, {}]"#,
        ports[0], ports[1]
    ));
    let mut con = setup.redis();
    let a = factory.user(None).unwrap();
    let b = factory.user(None).unwrap();
    let address = |id: &str, con: &mut redis::Connection| get(con, &setup.key("address", id));
    let mut used = vec![
        address(&a.id(), &mut con).unwrap(),
        address(&b.id(), &mut con).unwrap(),
    ];
    used.sort();
    let mut want: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    want.sort();
    assert_eq!(used, want);
    let message = expect_err(factory.user(None), ACADEMY_ERR_CONNECTION);
    assert!(message.contains("ports"), "{message}");
    let a_address = address(&a.id(), &mut con).unwrap();
    drop(a); // closes: the port is free again
    let c = factory.user(None).unwrap();
    assert_eq!(address(&c.id(), &mut con).unwrap(), a_address);
    assert_eq!(
        c.request(&b.id(), r#"{"kind": "ping-request"}"#, 10.0)
            .map(|r| parse(&r)["body"]["error_code"].clone())
            .unwrap(),
        4
    );
}

/// Completion queues work on clients of both factories: one thread keeps
/// 300 actions in flight to an agent it serves from the same queue, and a
/// ping and the shutdown end in their events, as on the HTTP exchange.
#[test]
fn completion_queues_serve_and_call_on_both_exchanges() {
    use academy::ffi::client::{academy_client_action_async, academy_client_ping_async};
    use academy::ffi::queue::*;
    for kind in KINDS {
        eprintln!("-- {}", kind.name());
        let setup = Setup::new(kind);
        let factory = setup.factory("");
        let user = factory.user(None).unwrap();
        let reg = user.register_agent("test.Adder", None).unwrap();
        let agent = factory.agent(&reg).unwrap();
        let agent_id = agent_id_of(&reg);
        let mut q = ptr::null_mut();
        check(unsafe { academy_queue_new(&mut q) }).unwrap();
        const SERVING: u64 = 0;
        const PING: u64 = 1_000_000;
        check(unsafe { academy_agent_serve_queue(agent.0, q, SERVING) }).unwrap();
        let id = c(&agent_id);
        let add = c("add");
        let total = 300u64;
        for i in 1..=total {
            let args = c(&format!("[{i}, 1]"));
            check(unsafe {
                academy_client_action_async(
                    user.0,
                    id.as_ptr(),
                    add.as_ptr(),
                    args.as_ptr(),
                    ptr::null(),
                    30.0,
                    q,
                    i,
                )
            })
            .unwrap();
        }
        check(unsafe { academy_client_ping_async(user.0, id.as_ptr(), 30.0, q, PING) }).unwrap();
        let text = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned();
        let (mut results, mut requests, mut pinged) = (Vec::new(), 0, false);
        while results.len() < total as usize || !pinged {
            let mut e = ptr::null_mut();
            check(unsafe { academy_queue_poll(q, 30.0, &mut e) }).unwrap();
            let ev = unsafe { &*e };
            match ev.kind {
                academy_event_kind::ACADEMY_EVENT_REQUEST => {
                    let args: Vec<i64> = serde_json::from_str(&text(ev.args_json)).unwrap();
                    let sum = c(&args.iter().sum::<i64>().to_string());
                    check(unsafe { academy_reply_ok(ev.reply, sum.as_ptr()) }).unwrap();
                    requests += 1;
                }
                academy_event_kind::ACADEMY_EVENT_CALL if ev.token == PING => {
                    assert_eq!(ev.status, ACADEMY_OK);
                    assert!(ev.rtt_s > 0.0);
                    pinged = true;
                }
                academy_event_kind::ACADEMY_EVENT_CALL => {
                    assert_eq!(ev.status, ACADEMY_OK, "{}", text(ev.error));
                    results.push((ev.token, text(ev.json)));
                }
                other => panic!("unexpected event {other:?}"),
            }
            unsafe { academy_event_free(e) };
        }
        assert_eq!(requests, total);
        results.sort();
        let want: Vec<(u64, String)> = (1..=total).map(|i| (i, (i + 1).to_string())).collect();
        assert_eq!(results, want, "every call ended once, with its own result");
        user.shutdown_agent(&agent_id, 1).unwrap();
        let mut e = ptr::null_mut();
        check(unsafe { academy_queue_poll(q, 30.0, &mut e) }).unwrap();
        let ev = unsafe { &*e };
        assert_eq!(
            (ev.kind, ev.token, ev.status),
            (academy_event_kind::ACADEMY_EVENT_ENDED, SERVING, ACADEMY_OK)
        );
        unsafe { academy_event_free(e) };
        unsafe { academy_queue_free(q) };
    }
}

/// A hostile hybrid peer (a raw TCP client standing in for one) sends a
/// client's port bytes that are no message: a frame that is not UTF-8, one
/// that is not JSON, a partial frame cut off, and a length past the limit.
/// The client stays up: a real user's message sent afterwards arrives, and
/// nothing the hostile peer sent reaches `recv`.
#[test]
fn a_hostile_hybrid_peer_cannot_break_a_clients_port() {
    use std::io::Write;
    let setup = Setup::new(Kind::Hybrid);
    let factory = setup.factory("");
    let user = factory.user(None).unwrap();
    let reg = user.register_agent("test.Target", None).unwrap();
    let agent = factory.agent(&reg).unwrap();
    let agent_id = agent_id_of(&reg);
    let mut con = setup.redis();
    let address = get(&mut con, &setup.key("address", &agent_id)).unwrap();
    let frame = |b: &[u8]| [&(b.len() as u32).to_be_bytes()[..], b].concat();
    let hostile: [Vec<u8>; 4] = [
        frame(b"\xff\xfe not utf-8"),
        frame(b"{not json"),
        frame(br#"{"header": {"kind": "request"}}"#)[..12].to_vec(),
        [&u32::MAX.to_be_bytes()[..], b"and then some"].concat(),
    ];
    for bytes in hostile {
        let mut s = std::net::TcpStream::connect(&address).unwrap();
        s.write_all(&bytes).unwrap();
        drop(s);
    }
    let m = message(&user.id(), &agent_id, r#"{"kind": "ping-request"}"#);
    user.send(&m).unwrap();
    assert_eq!(parse(&agent.recv(10.0).unwrap()), parse(&m));
    match agent.recv(0.5) {
        Err(f) => assert_eq!(f.status, ACADEMY_ERR_TIMEOUT, "{}", f.message),
        Ok(other) => panic!("a hostile frame reached recv: {other}"),
    }
}
