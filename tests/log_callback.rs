//! The log callback may not wait: every C function whose header says it
//! may block returns ACADEMY_ERR_INVALID_ARGUMENT from inside the callback
//! at once (the frees of a client and of an exchange go on in the
//! background instead), wherever the line was logged: on the program's
//! own thread, on the embedded exchange's threads and on the library's
//! runtime thread. The list of blocking functions is read from the header,
//! so a new one fails this test until it is covered here.

mod common;

use std::collections::BTreeMap;
use std::ffi::{c_char, c_void};
use std::ptr::{null, null_mut};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use academy::ffi::academy_status::{self, *};
use academy::ffi::client::*;
use academy::ffi::exchange::*;
use academy::ffi::factory::*;
use academy::ffi::log::*;
use academy::ffi::queue::*;
use academy::ffi::reply::*;
use academy::ffi::serve::*;
use common::*;

/// The functions of include/academy.h whose `Blocks:` is not "no".
fn blocking_functions() -> Vec<String> {
    let header = std::fs::read_to_string(repo().join("include/academy.h")).unwrap();
    let mut out = Vec::new();
    for (i, _) in header.match_indices("/**") {
        let rest = &header[i..];
        let Some(end) = rest.find("*/") else { continue };
        let (doc, after) = (&rest[..end], &rest[end + 2..]);
        // The function declared right after the comment: the name before
        // its first parenthesis.
        let decl = after.trim_start().split(';').next().unwrap_or("");
        let Some((head, _)) = decl.split_once('(') else {
            continue;
        };
        let Some(name) = head
            .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
            .find(|w| !w.is_empty())
            .filter(|w| w.starts_with("academy_"))
        else {
            continue;
        };
        let Some(blocks) = doc.split("Blocks:").nth(1) else {
            continue;
        };
        if !blocks.trim_start().starts_with("no") {
            out.push(name.to_owned());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Where a log line was logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Context {
    /// The program's own thread, inside a libacademy call that logs.
    Program,
    /// A thread of the embedded exchange.
    Exchange,
    /// The library's runtime thread (clients' listeners).
    Runtime,
}

/// The handles the callback calls with (as numbers: they cross threads).
struct Handles {
    factory: usize,
    user: usize,
    agent_registration: String,
    agent_id: String,
    queue: usize,
    /// A client and an exchange per context, for close, free and stop.
    spare_clients: BTreeMap<Context, usize>,
    spare_exchanges: BTreeMap<Context, usize>,
    /// A client whose only send slot a request that is never answered
    /// holds (through the never-answering stub).
    full_client: usize,
    /// An agent client to try academy_agent_serve() with.
    idle_agent: usize,
    /// A reply of academy_agent_serve(), held open.
    held_reply: usize,
}

/// One call to make in the callback, by the name of its function.
type Call<'a> = (&'static str, Box<dyn Fn() -> academy_status + 'a>);

/// What one call in the callback returned, and how long it took.
type Outcome = (academy_status, String, Duration);

static HANDLES: Mutex<Option<Handles>> = Mutex::new(None);
static PROGRAM_THREAD: Mutex<Option<std::thread::ThreadId>> = Mutex::new(None);
/// The contexts still to run the calls in.
static ARMED: Mutex<Vec<Context>> = Mutex::new(Vec::new());
static RESULTS: Mutex<BTreeMap<(Context, String), Outcome>> = Mutex::new(BTreeMap::new());

fn context_now() -> Option<Context> {
    let thread = std::thread::current();
    match thread.name() {
        Some("academy-exchange") => Some(Context::Exchange),
        Some("academy-rt") => Some(Context::Runtime),
        _ if Some(thread.id()) == *PROGRAM_THREAD.lock().unwrap() => Some(Context::Program),
        _ => None,
    }
}

unsafe extern "C" fn on_line(
    _: *mut c_void,
    _: academy_log_level,
    _: *const c_char,
    _: *const c_char,
) {
    let Some(context) = context_now() else { return };
    {
        let mut armed = ARMED.lock().unwrap();
        let Some(i) = armed.iter().position(|c| *c == context) else {
            return;
        };
        armed.remove(i);
    }
    let guard = HANDLES.lock().unwrap();
    let h = guard.as_ref().unwrap();
    let mut results = RESULTS.lock().unwrap();
    for (name, call) in calls(h, context) {
        let start = Instant::now();
        let status = call();
        results.insert(
            (context, name.to_owned()),
            (status, last_error(), start.elapsed()),
        );
    }
}

/// Every blocking function, called as a program would, with waits short
/// enough that a call that waited is seen (or would succeed).
fn calls(h: &Handles, context: Context) -> Vec<Call<'_>> {
    let user = h.user as *mut academy_client;
    let factory = h.factory as *const academy_factory;
    let queue = h.queue as *mut academy_queue;
    let agent = c(&h.agent_id);
    let registration = c(&h.agent_registration);
    let ping = c(r#"{"kind": "ping-request"}"#);
    let group = c("log-callback-group");
    let message = c(&message(
        &h.agent_id,
        &h.agent_id,
        r#"{"kind": "ping-request"}"#,
    ));
    let spare_client = h.spare_clients[&context];
    let spare_exchange = h.spare_exchanges[&context];
    let mut out: *mut c_char = null_mut();
    let out = &mut out as *mut *mut c_char as usize;
    let out = move || out as *mut *mut c_char;
    vec![
        (
            "academy_user_client_new",
            Box::new(move || unsafe {
                let mut c = null_mut();
                academy_user_client_new(factory, null(), &mut c)
            }) as Box<dyn Fn() -> academy_status>,
        ),
        (
            "academy_agent_client_new",
            Box::new(move || unsafe {
                let mut c = null_mut();
                academy_agent_client_new(factory, registration.as_ptr(), &mut c)
            }),
        ),
        (
            "academy_client_register_agent",
            Box::new(move || unsafe {
                academy_client_register_agent(user, c"x.Y".as_ptr(), null(), out())
            }),
        ),
        (
            "academy_client_send",
            Box::new({
                let message = message.clone();
                move || unsafe { academy_client_send(user, message.as_ptr()) }
            }),
        ),
        (
            "academy_client_send_async",
            Box::new(move || unsafe {
                academy_client_send_async(
                    h.full_client as *mut academy_client,
                    message.as_ptr(),
                    None,
                    null_mut(),
                )
            }),
        ),
        (
            "academy_client_flush",
            Box::new(move || unsafe { academy_client_flush(user, 0.05) }),
        ),
        (
            "academy_client_recv",
            Box::new(move || unsafe { academy_client_recv(user, 0.05, out()) }),
        ),
        (
            "academy_client_status",
            Box::new({
                let agent = agent.clone();
                move || unsafe {
                    let mut s = academy_mailbox_status::ACADEMY_MAILBOX_MISSING;
                    academy_client_status(user, agent.as_ptr(), &mut s)
                }
            }),
        ),
        (
            "academy_client_terminate",
            Box::new(move || unsafe {
                academy_client_terminate(user, c"{\"uid\": \"00000000-0000-4000-8000-000000000000\", \"name\": null, \"role\": \"agent\"}".as_ptr())
            }),
        ),
        (
            "academy_client_discover",
            Box::new(move || unsafe {
                academy_client_discover(user, c"x.Y".as_ptr(), true, out())
            }),
        ),
        (
            "academy_client_heartbeat",
            Box::new(move || unsafe { academy_client_heartbeat(user) }),
        ),
        (
            "academy_client_heartbeat_status",
            Box::new({
                let agent = agent.clone();
                move || unsafe {
                    let mut age = 0.0;
                    academy_client_heartbeat_status(user, agent.as_ptr(), &mut age)
                }
            }),
        ),
        (
            "academy_client_agent_stats",
            Box::new({
                let agent = agent.clone();
                move || unsafe { academy_client_agent_stats(user, agent.as_ptr(), out()) }
            }),
        ),
        (
            "academy_client_share_mailbox",
            Box::new({
                let (agent, group) = (agent.clone(), group.clone());
                move || unsafe {
                    academy_client_share_mailbox(user, agent.as_ptr(), group.as_ptr())
                }
            }),
        ),
        (
            "academy_client_shared_groups",
            Box::new({
                let agent = agent.clone();
                move || unsafe { academy_client_shared_groups(user, agent.as_ptr(), out()) }
            }),
        ),
        (
            "academy_client_unshare_mailbox",
            Box::new({
                let agent = agent.clone();
                move || unsafe {
                    academy_client_unshare_mailbox(user, agent.as_ptr(), group.as_ptr())
                }
            }),
        ),
        (
            "academy_client_close",
            Box::new(move || unsafe { academy_client_close(spare_client as *mut academy_client) }),
        ),
        (
            "academy_client_request",
            Box::new({
                let (agent, ping) = (agent.clone(), ping.clone());
                move || unsafe {
                    academy_client_request(user, agent.as_ptr(), ping.as_ptr(), 0.05, out())
                }
            }),
        ),
        (
            "academy_client_action",
            Box::new({
                let agent = agent.clone();
                move || unsafe {
                    academy_client_action(
                        user,
                        agent.as_ptr(),
                        c"add".as_ptr(),
                        null(),
                        null(),
                        0.05,
                        out(),
                    )
                }
            }),
        ),
        (
            "academy_client_ping",
            Box::new({
                let agent = agent.clone();
                move || unsafe {
                    let mut rtt = 0.0;
                    academy_client_ping(user, agent.as_ptr(), 0.05, &mut rtt)
                }
            }),
        ),
        (
            "academy_client_shutdown_agent",
            Box::new(move || unsafe { academy_client_shutdown_agent(user, agent.as_ptr(), 0) }),
        ),
        (
            "academy_exchange_spawn",
            Box::new(move || unsafe {
                let mut e = null_mut();
                academy_exchange_spawn(null(), &mut e)
            }),
        ),
        (
            "academy_exchange_stop",
            Box::new(move || unsafe {
                academy_exchange_stop(spare_exchange as *mut academy_exchange)
            }),
        ),
        (
            "academy_set_log_callback",
            Box::new(|| unsafe { academy_set_log_callback(None, null_mut(), 0) }),
        ),
        (
            "academy_queue_poll",
            Box::new(move || unsafe {
                let mut e = null_mut();
                academy_queue_poll(queue, 0.05, &mut e)
            }),
        ),
        (
            "academy_reply_ok",
            Box::new(move || unsafe {
                academy_reply_ok(h.held_reply as *mut academy_reply, c"1".as_ptr())
            }),
        ),
        (
            "academy_reply_error",
            Box::new(move || unsafe {
                academy_reply_error(h.held_reply as *mut academy_reply, c"no".as_ptr())
            }),
        ),
        (
            "academy_agent_serve",
            Box::new(move || unsafe {
                // Should serving start after all, it is stopped soon.
                let idle = h.idle_agent;
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(1));
                    academy_agent_stop(idle as *mut academy_client);
                });
                academy_agent_serve(
                    h.idle_agent as *mut academy_client,
                    Some(hold_reply),
                    null_mut(),
                )
            }),
        ),
        // The frees return nothing: they must not wait, and the handle is
        // gone at once (the close or stop goes on in the background).
        (
            "academy_client_free",
            Box::new(move || unsafe {
                academy_client_free(spare_client as *mut academy_client);
                let mut id = null_mut();
                academy_client_mailbox_id(spare_client as *mut academy_client, &mut id)
            }),
        ),
        (
            "academy_exchange_free",
            Box::new(move || unsafe {
                academy_exchange_free(spare_exchange as *mut academy_exchange);
                let mut url = null_mut();
                academy_exchange_url(spare_exchange as *mut academy_exchange, &mut url)
            }),
        ),
    ]
}

