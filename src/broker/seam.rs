//! The types that cross the broker seam: what the APIs hand a broker (`NewEvent`, `Resume`), what it answers
//! (`Receipt`, `ChannelInfo`, `ChannelPage`, the errors), and how an answer that takes a round trip finds its request (`Waiter`,
//! `BrokerAnswer`). They depend on nothing but ids and wire frames, so the bus that carries answers to the
//! workers, the channel table and both brokers all build on them without importing one another.

use std::net::IpAddr;
use std::sync::Arc;

use crate::message::{EventId, Wire};

/// Where a new subscriber starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Live events only.
    Fresh,
    /// Everything after this id, then live events.
    After(EventId),
    /// The client sent a `Last-Event-ID` that does not parse.
    Unparseable,
}

/// Errors the table answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// Creating the channel(s) would exceed `--max-channels`.
    TooManyChannels,
    /// Creating the channel(s) would give the client's address more than `--max-channels-per-ip`.
    ClientChannelLimit,
    /// A worker's inbox is full (it is too far behind); nothing was published.
    Overloaded,
}

impl TableError {
    pub fn as_str(&self) -> &'static str {
        match self {
            TableError::TooManyChannels => "too_many_channels",
            TableError::ClientChannelLimit => "too_many_channels_created",
            TableError::Overloaded => "overloaded",
        }
    }
}

/// An event to publish, validated by the API layer.
#[derive(Debug, Default)]
pub struct NewEvent {
    pub channel: Box<str>,
    pub event: Option<Box<str>>,
    pub data: Box<str>,
    pub to: Option<Box<[Box<str>]>>,
    /// The encoding, made by a compatible API whose channels have a single wire format; `None` for native events,
    /// which are encoded on first need.
    pub wire: Option<Wire>,
    /// Delivered live but not kept in history: for compatible APIs that have no replay (or keep their own).
    pub ephemeral: bool,
    /// The client address a channel this event creates is counted against (`--max-channels-per-ip`); `None` for
    /// publishers that are not counted (those holding the publish key).
    pub creator: Option<IpAddr>,
}

/// What a publish did with one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub id: EventId,
    /// Subscribers the event was queued for (addressees present, for a targeted event).
    pub subscribers: usize,
}

/// A channel as shown by `GET /channels/{channel}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    pub name: Arc<str>,
    pub subscribers: usize,
    pub client_ids: Vec<Box<str>>,
    pub last_id: Option<EventId>,
    pub retained: usize,
    pub retained_bytes: usize,
}

/// A channel as listed by `GET /channels`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSummary {
    pub name: Arc<str>,
    pub subscribers: usize,
    pub retained: usize,
}

/// One page of the channel listing (`ChannelTable::list_page`, or the Redis broker's registry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPage {
    /// The channels of the page that the filter kept, in name order.
    pub channels: Vec<ChannelSummary>,
    /// The last name the page looked at, when names remain after it: the next page starts after it.
    pub next_after: Option<Arc<str>>,
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
    /// A page of the channels that have history or subscribers on some node.
    Listed(Result<ChannelPage, BrokerError>),
    /// What a compatible API's script returned (`shared::Shared::eval`).
    Evaluated(Result<Value, BrokerError>),
}

/// What a script returned, as Redis converts Lua values: a number (Lua numbers are truncated to integers), a
/// string, a table (a list, up to its first nil), or nil/false.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Nil,
    Int(i64),
    Data(Vec<u8>),
    List(Vec<Value>),
}

impl Value {
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Data(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
            _ => None,
        }
    }

    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Data(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    pub fn list(&self) -> &[Value] {
        match self {
            Value::List(items) => items,
            _ => &[],
        }
    }

    /// The stream id a script returned (`spout_send`, `spout_last`), as an event id.
    pub fn event_id(&self) -> Option<EventId> {
        let text = self.text()?;
        if text == "0-0" {
            return Some(EventId::ZERO);
        }
        EventId::from_stream_id(text)
    }
}

/// Why the broker could not do what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerError {
    /// A table limit (on this node).
    Table(TableError),
    /// Redis (or the channel's shard) did not answer within `--broker-timeout`, or refused.
    Unavailable,
}
