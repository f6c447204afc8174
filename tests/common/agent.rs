//! The C agent the tests serve: an `academy_action_fn` written as a C
//! program would write it (add, echo, fail, slow: completed later from
//! another thread, never: kept unanswered in [`NEVER`]).

use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;
use std::time::Duration;

use academy::ffi::academy_status::ACADEMY_OK;
use academy::ffi::reply::*;
use serde_json::{json, Value};

use super::capi::c;

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Replies the handler stores and never completes ("never" action).
pub static NEVER: Mutex<Vec<usize>> = Mutex::new(Vec::new());

pub unsafe fn text(p: *const c_char) -> String {
    CStr::from_ptr(p).to_str().unwrap().to_owned()
}

pub unsafe extern "C" fn calculator(
    _: *mut c_void,
    action: *const c_char,
    args: *const c_char,
    kwargs: *const c_char,
    reply: *mut academy_reply,
) {
    let (action, args, kwargs) = (text(action), parse(&text(args)), parse(&text(kwargs)));
    let arg = |i: usize, name: &str| {
        args.get(i)
            .or_else(|| kwargs.get(name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let ok = |v: Value| {
        let v = c(&v.to_string());
        assert_eq!(academy_reply_ok(reply, v.as_ptr()), ACADEMY_OK);
    };
    match action.as_str() {
        "add" => ok(json!(
            arg(0, "a").as_f64().unwrap() + arg(1, "b").as_f64().unwrap()
        )),
        "echo" => ok(arg(0, "x")),
        "fail" => {
            let why = c(arg(0, "why").as_str().unwrap_or("failed"));
            assert_eq!(academy_reply_error(reply, why.as_ptr()), ACADEMY_OK);
        }
        "slow" => {
            // Completed later, from another thread.
            let (reply, x) = (reply as usize, arg(0, "x"));
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                let v = c(&x.to_string());
                assert_eq!(
                    academy_reply_ok(reply as *mut academy_reply, v.as_ptr()),
                    ACADEMY_OK
                );
            });
        }
        "never" => NEVER.lock().unwrap().push(reply as usize),
        other => {
            let why = c(&format!("no action named {other}"));
            academy_reply_error(reply, why.as_ptr());
        }
    }
}
