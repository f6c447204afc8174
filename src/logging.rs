//! The library's own log: silent unless a program asks for it.
//!
//! The code logs with `tracing` macros (reconnects, retries, the fast path
//! turned off, fork detection, the embedded exchange's requests). Where the
//! events go is decided here, and the choice is about who owns the
//! process-wide `tracing` dispatcher:
//!
//! - A Rust program that links the crate owns it. The library never installs
//!   a subscriber on its own: its events go to whatever the program set up
//!   (or nowhere), and nothing it does breaks the program's own `tracing`.
//! - A C program (the cdylib or staticlib) has its own copy of `tracing`'s
//!   statics inside libacademy, which nobody else can set. There, the first
//!   C call checks `ACADEMY_LOG` ([`init_from_env`], called by the C layer
//!   only), and `academy_set_log_callback` ([`set_sink`]) asks for the
//!   events; either installs, once, a global dispatcher of the library's
//!   (`set_global_default`). Until then no dispatcher exists and a disabled
//!   event costs one relaxed atomic load (`tracing`'s global max level).
//!
//! A scoped dispatcher (`with_default` around every C call and on every
//! library thread) would avoid the global one, but it would also hide the
//! events of library threads from a Rust program's global subscriber, and
//! cost a thread-local swap on every call. If a Rust program does call
//! `academy_set_log_callback` after installing its own subscriber, the call
//! fails with a message saying so and the program's subscriber stays.
//!
//! The installed dispatcher has two outputs, each with its own filter:
//! `ACADEMY_LOG` (an `EnvFilter` directive such as `debug` or
//! `academy=debug,academy::server=info`) writes lines to stderr, and the
//! sink ([`set_sink`]: the C callback) gets the events at its level, which
//! can change at any time.

use std::cell::Cell;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Once, OnceLock, RwLock};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};
use tracing_subscriber::{EnvFilter, Registry};

use crate::error::{Error, Result};

/// Where events go besides stderr: called with the level, the target (the
/// module that logged, e.g. `academy::transport`) and the message with its
/// fields. Called on the thread that logs.
pub type Sink = Box<dyn Fn(Level, &str, &str) + Send + Sync>;

/// The environment variable with the stderr filter.
pub const ENV: &str = "ACADEMY_LOG";

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
/// The sink's level: 0 off, then 1 error to 5 trace.
static SINK_LEVEL: AtomicU8 = AtomicU8::new(0);
/// Whether the library's dispatcher is the global one (or why not).
static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();

