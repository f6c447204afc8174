//! What travels on the wire, as values and bytes, without I/O: entity ids,
//! Academy messages, JSON written the way Python's `json` writes it, and the
//! server-sent-event parser of listen streams, the base32 uids of Redis
//! keys, and the names of our exchange's own answer headers.

pub mod base32;
pub mod headers;
pub mod ids;
pub mod message;
pub mod pickle;
pub mod pyjson;
pub mod sse;
