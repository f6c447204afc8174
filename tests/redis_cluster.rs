//! The exchange on a real Redis Cluster (3 masters, a replica each, on
//! loopback ports), with two `academy-exchange` processes in front:
//! academy-py 1.0.0 users and agents (default `HttpExchangeFactory`) and C
//! users and agents, both ways; a master killed while messages flow (with
//! and without `durability = "replica"`); slots moved with `redis-cli
//! --cluster reshard` while calls and messages flow; a shard that stays
//! down. The tests run one at a time (each starts its own cluster, and a
//! failover's timing should not depend on what the other tests do).

mod cluster;
mod common;

use std::collections::{HashMap, HashSet};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use academy::ffi::academy_status::{self, *};
use academy::ffi::client::academy_mailbox_status::*;
use academy::ffi::serve::academy_agent_serve;
use cluster::*;
use common::*;
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

fn uids(found: &str) -> HashSet<String> {
    json(found)
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["uid"].as_str().unwrap().to_owned())
        .collect()
}

/// Serves a C agent (tests/common/agent.rs) on a thread: its registration
/// and the serving thread.
fn serve_c_agent(
    factory: &Factory,
    registrar: &Client,
    class: &str,
) -> (String, std::thread::JoinHandle<academy_status>) {
    let reg = registrar
        .register_agent(&format!("{class},cagent.Base"), Some("c-calc"))
        .unwrap();
    let agent = Arc::new(factory.agent(&reg).unwrap());
    let thread = std::thread::spawn(move || unsafe {
        academy_agent_serve(agent.0, Some(calculator), null_mut())
    });
    (reg, thread)
}

