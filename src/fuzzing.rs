//! Entry points shared by the fuzz targets (`fuzz/`, run by
//! `scripts/fuzz.sh`) and the regression test over their corpus
//! (`tests/fuzz_corpus.rs`): each feeds arbitrary bytes to a parser and
//! checks the invariants that must hold for any input.

use crate::wire::sse::SseParser;

/// The SSE parser: whole or split at every third byte, the same events.
pub fn sse(data: &[u8]) {
    let mut whole = SseParser::new().with_max_line(1 << 16);
    let all = whole.feed(data);
    let mut split = SseParser::new().with_max_line(1 << 16);
    let mut pieces = Ok(Vec::new());
    for chunk in data.chunks(3) {
        match split.feed(chunk) {
            Ok(events) => {
                if let Ok(v) = pieces.as_mut() {
                    v.extend(events)
                }
            }
            Err(e) => {
                pieces = Err(e);
                break;
            }
        }
    }
    if let (Ok(a), Ok(b)) = (&all, &pieces) {
        assert_eq!(a, b, "splitting the input must not change the events");
    }
}

/// Messages, ids, registrations and results (pickled ones too, and the
/// typed buffers of a result): never a panic, and whatever
/// parses re-serializes to something that parses to the same.
pub fn message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(message) = crate::wire::message::Message::from_json(text) {
        let again = crate::wire::message::Message::from_json(&message.to_json())
            .expect("our own output parses");
        assert_eq!(again.to_json(), message.to_json());
        if let Ok(result) = crate::wire::message::response_result(&message) {
            // A result's typed buffers, as a C caller reads them.
            let _ = crate::wire::pyvalue::NdArray::from_form(&result).map(|a| a.into_native());
            let _ = crate::wire::pyvalue::bytes_from_form(&result);
        }
        let _ = crate::wire::message::decode_action_request(
            &message.body,
            crate::wire::payload::Accepted::ALL,
        );
        let json_only = crate::wire::payload::Accepted {
            json: true,
            pickle: false,
        };
        let _ = crate::wire::message::unreadable_request_body(&message.body, json_only);
        let _ = message.header.compatible();
        if message.is_request() {
            let _ = message.response(crate::wire::message::success_body());
        }
    }
    if let Ok(id) = crate::wire::ids::EntityId::from_json(text) {
        assert_eq!(
            crate::wire::ids::EntityId::from_json(&id.to_json()).expect("ids round-trip"),
            id
        );
    }
    let _ = crate::client::parse_registration(text, "http");
}

/// Pickles: decoding never panics, and what decodes encodes, and our
/// pickle decodes to the same JSON form.
pub fn pickle(data: &[u8]) {
    use crate::wire::pickle::{from_json_form, to_json_form, Limits};
    let Ok(form) = to_json_form(data, &Limits::for_size(data.len())) else {
        return;
    };
    let again = from_json_form(&form).expect("a decoded JSON form encodes");
    let back = to_json_form(&again, &Limits::for_size(again.len())).expect("our pickle decodes");
    assert_eq!(back, form, "decode(encode(form)) == form");
}

/// Factory options and embedded-exchange options: an error or a value,
/// never a panic.
pub fn options(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::options::FactoryOptions::from_json(Some(text));
    let _ = crate::server::ServerConfig::from_json_options(Some(text));
    let _ = crate::server::ServerConfig::from_toml_str(text);
}

// ---- HTTP: the client's answer reader, its pipeline, the exchange ----

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::transport::http1::answer::{parse_whole, AnswerReader, Step};

/// What the client's reader makes of bytes followed by the end of the
/// stream: the status and body, or why it refused them (for the
/// comparison with hyper in `tests/http1_differential.rs`).
pub fn answer_outcome(data: &[u8]) -> Result<(u16, Vec<u8>), String> {
    parse_whole(data)
        .map(|(answer, _, _)| (answer.status, answer.body))
        .map_err(|e| e.to_string())
}

/// The same bytes fed in pieces (sizes taken from the bytes themselves).
fn answer_in_pieces(data: &[u8]) -> Result<(u16, Vec<u8>, bool, usize), String> {
    let mut reader = AnswerReader::new();
    let mut buf = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let size = 1 + (data[at] as usize % 7);
        let end = (at + size).min(data.len());
        buf.extend_from_slice(&data[at..end]);
        at = end;
        if let Step::Done { answer, reusable } =
            reader.read(&mut buf, false).map_err(|e| e.to_string())?
        {
            let left = buf.len() + (data.len() - at);
            return Ok((answer.status, answer.body, reusable, left));
        }
    }
    match reader.read(&mut buf, true).map_err(|e| e.to_string())? {
        Step::Done { answer, reusable } => Ok((answer.status, answer.body, reusable, buf.len())),
        Step::More => Err("incomplete".into()),
    }
}

