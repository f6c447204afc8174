//! HTTP/1.1 answers as bytes: one parser ([`parse_answer`]) that the
//! blocking, tokio and pipelined connections all feed, and the failures a
//! request can end in. No I/O here, so the parser can be fuzzed alone.

use std::io;
use std::time::{Duration, Instant};

/// Longest answer head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Longest answer body accepted (far above any exchange's message limit).
const MAX_BODY: usize = 1 << 30;
/// Headers in an answer head.
const MAX_HEADERS: usize = 64;
/// An answer: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why a request failed before an answer was read.
#[derive(Debug)]
pub enum Failure {
    /// No connection could be made.
    Connect(io::Error),
    /// The deadline passed.
    Timeout,
    /// The connection failed mid-request.
    Io(io::Error),
    /// The server answered something that is not HTTP/1.1.
    Protocol(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connection refused or unreachable: {e}"),
            Failure::Timeout => write!(f, "operation timed out"),
            Failure::Io(e) => write!(f, "connection failed: {e}"),
            Failure::Protocol(e) => write!(f, "bad HTTP answer: {e}"),
        }
    }
}

pub(crate) fn io_failure(e: io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Timeout,
        _ => Failure::Io(e),
    }
}

pub(crate) fn closed_early() -> Failure {
    Failure::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the server closed the connection before answering",
    ))
}

pub(crate) fn remaining(deadline: Instant) -> Result<Duration, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(Failure::Timeout)
    } else {
        Ok(left)
    }
}

/// A failed attempt: `Untouched` when nothing of an answer was read (so
/// the request may go again on a new connection).
pub(crate) enum Attempt {
    Untouched(Failure),
    Failed(Failure),
}

impl Attempt {
    pub(crate) fn into_failure(self) -> Failure {
        match self {
            Attempt::Untouched(f) | Attempt::Failed(f) => f,
        }
    }

    pub(crate) fn of(failure: Failure, answer_started: bool) -> Attempt {
        if answer_started || matches!(failure, Failure::Timeout) {
            Attempt::Failed(failure)
        } else {
            Attempt::Untouched(failure)
        }
    }
}

/// What [`parse_answer`] made of the bytes so far.
pub(crate) enum Parsed {
    /// An answer, the bytes it took, and whether the connection may carry
    /// another request (its end was framed, and the server keeps it open).
    Complete {
        answer: Answer,
        used: usize,
        reusable: bool,
    },
    /// More bytes are needed: at least `need` in all.
    Incomplete { need: usize },
}

struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    keep_alive: bool,
}

/// Parses one answer from the start of `buf` (`eof`: no more bytes will
/// come), skipping `100 Continue` and other 1xx heads.
pub(crate) fn parse_answer(buf: &[u8], eof: bool) -> Result<Parsed, Failure> {
    let more = Parsed::Incomplete {
        need: buf.len() + 1,
    };
    let mut pos = 0;
    let head = loop {
        match parse_head(&buf[pos..])? {
            None if buf.len() - pos > MAX_HEAD => {
                return Err(Failure::Protocol("answer head too long".into()))
            }
            None => return Ok(more),
            Some((head, len)) => {
                pos += len;
                if !(100..200).contains(&head.status) {
                    break head;
                }
            }
        }
    };
    let complete = |body: &[u8], end: usize, framed: bool| Parsed::Complete {
        answer: Answer {
            status: head.status,
            body: body.to_vec(),
        },
        used: end,
        reusable: framed && head.keep_alive,
    };
    if head.status == 204 || head.status == 304 {
        return Ok(complete(&[], pos, true));
    }
    if head.chunked {
        return Ok(match parse_chunked(buf, pos)? {
            Ok((body, end)) => complete(&body, end, true),
            Err(need) => Parsed::Incomplete { need },
        });
    }
    if let Some(len) = head.content_length {
        if len > MAX_BODY {
            return Err(Failure::Protocol(format!("answer of {len} bytes")));
        }
        return Ok(if buf.len() >= pos + len {
            complete(&buf[pos..pos + len], pos + len, true)
        } else {
            Parsed::Incomplete { need: pos + len }
        });
    }
    // Neither length nor chunks: the body ends when the server closes.
    if buf.len() - pos > MAX_BODY {
        return Err(Failure::Protocol("answer too long".into()));
    }
    Ok(if eof {
        complete(&buf[pos..], buf.len(), false)
    } else {
        more
    })
}

/// One answer head and its length, or `None` if incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Failure::Protocol(e.to_string())),
    };
    let mut head = Head {
        status: parsed.code.unwrap_or(0),
        content_length: None,
        chunked: false,
        keep_alive: parsed.version == Some(1),
    };
    for h in parsed.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            head.content_length = Some(
                value
                    .parse()
                    .map_err(|_| Failure::Protocol(format!("bad content-length {value:?}")))?,
            );
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().ends_with("chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            head.keep_alive &= !value.eq_ignore_ascii_case("close");
        }
    }
    Ok(Some((head, len)))
}

/// The next CRLF-ended line from `pos`: the line and where the next
/// starts, or `None` if incomplete.
fn line(buf: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, Failure> {
    match buf[pos..].windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some((&buf[pos..pos + i], pos + i + 2))),
        None if buf.len() - pos > MAX_HEAD => Err(Failure::Protocol("chunk line too long".into())),
        None => Ok(None),
    }
}

/// A chunked body from `pos`: `Ok(Ok((body, end)))`, or `Ok(Err(need))`.
fn parse_chunked(buf: &[u8], mut pos: usize) -> Result<Result<(Vec<u8>, usize), usize>, Failure> {
    let more = Err(buf.len() + 1);
    let mut body = Vec::new();
    loop {
        let Some((size_line, next)) = line(buf, pos)? else {
            return Ok(more);
        };
        let text = String::from_utf8_lossy(size_line);
        let size = text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| Failure::Protocol(format!("bad chunk size {size:?}")))?;
        pos = next;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some((trailer, next)) = line(buf, pos)? else {
                    return Ok(more);
                };
                pos = next;
                if trailer.is_empty() {
                    return Ok(Ok((body, pos)));
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(Failure::Protocol("answer too long".into()));
        }
        if buf.len() < pos + size + 2 {
            return Ok(Err(pos + size + 2));
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(Failure::Protocol("chunk not followed by CRLF".into()));
        }
        pos += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_split_across_reads_are_put_together() {
        let whole: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        for cut in 1..whole.len() {
            assert!(matches!(
                parse_answer(&whole[..cut], false),
                Ok(Parsed::Incomplete { .. })
            ));
        }
        match parse_answer(whole, false) {
            Ok(Parsed::Complete {
                answer,
                used,
                reusable,
            }) => {
                assert_eq!(
                    (answer.body.as_slice(), used, reusable),
                    (&b"hello"[..], whole.len(), true)
                );
            }
            _ => panic!("a whole answer is complete"),
        }
        assert!(matches!(
            parse_answer(b"HTTP/1.1 200 OK\r\n\r\npartial", true),
            Ok(Parsed::Complete {
                reusable: false,
                ..
            })
        ));
        assert!(matches!(
            parse_answer(b"SMTP ready\r\n\r\n", false),
            Err(Failure::Protocol(_))
        ));
    }
}
