//! Targets: URL templates (`http://127.0.0.1:8080/sub/{channel}`), the loopback-only rule, and the publish body
//! template with its `{seq}`, `{ts}`, `{channel}` and `{pad}` placeholders.
//!
//! What this file owns: turning the operator's templates into a socket address, a request path per channel and a
//! publish body per event, and knowing how to find the sequence number and the timestamp again in a received
//! `data:` line (the "markers": the literal text the template puts right before `{seq}` and `{ts}`).
//!
//! What it must not do: touch sockets. It only refuses non-loopback hosts: this tool generates load, and must not
//! be pointed at someone else's server by a typo.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A parsed `http://host[:port]/path` template (or `ws://`, for WebSocket subscribers); `{channel}` may appear in
/// the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlTemplate {
    /// Written as `ws://`: the operator means a WebSocket.
    pub websocket: bool,
    pub addr: SocketAddr,
    /// The `Host` header value, as written in the URL (`127.0.0.1:8080`, `localhost`, `[::1]:80`).
    pub host_header: String,
    /// Path and query, still containing `{channel}` where the template has it.
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlError {
    NotHttp,
    NoPath,
    BadPort,
    BadHost(String),
    NotLoopback(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::NotHttp => write!(f, "only http:// (and ws://) URLs are supported"),
            UrlError::NoPath => write!(f, "the URL needs a path (e.g. /sub/{{channel}})"),
            UrlError::BadPort => write!(f, "the port is not a number in 1..65535"),
            UrlError::BadHost(h) => write!(f, "cannot read host {h:?}"),
            UrlError::NotLoopback(h) => write!(
                f,
                "host {h} is not loopback: only 127.0.0.0/8, ::1 and localhost are allowed"
            ),
        }
    }
}

impl std::error::Error for UrlError {}

impl UrlTemplate {
    pub fn parse(url: &str) -> Result<UrlTemplate, UrlError> {
        let scheme_end = url.find("://").ok_or(UrlError::NotHttp)?;
        let websocket = match &url[..scheme_end] {
            s if s.eq_ignore_ascii_case("http") => false,
            s if s.eq_ignore_ascii_case("ws") => true,
            _ => return Err(UrlError::NotHttp),
        };
        let rest = &url[scheme_end + 3..];
        let slash = rest.find('/').ok_or(UrlError::NoPath)?;
        let (authority, path) = rest.split_at(slash);
        if authority.contains('@') {
            return Err(UrlError::BadHost(authority.to_string()));
        }
        let (host, port) = split_host_port(authority)?;
        let ip = match host {
            h if h.eq_ignore_ascii_case("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
            h => h
                .parse::<IpAddr>()
                .map_err(|_| UrlError::BadHost(h.to_string()))?,
        };
        let loopback = match ip {
            IpAddr::V4(v4) => v4.octets()[0] == 127,
            IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
        };
        if !loopback {
            return Err(UrlError::NotLoopback(host.to_string()));
        }
        Ok(UrlTemplate {
            websocket,
            addr: SocketAddr::new(ip, port),
            host_header: authority.to_string(),
            path: path.to_string(),
        })
    }

    /// The request path for `channel`.
    pub fn path_for(&self, channel: &str) -> String {
        self.path.replace("{channel}", channel)
    }
}

/// Splits `host[:port]` or `[v6][:port]`; the port defaults to 80.
fn split_host_port(authority: &str) -> Result<(&str, u16), UrlError> {
    let parse_port = |p: &str| match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(UrlError::BadPort),
        Ok(n) => Ok(n),
    };
    if let Some(v6) = authority.strip_prefix('[') {
        let end = v6
            .find(']')
            .ok_or_else(|| UrlError::BadHost(authority.to_string()))?;
        let host = &v6[..end];
        return match &v6[end + 1..] {
            "" => Ok((host, 80)),
            p => match p.strip_prefix(':') {
                Some(p) => Ok((host, parse_port(p)?)),
                None => Err(UrlError::BadHost(authority.to_string())),
            },
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((host, parse_port(port)?)),
        None if authority.is_empty() => Err(UrlError::BadHost(String::new())),
        None => Ok((authority, 80)),
    }
}

/// One piece of a body template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Seq,
    Ts,
    Channel,
    Pad,
}

