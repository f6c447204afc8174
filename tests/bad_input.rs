//! Bad input to every C function: each gets its status code and a clear
//! `academy_last_error`, never a crash. The table is summarised in the
//! README.

mod common;

use std::ffi::{c_char, c_void};
use std::ptr::{null, null_mut};

use academy::ffi::academy_status::{self, *};
use academy::ffi::client::*;
use academy::ffi::exchange::*;
use academy::ffi::factory::*;
use academy::ffi::messages::*;
use academy::ffi::pyvalue::*;
use academy::ffi::reply::*;
use academy::ffi::serve::*;
use academy::ffi::*;
use common::*;

/// A bad call: what it is, and what it must return.
struct Case<'a> {
    what: &'static str,
    expect: academy_status,
    call: Box<dyn Fn() -> academy_status + 'a>,
}

macro_rules! case {
    ($what:expr, $expect:expr, $call:expr) => {
        Case {
            what: $what,
            expect: $expect,
            call: Box::new(move || unsafe { $call }),
        }
    };
}

/// C strings that live until the end of a test (no leak for valgrind).
#[derive(Default)]
struct Strings(std::cell::RefCell<Vec<std::ffi::CString>>);

impl Strings {
    fn keep(&self, text: &str) -> *const c_char {
        let owned = c(text);
        let p = owned.as_ptr();
        self.0.borrow_mut().push(owned);
        p
    }
}

const BAD_UTF8: &[u8] = b"\xff\xfe\0";
fn bad_utf8() -> *const c_char {
    BAD_UTF8.as_ptr() as *const c_char
}

fn run(cases: Vec<Case<'_>>) -> usize {
    let n = cases.len();
    for case in cases {
        let status = (case.call)();
        let message = last_error();
        assert_eq!(status, case.expect, "{}: {message}", case.what);
        assert!(
            !message.is_empty(),
            "{}: academy_last_error must explain",
            case.what
        );
        assert!(
            message.len() < 2000,
            "{}: the message stays readable",
            case.what
        );
    }
    n
}

