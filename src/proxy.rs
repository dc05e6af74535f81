//! The PROXY protocol, versions 1 and 2 (HAProxy's `proxy-protocol.txt`): the header a load balancer sends first
//! on each connection it opens to spout, naming the client it stands for. On a listener marked `+proxy`
//! (`--listen ADDR=API+proxy`) every connection must start with one, and the address it names is the connection's
//! peer for limits and logs; a connection without a valid header is refused.
//!
//! Sans-io: `parse` looks at the first bytes of a connection and answers `Partial` until the header is complete.
//! It allocates nothing, reads no clock and never panics on any input.
//!
//! What counts as a header:
//! - v1: `PROXY TCP4|TCP6 SRC DST SRCPORT DSTPORT\r\n`, or `PROXY UNKNOWN…\r\n` (the balancer's own connection: the
//!   socket's peer stays), at most 107 bytes in all (§2.1). Addresses must parse as the family says.
//! - v2: the 12-byte signature, version 2 with the `PROXY` command over TCP/IPv4 or TCP/IPv6 (the addresses are
//!   taken; TLVs after them are skipped), or the `LOCAL` command or an unspecified family (the socket's peer
//!   stays); the length field bounds what is skipped (§2.2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::http::Parsed;

/// The v2 signature (§2.2).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included (§2.1).
const V1_MAX: usize = 107;
/// Bytes of a v2 header before its addresses.
const V2_FIXED: usize = 16;

/// What a complete header says: the client's address, or `None` when the header speaks for the balancer itself
/// (v1 `UNKNOWN`, v2 `LOCAL` or an unspecified family), whose socket address then stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proxied {
    pub source: Option<SocketAddr>,
}

/// Why the start of a connection is not a PROXY header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// Neither signature: the peer speaks without a header.
    Missing,
    /// A v1 line that is malformed or longer than 107 bytes.
    BadV1,
    /// A v2 header with a bad version, command, family or length.
    BadV2,
}

impl ProxyError {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProxyError::Missing => "no PROXY protocol header",
            ProxyError::BadV1 => "malformed PROXY protocol v1 header",
            ProxyError::BadV2 => "malformed PROXY protocol v2 header",
        }
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses the PROXY header at the start of `buf`; `Complete` carries the bytes it took.
pub fn parse(buf: &[u8]) -> Result<Parsed<Proxied>, ProxyError> {
    if is_prefix_of(buf, V2_SIGNATURE) {
        return parse_v2(buf);
    }
    if is_prefix_of(buf, b"PROXY ") {
        return parse_v1(buf);
    }
    Err(ProxyError::Missing)
}

/// Whether `buf` and `signature` agree on their common length (`buf` may be shorter: more may come).
fn is_prefix_of(buf: &[u8], signature: &[u8]) -> bool {
    let n = buf.len().min(signature.len());
    buf.get(..n) == signature.get(..n)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed<Proxied>, ProxyError> {
    let window = buf.get(..buf.len().min(V1_MAX)).unwrap_or_default();
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError::BadV1)
        } else {
            Ok(Parsed::Partial)
        };
    };
    let line = window.get(..end).unwrap_or_default();
    let line = std::str::from_utf8(line).map_err(|_| ProxyError::BadV1)?;
    let mut fields = line.split(' ');
    if fields.next() != Some("PROXY") {
        return Err(ProxyError::BadV1);
    }
    let family = fields.next().ok_or(ProxyError::BadV1)?;
    if family == "UNKNOWN" {
        // §2.1: whatever follows UNKNOWN up to the CRLF is ignored.
        return Ok(Parsed::Complete(Proxied { source: None }, end + 2));
    }
    let (Some(src), Some(_dst), Some(src_port), Some(_dst_port), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(ProxyError::BadV1);
    };
    let ip: IpAddr = match family {
        "TCP4" => src.parse::<Ipv4Addr>().map(IpAddr::V4),
        "TCP6" => src.parse::<Ipv6Addr>().map(IpAddr::V6),
        _ => return Err(ProxyError::BadV1),
    }
    .map_err(|_| ProxyError::BadV1)?;
    let port = parse_port(src_port).ok_or(ProxyError::BadV1)?;
    Ok(Parsed::Complete(
        Proxied {
            source: Some(SocketAddr::new(ip, port)),
        },
        end + 2,
    ))
}

