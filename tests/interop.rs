//! Issue 3: calls and serving across languages, through the real exchanges
//! (academy-py's and ours), with real academy-py peers: C calls a Python
//! agent launched by academy's Manager; a Python user calls a C agent
//! through academy's Handle; cancel, stop, protocol and user-client
//! answers; message helpers validated by academy-py's pydantic models.
//! The same through completion queues: a Python user calls a C agent
//! served from a queue (academy_agent_serve_queue), and C keeps calls to a
//! Python agent in flight from one thread (academy_client_action_async).

mod common;

use std::ptr::null_mut;
use std::sync::Arc;
use std::time::{Duration, Instant};

use academy::ffi::academy_status::{self, *};
use academy::ffi::client::academy_client_action_async;
use academy::ffi::client::academy_mailbox_status::*;
use academy::ffi::messages::*;
use academy::ffi::queue::*;
use academy::ffi::reply::*;
use academy::ffi::serve::*;
use common::*;
use serde_json::{json, Value};

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

// ---- a C agent, written as the extern "C" handler a C program would have ----

/// Serves a C agent on a thread; returns its registration, agent id and
/// the thread (which yields what academy_agent_serve returned).
fn serve_c_agent(
    factory: &Arc<Factory>,
    registrar: &Client,
    class: &str,
) -> (
    String,
    String,
    std::thread::JoinHandle<academy_status>,
    Arc<Client>,
) {
    let reg = registrar
        .register_agent(&format!("{class},cagent.Base"), Some("c-calc"))
        .unwrap();
    let agent = Arc::new(factory.agent(&reg).unwrap());
    let serving = agent.clone();
    let thread = std::thread::spawn(move || unsafe {
        academy_agent_serve(serving.0, Some(calculator), null_mut())
    });
    (reg.clone(), agent_id_of(&reg), thread, agent)
}

