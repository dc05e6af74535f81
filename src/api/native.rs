//! spout's own HTTP API: SSE subscribe, publish (single and batch), channel admin, health and metrics.
//!
//! Errors are JSON `{"error":"<code>","message":"..."}` with the matching status; every code is produced by
//! `ApiError` (or `refusal` for the connection layer's refusals), in this file only.
//!
//! Names: a channel name is 1 to 128 bytes of ASCII letters, digits and `-_.~:@` (no percent-decoding is needed
//! or done in paths); a client id follows the same rule with at most 64 bytes. Commas separate channels in
//! `/sub/a,b`. Event names are 1 to 64 bytes of UTF-8 without CR, LF or NUL.
//!
//! A subscribe request that asks for a WebSocket upgrade (`Upgrade: websocket`) gets the same subscription as
//! SSE, answered `101 Switching Protocols`; its events are text frames of one JSON object each, built by
//! `Message::ws_frame`, and its own messages (`open`, `reset`, `deleted`) by `ws_open_frame`, `reset_frame` and
//! `channel_deleted` here. A
//! message with an `id` is an event; one without is the server's (see README, "WebSocket").

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    channel_api, closes, keep_alive_field, Action, ChannelLoss, Ctx, Refusal, Request, Stream,
};
use crate::channels::{NewEvent, ResetNotice, Resume, TableError};
use crate::config::{Api, CorsOrigin};
use crate::http::request::Method;
use crate::http::response::{
    json_error_body, write_response, write_stream_head, DateCache, Response,
};
use crate::http::HttpError;
use crate::message::ws_text_frame;
use crate::message::EventId;
use crate::sse;
use crate::ws::handshake::{self, HandshakeError};

const MAX_CHANNEL_NAME: usize = 128;
const MAX_CLIENT_ID: usize = 64;
const MAX_EVENT_NAME: usize = 64;
/// Recipients of one targeted event (`?to=` or `"to"`).
const MAX_RECIPIENTS: usize = 1024;
/// Events in one batch publish (the body limit bounds it too).
const MAX_BATCH: usize = 10_000;

/// Header carrying the client id of a new stream (the opening comment carries it too, for `EventSource`).
const CLIENT_ID_HEADER: &str = "Spout-Client-Id";

/// A native API error: status, code and message.
#[derive(Debug)]
struct ApiError {
    status: u16,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, code, message)
    }

    fn from_table(e: TableError) -> ApiError {
        match e {
            TableError::TooManyChannels => ApiError::new(
                503,
                e.as_str(),
                "the channel limit (--max-channels) is reached",
            ),
            TableError::Overloaded => ApiError::new(
                503,
                e.as_str(),
                "a worker is too far behind to take more events; retry shortly",
            ),
        }
    }
}

type Handled = Result<Action, ApiError>;

/// The native routes. Paths are matched exactly; a trailing slash is another path.
enum Route<'a> {
    Subscribe(&'a [u8]),
    PublishOne(&'a [u8]),
    PublishBatch,
    Channels,
    Channel(&'a [u8]),
    Health,
    Metrics,
}

impl Route<'_> {
    fn parse(path: &[u8]) -> Option<Route<'_>> {
        let route = match path {
            b"/pub" => Route::PublishBatch,
            b"/channels" => Route::Channels,
            b"/healthz" => Route::Health,
            b"/metrics" => Route::Metrics,
            _ => {
                if let Some(rest) = path.strip_prefix(b"/sub/") {
                    Route::Subscribe(rest)
                } else if let Some(rest) = path.strip_prefix(b"/pub/") {
                    Route::PublishOne(rest)
                } else if let Some(rest) = path.strip_prefix(b"/channels/") {
                    Route::Channel(rest)
                } else {
                    return None;
                }
            }
        };
        Some(route)
    }

    /// What this route reads from the query when asked with `method`: its name for messages and the keys it
    /// knows. `None` where the query goes unchecked: `/healthz` and `/metrics`, which probes and scrapers call
    /// with whatever their tooling adds, and a method the route does not take (that answer is 405).
    fn query_rule(&self, method: Method) -> Option<QueryRule> {
        let (route, keys): (&'static str, &'static [&'static str]) = match (self, method) {
            // `lastEventId` is where EventSource polyfills put the last id on reconnect (event-source-polyfill's
            // `lastEventIdQueryParameterName`); refusing it would end their streams at the first reconnect.
            (Route::Subscribe(_), Method::Get | Method::Head) => (
                "GET /sub/{channels}",
                &["client_id", "last_event_id", "lastEventId"],
            ),
            (Route::PublishOne(_), Method::Post) => ("POST /pub/{channel}", &["event", "to"]),
            (Route::PublishBatch, Method::Post) => ("POST /pub", &[]),
            // `api` picks the channels of one API (native or a compatible one) to list.
            (Route::Channels, Method::Get | Method::Head) => ("GET /channels", &["api"]),
            (Route::Channel(_), Method::Get | Method::Head) => ("GET /channels/{channel}", &[]),
            (Route::Channel(_), Method::Delete) => ("DELETE /channels/{channel}", &[]),
            _ => return None,
        };
        Some(QueryRule { route, keys })
    }

    fn allow(&self) -> &'static str {
        match self {
            Route::Subscribe(_) | Route::Channels | Route::Health | Route::Metrics => {
                "GET, HEAD, OPTIONS"
            }
            Route::PublishOne(_) | Route::PublishBatch => "POST, OPTIONS",
            Route::Channel(_) => "GET, HEAD, DELETE, OPTIONS",
        }
    }
}