static HELD: Mutex<Vec<usize>> = Mutex::new(Vec::new());

unsafe extern "C" fn hold_reply(
    _: *mut c_void,
    _: *const c_char,
    _: *const c_char,
    _: *const c_char,
    reply: *mut academy_reply,
) {
    HELD.lock().unwrap().push(reply as usize);
}

/// A stub exchange (it stands in for one that never acknowledges a
/// message): answers everything `200 {}` at once, except `PUT /message`,
/// which it never answers, and listen streams (503).
fn never_acknowledging_stub() -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let request = line.clone();
                    let mut length = 0;
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let answer: &[u8] = if request.starts_with("PUT /message") {
                        std::thread::sleep(Duration::from_secs(3600));
                        return;
                    } else if request.contains("/mailbox/listen") {
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nretry-after: 5\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
                    };
                    if out.write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

fn spawn_exchange() -> usize {
    let mut e = null_mut();
    check(unsafe { academy_exchange_spawn(null(), &mut e) }).unwrap();
    e as usize
}

/// Arms `context` and does `trigger` until the callback has run there.
fn run_in(context: Context, trigger: impl Fn()) {
    ARMED.lock().unwrap().push(context);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ARMED.lock().unwrap().contains(&context) {
        assert!(Instant::now() < deadline, "no log line in {context:?}");
        trigger();
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_call_that_waits_is_refused_inside_the_log_callback() {
    let url = shared_embedded_exchange();
    let factory = Factory::new(&url, None).unwrap();
    let user = factory.user(None).unwrap();
    let registration = user.register_agent("logcb.Agent", None).unwrap();
    let agent_id = agent_id_of(&registration);
    // An agent served by academy_agent_serve(), holding one reply.
    let served = std::sync::Arc::new(factory.agent(&registration).unwrap());
    let serving = served.clone();
    let serve = std::thread::spawn(move || unsafe {
        academy_agent_serve(serving.0, Some(hold_reply), null_mut())
    });
    let calls = Queue::new();
    let (agent_c, action) = (c(&agent_id), c("add"));
    check(unsafe {
        academy_client_action_async(
            user.0,
            agent_c.as_ptr(),
            action.as_ptr(),
            null(),
            null(),
            60.0,
            calls.0,
            1,
        )
    })
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while HELD.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the handler got the request");
        std::thread::sleep(Duration::from_millis(10));
    }
    let held_reply = HELD.lock().unwrap()[0];
    let idle_registration = user.register_agent("logcb.Idle", None).unwrap();
    let idle_agent = factory.agent(&idle_registration).unwrap();
    // A client whose one send slot is held by a send never acknowledged.
    let stub = Factory::new(
        &never_acknowledging_stub(),
        Some(r#"{"max_in_flight": 1, "request_timeout_s": 60, "retries": 0}"#),
    )
    .unwrap();
    let full = stub.user(None).unwrap();
    let first = c(&message(
        &full.id(),
        &agent_id,
        r#"{"kind": "ping-request"}"#,
    ));
    check(unsafe { academy_client_send_async(full.0, first.as_ptr(), None, null_mut()) }).unwrap();
    // Its send is never acknowledged: never closed (a close would wait).
    let full_client = full.0 as usize;
    std::mem::forget(full);
    std::mem::forget(stub);
    let contexts = [Context::Program, Context::Exchange, Context::Runtime];
    let spare_clients: Vec<Client> = contexts
        .iter()
        .map(|_| factory.user(None).unwrap())
        .collect();
    let q = Queue::new();
    *HANDLES.lock().unwrap() = Some(Handles {
        factory: factory.0 as usize,
        user: user.0 as usize,
        agent_registration: registration.clone(),
        agent_id: agent_id.clone(),
        queue: q.0 as usize,
        spare_clients: contexts
            .iter()
            .zip(&spare_clients)
            .map(|(k, c)| (*k, c.0 as usize))
            .collect(),
        spare_exchanges: contexts.iter().map(|k| (*k, spawn_exchange())).collect(),
        full_client,
        idle_agent: idle_agent.0 as usize,
        held_reply,
    });
    std::mem::forget(spare_clients); // freed by the callback
    *PROGRAM_THREAD.lock().unwrap() = Some(std::thread::current().id());
    assert_eq!(
        unsafe { academy_set_log_callback(Some(on_line), null_mut(), 5) },
        ACADEMY_OK
    );

    // On the program's own thread: a factory for https logs (on this
    // thread, outside any wait) that its requests go through reqwest.
    run_in(Context::Program, || {
        let _ = Factory::new("https://127.0.0.1:9", None);
    });
    // On the embedded exchange's threads: it logs each request.
    run_in(Context::Exchange, || user.heartbeat().unwrap());
    // On the library's runtime thread: an answer that comes after its call
    // timed out is logged by the listener that drops it.
    let late = Queue::new();
    run_in(Context::Runtime, || {
        let ping = c(r#"{"kind": "ping-request"}"#);
        let _ = check(unsafe {
            academy_client_request_async(
                user.0,
                agent_c.as_ptr(),
                ping.as_ptr(),
                0.000_001,
                late.0,
                0,
            )
        });
    });
    unsafe { academy_set_log_callback(None, null_mut(), 0) };

    let results = RESULTS.lock().unwrap();
    let mut wrong = Vec::new();
    for name in blocking_functions() {
        for context in contexts {
            let Some((status, text, took)) = results.get(&(context, name.clone())) else {
                wrong.push(format!("{name} is not tried in {context:?}"));
                continue;
            };
            let frees = name.ends_with("_free");
            let ok = if frees {
                *status == ACADEMY_ERR_CLOSED
            } else {
                *status == ACADEMY_ERR_INVALID_ARGUMENT
                    && (name == "academy_set_log_callback" || text.contains("log callback"))
            };
            if !ok || *took > Duration::from_secs(1) {
                wrong.push(format!(
                    "{name} in {context:?}: {status:?} after {took:?}: {text}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    drop(results);

    // The reply refused in the callback stayed open: completing it now
    // answers the caller.
    check(unsafe { academy_reply_ok(held_reply as *mut academy_reply, c"42".as_ptr()) }).unwrap();
    let e = calls.poll(20.0);
    assert_eq!(e.0, ACADEMY_OK, "{e:?}");
    assert_eq!(e.1.as_deref(), Some("42"));
    check(unsafe { academy_agent_stop(served.0) }).unwrap();
    assert_eq!(serve.join().unwrap(), ACADEMY_OK);
}

struct Queue(*mut academy_queue);

impl Queue {
    fn new() -> Queue {
        let mut q = null_mut();
        check(unsafe { academy_queue_new(&mut q) }).unwrap();
        Queue(q)
    }

    /// The next event's status and json.
    fn poll(&self, timeout_s: f64) -> (academy_status, Option<String>) {
        let mut e = null_mut();
        let status = unsafe { academy_queue_poll(self.0, timeout_s, &mut e) };
        if status != ACADEMY_OK {
            return (status, Some(last_error()));
        }
        let json = unsafe {
            let json = (*e).json;
            let text = (!json.is_null()).then(|| {
                std::ffi::CStr::from_ptr(json)
                    .to_string_lossy()
                    .into_owned()
            });
            let status = (*e).status;
            academy_event_free(e);
            (status, text)
        };
        json
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        unsafe { academy_queue_free(self.0) }
    }
}
