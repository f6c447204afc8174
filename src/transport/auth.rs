//! Authorization headers for `auth_method: "globus"`.
//!
//! academy-py gets a bearer token for the Academy exchange scope from
//! Globus Auth. A library has no terminal for an interactive login, so we
//! support its client-identity flow: with `ACADEMY_GLOBUS_CLIENT_ID` and
//! `ACADEMY_GLOBUS_CLIENT_SECRET` set, a client-credentials grant at the
//! token endpoint (`globus_token_url` option, or Globus Auth's) for the
//! scope `https://auth.globus.org/scopes/<exchange client id>/academy_exchange`
//! (the exchange client id from `ACADEMY_EXCHANGE_CLIENT_ID`, else the
//! hosted exchange's), as academy-py's `ClientApp` does. The token is
//! fetched before the first request, again before it expires (when a
//! tenth of its `expires_in`, at most five minutes, is left), and once when
//! the exchange answers 403. The secret and tokens never appear in error
//! messages.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::Value;

use crate::error::{Error, Result, Status};
use crate::redact;

pub const CLIENT_ID_ENV: &str = "ACADEMY_GLOBUS_CLIENT_ID";
pub const CLIENT_SECRET_ENV: &str = "ACADEMY_GLOBUS_CLIENT_SECRET";
pub const EXCHANGE_CLIENT_ID_ENV: &str = "ACADEMY_EXCHANGE_CLIENT_ID";
/// The hosted exchange's Globus client id (academy-py's default).
pub const DEFAULT_EXCHANGE_CLIENT_ID: &str = "ca1e2fbf-4e73-40a6-b2ab-c9458e5fcf99";
pub use crate::options::DEFAULT_TOKEN_URL;

/// The scope of the Academy exchange.
pub fn exchange_scope() -> String {
    let server = std::env::var(EXCHANGE_CLIENT_ID_ENV)
        .unwrap_or_else(|_| DEFAULT_EXCHANGE_CLIENT_ID.to_owned());
    format!("https://auth.globus.org/scopes/{server}/academy_exchange")
}

/// The client id and secret from the environment.
pub fn client_credentials() -> Result<(String, String)> {
    match (std::env::var(CLIENT_ID_ENV), std::env::var(CLIENT_SECRET_ENV)) {
        (Ok(id), Ok(secret)) if !id.is_empty() && !secret.is_empty() => Ok((id, secret)),
        _ => Err(Error::invalid(format!(
            "auth_method \"globus\" needs {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV} in the environment \
             (libacademy supports Globus client identities, not interactive logins)"
        ))),
    }
}

/// How long before a token expires it is replaced: a tenth of its life,
/// at most this.
const REFRESH_AHEAD: Duration = Duration::from_secs(300);

/// A bearer token as headers to send, and when to replace it.
#[derive(Debug, Default)]
pub struct Token {
    /// The `Authorization` header (empty before the first token).
    pub headers: HeaderMap,
    /// When to get a new one (`None`: the endpoint gave no `expires_in`).
    pub refresh_at: Option<Instant>,
    /// Counts the tokens fetched, so that requests refused with the same
    /// token refresh it once.
    pub serial: u64,
}

impl Token {
    /// Whether a new token should be fetched before the next request.
    pub fn due(&self, now: Instant) -> bool {
        self.headers.is_empty() || self.refresh_at.is_some_and(|at| now >= at)
    }
}

/// When to replace a token that lives `life`.
fn refresh_at(fetched: Instant, life: Duration) -> Instant {
    fetched + life - (life / 10).min(REFRESH_AHEAD)
}

/// Gets a bearer token with the client-credentials grant.
pub async fn globus_token(http: &reqwest::Client, token_url: &str) -> Result<Token> {
    let fetched = Instant::now();
    let (id, secret) = client_credentials()?;
    let scope = exchange_scope();
    let response = http
        .post(token_url)
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .map_err(|e| {
            Error::new(
                Status::Connection,
                format!(
                    "the Globus token endpoint {} could not be reached: {}",
                    redact::url(token_url),
                    redact::url(&e.to_string())
                ),
            )
        })?;
    let code = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !(200..300).contains(&code) {
        let reason = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        let status = if code == 401 || code == 400 {
            Status::Unauthorized
        } else {
            Status::Http
        };
        return Err(Error::new(
            status,
            format!(
                "the Globus token endpoint refused the client credentials: HTTP {code}: {reason}"
            ),
        ));
    }
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::protocol("the Globus token endpoint answered without an access_token")
        })?;
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        Error::protocol("the Globus token endpoint returned a token that is not a valid header")
    })?;
    value.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value);
    let life = body
        .get("expires_in")
        .and_then(Value::as_f64)
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(1e9)));
    Ok(Token {
        headers,
        refresh_at: life.map(|life| refresh_at(fetched, life)),
        serial: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_replaced_before_they_expire() {
        let t0 = Instant::now();
        assert_eq!(
            refresh_at(t0, Duration::from_secs(10)),
            t0 + Duration::from_secs(9)
        );
        assert_eq!(
            refresh_at(t0, Duration::from_secs(48 * 3600)),
            t0 + Duration::from_secs(48 * 3600 - 300)
        );
        let mut token = Token::default();
        assert!(token.due(t0), "no token yet");
        token
            .headers
            .insert(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(!token.due(t0), "no expiry given");
        token.refresh_at = Some(t0 + Duration::from_secs(1));
        assert!(!token.due(t0));
        assert!(token.due(t0 + Duration::from_secs(1)));
    }
}
