//! The exchange's metrics, served at `GET /metrics` in the Prometheus text
//! format (version 0.0.4), with `prometheus-client`.
//!
//! | metric | type | what |
//! |---|---|---|
//! | `academy_mailboxes{state}` | gauge | mailboxes by state, `active` or `terminated` (with Redis: all of them there, counted at the scrape) |
//! | `academy_listen_streams` | gauge | open `GET /mailbox/listen` streams |
//! | `academy_connections` | gauge | open connections to the exchange's port |
//! | `academy_connections_max` | gauge | the connection cap (`max_connections`) |
//! | `academy_messages_accepted_total` | counter | messages accepted by `PUT /message` |
//! | `academy_messages_delivered_total` | counter | messages handed to receivers (listen streams and `GET /message`) |
//! | `academy_request_duration_seconds{method,path}` | histogram | time to the answer's head, per route (`path="other"` for unknown paths) |
//! | `academy_http_errors_total{status}` | counter | answers with status 400 or more |
//! | `academy_redis_round_trip_seconds` | histogram | Redis round trips (its `_count`) and their latency; blocking pops are not counted |
//! | `academy_redis_errors_total` | counter | Redis round trips that failed |
//!
//! With a Redis Cluster backend, also (read from `CLUSTER NODES` every
//! second; redirections as this process was answered them):
//!
//! | metric | type | what |
//! |---|---|---|
//! | `academy_redis_cluster_nodes{role,state}` | gauge | nodes by role (`master`, `replica`) and state (`ok`, `pfail`, `fail`) |
//! | `academy_redis_cluster_slots_served` | gauge | hash slots (of 16384) whose master is not down |
//! | `academy_redis_cluster_failovers_total` | counter | replicas seen becoming masters |
//! | `academy_redis_cluster_redirections_total{kind}` | counter | `moved`, `ask` and `tryagain` answers |
//! | `academy_redis_cluster_unreplicated_total` | counter | writes no replica acknowledged in time (`durability = "replica"`: answered 503) |
//! | `academy_redis_cluster_waiting_receives`, `academy_redis_cluster_subscriptions` | gauge | receives waiting for a message; mailbox channels subscribed to |
//!
//! Every update is an atomic add or a short lock of one histogram; the
//! per-route histograms are looked up by index, not by label.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of the answer.
pub(crate) const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

type Labels = [(&'static str, &'static str); 2];
type Label = [(&'static str, &'static str); 1];

/// Latency buckets (seconds): 50 µs to a minute (long polls wait).
const REQUEST_BUCKETS: [f64; 18] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0, 30.0, 60.0,
];
const REDIS_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

pub(crate) struct Metrics {
    registry: Registry,
    mailboxes: Family<Label, Gauge>,
    pub(crate) listen_streams: Gauge,
    pub(crate) connections: Gauge,
    pub(crate) accepted: Counter,
    pub(crate) delivered: Counter,
    /// One histogram per route, in the order of the routes given to `new`.
    routes: Vec<Histogram>,
    errors: Family<Label, Counter>,
    redis: Histogram,
    redis_errors: Counter,
    cluster: Option<ClusterMetrics>,
}

/// The metrics of a Redis Cluster backend.
struct ClusterMetrics {
    nodes: Family<Labels, Gauge>,
    slots_served: Gauge,
    failovers: Counter,
    redirections: Family<Label, Counter>,
    unreplicated: Counter,
    waiting: Gauge,
    subscriptions: Gauge,
}

impl ClusterMetrics {
    fn register(registry: &mut Registry) -> Self {
        let c = ClusterMetrics {
            nodes: Family::default(),
            slots_served: Gauge::default(),
            failovers: Counter::default(),
            redirections: Family::default(),
            unreplicated: Counter::default(),
            waiting: Gauge::default(),
            subscriptions: Gauge::default(),
        };
        registry.register(
            "redis_cluster_nodes",
            "Redis Cluster nodes by role and state",
            c.nodes.clone(),
        );
        registry.register(
            "redis_cluster_slots_served",
            "Hash slots (of 16384) whose master is not down",
            c.slots_served.clone(),
        );
        registry.register(
            "redis_cluster_failovers",
            "Replicas seen becoming masters",
            c.failovers.clone(),
        );
        registry.register(
            "redis_cluster_redirections",
            "MOVED, ASK and TRYAGAIN answers this process got",
            c.redirections.clone(),
        );
        registry.register(
            "redis_cluster_unreplicated",
            "Writes no replica acknowledged in time (durability = replica)",
            c.unreplicated.clone(),
        );
        registry.register(
            "redis_cluster_waiting_receives",
            "Receives waiting for a message",
            c.waiting.clone(),
        );
        registry.register(
            "redis_cluster_subscriptions",
            "Mailbox channels subscribed to",
            c.subscriptions.clone(),
        );
        c
    }
}

