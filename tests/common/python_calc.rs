//! What a C user checks of the Python `Calc` agent (tests/py/interop_agent.py,
//! also launched by tests/py/redis_peer.py): the same calls on every
//! exchange, so that one list says what "calls a Python agent" means.

use std::sync::Arc;

use academy::ffi::academy_status::ACADEMY_ERR_REMOTE;
use serde_json::{json, Value};

use super::capi::{expect_err, Client};

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Positional and keyword arguments, a nested value with `text` in it
/// echoed unchanged, a Python exception and an unknown action as remote
/// errors.
pub fn calls_the_python_calc(user: &Client, agent: &str, text: &str) {
    assert_eq!(
        user.action(agent, "add", Some("[2, 3]"), None, 30.0)
            .unwrap(),
        "5"
    );
    assert_eq!(
        user.action(agent, "add", None, Some(r#"{"a": 1.5, "b": 2}"#), 30.0)
            .unwrap(),
        "3.5"
    );
    let nested = json!({"k": [1, {"deep": [null, true]}], "s": text, "f": 1.5, "n": null});
    let echoed = user
        .action(
            agent,
            "echo",
            Some(&json!([nested]).to_string()),
            None,
            30.0,
        )
        .unwrap();
    assert_eq!(parse(&echoed), nested);
    let failure = expect_err(
        user.action(agent, "fail", None, None, 30.0),
        ACADEMY_ERR_REMOTE,
    );
    assert!(
        failure.contains("ValueError: boom") && failure.contains("Traceback"),
        "{failure}"
    );
    let unknown = expect_err(
        user.action(agent, "nope", None, None, 30.0),
        ACADEMY_ERR_REMOTE,
    );
    assert!(
        unknown.contains("does not have an action named"),
        "{unknown}"
    );
}

/// `per_thread` slow (50 ms) calls from each of 4 threads on one client,
/// in flight at once; each gets its own answer.
pub fn calls_the_python_calc_from_four_threads(user: &Arc<Client>, agent: &str, per_thread: usize) {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (user, agent) = (user.clone(), agent.to_owned());
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|i| {
                        let x = (t * 100 + i) as f64;
                        let r = user
                            .action(&agent, "slow", Some(&format!("[{x}, 0.05]")), None, 60.0)
                            .unwrap();
                        (parse(&r).as_f64().unwrap(), x)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        for (got, want) in t.join().unwrap() {
            assert_eq!(got, want);
        }
    }
}
