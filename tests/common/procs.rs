//! Processes the tests run against: exchanges (academy-py's and ours),
//! Redis, Python peers; one policy for finding Python and for stopping
//! children.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;

use super::capi::shared_embedded_exchange;

/// The Python interpreter of the test venv with academy-py 1.0.0.
pub fn python() -> PathBuf {
    match std::env::var_os("ACADEMY_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "ACADEMY_TEST_PYTHON is not set: run the tests with ./scripts/test.sh, which installs academy-py==1.0.0 \
             into a virtual environment and sets it"
        ),
    }
}

/// The Python interpreter of a venv with academy-py 1.0.0 and numpy 1.26
/// (`major` 1) or numpy 2.x (`major` 2): ACADEMY_TEST_PYTHON_NUMPY1 or
/// ACADEMY_TEST_PYTHON_NUMPY2.
pub fn python_numpy(major: u32) -> PathBuf {
    let var = format!("ACADEMY_TEST_PYTHON_NUMPY{major}");
    let spec = if major == 1 {
        "'numpy==1.26.*'"
    } else {
        "'numpy>=2,<3'"
    };
    match std::env::var_os(&var) {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "{var} is not set: make a venv with `python3 -m venv DIR && DIR/bin/pip install \
             academy-py==1.0.0 {spec}` and set {var}=DIR/bin/python (scripts/test.sh does)"
        ),
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory of the test process's own under the system's temp
/// directory (`name` says what for).
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "academy-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child process of one test, killed when dropped and (through
/// PR_SET_PDEATHSIG) when the thread that started it ends: the one policy
/// for children a test starts for itself. Children shared by the tests of
/// a binary (the shared exchanges, Python peers) instead exit when their
/// stdin closes, which happens only when the test process ends.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` as a [`ChildGuard`].
pub fn spawn_guarded(mut cmd: Command) -> ChildGuard {
    // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    ChildGuard(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}")),
    )
}

/// Starts `cmd` with its stdout piped and returns it with the first line
/// it prints (an agent's id, say), trimmed.
pub fn spawn_with_first_line(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_owned())
}

/// A self-signed certificate for `localhost` and 127.0.0.1 (not a CA, as
/// webpki wants of a server certificate), made with the openssl command:
/// (certificate, key) PEM files in `dir`.
pub fn self_signed(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
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
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed for the TLS tests (scripts/test.sh installs it)");
    assert!(status.success(), "openssl could not make a certificate");
    (cert, key)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the exchange exited before listening: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the exchange did not listen on port {port} within 30 s");
}

