//! Benchmarks of our client (the numbers in BENCHMARKS.md; run by bench/run).
//!
//! `cargo run --release --example bench -- WORKLOAD EXCHANGE [ARGS]` prints
//! one JSON object. EXCHANGE is an HTTP exchange's URL, `redis://HOST:PORT/DB`
//! for academy-py's Redis exchange, or `hybrid://HOST:PORT/DB` for its
//! hybrid exchange (namespace `bench`). Workloads:
//! - `ping N`: user -> agent -> user round trips to an agent served in this
//!   process (through the exchange): p50/p99 in ms.
//! - `action N`: `action("add", [1, 2])` round trips to the same agent.
//! - `actions N IN_FLIGHT`: actions per second with IN_FLIGHT threads each
//!   calling `action("add", [1, 2])` one after another.
//! - `throughput N IN_FLIGHT [threads|async]`: one-way messages counted at
//!   the receiver, kept in flight by IN_FLIGHT threads each sending and
//!   waiting (`threads`, the default), or by one thread sending with
//!   `academy_client_send_async` (`async`). URL may list several exchanges
//!   on one Redis, separated by commas;
//!   with this process's CPU time per message, and the exchange's when
//!   `ACADEMY_BENCH_EXCHANGE_PID` names its process.
//! - `cpu N`: client CPU seconds per 1,000 messages sent, and peak RSS.
//! - `clients N`: RSS of this process holding N listening clients.

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

/// Actions per second, `in_flight` threads each calling one after another.
fn actions(url: &str, total: usize, in_flight: usize) -> R<Value> {
    let (user, id, _agent) = user_and_agent(url)?;
    let user = Arc::new(user);
    fn call(user: &Client, id: &EntityId) -> academy::Result<Value> {
        let t = Some(Duration::from_secs(30));
        block(user.action(id.clone(), "add", &json!([1, 2]), &json!({}), t))
    }
    for _ in 0..50 {
        call(&user, &id)?;
    }
    let start = Instant::now();
    let threads: Vec<_> = (0..in_flight)
        .map(|i| {
            let (user, id) = (user.clone(), id.clone());
            let count = total / in_flight + usize::from(i < total % in_flight);
            std::thread::spawn(move || -> academy::Result<()> {
                for _ in 0..count {
                    call(&user, &id)?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "a caller panicked")??;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(json!({"actions_per_s": total as f64 / seconds, "n": total, "in_flight": in_flight}))
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
        "actions" => actions(url, n(3, 2000), n(4, 32))?,
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
        "clients" => clients(url, n(3, 100))?,
        other => return Err(format!("unknown workload {other}").into()),
    };
    println!("{out}");
    std::process::exit(0) // skip closing thousands of clients one by one
}
