//! The SSE parser with arbitrary bytes, fed in arbitrary pieces.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    academy::fuzzing::sse(data);
});
