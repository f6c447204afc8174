//! Replays the fuzz corpus and every input the fuzzers ever crashed on
//! (fuzz/corpus, fuzz/regressions) through the fuzz entry points.

use std::path::Path;

fn replay(dir: &Path, run: fn(&[u8])) -> usize {
    let mut n = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_file() {
            run(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    n
}

#[test]
fn the_corpus_and_past_crashes_stay_fixed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0;
    for (target, run) in [
        ("sse_parser", academy::fuzzing::sse as fn(&[u8])),
        ("message", academy::fuzzing::message),
        ("options", academy::fuzzing::options),
    ] {
        total += replay(&root.join("corpus").join(target), run);
        total += replay(&root.join("regressions").join(target), run);
    }
    assert!(total >= 10, "the seed corpus is there ({total} inputs)");
}