fn wait_terminated(client: &Client, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while client.status(id).unwrap() != ACADEMY_MAILBOX_TERMINATED {
        assert!(
            Instant::now() < deadline,
            "the agent's mailbox was not terminated"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn c_calls_a_python_agent_launched_by_academys_manager() {
    for (name, url) in exchanges() {
        eprintln!("-- {name}");
        let mut py = PyPeer::start("interop_agent.py", &[&url]);
        let agent = py.line();
        assert_eq!(parse(&agent)["role"], "agent");
        let factory = Factory::new(&url, None).unwrap();
        let user = Arc::new(factory.user(None).unwrap());

        calls_the_python_calc(&user, &agent, "hé");
        let mut rtts: Vec<f64> = (0..50).map(|_| user.ping(&agent, 30.0).unwrap()).collect();
        assert!(rtts.iter().all(|r| *r > 0.0));
        rtts.sort_by(f64::total_cmp);
        eprintln!(
            "{name}: C -> Python agent ping p50 {:.3} ms",
            rtts[25] * 1e3
        );

        // 100 calls in flight from 4 threads on one client.
        calls_the_python_calc_from_four_threads(&user, &agent, 25);

        user.shutdown_agent(&agent, -1).unwrap();
        assert!(
            py.wait(Duration::from_secs(30)),
            "the Python agent process exits 0 after shutdown"
        );
        wait_terminated(&user, &agent);
        expect_err(user.ping(&agent, 5.0), ACADEMY_ERR_MAILBOX_TERMINATED);
    }
}

#[test]
fn a_python_user_calls_a_c_agent_through_academys_handle() {
    for (name, url) in exchanges() {
        eprintln!("-- {name}");
        let factory = Arc::new(Factory::new(&url, Some(r#"{"max_concurrency": 4}"#)).unwrap());
        let registrar = factory.user(None).unwrap();
        let class = format!("cagent_{}.Calc", uuid::Uuid::new_v4().simple());
        let (_, agent_id, serving, agent) = serve_c_agent(&factory, &registrar, &class);

        python_user_calls(&url, &agent_id, &class);

        assert_eq!(
            serving.join().unwrap(),
            ACADEMY_OK,
            "serving ends with OK after the shutdown request"
        );
        wait_terminated(&registrar, &agent_id);
        drop(agent);
    }
}

/// tests/py/interop_user.py calls the C agent `agent_id` through academy's
/// Handle, then asks it to shut down.
fn python_user_calls(url: &str, agent_id: &str, class: &str) {
    let mut py = PyPeer::start("interop_user.py", &[url, agent_id, class]);
    assert_eq!(py.line(), "add 5.0");
    assert_eq!(py.line(), r#"echo {"k": [1, "h\u00e9", null, 1.5]}"#);
    assert_eq!(py.line(), "kwargs 42.0");
    assert_eq!(py.line(), "fail AcademyRemoteError it broke");
    assert_eq!(py.line(), "concurrent True True");
    assert_eq!(py.line(), "ping True");
    assert_eq!(py.line(), "json 3.0");
    assert_eq!(py.line(), "discover True");
    assert_eq!(py.line(), "done");
    assert!(py.wait(Duration::from_secs(30)));
}

/// The queue's next event (fails the test if none comes in 30 s).
unsafe fn next_event(queue: *mut academy_queue) -> *mut academy_event {
    let mut event = null_mut();
    let status = academy_queue_poll(queue, 30.0, &mut event);
    assert_eq!(status, ACADEMY_OK, "{}", last_error());
    event
}

#[test]
fn a_python_user_calls_a_c_agent_served_from_a_queue() {
    for (name, url) in exchanges() {
        eprintln!("-- {name}");
        let factory = Factory::new(&url, None).unwrap();
        let registrar = factory.user(None).unwrap();
        let class = format!("cagent_{}.Calc", uuid::Uuid::new_v4().simple());
        let reg = registrar
            .register_agent(&format!("{class},cagent.Base"), Some("c-calc"))
            .unwrap();
        let agent = Arc::new(factory.agent(&reg).unwrap());
        let agent_id = agent_id_of(&reg);
        let mut queue = null_mut();
        assert_eq!(unsafe { academy_queue_new(&mut queue) }, ACADEMY_OK);
        let queue_addr = queue as usize;
        assert_eq!(
            unsafe { academy_agent_serve_queue(agent.0, queue, 42) },
            ACADEMY_OK
        );
        // The program's loop: the same handler as academy_agent_serve's,
        // called with each REQUEST event's fields, until ENDED.
        let serving = std::thread::spawn(move || unsafe {
            let queue = queue_addr as *mut academy_queue;
            loop {
                let event = next_event(queue);
                let e = &*event;
                assert_eq!(e.token, 42);
                if e.kind == academy_event_kind::ACADEMY_EVENT_ENDED {
                    let status = e.status;
                    academy_event_free(event);
                    return status;
                }
                assert_eq!(e.kind, academy_event_kind::ACADEMY_EVENT_REQUEST);
                calculator(null_mut(), e.action, e.args_json, e.kwargs_json, e.reply);
                academy_event_free(event);
            }
        });
        python_user_calls(&url, &agent_id, &class);
        assert_eq!(
            serving.join().unwrap(),
            ACADEMY_OK,
            "serving ends with OK after the shutdown request"
        );
        wait_terminated(&registrar, &agent_id);
        unsafe { academy_queue_free(queue) };
    }
}

#[test]
fn c_keeps_calls_to_a_python_agent_in_flight_from_one_thread() {
    for (name, url) in exchanges() {
        eprintln!("-- {name}");
        let mut py = PyPeer::start("interop_agent.py", &[&url]);
        let agent = c(&py.line());
        let factory = Factory::new(&url, None).unwrap();
        let user = factory.user(None).unwrap();
        let mut queue = null_mut();
        assert_eq!(unsafe { academy_queue_new(&mut queue) }, ACADEMY_OK);
        let call = |action: &str, args: &str, timeout_s: f64, token: u64| {
            let (action, args) = (c(action), c(args));
            let status = unsafe {
                academy_client_action_async(
                    user.0,
                    agent.as_ptr(),
                    action.as_ptr(),
                    args.as_ptr(),
                    std::ptr::null(),
                    timeout_s,
                    queue,
                    token,
                )
            };
            assert_eq!(status, ACADEMY_OK, "{}", last_error());
        };
        // 200 slow actions (0.2 s each in the agent) in flight at once.
        for i in 0..200u64 {
            call("slow", &format!("[{i}, 0.2]"), 60.0, i);
        }
        call("fail", "[]", 60.0, 1000);
        call("slow", "[0, 30]", 0.5, 1001);
        let mut results = std::collections::HashMap::new();
        for _ in 0..202 {
            unsafe {
                let event = next_event(queue);
                let e = &*event;
                assert_eq!(e.kind, academy_event_kind::ACADEMY_EVENT_CALL);
                let json = (!e.json.is_null()).then(|| text(e.json));
                let error = (!e.error.is_null()).then(|| text(e.error));
                results.insert(e.token, (e.status, json, error));
                academy_event_free(event);
            }
        }
        for i in 0..200u64 {
            let (status, json, _) = &results[&i];
            assert_eq!(*status, ACADEMY_OK);
            assert_eq!(parse(json.as_ref().unwrap()), json!(i));
        }
        let (status, json, error) = &results[&1000];
        assert_eq!(*status, ACADEMY_ERR_REMOTE);
        assert!(json.is_none());
        let error = error.as_ref().unwrap();
        assert!(
            error.contains("ValueError: boom") && error.contains("Traceback"),
            "{error}"
        );
        assert_eq!(
            results[&1001].0, ACADEMY_ERR_TIMEOUT,
            "{:?}",
            results[&1001]
        );
        user.shutdown_agent(agent.to_str().unwrap(), -1).unwrap();
        assert!(py.wait(Duration::from_secs(30)));
        unsafe { academy_queue_free(queue) };
    }
}

#[test]
fn serving_from_a_queue_ends_when_someone_terminates_the_mailbox() {
    for (_, url) in exchanges() {
        let factory = Factory::new(&url, None).unwrap();
        let user = factory.user(None).unwrap();
        let reg = user.register_agent("cagent.Doomed", None).unwrap();
        let agent = factory.agent(&reg).unwrap();
        let agent_id = agent_id_of(&reg);
        let mut queue = null_mut();
        assert_eq!(unsafe { academy_queue_new(&mut queue) }, ACADEMY_OK);
        assert_eq!(
            unsafe { academy_agent_serve_queue(agent.0, queue, 7) },
            ACADEMY_OK
        );
        user.terminate(&agent_id).unwrap();
        unsafe {
            let event = next_event(queue);
            let e = &*event;
            assert_eq!(
                (e.kind, e.token, e.status),
                (
                    academy_event_kind::ACADEMY_EVENT_ENDED,
                    7,
                    ACADEMY_ERR_MAILBOX_TERMINATED
                )
            );
            assert!(!e.error.is_null());
            academy_event_free(event);
            academy_queue_free(queue);
        }
    }
}

fn tag_of(message: &str) -> String {
    parse(message)["header"]["tag"].as_str().unwrap().to_owned()
}

fn action_body(action: &str) -> String {
    let a = c(action);
    let mut out = null_mut();
    assert_eq!(
        unsafe {
            academy_action_request_body(a.as_ptr(), std::ptr::null(), std::ptr::null(), &mut out)
        },
        ACADEMY_OK
    );
    take_string(out)
}

#[test]
fn cancel_stop_and_protocol_answers_of_a_served_c_agent() {
    for (name, url) in exchanges() {
        eprintln!("-- {name}");
        let factory = Arc::new(Factory::new(&url, Some(r#"{"max_concurrency": 2}"#)).unwrap());
        let user = factory.user(None).unwrap();
        let (_, agent_id, serving, agent) = serve_c_agent(&factory, &user, "cagent.Cancel");

        // Cancel a request the handler never answers.
        let never = message(&user.id(), &agent_id, &action_body("never"));
        user.send(&never).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let cancel_body =
            json!({"target_tag": tag_of(&never), "kind": "cancel-request"}).to_string();
        let cancel = message(&user.id(), &agent_id, &cancel_body);
        user.send(&cancel).unwrap();
        let mut answers = [user.recv(10.0).unwrap(), user.recv(10.0).unwrap()];
        answers.sort_by_key(|m| tag_of(m) != tag_of(&never));
        assert_eq!(tag_of(&answers[0]), tag_of(&never));
        let cancelled = expect_err(result_of(&answers[0]), ACADEMY_ERR_REMOTE);
        assert!(cancelled.contains("cancelled"), "{cancelled}");
        assert_eq!(parse(&answers[1])["body"]["kind"], "success-response");
        // Cancelling it again: the agent says the action is in no state to be cancelled.
        user.send(&message(&user.id(), &agent_id, &cancel_body))
            .unwrap();
        assert_eq!(parse(&user.recv(10.0).unwrap())["body"]["error_code"], 2);

        // A request of another protocol major version.
        let mut v2 = parse(&message(
            &user.id(),
            &agent_id,
            r#"{"kind": "ping-request"}"#,
        ));
        v2["header"]["protocol_version"] = json!("2.0");
        user.send(&v2.to_string()).unwrap();
        let answer = parse(&user.recv(10.0).unwrap());
        assert_eq!(answer["body"]["kind"], "academy-error-response");
        assert_eq!(answer["body"]["error_code"], 5);
        assert_eq!(answer["body"]["mailbox_id"]["uid"], parse(&agent_id)["uid"]);

        // Stop while a request is outstanding: serving ends, the caller is answered.
        let pending = message(&user.id(), &agent_id, &action_body("never"));
        user.send(&pending).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let start = Instant::now();
        assert_eq!(
            unsafe { academy::ffi::serve::academy_agent_stop(agent.0) },
            ACADEMY_OK
        );
        assert_eq!(serving.join().unwrap(), ACADEMY_OK);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "stop ends serving promptly"
        );
        let answer = user.recv(10.0).unwrap();
        assert_eq!(tag_of(&answer), tag_of(&pending));
        expect_err(result_of(&answer), ACADEMY_ERR_REMOTE);
        // The stored replies were answered already; completing one now says so.
        let stale = NEVER.lock().unwrap().pop().unwrap() as *mut academy_reply;
        let one = c("1");
        assert_eq!(
            unsafe { academy_reply_ok(stale, one.as_ptr()) },
            ACADEMY_ERR_CLOSED
        );
        // The mailbox stays (stop is not shutdown).
        assert_ne!(user.status(&agent_id).unwrap(), ACADEMY_MAILBOX_TERMINATED);
    }
}

#[test]
fn a_request_to_a_user_is_answered_invalid_client() {
    for (_, url) in exchanges() {
        let factory = Factory::new(&url, None).unwrap();
        let (a, b) = (factory.user(None).unwrap(), factory.user(None).unwrap());
        let response = parse(
            &a.request(&b.id(), r#"{"kind": "ping-request"}"#, 10.0)
                .unwrap(),
        );
        assert_eq!(response["body"]["kind"], "academy-error-response");
        assert_eq!(response["body"]["error_code"], 4);
        assert_eq!(response["body"]["mailbox_id"]["uid"], parse(&b.id())["uid"]);
        expect_err(a.ping(&b.id(), 10.0), ACADEMY_ERR_REMOTE);
    }
}

#[test]
fn message_helpers_validate_in_academy_py_and_decode_its_answers() {
    let user = {
        let mut out = null_mut();
        unsafe { academy_user_id_new(c("me").as_ptr(), &mut out) };
        take_string(out)
    };
    let agent = {
        let mut out = null_mut();
        unsafe { academy_agent_id_new(std::ptr::null(), &mut out) };
        take_string(out)
    };
    let kwargs = c(r#"{"x": {"s": "hé", "l": [1, 2.5, null]}}"#);
    let a = c("echo");
    let mut body = null_mut();
    assert_eq!(
        unsafe {
            academy_action_request_body(a.as_ptr(), c("[1]").as_ptr(), kwargs.as_ptr(), &mut body)
        },
        ACADEMY_OK
    );
    let body = take_string(body);
    let request = message(&user, &agent, &body);
    let response = {
        let (r, b) = (c(&request), c(r#"{"kind": "success-response"}"#));
        let mut out = null_mut();
        assert_eq!(
            unsafe { academy_message_response(r.as_ptr(), b.as_ptr(), &mut out) },
            ACADEMY_OK
        );
        take_string(out)
    };
    let shutdown = message(
        &user,
        &agent,
        r#"{"terminate": null, "kind": "shutdown-request"}"#,
    );
    let mut py = PyPeer::start("validate_messages.py", &[&request, &response, &shutdown]);
    assert_eq!(py.line(), "ok action-request");
    assert_eq!(py.line(), "ok success-response");
    assert_eq!(py.line(), "ok shutdown-request");
    assert!(py.wait(Duration::from_secs(20)));
    assert_eq!(
        parse(&response)["header"]["tag"],
        parse(&request)["header"]["tag"]
    );
    assert_eq!(parse(&response)["header"]["src"], parse(&agent));

    let samples: Value = serde_json::from_str(include_str!("data/wire_samples.json")).unwrap();
    assert_eq!(
        result_of(samples["action_add"]["response_wire"].as_str().unwrap()).unwrap(),
        "5"
    );
    assert_eq!(
        parse(
            &result_of(
                samples["action_echo_kwargs"]["response_wire"]
                    .as_str()
                    .unwrap()
            )
            .unwrap()
        ),
        json!({"k": [1, 2], "s": "hé", "n": null, "f": 1.5})
    );
    let err = expect_err(
        result_of(samples["action_fail"]["response_wire"].as_str().unwrap()),
        ACADEMY_ERR_REMOTE,
    );
    assert!(err.ends_with("ValueError: boom"), "{err}");
    assert_eq!(
        result_of(samples["ping"]["response_wire"].as_str().unwrap()).unwrap(),
        "null"
    );
}

#[test]
fn serving_ends_when_someone_terminates_the_mailbox() {
    for (_, url) in exchanges() {
        let factory = Arc::new(Factory::new(&url, None).unwrap());
        let user = factory.user(None).unwrap();
        let (_, agent_id, serving, _agent) = serve_c_agent(&factory, &user, "cagent.Doomed");
        assert_eq!(
            user.action(&agent_id, "add", Some("[1, 1]"), None, 10.0)
                .unwrap(),
            "2.0"
        );
        user.terminate(&agent_id).unwrap();
        assert_eq!(serving.join().unwrap(), ACADEMY_ERR_MAILBOX_TERMINATED);
    }
}
