//! Serving an agent from the program's own event loop
//! (`academy_agent_serve_queue`).
//!
//! [`serve_queue`] returns at once. A task on the library's runtime reads
//! the agent's mailbox and does the library's part of serving exactly as
//! [`crate::client::serve::serve`] does (the shared
//! [`crate::client::serve::triage`]: pings, shutdown, cancel, requests it
//! cannot read); each action request becomes a `Request` event on the
//! queue, whose [`Reply`](crate::client::serve::Reply) the program
//! completes then or later from any thread. Replies go out in the
//! background (pipelined), so an event loop never waits a round trip per
//! reply. Serving ends with one `Ended` event: after a shutdown request or
//! [`Client::stop_serving`] (`Ok`), a close (`Closed`), or the mailbox's
//! end (`MailboxTerminated`, ...); requests still unanswered then get
//! `ActionCancelled`, as with the blocking serve.
//!
//! `max_concurrency` does not apply: every action request becomes an event
//! at once, and the program decides how many it works on.

use std::sync::Arc;

use crate::client::listener::ServeControl;
use crate::client::queue::{Event, EventBody, Queue, ServedRequest};
use crate::client::serve::{triage, ReplyMode, Session, Step};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::runtime;

/// Serves the agent of `client` into `queue` (events with `token`) and
/// returns. `InvalidArgument` if the client is serving or listening
/// already; `Closed` for a closed client or queue.
pub fn serve_queue(client: &Client, queue: &Queue, token: u64) -> Result<()> {
    queue.check()?;
    let handle = runtime::handle()?;
    let control = client.begin_serving()?;
    let session = Session::new(client.clone(), ReplyMode::Background);
    let queue = queue.clone();
    handle.spawn(async move {
        let outcome = serve_loop(&session, &control, &queue, token).await;
        session.wind_down_async().await;
        session.client.end_serving();
        queue.post(Event {
            token,
            body: EventBody::Ended(outcome),
        });
    });
    Ok(())
}

async fn serve_loop(
    session: &Arc<Session>,
    control: &Arc<ServeControl>,
    queue: &Queue,
    token: u64,
) -> Result<()> {
    let client = &session.client;
    loop {
        if control.is_stopped() {
            return match client.is_closed() {
                true => Err(Error::closed(format!(
                    "the client of {} was closed",
                    client.mailbox_id()
                ))),
                false => Ok(()),
            };
        }
        let raw = tokio::select! {
            _ = control.wake.notified() => continue,
            // Without a deadline, recv only fails for good (the mailbox is
            // gone, the client closed): the listener rides out the rest.
            m = client.recv(None) => m?,
        };
        match triage(session, raw).await? {
            Step::Continue => {}
            Step::Stop => return Ok(()),
            Step::Action { call, request, raw } => {
                if call.action.contains('\0') {
                    let reply = session.reply_for(request, None);
                    let _ = reply
                        .error("the action name contains a NUL character, which C cannot receive");
                    continue;
                }
                let reply = session.reply_for(request, None);
                queue.post(Event {
                    token,
                    body: EventBody::Request(ServedRequest::new(raw, call, reply)),
                });
            }
        }
    }
}
