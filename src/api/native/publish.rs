//! Native publish: `POST /pub/{channel}` (the body is the data) and `POST /pub` (a batch, all or nothing).
//! Who publishes is settled first (`access::publisher`: a missing or bad credential is 401 before the body is
//! read), what they may publish to once the channels are known (a batch is authorized whole).

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::{json, Value};

use super::access;
use super::input::{channel_name, event_name, recipients, Query};
use super::{json_response, respond, ApiError, Handled};
use crate::api::{Action, Ctx, Request};
use crate::broker::BrokerError;
use crate::channels::{NewEvent, Receipt, TableError};

/// Events in one batch publish (the body limit bounds it too).
const MAX_BATCH: usize = 10_000;

/// Whom the channels a publish creates count against (`--max-channels-per-ip`): nobody when publishing takes the
/// publish key (the request got here holding it), the client's address when anyone may publish.
fn creator(ctx: &Ctx) -> Option<std::net::IpAddr> {
    ctx.peer.filter(|_| ctx.config.publish_key.is_none())
}

pub(super) fn publish_one(req: &Request, ctx: &mut Ctx, raw_channel: &[u8]) -> Handled {
    let publisher = access::publisher(req, ctx)?;
    let channel = channel_name(raw_channel)?;
    publisher.check(ctx, std::iter::once(channel))?;
    let data = std::str::from_utf8(req.body)
        .map_err(|_| ApiError::bad("invalid_utf8", "the body must be UTF-8 text"))?;
    let query = Query::parse(req.query())?;
    let event = query.get("event").map(event_name).transpose()?;
    let to = query
        .get("to")
        .map(|list| recipients(list.split(',')))
        .transpose()?;
    let new = NewEvent {
        channel: channel.into(),
        event: event.map(Into::into),
        data: data.into(),
        to,
        creator: creator(ctx),
        ..Default::default()
    };
    let Some(receipts) = publish_events(ctx, vec![new])? else {
        return Ok(Action::Await);
    };
    ctx.counters.published += 1;
    let receipt = receipts
        .first()
        .ok_or_else(|| ApiError::new(500, "internal", "publish returned no receipt"))?;
    // Written directly, not through a `serde_json::Value`: the id is digits and a channel name holds no byte JSON
    // escapes (`channel_name`), so the text is the one serde_json would write.
    let mut body = String::with_capacity(64 + channel.len());
    let _ = write!(
        body,
        r#"{{"id":"{}","channel":"{channel}","subscribers":{}}}"#,
        receipt.id, receipt.subscribers
    );
    Ok(respond(
        req,
        ctx,
        200,
        Some("application/json"),
        body.as_bytes(),
        &[],
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Batch {
    events: Vec<BatchEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BatchEvent {
    channel: String,
    #[serde(default)]
    event: Option<String>,
    data: Value,
    #[serde(default)]
    to: Option<Vec<String>>,
}

pub(super) fn publish_batch(req: &Request, ctx: &mut Ctx) -> Handled {
    let publisher = access::publisher(req, ctx)?;
    let batch: Batch = serde_json::from_slice(req.body)
        .map_err(|e| ApiError::bad("invalid_json", e.to_string()))?;
    if batch.events.is_empty() || batch.events.len() > MAX_BATCH {
        return Err(ApiError::bad(
            "invalid_batch",
            format!("a batch holds 1 to {MAX_BATCH} events"),
        ));
    }
    let mut events = Vec::with_capacity(batch.events.len());
    for (index, e) in batch.events.into_iter().enumerate() {
        let at = |err: ApiError| ApiError {
            message: format!("events[{index}]: {}", err.message),
            ..err
        };
        channel_name(e.channel.as_bytes()).map_err(at)?;
        let event = e.event.as_deref().map(event_name).transpose().map_err(at)?;
        let to =
            e.to.as_ref()
                .map(|list| recipients(list.iter().map(String::as_str)))
                .transpose()
                .map_err(at)?;
        let data: Box<str> = match e.data {
            Value::String(text) => text.into(),
            other => other.to_string().into(),
        };
        events.push(NewEvent {
            channel: e.channel.into(),
            event: event.map(Into::into),
            data,
            to,
            creator: creator(ctx),
            ..Default::default()
        });
    }
    publisher.check(ctx, events.iter().map(|e| &*e.channel))?;
    let Some(receipts) = publish_events(ctx, events)? else {
        return Ok(Action::Await);
    };
    ctx.counters.published += 1;
    let ids: Vec<String> = receipts.iter().map(|r| r.id.to_string()).collect();
    Ok(json_response(req, ctx, 200, &json!({ "ids": ids })))
}

/// Publishes through the native API's broker: at once with the local one; with Redis, the first handling queues
/// the events and parks the request (`None`), and the second gets the receipts (`ctx.answer`).
fn publish_events(ctx: &mut Ctx, events: Vec<NewEvent>) -> Result<Option<Vec<Receipt>>, ApiError> {
    let broker = ctx.broker;
    match broker.publish(events, ctx.wall, ctx.now, ctx.ask()) {
        Ok(reply) => Ok(reply.now()),
        Err(BrokerError::Table(e)) => Err(count_table_error(ctx, e)),
        Err(e) => Err(ApiError::from_broker(e)),
    }
}

pub(super) fn count_table_error(ctx: &mut Ctx, e: TableError) -> ApiError {
    if e == TableError::Overloaded {
        ctx.counters.overloaded += 1;
    }
    ApiError::from_table(e)
}
