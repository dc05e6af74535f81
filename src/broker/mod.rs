//! Where published events go before fan-out.
//!
//! Every publish, from every API, goes through the `Broker` seam. The in-process broker (`local`) sequences
//! events in the channel table and hands them to this process's workers; a Redis-backed broker can later
//! replace it (publishing to Redis and feeding the table from a subscriber thread) without touching the workers
//! or the APIs.

pub mod local;

use std::time::{Instant, SystemTime};

use crate::channels::{NewEvent, Receipt, TableError};

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
