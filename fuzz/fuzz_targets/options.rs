//! Factory and server options with arbitrary text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    academy::fuzzing::options(data);
});
