//! The log of the `academy-exchange` command, as academy-py's `[logger]`
//! (`LogConfig.init_logger`) sets it up: lines on stdout at `level`, and
//! with `logfile` also in that file at `logfile_level`, in academy-py's
//! format:
//!
//! ```text
//! [2025-06-01 12:00:00.123] INFO     (academy::access) 127.0.0.1:50122 "POST /mailbox" 200 0.214 ms
//! ```
//!
//! and in the file, as academy-py's file handler, with the thread and
//! process: `[2025-06-01 12:00:00.123] [tid=4242 pid=4240]  INFO     (…) …`.
//! Python levels map onto `tracing`'s: a line passes when its Python level
//! (TRACE 5, DEBUG 10, INFO 20, WARNING 30, ERROR 40) is at least the
//! configured number. The environment variable `ACADEMY_LOG` (a `tracing`
//! filter such as `debug` or `academy::access=info,warn`) overrides both
//! levels.

use std::fmt;
use std::sync::Mutex;
use std::time::SystemTime;

use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Registry};

use crate::error::{Error, Result};
use crate::logging::ENV;
use crate::server::config::{LoggerConfig, PyLevel};
use crate::server::logfile::{local_tm, LogFile};

/// The `tracing` levels whose Python level is at least `level`.
pub fn level_filter(level: PyLevel) -> LevelFilter {
    match level.0 {
        i64::MIN..=5 => LevelFilter::TRACE,
        6..=10 => LevelFilter::DEBUG,
        11..=20 => LevelFilter::INFO,
        21..=30 => LevelFilter::WARN,
        31..=40 => LevelFilter::ERROR,
        _ => LevelFilter::OFF,
    }
}

/// Python's `levelname`.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// academy-py's `_Formatter` without colours; `extra` adds the thread and
/// process as its file handler does.
struct PyFormat {
    extra: bool,
}

impl<S, N> FormatEvent<S, N> for PyFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = SystemTime::now();
        let tm = local_tm(now);
        let millis = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_millis());
        write!(
            writer,
            "[{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{millis:03}] ",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        )?;
        if self.extra {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::syscall(libc::SYS_gettid) };
            write!(writer, "[tid={tid} pid={}]  ", std::process::id())?;
        }
        let meta = event.metadata();
        write!(
            writer,
            "{:<8} ({}) ",
            level_name(meta.level()),
            meta.target()
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// A filter for one output: `ACADEMY_LOG` if set, else the level.
fn filter(level: PyLevel) -> Result<EnvFilter> {
    match std::env::var(ENV).ok().filter(|v| !v.trim().is_empty()) {
        Some(directives) => EnvFilter::builder().parse(&directives).map_err(|e| {
            Error::invalid(format!("{ENV}={directives:?} is not a valid filter: {e}"))
        }),
        None => Ok(EnvFilter::default().add_directive(level_filter(level).into())),
    }
}

/// Installs the command's log as the process's global `tracing`
/// subscriber. Fails when the log file cannot be opened, `ACADEMY_LOG` is
/// not a valid filter, or a subscriber is installed already.
pub fn install(config: &LoggerConfig) -> Result<()> {
    let stdout = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stdout)
        .event_format(PyFormat { extra: false })
        .with_filter(filter(config.level)?);
    let file = match &config.logfile {
        None => None,
        Some(path) => {
            let rotate = config
                .rotate
                .then_some((config.rotation_interval_days, config.backup_count));
            let log = LogFile::open(path, rotate).map_err(|e| {
                Error::invalid(format!("cannot open the log file {}: {e}", path.display()))
            })?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(Mutex::new(log))
                    .with_ansi(false)
                    .event_format(PyFormat { extra: true })
                    .with_filter(filter(config.logfile_level)?),
            )
        }
    };
    let subscriber = Registry::default().with(stdout).with(file);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| Error::invalid("a tracing subscriber is installed already"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_levels_map_onto_tracing_levels() {
        for (py, filter) in [
            (0, LevelFilter::TRACE),
            (10, LevelFilter::DEBUG),
            (15, LevelFilter::INFO),
            (20, LevelFilter::INFO),
            (30, LevelFilter::WARN),
            (40, LevelFilter::ERROR),
            (50, LevelFilter::OFF),
        ] {
            assert_eq!(level_filter(PyLevel(py)), filter, "{py}");
        }
    }
}