/// The publish body template. `{seq}` (per-channel sequence number from 0) and `{ts}` (send time, nanoseconds
/// since the Unix epoch) are required; `{channel}` and `{pad}` (filler up to `--size` bytes) are optional.
#[derive(Clone, Debug)]
pub struct BodyTemplate {
    pieces: Vec<Piece>,
    /// Literal text the receiver looks for right before the sequence number / the timestamp.
    pub seq_marker: String,
    pub ts_marker: String,
    /// Target body size in bytes when the template has `{pad}`.
    pub size: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    Missing(&'static str),
    Unclosed,
    Unknown(String),
    AdjacentPlaceholders,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Missing(p) => write!(f, "the body template must contain {{{p}}}"),
            TemplateError::Unclosed => write!(f, "unclosed '{{' in the body template"),
            TemplateError::Unknown(p) => write!(
                f,
                "unknown placeholder {{{p}}} (known: seq, ts, channel, pad)"
            ),
            TemplateError::AdjacentPlaceholders => write!(
                f,
                "{{seq}} and {{ts}} need literal text before them that the receiver can search for \
                 (or pass --seq-marker/--ts-marker)"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

impl BodyTemplate {
    pub const DEFAULT: &'static str = "seq={seq} ts={ts} {pad}";

    /// Parses `template`. A `{` not followed by a known name and `}` is an error; `{{` is a literal `{`.
    pub fn parse(
        template: &str,
        size: usize,
        seq_marker: Option<&str>,
        ts_marker: Option<&str>,
    ) -> Result<BodyTemplate, TemplateError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            text.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            if let Some(tail) = after.strip_prefix('{') {
                text.push('{');
                rest = tail;
                continue;
            }
            let close = after.find('}').ok_or(TemplateError::Unclosed)?;
            let piece = match &after[..close] {
                "seq" => Piece::Seq,
                "ts" => Piece::Ts,
                "channel" => Piece::Channel,
                "pad" => Piece::Pad,
                // Not a placeholder (JSON braces, say): keep it literally.
                other if other.contains(['"', ':', ',', ' ', '{']) || other.is_empty() => {
                    text.push('{');
                    rest = after;
                    continue;
                }
                other => return Err(TemplateError::Unknown(other.to_string())),
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
            rest = &after[close + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        let seq_marker = match seq_marker {
            Some(m) => m.to_string(),
            None => derive_marker(&pieces, &Piece::Seq)?,
        };
        let ts_marker = match ts_marker {
            Some(m) => m.to_string(),
            None => derive_marker(&pieces, &Piece::Ts)?,
        };
        Ok(BodyTemplate {
            pieces,
            seq_marker,
            ts_marker,
            size,
        })
    }

    /// Appends the body for one event to `out`.
    pub fn render(&self, out: &mut Vec<u8>, seq: u64, ts: u64, channel: &str) {
        let start = out.len();
        let mut pad_at = None;
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Seq => out.extend_from_slice(seq.to_string().as_bytes()),
                Piece::Ts => out.extend_from_slice(ts.to_string().as_bytes()),
                Piece::Channel => out.extend_from_slice(channel.as_bytes()),
                Piece::Pad => pad_at = Some(out.len()),
            }
        }
        if let Some(at) = pad_at {
            let missing = self.size.saturating_sub(out.len() - start);
            out.splice(at..at, std::iter::repeat_n(b'x', missing));
        }
    }

    /// Finds the sequence number and the timestamp in one received `data:` value.
    pub fn extract(&self, data: &[u8]) -> (Option<u64>, Option<u64>) {
        (
            number_after(data, self.seq_marker.as_bytes()),
            number_after(data, self.ts_marker.as_bytes()),
        )
    }
}

/// The marker of `which`: the literal text before it, from after the last whitespace, `,`, `{`, `;`, `&` or
/// escaped newline (`\n` as typed in a JSON template). Empty when `which` starts the template (anchored at the
/// start of the data). `Missing` when `which` is absent.
fn derive_marker(pieces: &[Piece], which: &Piece) -> Result<String, TemplateError> {
    let name = if *which == Piece::Seq { "seq" } else { "ts" };
    let at = pieces
        .iter()
        .position(|p| p == which)
        .ok_or(TemplateError::Missing(name))?;
    if at == 0 {
        return Ok(String::new());
    }
    let Some(Piece::Text(before)) = pieces.get(at - 1) else {
        return Err(TemplateError::AdjacentPlaceholders);
    };
    let cut = before
        .rfind(|c: char| c.is_whitespace() || matches!(c, ',' | '{' | ';' | '&'))
        .map_or(0, |i| i + 1);
    let mut marker = &before[cut..];
    if let Some(i) = marker.rfind("\\n") {
        marker = &marker[i + 2..];
    }
    // Only separators before it (`{seq};{ts}`): search for all of them.
    if marker.is_empty() {
        marker = before;
    }
    Ok(marker.to_string())
}

/// The decimal number right after the first `marker` in `data` (the start of `data` when `marker` is empty).
pub fn number_after(data: &[u8], marker: &[u8]) -> Option<u64> {
    let from = if marker.is_empty() {
        0
    } else {
        data.windows(marker.len()).position(|w| w == marker)? + marker.len()
    };
    let digits = data.get(from..)?;
    let mut value: u64 = 0;
    let mut any = false;
    for &b in digits.iter().take_while(|b| b.is_ascii_digit()) {
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// URL → (socket address, Host header, path) or the error.
    type UrlCase = (
        &'static str,
        Result<(&'static str, &'static str, &'static str), UrlError>,
    );

    #[test]
    fn urls() {
        let cases: &[UrlCase] = &[
            (
                "http://127.0.0.1:8080/sub/{channel}",
                Ok(("127.0.0.1:8080", "127.0.0.1:8080", "/sub/{channel}")),
            ),
            (
                "http://localhost/pub/{channel}?x=1",
                Ok(("127.0.0.1:80", "localhost", "/pub/{channel}?x=1")),
            ),
            (
                "http://127.1.2.3:9/a",
                Ok(("127.1.2.3:9", "127.1.2.3:9", "/a")),
            ),
            (
                "http://[::1]:8080/sub/{channel}",
                Ok(("[::1]:8080", "[::1]:8080", "/sub/{channel}")),
            ),
            ("http://[::1]/x", Ok(("[::1]:80", "[::1]", "/x"))),
            (
                "ws://127.0.0.1:8080/sub/{channel}",
                Ok(("127.0.0.1:8080", "127.0.0.1:8080", "/sub/{channel}")),
            ),
            (
                "HTTP://127.0.0.1/x",
                Ok(("127.0.0.1:80", "127.0.0.1", "/x")),
            ),
            ("https://127.0.0.1/x", Err(UrlError::NotHttp)),
            ("wss://127.0.0.1/x", Err(UrlError::NotHttp)),
            ("127.0.0.1:8080/x", Err(UrlError::NotHttp)),
            ("http://127.0.0.1:8080", Err(UrlError::NoPath)),
            ("http://127.0.0.1:0/x", Err(UrlError::BadPort)),
            ("http://127.0.0.1:99999/x", Err(UrlError::BadPort)),
            ("http://127.0.0.1:/x", Err(UrlError::BadPort)),
            (
                "http://10.0.0.1:8080/x",
                Err(UrlError::NotLoopback("10.0.0.1".into())),
            ),
            (
                "http://128.0.0.1/x",
                Err(UrlError::NotLoopback("128.0.0.1".into())),
            ),
            ("http://[::2]/x", Err(UrlError::NotLoopback("::2".into()))),
            (
                "http://example.com/x",
                Err(UrlError::BadHost("example.com".into())),
            ),
            (
                "http://user@127.0.0.1/x",
                Err(UrlError::BadHost("user@127.0.0.1".into())),
            ),
            ("http:///x", Err(UrlError::BadHost(String::new()))),
        ];
        for (url, expected) in cases {
            let got = UrlTemplate::parse(url).map(|t| (t.addr.to_string(), t.host_header, t.path));
            let expected = expected
                .clone()
                .map(|(a, h, p)| (a.to_string(), h.to_string(), p.to_string()));
            assert_eq!(got, expected, "{url}");
        }
        let t = UrlTemplate::parse("http://127.0.0.1:8080/sub/{channel}/x").unwrap();
        assert_eq!(t.path_for("c7"), "/sub/c7/x");
        assert!(!t.websocket);
        assert!(
            UrlTemplate::parse("ws://127.0.0.1/sub/{channel}")
                .unwrap()
                .websocket
        );
    }

    #[test]
    fn default_template_round_trip() {
        let t = BodyTemplate::parse(BodyTemplate::DEFAULT, 100, None, None).unwrap();
        assert_eq!(
            (t.seq_marker.as_str(), t.ts_marker.as_str()),
            ("seq=", "ts=")
        );
        let mut out = Vec::new();
        t.render(&mut out, 42, 1_700_000_000_123_456_789, "news");
        assert_eq!(out.len(), 100);
        assert!(out.starts_with(b"seq=42 ts=1700000000123456789 xxx"));
        assert_eq!(t.extract(&out), (Some(42), Some(1_700_000_000_123_456_789)));
    }

    #[test]
    fn templates_and_markers() {
        // (template, seq marker, ts marker, rendered for seq 7, ts 99, channel "c")
        let cases: &[(&str, &str, &str, &str)] = &[
            ("seq={seq} ts={ts}", "seq=", "ts=", "seq=7 ts=99"),
            (
                r#"{"seq":{seq},"ts":{ts},"ch":"{channel}"}"#,
                r#""seq":"#,
                r#""ts":"#,
                r#"{"seq":7,"ts":99,"ch":"c"}"#,
            ),
            // Pushpin's publish API: SSE framing inside JSON, newline escaped.
            (
                r#"{"items":[{"channel":"{channel}","formats":{"http-stream":{"content":"data: s{seq} t{ts}\n\n"}}}]}"#,
                "s",
                "t",
                r#"{"items":[{"channel":"c","formats":{"http-stream":{"content":"data: s7 t99\n\n"}}}]}"#,
            ),
            ("{seq};{ts}", "", ";", "7;99"),
            ("{{seq={seq}} ts={ts}", "seq=", "ts=", "{seq=7} ts=99"),
        ];
        for (template, seq_m, ts_m, rendered) in cases {
            let t = BodyTemplate::parse(template, 0, None, None)
                .unwrap_or_else(|e| panic!("{template}: {e}"));
            assert_eq!(t.seq_marker, *seq_m, "{template}");
            assert_eq!(t.ts_marker, *ts_m, "{template}");
            let mut out = Vec::new();
            t.render(&mut out, 7, 99, "c");
            assert_eq!(String::from_utf8(out).unwrap(), *rendered, "{template}");
        }
        let t = BodyTemplate::parse("{seq};{ts}", 0, None, None).unwrap();
        assert_eq!(t.extract(b"7;99"), (Some(7), Some(99)));
    }

    #[test]
    fn template_errors() {
        let cases: &[(&str, TemplateError)] = &[
            ("ts={ts}", TemplateError::Missing("seq")),
            ("seq={seq}", TemplateError::Missing("ts")),
            ("seq={seq} ts={ts", TemplateError::Unclosed),
            ("{seq} {ts} {bogus}", TemplateError::Unknown("bogus".into())),
            ("{seq}{ts}", TemplateError::AdjacentPlaceholders),
        ];
        for (template, expected) in cases {
            let got = BodyTemplate::parse(template, 0, None, None).err();
            assert_eq!(got.as_ref(), Some(expected), "{template}");
        }
        // Explicit markers rescue a template whose markers cannot be derived.
        let t = BodyTemplate::parse("{seq}{ts}", 0, Some(""), Some("|")).unwrap();
        assert_eq!(t.extract(b"5|6"), (Some(5), Some(6)));
    }

    #[test]
    fn numbers() {
        assert_eq!(number_after(b"a seq=12x", b"seq="), Some(12));
        assert_eq!(number_after(b"seq=", b"seq="), None);
        assert_eq!(number_after(b"seq=x1", b"seq="), None);
        assert_eq!(number_after(b"nothing", b"seq="), None);
        assert_eq!(number_after(b"99999999999999999999999", b""), None);
        assert_eq!(number_after(b"18446744073709551615", b""), Some(u64::MAX));
    }
}
