//! HTTP/1.1 answers as bytes: one incremental reader ([`AnswerReader`])
//! that the blocking, tokio and pipelined connections all feed, and the
//! failures a request can end in. No I/O here, so the reader can be fuzzed
//! alone and compared with hyper's client (`tests/http1_differential.rs`).
//!
//! The framing rules are hyper's client's (`Client::decoder` in hyper's
//! `proto/h1/role.rs`, the chunked decoder in `proto/h1/decode.rs`):
//! - 1xx heads are skipped; 204 and 304 have no body;
//! - `Transfer-Encoding` (HTTP/1.1 only): a chunked body when `chunked` is
//!   the final coding, else the body runs until the server closes; a
//!   `Content-Length` beside it is ignored (and the connection is then
//!   never reused: the two disagreeing is how request smuggling starts);
//! - `Content-Length`: digits only; several values (lines or a list) must
//!   all be equal;
//! - neither: the body runs until the server closes.
//!
//! Where we differ from hyper we refuse what it accepts, never the other
//! way round: a `101` (we never ask for an upgrade), chunk sizes of more
//! than 16 hex digits (httparse's limit), heads over 64 KiB (hyper's limit
//! is about 400 KiB) and bodies over 1 GiB.
//!
//! The body grows with the bytes that arrive: an announced length is a
//! limit to check, never an allocation.

use std::io;
use std::time::{Duration, Instant, SystemTime};

use crate::wire::headers::DEDUP_HEADER;

/// Longest answer head accepted.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Longest answer body accepted (far above any exchange's message limit).
pub(crate) const MAX_BODY: u64 = 1 << 30;
/// Headers in an answer head (hyper's default).
const MAX_HEADERS: usize = 100;
/// Bytes of chunk extensions in one body (hyper's limit).
const MAX_CHUNK_EXTENSIONS: usize = 16 * 1024;
/// Bytes of trailers after a chunked body (hyper's limit).
const MAX_TRAILERS: usize = 16 * 1024;
/// Bytes asked of the socket per read while a body of known length
/// arrives (more than that is asked in several reads).
const MAX_BODY_READ: usize = 256 * 1024;

/// An answer: status, body and the few headers the client acts on.
#[derive(Debug, Default)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// `Retry-After` (seconds or an HTTP date), when the answer has one.
    pub retry_after: Option<Duration>,
    /// The exchange drops repeated message tags ([`DEDUP_HEADER`]): a
    /// message whose answer was lost may be sent again without being
    /// delivered twice.
    pub dedups: bool,
}

