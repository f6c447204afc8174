//! Speed of the pickle codec (src/wire/pickle): numpy arrays and nested
//! dicts/lists, pickle -> JSON form -> pickle, in MB/s of pickle bytes.
//!
//!     cargo run --release --example pickle_codec [REPS]
//!
//! Inputs are made here: float64 arrays of 256 KiB and 8 MiB as numpy
//! writes them with protocol 4 (`_reconstruct`) and 5 (`_frombuffer` with
//! the data in a `BYTEARRAY8`), and a dict of 2,000 records (str keys,
//! ints, floats, str, lists, None, bool) as academy-py's kwargs might be,
//! also without its floats.
//! Each case runs REPS times (default 20) after one warm-up; the median
//! and the best are printed, and beside them serde_json parsing the JSON
//! form's text (in MB/s of its text) as a yardstick of the machine.

use std::time::Instant;

use academy::wire::pickle::{from_json_form, to_json_form, Limits};
use serde_json::{json, Map, Value};

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    println!("pickle codec, {reps} repetitions each (MB/s of pickle bytes: median, best)");
    for size in [256 << 10, 8 << 20] {
        let data: Vec<u8> = (0..size / 8)
            .flat_map(|i| (i as f64 * 0.5).to_le_bytes())
            .collect();
        let p4 = array_pickle(&data);
        let p5 = frombuffer_pickle(&data);
        let label = format!("{} KiB float64", size >> 10);
        run(&format!("{label}, protocol 4"), &p4, reps);
        run(&format!("{label}, protocol 5"), &p5, reps);
    }
    run("nested dicts/lists", &records_pickle(2000, true), reps);
    // Floats cost most: Python's repr of each (pyjson::float).
    run(
        "nested dicts/lists, no floats",
        &records_pickle(2000, false),
        reps,
    );
}

/// Decode, encode and both, each timed over the same pickle.
fn run(name: &str, pickle: &[u8], reps: usize) {
    let limits = Limits::for_size(pickle.len());
    let form = to_json_form(pickle, &limits).expect("decodes");
    let written = from_json_form(&form).expect("encodes");
    assert_eq!(
        to_json_form(&written, &limits).expect("decodes again"),
        form
    );
    let decode = time(reps, || drop(to_json_form(pickle, &limits).unwrap()));
    let encode = time(reps, || drop(from_json_form(&form).unwrap()));
    let both = time(reps, || {
        let v = to_json_form(pickle, &limits).unwrap();
        drop(from_json_form(&v).unwrap());
    });
    // What this machine does with the same value as JSON text, for scale.
    let text = form.to_string();
    let json = time(reps, || drop(serde_json::from_str::<Value>(&text).unwrap()));
    let rate = |t| text_rate(pickle.len(), t);
    println!(
        "{name:30} {:>8} B  decode {}  encode {}  round trip {}  | serde_json parses its form at {}",
        pickle.len(),
        rate(decode),
        rate(encode),
        rate(both),
        text_rate(text.len(), json),
    );
}

/// MB/s of `bytes` for (median, best) seconds.
fn text_rate(bytes: usize, (median, best): (f64, f64)) -> String {
    let mb = bytes as f64 / 1e6;
    format!("{:6.0} {:6.0}", mb / median, mb / best)
}

/// (median, best) seconds of `reps` runs after a warm-up.
fn time(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[0])
}

fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A 1-d float64 array as numpy pickles it with protocol 4.
fn array_pickle(data: &[u8]) -> Vec<u8> {
    let form = json!({"py/ndarray": {"dtype": "<f8", "shape": [data.len() / 8], "order": "C", "data": b64(data)}});
    from_json_form(&form).unwrap()
}

/// The same with protocol 5: `_frombuffer(bytearray, dtype, shape, "C")`.
fn frombuffer_pickle(data: &[u8]) -> Vec<u8> {
    let mut p = b"\x80\x05\x8c\x13numpy._core.numeric\x8c\x0b_frombuffer\x93(\x96".to_vec();
    p.extend((data.len() as u64).to_le_bytes());
    p.extend(data);
    p.extend(b"\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02f8\x89\x88\x87R(K\x03\x8c\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb");
    p.extend(b"J");
    p.extend(((data.len() / 8) as i32).to_le_bytes());
    p.extend(b"\x85\x8c\x01Ct\x94R.");
    p
}

/// A dict of `n` records, with a float each or not.
fn records_pickle(n: usize, floats: bool) -> Vec<u8> {
    let mut m = Map::new();
    for i in 0..n {
        m.insert(
            format!("record-{i}"),
            json!({
                "id": i,
                "name": format!("name number {i}"),
                "score": if floats { json!(i as f64 / 7.0) } else { json!(i * 7) },
                "ok": i % 2 == 0,
                "tags": ["alpha", "beta", i],
                "parent": null,
                "nested": {"depth": [1, [2, [3]]]},
            }),
        );
    }
    from_json_form(&Value::Object(m)).unwrap()
}