/// The answer reader: never a panic, a body no longer than the bytes, and
/// the same answer whole or fed in pieces.
pub fn answer(data: &[u8]) {
    let whole = parse_whole(data)
        .map(|(a, reusable, left)| (a.status, a.body, reusable, left))
        .map_err(|e| e.to_string());
    let pieces = answer_in_pieces(data);
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "whole and in pieces differ");
            assert!(a.1.len() <= data.len());
        }
        (Err(_), Err(_)) => {}
        _ => panic!("whole {whole:?} but in pieces {pieces:?}"),
    }
}

/// Set by the fuzzing panic hook: a panic on any thread (a task of the
/// pipeline or of the exchange, which tokio would otherwise swallow).
static PANICKED: AtomicBool = AtomicBool::new(false);

fn watch_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            previous(info);
        }));
    });
}

fn no_panic_anywhere() {
    assert!(
        !PANICKED.swap(false, Ordering::SeqCst),
        "a task panicked (see above)"
    );
}

/// The runtime the network targets run on (one worker, like the
/// library's).
fn fuzz_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        watch_panics();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// The pipelined connection of background sends, fed arbitrary server
/// bytes (a stub server writes them after the first requests, then
/// closes): every request ends, within its deadline, without a panic.
pub fn pipeline(data: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = fuzz_runtime();
    let bytes = data.to_vec();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = reqwest::Url::parse(&format!(
            "http://{}",
            listener.local_addr().expect("address")
        ))
        .expect("url");
        let server = tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(&bytes).await;
                let _ = s.shutdown().await;
            }
        });
        let pool = crate::transport::http1::Pool::new(&url, &[], Duration::from_secs(1))
            .expect("a plain http pool");
        let t = Some(Duration::from_secs(3));
        let started = std::time::Instant::now();
        let (a, b, c) = tokio::join!(
            pool.request_pipelined("PUT", "/message", b"{}", t, false),
            pool.request_pipelined("PUT", "/message", b"{}", t, true),
            pool.request_pipelined("PUT", "/message", b"{}", t, false),
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "past the deadline"
        );
        for answer in [a, b, c].into_iter().flatten() {
            assert!(answer.body.len() <= data.len());
        }
        let _ = server.await;
    });
    no_panic_anywhere();
}

/// Known mailboxes and a message between them, for requests built from
/// fuzz input: `$0`, `$1` and `$2` become ids (as JSON strings, as the
/// wire has them) and `$m` a message from `$0` to `$1`.
fn fill_in(template: &[u8]) -> Vec<u8> {
    static IDS: OnceLock<[String; 3]> = OnceLock::new();
    let ids = IDS.get_or_init(|| {
        std::array::from_fn(|i| {
            let id = format!(
                r#"{{"uid":"00000000-0000-4000-8000-00000000000{i}","name":null,"role":"{}"}}"#,
                if i == 2 { "agent" } else { "user" }
            );
            serde_json::Value::String(id).to_string()
        })
    });
    let message = serde_json::Value::String(format!(
        r#"{{"header":{{"src":{},"dest":{},"tag":"00000000-0000-4000-8000-0000000000aa","kind":"request"}},"body":{{"kind":"ping-request"}}}}"#,
        serde_json::from_str::<String>(&ids[0]).unwrap_or_default(),
        serde_json::from_str::<String>(&ids[1]).unwrap_or_default(),
    ))
    .to_string();
    let mut out = Vec::with_capacity(template.len() + 64);
    let mut i = 0;
    while i < template.len() {
        let fill = match (template[i], template.get(i + 1)) {
            (b'$', Some(b'0')) => Some(ids[0].as_str()),
            (b'$', Some(b'1')) => Some(ids[1].as_str()),
            (b'$', Some(b'2')) => Some(ids[2].as_str()),
            (b'$', Some(b'm')) => Some(message.as_str()),
            _ => None,
        };
        match fill {
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                i += 2;
            }
            None => {
                out.push(template[i]);
                i += 1;
            }
        }
    }
    out
}

