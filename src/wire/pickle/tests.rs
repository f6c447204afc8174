//! The codec on pickles Python writes (bytes taken from CPython 3.11 and
//! numpy) and on hostile ones.

use serde_json::{json, Value};

use super::*;

fn decode(p: &[u8]) -> Value {
    to_json_form(p, &Limits::for_size(p.len())).unwrap_or_else(|e| panic!("{p:?}: {e}"))
}

fn decode_err(p: &[u8]) -> String {
    match to_json_form(p, &Limits::for_size(p.len())) {
        Ok(v) => panic!("{p:?} decoded to {v}"),
        Err(e) => e.to_string(),
    }
}

/// Decodes, and checks that the re-encoded pickle decodes the same.
fn round(p: &[u8]) -> Value {
    let v = decode(p);
    let again = from_json_form(&v).unwrap_or_else(|e| panic!("{v}: {e}"));
    assert_eq!(decode(&again), v, "re-encoded {again:?}");
    v
}

#[test]
fn plain_values() {
    assert_eq!(round(b"\x80\x04N."), json!(null));
    assert_eq!(round(b"I01\n."), json!(true));
    assert_eq!(
        round(b"\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02e."),
        json!([1, 2])
    );
}

#[test]
fn truncated_pickles_are_errors_with_the_offset() {
    let e = decode_err(b"\x80\x04X\xff\x00\x00\x00ab");
    assert!(e.contains("truncated") && e.contains("byte 2"), "{e}");
}
