//! spout: a minimal, low-level, high-performance pub/sub push server.
//!
//! One worker thread per core. Each owns a `mio::Poll`, its own `SO_REUSEPORT` listeners, a `Slab<Conn>`, a
//! local subscription `Hub` and an inbox (`bus::Inbox`: a `crossbeam_channel` receiver) paired with a `mio::Waker`.
//! Nothing on the per-connection path is shared between threads. A publish is parsed on whichever worker
//! received it, sequenced in the channel table (id, history, hand-off: one step in one global order) and sent as
//! one `Arc<Message>` to the inbox of every worker holding subscribers of its channel; each worker queues the
//! message's shared frame (encoded once per wire format) on its local subscribers and flushes each connection once
//! per loop turn with vectored writes.
//!
//! Module map:
//! - `config`: flags and environment → validated `Config`; `logger`: the log sink; `doctor`: the `spout doctor`
//!   sizing check of the machine; `reload`: what SIGHUP changes in a running server.
//! - `net`: listeners; `proxy`: the PROXY protocol header of a connection from a load balancer (sans-io); `peers`:
//!   open connections per client address; `worker`: the event loop; `conn`: one connection by phase (`request`,
//!   `stream`), its I/O,
//!   deadline and output queue.
//! - `http`: request heads, chunked bodies, responses (sans-io); `sse`: event encoding; `ws`: the WebSocket
//!   handshake and framing (sans-io).
//! - `api`: the router and the public APIs (`api::native`, and the drop-ins `api::pipely`, `api::node_sse`,
//!   `api::flychat`, `api::keker` and `api::ws_push`), above `http`.
//! - `channels`: the channel table (the sequencer, the registry of subscribers per worker and presence, and
//!   `channels::history`: retention); `broker`: the publish seam; `bus`: the worker inboxes (events,
//!   control messages, and the answers of the broker and the auth hook to parked requests); `hub`: a worker's
//!   channel → subscribers index, with the members' positions.
//! - `auth`: token keys, token checks and channel patterns for private channels (`--auth jwt`), and the auth hook's
//!   threads and cache (`auth::hook`, `--auth hook`), whose verdicts reach a worker through its inbox.
//! - `message`: event ids and shared messages; `metrics`: counters and the Prometheus exposition; `status`: the
//!   status page and the once-a-second stream of samples behind it (`--status`).
//! - Leaves every layer may use: `date` (calendar dates), `ids` (random client ids), `sync` (the lock helper), `secret` (comparing keys).
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod broker;
pub mod bus;
pub mod channels;
pub mod config;
pub mod conn;
pub mod date;
pub mod doctor;
pub mod http;
pub mod hub;
pub mod ids;
pub mod logger;
pub mod message;
pub mod metrics;
pub mod net;
pub mod peers;
pub mod proxy;
pub mod reload;
pub mod secret;
pub mod sse;
pub mod status;
pub mod sync;
#[cfg(test)]
mod testing;
pub mod worker;
pub mod ws;