pub fn handle(req: &Request, ctx: &mut Ctx) -> Action {
    let close = closes(req, ctx);
    let Some(route) = Route::parse(req.path()) else {
        return error(
            req,
            ctx,
            ApiError::new(404, "not_found", "no such route"),
            close,
        );
    };
    if req.head.method == Method::Options {
        return preflight(req, ctx, route.allow());
    }
    if let Some(rule) = route.query_rule(req.head.method) {
        if let Err(e) = rule.check(req.query()) {
            return error(req, ctx, e, close);
        }
    }
    let result = match (&route, req.head.method) {
        (Route::Subscribe(list), Method::Get | Method::Head) => subscribe(req, ctx, list),
        (Route::PublishOne(channel), Method::Post) => {
            authorized(req, ctx).and_then(|()| publish_one(req, ctx, channel))
        }
        (Route::PublishBatch, Method::Post) => {
            authorized(req, ctx).and_then(|()| publish_batch(req, ctx))
        }
        (Route::Channels, Method::Get | Method::Head) => {
            authorized(req, ctx).and_then(|()| list_channels(req, ctx))
        }
        (Route::Channel(name), Method::Get | Method::Head) => {
            authorized(req, ctx).and_then(|()| channel_info(req, ctx, name))
        }
        (Route::Channel(name), Method::Delete) => {
            authorized(req, ctx).and_then(|()| delete_channel(req, ctx, name))
        }
        (Route::Health, Method::Get | Method::Head) => Ok(health(req, ctx)),
        (Route::Metrics, Method::Get | Method::Head) => Ok(metrics(req, ctx)),
        _ => {
            let allow = route.allow();
            let err = ApiError::new(
                405,
                "method_not_allowed",
                format!("allowed methods: {allow}"),
            );
            return respond_error(req, ctx, err, &[("Allow", allow)], close);
        }
    };
    result.unwrap_or_else(|e| error(req, ctx, e, close))
}

/// The answer to a refusal of the connection layer (always followed by a close).
pub fn refusal(refusal: Refusal, date: &DateCache) -> Vec<u8> {
    let (status, code, message): (u16, &str, Cow<'static, str>) = match refusal {
        // The limit and the option that sets it, so that a publisher knows what to send or what to change.
        Refusal::Http(e @ HttpError::BodyTooLarge { limit }) => (
            e.status(),
            e.as_str(),
            format!(
                "The request body is larger than this server accepts: at most {limit} bytes, \
                 set by --max-body (SPOUT_MAX_BODY)."
            )
            .into(),
        ),
        Refusal::Http(e) => (e.status(), e.as_str(), e.message().into()),
        Refusal::Timeout => (
            408,
            "request_timeout",
            "the request did not arrive within --request-timeout".into(),
        ),
        Refusal::Busy => (
            503,
            "busy",
            "the server is at its connection limit; retry shortly".into(),
        ),
    };
    let mut body = Vec::with_capacity(96);
    json_error_body(&mut body, code, &message);
    let mut out = Vec::with_capacity(body.len() + 160);
    let retry: &[(&str, &str)] = if status == 503 {
        &[("Retry-After", "1")]
    } else {
        &[]
    };
    let resp = Response {
        status,
        content_type: Some("application/json"),
        headers: retry,
        body: &body,
        close: true,
        head_only: false,
    };
    write_response(&mut out, date, &resp);
    out
}