thread_local! {
    /// Set while this thread runs the sink: its own events are dropped (no
    /// recursion), and it may not replace the sink (it holds the lock).
    static IN_SINK: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is running the log sink (the program's log
/// callback): a call that waits is refused there (see
/// [`crate::runtime::may_wait`]).
pub fn in_sink() -> bool {
    IN_SINK.with(Cell::get)
}

fn level_code(level: LevelFilter) -> u8 {
    match level.into_level() {
        None => 0,
        Some(Level::ERROR) => 1,
        Some(Level::WARN) => 2,
        Some(Level::INFO) => 3,
        Some(Level::DEBUG) => 4,
        Some(Level::TRACE) => 5,
    }
}

fn sink_level() -> LevelFilter {
    match SINK_LEVEL.load(Ordering::Acquire) {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// The sink's filter: its level, read again after every change (the
/// callsite cache is rebuilt then). The libraries libacademy uses (hyper,
/// reqwest, redis…) reach the sink only with their warnings and errors,
/// unless the level is TRACE.
struct SinkFilter;

fn sink_wants(meta: &Metadata<'_>) -> bool {
    let level = sink_level();
    level >= *meta.level()
        && (meta.target().starts_with("academy")
            || *meta.level() <= Level::WARN
            || level == LevelFilter::TRACE)
}

impl<S> Filter<S> for SinkFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        sink_wants(meta)
    }

    fn callsite_enabled(&self, meta: &Metadata<'_>) -> Interest {
        if sink_wants(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(sink_level())
    }
}

/// An event as one line of text: the message, then ` key=value` fields.
#[derive(Default)]
pub(crate) struct Line(pub(crate) String);

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

/// Hands events to the sink.
struct SinkLayer;

impl<S: Subscriber> Layer<S> for SinkLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if IN_SINK.with(Cell::get) {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        let meta = event.metadata();
        let sink = SINK.read().unwrap_or_else(|p| p.into_inner());
        if let Some(sink) = sink.as_ref() {
            IN_SINK.with(|s| s.set(true));
            // A Rust sink that panics loses its line, never the library's
            // thread (a C callback cannot unwind).
            let _ = catch_unwind(AssertUnwindSafe(|| {
                sink(*meta.level(), meta.target(), &line.0)
            }));
            IN_SINK.with(|s| s.set(false));
        }
    }
}

/// The `ACADEMY_LOG` filter, if the variable is set; a bad value is
/// reported on stderr once and ignored (nothing else can report it).
fn env_filter() -> Option<EnvFilter> {
    let value = std::env::var(ENV).ok().filter(|v| !v.trim().is_empty())?;
    match EnvFilter::builder().parse(&value) {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!(
                "libacademy: {ENV}={value:?} is not a valid filter ({e}); not logging to stderr"
            );
            None
        }
    }
}

/// Installs the library's dispatcher as the global one, once.
fn install() -> Result<()> {
    let outcome = INSTALLED.get_or_init(|| {
        let stderr = env_filter().map(|filter| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .with_thread_names(true)
                .with_filter(filter)
        });
        let subscriber = Registry::default()
            .with(stderr)
            .with(SinkLayer.with_filter(SinkFilter));
        tracing::subscriber::set_global_default(subscriber).map_err(|_| {
            "another tracing subscriber is already the global one in this process (the program's own): \
             libacademy's events go to it"
                .to_owned()
        })
    });
    outcome.clone().map_err(Error::invalid)
}

/// Called by the C layer on every call: the first one installs the
/// library's dispatcher if `ACADEMY_LOG` is set.
pub fn init_from_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os(ENV).is_some_and(|v| !v.is_empty()) {
            let _ = install();
        }
    });
}

/// Sends the library's events at `level` or more severe to `sink`
/// (replacing any sink before), or none (`None` or `LevelFilter::OFF`).
/// When it returns, the sink it replaced is not running and will not be
/// called again. Fails when called from inside the sink, or when the
/// program installed its own global subscriber first.
pub fn set_sink(sink: Option<Sink>, level: LevelFilter) -> Result<()> {
    if IN_SINK.with(Cell::get) {
        return Err(Error::invalid(
            "academy_set_log_callback cannot be called from inside the log callback",
        ));
    }
    let sink = sink.filter(|_| level != LevelFilter::OFF);
    if sink.is_some() {
        install()?;
    }
    let level = if sink.is_some() {
        level
    } else {
        LevelFilter::OFF
    };
    {
        let mut slot = SINK.write().unwrap_or_else(|p| p.into_inner());
        *slot = sink;
        SINK_LEVEL.store(level_code(level), Ordering::Release);
    }
    // Callsites cached as never (or always) enabled are asked again.
    tracing::callsite::rebuild_interest_cache();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_sink_gets_events_at_its_level_and_nothing_after_it_is_removed() {
        let got: Arc<Mutex<Vec<(Level, String, String)>>> = Arc::default();
        let keep = got.clone();
        set_sink(
            Some(Box::new(move |level, target, message| {
                // The sink's own events are dropped, not recursed into.
                tracing::warn!("from inside the sink");
                keep.lock()
                    .unwrap()
                    .push((level, target.to_owned(), message.to_owned()))
            })),
            LevelFilter::INFO,
        )
        .unwrap();
        tracing::debug!("too detailed");
        tracing::info!(attempt = 2, url = "http://x", "retrying");
        std::thread::spawn(|| tracing::error!("from another thread"))
            .join()
            .unwrap();
        set_sink(None, LevelFilter::OFF).unwrap();
        tracing::error!("after removal");
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, Level::INFO);
        assert_eq!(got[0].1, "academy::logging::tests");
        assert_eq!(got[0].2, "retrying attempt=2 url=\"http://x\"");
        assert_eq!(
            (got[1].0, got[1].2.as_str()),
            (Level::ERROR, "from another thread")
        );
    }
}
