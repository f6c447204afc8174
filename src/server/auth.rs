//! Authentication of exchange requests (academy-py's
//! `academy.exchange.cloud.authenticate`).

use std::collections::HashMap;

use hyper::header::{HeaderMap, AUTHORIZATION};

/// Who made a request: academy-py's `ClientInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientInfo {
    /// The client's identity; mailboxes are owned by the client id that
    /// created them. The anonymous client is `""`.
    pub client_id: String,
    /// The groups the client belongs to (mailboxes can be shared with them).
    pub groups: Vec<String>,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// Missing or malformed credentials: 401 "Missing required headers.".
    Unauthorized,
    /// Credentials present but not valid (expired, revoked, unknown):
    /// 403 "Token expired or revoked.".
    Forbidden,
}

/// Authenticates a request from its headers. Called for every request, from
/// many threads at once: keep it fast and non-blocking.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate(&self, headers: &HeaderMap) -> Result<ClientInfo, AuthError>;
}

/// No authentication (academy-py's `NullAuthenticator`): everybody is the
/// anonymous client `""` in no group.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullAuthenticator;

impl Authenticator for NullAuthenticator {
    fn authenticate(&self, _headers: &HeaderMap) -> Result<ClientInfo, AuthError> {
        Ok(ClientInfo::default())
    }
}

/// A fixed table of bearer tokens (`Authorization: Bearer <token>`), for
/// self-hosted exchanges. A missing or malformed header is 401, an unknown
/// token 403, as academy-py's Globus authenticator answers.
pub struct TokenAuthenticator {
    tokens: HashMap<String, ClientInfo>,
}

impl TokenAuthenticator {
    pub fn new(tokens: HashMap<String, ClientInfo>) -> Self {
        TokenAuthenticator { tokens }
    }
}

impl std::fmt::Debug for TokenAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenAuthenticator({} tokens)", self.tokens.len())
    }
}

/// The token of an `Authorization: Bearer <token>` header, parsed exactly as
/// academy-py's `get_token_from_headers` (split on single spaces, two parts).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers.get(AUTHORIZATION).ok_or(AuthError::Unauthorized)?;
    let value = value.to_str().map_err(|_| AuthError::Unauthorized)?;
    let mut parts = value.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("Bearer"), Some(token), None) => Ok(token),
        _ => Err(AuthError::Unauthorized),
    }
}

impl Authenticator for TokenAuthenticator {
    fn authenticate(&self, headers: &HeaderMap) -> Result<ClientInfo, AuthError> {
        let token = bearer_token(headers)?;
        self.tokens.get(token).cloned().ok_or(AuthError::Forbidden)
    }
}