// ---- subscribe -------------------------------------------------------------------------------------------------

fn subscribe(req: &Request, ctx: &mut Ctx, list: &[u8]) -> Handled {
    if ctx.draining {
        return Err(ApiError::new(
            503,
            "draining",
            "the server is shutting down; reconnect to another node",
        ));
    }
    let accept = if handshake::is_websocket_upgrade(req.header("upgrade")) {
        match handshake::validate(&req.websocket_upgrade()) {
            Ok(accept) => Some(accept),
            Err(e) => return Ok(bad_upgrade(req, ctx, e)),
        }
    } else {
        None
    };
    let mut names: Vec<&str> = Vec::new();
    for raw in list.split(|b| *b == b',') {
        let name = channel_name(raw)?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.len() > ctx.config.max_subscriptions {
        let max = ctx.config.max_subscriptions;
        return Err(ApiError::bad(
            "too_many_subscriptions",
            format!("at most {max} channels per stream (--max-subscriptions)"),
        ));
    }
    let query = Query::parse(req.query())?;
    let client_id: Box<str> = match query.get("client_id") {
        Some(id) => client_id(id.as_bytes())?.into(),
        None => ctx.ids.next_client_id(),
    };
    let resume = match req
        .header("last-event-id")
        .or(query.get("last_event_id").map(str::as_bytes))
        .or(query.get("lastEventId").map(str::as_bytes))
    {
        None | Some(b"") => Resume::Fresh,
        Some(raw) => std::str::from_utf8(raw)
            .ok()
            .and_then(EventId::parse)
            .map_or(Resume::Unparseable, Resume::After),
    };

    if let Some(accept) = accept {
        // Browsers apply no CORS to WebSocket: with an origin list, refuse a page from elsewhere here, as its
        // browser would refuse it the SSE stream (cross-site WebSocket hijacking). No `Origin`: not a browser.
        let foreign = matches!(ctx.config.cors_origin, CorsOrigin::List(_))
            && req.header("origin").is_some()
            && cors_origin(req, ctx).is_none();
        if foreign {
            return Err(ApiError::new(
                403,
                "origin_not_allowed",
                "this Origin is not in --cors-origin",
            ));
        }
        let subscription = ctx
            .table
            .subscribe(ctx.worker, &names, &client_id, resume)
            .map_err(ApiError::from_table)?;
        let mut opening = Vec::with_capacity(256);
        handshake::write_switching_protocols(
            &mut opening,
            &accept,
            &[(CLIENT_ID_HEADER, &client_id)],
        );
        opening.extend_from_slice(&ws_open_frame(&client_id));
        return Ok(Action::Stream(Box::new(Stream {
            api: Api::Native,
            opening,
            subscription,
            client_id,
            websocket: true,
        })));
    }

    let mut headers = vec![
        ("Content-Type", "text/event-stream"),
        ("Cache-Control", "no-cache"),
        ("X-Accel-Buffering", "no"),
    ];
    headers.push((CLIENT_ID_HEADER, &client_id));
    let origin = cors_origin(req, ctx);
    push_cors(&mut headers, origin.as_deref(), ctx);
    if origin.is_some() {
        headers.push(("Access-Control-Expose-Headers", CLIENT_ID_HEADER));
    }
    let mut opening = Vec::with_capacity(320);
    if req.is_head() {
        // The head a GET gets, which has no Content-Length (the stream is unbounded): a HEAD response may carry
        // only the length the GET body would have (RFC 9110 §8.6).
        let close = closes(req, ctx);
        if close {
            headers.push(("Connection", "close"));
        }
        headers.extend(keep_alive_field(req, close));
        write_stream_head(&mut opening, ctx.date, &headers);
        return Ok(Action::Respond {
            bytes: opening,
            close,
        });
    }
    let subscription = ctx
        .table
        .subscribe(ctx.worker, &names, &client_id, resume)
        .map_err(ApiError::from_table)?;
    write_stream_head(&mut opening, ctx.date, &headers);
    sse::encode_comment(&mut opening, &format!("spout client_id={client_id}"));
    sse::encode_retry(
        &mut opening,
        u64::try_from(ctx.config.retry.as_millis()).unwrap_or(u64::MAX),
    );
    Ok(Action::Stream(Box::new(Stream {
        api: Api::Native,
        opening,
        subscription,
        client_id,
        websocket: false,
    })))
}

/// A refused WebSocket upgrade: 400 naming the one version spout speaks (RFC 6455 §4.2.2, §4.4). The connection
/// stays an HTTP connection, kept alive as for any other 400 that the request's framing allows.
fn bad_upgrade(req: &Request, ctx: &Ctx, e: HandshakeError) -> Action {
    let err = ApiError::bad("bad_websocket_upgrade", e.as_str());
    respond_error(
        req,
        ctx,
        err,
        &[("Sec-WebSocket-Version", handshake::VERSION)],
        closes(req, ctx),
    )
}

// ---- publish ---------------------------------------------------------------------------------------------------

fn publish_one(req: &Request, ctx: &mut Ctx, raw_channel: &[u8]) -> Handled {
    let channel = channel_name(raw_channel)?;
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
        ..Default::default()
    };
    let receipts = ctx
        .broker
        .publish(vec![new], ctx.wall, ctx.now)
        .map_err(|e| count_table_error(ctx, e))?;
    ctx.counters.published += 1;
    let receipt = receipts
        .first()
        .ok_or_else(|| ApiError::new(500, "internal", "publish returned no receipt"))?;
    let body = json!({"id": receipt.id.to_string(), "channel": channel, "subscribers": receipt.subscribers});
    Ok(json_response(req, ctx, 200, &body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    events: Vec<BatchEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchEvent {
    channel: String,
    #[serde(default)]
    event: Option<String>,
    data: Value,
    #[serde(default)]
    to: Option<Vec<String>>,
}

fn publish_batch(req: &Request, ctx: &mut Ctx) -> Handled {
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
            ..Default::default()
        });
    }
    let receipts = ctx
        .broker
        .publish(events, ctx.wall, ctx.now)
        .map_err(|e| count_table_error(ctx, e))?;
    ctx.counters.published += 1;
    let ids: Vec<String> = receipts.iter().map(|r| r.id.to_string()).collect();
    Ok(json_response(req, ctx, 200, &json!({ "ids": ids })))
}

