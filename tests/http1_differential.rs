//! The client's hand-written HTTP/1.1 answer reader against hyper's client
//! (`hyper::client::conn::http1`): the same answer bytes, followed by the
//! end of the stream, go to both, and both must give the same status and
//! body, or both must refuse them. Inputs: a corpus of tricky framings,
//! the fuzz corpus, and answers generated at random from pieces that
//! matter to framing (lengths, codings, chunk lines, trailers, 1xx heads,
//! truncation, stray bytes).
//!
//! Where our reader refuses what hyper takes, on purpose, the input is
//! left out of the comparison (see `src/transport/http1/answer.rs`): a 101
//! and chunk sizes longer than 16 hex digits. The generator makes neither.

use std::path::Path;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What hyper's client makes of `answer`: status and body, or an error.
async fn hyper_outcome(answer: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
    let (client, mut server) = tokio::io::duplex(1 << 20);
    let serve = tokio::spawn(async move {
        // Wait for the request, then answer and end the stream.
        let mut buf = [0u8; 1024];
        let _ = server.read(&mut buf).await;
        let _ = server.write_all(&answer).await;
        let _ = server.shutdown().await;
        // Keep reading so that hyper never sees a write error.
        while server.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    });
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let request = hyper::Request::builder()
        .method("PUT")
        .uri("/message")
        .header("host", "x")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    let outcome = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body.to_vec()))
    }
    .await;
    driver.abort();
    serve.abort();
    outcome
}

/// Inputs where our reader refuses, on purpose, what hyper takes.
fn known_difference(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let status_101 = text
        .split("\r\n")
        .any(|line| line.starts_with("HTTP/1.") && line.get(9..12) == Some("101"));
    let long_size = text
        .split("\r\n")
        .any(|line| line.bytes().take_while(|b| b.is_ascii_hexdigit()).count() > 16);
    status_101 || long_size
}

/// Compares the two readers on `answer`: `Ok(true)` when both read the
/// same answer, `Ok(false)` when both refused it.
fn compare(rt: &tokio::runtime::Runtime, answer: &[u8]) -> Result<bool, String> {
    let ours = academy::fuzzing::answer_outcome(answer);
    let theirs = rt.block_on(hyper_outcome(answer.to_vec()));
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) if a == b => Ok(true),
        (Err(_), Err(_)) => Ok(false),
        _ if known_difference(answer) => Ok(false),
        _ => Err(format!(
            "{:?}\n  ours:  {:?}\n  hyper: {:?}",
            String::from_utf8_lossy(answer),
            ours.map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned())),
            theirs.map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned())),
        )),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

const TRICKY: &[&str] = &[
    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA",
    "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nok",
    "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
    "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\nabc",
    "HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\nabc",
    "HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\nabcd",
    "HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\nabc",
    "HTTP/1.1 200 OK\r\ncontent-length: -3\r\n\r\nabc",
    "HTTP/1.1 200 OK\r\ncontent-length: 0x3\r\n\r\nabc",
    "HTTP/1.1 200 OK\r\ncontent-length: 003\r\n\r\nabc",
    "HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\nabc",
    "HTTP/1.1 200 OK\r\ncontent-length: 18446744073709551616\r\n\r\nabc",
    "HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 1\r\n\r\n1\r\na\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: CHUNKED\r\n\r\n1\r\na\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: xchunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\nraw",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: gzip\r\n\r\nraw",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked \r\n\r\n1\r\na\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: ,chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: \r\n\r\nraw",
    "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "HTTP/1.0 200 OK\r\n\r\nto the end",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\nb",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n 1\r\na\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1 \r\na\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\t;x\r\na\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1 1\r\na\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1;a\nb\r\na\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\nx-t: 1\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\nbad trailer\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\nx: y\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\nx: y\r\nz: w\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\nx: y\nz: w\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0000000001\r\na\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na",
    "HTTP/1.1 103 Early Hints\r\nlink: x\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 1\r\n\r\na",
    "HTTP/1.1 100 Continue\r\n\r\n",
    "HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\nhello",
    "HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n",
    "HTTP/1.1 099 X\r\ncontent-length: 0\r\n\r\n",
    "HTTP/1.1 999 X\r\ncontent-length: 1\r\n\r\na",
    "HTTP/1.1 200\r\ncontent-length: 1\r\n\r\na",
    "HTTP/1.1 200 OK\r\nconnection: keep-alive, close\r\ncontent-length: 0\r\n\r\n",
    "HTTP/1.1 200 OK\r\n folded: x\r\ncontent-length: 1\r\n\r\na",
    "HTTP/1.1 200 OK\r\nx: a\r\n b\r\ncontent-length: 1\r\n\r\na",
    "HTTP/1.1 200 OK\r\ncontent-length : 1\r\n\r\na",
    "HTTP/1.1 200 OK\ncontent-length: 1\n\na",
    "HTTP/2 200 OK\r\ncontent-length: 1\r\n\r\na",
    "SMTP ready\r\n\r\n",
    "",
    "HTTP/1.1 200 OK\r\n",
];

#[test]
fn tricky_framings_read_as_hyper_reads_them() {
    let rt = runtime();
    let outcomes: Vec<Result<bool, String>> = TRICKY
        .iter()
        .map(|answer| compare(&rt, answer.as_bytes()))
        .collect();
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{}",
        failures
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let read = outcomes.iter().filter(|o| matches!(o, Ok(true))).count();
    assert!(read >= 20, "both read {read} of them");
}

