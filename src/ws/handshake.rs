//! The WebSocket opening handshake (RFC 6455 §4.2): which requests ask for an upgrade, whether the upgrade is
//! valid, and the `Sec-WebSocket-Accept` value of the answer.
//!
//! Sans-io and allocation-free apart from the 28-byte accept value: the caller passes the header values it
//! found. A request is an upgrade attempt when its `Upgrade` header names the `websocket` token; an attempt
//! that breaks a rule is answered 400 with `Sec-WebSocket-Version: 13` (the one version spout speaks, which
//! tells a client with another version what to retry with, RFC 6455 §4.4), never served as SSE.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

/// The only protocol version of RFC 6455 (§4.1, item 9).
pub const VERSION: &str = "13";

/// Appended to the client's key before hashing (RFC 6455 §1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The header values of an upgrade attempt, as the request carried them.
#[derive(Clone, Debug, Default)]
pub struct Upgrade<'a> {
    /// The request method is GET (§4.1, item 2).
    pub get: bool,
    /// HTTP/1.1 or later (§4.1, item 2).
    pub http11: bool,
    /// Every `Connection` line's value (several lines form one list, RFC 9110 §5.3).
    pub connection: Vec<&'a [u8]>,
    pub version: Option<&'a [u8]>,
    pub key: Option<&'a [u8]>,
}

/// Why an upgrade attempt is refused; each is answered 400 with `Sec-WebSocket-Version: 13`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    NotGet,
    NotHttp11,
    /// `Connection` does not list the `upgrade` token.
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Version` is missing or not 13.
    BadVersion,
    /// `Sec-WebSocket-Key` is missing or not the base64 form of 16 bytes.
    BadKey,
}

impl HandshakeError {
    pub fn as_str(&self) -> &'static str {
        match self {
            HandshakeError::NotGet => "a WebSocket upgrade must be a GET",
            HandshakeError::NotHttp11 => "a WebSocket upgrade needs HTTP/1.1",
            HandshakeError::NoConnectionUpgrade => "a WebSocket upgrade needs Connection: Upgrade",
            HandshakeError::BadVersion => "Sec-WebSocket-Version must be 13",
            HandshakeError::BadKey => "Sec-WebSocket-Key must be the base64 encoding of 16 bytes",
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a comma-separated header value lists `token` (case-insensitive, optional whitespace; RFC 9110 §5.6.1).
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether a request with this `Upgrade` header asks for a WebSocket.
pub fn is_websocket_upgrade(upgrade: Option<&[u8]>) -> bool {
    upgrade.is_some_and(|value| has_token(value, "websocket"))
}

/// Checks an upgrade attempt and returns the `Sec-WebSocket-Accept` value of the 101 answer.
pub fn validate(req: &Upgrade) -> Result<String, HandshakeError> {
    if !req.get {
        return Err(HandshakeError::NotGet);
    }
    if !req.http11 {
        return Err(HandshakeError::NotHttp11);
    }
    if !req.connection.iter().any(|c| has_token(c, "upgrade")) {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    if req.version.map(<[u8]>::trim_ascii) != Some(VERSION.as_bytes()) {
        return Err(HandshakeError::BadVersion);
    }
    let key = req.key.map(<[u8]>::trim_ascii).unwrap_or_default();
    // 16 bytes encode to 24 characters with padding; decoding a bounded slice allocates at most 18 bytes.
    if key.len() != 24 || BASE64.decode(key).map(|k| k.len()) != Ok(16) {
        return Err(HandshakeError::BadKey);
    }
    Ok(accept_key(key))
}

/// `Sec-WebSocket-Accept`: base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2, item 5.4).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    BASE64.encode(sha.digest().bytes())
}

/// The `101 Switching Protocols` answer that completes a handshake (RFC 6455 §4.2.2), with `fields` after the
/// accept key. No `Date` and no CORS fields: a 101 needs neither, and browsers apply no CORS to WebSocket.
pub fn write_switching_protocols(out: &mut Vec<u8>, accept: &str, fields: &[(&str, &str)]) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in fields {
        for part in [name, ": ", value, "\r\n"] {
            out.extend_from_slice(part.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"dGhlIHNhbXBsZSBub25jZQ==";

    fn good() -> Upgrade<'static> {
        Upgrade {
            get: true,
            http11: true,
            connection: vec![b"keep-alive, Upgrade"],
            version: Some(b"13"),
            key: Some(KEY),
        }
    }

    #[test]
    fn rfc6455_section_1_3_known_answer() {
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(
            validate(&good()).as_deref(),
            Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
    }

    #[test]
    fn upgrade_tokens_are_case_insensitive_list_items() {
        assert!(is_websocket_upgrade(Some(b"WebSocket")));
        assert!(is_websocket_upgrade(Some(b"h2c, websocket")));
        assert!(!is_websocket_upgrade(Some(b"websockets")));
        assert!(!is_websocket_upgrade(Some(b"h2c")));
        assert!(!is_websocket_upgrade(None));
        assert!(has_token(b"UPGRADE", "upgrade"));
        assert!(has_token(b" keep-alive ,upgrade ", "upgrade"));
        assert!(!has_token(b"keep-alive", "upgrade"));
        assert!(!has_token(b"", "upgrade"));
    }

    #[test]
    fn connection_upgrade_may_come_on_a_line_of_its_own() {
        let split = Upgrade {
            connection: vec![b"keep-alive", b"Upgrade"],
            ..good()
        };
        assert_eq!(validate(&split), validate(&good()));
    }

    #[test]
    fn every_rule_has_its_error() {
        let cases: [(&str, Upgrade, HandshakeError); 9] = [
            (
                "post",
                Upgrade {
                    get: false,
                    ..good()
                },
                HandshakeError::NotGet,
            ),
            (
                "http/1.0",
                Upgrade {
                    http11: false,
                    ..good()
                },
                HandshakeError::NotHttp11,
            ),
            (
                "no connection",
                Upgrade {
                    connection: vec![],
                    ..good()
                },
                HandshakeError::NoConnectionUpgrade,
            ),
            (
                "connection close",
                Upgrade {
                    connection: vec![b"close"],
                    ..good()
                },
                HandshakeError::NoConnectionUpgrade,
            ),
            (
                "no version",
                Upgrade {
                    version: None,
                    ..good()
                },
                HandshakeError::BadVersion,
            ),
            (
                "version 8",
                Upgrade {
                    version: Some(b"8"),
                    ..good()
                },
                HandshakeError::BadVersion,
            ),
            (
                "no key",
                Upgrade {
                    key: None,
                    ..good()
                },
                HandshakeError::BadKey,
            ),
            (
                "short key",
                Upgrade {
                    key: Some(b"dGhlIHNhbXBsZQ=="),
                    ..good()
                },
                HandshakeError::BadKey,
            ),
            (
                "not base64",
                Upgrade {
                    key: Some(b"!!!!!!!!!!!!!!!!!!!!!!=="),
                    ..good()
                },
                HandshakeError::BadKey,
            ),
        ];
        for (name, req, want) in cases {
            assert_eq!(validate(&req), Err(want), "{name}");
        }
    }
}
