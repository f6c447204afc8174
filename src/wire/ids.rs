//! Identifiers of users and agents (`academy.identifier` in academy-py).
//!
//! On the wire an id is `{"uid": "<uuid>", "name": <str|null>, "role":
//! "user"|"agent"}`, in that key order; pydantic forbids other keys.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::fork;

/// Random bytes taken from the OS a batch at a time: every message needs a
/// fresh uuid4 tag, and one `getrandom()` system call per tag was a
/// measurable part of a send.
struct RandomBytes {
    buf: [u8; 512],
    used: usize,
    /// The fork generation the bytes were drawn in: a child of `fork()`
    /// has a copy of its parent's, and must not reuse them.
    generation: u32,
}

thread_local! {
    static RANDOM: RefCell<RandomBytes> = const {
        RefCell::new(RandomBytes { buf: [0; 512], used: 512, generation: 0 })
    };
}

fn fill_random(buf: &mut [u8]) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: writes at most buf.len() bytes into buf.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n == buf.len() as isize {
            return;
        }
    }
    for chunk in buf.chunks_mut(16) {
        let len = chunk.len();
        chunk.copy_from_slice(&Uuid::new_v4().as_bytes()[..len]);
    }
}

/// A random (version 4) uuid, as `Uuid::new_v4()`, from the same source.
pub fn random_uuid() -> Uuid {
    let generation = fork::fork_generation();
    RANDOM.with(|r| {
        let mut r = r.borrow_mut();
        if r.used + 16 > r.buf.len() || r.generation != generation {
            fill_random(&mut r.buf);
            r.used = 0;
            r.generation = generation;
        }
        let mut bytes = [0u8; 16];
        let at = r.used;
        bytes.copy_from_slice(&r.buf[at..at + 16]);
        r.buf[at..at + 16].fill(0); // each byte is used once
        r.used += 16;
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    })
}

/// Whether a mailbox belongs to a user or to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Agent,
}

/// The id of a mailbox on an exchange. Two ids are equal when role and uid
/// are, whatever their names (as in academy-py).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityId {
    pub uid: Uuid,
    #[serde(default)]
    pub name: Option<String>,
    pub role: Role,
}

impl PartialEq for EntityId {
    fn eq(&self, other: &Self) -> bool {
        self.uid == other.uid && self.role == other.role
    }
}

impl Eq for EntityId {}

impl std::hash::Hash for EntityId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.uid.hash(state);
        self.role.hash(state);
    }
}

impl EntityId {
    /// A fresh user id (random uuid4).
    pub fn new_user(name: Option<&str>) -> Self {
        EntityId {
            uid: random_uuid(),
            name: name.map(str::to_owned),
            role: Role::User,
        }
    }

    /// A fresh agent id (random uuid4).
    pub fn new_agent(name: Option<&str>) -> Self {
        EntityId {
            uid: random_uuid(),
            name: name.map(str::to_owned),
            role: Role::Agent,
        }
    }

    /// An agent id known only by its uid (what `GET /discover` returns).
    pub fn agent_from_uid(uid: Uuid) -> Self {
        EntityId {
            uid,
            name: None,
            role: Role::Agent,
        }
    }

    /// Parses the JSON of an id, as C callers pass it.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| {
            Error::invalid(format!(
                "not an Academy id (expected {{\"uid\": \"<uuid>\", \"name\": <string or null>, \"role\": \"user\"|\"agent\"}}): {e}"
            ))
        })
    }

    /// Parses an id from a JSON value.
    pub fn from_value(value: &serde_json::Value) -> Result<Self> {
        serde_json::from_value(value.clone())
            .map_err(|e| Error::invalid(format!("not an Academy id: {e}")))
    }

    /// The compact JSON of the id, byte for byte as pydantic writes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("ids always serialize")
    }

    pub fn is_agent(&self) -> bool {
        self.role == Role::Agent
    }
}

impl std::fmt::Display for EntityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.role {
            Role::User => "UserId",
            Role::Agent => "AgentId",
        };
        match &self.name {
            Some(name) => write!(f, "{kind}<{name}>"),
            None => write!(f, "{kind}<{}>", &self.uid.to_string()[..8]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_pydantic_key_order() {
        let text =
            r#"{"uid":"80b78938-3bd9-4a0e-85ec-e2cb02f3a507","name":"ref-standin","role":"user"}"#;
        let id = EntityId::from_json(text).unwrap();
        assert_eq!(id.to_json(), text);
        assert_eq!(id.role, Role::User);
    }

    #[test]
    fn rejects_bad_shapes() {
        for bad in [
            "{}",
            r#"{"uid":"nope","role":"user"}"#,
            r#"{"uid":"80b78938-3bd9-4a0e-85ec-e2cb02f3a507","role":"robot"}"#,
            r#"{"uid":"80b78938-3bd9-4a0e-85ec-e2cb02f3a507","role":"user","x":1}"#,
            "[1]",
            "",
        ] {
            let err = EntityId::from_json(bad).unwrap_err();
            assert_eq!(err.status, crate::error::Status::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn equality_ignores_name() {
        let a = EntityId::new_agent(Some("a"));
        let mut b = a.clone();
        b.name = None;
        assert_eq!(a, b);
        assert_ne!(a, EntityId::new_agent(Some("a")));
    }
}

#[cfg(test)]
mod random_tests {
    use super::*;

    #[test]
    fn random_uuids_are_version_4_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let u = random_uuid();
            assert_eq!(u.get_version_num(), 4);
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
            assert!(seen.insert(u), "repeated {u}");
        }
    }

    #[test]
    fn a_forked_child_draws_new_random_bytes() {
        random_uuid(); // this thread's batch is drawn
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // The parent's next uuid, taken from the batch the child inherits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let u = random_uuid();
            unsafe {
                libc::write(fds[1], u.as_bytes().as_ptr().cast(), 16);
                libc::_exit(0);
            }
        }
        let parent = random_uuid();
        let mut child = [0u8; 16];
        let n = unsafe { libc::read(fds[0], child.as_mut_ptr().cast(), 16) };
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        assert_eq!(n, 16);
        assert_ne!(
            Uuid::from_bytes(child),
            parent,
            "child reused its parent's bytes"
        );
    }
}
