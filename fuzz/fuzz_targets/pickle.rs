//! Pickles (academy-py's default serialization) with arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    academy::fuzzing::pickle(data);
});
