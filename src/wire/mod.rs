//! What travels on the wire, as values and bytes, without I/O: entity ids,
//! Academy messages, JSON written the way Python's `json` writes it,
//! Python's values (pickle, their JSON forms, arrays and bytes as typed
//! buffers), the server-sent-event parser of listen streams, the base32
//! uids of Redis keys, and the names of our exchange's own answer headers.

pub mod base32;
pub mod headers;
pub mod ids;
pub mod message;
pub mod payload;
pub mod pickle;
pub mod pyjson;
pub mod pyvalue;
pub mod sse;
