//! Listen streams that their client ends itself: `DELETE /mailbox/listen`.
//!
//! Why: a client that closes by dropping its connection races the
//! exchange. A message that arrives just before the drop reaches the
//! server is taken off the queue and written to a socket nobody reads any
//! more, and is lost. So our exchange names each listen stream (the
//! `academy-listen-id` answer header), and a closing client asks for its
//! stream to end, then reads it to its end. The stream takes nothing off
//! the queue once asked; what it took before reaches the client, which
//! puts back what it did not hand out (`"requeue": true` on
//! `PUT /message`). Nothing is in flight when the connection goes.
//!
//! academy-py's exchange has neither the header nor the endpoint; clients
//! then close as academy-py's own do.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::wire::ids::EntityId;

/// The open listen streams of a server, by name.
#[derive(Default)]
pub(crate) struct ListenStops {
    open: Mutex<HashMap<Uuid, (EntityId, Arc<Flag>)>>,
}

#[derive(Default)]
struct Flag {
    stopped: AtomicBool,
    notify: Arc<Notify>,
}

impl ListenStops {
    /// Names a new stream of `mailbox`; the stream holds what is returned.
    pub(crate) fn open(self: &Arc<Self>, mailbox: &EntityId) -> ListenStop {
        let id = Uuid::new_v4();
        let flag = Arc::new(Flag::default());
        let mut notified = Box::pin(flag.notify.clone().notified_owned());
        notified.as_mut().enable();
        self.lock().insert(id, (mailbox.clone(), flag.clone()));
        ListenStop {
            id,
            flag,
            notified,
            registry: self.clone(),
        }
    }

    /// Asks the stream `id` of `mailbox` to end. `false` when there is no
    /// such stream (it ended already, or never was).
    pub(crate) fn stop(&self, mailbox: &EntityId, id: Uuid) -> bool {
        let flag = match self.lock().get(&id) {
            Some((owner, flag)) if owner == mailbox => flag.clone(),
            _ => return false,
        };
        flag.stopped.store(true, Ordering::Release);
        flag.notify.notify_waiters();
        true
    }

    /// How many streams are open (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (EntityId, Arc<Flag>)>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A stream's side: whether it was asked to end. Dropped with the stream,
/// it takes the name out of the registry.
pub(crate) struct ListenStop {
    id: Uuid,
    flag: Arc<Flag>,
    notified: Pin<Box<OwnedNotified>>,
    registry: Arc<ListenStops>,
}

impl ListenStop {
    /// The stream's name, for the answer header.
    pub(crate) fn id(&self) -> Uuid {
        self.id
    }

    /// Whether the stream was asked to end; if not, `cx` is woken when it
    /// is.
    pub(crate) fn poll_stopped(&mut self, cx: &mut Context<'_>) -> bool {
        self.flag.stopped.load(Ordering::Acquire) || self.notified.as_mut().poll(cx).is_ready()
    }
}

impl Drop for ListenStop {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn a_stop_reaches_only_its_stream_and_wakes_it() {
        let stops = Arc::new(ListenStops::default());
        let (a, b) = (EntityId::new_agent(None), EntityId::new_agent(None));
        let mut first = stops.open(&a);
        let mut second = stops.open(&a);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(!first.poll_stopped(&mut cx));
        // Another mailbox cannot end it, nor can an unknown name.
        assert!(!stops.stop(&b, first.id()));
        assert!(!stops.stop(&a, Uuid::new_v4()));
        assert!(stops.stop(&a, first.id()));
        assert!(first.poll_stopped(&mut cx));
        assert!(!second.poll_stopped(&mut cx));
        assert_eq!(stops.len(), 2);
        drop(first);
        drop(second);
        assert_eq!(stops.len(), 0);
    }
}
