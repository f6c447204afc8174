//! Issue 16: the lifecycle does what the header says, against academy-py's
//! exchange and ours, through the C API.
//!
//! - A reply whose completion failed (a result too large for the exchange)
//!   stays open: the handler completes it with an error and the caller
//!   gets that error at once; a Rust handler that drops its reply
//!   unanswered answers its caller with an error.
//! - Answers that come after their call timed out are dropped (and
//!   counted), never received.
//! - Closing a serving agent client answers the requests in progress with
//!   ActionCancelledError before the client ends; serving returns CLOSED.
//! - A terminated mailbox's queued requests never reach a handler or
//!   recv, and serving returns MAILBOX_TERMINATED promptly.

mod common;

use std::ffi::{c_char, c_void};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use academy::ffi::academy_status::{self, *};
use academy::ffi::reply::*;
use academy::ffi::serve::*;
use common::*;

/// Serves a C agent with `handler` on a thread; returns its agent id, the
/// thread (which yields what academy_agent_serve returned) and its client.
fn serve_c_agent(
    factory: &Factory,
    registrar: &Client,
    handler: academy_action_fn,
) -> (String, std::thread::JoinHandle<academy_status>, Arc<Client>) {
    let reg = registrar.register_agent("lifecycle.Agent", None).unwrap();
    let agent = Arc::new(factory.agent(&reg).unwrap());
    let serving = agent.clone();
    let thread =
        std::thread::spawn(move || unsafe { academy_agent_serve(serving.0, handler, null_mut()) });
    (agent_id_of(&reg), thread, agent)
}

/// Stops a served agent and checks that serving returned OK.
fn stop(agent: &Client, thread: std::thread::JoinHandle<academy_status>) {
    assert_eq!(unsafe { academy_agent_stop(agent.0) }, ACADEMY_OK);
    assert_eq!(thread.join().unwrap(), ACADEMY_OK);
}

/// Waits until `done`, failing the test after `limit`.
fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- finding 6: a failed reply stays open ----

/// What `too_large` saw: the status of its reply_ok, then of reply_error.
static TOO_LARGE: Mutex<Vec<(academy_status, String)>> = Mutex::new(Vec::new());

/// Answers with a 2 MiB result (larger than either exchange takes), then,
/// when that fails, with an error.
unsafe extern "C" fn too_large(
    _: *mut c_void,
    _: *const c_char,
    _: *const c_char,
    _: *const c_char,
    reply: *mut academy_reply,
) {
    let big = c(&format!("\"{}\"", "x".repeat(2 << 20)));
    let first = academy_reply_ok(reply, big.as_ptr());
    let first_error = last_error();
    let why = c"the result was too large to send";
    let second = academy_reply_error(reply, why.as_ptr());
    let mut seen = TOO_LARGE.lock().unwrap();
    seen.push((first, first_error));
    seen.push((second, last_error()));
    // Completed now: a third completion is refused.
    seen.push((academy_reply_error(reply, why.as_ptr()), last_error()));
}

#[test]
fn a_reply_whose_send_failed_can_still_be_completed_with_an_error() {
    for (name, url) in exchanges() {
        eprintln!("-- {name}");
        TOO_LARGE.lock().unwrap().clear();
        let factory = Factory::new(&url, None).unwrap();
        let user = factory.user(None).unwrap();
        let (agent_id, thread, agent) = serve_c_agent(&factory, &user, Some(too_large));
        let start = Instant::now();
        let message = expect_err(
            user.action(&agent_id, "big", None, None, 20.0),
            ACADEMY_ERR_REMOTE,
        );
        assert!(
            message.contains("the result was too large to send"),
            "{message}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the caller waited {:?}",
            start.elapsed()
        );
        wait_until("the handler is done", Duration::from_secs(10), || {
            TOO_LARGE.lock().unwrap().len() == 3
        });
        let seen = TOO_LARGE.lock().unwrap().clone();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(seen[0].0, ACADEMY_ERR_MESSAGE_TOO_LARGE, "{}", seen[0].1);
        assert_eq!(seen[1].0, ACADEMY_OK, "{}", seen[1].1);
        assert_eq!(seen[2].0, ACADEMY_ERR_CLOSED, "{}", seen[2].1);
        stop(&agent, thread);
    }
}

