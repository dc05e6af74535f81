//! Native channel admin (`GET /channels`, `GET` and `DELETE /channels/{channel}`), health and metrics.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::input::{channel_name, Query};
use super::{error, json_response, respond, ApiError, Handled};
use crate::api::{channel_api, closes, Action, Ctx, Request};
use crate::broker::local::LIST_SCAN;

use crate::channels::{ChannelPage, ChannelSummary};
use crate::config::Api;
use crate::metrics::Figures;

/// Which channels `GET /channels` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Listing {
    /// No `api` asked for: native channels, entries without an `api` field.
    Plain,
    /// `?api=NAME`: that API's channels.
    Of(Api),
    /// `?api=all`.
    All,
}

impl Listing {
    pub(super) fn parse(query: &Query) -> Result<Listing, ApiError> {
        let Some(name) = query.get("api") else {
            return Ok(Listing::Plain);
        };
        if name == "all" {
            return Ok(Listing::All);
        }
        Api::ALL
            .into_iter()
            .find(|api| api.as_str() == name)
            .map(Listing::Of)
            .ok_or_else(|| {
                let known: Vec<&str> = Api::ALL.iter().map(Api::as_str).collect();
                ApiError::bad(
                    "invalid_query",
                    format!("api is one of {}, all", known.join(", ")),
                )
            })
    }
}

/// Channels per page of `GET /channels` when `?limit=` is not given.
pub(super) const DEFAULT_LIST_LIMIT: usize = 1000;
/// The largest `?limit=`: a page is built whole on a worker's loop, so its size bounds how long that worker's
/// deliveries wait for it (release build: a 1,000-channel page of 53 KB took 0.45 ms to answer, a 10,000-channel
/// one 5 ms; at 5,000, about 2.5 ms).
pub(super) const MAX_LIST_LIMIT: usize = 5_000;

/// `GET /channels`: one page of the channels, in name order, native channels only unless `?api=` asks for another
/// API's or all; the compatible APIs' channel names can be credentials (keker's tokens), so the operator view never
/// shows them unasked. Both need the publish key when one is set, and always with `--auth jwt`
/// (`access::channel_admin`, checked before). `next`, present while channels remain, is the opaque cursor of the
/// next page (`?cursor=`); each page takes the table lock for a bounded walk, so listing a large table never stalls
/// a worker's deliveries for long.
pub(super) fn list_channels(req: &Request, ctx: &mut Ctx) -> Handled {
    let query = Query::parse(req.query())?;
    let listing = Listing::parse(&query)?;
    let limit = match query.get("limit") {
        None => DEFAULT_LIST_LIMIT,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIST_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad(
                    "invalid_query",
                    format!("limit is a number of channels from 1 to {MAX_LIST_LIMIT}"),
                )
            })?,
    };
    let after = query.get("cursor").map(decode_cursor).transpose()?;
    // The status page's channel is spout's own, in no API's namespace.
    let native = |name: &str| name != crate::status::CHANNEL && channel_api(name) == Api::Native;
    let others = |name: &str| name != crate::status::CHANNEL && channel_api(name) != Api::Native;
    let page = match listing {
        // The compatible APIs' channels are this node's.
        Listing::Of(api) if api != Api::Native => {
            ctx.table
                .list_page(after.as_deref(), limit, LIST_SCAN, |name| {
                    channel_api(name) == api
                })
        }
        // Native channels are the broker's: this node's, or the cluster's with Redis.
        _ => {
            let broker = ctx.broker;
            let asked = broker.list_channels(after.as_deref(), limit, &native, ctx.ask());
            let Some(page) = asked.map_err(ApiError::from_broker)?.now() else {
                return Ok(Action::Await);
            };
            if listing == Listing::All {
                let local = ctx
                    .table
                    .list_page(after.as_deref(), limit, LIST_SCAN, others);
                merge_pages(page, local, limit)
            } else {
                page
            }
        }
    };
    // Serialized straight from borrowed fields: a page is built on the event loop, and a `serde_json::Value` per
    // entry (an ordered map each) cost several times as much.
    let body = ListPage {
        channels: page
            .channels
            .iter()
            .map(|c| ListEntry {
                channel: &c.name,
                subscribers: c.subscribers,
                retained: c.retained,
                api: (listing != Listing::Plain).then(|| channel_api(&c.name).as_str()),
            })
            .collect(),
        next: page.next_after.map(|last| encode_cursor(&last)),
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Ok(respond(
        req,
        ctx,
        200,
        Some("application/json"),
        &bytes,
        &[],
    ))
}