/// Why a request failed before an answer was read.
#[derive(Debug)]
pub enum Failure {
    /// No connection could be made (the request was not sent).
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

impl Failure {
    /// A copy for each request a failure ends (io errors are not Clone).
    pub(crate) fn copy(&self) -> Failure {
        match self {
            Failure::Connect(e) => Failure::Connect(io::Error::new(e.kind(), e.to_string())),
            Failure::Timeout => Failure::Timeout,
            Failure::Io(e) => Failure::Io(io::Error::new(e.kind(), e.to_string())),
            Failure::Protocol(p) => Failure::Protocol(p.clone()),
        }
    }
}

fn protocol(what: impl Into<String>) -> Failure {
    Failure::Protocol(what.into())
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

fn closed_mid_answer() -> Failure {
    Failure::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the server closed the connection in the middle of its answer",
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

/// How far a failed request got, which decides whether sending it again
/// could deliver it twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The server cannot have acted on it: no connection, or not all of the
    /// request was written (a server acts on a whole request only), or the
    /// server closed the connection with a `connection: close` answer to an
    /// earlier request (RFC 9112 9.6: it must not act on later ones).
    NotSent,
    /// All of it was written and no answer came: the server may or may not
    /// have acted on it.
    Unknown,
}

/// A failed attempt and how far its request got.
#[derive(Debug)]
pub struct Attempt {
    pub failure: Failure,
    pub reach: Reach,
}

impl Attempt {
    pub(crate) fn not_sent(failure: Failure) -> Attempt {
        Attempt {
            failure,
            reach: Reach::NotSent,
        }
    }

    pub(crate) fn unknown(failure: Failure) -> Attempt {
        Attempt {
            failure,
            reach: Reach::Unknown,
        }
    }
}

impl From<Failure> for Attempt {
    /// A failure before anything was written (connecting).
    fn from(failure: Failure) -> Attempt {
        Attempt::not_sent(failure)
    }
}

/// How the body of the answer being read is framed, and how far it got.
#[derive(Debug)]
enum Body {
    /// `left` more bytes.
    Length {
        left: u64,
    },
    Chunked(Chunks),
    /// Until the server closes the connection.
    UntilClose,
}

/// The head of the answer being read.
#[derive(Debug)]
struct Head {
    status: u16,
    /// The connection may carry another request after this answer.
    reusable: bool,
    retry_after: Option<Duration>,
    dedups: bool,
}

/// What [`AnswerReader::read`] made of the bytes so far.
#[derive(Debug)]
pub(crate) enum Step {
    /// An answer, and whether its connection may carry another request
    /// (its end was framed and the server keeps it open; the caller must
    /// also check that no bytes are left over).
    Done { answer: Answer, reusable: bool },
    /// More bytes are needed.
    More,
}

/// Reads one answer at a time from the bytes of a connection.
#[derive(Debug, Default)]
pub(crate) struct AnswerReader {
    head: Option<Head>,
    body_framing: Option<Body>,
    body: Vec<u8>,
}

impl AnswerReader {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Whether a head has been read (so bytes of an answer have arrived).
    pub(crate) fn in_body(&self) -> bool {
        self.head.is_some()
    }

    /// How many bytes the next read may usefully ask for, at least `min`.
    pub(crate) fn want(&self, min: usize) -> usize {
        match self.body_framing {
            Some(Body::Length { left }) => {
                (left.min(MAX_BODY_READ as u64) as usize).clamp(min, MAX_BODY_READ.max(min))
            }
            _ => min,
        }
    }

    /// Reads from the front of `buf` (taking out what it used) until an
    /// answer is complete or more bytes are needed. `eof`: no more bytes
    /// will come.
    pub(crate) fn read(&mut self, buf: &mut Vec<u8>, eof: bool) -> Result<Step, Failure> {
        let mut used = 0;
        let step = self.advance(buf, &mut used, eof);
        buf.drain(..used);
        step
    }

    fn advance(&mut self, buf: &[u8], used: &mut usize, eof: bool) -> Result<Step, Failure> {
        if self.head.is_none() {
            loop {
                let Some((head, body, len)) = parse_head(&buf[*used..])? else {
                    if eof {
                        return Err(if *used == 0 && buf.is_empty() {
                            closed_early()
                        } else {
                            closed_mid_answer()
                        });
                    }
                    return Ok(Step::More);
                };
                *used += len;
                if let Some(body) = body {
                    self.head = Some(head);
                    self.body_framing = Some(body);
                    break;
                }
                // A 1xx head: the answer follows.
            }
        }
        let input = &buf[*used..];
        let done = match self.body_framing.as_mut() {
            Some(Body::Length { left }) => {
                let take = (*left).min(input.len() as u64) as usize;
                self.body.extend_from_slice(&input[..take]);
                *used += take;
                *left -= take as u64;
                *left == 0
            }
            Some(Body::Chunked(chunks)) => {
                let (n, done) = chunks.advance(input, &mut self.body)?;
                *used += n;
                done
            }
            Some(Body::UntilClose) => {
                if self.body.len() as u64 + input.len() as u64 > MAX_BODY {
                    return Err(protocol(format!("an answer longer than {MAX_BODY} bytes")));
                }
                self.body.extend_from_slice(input);
                *used += input.len();
                eof
            }
            None => return Err(protocol("no answer head")),
        };
        if !done {
            return if eof {
                Err(closed_mid_answer())
            } else {
                Ok(Step::More)
            };
        }
        let framing = self.body_framing.take();
        let head = self.head.take().ok_or_else(|| protocol("no answer head"))?;
        let answer = Answer {
            status: head.status,
            body: std::mem::take(&mut self.body),
            retry_after: head.retry_after,
            dedups: head.dedups,
        };
        let reusable = head.reusable && !matches!(framing, Some(Body::UntilClose));
        Ok(Step::Done { answer, reusable })
    }
}

#[derive(Debug)]
struct Chunks {
    state: ChunkState,
    /// Bytes of chunk extensions so far.
    extensions: usize,
    /// The trailer section, kept to check it as hyper does.
    trailers: Vec<u8>,
    trailer_lines: usize,
}

/// hyper's chunked states (the size line is read whole, by httparse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// A chunk-size line.
    Size,
    /// `left` bytes of chunk data.
    Data {
        left: u64,
    },
    /// The CR, then the LF after chunk data.
    DataCr,
    DataLf,
    /// After the last chunk: a CR (the end) or a trailer line.
    EndCr,
    EndLf,
    Trailer,
    TrailerLf,
    End,
}

impl Chunks {
    fn new() -> Chunks {
        Chunks {
            state: ChunkState::Size,
            extensions: 0,
            trailers: Vec::new(),
            trailer_lines: 0,
        }
    }

