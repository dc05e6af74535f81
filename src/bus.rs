//! The bus: one bounded inbox (`crossbeam_channel`) and one `mio::Waker` per worker.
//!
//! Only the channel table sends events through it, while holding its publish lock, so every worker receives
//! events in the one global id order (see `channels`). Waking is separate from sending so the sender can
//! wake after it has released that lock: a wake is a syscall, and no syscall should run under the lock.
//!
//! A wake is needed only when the worker is about to block in its poll: a worker in the middle of a turn takes
//! its inbox before it polls again. So each inbox has a flag the worker raises just before a blocking poll
//! (`Inbox::sleep`), and a sender writes the worker's eventfd only if it is the one to lower that flag. Under
//! load a worker is rarely asleep, and the broker thread, the auth hook's threads and the other workers stop
//! paying an eventfd write (and the worker an extra poll turn) per message. No wake is lost: the worker raises
//! the flag, then looks at its inbox; a sender queues its message, then looks at the flag; with a full fence on
//! both sides, at least one of them sees the other's write.
//!
//! Inboxes are bounded. `has_room` is checked for a whole publish before anything is sent, so a batch is either
//! handed to every worker or refused with 503; control messages get a small reserve above the event capacity.
//! The answers to parked requests (`Answer`: the Redis broker thread's, the auth hook threads') use that reserve
//! too, sent and woken in one step (`Bus::answer`).

use std::cell::{Cell, RefCell};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TryIter, TryRecvError, TrySendError};
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
    /// The workers this thread will wake when its `Bus::holding_wakes` scope ends (`None`: not in one).
    static HELD_WAKES: RefCell<Option<Vec<usize>>> = const { RefCell::new(None) };
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
    asleep: Arc<[AsleepFlag]>,
    event_capacity: usize,
}

/// Raised by a worker about to block in its poll, lowered by the sender that wakes it. On a cache line of its
/// own: every sender touches it.
#[derive(Default)]
#[repr(align(64))]
struct AsleepFlag(AtomicBool);

/// A worker's receiving side: its messages and its asleep flag.
pub struct Inbox {
    messages: Receiver<WorkerMsg>,
    asleep: Arc<[AsleepFlag]>,
    worker: usize,
}

impl Inbox {
    pub fn try_recv(&self) -> Result<WorkerMsg, TryRecvError> {
        self.messages.try_recv()
    }

    pub fn try_iter(&self) -> TryIter<'_, WorkerMsg> {
        self.messages.try_iter()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Called before a poll that may block: raises the flag so that the next sender wakes this worker. Returns
    /// false (and lowers it again) when a message came in meanwhile: then the poll must not block.
    pub fn sleep(&self) -> bool {
        let flag = &self.flag().0;
        flag.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.messages.is_empty() {
            return true;
        }
        flag.store(false, Ordering::Relaxed);
        false
    }

    /// Called after every poll: senders need not wake a worker that is running its turn.
    pub fn awake(&self) {
        self.flag().0.store(false, Ordering::Relaxed);
    }

    fn flag(&self) -> &AsleepFlag {
        &self.asleep[self.worker]
    }
}

/// The inbox was full: the worker is too far behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxFull;