/// One page of two listings of different channels (each in name order, each perhaps with more after it): at most
/// `limit` channels, none past where either listing stopped, so that the next page, from the merged page's
/// `next_after`, misses and repeats nothing of either.
fn merge_pages(a: ChannelPage, b: ChannelPage, limit: usize) -> ChannelPage {
    let mut channels: Vec<ChannelSummary> = a.channels.into_iter().chain(b.channels).collect();
    channels.sort_by(|x, y| x.name.cmp(&y.name));
    let mut stop = [a.next_after, b.next_after].into_iter().flatten().min();
    if channels.len() > limit {
        let last = Arc::clone(&channels[limit - 1].name);
        stop = Some(stop.map_or(Arc::clone(&last), |stop| stop.min(last)));
    }
    if let Some(stop) = &stop {
        channels.retain(|c| c.name <= *stop);
    }
    ChannelPage {
        channels,
        next_after: stop,
    }
}

/// One page of `GET /channels`, as sent.
#[derive(Serialize)]
struct ListPage<'a> {
    channels: Vec<ListEntry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

#[derive(Serialize)]
struct ListEntry<'a> {
    channel: &'a str,
    subscribers: usize,
    retained: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    api: Option<&'static str>,
}

/// A page's cursor: the last name it looked at, hex-encoded, so that it is opaque to clients and safe in a URL
/// whatever bytes the name holds.
fn encode_cursor(name: &str) -> String {
    crate::http::percent_encode(name.as_bytes(), |_| false).replace('%', "")
}

fn decode_cursor(raw: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad(
            "invalid_query",
            "cursor is not one this server gave: pass the next of the previous page",
        )
    };
    let digits = raw.as_bytes();
    if !digits.len().is_multiple_of(2) || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    let bytes = digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    String::from_utf8(bytes).map_err(|_| bad())
}

pub(super) fn channel_info(req: &Request, ctx: &mut Ctx, raw: &[u8]) -> Handled {
    let name = channel_name(raw)?;
    let broker = ctx.broker;
    let asked = broker.channel_info(name, ctx.ask());
    let Some(info) = asked.map_err(ApiError::from_broker)?.now() else {
        return Ok(Action::Await);
    };
    let info =
        info.ok_or_else(|| ApiError::new(404, "channel_not_found", format!("no channel {name}")))?;
    let body = json!({
        "channel": &*info.name,
        "subscribers": info.subscribers,
        "client_ids": info.client_ids.iter().map(|c| &**c).collect::<Vec<&str>>(),
        "last_id": info.last_id.map(|id| id.to_string()),
        "retained": info.retained,
        "retained_bytes": info.retained_bytes,
    });
    Ok(json_response(req, ctx, 200, &body))
}

pub(super) fn delete_channel(req: &Request, ctx: &mut Ctx, raw: &[u8]) -> Handled {
    let name = channel_name(raw)?;
    let broker = ctx.broker;
    let asked = broker.delete_channel(name, ctx.ask());
    let Some(existed) = asked.map_err(ApiError::from_broker)?.now() else {
        return Ok(Action::Await);
    };
    if !existed {
        return Err(ApiError::new(
            404,
            "channel_not_found",
            format!("no channel {name}"),
        ));
    }
    Ok(json_response(
        req,
        ctx,
        200,
        &json!({"channel": name, "deleted": true}),
    ))
}

pub(super) fn health(req: &Request, ctx: &mut Ctx) -> Action {
    if ctx.draining {
        let err = ApiError::new(503, "draining", "the server is shutting down");
        return error(req, ctx, err, closes(req, ctx));
    }
    if ctx.broker.figures().is_some_and(|broker| !broker.reachable) {
        // The load balancer should move traffic to a node that can reach Redis.
        let err = ApiError::new(503, "broker_unavailable", "this node cannot reach Redis");
        return error(req, ctx, err, closes(req, ctx));
    }
    json_response(req, ctx, 200, &json!({"status": "ok"}))
}

pub(super) fn metrics(req: &Request, ctx: &mut Ctx) -> Action {
    let text = figures(ctx).render();
    respond(
        req,
        ctx,
        200,
        Some("text/plain; version=0.0.4"),
        text.as_bytes(),
        &[],
    )
}

/// What `/metrics` and the status page show, read now.
pub(super) fn figures(ctx: &Ctx) -> Figures {
    Figures::read(ctx.registry, ctx.table, ctx.draining, ctx.broker.figures())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_any_name_and_refuse_what_they_are_not() {
        for name in ["news", "keker/t0k3n", "a b", "é☃", ""] {
            let cursor = encode_cursor(name);
            assert!(cursor.bytes().all(|b| b.is_ascii_hexdigit()), "{cursor}");
            assert_eq!(decode_cursor(&cursor).ok().as_deref(), Some(name));
        }
        for bad in ["6", "zz", "+1", "ff", "6e6577737"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
