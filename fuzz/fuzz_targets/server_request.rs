//! The exchange's request handling (routes and bodies) with arbitrary requests.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    academy::fuzzing::server_request(data);
});
