//! Benchmarks of our client (the numbers in BENCHMARKS.md; run by bench/run).
//!
//! `cargo run --release --example bench -- WORKLOAD EXCHANGE [ARGS]` prints
//! one JSON object. EXCHANGE is an HTTP exchange's URL, `redis://HOST:PORT/DB`
//! for academy-py's Redis exchange, or `hybrid://HOST:PORT/DB` for its
//! hybrid exchange (namespace `bench`). Workloads:
//! - `ping N`: user -> agent -> user round trips to an agent served in this
//!   process (through the exchange): p50/p99 in ms.
//! - `action N`: `action("add", [1, 2])` round trips to the same agent.
//! - `throughput N IN_FLIGHT [threads|async]`: one-way messages counted at
//!   the receiver, kept in flight by IN_FLIGHT threads each sending and
//!   waiting (`threads`, the default), or by one thread sending with
//!   `academy_client_send_async` (`async`). URL may list several exchanges
//!   on one Redis, separated by commas;
//!   with this process's CPU time per message, and the exchange's when
//!   `ACADEMY_BENCH_EXCHANGE_PID` names its process.
//! - `cpu N`: client CPU seconds per 1,000 messages sent, and peak RSS.
//! - `clients N`: RSS of this process holding N listening clients.
//! - `bookkeeping N` (URL unused): nanoseconds the embedded exchange spends
//!   per request on metrics and its access line (at its default level),
//!   timed alone over N requests, with the metrics and without.
//! - `actions N IN_FLIGHT queue|threads`: `add` actions to an agent served
//!   in this process with `academy_agent_serve_queue` (its own thread
//!   answers from its queue), kept in flight by one thread through a
//!   completion queue (`academy_client_action_async`, `queue`) or by
//!   IN_FLIGHT threads each calling `academy_client_action` (`threads`):
//!   actions/s and the p50/p99 latency of an action under that load.
//!   Through the C API, as a C program makes these calls.
//! - `serving N IN_FLIGHT MAX_CONCURRENCY serve|queue`: actions to an
//!   echo agent served in this process by `academy_agent_serve` (handler
//!   threads, at most MAX_CONCURRENCY at once, replying at once: `serve`)
//!   or from a queue polled by one thread (`academy_agent_serve_queue`:
//!   `queue`), kept in flight from one thread as `actions ... queue` does:
//!   actions/s, p50/p99. EXCHANGE `inproc`: an exchange started in this
//!   process (`academy_exchange_spawn`).
//! - `pending N`: the RSS that N `academy_client_action_async` calls add
//!   while they wait (for an agent nobody serves).
//! - `echo_agent` (HTTP exchanges only): registers a C agent whose `echo`
//!   returns its first argument (found with `academy_json_get`, replied
//!   with `academy_reply_ok`), prints its id, and serves it with
//!   `academy_agent_serve` (`max_concurrency` 2) until it is shut down: the
//!   C side of the arrays workload, whose Python side (a default `Handle`
//!   sending numpy arrays) is bench/bench_python.py's.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use academy::client::serve as agent;
use academy::options::exchanges::{HybridOptions, RedisOptions};
use academy::{Client, EntityId, Factory, FactoryOptions, Message};
use serde_json::{json, Value};

type R<T> = Result<T, Box<dyn std::error::Error>>;

/// Runs a library call as the C API does: blocking, on this thread.
fn block<T>(call: impl std::future::Future<Output = academy::Result<T>>) -> academy::Result<T> {
    academy::runtime::block_on(call)?
}

fn rusage() -> (f64, u64) {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (cpu(u.ru_utime) + cpu(u.ru_stime), u.ru_maxrss as u64)
}