#[test]
fn null_pointers_bad_utf8_and_bad_json_without_a_network() {
    let strings = Strings::default();
    let s = |t: &str| strings.keep(t);
    let id = s(r#"{"uid":"80b78938-3bd9-4a0e-85ec-e2cb02f3a507","name":null,"role":"user"}"#);
    let ping = s(r#"{"kind":"ping-request"}"#);
    let mut out: *mut c_char = null_mut();
    let o = &mut out as *mut *mut c_char;
    let mut f: *mut academy_factory = null_mut();
    let fo = &mut f as *mut *mut academy_factory;
    let deep = s(&format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)));
    let huge = s(&"x".repeat(8 << 20));
    let n = run(vec![
        case!(
            "factory NULL url",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_http_factory_new(null(), null(), fo)
        ),
        case!(
            "factory NULL out",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_http_factory_new(s("http://x"), null(), null_mut())
        ),
        case!(
            "factory bad UTF-8 url",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_http_factory_new(bad_utf8(), null(), fo)
        ),
        case!(
            "factory bad scheme",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_http_factory_new(s("ftp://x"), null(), fo)
        ),
        case!(
            "factory huge url",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_http_factory_new(huge, null(), fo)
        ),
        case!(
            "factory malformed options",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_http_factory_new(s("http://x"), s("{"), fo)
        ),
        case!(
            "factory deep options",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_http_factory_new(s("http://x"), deep, fo)
        ),
        case!(
            "factory unknown option",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_http_factory_new(s("http://x"), s(r#"{"retry":1}"#), fo)
        ),
        case!(
            "factory option of wrong type",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_http_factory_new(s("http://x"), s(r#"{"retries":"1"}"#), fo)
        ),
        case!(
            "factory options not an object",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_http_factory_new(s("http://x"), s("[]"), fo)
        ),
        case!(
            "factory missing ca_file",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_http_factory_new(s("https://x"), s(r#"{"ca_file":"/nonexistent.pem"}"#), fo)
        ),
        case!(
            "globus without credentials",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_http_factory_new(s("http://x"), s(r#"{"auth_method":"globus"}"#), fo)
        ),
        case!(
            "user client NULL factory",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_user_client_new(null(), null(), &mut null_mut())
        ),
        case!(
            "agent client NULL factory",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_agent_client_new(null(), s("{}"), &mut null_mut())
        ),
        case!(
            "register NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_register_agent(null_mut(), s("a.B"), null(), o)
        ),
        case!(
            "mailbox id NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_mailbox_id(null(), o)
        ),
        case!(
            "send NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_send(null_mut(), ping)
        ),
        case!(
            "send_async NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_send_async(null_mut(), ping, Some(must_not_run), null_mut())
        ),
        case!(
            "flush NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_flush(null_mut(), 1.0)
        ),
        case!(
            "recv NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_recv(null_mut(), 0.0, o)
        ),
        case!(
            "status NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_status(
                null_mut(),
                id,
                &mut academy_mailbox_status::ACADEMY_MAILBOX_MISSING
            )
        ),
        case!(
            "terminate NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_terminate(null_mut(), id)
        ),
        case!(
            "discover NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_discover(null_mut(), s("a"), true, o)
        ),
        case!(
            "heartbeat NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_heartbeat(null_mut())
        ),
        case!(
            "heartbeat status NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_heartbeat_status(null_mut(), id, &mut 0.0)
        ),
        case!(
            "stats NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_agent_stats(null_mut(), id, o)
        ),
        case!(
            "share NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_share_mailbox(null_mut(), id, s("g"))
        ),
        case!(
            "shared groups NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_shared_groups(null_mut(), id, o)
        ),
        case!(
            "unshare NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_unshare_mailbox(null_mut(), id, s("g"))
        ),
        case!(
            "close NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_close(null_mut())
        ),
        case!(
            "request NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_request(null_mut(), id, ping, 1.0, o)
        ),
        case!(
            "action NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_action(null_mut(), id, s("a"), null(), null(), 1.0, o)
        ),
        case!(
            "ping NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_ping(null_mut(), id, 1.0, &mut 0.0)
        ),
        case!(
            "shutdown NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_shutdown_agent(null_mut(), id, -1)
        ),
        case!(
            "serve NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_agent_serve(null_mut(), None, null_mut::<c_void>())
        ),
        case!(
            "stop NULL client",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_agent_stop(null_mut())
        ),
        case!(
            "reply_ok NULL reply",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_reply_ok(null_mut(), s("1"))
        ),
        case!(
            "reply_error NULL reply",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_reply_error(null_mut(), s("x"))
        ),
        case!(
            "reply_cancelled NULL reply",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_reply_cancelled(null_mut(), &mut false)
        ),
        case!(
            "message_new NULL src",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_message_new(null(), id, ping, o)
        ),
        case!(
            "message_new NULL out",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_message_new(id, id, ping, null_mut())
        ),
        case!(
            "message_new id of the wrong shape",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_message_new(s(r#"{"uid":"nope","role":"user"}"#), id, ping, o)
        ),
        case!(
            "message_new id with an unknown role",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_message_new(
                s(r#"{"uid":"80b78938-3bd9-4a0e-85ec-e2cb02f3a507","role":"robot"}"#),
                id,
                ping,
                o
            )
        ),
        case!(
            "message_new bad UTF-8 body",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_message_new(id, id, bad_utf8(), o)
        ),
        case!(
            "message_new body without kind",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_message_new(id, id, s("{}"), o)
        ),
        case!(
            "message_new unknown kind",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_message_new(id, id, s(r#"{"kind":"dance"}"#), o)
        ),
        case!(
            "message_new deeply nested body",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_message_new(id, id, deep, o)
        ),
        case!(
            "message_response NULL request",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_message_response(null(), ping, o)
        ),
        case!(
            "message_response not a message",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_message_response(s("[]"), ping, o)
        ),
        case!(
            "action body NULL action",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_action_request_body(null(), null(), null(), o)
        ),
        case!(
            "action body args not an array",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_action_request_body(s("a"), s("{}"), null(), o)
        ),
        case!(
            "action body kwargs not an object",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_action_request_body(s("a"), null(), s("[]"), o)
        ),
        case!(
            "action body malformed args",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_action_request_body(s("a"), s("[1,"), null(), o)
        ),
        case!(
            "message_result NULL",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_message_result(null(), o)
        ),
        case!(
            "message_result huge garbage",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_message_result(huge, o)
        ),
        case!(
            "user id bad UTF-8 name",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_user_id_new(bad_utf8(), o)
        ),
        case!(
            "agent id NULL out",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_agent_id_new(null(), null_mut())
        ),
        case!(
            "exchange spawn NULL out",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_exchange_spawn(null(), null_mut())
        ),
        case!(
            "exchange spawn unknown option",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_exchange_spawn(s(r#"{"nope":1}"#), &mut null_mut())
        ),
        case!(
            "exchange url NULL",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_exchange_url(null(), o)
        ),
        case!(
            "exchange stop NULL",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_exchange_stop(null_mut())
        ),
    ]);
    assert!(
        out.is_null() && f.is_null(),
        "outputs are written only on success"
    );
    eprintln!("{n} bad inputs without a network");
    // Freeing NULL is a no-op.
    unsafe {
        academy_string_free(null_mut());
        academy_factory_free(null_mut());
        academy_client_free(null_mut());
        academy_exchange_free(null_mut());
    }
}

/// Python values: the typed buffers, JSON pointers, forced serializations
/// and results that cannot be read.
#[test]
fn bad_python_values_without_a_network() {
    let strings = Strings::default();
    let s = |t: &str| strings.keep(t);
    let mut out: *mut c_char = null_mut();
    let o = &mut out as *mut *mut c_char;
    let mut array: *mut academy_ndarray = null_mut();
    let a = &mut array as *mut *mut academy_ndarray;
    let mut bytes: *mut u8 = null_mut();
    let b = &mut bytes as *mut *mut u8;
    let mut len = 0usize;
    let l = &mut len as *mut usize;
    let shape = [2usize, 3];
    let huge_shape = [usize::MAX, 2];
    let data = [0u8; 48];
    let form = |dtype: &str, shape: &str, data: &str| {
        s(&format!(
            r#"{{"py/ndarray": {{"dtype": "{dtype}", "shape": {shape}, "order": "C", "data": "{data}"}}}}"#
        ))
    };
    let bad_pickle_result = s(&message(
        r#"{"uid":"80b78938-3bd9-4a0e-85ec-e2cb02f3a507","name":null,"role":"agent"}"#,
        r#"{"uid":"80b78938-3bd9-4a0e-85ec-e2cb02f3a508","name":null,"role":"user"}"#,
        r#"{"result": ["__serialized__", "gASVAAAA"], "serialization": "pickle", "kind": "action-response"}"#,
    ));
    let n = run(vec![
        case!(
            "json_get NULL json",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_json_get(null(), s(""), o)
        ),
        case!(
            "json_get malformed JSON",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_json_get(s("[1,"), s(""), o)
        ),
        case!(
            "json_get malformed pointer",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_json_get(s("[1]"), s("0"), o)
        ),
        case!(
            "json_get nothing there",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_json_get(s("[1]"), s("/1"), o)
        ),
        case!(
            "json_get NULL out",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_json_get(s("[1]"), s(""), null_mut())
        ),
        case!(
            "ndarray_read not an array",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_ndarray_read(s(r#"{"py/tuple": []}"#), null(), a)
        ),
        case!(
            "ndarray_read unicode dtype",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_ndarray_read(form("<U1", "[1]", "YQAAAA=="), null(), a)
        ),
        case!(
            "ndarray_read data too short",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_ndarray_read(form("<f8", "[2]", "AAAAAAAAAAA="), null(), a)
        ),
        case!(
            "ndarray_read a shape past memory",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_ndarray_read(form("<f8", "[18446744073709551615, 4]", ""), null(), a)
        ),
        case!(
            "ndarray_read data not base64",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_ndarray_read(form("|u1", "[1]", "!!!!"), null(), a)
        ),
        case!(
            "ndarray_read NULL out",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_ndarray_read(form("|u1", "[0]", ""), null(), null_mut())
        ),
        case!(
            "ndarray_write unknown dtype",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_ndarray_write(
                s("<U5"),
                2,
                shape.as_ptr(),
                b'C' as c_char,
                data.as_ptr().cast(),
                o
            )
        ),
        case!(
            "ndarray_write bad order",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_ndarray_write(
                s("<f8"),
                2,
                shape.as_ptr(),
                b'X' as c_char,
                data.as_ptr().cast(),
                o
            )
        ),
        case!(
            "ndarray_write NULL shape",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_ndarray_write(s("<f8"), 2, null(), b'C' as c_char, data.as_ptr().cast(), o)
        ),
        case!(
            "ndarray_write NULL data",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_ndarray_write(s("<f8"), 2, shape.as_ptr(), b'C' as c_char, null(), o)
        ),
        case!(
            "ndarray_write a shape past memory",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_ndarray_write(
                s("<f8"),
                2,
                huge_shape.as_ptr(),
                b'F' as c_char,
                data.as_ptr().cast(),
                o
            )
        ),
        case!(
            "bytes_read not bytes",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_bytes_read(s(r#"{"py/bytes": 5}"#), null(), b, l)
        ),
        case!(
            "bytes_read NULL len",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_bytes_read(s(r#"{"py/bytes": ""}"#), null(), b, null_mut())
        ),
        case!(
            "bytes_write NULL data",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_bytes_write(null(), 3, o)
        ),
        case!(
            "action body unknown serialization",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_action_request_body_as(s("a"), null(), null(), s("yaml"), o)
        ),
        case!(
            "action body a py/ form that cannot be pickled",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_action_request_body_as(s("a"), s(r#"[{"py/tuple": 5}]"#), null(), null(), o)
        ),
        case!(
            "message_result a bad pickle",
            ACADEMY_ERR_PROTOCOL,
            academy_message_result(bad_pickle_result, o)
        ),
    ]);
    assert!(
        out.is_null() && array.is_null() && bytes.is_null(),
        "outputs are written only on success"
    );
    eprintln!("{n} bad Python values");
    unsafe {
        academy_ndarray_free(null_mut());
        academy_bytes_free(null_mut(), 0);
        // And the good path, so that valgrind sees what a read allocates
        // freed by its free function.
        let f8 = s("<f8");
        let d = data.as_ptr().cast();
        check(academy_ndarray_write(
            f8,
            2,
            shape.as_ptr(),
            b'F' as c_char,
            d,
            o,
        ))
        .unwrap();
        check(academy_ndarray_read(out, s(""), a)).unwrap();
        assert_eq!(
            ((*array).ndim, (*array).nbytes, (*array).order),
            (2, 48, b'F' as c_char)
        );
        academy_ndarray_free(array);
        academy_string_free(out);
        check(academy_bytes_write(d, 5, o)).unwrap();
        check(academy_bytes_read(out, null(), b, l)).unwrap();
        assert_eq!(std::slice::from_raw_parts(bytes, len), &data[..5]);
        academy_bytes_free(bytes, len);
        academy_string_free(out);
    }
}

#[test]
fn bad_input_to_a_live_client_and_use_after_close() {
    let url = exchanges()[0].1.clone();
    let factory = Factory::new(&url, None).unwrap();
    let user = factory.user(None).unwrap();
    let cl = user.0;
    let strings = Strings::default();
    let s = |t: &str| strings.keep(t);
    let mut out: *mut c_char = null_mut();
    let o = &mut out as *mut *mut c_char;
    let wrong_id = s(r#"{"uid":"1","role":"agent"}"#);
    let uid = s(&user.id());
    let to_self = s(&message(
        &user.id(),
        &user.id(),
        r#"{"kind":"ping-request"}"#,
    ));
    let n = run(vec![
        case!(
            "register NULL types",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_register_agent(cl, null(), null(), o)
        ),
        case!(
            "register empty type",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_register_agent(cl, s("a,,b"), null(), o)
        ),
        case!(
            "register bad UTF-8 name",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_register_agent(cl, s("a.B"), bad_utf8(), o)
        ),
        case!(
            "agent client bad registration",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_agent_client_new(factory.0, s(r#"{"agent_id":1}"#), &mut null_mut())
        ),
        case!(
            "send malformed JSON",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_send(cl, s("{\"header\":"))
        ),
        case!(
            "send NULL message",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_send(cl, null())
        ),
        case!(
            "send_async malformed JSON",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_send_async(cl, s("{\"header\":"), Some(must_not_run), null_mut())
        ),
        case!(
            "send_async NULL message",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_send_async(cl, null(), Some(must_not_run), null_mut())
        ),
        case!(
            "send_async bad UTF-8",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_send_async(cl, bad_utf8(), None, null_mut())
        ),
        case!(
            "flush NaN timeout",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_flush(cl, f64::NAN)
        ),
        case!(
            "recv NaN timeout",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_recv(cl, f64::NAN, o)
        ),
        case!(
            "recv NULL out",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_recv(cl, 0.0, null_mut())
        ),
        case!(
            "status wrong-shape id",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_status(
                cl,
                wrong_id,
                &mut academy_mailbox_status::ACADEMY_MAILBOX_MISSING
            )
        ),
        case!(
            "terminate wrong-shape id",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_terminate(cl, wrong_id)
        ),
        case!(
            "discover NULL type",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_discover(cl, null(), true, o)
        ),
        case!(
            "action NULL action",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_action(cl, wrong_id, null(), null(), null(), 1.0, o)
        ),
        case!(
            "action malformed args",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_action(cl, uid, s("a"), s("[1"), null(), 1.0, o)
        ),
        case!(
            "request response body",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_request(cl, uid, s(r#"{"kind":"success-response"}"#), 1.0, o)
        ),
        case!(
            "shutdown bad terminate",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_client_shutdown_agent(cl, uid, 7)
        ),
        case!(
            "serve NULL handler",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_agent_serve(cl, None, null_mut())
        ),
        case!(
            "stop a client that is not serving",
            ACADEMY_ERR_INVALID_ARGUMENT,
            academy_agent_stop(cl)
        ),
    ]);
    user.close().unwrap();
    let m = run(vec![
        case!(
            "recv after close",
            ACADEMY_ERR_CLOSED,
            academy_client_recv(cl, 0.0, o)
        ),
        case!(
            "send after close",
            ACADEMY_ERR_CLOSED,
            academy_client_send(cl, to_self)
        ),
        case!(
            "send_async after close",
            ACADEMY_ERR_CLOSED,
            academy_client_send_async(cl, to_self, Some(must_not_run), null_mut())
        ),
        case!(
            "register after close",
            ACADEMY_ERR_CLOSED,
            academy_client_register_agent(cl, s("a.B"), null(), o)
        ),
        case!(
            "request after close",
            ACADEMY_ERR_CLOSED,
            academy_client_request(cl, uid, s(r#"{"kind":"ping-request"}"#), 1.0, o)
        ),
        case!(
            "serve after close",
            ACADEMY_ERR_CLOSED,
            academy_agent_serve(cl, Some(never_replies), null_mut())
        ),
    ]);
    assert!(out.is_null());
    eprintln!("{} bad inputs to a live client", n + m);
}

/// The callback of a send that must never start.
unsafe extern "C" fn must_not_run(_: *mut c_void, status: academy_status, _: *const c_char) {
    eprintln!("a refused send_async called its callback with {status:?}");
    std::process::abort();
}

unsafe extern "C" fn never_replies(
    _: *mut c_void,
    _: *const c_char,
    _: *const c_char,
    _: *const c_char,
    _: *mut academy_reply,
) {
}

/// Misused handles answer a status instead of corrupting memory: use after
/// free, double free, a handle of the wrong type, a made-up pointer, and
/// freeing a client while another thread is blocked on it.
#[test]
fn misused_handles_answer_closed() {
    let url = exchanges()[0].1.clone();
    let factory = Factory::new(&url, None).unwrap();
    let user = factory.user(None).unwrap();
    let cl = user.0;
    std::mem::forget(user); // freed by hand below
    let mut out: *mut c_char = null_mut();
    unsafe {
        // Another thread blocks in recv; freeing the client wakes it.
        let blocked = cl as usize;
        let waiter = std::thread::spawn(move || {
            let mut msg: *mut c_char = null_mut();
            let status = academy_client_recv(blocked as *mut academy_client, -1.0, &mut msg);
            (status, last_error())
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        academy_client_free(cl);
        let (status, text) = waiter.join().unwrap();
        assert_eq!(status, ACADEMY_ERR_CLOSED, "{text}");

        // Use after free and double free.
        assert_eq!(academy_client_mailbox_id(cl, &mut out), ACADEMY_ERR_CLOSED);
        assert!(last_error().contains("freed"), "{}", last_error());
        assert_eq!(academy_client_close(cl), ACADEMY_ERR_CLOSED);
        academy_client_free(cl);

        // A factory passed as a client, a client as a factory, made-up pointers.
        let wrong = factory.0 as *mut academy_client;
        assert_eq!(
            academy_client_mailbox_id(wrong, &mut out),
            ACADEMY_ERR_CLOSED
        );
        assert!(
            last_error().contains("not a client handle"),
            "{}",
            last_error()
        );
        let mut new_client: *mut academy_client = null_mut();
        assert_eq!(
            academy_user_client_new(cl as *const academy_factory, null(), &mut new_client),
            ACADEMY_ERR_CLOSED
        );
        for junk in [8usize, 0xdead_bee0, usize::MAX] {
            assert_eq!(
                academy_client_mailbox_id(junk as *mut academy_client, &mut out),
                ACADEMY_ERR_CLOSED
            );
            academy_client_free(junk as *mut academy_client);
        }
    }
    assert!(out.is_null(), "nothing written on failure");

    // A reply completed twice: the second completion answers CLOSED.
    let caller = factory.user(None).unwrap();
    let registration = caller.register_agent("test.Twice", None).unwrap();
    let agent = factory.agent(&registration).unwrap();
    let agent_ptr = agent.0 as usize;
    let server = std::thread::spawn(move || unsafe {
        academy_agent_serve(
            agent_ptr as *mut academy_client,
            Some(replies_twice),
            null_mut(),
        )
    });
    let result = caller
        .action(&agent_id_of(&registration), "x", None, None, 10.0)
        .unwrap();
    assert_eq!(result, "1");
    // The caller may have its answer before the handler's second completion.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while SECOND_REPLY.load(std::sync::atomic::Ordering::SeqCst) == -1
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        SECOND_REPLY.load(std::sync::atomic::Ordering::SeqCst),
        ACADEMY_ERR_CLOSED as i32
    );
    unsafe { academy_agent_stop(agent.0) };
    server.join().unwrap();
}

static SECOND_REPLY: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Answers, then answers again (the second must be refused).
unsafe extern "C" fn replies_twice(
    _: *mut c_void,
    _: *const c_char,
    _: *const c_char,
    _: *const c_char,
    reply: *mut academy_reply,
) {
    let one = c"1";
    let mut cancelled = true;
    assert_eq!(academy_reply_cancelled(reply, &mut cancelled), ACADEMY_OK);
    assert!(!cancelled);
    assert_eq!(
        academy_reply_cancelled(reply, null_mut()),
        ACADEMY_ERR_INVALID_ARGUMENT
    );
    academy_reply_ok(reply, one.as_ptr());
    // Completed and freed: no longer a live reply.
    assert_eq!(
        academy_reply_cancelled(reply, &mut cancelled),
        ACADEMY_ERR_CLOSED
    );
    let second = academy_reply_ok(reply, one.as_ptr());
    SECOND_REPLY.store(second as i32, std::sync::atomic::Ordering::SeqCst);
}

/// A freed handle stays dead however often its slot is reused: after
/// 70,000 academy_queue_new / academy_queue_free cycles (more than a
/// 16-bit generation counts) no new queue equals the freed one, and
/// freeing the stale handle never frees the live queue.
#[test]
fn a_freed_handle_never_comes_back_however_often_its_slot_is_reused() {
    use academy::ffi::queue::*;
    let new = || {
        let mut q = null_mut();
        assert_eq!(unsafe { academy_queue_new(&mut q) }, ACADEMY_OK);
        q
    };
    let stale = new();
    unsafe { academy_queue_free(stale) };
    for n in 0..70_000 {
        let q = new();
        assert_ne!(q, stale, "cycle {n}: a freed handle came back");
        // The stale handle is not a live queue, and freeing it frees nothing.
        let mut event = null_mut();
        assert_eq!(
            unsafe { academy_queue_poll(stale, 0.0, &mut event) },
            ACADEMY_ERR_CLOSED,
            "cycle {n}"
        );
        unsafe { academy_queue_free(stale) };
        assert_eq!(
            unsafe { academy_queue_poll(q, 0.0, &mut event) },
            ACADEMY_ERR_TIMEOUT,
            "cycle {n}: the live queue was freed through a stale handle"
        );
        unsafe { academy_queue_free(q) };
    }
}
