//! The `busy_poll_us` factory option: a thread blocked on a call to an
//! agent polls for the answer (spending CPU time) for that long before it
//! sleeps, and the library's runtime thread polls meanwhile too; neither
//! at all with 0. Measured while an agent takes 200 ms to answer, on our
//! embedded exchange, from the kernel's scheduler statistics of the calling
//! thread and of the runtime's thread:
//! - a polling thread never sleeps: it is running or waiting for a CPU for
//!   the whole budget, however busy the machine is (CI runs other suites
//!   beside this one on two cores, so the CPU time it gets varies);
//! - its CPU time never goes much past the budget;
//! - a thread that does not poll spends next to no CPU time.

mod common;

use std::ffi::CString;
use std::ptr;
use std::time::Duration;

use academy::ffi::academy_status::ACADEMY_OK;
use common::*;

/// What the kernel's scheduler counted for one thread: seconds on a CPU,
/// and seconds runnable but waiting for one (`/proc/.../schedstat`).
#[derive(Clone, Copy, Default)]
struct Sched {
    cpu_s: f64,
    waiting_s: f64,
}

impl Sched {
    fn read(schedstat: &std::path::Path) -> Sched {
        let text = std::fs::read_to_string(schedstat).unwrap();
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().unwrap());
        let (cpu, waiting) = (fields.next().unwrap(), fields.next().unwrap());
        Sched {
            cpu_s: cpu as f64 / 1e9,
            waiting_s: waiting as f64 / 1e9,
        }
    }

    /// Seconds the thread did not sleep: on a CPU or waiting for one.
    fn awake_s(self) -> f64 {
        self.cpu_s + self.waiting_s
    }

    fn minus(self, before: Sched) -> Sched {
        Sched {
            cpu_s: self.cpu_s - before.cpu_s,
            waiting_s: self.waiting_s - before.waiting_s,
        }
    }

    fn plus(self, other: Sched) -> Sched {
        Sched {
            cpu_s: self.cpu_s + other.cpu_s,
            waiting_s: self.waiting_s + other.waiting_s,
        }
    }
}

/// The calling thread's scheduler statistics.
fn this_thread() -> Sched {
    Sched::read(std::path::Path::new("/proc/thread-self/schedstat"))
}

/// The library's runtime threads' (`academy-rt`) statistics, summed.
fn runtime_threads() -> Sched {
    let mut sum = Sched::default();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() == "academy-rt" {
            sum = sum.plus(Sched::read(&path.join("schedstat")));
        }
    }
    sum
}

/// The scheduler statistics of one request to an agent that answers after
/// 200 ms: of the calling thread, and of the library's runtime thread.
fn sched_of_a_slow_call(url: &str, options: &str) -> (Sched, Sched) {
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
    let (before, runtime_before) = (this_thread(), runtime_threads());
    user.request(&agent_id, r#"{"kind": "ping-request"}"#, 10.0)
        .unwrap();
    let spent = this_thread().minus(before);
    let runtime_spent = runtime_threads().minus(runtime_before);
    answering.join().unwrap();
    (spent, runtime_spent)
}

#[test]
fn a_blocked_call_polls_for_as_long_as_asked_and_not_at_all_with_zero() {
    let url = shared_embedded_exchange();
    let (caller, runtime) = sched_of_a_slow_call(&url, r#"{"busy_poll_us": 50000}"#);
    let (caller_asleep, runtime_asleep) = sched_of_a_slow_call(&url, r#"{"busy_poll_us": 0}"#);
    for (who, polling, sleeping) in [
        ("calling", caller, caller_asleep),
        ("runtime", runtime, runtime_asleep),
    ] {
        println!(
            "{who} thread: polling 50 ms: CPU {:.4} s, waiting for a CPU {:.4} s; \
             not polling: CPU {:.4} s, waiting {:.4} s",
            polling.cpu_s, polling.waiting_s, sleeping.cpu_s, sleeping.waiting_s
        );
    }
    // Polling keeps the calling thread off its sleep for the whole 50 ms
    // budget (a little less is clock granularity), and its CPU time never
    // goes much past the budget.
    assert!(
        caller.awake_s() > 0.040,
        "polled only {} s",
        caller.awake_s()
    );
    assert!(
        caller.cpu_s < 0.150,
        "polled {} s of a 50 ms budget",
        caller.cpu_s
    );
    assert!(
        caller_asleep.cpu_s < 0.005,
        "a call that sleeps at once spent {} s",
        caller_asleep.cpu_s
    );
    // The runtime thread polls for up to twice the budget (acknowledgement,
    // then answer) while the call waits, and idles without it.
    assert!(
        runtime.awake_s() > 0.040,
        "the runtime polled only {} s",
        runtime.awake_s()
    );
    assert!(
        runtime.cpu_s < 0.250,
        "the runtime polled {} s",
        runtime.cpu_s
    );
    assert!(
        runtime_asleep.cpu_s < 0.005,
        "the runtime spent {} s",
        runtime_asleep.cpu_s
    );
}
