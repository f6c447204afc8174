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
//! fetched before the first request and again once when the exchange
//! answers 403. The secret and tokens never appear in error messages.

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::Value;

use crate::error::{Error, Result, Status};

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

/// Gets a bearer token with the client-credentials grant; returns the
/// `Authorization` header to send.
pub async fn globus_headers(http: &reqwest::Client, token_url: &str) -> Result<HeaderMap> {
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
                format!("the Globus token endpoint {token_url} could not be reached: {e}"),
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
    Ok(headers)
}
