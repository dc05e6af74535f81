//! Where the native API's channel operations go: publish, subscribe (with replay from a cursor), delete, and
//! the channel list and info, whose answers must be the same on every node.
//!
//! The in-process broker (`local`) does them in the channel table, within the request's turn, and is also what
//! the compatible APIs and spout's own status channel publish through (their state is this node's). The Redis
//! broker (`redis`, `--broker redis://…`) makes several nodes one server: the native API's channels are
//! sequenced, retained and fanned out between nodes by Redis, and the table becomes each node's cache of the
//! channels its subscribers hold (`channels::fed`). A Redis operation takes a round trip, which no worker may wait
//! for: it answers `Reply::Later`, the request is parked (`Waiter`) and handled again when the broker's answer
//! reaches the worker's inbox (`BrokerAnswer`, given back through `Ask`).

pub mod local;
pub mod redis;
pub mod seam;
pub mod shared;

use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use crate::channels::Subscription;
use crate::metrics::BrokerFigures;
pub use seam::{BrokerAnswer, BrokerError, Waiter};
use seam::{ChannelInfo, ChannelPage, NewEvent, Receipt};

/// What an operation did: done within the turn, or asked of the broker, whose answer comes later (the request
/// is handled again with it).
#[derive(Debug)]
pub enum Reply<T> {
    Now(T),
    Later,
}

impl<T> Reply<T> {
    /// The result, if the operation is done (`None`: the request waits for the broker's answer).
    pub fn now(self) -> Option<T> {
        match self {
            Reply::Now(value) => Some(value),
            Reply::Later => None,
        }
    }
}

/// A request's return address for a broker that answers later, and, when the request is handled again, the
/// answer it waited for.
pub struct Ask<'a> {
    pub waiter: Waiter,
    pub answer: &'a mut Option<BrokerAnswer>,
}

/// A stream's subscription, as the API asks for it.
pub struct Subscribe<'a> {
    pub worker: usize,
    /// The stream's channels, each once, in the order the client named them.
    pub names: &'a [&'a str],
    pub client_id: &'a str,
    /// The `Last-Event-ID` the client sent, if any (as text: each broker reads its own cursors).
    pub cursor: Option<&'a str>,
    /// The client address channels this creates count against (`--max-channels-per-ip`).
    pub creator: Option<IpAddr>,
}

/// The native API's channels, held by this node or shared by every node. Each operation answers now or later
/// (`Reply`); a broker answering later has queued the work with `ask.waiter`, and finds its answer in
/// `ask.answer` when the request is handled again.
pub trait Broker: Send + Sync {
    /// Publishes a batch; receipts are in the batch's order.
    fn publish(
        &self,
        events: Vec<NewEvent>,
        now: SystemTime,
        at: Instant,
        ask: Ask<'_>,
    ) -> Result<Reply<Vec<Receipt>>, BrokerError>;

    /// Registers a stream on its channels, resuming after its cursor.
    fn subscribe(
        &self,
        wanted: Subscribe<'_>,
        ask: Ask<'_>,
    ) -> Result<Reply<Subscription>, BrokerError>;

    /// Deletes a channel everywhere: its history, and its streams after a final event. False if it did not exist.
    fn delete_channel(&self, name: &str, ask: Ask<'_>) -> Result<Reply<bool>, BrokerError>;

    /// A channel as every node sees it (`None`: no history and no subscriber anywhere).
    fn channel_info(
        &self,
        name: &str,
        ask: Ask<'_>,
    ) -> Result<Reply<Option<ChannelInfo>>, BrokerError>;

    /// A page of the channels after `after`, in name order. `native` tells the API's channel names from the
    /// others this node's table holds (the compatible APIs'), which a page leaves out.
    fn list_channels(
        &self,
        after: Option<&str>,
        limit: usize,
        native: &dyn Fn(&str) -> bool,
        ask: Ask<'_>,
    ) -> Result<Reply<ChannelPage>, BrokerError>;

    /// The most channels one stream may carry here, when the broker bounds it (its cursor must fit in an id).
    fn max_channels_per_stream(&self) -> Option<usize>;

    /// The broker's figures for `/metrics`, `/healthz` and the status page; `None` for the local broker.
    fn figures(&self) -> Option<BrokerFigures>;

    /// Where the compatible APIs keep the state every node must agree on; `None`: it is this node's alone (the
    /// local broker), and each API keeps it in its own lock.
    fn shared(&self) -> Option<&dyn shared::Shared> {
        None
    }

    /// Waits, at most `within`, until the work nobody waits for is done (the scripts of streams that ended while
    /// the node drained): called once the workers have stopped, before the process exits.
    fn settle(&self, _within: std::time::Duration) {}
}
