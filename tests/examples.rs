//! The C examples, built with `cc -Wall -Wextra -Werror` by `make examples`
//! (scripts/test.sh runs it first), run against both exchanges.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::*;

fn example(name: &str) -> PathBuf {
    let path = repo().join("examples-c/build").join(name);
    assert!(
        path.exists(),
        "{} is missing: build the examples with `make examples` (scripts/test.sh does)",
        path.display()
    );
    path
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run example");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// One test, so that no two examples look for the calculator on one
/// exchange at the same time.
#[test]
fn examples_run() {
    the_main_job_runs_on_the_embedded_exchange_by_default();
    the_main_job_runs_on_any_exchange_url();
    a_c_user_calls_a_c_agent_in_another_process();
    the_main_job_is_clean_under_valgrind();
    forked_children_use_the_library();
    one_epoll_loop_serves_an_agent_and_keeps_a_thousand_actions_in_flight();
    the_event_loop_is_clean_under_valgrind();
    the_readme_main_job_runs();
}

const EVENT_LOOP_DONE: &str = "20000 actions with 1000 in flight from one thread: 20000 correct, 20000 requests served from the same loop\nserving ended: ok\n";

/// examples-c/event_loop.c: one thread, an epoll loop on a queue's fd,
/// serving the agent it calls; on both exchanges.
fn one_epoll_loop_serves_an_agent_and_keeps_a_thousand_actions_in_flight() {
    let out = run(Command::new(example("event_loop")).env_remove("ACADEMY_EXCHANGE_URL"));
    assert_eq!(out, EVENT_LOOP_DONE);
    for (_, url) in exchanges() {
        let out = run(Command::new(example("event_loop")).arg(&url).arg("3000"));
        assert_eq!(
            out,
            "3000 actions with 1000 in flight from one thread: 3000 correct, 3000 requests served from the same loop\nserving ended: ok\n"
        );
    }
}

/// Events, replies and queues are freed exactly once (no invalid access,
/// no definite leak) through a whole run of the event loop.
fn the_event_loop_is_clean_under_valgrind() {
    let out = Command::new("valgrind")
        .args([
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--error-exitcode=42",
        ])
        .arg(example("event_loop"))
        .args(["", "300"])
        .output()
        .expect("valgrind must be installed (apt-get install valgrind)");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "valgrind found errors or leaks:\n{report}"
    );
    assert!(report.contains("ERROR SUMMARY: 0 errors"), "{report}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("300 correct, 300 requests served"));
}

/// `make run`'s script: in one process on the embedded exchange, then
/// across processes through the `academy-exchange` server; no Python.
fn the_readme_main_job_runs() {
    let out =
        run(Command::new(repo().join("scripts/main-job.sh")).env_remove("ACADEMY_EXCHANGE_URL"));
    assert!(out.contains("add(2, 3) = 5\n"), "{out}");
    assert!(
        out.contains("started academy-exchange at http://127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("add(40, 2) = 42\n"), "{out}");
    assert!(out.contains(EVENT_LOOP_DONE), "{out}");
}

/// HPC launchers fork: 8 children of a process that already uses the
/// library each register an agent (with handles of their own; the
/// parent's answer CLOSED in them) and answer a call from the parent.
fn forked_children_use_the_library() {
    let out = run(&mut Command::new(example("fork_children")));
    assert_eq!(
        out,
        "8 children answered from their own pid, 8 exited cleanly\n"
    );
    let (_, python) = exchanges().remove(0);
    let out = run(Command::new(example("fork_children")).arg(&python));
    assert_eq!(
        out,
        "8 children answered from their own pid, 8 exited cleanly\n"
    );
}

/// No invalid read or write, and no definite leak, in a whole run of the
/// main job (the runtime's threads are still reachable at exit, by design).
fn the_main_job_is_clean_under_valgrind() {
    let out = Command::new("valgrind")
        .args([
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--error-exitcode=42",
        ])
        .arg(example("demo"))
        .output()
        .expect("valgrind must be installed (apt-get install valgrind)");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "valgrind found errors or leaks:\n{report}"
    );
    assert!(report.contains("ERROR SUMMARY: 0 errors"), "{report}");
    assert!(
        !report.contains("LEAK SUMMARY") || report.contains("definitely lost: 0 bytes"),
        "{report}"
    );
}

fn the_main_job_runs_on_the_embedded_exchange_by_default() {
    let out = run(Command::new(example("demo")).env_remove("ACADEMY_EXCHANGE_URL"));
    assert!(
        out.contains("started the embedded exchange at http://127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("add(2, 3) = 5\n"), "{out}");
    assert!(
        out.contains("divide(1, 0) -> remote error: the calculator has no action named \"divide\""),
        "{out}"
    );
    assert!(
        out.contains(
            "sent 100 messages with academy_client_send_async (100 callbacks), received 100\n"
        ),
        "{out}"
    );
    assert!(out.contains("the agent shut down"), "{out}");
}

fn the_main_job_runs_on_any_exchange_url() {
    for (_, url) in exchanges() {
        let out = run(Command::new(example("demo")).arg(&url));
        assert!(!out.contains("started the embedded exchange"), "{out}");
        assert!(out.contains("add(2, 3) = 5\n"), "{out}");
    }
}

fn a_c_user_calls_a_c_agent_in_another_process() {
    for (_, url) in exchanges() {
        let mut agent = Command::new(example("calculator_agent"))
            .arg(&url)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start calculator_agent");
        let mut line = String::new();
        BufReader::new(agent.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let id: serde_json::Value = serde_json::from_str(&line).expect("the agent prints its id");
        assert_eq!(id["role"], "agent");
        let out = run(Command::new(example("call_agent")).arg(&url));
        assert_eq!(
            out,
            "add(40, 2) = 42\necho = {\"nested\":[1,2,\"three\"]}\nping ok\n"
        );
        let status = agent.wait().unwrap();
        assert!(
            status.success(),
            "the agent exits 0 after the shutdown request"
        );
    }
}
