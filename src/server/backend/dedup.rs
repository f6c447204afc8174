//! The message tags a mailbox took recently, so that a message sent again
//! (its sender never got the answer to the first try) is dropped instead
//! of delivered twice. The exchange says that it does this with the
//! `academy-dedup: tag` answer header, and libacademy's clients then send
//! again a message whose answer was lost.
//!
//! A repeat is dropped if it comes within [`WINDOW`] of the first and
//! fewer than [`MAX_PER_MAILBOX`] messages later to the same mailbox. A
//! request and its response share a tag, so the kind is part of the key.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// How long a tag is remembered.
pub(crate) const WINDOW: Duration = Duration::from_secs(300);
/// How many tags a mailbox remembers at most (about 40 bytes each).
pub(crate) const MAX_PER_MAILBOX: usize = 100_000;

/// A tag and whether it was a request's.
type Key = (u128, bool);

#[derive(Default)]
pub(crate) struct RecentTags {
    seen: HashSet<Key>,
    order: VecDeque<(Instant, Key)>,
}

impl RecentTags {
    /// Whether this tag was taken within the window.
    pub(crate) fn seen(&mut self, tag: Uuid, request: bool, now: Instant) -> bool {
        self.forget_before(now);
        self.seen.contains(&(tag.as_u128(), request))
    }

    /// Remembers a tag taken now.
    pub(crate) fn remember(&mut self, tag: Uuid, request: bool, now: Instant) {
        let key = (tag.as_u128(), request);
        if self.seen.insert(key) {
            self.order.push_back((now, key));
        }
        while self.order.len() > MAX_PER_MAILBOX {
            self.forget_oldest();
        }
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > WINDOW)
        {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((_, key)) = self.order.pop_front() {
            self.seen.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_seen_within_the_window_and_forgotten_after() {
        let mut tags = RecentTags::default();
        let t0 = Instant::now();
        let tag = Uuid::new_v4();
        assert!(!tags.seen(tag, true, t0));
        tags.remember(tag, true, t0);
        assert!(tags.seen(tag, true, t0 + Duration::from_secs(1)));
        assert!(
            !tags.seen(tag, false, t0),
            "a response shares its request's tag"
        );
        assert!(!tags.seen(tag, true, t0 + WINDOW + Duration::from_secs(1)));
        assert!(tags.order.is_empty() && tags.seen.is_empty());
    }

    #[test]
    fn memory_is_bounded() {
        let mut tags = RecentTags::default();
        let now = Instant::now();
        let first = Uuid::new_v4();
        tags.remember(first, true, now);
        for _ in 0..MAX_PER_MAILBOX {
            tags.remember(Uuid::new_v4(), true, now);
        }
        assert_eq!(tags.seen.len(), MAX_PER_MAILBOX);
        assert!(!tags.seen(first, true, now), "the oldest went first");
    }
}
