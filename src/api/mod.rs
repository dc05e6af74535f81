//! The public APIs and the router between them.
//!
//! A listener is bound to one API (`--listen ADDR=API`); a native listener also serves the compatible APIs under
//! their path prefixes (added by later issues). Each API maps its wire format onto the same core operations
//! (subscribe through the channel table, publish through the broker, channel admin) and answers errors in its own
//! style. APIs never reach into each other or into the event loop: they get a `Ctx` and a complete `Request`, and
//! return an `Action` that the connection carries out.
//!
//! This lives above `http/` (a protocol layer every API uses) so that no import runs back up.

pub mod native;

use std::time::{Instant, SystemTime};

use crate::broker::Broker;
use crate::channels::{ChannelTable, Subscription};
use crate::config::{Api, Config};
use crate::http::request::{Head, Method};
use crate::http::response::DateCache;
use crate::http::HttpError;
use crate::metrics::{Counters, Registry};

/// What an API handler may use: the worker's view of the server for one request.
pub struct Ctx<'a> {
    pub now: Instant,
    pub wall: SystemTime,
    pub worker: usize,
    pub config: &'a Config,
    pub table: &'a ChannelTable,
    pub broker: &'a dyn Broker,
    pub registry: &'a Registry,
    pub date: &'a DateCache,
    pub draining: bool,
    pub counters: &'a mut Counters,
    /// Source of server-assigned client ids (per worker).
    pub ids: &'a mut IdSource,
}

/// A complete request: its parsed head, the bytes the head's spans point into, and the decoded body.
pub struct Request<'a> {
    pub head: &'a Head,
    pub buf: &'a [u8],
    pub body: &'a [u8],
}

impl Request<'_> {
    pub fn path(&self) -> &[u8] {
        self.head.path(self.buf)
    }

    pub fn query(&self) -> &[u8] {
        self.head.query(self.buf)
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.head.header(self.buf, name)
    }

    pub fn is_head(&self) -> bool {
        self.head.method == Method::Head
    }
}

/// What the connection does with a request.
pub enum Action {
    /// Queue this response; close the connection after it when `close`.
    Respond { bytes: Vec<u8>, close: bool },
    /// Become an event stream: queue `opening` (response head and first bytes), then live and replayed events.
    Stream(Box<Stream>),
}

/// A subscription the API has registered in the channel table; the worker adds it to its hub.
pub struct Stream {
    pub opening: Vec<u8>,
    pub subscription: Subscription,
    pub client_id: Box<str>,
    /// A WebSocket stream (the opening is a 101 answer); else SSE.
    pub websocket: bool,
}

/// Handles a complete request on a listener bound to `api`.
pub fn handle(api: Api, req: &Request, ctx: &mut Ctx) -> Action {
    ctx.counters.requests += 1;
    match api {
        Api::Native => native::handle(req, ctx),
    }
}

/// Why the connection layer refuses a request before any API sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Http(HttpError),
    /// No complete head, or a stalled body, within `--request-timeout`.
    Timeout,
    /// `--max-connections` reached or out of file descriptors.
    Busy,
}

/// The answer to a refusal, in the style of the listener's API. Always closes the connection.
pub fn refusal(api: Api, refusal: Refusal, date: &DateCache) -> Vec<u8> {
    match api {
        Api::Native => native::refusal(refusal, date),
    }
}

/// Server-assigned client ids: 16 hex digits from a per-worker xorshift generator seeded from the OS.
pub struct IdSource {
    state: u64,
}

impl IdSource {
    pub fn new() -> IdSource {
        let mut seed = [0u8; 8];
        if getrandom::getrandom(&mut seed).is_err() {
            // Uniqueness, not secrecy, is what client ids need; the clock is an acceptable fallback seed.
            seed = (SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64))
            .to_le_bytes();
        }
        IdSource {
            state: u64::from_le_bytes(seed) | 1,
        }
    }

    /// xorshift64*: full period over non-zero states, so values from one worker never repeat within 2^64 draws.
    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn next_client_id(&mut self) -> Box<str> {
        format!("{:016x}", self.next_u64()).into()
    }
}

impl Default for IdSource {
    fn default() -> Self {
        IdSource::new()
    }
}
