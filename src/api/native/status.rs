//! The status page's routes (`--status`): `GET /status` (the page), `GET /status/stream` (its SSE stream, one
//! sample per second) and the page's script, style and chart library under `/status/`. Without `--status` the
//! router answers each `404 not_found` (`Route::is_status`). The page and the stream are admin (`access::status_viewer`); the static files hold nothing
//! of the server's and need no key.

use super::access::status_viewer;
use super::input::Query;
use super::{cors_origin, push_cors, respond, ApiError, Handled};
use crate::api::{Action, Ctx, Request, Stream};
use crate::config::Api;
use crate::http::response::write_stream_head;
use crate::sse;
use crate::status;

/// A file of the page, by its path under `/status/`: its content type and bytes.
fn file(name: &[u8]) -> Option<(&'static str, &'static str)> {
    Some(match name {
        b"page.js" => ("text/javascript; charset=utf-8", status::PAGE_JS),
        b"page.css" => ("text/css; charset=utf-8", status::PAGE_CSS),
        b"uPlot.iife.min.js" => ("text/javascript; charset=utf-8", status::UPLOT_JS),
        b"uPlot.min.css" => ("text/css; charset=utf-8", status::UPLOT_CSS),
        _ => return None,
    })
}

/// `GET /status`: the page. Its script and styles come from this server only (the `Content-Security-Policy` says
/// so), and it opens `/status/stream` on the host and port it was loaded from.
pub(super) fn page(req: &Request, ctx: &mut Ctx) -> Handled {
    status_viewer(req, ctx, &Query::parse(req.query())?)?;
    Ok(respond(
        req,
        ctx,
        200,
        Some("text/html; charset=utf-8"),
        status::PAGE_HTML.as_bytes(),
        &[
            ("Cache-Control", "no-store"),
            (
                "Content-Security-Policy",
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
            ),
            ("Referrer-Policy", "no-referrer"),
        ],
    ))
}

/// `GET /status/{file}`: a file of the page.
pub(super) fn asset(req: &Request, ctx: &mut Ctx, name: &[u8]) -> Handled {
    let (content_type, body) =
        file(name).ok_or_else(|| ApiError::new(404, "not_found", "no such route"))?;
    Ok(respond(
        req,
        ctx,
        200,
        Some(content_type),
        body.as_bytes(),
        &[("Cache-Control", "no-cache")],
    ))
}

/// `GET /status/stream`: an SSE stream whose opening holds the recent samples and which then gets one sample per
/// second, as an unnamed event without an id (there is nothing to resume: a reconnect gets the recent ones again).
pub(super) fn stream(req: &Request, ctx: &mut Ctx) -> Handled {
    status_viewer(req, ctx, &Query::parse(req.query())?)?;
    if ctx.draining {
        return Err(ApiError::new(
            503,
            "draining",
            "the server is shutting down",
        ));
    }
    let client_id = ctx.ids.next_client_id();
    let (subscription, recent) = ctx
        .status
        .subscribe(ctx.table, ctx.worker, &client_id)
        .map_err(ApiError::from_table)?;
    let mut headers = vec![
        ("Content-Type", "text/event-stream"),
        ("Cache-Control", "no-cache"),
        ("X-Accel-Buffering", "no"),
    ];
    let origin = cors_origin(req, ctx);
    push_cors(&mut headers, origin.as_deref(), ctx);
    // The newest samples that fill at most half of --max-queued-bytes: the next live sample, a second later, must
    // never find the viewer over the cap while a slow link still carries its opening.
    let room = ctx.config.max_queued_bytes / 2;
    let mut kept = 0;
    let mut used = 0;
    for frame in recent.iter().rev() {
        if used + frame.len() > room {
            break;
        }
        used += frame.len();
        kept += 1;
    }
    let mut opening = Vec::with_capacity(320 + used);
    write_stream_head(&mut opening, ctx.date, &headers);
    sse::encode_retry(
        &mut opening,
        u64::try_from(ctx.config.retry.as_millis()).unwrap_or(u64::MAX),
    );
    for frame in recent.iter().skip(recent.len() - kept) {
        opening.extend_from_slice(frame);
    }
    Ok(Action::Stream(Box::new(Stream {
        api: Api::Native,
        opening,
        subscription,
        client_id,
        websocket: false,
        expires: None,
    })))
}
