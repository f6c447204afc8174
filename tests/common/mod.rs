//! Shared test support: the real academy-py exchange and Python peers as
//! child processes, our embedded exchange, and safe wrappers over the C
//! functions so that tests read as the C API is used.
#![allow(dead_code)]

use std::ffi::{c_char, CStr, CString};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::ptr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use academy::ffi::client::*;
use academy::ffi::factory::*;
use academy::ffi::*;
use once_cell::sync::Lazy;

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

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut Child) {
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

/// The URL of our shared exchange, and its handle (kept reachable: it lives
/// as long as the test process).
static SHARED_OURS: Lazy<Mutex<Option<(String, usize)>>> = Lazy::new(|| Mutex::new(None));

/// Our embedded exchange, shared by the tests of one test binary.
pub fn shared_embedded_exchange() -> String {
    let mut guard = SHARED_OURS.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        let mut ex = ptr::null_mut();
        let status =
            unsafe { academy::ffi::exchange::academy_exchange_spawn(ptr::null(), &mut ex) };
        assert_eq!(status, academy_status::ACADEMY_OK, "{}", last_error());
        let mut url = ptr::null_mut();
        let status = unsafe { academy::ffi::exchange::academy_exchange_url(ex, &mut url) };
        assert_eq!(status, academy_status::ACADEMY_OK, "{}", last_error());
        *guard = Some((take_string(url), ex as usize));
    }
    guard.as_ref().unwrap().0.clone()
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
        let mut child = Command::new(python())
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

// ---- safe wrappers over the C API ----

pub fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

pub fn last_error() -> String {
    unsafe {
        CStr::from_ptr(academy_last_error())
            .to_string_lossy()
            .into_owned()
    }
}

pub fn take_string(p: *mut c_char) -> String {
    assert!(!p.is_null());
    let s = unsafe { CStr::from_ptr(p).to_string_lossy().into_owned() };
    unsafe { academy_string_free(p) };
    s
}

/// A failed call: its status and `academy_last_error`.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub status: academy_status,
    pub message: String,
}

pub type R<T> = Result<T, Failure>;

pub fn check(status: academy_status) -> R<()> {
    if status == academy_status::ACADEMY_OK {
        assert_eq!(
            last_error(),
            "",
            "academy_last_error must be empty after success"
        );
        Ok(())
    } else {
        let message = last_error();
        assert!(
            !message.is_empty(),
            "a failure ({status:?}) must come with academy_last_error"
        );
        Err(Failure { status, message })
    }
}

/// Asserts that a call failed with `status`; returns its message.
#[track_caller]
pub fn expect_err<T: std::fmt::Debug>(result: R<T>, status: academy_status) -> String {
    match result {
        Ok(v) => panic!("expected {status:?}, got Ok({v:?})"),
        Err(f) => {
            assert_eq!(f.status, status, "{}", f.message);
            f.message
        }
    }
}

#[derive(Debug)]
pub struct Factory(pub *mut academy_factory);
unsafe impl Send for Factory {}
unsafe impl Sync for Factory {}

impl Factory {
    pub fn new(url: &str, options: Option<&str>) -> R<Factory> {
        let url = c(url);
        let options = options.map(c);
        let mut out = ptr::null_mut();
        check(unsafe {
            academy_http_factory_new(
                url.as_ptr(),
                options.as_ref().map_or(ptr::null(), |o| o.as_ptr()),
                &mut out,
            )
        })?;
        Ok(Factory(out))
    }

    pub fn user(&self, name: Option<&str>) -> R<Client> {
        let name = name.map(c);
        let mut out = ptr::null_mut();
        check(unsafe {
            academy_user_client_new(
                self.0,
                name.as_ref().map_or(ptr::null(), |n| n.as_ptr()),
                &mut out,
            )
        })?;
        Ok(Client(out))
    }

    pub fn agent(&self, registration: &str) -> R<Client> {
        let reg = c(registration);
        let mut out = ptr::null_mut();
        check(unsafe { academy_agent_client_new(self.0, reg.as_ptr(), &mut out) })?;
        Ok(Client(out))
    }
}

impl Drop for Factory {
    fn drop(&mut self) {
        unsafe { academy_factory_free(self.0) }
    }
}

#[derive(Debug)]
pub struct Client(pub *mut academy_client);
unsafe impl Send for Client {}
unsafe impl Sync for Client {}

fn out_string(f: impl FnOnce(*mut *mut c_char) -> academy_status) -> R<String> {
    let mut out = ptr::null_mut();
    check(f(&mut out))?;
    Ok(take_string(out))
}

impl Client {
    pub fn id(&self) -> String {
        out_string(|o| unsafe { academy_client_mailbox_id(self.0, o) }).unwrap()
    }

