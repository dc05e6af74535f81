//! State the compatible APIs share between nodes (`--broker redis://…`): what each original kept in its one
//! process (Pipely's members, node-sse-server's presence, flychat's rooms, WS-PushServer's tokens, keker's
//! sessions) lives in Redis, changed by Lua scripts that run atomically on one shard, so that a check and the change
//! it guards (a duplicate client id, a HELLO, a token creation) are one step whichever node asks.
//!
//! A script may also send events on a compatible channel, in the same step as the change they announce: the event
//! is appended to the channel's stream in Redis (which gives it its id) and published to the nodes holding the
//! channel, as the native API's events are (`broker::redis`). A stream that must see every event after a change
//! (a joiner after its own `CONNECT`) subscribes after the id the script returns (`Shared::subscribe`).
//!
//! A handler that needs Redis runs again from its start when the answer comes, so it asks in this order, each at
//! most once per request or message: `hold` the channels (if it subscribes), then one `eval`, then `subscribe`
//! (which answers at once) and any `eval_detached`. Each operation takes only its own kind of answer from
//! `ctx.answer`.
//!
//! Keys: a key is `PREFIX{tag}:name`; keys with the same tag live on one shard, and a script may touch only keys
//! of one tag. A channel's events and the state a script changes with them share the channel's tag (the core
//! channel name, `pipely/…`). Everything a node owns carries an expiry that the node refreshes (`api::refresh_shared`
//! runs once a second), so a node that dies leaves nothing behind once its `--broker-node-ttl` passes.
//!
//! Every script runs with these Lua functions defined in front of it:
//! - `spout_send(stream, shard, kind, to, bytes)`: appends an event to a channel's stream and publishes it to the
//!   nodes holding the channel; returns its id. `stream` and `shard` are the keys `Shared::channel` names (both must
//!   be in KEYS), `kind` is `'s'` (a whole SSE frame), `'w'` (the payload of a WebSocket text message) or `'t'` (the
//!   shared end of a WebSocket text payload, `message::Wire::WebSocketTail`), `to` the comma-joined client ids the
//!   event is for (`''`: everyone).
//! - `spout_last(stream)`: the id of the channel's last event, `'0-0'` when it has none: the cursor a stream
//!   subscribes after to get every event sent from then on.
//! - `spout_now()`: Redis's clock, in milliseconds (every node's scripts read the same clock).

use std::net::IpAddr;
use std::time::Duration;

pub use super::seam::Value;
use super::{Ask, BrokerError, Reply};
use crate::channels::Subscription;
use crate::message::EventId;

/// A Lua script of a compatible API, defined once as a `static` (the broker loads each once per connection and
/// runs it by its hash).
pub struct Lua {
    pub source: &'static str,
}

impl Lua {
    pub const fn new(source: &'static str) -> Lua {
        Lua { source }
    }
}

/// The keys a script needs to send events on a channel with `spout_send` (both go in its KEYS).
pub struct ChannelKeys {
    pub stream: String,
    pub shard: String,
}

/// The compatible APIs' view of the Redis broker.
pub trait Shared: Send + Sync {
    /// A key for shared state: `PREFIX{tag}:name`.
    fn key(&self, tag: &str, name: &str) -> String;

    /// A compatible channel's keys for `spout_send` (its tag is the channel's name).
    fn channel(&self, channel: &str) -> ChannelKeys;

    /// Runs `script` (KEYS `keys`, ARGV `args`) on the shard of its first key. The answer comes later: the
    /// request or WebSocket message is handled again with it, and this returns `Reply::Now` with the script's
    /// value then.
    fn eval(
        &self,
        script: &'static Lua,
        keys: Vec<String>,
        args: Vec<Vec<u8>>,
        ask: Ask<'_>,
    ) -> Result<Reply<Value>, BrokerError>;

    /// Runs `script` without waiting for it: for changes nobody waits on (a stream that ended, a refresh); a
    /// failure is logged.
    fn eval_detached(&self, script: &'static Lua, keys: Vec<String>, args: Vec<Vec<u8>>);

    /// Makes this node hold compatible channels (follow their events from Redis), so that a stream can then
    /// subscribe after any id a script returns. Answers now when it holds them already, later otherwise (the
    /// request or message is handled again with the answer). Call it before the script whose cursor the stream
    /// subscribes after: every event sent after the script then reaches this node.
    fn hold(
        &self,
        channels: &[&str],
        creator: Option<IpAddr>,
        ask: Ask<'_>,
    ) -> Result<Reply<()>, BrokerError>;

    /// Subscribes a stream of `worker` to channels this node holds (`hold`), each from after the id given
    /// (`None`: from the last event this node has seen). An id ahead of what this node has seen is fine: events
    /// up to it are skipped when they arrive. `Unavailable` when the node does not hold a channel (it left it:
    /// Redis was away).
    fn subscribe(
        &self,
        worker: usize,
        channels: &[(&str, Option<EventId>)],
        client_id: &str,
    ) -> Result<Subscription, BrokerError>;

    /// This node's name (`--node-name`): what the state it owns is recorded under.
    fn node(&self) -> &str;

    /// `--broker-node-ttl`: what a node owns expires this long after its last refresh.
    fn ttl(&self) -> Duration;
}
