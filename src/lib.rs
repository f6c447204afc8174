//! libacademy: take part in [Academy](https://academy-agents.org) multi-agent
//! systems from any language that can call C.
//!
//! The crate is a safe async Rust library on its own with a thin C layer in
//! [`ffi`] on top. Wire behaviour follows academy-py 1.0.0. Its folders are
//! its layers, and a module only uses the layers below it:
//!
//! | layer | what it holds |
//! |---|---|
//! | [`error`], [`redact`], [`logging`], [`fork`], [`runtime`] | the error type, what error texts may show (never credentials), where the library's log goes, fork tracking, the one tokio runtime |
//! | [`wire`] | ids, messages, Python-compatible JSON, the SSE parser: bytes and values, no I/O |
//! | [`options`] | the factory options |
//! | [`transport`] | the one request path to an exchange (retries, auth, errors) and its HTTP/1.1 client |
//! | [`client`] | factories and clients: listening, calls, background sends, serving agents |
//! | [`server`] | the embedded exchange server |
//! | [`ffi`] | the C ABI: handles, statuses, strings |
//!
//! `tests/layers.rs` fails when a module imports from a layer above it.

pub mod error;
pub mod fork;
pub mod logging;
pub mod panics;
pub mod redact;
pub mod runtime;
pub mod wire;

pub mod options;

pub mod transport;

pub mod client;
pub mod server;

pub mod ffi;

#[doc(hidden)]
pub mod fuzzing;

pub use client::{Client, Factory};
pub use error::{Error, Result, Status};
pub use options::FactoryOptions;
pub use transport::MailboxStatus;
pub use wire::ids::{EntityId, Role};
pub use wire::message::Message;

/// The version of this library.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