impl Bus {
    /// Makes one inbox per waker; returns the bus and the inboxes, in worker order.
    pub fn new(wakers: Vec<Arc<Waker>>, event_capacity: usize) -> (Bus, Vec<Inbox>) {
        let (senders, receivers): (Vec<_>, Vec<_>) = wakers
            .iter()
            .map(|_| crossbeam_channel::bounded(event_capacity + CONTROL_RESERVE))
            .unzip();
        let asleep: Arc<[AsleepFlag]> = wakers.iter().map(|_| AsleepFlag::default()).collect();
        let inboxes = receivers
            .into_iter()
            .enumerate()
            .map(|(worker, messages)| Inbox {
                messages,
                asleep: Arc::clone(&asleep),
                worker,
            })
            .collect();
        let bus = Bus {
            senders: senders.into(),
            wakers: wakers.into(),
            asleep,
            event_capacity,
        };
        (bus, inboxes)
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

    /// Wakes one worker's poll so it drains its inbox, if it is asleep (not the calling worker itself: see
    /// `CURRENT_WORKER`; later, if the thread is `holding_wakes`). Call it after the message is queued.
    pub fn wake(&self, worker: usize) {
        if CURRENT_WORKER.with(Cell::get) == Some(worker) {
            return;
        }
        let held = HELD_WAKES.with(|held| match held.borrow_mut().as_mut() {
            Some(workers) => {
                if !workers.contains(&worker) {
                    workers.push(worker);
                }
                true
            }
            None => false,
        });
        if !held {
            self.wake_now(worker);
        }
    }

    /// Runs `f`, then wakes once each worker it woke. For a thread that hands out several messages in a row
    /// (the broker thread's answers, and the events of several channels): a wake lets the sleeping worker run
    /// at once, on a shared core in the middle of the batch, so waking per message switches to the worker and
    /// back once per message, where one wake at the end hands it the whole batch in one turn. Not to be held
    /// across an `.await`. A scope inside another leaves the wakes to the outer one.
    pub fn holding_wakes<R>(&self, f: impl FnOnce() -> R) -> R {
        let outermost = HELD_WAKES.with(|held| {
            let mut held = held.borrow_mut();
            if held.is_some() {
                return false;
            }
            *held = Some(Vec::new());
            true
        });
        let result = f();
        if outermost {
            let workers = HELD_WAKES.with(|held| held.borrow_mut().take());
            for worker in workers.unwrap_or_default() {
                self.wake_now(worker);
            }
        }
        result
    }

    fn wake_now(&self, worker: usize) {
        fence(Ordering::SeqCst);
        let asleep = self
            .asleep
            .get(worker)
            .is_some_and(|flag| flag.0.swap(false, Ordering::SeqCst));
        if !asleep {
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
    pub fn for_tests(workers: usize, event_capacity: usize) -> (Bus, Vec<Inbox>) {
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
    use std::sync::Arc;
    use std::time::Duration;

    use mio::{Events, Poll, Token, Waker};

    use super::{Bus, WorkerMsg};

    /// A bus of one worker whose waker belongs to `poll`.
    fn one_worker(poll: &Poll) -> (Bus, super::Inbox) {
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).expect("waker"));
        let (bus, mut inboxes) = Bus::new(vec![waker], 16);
        (bus, inboxes.remove(0))
    }

    fn woken(poll: &mut Poll) -> bool {
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::ZERO)).expect("poll");
        events.iter().any(|e| e.token() == Token(7))
    }

    #[test]
    fn a_worker_about_to_sleep_is_woken_by_the_next_message_and_only_once() {
        let mut poll = Poll::new().expect("poll");
        let (bus, inbox) = one_worker(&poll);
        assert!(inbox.sleep(), "an empty inbox may sleep");
        bus.send(0, WorkerMsg::Drain).expect("room");
        bus.wake(0);
        bus.send(0, WorkerMsg::Drain).expect("room");
        bus.wake(0);
        assert!(woken(&mut poll));
        assert!(
            !woken(&mut poll),
            "the second sender found the flag lowered"
        );
        assert_eq!(inbox.try_iter().count(), 2);
    }

    #[test]
    fn a_running_worker_is_not_woken_and_a_queued_message_keeps_it_from_sleeping() {
        let mut poll = Poll::new().expect("poll");
        let (bus, inbox) = one_worker(&poll);
        inbox.awake();
        bus.send(0, WorkerMsg::Drain).expect("room");
        bus.wake(0);
        assert!(
            !woken(&mut poll),
            "a worker in its turn takes its inbox without a wake"
        );
        assert!(
            !inbox.sleep(),
            "a message already queued: poll without blocking"
        );
        bus.send(0, WorkerMsg::Drain).expect("room");
        bus.wake(0);
        assert!(!woken(&mut poll));
        assert_eq!(inbox.try_iter().count(), 2);
    }

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
