//! Load: 16 threads x 2,000 messages through one exchange, and 200 clients
//! in one process, with no loss, no duplicates and bounded memory.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::*;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

fn tag(m: &str) -> String {
    serde_json::from_str::<serde_json::Value>(m).unwrap()["header"]["tag"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn sixteen_threads_send_two_thousand_each_without_loss() {
    let url = shared_embedded_exchange();
    let factory = Factory::new(&url, None).unwrap();
    let user = Arc::new(factory.user(None).unwrap());
    let reg = user.register_agent("load.Sink", None).unwrap();
    let agent = Arc::new(factory.agent(&reg).unwrap());
    let (agent_id, user_id) = (agent_id_of(&reg), user.id());
    let before = rss_kib();

    let receiver = {
        let agent = agent.clone();
        std::thread::spawn(move || {
            let mut seen = HashSet::new();
            let mut duplicates = 0;
            while seen.len() < 32_000 {
                match agent.recv(10.0) {
                    Ok(m) => {
                        if !seen.insert(tag(&m)) {
                            duplicates += 1;
                        }
                    }
                    Err(e) => panic!("receiving stopped after {} messages: {e:?}", seen.len()),
                }
            }
            (seen, duplicates)
        })
    };
    let senders: Vec<_> = (0..16)
        .map(|_| {
            let (user, user_id, agent_id) = (user.clone(), user_id.clone(), agent_id.clone());
            std::thread::spawn(move || {
                (0..2000)
                    .map(|_| {
                        let m = message(&user_id, &agent_id, r#"{"kind": "ping-request"}"#);
                        user.send(&m).unwrap();
                        tag(&m)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let sent: HashSet<String> = senders
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let (received, duplicates) = receiver.join().unwrap();
    let after = rss_kib();
    eprintln!("16 x 2000 messages: RSS {before} KiB before, {after} KiB after");
    assert_eq!(sent.len(), 32_000);
    assert_eq!(duplicates, 0);
    assert_eq!(received, sent);
    assert!(
        after < before + 256 * 1024,
        "memory stays bounded: {before} -> {after} KiB"
    );
}

#[test]
fn two_hundred_clients_in_one_process() {
    for (name, url) in exchanges() {
        let factory = Factory::new(&url, None).unwrap();
        let before = rss_kib();
        let clients: Vec<_> = (0..200).map(|_| factory.user(None).unwrap()).collect();
        let during = rss_kib();
        let sender = factory.user(None).unwrap();
        let sender_id = sender.id();
        let ids: Vec<String> = clients.iter().map(|c| c.id()).collect();
        // Users answer requests themselves, so send them responses.
        let sent: Vec<String> = ids
            .iter()
            .map(|id| {
                let m = message(&sender_id, id, r#"{"kind": "success-response"}"#);
                sender.send(&m).unwrap();
                m
            })
            .collect();
        for (client, m) in clients.iter().zip(&sent) {
            assert_eq!(&client.recv(10.0).unwrap(), m);
        }
        for client in &clients {
            client.close().unwrap();
        }
        drop(clients);
        let after = rss_kib();
        eprintln!("{name}: 200 clients: RSS {before} KiB before, {during} KiB with them, {after} KiB after closing");
        assert!(
            during < before + 200 * 1024,
            "200 clients take less than 200 MiB: {before} -> {during} KiB"
        );
    }
}
