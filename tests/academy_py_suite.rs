//! academy-py 1.0.0's own test suite against our exchange: every test of
//! academy-py's that talks to its HTTP exchange (the ones that use the
//! `http_exchange_server` fixture, `HttpExchangeFactory` or
//! `GlobusExchangeFactory`) runs with that fixture pointed at our
//! `academy-exchange` process instead of the aiohttp app academy-py starts
//! in the test process (`tests/py/academy_suite_plugin.py`).
//!
//! Four tests stay deselected: the `discover` tests expect to find only
//! the agents they registered, which holds only for an exchange started
//! for each test; they fail the same way against academy-py's own exchange
//! run as a process of its own.
//!
//! academy-py's source (its tests are not in the wheel) comes from its
//! sdist on PyPI, and pytest, pytest-asyncio and responses are installed
//! next to it, all under `target/`, once.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const DESELECTED: [&str; 4] = [
    "tests/unit/exchange/transport_test.py::test_transport_discover[HttpExchangeFactory]",
    "tests/unit/exchange/transport_test.py::test_transport_discover[GlobusExchangeFactory]",
    "tests/unit/exchange/client_test.py::test_client_discover[HttpExchangeFactory]",
    "tests/unit/exchange/client_test.py::test_client_discover[GlobusExchangeFactory]",
];

const FILES: [&str; 7] = [
    "tests/unit/handle_test.py",
    "tests/unit/exchange/transport_test.py",
    "tests/unit/exchange/cloud/client_test.py",
    "tests/unit/exchange/client_test.py",
    "tests/unit/exchange/cloud/app_test.py",
    "tests/unit/manager_test.py",
    "tests/unit/runtime_test.py",
];

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// academy-py 1.0.0's source tree, with its tests.
fn source() -> PathBuf {
    let root = repo().join("target/academy-py-suite");
    let tree = root.join("academy_py-1.0.0");
    if tree.join("tests/unit/exchange/client_test.py").exists() {
        return tree;
    }
    std::fs::create_dir_all(&root).unwrap();
    run(
        Command::new(python())
            .args(["-m", "pip", "download", "--no-deps", "--no-binary", ":all:"])
            .args(["academy-py==1.0.0", "-d"])
            .arg(&root),
        "downloading academy-py 1.0.0's sdist from PyPI",
    );
    run(
        Command::new("tar")
            .arg("xzf")
            .arg(root.join("academy_py-1.0.0.tar.gz"))
            .arg("-C")
            .arg(&root),
        "unpacking academy-py's sdist",
    );
    tree
}

/// pytest and the plugins academy-py's tests use, installed once.
fn test_dependencies() -> PathBuf {
    let deps = repo().join("target/academy-py-suite/deps");
    if !deps.join("pytest_asyncio").exists() || !deps.join("responses").exists() {
        run(
            Command::new(python())
                .args(["-m", "pip", "install", "--quiet", "--target"])
                .arg(&deps)
                .args(["pytest", "pytest-asyncio>=1.1", "responses"]),
            "installing pytest, pytest-asyncio and responses",
        );
    }
    deps
}

fn pythonpath(parts: &[&Path]) -> String {
    parts
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn academy_py_tests_pass_against_our_exchange() {
    let tree = source();
    let deps = test_dependencies();
    let exchange = OurExchange::start("");
    let address = exchange.url.trim_start_matches("http://").to_owned();
    let mut pytest = Command::new(python());
    pytest
        .current_dir(&tree)
        .env("ACADEMY_SUITE_EXCHANGE", &address)
        .env(
            "PYTHONPATH",
            pythonpath(&[&deps, &repo().join("tests/py"), &tree]),
        )
        .args(["-m", "pytest", "-p", "academy_suite_plugin", "-p", "no:cacheprovider"])
        .args(["-rA", "-q", "-k"])
        .arg("http_exchange_server or HttpExchangeFactory or GlobusExchangeFactory or http_exchange_factory")
        .args(FILES);
    for test in DESELECTED {
        pytest.arg("--deselect").arg(test);
    }
    let out = pytest.output().expect("run pytest");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let summary = report.lines().last().unwrap_or("").to_owned();
    assert!(
        out.status.success(),
        "academy-py's tests failed against our exchange: {summary}\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed: usize = summary
        .split_whitespace()
        .zip(summary.split_whitespace().skip(1))
        .find(|(_, word)| word.starts_with("passed"))
        .and_then(|(n, _)| n.trim_start_matches('=').trim().parse().ok())
        .unwrap_or(0);
    assert!(passed >= 60, "only {passed} tests ran: {summary}");
    assert!(
        !summary.contains("failed") && !summary.contains("error"),
        "{summary}"
    );
    for must in [
        "test_user_client_reply_on_incompatible_protocol[HttpExchangeFactory]",
        "test_agent_client_reply_on_incompatible_protocol[HttpExchangeFactory]",
    ] {
        assert!(
            report.contains(&format!(
                "PASSED tests/unit/exchange/client_test.py::{must}"
            )),
            "{must} did not pass:\n{report}"
        );
    }
}
