//! The pickle codec against the real Python and numpy (1.26 and 2.x):
//! tests/py/pickle_corpus.py pickles every value of pickle_values.py with
//! protocols 0 to 5 and says which JSON form a reference converter of its
//! own expects; we check that our decoder gives exactly that form, that
//! our encoder's pickle decodes to it again, and (back in Python, in both
//! numpy versions) that `pickle.loads` of our pickle equals the original.
//!
//! Needs ACADEMY_TEST_PYTHON (academy-py's venv), and
//! ACADEMY_TEST_PYTHON_NUMPY1 / ACADEMY_TEST_PYTHON_NUMPY2 (pythons with
//! numpy 1.26 and numpy 2.x).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use academy::wire::pickle::{from_json_form, to_json_form, Limits};
use academy::wire::pyjson;
use base64::Engine as _;
use serde_json::{json, Value};

fn python(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} must name a python for this test"))
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/pickle_corpus.py")
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// `python pickle_corpus.py emit`: the corpus lines.
fn emit(py: &str) -> Vec<Value> {
    let out = Command::new(py).arg(script()).arg("emit").output().unwrap();
    assert!(
        out.status.success(),
        "{py} emit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| pyjson::loads(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// `python pickle_corpus.py check`: (passed, failed, skipped, report).
fn check(py: &str, lines: &[Value]) -> (usize, usize, usize, String) {
    let mut child = Command::new(py)
        .arg(script())
        .arg("check")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for l in lines {
        input.push_str(&l.to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let last = report
        .lines()
        .rev()
        .find(|l| l.contains(" passed, "))
        .unwrap_or_else(|| panic!("{py} check gave no summary:\n{report}"));
    let n: Vec<usize> = last
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    (n[0], n[1], n[2], report)
}

struct Outcome {
    reencoded: Vec<Value>,
    checked: usize,
    failures: Vec<String>,
}

/// Decodes every pickle of the corpus, compares with the expected form,
/// re-encodes, and checks that the re-encoding decodes the same.
fn decode_corpus(lines: &[Value]) -> Outcome {
    let mut out = Outcome {
        reencoded: Vec::new(),
        checked: 0,
        failures: Vec::new(),
    };
    for line in lines {
        let name = line["name"].as_str().unwrap();
        let proto = &line["protocol"];
        let Some(p) = line["pickle"].as_str() else {
            // Python itself cannot pickle it with this protocol.
            assert!(line.get("unpicklable").is_some(), "{line}");
            continue;
        };
        let pickle = unb64(p);
        let what = format!("{name} (protocol {proto})");
        out.checked += 1;
        let form = match to_json_form(&pickle, &Limits::for_size(pickle.len())) {
            Ok(v) => v,
            Err(e) => {
                out.failures.push(format!("{what}: decoding failed: {e}"));
                continue;
            }
        };
        if form != line["form"] {
            out.failures.push(format!(
                "{what}:\n  ours:     {form}\n  expected: {}",
                line["form"]
            ));
            continue;
        }
        let again = match from_json_form(&form) {
            Ok(p) => p,
            Err(e) => {
                out.failures.push(format!("{what}: encoding failed: {e}"));
                continue;
            }
        };
        match to_json_form(&again, &Limits::for_size(again.len())) {
            Ok(v) if v == form => {}
            Ok(v) => out
                .failures
                .push(format!("{what}: re-encoded pickle decodes to {v}")),
            Err(e) => out.failures.push(format!("{what}: re-encoded pickle: {e}")),
        }
        out.reencoded.push(json!({
            "name": name, "protocol": proto, "pickle": b64(&again), "original": p,
        }));
    }
    out
}

/// One python's corpus: decoded and checked here, then loaded back in each
/// of `checkers`; `cross` checkers may lack what the original needs.
fn differential(emitter: &str, checkers: &[(&str, bool)], min_values: usize) {
    let lines = emit(emitter);
    let outcome = decode_corpus(&lines);
    assert!(
        outcome.failures.is_empty(),
        "{} of {} pickles from {emitter} failed:\n{}",
        outcome.failures.len(),
        outcome.checked,
        outcome.failures.join("\n")
    );
    assert!(
        outcome.checked >= min_values,
        "only {} pickles from {emitter}",
        outcome.checked
    );
    for (checker, cross) in checkers {
        let (passed, failed, skipped, report) = check(checker, &outcome.reencoded);
        eprintln!("{emitter} -> {checker}: {passed} passed, {failed} failed, {skipped} skipped");
        assert_eq!(
            failed, 0,
            "{checker} loading our pickles of {emitter}'s values:\n{report}"
        );
        if !cross {
            assert_eq!(
                skipped, 0,
                "{checker} could not load its own pickles:\n{report}"
            );
        }
        assert!(
            passed >= min_values * 9 / 10,
            "{checker}: only {passed} loaded equal:\n{report}"
        );
    }
}

fn numpy_version(py: &str) -> String {
    let out = Command::new(py)
        .args(["-c", "import numpy; print(numpy.__version__)"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{py} has no numpy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn python_values_without_numpy() {
    let py = python("ACADEMY_TEST_PYTHON");
    differential(&py, &[(&py, false)], 450);
}

/// The corpus of the python with numpy `major`, loaded back in both.
fn numpy_corpus(major: &str) {
    let np1 = python("ACADEMY_TEST_PYTHON_NUMPY1");
    let np2 = python("ACADEMY_TEST_PYTHON_NUMPY2");
    assert!(
        numpy_version(&np1).starts_with("1.26."),
        "{np1} must have numpy 1.26"
    );
    assert!(
        numpy_version(&np2).starts_with("2."),
        "{np2} must have numpy 2"
    );
    let (own, other) = if major == "1" {
        (&np1, &np2)
    } else {
        (&np2, &np1)
    };
    differential(own, &[(own, false), (other, true)], 700);
}

#[test]
fn numpy_1_values_load_in_numpy_1_and_2() {
    numpy_corpus("1");
}

#[test]
fn numpy_2_values_load_in_numpy_2_and_1() {
    numpy_corpus("2");
}