/// A decimal port, 0–65535, without sign or leading zeros (§2.1).
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_v2(buf: &[u8]) -> Result<Parsed<Proxied>, ProxyError> {
    let (Some(&ver_cmd), Some(&family), Some(len)) = (
        buf.get(12),
        buf.get(13),
        buf.get(14..16)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map(|b| usize::from(u16::from_be_bytes(b))),
    ) else {
        return Ok(Parsed::Partial);
    };
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::BadV2);
    }
    let total = V2_FIXED + len;
    let local = match ver_cmd & 0x0F {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::BadV2),
    };
    // What the family needs before the TLVs; the length must cover it.
    let needed = match family {
        0x11 => 12,
        0x21 => 36,
        // UNSPEC, or UDP / UNIX families: no TCP address to take.
        _ => 0,
    };
    if len < needed {
        return Err(ProxyError::BadV2);
    }
    let Some(body) = buf.get(V2_FIXED..total) else {
        return Ok(Parsed::Partial);
    };
    if local || needed == 0 {
        return Ok(Parsed::Complete(Proxied { source: None }, total));
    }
    let source = match (family, body) {
        (0x11, [a, b, c, d, _, _, _, _, p0, p1, ..]) => SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d)),
            u16::from_be_bytes([*p0, *p1]),
        ),
        (0x21, body) => {
            let ip: [u8; 16] = body
                .get(..16)
                .and_then(|s| s.try_into().ok())
                .ok_or(ProxyError::BadV2)?;
            let port: [u8; 2] = body
                .get(32..34)
                .and_then(|p| p.try_into().ok())
                .ok_or(ProxyError::BadV2)?;
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), u16::from_be_bytes(port))
        }
        _ => return Err(ProxyError::BadV2),
    };
    Ok(Parsed::Complete(
        Proxied {
            source: Some(source),
        },
        total,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;

    type Outcome = Result<Parsed<Proxied>, ProxyError>;

    fn v2(ver_cmd: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(ver_cmd);
        out.push(family);
        out.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        out.extend_from_slice(addresses);
        out
    }

    fn source(s: &str) -> Outcome {
        Ok(Parsed::Complete(
            Proxied {
                source: Some(s.parse().expect("address")),
            },
            0,
        ))
    }

    /// `Complete`'s length is checked separately; this compares what was parsed.
    fn without_len(r: Outcome) -> Outcome {
        r.map(|p| match p {
            Parsed::Complete(v, _) => Parsed::Complete(v, 0),
            Parsed::Partial => Parsed::Partial,
        })
    }

    fn cases() -> Vec<(&'static str, Vec<u8>, Outcome)> {
        let mut tcp4 = vec![192, 0, 2, 1, 198, 51, 100, 7];
        tcp4.extend_from_slice(&51000u16.to_be_bytes());
        tcp4.extend_from_slice(&8080u16.to_be_bytes());
        let mut tcp6 = vec![0; 32];
        tcp6[15] = 1;
        tcp6[31] = 2;
        tcp6.extend_from_slice(&40000u16.to_be_bytes());
        tcp6.extend_from_slice(&443u16.to_be_bytes());
        let mut tcp4_tlv = tcp4.clone();
        tcp4_tlv.extend_from_slice(&[0x04, 0x00, 0x01, 0xAA]);
        let local = Ok(Parsed::Complete(Proxied { source: None }, 0));
        vec![
            (
                "v1 tcp4",
                b"PROXY TCP4 192.0.2.1 198.51.100.7 51000 8080\r\n".to_vec(),
                source("192.0.2.1:51000"),
            ),
            (
                "v1 tcp6",
                b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 443\r\n".to_vec(),
                source("[2001:db8::1]:40000"),
            ),
            ("v1 unknown", b"PROXY UNKNOWN\r\n".to_vec(), local.clone()),
            (
                "v1 unknown with junk",
                b"PROXY UNKNOWN ff ff 1 2\r\n".to_vec(),
                local.clone(),
            ),
            (
                "v1 family mismatch",
                b"PROXY TCP4 2001:db8::1 ::2 1 2\r\n".to_vec(),
                Err(ProxyError::BadV1),
            ),
            (
                "v1 missing port",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n".to_vec(),
                Err(ProxyError::BadV1),
            ),
            (
                "v1 extra field",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n".to_vec(),
                Err(ProxyError::BadV1),
            ),
            (
                "v1 port too big",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n".to_vec(),
                Err(ProxyError::BadV1),
            ),
            (
                "v1 port leading zero",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n".to_vec(),
                Err(ProxyError::BadV1),
            ),
            (
                "v1 bad family",
                b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                Err(ProxyError::BadV1),
            ),
            (
                "v1 lf only",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(),
                Ok(Parsed::Partial),
            ),
            (
                "v1 too long",
                [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100]].concat(),
                Err(ProxyError::BadV1),
            ),
            ("v2 tcp4", v2(0x21, 0x11, &tcp4), source("192.0.2.1:51000")),
            (
                "v2 tcp4 with tlv",
                v2(0x21, 0x11, &tcp4_tlv),
                source("192.0.2.1:51000"),
            ),
            ("v2 tcp6", v2(0x21, 0x21, &tcp6), source("[::1]:40000")),
            ("v2 local", v2(0x20, 0x00, &[]), local.clone()),
            (
                "v2 local with addresses",
                v2(0x20, 0x11, &tcp4),
                local.clone(),
            ),
            ("v2 unspec", v2(0x21, 0x00, &[]), local.clone()),
            ("v2 unix", v2(0x21, 0x31, &[0; 216]), local),
            (
                "v2 version 1",
                v2(0x11, 0x11, &tcp4),
                Err(ProxyError::BadV2),
            ),
            (
                "v2 bad command",
                v2(0x22, 0x11, &tcp4),
                Err(ProxyError::BadV2),
            ),
            (
                "v2 short for tcp4",
                v2(0x21, 0x11, &tcp4[..11]),
                Err(ProxyError::BadV2),
            ),
            (
                "http",
                b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                Err(ProxyError::Missing),
            ),
            (
                "tls",
                vec![0x16, 0x03, 0x01, 0x00],
                Err(ProxyError::Missing),
            ),
        ]
    }

    #[test]
    fn table() {
        for (name, input, expect) in cases() {
            assert_eq!(without_len(parse(&input)), expect, "{name}");
            if let Ok(Parsed::Complete(_, len)) = parse(&input) {
                assert_eq!(len, input.len(), "{name}: consumed");
                // What follows the header is left for HTTP.
                let mut more = input.clone();
                more.extend_from_slice(b"GET / HTTP/1.1\r\n");
                assert_eq!(parse(&more), parse(&input), "{name}: with a request behind");
            }
        }
    }

    #[test]
    fn byte_at_a_time_is_partial_until_the_last_byte() {
        for (name, input, expect) in cases() {
            if !matches!(expect, Ok(Parsed::Complete(..))) {
                continue;
            }
            for end in 0..input.len() {
                assert_eq!(parse(&input[..end]), Ok(Parsed::Partial), "{name} at {end}");
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = XorShift(0x5eed_cafe);
        for _ in 0..20_000 {
            let len = rng.below(120);
            let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Half of them behind a valid start, so the parsers' insides are reached.
            match rng.below(3) {
                0 => buf
                    .splice(0..0, V2_SIGNATURE.iter().copied())
                    .for_each(drop),
                1 => buf.splice(0..0, b"PROXY ".iter().copied()).for_each(drop),
                _ => {}
            }
            if let Ok(Parsed::Complete(_, n)) = parse(&buf) {
                assert!(n <= buf.len());
            }
        }
    }
}
