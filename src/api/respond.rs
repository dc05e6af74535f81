//! Answers the APIs build: in an original's exact field order (`answer`) or in spout's own head layout
//! (`respond`), with what the connection needs to know (whether it closes after the answer).
//!
//! The status line and header encoding are `http::response`'s; this file only decides the connection field and
//! the close, which every API answers alike (RFC 9112 §9.3 for HTTP/1.0 clients).

use super::{Action, Ctx, Request};
use crate::http::response::{write_answer, write_response, Response};

/// An answer in a compatible API's style: its fields exactly as given, then `Content-Length` (not on a 204) and the
/// connection field: `close` when the connection ends after it (the client asked, or the server drains),
/// `keep-alive` for an HTTP/1.0 client that keeps it (RFC 9112 §9.3). A `HEAD` request gets the head only.
pub fn answer(
    req: &Request,
    ctx: &Ctx,
    status: u16,
    fields: &[(&str, &str)],
    body: &[u8],
) -> Action {
    let close = closes(req, ctx);
    let connection = if close {
        Some("close")
    } else {
        keep_alive_field(req, close).map(|(_, value)| value)
    };
    let mut bytes = Vec::with_capacity(200 + body.len());
    write_answer(
        &mut bytes,
        ctx.date,
        status,
        fields,
        body,
        connection,
        req.is_head(),
    );
    Action::Respond { bytes, close }
}

/// Whether the connection ends after this answer: the client asked, or the server is draining.
pub fn closes(req: &Request, ctx: &Ctx) -> bool {
    !req.head.keep_alive || ctx.draining
}

/// `Connection: keep-alive` for an HTTP/1.0 request whose connection stays open: a 1.0 client keeps it only when
/// the response says so (RFC 9112 §9.3, RFC 7230 §A.1.2). HTTP/1.1 persists by default and needs nothing.
pub fn keep_alive_field(req: &Request, close: bool) -> Option<(&'static str, &'static str)> {
    (!close && req.head.minor_version == 0).then_some(("Connection", "keep-alive"))
}

/// A complete answer in spout's own head layout (`Date`, `Content-Type`, then `headers`; see `answer` for an
/// original's exact field order), plus what the connection needs: `Connection: close` when it ends after this
/// answer, `Connection: keep-alive` for an HTTP/1.0 client it stays open for; no body for HEAD.
pub fn respond(
    req: &Request,
    ctx: &Ctx,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Action {
    let close = closes(req, ctx);
    let mut headers = headers.to_vec();
    headers.extend(keep_alive_field(req, close));
    let mut out = Vec::with_capacity(body.len() + 256);
    let resp = Response {
        status,
        content_type,
        headers: &headers,
        body,
        close,
        head_only: req.is_head(),
    };
    write_response(&mut out, ctx.date, &resp);
    Action::Respond { bytes: out, close }
}
