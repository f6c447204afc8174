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

/// Messages, ids, registrations and results: never a panic, and whatever
/// parses re-serializes to something that parses to the same.
pub fn message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(message) = crate::wire::message::Message::from_json(text) {
        let again = crate::wire::message::Message::from_json(&message.to_json())
            .expect("our own output parses");
        assert_eq!(again.to_json(), message.to_json());
        let _ = crate::wire::message::response_result(&message);
        let _ = crate::wire::message::decode_action_request(&message.body);
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