/// Writes `host`, `port` and the rest of an exchange config to a file.
pub fn config_file(port: u16, toml: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("academy-test-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("exchange.toml");
    std::fs::write(
        &config,
        format!("host = \"127.0.0.1\"\nport = {port}\n{toml}\n"),
    )
    .unwrap();
    config
}

/// Our exchange as a process of its own (`academy-exchange --config`).
pub struct OurExchange {
    pub url: String,
    child: Child,
}

impl OurExchange {
    pub fn start(toml: &str) -> OurExchange {
        let port = free_port();
        let config = config_file(port, toml);
        let mut child = Command::new(env!("CARGO_BIN_EXE_academy-exchange"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start academy-exchange");
        wait_for_port(port, &mut child);
        OurExchange {
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }
}

impl Drop for OurExchange {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A redis-server of the test's own on a free loopback port, with an
/// append-only file synced on every write (so that a restart keeps every
/// acknowledged write). Stopped when dropped.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("academy-redis-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = RedisServer {
            port,
            dir,
            child: None,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "redis-server is not installed: run the tests with ./scripts/test.sh, which installs it \
                 (apt-get install redis-server)",
            );
        wait_for_port(self.port, &mut child);
        self.child = Some(child);
    }

    /// The `[backend]` table of an exchange config using this Redis.
    pub fn backend_toml(&self) -> String {
        format!(
            "[backend]\nkind = \"redis\"\nhostname = \"127.0.0.1\"\nport = {}\n",
            self.port
        )
    }

    /// Kills Redis (SIGKILL: no goodbye) and starts it again on the same
    /// port and data.
    pub fn restart(&mut self, down_for: Duration) {
        self.stop();
        std::thread::sleep(down_for);
        self.spawn();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A command through redis-cli (raw output).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--raw"])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running academy-py exchange; it exits when dropped or when the test
/// process ends (its stdin closes).
pub struct PyExchange {
    pub url: String,
    pub port: u16,
    child: Child,
    _stdin: ChildStdin,
}

impl PyExchange {
    /// Starts `python -m academy.exchange.cloud --config FILE` on a free
    /// loopback port with the given extra TOML lines.
    pub fn start(extra_toml: &str, backend_toml: &str) -> PyExchange {
        Self::start_with(&python(), extra_toml, backend_toml)
    }

    /// The same with another interpreter (another academy-py version).
    pub fn start_with(
        python: &std::path::Path,
        extra_toml: &str,
        backend_toml: &str,
    ) -> PyExchange {
        Self::start_at(python, free_port(), extra_toml, backend_toml)
    }

    /// The same on a given port (to restart an exchange where it was).
    pub fn start_at(
        python: &std::path::Path,
        port: u16,
        extra_toml: &str,
        backend_toml: &str,
    ) -> PyExchange {
        Self::start_config(
            python,
            port,
            &format!("{extra_toml}\n[backend]\nkind = \"python\"\n{backend_toml}\n"),
        )
    }

    /// The same with a whole config (after `host` and `port`).
    pub fn start_config(python: &std::path::Path, port: u16, toml: &str) -> PyExchange {
        let config = config_file(port, toml);
        let mut child = Command::new(python)
            .arg(repo().join("tests/py/run_exchange.py"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the academy-py exchange");
        let stdin = child.stdin.take().unwrap();
        wait_for_port(port, &mut child);
        PyExchange {
            url: format!("http://127.0.0.1:{port}"),
            port,
            child,
            _stdin: stdin,
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PyExchange {
    fn drop(&mut self) {
        self.kill();
    }
}

static SHARED_PY: Lazy<Mutex<Option<PyExchange>>> = Lazy::new(|| Mutex::new(None));

/// The academy-py exchange shared by the tests of one test binary.
pub fn shared_python_exchange() -> String {
    let mut guard = SHARED_PY.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        *guard = Some(PyExchange::start("", ""));
    }
    guard.as_ref().unwrap().url.clone()
}

/// Both exchanges a suite runs against: (name, url).
pub fn exchanges() -> Vec<(&'static str, String)> {
    vec![
        ("python", shared_python_exchange()),
        ("embedded", shared_embedded_exchange()),
    ]
}

/// A Python program from tests/py run with the venv's interpreter; exits
/// when its stdin closes (the scripts watch it) or when dropped.
pub struct PyPeer {
    pub child: Child,
    pub stdout: BufReader<ChildStdout>,
    stdin: Option<ChildStdin>,
}

impl PyPeer {
    pub fn start(script: &str, args: &[&str]) -> PyPeer {
        Self::start_with(&python(), script, args)
    }

    /// The same with another interpreter (another venv).
    pub fn start_with(python: &std::path::Path, script: &str, args: &[&str]) -> PyPeer {
        let mut child = Command::new(python)
            .arg(repo().join("tests/py").join(script))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start tests/py/{script}: {e}"));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        PyPeer {
            child,
            stdout,
            stdin,
        }
    }

    /// The next line the program prints (panics at EOF).
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "the Python peer exited without printing a line");
        line.trim_end().to_owned()
    }

    /// Waits for the program to exit; returns whether it succeeded.
    pub fn wait(mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the Python peer did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PyPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
