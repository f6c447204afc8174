//! Completion queues (DESIGN 2b) through the C API, against academy-py's
//! exchange and ours: `_async` calls end in exactly one event each (also
//! on timeout and close), listening and serving through a queue, queues
//! shared by clients and threads, freed while in use, and after fork();
//! and a real event loop (Python's asyncio through ctypes) driving 10,000
//! actions in flight.

mod common;

use std::collections::{HashMap, HashSet};
use std::ffi::{c_char, CStr};
use std::process::Command;
use std::ptr;
use std::time::{Duration, Instant};

use academy::ffi::academy_status::{self, *};
use academy::ffi::client::*;
use academy::ffi::queue::*;
use academy::ffi::reply::*;
use academy::ffi::serve::*;
use common::*;
use serde_json::{json, Value};

struct Queue(*mut academy_queue);
unsafe impl Send for Queue {}
unsafe impl Sync for Queue {}

impl Queue {
    fn new() -> Queue {
        let mut q = ptr::null_mut();
        check(unsafe { academy_queue_new(&mut q) }).unwrap();
        Queue(q)
    }

    fn poll(&self, timeout_s: f64) -> R<Ev> {
        let mut e = ptr::null_mut();
        check(unsafe { academy_queue_poll(self.0, timeout_s, &mut e) })?;
        let ev = unsafe { Ev::copy(&*e) };
        unsafe { academy_event_free(e) };
        Ok(ev)
    }

    fn fd(&self) -> R<i32> {
        let mut fd = -1;
        check(unsafe { academy_queue_fd(self.0, &mut fd) })?;
        Ok(fd)
    }

