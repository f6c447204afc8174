//! Calls that race with academy_client_close(), academy_agent_stop() and
//! the frees, through the C API, against academy-py's exchange and ours:
//! every request a served agent holds gets exactly one answer (the reply,
//! or ActionCancelledError), and a reply whose completion returned OK
//! reaches its caller, however the completion and the end of serving
//! interleave.

mod common;

use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::ptr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use academy::ffi::academy_status::{self, *};
use academy::ffi::client::*;
use academy::ffi::queue::*;
use academy::ffi::reply::*;
use academy::ffi::serve::*;
use common::*;

struct Queue(*mut academy_queue);
unsafe impl Send for Queue {}
unsafe impl Sync for Queue {}

/// An event's fields that these tests read.
#[derive(Debug)]
struct Ev {
    kind: academy_event_kind,
    token: u64,
    status: academy_status,
    json: Option<String>,
    error: Option<String>,
    args: Option<String>,
    reply: usize,
}

fn opt(p: *const c_char) -> Option<String> {
    (!p.is_null()).then(|| {
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned()
    })
}

impl Queue {
    fn new() -> Queue {
        let mut q = ptr::null_mut();
        check(unsafe { academy_queue_new(&mut q) }).unwrap();
        Queue(q)
    }

    fn poll(&self, timeout_s: f64) -> R<Ev> {
        let mut e = ptr::null_mut();
        check(unsafe { academy_queue_poll(self.0, timeout_s, &mut e) })?;
        let ev = unsafe {
            let e = &*e;
            Ev {
                kind: e.kind,
                token: e.token,
                status: e.status,
                json: opt(e.json),
                error: opt(e.error),
                args: opt(e.args_json),
                reply: e.reply as usize,
            }
        };
        unsafe { academy_event_free(e) };
        Ok(ev)
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        unsafe { academy_queue_free(self.0) }
    }
}

fn reply_ok(reply: usize, result: &str) -> academy_status {
    let result = c(result);
    unsafe { academy_reply_ok(reply as *mut academy_reply, result.as_ptr()) }
}

/// How the end of serving comes while replies are being completed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    /// academy_client_close() of the agent's client.
    Close,
    /// academy_agent_stop(), then academy_client_close() as soon as
    /// serving has ended (as a program closes on ACADEMY_EVENT_ENDED).
    StopThenClose,
}

/// How many requests the agent holds when replies start.
const HELD: u64 = 400;
/// Threads completing replies, each one every millisecond.
const REPLIERS: usize = 4;
/// When serving is ended after the replies started.
const END_AFTER: Duration = Duration::from_millis(30);
/// The callers' timeout: far longer than anything here should take, so
/// that a lost answer shows as TIMEOUT.
const CALL_TIMEOUT_S: f64 = 20.0;

