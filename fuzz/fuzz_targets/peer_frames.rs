//! The hybrid exchange's peer frame reader with arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    academy::fuzzing::peer_frames(data);
});
