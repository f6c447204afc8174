//! What may go into an error text or a log line: never a credential.
//!
//! Options and configs carry passwords, tokens and headers, and URLs may
//! carry `user:password@`. Texts that name a value a caller gave (a parser's
//! complaint about a wrong type, a URL that could not be reached) go through
//! here first: a URL loses its userinfo ([`url`]), and a parser's message
//! loses the values it quotes ([`parser_message`]), keeping what makes it
//! useful: the key, the type found and the type expected.

/// `text` with the userinfo (`user:password@`) of every URL in it removed:
/// `http://u:p@host:1/x` becomes `http://host:1/x`. Also for a URL that does
/// not parse, and for `user:password@host` without a scheme.
pub fn url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        // Where an authority starts: after "://", or at the start of a
        // text without a scheme.
        let (head, authority_start) = match rest.find("://") {
            Some(i) => (&rest[..i + 3], i + 3),
            None if out.is_empty() => ("", 0),
            None => {
                out.push_str(rest);
                return out;
            }
        };
        out.push_str(head);
        let after = &rest[authority_start..];
        let end = after
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => out.push_str(&authority[at + 1..]),
            None => out.push_str(authority),
        }
        rest = &after[end..];
        if authority_start == 0 && !rest.contains("://") {
            out.push_str(rest);
            return out;
        }
    }
}

/// A JSON value's type, as a message names it ("a string", "an array"):
/// never the value.
pub fn json_type(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Words after which serde's messages (and toml's, which are serde's) quote
/// the value they found, in backticks: `invalid type: integer `5``.
const QUOTED_AFTER: [&str; 5] = [
    "boolean ",
    "integer ",
    "floating point ",
    "character ",
    "unknown variant ",
];

/// A serde (or toml) message without the values it quotes: `invalid type:
/// string "hunter2", expected u32` becomes `invalid type: string, expected
/// u32`. Field names (`unknown field `x``, `expected one of `a`, `b``) stay.
pub fn parser_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while !rest.is_empty() {
        if let Some(tail) = rest.strip_prefix("string \"") {
            // A Rust-escaped string: up to the first unescaped quote.
            out.push_str("string");
            rest = skip_quoted(tail, '"');
            continue;
        }
        if let Some(word) = QUOTED_AFTER.iter().find(|w| rest.starts_with(**w)) {
            let tail = &rest[word.len()..];
            if let Some(value) = tail.strip_prefix('`') {
                out.push_str(word.trim_end());
                rest = skip_quoted(value, '`');
                continue;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// What follows a quoted value (opened before `text`) that ends with
/// `close`; a backslash escapes the next character.
fn skip_quoted(text: &str, close: char) -> &str {
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            chars.next();
        } else if c == close {
            return &text[i + c.len_utf8()..];
        }
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_userinfo() {
        for (text, want) in [
            (
                "http://u:p@127.0.0.1:80/mailbox",
                "http://127.0.0.1:80/mailbox",
            ),
            ("https://user@host", "https://host"),
            ("http://host:1/a@b", "http://host:1/a@b"),
            ("http://a:b@c@host/x?y=z@w", "http://host/x?y=z@w"),
            (
                "POST http://u:p@h:1/mailbox: refused",
                "POST http://h:1/mailbox: refused",
            ),
            (
                "from http://a:b@x/ to redis://:pw@y:6379",
                "from http://x/ to redis://y:6379",
            ),
            ("u:p@host:6379", "host:6379"),
            ("plain text, no url", "plain text, no url"),
            ("mail me@example.org", "mail me@example.org"),
            ("", ""),
        ] {
            assert_eq!(url(text), want, "{text}");
        }
    }

    #[test]
    fn parser_messages_lose_the_values_they_quote() {
        for (text, want) in [
            (
                "invalid type: integer `987654321`, expected a string",
                "invalid type: integer, expected a string",
            ),
            (
                r#"invalid type: string "Bearer s\"k", expected a map"#,
                "invalid type: string, expected a map",
            ),
            (
                "invalid type: floating point `1.5`, expected u32",
                "invalid type: floating point, expected u32",
            ),
            (
                "invalid type: boolean `true`, expected a string",
                "invalid type: boolean, expected a string",
            ),
            (
                "unknown variant `sekrit`, expected `memory` or `redis`",
                "unknown variant, expected `memory` or `redis`",
            ),
            (
                "invalid value: integer `-3`, expected u32",
                "invalid value: integer, expected u32",
            ),
            (
                "unknown field `x`, expected one of `a`, `b`",
                "unknown field `x`, expected one of `a`, `b`",
            ),
            (
                "invalid type: sequence, expected a string",
                "invalid type: sequence, expected a string",
            ),
        ] {
            assert_eq!(parser_message(text), want, "{text}");
        }
    }
}