    pub fn register_agent(&self, types: &str, name: Option<&str>) -> R<String> {
        let types = c(types);
        let name = name.map(c);
        out_string(|o| unsafe {
            academy_client_register_agent(
                self.0,
                types.as_ptr(),
                name.as_ref().map_or(ptr::null(), |n| n.as_ptr()),
                o,
            )
        })
    }

    pub fn send(&self, message: &str) -> R<()> {
        let m = c(message);
        check(unsafe { academy_client_send(self.0, m.as_ptr()) })
    }

    pub fn recv(&self, timeout_s: f64) -> R<String> {
        out_string(|o| unsafe { academy_client_recv(self.0, timeout_s, o) })
    }

    pub fn status(&self, id: &str) -> R<academy_mailbox_status> {
        let id = c(id);
        let mut out = academy_mailbox_status::ACADEMY_MAILBOX_MISSING;
        check(unsafe { academy_client_status(self.0, id.as_ptr(), &mut out) })?;
        Ok(out)
    }

    pub fn terminate(&self, id: &str) -> R<()> {
        let id = c(id);
        check(unsafe { academy_client_terminate(self.0, id.as_ptr()) })
    }

    pub fn discover(&self, agent: &str, subclasses: bool) -> R<String> {
        let agent = c(agent);
        out_string(|o| unsafe { academy_client_discover(self.0, agent.as_ptr(), subclasses, o) })
    }

    pub fn heartbeat(&self) -> R<()> {
        check(unsafe { academy_client_heartbeat(self.0) })
    }

    pub fn heartbeat_status(&self, id: &str) -> R<f64> {
        let id = c(id);
        let mut out = -1.0;
        check(unsafe { academy_client_heartbeat_status(self.0, id.as_ptr(), &mut out) })?;
        Ok(out)
    }

    pub fn agent_stats(&self, id: &str) -> R<String> {
        let id = c(id);
        out_string(|o| unsafe { academy_client_agent_stats(self.0, id.as_ptr(), o) })
    }

    pub fn share(&self, id: &str, group: &str) -> R<()> {
        let (id, group) = (c(id), c(group));
        check(unsafe { academy_client_share_mailbox(self.0, id.as_ptr(), group.as_ptr()) })
    }

    pub fn shared_groups(&self, id: &str) -> R<String> {
        let id = c(id);
        out_string(|o| unsafe { academy_client_shared_groups(self.0, id.as_ptr(), o) })
    }

    pub fn unshare(&self, id: &str, group: &str) -> R<()> {
        let (id, group) = (c(id), c(group));
        check(unsafe { academy_client_unshare_mailbox(self.0, id.as_ptr(), group.as_ptr()) })
    }

    pub fn request(&self, dest: &str, body: &str, timeout_s: f64) -> R<String> {
        let (dest, body) = (c(dest), c(body));
        out_string(|o| unsafe {
            academy_client_request(self.0, dest.as_ptr(), body.as_ptr(), timeout_s, o)
        })
    }

    pub fn action(
        &self,
        agent: &str,
        action: &str,
        args: Option<&str>,
        kwargs: Option<&str>,
        timeout_s: f64,
    ) -> R<String> {
        let (agent, action) = (c(agent), c(action));
        let (args, kwargs) = (args.map(c), kwargs.map(c));
        out_string(|o| unsafe {
            academy_client_action(
                self.0,
                agent.as_ptr(),
                action.as_ptr(),
                args.as_ref().map_or(ptr::null(), |a| a.as_ptr()),
                kwargs.as_ref().map_or(ptr::null(), |k| k.as_ptr()),
                timeout_s,
                o,
            )
        })
    }

    pub fn ping(&self, agent: &str, timeout_s: f64) -> R<f64> {
        let agent = c(agent);
        let mut rtt = 0.0;
        check(unsafe { academy_client_ping(self.0, agent.as_ptr(), timeout_s, &mut rtt) })?;
        Ok(rtt)
    }

    pub fn shutdown_agent(&self, agent: &str, terminate: i32) -> R<()> {
        let agent = c(agent);
        check(unsafe { academy_client_shutdown_agent(self.0, agent.as_ptr(), terminate) })
    }

    pub fn close(&self) -> R<()> {
        check(unsafe { academy_client_close(self.0) })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        unsafe { academy_client_free(self.0) }
    }
}

/// The agent id JSON inside a registration.
pub fn agent_id_of(registration: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(registration).unwrap();
    v["agent_id"].to_string()
}

/// A message JSON from `src` to `dest` with `body`.
pub fn message(src: &str, dest: &str, body: &str) -> String {
    let (s, d, b) = (c(src), c(dest), c(body));
    out_string(|o| unsafe {
        academy::ffi::messages::academy_message_new(s.as_ptr(), d.as_ptr(), b.as_ptr(), o)
    })
    .unwrap()
}
