//! The request phases of a connection: reading heads and bodies, holding pipelined requests, handing each complete
//! request to its API and carrying out the answer (`api::Action`).
//!
//! Parsing is `http::request`'s and `http::chunked`'s (sans-io); this file keeps the bytes of an incomplete head and
//! the body of a request still coming, and nothing once a request is complete. A request, head and body, must be
//! complete within `--request-timeout` of its start: progress does not restart the clock, so a client that sends a
//! byte now and then cannot hold a body buffer for ever, and a body still coming holds a reservation in the
//! budget all workers share (`body_budget`), so many of them cannot hold more than `--max-pending-body-bytes`
//! together. A request that is refused (bad head, body too large, timeout, budget full) is answered in the
//! listener API's style and the connection closes after it.

use super::body_budget::Reservation;
use super::outq::Chunk;
use super::{CloseReason, Conn, Deadline, Next, Phase, PIPELINE_HOLD};
use crate::api::{self, Action, Ctx, Refusal, Request};
use crate::auth::verdict::HookVerdict;
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{check_host, parse_head, BodyFraming, Head, Limits};
use crate::http::{HttpError, Parsed};
use crate::peers::Admission;
use crate::proxy::{self, Proxied};

const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A request whose body is incomplete: its head (copied, with spans into the copy) and the body so far.
pub struct BodyState {
    head_bytes: Vec<u8>,
    head: Head,
    body: Vec<u8>,
    decoder: BodyDecoder,
    /// The body's room in the shared budget: its announced length, or for a chunked body what has arrived so far
    /// (rounded up).
    reservation: Reservation,
}

/// A complete request parked until the broker or the auth hook answers it: its head, body, the pipelined bytes
/// behind it, the ticket the answer must carry, and the hook's verdict when it already has one (a subscribe the
/// hook allowed that then waits for Redis is not checked twice).
pub struct Parked {
    head_bytes: Vec<u8>,
    head: Head,
    body: Vec<u8>,
    behind: Vec<u8>,
    ticket: u64,
    verdict: Option<HookVerdict>,
}

enum BodyDecoder {
    /// `Content-Length`: bytes still to come.
    Length(usize),
    Chunked(ChunkedDecoder),
}

impl BodyState {
    /// Takes body bytes from `input`; returns how many were used and whether the body is complete.
    fn feed(&mut self, input: &[u8], max_body: usize) -> Result<(usize, bool), Refusal> {
        match &mut self.decoder {
            BodyDecoder::Length(remaining) => {
                let take = input.len().min(*remaining);
                self.body
                    .extend_from_slice(input.get(..take).unwrap_or_default());
                *remaining -= take;
                Ok((take, *remaining == 0))
            }
            BodyDecoder::Chunked(decoder) => {
                // Decoding never makes more bytes than it is given.
                let needed = self.body.len().saturating_add(input.len());
                if !self.reservation.cover(needed, max_body) {
                    return Err(Refusal::BodyBudget);
                }
                let progress = decoder.feed(input, &mut self.body).map_err(Refusal::Http)?;
                Ok((progress.consumed, progress.done))
            }
        }
    }
}

impl Conn {
    /// Handles `data` after any bytes held from before; keeps what is left of an incomplete request.
    pub(super) fn ingest(&mut self, data: &[u8], ctx: &mut Ctx) -> Next {
        let mut pending = match &mut self.phase {
            Phase::ReadingHead { partial } => std::mem::take(partial),
            _ => Vec::new(),
        };
        let input: &[u8] = if pending.is_empty() {
            data
        } else {
            pending.extend_from_slice(data);
            &pending
        };
        let (used, next) = self.process(input, ctx);
        if let Phase::ReadingHead { partial } = &mut self.phase {
            if next == Next::Continue && !self.closing {
                if let Some(rest) = input.get(used..).filter(|r| !r.is_empty()) {
                    *partial = rest.to_vec();
                }
            }
        }
        next
    }