#[test]
fn the_fuzz_corpus_reads_as_hyper_reads_it() {
    let rt = runtime();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failures = Vec::new();
    let mut n = 0;
    for dir in [
        "corpus/http_answer",
        "regressions/http_answer",
        "corpus/pipeline",
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let answer = std::fs::read(entry.path()).unwrap();
            n += 1;
            if let Err(e) = compare(&rt, &answer) {
                failures.push(format!("{}: {e}", entry.path().display()));
            }
        }
    }
    assert!(n > 10, "the corpus is there");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A small random number generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

/// A chunked body of `data`, with the liberties servers take (and some
/// they must not).
fn chunked(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = 1 + rng.below(rest.len().min(9));
        let size = match rng.below(6) {
            0 => format!("{n:X}"),
            1 => format!("{:0width$x}", n, width = 1 + rng.below(4)),
            2 => format!("{n:x} "),
            3 => format!("{n:x};ext={}", rng.pick(&["1", "\"q\"", "", "a;b"])),
            4 => format!("{:x}", n + rng.below(3)), // maybe wrong
            _ => format!("{n:x}"),
        };
        out.extend_from_slice(size.as_bytes());
        out.extend_from_slice(rng.pick(&["\r\n", "\r\n", "\r\n", "\n"]).as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(rng.pick(&["\r\n", "\r\n", "\r\n", "\n", ""]).as_bytes());
        rest = &rest[n..];
    }
    out.extend_from_slice(
        rng.pick(&["0\r\n", "0\r\n", "00\r\n", "0;x\r\n"])
            .as_bytes(),
    );
    out.extend_from_slice(
        rng.pick(&["", "", "x-t: 1\r\n", "bad\r\n", "a: b\r\nc: d\r\n", "\n"])
            .as_bytes(),
    );
    out.extend_from_slice(rng.pick(&["\r\n", "\r\n", "", "\n"]).as_bytes());
    out
}

/// An answer built at random from the pieces that decide its framing.
fn random_answer(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    if rng.below(5) == 0 {
        out.extend_from_slice(
            rng.pick(&[
                "HTTP/1.1 100 Continue\r\n\r\n",
                "HTTP/1.1 102 P\r\nx: y\r\n\r\n",
            ])
            .as_bytes(),
        );
    }
    let version = rng.pick(&["HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]);
    let status = rng.pick(&[
        "200", "200", "404", "204", "304", "503", "413", "999", "099",
    ]);
    out.extend_from_slice(format!("{version} {status} X\r\n").as_bytes());
    let body: Vec<u8> = (0..rng.below(40))
        .map(|_| b"abcdef0123\r\n;"[rng.below(13)])
        .collect();
    let mut headers: Vec<String> = Vec::new();
    let chunk = rng.below(3) == 0;
    for _ in 0..rng.below(4) {
        let len = body.len() + rng.below(3);
        headers.push(match rng.below(12) {
            0 => format!("content-length: {len}"),
            1 => format!("Content-Length: {}", body.len()),
            2 => format!("content-length: {len}, {}", body.len()),
            3 => format!(
                "content-length: {}",
                rng.pick(&["+1", "-1", "1a", "", " 2 ", "00"])
            ),
            4 => format!(
                "transfer-encoding: {}",
                rng.pick(&[
                    "chunked",
                    "gzip",
                    "gzip, chunked",
                    "chunked, gzip",
                    "identity",
                    "Chunked"
                ])
            ),
            5 => format!(
                "connection: {}",
                rng.pick(&["close", "keep-alive", "keep-alive, close", "upgrade"])
            ),
            6 => "x-junk: \u{7f}".to_owned(),
            7 => format!("retry-after: {}", rng.below(100)),
            8 => "content-type: application/json".to_owned(),
            _ => format!("x-{}: {}", rng.below(100), rng.below(100)),
        });
    }
    if chunk {
        headers.push("transfer-encoding: chunked".to_owned());
    }
    let mut order: Vec<usize> = (0..headers.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    for i in order {
        out.extend_from_slice(headers[i].as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if chunk
        || headers
            .iter()
            .any(|h| h.to_ascii_lowercase().contains("chunked"))
    {
        out.extend_from_slice(&chunked(rng, &body));
    } else {
        out.extend_from_slice(&body);
    }
    // Truncated, or with stray bytes after it.
    match rng.below(6) {
        0 => out.truncate(rng.below(out.len() + 1)),
        1 => out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nz"),
        _ => {}
    }
    out
}

#[test]
fn random_answers_read_as_hyper_reads_them() {
    let rt = runtime();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let mut failures = Vec::new();
    let (mut read, mut refused) = (0, 0);
    for _ in 0..3000 {
        let answer = random_answer(&mut rng);
        match compare(&rt, &answer) {
            Ok(true) => read += 1,
            Ok(false) => refused += 1,
            Err(e) => failures.push(e),
        }
        if failures.len() >= 10 {
            break;
        }
    }
    assert!(failures.is_empty(), "seed {seed}:\n{}", failures.join("\n"));
    // Both kinds are well represented (else the comparison says little).
    assert!(
        read > 300 && refused > 300,
        "read {read}, refused {refused}"
    );
}