#[test]
fn a_rust_reply_dropped_unanswered_answers_its_caller_with_an_error() {
    use academy::client::serve::serve;
    use academy::client::Factory as RustFactory;
    use academy::runtime::block_on;
    for (name, url) in exchanges() {
        eprintln!("-- {name}");
        let factory = RustFactory::new(&url, Default::default()).unwrap();
        let user = block_on(factory.create_user_client(None)).unwrap().unwrap();
        let reg = block_on(user.register_agent("lifecycle.Dropper", None))
            .unwrap()
            .unwrap();
        let agent = block_on(factory.create_agent_client(&reg))
            .unwrap()
            .unwrap();
        let serving = agent.clone();
        let thread = std::thread::spawn(move || serve(&serving, |_call, reply| drop(reply)));
        let id = academy::client::parse_registration(&reg, "http").unwrap();
        let start = Instant::now();
        let outcome = block_on(user.action(
            id,
            "anything",
            &serde_json::json!([]),
            &serde_json::json!({}),
            Some(Duration::from_secs(20)),
        ))
        .unwrap();
        let err = outcome.unwrap_err();
        assert_eq!(
            err.status,
            academy::error::Status::Remote,
            "{}",
            err.message
        );
        assert!(err.message.contains("without answering"), "{}", err.message);
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(agent.stop_serving().unwrap());
        thread.join().unwrap().unwrap();
        block_on(agent.close()).unwrap().unwrap();
        block_on(user.close()).unwrap().unwrap();
    }
}

// ---- finding 7: late answers never reach recv ----

/// Answers after 1.5 s, from another thread.
unsafe extern "C" fn answers_late(
    _: *mut c_void,
    _: *const c_char,
    _: *const c_char,
    _: *const c_char,
    reply: *mut academy_reply,
) {
    let reply = reply as usize;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        academy_reply_ok(reply as *mut academy_reply, c"\"late\"".as_ptr());
    });
}

#[test]
fn late_answers_to_timed_out_calls_never_reach_recv() {
    for (name, url) in exchanges() {
        eprintln!("-- {name}");
        let factory = Factory::new(&url, None).unwrap();
        let user = factory.user(None).unwrap();
        let (agent_id, thread, agent) = serve_c_agent(&factory, &user, Some(answers_late));
        expect_err(
            user.action(&agent_id, "slow", None, None, 0.5),
            ACADEMY_ERR_TIMEOUT,
        );
        // The answer comes about 1 s later; it is dropped, not received.
        let got = user.recv(3.0);
        expect_err(got, ACADEMY_ERR_TIMEOUT);
        late_answers_are_counted(&url, &agent_id);
        stop(&agent, thread);
    }
}

// ---- finding 2: closing a serving agent client ----

/// Replies `holds_its_reply` keeps without completing.
static HELD: Mutex<Vec<usize>> = Mutex::new(Vec::new());

unsafe extern "C" fn holds_its_reply(
    _: *mut c_void,
    _: *const c_char,
    _: *const c_char,
    _: *const c_char,
    reply: *mut academy_reply,
) {
    HELD.lock().unwrap().push(reply as usize);
}

