//! The in-process broker: one node, the channel table as the sequencer, the bus as the hand-off. Every operation
//! completes within the request's turn.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::{Ask, Broker, BrokerError, Reply, Subscribe};
use crate::bus::Bus;
use crate::channels::{
    ChannelInfo, ChannelPage, ChannelTable, NewEvent, Receipt, Resume, Subscription, TableError,
};
use crate::message::EventId;
use crate::metrics::BrokerFigures;

/// Names one page of the listing may look at under the table lock, kept or left out: a page whose names are
/// mostly other APIs' may end early (even empty, with a `next`) rather than walk the whole table.
pub const LIST_SCAN: usize = 10_000;

pub struct LocalBroker {
    table: Arc<ChannelTable>,
    bus: Arc<Bus>,
}

impl LocalBroker {
    pub fn new(table: Arc<ChannelTable>, bus: Arc<Bus>) -> LocalBroker {
        LocalBroker { table, bus }
    }

    /// Publishes a batch all or nothing, now: what the compatible APIs and spout's own channels publish with.
    pub fn publish_now(
        &self,
        events: Vec<NewEvent>,
        now: SystemTime,
        at: Instant,
    ) -> Result<Vec<Receipt>, TableError> {
        self.table.publish(events, &self.bus, now, at)
    }

    /// Deletes a channel now: its history, and its streams after a final event. False if it did not exist.
    pub fn delete_now(&self, name: &str) -> bool {
        self.table.delete(name, &self.bus)
    }
}

impl Broker for LocalBroker {
    fn publish(
        &self,
        events: Vec<NewEvent>,
        now: SystemTime,
        at: Instant,
        _ask: Ask<'_>,
    ) -> Result<Reply<Vec<Receipt>>, BrokerError> {
        self.publish_now(events, now, at)
            .map(Reply::Now)
            .map_err(BrokerError::Table)
    }

    /// One id orders every channel here, so a stream's cursor is one id (`Last-Event-ID`).
    fn subscribe(
        &self,
        wanted: Subscribe<'_>,
        _ask: Ask<'_>,
    ) -> Result<Reply<Subscription>, BrokerError> {
        let resume = match wanted.cursor {
            None => Resume::Fresh,
            Some(text) => EventId::parse(text).map_or(Resume::Unparseable, Resume::After),
        };
        self.table
            .subscribe(
                wanted.worker,
                wanted.names,
                wanted.client_id,
                resume,
                wanted.creator,
            )
            .map(Reply::Now)
            .map_err(BrokerError::Table)
    }

    fn delete_channel(&self, name: &str, _ask: Ask<'_>) -> Result<Reply<bool>, BrokerError> {
        Ok(Reply::Now(self.delete_now(name)))
    }

    fn channel_info(
        &self,
        name: &str,
        _ask: Ask<'_>,
    ) -> Result<Reply<Option<ChannelInfo>>, BrokerError> {
        Ok(Reply::Now(self.table.info(name)))
    }

    fn list_channels(
        &self,
        after: Option<&str>,
        limit: usize,
        native: &dyn Fn(&str) -> bool,
        _ask: Ask<'_>,
    ) -> Result<Reply<ChannelPage>, BrokerError> {
        Ok(Reply::Now(
            self.table.list_page(after, limit, LIST_SCAN, native),
        ))
    }

    fn max_channels_per_stream(&self) -> Option<usize> {
        None
    }

    fn figures(&self) -> Option<BrokerFigures> {
        None
    }
}
