//! Issue 19: running the exchange as a service. The systemd unit and its
//! config (started here exactly as the unit starts them), metrics counted
//! against the traffic sent, health, the connection cap and body timeout,
//! the `[logger]` section, and the library's own log (the C callback and
//! `ACADEMY_LOG`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use academy::server::{ExchangeServer, ServerConfig};
use common::*;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("academy-ops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One HTTP/1.1 request on a connection of its own: (status, body).
fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{auth}\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// The value of one series (`name{labels}`) in a scrape; 0 if absent.
fn metric(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// A child process whose stdout lines are collected as they come.
struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Process {
    fn start(mut cmd: Command) -> Process {
        cmd.stdout(Stdio::piped()).stdin(Stdio::null());
        // SAFETY: prctl in the child before exec; it only sets a flag.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let out = child.stdout.take().unwrap();
        let keep = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(l) => keep.lock().unwrap().push(l),
                    Err(_) => return,
                }
            }
        });
        Process { child, lines }
    }

    /// Waits for a line containing `text`; returns it.
    fn wait_line(&mut self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| l.contains(text)) {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "exited ({status}) before printing {text:?}: {:?}",
                    self.lines()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no line with {text:?} within {within:?}: {:?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// SIGTERM, then the exit status within `within`.
    fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within {within:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn exchange_cmd(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_academy-exchange"));
    cmd.arg("--config").arg(config).env_remove("ACADEMY_LOG");
    cmd
}

fn unit() -> String {
    std::fs::read_to_string(repo().join("packaging/academy-exchange.service")).unwrap()
}

/// `s` with `from` (which must occur exactly once) replaced by `to`.
fn replace_once(s: &str, from: &str, to: &str) -> String {
    assert_eq!(
        s.matches(from).count(),
        1,
        "{from:?} once in the packaged file"
    );
    s.replacen(from, to, 1)
}

#[test]
fn the_unit_file_is_valid_and_sandboxed() {
    let text = unit();
    for line in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateDevices=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "LoadCredential=exchange.toml:/etc/academy-exchange/exchange.toml",
        "LimitNOFILE=",
    ] {
        assert!(text.contains(line), "the unit lacks {line:?}");
    }
    // systemd's own checks, on a copy naming the binary built here.
    let dir = temp("unit");
    let copy = dir.join("academy-exchange.service");
    std::fs::write(
        &copy,
        replace_once(
            &text,
            "/usr/local/bin/academy-exchange",
            env!("CARGO_BIN_EXE_academy-exchange"),
        ),
    )
    .unwrap();
    let analyze = |args: &[&str]| {
        let out = Command::new("systemd-analyze")
            .args(args)
            .arg(&copy)
            .output()
            .expect("systemd-analyze (Debian package systemd) checks the unit file");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "systemd-analyze {args:?}: {all}");
        all
    };
    let verify = analyze(&["verify"]);
    assert!(verify.trim().is_empty(), "warnings: {verify}");
    let security = analyze(&["security", "--offline=true", "--threshold=20"]);
    assert!(security.contains("Overall exposure level"), "{security}");
}

/// The unit's ExecStart, with the binary built here and
/// `${CREDENTIALS_DIRECTORY}` as systemd expands it.
fn exec_start(credentials: &Path) -> Command {
    let text = unit();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/academy-exchange"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_academy-exchange"));
    for w in words {
        cmd.arg(w.replace(
            "${CREDENTIALS_DIRECTORY}",
            &credentials.display().to_string(),
        ));
    }
    cmd.env("CREDENTIALS_DIRECTORY", credentials)
        .env_remove("ACADEMY_LOG");
    cmd
}

