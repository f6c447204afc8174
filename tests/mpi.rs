//! The MPI example (examples-mpi/): 4 ranks of an OpenMPI job each serve a
//! `step` / `state` agent while the simulation runs, and a Python user
//! with the real academy-py (examples-mpi/steer.py) discovers and steers
//! them; once with the exchange started by the launcher script and once
//! with rank 0 starting it in the job (academy_exchange_spawn).
//! scripts/test.sh installs OpenMPI (openmpi-bin, libopenmpi-dev).

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn run_job(args: &[&str]) -> String {
    let mut child = Command::new(repo().join("examples-mpi/run.sh"))
        .args(args)
        .env("PYTHON", python())
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    // Read the output on threads, so a full pipe never stalls the job.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(&mut stdout).unwrap());
    let err = std::thread::spawn(move || std::io::read_to_string(&mut stderr).unwrap());
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // The whole job: the script, mpirun, the ranks, the exchange.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!(
                "examples-mpi/run.sh {args:?} did not end within 240 s:\n{}\n{}",
                out.join().unwrap(),
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.success(),
        "examples-mpi/run.sh {args:?}: {status}\n{out}\n{err}"
    );
    out
}

fn assert_steered(out: &str) {
    for line in [
        "steer: found 4 ranks: [0, 1, 2, 3] of size 4 at steps [0, 0, 0, 0]",
        // Rank r adds r + 1 per step; totals are the MPI_Allreduce sums.
        "steer: step(10): steps [10, 10, 10, 10] values [10, 20, 30, 40] totals [100, 100, 100, 100]",
        // Steered: every rate set to 1.
        "steer: step(5, rate=1): values [15, 25, 35, 45] totals [120, 120, 120, 120]",
        // state() answered while the ranks ran 200 more steps.
        "steer: step(200) seen mid-run: True steps [215, 215, 215, 215] totals [920, 920, 920, 920]",
        "steer: shut down 4 ranks",
        "rank 0: stopped after 215 steps, value 215, total 920",
        "rank 1: stopped after 215 steps, value 225, total 920",
        "rank 2: stopped after 215 steps, value 235, total 920",
        "rank 3: stopped after 215 steps, value 245, total 920",
        "run: done",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in:\n{out}");
    }
}

#[test]
fn a_python_user_steers_every_rank_of_an_mpi_job() {
    let build = Command::new("make")
        .args(["-s", "mpi"])
        .current_dir(repo())
        .output()
        .expect("run make (mpicc is needed: scripts/test.sh installs libopenmpi-dev)");
    assert!(
        build.status.success(),
        "make mpi failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );

    // The launcher starts academy-exchange and passes its URL to the ranks.
    let out = run_job(&["4"]);
    assert!(
        out.contains("run: academy-exchange at http://127.0.0.1:"),
        "{out}"
    );
    assert_steered(&out);

    // Rank 0 starts the exchange inside the job and broadcasts its URL.
    let out = run_job(&["--spawn", "4"]);
    assert!(
        out.contains("run: rank 0 started an exchange at http://127.0.0.1:"),
        "{out}"
    );
    assert_steered(&out);
}
