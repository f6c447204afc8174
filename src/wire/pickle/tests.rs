//! The codec on pickles Python writes (taken from CPython 3.11 with numpy
//! 2.4, and the JSON form tests/py/pickle_corpus.py's reference converter
//! gives for them) and on hostile ones.

use serde_json::{json, Value};

use super::*;
use crate::wire::pyjson;

fn decode(p: &[u8]) -> Value {
    to_json_form(p, &Limits::for_size(p.len())).unwrap_or_else(|e| panic!("{p:?}: {e}"))
}

fn decode_err(p: &[u8]) -> String {
    match to_json_form(p, &Limits::for_size(p.len())) {
        Ok(v) => panic!("{p:?} decoded to {v}"),
        Err(e) => {
            assert_eq!(e.status, crate::error::Status::Protocol);
            e.to_string()
        }
    }
}

/// Decodes, and checks that the re-encoded pickle decodes the same.
fn round(p: &[u8]) -> Value {
    let v = decode(p);
    let again = from_json_form(&v).unwrap_or_else(|e| panic!("{v}: {e}"));
    assert_eq!(decode(&again), v, "re-encoded {again:?}");
    v
}

/// (pickle, the JSON form the reference converter expects).
const PYTHON_PICKLES: &[(&[u8], &str)] = &[
    // tuple, protocol 4
    (b"\x80\x04\x95\x0c\x00\x00\x00\x00\x00\x00\x00K\x01\x8c\x01a\x94\x86\x94)\x86\x94.", r#"{"py/tuple": [{"py/tuple": [1, "a"]}, {"py/tuple": []}]}"#),
    // set, protocol 4
    (b"\x80\x04\x95\x07\x00\x00\x00\x00\x00\x00\x00\x8f\x94(K\x01\x90.", r#"{"py/set": [1]}"#),
    // set, protocol 2
    (b"\x80\x02c__builtin__\x0aset\x0aq\x00]q\x01K\x01a\x85q\x02Rq\x03.", r#"{"py/set": [1]}"#),
    // frozenset, protocol 4
    (b"\x80\x04\x95\x08\x00\x00\x00\x00\x00\x00\x00(\x8c\x01x\x94\x91\x94.", r#"{"py/frozenset": ["x"]}"#),
    // frozenset, protocol 1
    (b"c__builtin__\x0afrozenset\x0aq\x00(]q\x01X\x01\x00\x00\x00xq\x02atq\x03Rq\x04.", r#"{"py/frozenset": ["x"]}"#),
    // bytes, protocol 4
    (b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00C\x02\x00\xff\x94.", r#"{"py/bytes": "AP8="}"#),
    // bytes, protocol 2
    (b"\x80\x02c_codecs\x0aencode\x0aq\x00X\x03\x00\x00\x00\x00\xc3\xbfq\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.", r#"{"py/bytes": "AP8="}"#),
    // bytes, protocol 2
    (b"\x80\x02c__builtin__\x0abytes\x0aq\x00)Rq\x01.", r#"{"py/bytes": ""}"#),
    // bytearray, protocol 5
    (b"\x80\x05\x95\x0d\x00\x00\x00\x00\x00\x00\x00\x96\x02\x00\x00\x00\x00\x00\x00\x00ab\x94.", r#"{"py/bytearray": "YWI="}"#),
    // bytearray, protocol 2
    (b"\x80\x02c__builtin__\x0abytearray\x0aq\x00c_codecs\x0aencode\x0aq\x01X\x02\x00\x00\x00abq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05\x85q\x06Rq\x07.", r#"{"py/bytearray": "YWI="}"#),
    // complex, protocol 4
    (b"\x80\x04\x95.\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x07complex\x94\x93\x94G?\xf0\x00\x00\x00\x00\x00\x00G\xc0\x00\x00\x00\x00\x00\x00\x00\x86\x94R\x94.", r#"{"py/complex": [1.0, -2.0]}"#),
    // dict, protocol 4
    (b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94(K\x01\x8c\x01a\x94K\x02\x85\x94Nu.", r#"{"py/dict": [[1, "a"], [{"py/tuple": [2]}, null]]}"#),
    // float, protocol 4
    (b"\x80\x04\x95+\x00\x00\x00\x00\x00\x00\x00]\x94(G\x7f\xf8\x00\x00\x00\x00\x00\x00G\x80\x00\x00\x00\x00\x00\x00\x00GCA\xc3y7\xe0\x80\x00\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@e.", r#"[NaN, -0.0, 1e+16, 1180591620717411303424]"#),
    // str, protocol 0
    (b"Vh\xe9\x5cU0001f600\x0ap0\x0a.", r#""h\u00e9\ud83d\ude00""#),
    // ndarray, protocol 4
    (b"\x80\x04\x95\x9b\x00\x00\x00\x00\x00\x00\x00\x8c\x16numpy._core.multiarray\x94\x8c\x0c_reconstruct\x94\x93\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94(K\x01K\x02K\x02\x86\x94h\x03\x8c\x05dtype\x94\x93\x94\x8c\x02f4\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x89C\x10\x00\x00\x00\x00\x00\x00\x80?\x00\x00\x00@\x00\x00@@\x94t\x94b.", r#"{"py/ndarray": {"dtype": "<f4", "shape": [2, 2], "order": "C", "data": "AAAAAAAAgD8AAABAAABAQA=="}}"#),
    // ndarray, protocol 5
    (b"\x80\x05\x95\x82\x00\x00\x00\x00\x00\x00\x00\x8c\x13numpy._core.numeric\x94\x8c\x0b_frombuffer\x94\x93\x94(\x96\x0c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x01\x00\x04\x00\x02\x00\x05\x94\x8c\x05numpy\x94\x8c\x05dtype\x94\x93\x94\x8c\x02i2\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01>\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94bK\x02K\x03\x86\x94\x8c\x01F\x94t\x94R\x94.", r#"{"py/ndarray": {"dtype": ">i2", "shape": [2, 3], "order": "F", "data": "AAAAAwABAAQAAgAF"}}"#),
    // ndarray, protocol 2
    (b"\x80\x02cnumpy._core.multiarray\x0a_reconstruct\x0aq\x00cnumpy\x0andarray\x0aq\x01K\x00\x85q\x02c_codecs\x0aencode\x0aq\x03X\x01\x00\x00\x00bq\x04X\x06\x00\x00\x00latin1q\x05\x86q\x06Rq\x07\x87q\x08Rq\x09(K\x01K\x03\x85q\x0acnumpy\x0adtype\x0aq\x0bX\x02\x00\x00\x00u1q\x0c\x89\x88\x87q\x0dRq\x0e(K\x03X\x01\x00\x00\x00|q\x0fNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x10b\x89h\x03X\x03\x00\x00\x00\x00\x01\x02q\x11h\x05\x86q\x12Rq\x13tq\x14b.", r#"{"py/ndarray": {"dtype": "|u1", "shape": [3], "order": "C", "data": "AAEC"}}"#),
    // npscalar, protocol 4
    (b"\x80\x04\x95f\x00\x00\x00\x00\x00\x00\x00\x8c\x16numpy._core.multiarray\x94\x8c\x06scalar\x94\x93\x94\x8c\x05numpy\x94\x8c\x05dtype\x94\x93\x94\x8c\x02f4\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94bC\x04\x00\x00\x00?\x94\x86\x94R\x94.", r#"{"py/npscalar": {"dtype": "<f4", "value": 0.5}}"#),
    // npscalar, protocol 2
    (b"\x80\x02cnumpy._core.multiarray\x0ascalar\x0aq\x00cnumpy\x0adtype\x0aq\x01X\x03\x00\x00\x00c16q\x02\x89\x88\x87q\x03Rq\x04(K\x03X\x01\x00\x00\x00<q\x05NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x06bc_codecs\x0aencode\x0aq\x07X\x11\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc3\xb0?\x00\x00\x00\x00\x00\x00\x00@q\x08X\x06\x00\x00\x00latin1q\x09\x86q\x0aRq\x0b\x86q\x0cRq\x0d.", r#"{"py/npscalar": {"dtype": "<c16", "value": [1.0, 2.0]}}"#),
    // global, protocol 4
    (b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bdefaultdict\x94\x93\x94.", r#"{"py/global": "collections:defaultdict"}"#),
    // object, protocol 4
    (b"\x80\x04\x956\x00\x00\x00\x00\x00\x00\x00\x8c\x0dpickle_values\x94\x8c\x05Point\x94\x93\x94)\x81\x94}\x94(\x8c\x01x\x94K\x01\x8c\x01y\x94G@\x00\x00\x00\x00\x00\x00\x00ub.", r#"{"py/object": "pickle_values:Point", "state": {"x": 1, "y": 2.0}}"#),
    // object, protocol 0
    (b"ccopy_reg\x0a_reconstructor\x0ap0\x0a(cpickle_values\x0aPoint\x0ap1\x0ac__builtin__\x0aobject\x0ap2\x0aNtp3\x0aRp4\x0a(dp5\x0aVx\x0ap6\x0aI1\x0asVy\x0ap7\x0aF2.0\x0asb.", r#"{"py/object": "pickle_values:Point", "state": {"x": 1, "y": 2.0}}"#),
    // reduce, protocol 4
    (b"\x80\x04\x95!\x00\x00\x00\x00\x00\x00\x00\x8c\x0dpickle_values\x94\x8c\x05Color\x94\x93\x94K\x01\x85\x94R\x94.", r#"{"py/reduce": {"callable": "pickle_values:Color", "args": [1]}}"#),
    // reduce, protocol 4
    (b"\x80\x04\x95)\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94\x8c\x01a\x94K\x01s.", r#"{"py/reduce": {"callable": "collections:OrderedDict", "args": [], "dictitems": [["a", 1]]}}"#),
    // reduce, protocol 2
    (b"\x80\x02cdatetime\x0adate\x0aq\x00c_codecs\x0aencode\x0aq\x01X\x05\x00\x00\x00\x07\xc3\xa4\x01\x02q\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05\x85q\x06Rq\x07.", r#"{"py/reduce": {"callable": "datetime:date", "args": [{"py/bytes": "B+QBAg=="}]}}"#),
    // list_subclass, protocol 4
    (b"\x80\x04\x95<\x00\x00\x00\x00\x00\x00\x00\x8c\x0dpickle_values\x94\x8c\x06Tagged\x94\x93\x94)\x81\x94(K\x01\x8c\x03two\x94K\x03\x85\x94e}\x94\x8c\x04note\x94\x8c\x01n\x94sb.", r#"{"py/object": "pickle_values:Tagged", "listitems": [1, "two", {"py/tuple": [3]}], "state": {"note": "n"}}"#),
    // nested_class, protocol 2
    (b"\x80\x02c__builtin__\x0agetattr\x0aq\x00cpickle_values\x0aOuter\x0aq\x01X\x05\x00\x00\x00Innerq\x02\x86q\x03Rq\x04.", r#"{"py/global": "pickle_values:Outer.Inner"}"#),
    // surrogate, protocol 4
    (b"\x80\x04\x95\x08\x00\x00\x00\x00\x00\x00\x00\x8c\x04a\xed\xa0\x80\x94.", r#"{"py/reduce": {"callable": "_codecs:decode", "args": [{"py/bytes": "Ye2ggA=="}, "utf-8", "surrogatepass"]}}"#),
    // kw_only, protocol 4
    (b"\x80\x04\x953\x00\x00\x00\x00\x00\x00\x00\x8c\x0dpickle_values\x94\x8c\x06KwOnly\x94\x93\x94)}\x94\x8c\x04size\x94K\x03s\x92\x94}\x94h\x04K\x03sb.", r#"{"py/object": "pickle_values:KwOnly", "kwargs": {"size": 3}, "state": {"size": 3}}"#),
];

#[test]
fn every_form_from_python_pickles() {
    for (pickle, expected) in PYTHON_PICKLES {
        let expected = pyjson::loads(expected).unwrap();
        assert_eq!(round(pickle), expected, "{pickle:?}");
    }
}

#[test]
fn plain_json_round_trips_as_plain_python() {
    let v = pyjson::loads(
        r#"{"a": [1, -2, 3.5, "x", null, true, false, {}], "b": {"c": []}, "big": 123456789012345678901234567890, "neg": -18446744073709551617, "nan": NaN, "inf": -Infinity, "z": -0.0, "e": 1e-05}"#,
    )
    .unwrap();
    let p = from_json_form(&v).unwrap();
    assert_eq!(decode(&p), v);
    assert!(!has_py_form(&v));
    // A JSON list is a Python list, a JSON object a dict: no form.
    assert!(p.contains(&ops::EMPTY_LIST) && p.contains(&ops::EMPTY_DICT));
}

#[test]
fn every_int_size_round_trips() {
    for text in [
        "0",
        "255",
        "256",
        "65535",
        "65536",
        "-1",
        "2147483647",
        "2147483648",
        "-2147483648",
        "-2147483649",
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
        "340282366920938463463374607431768211456",
    ] {
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(decode(&from_json_form(&v).unwrap()), v, "{text}");
    }
    let huge: Value = serde_json::from_str(&"7".repeat(4300)).unwrap();
    assert_eq!(decode(&from_json_form(&huge).unwrap()), huge);
    let too_big: Value = serde_json::from_str(&"7".repeat(4301)).unwrap();
    assert!(from_json_form(&too_big).is_err());
    // LONG4 of 2000 bytes: more digits than Python converts to text.
    let mut p = b"\x80\x04\x8b\xd0\x07\x00\x00".to_vec();
    p.extend(vec![0x11; 2000]);
    p.push(b'.');
    assert!(decode_err(&p).contains("digits"));
}

#[test]
fn forms_written_from_json_load_back() {
    for text in [
        r#"{"py/tuple": [1, {"py/tuple": []}, {"py/set": [1, 2]}, {"py/frozenset": []}]}"#,
        r#"{"py/dict": [[1, "a"], [{"py/tuple": [1, 2]}, null], ["py/x", 2]]}"#,
        r#"{"py/bytes": "AAEC/w=="}"#,
        r#"{"py/bytearray": ""}"#,
        r#"{"py/complex": [1.5, -Infinity]}"#,
        r#"{"py/ndarray": {"dtype": ">f8", "shape": [2, 1], "order": "F", "data": "P/AAAAAAAABAAAAAAAAAAA=="}}"#,
        r#"{"py/ndarray": {"dtype": "|b1", "shape": [], "order": "C", "data": "AQ=="}}"#,
        r#"{"py/npscalar": {"dtype": "<u8", "value": 18446744073709551615}}"#,
        r#"{"py/npscalar": {"dtype": "<c8", "value": [0.5, -0.25]}}"#,
        r#"{"py/npscalar": {"dtype": "<f2", "value": 0.333251953125}}"#,
        r#"{"py/npscalar": {"dtype": "|b1", "value": false}}"#,
        r#"{"py/global": "pkg.mod:Outer.Inner"}"#,
        r#"{"py/object": "m:C", "args": [1], "kwargs": {"k": 2}, "state": {"a": [1]}, "listitems": [3], "dictitems": [["k", 4]]}"#,
        r#"{"py/reduce": {"callable": "m:f", "args": [], "state": null}}"#,
        r#"{"py/reduce": {"callable": {"py/reduce": {"callable": "builtins:getattr", "args": [{"py/global": "m:C"}, 1]}}, "args": [2]}}"#,
    ] {
        let v = pyjson::loads(text).unwrap();
        let p = from_json_form(&v).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(decode(&p), v, "{text}");
        assert!(has_py_form(&v));
    }
}

#[test]
fn bad_forms_are_errors_that_say_why() {
    for (text, why) in [
        (r#"{"py/tuple": 1}"#, "needs an array"),
        (r#"{"py/nope": []}"#, "unknown form"),
        (r#"{"py/tuple": [], "x": 1}"#, "one form alone"),
        (r#"{"py/bytes": "abc"}"#, "base64"),
        (r#"{"py/bytes": "ab!="}"#, "base64"),
        (
            r#"{"py/ndarray": {"dtype": "<f8", "shape": [2], "order": "C", "data": "AAAA"}}"#,
            "needs 16",
        ),
        (
            r#"{"py/ndarray": {"dtype": "<U8", "shape": [], "order": "C", "data": ""}}"#,
            "dtype",
        ),
        (
            r#"{"py/ndarray": {"dtype": "<f8", "shape": [-1], "order": "C", "data": ""}}"#,
            "shape",
        ),
        (
            r#"{"py/ndarray": {"dtype": "<f8", "shape": [4294967296, 4294967296], "order": "C", "data": ""}}"#,
            "too large",
        ),
        (
            r#"{"py/npscalar": {"dtype": "|i1", "value": 300}}"#,
            "does not fit",
        ),
        (r#"{"py/global": "nocolon"}"#, "module:QualName"),
        (r#"{"py/object": "m:C", "bogus": 1}"#, "does not take"),
        (r#"{"py/reduce": {"args": []}}"#, "needs a callable"),
        (r#"{"py/dict": [[1]]}"#, "pairs"),
    ] {
        let v = pyjson::loads(text).unwrap();
        let e = from_json_form(&v).expect_err(text).to_string();
        assert!(e.contains(why), "{text}: {e}");
    }
}

#[test]
fn truncated_pickles_are_errors_with_the_offset() {
    let e = decode_err(b"\x80\x04X\xff\x00\x00\x00ab");
    assert!(e.contains("truncated") && e.contains("byte 2"), "{e}");
    // Every prefix of a real pickle is an error, never a panic.
    for (pickle, _) in PYTHON_PICKLES {
        for n in 0..pickle.len() - 1 {
            assert!(to_json_form(&pickle[..n], &Limits::for_size(n)).is_err());
        }
    }
}

#[test]
fn malformed_pickles_are_errors() {
    for (p, why) in [
        (&b"\x80\x04\xff."[..], "unknown opcode 0xff"),
        (b"\x80\x09N.", "unsupported protocol"),
        (b"a.", "stack underflow"),
        (b"N\x85\x85\x86.", "stack underflow"),
        (b"(N\x86.", "stack underflow"),
        (b"t.", "no MARK"),
        (b"]N(e\x86.", "APPEND on None"),
        (b"(Nl(.", "stack underflow"),
        (b"}N(Nu.", "odd number"),
        (b"NN\x93.", "STACK_GLOBAL"),
        (b"NNR.", "REDUCE needs a tuple"),
        (b"N)b.", "BUILD on None"),
        (b"](K\x01\x90.", "ADDITEMS on a list"),
        (b"N\x91.", "no MARK"),
        (b"h\x05.", "memo index 5 was never stored"),
        (b"PX\n.", "persistent ids"),
        (b"\x82\x01.", "extension codes"),
        (b"\x97.", "out-of-band buffers"),
        (b"\x8e\xff\xff\xff\xff\xff\xff\xff\x7fab.", "claims"),
        (b"\x96\x00\x00\x00\x00\x01\x00\x00\x00.", "claims"),
        (b"T\xff\xff\xff\xff.", "negative length"),
        (b"\x95\x00\x00\x00\x00\x00\x00\x10\x00N.", "claims"),
        (b"X\x02\x00\x00\x00\xff\xfe.", "not UTF-8"),
        (b"S'\xe9'\n.", "non-ASCII"),
        (b"Iabc\n.", "INT"),
        (b"Fx\n.", "FLOAT"),
        (b"Vab", "newline"),
        (b"N", "truncated"),
        (b"", "truncated"),
        (b"N0\x93.", "stack underflow"),
        (b"cm\nC\n)\x81}b}b.", "after its BUILD"),
        (b"\x8c\x01a)R.", "not callable"),
        (b"K\x01)\x81.", "not callable"),
        (b"C\x01a)R)R.", "not callable"),
    ] {
        let e = decode_err(p);
        assert!(e.contains(why), "{p:?}: {e}");
        assert!(e.contains("byte "), "{p:?}: {e}");
    }
}

#[test]
fn mark_and_pop_follow_python() {
    // POP on an empty stack above a mark removes the mark (as Python).
    assert_eq!(decode(b"N(0\x85."), json!({"py/tuple": [null]}));
    // POP_MARK drops what was pushed since the mark.
    assert_eq!(decode(b"N(NN1."), json!(null));
    // Items left under the result are ignored, as Python does.
    assert_eq!(decode(b"K\x01K\x02."), json!(2));
}

#[test]
fn a_value_that_contains_itself_is_an_error() {
    // l = []; l.append(l)
    let e = decode_err(b"\x80\x04]\x94h\x00a.");
    assert!(e.contains("contains itself"), "{e}");
    // t = ([],); t[0].append(t), via the memo
    let e = decode_err(b"\x80\x04]\x94\x85\x94h\x00h\x01a0h\x01.");
    assert!(e.contains("contains itself"), "{e}");
    // A dict that holds itself as its own state.
    let e = decode_err(b"\x80\x04cm\nC\n)\x81\x94h\x00b.");
    assert!(e.contains("contains itself"), "{e}");
}

#[test]
fn shared_objects_are_copied_and_later_changes_seen() {
    // a = []; b = [a, a]; a.append(1) (the memo refers, it does not copy).
    let v = decode(b"\x80\x04](]\x94h\x00e\x94h\x00K\x01a0.");
    assert_eq!(v, json!([[1], [1]]));
}

#[test]
fn sharing_that_expands_exponentially_hits_the_output_limit() {
    // x0 = []; x(n+1) = [xn, xn], 64 times: 2^64 copies from 800 bytes.
    // Each level: MARK, GET xn twice, LIST, MEMOIZE.
    let mut q = b"\x80\x04]\x94".to_vec();
    for i in 0..64u32 {
        q.push(b'(');
        for _ in 0..2 {
            q.push(b'j');
            q.extend(i.to_le_bytes());
        }
        q.extend(b"l\x94");
    }
    q.push(b'.');
    let start = std::time::Instant::now();
    let e = decode_err(&q);
    assert!(e.contains("larger than"), "{e}");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // 100,000 nested lists: ]( ]( ]( ... then appends.
    let n = 100_000;
    let mut p = b"\x80\x04".to_vec();
    p.extend(std::iter::repeat_n(b']', n));
    p.extend(std::iter::repeat_n(b'a', n - 1));
    p.push(b'.');
    let e = decode_err(&p);
    assert!(e.contains("nested deeper than 1000"), "{e}");
    // The same with tuples, sets and objects (whose forms nest more).
    let mut p = b"\x80\x04)".to_vec();
    p.extend(std::iter::repeat_n(0x85, n));
    p.push(b'.');
    assert!(decode_err(&p).contains("nested deeper"));
    // Just within the limit: a value 1000 deep decodes, re-encodes and drops.
    let mut p = b"\x80\x04".to_vec();
    p.extend(std::iter::repeat_n(b']', 1000));
    p.extend(std::iter::repeat_n(b'a', 999));
    p.push(b'.');
    let v = decode(&p);
    let again = from_json_form(&v).unwrap();
    assert_eq!(decode(&again), v);
    // Dropping the deepest value we make must not need a big stack.
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || drop(v))
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn limits_bound_depth_and_size() {
    let p = b"\x80\x04]]]aa.";
    let tight = Limits {
        max_depth: 2,
        max_output_bytes: 1 << 20,
    };
    assert!(to_json_form(p, &tight).is_err());
    // What the memo shares counts when it is copied, not before.
    let small = Limits {
        max_depth: 100,
        max_output_bytes: 18,
    };
    assert!(to_json_form(b"\x80\x04\x8c\x10abcdefghijklmnop.", &small).is_ok());
    let twice = b"\x80\x04\x8c\x10abcdefghijklmnop\x94h\x00\x86.";
    assert!(to_json_form(twice, &small).is_err());
    // A big pickle without sharing fits its default limits, even where
    // its JSON form is many times its size: 100,000 empty tuples.
    let mut p = b"\x80\x04](".to_vec();
    p.extend(std::iter::repeat_n(b')', 100_000));
    p.extend(b"e.");
    let v = decode(&p);
    assert_eq!(v.as_array().map(Vec::len), Some(100_000));
}

#[test]
fn memo_indices_of_any_size() {
    // LONG_BINPUT with a huge index, then GET it back; PUT text index.
    assert_eq!(
        decode(b"\x80\x04K\x07r\xff\xff\xff\xff0j\xff\xff\xff\xff."),
        json!(7)
    );
    assert_eq!(decode(b"K\x07p99999999999\n0g99999999999\n."), json!(7));
    assert!(decode_err(b"K\x07p-1\n.").contains("PUT"));
}
