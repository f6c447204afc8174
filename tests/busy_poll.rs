//! The `busy_poll_us` factory option: a thread blocked on a call to an
//! agent polls for the answer (spending CPU time) for that long before it
//! sleeps, and the library's runtime thread polls meanwhile too; neither
//! at all with 0. Measured by the CPU time of the calling thread and of the
//! runtime's thread while an agent takes 200 ms to answer, on our embedded
//! exchange.

mod common;

use std::ffi::CString;
use std::ptr;
use std::time::Duration;

use academy::ffi::academy_status::ACADEMY_OK;
use common::*;

/// CPU seconds the calling thread has used.
fn thread_cpu_s() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) },
        0
    );
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// CPU seconds the library's runtime threads (`academy-rt`) have used.
fn runtime_cpu_s() -> f64 {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() == "academy-rt" {
            let stat = std::fs::read_to_string(path.join("schedstat")).unwrap();
            ns += stat
                .split_whitespace()
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap();
        }
    }
    ns as f64 / 1e9
}

/// The CPU time of one request to an agent that answers after 200 ms: in
/// the calling thread, and in the library's runtime thread.
fn cpu_of_a_slow_call(url: &str, options: &str) -> (f64, f64) {
    let factory = Factory::new(url, Some(options)).unwrap();
    let user = factory.user(None).unwrap();
    let registration = user.register_agent("test.Slow", None).unwrap();
    let agent = factory.agent(&registration).unwrap();
    let agent_id = agent_id_of(&registration);
    let answering = std::thread::spawn(move || {
        let request = agent.recv(10.0).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let (request, body) = (
            CString::new(request).unwrap(),
            c(r#"{"kind": "ping-response"}"#),
        );
        let mut response = ptr::null_mut();
        let status = unsafe {
            academy::ffi::messages::academy_message_response(
                request.as_ptr(),
                body.as_ptr(),
                &mut response,
            )
        };
        assert_eq!(status, ACADEMY_OK, "{}", last_error());
        agent.send(&take_string(response)).unwrap();
    });
    let (before, runtime_before) = (thread_cpu_s(), runtime_cpu_s());
    user.request(&agent_id, r#"{"kind": "ping-request"}"#, 10.0)
        .unwrap();
    let spent = thread_cpu_s() - before;
    let runtime_spent = runtime_cpu_s() - runtime_before;
    answering.join().unwrap();
    (spent, runtime_spent)
}

#[test]
fn a_blocked_call_polls_for_as_long_as_asked_and_not_at_all_with_zero() {
    let url = shared_embedded_exchange();
    // A polling thread yields the CPU to every other runnable thread in
    // each turn, so on a machine busy with other work it gets little CPU
    // time: up to three tries, keeping the most polling seen (and the most
    // CPU spent without polling, for the other bounds).
    let (mut polled, mut runtime_polled, mut slept, mut runtime_slept) =
        (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for _ in 0..3 {
        let (p, rp) = cpu_of_a_slow_call(&url, r#"{"busy_poll_us": 50000}"#);
        let (s, rs) = cpu_of_a_slow_call(&url, r#"{"busy_poll_us": 0}"#);
        (polled, runtime_polled) = (polled.max(p), runtime_polled.max(rp));
        (slept, runtime_slept) = (slept.max(s), runtime_slept.max(rs));
        if polled > 0.010 && runtime_polled > 0.010 {
            break;
        }
    }
    println!("CPU of the calling thread: polling 50 ms {polled:.4} s, not polling {slept:.4} s");
    println!(
        "CPU of the runtime thread: polling 50 ms {runtime_polled:.4} s, not polling {runtime_slept:.4} s"
    );
    // Polling for 50 ms spends a good part of it on this thread's CPU
    // (less if the machine is busy), never much more than the budget.
    assert!(polled > 0.010, "polled only {polled} s");
    assert!(polled < 0.150, "polled {polled} s of a 50 ms budget");
    assert!(slept < 0.005, "a call that sleeps at once spent {slept} s");
    // The runtime thread polls for up to twice the budget (acknowledgement,
    // then answer) while the call waits, and idles without it.
    assert!(
        runtime_polled > 0.010,
        "the runtime polled only {runtime_polled} s"
    );
    assert!(
        runtime_polled < 0.250,
        "the runtime polled {runtime_polled} s"
    );
    assert!(runtime_slept < 0.005, "the runtime spent {runtime_slept} s");
}
