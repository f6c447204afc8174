//! HTTP answer headers by which our exchange tells its clients what it
//! does beyond academy-py's protocol. One name each, for the server that
//! sends it and the client that reads it.

/// On every answer of an exchange that drops repeated messages (value
/// `tag`): a client may then send again a message whose answer it lost.
pub const DEDUP_HEADER: &str = "academy-dedup";

/// On a listen stream's answer: the stream's name, with which its client
/// ends it (`DELETE /mailbox/listen`) and which says the exchange takes
/// messages back at a queue's head (`PUT /message` with `"requeue"`).
pub const LISTEN_ID_HEADER: &str = "academy-listen-id";
