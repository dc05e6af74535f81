//! The bus: one bounded inbox (`crossbeam_channel`) and one `mio::Waker` per worker.
//!
//! Only the channel table sends events through it, while holding its publish lock, so every worker receives
//! events in the one global id order (see `channels`). Waking is separate from sending so the sender can
//! wake after it has released that lock: a wake is a syscall, and no syscall should run under the lock.
//!
//! Inboxes are bounded. `has_room` is checked for a whole publish before anything is sent, so a batch is either
//! handed to every worker or refused with 503; control messages get a small reserve above the event capacity.
//! The answers to parked requests (`Answer`: the Redis broker thread's, the auth hook threads') use that reserve
//! too, sent and woken in one step (`Bus::answer`).

use std::cell::Cell;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::Waker;

use crate::auth::verdict::HookVerdict;
use crate::broker::seam::{BrokerAnswer, Waiter};
use crate::message::Message;

/// Slots kept free above the event capacity for control messages (channel deleted, drain).
const CONTROL_RESERVE: usize = 1024;

thread_local! {
    /// The worker running on this thread, if any: a worker that publishes need not wake itself, because it
    /// checks its own inbox before it polls again (`Worker::has_pending_work`). That saves an eventfd write and an
    /// extra poll turn per publish.
    static CURRENT_WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Marks this thread as running `worker` (called once by the worker thread).
pub fn set_current_worker(worker: usize) {
    CURRENT_WORKER.with(|current| current.set(Some(worker)));
}

/// What a worker finds in its inbox, in global order.
#[derive(Debug)]
pub enum WorkerMsg {
    /// An event to fan out to this worker's subscribers of `message.channel`.
    Publish(Arc<Message>),
    /// The channel incarnation was deleted: send its subscribers the final event and unsubscribe them.
    ChannelDeleted { channel: Arc<str>, incarnation: u64 },
    /// Graceful shutdown has begun.
    Drain,
    /// The answer to a request parked on one of this worker's connections. Boxed: with its waiter it is about
    /// 100 bytes and rare, and every inbox slot is as large as the largest message (see the size test).
    Answer(Box<(Waiter, Answer)>),
}

/// What a parked request waited for (`api::Action::Await`). Both kinds come back the same way, with the waiter's
/// ticket, so a late answer for a connection that closed (or whose key was reused) is recognised and dropped.
#[derive(Debug)]
pub enum Answer {
    /// The Redis broker's (`broker::redis`).
    Broker(BrokerAnswer),
    /// The auth hook's (`auth::hook`).
    Hook(HookVerdict),
}

/// The sending side of every worker's inbox.
pub struct Bus {
    senders: Box<[Sender<WorkerMsg>]>,
    wakers: Box<[Arc<Waker>]>,
    event_capacity: usize,
}

/// The inbox was full: the worker is too far behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxFull;

impl Bus {
    /// Makes one inbox per waker; returns the bus and the receivers, in worker order.
    pub fn new(wakers: Vec<Arc<Waker>>, event_capacity: usize) -> (Bus, Vec<Receiver<WorkerMsg>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) = wakers
            .iter()
            .map(|_| crossbeam_channel::bounded(event_capacity + CONTROL_RESERVE))
            .unzip();
        let bus = Bus {
            senders: senders.into(),
            wakers: wakers.into(),
            event_capacity,
        };
        (bus, receivers)
    }

    pub fn workers(&self) -> usize {
        self.senders.len()
    }

    /// Whether `worker` can take `events` more events without going over its event capacity.
    pub fn has_room(&self, worker: usize, events: usize) -> bool {
        self.senders
            .get(worker)
            .is_some_and(|s| s.len() + events <= self.event_capacity)
    }

    /// Queues a message without blocking; the caller wakes the worker afterwards.
    pub fn send(&self, worker: usize, msg: WorkerMsg) -> Result<(), InboxFull> {
        let Some(sender) = self.senders.get(worker) else {
            return Err(InboxFull);
        };
        match sender.try_send(msg) {
            Ok(()) => Ok(()),
            // A disconnected inbox belongs to a worker that has exited during shutdown: nothing to deliver.
            Err(TrySendError::Disconnected(_)) => Ok(()),
            Err(TrySendError::Full(_)) => Err(InboxFull),
        }
    }

    /// Hands `answer` to the worker `waiter` names and wakes it. An inbox too full to take it loses it: the
    /// request stays parked until its connection's request timeout.
    pub fn answer(&self, waiter: Waiter, answer: Answer) {
        if self
            .send(waiter.worker, WorkerMsg::Answer(Box::new((waiter, answer))))
            .is_err()
        {
            log::warn!(
                "inbox of worker {} is full; a parked request waits for its timeout",
                waiter.worker
            );
        }
        self.wake(waiter.worker);
    }

    /// Wakes one worker's poll so it drains its inbox (not the calling worker itself: see `CURRENT_WORKER`).
    pub fn wake(&self, worker: usize) {
        if CURRENT_WORKER.with(Cell::get) == Some(worker) {
            return;
        }
        if let Some(waker) = self.wakers.get(worker) {
            if let Err(e) = waker.wake() {
                log::warn!(worker; "could not wake worker {worker}: {e}");
            }
        }
    }

    /// A bus whose wakers belong to throw-away polls, for unit tests of the table.
    #[cfg(test)]
    pub fn for_tests(workers: usize, event_capacity: usize) -> (Bus, Vec<Receiver<WorkerMsg>>) {
        let wakers = (0..workers)
            .map(|_| {
                let poll = mio::Poll::new().expect("poll");
                Arc::new(Waker::new(poll.registry(), mio::Token(0)).expect("waker"))
            })
            .collect();
        Bus::new(wakers, event_capacity)
    }

    /// Sends a control message to every worker and wakes them all.
    pub fn broadcast_control(&self, make: impl Fn() -> WorkerMsg) {
        for worker in 0..self.workers() {
            if self.send(worker, make()).is_err() {
                log::warn!(worker; "inbox of worker {worker} is full; control message not delivered");
            }
            self.wake(worker);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WorkerMsg;

    /// An inbox is a bounded crossbeam array: all of its slots (`--inbox-capacity`, 65,536 by default, plus the
    /// reserve) are allocated and touched when the worker starts, so every byte of `WorkerMsg` costs some 66 KB
    /// of resident memory per worker before the first connection. The common messages are an `Arc` or two; a rare
    /// large one is boxed.
    #[test]
    fn a_worker_message_is_small_because_every_inbox_slot_is_resident() {
        assert!(
            std::mem::size_of::<WorkerMsg>() <= 32,
            "WorkerMsg is {} bytes",
            std::mem::size_of::<WorkerMsg>()
        );
    }
}