/// CPU seconds a process's threads have run, from /proc (schedstat counts
/// nanoseconds; the tick-based counters are too coarse for a run this short).
fn process_cpu_s(pid: &str) -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A factory for EXCHANGE (see the module's doc) with the common client
/// options in `options` (a JSON object).
fn factory(exchange: &str, options: &str) -> R<Factory> {
    let redis = |rest: &str| -> R<(String, u16, i64)> {
        let (addr, db) = rest.split_once('/').unwrap_or((rest, "0"));
        let (host, port) = addr.rsplit_once(':').ok_or("expected HOST:PORT")?;
        Ok((host.to_owned(), port.parse()?, db.parse()?))
    };
    let mut opts: serde_json::Map<String, Value> = serde_json::from_str(options)?;
    if let Some(rest) = exchange.strip_prefix("redis://") {
        let (host, port, db) = redis(rest)?;
        opts.insert("hostname".into(), json!(host));
        opts.insert("port".into(), json!(port));
        opts.insert("kwargs".into(), json!({"db": db}));
        let options = RedisOptions::from_json(Some(&Value::Object(opts).to_string()))?;
        Ok(Factory::redis(options)?)
    } else if let Some(rest) = exchange.strip_prefix("hybrid://") {
        let (host, port, db) = redis(rest)?;
        opts.insert("redis_host".into(), json!(host));
        opts.insert("redis_port".into(), json!(port));
        opts.insert("redis_kwargs".into(), json!({"db": db}));
        opts.insert("namespace".into(), json!("bench"));
        let options = HybridOptions::from_json(Some(&Value::Object(opts).to_string()))?;
        Ok(Factory::hybrid(options)?)
    } else {
        let options = FactoryOptions::from_json(Some(&Value::Object(opts).to_string()))?;
        Ok(Factory::new(exchange, options)?)
    }
}

/// A user, and an agent served on a thread of this process.
fn user_and_agent(url: &str) -> R<(Client, EntityId, Client)> {
    let factory = factory(url, r#"{"max_concurrency": 4}"#)?;
    let user = block(factory.create_user_client(None))?;
    let registration = block(user.register_agent("bench.Calc", None))?;
    let agent = block(factory.create_agent_client(&registration))?;
    let id = agent.mailbox_id().clone();
    let serving = agent.clone();
    std::thread::spawn(move || {
        let _ = agent::serve(&serving, |call, reply| {
            let args: Vec<f64> = serde_json::from_str(&call.args_json).unwrap_or_default();
            let _ = reply.ok(&json!(args.iter().sum::<f64>()));
        });
    });
    Ok((user, id, agent))
}

fn latencies(n: usize, mut f: impl FnMut() -> R<()>) -> R<Value> {
    for _ in 0..n.min(50) {
        f()?;
    }
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        f()?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(json!({"p50_ms": percentile(&ms, 0.5), "p99_ms": percentile(&ms, 0.99), "n": n}))
}

/// How a throughput run keeps messages in flight.
#[derive(Clone, Copy, PartialEq)]
enum Senders {
    /// One thread per message in flight, each sending and waiting
    /// (`academy_client_send`).
    Threads,
    /// One thread handing every message to `academy_client_send_async`,
    /// with `max_in_flight` slots (as academy-py's client keeps its sends
    /// in flight: coroutines on one event loop).
    Async,
}

/// One-way messages, `in_flight` at a time, counted at the receivers.
/// `urls` is one exchange URL, or several separated by commas (exchange
/// processes sharing one Redis): each gets a sending user and a receiving
/// agent of its own, and the users on exchange `j` send to the agent on
/// exchange `j + 1`, so that every message crosses processes.
fn throughput(urls: &str, total: usize, in_flight: usize, senders: Senders) -> R<Value> {
    let options = format!(r#"{{"max_in_flight": {in_flight}}}"#);
    let mut users = Vec::new();
    let mut sinks = Vec::new();
    for url in urls.split(',') {
        let factory = factory(url, &options)?;
        let user = Arc::new(block(factory.create_user_client(None))?);
        let registration = block(user.register_agent("bench.Sink", None))?;
        sinks.push(block(factory.create_agent_client(&registration))?);
        users.push(user);
    }
    let k = users.len();
    // Messages per stream (a sender thread, or a share of the async
    // sends), and what each sink must receive.
    let counts: Vec<usize> = (0..in_flight)
        .map(|i| total / in_flight + usize::from(i < total % in_flight))
        .collect();
    let mut expected = vec![0; k];
    for (i, c) in counts.iter().enumerate() {
        expected[(i % k + 1) % k] += c;
    }
    let dests: Vec<EntityId> = sinks.iter().map(|s| s.mailbox_id().clone()).collect();
    let receivers: Vec<_> = sinks
        .into_iter()
        .zip(expected)
        .map(|(sink, want)| {
            std::thread::spawn(move || {
                let mut tags = HashSet::new();
                let mut duplicated = 0;
                while tags.len() < want {
                    match block(sink.recv(Some(Duration::from_secs(10)))) {
                        Ok(raw) => {
                            if !tags.insert(
                                Message::from_json(&raw)
                                    .map(|m| m.header.tag)
                                    .unwrap_or_default(),
                            ) {
                                duplicated += 1;
                            }
                        }
                        Err(_) => break,
                    }
                }
                (tags.len(), duplicated, Instant::now())
            })
        })
        .collect();
    let exchange_pid = std::env::var("ACADEMY_BENCH_EXCHANGE_PID").ok();
    let exchange_cpu = || exchange_pid.as_deref().and_then(process_cpu_s);
    let (client_before, exchange_before) = (rusage().0, exchange_cpu());
    let start = Instant::now();
    // Stream i sends counts[i] messages from users[i % k] to the next sink.
    let stream = move |i: usize| (i % k, dests[(i % k + 1) % k].clone());
    let message = |user: &Client, dest: &EntityId| {
        Message::create(
            user.mailbox_id().clone(),
            dest.clone(),
            json!({"kind": "ping-request"}),
            None,
        )
        .map(|m| m.to_json())
    };
    match senders {
        Senders::Threads => {
            let threads: Vec<_> = counts
                .iter()
                .enumerate()
                .map(|(i, &count)| {
                    let (u, dest) = stream(i);
                    let user = users[u].clone();
                    std::thread::spawn(move || -> academy::Result<()> {
                        for _ in 0..count {
                            block(user.send(&message(&user, &dest)?))?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for t in threads {
                t.join().map_err(|_| "a sender panicked")??;
            }
        }
        Senders::Async => {
            for (i, &count) in counts.iter().enumerate() {
                let (u, dest) = stream(i);
                for _ in 0..count {
                    users[u].send_in_background(&message(&users[u], &dest)?, drop)?;
                }
            }
            for user in &users {
                block(user.flush(None))?;
            }
        }
    }
    let (mut received, mut duplicated, mut end) = (0, 0, start);
    for r in receivers {
        let (got, dup, at) = r.join().map_err(|_| "a receiver failed")?;
        received += got;
        duplicated += dup;
        end = end.max(at);
    }
    let seconds = end.duration_since(start).as_secs_f64();
    let per_message_us = |cpu_s: f64| cpu_s * 1e6 / total as f64;
    let client_cpu = per_message_us(rusage().0 - client_before);
    let exchange_cpu = exchange_before
        .zip(exchange_cpu())
        .map(|(before, after)| per_message_us(after - before));
    let senders = if senders == Senders::Async {
        "async"
    } else {
        "threads"
    };
    Ok(
        json!({"msgs_per_s": received as f64 / seconds, "lost": total - received, "duplicated": duplicated,
              "in_flight": in_flight, "n": total, "exchanges": k, "senders": senders,
              "client_cpu_us_per_msg": client_cpu, "exchange_cpu_us_per_msg": exchange_cpu}),
    )
}

fn cpu(url: &str, n: usize) -> R<Value> {
    let factory = factory(url, "{}")?;
    let user = block(factory.create_user_client(None))?;
    let registration = block(user.register_agent("bench.Void", None))?;
    let dest: Value = serde_json::from_str(&registration)?;
    let dest = EntityId::from_value(&dest["agent_id"])?;
    let message = Message::create(
        user.mailbox_id().clone(),
        dest,
        json!({"kind": "ping-request"}),
        None,
    )?;
    let (before, _) = rusage();
    for _ in 0..n {
        block(user.send(&message.to_json()))?;
    }
    let (after, max_rss) = rusage();
    Ok(
        json!({"cpu_s_per_1000": (after - before) * 1000.0 / n as f64, "peak_rss_mib": max_rss as f64 / 1024.0, "n": n}),
    )
}

fn clients(url: &str, n: usize) -> R<Value> {
    let factory = factory(url, "{}")?;
    let base = rss_kib();
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(block(factory.create_user_client(None))?);
    }
    std::thread::sleep(Duration::from_secs(1)); // every listen stream open
    Ok(
        json!({"clients": n, "rss_mib": rss_kib() as f64 / 1024.0, "base_rss_mib": base as f64 / 1024.0}),
    )
}

/// The exchange's bookkeeping per request (metrics, access line), timed
/// alone, with the log at the level the exchange runs at by default.
fn bookkeeping(requests: u32) -> Value {
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(std::io::sink)
            .finish(),
    );
    let mut with = Vec::new();
    let mut without = Vec::new();
    for _ in 0..5 {
        let (a, b) = academy::server::bookkeeping_cost_ns(requests);
        with.push(a);
        without.push(b);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    json!({"with_metrics_ns": median(&mut with), "without_metrics_ns": median(&mut without)})
}

/// The C API, as a C program calls it (the `actions` and `pending`
/// workloads measure what users call).
mod capi {
    use std::ffi::{c_char, CStr, CString};
    use std::ptr;

    use academy::ffi::academy_status::{self, ACADEMY_OK};
    use academy::ffi::client::*;
    use academy::ffi::exchange::*;
    use academy::ffi::factory::*;
    use academy::ffi::queue::*;
    use academy::ffi::reply::*;
    use academy::ffi::serve::*;
    use academy::ffi::*;

    pub type R<T> = Result<T, String>;

    pub fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    pub fn check(status: academy_status) -> R<()> {
        if status == ACADEMY_OK {
            return Ok(());
        }
        let text = unsafe { CStr::from_ptr(academy_last_error()) };
        Err(format!("{status:?}: {}", text.to_string_lossy()))
    }

    fn take(p: *mut c_char) -> String {
        let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        unsafe { academy_string_free(p) };
        s
    }

    pub struct Factory(pub *mut academy_factory);
    pub struct Client(pub *mut academy_client);
    pub struct Queue(pub *mut academy_queue);
    unsafe impl Send for Client {}
    unsafe impl Sync for Client {}
    unsafe impl Send for Queue {}
    unsafe impl Sync for Queue {}

    impl Factory {
        /// A factory for `url`: an HTTP exchange's, or `redis://HOST:PORT/DB`
        /// and `hybrid://HOST:PORT/DB` as the other workloads take them.
        pub fn new(url: &str) -> R<Factory> {
            Factory::with_options(url, None)
        }

        /// As [`new`](Self::new), with an HTTP exchange's factory options
        /// (JSON; the Redis and hybrid exchanges' are the bench's own).
        pub fn with_options(url: &str, options: Option<&str>) -> R<Factory> {
            let mut f = ptr::null_mut();
            let redis = |rest: &str| -> R<(String, String, String)> {
                let (addr, db) = rest.split_once('/').unwrap_or((rest, "0"));
                let (host, port) = addr.rsplit_once(':').ok_or("expected HOST:PORT")?;
                Ok((host.to_owned(), port.to_owned(), db.to_owned()))
            };
            let status = if let Some(rest) = url.strip_prefix("redis://") {
                let (host, port, db) = redis(rest)?;
                let o = format!(
                    r#"{{"hostname": "{host}", "port": {port}, "kwargs": {{"db": {db}}}}}"#
                );
                unsafe { academy_redis_factory_new(c(&o).as_ptr(), &mut f) }
            } else if let Some(rest) = url.strip_prefix("hybrid://") {
                let (host, port, db) = redis(rest)?;
                let o = format!(
                    r#"{{"redis_host": "{host}", "redis_port": {port}, "redis_kwargs": {{"db": {db}}}, "namespace": "bench"}}"#
                );
                unsafe { academy_hybrid_factory_new(c(&o).as_ptr(), &mut f) }
            } else {
                let options = options.map(c);
                let options = options.as_ref().map_or(ptr::null(), |o| o.as_ptr());
                unsafe { academy_http_factory_new(c(url).as_ptr(), options, &mut f) }
            };
            check(status)?;
            Ok(Factory(f))
        }

        pub fn user(&self) -> R<Client> {
            let mut u = ptr::null_mut();
            check(unsafe { academy_user_client_new(self.0, ptr::null(), &mut u) })?;
            Ok(Client(u))
        }

        /// A new agent mailbox registered by `user`: its registration (as
        /// the exchange's kind writes it) and its id.
        fn registration(&self, user: &Client) -> R<(String, CString)> {
            let mut reg = ptr::null_mut();
            check(unsafe {
                academy_client_register_agent(
                    user.0,
                    c("bench.Calc").as_ptr(),
                    ptr::null(),
                    &mut reg,
                )
            })?;
            let reg = take(reg);
            let value: serde_json::Value = serde_json::from_str(&reg).map_err(|e| e.to_string())?;
            let id = c(&value["agent_id"].to_string());
            Ok((reg, id))
        }

        /// A new agent mailbox registered by `user`: its id.
        pub fn register(&self, user: &Client) -> R<CString> {
            Ok(self.registration(user)?.1)
        }

        /// A new agent mailbox registered by `user`, its client, and its id.
        pub fn agent(&self, user: &Client) -> R<(Client, CString)> {
            let (reg, id) = self.registration(user)?;
            let mut a = ptr::null_mut();
            check(unsafe { academy_agent_client_new(self.0, c(&reg).as_ptr(), &mut a) })?;
            Ok((Client(a), id))
        }
    }

    impl Queue {
        pub fn new() -> R<Queue> {
            let mut q = ptr::null_mut();
            check(unsafe { academy_queue_new(&mut q) })?;
            Ok(Queue(q))
        }

        pub fn fd(&self) -> R<i32> {
            let mut fd = -1;
            check(unsafe { academy_queue_fd(self.0, &mut fd) })?;
            Ok(fd)
        }
    }

    /// Serves `agent` from a queue answered by a thread of its own: `add`
    /// sums its arguments. Returns when serving ends.
    pub fn serve_adder(agent: &Client) -> R<()> {
        let q = Queue::new()?;
        check(unsafe { academy_agent_serve_queue(agent.0, q.0, 0) })?;
        loop {
            let mut e = ptr::null_mut();
            check(unsafe { academy_queue_poll(q.0, -1.0, &mut e) })?;
            let event = unsafe { &*e };
            if event.kind == academy_event_kind::ACADEMY_EVENT_ENDED {
                unsafe { academy_event_free(e) };
                return Ok(());
            }
            let args = unsafe { CStr::from_ptr(event.args_json) }.to_string_lossy();
            let sum: f64 = serde_json::from_str::<Vec<f64>>(&args)
                .unwrap_or_default()
                .iter()
                .sum();
            let result = c(&sum.to_string());
            check(unsafe { academy_reply_ok(event.reply, result.as_ptr()) })?;
            unsafe { academy_event_free(e) };
        }
    }

    /// Answers an action with its arguments, at once.
    unsafe extern "C" fn echo(
        _: *mut std::ffi::c_void,
        _: *const c_char,
        args_json: *const c_char,
        _: *const c_char,
        reply: *mut academy_reply,
    ) {
        unsafe { academy_reply_ok(reply, args_json) };
    }

    /// Serves `agent` with `echo` on the library's handler threads
    /// (`academy_agent_serve`). Returns when serving ends.
    pub fn serve_echo(agent: &Client) -> R<()> {
        check(unsafe { academy_agent_serve(agent.0, Some(echo), ptr::null_mut()) })
    }

    /// Serves `agent` from a queue polled by this thread, answering each
    /// action with its arguments at once. Returns when serving ends.
    pub fn serve_echo_queue(agent: &Client) -> R<()> {
        let q = Queue::new()?;
        check(unsafe { academy_agent_serve_queue(agent.0, q.0, 0) })?;
        loop {
            let mut e = ptr::null_mut();
            check(unsafe { academy_queue_poll(q.0, -1.0, &mut e) })?;
            let event = unsafe { &*e };
            if event.kind == academy_event_kind::ACADEMY_EVENT_ENDED {
                unsafe { academy_event_free(e) };
                return Ok(());
            }
            check(unsafe { academy_reply_ok(event.reply, event.args_json) })?;
            unsafe { academy_event_free(e) };
        }
    }

    /// An exchange server in this process (`academy_exchange_spawn`).
    pub struct Exchange(*mut academy_exchange);

    impl Exchange {
        pub fn spawn() -> R<Exchange> {
            let mut x = ptr::null_mut();
            check(unsafe { academy_exchange_spawn(c(r#"{"port": 0}"#).as_ptr(), &mut x) })?;
            Ok(Exchange(x))
        }

        pub fn url(&self) -> R<String> {
            let mut u = ptr::null_mut();
            check(unsafe { academy_exchange_url(self.0, &mut u) })?;
            Ok(take(u))
        }
    }

    pub fn action_async(
        user: &Client,
        agent: &CString,
        args: &CString,
        timeout_s: f64,
        q: &Queue,
        token: u64,
    ) -> R<()> {
        check(unsafe {
            academy_client_action_async(
                user.0,
                agent.as_ptr(),
                c"add".as_ptr(),
                args.as_ptr(),
                ptr::null(),
                timeout_s,
                q.0,
                token,
            )
        })
    }

    /// Takes every waiting event: (token, status) of each.
    pub fn drain(q: &Queue, mut each: impl FnMut(u64, academy_status)) {
        loop {
            let mut e = ptr::null_mut();
            if unsafe { academy_queue_poll(q.0, 0.0, &mut e) } != ACADEMY_OK {
                return;
            }
            let event = unsafe { &*e };
            each(event.token, event.status);
            unsafe { academy_event_free(e) };
        }
    }

    /// Waits until the fd is readable (up to `ms`).
    pub fn wait_readable(fd: i32, ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        unsafe { libc::poll(&mut p, 1, ms) == 1 }
    }

    pub fn action(user: &Client, agent: &CString, args: &CString) -> R<()> {
        let mut out = ptr::null_mut();
        check(unsafe {
            academy_client_action(
                user.0,
                agent.as_ptr(),
                c"add".as_ptr(),
                args.as_ptr(),
                ptr::null(),
                30.0,
                &mut out,
            )
        })?;
        unsafe { academy_string_free(out) };
        Ok(())
    }

    pub fn stop(agent: &Client) {
        unsafe { academy_agent_stop(agent.0) };
    }

    /// A C echo agent's handler: `echo` answers its first argument as it
    /// came (any JSON form: a numpy array's goes back as the same array).
    unsafe extern "C" fn echo_first(
        _: *mut std::ffi::c_void,
        _action: *const c_char,
        args: *const c_char,
        _kwargs: *const c_char,
        reply: *mut academy_reply,
    ) {
        let mut first = ptr::null_mut();
        if academy::ffi::pyvalue::academy_json_get(args, c"/0".as_ptr(), &mut first) != ACADEMY_OK {
            academy_reply_error(reply, c"echo takes one argument".as_ptr());
            return;
        }
        if academy_reply_ok(reply, first) != ACADEMY_OK {
            let why = CStr::from_ptr(academy_last_error()).to_owned();
            academy_reply_error(reply, why.as_ptr());
        }
        academy_string_free(first);
    }

    /// Registers a C echo agent on the HTTP exchange at `url`, prints its
    /// id, and serves it until it is shut down.
    pub fn echo_agent(url: &str) -> R<()> {
        let mut f = ptr::null_mut();
        let options = c(r#"{"max_concurrency": 2}"#);
        check(unsafe { academy_http_factory_new(c(url).as_ptr(), options.as_ptr(), &mut f) })?;
        let factory = Factory(f);
        let user = factory.user()?;
        let (agent, id) = factory.agent(&user)?;
        println!("{}", id.to_string_lossy());
        use std::io::Write;
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        check(unsafe { academy_agent_serve(agent.0, Some(echo_first), ptr::null_mut()) })
    }
}

/// Actions to an agent served in this process, kept in flight from one
/// thread through a queue or from `in_flight` threads (see the top).
fn actions(url: &str, total: usize, in_flight: usize, through_queue: bool) -> R<Value> {
    let factory = capi::Factory::new(url)?;
    let user = Arc::new(factory.user()?);
    let (agent, agent_id) = factory.agent(&user)?;
    let agent = Arc::new(agent);
    let serving = {
        let agent = agent.clone();
        std::thread::spawn(move || capi::serve_adder(&agent))
    };
    let agent_id = Arc::new(agent_id);
    let args = Arc::new(capi::c("[1, 2]"));
    let warmup = total.min(200);
    let (ms, seconds) = if through_queue {
        let q = capi::Queue::new()?;
        keep_in_flight(&user, &agent_id, &args, &q, in_flight, warmup)?;
        keep_in_flight(&user, &agent_id, &args, &q, in_flight, total)?
    } else {
        let run = |n: usize| -> R<(Vec<f64>, f64)> {
            let start = Instant::now();
            let threads: Vec<_> = (0..in_flight)
                .map(|i| {
                    let count = n / in_flight + usize::from(i < n % in_flight);
                    let (user, agent_id, args) = (user.clone(), agent_id.clone(), args.clone());
                    std::thread::spawn(move || -> capi::R<Vec<f64>> {
                        let mut ms = Vec::with_capacity(count);
                        for _ in 0..count {
                            let t = Instant::now();
                            capi::action(&user, &agent_id, &args)?;
                            ms.push(t.elapsed().as_secs_f64() * 1e3);
                        }
                        Ok(ms)
                    })
                })
                .collect();
            let mut ms = Vec::with_capacity(n);
            for t in threads {
                ms.extend(t.join().map_err(|_| "a caller panicked")??);
            }
            Ok((ms, start.elapsed().as_secs_f64()))
        };
        run(warmup)?;
        run(total)?
    };
    capi::stop(&agent);
    serving.join().map_err(|_| "the agent panicked")??;
    let mut ms = ms;
    ms.sort_by(f64::total_cmp);
    Ok(
        json!({"actions_per_s": total as f64 / seconds, "p50_ms": percentile(&ms, 0.5),
              "p99_ms": percentile(&ms, 0.99), "n": total, "in_flight": in_flight,
              "callers": if through_queue { "one thread, queue" } else { "threads" }}),
    )
}

/// Runs `n` `add` actions to `agent_id`, `in_flight` at a time, from this
/// thread through `q` (`academy_client_action_async`): the latency of each
/// in ms, and the seconds they took.
fn keep_in_flight(
    user: &capi::Client,
    agent_id: &std::ffi::CString,
    args: &std::ffi::CString,
    q: &capi::Queue,
    in_flight: usize,
    n: usize,
) -> R<(Vec<f64>, f64)> {
    let fd = q.fd()?;
    let mut started_at = vec![Instant::now(); n];
    let mut ms = Vec::with_capacity(n);
    let (mut started, mut failed) = (0, None);
    let start = Instant::now();
    while ms.len() < n {
        while started < n && started - ms.len() < in_flight {
            started_at[started] = Instant::now();
            capi::action_async(user, agent_id, args, 30.0, q, started as u64)?;
            started += 1;
        }
        if !capi::wait_readable(fd, 30_000) {
            return Err("no event for 30 s".into());
        }
        capi::drain(q, |token, status| {
            if status != academy::ffi::academy_status::ACADEMY_OK {
                failed.get_or_insert(format!("action {token}: {status:?}"));
            }
            ms.push(started_at[token as usize].elapsed().as_secs_f64() * 1e3);
        });
    }
    if let Some(f) = failed {
        return Err(f.into());
    }
    Ok((ms, start.elapsed().as_secs_f64()))
}

/// Actions to an echo agent served in this process by handler threads
/// (`academy_agent_serve`, `max_concurrency` of them) or from a queue
/// polled by one thread (`academy_agent_serve_queue`), kept in flight from
/// one thread through a queue (see the top). `url` `inproc` is an
/// exchange started in this process (`academy_exchange_spawn`).
fn serving(
    url: &str,
    total: usize,
    in_flight: usize,
    max_concurrency: usize,
    threads: bool,
) -> R<Value> {
    let exchange = match url {
        "inproc" => Some(capi::Exchange::spawn()?),
        _ => None,
    };
    let url = exchange
        .as_ref()
        .map_or(Ok(url.to_owned()), capi::Exchange::url)?;
    let options = format!(r#"{{"max_concurrency": {max_concurrency}}}"#);
    let factory = capi::Factory::with_options(&url, Some(&options))?;
    let user = factory.user()?;
    let (agent, agent_id) = factory.agent(&user)?;
    let agent = Arc::new(agent);
    let served = {
        let agent = agent.clone();
        std::thread::spawn(move || match threads {
            true => capi::serve_echo(&agent),
            false => capi::serve_echo_queue(&agent),
        })
    };
    let args = capi::c("[1, 2]");
    let q = capi::Queue::new()?;
    keep_in_flight(&user, &agent_id, &args, &q, in_flight, total.min(500))?;
    let (mut ms, seconds) = keep_in_flight(&user, &agent_id, &args, &q, in_flight, total)?;
    capi::stop(&agent);
    served.join().map_err(|_| "the agent panicked")??;
    ms.sort_by(f64::total_cmp);
    Ok(
        json!({"actions_per_s": total as f64 / seconds, "p50_ms": percentile(&ms, 0.5),
              "p99_ms": percentile(&ms, 0.99), "n": total, "in_flight": in_flight,
              "max_concurrency": max_concurrency,
              "served_by": if threads { "academy_agent_serve" } else { "academy_agent_serve_queue" }}),
    )
}

/// RSS added by `n` calls pending (to an agent nobody serves).
fn pending(url: &str, n: usize) -> R<Value> {
    let factory = capi::Factory::new(url)?;
    let user = factory.user()?;
    // A mailbox with no client: the requests wait on the exchange.
    let agent_id = factory.register(&user)?;
    let q = capi::Queue::new()?;
    let args = capi::c("[1, 2]");
    // One call first, so that connections and the timer exist already.
    capi::action_async(&user, &agent_id, &args, 600.0, &q, 0)?;
    std::thread::sleep(Duration::from_millis(500));
    let base = rss_kib();
    for token in 1..=n {
        capi::action_async(&user, &agent_id, &args, 600.0, &q, token as u64)?;
    }
    std::thread::sleep(Duration::from_secs(3)); // every request sent
    let with = rss_kib();
    let mut ended = 0;
    capi::drain(&q, |_, _| ended += 1);
    if ended != 0 {
        return Err(format!("{ended} calls ended early").into());
    }
    Ok(
        json!({"pending": n, "added_mib": (with as f64 - base as f64) / 1024.0,
              "rss_mib": with as f64 / 1024.0, "base_rss_mib": base as f64 / 1024.0}),
    )
}

fn main() -> R<()> {
    let args: Vec<String> = std::env::args().collect();
    let (workload, url) = (args[1].as_str(), args[2].as_str());
    let n = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let out = match workload {
        "ping" => {
            let (user, id, _agent) = user_and_agent(url)?;
            let t = Some(Duration::from_secs(10));
            latencies(
                n(3, 2000),
                || Ok(block(user.ping(id.clone(), t)).map(drop)?),
            )?
        }
        "action" => {
            let (user, id, _agent) = user_and_agent(url)?;
            let t = Some(Duration::from_secs(10));
            let (a, k) = (json!([1, 2]), json!({}));
            latencies(n(3, 2000), || {
                Ok(block(user.action(id.clone(), "add", &a, &k, t)).map(drop)?)
            })?
        }
        "throughput" => {
            let senders = match args.get(5).map(String::as_str) {
                None | Some("threads") => Senders::Threads,
                Some("async") => Senders::Async,
                Some(other) => {
                    return Err(format!("senders must be threads or async, not {other}").into())
                }
            };
            throughput(url, n(3, 5000), n(4, 32), senders)?
        }
        "cpu" => cpu(url, n(3, 2000))?,
        "bookkeeping" => bookkeeping(n(3, 1_000_000) as u32),
        "actions" => {
            let through_queue = match args.get(5).map(String::as_str) {
                Some("queue") => true,
                Some("threads") => false,
                other => {
                    return Err(format!("callers must be queue or threads, not {other:?}").into())
                }
            };
            actions(url, n(3, 20000), n(4, 1000), through_queue)?
        }
        "serving" => {
            let threads = match args.get(6).map(String::as_str) {
                Some("serve") => true,
                Some("queue") => false,
                other => {
                    return Err(format!("serving must be serve or queue, not {other:?}").into())
                }
            };
            serving(url, n(3, 20000), n(4, 1000), n(5, 1), threads)?
        }
        "pending" => pending(url, n(3, 10000))?,
        "clients" => clients(url, n(3, 100))?,
        "echo_agent" => {
            capi::echo_agent(url)?;
            std::process::exit(0)
        }
        other => return Err(format!("unknown workload {other}").into()),
    };
    println!("{out}");
    std::process::exit(0) // skip closing thousands of clients one by one
}