#[test]
fn closing_a_serving_client_cancels_its_requests_and_serve_returns_closed() {
    for (name, url) in exchanges() {
        eprintln!("-- {name}");
        HELD.lock().unwrap().clear();
        let factory = Factory::new(&url, None).unwrap();
        let user = Arc::new(factory.user(None).unwrap());
        let (agent_id, thread, agent) = serve_c_agent(&factory, &user, Some(holds_its_reply));
        let calling = user.clone();
        let caller = std::thread::spawn(move || {
            let start = Instant::now();
            let outcome = calling.action(&agent_id, "hold", None, None, 30.0);
            (outcome, start.elapsed())
        });
        wait_until(
            "the handler holds its reply",
            Duration::from_secs(10),
            || !HELD.lock().unwrap().is_empty(),
        );
        let closed_at = Instant::now();
        agent.close().unwrap();
        assert_eq!(thread.join().unwrap(), ACADEMY_ERR_CLOSED);
        let (outcome, _) = caller.join().unwrap();
        let message = expect_err(outcome, ACADEMY_ERR_REMOTE);
        assert!(message.contains("ActionCancelledError"), "{message}");
        assert!(
            closed_at.elapsed() < Duration::from_secs(5),
            "the caller waited {:?} after the close",
            closed_at.elapsed()
        );
        // The held reply was answered: the handler can see so, and
        // completing it now is refused.
        let held = HELD.lock().unwrap().pop().unwrap() as *mut academy_reply;
        let mut cancelled = false;
        assert_eq!(
            unsafe { academy_reply_cancelled(held, &mut cancelled) },
            ACADEMY_OK
        );
        assert!(cancelled, "{name}: the reply does not say it was cancelled");
        assert_eq!(
            unsafe { academy_reply_ok(held, c"1".as_ptr()) },
            ACADEMY_ERR_CLOSED
        );
    }
}

// ---- finding 1: a terminated mailbox's queued requests never run ----

static STARTED: AtomicUsize = AtomicUsize::new(0);

/// Counts its calls, then answers after 1.5 s.
unsafe extern "C" fn slow_and_counted(
    _: *mut c_void,
    _: *const c_char,
    _: *const c_char,
    _: *const c_char,
    reply: *mut academy_reply,
) {
    STARTED.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1500));
    academy_reply_ok(reply, c"1".as_ptr());
}