    /// Handles the requests in `buf`; returns how many bytes were used.
    fn process(&mut self, buf: &[u8], ctx: &mut Ctx) -> (usize, Next) {
        let limits = Limits {
            max_head: ctx.config.max_head,
            max_headers: ctx.config.max_headers,
            max_body: ctx.config.max_body,
        };
        let mut at = 0;
        loop {
            if self.closing {
                return (buf.len(), Next::Continue);
            }
            let rest = buf.get(at..).unwrap_or_default();
            match &mut self.phase {
                Phase::Stream(_) => {
                    // A WebSocket client may send frames right behind its upgrade request. Their channel changes
                    // are already in the stream's list, which the worker reads whole when the stream joins its
                    // hub, so only a close has something to say.
                    return match self.on_stream_input(rest, ctx) {
                        Next::Close(reason, _) => (buf.len(), Next::close(reason)),
                        _ => (buf.len(), Next::Continue),
                    };
                }
                Phase::ReadingHead { .. } => {
                    if rest.is_empty() {
                        return (at, Next::Continue);
                    }
                    if self.awaiting_proxy {
                        let error = match proxy::parse(rest) {
                            Ok(Parsed::Partial) if rest.len() < ctx.config.max_head => {
                                return (at, Next::Continue)
                            }
                            Ok(Parsed::Complete(header, len)) => {
                                at += len;
                                self.on_proxy_header(header, ctx);
                                continue;
                            }
                            // Only a v2 header can be this long (its length field says up to 64 KiB).
                            Ok(Parsed::Partial) => proxy::ProxyError::BadV2,
                            Err(e) => e,
                        };
                        // Not from the balancer, or not speaking its protocol: nothing to answer, and nothing it
                        // sent is read further (a reset).
                        log::debug!(
                            worker = ctx.worker, peer:% = self.peer, reason = "proxy_header";
                            "refused: {error}"
                        );
                        ctx.counters.bad_requests += 1;
                        return (buf.len(), Next::close(CloseReason::Abandoned));
                    }
                    if self.out.bytes() >= PIPELINE_HOLD {
                        // Keep the rest (`ingest` stores it) until the client takes its answers; it is input
                        // still to handle, so the connection stays readable.
                        self.readable = true;
                        return (at, Next::Continue);
                    }
                    if let Deadline::KeepAlive(_) = self.deadline {
                        self.deadline = Deadline::Request(ctx.now + ctx.config.request_timeout);
                    }
                    let parsed = parse_head(rest, &limits).and_then(|parsed| match parsed {
                        Parsed::Complete(head, len) => {
                            check_host(&head, rest).map(|()| Parsed::Complete(head, len))
                        }
                        Parsed::Partial => Ok(Parsed::Partial),
                    });
                    let (head, head_len) = match parsed {
                        Ok(Parsed::Partial) => return (at, Next::Continue),
                        Ok(Parsed::Complete(head, len)) => (head, len),
                        Err(e) => {
                            self.refuse(Refusal::Http(e), ctx);
                            return (buf.len(), Next::Continue);
                        }
                    };
                    let head_bytes = rest.get(..head_len).unwrap_or_default();
                    let after = rest.get(head_len..).unwrap_or_default();
                    let decoder = match head.framing {
                        BodyFraming::None => {
                            at += head_len;
                            self.dispatch(&head, head_bytes, &[], ctx);
                            continue;
                        }
                        BodyFraming::Length(len) if len > limits.max_body => {
                            self.refuse(
                                Refusal::Http(HttpError::BodyTooLarge {
                                    limit: limits.max_body,
                                }),
                                ctx,
                            );
                            return (buf.len(), Next::Continue);
                        }
                        BodyFraming::Length(len) if after.len() >= len => {
                            at += head_len + len;
                            let body = after.get(..len).unwrap_or_default();
                            self.dispatch(&head, head_bytes, body, ctx);
                            continue;
                        }
                        BodyFraming::Length(len) => BodyDecoder::Length(len),
                        BodyFraming::Chunked => {
                            BodyDecoder::Chunked(ChunkedDecoder::new(limits.max_body))
                        }
                    };
                    // A body of announced length takes all its room before any of it is read (refused at once if
                    // that room is not free); a chunked one takes room as its bytes come.
                    let (reserve, capacity) = match decoder {
                        BodyDecoder::Length(len) => (len, len),
                        BodyDecoder::Chunked(_) => (0, 0),
                    };
                    let Some(reservation) = Reservation::take(ctx.bodies, reserve) else {
                        self.refuse(Refusal::BodyBudget, ctx);
                        return (buf.len(), Next::Continue);
                    };
                    if head.expect_continue && after.is_empty() {
                        self.out.push(Chunk::Static(CONTINUE_100));
                    }
                    let state = BodyState {
                        head_bytes: head_bytes.to_vec(),
                        head,
                        body: Vec::with_capacity(capacity),
                        decoder,
                        reservation,
                    };
                    // The body shares the head's deadline: a request must be complete within `--request-timeout`
                    // of its start, however slowly its bytes come.
                    self.phase = Phase::ReadingBody(Box::new(state));
                    at += head_len;
                }
                Phase::Awaiting(parked) => {
                    // Requests pipelined behind a parked one wait for its answer, in order.
                    parked.behind.extend_from_slice(rest);
                    return (buf.len(), Next::Continue);
                }
                Phase::ReadingBody(state) => {
                    if rest.is_empty() {
                        return (at, Next::Continue);
                    }
                    match state.feed(rest, limits.max_body) {
                        Err(refusal) => {
                            self.refuse(refusal, ctx);
                            return (buf.len(), Next::Continue);
                        }
                        Ok((used, false)) => return (at + used, Next::Continue),
                        Ok((used, true)) => {
                            at += used;
                            let Phase::ReadingBody(state) = std::mem::replace(
                                &mut self.phase,
                                Phase::ReadingHead {
                                    partial: Vec::new(),
                                },
                            ) else {
                                unreachable!("matched ReadingBody above");
                            };
                            self.dispatch(&state.head, &state.head_bytes, &state.body, ctx);
                        }
                    }
                }
            }
        }
    }

