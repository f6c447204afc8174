//! Serving an agent from the program's own event loop
//! (`academy_agent_serve_queue`).
//!
//! [`serve_queue`] returns at once. From then on the client's listener
//! routes each message that no call waits for ([`crate::client::listener::Inner::deliver`])
//! straight to this serving, where it is sorted as the blocking
//! [`crate::client::serve::serve`] sorts it ([`sort`]): each action
//! request becomes a `Request` event on the queue at once (no hop through
//! the inbox, no second parse), whose [`Reply`](crate::client::serve::Reply)
//! the program completes then or later from any thread; every other
//! request goes to a task on the library's runtime that does the library's
//! part exactly as the blocking serve does ([`handle_library`]: pings,
//! shutdown, cancel, requests it cannot read). Replies go out in the
//! background (pipelined), so an event loop never waits a round trip per
//! reply.
//!
//! Serving ends with one `Ended` event, after every `Request` event: after
//! a shutdown request or [`Client::stop_serving`] (`Ok`), a close
//! (`Closed`), or the mailbox's end (`MailboxTerminated`, ...); requests
//! still unanswered then get `ActionCancelled`, as with the blocking serve.
//!
//! `max_concurrency` does not apply: every action request becomes an event
//! at once, and the program decides how many it works on.

use tokio::sync::mpsc;

use crate::client::queue::{Event, EventBody, Queue, ServedRequest};
use crate::client::serve::{route, serve_loop, ReplyMode, Session};
use crate::client::Client;
use crate::error::Result;
use crate::runtime;

/// Serves the agent of `client` into `queue` (events with `token`) and
/// returns. `InvalidArgument` if the client is serving or listening
/// already; `Closed` for a closed client or queue.
pub fn serve_queue(client: &Client, queue: &Queue, token: u64) -> Result<()> {
    queue.check()?;
    let handle = runtime::handle()?;
    let control = client.begin_serving()?;
    let session = Session::new(client.clone(), ReplyMode::Background);
    let (work, inbox) = mpsc::unbounded_channel();
    let to_queue = queue.clone();
    let route = route(session.clone(), work, move |call, reply, raw| {
        if call.action.contains('\0') {
            let _ = reply.error("the action name contains a NUL character, which C cannot receive");
            return;
        }
        to_queue.post(Event {
            token,
            body: EventBody::Request(ServedRequest::new(raw, call, reply)),
        });
    });
    if let Err(e) = client.inner.set_route(route) {
        client.end_serving();
        return Err(e);
    }
    let queue = queue.clone();
    handle.spawn(async move {
        let outcome = serve_loop(&session, &control, inbox).await;
        // No Request event after this: the route is gone.
        session.client.inner.clear_route();
        session.wind_down_after_async(&outcome).await;
        session.client.end_serving();
        queue.post(Event {
            token,
            body: EventBody::Ended(outcome),
        });
    });
    Ok(())
}
