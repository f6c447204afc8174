# Generated from include/academy.h by tests/julia_static.rs; do not edit.
# Regenerate: ACADEMY_BLESS=1 cargo test --release --test julia_static

"The header's version (ACADEMY_VERSION_*)."
const ACADEMY_VERSION = v"0.1.0"

# enum academy_event_kind
const ACADEMY_EVENT_CALL = Cint(1)
const ACADEMY_EVENT_MESSAGE = Cint(2)
const ACADEMY_EVENT_REQUEST = Cint(3)
const ACADEMY_EVENT_ENDED = Cint(4)

# enum academy_log_level
const ACADEMY_LOG_OFF = Cint(0)
const ACADEMY_LOG_ERROR = Cint(1)
const ACADEMY_LOG_WARN = Cint(2)
const ACADEMY_LOG_INFO = Cint(3)
const ACADEMY_LOG_DEBUG = Cint(4)
const ACADEMY_LOG_TRACE = Cint(5)

# enum academy_mailbox_status
const ACADEMY_MAILBOX_MISSING = Cint(0)
const ACADEMY_MAILBOX_ACTIVE = Cint(1)
const ACADEMY_MAILBOX_INACTIVE = Cint(2)
const ACADEMY_MAILBOX_TERMINATED = Cint(3)

# enum academy_status
const ACADEMY_OK = Cint(0)
const ACADEMY_ERR_INVALID_ARGUMENT = Cint(1)
const ACADEMY_ERR_TIMEOUT = Cint(2)
const ACADEMY_ERR_BAD_ENTITY_ID = Cint(3)
const ACADEMY_ERR_MAILBOX_TERMINATED = Cint(4)
const ACADEMY_ERR_UNAUTHORIZED = Cint(5)
const ACADEMY_ERR_FORBIDDEN = Cint(6)
const ACADEMY_ERR_MESSAGE_TOO_LARGE = Cint(7)
const ACADEMY_ERR_BAD_REQUEST = Cint(8)
const ACADEMY_ERR_CONNECTION = Cint(9)
const ACADEMY_ERR_HTTP = Cint(10)
const ACADEMY_ERR_PROTOCOL = Cint(11)
const ACADEMY_ERR_CLOSED = Cint(12)
const ACADEMY_ERR_REMOTE = Cint(13)
const ACADEMY_ERR_INTERNAL = Cint(99)
