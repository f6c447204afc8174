//! Shared test support: [`procs`] starts the processes tests run against
//! (academy-py's exchange and ours, Redis, Python peers), [`capi`] wraps
//! the C functions so that tests read as the C API is used.
#![allow(dead_code, unused_imports)]

pub mod agent;
pub mod capi;
pub mod procs;
pub mod python_calc;

pub use agent::*;
pub use capi::*;
pub use procs::*;
pub use python_calc::*;
