//! The pipelined connection of background sends with arbitrary server bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    academy::fuzzing::pipeline(data);
});