impl Metrics {
    /// `routes`: the (method, path) pairs the server answers; the last
    /// should be the catch-all (e.g. `("other", "other")`).
    pub(crate) fn new(routes: &[(&'static str, &'static str)], max_connections: usize) -> Self {
        let mut registry = Registry::with_prefix("academy");
        let mailboxes = Family::<Label, Gauge>::default();
        registry.register(
            "mailboxes",
            "Mailboxes by state (with Redis: every mailbox in it, counted at the scrape)",
            mailboxes.clone(),
        );
        let listen_streams = Gauge::default();
        registry.register(
            "listen_streams",
            "Open listen streams (GET /mailbox/listen)",
            listen_streams.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open connections to the exchange's port",
            connections.clone(),
        );
        let max: Gauge = Gauge::default();
        max.set(i64::try_from(max_connections).unwrap_or(i64::MAX));
        registry.register(
            "connections_max",
            "The connection cap (max_connections); past it new connections wait",
            max,
        );
        let accepted = Counter::default();
        registry.register(
            "messages_accepted",
            "Messages accepted (PUT /message)",
            accepted.clone(),
        );
        let delivered = Counter::default();
        registry.register(
            "messages_delivered",
            "Messages handed to receivers (listen streams and GET /message)",
            delivered.clone(),
        );
        let requests = Family::<Labels, Histogram>::new_with_constructor(
            (|| Histogram::new(REQUEST_BUCKETS)) as fn() -> Histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request to its answer's head, per route",
            requests.clone(),
        );
        let routes = routes
            .iter()
            .map(|&(method, path)| {
                requests
                    .get_or_create(&[("method", method), ("path", path)])
                    .clone()
            })
            .collect();
        let errors = Family::<Label, Counter>::default();
        registry.register(
            "http_errors",
            "Answers with status 400 or more, by status",
            errors.clone(),
        );
        let redis = Histogram::new(REDIS_BUCKETS);
        registry.register(
            "redis_round_trip_seconds",
            "Redis round trips (the count) and their latency; blocking pops are not counted",
            redis.clone(),
        );
        let redis_errors = Counter::default();
        registry.register(
            "redis_errors",
            "Redis round trips that failed",
            redis_errors.clone(),
        );
        Metrics {
            registry,
            mailboxes,
            listen_streams,
            connections,
            accepted,
            delivered,
            routes,
            errors,
            redis,
            redis_errors,
            cluster: None,
        }
    }

    /// Adds the metrics of a Redis Cluster backend.
    pub(crate) fn with_cluster(mut self) -> Self {
        self.cluster = Some(ClusterMetrics::register(&mut self.registry));
        self
    }

    /// The cluster's nodes, as (role, state, how many), and the slots
    /// served.
    pub(crate) fn cluster_topology(&self, nodes: &[(&'static str, &'static str, i64)], slots: u32) {
        if let Some(c) = &self.cluster {
            c.nodes.clear();
            for (role, state, n) in nodes {
                c.nodes
                    .get_or_create(&[("role", *role), ("state", *state)])
                    .set(*n);
            }
            c.slots_served.set(i64::from(slots));
        }
    }

    pub(crate) fn cluster_failovers(&self, new: u64) {
        if let Some(c) = &self.cluster {
            c.failovers.inc_by(new);
        }
    }

    pub(crate) fn cluster_redirections(&self, kind: &'static str, new: u64) {
        if let Some(c) = &self.cluster {
            c.redirections.get_or_create(&[("kind", kind)]).inc_by(new);
        }
    }

    pub(crate) fn cluster_unreplicated(&self) {
        if let Some(c) = &self.cluster {
            c.unreplicated.inc();
        }
    }

    pub(crate) fn cluster_waits(&self, waiting: usize, subscriptions: usize) {
        if let Some(c) = &self.cluster {
            c.waiting.set(i64::try_from(waiting).unwrap_or(i64::MAX));
            c.subscriptions
                .set(i64::try_from(subscriptions).unwrap_or(i64::MAX));
        }
    }

