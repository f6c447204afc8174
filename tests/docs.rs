//! `make docs`: Doxygen renders include/academy.h (scripts/test.sh
//! installs doxygen). The test fails while Doxygen warns, for instance
//! about a function whose parameters or return value the header does not
//! document (Doxyfile sets WARN_NO_PARAMDOC), and prints the warnings.

mod common;

use std::process::Command;

use common::repo;

#[test]
fn the_c_api_manual_renders_without_warnings() {
    let dir = std::env::temp_dir().join(format!("academy-docs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new("make")
        .args(["-s", "docs"])
        .arg(format!("DOCDIR={}", dir.display()))
        .current_dir(repo())
        .output()
        .expect("run make docs");
    assert!(
        out.status.success(),
        "make docs failed (doxygen is needed: scripts/test.sh installs it):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The manual: a page for the header with every function on it.
    let page = std::fs::read_to_string(dir.join("html/academy_8h.html")).unwrap();
    for f in [
        "academy_http_factory_new",
        "academy_client_action",
        "academy_agent_serve",
    ] {
        assert!(page.contains(f), "{f} is not in the manual");
    }
    // A page for each group of functions (the @defgroup blocks of the
    // header), each with one of its functions on it.
    for (group, function) in [
        ("factory", "academy_http_factory_new"),
        ("client", "academy_client_send"),
        ("calls", "academy_client_action_async"),
        ("serving", "academy_reply_ok"),
        ("queue", "academy_queue_poll"),
        ("messages", "academy_message_new"),
        ("pyvalues", "academy_ndarray_read"),
        ("exchange", "academy_exchange_spawn"),
        ("basics", "academy_last_error"),
    ] {
        let path = dir.join(format!("html/group__{group}.html"));
        let page = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no page for the group {group} ({}): {e}", path.display()));
        assert!(
            page.contains(function),
            "{function} is not on {group}'s page"
        );
    }
    // The rules every function follows are on the header's page.
    for rule in [
        "Thread-safety",
        "academy_string_free",
        "ACADEMY_ERR_INTERNAL",
    ] {
        assert!(page.contains(rule), "the header's page lacks {rule:?}");
    }

    let index = std::fs::read_to_string(dir.join("html/index.html")).unwrap();
    assert!(
        index.contains(env!("CARGO_PKG_VERSION")),
        "the version is on the main page"
    );

    let log = std::fs::read_to_string(dir.join("warnings.log")).unwrap();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("warning:")).collect();
    assert!(
        warnings.is_empty(),
        "Doxygen printed {} warnings on include/academy.h:\n{}",
        warnings.len(),
        log
    );
}
