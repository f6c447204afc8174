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