#[test]
fn a_terminated_mailbox_runs_none_of_its_queued_requests() {
    for (name, url) in exchanges() {
        eprintln!("-- {name}");
        STARTED.store(0, Ordering::SeqCst);
        let factory = Factory::new(&url, Some(r#"{"max_concurrency": 2}"#)).unwrap();
        let user = Arc::new(factory.user(None).unwrap());
        let (agent_id, thread, _agent) = serve_c_agent(&factory, &user, Some(slow_and_counted));
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (user, agent_id) = (user.clone(), agent_id.clone());
                std::thread::spawn(move || user.action(&agent_id, "slow", None, None, 30.0))
            })
            .collect();
        wait_until("two handlers run", Duration::from_secs(10), || {
            STARTED.load(Ordering::SeqCst) == 2
        });
        // Let the other requests reach the agent's client.
        std::thread::sleep(Duration::from_millis(300));
        let terminated_at = Instant::now();
        user.terminate(&agent_id).unwrap();
        assert_eq!(thread.join().unwrap(), ACADEMY_ERR_MAILBOX_TERMINATED);
        assert!(
            terminated_at.elapsed() < Duration::from_secs(4),
            "serving returned {:?} after the terminate",
            terminated_at.elapsed()
        );
        for caller in callers {
            assert!(caller.join().unwrap().is_err(), "a caller got an answer");
        }
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(STARTED.load(Ordering::SeqCst), 2, "queued requests ran");

        // A client that does not serve: recv says MAILBOX_TERMINATED, and
        // never hands out the requests queued before.
        let reg = user.register_agent("lifecycle.Idle", None).unwrap();
        let idle = factory.agent(&reg).unwrap();
        let idle_id = agent_id_of(&reg);
        let request = r#"{"kind": "action-request", "action": "x", "serialization": "json", "pargs": "[]", "kargs": "{}"}"#;
        for _ in 0..3 {
            user.send(&message(&user.id(), &idle_id, request)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(500));
        user.terminate(&idle_id).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let got = idle.recv(5.0);
        expect_err(got, ACADEMY_ERR_MAILBOX_TERMINATED);
    }
}

/// The same late answer, seen from a Rust client: dropped and counted.
fn late_answers_are_counted(url: &str, agent_id: &str) {
    use academy::client::Factory as RustFactory;
    use academy::runtime::block_on;
    use academy::wire::ids::EntityId;
    let factory = RustFactory::new(url, Default::default()).unwrap();
    let user = block_on(factory.create_user_client(None)).unwrap().unwrap();
    let agent = EntityId::from_value(&serde_json::from_str(agent_id).unwrap()).unwrap();
    let timed_out = block_on(user.action(
        agent,
        "slow",
        &serde_json::json!([]),
        &serde_json::json!({}),
        Some(Duration::from_millis(500)),
    ))
    .unwrap()
    .unwrap_err();
    assert_eq!(timed_out.status, academy::error::Status::Timeout);
    let got = block_on(user.recv(Some(Duration::from_secs(3)))).unwrap();
    assert_eq!(got.unwrap_err().status, academy::error::Status::Timeout);
    assert_eq!(user.late_answers(), 1);
    block_on(user.close()).unwrap().unwrap();
}

// ---- what the header and README promise about sizes and repeats ----

/// The size academy-py gives the message of an action `f` called with one
/// string argument, by a handle (so with a label) that asks for results as
/// pickle and exceptions as JSON, as ours does: `len(model_serialize())`,
/// which its exchanges compare with the limit.
fn python_message_size(arg: &str) -> usize {
    let script = r#"
import sys, uuid
from academy.message import ActionRequest, Message
from academy.identifier import AgentId, UserId
arg = sys.stdin.read()
m = Message.create(src=UserId.new(), dest=AgentId.new(), label=uuid.uuid4(),
                   body=ActionRequest(action='f', serialization='json', result_serialization='pickle',
                                     exception_serialization='json', pargs=(arg,), kargs={}))
print(len(m.model_serialize()))
"#;
    let mut child = std::process::Command::new(python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(arg.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Our message for the same call, as our client sends it.
fn our_message_size(arg: &str) -> usize {
    use academy::wire::ids::EntityId;
    use academy::wire::message::{action_request_body, Message};
    let body = action_request_body(
        "f",
        &serde_json::json!([arg]),
        &serde_json::json!({}),
        academy::wire::payload::RequestSerialization::Auto,
    )
    .unwrap();
    let label = Some(uuid::Uuid::new_v4());
    Message::create(
        EntityId::new_user(None),
        EntityId::new_agent(None),
        body,
        label,
    )
    .unwrap()
    .to_json()
    .len()
}

/// The header's numbers: an action message of one string argument is the
/// argument's escaped size plus 496 bytes; non-ASCII characters are
/// `\u`-escaped twice (é 7 bytes, an emoji 14), as academy-py escapes them;
/// the largest argument that fits the 512 KiB limit is accepted by both
/// exchanges and one byte more is refused.
#[test]
fn message_sizes_count_escaping_as_academy_py_does() {
    for (arg, per_char) in [
        ("a", 1),
        ("\u{e9}", 7),
        ("\u{1F600}", 14),
        ("\"", 4),
        ("\\", 4),
    ] {
        let ten = arg.repeat(10);
        assert_eq!(our_message_size(&ten), python_message_size(&ten), "{arg:?}");
        assert_eq!(
            our_message_size(&arg.repeat(11)) - our_message_size(&ten),
            per_char,
            "{arg:?}"
        );
    }
    assert_eq!(our_message_size(""), 496);
    const LIMIT: usize = 512 * 1024;
    for (name, url) in exchanges() {
        let factory = Factory::new(&url, None).unwrap();
        let user = factory.user(None).unwrap();
        let reg = user.register_agent("lifecycle.Sized", None).unwrap();
        let agent_id = agent_id_of(&reg);
        let call = |arg: &str| {
            let args = serde_json::json!([arg]).to_string();
            user.action(&agent_id, "f", Some(&args), None, 0.2)
        };
        // Nobody serves the agent: a message accepted times out.
        let fits = "x".repeat(LIMIT - 496);
        expect_err(call(&fits), ACADEMY_ERR_TIMEOUT);
        let message = expect_err(call(&format!("{fits}x")), ACADEMY_ERR_MESSAGE_TOO_LARGE);
        assert!(!message.is_empty(), "{name}");
        let emoji = "\u{1F600}".repeat((LIMIT - 496) / 14);
        expect_err(call(&emoji), ACADEMY_ERR_TIMEOUT);
        expect_err(
            call(&format!("{emoji}\u{1F600}")),
            ACADEMY_ERR_MESSAGE_TOO_LARGE,
        );
        user.terminate(&agent_id).unwrap();
    }
}

/// Receivers drop a repeated tag: the same message JSON sent twice is
/// received once, also from academy-py's exchange, which queues it twice.
#[test]
fn the_same_message_sent_twice_is_received_once() {
    for (name, url) in exchanges() {
        let factory = Factory::new(&url, None).unwrap();
        let user = factory.user(None).unwrap();
        let reg = user.register_agent("lifecycle.Twice", None).unwrap();
        let agent = factory.agent(&reg).unwrap();
        let m = message(
            &user.id(),
            &agent_id_of(&reg),
            r#"{"kind": "ping-request"}"#,
        );
        user.send(&m).unwrap();
        user.send(&m).unwrap();
        let got = agent.recv(5.0).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&got).unwrap()["header"]["tag"],
            serde_json::from_str::<serde_json::Value>(&m).unwrap()["header"]["tag"],
            "{name}"
        );
        expect_err(agent.recv(1.0), ACADEMY_ERR_TIMEOUT);
        agent.close().unwrap();
    }
}

// ---- a terminate answers a call once ----

/// What `slow_then_late` saw: whether its reply said it was cancelled
/// before the handler gave up waiting, and the status of its answer.
static LATE: Mutex<Vec<(bool, academy_status)>> = Mutex::new(Vec::new());

/// Works until its reply says the request was answered without it (at
/// most 10 s), then tries to answer (refused: the exchange answered).
unsafe extern "C" fn slow_then_late(
    _: *mut c_void,
    _: *const c_char,
    _: *const c_char,
    _: *const c_char,
    reply: *mut academy_reply,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut cancelled = false;
    while !cancelled && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(academy_reply_cancelled(reply, &mut cancelled), ACADEMY_OK);
    }
    let answered = academy_reply_ok(reply, c"1".as_ptr());
    LATE.lock().unwrap().push((cancelled, answered));
}

/// An HTTP exchange's terminate answers the calls in progress itself
/// (academy-py raises AgentTerminatedError); the serving agent then sends no ActionCancelled
/// of its own. A second answer to one call made academy-py's Handle raise
/// a KeyError that ended its client's listener: the Python user's next
/// call hung.
#[test]
fn a_terminate_answers_a_python_callers_call_once() {
    for (name, url) in exchanges() {
        eprintln!("-- {name}");
        let factory = Factory::new(&url, None).unwrap();
        let user = Arc::new(factory.user(None).unwrap());
        let (slow_id, slow_thread, _slow) = serve_c_agent(&factory, &user, Some(slow_then_late));
        let (calc_id, calc_thread, calc) = serve_c_agent(&factory, &user, Some(calculator));
        let mut py = PyPeer::start("terminated_caller.py", &[&url, &slow_id, &calc_id]);
        assert_eq!(py.line(), "calling");
        user.terminate(&slow_id).unwrap();
        assert_eq!(slow_thread.join().unwrap(), ACADEMY_ERR_MAILBOX_TERMINATED);
        assert_eq!(py.line(), "slow AgentTerminatedError", "{name}");
        assert_eq!(py.line(), "other 5.0", "{name}");
        assert!(py.wait(Duration::from_secs(30)));
        // The running handler saw its call cancelled, and its answer was
        // refused.
        wait_until("the handler gives up", Duration::from_secs(15), || {
            !LATE.lock().unwrap().is_empty()
        });
        assert_eq!(
            LATE.lock().unwrap().pop(),
            Some((true, ACADEMY_ERR_CLOSED)),
            "{name}"
        );
        stop(&calc, calc_thread);
    }
}