    /// No event comes within `seconds`.
    #[track_caller]
    fn assert_quiet(&self, seconds: f64) {
        match self.poll(seconds) {
            Err(f) => assert_eq!(f.status, ACADEMY_ERR_TIMEOUT, "{}", f.message),
            Ok(e) => panic!("an unexpected event: {e:?}"),
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        unsafe { academy_queue_free(self.0) }
    }
}

/// An event's fields, copied out before `academy_event_free`.
#[derive(Debug)]
struct Ev {
    kind: academy_event_kind,
    token: u64,
    status: academy_status,
    json: Option<String>,
    error: Option<String>,
    rtt_s: f64,
    action: Option<String>,
    args: Option<String>,
    kwargs: Option<String>,
    reply: *mut academy_reply,
}

fn opt(p: *const c_char) -> Option<String> {
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

impl Ev {
    unsafe fn copy(e: &academy_event) -> Ev {
        Ev {
            kind: e.kind,
            token: e.token,
            status: e.status,
            json: opt(e.json),
            error: opt(e.error),
            rtt_s: e.rtt_s,
            action: opt(e.action),
            args: opt(e.args_json),
            kwargs: opt(e.kwargs_json),
            reply: e.reply,
        }
    }
}

fn action_async(
    user: &Client,
    agent: &str,
    action: &str,
    args: &str,
    timeout_s: f64,
    q: &Queue,
    token: u64,
) -> R<()> {
    let (agent, action, args) = (c(agent), c(action), c(args));
    check(unsafe {
        academy_client_action_async(
            user.0,
            agent.as_ptr(),
            action.as_ptr(),
            args.as_ptr(),
            ptr::null(),
            timeout_s,
            q.0,
            token,
        )
    })
}

fn ping_async(user: &Client, agent: &str, timeout_s: f64, q: &Queue, token: u64) -> R<()> {
    let agent = c(agent);
    check(unsafe { academy_client_ping_async(user.0, agent.as_ptr(), timeout_s, q.0, token) })
}

fn request_async(
    user: &Client,
    dest: &str,
    body: &str,
    timeout_s: f64,
    q: &Queue,
    token: u64,
) -> R<()> {
    let (dest, body) = (c(dest), c(body));
    check(unsafe {
        academy_client_request_async(user.0, dest.as_ptr(), body.as_ptr(), timeout_s, q.0, token)
    })
}

fn serve_queue(agent: &Client, q: &Queue, token: u64) -> R<()> {
    check(unsafe { academy_agent_serve_queue(agent.0, q.0, token) })
}

fn listen(client: &Client, q: &Queue, token: u64) -> R<()> {
    check(unsafe { academy_client_listen(client.0, q.0, token) })
}

fn reply_ok(reply: *mut academy_reply, result: &str) -> R<()> {
    let result = c(result);
    check(unsafe { academy_reply_ok(reply, result.as_ptr()) })
}

fn stop(agent: &Client) -> R<()> {
    check(unsafe { academy_agent_stop(agent.0) })
}

/// The sum of an `add` request's arguments, as the reply's JSON.
fn sum_of(args: &str) -> String {
    let args: Vec<f64> = serde_json::from_str(args).unwrap();
    json!(args.iter().sum::<f64>()).to_string()
}

/// A user, and an agent registered with the exchange (not yet served).
fn user_and_agent(factory: &Factory) -> (Client, Client, String) {
    let user = factory.user(None).unwrap();
    let reg = user.register_agent("test.Adder", None).unwrap();
    let agent = factory.agent(&reg).unwrap();
    (user, agent, agent_id_of(&reg))
}

#[test]
fn one_thread_keeps_actions_in_flight_and_serves_the_agent_from_one_queue() {
    for (name, url) in exchanges() {
        eprintln!("-- against the {name} exchange");
        let factory = Factory::new(&url, None).unwrap();
        let (user, agent, agent_id) = user_and_agent(&factory);
        let q = Queue::new();
        const SERVING: u64 = 0;
        serve_queue(&agent, &q, SERVING).unwrap();
        let (total, in_flight) = if name == "python" {
            (600, 200)
        } else {
            (3000, 1000)
        };
        let (mut started, mut done) = (0u64, HashSet::new());
        let mut requests = 0;
        while done.len() < total {
            while started < total as u64 && started - done.len() as u64 <= in_flight {
                started += 1;
                let args = format!("[{started}, 0.5]");
                action_async(&user, &agent_id, "add", &args, 30.0, &q, started).unwrap();
            }
            let e = q.poll(30.0).unwrap();
            match e.kind {
                academy_event_kind::ACADEMY_EVENT_REQUEST => {
                    assert_eq!((e.token, e.status), (SERVING, ACADEMY_OK));
                    assert_eq!(e.action.as_deref(), Some("add"));
                    assert_eq!(e.kwargs.as_deref(), Some("{}"));
                    let request: Value = serde_json::from_str(e.json.as_ref().unwrap()).unwrap();
                    assert_eq!(request["body"]["action"], "add");
                    reply_ok(e.reply, &sum_of(e.args.as_ref().unwrap())).unwrap();
                    requests += 1;
                }
                academy_event_kind::ACADEMY_EVENT_CALL => {
                    assert_eq!(e.status, ACADEMY_OK, "{:?}", e.error);
                    assert!(e.error.is_none() && e.reply.is_null());
                    let result: f64 = e.json.as_ref().unwrap().parse().unwrap();
                    assert_eq!(result, e.token as f64 + 0.5);
                    assert!(done.insert(e.token), "token {} ended twice", e.token);
                }
                other => panic!("unexpected {other:?}: {e:?}"),
            }
        }
        assert_eq!(requests, total);
        q.assert_quiet(0.3);
        // The library answers pings while the program does nothing.
        assert!(user.ping(&agent_id, 10.0).unwrap() > 0.0);
        user.shutdown_agent(&agent_id, 1).unwrap();
        let e = q.poll(10.0).unwrap();
        assert_eq!(
            (e.kind, e.token, e.status),
            (academy_event_kind::ACADEMY_EVENT_ENDED, SERVING, ACADEMY_OK),
            "{e:?}"
        );
        assert_eq!(
            user.status(&agent_id).unwrap(),
            academy_mailbox_status::ACADEMY_MAILBOX_TERMINATED
        );
        q.assert_quiet(0.2);
        agent.close().unwrap();
        user.close().unwrap();
    }
}

#[test]
fn every_started_call_ends_in_one_event_on_timeout_and_on_close() {
    for (name, url) in exchanges() {
        eprintln!("-- against the {name} exchange");
        let factory = Factory::new(&url, None).unwrap();
        // Nobody serves the agent: nothing answers.
        let (user, agent, agent_id) = user_and_agent(&factory);
        let q = Queue::new();
        let start = Instant::now();
        action_async(&user, &agent_id, "add", "[1, 2]", 0.3, &q, 1).unwrap();
        ping_async(&user, &agent_id, 0.2, &q, 2).unwrap();
        let mut timed_out = HashMap::new();
        for _ in 0..2 {
            let e = q.poll(10.0).unwrap();
            assert_eq!(e.kind, academy_event_kind::ACADEMY_EVENT_CALL);
            assert_eq!(e.status, ACADEMY_ERR_TIMEOUT, "{e:?}");
            assert!(e.json.is_none());
            assert!(e.error.as_ref().unwrap().contains("no response"), "{e:?}");
            timed_out.insert(e.token, start.elapsed());
        }
        assert!(timed_out[&1] >= Duration::from_millis(300), "{timed_out:?}");
        assert!(timed_out[&2] >= Duration::from_millis(200), "{timed_out:?}");
        // Calls without a deadline end CLOSED when the client closes.
        action_async(&user, &agent_id, "add", "[1, 2]", -1.0, &q, 3).unwrap();
        ping_async(&user, &agent_id, -1.0, &q, 4).unwrap();
        let ping = json!({"kind": "ping-request"}).to_string();
        request_async(&user, &agent_id, &ping, 60.0, &q, 5).unwrap();
        q.assert_quiet(0.3);
        user.close().unwrap();
        let mut closed = HashSet::new();
        for _ in 0..3 {
            let e = q.poll(10.0).unwrap();
            assert_eq!(e.status, ACADEMY_ERR_CLOSED, "{e:?}");
            assert!(e.error.as_ref().unwrap().contains("closed"), "{e:?}");
            assert!(closed.insert(e.token));
        }
        assert_eq!(closed, HashSet::from([3, 4, 5]));
        // Not started on a closed client: no event.
        let f = action_async(&user, &agent_id, "add", "[]", 1.0, &q, 6).unwrap_err();
        assert_eq!(f.status, ACADEMY_ERR_CLOSED);
        q.assert_quiet(1.3);
        agent.close().unwrap();
    }
}

#[test]
fn a_call_that_returns_an_error_was_not_started() {
    let url = shared_embedded_exchange();
    let factory = Factory::new(&url, None).unwrap();
    let (user, agent, agent_id) = user_and_agent(&factory);
    let q = Queue::new();
    let id = c(&agent_id);
    let add = c("add");
    let bad = [
        action_async(&user, "{", "add", "[]", 1.0, &q, 1),
        action_async(&user, &agent_id, "add", "[1,", 1.0, &q, 2),
        action_async(&user, &agent_id, "add", "[]", f64::NAN, &q, 3),
        check(unsafe {
            academy_client_action_async(
                user.0,
                id.as_ptr(),
                add.as_ptr(),
                ptr::null(),
                ptr::null(),
                1.0,
                ptr::null_mut(),
                4,
            )
        }),
        check(unsafe {
            academy_client_action_async(
                ptr::null_mut(),
                id.as_ptr(),
                add.as_ptr(),
                ptr::null(),
                ptr::null(),
                1.0,
                q.0,
                5,
            )
        }),
        // Not a request body.
        request_async(
            &user,
            &agent_id,
            r#"{"kind": "success-response"}"#,
            1.0,
            &q,
            6,
        ),
        request_async(&user, &agent_id, "nope", 1.0, &q, 7),
        ping_async(&user, "{}", 1.0, &q, 8),
    ];
    for (i, outcome) in bad.into_iter().enumerate() {
        expect_err(outcome, ACADEMY_ERR_INVALID_ARGUMENT);
        eprintln!("bad call {i}: INVALID_ARGUMENT");
    }
    let mut e = ptr::null_mut();
    let f = check(unsafe { academy_queue_poll(ptr::null_mut(), 0.0, &mut e) }).unwrap_err();
    assert_eq!(f.status, ACADEMY_ERR_INVALID_ARGUMENT);
    let f = check(unsafe { academy_queue_poll(q.0, 0.0, ptr::null_mut()) }).unwrap_err();
    assert_eq!(f.status, ACADEMY_ERR_INVALID_ARGUMENT);
    let f = check(unsafe { academy_queue_poll(q.0, f64::NAN, &mut e) }).unwrap_err();
    assert_eq!(f.status, ACADEMY_ERR_INVALID_ARGUMENT);
    expect_err(
        check(unsafe { academy_queue_fd(q.0, ptr::null_mut()) }),
        ACADEMY_ERR_INVALID_ARGUMENT,
    );
    expect_err(
        check(unsafe { academy_queue_new(ptr::null_mut()) }),
        ACADEMY_ERR_INVALID_ARGUMENT,
    );
    unsafe { academy_event_free(ptr::null_mut()) };
    unsafe { academy_queue_free(ptr::null_mut()) };
    q.assert_quiet(1.5);
    agent.close().unwrap();
    user.close().unwrap();
}

#[test]
fn requests_and_pings_without_a_thread() {
    for (name, url) in exchanges() {
        eprintln!("-- against the {name} exchange");
        let factory = Factory::new(&url, None).unwrap();
        let (user, agent, agent_id) = user_and_agent(&factory);
        let agent_q = Queue::new();
        serve_queue(&agent, &agent_q, 77).unwrap();
        let q = Queue::new();
        ping_async(&user, &agent_id, 10.0, &q, 1).unwrap();
        let ping = json!({"kind": "ping-request"}).to_string();
        request_async(&user, &agent_id, &ping, 10.0, &q, 2).unwrap();
        let mut seen = HashSet::new();
        for _ in 0..2 {
            let e = q.poll(10.0).unwrap();
            assert_eq!(
                (e.kind, e.status),
                (academy_event_kind::ACADEMY_EVENT_CALL, ACADEMY_OK),
                "{e:?}"
            );
            match e.token {
                1 => {
                    assert!(e.rtt_s > 0.0 && e.rtt_s < 10.0, "{e:?}");
                    assert!(e.json.is_none());
                }
                2 => {
                    let response: Value = serde_json::from_str(e.json.as_ref().unwrap()).unwrap();
                    assert_eq!(response["body"]["kind"], "success-response", "{response}");
                    assert_eq!(response["header"]["src"], json(&agent_id));
                }
                other => panic!("token {other}"),
            }
            seen.insert(e.token);
        }
        assert_eq!(seen.len(), 2);
        // An action that raises reaches the caller as REMOTE with the text.
        action_async(&user, &agent_id, "divide", "[1, 0]", 10.0, &q, 3).unwrap();
        let e = agent_q.poll(10.0).unwrap();
        assert_eq!(e.action.as_deref(), Some("divide"));
        let why = c("division by zero");
        check(unsafe { academy_reply_error(e.reply, why.as_ptr()) }).unwrap();
        let e = q.poll(10.0).unwrap();
        assert_eq!((e.token, e.status), (3, ACADEMY_ERR_REMOTE), "{e:?}");
        assert!(
            e.error.as_ref().unwrap().contains("division by zero"),
            "{e:?}"
        );
        stop(&agent).unwrap();
        let e = agent_q.poll(10.0).unwrap();
        assert_eq!(
            (e.kind, e.token, e.status),
            (academy_event_kind::ACADEMY_EVENT_ENDED, 77, ACADEMY_OK)
        );
        agent.close().unwrap();
        user.close().unwrap();
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn listen_routes_messages_to_a_queue_until_the_client_closes() {
    for (name, url) in exchanges() {
        eprintln!("-- against the {name} exchange");
        let factory = Factory::new(&url, None).unwrap();
        let (user, agent, agent_id) = user_and_agent(&factory);
        let user_id = user.id();
        let body = r#"{"kind": "ping-request"}"#;
        let mut sent = HashSet::new();
        let first = message(&user_id, &agent_id, body);
        user.send(&first).unwrap();
        sent.insert(json(&first)["header"]["tag"].clone());
        let q = Queue::new();
        listen(&agent, &q, 9).unwrap();
        for _ in 0..50 {
            let m = message(&user_id, &agent_id, body);
            user.send(&m).unwrap();
            sent.insert(json(&m)["header"]["tag"].clone());
        }
        let mut got = HashSet::new();
        while got.len() < sent.len() {
            let e = q.poll(10.0).unwrap();
            assert_eq!(
                (e.kind, e.token, e.status),
                (academy_event_kind::ACADEMY_EVENT_MESSAGE, 9, ACADEMY_OK),
                "{e:?}"
            );
            assert!(e.reply.is_null() && e.action.is_none());
            assert!(got.insert(json(e.json.as_ref().unwrap())["header"]["tag"].clone()));
        }
        assert_eq!(got, sent);
        expect_err(agent.recv(0.2), ACADEMY_ERR_TIMEOUT);
        expect_err(listen(&agent, &q, 10), ACADEMY_ERR_INVALID_ARGUMENT);
        expect_err(serve_queue(&agent, &q, 11), ACADEMY_ERR_INVALID_ARGUMENT);
        agent.close().unwrap();
        let e = q.poll(10.0).unwrap();
        assert_eq!(
            (e.kind, e.token, e.status),
            (
                academy_event_kind::ACADEMY_EVENT_ENDED,
                9,
                ACADEMY_ERR_CLOSED
            ),
            "{e:?}"
        );
        q.assert_quiet(0.2);
        // A user listens too; requests to it are still answered by the library.
        let uq = Queue::new();
        listen(&user, &uq, 1).unwrap();
        let other = factory.user(None).unwrap();
        other
            .send(&message(
                &other.id(),
                &user_id,
                r#"{"kind": "success-response"}"#,
            ))
            .ok();
        let e = uq.poll(10.0).unwrap();
        assert_eq!(e.kind, academy_event_kind::ACADEMY_EVENT_MESSAGE, "{e:?}");
        expect_err(other.ping(&user_id, 10.0), ACADEMY_ERR_REMOTE);
        uq.assert_quiet(0.2);
        other.close().unwrap();
        user.close().unwrap();
    }
}

#[test]
fn a_served_queue_honours_cancel_and_stop_like_the_blocking_serve() {
    for (name, url) in exchanges() {
        eprintln!("-- against the {name} exchange");
        let factory = Factory::new(&url, None).unwrap();
        let (user, agent, agent_id) = user_and_agent(&factory);
        let agent_q = Queue::new();
        serve_queue(&agent, &agent_q, 5).unwrap();
        expect_err(
            serve_queue(&agent, &agent_q, 6),
            ACADEMY_ERR_INVALID_ARGUMENT,
        );
        expect_err(listen(&agent, &agent_q, 6), ACADEMY_ERR_INVALID_ARGUMENT);
        let q = Queue::new();
        action_async(&user, &agent_id, "slow", "[]", 10.0, &q, 1).unwrap();
        let request = agent_q.poll(10.0).unwrap();
        assert_eq!(request.action.as_deref(), Some("slow"));
        let tag = json(request.json.as_ref().unwrap())["header"]["tag"].clone();
        let cancel = json!({"kind": "cancel-request", "target_tag": tag}).to_string();
        request_async(&user, &agent_id, &cancel, 10.0, &q, 2).unwrap();
        let mut ends = HashMap::new();
        for _ in 0..2 {
            let e = q.poll(10.0).unwrap();
            ends.insert(e.token, e);
        }
        assert_eq!(ends[&2].status, ACADEMY_OK, "{:?}", ends[&2]);
        let response = json(ends[&2].json.as_ref().unwrap());
        assert_eq!(response["body"]["kind"], "success-response");
        assert_eq!(ends[&1].status, ACADEMY_ERR_REMOTE, "{:?}", ends[&1]);
        assert!(ends[&1].error.as_ref().unwrap().contains("ActionCancelled"));
        // The program's late reply finds the request cancelled.
        expect_err(reply_ok(request.reply, "1"), ACADEMY_ERR_CLOSED);
        // Serving ends on stop with one ENDED event; a request still
        // unanswered then is cancelled for its caller.
        action_async(&user, &agent_id, "slow", "[]", 10.0, &q, 3).unwrap();
        let pending = agent_q.poll(10.0).unwrap();
        stop(&agent).unwrap();
        let e = agent_q.poll(10.0).unwrap();
        assert_eq!(
            (e.kind, e.token, e.status),
            (academy_event_kind::ACADEMY_EVENT_ENDED, 5, ACADEMY_OK)
        );
        let e = q.poll(10.0).unwrap();
        assert_eq!((e.token, e.status), (3, ACADEMY_ERR_REMOTE), "{e:?}");
        expect_err(reply_ok(pending.reply, "1"), ACADEMY_ERR_CLOSED);
        expect_err(stop(&agent), ACADEMY_ERR_INVALID_ARGUMENT);
        // It may serve again; a close ends it with CLOSED.
        serve_queue(&agent, &agent_q, 6).unwrap();
        agent.close().unwrap();
        let e = agent_q.poll(10.0).unwrap();
        assert_eq!(
            (e.kind, e.token, e.status),
            (
                academy_event_kind::ACADEMY_EVENT_ENDED,
                6,
                ACADEMY_ERR_CLOSED
            ),
            "{e:?}"
        );
        user.close().unwrap();
    }
}

#[test]
fn a_queue_freed_while_clients_use_it_drops_their_events_safely() {
    let url = shared_embedded_exchange();
    let factory = Factory::new(&url, None).unwrap();
    let (user, agent, agent_id) = user_and_agent(&factory);
    // Calls in flight to a queue that is freed: they end unseen.
    let (_, silent, silent_id) = user_and_agent(&factory);
    let q = Queue::new();
    for token in 0..100 {
        action_async(&user, &silent_id, "add", "[]", 0.3, &q, token).unwrap();
    }
    drop(q);
    // A serving whose queue is freed: action requests are answered with
    // ActionCancelledError, at once rather than at the caller's timeout.
    let agent_q = Queue::new();
    serve_queue(&agent, &agent_q, 1).unwrap();
    drop(agent_q);
    let start = Instant::now();
    let f = user
        .action(&agent_id, "add", Some("[1, 2]"), None, 20.0)
        .unwrap_err();
    assert_eq!(f.status, ACADEMY_ERR_REMOTE, "{}", f.message);
    assert!(f.message.contains("ActionCancelled"), "{}", f.message);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        user.ping(&agent_id, 10.0).is_ok(),
        "pings are still answered"
    );
    std::thread::sleep(Duration::from_millis(500)); // the silent calls time out
    stop(&agent).unwrap();
    // A queue freed with events still in it frees them (valgrind-clean in
    // the C example); a REQUEST among them is answered as cancelled.
    let q = Queue::new();
    // Serving ends soon after the stop (its ENDED event went nowhere).
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(f) = serve_queue(&agent, &q, 2) {
        assert_eq!(f.status, ACADEMY_ERR_INVALID_ARGUMENT, "{}", f.message);
        assert!(
            Instant::now() < deadline,
            "serving did not end after the stop"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let q2 = Queue::new();
    action_async(&user, &agent_id, "add", "[1]", 20.0, &q2, 1).unwrap();
    let mut p = libc::pollfd {
        fd: q.fd().unwrap(),
        events: libc::POLLIN,
        revents: 0,
    };
    assert_eq!(
        unsafe { libc::poll(&mut p, 1, 10_000) },
        1,
        "the request came"
    );
    drop(q); // the REQUEST event is still in it
    let e = q2.poll(10.0).unwrap();
    assert_eq!((e.token, e.status), (1, ACADEMY_ERR_REMOTE), "{e:?}");
    for c in [user, agent, silent] {
        c.close().unwrap();
    }
}

#[test]
fn several_threads_poll_one_queue_that_many_clients_share() {
    for (name, url) in exchanges() {
        eprintln!("-- against the {name} exchange");
        let factory = Factory::new(&url, None).unwrap();
        let (first, agent, agent_id) = user_and_agent(&factory);
        let users = [
            first,
            factory.user(None).unwrap(),
            factory.user(None).unwrap(),
        ];
        let agent_q = Queue::new();
        serve_queue(&agent, &agent_q, 0).unwrap();
        let per_user = if name == "python" { 100 } else { 500 };
        let q = Queue::new();
        let results = std::thread::scope(|s| {
            // The agent: one thread answering from its queue.
            let served = s.spawn(|| {
                let mut n = 0;
                while let Ok(e) = agent_q.poll(3.0) {
                    reply_ok(e.reply, &sum_of(e.args.as_ref().unwrap())).unwrap();
                    n += 1;
                }
                n
            });
            let pollers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut got = Vec::new();
                        while let Ok(e) = q.poll(3.0) {
                            assert_eq!(e.status, ACADEMY_OK, "{e:?}");
                            got.push((e.token, e.json.unwrap()));
                        }
                        got
                    })
                })
                .collect();
            for (u, user) in users.iter().enumerate() {
                for i in 0..per_user {
                    let token = (u * per_user + i) as u64;
                    let args = format!("[{token}]");
                    action_async(user, &agent_id, "add", &args, 30.0, &q, token).unwrap();
                }
            }
            let got: Vec<_> = pollers
                .into_iter()
                .flat_map(|p| p.join().unwrap())
                .collect();
            (got, served.join().unwrap())
        });
        let (got, served) = results;
        assert_eq!(served, 3 * per_user);
        let mut tokens: Vec<u64> = got.iter().map(|(t, _)| *t).collect();
        tokens.sort_unstable();
        assert_eq!(tokens, (0..(3 * per_user) as u64).collect::<Vec<_>>());
        for (token, result) in got {
            assert_eq!(result.parse::<f64>().unwrap(), token as f64);
        }
        stop(&agent).unwrap();
        for c in users.iter().chain([&agent]) {
            c.close().unwrap();
        }
    }
}

#[test]
fn ten_thousand_pending_calls_from_one_thread_each_end_once() {
    let url = shared_embedded_exchange();
    let factory = Factory::new(&url, None).unwrap();
    let (user, agent, agent_id) = user_and_agent(&factory);
    let q = Queue::new();
    let n = 10_000u64;
    for token in 0..n {
        action_async(&user, &agent_id, "add", "[1, 2]", 3.0, &q, token).unwrap();
    }
    let mut seen = HashSet::new();
    while seen.len() < n as usize {
        let e = q.poll(20.0).unwrap();
        assert_eq!(e.status, ACADEMY_ERR_TIMEOUT, "{e:?}");
        assert!(seen.insert(e.token), "token {} twice", e.token);
    }
    q.assert_quiet(0.5);
    agent.close().unwrap();
    user.close().unwrap();
}

/// In a child of fork(), the parent's queue answers CLOSED and is never
/// touched; a queue made in the child works.
#[test]
fn queues_made_before_fork_answer_closed_in_the_child() {
    let url = shared_embedded_exchange();
    let factory = Factory::new(&url, None).unwrap();
    let (user, agent, agent_id) = user_and_agent(&factory);
    let q = Queue::new();
    action_async(&user, &agent_id, "add", "[]", 60.0, &q, 1).unwrap();
    let id = c(&agent_id);
    let add = c("add");
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // The child: exit code says which check failed.
        let code = unsafe {
            let mut e = ptr::null_mut();
            let mut fd = 0;
            let mut mine = ptr::null_mut();
            if academy_queue_poll(q.0, 0.0, &mut e) != ACADEMY_ERR_CLOSED {
                1
            } else if academy_queue_fd(q.0, &mut fd) != ACADEMY_ERR_CLOSED {
                2
            } else if academy_client_action_async(
                user.0,
                id.as_ptr(),
                add.as_ptr(),
                ptr::null(),
                ptr::null(),
                1.0,
                q.0,
                2,
            ) != ACADEMY_ERR_CLOSED
            {
                3
            } else if academy_queue_new(&mut mine) != ACADEMY_OK
                || academy_queue_poll(mine, 0.05, &mut e) != ACADEMY_ERR_TIMEOUT
                || academy_queue_fd(mine, &mut fd) != ACADEMY_OK
            {
                4
            } else {
                academy_queue_free(q.0); // forgotten, not touched
                academy_queue_free(mine);
                0
            }
        };
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "the child crashed: {status}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "check {} failed in the child",
        libc::WEXITSTATUS(status)
    );
    // The parent's queue and call are untouched by the child.
    user.close().unwrap();
    let e = q.poll(10.0).unwrap();
    assert_eq!((e.token, e.status), (1, ACADEMY_ERR_CLOSED), "{e:?}");
    agent.close().unwrap();
}

