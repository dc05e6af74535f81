//! Where published events go before fan-out.
//!
//! Every publish, from every API, goes through the `Broker` seam. The in-process broker (`local`) sequences
//! events in the channel table and hands them to this process's workers, within the request's turn. The Redis
//! broker (`redis`, `--broker redis://…`) makes several nodes one server: the native API's channels are
//! sequenced, retained and fanned out between nodes by a Redis Cluster, and the table becomes each node's cache
//! of the channels its subscribers hold (`channels::fed`). A Redis operation takes a round trip, which no worker
//! may wait for: the request is parked (`Waiter`) and handled again when the broker's answer reaches the worker's
//! inbox (`BrokerAnswer`).

pub mod local;
pub mod redis;
pub mod seam;

use std::time::{Instant, SystemTime};

pub use seam::{BrokerAnswer, BrokerError, Waiter};
use seam::{NewEvent, Receipt, TableError};

pub trait Broker: Send + Sync {
    /// Publishes a batch all or nothing; receipts are in the batch's order.
    fn publish(
        &self,
        events: Vec<NewEvent>,
        now: SystemTime,
        at: Instant,
    ) -> Result<Vec<Receipt>, TableError>;

    /// Deletes a channel everywhere: its history, and its streams after a final event. False if it did not exist.
    fn delete_channel(&self, name: &str) -> bool;
}