/// Completes `replies` (reply, token) from [`REPLIERS`] threads, one every
/// millisecond per thread, while `end` ends serving after [`END_AFTER`];
/// returns what each completion returned, by token.
fn complete_while_ending(
    replies: Vec<(usize, u64)>,
    end: impl FnOnce() + Send + 'static,
) -> HashMap<u64, academy_status> {
    let (tx, rx) = mpsc::channel();
    let mut shares: Vec<Vec<(usize, u64)>> = vec![Vec::new(); REPLIERS];
    for (i, r) in replies.into_iter().enumerate() {
        shares[i % REPLIERS].push(r);
    }
    let threads: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for (reply, token) in share {
                    let status = reply_ok(reply, &(token + 1).to_string());
                    tx.send((token, status)).unwrap();
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();
    drop(tx);
    let ender = std::thread::spawn(move || {
        std::thread::sleep(END_AFTER);
        end();
    });
    for t in threads {
        t.join().unwrap();
    }
    ender.join().unwrap();
    rx.iter().collect()
}

/// Checks the callers' outcomes against the completions: a completion
/// that returned OK reached its caller with its result; one that returned
/// CLOSED found the request cancelled, and its caller got
/// ActionCancelledError. Every call ends once, none by timeout.
fn check_outcomes(name: &str, completed: &HashMap<u64, academy_status>, calls: &Queue) {
    let mut ended = HashMap::new();
    while ended.len() < completed.len() {
        let e = calls.poll(CALL_TIMEOUT_S + 10.0).unwrap();
        assert_eq!(e.kind, academy_event_kind::ACADEMY_EVENT_CALL, "{e:?}");
        assert!(ended.insert(e.token, e).is_none(), "a call ended twice");
    }
    let (mut sent, mut cancelled, mut wrong) = (0, 0, Vec::new());
    for (token, status) in completed {
        let e = &ended[token];
        match status {
            ACADEMY_OK if e.status == ACADEMY_OK => {
                assert_eq!(e.json.as_deref(), Some((token + 1).to_string().as_str()));
                sent += 1;
            }
            ACADEMY_ERR_CLOSED
                if e.status == ACADEMY_ERR_REMOTE
                    && e.error.as_deref().unwrap_or("").contains("ActionCancelled") =>
            {
                cancelled += 1
            }
            _ => wrong.push(format!(
                "token {token}: completion {status:?}, caller {:?} {:?}",
                e.status, e.error
            )),
        }
    }
    eprintln!("{name}: {sent} replies reached their callers, {cancelled} cancelled");
    assert!(
        wrong.is_empty(),
        "{name}: {} of {} callers did not get what the completion said:\n{}",
        wrong.len(),
        completed.len(),
        wrong[..wrong.len().min(10)].join("\n")
    );
    assert!(sent > 0 && cancelled > 0, "{name}: the race was not run");
}

/// A user with [`HELD`] calls to a queue-served agent, each held as a
/// REQUEST event: the agent's client, its queue, the callers' queue, and
/// (reply, token) of each request.
fn held_requests(factory: &Factory) -> (Client, Arc<Client>, Queue, Queue, Vec<(usize, u64)>) {
    let user = factory.user(None).unwrap();
    let reg = user.register_agent("races.Adder", None).unwrap();
    let agent = Arc::new(factory.agent(&reg).unwrap());
    let agent_id = c(&agent_id_of(&reg));
    let agent_q = Queue::new();
    check(unsafe { academy_agent_serve_queue(agent.0, agent_q.0, 0) }).unwrap();
    let calls = Queue::new();
    let add = c("add");
    for token in 0..HELD {
        let args = c(&format!("[{token}, 1]"));
        check(unsafe {
            academy_client_action_async(
                user.0,
                agent_id.as_ptr(),
                add.as_ptr(),
                args.as_ptr(),
                ptr::null(),
                CALL_TIMEOUT_S,
                calls.0,
                token,
            )
        })
        .unwrap();
    }
    let mut replies = Vec::new();
    while replies.len() < HELD as usize {
        let e = agent_q.poll(30.0).unwrap();
        assert_eq!(e.kind, academy_event_kind::ACADEMY_EVENT_REQUEST, "{e:?}");
        let args: Vec<u64> = serde_json::from_str(e.args.as_deref().unwrap()).unwrap();
        replies.push((e.reply, args[0]));
    }
    (user, agent, agent_q, calls, replies)
}

fn queue_served_replies_race(ending: Ending) {
    for (name, url) in exchanges() {
        let name = format!("{name} exchange, {ending:?}");
        let factory = Factory::new(&url, None).unwrap();
        let (user, agent, agent_q, calls, replies) = held_requests(&factory);
        let agent_q = Arc::new(agent_q);
        let (ending_agent, ending_q) = (agent.clone(), agent_q.clone());
        let completed = complete_while_ending(replies, move || match ending {
            Ending::Close => ending_agent.close().unwrap(),
            Ending::StopThenClose => {
                check(unsafe { academy_agent_stop(ending_agent.0) }).unwrap();
                let e = ending_q.poll(30.0).unwrap();
                assert_eq!(e.kind, academy_event_kind::ACADEMY_EVENT_ENDED, "{e:?}");
                ending_agent.close().unwrap();
            }
        });
        check_outcomes(&name, &completed, &calls);
        user.close().unwrap();
    }
}

#[test]
fn a_queue_served_reply_completed_while_the_client_closes_reaches_its_caller_or_is_cancelled() {
    queue_served_replies_race(Ending::Close);
}

#[test]
fn a_queue_served_reply_completed_while_serving_stops_reaches_its_caller_or_is_cancelled() {
    queue_served_replies_race(Ending::StopThenClose);
}

/// Replies the blocking serve's handler keeps, to be completed by other
/// threads.
static KEPT: Mutex<Vec<(usize, u64)>> = Mutex::new(Vec::new());

unsafe extern "C" fn keep(
    _: *mut c_void,
    _action: *const c_char,
    args: *const c_char,
    _kwargs: *const c_char,
    reply: *mut academy_reply,
) {
    let args: Vec<u64> = serde_json::from_str(&text(args)).unwrap();
    KEPT.lock().unwrap().push((reply as usize, args[0]));
}

/// The same race with academy_agent_serve(): handler threads keep their
/// replies, which other threads complete while the client closes.
#[test]
fn a_reply_of_the_blocking_serve_completed_while_the_client_closes_reaches_its_caller_or_is_cancelled(
) {
    // As many as the queue tests hold: the replies, sent in the background,
    // take about as long as theirs, and the close comes while they go on.
    const WORKERS: u64 = HELD;
    for (name, url) in exchanges() {
        let options = format!(r#"{{"max_concurrency": {WORKERS}}}"#);
        let factory = Factory::new(&url, Some(&options)).unwrap();
        let user = factory.user(None).unwrap();
        let reg = user.register_agent("races.Adder", None).unwrap();
        let agent = Arc::new(factory.agent(&reg).unwrap());
        let agent_id = c(&agent_id_of(&reg));
        KEPT.lock().unwrap().clear();
        let serving = agent.clone();
        let served = std::thread::spawn(move || unsafe {
            academy_agent_serve(serving.0, Some(keep), ptr::null_mut())
        });
        let calls = Queue::new();
        let add = c("add");
        for token in 0..WORKERS {
            let args = c(&format!("[{token}, 1]"));
            check(unsafe {
                academy_client_action_async(
                    user.0,
                    agent_id.as_ptr(),
                    add.as_ptr(),
                    args.as_ptr(),
                    ptr::null(),
                    CALL_TIMEOUT_S,
                    calls.0,
                    token,
                )
            })
            .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while KEPT.lock().unwrap().len() < WORKERS as usize {
            assert!(Instant::now() < deadline, "the handlers got every request");
            std::thread::sleep(Duration::from_millis(10));
        }
        let replies = std::mem::take(&mut *KEPT.lock().unwrap());
        let closing = agent.clone();
        let completed = complete_while_ending(replies, move || closing.close().unwrap());
        assert_eq!(served.join().unwrap(), ACADEMY_ERR_CLOSED);
        check_outcomes(
            &format!("{name} exchange, blocking serve"),
            &completed,
            &calls,
        );
        user.close().unwrap();
    }
}
