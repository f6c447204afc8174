//! libacademy: take part in [Academy](https://academy-agents.org) multi-agent
//! systems from any language that can call C.
//!
//! The crate is a safe async Rust library on its own (ids and messages,
//! the HTTP transport, clients with their listener and heartbeat, serving
//! agents, and an embedded exchange server) with a thin C layer in [`ffi`]
//! on top. Wire behaviour follows academy-py 1.0.0.

pub mod agent;
pub mod auth;
pub mod client;
mod direct;
pub mod error;
pub mod ffi;
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
mod in_flight;
pub mod message;
pub mod options;
mod pipeline;
pub mod pyjson;
pub mod runtime;
pub mod server;
pub mod sse;
pub mod transport;

pub use client::{Client, Factory, MailboxStatus};
pub use error::{Error, Result, Status};
pub use ids::{EntityId, Role};
pub use message::Message;
pub use options::FactoryOptions;

/// The version of this library.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
