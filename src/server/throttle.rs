//! Warnings that can repeat with every request (slow Redis, the connection
//! cap reached): at most one line a second, which says how many it stood
//! for, so that a bad spell does not flood the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use once_cell::sync::Lazy;

static EPOCH: Lazy<Instant> = Lazy::new(Instant::now);

/// One kind of repeated warning.
pub(crate) struct Throttle {
    /// Milliseconds after [`EPOCH`] of the last line written, plus one (0:
    /// none yet).
    last_ms: AtomicU64,
    /// Occurrences since that line.
    skipped: AtomicU64,
}

impl Throttle {
    pub(crate) const fn new() -> Self {
        Throttle {
            last_ms: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// Whether this occurrence gets a line, and if so how many occurrences
    /// went without one since the last line.
    pub(crate) fn admit(&self) -> Option<u64> {
        let now = EPOCH.elapsed().as_millis() as u64 + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        if last != 0 && now < last + 1000 {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            // Another thread writes this second's line.
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.skipped.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_counting_the_rest() {
        let t = Throttle::new();
        assert_eq!(t.admit(), Some(0));
        assert_eq!(t.admit(), None);
        assert_eq!(t.admit(), None);
        std::thread::sleep(std::time::Duration::from_millis(1010));
        assert_eq!(t.admit(), Some(2));
    }
}
