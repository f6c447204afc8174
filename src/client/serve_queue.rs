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

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::client::listener::{Route, Routed, ServeControl};
use crate::client::queue::{Event, EventBody, Queue, ServedRequest};
use crate::client::serve::{handle_library, sort, ReplyMode, Session, Sorted, Step};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::runtime;
use crate::wire::message::Message;

/// What the serving task is handed by the route.
// Moved once per message; a Box would add an allocation to each.
#[allow(clippy::large_enum_variant)]
enum Work {
    /// A request the library answers itself.
    Library(Message),
    /// The listener ended (the client closed, the mailbox went away).
    Ended(Result<()>),
}

/// Serves the agent of `client` into `queue` (events with `token`) and
/// returns. `InvalidArgument` if the client is serving or listening
/// already; `Closed` for a closed client or queue.
pub fn serve_queue(client: &Client, queue: &Queue, token: u64) -> Result<()> {
    queue.check()?;
    let handle = runtime::handle()?;
    let control = client.begin_serving()?;
    let session = Session::new(client.clone(), ReplyMode::Background);
    let (work, inbox) = mpsc::unbounded_channel();
    let route = route(session.clone(), queue.clone(), token, work);
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

/// The route of a served client: action requests become events here, on
/// the listener's thread; the rest goes to the serving task.
fn route(
    session: Arc<Session>,
    queue: Queue,
    token: u64,
    work: mpsc::UnboundedSender<Work>,
) -> Route {
    let accepted = session.client.options().allowed_deserializers;
    Route(Box::new(move |routed| match routed {
        Routed::Message { raw, parsed } => match sort(raw, parsed, accepted) {
            Sorted::Ignore => {}
            Sorted::Action { call, request, raw } => {
                let reply = session.reply_for(request, None);
                if call.action.contains('\0') {
                    let _ = reply
                        .error("the action name contains a NUL character, which C cannot receive");
                    return;
                }
                queue.post(Event {
                    token,
                    body: EventBody::Request(ServedRequest::new(raw, call, reply)),
                });
            }
            Sorted::Library(request) => {
                let _ = work.send(Work::Library(request));
            }
        },
        Routed::Ended(outcome) => {
            let _ = work.send(Work::Ended(outcome));
        }
    }))
}

/// Does the library's part until serving ends; returns why.
async fn serve_loop(
    session: &Arc<Session>,
    control: &Arc<ServeControl>,
    mut inbox: mpsc::UnboundedReceiver<Work>,
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
        let work = tokio::select! {
            _ = control.wake.notified() => continue,
            work = inbox.recv() => work,
        };
        match work {
            Some(Work::Library(request)) => match handle_library(session, request).await? {
                Step::Stop => return Ok(()),
                Step::Continue | Step::Action { .. } => {}
            },
            Some(Work::Ended(outcome)) => return outcome,
            None => return Err(Error::internal("the serving route went away")),
        }
    }
}
