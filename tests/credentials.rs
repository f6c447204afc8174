//! Credentials never show in an error text or a log line, through the C
//! API: options of the wrong type (passwords, user names, tokens, headers,
//! anything under `kwargs` / `redis_kwargs`) are named with the type
//! expected, never echoed; URLs with `user:password@` lose their userinfo
//! wherever they are printed.

mod common;

use std::ptr;

use academy::ffi::academy_status::{self, *};
use academy::ffi::exchange::*;
use academy::ffi::factory::*;
use common::*;

/// What every secret in these tests contains.
const SECRET: &str = "sekrit";
const SECRET_NUMBER: &str = "987654321";

/// Checks a failed call: INVALID_ARGUMENT, its text names `says`, and
/// holds no secret.
#[track_caller]
fn refused_without_secret(what: &str, status: academy_status, says: &str) {
    let text = last_error();
    assert_eq!(status, ACADEMY_ERR_INVALID_ARGUMENT, "{what}: {text}");
    assert!(text.contains(says), "{what}: {text:?} should name {says:?}");
    assert!(
        !text.contains(SECRET) && !text.contains(SECRET_NUMBER),
        "{what}: the error shows a credential: {text}"
    );
}

#[test]
fn options_of_the_wrong_type_name_the_key_never_the_value() {
    let redis = [
        (r#"{"kwargs": {"password": 987654321}}"#, "kwargs.password"),
        (r#"{"kwargs": {"password": ["sekrit"]}}"#, "kwargs.password"),
        (
            r#"{"kwargs": {"password": {"p": "sekrit"}}}"#,
            "kwargs.password",
        ),
        (r#"{"kwargs": {"username": 987654321}}"#, "kwargs.username"),
        (r#"{"kwargs": {"db": "sekrit"}}"#, "kwargs.db"),
        (r#"{"kwargs": {"db": -987654321}}"#, "kwargs.db"),
        (r#"{"kwargs": "sekrit"}"#, "kwargs"),
        (r#"{"kwargs": ["sekrit"]}"#, "kwargs"),
        (r#"{"kwargs": 987654321}"#, "kwargs"),
    ];
    for (options, says) in redis {
        let o = c(options);
        let mut f = ptr::null_mut();
        let status = unsafe { academy_redis_factory_new(o.as_ptr(), &mut f) };
        refused_without_secret(options, status, says);
    }
    let hybrid = [
        (
            r#"{"redis_kwargs": {"password": {"p": "sekrit"}}}"#,
            "redis_kwargs.password",
        ),
        (
            r#"{"redis_kwargs": {"password": 987654321}}"#,
            "redis_kwargs.password",
        ),
        (r#"{"redis_kwargs": "sekrit"}"#, "redis_kwargs"),
        (
            r#"{"redis_kwargs": {"username": ["sekrit"]}}"#,
            "redis_kwargs.username",
        ),
    ];
    for (options, says) in hybrid {
        let o = c(options);
        let mut f = ptr::null_mut();
        let status = unsafe { academy_hybrid_factory_new(o.as_ptr(), &mut f) };
        refused_without_secret(options, status, says);
    }
    let http = [
        (
            r#"{"additional_headers": "Bearer sekrit"}"#,
            "additional_headers",
        ),
        (
            r#"{"additional_headers": ["sekrit"]}"#,
            "additional_headers",
        ),
        (
            r#"{"additional_headers": {"Authorization": 987654321}}"#,
            "Authorization",
        ),
        (
            r#"{"additional_headers": {"Authorization": {"v": "sekrit"}}}"#,
            "Authorization",
        ),
        (
            r#"{"additional_headers": {"X-Token": "sekrit\u0001"}}"#,
            "X-Token",
        ),
        (r#"{"globus_token_url": ["sekrit"]}"#, "bad factory option"),
    ];
    let url = c("http://127.0.0.1:9");
    for (options, says) in http {
        let o = c(options);
        let mut f = ptr::null_mut();
        let status = unsafe { academy_http_factory_new(url.as_ptr(), o.as_ptr(), &mut f) };
        refused_without_secret(options, status, says);
    }
    let exchange = [
        (
            r#"{"backend": {"kind": "redis", "kwargs": {"password": 987654321}}}"#,
            "exchange options",
        ),
        (
            r#"{"backend": {"kind": "redis", "kwargs": {"password": ["sekrit"]}}}"#,
            "exchange options",
        ),
        (
            r#"{"backend": {"kind": "redis", "kwargs": "sekrit"}}"#,
            "exchange options",
        ),
        (
            r#"{"auth": {"method": "token", "kwargs": {"tokens": {"sekrit": {"client_id": 987654321}}}}}"#,
            "auth.kwargs",
        ),
        (
            r#"{"auth": {"method": "token", "kwargs": {"tokens": {"sekrit": "x"}}}}"#,
            "auth.kwargs",
        ),
        (r#"["sekrit"]"#, "a JSON object"),
    ];
    for (options, says) in exchange {
        let o = c(options);
        let mut e = ptr::null_mut();
        let status = unsafe { academy_exchange_spawn(o.as_ptr(), &mut e) };
        refused_without_secret(options, status, says);
    }
}

/// The exchange's TOML config (academy-exchange --config): errors give the
/// line, column and key, never the line itself or a value.
#[test]
fn the_exchange_config_names_the_line_and_key_never_the_value() {
    use academy::server::config::ServerConfig;
    for (toml, says) in [
        (
            "[backend]\nkind = \"redis\"\n[backend.kwargs]\npassword = 987654321",
            "line 4, column 12 (key password)",
        ),
        (
            "[backend]\nkind = \"redis\"\n[backend.kwargs]\npassword = [\"sekrit\"]",
            "(key password)",
        ),
        (
            "[backend]\nkind = \"redis\"\nkwargs = \"sekrit\"",
            "(key kwargs)",
        ),
        (
            "[backend.kwargs]\nusername = { u = \"sekrit\" }",
            "(key username)",
        ),
        (
            "[auth]\nmethod = \"token\"\n[auth.kwargs.tokens]\nsekrit = 987654321",
            "auth.kwargs",
        ),
        (
            "[auth]\nmethod = \"token\"\n[auth.kwargs.tokens.sekrit]\nclient_id = 987654321",
            "auth.kwargs",
        ),
        (
            "[auth.kwargs.tokens.sekrit]\n[auth.kwargs.tokens.sekrit]",
            "line 2",
        ),
    ] {
        let e = ServerConfig::from_toml_str(toml).unwrap_err();
        assert_eq!(e.status, academy::Status::InvalidArgument, "{toml}");
        assert!(
            e.message.contains(says),
            "{toml}: {:?} should say {says:?}",
            e.message
        );
        assert!(
            !e.message.contains(SECRET) && !e.message.contains(SECRET_NUMBER),
            "{toml}: the error shows a credential: {}",
            e.message
        );
    }
}
