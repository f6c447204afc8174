//! What the exchange knows of its Redis Cluster: the nodes and their roles
//! and states, which slots are served, and the failovers it has seen, from
//! `CLUSTER NODES` asked every [`WATCH_INTERVAL`]. `GET /health` and
//! `GET /metrics` report it, waiting receives start over when the slots
//! move, and a mailbox whose slot no node can serve any more fails at once
//! with a clear error instead of after the retries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

/// The number of hash slots of a Redis Cluster.
pub(crate) const SLOTS: u16 = 16384;
/// How often the exchange reads the cluster's topology.
pub(crate) const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// A node's health as the cluster sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeState {
    Ok,
    /// Some node cannot reach it (`fail?`); not yet agreed.
    Suspected,
    /// The cluster agrees it is down (`fail`).
    Failed,
}

impl NodeState {
    pub(crate) fn label(self) -> &'static str {
        match self {
            NodeState::Ok => "ok",
            NodeState::Suspected => "pfail",
            NodeState::Failed => "fail",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) id: String,
    /// `host:port`.
    pub(crate) address: String,
    pub(crate) master: bool,
    /// For a replica, the id of its master.
    pub(crate) master_id: Option<String>,
    pub(crate) state: NodeState,
    /// Slot ranges served (masters), inclusive.
    pub(crate) slots: Vec<(u16, u16)>,
}

impl Node {
    fn slot_count(&self) -> u32 {
        self.slots
            .iter()
            .map(|(a, b)| u32::from(*b) - u32::from(*a) + 1)
            .sum()
    }
}

/// The cluster as one node described it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) nodes: Vec<Node>,
}

impl Snapshot {
    /// Reads the answer of `CLUSTER NODES`.
    pub(crate) fn parse(text: &str) -> Snapshot {
        let nodes = text
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() < 8 {
                    return None;
                }
                let flags: Vec<&str> = f[2].split(',').collect();
                if flags.contains(&"handshake") || flags.contains(&"noaddr") {
                    return None;
                }
                let address = f[1].split(['@', ',']).next().unwrap_or("").to_owned();
                let state = if flags.contains(&"fail") {
                    NodeState::Failed
                } else if flags.contains(&"fail?") {
                    NodeState::Suspected
                } else {
                    NodeState::Ok
                };
                let slots = f[8..]
                    .iter()
                    .filter(|s| !s.starts_with('['))
                    .filter_map(|s| match s.split_once('-') {
                        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                        None => s.parse().ok().map(|n| (n, n)),
                    })
                    .collect();
                Some(Node {
                    id: f[0].to_owned(),
                    address,
                    master: flags.contains(&"master"),
                    master_id: (f[3] != "-").then(|| f[3].to_owned()),
                    state,
                    slots,
                })
            })
            .collect();
        Snapshot { nodes }
    }

    pub(crate) fn masters(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.master)
    }

    /// Slots served by a master that is not down (suspected ones count).
    pub(crate) fn slots_served(&self) -> u32 {
        self.masters()
            .filter(|m| m.state != NodeState::Failed)
            .map(Node::slot_count)
            .sum()
    }

    /// Which master serves each slot range, for telling a move.
    fn owners(&self) -> Vec<(u16, u16, String)> {
        let mut owners: Vec<(u16, u16, String)> = self
            .masters()
            .flat_map(|m| m.slots.iter().map(|(a, b)| (*a, *b, m.id.clone())))
            .collect();
        owners.sort();
        owners
    }

    /// The slot ranges no node can serve, each with why: its master is
    /// down and has no replica left to take over, or no master has it.
    pub(crate) fn unservable(&self) -> Vec<(u16, u16, String)> {
        let mut out = Vec::new();
        for master in self.masters().filter(|m| m.state == NodeState::Failed) {
            let standby = self.nodes.iter().any(|n| {
                n.master_id.as_deref() == Some(master.id.as_str()) && n.state == NodeState::Ok
            });
            if !standby {
                for (a, b) in &master.slots {
                    out.push((
                        *a,
                        *b,
                        format!(
                            "the Redis Cluster node serving slots {a}-{b} ({}) is down and no replica of it is left to take over",
                            master.address
                        ),
                    ));
                }
            }
        }
        let mut owned: Vec<(u16, u16)> = self.masters().flat_map(|m| m.slots.clone()).collect();
        owned.sort_unstable();
        let mut next: u32 = 0;
        for (a, b) in owned.into_iter().chain([(SLOTS, SLOTS)]) {
            if u32::from(a) > next {
                let (from, to) = (next as u16, a - 1);
                out.push((
                    from,
                    to,
                    format!("no Redis Cluster node serves slots {from}-{to}"),
                ));
            }
            next = next.max(u32::from(b) + 1);
        }
        out
    }

    /// For `GET /health`.
    pub(crate) fn describe(&self) -> Value {
        let nodes: Vec<Value> = self
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "address": n.address,
                    "role": if n.master { "master" } else { "replica" },
                    "state": n.state.label(),
                    "slots": n.slot_count(),
                })
            })
            .collect();
        json!({
            "slots_served": self.slots_served(),
            "slots": SLOTS,
            "masters": self.masters().count(),
            "nodes": nodes,
        })
    }
}

