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

use std::time::{Instant, SystemTime};

use crate::channels::{ChannelInfo, NewEvent, Receipt, TableError};

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

/// A request waiting for the broker: the connection (slab key) of a worker, and the ticket it waits with (a
/// connection that closed and whose key was reused holds another ticket, so a late answer finds no taker).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiter {
    pub worker: usize,
    pub conn: usize,
    pub ticket: u64,
}

/// The broker's answer to a waiting request, which the request is handled again with.
#[derive(Debug)]
pub enum BrokerAnswer {
    /// The batch is in Redis (history and every node's shard channel), with the receipts in batch order.
    Published(Result<Vec<Receipt>, BrokerError>),
    /// The channel is fed on this node from the cursor asked for: subscribing now completes at once.
    Warmed(Result<(), BrokerError>),
    /// The channel was deleted on every node; false when it did not exist.
    Deleted(Result<bool, BrokerError>),
    /// The channel as every node sees it (`None`: no history and no subscriber anywhere).
    Info(Result<Option<ChannelInfo>, BrokerError>),
}

/// Why the broker could not do what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerError {
    /// A table limit (on this node).
    Table(TableError),
    /// Redis (or the channel's shard) did not answer within `--broker-timeout`, or refused.
    Unavailable,
}