    /// A `+proxy` listener's connection said who its client is: that address is its peer from now on, counted
    /// against `--max-connections-per-ip` (refused, in the listener API's style, when at the limit).
    fn on_proxy_header(&mut self, header: Proxied, ctx: &mut Ctx) {
        self.awaiting_proxy = false;
        if let Some(source) = header.source {
            self.peer = source.ip();
        }
        match ctx.peers.admit(self.peer) {
            Admission::Refused => self.refuse(Refusal::PeerLimit, ctx),
            Admission::Counted => self.peer_counted = true,
            Admission::Unlimited => {}
        }
    }

    /// Hands a complete request to its API and carries out the answer: queue a response (then wait for the next
    /// request, or close), or become a stream.
    fn dispatch(&mut self, head: &Head, head_bytes: &[u8], body: &[u8], ctx: &mut Ctx) {
        let mut req = Request {
            head,
            buf: head_bytes,
            body,
            mount: "",
        };
        match api::handle(self.api, &mut req, ctx) {
            Action::Respond { bytes, close } => {
                self.out.push(Chunk::Owned(bytes.into()));
                if close || ctx.draining {
                    self.start_closing(ctx.now, ctx.config.request_timeout);
                } else {
                    self.phase = Phase::ReadingHead {
                        partial: Vec::new(),
                    };
                    self.deadline = Deadline::KeepAlive(ctx.now + ctx.config.keepalive_timeout);
                }
            }
            Action::Stream(stream) => self.open_stream(*stream, ctx),
            Action::Await => {
                self.phase = Phase::Awaiting(Box::new(Parked {
                    head_bytes: head_bytes.to_vec(),
                    head: head.clone(),
                    body: body.to_vec(),
                    behind: Vec::new(),
                    ticket: ctx.waiter.ticket,
                    verdict: ctx.verdict.take(),
                }));
            }
        }
    }

    /// Whether the connection has a request parked with `ticket`.
    pub fn parked_with(&self, ticket: u64) -> bool {
        matches!(&self.phase, Phase::Awaiting(parked) if parked.ticket == ticket)
            || self.ws_parked() == Some(ticket)
    }

    /// Handles the parked request (or WebSocket message) again, with the answer in `ctx`, then the requests (or
    /// frames) behind it.
    pub fn resume(&mut self, ctx: &mut Ctx) -> Next {
        if self.ws_parked().is_some() {
            return self.resume_ws_message(ctx);
        }
        let Phase::Awaiting(parked) = std::mem::replace(
            &mut self.phase,
            Phase::ReadingHead {
                partial: Vec::new(),
            },
        ) else {
            return Next::Continue;
        };
        let Parked {
            head_bytes,
            head,
            body,
            behind,
            verdict,
            ..
        } = *parked;
        if ctx.verdict.is_none() {
            ctx.verdict = verdict;
        }
        self.dispatch(&head, &head_bytes, &body, ctx);
        // A verdict is for the parked request alone, never for one pipelined behind it.
        ctx.verdict = None;
        // Input that came while the request was parked is still in the socket, and `readable` says so: its edge
        // was recorded meanwhile, or the read before parking was not short and never cleared the flag.
        if behind.is_empty() {
            return Next::Continue;
        }
        self.ingest(&behind, ctx)
    }
}
