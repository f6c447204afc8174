//! Authorization headers for `auth_method: "globus"`.
//!
//! academy-py gets a bearer token for the Academy exchange scope from
//! Globus Auth. The client-credentials flow (`ACADEMY_GLOBUS_CLIENT_ID`,
//! `ACADEMY_GLOBUS_CLIENT_SECRET`) is not implemented yet: asking for it
//! is a clear error at factory creation, never a silent anonymous client.
//! Until then, pass a token yourself in `additional_headers`
//! (`{"Authorization": "Bearer ..."}`).

use reqwest::header::HeaderMap;

use crate::error::{Error, Result};
use crate::options::FactoryOptions;

/// The headers that authenticate requests for `auth_method: "globus"`.
pub fn globus_headers(_options: &FactoryOptions) -> Result<HeaderMap> {
    Err(Error::invalid(
        "auth_method \"globus\" is not supported yet; pass {\"Authorization\": \"Bearer <token>\"} in additional_headers",
    ))
}
