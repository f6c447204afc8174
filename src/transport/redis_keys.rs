//! The Redis keys and values of academy-py's Redis and hybrid exchanges,
//! byte for byte (see `academy/exchange/redis.py` and `hybrid.py`).
//!
//! | what | Redis exchange | hybrid exchange |
//! |---|---|---|
//! | status (`ACTIVE` / `INACTIVE`) | `active:{uuid}` | `{ns}:status:{b32}` |
//! | agent MRO, comma-joined | `agent:{uuid}` | `{ns}:agent:{b32}` |
//! | queue (list; `<CLOSED>` ends it) | `queue:{uuid}` | `{ns}:queue:{b32}` (fallback) |
//! | heartbeat (`str(float)` of Redis TIME) | `heartbeat:{uuid}` | `{ns}:heartbeat:{b32}` |
//! | peer address `ipv4:port` | – | `{ns}:address:{b32}` |
//! | request in flight (its header) | `request:{dest}:{tag}` | – |
//! | counters | `outgoing:{uuid}`, `completions:{uuid}` | – |
//!
//! `{uuid}` is the canonical uuid text, `{b32}` the base32 of its bytes.

use uuid::Uuid;

use crate::wire::base32;

/// academy-py's queue sentinel, pushed at terminate to end a blocked pop.
pub const CLOSE_SENTINEL: &[u8] = b"<CLOSED>";
/// The status of a live mailbox.
pub const ACTIVE: &str = "ACTIVE";
/// The status of a terminated mailbox (academy-py's `_MailboxState.INACTIVE`;
/// any other value counts as active, as in academy-py).
pub const INACTIVE: &str = "INACTIVE";

/// Which exchange's key layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// `RedisExchangeFactory`: no prefix, canonical uuids.
    Redis,
    /// `HybridExchangeFactory`: `{namespace}:` prefix, base32 uids.
    Hybrid { namespace: String },
}

impl Layout {
    fn key(&self, redis_kind: &str, hybrid_kind: &str, uid: &Uuid) -> String {
        match self {
            Layout::Redis => format!("{redis_kind}:{uid}"),
            Layout::Hybrid { namespace } => {
                format!("{namespace}:{hybrid_kind}:{}", base32::encode_uid(uid))
            }
        }
    }

    /// Holds `ACTIVE` or `INACTIVE`.
    pub fn status(&self, uid: &Uuid) -> String {
        self.key("active", "status", uid)
    }

    pub fn agent(&self, uid: &Uuid) -> String {
        self.key("agent", "agent", uid)
    }

    pub fn queue(&self, uid: &Uuid) -> String {
        self.key("queue", "queue", uid)
    }

    pub fn heartbeat(&self, uid: &Uuid) -> String {
        self.key("heartbeat", "heartbeat", uid)
    }

    /// Hybrid only: where the mailbox's owner listens.
    pub fn address(&self, uid: &Uuid) -> String {
        self.key("address", "address", uid)
    }

    /// Redis only: the header of a request in flight to `dest`.
    pub fn request(dest: &Uuid, tag: &Uuid) -> String {
        format!("request:{dest}:{tag}")
    }

    /// Redis only: the requests in flight to `dest`, as a SCAN pattern.
    pub fn requests_pattern(dest: &Uuid) -> String {
        format!("request:{dest}:*")
    }

    /// Redis only: requests sent by `uid`.
    pub fn outgoing(uid: &Uuid) -> String {
        format!("outgoing:{uid}")
    }

    /// Redis only: requests answered by `uid`.
    pub fn completions(uid: &Uuid) -> String {
        format!("completions:{uid}")
    }

    /// A SCAN pattern of every agent key (glob characters of the namespace
    /// escaped, so that one namespace never matches another's keys).
    pub fn agents_pattern(&self) -> String {
        match self {
            Layout::Redis => "agent:*".to_owned(),
            Layout::Hybrid { namespace } => format!("{}:agent:*", glob_escape(namespace)),
        }
    }

    /// The uid in an agent key found by [`agents_pattern`](Self::agents_pattern)
    /// (academy-py: the text after the last `:`).
    pub fn uid_of_agent_key(&self, key: &str) -> Option<Uuid> {
        let last = key.rsplit(':').next()?;
        match self {
            Layout::Redis => Uuid::parse_str(last).ok(),
            Layout::Hybrid { .. } => base32::decode_uid(last),
        }
    }
}

fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The heartbeat value academy-py writes for Redis `TIME` = (`secs`,
/// `micros`): Python's `str(int(secs) + int(micros) / 1000000)`, the
/// shortest text that reads back as the same float (Rust's `{:?}` of an
/// f64 is the same text for times of this era).
pub fn heartbeat_text(secs: u64, micros: u64) -> String {
    format!("{:?}", secs as f64 + micros as f64 / 1e6)
}

/// A heartbeat value read back as Python's `float()` reads it.
pub fn parse_heartbeat(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// academy-py's `AgentStats` from its counters: requests in flight count
/// as incoming, and those no longer queued as in progress.
pub fn agent_stats(queued: u64, pending: u64, completed: u64, outgoing: u64) -> serde_json::Value {
    serde_json::json!({
        "incoming": completed + pending,
        "outgoing": outgoing,
        "completed": completed,
        "in_progress": pending.saturating_sub(queued),
        "queued": queued,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_both_layouts() {
        let uid = Uuid::parse_str("269edab5-6d61-4ad2-babc-9bd4290941d2").unwrap();
        let tag = Uuid::parse_str("0bad96a4-ba7e-4041-bd7f-1955b0241e3b").unwrap();
        let redis = Layout::Redis;
        assert_eq!(
            redis.status(&uid),
            "active:269edab5-6d61-4ad2-babc-9bd4290941d2"
        );
        assert_eq!(
            redis.queue(&uid),
            "queue:269edab5-6d61-4ad2-babc-9bd4290941d2"
        );
        assert_eq!(
            Layout::request(&uid, &tag),
            "request:269edab5-6d61-4ad2-babc-9bd4290941d2:0bad96a4-ba7e-4041-bd7f-1955b0241e3b"
        );
        let hybrid = Layout::Hybrid {
            namespace: "default".into(),
        };
        assert_eq!(
            hybrid.status(&uid),
            "default:status:E2PNVNLNMFFNFOV4TPKCSCKB2I"
        );
        assert_eq!(
            hybrid.address(&uid),
            "default:address:E2PNVNLNMFFNFOV4TPKCSCKB2I"
        );
        assert_eq!(hybrid.uid_of_agent_key(&hybrid.agent(&uid)), Some(uid));
        assert_eq!(redis.uid_of_agent_key(&redis.agent(&uid)), Some(uid));
        let odd = Layout::Hybrid {
            namespace: "a*b[c]".into(),
        };
        assert_eq!(odd.agents_pattern(), r"a\*b\[c\]:agent:*");
    }

    #[test]
    fn heartbeats_read_as_python_writes_them() {
        // Python: str(1796015273 + 660896 / 1000000) and so on.
        for (s, us, text) in [
            (1796015273, 660896, "1796015273.660896"),
            (1796015273, 100000, "1796015273.1"),
            (1796015273, 0, "1796015273.0"),
            (1796015273, 1, "1796015273.000001"),
            (1796015273, 999999, "1796015273.999999"),
            (1796015273, 123450, "1796015273.12345"),
        ] {
            assert_eq!(heartbeat_text(s, us), text);
            assert!(parse_heartbeat(text).is_some());
        }
        assert_eq!(parse_heartbeat(" 12.5\n"), Some(12.5));
        assert_eq!(parse_heartbeat("x"), None);
    }
}
