//! Replays the fuzz corpus and every input the fuzzers ever crashed on
//! (fuzz/corpus, fuzz/regressions) through the fuzz entry points.

use std::path::Path;

/// Runs every file of `dir` through `run`, in name order: the server
/// target's inputs share one exchange, so an input's answer can depend on
/// the ones before it (a mailbox one registers, another listens to), and
/// the order must not change with the file system.
fn replay(dir: &Path, run: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for path in &files {
        run(&std::fs::read(path).unwrap());
    }
    files.len()
}

#[test]
fn the_corpus_and_past_crashes_stay_fixed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0;
    for (target, run) in [
        ("sse_parser", academy::fuzzing::sse as fn(&[u8])),
        ("message", academy::fuzzing::message),
        ("options", academy::fuzzing::options),
        ("http_answer", academy::fuzzing::answer),
        ("pipeline", academy::fuzzing::pipeline),
        ("server_request", academy::fuzzing::server_request),
        ("peer_frames", academy::fuzzing::peer_frames),
        ("pickle", academy::fuzzing::pickle),
    ] {
        total += replay(&root.join("corpus").join(target), run);
        total += replay(&root.join("regressions").join(target), run);
    }
    assert!(total >= 80, "the seed corpus is there ({total} inputs)");
}

/// Each answer of the corpus with a few bytes changed (a small fuzzer
/// without libFuzzer, so that every test run tries new inputs too).
#[test]
fn mutated_answers_keep_the_readers_invariants() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/http_answer");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let input = std::fs::read(entry.path()).unwrap();
        for _ in 0..500 {
            let mut m = input.clone();
            for _ in 0..1 + next() % 4 {
                if m.is_empty() {
                    break;
                }
                let at = next() as usize % m.len();
                match next() % 3 {
                    0 => m[at] = next() as u8,
                    1 => {
                        m.remove(at);
                    }
                    _ => {
                        let tricky = b"\r\n0;: 9fF,";
                        m.insert(at, tricky[next() as usize % tricky.len()])
                    }
                }
            }
            academy::fuzzing::answer(&m);
        }
    }
}