    /// Decodes what it can of `input` into `body`: the bytes used, and
    /// whether the body ended.
    fn advance(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<(usize, bool), Failure> {
        use ChunkState::*;
        let mut pos = 0;
        loop {
            if self.state == End {
                if !self.trailers.is_empty() {
                    check_trailers(&self.trailers, self.trailer_lines)?;
                }
                return Ok((pos, true));
            }
            let rest = &input[pos..];
            if let Size = self.state {
                let Some((size, len)) = self.size_line(rest)? else {
                    return Ok((pos, false));
                };
                pos += len;
                self.state = if size == 0 {
                    EndCr
                } else if !matches!(
                    (body.len() as u64).checked_add(size),
                    Some(total) if total <= MAX_BODY
                ) {
                    return Err(protocol(format!(
                        "a chunk of {size} bytes makes the answer longer than {MAX_BODY} bytes"
                    )));
                } else {
                    Data { left: size }
                };
                continue;
            }
            if let Data { left } = self.state {
                if rest.is_empty() {
                    return Ok((pos, false));
                }
                let take = left.min(rest.len() as u64) as usize;
                body.extend_from_slice(&rest[..take]);
                pos += take;
                let left = left - take as u64;
                self.state = if left == 0 { DataCr } else { Data { left } };
                continue;
            }
            let Some(&b) = rest.first() else {
                return Ok((pos, false));
            };
            pos += 1;
            self.state = self.step(b)?;
        }
    }

    /// One byte of the CR/LF and trailer states, as hyper reads them.
    fn step(&mut self, b: u8) -> Result<ChunkState, Failure> {
        use ChunkState::*;
        Ok(match (self.state, b) {
            (DataCr, b'\r') => DataLf,
            (DataCr, _) => return Err(protocol("chunk data not followed by CR")),
            (DataLf, b'\n') => Size,
            (DataLf, _) => return Err(protocol("chunk data not followed by LF")),
            (EndCr, b'\r') => {
                self.keep_trailer_byte(b, false)?;
                EndLf
            }
            (EndCr, _) => {
                self.keep_trailer_byte(b, self.trailers.is_empty())?;
                Trailer
            }
            (EndLf, b'\n') => {
                self.keep_trailer_byte(b, false)?;
                End
            }
            (EndLf, _) => return Err(protocol("chunked body not ended by CRLF")),
            (Trailer, b'\r') => {
                self.keep_trailer_byte(b, false)?;
                TrailerLf
            }
            (Trailer, _) => {
                self.keep_trailer_byte(b, false)?;
                Trailer
            }
            (TrailerLf, b'\n') => {
                if self.trailer_lines >= MAX_HEADERS {
                    return Err(protocol("too many chunked trailers"));
                }
                self.trailer_lines += 1;
                self.keep_trailer_byte(b, false)?;
                EndCr
            }
            (TrailerLf, _) => return Err(protocol("chunked trailer not ended by CRLF")),
            (Size | Data { .. } | End, _) => return Err(protocol("chunk decoder out of step")),
        })
    }

    /// Keeps a byte of the trailer section (none is kept while there is
    /// no trailer, unless `first`), within hyper's limit.
    fn keep_trailer_byte(&mut self, b: u8, first: bool) -> Result<(), Failure> {
        if self.trailers.is_empty() && !first {
            return Ok(());
        }
        self.trailers.push(b);
        if !first && self.trailers.len() >= MAX_TRAILERS {
            return Err(protocol("chunked trailers over the limit"));
        }
        Ok(())
    }

    /// A chunk-size line at the start of `rest`: the size and the line's
    /// length, or `None` if it is incomplete. The size is parsed by
    /// httparse; the line is first held to hyper's rules, which are
    /// stricter than httparse's (a size digit first, no bare LF).
    fn size_line(&mut self, rest: &[u8]) -> Result<Option<(u64, usize)>, Failure> {
        let Some(&first) = rest.first() else {
            return Ok(None);
        };
        if !first.is_ascii_hexdigit() {
            return Err(protocol("chunk size line without a size"));
        }
        let end = rest.iter().position(|&b| b == b'\r' || b == b'\n');
        let line_len = end.unwrap_or(rest.len());
        if line_len > MAX_CHUNK_EXTENSIONS + 64 {
            return Err(protocol("chunk size line too long"));
        }
        if let Some(semicolon) = rest[..line_len].iter().position(|&b| b == b';') {
            let extension = line_len - semicolon - 1;
            if self.extensions + extension >= MAX_CHUNK_EXTENSIONS {
                return Err(protocol("chunk extensions over the limit"));
            }
            if end.is_some() {
                self.extensions += extension;
            }
        }
        match end {
            None => return Ok(None),
            Some(i) if rest[i] == b'\n' => {
                return Err(protocol("chunk size line ended by a bare LF"))
            }
            Some(_) => {}
        }
        match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete((len, size))) => Ok(Some((size, len))),
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::InvalidChunkSize) => Err(protocol("invalid chunk size")),
        }
    }
}

