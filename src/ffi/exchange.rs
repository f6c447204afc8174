//! `academy_exchange`: the embedded exchange server.