#[test]
fn the_service_runs_as_the_unit_says_and_its_metrics_count_the_traffic() {
    let redis = RedisServer::start();
    let (port, metrics_port) = (free_port(), free_port());
    // The packaged config as LoadCredential hands it over: only the ports
    // differ (free ones here).
    let credentials = temp("credentials");
    let packaged = std::fs::read_to_string(repo().join("packaging/exchange.toml")).unwrap();
    let config = replace_once(&packaged, "\nport = 8700\n", &format!("\nport = {port}\n"));
    let config = replace_once(
        &config,
        "metrics_port = 9700\n",
        &format!("metrics_port = {metrics_port}\n"),
    );
    let config = replace_once(
        &config,
        "port = 6379\n",
        &format!("port = {}\n", redis.port),
    );
    std::fs::write(credentials.join("exchange.toml"), config).unwrap();
    let mut service = Process::start(exec_start(&credentials));
    service.wait_line("Exchange listening on", Duration::from_secs(30));

    let (status, health) = http(port, "GET", "/health", None, "");
    assert_eq!(status, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        (health["status"].as_str(), health["backend"].as_str()),
        (Some("ok"), Some("redis"))
    );
    assert!(health["redis_round_trip_s"].as_f64().unwrap() > 0.0);
    // /metrics is on the metrics port only (this 404 is counted below).
    assert_eq!(http(port, "GET", "/metrics", None, "").0, 404);
    let scrape = || {
        let (status, text) = http(metrics_port, "GET", "/metrics", None, "");
        assert_eq!(status, 200, "{text}");
        text
    };
    let before = scrape();

    // N messages from a user to an agent through the C API.
    const N: usize = 25;
    let url = format!("http://127.0.0.1:{port}");
    let factory = Factory::new(&url, None).unwrap();
    let user = factory.user(Some("ops")).unwrap();
    let registration = user.register_agent("ops.Sink", Some("sink")).unwrap();
    let agent = factory.agent(&registration).unwrap();
    let sink = agent_id_of(&registration);
    for _ in 0..N {
        user.send(&message(&user.id(), &sink, r#"{"kind": "ping-request"}"#))
            .unwrap();
    }
    for _ in 0..N {
        agent.recv(10.0).unwrap();
    }
    let after = scrape();
    let delta = |series: &str| metric(&after, series) - metric(&before, series);
    assert_eq!(
        delta("academy_messages_accepted_total"),
        N as f64,
        "{after}"
    );
    assert_eq!(
        delta("academy_messages_delivered_total"),
        N as f64,
        "{after}"
    );
    assert_eq!(
        delta("academy_request_duration_seconds_count{method=\"PUT\",path=\"/message\"}"),
        N as f64
    );
    assert!(
        delta("academy_redis_round_trip_seconds_count") >= N as f64,
        "every send is a Redis round trip: {after}"
    );
    assert_eq!(metric(&after, "academy_mailboxes{state=\"active\"}"), 2.0);
    assert_eq!(
        metric(&after, "academy_mailboxes{state=\"terminated\"}"),
        0.0
    );
    assert_eq!(metric(&after, "academy_listen_streams"), 2.0, "{after}");
    assert!(metric(&after, "academy_connections") >= 2.0);
    let errors: Vec<&str> = after
        .lines()
        .filter(|l| l.starts_with("academy_http_errors_total{"))
        .collect();
    assert_eq!(errors, ["academy_http_errors_total{status=\"404\"} 1"]);

    // A user's mailbox is terminated when it closes.
    user.close().unwrap();
    agent.close().unwrap();
    let closed = scrape();
    assert_eq!(
        metric(&closed, "academy_mailboxes{state=\"terminated\"}"),
        1.0
    );
    drop((user, agent, factory));

    assert!(service.terminate(Duration::from_secs(15)).success());
    assert_eq!(
        service.lines().last().map(String::as_str),
        Some("Exchange closed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_ask_for_the_exchanges_credentials_and_health_for_none() {
    let config = ServerConfig::from_toml_str(
        "host = \"127.0.0.1\"\nport = 0\n[auth]\nmethod = \"token\"\n[auth.kwargs.tokens.secret]\nclient_id = \"ops\"\n",
    )
    .unwrap();
    let server = ExchangeServer::start(config).await.unwrap();
    let port = server.local_addr().port();
    assert_eq!(
        server.metrics_url(),
        Some(format!("http://127.0.0.1:{port}/metrics"))
    );
    let (code, text) = tokio::task::spawn_blocking(move || {
        let health = http(port, "GET", "/health", None, "");
        assert_eq!(health.0, 200, "{health:?}");
        assert_eq!(http(port, "POST", "/health", None, "").0, 405);
        assert_eq!(http(port, "GET", "/metrics", None, "").0, 401);
        assert_eq!(http(port, "GET", "/metrics", Some("wrong"), "").0, 403);
        http(port, "GET", "/metrics", Some("secret"), "")
    })
    .await
    .unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        metric(&text, "academy_http_errors_total{status=\"401\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "academy_http_errors_total{status=\"403\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "academy_http_errors_total{status=\"405\"}"),
        1.0
    );
    server.stop().await.unwrap();

    // metrics = false: no /metrics anywhere, health still answers.
    let off = ServerConfig::from_json_options(Some(r#"{"metrics": false}"#)).unwrap();
    let server = ExchangeServer::start(off).await.unwrap();
    let port = server.local_addr().port();
    assert_eq!(server.metrics_url(), None);
    let codes = tokio::task::spawn_blocking(move || {
        (
            http(port, "GET", "/metrics", None, "").0,
            http(port, "GET", "/health", None, "").0,
        )
    })
    .await
    .unwrap();
    assert_eq!(codes, (404, 200));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_gets_408_and_the_connection_cap_makes_new_connections_wait() {
    let config = ServerConfig::from_json_options(Some(
        r#"{"body_read_timeout_s": 0.3, "max_connections": 2, "metrics_port": 0}"#,
    ))
    .unwrap();
    let server = ExchangeServer::start(config).await.unwrap();
    let port = server.local_addr().port();
    let metrics_port: u16 = server
        .metrics_url()
        .unwrap()
        .trim_end_matches("/metrics")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    tokio::task::spawn_blocking(move || {
        // A body that never comes: 408 after the timeout, and the
        // connection is closed.
        let start = Instant::now();
        let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        slow.write_all(b"PUT /message HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"mess")
            .unwrap();
        let mut answer = String::new();
        slow.read_to_string(&mut answer).unwrap();
        let took = start.elapsed();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("body_read_timeout_s = 0.3"), "{answer}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{took:?}"
        );

        // Two idle connections fill the cap; a third waits for a slot.
        let held: Vec<TcpStream> = (0..2)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let scrape = http(metrics_port, "GET", "/metrics", None, "").1;
        assert_eq!(metric(&scrape, "academy_connections"), 2.0, "{scrape}");
        assert_eq!(metric(&scrape, "academy_connections_max"), 2.0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(http(port, "GET", "/health", None, "").0);
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "a third connection was served beyond max_connections"
        );
        drop(held);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(200));
        let scrape = http(metrics_port, "GET", "/metrics", None, "").1;
        assert_eq!(
            metric(&scrape, "academy_http_errors_total{status=\"408\"}"),
            1.0
        );
    })
    .await
    .unwrap();
    server.stop().await.unwrap();
}

#[test]
fn health_answers_503_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let mut exchange = Process::start(exchange_cmd(&config_file(
        free_port(),
        &redis.backend_toml(),
    )));
    let line = exchange.wait_line("Exchange listening on", Duration::from_secs(30));
    let port: u16 = line.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(http(port, "GET", "/health", None, "").0, 200);
    let (tx, rx) = std::sync::mpsc::channel();
    let poller = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while rx.try_recv().is_err() {
            let (code, body) = http(port, "GET", "/health", None, "");
            if seen.last().map(|(c, _)| *c) != Some(code) {
                seen.push((code, body));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        seen
    });
    std::thread::sleep(Duration::from_millis(200));
    redis.restart(Duration::from_secs(2));
    std::thread::sleep(Duration::from_secs(2));
    tx.send(()).unwrap();
    let seen = poller.join().unwrap();
    let codes: Vec<u16> = seen.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, [200, 503, 200], "{seen:?}");
    assert!(seen[1].1.contains("\"status\":\"unavailable\""), "{seen:?}");
}

#[test]
fn slow_redis_round_trips_are_warnings_in_the_log() {
    let redis = RedisServer::start();
    let mut exchange = Process::start(exchange_cmd(&config_file(
        free_port(),
        &redis.backend_toml(),
    )));
    let line = exchange.wait_line("Exchange listening on", Duration::from_secs(30));
    let url = line.trim_start_matches("Exchange listening on ").to_owned();
    let factory = Factory::new(&url, None).unwrap();
    let user = factory.user(None).unwrap();
    // Redis busy for 300 ms in a script; a heartbeat meanwhile waits.
    let busy = std::thread::spawn(move || {
        redis.cli(&[
            "EVAL",
            "local t=redis.call('TIME'); local s=t[1]*1000000+t[2]; local n=0; \
             while true do n=n+1; if n%1000==0 then local u=redis.call('TIME'); \
             if u[1]*1000000+u[2]-s > 300000 then return n end end end",
            "0",
        ]);
        redis
    });
    std::thread::sleep(Duration::from_millis(50));
    user.heartbeat().unwrap();
    let _redis = busy.join().unwrap();
    let warning = exchange.wait_line("slow Redis", Duration::from_secs(10));
    assert!(
        warning.contains("WARNING  (academy::server::backend::redis)"),
        "{warning}"
    );
    assert!(warning.contains("over 100 ms"), "{warning}");
}

/// `[logger]`: stdout at `level`, the file at `logfile_level`, in
/// academy-py's format; `ACADEMY_LOG` overrides the levels.
#[test]
fn the_logger_section_writes_academy_py_lines_to_stdout_and_the_file() {
    let dir = temp("logger");
    let logfile = dir.join("logs/exchange.log");
    let config = config_file(
        free_port(),
        &format!(
            "[logger]\nlevel = \"INFO\"\nlogfile = {:?}\nlogfile_level = \"DEBUG\"\nrotate = true\n",
            logfile.display().to_string()
        ),
    );
    let mut exchange = Process::start(exchange_cmd(&config));
    let first = exchange.wait_line("Exchange listening on", Duration::from_secs(30));
    assert_eq!(
        exchange.lines()[0],
        first,
        "the first line, which tools wait for"
    );
    let port: u16 = first.rsplit(':').next().unwrap().parse().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let factory = Factory::new(&url, None).unwrap();
    let user = factory.user(None).unwrap();
    user.send(&message(
        &user.id(),
        &user.id(),
        r#"{"kind": "ping-request"}"#,
    ))
    .unwrap();
    assert_eq!(http(port, "PUT", "/message", None, "{}").0, 400);
    let info = exchange.wait_line("\"POST /mailbox\" 200", Duration::from_secs(10));
    // [2025-06-01 12:00:00.123] INFO     (academy::access) 127.0.0.1:5 "POST /mailbox" 200 0.1 ms
    let (stamp, rest) = info.split_once("] ").unwrap();
    assert_eq!(stamp.len(), "[2025-06-01 12:00:00.123".len(), "{info}");
    assert!(
        rest.starts_with("INFO     (academy::access) 127.0.0.1:"),
        "{info}"
    );
    let warning = exchange.wait_line("\"PUT /message\" 400", Duration::from_secs(10));
    assert!(warning.contains("WARNING  (academy::access)"), "{warning}");
    assert!(
        warning.contains("validation error for Message"),
        "{warning}"
    );
    assert!(exchange
        .wait_line(
            "Configured logger (stdout-level=INFO",
            Duration::from_secs(1)
        )
        .contains("logfile-level=DEBUG"));
    assert!(exchange.terminate(Duration::from_secs(15)).success());
    let stdout = exchange.lines().join("\n");
    assert!(
        !stdout.contains("\"PUT /message\" 200"),
        "a debug line on stdout: {stdout}"
    );
    let file = std::fs::read_to_string(&logfile).unwrap();
    let put = file
        .lines()
        .find(|l| l.contains("\"PUT /message\" 200"))
        .unwrap_or_else(|| panic!("the debug line is in the file: {file}"));
    assert!(put.contains("] [tid="), "{put}");
    assert!(
        put.contains(&format!(
            " pid={}]  DEBUG    (academy::access)",
            exchange.child.id()
        )),
        "{put}"
    );

    // ACADEMY_LOG overrides the levels: errors only.
    let mut quiet = exchange_cmd(&config);
    quiet.env("ACADEMY_LOG", "error");
    let mut exchange = Process::start(quiet);
    let first = exchange.wait_line("Exchange listening on", Duration::from_secs(30));
    let port: u16 = first.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(http(port, "PUT", "/message", None, "{}").0, 400);
    assert!(exchange.terminate(Duration::from_secs(15)).success());
    assert_eq!(exchange.lines(), [first, "Exchange closed".to_owned()]);
}

/// Builds a C program of `examples-c` against the library built here.
fn build_c(name: &str) -> PathBuf {
    let dir = temp("c");
    let exe = dir.join(name);
    let release = repo().join("target/release");
    let out = Command::new("cc")
        .args([
            "-O2",
            "-std=c11",
            "-D_DEFAULT_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
        ])
        .arg("-I")
        .arg(repo().join("include"))
        .arg(repo().join(format!("examples-c/{name}.c")))
        .arg("-L")
        .arg(&release)
        .args(["-lacademy", "-lpthread"])
        .arg(format!("-Wl,-rpath,{}", release.display()))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

#[test]
fn the_log_callback_gets_the_librarys_lines_at_its_level() {
    let out = Command::new(build_c("log_callback"))
        .env_remove("ACADEMY_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (debug, rest) = stdout.split_once("-- level WARN --").unwrap();
    for expected in [
        "log INFO academy::access: 127.0.0.1:",
        "\"POST /mailbox\" 200",
        "log DEBUG academy::access: ",
        "\"PUT /message\" 200",
        "log DEBUG academy::transport::http: POST http://127.0.0.1:9/mailbox: the exchange could not be reached",
        // Two retries, each after a random wait of up to 10 ms, then 20 ms.
        "the exchange could not be reached: connection refused",
        "; retrying in ",
        "log DEBUG academy::transport::http1: fast path off: https goes through reqwest",
        "client of http://127.0.0.1:9: connection error",
    ] {
        assert!(debug.contains(expected), "{expected:?} missing:\n{debug}");
    }
    assert_eq!(
        debug.matches("; retrying in ").count() % 2,
        0,
        "each failing call is tried again twice:\n{debug}"
    );
    assert!(
        !debug.contains("log DEBUG hyper"),
        "dependencies' debug lines come only at TRACE:\n{debug}"
    );
    // At WARN, and without a callback: nothing more.
    assert!(!rest.contains("log "), "{rest}");
    let logged: usize = debug.lines().filter(|l| l.starts_with("log ")).count();
    assert!(rest.contains(&format!("{logged} lines logged")), "{stdout}");
}

#[test]
fn academy_log_writes_to_stderr_and_without_it_the_library_is_silent() {
    let demo = build_c("demo");
    let run = |log: Option<&str>| {
        let mut cmd = Command::new(&demo);
        cmd.env_remove("ACADEMY_EXCHANGE_URL")
            .env_remove("ACADEMY_LOG");
        if let Some(l) = log {
            cmd.env("ACADEMY_LOG", l);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("add(2, 3) = 5"));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert_eq!(run(None), "", "nothing without ACADEMY_LOG");
    let stderr = run(Some("academy=debug"));
    for expected in [
        "INFO academy-exchange academy::access: 127.0.0.1:",
        "\"POST /mailbox\" 200",
        "DEBUG academy-exchange academy::access: ",
        "\"PUT /message\" 200",
    ] {
        assert!(stderr.contains(expected), "{expected:?} missing:\n{stderr}");
    }
    assert!(!stderr.contains("hyper"), "only academy's lines:\n{stderr}");
}

/// A Rust program with its own subscriber keeps it: the library's events
/// go to it, and asking for the C callback is refused. Runs in a child
/// process (the global subscriber is per process).
#[test]
fn a_rust_programs_own_subscriber_gets_the_events_and_stays() {
    if std::env::var_os("ACADEMY_OPS_CHILD").is_none() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_rust_programs_own_subscriber_gets_the_events_and_stays",
            ])
            .args(["--nocapture", "--test-threads=1"])
            .env("ACADEMY_OPS_CHILD", "1")
            .env_remove("ACADEMY_LOG")
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{all}");
        assert!(all.contains("1 passed"), "{all}");
        return;
    }
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    struct Collect(Arc<Mutex<Vec<String>>>);
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Collect {
        fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            self.0
                .lock()
                .unwrap()
                .push(e.metadata().target().to_owned());
        }
    }
    use tracing_subscriber::layer::SubscriberExt;
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(Collect(seen.clone())),
    )
    .unwrap();
    let status =
        unsafe { academy::ffi::log::academy_set_log_callback(None, std::ptr::null_mut(), 4) };
    assert_eq!(
        status,
        academy::ffi::academy_status::ACADEMY_OK,
        "removing is fine"
    );
    unsafe extern "C" fn never(
        _: *mut std::ffi::c_void,
        _: academy::ffi::log::academy_log_level,
        _: *const std::ffi::c_char,
        _: *const std::ffi::c_char,
    ) {
        panic!("called")
    }
    let status = unsafe {
        academy::ffi::log::academy_set_log_callback(Some(never), std::ptr::null_mut(), 4)
    };
    assert_eq!(
        status,
        academy::ffi::academy_status::ACADEMY_ERR_INVALID_ARGUMENT
    );
    assert!(
        last_error().contains("another tracing subscriber"),
        "{}",
        last_error()
    );
    let factory = Factory::new(
        "http://127.0.0.1:9",
        Some(r#"{"retries": 1, "initial_retry_backoff_s": 0.01}"#),
    )
    .unwrap();
    assert!(factory.user(None).is_err());
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter().any(|t| t == "academy::transport::http"),
        "{seen:?}"
    );
}
