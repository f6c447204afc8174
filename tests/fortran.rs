//! The Fortran module (fortran/academy.f90) and its examples, built with
//! gfortran by `make fortran` (scripts/test.sh installs gfortran): a
//! Fortran user calls a Python agent launched by academy's Manager, and a
//! Python user calls a Fortran agent through academy's Handle, on
//! academy-py's exchange and on ours.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

/// `make fortran`, once per test binary; the path of a built example.
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new("make")
            .args(["-s", "fortran"])
            .current_dir(repo())
            .output()
            .expect("run make (gfortran is needed: scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "make fortran failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
    repo().join("examples-fortran/build").join(name)
}

/// A child process killed (if still running) when the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `child` to exit within `timeout`; its exit status succeeded.
fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        assert!(
            Instant::now() < deadline,
            "the process did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_fortran_user_calls_a_python_agent() {
    let call_agent = example("call_agent");
    for (name, url) in exchanges() {
        eprintln!("-- {name}");
        let mut py = PyPeer::start("interop_agent.py", &[&url]);
        let agent = py.line();
        let out = Command::new(&call_agent)
            .arg(&url)
            .arg(&agent)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines[0], "add 5");
        assert_eq!(lines[1], "add 3.5");
        let echoed = lines[2].strip_prefix("echo ").unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(echoed).unwrap(),
            serde_json::json!({"k": [1, "x", null, 2.5]})
        );
        assert_eq!(lines[3], "fail remote error traceback T");
        assert_eq!(lines[4], "fail last line ValueError: boom");
        assert_eq!(lines[5], "ping T");
        assert_eq!(lines[6], "request add 42");
        assert_eq!(lines[7], "recv success-response T");
        assert_eq!(lines[8], "shutdown sent");
        assert_eq!(lines.len(), 9, "{stdout}");
        assert!(
            py.wait(Duration::from_secs(30)),
            "the Python agent exits 0 after the Fortran user's shutdown request"
        );
    }
}