/// The latest snapshot, the slots that cannot be served, and the
/// failovers seen.
#[derive(Default)]
pub(crate) struct Topology {
    latest: Mutex<Option<Snapshot>>,
    /// [`Snapshot::unservable`] of the latest snapshot (looked up on every
    /// request, so kept apart and small).
    dead: Mutex<Vec<(u16, u16, String)>>,
    failovers: AtomicU64,
}

impl Topology {
    /// Takes in a new snapshot: counts the replicas that became masters
    /// (failovers) and says whether any slot changed master.
    pub(crate) fn update(&self, snapshot: Snapshot) -> bool {
        *self.dead.lock().unwrap_or_else(|p| p.into_inner()) = snapshot.unservable();
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let Some(before) = latest.as_ref() else {
            *latest = Some(snapshot);
            return false;
        };
        let was_replica: HashMap<&str, bool> = before
            .nodes
            .iter()
            .map(|n| (n.id.as_str(), !n.master))
            .collect();
        for node in snapshot.masters() {
            if was_replica.get(node.id.as_str()) == Some(&true) {
                self.failovers.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "Redis Cluster: failover: replica {} is now a master",
                    node.address
                );
            }
        }
        let moved = before.owners() != snapshot.owners();
        *latest = Some(snapshot);
        moved
    }

    pub(crate) fn latest(&self) -> Option<Snapshot> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Why `slot` cannot be served now (and will not be soon), if so.
    pub(crate) fn down(&self, slot: u16) -> Option<String> {
        self.dead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(a, b, _)| (*a..=*b).contains(&slot))
            .map(|(_, _, why)| format!("{why} (slot {slot})"))
    }

    pub(crate) fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922 [10923->-a3]
a3 127.0.0.1:7003@17003 master - 0 0 3 connected 10923-16383
b1 127.0.0.1:7004@17004 slave a1 0 0 1 connected
b2 127.0.0.1:7005@17005 slave a2 0 0 2 connected
b3 127.0.0.1:7006@17006 slave a3 0 0 3 connected
";

    #[test]
    fn reads_cluster_nodes() {
        let s = Snapshot::parse(NODES);
        assert_eq!(s.nodes.len(), 6);
        assert_eq!(s.masters().count(), 3);
        assert_eq!(s.slots_served(), 16384);
        assert_eq!(s.nodes[1].slots, vec![(5461, 10922)]);
        assert_eq!(s.nodes[3].master_id.as_deref(), Some("a1"));
        assert_eq!(s.nodes[0].address, "127.0.0.1:7001");
        assert!(s.unservable().is_empty());
    }

    #[test]
    fn a_failover_is_counted_and_a_dead_shard_is_named() {
        let topology = Topology::default();
        assert!(!topology.update(Snapshot::parse(NODES)));
        let failed = NODES
            .replace(
                "a2 127.0.0.1:7002@17002 master",
                "a2 127.0.0.1:7002@17002 master,fail",
            )
            .replace(
                "b2 127.0.0.1:7005@17005 slave a2",
                "b2 127.0.0.1:7005@17005 slave,fail a2",
            );
        let s = Snapshot::parse(&failed);
        assert_eq!(s.slots_served(), 16384 - 5462);
        assert!(!topology.update(s));
        let why = topology.down(6000).unwrap();
        assert!(
            why.contains("127.0.0.1:7002") && why.contains("6000"),
            "{why}"
        );
        assert_eq!(topology.down(1), None);
        let promoted = NODES
            .replace(
                "a2 127.0.0.1:7002@17002 master",
                "a2 127.0.0.1:7002@17002 slave,fail b2",
            )
            .replace(
                "b2 127.0.0.1:7005@17005 slave a2 0 0 2 connected",
                "b2 127.0.0.1:7005@17005 master - 0 0 7 connected 5461-10922",
            );
        assert!(topology.update(Snapshot::parse(&promoted)));
        assert_eq!(topology.failovers(), 1);
        assert_eq!(topology.down(6000), None);
    }

    #[test]
    fn slots_no_master_has_cannot_be_served() {
        let s = Snapshot::parse(&NODES.replace(" 10923-16383", " 10923-16000"));
        let dead = s.unservable();
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!((dead[0].0, dead[0].1), (16001, 16383));
    }
}
