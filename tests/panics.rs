//! A panic inside libacademy prints nothing on the host program's stderr
//! (its text goes to `academy_last_error`); the host program's own panics
//! still reach the panic hook it installed. Each case runs in a child
//! process (this test binary again), whose stderr is read whole.

use std::process::Command;

const CHILD: &str = "ACADEMY_PANICS_CHILD";

/// The child's part: the host installs a hook of its own, then a panic
/// inside the library and one outside it.
fn child() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "HOST HOOK: {}",
            info.payload().downcast_ref::<&str>().unwrap_or(&"?")
        );
    }));
    let inside =
        academy::panics::quiet(|| std::panic::catch_unwind(|| panic!("inside the library")));
    assert!(inside.is_err());
    let text = academy::panics::take_last().expect("the text is kept");
    assert!(text.contains("inside the library"), "{text}");
    println!("KEPT: {text}");
    let outside = std::panic::catch_unwind(|| panic!("the host's own"));
    assert!(outside.is_err());
    assert!(academy::panics::take_last().is_none());
    // A library thread: its panics are not printed either.
    let t = std::thread::spawn(|| {
        academy::panics::mark_library_thread();
        panic!("on a library thread");
    });
    assert!(t.join().is_err());
}

#[test]
fn panics_inside_the_library_stay_off_the_hosts_stderr() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "panics_inside_the_library_stay_off_the_hosts_stderr",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("KEPT: inside the library (at tests/panics.rs:"),
        "{stdout}"
    );
    assert!(stderr.contains("HOST HOOK: the host's own"), "{stderr}");
    for quiet in ["inside the library", "on a library thread"] {
        assert!(!stderr.contains(quiet), "printed: {stderr}");
    }
}