#[test]
fn a_python_user_calls_a_fortran_agent() {
    let calculator = example("calculator_agent");
    for (name, url) in exchanges() {
        eprintln!("-- {name}");
        let (mut agent, id) = start_agent(&calculator, &url);

        let mut py = PyPeer::start("call_fortran_agent.py", &[&url, &id]);
        assert_eq!(py.line(), "add 5.5");
        assert_eq!(py.line(), r#"echo {"k": [1, "x", null, 1.5]}"#);
        assert_eq!(
            py.line(),
            r#"fail AcademyRemoteError the Fortran agent failed: ["on purpose"]"#
        );
        assert_eq!(
            py.line(),
            r#"divide AcademyRemoteError the Fortran calculator has no action named "divide""#
        );
        let kwargs = py.line();
        assert!(
            kwargs.starts_with(
                "kwargs AcademyRemoteError add takes two positional numbers, not [] {"
            ),
            "{kwargs}"
        );
        // calls() counts the requests before it through user_data.
        assert_eq!(py.line(), "calls 5");
        assert_eq!(py.line(), "ping True");
        assert_eq!(py.line(), "discover True");
        assert_eq!(py.line(), "wait cancelled");
        // The handler saw its caller cancel, well before its own 10 s.
        assert_eq!(py.line(), "cancelled 1");
        assert_eq!(py.line(), "done");
        assert!(py.wait(Duration::from_secs(30)));

        assert_eq!(
            exit_and_stderr(&mut agent),
            "calculator: shut down after 8 requests\n"
        );
    }
}

/// Starts a Fortran agent program with the exchange's URL; returns it and
/// the agent id it prints.
fn start_agent(program: &std::path::Path, url: &str) -> (Running, String) {
    let mut agent = Running(
        Command::new(program)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut id = String::new();
    BufReader::new(agent.0.stdout.take().unwrap())
        .read_line(&mut id)
        .unwrap();
    let id = id.trim().to_owned();
    assert!(id.contains(r#""role":"agent""#), "{id:?}");
    (agent, id)
}

/// Waits for a Fortran agent to exit 0 after a shutdown request; what it
/// wrote to stderr.
fn exit_and_stderr(agent: &mut Running) -> String {
    assert!(
        wait_exit(&mut agent.0, Duration::from_secs(30)),
        "the Fortran agent exits 0 after the shutdown request"
    );
    let mut stderr = String::new();
    agent
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

/// A Python user with academy-py's default Handle (pickle requests)
/// calls examples-fortran/array_agent.f90 with numpy arrays (row- and
/// column-major, the other byte order, a transposed view), int64,
/// complex and bool arrays and bytes, and gets the computed arrays back
/// (tests/py/call_values_agent.py).
#[test]
fn a_python_user_with_default_pickle_calls_a_fortran_agent_with_numpy_arrays() {
    let program = example("array_agent");
    let numpy = python_numpy(2);
    for (name, url) in exchanges() {
        eprintln!("-- {name}");
        let (mut agent, id) = start_agent(&program, &url);
        let mut py = PyPeer::start_with(&numpy, "call_values_agent.py", &[&url, &id]);
        for expected in [
            "scale ndarray <f8 (2, 3) [[0.0, 2.0, 4.0], [6.0, 8.0, 10.0]]",
            "row_sums ndarray <f8 (2,) [3.0, 12.0]",
            "row_sums F ndarray <f8 (2,) [3.0, 12.0]",
            "row_sums >f8 ndarray <f8 (2,) [3.0, 12.0]",
            "row_sums T ndarray <f8 (3,) [3.0, 5.0, 7.0]",
            "cumsum ndarray <i8 (4,) [1, 3, 6, 1099511627782]",
            "conj ndarray <c16 (2,) [(1+2j), (-3-0.5j)]",
            "count int 3",
            r"reverse bytes b'\xff\x00cba'",
            "wrong dtype AcademyRemoteError scale: the array's dtype is <i4, not float64",
            "done",
        ] {
            assert_eq!(py.line(), expected);
        }
        assert!(py.wait(Duration::from_secs(30)));
        assert_eq!(
            exit_and_stderr(&mut agent),
            "array_agent: shut down after 10 requests\n"
        );
    }
}

/// The helpers with no network (examples-fortran/values_check.f90): each
/// array type and rank written and read back, a row-major array read
/// with numpy's indices, refusals, bytes.
#[test]
fn fortran_arrays_and_bytes_round_trip_through_their_json_forms() {
    let out = Command::new(example("values_check")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "f8 T T",
            "f4 T T",
            "i4 T T",
            "i8 T T",
            "c16 T T",
            "b1 T T",
            "empty T T",
            "row-major read with numpy's indices T",
            "wrong dtype ACADEMY_ERR_INVALID_ARGUMENT F the array's dtype is <i4, not float64",
            "wrong rank ACADEMY_ERR_INVALID_ARGUMENT the array is 1-dimensional, not 2-dimensional",
            "not an array ACADEMY_ERR_INVALID_ARGUMENT T",
            "nothing at the pointer ACADEMY_ERR_INVALID_ARGUMENT",
            "bytes T T T",
            "bytes at a pointer T",
            "json_get \"c\"",
            "bodies T T ACADEMY_ERR_INVALID_ARGUMENT",
        ]
    );
}

/// Named constants of a source text: `NAME = value` pairs whose name
/// starts with ACADEMY_ (C enumerators or Fortran parameters).
fn constants(text: &str, line_prefix: &str) -> BTreeMap<String, i64> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix(line_prefix)?;
            let (name, value) = rest.split_once('=')?;
            let value = value.trim().trim_end_matches(',');
            let value = value.split_whitespace().next()?;
            Some((name.trim().to_owned(), value.parse().ok()?))
        })
        .filter(|(name, _)| name.starts_with("ACADEMY_"))
        .collect()
}

#[test]
fn the_fortran_constants_match_the_header() {
    let header = std::fs::read_to_string(repo().join("include/academy.h")).unwrap();
    let module = std::fs::read_to_string(repo().join("fortran/academy.f90")).unwrap();
    let c = constants(&header, "");
    let fortran = constants(&module, "integer(c_int), parameter, public ::");
    assert_eq!(c["ACADEMY_OK"], 0);
    assert_eq!(c["ACADEMY_ERR_INTERNAL"], 99);
    // Every status and mailbox status of the header, with its value.
    for (name, value) in &c {
        assert_eq!(
            fortran.get(name),
            Some(value),
            "{name} in fortran/academy.f90"
        );
    }
    // The completion queue's event kinds (DESIGN.md 2b) come on top.
    let extra: Vec<_> = fortran.keys().filter(|k| !c.contains_key(*k)).collect();
    assert!(
        extra.iter().all(|k| k.starts_with("ACADEMY_EVENT_")),
        "{extra:?}"
    );
}

#[test]
fn the_completion_queue_wrappers_call_the_c_functions() {
    // `make fortran` compiles the submodule with the completion queue's
    // wrappers; examples-fortran/queue_calls links it (run below).
    let object = example("academy_queue.o");
    assert!(object.exists());
    let symbols = Command::new("nm").arg("-u").arg(&object).output().unwrap();
    let symbols = String::from_utf8_lossy(&symbols.stdout);
    for f in [
        "academy_queue_new",
        "academy_queue_poll",
        "academy_event_free",
        "academy_client_action_async",
        "academy_client_listen",
        "academy_agent_serve_queue",
    ] {
        assert!(
            symbols
                .lines()
                .any(|l| l.trim().ends_with(&format!(" {f}"))),
            "{f} is not called by academy_queue.o:\n{symbols}"
        );
    }
}

/// 20 actions and a ping in flight from one Fortran thread through a
/// completion queue to a Python agent, and a Fortran agent served from the
/// same queue; also the Redis and hybrid factories, status names and the
/// log callback (examples-fortran/queue_calls.f90).
#[test]
fn a_fortran_user_keeps_actions_in_flight_through_a_queue() {
    let queue_calls = example("queue_calls");
    for (name, url) in exchanges() {
        eprintln!("-- {name}");
        let mut py = PyPeer::start("interop_agent.py", &[&url]);
        let agent = py.line();
        let out = Command::new(&queue_calls)
            .arg(&url)
            .arg(&agent)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}{stderr}");
        assert_eq!(
            stdout,
            "calls 20 of 20 correct\n\
             ping T\n\
             served double 42 answered 1\n\
             serving ended ACADEMY_OK\n\
             empty queue ACADEMY_ERR_TIMEOUT\n\
             factories TT\n\
             redis with an HTTP option ACADEMY_ERR_INVALID_ARGUMENT\n\
             log lines seen T\n",
            "{stderr}"
        );
    }
}
