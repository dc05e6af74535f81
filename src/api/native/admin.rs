//! Native channel admin (`GET /channels`, `GET` and `DELETE /channels/{channel}`), health and metrics.

use serde_json::{json, Value};

use super::input::{channel_name, Query};
use super::{error, json_response, respond, ApiError, Handled};
use crate::api::{channel_api, closes, Action, Ctx, Request};
use crate::broker::BrokerAnswer;
use crate::config::Api;

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

    pub(super) fn keeps(self, api: Api) -> bool {
        match self {
            Listing::Plain => api == Api::Native,
            Listing::Of(asked) => api == asked,
            Listing::All => true,
        }
    }
}

/// `GET /channels`: native channels only unless `?api=` asks for another API's or all; the compatible APIs'
/// channel names can be credentials (keker's tokens), so the operator view never shows them unasked. Both need
/// the publish key when one is set, and always with `--auth jwt` (`access::channel_admin`, checked before).
pub(super) fn list_channels(req: &Request, ctx: &mut Ctx) -> Handled {
    let listing = Listing::parse(&Query::parse(req.query())?)?;
    let channels: Vec<Value> = ctx
        .table
        .list(|name| listing.keeps(channel_api(name)))
        .into_iter()
        .map(|c| {
            let mut entry =
                json!({"channel": &*c.name, "subscribers": c.subscribers, "retained": c.retained});
            if listing != Listing::Plain {
                entry["api"] = json!(channel_api(&c.name).as_str());
            }
            entry
        })
        .collect();
    Ok(json_response(
        req,
        ctx,
        200,
        &json!({ "channels": channels }),
    ))
}

pub(super) fn channel_info(req: &Request, ctx: &mut Ctx, raw: &[u8]) -> Handled {
    let name = channel_name(raw)?;
    let info = match (ctx.redis, ctx.answer.take()) {
        (None, _) => ctx.table.info(name),
        (Some(_), Some(BrokerAnswer::Info(result))) => result.map_err(ApiError::from_broker)?,
        (Some(redis), _) => {
            redis
                .info(name, ctx.waiter)
                .map_err(ApiError::from_broker)?;
            return Ok(Action::Await);
        }
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
    let existed = match (ctx.redis, ctx.answer.take()) {
        (None, _) => ctx.broker.delete_channel(name),
        (Some(_), Some(BrokerAnswer::Deleted(result))) => result.map_err(ApiError::from_broker)?,
        (Some(redis), _) => {
            redis
                .delete(name, ctx.waiter)
                .map_err(ApiError::from_broker)?;
            return Ok(Action::Await);
        }
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
    if ctx.redis.is_some_and(|redis| !redis.reachable()) {
        // The load balancer should move traffic to a node that can reach Redis.
        let err = ApiError::new(503, "broker_unavailable", "this node cannot reach Redis");
        return error(req, ctx, err, closes(req, ctx));
    }
    json_response(req, ctx, 200, &json!({"status": "ok"}))
}

pub(super) fn metrics(req: &Request, ctx: &mut Ctx) -> Action {
    let broker = ctx.redis.map(|redis| redis.figures());
    let text = ctx
        .registry
        .render(&ctx.table.stats(), ctx.draining, broker);
    respond(
        req,
        ctx,
        200,
        Some("text/plain; version=0.0.4"),
        text.as_bytes(),
        &[],
    )
}
