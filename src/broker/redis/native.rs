//! The native API's operations on the Redis broker (`Broker for RedisBroker`): each is queued for the broker
//! thread and answered later, except a subscribe to channels this node already holds from the stream's cursor
//! on, which registers at once.
//!
//! A request handled again finds the answer it waited for in `Ask::answer`; an answer of another kind (which no
//! path produces) is dropped and the work asked for again.

use std::time::{Instant, SystemTime};

use super::RedisBroker;
use crate::broker::{Ask, Broker, BrokerAnswer, BrokerError, Reply, Subscribe};
use crate::channels::{
    ChannelInfo, ChannelPage, FedSubscribe, NewEvent, Receipt, Resume, Subscription,
};
use crate::message::EventId;
use crate::metrics::BrokerFigures;

/// The most channels one stream carries with the Redis broker: its `Last-Event-ID` holds a position per channel
/// (at most 21 bytes each), and stays well inside a request head.
const MAX_CHANNELS_PER_STREAM: usize = 32;

impl Broker for RedisBroker {
    fn publish(
        &self,
        events: Vec<NewEvent>,
        _now: SystemTime,
        _at: Instant,
        ask: Ask<'_>,
    ) -> Result<Reply<Vec<Receipt>>, BrokerError> {
        if let Some(BrokerAnswer::Published(result)) = ask.answer.take() {
            return result.map(Reply::Now);
        }
        self.ask_publish(events, ask.waiter)?;
        Ok(Reply::Later)
    }

    /// Each channel of a stream is sequenced on its own shard, so the stream's cursor is a position per channel
    /// (`EventId::parse_per_channel`). The stream registers once this node holds every channel from its position
    /// on (`ChannelTable::subscribe_fed`); until then the broker warms the ones it lacks.
    fn subscribe(
        &self,
        wanted: Subscribe<'_>,
        ask: Ask<'_>,
    ) -> Result<Reply<Subscription>, BrokerError> {
        let just_read = match ask.answer.take() {
            Some(BrokerAnswer::Warmed(result)) => {
                result?;
                true
            }
            _ => false,
        };
        let resumes = per_channel_resume(wanted.cursor, wanted.names.len());
        let channels: Vec<(&str, Resume)> = wanted.names.iter().copied().zip(resumes).collect();
        let fed = self
            .table
            .subscribe_fed(
                wanted.worker,
                &channels,
                wanted.client_id,
                just_read,
                wanted.creator,
            )
            .map_err(BrokerError::Table)?;
        match fed {
            FedSubscribe::Subscribed(subscription) => Ok(Reply::Now(subscription)),
            FedSubscribe::Warm(cold) => {
                self.ask_warm(cold, wanted.creator, ask.waiter)?;
                Ok(Reply::Later)
            }
        }
    }

    fn delete_channel(&self, name: &str, ask: Ask<'_>) -> Result<Reply<bool>, BrokerError> {
        if let Some(BrokerAnswer::Deleted(result)) = ask.answer.take() {
            return result.map(Reply::Now);
        }
        self.ask_delete(name, ask.waiter)?;
        Ok(Reply::Later)
    }

    fn channel_info(
        &self,
        name: &str,
        ask: Ask<'_>,
    ) -> Result<Reply<Option<ChannelInfo>>, BrokerError> {
        if let Some(BrokerAnswer::Info(result)) = ask.answer.take() {
            return result.map(Reply::Now);
        }
        self.ask_info(name, ask.waiter)?;
        Ok(Reply::Later)
    }

    /// The cluster's registry holds native channels only, so `native` has nothing to leave out.
    fn list_channels(
        &self,
        after: Option<&str>,
        limit: usize,
        _native: &dyn Fn(&str) -> bool,
        ask: Ask<'_>,
    ) -> Result<Reply<ChannelPage>, BrokerError> {
        if let Some(BrokerAnswer::Listed(result)) = ask.answer.take() {
            return result.map(Reply::Now);
        }
        self.ask_list(after, limit, ask.waiter)?;
        Ok(Reply::Later)
    }

    fn max_channels_per_stream(&self) -> Option<usize> {
        Some(MAX_CHANNELS_PER_STREAM)
    }

    fn figures(&self) -> Option<BrokerFigures> {
        Some(self.current_figures())
    }

    fn shared(&self) -> Option<&dyn crate::broker::shared::Shared> {
        Some(self)
    }

    fn settle(&self, within: std::time::Duration) {
        let deadline = Instant::now() + within;
        while self.detached_pending() > 0 && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Where each of a stream's `n` channels resumes, from the `Last-Event-ID` it sent: a position per channel (what
/// such a stream's ids are), or, for a stream of several channels, one id for all of them (a cursor a client made
/// itself); anything else does not parse.
fn per_channel_resume(cursor: Option<&str>, n: usize) -> Vec<Resume> {
    let Some(text) = cursor else {
        return vec![Resume::Fresh; n];
    };
    let positions = match n {
        1 => EventId::parse(text).map(|id| vec![id]),
        _ => EventId::parse_per_channel(text, n)
            .or_else(|| EventId::parse(text).map(|id| vec![id; n])),
    };
    match positions {
        Some(positions) => positions.into_iter().map(Resume::After).collect(),
        None => vec![Resume::Unparseable; n],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_a_position_per_channel_or_one_id_for_all() {
        assert_eq!(per_channel_resume(None, 2), [Resume::Fresh, Resume::Fresh]);
        let (a, b) = (
            EventId::parse("5").expect("id"),
            EventId::parse("9").expect("id"),
        );
        assert_eq!(
            per_channel_resume(Some("5,9"), 2),
            [Resume::After(a), Resume::After(b)]
        );
        assert_eq!(
            per_channel_resume(Some("5,0"), 2),
            [Resume::After(a), Resume::After(EventId::ZERO)]
        );
        assert_eq!(
            per_channel_resume(Some("9"), 2),
            [Resume::After(b), Resume::After(b)]
        );
        assert_eq!(per_channel_resume(Some("9"), 1), [Resume::After(b)]);
        for bad in ["0", "5,9", "x"] {
            assert_eq!(
                per_channel_resume(Some(bad), 1),
                [Resume::Unparseable],
                "{bad}"
            );
        }
        assert_eq!(
            per_channel_resume(Some("5,9,1"), 2),
            [Resume::Unparseable, Resume::Unparseable]
        );
    }
}
