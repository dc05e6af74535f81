//! The status page (`--status`): a page served from the binary, fed by spout's own SSE stream.
//!
//! Once per second, one thread (`sample_every_second`, started by `main`) reads the same figures `/metrics` renders
//! (`metrics::Figures::read`: the workers' counter slots, the channel table's and the broker's figures), turns them
//! into one JSON sample (`sample`) and encodes it once as an SSE frame. The frame is kept among the last `RECENT`
//! and published, as an ephemeral event, to the core channel `CHANNEL`: the channel table hands it to the workers
//! holding viewers, and each worker queues the one shared frame on its viewers as on any subscriber. A viewer is an
//! ordinary SSE stream of the native API; nothing here runs per viewer but its opening, which carries the recent
//! frames so that the page's charts start with the last minutes.
//!
//! Invariant: a viewer's opening and its live frames neither overlap nor leave a gap. A frame is kept and
//! published under the `recent` lock, and a viewer copies the recent frames and subscribes under that lock too, so
//! every frame is either in its opening or delivered live, never both. Lock order: `recent`, then the channel
//! table's (as an API's lock before the table's).
//!
//! Must not: keep counters of its own (every figure comes from `Figures`), or build anything per viewer per second.

mod sample;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::broker::local::LocalBroker;
use crate::channels::{ChannelTable, NewEvent, Resume, Subscription, TableError};
use crate::message::{Frame, Wire};
use crate::metrics::Figures;
use crate::sse;
use crate::sync::lock;

pub use sample::sample;

/// The core channel of the status stream. The space keeps it out of every API's reach: a native name holds none,
/// and a compatible API's names start with the API's own.
pub const CHANNEL: &str = "spout status";

/// Samples kept for a new viewer's opening: five minutes at one per second (about 150 KB with two workers).
pub const RECENT: usize = 300;

/// How often a sample is taken and sent.
pub const EVERY: Duration = Duration::from_secs(1);

/// The page: HTML, its script and style, and the chart library (uPlot 1.6.32, MIT, `vendor/README.md`).
pub const PAGE_HTML: &str = include_str!("page.html");
pub const PAGE_JS: &str = include_str!("page.js");
pub const PAGE_CSS: &str = include_str!("page.css");
pub const UPLOT_JS: &str = include_str!("vendor/uPlot.iife.min.js");
pub const UPLOT_CSS: &str = include_str!("vendor/uPlot.min.css");

/// The recent frames and the seam between them and the live ones (see the module doc).
#[derive(Default)]
pub struct Status {
    recent: Mutex<VecDeque<Frame>>,
}

impl Status {
    /// Registers a viewer of `worker` on the status channel; returns its subscription and the recent frames, oldest
    /// first, for its opening.
    pub fn subscribe(
        &self,
        table: &ChannelTable,
        worker: usize,
        client_id: &str,
    ) -> Result<(Subscription, Vec<Frame>), TableError> {
        let recent = lock(&self.recent);
        let subscription = table.subscribe(worker, &[CHANNEL], client_id, Resume::Fresh, None)?;
        Ok((subscription, recent.iter().cloned().collect()))
    }

    /// Keeps `frame` among the recent ones and publishes it to the viewers, if there are any (without viewers the
    /// channel does not exist, and nothing is sequenced).
    pub fn publish(&self, frame: Frame, table: &ChannelTable, broker: &LocalBroker) {
        let mut recent = lock(&self.recent);
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(Frame::clone(&frame));
        if table.info(CHANNEL).is_none_or(|c| c.subscribers == 0) {
            return;
        }
        let event = NewEvent {
            channel: CHANNEL.into(),
            wire: Some(Wire::Sse(frame)),
            ephemeral: true,
            ..NewEvent::default()
        };
        if let Err(e) = broker.publish_now(vec![event], SystemTime::now(), Instant::now()) {
            // A worker too far behind to take it: its viewers miss one second, as a publisher would be told.
            log::debug!("status: a sample was not sent: {}", e.as_str());
        }
    }
}

/// Takes a sample every `EVERY` until `stop` says so: `read` gives the figures, `send` gets the encoded frame. The
/// first sample has no rates (nothing to compare with); each later one compares with the previous.
pub fn sample_every_second(
    read: impl Fn() -> Figures,
    send: impl Fn(Frame),
    stop: impl Fn() -> bool,
) {
    let mut previous: Option<(Figures, Instant)> = None;
    let mut next = Instant::now();
    while !stop() {
        let figures = read();
        let at = Instant::now();
        let json = sample(
            SystemTime::now(),
            &figures,
            previous.as_ref().map(|(f, then)| (f, at - *then)),
        );
        let mut frame = Vec::with_capacity(json.len() + 8);
        sse::encode_event(&mut frame, None, None, &json);
        send(frame.into());
        previous = Some((figures, at));
        next += EVERY;
        let now = Instant::now();
        match next.checked_duration_since(now) {
            Some(wait) => std::thread::sleep(wait),
            // Behind (a stopped process, a busy machine): start again from now rather than catch up in a burst.
            None => next = now,
        }
    }
}
