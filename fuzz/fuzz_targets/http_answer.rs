//! The client's HTTP/1.1 answer reader with arbitrary bytes, whole and in pieces.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    academy::fuzzing::answer(data);
});
