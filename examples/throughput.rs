//! One-way throughput through an exchange, counted at the receiver.
//!
//! `cargo run --release --example throughput -- URL|embedded [MESSAGES] [IN_FLIGHT]`
//!
//! A user sends MESSAGES small messages to an agent mailbox from IN_FLIGHT
//! threads; the agent counts unique tags. Prints messages per second and
//! any loss or duplication.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use academy::{Factory, FactoryOptions, Message};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let target = args.get(1).map(String::as_str).unwrap_or("embedded");
    let total: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5000);
    let in_flight: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(32);
    let rt = academy::runtime::runtime()?;

    let _server;
    let url = if target == "embedded" {
        let config = academy::server::ServerConfig::from_json_options(None)?;
        let server = rt.block_on(academy::server::ExchangeServer::start(config))?;
        let url = server.url();
        _server = Some(server);
        url
    } else {
        _server = None;
        target.to_owned()
    };

    let factory = Factory::new(&url, FactoryOptions::default())?;
    let user = rt.block_on(factory.create_user_client(None))?;
    let registration = rt.block_on(user.register_agent("bench.Sink", None))?;
    let agent = rt.block_on(factory.create_agent_client(&registration))?;
    let dest = agent.mailbox_id().clone();

    let receiver = {
        let agent = agent.clone();
        std::thread::spawn(move || {
            let rt = academy::runtime::runtime().unwrap();
            let mut tags = HashSet::new();
            let mut duplicates = 0;
            while tags.len() < total {
                match rt.block_on(agent.recv(Some(Duration::from_secs(10)))) {
                    Ok(raw) => {
                        let m = Message::from_json(&raw).unwrap();
                        if !tags.insert(m.header.tag) {
                            duplicates += 1;
                        }
                    }
                    Err(_) => break,
                }
            }
            (tags.len(), duplicates, Instant::now())
        })
    };

    let user = Arc::new(user);
    let start = Instant::now();
    let senders: Vec<_> = (0..in_flight)
        .map(|i| {
            let (user, dest) = (user.clone(), dest.clone());
            std::thread::spawn(move || {
                let rt = academy::runtime::runtime().unwrap();
                let mine = total / in_flight + usize::from(i < total % in_flight);
                for _ in 0..mine {
                    let m = Message::create(
                        user.mailbox_id().clone(),
                        dest.clone(),
                        json!({"kind": "ping-request"}),
                        None,
                    )
                    .unwrap();
                    rt.block_on(user.send(&m.to_json())).unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let (received, duplicates, end) = receiver.join().unwrap();
    let seconds = end.duration_since(start).as_secs_f64();
    println!(
        "{target}: {received}/{total} messages, {in_flight} in flight, {seconds:.2} s, {:.0} msg/s, lost {}, duplicated {duplicates}",
        received as f64 / seconds,
        total - received
    );
    rt.block_on(user.close())?;
    Ok(())
}
