//! Faults between our client and the real exchanges: connections cut under
//! a listen stream, an exchange that is unreachable for a while, a server
//! that accepts and never answers. The proxy here is a stand-in for a
//! flaky network; the exchanges are academy-py's and ours.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use academy::ffi::academy_status::*;
use common::*;

/// A loopback TCP proxy that can cut every open connection and refuse new
/// ones for a while.
struct Proxy {
    port: u16,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    refusing: Arc<AtomicBool>,
    /// How many of the next connections lose the server's answer: the
    /// request reaches the exchange, the reply never reaches the client.
    lose_replies: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let refusing = Arc::new(AtomicBool::new(false));
        let lose_replies = Arc::new(AtomicUsize::new(0));
        let (c, r, l) = (conns.clone(), refusing.clone(), lose_replies.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if r.load(Ordering::SeqCst) {
                    drop(client); // accepted and closed at once: a refused connection
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                c.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                let lose = l
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                if lose {
                    swallow_reply(server, client);
                } else {
                    pipe(server, client);
                }
            }
        });
        Proxy {
            port,
            conns,
            refusing,
            lose_replies,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Cuts every open connection, both ways.
    fn cut(&self) -> usize {
        let mut conns = self.conns.lock().unwrap();
        let n = conns.len() / 2;
        for s in conns.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        n
    }

    fn refuse(&self, on: bool) {
        self.refusing.store(on, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// Reads the server's answer and closes both sides without passing it on.
fn swallow_reply(mut server: TcpStream, client: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        let _ = server.read(&mut buf);
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    });
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// Sends `rounds` messages, cutting the agent's connections before each;
/// returns how many of the sent messages the agent received (each once).
fn deliveries_across_cuts(url: &str, rounds: usize) -> (usize, usize) {
    let proxy = Proxy::start(port_of(url));
    let direct = Factory::new(url, None).unwrap();
    let user = direct.user(None).unwrap();
    let reg = user.register_agent("faults.Sink", None).unwrap();
    let agent_id = agent_id_of(&reg);
    let through_proxy = Factory::new(
        &proxy.url(),
        Some(r#"{"retries": 3, "initial_retry_backoff_s": 0.05}"#),
    )
    .unwrap();
    let agent = through_proxy.agent(&reg).unwrap();
    let mut sent = HashSet::new();
    let mut received = HashSet::new();
    let mut duplicates = 0;
    for _ in 0..rounds {
        std::thread::sleep(Duration::from_millis(300)); // the listen stream is open again
        proxy.cut();
        std::thread::sleep(Duration::from_millis(100)); // the exchange notices
        let m = message(&user.id(), &agent_id, r#"{"kind": "ping-request"}"#);
        user.send(&m).unwrap();
        sent.insert(m.clone());
        match agent.recv(3.0) {
            Ok(got) => {
                if !received.insert(got) {
                    duplicates += 1;
                }
            }
            Err(e) => eprintln!("round without delivery: {e:?}"),
        }
    }
    // Whatever is still on its way.
    while let Ok(got) = agent.recv(2.0) {
        if !received.insert(got) {
            duplicates += 1;
        }
    }
    assert_eq!(duplicates, 0, "nothing is delivered twice");
    assert!(received.is_subset(&sent));
    (sent.len(), received.len())
}

#[test]
fn cut_listen_streams_lose_nothing_on_our_exchange_and_show_academy_pys_loss() {
    let ours = shared_embedded_exchange();
    let (sent, received) = deliveries_across_cuts(&ours, 5);
    assert_eq!(
        received, sent,
        "our exchange keeps a message for a listener that went away"
    );
    eprintln!("embedded exchange: {sent} cuts, {received}/{sent} delivered");

    // academy-py 1.0.0's exchange hands the next message to the listen
    // handler of the cut connection, which writes it to a dead stream: the
    // client reconnects, but that message is gone. This documents it.
    let python = shared_python_exchange();
    let (sent, received) = deliveries_across_cuts(&python, 3);
    eprintln!("academy-py exchange: {sent} cuts, {received}/{sent} delivered");
    assert!(received < sent, "academy-py 1.0.0 is expected to lose messages here; if it no longer does, update this test and the README");
}

#[test]
fn an_unreachable_exchange_is_a_connection_error_and_receiving_resumes_after() {
    for (_, url) in exchanges() {
        let proxy = Proxy::start(port_of(&url));
        let direct = Factory::new(&url, None).unwrap();
        let user = direct.user(None).unwrap();
        let reg = user.register_agent("faults.Outage", None).unwrap();
        let agent_id = agent_id_of(&reg);
        let through = Factory::new(
            &proxy.url(),
            Some(r#"{"retries": 0, "request_timeout_s": 2}"#),
        )
        .unwrap();
        let agent = through.agent(&reg).unwrap();
        std::thread::sleep(Duration::from_millis(200));

        // Outage: the proxy refuses connections and cuts the open ones.
        proxy.refuse(true);
        proxy.cut();
        let start = Instant::now();
        let during = agent.recv(2.5);
        assert!(start.elapsed() < Duration::from_secs(5));
        let status = during.unwrap_err().status;
        assert!(
            status == ACADEMY_ERR_CONNECTION || status == ACADEMY_ERR_TIMEOUT,
            "{status:?}"
        );
        let m = message(&user.id(), &agent_id, r#"{"kind": "ping-request"}"#);
        user.send(&m).unwrap(); // accepted by the exchange during the outage
        let text = expect_err(agent.heartbeat(), ACADEMY_ERR_CONNECTION);
        assert!(
            text.contains("could not be reached") || text.contains("connection"),
            "{text}"
        );

        // Recovery: the message accepted during the outage arrives once.
        proxy.refuse(false);
        assert_eq!(agent.recv(15.0).unwrap(), m);
        expect_err(agent.recv(0.5), ACADEMY_ERR_TIMEOUT);
        agent.heartbeat().unwrap();
    }
}

#[test]
fn a_send_whose_answer_is_lost_is_delivered_once() {
    for (name, url) in exchanges() {
        let proxy = Proxy::start(port_of(&url));
        let direct = Factory::new(&url, None).unwrap();
        let owner = direct.user(None).unwrap();
        let reg = owner.register_agent("faults.Once", None).unwrap();
        let agent_id = agent_id_of(&reg);
        let agent = direct.agent(&reg).unwrap();
        let through = Factory::new(
            &proxy.url(),
            Some(r#"{"retries": 2, "initial_retry_backoff_s": 0.05}"#),
        )
        .unwrap();
        let sender = through.user(None).unwrap();
        let mut sent = Vec::new();
        for _ in 0..3 {
            proxy.lose_replies.store(1, Ordering::SeqCst);
            let m = message(&sender.id(), &agent_id, r#"{"kind": "ping-request"}"#);
            match sender.send(&m) {
                // Ours drops a repeat, so the send goes again and succeeds.
                Ok(()) => {}
                // academy-py's does not: a send whose answer was lost is not
                // sent again (it was delivered), and the error says so.
                Err(e) if name == "python" => {
                    assert_eq!(e.status, ACADEMY_ERR_CONNECTION, "{}", e.message);
                    assert!(
                        e.message.contains("may or may not have delivered"),
                        "{}",
                        e.message
                    );
                }
                Err(e) => panic!("{name}: {}", e.message),
            }
            sent.push(m);
        }
        let mut received = Vec::new();
        while let Ok(m) = agent.recv(1.5) {
            received.push(m);
        }
        assert_eq!(
            received, sent,
            "{name}: each message exactly once, in order"
        );
    }
}

fn spawn_embedded(port: u16) -> *mut academy::ffi::exchange::academy_exchange {
    let options = c(&format!(r#"{{"port": {port}}}"#));
    let mut ex = std::ptr::null_mut();
    check(unsafe { academy::ffi::exchange::academy_exchange_spawn(options.as_ptr(), &mut ex) })
        .unwrap();
    ex
}

fn stop_embedded(ex: *mut academy::ffi::exchange::academy_exchange) {
    check(unsafe { academy::ffi::exchange::academy_exchange_stop(ex) }).unwrap();
    unsafe { academy::ffi::exchange::academy_exchange_free(ex) };
}

/// A restarted exchange (in-memory backends) has forgotten every mailbox:
/// while it is down, receives say CONNECTION; after, the client is told
/// its mailbox is unknown (BAD_ENTITY_ID) rather than waiting forever.
#[test]
fn an_exchange_restarted_under_listening_clients() {
    for python in [false, true] {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut py = python.then(|| PyExchange::start_at(&common::python(), port, "", ""));
        let ours = (!python).then(|| spawn_embedded(port));
        let factory = Factory::new(&url, Some(r#"{"retries": 0}"#)).unwrap();
        let user = factory.user(None).unwrap();
        let reg = user.register_agent("faults.Restart", None).unwrap();
        let agent = factory.agent(&reg).unwrap();
        let m = message(
            &user.id(),
            &agent_id_of(&reg),
            r#"{"kind": "ping-request"}"#,
        );
        user.send(&m).unwrap();
        assert_eq!(agent.recv(10.0).unwrap(), m);

        match (&mut py, ours) {
            (Some(p), _) => p.kill(),
            (None, Some(ex)) => stop_embedded(ex),
            _ => unreachable!(),
        }
        let down = agent.recv(2.0).unwrap_err().status;
        assert!(
            down == ACADEMY_ERR_CONNECTION || down == ACADEMY_ERR_TIMEOUT,
            "{down:?}"
        );

        let restarted_py = python.then(|| PyExchange::start_at(&common::python(), port, "", ""));
        let restarted = (!python).then(|| spawn_embedded(port));
        let start = Instant::now();
        let text = expect_err(agent.recv(15.0), ACADEMY_ERR_BAD_ENTITY_ID);
        assert!(start.elapsed() < Duration::from_secs(15), "{text}");
        // The application can register again and go on.
        let fresh = factory.user(None).unwrap();
        let reg = fresh.register_agent("faults.Restart", None).unwrap();
        let again = factory.agent(&reg).unwrap();
        let m = message(
            &fresh.id(),
            &agent_id_of(&reg),
            r#"{"kind": "ping-request"}"#,
        );
        fresh.send(&m).unwrap();
        assert_eq!(again.recv(10.0).unwrap(), m);
        drop((again, fresh, agent, user, restarted_py));
        if let Some(ex) = restarted {
            stop_embedded(ex);
        }
    }
}

#[test]
fn a_server_that_never_answers_times_out_on_time() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            h.lock().unwrap().push(s); // accept, never answer
        }
    });
    let factory = Factory::new(
        &format!("http://127.0.0.1:{port}"),
        Some(r#"{"request_timeout_s": 0.5, "retries": 1, "initial_retry_backoff_s": 0.1}"#),
    )
    .unwrap();
    let start = Instant::now();
    let text = expect_err(factory.user(None), ACADEMY_ERR_TIMEOUT);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(4),
        "two tries of 0.5 s and a 0.1 s back-off: {took:?}"
    );
    assert!(text.contains("did not answer in time"), "{text}");
}
