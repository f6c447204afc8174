//! What the process environment changes: `HTTP_PROXY` / `NO_PROXY` (read
//! as reqwest reads them: hosts in `NO_PROXY` keep the direct path) and
//! `SSL_CERT_FILE` (trusted for TLS besides the bundled roots).
//!
//! One test in a test binary of its own, since it sets environment
//! variables that other tests would see. `HeaderRecorder` is a stub (a
//! stand-in that records what arrives); the TLS exchange is ours.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use academy::server::{ExchangeServer, ServerConfig};

/// A stub HTTP server that answers every request with `{"agent_ids": ""}`
/// and records the lower-case header names of each request.
struct HeaderRecorder {
    url: String,
    seen: Arc<Mutex<Vec<Vec<String>>>>,
}

impl HeaderRecorder {
    fn start() -> HeaderRecorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut names = Vec::new();
                let mut length = 0;
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap();
                    }
                    names.push(k.to_ascii_lowercase());
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                log.lock().unwrap().push(names);
                let text = r#"{"agent_ids": ""}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        HeaderRecorder { url, seen }
    }
}

fn transport(url: &str) -> academy::transport::Transport {
    academy::transport::Transport::http(
        url,
        academy::FactoryOptions::from_json(Some(r#"{"retries": 0, "connect_timeout_s": 2}"#))
            .unwrap(),
    )
    .unwrap()
}

fn discover(t: &academy::transport::Transport) -> academy::Result<Vec<uuid::Uuid>> {
    academy::runtime::block_on(t.discover("a.B", false)).unwrap()
}

fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl must be installed for the TLS test");
    assert!(status.success());
    (cert, key)
}

#[test]
fn proxies_no_proxy_and_ssl_cert_file_are_honoured() {
    // A proxy nobody listens on: a request sent to it fails.
    let dead_proxy = format!("http://127.0.0.1:{}", common::free_port());
    let stub = HeaderRecorder::start();
    std::env::set_var("HTTP_PROXY", &dead_proxy);

    // NO_PROXY names the exchange's host: the direct path (which sends no
    // `accept` header, where reqwest sends `accept: */*`).
    std::env::set_var("NO_PROXY", "localhost,127.0.0.1");
    discover(&transport(&stub.url)).unwrap();
    let names = stub.seen.lock().unwrap().last().cloned().unwrap();
    assert!(
        names.contains(&"host".to_owned()) && !names.contains(&"accept".to_owned()),
        "sent on the direct path: {names:?}"
    );

    // Without NO_PROXY the request goes to the proxy (and fails there).
    std::env::remove_var("NO_PROXY");
    let err = discover(&transport(&stub.url)).unwrap_err();
    assert_eq!(err.status, academy::Status::Connection, "{}", err.message);
    std::env::remove_var("HTTP_PROXY");

    // TLS: a certificate in SSL_CERT_FILE is trusted without ca_file.
    let dir = std::env::temp_dir().join(format!("academy-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = self_signed(&dir);
    let config = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        certfile: Some(cert.clone()),
        keyfile: Some(key),
        ..ServerConfig::default()
    };
    let server = academy::runtime::block_on(ExchangeServer::start(config))
        .unwrap()
        .unwrap();
    let err = discover(&transport(&server.url())).unwrap_err();
    assert!(
        err.message.to_lowercase().contains("certificate"),
        "untrusted at first: {}",
        err.message
    );
    std::env::set_var("SSL_CERT_FILE", &cert);
    discover(&transport(&server.url())).unwrap();
    std::env::remove_var("SSL_CERT_FILE");
    academy::runtime::block_on(server.stop()).unwrap().unwrap();
}
