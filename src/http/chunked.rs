//! Incremental decoder for `Transfer-Encoding: chunked` request bodies
//! (RFC 9112 §7.1).
//!
//! What this file owns: the chunk framing state machine and the body budget.
//! It is fed whatever bytes have arrived, in pieces of any size (one byte at a
//! time works), appends decoded data to the caller's `Vec` and says how much
//! input it used, so pipelined bytes after the body stay with the caller.
//!
//! What it must not do: allocate (beyond appending to `out`), trust an
//! announced chunk size (it is checked against the remaining budget before a
//! single byte of the chunk is appended, and `out` is never reserved from it),
//! or panic on any input.
//!
//! Strictness, because spout sits behind load balancers that frame the same
//! bytes independently (request smuggling, RFC 9112 §11.2):
//! - Every line ends in CRLF, including the chunk-size line. RFC 9112 §2.2
//!   lets a recipient accept a bare LF, but proxies disagree on exactly that
//!   in chunk lines, so a bare LF or a bare CR is `BadChunk`.
//! - Chunk sizes are 1 to 16 hex digits (either case); more digits, including
//!   leading zeros, are `BadChunk`, so the value always fits `u64`.
//! - Chunk extensions (`;name=value`, RFC 9112 §7.1.1) are skipped without
//!   interpretation, at most [`MAX_EXTENSION`] bytes per size line, and may
//!   not contain control characters other than HTAB.
//! - Trailer fields (RFC 9112 §7.1.2) are checked for `name:` shape and
//!   discarded (nothing in spout reads them), at most [`MAX_TRAILERS`] bytes.
//!
//! Once an error is returned the decoder stays failed and returns the same
//! error; once done it consumes nothing more.

use super::HttpError;

/// Bytes of chunk extension allowed on one chunk-size line (after the digits).
pub const MAX_EXTENSION: usize = 1024;
/// Bytes of trailer section allowed, CRLFs included.
pub const MAX_TRAILERS: usize = 8 * 1024;
/// Hex digits in a chunk size: 16 nibbles fill a `u64`.
const MAX_SIZE_DIGITS: u8 = 16;

/// Result of one [`ChunkedDecoder::feed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes used; the rest belongs to whatever follows the body.
    pub consumed: usize,
    /// The last chunk, the trailers and the final CRLF have been read.
    pub done: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        digits: u8,
        value: u64,
    },
    /// After the digits: whitespace before `;`, or CR.
    SizeWs {
        value: u64,
    },
    /// Inside chunk extensions, until CR.
    Extension {
        value: u64,
        len: usize,
    },
    /// Expecting the LF that ends the size line.
    SizeLf {
        value: u64,
    },
    /// Copying chunk data.
    Data {
        remaining: u64,
    },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value, until CR.
    TrailerValue,
    /// Expecting the LF that ends a trailer line.
    TrailerLf,
    /// Expecting the LF of the final empty line.
    FinalLf,
    Done,
    Failed(HttpError),
}

/// Decodes one chunked body; make a new one per request.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// The limit on decoded bytes, reported in `HttpError::BodyTooLarge`.
    max_body: usize,
    /// Body bytes still allowed (`max_body` minus decoded so far).
    budget: u64,
    /// Trailer bytes seen so far.
    trailer_len: usize,
}

impl ChunkedDecoder {
    /// A decoder that refuses bodies larger than `max_body` decoded bytes.
    pub fn new(max_body: usize) -> Self {
        ChunkedDecoder {
            state: State::Size {
                digits: 0,
                value: 0,
            },
            max_body,
            budget: u64::try_from(max_body).unwrap_or(u64::MAX),
            trailer_len: 0,
        }
    }

