//! spout's own HTTP API: SSE subscribe, publish (single and batch), channel admin, health and metrics.
//!
//! Errors are JSON `{"error":"<code>","message":"..."}` with the matching status; every code is produced by
//! `ApiError` (or `refusal` for the connection layer's refusals), in this module only.
//!
//! Names: a channel name is 1 to 128 bytes of ASCII letters, digits and `-_.~:@` (no percent-decoding is needed
//! or done in paths); a client id follows the same rule with at most 64 bytes. Commas separate channels in
//! `/sub/a,b`. Event names are 1 to 64 bytes of UTF-8 without CR, LF or NUL.
//!
//! A subscribe request that asks for a WebSocket upgrade (`Upgrade: websocket`) gets the same subscription as
//! SSE, answered `101 Switching Protocols`; its events are text frames of one JSON object each, built by
//! `Message::ws_frame`, and its own messages (`open`, `reset`, `deleted`) by `subscribe`'s `ws_open_frame`,
//! `reset_frame` and `channel_deleted`. A message with an `id` is an event; one without is the server's (see
//! README, "WebSocket").
//!
//! Files: this one routes, checks CORS, and answers; `subscribe`, `publish` and `admin` handle their routes;
//! `access` decides who may subscribe, publish and administer (publish key, signed tokens); `input` checks names
//! and query keys; `status` serves the status page and its stream (`--status`).

mod access;
mod admin;
mod input;
mod publish;
mod status;
mod subscribe;

use access::channel_admin;
use admin::{channel_info, delete_channel, health, list_channels, metrics};
use input::QueryRule;
use publish::{publish_batch, publish_one};
use subscribe::subscribe;
pub use subscribe::{channel_deleted, reset_frame, ws_open_frame, TOKEN_EXPIRED};

use std::borrow::Cow;

use serde_json::Value;

use super::{closes, Action, Ctx, Refusal, Request};
use crate::broker::BrokerError;
use crate::channels::TableError;
use crate::config::{AuthMode, CorsOrigin};
use crate::http::request::Method;
use crate::http::response::{json_error_body, write_response, DateCache, Response};
use crate::http::HttpError;

/// Header carrying the client id of a new stream (the opening comment carries it too, for `EventSource`).
const CLIENT_ID_HEADER: &str = "Spout-Client-Id";

/// A native API error: status, code and message.
#[derive(Debug)]
struct ApiError {
    status: u16,
    code: &'static str,
    message: String,
    /// The channel a `forbidden_channel` refusal names (a `"channel"` field of the answer).
    channel: Option<Box<str>>,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            channel: None,
        }
    }

    fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, code, message)
    }

    fn from_broker(e: BrokerError) -> ApiError {
        match e {
            BrokerError::Table(e) => ApiError::from_table(e),
            BrokerError::Unavailable => ApiError::new(
                503,
                "broker_unavailable",
                "Redis did not answer within --broker-timeout; nothing was done, retry shortly",
            ),
        }
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
            TableError::ClientChannelLimit => ApiError::new(
                429,
                e.as_str(),
                "this client address has created as many channels as --max-channels-per-ip \
                 (SPOUT_MAX_CHANNELS_PER_IP) allows; use existing channels, or wait until some expire",
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
    StatusPage,
    StatusStream,
    StatusFile(&'a [u8]),
}

impl Route<'_> {
    fn parse(path: &[u8]) -> Option<Route<'_>> {
        let route = match path {
            b"/pub" => Route::PublishBatch,
            b"/channels" => Route::Channels,
            b"/healthz" => Route::Health,
            b"/metrics" => Route::Metrics,
            b"/status" => Route::StatusPage,
            b"/status/stream" => Route::StatusStream,
            _ => {
                if let Some(rest) = path.strip_prefix(b"/sub/") {
                    Route::Subscribe(rest)
                } else if let Some(rest) = path.strip_prefix(b"/pub/") {
                    Route::PublishOne(rest)
                } else if let Some(rest) = path.strip_prefix(b"/channels/") {
                    Route::Channel(rest)
                } else if let Some(rest) = path.strip_prefix(b"/status/") {
                    Route::StatusFile(rest)
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
                &["client_id", "last_event_id", "lastEventId", "token"],
            ),
            (Route::PublishOne(_), Method::Post) => ("POST /pub/{channel}", &["event", "to"]),
            (Route::PublishBatch, Method::Post) => ("POST /pub", &[]),
            // `api` picks the channels of one API (native or a compatible one) to list.
            (Route::Channels, Method::Get | Method::Head) => {
                ("GET /channels", &["api", "limit", "cursor"])
            }
            (Route::Channel(_), Method::Get | Method::Head) => ("GET /channels/{channel}", &[]),
            (Route::Channel(_), Method::Delete) => ("DELETE /channels/{channel}", &[]),
            // `key`: the publish key, which a browser opening the page cannot send as a header.
            (Route::StatusPage, Method::Get | Method::Head) => ("GET /status", &["key"]),
            (Route::StatusStream, Method::Get) => ("GET /status/stream", &["key"]),
            (Route::StatusFile(_), Method::Get | Method::Head) => ("GET /status/{file}", &[]),
            _ => return None,
        };
        Some(QueryRule { route, keys })
    }

    /// The status page's routes, which exist only with `--status`.
    fn is_status(&self) -> bool {
        matches!(
            self,
            Route::StatusPage | Route::StatusStream | Route::StatusFile(_)
        )
    }

    fn allow(&self) -> &'static str {
        match self {
            Route::Subscribe(_)
            | Route::Channels
            | Route::Health
            | Route::Metrics
            | Route::StatusPage
            | Route::StatusFile(_) => "GET, HEAD, OPTIONS",
            Route::StatusStream => "GET, OPTIONS",
            Route::PublishOne(_) | Route::PublishBatch => "POST, OPTIONS",
            Route::Channel(_) => "GET, HEAD, DELETE, OPTIONS",
        }
    }
}