fn wait_terminated(client: &Client, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while client.status(id).unwrap() != ACADEMY_MAILBOX_TERMINATED {
        assert!(Instant::now() < deadline, "the mailbox was not terminated");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two exchange processes on one cluster.
fn two_exchanges(cluster: &RedisCluster, extra: &str) -> [OurExchange; 2] {
    let backend = cluster.backend_toml(extra);
    [OurExchange::start(&backend), OurExchange::start(&backend)]
}

#[test]
fn python_and_c_peers_call_each_other_through_two_exchanges_on_a_cluster() {
    let _one = serial();
    let cluster = RedisCluster::start();
    let [a, b] = two_exchanges(&cluster, "");

    // A Python agent launched by academy's Manager through exchange A,
    // called from C through exchange B.
    let mut py = PyPeer::start("interop_agent.py", &[&a.url]);
    let agent = py.line();
    let factory_b = Factory::new(&b.url, None).unwrap();
    let user = Arc::new(factory_b.user(None).unwrap());
    calls_the_python_calc(&user, &agent, "hé");
    calls_the_python_calc_from_four_threads(&user, &agent, 10);
    assert!(user.ping(&agent, 30.0).unwrap() > 0.0);
    assert_eq!(user.status(&agent).unwrap(), ACADEMY_MAILBOX_ACTIVE);
    let age = user.heartbeat_status(&agent).unwrap();
    assert!((0.0..60.0).contains(&age), "heartbeat age {age}");
    let uid = uid_of(&agent);
    assert!(uids(&user.discover("__main__.Calc", false).unwrap()).contains(&uid));
    assert!(uids(&user.discover("academy.agent.Agent", true).unwrap()).contains(&uid));
    user.shutdown_agent(&agent, 1).unwrap();
    assert!(py.wait(Duration::from_secs(30)), "the Python agent exits 0");
    wait_terminated(&user, &agent);
    assert!(!uids(&user.discover("__main__.Calc", true).unwrap()).contains(&uid));
    expect_err(user.ping(&agent, 5.0), ACADEMY_ERR_MAILBOX_TERMINATED);

    // A C agent served through exchange A, called by a Python user
    // through exchange B; the user shuts it down (terminate).
    let factory_a = Factory::new(&a.url, Some(r#"{"max_concurrency": 8}"#)).unwrap();
    let registrar = factory_a.user(None).unwrap();
    let class = format!("cagent_{}.Calc", uuid::Uuid::new_v4().simple());
    let (reg, serving) = serve_c_agent(&factory_a, &registrar, &class);
    let agent_id = agent_id_of(&reg);
    let mut py = PyPeer::start("cluster_user.py", &[&b.url, &agent_id, &class]);
    assert_eq!(py.line(), "add 5.0");
    assert_eq!(py.line(), r#"echo {"k": [1, "h\u00e9", null, 1.5]}"#);
    assert_eq!(py.line(), "kwargs 42.0");
    assert_eq!(py.line(), "fail AcademyRemoteError it broke");
    assert_eq!(py.line(), "concurrent True");
    assert_eq!(py.line(), "ping True");
    assert_eq!(py.line(), "discover True");
    assert_eq!(py.line(), "status ACTIVE");
    assert_eq!(py.line(), "heartbeat True");
    assert_eq!(py.line(), "after TERMINATED");
    assert_eq!(py.line(), "discover after False");
    assert!(py.wait(Duration::from_secs(30)));
    assert_eq!(serving.join().unwrap(), ACADEMY_OK);
    wait_terminated(&registrar, &agent_id);

    // The keys of a mailbox share its slot, on the master that serves it.
    let uid = uid_of(&agent_id);
    let slot = cluster
        .cli(
            cluster.nodes[0].port,
            &["CLUSTER", "KEYSLOT", &format!("mailbox:{{{uid}}}")],
        )
        .parse::<u16>()
        .unwrap();
    assert_eq!(slot, slot_of_uid(&uid));
    let master = cluster.master_of_slot(slot);
    assert_eq!(
        cluster.cli(master, &["HGET", &format!("mailbox:{{{uid}}}"), "status"]),
        "TERMINATED"
    );
    assert_eq!(
        cluster.cli(master, &["LRANGE", &format!("queue:{{{uid}}}"), "0", "-1"]),
        "<CLOSED>"
    );

    // Health and metrics describe the cluster.
    let (status, body) = http(&a.url, "GET", "/health", "").unwrap();
    assert_eq!(status, 200, "{body}");
    let health = json(&body);
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["backend"], "redis-cluster");
    assert_eq!(health["cluster"]["slots_served"], 16384, "{health}");
    assert_eq!(health["cluster"]["masters"], 3, "{health}");
    assert_eq!(health["cluster"]["nodes"].as_array().unwrap().len(), 6);
    let (_, metrics) = http(&a.url, "GET", "/metrics", "").unwrap();
    for line in [
        "academy_redis_cluster_nodes{role=\"master\",state=\"ok\"} 3",
        "academy_redis_cluster_nodes{role=\"replica\",state=\"ok\"} 3",
        "academy_redis_cluster_slots_served 16384",
        "academy_redis_cluster_failovers_total 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

#[test]
fn discovery_and_termination_span_the_masters() {
    let _one = serial();
    let cluster = RedisCluster::start();
    let [a, b] = two_exchanges(&cluster, "");
    let fa = Factory::new(&a.url, None).unwrap();
    let fb = Factory::new(&b.url, None).unwrap();
    let ua = fa.user(None).unwrap();
    let ub = fb.user(None).unwrap();
    let base = format!("d_{}.Base", uuid::Uuid::new_v4().simple());
    let (leaf, other) = (format!("{base}Leaf"), format!("{base}Other"));
    let mut leaves = HashSet::new();
    let mut masters = HashSet::new();
    for i in 0..60 {
        let (class, user) = if i % 3 == 0 {
            (&other, &ub)
        } else {
            (&leaf, &ua)
        };
        let reg = user
            .register_agent(&format!("{class},{base}"), None)
            .unwrap();
        let uid = uid_of(&agent_id_of(&reg));
        masters.insert(cluster.master_of_slot(slot_of_uid(&uid)));
        if class == &leaf {
            leaves.insert(uid);
        }
    }
    assert_eq!(masters.len(), 3, "60 agents fall on every master");
    for user in [&ua, &ub] {
        assert_eq!(uids(&user.discover(&leaf, false).unwrap()), leaves);
        assert_eq!(uids(&user.discover(&base, true).unwrap()).len(), 60);
        assert!(uids(&user.discover(&base, false).unwrap()).is_empty());
    }
    // Terminated through the other exchange: gone from discovery at once.
    let gone: Vec<String> = leaves.iter().take(10).cloned().collect();
    for uid in &gone {
        let id = format!(r#"{{"uid": "{uid}", "name": null, "role": "agent"}}"#);
        ub.terminate(&id).unwrap();
        assert_eq!(ua.status(&id).unwrap(), ACADEMY_MAILBOX_TERMINATED);
    }
    let left = uids(&ua.discover(&leaf, false).unwrap());
    assert_eq!(left.len(), leaves.len() - 10);
    assert!(gone.iter().all(|g| !left.contains(g)));
    // A message sent again (its sender never saw the first answer) is
    // queued once; the exchange says that it drops repeats.
    let inbox = raw_mailbox(&a.url, |_| true);
    let note = message(&ua.id(), &inbox, r#"{"kind": "success-response"}"#);
    for url in [&a.url, &b.url] {
        let put = serde_json::json!({ "message": note }).to_string();
        let (status, body) = http(url, "PUT", "/message", &put).unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(get_message(&b.url, &inbox, 5.0).unwrap(), Some(note));
    assert_eq!(get_message(&a.url, &inbox, 0.5).unwrap(), None);

    // The class index is sharded: its keys spread over the masters.
    let mut index_masters = HashSet::new();
    for shard in 0..16 {
        let key = format!("agents:{{{leaf}#{shard}}}");
        let slot: u16 = cluster
            .cli(cluster.nodes[0].port, &["CLUSTER", "KEYSLOT", &key])
            .parse()
            .unwrap();
        index_masters.insert(cluster.master_of_slot(slot));
    }
    assert!(index_masters.len() >= 2, "{index_masters:?}");

    // An in-process exchange on the same cluster (academy_exchange_spawn's
    // JSON options) shares the mailboxes.
    let options = c(&format!(
        r#"{{"backend": {{"kind": "redis-cluster", "nodes": ["127.0.0.1:{}"]}}}}"#,
        cluster.nodes[2].port
    ));
    let mut ex = null_mut();
    let status =
        unsafe { academy::ffi::exchange::academy_exchange_spawn(options.as_ptr(), &mut ex) };
    assert_eq!(status, ACADEMY_OK, "{}", last_error());
    let mut url = null_mut();
    assert_eq!(
        unsafe { academy::ffi::exchange::academy_exchange_url(ex, &mut url) },
        ACADEMY_OK
    );
    {
        let here = Factory::new(&take_string(url), None)
            .unwrap()
            .user(None)
            .unwrap();
        assert_eq!(uids(&here.discover(&leaf, false).unwrap()), left);
        let note = message(&here.id(), &ua.id(), r#"{"kind": "success-response"}"#);
        here.send(&note).unwrap();
        assert_eq!(ua.recv(10.0).unwrap(), note);
    }
    assert_eq!(
        unsafe { academy::ffi::exchange::academy_exchange_stop(ex) },
        ACADEMY_OK
    );
    unsafe { academy::ffi::exchange::academy_exchange_free(ex) };
}

/// Requests in flight (answered `MAILBOX_TERMINATED` when their agent is
/// terminated), statistics, repeats, and sharing with permissions, across
/// two exchanges.
#[test]
fn requests_in_flight_statistics_repeats_and_sharing() {
    let _one = serial();
    let cluster = RedisCluster::start();
    let auth = "[auth]\nmethod = \"token\"\n[auth.kwargs.tokens.alice-token]\nclient_id = \"alice\"\ngroups = [\"team\"]\n[auth.kwargs.tokens.bob-token]\nclient_id = \"bob\"\ngroups = [\"team\"]\n[auth.kwargs.tokens.eve-token]\nclient_id = \"eve\"\n";
    let config = format!("{auth}{}", cluster.backend_toml(""));
    let (a, b) = (OurExchange::start(&config), OurExchange::start(&config));
    let as_ = |url: &str, token: &str| {
        Factory::new(
            url,
            Some(&format!(
                r#"{{"additional_headers": {{"Authorization": "Bearer {token}"}}}}"#
            )),
        )
        .unwrap()
    };
    let (fa, fb) = (as_(&a.url, "alice-token"), as_(&b.url, "bob-token"));
    let alice = fa.user(None).unwrap();
    let bob = fb.user(None).unwrap();
    let eve = as_(&b.url, "eve-token").user(None).unwrap();

    // Sharing: bob may send to alice's mailbox once it is shared with
    // his group; eve never.
    let mailbox = alice.id();
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

    // An agent of alice's: requests from her (through either exchange),
    // answered through the other; counted the same from both.
    let reg = alice.register_agent("stats.Worker", None).unwrap();
    let agent_id = agent_id_of(&reg);
    let agent = as_(&b.url, "alice-token").agent(&reg).unwrap();
    let requester = as_(&b.url, "alice-token").user(None).unwrap();
    for _ in 0..3 {
        let sent = message(&requester.id(), &agent_id, r#"{"kind": "ping-request"}"#);
        requester.send(&sent).unwrap();
        // The same request again (a client that never saw the answer):
        // dropped as a repeat.
        requester.send(&sent).unwrap();
        let got = agent.recv(10.0).unwrap();
        assert_eq!(got, sent);
        let mut response = json(&message(
            &agent_id,
            &requester.id(),
            r#"{"kind": "success-response"}"#,
        ));
        response["header"]["tag"] = json(&got)["header"]["tag"].clone();
        agent.send(&response.to_string()).unwrap();
        let back = json(&requester.recv(10.0).unwrap());
        assert_eq!(back["header"]["tag"], json(&got)["header"]["tag"]);
    }
    for user in [&alice, &requester] {
        let stats = json(&user.agent_stats(&agent_id).unwrap());
        assert_eq!(stats["completed"], 3, "{stats}");
        assert_eq!(stats["incoming"], 3, "{stats}");
        assert_eq!(stats["queued"], 0, "{stats}");
    }
    // One more request, taken and not answered: terminating the agent
    // answers it MAILBOX_TERMINATED.
    let pending = message(&requester.id(), &agent_id, r#"{"kind": "ping-request"}"#);
    requester.send(&pending).unwrap();
    assert_eq!(agent.recv(10.0).unwrap(), pending);
    let stats = json(&alice.agent_stats(&agent_id).unwrap());
    assert_eq!(
        (stats["incoming"].as_u64(), stats["in_progress"].as_u64()),
        (Some(4), Some(1)),
        "{stats}"
    );
    alice.terminate(&agent_id).unwrap();
    let answer = json(&requester.recv(10.0).unwrap());
    assert_eq!(answer["header"]["tag"], json(&pending)["header"]["tag"]);
    assert_eq!(answer["body"]["kind"], "academy-error-response", "{answer}");
    expect_err(agent.recv(5.0), ACADEMY_ERR_MAILBOX_TERMINATED);
    expect_err(
        requester.heartbeat_status(&agent_id),
        ACADEMY_ERR_MAILBOX_TERMINATED,
    );
}

#[test]
fn an_unreachable_cluster_fails_the_start_with_a_clear_error() {
    let port = free_port();
    let mut ex = null_mut();
    let options = c(&format!(
        r#"{{"backend": {{"kind": "redis-cluster", "nodes": ["127.0.0.1:{port}"]}}}}"#
    ));
    let status =
        unsafe { academy::ffi::exchange::academy_exchange_spawn(options.as_ptr(), &mut ex) };
    assert_eq!(status, ACADEMY_ERR_CONNECTION);
    let why = last_error();
    assert!(
        why.contains("Redis Cluster") && why.contains(&port.to_string()),
        "{why}"
    );
    assert!(ex.is_null());
    // A Redis that is not a cluster node is refused too.
    let redis = RedisServer::start();
    let options = c(&format!(
        r#"{{"backend": {{"kind": "redis-cluster", "nodes": ["127.0.0.1:{}"]}}}}"#,
        redis.port
    ));
    let status =
        unsafe { academy::ffi::exchange::academy_exchange_spawn(options.as_ptr(), &mut ex) };
    assert_eq!(status, ACADEMY_ERR_CONNECTION);
    assert!(last_error().contains("Redis Cluster"), "{}", last_error());
}

/// Messages sent (through libacademy) and received (by a raw long poll,
/// which counts every copy) while something happens to the cluster. The
/// receiver's polls are long (20 s), so that it waits in the exchange's
/// wake-ups rather than finding messages by polling again.
struct Traffic {
    /// n → when the send was accepted.
    accepted: Arc<Mutex<HashMap<u64, Instant>>>,
    refused: Arc<Mutex<Vec<String>>>,
    /// (n, when it was received).
    received: Arc<Mutex<Vec<(u64, Instant)>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// What came of a [`Traffic`].
#[derive(Debug)]
struct Counts {
    accepted: usize,
    lost: Vec<u64>,
    duplicated: Vec<u64>,
    /// The longest time from a send's acceptance to its receipt.
    slowest: Duration,
}

impl Traffic {
    /// A sender through `sender` to the mailbox `dest` (one message every
    /// `every`), and a receiver of `dest` through `recv_url`.
    fn start(
        sender: Arc<Client>,
        dest: &str,
        recv_url: &str,
        every: Duration,
        first: u64,
    ) -> Traffic {
        let t = Traffic {
            accepted: Default::default(),
            refused: Default::default(),
            received: Default::default(),
            stop: Default::default(),
            threads: Vec::new(),
        };
        let (accepted, refused, stop) = (t.accepted.clone(), t.refused.clone(), t.stop.clone());
        let dest_s = dest.to_owned();
        let sending = std::thread::spawn(move || {
            let mut n = first;
            while !stop.load(Ordering::Acquire) {
                let body = format!(r#"{{"kind": "success-response", "n": {n}}}"#);
                let m = message(&sender.id(), &dest_s, &body);
                match sender.send(&m) {
                    Ok(()) => {
                        accepted.lock().unwrap().insert(n, Instant::now());
                    }
                    Err(e) => refused.lock().unwrap().push(format!("{n}: {}", e.message)),
                }
                n += 1;
                std::thread::sleep(every);
            }
            // The last message: the receiver stops at it.
            let end = message(
                &sender.id(),
                &dest_s,
                r#"{"kind": "success-response", "end": true}"#,
            );
            while sender.send(&end).is_err() {
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let received = t.received.clone();
        let (url, dest) = (recv_url.to_owned(), dest.to_owned());
        let receiving = std::thread::spawn(move || loop {
            match get_message(&url, &dest, 20.0) {
                Ok(Some(m)) => {
                    let body = &json(&m)["body"];
                    if body["end"] == true {
                        return;
                    }
                    let n = body["n"].as_u64().unwrap();
                    received.lock().unwrap().push((n, Instant::now()));
                }
                Ok(None) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        });
        Traffic {
            threads: vec![sending, receiving],
            ..t
        }
    }

    /// Stops sending, lets what was accepted drain, and counts.
    fn finish(self) -> Counts {
        self.stop.store(true, Ordering::Release);
        for t in self.threads {
            t.join().unwrap();
        }
        let accepted = self.accepted.lock().unwrap();
        let received = self.received.lock().unwrap();
        let mut copies: HashMap<u64, usize> = HashMap::new();
        let mut slowest = Duration::ZERO;
        for (n, at) in received.iter() {
            *copies.entry(*n).or_default() += 1;
            if let Some(sent) = accepted.get(n) {
                slowest = slowest.max(at.saturating_duration_since(*sent));
            }
        }
        let mut lost: Vec<u64> = accepted
            .keys()
            .filter(|n| !copies.contains_key(n))
            .copied()
            .collect();
        lost.sort_unstable();
        let mut duplicated: Vec<u64> = copies
            .iter()
            .filter(|(_, c)| **c > 1)
            .map(|(n, _)| *n)
            .collect();
        duplicated.sort_unstable();
        Counts {
            accepted: accepted.len(),
            lost,
            duplicated,
            slowest,
        }
    }
}

/// A mailbox (no client on it) on the master on `port`.
fn mailbox_on_master(url: &str, cluster: &RedisCluster, port: u16) -> String {
    let topology = cluster.topology();
    let master = topology.iter().find(|n| n.port == port).unwrap();
    raw_mailbox(url, |slot| {
        master.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
    })
}

/// What came of a failover under traffic.
struct Failover {
    /// The killed master's mailbox.
    victim: Counts,
    /// From the kill to the replica's promotion, and to the killed node
    /// back as a replica in sync.
    promoted: Duration,
    rejoined: Duration,
    /// From the kill to the first `PUT /message` for the killed master's
    /// mailbox that the exchange accepted (a probe without retries).
    served: Duration,
}

/// A master is killed while messages flow to a mailbox it serves and to one
/// another master serves; its replica takes over, and the killed node comes
/// back as its replica.
fn failover_under_traffic(durability: &str) -> Failover {
    let mut cluster = RedisCluster::start();
    let [a, b] = two_exchanges(&cluster, &format!("durability = \"{durability}\""));
    let options = r#"{"retries": 30, "initial_retry_backoff_s": 0.1, "request_timeout_s": 30}"#;
    let fa = Factory::new(&a.url, Some(options)).unwrap();
    let victim = cluster.master_of_slot(0);
    let healthy = cluster.master_of_slot(16383);
    let dest_victim = mailbox_on_master(&b.url, &cluster, victim);
    let dest_healthy = mailbox_on_master(&b.url, &cluster, healthy);
    let sender = Arc::new(fa.user(None).unwrap());
    let every = Duration::from_millis(5);
    let to_victim = Traffic::start(sender.clone(), &dest_victim, &b.url, every, 0);
    let to_healthy = Traffic::start(sender.clone(), &dest_healthy, &b.url, every, 1_000_000);
    std::thread::sleep(Duration::from_secs(2));
    let replica = cluster.replica_of(victim);
    let killed = Instant::now();
    // The probe: one raw PUT every 50 ms, no retries; its messages count
    // as the traffic's.
    let probe = {
        let (accepted, url, dest, src) = (
            to_victim.accepted.clone(),
            a.url.clone(),
            dest_victim.clone(),
            sender.id(),
        );
        std::thread::spawn(move || {
            for k in 0.. {
                let n = 5_000_000 + k;
                let body = format!(r#"{{"kind": "success-response", "n": {n}}}"#);
                let put = serde_json::json!({ "message": message(&src, &dest, &body) }).to_string();
                if let Ok((200, _)) = http(&url, "PUT", "/message", &put) {
                    let at = Instant::now();
                    accepted.lock().unwrap().insert(n, at);
                    if at - killed > Duration::from_millis(50) {
                        return at - killed;
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            unreachable!()
        })
    };
    cluster.node(victim).kill();
    cluster.wait_until("the replica takes over", |c| {
        c.topology().iter().any(|n| n.port == replica && n.master)
    });
    let promoted = killed.elapsed();
    cluster.restart(victim);
    cluster.wait_until("the killed node is a replica in sync", |c| c.settled());
    let rejoined = killed.elapsed();
    let served = probe.join().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let victim_counts = to_victim.finish();
    let healthy_counts = to_healthy.finish();
    eprintln!(
        "{durability}: promoted after {promoted:?}, killed node back in sync after {rejoined:?}, served again after {served:?}; victim shard {victim_counts:?}; healthy shard {healthy_counts:?}"
    );
    assert!(
        healthy_counts.lost.is_empty() && healthy_counts.duplicated.is_empty(),
        "the healthy shard lost or duplicated: {healthy_counts:?}"
    );
    // The exchange saw the failover.
    let (_, metrics) = http(&a.url, "GET", "/metrics", "").unwrap();
    assert!(
        metrics.contains("academy_redis_cluster_failovers_total 1"),
        "{metrics}"
    );
    Failover {
        victim: victim_counts,
        promoted,
        rejoined,
        served,
    }
}

/// The failover bound: the cluster's node timeout (failure detection),
/// then the agreement that the node failed and the replica's election
/// (Redis waits 0.5 to 1 s before an election; 1.5 to 2.5 s in all, here),
/// then the exchange's next try (its retries pause up to 0.5 s), with
/// room for a loaded machine: node timeout + 5 s.
const FAILOVER_BOUND: Duration = Duration::from_millis(NODE_TIMEOUT_MS + 5000);

#[test]
fn a_failover_with_replica_durability_loses_no_accepted_message() {
    let _one = serial();
    let f = failover_under_traffic("replica");
    let c = &f.victim;
    assert!(c.accepted > 100, "too few messages accepted: {c:?}");
    assert!(
        c.lost.is_empty(),
        "lost {} of {}: {:?}",
        c.lost.len(),
        c.accepted,
        c.lost
    );
    assert!(c.duplicated.is_empty(), "duplicated: {:?}", c.duplicated);
    assert!(
        f.promoted < FAILOVER_BOUND,
        "promoted after {:?}",
        f.promoted
    );
    // With durability = "replica" the shard takes writes once it has a
    // replica in sync again (here the killed node, started again right
    // after the promotion), within a second (WAIT's timeout).
    assert!(
        f.served < f.rejoined + Duration::from_secs(2),
        "served again after {:?}, the replica back after {:?}",
        f.served,
        f.rejoined
    );
}

#[test]
fn a_failover_with_master_durability_is_served_again_within_the_bound() {
    let _one = serial();
    let f = failover_under_traffic("master");
    let (accepted, lost, dup) = (f.victim.accepted, &f.victim.lost, &f.victim.duplicated);
    assert!(accepted > 100, "too few messages accepted: {accepted}");
    assert!(
        f.served < FAILOVER_BOUND,
        "served again after {:?}",
        f.served
    );
    // What the master had not passed to its replica when it died is lost
    // (and a message taken but not yet replicated as taken is handed out
    // again): counted, and bounded by what was in flight.
    eprintln!(
        "durability = master: lost {} and duplicated {} of {accepted} accepted",
        lost.len(),
        dup.len()
    );
    assert!(
        lost.len() + dup.len() <= 10,
        "lost {lost:?}, duplicated {dup:?}"
    );
}

#[test]
fn resharding_while_calls_and_messages_flow_loses_and_fails_nothing() {
    let _one = serial();
    let cluster = RedisCluster::start();
    let [a, b] = two_exchanges(&cluster, "");
    let fa = Factory::new(&a.url, Some(r#"{"max_concurrency": 8}"#)).unwrap();
    let fb = Factory::new(&b.url, None).unwrap();
    const MOVED: u16 = 2000;
    let from = cluster.master_of_slot(0);
    let to = cluster.master_of_slot(16383);
    // A receiver and a C agent whose slots are among those that move.
    let in_moving = |id: &str| slot_of_uid(&uid_of(id)) < MOVED;
    let dest = raw_mailbox(&b.url, |slot| slot < MOVED);
    let registrar = fa.user(None).unwrap();
    let class = format!("reshard_{}.Calc", uuid::Uuid::new_v4().simple());
    let reg = loop {
        let reg = registrar.register_agent(&class, None).unwrap();
        if in_moving(&agent_id_of(&reg)) {
            break reg;
        }
    };
    let agent_id = agent_id_of(&reg);
    let agent = Arc::new(fa.agent(&reg).unwrap());
    let serving = {
        let agent = agent.clone();
        std::thread::spawn(move || unsafe {
            academy_agent_serve(agent.0, Some(calculator), null_mut())
        })
    };
    let sender = Arc::new(fa.user(None).unwrap());
    let traffic = Traffic::start(sender, &dest, &b.url, Duration::from_millis(3), 0);
    let caller = Arc::new(fb.user(None).unwrap());
    let calling = Arc::new(AtomicBool::new(true));
    let calls = {
        let (caller, calling, agent_id) = (caller.clone(), calling.clone(), agent_id.clone());
        std::thread::spawn(move || {
            let (mut done, mut failed) = (0, Vec::new());
            while calling.load(Ordering::Acquire) {
                match caller.action(&agent_id, "add", Some(&format!("[{done}, 1]")), None, 30.0) {
                    Ok(r) => {
                        assert_eq!(json(&r).as_f64().unwrap(), (done + 1) as f64);
                        done += 1;
                    }
                    Err(e) => failed.push(e.message),
                }
            }
            (done, failed)
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let start = Instant::now();
    cluster.reshard(from, to, u32::from(MOVED));
    eprintln!("moved {MOVED} slots in {:?}", start.elapsed());
    assert_eq!(cluster.master_of_slot(slot_of_uid(&uid_of(&dest))), to);
    assert_eq!(cluster.master_of_slot(slot_of_uid(&uid_of(&agent_id))), to);
    std::thread::sleep(Duration::from_secs(1));
    calling.store(false, Ordering::Release);
    let (done, failed) = calls.join().unwrap();
    let c = traffic.finish();
    eprintln!("reshard: {done} actions; messages {c:?}");
    assert!(failed.is_empty(), "failed calls: {failed:?}");
    assert!(done > 50, "too few calls: {done}");
    assert!(c.accepted > 100, "too few messages: {c:?}");
    assert!(c.lost.is_empty(), "lost {:?}", c.lost);
    assert!(c.duplicated.is_empty(), "duplicated {:?}", c.duplicated);
    // No receive was stranded while its slot moved (it waits in the
    // exchange's wake-ups, its poll is 20 s long).
    assert!(c.slowest < Duration::from_secs(5), "{c:?}");
    // The exchanges followed the slots (the redis crate's redirections).
    let moved: u64 = [&a.url, &b.url]
        .iter()
        .map(|url| {
            let (_, m) = http(url, "GET", "/metrics", "").unwrap();
            m.lines()
                .filter(|l| {
                    l.starts_with("academy_redis_cluster_redirections_total{kind=\"moved\"}")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum();
    assert!(moved > 0, "no MOVED seen");
    caller.shutdown_agent(&agent_id, 1).unwrap();
    assert_eq!(serving.join().unwrap(), ACADEMY_OK);
}

#[test]
fn a_shard_that_stays_down_fails_its_mailboxes_clearly_and_the_rest_work() {
    let _one = serial();
    let mut cluster = RedisCluster::start();
    let [a, b] = two_exchanges(&cluster, "");
    let fa = Factory::new(&a.url, None).unwrap();
    let fb = Factory::new(&b.url, None).unwrap();
    let dead = cluster.master_of_slot(0);
    let alive = cluster.master_of_slot(16383);
    let sender = fa.user(None).unwrap();
    let on_dead = mailbox_on_master(&b.url, &cluster, dead);
    let on_alive = mailbox_on_master(&b.url, &cluster, alive);
    let replica = cluster.replica_of(dead);
    cluster.node(replica).kill();
    cluster.node(dead).kill();
    cluster.wait_until("the cluster marks the shard failed", |c| {
        c.topology().iter().any(|n| n.port == dead && n.failed)
    });
    // The exchanges see it within their topology watch.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http(&a.url, "GET", "/health", "").unwrap();
        if json(&body)["status"] == "degraded" {
            assert!(json(&body)["cluster"]["slots_served"].as_u64().unwrap() < 16384);
            break;
        }
        assert!(Instant::now() < deadline, "health never degraded: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1500));
    // The dead shard's mailbox: a clear error, at once.
    let note = message(&sender.id(), &on_dead, r#"{"kind": "success-response"}"#);
    let start = Instant::now();
    let err = sender.send(&note).unwrap_err();
    assert!(
        err.message.contains("is down and no replica of it is left"),
        "{err:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let err = sender.status(&on_dead).unwrap_err();
    assert!(err.message.contains("is down"), "{err:?}");
    let err = get_message(&b.url, &on_dead, 1.0).unwrap_err();
    assert!(err.starts_with("503") && err.contains("is down"), "{err}");
    // The others work, through both exchanges.
    let note = message(&sender.id(), &on_alive, r#"{"kind": "success-response"}"#);
    sender.send(&note).unwrap();
    assert_eq!(get_message(&b.url, &on_alive, 10.0).unwrap(), Some(note));
    // New clients work, unless their new mailbox falls on the dead shard,
    // which is a clear error too.
    let mut made = 0;
    for _ in 0..12 {
        match fb.user(None) {
            Ok(u) => {
                made += 1;
                // (No client heartbeats there: libacademy calls it inactive.)
                assert_eq!(u.status(&on_alive).unwrap(), ACADEMY_MAILBOX_INACTIVE);
            }
            Err(e) => assert!(e.message.contains("is down"), "{e:?}"),
        }
    }
    assert!(made > 0);
}

/// The packaged deployment: the unit's `ExecStart` line with the packaged
/// `exchange-cluster.toml` (its seed nodes and ports pointed at the test's
/// cluster), three exchanges in front of the six nodes.
#[test]
fn the_packaged_cluster_config_runs_three_exchanges_on_six_nodes() {
    let _one = serial();
    let cluster = RedisCluster::start();
    let unit = std::fs::read_to_string(repo().join("packaging/academy-exchange.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let packaged = std::fs::read_to_string(repo().join("packaging/exchange-cluster.toml")).unwrap();
    let seeds = packaged
        .lines()
        .find(|l| l.starts_with("nodes = "))
        .expect("a nodes line");
    let mut exchanges = Vec::new();
    for _ in 0..3 {
        let (port, metrics_port) = (free_port(), free_port());
        let nodes: Vec<String> = cluster
            .nodes
            .iter()
            .take(3)
            .map(|n| format!("\"127.0.0.1:{}\"", n.port))
            .collect();
        let config = packaged
            .replacen("\nport = 8700\n", &format!("\nport = {port}\n"), 1)
            .replacen(
                "metrics_port = 9700\n",
                &format!("metrics_port = {metrics_port}\n"),
                1,
            )
            .replacen(seeds, &format!("nodes = [{}]", nodes.join(", ")), 1)
            .replacen("host = \"0.0.0.0\"", "host = \"127.0.0.1\"", 1);
        let credentials = temp_dir("cluster-credentials");
        std::fs::write(credentials.join("exchange.toml"), config).unwrap();
        let mut words = exec.split_whitespace();
        assert_eq!(words.next(), Some("/usr/local/bin/academy-exchange"));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_academy-exchange"));
        for w in words {
            cmd.arg(w.replace(
                "${CREDENTIALS_DIRECTORY}",
                &credentials.display().to_string(),
            ));
        }
        cmd.env("CREDENTIALS_DIRECTORY", &credentials)
            .stdout(std::process::Stdio::null());
        let mut guard = spawn_guarded(cmd);
        wait_for_port(port, &mut guard.0);
        exchanges.push((guard, port, metrics_port));
    }
    // A message through each pair of exchanges; health on each metrics
    // port describes the six nodes.
    let users: Vec<(Factory, String)> = exchanges
        .iter()
        .map(|(_, port, _)| {
            let f = Factory::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
            let id = f.user(None).unwrap().id();
            (f, id)
        })
        .collect();
    for (i, (_, port, metrics_port)) in exchanges.iter().enumerate() {
        let (_, body) = http(&format!("127.0.0.1:{metrics_port}"), "GET", "/health", "").unwrap();
        let health = json(&body);
        assert_eq!(health["status"], "ok", "{health}");
        assert_eq!(health["cluster"]["nodes"].as_array().unwrap().len(), 6);
        let inbox = raw_mailbox(&format!("http://127.0.0.1:{port}"), |_| true);
        let (next_factory, _) = &users[(i + 1) % 3];
        let sender = next_factory.user(None).unwrap();
        let note = message(&sender.id(), &inbox, r#"{"kind": "success-response"}"#);
        sender.send(&note).unwrap();
        assert_eq!(
            get_message(&format!("http://127.0.0.1:{port}"), &inbox, 10.0).unwrap(),
            Some(note)
        );
    }
}