    /// Consumes as much of `input` as possible, appending decoded data to `out`. Returns how many input bytes were
    /// consumed and whether the final chunk (+trailers + final CRLF) has been read. Bytes after the end are not consumed.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Progress, HttpError> {
        let mut rest = input;
        loop {
            match self.state {
                State::Failed(e) => return Err(e),
                State::Done => break,
                State::Data { remaining } => {
                    if rest.is_empty() {
                        break;
                    }
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    let (data, after) = rest.split_at_checked(take).unwrap_or((rest, &[]));
                    out.extend_from_slice(data);
                    rest = after;
                    // `take` never exceeds `remaining`; saturate all the same.
                    let remaining = remaining.saturating_sub(data.len() as u64);
                    self.state = if remaining == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining }
                    };
                }
                _ => {
                    let Some((&byte, after)) = rest.split_first() else {
                        break;
                    };
                    rest = after;
                    if let Err(e) = self.step(byte) {
                        self.state = State::Failed(e);
                        return Err(e);
                    }
                }
            }
        }
        Ok(Progress {
            consumed: input.len() - rest.len(),
            done: self.state == State::Done,
        })
    }

    fn too_large(&self) -> HttpError {
        HttpError::BodyTooLarge {
            limit: self.max_body,
        }
    }

    /// Advances the line-oriented states by one byte.
    fn step(&mut self, byte: u8) -> Result<(), HttpError> {
        self.state = match self.state {
            State::Size { digits, value } => match (hex_value(byte), byte) {
                (Some(nibble), _) => {
                    if digits >= MAX_SIZE_DIGITS {
                        return Err(HttpError::BadChunk);
                    }
                    // 16 digits at most, so this cannot overflow; stay checked.
                    let value = value
                        .checked_mul(16)
                        .and_then(|v| v.checked_add(u64::from(nibble)))
                        .ok_or(HttpError::BadChunk)?;
                    if value > self.budget {
                        return Err(self.too_large());
                    }
                    State::Size {
                        digits: digits + 1,
                        value,
                    }
                }
                (None, _) if digits == 0 => return Err(HttpError::BadChunk),
                (None, b' ' | b'\t') => State::SizeWs { value },
                (None, b';') => State::Extension { value, len: 0 },
                (None, b'\r') => State::SizeLf { value },
                (None, _) => return Err(HttpError::BadChunk),
            },
            State::SizeWs { value } => match byte {
                b' ' | b'\t' => State::SizeWs { value },
                b';' => State::Extension { value, len: 0 },
                b'\r' => State::SizeLf { value },
                _ => return Err(HttpError::BadChunk),
            },
            State::Extension { value, len } => match byte {
                b'\r' => State::SizeLf { value },
                _ if len >= MAX_EXTENSION => return Err(HttpError::BadChunk),
                b'\t' => State::Extension {
                    value,
                    len: len + 1,
                },
                b if b.is_ascii_control() => return Err(HttpError::BadChunk),
                _ => State::Extension {
                    value,
                    len: len + 1,
                },
            },
            State::SizeLf { value } => match byte {
                b'\n' if value == 0 => State::TrailerStart,
                b'\n' => {
                    // Already checked per digit; the budget is what matters.
                    self.budget = self
                        .budget
                        .checked_sub(value)
                        .ok_or_else(|| self.too_large())?;
                    State::Data { remaining: value }
                }
                _ => return Err(HttpError::BadChunk),
            },
            State::DataCr => match byte {
                b'\r' => State::DataLf,
                _ => return Err(HttpError::BadChunk),
            },
            State::DataLf => match byte {
                b'\n' => State::Size {
                    digits: 0,
                    value: 0,
                },
                _ => return Err(HttpError::BadChunk),
            },
            State::TrailerStart => {
                self.count_trailer()?;
                match byte {
                    b'\r' => State::FinalLf,
                    b if is_tchar(b) => State::TrailerName,
                    _ => return Err(HttpError::BadChunk),
                }
            }
            State::TrailerName => {
                self.count_trailer()?;
                match byte {
                    b':' => State::TrailerValue,
                    b if is_tchar(b) => State::TrailerName,
                    _ => return Err(HttpError::BadChunk),
                }
            }
            State::TrailerValue => {
                self.count_trailer()?;
                match byte {
                    b'\r' => State::TrailerLf,
                    b'\t' => State::TrailerValue,
                    b if b.is_ascii_control() => return Err(HttpError::BadChunk),
                    _ => State::TrailerValue,
                }
            }
            State::TrailerLf => {
                self.count_trailer()?;
                match byte {
                    b'\n' => State::TrailerStart,
                    _ => return Err(HttpError::BadChunk),
                }
            }
            State::FinalLf => {
                self.count_trailer()?;
                match byte {
                    b'\n' => State::Done,
                    _ => return Err(HttpError::BadChunk),
                }
            }
            // `feed` handles these without calling `step`.
            State::Data { .. } | State::Done | State::Failed(_) => self.state,
        };
        Ok(())
    }

    fn count_trailer(&mut self) -> Result<(), HttpError> {
        self.trailer_len += 1;
        if self.trailer_len > MAX_TRAILERS {
            return Err(HttpError::BadChunk);
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// tchar (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;

    const MAX: usize = 1 << 20;

    /// Feeds everything at once; returns (decoded, consumed) or the error.
    fn decode_all(input: &[u8], max_body: usize) -> Result<(Vec<u8>, usize), HttpError> {
        let mut d = ChunkedDecoder::new(max_body);
        let mut out = Vec::new();
        let p = d.feed(input, &mut out)?;
        if p.done {
            Ok((out, p.consumed))
        } else {
            assert_eq!(
                p.consumed,
                input.len(),
                "an unfinished body consumes everything"
            );
            Err(HttpError::Malformed) // stands for "incomplete" in the table
        }
    }

    const INCOMPLETE: HttpError = HttpError::Malformed;

    /// (name, wire bytes, decoded body or error; `INCOMPLETE` = not done).
    type Case = (
        &'static str,
        &'static [u8],
        Result<&'static [u8], HttpError>,
    );

    fn cases() -> Vec<Case> {
        use HttpError::BadChunk;
        const TOO_LARGE: HttpError = HttpError::BodyTooLarge { limit: TABLE_MAX };
        vec![
            ("empty body", b"0\r\n\r\n", Ok(b"")),
            ("one chunk", b"5\r\nhello\r\n0\r\n\r\n", Ok(b"hello")),
            (
                "two chunks",
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                Ok(b"hello world"),
            ),
            (
                "uppercase hex",
                b"A\r\n0123456789\r\n0\r\n\r\n",
                Ok(b"0123456789"),
            ),
            (
                "lowercase hex",
                b"a\r\n0123456789\r\n0\r\n\r\n",
                Ok(b"0123456789"),
            ),
            (
                "leading zeros",
                b"0005\r\nhello\r\n000\r\n\r\n",
                Ok(b"hello"),
            ),
            (
                "extension",
                b"5;name=value\r\nhello\r\n0;last\r\n\r\n",
                Ok(b"hello"),
            ),
            (
                "extension quoted",
                b"5;a=\"x;y\" ; b\r\nhello\r\n0\r\n\r\n",
                Ok(b"hello"),
            ),
            (
                "whitespace before extension",
                b"5 \t;a\r\nhello\r\n0\r\n\r\n",
                Ok(b"hello"),
            ),
            (
                "whitespace before crlf",
                b"5 \r\nhello\r\n0\r\n\r\n",
                Ok(b"hello"),
            ),
            (
                "trailers",
                b"5\r\nhello\r\n0\r\nExpires: never\r\nX-Sum:1\r\n\r\n",
                Ok(b"hello"),
            ),
            ("empty trailer value", b"0\r\nX-Empty:\r\n\r\n", Ok(b"")),
            (
                "data with crlf inside",
                b"4\r\n\r\n\r\n\r\n0\r\n\r\n",
                Ok(b"\r\n\r\n"),
            ),
            (
                "binary data",
                b"3\r\n\0\xff\n\r\n0\r\n\r\n",
                Ok(b"\0\xff\n"),
            ),
            (
                "budget exact",
                b"10\r\n0123456789abcdef\r\n0\r\n\r\n",
                Ok(b"0123456789abcdef"),
            ),
            ("empty size", b"\r\nhello\r\n0\r\n\r\n", Err(BadChunk)),
            ("extension without size", b";x\r\n\r\n", Err(BadChunk)),
            ("non-hex size", b"g\r\n", Err(BadChunk)),
            ("hex prefix", b"0x5\r\nhello\r\n0\r\n\r\n", Err(BadChunk)),
            ("signed size", b"+5\r\nhello\r\n0\r\n\r\n", Err(BadChunk)),
            ("space inside size", b"1 0\r\n", Err(BadChunk)),
            (
                "bare lf after size",
                b"5\nhello\r\n0\r\n\r\n",
                Err(BadChunk),
            ),
            ("bare cr after size", b"5\rhello\r\n", Err(BadChunk)),
            ("lf in extension", b"5;a\nhello\r\n0\r\n\r\n", Err(BadChunk)),
            (
                "nul in extension",
                b"5;a\0\r\nhello\r\n0\r\n\r\n",
                Err(BadChunk),
            ),
            ("data too long", b"5\r\nhello!\r\n0\r\n\r\n", Err(BadChunk)),
            (
                "bare lf after data",
                b"5\r\nhello\n0\r\n\r\n",
                Err(BadChunk),
            ),
            ("missing final crlf", b"0\r\nX\r\n", Err(BadChunk)),
            ("bare lf final", b"0\r\n\n", Err(BadChunk)),
            (
                "trailer without colon",
                b"0\r\nNoColon\r\n\r\n",
                Err(BadChunk),
            ),
            ("trailer empty name", b"0\r\n: v\r\n\r\n", Err(BadChunk)),
            (
                "trailer space in name",
                b"0\r\nA B: v\r\n\r\n",
                Err(BadChunk),
            ),
            (
                "trailer obs-fold",
                b"0\r\nA: v\r\n w\r\n\r\n",
                Err(BadChunk),
            ),
            ("trailer bare lf", b"0\r\nA: v\n\r\n", Err(BadChunk)),
            ("trailer nul", b"0\r\nA: \0\r\n\r\n", Err(BadChunk)),
            (
                "17 digits",
                b"00000000000000005\r\nhello\r\n0\r\n\r\n",
                Err(BadChunk),
            ),
            ("over budget announced", b"11\r\n", Err(TOO_LARGE)),
            (
                "over budget in sum",
                b"8\r\n01234567\r\n9\r\n",
                Err(TOO_LARGE),
            ),
            ("huge size", b"FFFFFFFFFFFFFFFF\r\n", Err(TOO_LARGE)),
            ("incomplete data", b"5\r\nhel", Err(INCOMPLETE)),
            ("incomplete trailers", b"0\r\nA: b\r\n", Err(INCOMPLETE)),
        ]
    }

    /// The table runs with a 16-byte budget so the budget cases are short.
    const TABLE_MAX: usize = 16;

    #[test]
    fn table() {
        for (name, input, want) in cases() {
            let got = decode_all(input, TABLE_MAX);
            match want {
                Ok(body) => {
                    let (out, consumed) = got.unwrap_or_else(|e| panic!("{name}: {e:?}"));
                    assert_eq!(out, body, "{name}");
                    assert_eq!(consumed, input.len(), "{name}");
                }
                Err(e) => assert_eq!(got.err(), Some(e), "{name}"),
            }
        }
    }

    /// Feeds `input` split into pieces at `cuts`, returning the same shape as `decode_all`.
    fn decode_pieces(
        input: &[u8],
        pieces: &[&[u8]],
        max_body: usize,
    ) -> Result<(Vec<u8>, usize), HttpError> {
        let mut d = ChunkedDecoder::new(max_body);
        let mut out = Vec::new();
        let mut total = 0;
        for piece in pieces {
            let p = d.feed(piece, &mut out)?;
            total += p.consumed;
            if p.done {
                return Ok((out, total));
            }
            assert_eq!(
                p.consumed,
                piece.len(),
                "unfinished body consumes every byte"
            );
        }
        assert_eq!(total, input.len());
        Err(INCOMPLETE)
    }

    #[test]
    fn one_byte_at_a_time() {
        for (name, input, _) in cases() {
            let pieces: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(
                decode_pieces(input, &pieces, TABLE_MAX),
                decode_all(input, TABLE_MAX),
                "{name}"
            );
        }
    }

    #[test]
    fn every_split_point() {
        for (name, input, _) in cases() {
            let whole = decode_all(input, TABLE_MAX);
            for cut in 0..=input.len() {
                let (a, b) = input.split_at(cut);
                assert_eq!(
                    decode_pieces(input, &[a, b], TABLE_MAX),
                    whole,
                    "{name}: cut {cut}"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_incomplete_or_the_same_error() {
        for (name, input, want) in cases() {
            for cut in 0..input.len() {
                let got = decode_all(&input[..cut], TABLE_MAX).err();
                match want {
                    Ok(_) => assert_eq!(got, Some(INCOMPLETE), "{name}: cut {cut}"),
                    Err(e) => assert!(
                        got == Some(INCOMPLETE) || got == Some(e),
                        "{name}: cut {cut}: {got:?}"
                    ),
                }
            }
        }
    }

    #[test]
    fn stops_at_end_of_body() {
        let input = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let mut d = ChunkedDecoder::new(MAX);
        let mut out = Vec::new();
        let p = d.feed(input, &mut out).unwrap();
        assert_eq!(
            p,
            Progress {
                consumed: 13,
                done: true
            }
        );
        assert_eq!(out, b"abc");
        assert_eq!(
            d.feed(b"more", &mut out),
            Ok(Progress {
                consumed: 0,
                done: true
            })
        );
    }

    #[test]
    fn error_is_sticky() {
        let mut d = ChunkedDecoder::new(MAX);
        let mut out = Vec::new();
        assert_eq!(d.feed(b"z", &mut out), Err(HttpError::BadChunk));
        assert_eq!(d.feed(b"0\r\n\r\n", &mut out), Err(HttpError::BadChunk));
    }

    #[test]
    fn budget_is_checked_before_appending() {
        let mut d = ChunkedDecoder::new(4);
        let mut out = Vec::new();
        assert_eq!(
            d.feed(b"5\r\nhel", &mut out),
            Err(HttpError::BodyTooLarge { limit: 4 })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn overflow_and_digit_limit() {
        // With no budget to speak of, 16 F's is the largest size; a 17th digit is refused.
        let mut d = ChunkedDecoder::new(usize::MAX);
        let mut out = Vec::new();
        let p = d.feed(b"FFFFFFFFFFFFFFFF\r\nab", &mut out).unwrap();
        assert_eq!(
            p,
            Progress {
                consumed: 20,
                done: false
            }
        );
        assert_eq!(out, b"ab");
        let mut d = ChunkedDecoder::new(usize::MAX);
        assert_eq!(
            d.feed(b"1FFFFFFFFFFFFFFFF\r\n", &mut out),
            Err(HttpError::BadChunk)
        );
    }

    #[test]
    fn extension_and_trailer_limits() {
        let mut ext = b"1;".to_vec();
        ext.resize(2 + MAX_EXTENSION, b'x');
        let mut ok = ext.clone();
        ok.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
        assert_eq!(decode_all(&ok, MAX).map(|r| r.0), Ok(b"a".to_vec()));
        let mut long = ext;
        long.extend_from_slice(b"x\r\na\r\n0\r\n\r\n");
        assert_eq!(decode_all(&long, MAX).err(), Some(HttpError::BadChunk));

        let line = b"X-Pad: 0123456789012345678901234567890123456789012345678901234\r\n";
        assert_eq!(line.len(), 64);
        let mut body = b"0\r\n".to_vec();
        // Trailers plus the final CRLF exactly at the limit.
        for _ in 0..(MAX_TRAILERS - 64) / 64 {
            body.extend_from_slice(line);
        }
        body.extend_from_slice(&line[..62 - 2]);
        body.extend_from_slice(b"\r\n\r\n");
        assert_eq!(body.len() - 3, MAX_TRAILERS);
        assert_eq!(decode_all(&body, MAX).map(|r| r.1), Ok(body.len()));
        let mut over = b"0\r\nX".to_vec();
        over.extend_from_slice(&body[3..]);
        assert_eq!(decode_all(&over, MAX).err(), Some(HttpError::BadChunk));
    }

    #[test]
    fn large_body_in_random_pieces() {
        let mut rng = XorShift(7);
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for _ in 0..200 {
            let n = rng.below(3000) + 1;
            let chunk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            wire.extend_from_slice(format!("{n:X};i=1\r\n").as_bytes());
            wire.extend_from_slice(&chunk);
            wire.extend_from_slice(b"\r\n");
            want.extend_from_slice(&chunk);
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let mut pieces = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let (a, b) = rest.split_at((rng.below(700) + 1).min(rest.len()));
            pieces.push(a);
            rest = b;
        }
        let (out, consumed) = decode_pieces(&wire, &pieces, MAX).unwrap();
        assert_eq!(consumed, wire.len());
        assert!(out == want);
    }

    #[test]
    fn garbage_never_panics() {
        const ALPHABET: &[u8] = b"0123456789abcdefABCDEFxyz\r\n;=: \t\0\"";
        let valid = b"5;a=b\r\nhello\r\n6\r\n world\r\n0\r\nX: y\r\n\r\n";
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        for round in 0..20_000 {
            let len = rng.below(120);
            let input: Vec<u8> = match round % 3 {
                0 => (0..len).map(|_| rng.next() as u8).collect(),
                1 => (0..len)
                    .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                    .collect(),
                _ => {
                    let mut b = valid.to_vec();
                    for _ in 0..1 + rng.below(3) {
                        let at = rng.below(b.len());
                        b[at] = ALPHABET[rng.below(ALPHABET.len())];
                    }
                    b
                }
            };
            let max_body = rng.below(64);
            let mut d = ChunkedDecoder::new(max_body);
            let mut out = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let (piece, after) = rest.split_at((rng.below(8) + 1).min(rest.len()));
                rest = after;
                match d.feed(piece, &mut out) {
                    Ok(p) => {
                        assert!(p.consumed <= piece.len());
                        if p.done {
                            break;
                        }
                        assert_eq!(p.consumed, piece.len());
                    }
                    Err(_) => break,
                }
            }
            assert!(out.len() <= max_body);
        }
    }
}
