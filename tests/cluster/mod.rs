//! A real Redis Cluster for the tests: redis-server processes in cluster
//! mode on loopback ports, joined by `redis-cli --cluster create` (3
//! masters, a replica each), and what the tests do to it (kill a node,
//! start it again, move slots with `redis-cli --cluster reshard`); plus a
//! raw `GET /message` long poll, for counting exactly what an exchange
//! hands out (libacademy's clients drop repeats, which would hide them).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The cluster's failure detection time in the tests (Redis' default is
/// 15 s).
pub const NODE_TIMEOUT_MS: u64 = 2000;

/// One redis-server of the cluster.
pub struct Node {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            // The other shards keep serving while one is down.
            .args(["--cluster-require-full-coverage", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "redis-server is not installed: run the tests with ./scripts/test.sh, which installs it \
                 (apt-get install redis-server)",
            );
        self.child = Some(child);
        wait_for_port(self.port);
    }

    /// SIGKILL: no goodbye to the cluster.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port free for a node and for its cluster bus (the port + 10000).
fn node_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20000 + ((std::process::id() as u16 % 400) * 50 + n) % 20000;
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10000) {
            return port;
        }
    }
}

/// A node of `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: String,
    pub port: u16,
    pub master: bool,
    pub failed: bool,
    pub master_id: Option<String>,
    pub slots: Vec<(u16, u16)>,
}

pub struct RedisCluster {
    pub nodes: Vec<Node>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Three masters with a replica each, all agreeing and in sync.
    pub fn start() -> RedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "academy-cluster-{}-{}",
            std::process::id(),
            node_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let port = node_port();
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let mut node = Node {
                port,
                dir: node_dir,
                child: None,
            };
            node.spawn();
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli is not installed (apt-get install redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes, dir };
        cluster.wait_until("the cluster agrees and replicas are in sync", |c| {
            c.settled()
        });
        cluster
    }

    /// Every running node says the cluster is ok, knows every node, and
    /// every replica's link to its master is up.
    pub fn settled(&self) -> bool {
        self.nodes.iter().filter(|n| n.is_running()).all(|n| {
            let info = self.cli(n.port, &["CLUSTER", "INFO"]);
            let replication = self.cli(n.port, &["INFO", "replication"]);
            info.contains("cluster_state:ok")
                && info.contains(&format!("cluster_known_nodes:{}", self.nodes.len()))
                && (replication.contains("role:master")
                    || replication.contains("master_link_status:up"))
        })
    }

    /// `[backend]` of an exchange on this cluster (two seed nodes), and
    /// `extra` lines.
    pub fn backend_toml(&self, extra: &str) -> String {
        format!(
            "[backend]\nkind = \"redis-cluster\"\nnodes = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n{extra}\n",
            self.nodes[0].port, self.nodes[1].port
        )
    }

    /// A command through redis-cli to one node (raw output).
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "--raw"])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn any_running(&self) -> u16 {
        self.nodes.iter().find(|n| n.is_running()).unwrap().port
    }

    /// The nodes as a running node sees them.
    pub fn topology(&self) -> Vec<NodeInfo> {
        self.cli(self.any_running(), &["CLUSTER", "NODES"])
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() < 8 {
                    return None;
                }
                let port = f[1].split(['@', ':']).nth(1)?.parse().ok()?;
                Some(NodeInfo {
                    id: f[0].to_owned(),
                    port,
                    master: f[2].contains("master"),
                    failed: f[2].split(',').any(|x| x == "fail"),
                    master_id: (f[3] != "-").then(|| f[3].to_owned()),
                    slots: f[8..]
                        .iter()
                        .filter(|s| !s.starts_with('['))
                        .filter_map(|s| match s.split_once('-') {
                            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                            None => s.parse().ok().map(|n| (n, n)),
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// The port of the master serving `slot`.
    pub fn master_of_slot(&self, slot: u16) -> u16 {
        self.topology()
            .into_iter()
            .find(|n| {
                n.master && !n.failed && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
            })
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// The replica of the master on `port`.
    pub fn replica_of(&self, port: u16) -> u16 {
        let topology = self.topology();
        let master = topology.iter().find(|n| n.port == port).unwrap();
        topology
            .iter()
            .find(|n| n.master_id.as_deref() == Some(master.id.as_str()))
            .map(|n| n.port)
            .expect("the master has a replica")
    }

    pub fn node(&mut self, port: u16) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.port == port).unwrap()
    }

    /// Starts a killed node again (it rejoins with its nodes.conf).
    pub fn restart(&mut self, port: u16) {
        self.node(port).spawn();
    }

    /// Moves `count` slots (the lowest first) from the master on `from`
    /// to the one on `to`, with `redis-cli --cluster reshard`.
    pub fn reshard(&self, from: u16, to: u16, count: u32) {
        let topology = self.topology();
        let id = |port: u16| topology.iter().find(|n| n.port == port).unwrap().id.clone();
        let out = Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &id(from), "--cluster-to", &id(to)])
            .args(["--cluster-slots", &count.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster reshard failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits (up to 60 s) until `ok` holds.
    pub fn wait_until(&self, what: &str, ok: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ok(self) {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The hash slot of a mailbox's keys (their hash tag is the uid).
pub fn slot_of_uid(uid: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(uid.as_bytes()) % 16384
}

/// The uid of an entity id JSON.
pub fn uid_of(id_json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(id_json).unwrap();
    v["uid"].as_str().unwrap().to_owned()
}

/// One HTTP/1.1 request to an exchange (`Connection: close`): the status
/// and the body.
pub fn http(url: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let address = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(90)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A user mailbox made with `POST /mailbox` (no client listens on it),
/// with a uid whose slot `wanted` accepts: its id JSON.
pub fn raw_mailbox(url: &str, wanted: impl Fn(u16) -> bool) -> String {
    loop {
        let uid = uuid::Uuid::new_v4().to_string();
        if !wanted(slot_of_uid(&uid)) {
            continue;
        }
        let id = format!(r#"{{"uid": "{uid}", "name": null, "role": "user"}}"#);
        let request = serde_json::json!({ "mailbox": id }).to_string();
        let (status, body) = http(url, "POST", "/mailbox", &request).expect("POST /mailbox");
        assert_eq!(status, 200, "{body}");
        return id;
    }
}

/// A long poll `GET /message` of academy-py's protocol: the message JSON,
/// `None` on timeout, or the error (status and text).
pub fn get_message(
    url: &str,
    mailbox_json: &str,
    timeout_s: f64,
) -> Result<Option<String>, String> {
    // academy-py's wire: the id travels as a JSON string.
    let body = serde_json::json!({ "mailbox": mailbox_json, "timeout": timeout_s }).to_string();
    match http(url, "GET", "/message", &body) {
        Ok((200, body)) => {
            let v: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
            Ok(v["message"].as_str().map(str::to_owned))
        }
        Ok((408, _)) => Ok(None),
        Ok((status, body)) => Err(format!("{status} {body}")),
        Err(e) => Err(e.to_string()),
    }
}
