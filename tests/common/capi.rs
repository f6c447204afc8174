//! Safe wrappers over the C functions, so that tests read as the C API is
//! used: every call is checked against the status and
//! `academy_last_error` rules.

use std::ffi::{c_char, CStr, CString};
use std::ptr;
use std::sync::Mutex;

use academy::ffi::client::*;
use academy::ffi::factory::*;
use academy::ffi::*;
use once_cell::sync::Lazy;

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

/// The result of a response message, decoded by `academy_message_result`.
pub fn result_of(response: &str) -> R<String> {
    let r = c(response);
    out_string(|o| unsafe { academy::ffi::messages::academy_message_result(r.as_ptr(), o) })
}