    /// A request to route number `route` answered `status` after `took`.
    pub(crate) fn request(&self, route: usize, status: u16, took: Duration) {
        if let Some(h) = self.routes.get(route) {
            h.observe(took.as_secs_f64());
        }
        if status >= 400 {
            self.errors
                .get_or_create(&[("status", status_label(status))])
                .inc();
        }
    }

    /// One Redis round trip.
    pub(crate) fn redis(&self, took: Duration, ok: bool) {
        self.redis.observe(took.as_secs_f64());
        if !ok {
            self.redis_errors.inc();
        }
    }

    /// The text of a scrape, with the mailbox counts just taken (`None`:
    /// unknown now, the last ones stand).
    pub(crate) fn encode(&self, mailboxes: Option<(u64, u64)>) -> String {
        if let Some((active, terminated)) = mailboxes {
            let set = |state, n: u64| {
                self.mailboxes
                    .get_or_create(&[("state", state)])
                    .set(i64::try_from(n).unwrap_or(i64::MAX))
            };
            set("active", active);
            set("terminated", terminated);
        }
        let mut out = String::with_capacity(8192);
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// A status as a static label (the statuses the server answers; any other
/// is "other", so the label set stays small).
fn status_label(status: u16) -> &'static str {
    match status {
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        419 => "419",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

/// Counts an open listen stream while it lives.
pub(crate) struct OpenStream(Option<Arc<Metrics>>);

impl OpenStream {
    pub(crate) fn new(metrics: Option<&Arc<Metrics>>) -> Self {
        if let Some(m) = metrics {
            m.listen_streams.inc();
        }
        OpenStream(metrics.cloned())
    }

    /// `n` messages went out on the stream.
    pub(crate) fn delivered(&self, n: usize) {
        if let Some(m) = &self.0 {
            m.delivered.inc_by(n as u64);
        }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        if let Some(m) = &self.0 {
            m.listen_streams.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_has_every_metric_with_its_values() {
        let m = Metrics::new(&[("PUT", "/message"), ("other", "other")], 100);
        m.accepted.inc_by(3);
        m.request(0, 200, Duration::from_micros(70));
        m.request(1, 404, Duration::from_millis(2));
        m.redis(Duration::from_micros(300), false);
        let open = OpenStream::new(Some(&Arc::new(Metrics::new(&[], 1))));
        drop(open);
        let text = m.encode(Some((5, 2)));
        for line in [
            "# TYPE academy_messages_accepted_total counter",
            "academy_messages_accepted_total 3",
            "academy_mailboxes{state=\"active\"} 5",
            "academy_mailboxes{state=\"terminated\"} 2",
            "academy_connections_max 100",
            "academy_request_duration_seconds_bucket{method=\"PUT\",path=\"/message\",le=\"0.0001\"} 1",
            "academy_request_duration_seconds_count{method=\"other\",path=\"other\"} 1",
            "academy_http_errors_total{status=\"404\"} 1",
            "academy_redis_round_trip_seconds_count 1",
            "academy_redis_errors_total 1",
            "academy_listen_streams 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn a_cluster_backend_adds_its_metrics() {
        let plain = Metrics::new(&[], 1).encode(None);
        assert!(!plain.contains("redis_cluster"), "{plain}");
        let m = Metrics::new(&[], 1).with_cluster();
        m.cluster_topology(&[("master", "ok", 3), ("replica", "fail", 1)], 16000);
        m.cluster_failovers(1);
        m.cluster_redirections("moved", 4);
        m.cluster_redirections("moved", 1);
        m.cluster_unreplicated();
        m.cluster_waits(7, 5);
        let text = m.encode(None);
        for line in [
            "academy_redis_cluster_nodes{role=\"master\",state=\"ok\"} 3",
            "academy_redis_cluster_nodes{role=\"replica\",state=\"fail\"} 1",
            "academy_redis_cluster_slots_served 16000",
            "academy_redis_cluster_failovers_total 1",
            "academy_redis_cluster_redirections_total{kind=\"moved\"} 5",
            "academy_redis_cluster_unreplicated_total 1",
            "academy_redis_cluster_waiting_receives 7",
            "academy_redis_cluster_subscriptions 5",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // A node gone from the cluster leaves the gauge.
        m.cluster_topology(&[("master", "ok", 3)], 16384);
        assert!(!m.encode(None).contains("state=\"fail\""));
    }
}