fn count_table_error(ctx: &mut Ctx, e: TableError) -> ApiError {
    if e == TableError::Overloaded {
        ctx.counters.overloaded += 1;
    }
    ApiError::from_table(e)
}

// ---- channel admin, health, metrics ----------------------------------------------------------------------------

/// Which channels `GET /channels` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listing {
    /// No `api` asked for: native channels, entries without an `api` field.
    Plain,
    /// `?api=NAME`: that API's channels.
    Of(Api),
    /// `?api=all`.
    All,
}

impl Listing {
    fn parse(query: &Query) -> Result<Listing, ApiError> {
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

    fn keeps(self, api: Api) -> bool {
        match self {
            Listing::Plain => api == Api::Native,
            Listing::Of(asked) => api == asked,
            Listing::All => true,
        }
    }
}

/// `GET /channels`: native channels only unless `?api=` asks for another API's or all; the compatible APIs'
/// channel names can be credentials (keker's tokens), so the operator view never shows them unasked. Both need
/// the publish key when one is set (`authorized`, checked before).
fn list_channels(req: &Request, ctx: &mut Ctx) -> Handled {
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

fn channel_info(req: &Request, ctx: &mut Ctx, raw: &[u8]) -> Handled {
    let name = channel_name(raw)?;
    let info = ctx
        .table
        .info(name)
        .ok_or_else(|| ApiError::new(404, "channel_not_found", format!("no channel {name}")))?;
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

fn delete_channel(req: &Request, ctx: &mut Ctx, raw: &[u8]) -> Handled {
    let name = channel_name(raw)?;
    if !ctx.broker.delete_channel(name) {
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

fn health(req: &Request, ctx: &mut Ctx) -> Action {
    if ctx.draining {
        let err = ApiError::new(503, "draining", "the server is shutting down");
        return error(req, ctx, err, closes(req, ctx));
    }
    json_response(req, ctx, 200, &json!({"status": "ok"}))
}

fn metrics(req: &Request, ctx: &mut Ctx) -> Action {
    let text = ctx.registry.render(&ctx.table.stats(), ctx.draining);
    respond(
        req,
        ctx,
        200,
        Some("text/plain; version=0.0.4"),
        text.as_bytes(),
        &[],
    )
}

// ---- auth and CORS ---------------------------------------------------------------------------------------------

/// With `--publish-key`, publishing and channel admin need `Authorization: Bearer KEY` (compared in constant time).
fn authorized(req: &Request, ctx: &Ctx) -> Result<(), ApiError> {
    let Some(key) = &ctx.config.publish_key else {
        return Ok(());
    };
    let given = req
        .header("authorization")
        .and_then(bearer_token)
        .unwrap_or(b"");
    if constant_time_eq(given, key.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            401,
            "unauthorized",
            "this needs Authorization: Bearer <publish key>",
        ))
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive (RFC 9110 §11.1).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(b"Bearer ".len())?;
    scheme.eq_ignore_ascii_case(b"Bearer ").then_some(token)
}

/// Compares without an early exit, so the time taken does not reveal how much of the key matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, byte) in b.iter().enumerate() {
        diff |= byte ^ a.get(i).copied().unwrap_or(!byte);
    }
    diff == 0
}

/// The `Access-Control-Allow-Origin` value for this request, if any.
fn cors_origin(req: &Request, ctx: &Ctx) -> Option<String> {
    match &ctx.config.cors_origin {
        CorsOrigin::Any => Some("*".to_string()),
        CorsOrigin::Disabled => None,
        CorsOrigin::List(allowed) => {
            let origin = std::str::from_utf8(req.header("origin")?).ok()?;
            allowed
                .iter()
                .any(|a| a == origin)
                .then(|| origin.to_string())
        }
    }
}

fn push_cors<'a>(headers: &mut Vec<(&'static str, &'a str)>, origin: Option<&'a str>, ctx: &Ctx) {
    if let Some(origin) = origin {
        headers.push(("Access-Control-Allow-Origin", origin));
    }
    if matches!(ctx.config.cors_origin, CorsOrigin::List(_)) {
        headers.push(("Vary", "Origin"));
    }
}

fn preflight(req: &Request, ctx: &mut Ctx, allow: &'static str) -> Action {
    let mut headers = vec![("Allow", allow)];
    if cors_origin(req, ctx).is_some() {
        headers.push(("Access-Control-Allow-Methods", allow));
        headers.push((
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type, Last-Event-ID, Cache-Control",
        ));
        headers.push(("Access-Control-Max-Age", "86400"));
    }
    // `respond` adds the origin fields and the connection fields.
    respond(req, ctx, 204, None, b"", &headers)
}

// ---- responses -------------------------------------------------------------------------------------------------

fn respond(
    req: &Request,
    ctx: &Ctx,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    extra: &[(&'static str, &str)],
) -> Action {
    let origin = cors_origin(req, ctx);
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    push_cors(&mut headers, origin.as_deref(), ctx);
    super::respond(req, ctx, status, content_type, body, &headers)
}

fn json_response(req: &Request, ctx: &Ctx, status: u16, body: &Value) -> Action {
    respond(
        req,
        ctx,
        status,
        Some("application/json"),
        body.to_string().as_bytes(),
        &[],
    )
}

fn error(req: &Request, ctx: &Ctx, e: ApiError, close: bool) -> Action {
    let retry: &[(&'static str, &str)] = if e.status == 503 {
        &[("Retry-After", "1")]
    } else {
        &[]
    };
    let auth: &[(&'static str, &str)] = if e.status == 401 {
        &[("WWW-Authenticate", "Bearer")]
    } else {
        &[]
    };
    respond_error(
        req,
        ctx,
        e,
        if retry.is_empty() { auth } else { retry },
        close,
    )
}

fn respond_error(
    req: &Request,
    ctx: &Ctx,
    e: ApiError,
    extra: &[(&'static str, &str)],
    close: bool,
) -> Action {
    log::debug!("native API {} {}: {}", e.status, e.code, e.message);
    let mut body = Vec::with_capacity(64 + e.message.len());
    json_error_body(&mut body, e.code, &e.message);
    match respond(req, ctx, e.status, Some("application/json"), &body, extra) {
        Action::Respond { bytes, close: keep } => Action::Respond {
            bytes,
            close: close || keep,
        },
        stream => stream,
    }
}

// ---- validation ------------------------------------------------------------------------------------------------

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':' | b'@')
}

fn channel_name(raw: &[u8]) -> Result<&str, ApiError> {
    if raw.is_empty() || raw.len() > MAX_CHANNEL_NAME || !raw.iter().all(|b| is_name_byte(*b)) {
        return Err(ApiError::bad(
            "invalid_channel",
            format!("a channel name is 1 to {MAX_CHANNEL_NAME} ASCII letters, digits or -_.~:@"),
        ));
    }
    std::str::from_utf8(raw)
        .map_err(|_| ApiError::bad("invalid_channel", "channel names are ASCII"))
}

fn client_id(raw: &[u8]) -> Result<&str, ApiError> {
    if raw.is_empty() || raw.len() > MAX_CLIENT_ID || !raw.iter().all(|b| is_name_byte(*b)) {
        return Err(ApiError::bad(
            "invalid_client_id",
            format!("a client id is 1 to {MAX_CLIENT_ID} ASCII letters, digits or -_.~:@"),
        ));
    }
    std::str::from_utf8(raw).map_err(|_| ApiError::bad("invalid_client_id", "client ids are ASCII"))
}

fn event_name(name: &str) -> Result<&str, ApiError> {
    if name.is_empty() || name.len() > MAX_EVENT_NAME || !sse::is_valid_field(name) {
        return Err(ApiError::bad(
            "invalid_event",
            format!("an event name is 1 to {MAX_EVENT_NAME} bytes without CR, LF or NUL"),
        ));
    }
    Ok(name)
}

fn recipients<'a>(list: impl Iterator<Item = &'a str>) -> Result<Box<[Box<str>]>, ApiError> {
    let mut out: Vec<Box<str>> = Vec::new();
    for id in list {
        let id = client_id(id.as_bytes())?;
        if !out.iter().any(|o| &**o == id) {
            out.push(id.into());
        }
        if out.len() > MAX_RECIPIENTS {
            return Err(ApiError::bad(
                "invalid_recipients",
                format!("at most {MAX_RECIPIENTS} recipients"),
            ));
        }
    }
    if out.is_empty() {
        return Err(ApiError::bad(
            "invalid_recipients",
            "`to` names no client id",
        ));
    }
    Ok(out.into())
}

/// The query keys one route reads; a key it does not read, or one given twice, is refused rather than ignored,
/// so that a typo (`?evnt=greet`, `?clientid=x`) does not pass as a request without that key.
struct QueryRule {
    /// The route as a client writes it, e.g. `POST /pub/{channel}`.
    route: &'static str,
    keys: &'static [&'static str],
}

impl QueryRule {
    fn check(&self, raw: &[u8]) -> Result<(), ApiError> {
        let query = Query::parse(raw)?;
        for (i, (key, _)) in query.pairs.iter().enumerate() {
            if !self.keys.contains(&key.as_str()) {
                return Err(ApiError::bad(
                    "invalid_query",
                    format!("unknown query key '{key}': {}", self.known()),
                ));
            }
            if query
                .pairs
                .iter()
                .take(i)
                .any(|(earlier, _)| earlier == key)
            {
                return Err(ApiError::bad(
                    "invalid_query",
                    format!(
                        "query key '{key}' is given more than once; give it once ({})",
                        self.known()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn known(&self) -> String {
        if self.keys.is_empty() {
            format!("{} takes no query keys", self.route)
        } else {
            format!("{} takes {}", self.route, self.keys.join(", "))
        }
    }
}

/// A decoded query string (`application/x-www-form-urlencoded`). `handle` has already refused unknown and
/// repeated keys (`QueryRule`).
struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    fn parse(raw: &[u8]) -> Result<Query, ApiError> {
        let mut pairs = Vec::new();
        for part in raw.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (key, value) = match part.iter().position(|b| *b == b'=') {
                Some(i) => (&part[..i], &part[i + 1..]),
                None => (part, &b""[..]),
            };
            let decoded = percent_decode(key).zip(percent_decode(value));
            let (key, value) = decoded.ok_or_else(|| {
                ApiError::bad(
                    "invalid_query",
                    "the query string is not valid percent-encoded UTF-8",
                )
            })?;
            pairs.push((key, value));
        }
        Ok(Query { pairs })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn percent_decode(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = (*bytes.next()? as char).to_digit(16)?;
                let lo = (*bytes.next()? as char).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// The first message of a WebSocket stream: `{"event":"open","client_id":".."}` (a browser cannot read the
/// `Spout-Client-Id` header of the 101 answer).
pub fn ws_open_frame(client_id: &str) -> Vec<u8> {
    ws_text_frame(
        json!({"event": "open", "client_id": client_id})
            .to_string()
            .as_bytes(),
    )
}

/// The `reset` event a resuming stream gets when events after its cursor may be lost: on SSE an `event: reset`
/// whose data says why and which channels (`{"reason":..,"channels":[..]}`), on WebSocket the same fields in
/// `{"event":"reset",..}`.
pub fn reset_frame(websocket: bool, notice: &ResetNotice) -> Vec<u8> {
    let reason = notice.reason.as_str();
    let channels: Vec<&str> = notice.channels.iter().map(|c| &**c).collect();
    if websocket {
        let json = json!({"event": "reset", "reason": reason, "channels": channels});
        return ws_text_frame(json.to_string().as_bytes());
    }
    let data = json!({"reason": reason, "channels": channels}).to_string();
    let mut frame = Vec::with_capacity(32 + data.len());
    sse::encode_event(&mut frame, None, Some("reset"), &data);
    frame
}

/// A native stream's last word on a deleted channel: `event: deleted` with `{"channel":".."}` on SSE,
/// `{"event":"deleted","channel":".."}` on WebSocket; the stream ends after it when no channel is left.
pub fn channel_deleted(channel: &str) -> ChannelLoss {
    let mut sse_frame = Vec::with_capacity(64 + channel.len());
    let data = json!({ "channel": channel }).to_string();
    sse::encode_event(&mut sse_frame, None, Some("deleted"), &data);
    let ws = json!({"event": "deleted", "channel": channel}).to_string();
    ChannelLoss::Final {
        sse: sse_frame.into(),
        ws: ws_text_frame(ws.as_bytes()).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_rule() {
        for good in ["a", "news", "A-z_0.9~:@x", &"c".repeat(128)] {
            assert!(channel_name(good.as_bytes()).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a b",
            "a/b",
            "a,b",
            "caf\u{e9}",
            "%41",
            &"c".repeat(129),
        ] {
            assert!(channel_name(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(client_id(&[b'x'; 65]).is_err());
    }

    #[test]
    fn queries_decode_and_reject_bad_escapes() {
        let q = Query::parse(b"event=a%20b&to=x,y&event=second&flag&plus=a+b").expect("valid");
        assert_eq!(q.get("event"), Some("a b"));
        assert_eq!(q.get("to"), Some("x,y"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("plus"), Some("a b"));
        for bad in [&b"a=%"[..], b"a=%4", b"a=%zz", b"a=%ff"] {
            assert!(Query::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn query_rules_refuse_unknown_and_repeated_keys() {
        let rule = QueryRule {
            route: "POST /pub/{channel}",
            keys: &["event", "to"],
        };
        for good in [
            &b""[..],
            b"event=a",
            b"event=a&to=x",
            b"to=x&event=",
            b"&&event=a&",
        ] {
            assert!(rule.check(good).is_ok(), "{good:?}");
        }
        let cases: [(&[u8], &str); 5] = [
            (
                b"evnt=a",
                "unknown query key 'evnt': POST /pub/{channel} takes event, to",
            ),
            (b"event=a&Event=b", "unknown query key 'Event'"),
            (
                b"event=a&event=b",
                "query key 'event' is given more than once",
            ),
            (
                b"ev%65nt=a&event=b",
                "query key 'event' is given more than once",
            ),
            (b"=a", "unknown query key ''"),
        ];
        for (raw, want) in cases {
            let err = rule.check(raw).expect_err(want);
            assert_eq!(err.code, "invalid_query");
            assert!(err.message.starts_with(want), "{}", err.message);
        }
        let none = QueryRule {
            route: "POST /pub",
            keys: &[],
        };
        let err = none.check(b"x=1").expect_err("no keys");
        assert_eq!(
            err.message,
            "unknown query key 'x': POST /pub takes no query keys"
        );
    }

    #[test]
    fn constant_time_eq_matches_only_equal_keys() {
        assert!(constant_time_eq(b"secret", b"secret"));
        for other in [
            &b""[..],
            b"secre",
            b"secreT",
            b"secret!",
            b"\xff\xff\xff\xff\xff\xff",
        ] {
            assert!(!constant_time_eq(other, b"secret"), "{other:?}");
        }
    }

    #[test]
    fn recipients_are_deduplicated_and_bounded() {
        let ids = recipients(["a", "b", "a"].into_iter()).expect("valid");
        assert_eq!(ids.len(), 2);
        assert!(recipients(std::iter::empty()).is_err());
        assert!(recipients(["a b"].into_iter()).is_err());
    }
}