pub fn handle(req: &Request, ctx: &mut Ctx) -> Action {
    let close = closes(req, ctx);
    let route = Route::parse(req.path()).filter(|route| ctx.config.status || !route.is_status());
    let Some(route) = route else {
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
        (Route::PublishOne(channel), Method::Post) => publish_one(req, ctx, channel),
        (Route::PublishBatch, Method::Post) => publish_batch(req, ctx),
        (Route::Channels, Method::Get | Method::Head) => {
            channel_admin(req, ctx).and_then(|()| list_channels(req, ctx))
        }
        (Route::Channel(name), Method::Get | Method::Head) => {
            channel_admin(req, ctx).and_then(|()| channel_info(req, ctx, name))
        }
        (Route::Channel(name), Method::Delete) => {
            channel_admin(req, ctx).and_then(|()| delete_channel(req, ctx, name))
        }
        (Route::Health, Method::Get | Method::Head) => Ok(health(req, ctx)),
        (Route::Metrics, Method::Get | Method::Head) => Ok(metrics(req, ctx)),
        (Route::StatusPage, Method::Get | Method::Head) => status::page(req, ctx),
        (Route::StatusStream, Method::Get) => status::stream(req, ctx),
        (Route::StatusFile(name), Method::Get | Method::Head) => status::asset(req, ctx, name),
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
            refusal.as_str(),
            format!(
                "The request body is larger than this server accepts: at most {limit} bytes, \
                 set by --max-body (SPOUT_MAX_BODY)."
            )
            .into(),
        ),
        Refusal::Http(e) => (e.status(), refusal.as_str(), e.message().into()),
        Refusal::Timeout => (
            408,
            refusal.as_str(),
            "the request did not arrive within --request-timeout".into(),
        ),
        Refusal::Busy => (
            503,
            refusal.as_str(),
            "the server is at its connection limit; retry shortly".into(),
        ),
        Refusal::PeerLimit => (
            503,
            refusal.as_str(),
            "this client address has as many connections open as --max-connections-per-ip \
             (SPOUT_MAX_CONNECTIONS_PER_IP) allows; close one or retry later"
                .into(),
        ),
        Refusal::BodyBudget => (
            503,
            refusal.as_str(),
            "the request bodies being read fill --max-pending-body-bytes \
             (SPOUT_MAX_PENDING_BODY_BYTES); retry shortly"
                .into(),
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

// ---- CORS ------------------------------------------------------------------------------------------------------

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
        // With tokens or the hook, a listed origin's page may send its cookie (`EventSource` with
        // `withCredentials`): browsers then want this field, and an exact origin rather than `*` (Fetch, "CORS
        // check").
        if ctx.auth.mode != AuthMode::None && matches!(ctx.config.cors_origin, CorsOrigin::List(_))
        {
            headers.push(("Access-Control-Allow-Credentials", "true"));
        }
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
    // RFC 6750 §3: a refused token is named as such; the publish key is a plain bearer credential.
    let auth: &[(&'static str, &str)] = match (e.status, e.code) {
        (401, "invalid_token") => &[("WWW-Authenticate", r#"Bearer error="invalid_token""#)],
        (401, _) => &[("WWW-Authenticate", "Bearer")],
        _ => &[],
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
    log::debug!(
        worker = ctx.worker, peer = ctx.peer.map(|ip| ip.to_string()), reason = e.code;
        "native API {} {}: {}", e.status, e.code, e.message
    );
    let mut body = Vec::with_capacity(64 + e.message.len());
    json_error_body(&mut body, e.code, &e.message);
    if let Some(channel) = &e.channel {
        // A channel name holds no byte JSON escapes (`input::channel_name`).
        body.pop();
        body.extend_from_slice(format!(r#","channel":"{channel}"}}"#).as_bytes());
    }
    match respond(req, ctx, e.status, Some("application/json"), &body, extra) {
        Action::Respond { bytes, close: keep } => Action::Respond {
            bytes,
            close: close || keep,
        },
        stream => stream,
    }
}
