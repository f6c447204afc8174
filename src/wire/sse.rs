//! An incremental parser of `text/event-stream` (the exchange's
//! `GET /mailbox/listen`). Bytes go in as they arrive; complete events come
//! out. Comments (`:` lines, the server's keep-alives) are dropped, `retry:`
//! and `id:` are remembered, and `data:` lines of one event are joined.
//!
//! A server's `retry:` is held to [`MIN_RETRY_MS`] ..= [`MAX_RETRY_MS`]: a
//! server cannot make clients reconnect in a tight loop, nor stay away for
//! days.

/// The shortest reconnection delay a server may ask for (ms).
pub const MIN_RETRY_MS: u64 = 100;
/// The longest reconnection delay a server may ask for (ms).
pub const MAX_RETRY_MS: u64 = 60_000;

/// One complete event: the joined `data:` lines (without the last newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub data: String,
    pub id: Option<String>,
}

/// Incremental SSE parser.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    retry_ms: Option<u64>,
    /// Longest line accepted; a longer one is an error, not unbounded memory.
    max_line: Option<usize>,
}

/// A stream that is not valid SSE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseError(pub String);

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Limits the length of one line (and of one event's data).
    pub fn with_max_line(mut self, max: usize) -> Self {
        self.max_line = Some(max);
        self
    }

    /// The last `retry:` the server sent, in milliseconds, held to
    /// [`MIN_RETRY_MS`] ..= [`MAX_RETRY_MS`].
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms.map(|ms| ms.clamp(MIN_RETRY_MS, MAX_RETRY_MS))
    }

    /// The last `id:` the server sent.
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Feeds bytes; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, SseError> {
        let mut events = Vec::new();
        self.buffer.extend_from_slice(bytes);
        let mut start = 0;
        let mut i = 0;
        while i < self.buffer.len() {
            let b = self.buffer[i];
            if b == b'\n' || b == b'\r' {
                // A lone \r at the end may be the first half of \r\n.
                if b == b'\r' && i + 1 == self.buffer.len() {
                    break;
                }
                let line = self.buffer[start..i].to_vec();
                let next = if b == b'\r' && self.buffer[i + 1] == b'\n' {
                    i + 2
                } else {
                    i + 1
                };
                self.line(&line, &mut events)?;
                start = next;
                i = next;
            } else {
                i += 1;
            }
        }
        self.buffer.drain(..start);
        if let Some(max) = self.max_line {
            if self.buffer.len() > max || self.data.len() > max {
                return Err(SseError(format!(
                    "event stream line longer than {max} bytes"
                )));
            }
        }
        Ok(events)
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<Event>) -> Result<(), SseError> {
        if line.is_empty() {
            if self.has_data {
                let mut data = std::mem::take(&mut self.data);
                if data.ends_with('\n') {
                    data.pop();
                }
                self.has_data = false;
                events.push(Event {
                    data,
                    id: self.last_id.clone(),
                });
            }
            return Ok(());
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| SseError("event stream is not UTF-8".to_owned()))?;
        if line.starts_with(':') {
            return Ok(()); // a comment: the server's keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "id" => self.last_id = Some(value.to_owned()),
            // The spec's digits only; larger than u64 is as large as it
            // gets.
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry_ms = Some(value.parse().unwrap_or(u64::MAX));
            }
            _ => {} // "event" and unknown fields are ignored, as the spec says
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_anywhere() {
        let stream =
            b": ping\r\n\r\nretry: 250\r\nid: 7\r\ndata: {\"a\":1}\r\n\r\ndata: x\ndata: y\n\n";
        for split in 0..stream.len() {
            let mut p = SseParser::new();
            let mut events = p.feed(&stream[..split]).unwrap();
            events.extend(p.feed(&stream[split..]).unwrap());
            assert_eq!(events.len(), 2, "split at {split}");
            assert_eq!(events[0].data, "{\"a\":1}");
            assert_eq!(events[0].id.as_deref(), Some("7"));
            assert_eq!(events[1].data, "x\ny");
            assert_eq!(p.retry_ms(), Some(250));
        }
    }

    #[test]
    fn retry_is_held_to_bounds() {
        let retry = |text: &str| {
            let mut p = SseParser::new();
            p.feed(text.as_bytes()).unwrap();
            p.retry_ms()
        };
        assert_eq!(retry("retry: 0\n"), Some(MIN_RETRY_MS));
        assert_eq!(retry("retry: 1\n"), Some(MIN_RETRY_MS));
        assert_eq!(retry("retry: 2500\n"), Some(2500));
        assert_eq!(retry("retry: 86400000\n"), Some(MAX_RETRY_MS));
        assert_eq!(
            retry("retry: 99999999999999999999999\n"),
            Some(MAX_RETRY_MS)
        );
        assert_eq!(retry("retry: -5\n"), None);
        assert_eq!(retry("retry: 5s\n"), None);
    }

    #[test]
    fn keepalives_make_no_events() {
        let mut p = SseParser::new();
        assert!(p.feed(b": ping\n\n: ping\n\n").unwrap().is_empty());
    }

    #[test]
    fn limits_line_length() {
        let mut p = SseParser::new().with_max_line(8);
        assert!(p.feed(b"data: 0123456789").is_err());
    }

    #[test]
    fn rejects_invalid_utf8() {
        let mut p = SseParser::new();
        assert!(p.feed(b"data: \xff\xfe\n\n").is_err());
    }
}
