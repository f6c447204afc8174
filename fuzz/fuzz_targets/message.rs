//! Message, id, registration and result parsing with arbitrary text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    academy::fuzzing::message(data);
});
