//! Native subscribe: `GET /sub/{channels}`, as an SSE stream or a WebSocket upgrade, and the server's own messages
//! on a native stream (`open`, `reset`, `deleted`, `expired`).
//!
//! With `--auth jwt` the channels are the path's and the token's `spout.channels` (`/sub/` may name none), each
//! public or covered by the token (`access`), and the stream ends when the token expires. With `--auth hook` the
//! request parks while the hook decides (`access::hook_check`), and is handled again from the start with its
//! verdict, which may narrow the channels and set the client id.

use serde_json::json;

use super::access;
use super::input::{channel_name, Query};
use super::{cors_origin, push_cors, respond_error, ApiError, Handled, CLIENT_ID_HEADER};
use crate::api::{
    closes, keep_alive_field, Action, ChannelLoss, Ctx, Request, Stream, TokenExpired,
};
use crate::broker::{Reply, Subscribe};
use crate::channels::{ResetNotice, Subscription};
use crate::config::{Api, CorsOrigin};
use crate::http::response::write_stream_head;
use crate::message::ws_text_frame;
use crate::sse;
use crate::ws::handshake::{self, HandshakeError};

pub(super) fn subscribe(req: &Request, ctx: &mut Ctx, list: &[u8]) -> Handled {
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
    let query = Query::parse(req.query())?;
    let grants = access::subscriber_grants(req, ctx, &query)?;
    let token_channels = grants.iter().flat_map(|g| g.channels.iter());
    let mut names: Vec<&str> = Vec::new();
    // `/sub/` names no channel in its path: then a token's `spout.channels` must.
    let listed = list.split(|b| *b == b',').filter(|_| !list.is_empty());
    for raw in listed.chain(token_channels.map(|c| c.as_bytes())) {
        let name = channel_name(raw)?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(ApiError::bad(
            "invalid_channel",
            "name a channel: /sub/{channels}, or a token whose spout.channels lists some",
        ));
    }
    if names.len() > ctx.config.max_subscriptions {
        let max = ctx.config.max_subscriptions;
        return Err(ApiError::bad(
            "too_many_subscriptions",
            format!("at most {max} channels per stream (--max-subscriptions)"),
        ));
    }
    access::may_subscribe(ctx, grants.as_ref(), &names)?;
    let Some(hooked) = access::hook_check(req, ctx, &names, query.get("client_id"))? else {
        return Ok(Action::Await);
    };
    let names = hooked.narrow(ctx, &names)?;
    let client_id: Box<str> = match hooked.client_id {
        Some(id) => id,
        None => match access::stream_client_id(ctx, grants.as_ref(), query.get("client_id"))? {
            Some(id) => id,
            None => ctx.ids.next_client_id(),
        },
    };
    let expires = access::stream_expiry(ctx, grants.as_ref());
    let cursor = req
        .header("last-event-id")
        .or(query.get("last_event_id").map(str::as_bytes))
        .or(query.get("lastEventId").map(str::as_bytes))
        .filter(|raw| !raw.is_empty());

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
        let Some(subscription) = register(ctx, &names, &client_id, cursor)? else {
            return Ok(Action::Await);
        };
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
            expires,
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
    let Some(subscription) = register(ctx, &names, &client_id, cursor)? else {
        return Ok(Action::Await);
    };
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
        expires,
    })))
}

/// Registers the stream's subscription through the native API's broker: at once, or, with the Redis broker and
/// channels this node does not hold from the stream's cursor on, once the broker has warmed them (`None`: the
/// request is handled again with its answer). `cursor` is the `Last-Event-ID` the client sent, if any.
fn register(
    ctx: &mut Ctx,
    names: &[&str],
    client_id: &str,
    cursor: Option<&[u8]>,
) -> Result<Option<Subscription>, ApiError> {
    if let Some(max) = ctx.broker.max_channels_per_stream() {
        if names.len() > max {
            return Err(ApiError::bad(
                "too_many_subscriptions",
                format!(
                    "with --broker redis a stream carries at most {max} channels (its Last-Event-ID holds a \
                     position for each)"
                ),
            ));
        }
    }
    let wanted = Subscribe {
        worker: ctx.worker,
        names,
        client_id,
        cursor: cursor.map(|raw| std::str::from_utf8(raw).unwrap_or_default()),
        creator: ctx.peer,
    };
    let broker = ctx.broker;
    let asked = broker.subscribe(wanted, ctx.ask());
    asked.map(Reply::now).map_err(ApiError::from_broker)
}

/// A refused WebSocket upgrade: 400 naming the one version spout speaks (RFC 6455 §4.2.2, §4.4). The connection
/// stays an HTTP connection, kept alive as for any other 400 that the request's framing allows.
pub(super) fn bad_upgrade(req: &Request, ctx: &Ctx, e: HandshakeError) -> Action {
    let err = ApiError::bad("bad_websocket_upgrade", e.as_str());
    respond_error(
        req,
        ctx,
        err,
        &[("Sec-WebSocket-Version", handshake::VERSION)],
        closes(req, ctx),
    )
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

/// A native stream's last word when its token expires: on SSE `event: expired` with `{"reason":"token_expired"}`
/// and no id (a resume goes on from the last event); on WebSocket the same as `{"event":"expired",..}`, then a
/// close with 4001 (a private-use code, RFC 6455 §7.4.2). The page gets a fresh token and reconnects.
pub const TOKEN_EXPIRED: TokenExpired = TokenExpired {
    sse: b"event: expired\ndata: {\"reason\":\"token_expired\"}\n\n",
    ws: &[
        b"\x81\x2c{\"event\":\"expired\",\"reason\":\"token_expired\"}",
        b"\x88\x02\x0f\xa1",
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::encode_close;

    #[test]
    fn the_expired_frames_are_what_the_encoders_make() {
        let mut sse_frame = Vec::new();
        sse::encode_event(
            &mut sse_frame,
            None,
            Some("expired"),
            r#"{"reason":"token_expired"}"#,
        );
        assert_eq!(TOKEN_EXPIRED.sse, sse_frame);
        let text = json!({"event": "expired", "reason": "token_expired"}).to_string();
        assert_eq!(TOKEN_EXPIRED.ws[0], ws_text_frame(text.as_bytes()));
        let mut close = Vec::new();
        encode_close(Some(4001), &mut close);
        assert_eq!(TOKEN_EXPIRED.ws[1], close);
    }
}
