//! The `[logger] logfile` of the `academy-exchange` command: appended to,
//! and with `rotate = true` turned over every `rotation_interval_days` as
//! Python's `TimedRotatingFileHandler(when='d')` does (academy-py's
//! `LogConfig`): the old file becomes `FILE.YYYY-MM-DD` (the day its period
//! began) and only the newest `backup_count` of those are kept.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Local date and time of `t`, as `localtime_r` gives it.
pub(crate) fn local_tm(t: SystemTime) -> libc::tm {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(i64::MAX as u64) as libc::time_t;
    // SAFETY: an all-zero tm is a valid value, and localtime_r only writes
    // to it (thread-safe, unlike localtime).
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&secs, &mut tm);
        tm
    }
}

/// `%Y-%m-%d` of a local time.
fn date(tm: &libc::tm) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday
    )
}

struct Rotation {
    interval: Duration,
    backups: usize,
    /// When the current file is turned over.
    next: SystemTime,
}

/// A log file that never fails its writer: an error is reported once on
/// stderr and the line is dropped (logging must not stop the exchange).
pub(crate) struct LogFile {
    path: PathBuf,
    file: Option<File>,
    rotation: Option<Rotation>,
    reported: bool,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogFile {
    /// Opens (creating its folder) `path` for appending; `rotate`: every
    /// how many days, and how many old files to keep.
    pub(crate) fn open(path: &Path, rotate: Option<(u32, u32)>) -> io::Result<LogFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open(path)?;
        let rotation = rotate.map(|(days, backups)| {
            let interval = Duration::from_secs(u64::from(days) * 86_400);
            // As Python: the period starts at the file's last change.
            let start = file
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or_else(|_| SystemTime::now());
            Rotation {
                interval,
                backups: backups as usize,
                next: start + interval,
            }
        });
        Ok(LogFile {
            path: path.to_owned(),
            file: Some(file),
            rotation,
            reported: false,
        })
    }

    fn report(&mut self, what: &str, e: &io::Error) {
        if !self.reported {
            self.reported = true;
            eprintln!(
                "academy-exchange: log file {}: {what}: {e} (further errors not shown)",
                self.path.display()
            );
        }
    }

    /// Turns the file over if its period is over.
    fn rotate_if_due(&mut self, now: SystemTime) {
        let Some(r) = self.rotation.as_mut() else {
            return;
        };
        if now < r.next {
            return;
        }
        let began = r.next.checked_sub(r.interval).unwrap_or(r.next);
        r.next = now + r.interval;
        let backups = r.backups;
        self.file = None;
        let mut old = self.path.clone().into_os_string();
        old.push(format!(".{}", date(&local_tm(began))));
        let old = PathBuf::from(old);
        let _ = std::fs::remove_file(&old);
        if let Err(e) = std::fs::rename(&self.path, &old) {
            self.report("cannot rotate", &e);
        }
        self.remove_old(backups);
        match open(&self.path) {
            Ok(f) => self.file = Some(f),
            Err(e) => self.report("cannot open", &e),
        }
    }

    /// Deletes turned-over files beyond the newest `keep`.
    fn remove_old(&mut self, keep: usize) {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let prefix = format!("{}.", name.to_string_lossy());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut old: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.strip_prefix(&prefix).is_some_and(is_date)
            })
            .map(|e| e.path())
            .collect();
        // Dates sort as text.
        old.sort();
        let excess = old.len().saturating_sub(keep);
        for path in &old[..excess] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `YYYY-MM-DD`.
fn is_date(s: &str) -> bool {
    s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.rotate_if_due(SystemTime::now());
        if let Some(f) = self.file.as_mut() {
            if let Err(e) = f.write_all(buf) {
                self.report("cannot write", &e);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_over_into_dated_files_and_keeps_the_newest() {
        let dir = std::env::temp_dir().join(format!("academy-logfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/exchange.log");
        let mut log = LogFile::open(&path, Some((1, 2))).unwrap();
        log.write_all(b"day 0\n").unwrap();
        let start = log.rotation.as_ref().unwrap().next - Duration::from_secs(86_400);
        for day in 1..=4u64 {
            log.rotate_if_due(start + Duration::from_secs(day * 86_400 + 60));
            log.write_all(format!("day {day}\n").as_bytes()).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "day 4\n");
        let mut names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        // "exchange.log" sorts first, then its backups, oldest first.
        assert_eq!(names.len(), 3, "the file and 2 backups: {names:?}");
        assert_eq!(names[0], "exchange.log");
        assert!(names[1..]
            .iter()
            .all(|n| n.strip_prefix("exchange.log.").is_some_and(is_date)));
        // The newest two are kept: those of days 2 and 3.
        let day = |d: u64| date(&local_tm(start + Duration::from_secs(d * 86_400 + 60)));
        assert_eq!(names[2], format!("exchange.log.{}", day(3)), "{names:?}");
        assert_eq!(
            std::fs::read_to_string(path.with_file_name(&names[2])).unwrap(),
            "day 3\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_rotation_it_appends() {
        let dir = std::env::temp_dir().join(format!("academy-logfile-a-{}", std::process::id()));
        let path = dir.join("x.log");
        let _ = std::fs::remove_dir_all(&dir);
        LogFile::open(&path, None)
            .unwrap()
            .write_all(b"a\n")
            .unwrap();
        LogFile::open(&path, None)
            .unwrap()
            .write_all(b"b\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