/// Trailers must be well-formed header lines (hyper parses them).
fn check_trailers(section: &[u8], lines: usize) -> Result<(), Failure> {
    let mut headers = vec![httparse::EMPTY_HEADER; lines];
    match httparse::parse_headers(section, &mut headers) {
        Ok(httparse::Status::Complete((_, parsed))) => {
            for h in parsed {
                if reqwest::header::HeaderName::from_bytes(h.name.as_bytes()).is_err()
                    || reqwest::header::HeaderValue::from_bytes(h.value).is_err()
                {
                    return Err(protocol("invalid chunked trailer"));
                }
            }
            Ok(())
        }
        _ => Err(protocol("invalid chunked trailers")),
    }
}

/// One head, how its body is framed (`None` for a 1xx head, which another
/// head follows) and its length; `None` if incomplete.
#[allow(clippy::type_complexity)]
fn parse_head(buf: &[u8]) -> Result<Option<(Head, Option<Body>, usize)>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(protocol("answer head too long"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(protocol(e.to_string())),
    };
    if len > MAX_HEAD {
        return Err(protocol("answer head too long"));
    }
    let status = parsed.code.unwrap_or(0);
    let http11 = parsed.version == Some(1);
    let mut head = Head {
        status,
        reusable: http11,
        retry_after: None,
        dedups: false,
    };
    let mut lengths: Vec<&[u8]> = Vec::new();
    let mut last_coding: Option<&[u8]> = None;
    for h in parsed.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            lengths.push(h.value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            last_coding = Some(h.value);
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(h.value, "close") {
                head.reusable = false;
            }
        } else if name.eq_ignore_ascii_case("retry-after") {
            head.retry_after = retry_after(h.value);
        } else if name.eq_ignore_ascii_case(DEDUP_HEADER) {
            head.dedups = has_token(h.value, "tag");
        }
    }
    let body = match status {
        0..=99 => return Err(protocol(format!("invalid status {status}"))),
        101 => return Err(protocol("unexpected 101 Switching Protocols")),
        100..=199 => return Ok(Some((head, None, len))),
        204 | 304 => Body::Length { left: 0 },
        _ => match (last_coding, lengths.is_empty()) {
            (Some(_), _) if !http11 => {
                return Err(protocol("Transfer-Encoding in an HTTP/1.0 answer"))
            }
            (Some(coding), no_length) => {
                if !no_length {
                    head.reusable = false;
                }
                if is_chunked(coding) {
                    Body::Chunked(Chunks::new())
                } else {
                    Body::UntilClose
                }
            }
            (None, false) => {
                let len = content_length(&lengths)?;
                if len > MAX_BODY {
                    return Err(protocol(format!(
                        "an answer of {len} bytes (the limit is {MAX_BODY})"
                    )));
                }
                Body::Length { left: len }
            }
            (None, true) => Body::UntilClose,
        },
    };
    Ok(Some((head, Some(body), len)))
}