/// A request built from fuzz input: a method and a route picked by the
/// first two bytes, the rest the JSON body (with `$…` filled in).
fn structured_request(data: &[u8]) -> Vec<u8> {
    const METHODS: [&str; 6] = ["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH"];
    const PATHS: [&str; 9] = [
        "/mailbox",
        "/mailbox/share",
        "/message",
        "/discover",
        "/mailbox/listen",
        "/mailbox/heartbeat",
        "/mailbox/stats",
        "/",
        "/nope",
    ];
    let method = METHODS[*data.first().unwrap_or(&0) as usize % METHODS.len()];
    let path = PATHS[*data.get(1).unwrap_or(&0) as usize % PATHS.len()];
    let body = fill_in(data.get(2..).unwrap_or(&[]));
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// The exchange the server target talks to: in memory, listen and
/// receive timeouts of at most 1 s; started again every few thousand
/// inputs so that the mailboxes and messages the inputs leave stay few.
fn fuzz_exchange() -> std::net::SocketAddr {
    static SERVER: Mutex<Option<(crate::server::ExchangeServer, u32)>> = Mutex::new(None);
    let mut slot = SERVER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, uses)) = slot.as_mut().filter(|(_, uses)| *uses < 2000) {
        *uses += 1;
    } else {
        let rt = fuzz_runtime();
        if let Some((old, _)) = slot.take() {
            let _ = rt.block_on(old.stop());
        }
        let config = crate::server::ServerConfig {
            host: "127.0.0.1".into(),
            port: 0,
            listen_timeout_s: 1,
            message_size_limit_kb: 4,
            ..crate::server::ServerConfig::default()
        };
        let server = rt
            .block_on(crate::server::ExchangeServer::start(config))
            .expect("the exchange starts");
        *slot = Some((server, 0));
    }
    slot.as_ref()
        .map(|(s, _)| s.local_addr())
        .expect("a server")
}

/// The exchange's request handling (routes and bodies): arbitrary bytes
/// as a request stream (first byte odd), or a request built from the
/// input (first byte even). The exchange answers in time with bytes that
/// are HTTP, and no task panics.
pub fn server_request(data: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let request = if mode % 2 == 1 {
        rest.to_vec()
    } else {
        structured_request(rest)
    };
    let addr = fuzz_exchange();
    let sent = request.clone();
    let answers = fuzz_runtime().block_on(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = s.write_all(&sent).await;
        let _ = s.shutdown().await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the exchange did not answer in time");
        out
    });
    // An answer to HEAD has the headers of the GET answer and no body,
    // which the client's reader (that never sends HEAD) cannot know: with
    // a HEAD among the requests, only the start of the answer is checked.
    if request.windows(5).any(|w| w == b"HEAD ") {
        assert!(
            answers.is_empty() || answers.starts_with(b"HTTP/1.1 "),
            "the exchange sent what is not an HTTP answer: {:?}",
            String::from_utf8_lossy(&answers[..answers.len().min(200)])
        );
        no_panic_anywhere();
        return;
    }
    // Whatever it sent is HTTP answers, one after the other.
    let mut buf = answers;
    while !buf.is_empty() {
        let streaming = is_event_stream(&buf);
        let mut reader = AnswerReader::new();
        match reader.read(&mut buf, true) {
            Ok(Step::Done { .. }) => {}
            // The harness half-closes its side, which a listen stream reads
            // as its client gone: it is cut off by design (the message it
            // would take stays queued), in the middle of its chunked body.
            Err(_) if streaming => break,
            other => panic!("the exchange sent what is not an HTTP answer: {other:?}"),
        }
    }
    no_panic_anywhere();
}

/// Whether an answer's head says it is a listen stream (server-sent
/// events).
fn is_event_stream(answer: &[u8]) -> bool {
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(answer.len());
    String::from_utf8_lossy(&answer[..head_end])
        .to_ascii_lowercase()
        .contains("content-type: text/event-stream")
}

/// The frames a hybrid peer's bytes give when they arrive in pieces of
/// `piece` bytes: each frame's length, up to the end marker or an error.
fn peer_frames_in_pieces(data: &[u8], piece: usize) -> Result<Vec<usize>, String> {
    use crate::transport::peer::{FrameReader, Read};
    let mut reader = FrameReader::new();
    let mut frames = Vec::new();
    for chunk in data.chunks(piece.max(1)) {
        reader.feed(chunk);
        loop {
            match reader.parse() {
                Ok(Some(Read::Frame(f))) => {
                    assert!(!f.is_empty(), "an empty frame is the end, never a frame");
                    frames.push(f.len());
                }
                Ok(Some(Read::End)) => return Ok(frames),
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(frames)
}

/// The hybrid exchange's frame reader (what peers send to a client's TCP
/// port) with arbitrary bytes: the same frames whole and in pieces, and a
/// length prefix past the limit is an error, never an allocation.
pub fn peer_frames(data: &[u8]) {
    assert_eq!(
        peer_frames_in_pieces(data, data.len()),
        peer_frames_in_pieces(data, 3),
        "splitting the input must not change the frames"
    );
}
