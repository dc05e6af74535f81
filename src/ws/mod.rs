//! The WebSocket protocol (RFC 6455), sans-io: the opening handshake (`handshake`) and framing (`frame`).
//!
//! Nothing here reads a socket, a clock or the channel table: the API layer validates an upgrade with
//! `handshake`, and the connection feeds received bytes to `frame::decode` and queues frames built with
//! `frame::encode_header`. Errors are small `Copy` values; `frame::WsError::close_code` is the one place that
//! maps a protocol error to a close code (RFC 6455 §7.4).

pub mod frame;
pub mod handshake;
