//! The embedded exchange server.