/// Whether a comma-separated header value has `token` (any case).
pub(crate) fn has_token(value: &[u8], token: &str) -> bool {
    std::str::from_utf8(value)
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// hyper's `is_chunked_`: `chunked` is the final coding of the last line.
fn is_chunked(value: &[u8]) -> bool {
    visible_ascii(value).is_some_and(|v| {
        v.rsplit(',')
            .next()
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
    })
}

/// A header value as text if it is visible ASCII (as `HeaderValue::to_str`).
fn visible_ascii(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (32..127).contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

/// hyper's `content_length_parse_all`: every value of every line, digits
/// only, all equal.
fn content_length(lines: &[&[u8]]) -> Result<u64, Failure> {
    let bad = || protocol("invalid or conflicting Content-Length");
    let mut length = None;
    for line in lines {
        for value in visible_ascii(line).ok_or_else(bad)?.split(',') {
            let value = value.trim();
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let n: u64 = value.parse().map_err(|_| bad())?;
            if length.is_some_and(|l| l != n) {
                return Err(bad());
            }
            length = Some(n);
        }
    }
    length.ok_or_else(bad)
}

/// `Retry-After`: seconds, or an HTTP date.
pub(crate) fn retry_after(value: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A whole answer from `bytes` followed by the end of the stream: the
/// answer, whether its connection could be reused, and the bytes left over
/// (for the fuzz targets and the comparison with hyper).
pub fn parse_whole(bytes: &[u8]) -> Result<(Answer, bool, usize), Failure> {
    let mut buf = bytes.to_vec();
    let mut reader = AnswerReader::new();
    match reader.read(&mut buf, false)? {
        Step::Done { answer, reusable } => Ok((answer, reusable, buf.len())),
        Step::More => match reader.read(&mut buf, true)? {
            Step::Done { answer, reusable } => Ok((answer, reusable, buf.len())),
            Step::More => Err(closed_mid_answer()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(bytes: &[u8]) -> Result<Vec<u8>, String> {
        parse_whole(bytes)
            .map(|(a, _, _)| a.body)
            .map_err(|e| e.to_string())
    }

    /// Feeds `bytes` in pieces of `size`: the same outcome as whole.
    fn in_pieces(bytes: &[u8], size: usize) -> Result<(Vec<u8>, bool), String> {
        let mut reader = AnswerReader::new();
        let mut buf = Vec::new();
        for piece in bytes.chunks(size) {
            buf.extend_from_slice(piece);
            match reader.read(&mut buf, false).map_err(|e| e.to_string())? {
                Step::Done { answer, reusable } => return Ok((answer.body, reusable)),
                Step::More => {}
            }
        }
        match reader.read(&mut buf, true).map_err(|e| e.to_string())? {
            Step::Done { answer, reusable } => Ok((answer.body, reusable)),
            Step::More => Err("incomplete".into()),
        }
    }

    #[test]
    fn answers_split_across_reads_are_put_together() {
        let whole: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        for cut in 1..whole.len() {
            let mut reader = AnswerReader::new();
            let mut buf = whole[..cut].to_vec();
            assert!(matches!(reader.read(&mut buf, false), Ok(Step::More)));
            buf.extend_from_slice(&whole[cut..]);
            match reader.read(&mut buf, false) {
                Ok(Step::Done { answer, reusable }) => {
                    assert_eq!((answer.body.as_slice(), reusable), (&b"hello"[..], true));
                    assert!(buf.is_empty());
                }
                other => panic!("a whole answer is complete: {other:?}"),
            }
        }
        let (answer, reusable, _) = parse_whole(b"HTTP/1.1 200 OK\r\n\r\npartial").unwrap();
        assert_eq!((answer.body.as_slice(), reusable), (&b"partial"[..], false));
        assert!(matches!(
            parse_whole(b"SMTP ready\r\n\r\n"),
            Err(Failure::Protocol(_))
        ));
    }

    #[test]
    fn every_split_of_a_chunked_answer_gives_the_same_body() {
        let whole: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;x=1\r\nabc\r\n2 \r\nde\r\n0\r\nx-t: 1\r\n\r\n";
        for size in 1..whole.len() {
            assert_eq!(
                in_pieces(whole, size),
                Ok((b"abcde".to_vec(), true)),
                "{size}"
            );
        }
    }

    #[test]
    fn a_huge_second_chunk_is_refused_not_a_panic() {
        // The size of the second chunk used to wrap `len + size` around.
        for size in [
            "ffffffffffffffff",
            "fffffffffffffff",
            "40000001",
            "10000000000000000",
        ] {
            let answer = format!(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n{size}\r\nb"
            );
            let err = body_of(answer.as_bytes()).unwrap_err();
            assert!(err.contains("bad HTTP answer"), "{size}: {err}");
        }
    }

    #[test]
    fn framing_headers_follow_hyper() {
        let ok = |head: &str, rest: &str| {
            body_of(format!("HTTP/1.1 200 OK\r\n{head}\r\n{rest}").as_bytes())
        };
        // Conflicting or malformed lengths are refused.
        assert!(ok("content-length: 3\r\ncontent-length: 4\r\n", "abcd").is_err());
        assert!(ok("content-length: 3, 4\r\n", "abcd").is_err());
        assert!(ok("content-length: +3\r\n", "abc").is_err());
        assert!(ok("content-length: 3 3\r\n", "abc").is_err());
        // Equal repeats are one length.
        assert_eq!(
            ok("content-length: 3\r\ncontent-length: 3, 3\r\n", "abc").unwrap(),
            b"abc"
        );
        // chunked must be the final coding, and it is matched as a token.
        assert_eq!(
            ok("transfer-encoding: xchunked\r\n", "1\r\na\r\n0\r\n\r\n").unwrap(),
            b"1\r\na\r\n0\r\n\r\n"
        );
        assert_eq!(
            ok("transfer-encoding: chunked, gzip\r\n", "raw").unwrap(),
            b"raw"
        );
        assert_eq!(
            ok("transfer-encoding: CHUNKED\r\n", "1\r\na\r\n0\r\n\r\n").unwrap(),
            b"a"
        );
        // The last Transfer-Encoding line decides.
        assert_eq!(
            ok(
                "transfer-encoding: chunked\r\ntransfer-encoding: gzip\r\n",
                "raw"
            )
            .unwrap(),
            b"raw"
        );
        // Content-Length beside chunked: the chunks count, and the
        // connection is never reused.
        let (answer, reusable, _) = parse_whole(
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((answer.body.as_slice(), reusable), (&b"a"[..], false));
        // HTTP/1.0 with Transfer-Encoding is refused.
        assert!(
            body_of(b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n").is_err()
        );
        // Chunk size lines as hyper reads them.
        assert!(
            ok("transfer-encoding: chunked\r\n", "\r\n").is_err(),
            "no size"
        );
        assert!(ok("transfer-encoding: chunked\r\n", " 1\r\na\r\n0\r\n\r\n").is_err());
        assert!(
            ok("transfer-encoding: chunked\r\n", "1\na\r\n0\r\n\r\n").is_err(),
            "bare LF"
        );
        assert!(ok("transfer-encoding: chunked\r\n", "1;a\nb\r\na\r\n0\r\n\r\n").is_err());
        assert!(ok("transfer-encoding: chunked\r\n", "1\r\nab\r\n0\r\n\r\n").is_err());
        assert!(ok(
            "transfer-encoding: chunked\r\n",
            "1\r\na\r\n0\r\nbad trailer\r\n\r\n"
        )
        .is_err());
        // Connection: close anywhere in a list.
        let (_, reusable, _) = parse_whole(
            b"HTTP/1.1 200 OK\r\nconnection: keep-alive, close\r\ncontent-length: 0\r\n\r\n",
        )
        .unwrap();
        assert!(!reusable);
        // Statuses.
        assert!(body_of(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").is_err());
        assert!(body_of(b"HTTP/1.1 099 X\r\ncontent-length: 0\r\n\r\n").is_err());
        let (answer, _, left) =
            parse_whole(b"HTTP/1.1 204 No Content\r\ncontent-length: 3\r\n\r\nabc").unwrap();
        assert_eq!(
            (answer.body.len(), left),
            (0, 3),
            "a 204 has no body; bytes are left over"
        );
    }

    #[test]
    fn announced_lengths_are_not_allocated_before_they_arrive() {
        let mut reader = AnswerReader::new();
        let mut buf = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\nabc".to_vec();
        assert!(matches!(reader.read(&mut buf, false), Ok(Step::More)));
        assert!(
            reader.body.capacity() < 1 << 16,
            "{}",
            reader.body.capacity()
        );
        assert!(reader.want(4096) <= MAX_BODY_READ);
        let mut buf = b"HTTP/1.1 200 OK\r\ncontent-length: 2000000000\r\n\r\n".to_vec();
        assert!(AnswerReader::new().read(&mut buf, false).is_err());
    }

    #[test]
    fn reads_retry_after_and_the_dedup_header() {
        let (answer, _, _) = parse_whole(
            b"HTTP/1.1 503 X\r\nretry-after: 7\r\nacademy-dedup: tag\r\ncontent-length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(answer.retry_after, Some(Duration::from_secs(7)));
        assert!(answer.dedups);
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let text = format!("HTTP/1.1 429 X\r\nretry-after: {date}\r\ncontent-length: 0\r\n\r\n");
        let (answer, _, _) = parse_whole(text.as_bytes()).unwrap();
        let wait = answer.retry_after.unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(!answer.dedups);
    }
}
