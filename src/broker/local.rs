//! The in-process broker: one node, the channel table as the sequencer, the bus as the hand-off.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::Broker;
use crate::bus::Bus;
use crate::channels::{ChannelTable, NewEvent, Receipt, TableError};

pub struct LocalBroker {
    table: Arc<ChannelTable>,
    bus: Arc<Bus>,
}

impl LocalBroker {
    pub fn new(table: Arc<ChannelTable>, bus: Arc<Bus>) -> LocalBroker {
        LocalBroker { table, bus }
    }
}

impl Broker for LocalBroker {
    fn publish(
        &self,
        events: Vec<NewEvent>,
        now: SystemTime,
        at: Instant,
    ) -> Result<Vec<Receipt>, TableError> {
        self.table.publish(events, &self.bus, now, at)
    }

    fn delete_channel(&self, name: &str) -> bool {
        self.table.delete(name, &self.bus)
    }
}