/// A real event loop drives the library: Python's asyncio, through ctypes
/// only (`loop.add_reader` on the queue's fd), keeps 10,000 actions in
/// flight and serves the agent they call, on one thread.
#[test]
fn python_asyncio_through_ctypes_keeps_ten_thousand_actions_in_flight() {
    let lib = repo().join("target/release/libacademy.so");
    let out = Command::new(python())
        .arg(repo().join("tests/py/ctypes_asyncio.py"))
        .arg(&lib)
        .arg("10000")
        .output()
        .expect("run tests/py/ctypes_asyncio.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("10000 actions, 10000 in flight at the peak, 10000 correct, 10000 served on one thread\n"),
        "{stdout}"
    );
    assert!(stdout.contains("serving ended: 0\n"), "{stdout}");
}

/// A queue-served reply returns at once; when its send then fails (a
/// result too large for the exchange), the caller is answered with an
/// error that says so, rather than waiting out its timeout.
#[test]
fn a_queue_served_reply_that_cannot_be_sent_answers_its_caller_with_an_error() {
    for (name, url) in exchanges() {
        eprintln!("-- against the {name} exchange");
        let factory = Factory::new(&url, None).unwrap();
        let (user, agent, agent_id) = user_and_agent(&factory);
        let q = Queue::new();
        serve_queue(&agent, &q, 0).unwrap();
        let calling = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let outcome = user.action(&agent_id, "big", None, None, 20.0);
            (outcome, start.elapsed(), user)
        });
        let e = q.poll(30.0).unwrap();
        assert_eq!(e.kind, academy_event_kind::ACADEMY_EVENT_REQUEST, "{e:?}");
        let big = format!("\"{}\"", "x".repeat(2 << 20));
        reply_ok(e.reply, &big).unwrap();
        let (outcome, waited, user) = calling.join().unwrap();
        let message = expect_err(outcome, ACADEMY_ERR_REMOTE);
        assert!(message.contains("could not be sent"), "{name}: {message}");
        assert!(
            waited < std::time::Duration::from_secs(10),
            "{name}: waited {waited:?}"
        );
        stop(&agent).unwrap();
        agent.close().unwrap();
        user.close().unwrap();
    }
}
