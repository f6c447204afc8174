//! Credentials written into an exchange URL (`http://user:password@host`).
//!
//! academy-py hands the URL to aiohttp, which takes the userinfo out of the
//! URL and sends it as `Authorization: Basic` with every request; the URL
//! itself never carries it on the wire. We do the same, byte for byte:
//! user and password percent-decoded, joined by `:`, in Latin-1 (aiohttp's
//! encoding; a character beyond Latin-1, which aiohttp refuses, goes in
//! UTF-8), base64-encoded. An Authorization in `additional_headers`, or
//! `auth_method: "globus"`, wins over it (academy-py refuses those
//! combinations: aiohttp raises ValueError on every request).

use reqwest::header::HeaderValue;

use crate::error::{Error, Result};

/// Takes the userinfo out of `url` and returns its `Authorization: Basic`
/// value (sensitive: never shown by `Debug`), or `None` when the URL has
/// none.
pub fn take(url: &mut reqwest::Url) -> Result<Option<HeaderValue>> {
    if url.username().is_empty() && url.password().is_none() {
        return Ok(None);
    }
    let user = decode(url.username(), "user name")?;
    let password = decode(url.password().unwrap_or(""), "password")?;
    // Cannot fail for a URL with a host (http and https have one).
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let pair = format!("{user}:{password}");
    let bytes: Vec<u8> = match pair.chars().map(|c| u8::try_from(u32::from(c))).collect() {
        Ok(latin1) => latin1,
        Err(_) => pair.into_bytes(),
    };
    let mut value = HeaderValue::try_from(format!("Basic {}", base64(&bytes)))
        .map_err(|_| Error::internal("base64 is always a valid header value"))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// A percent-encoded part of a URL as text (`%40` is `@`).
fn decode(part: &str, what: &str) -> Result<String> {
    let mut bytes = Vec::with_capacity(part.len());
    let raw = part.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (raw[i], raw.get(i + 1).copied(), raw.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                bytes.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                bytes.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(bytes).map_err(|_| {
        Error::invalid(format!(
            "the {what} in the exchange URL is not UTF-8 once percent-decoded"
        ))
    })
}

/// Standard base64 with padding (RFC 4648).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_rfc_4648() {
        for (text, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(base64(text.as_bytes()), want, "{text}");
        }
    }

    /// The values aiohttp 3 sends for the same URLs (BasicAuth.encode()).
    #[test]
    fn the_header_is_aiohttps_and_the_url_loses_its_userinfo() {
        for (url, header, left) in [
            ("http://u:p@h:1/x", "Basic dTpw", "http://h:1/x"),
            ("http://u@h", "Basic dTo=", "http://h/"),
            ("http://:p@h", "Basic OnA=", "http://h/"),
            ("http://a%40b:c%3Ad@h", "Basic YUBiOmM6ZA==", "http://h/"),
            // é: Latin-1 as aiohttp; €: beyond Latin-1, UTF-8.
            ("http://%C3%A9:x@h", "Basic 6Tp4", "http://h/"),
            ("http://%E2%82%AC:x@h", "Basic 4oKsOng=", "http://h/"),
        ] {
            let mut parsed = reqwest::Url::parse(url).unwrap();
            let value = take(&mut parsed).unwrap().unwrap();
            assert_eq!(value.to_str().unwrap(), header, "{url}");
            assert!(value.is_sensitive());
            assert_eq!(parsed.as_str(), left, "{url}");
        }
        let mut plain = reqwest::Url::parse("http://h:1").unwrap();
        assert!(take(&mut plain).unwrap().is_none());
        let mut bad = reqwest::Url::parse("http://%ff:x@h").unwrap();
        let e = take(&mut bad).unwrap_err();
        assert!(!e.message.contains("ff"), "{}", e.message);
    }
}
