//! Go's JSON scanner (`encoding/json/scanner.go`), state for state: it finds the end of the first JSON value of a
//! body, as `Decoder.Decode` does, and words a syntax error exactly as Go does.
//!
//! Iterative, with the nesting stack bounded at Go's 10000 levels; no panics on any input.

use super::DecodeError;

/// Go's `maxNestingDepth`.
pub const MAX_DEPTH: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    BeginValue,
    BeginValueOrEmpty,
    BeginStringOrEmpty,
    BeginString,
    EndValue,
    InString,
    InStringEsc,
    /// Inside `\u`, with this many hex digits seen.
    InStringEscU(u8),
    Neg,
    One,
    Zero,
    Dot,
    Dot0,
    E,
    ESign,
    E0,
    /// Inside `true`, `false` or `null` (index into `LITERALS`), with this many bytes seen.
    Literal(u8, u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Context {
    ObjectKey,
    ObjectValue,
    ArrayValue,
}

/// `true`, `false`, `null`, and for each position after the first the context of Go's error when another byte
/// stands there.
const LITERALS: [(&[u8], [&str; 5]); 3] = [
    (
        b"true",
        [
            "",
            "in literal true (expecting 'r')",
            "in literal true (expecting 'u')",
            "in literal true (expecting 'e')",
            "",
        ],
    ),
    (
        b"false",
        [
            "",
            "in literal false (expecting 'a')",
            "in literal false (expecting 'l')",
            "in literal false (expecting 's')",
            "in literal false (expecting 'e')",
        ],
    ),
    (
        b"null",
        [
            "",
            "in literal null (expecting 'u')",
            "in literal null (expecting 'l')",
            "in literal null (expecting 'l')",
            "",
        ],
    ),
];

/// What one byte did to the scanner.
enum Step {
    Continue,
    /// The top-level value ended before this byte.
    EndBefore,
    /// The top-level value ended with this byte (a closing bracket).
    EndWith,
    Error(&'static str),
}

struct Scanner {
    state: State,
    stack: Vec<Context>,
}

pub fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

impl Scanner {
    fn step(&mut self, c: u8) -> Step {
        match self.state {
            State::BeginValueOrEmpty => {
                if is_space(c) {
                    Step::Continue
                } else if c == b']' {
                    self.end_value(c)
                } else {
                    self.begin_value(c)
                }
            }
            State::BeginValue => self.begin_value(c),
            State::BeginStringOrEmpty => {
                if is_space(c) {
                    Step::Continue
                } else if c == b'}' {
                    if let Some(top) = self.stack.last_mut() {
                        *top = Context::ObjectValue;
                    }
                    self.end_value(c)
                } else {
                    self.begin_string(c)
                }
            }
            State::BeginString => self.begin_string(c),
            State::EndValue => self.end_value(c),
            State::InString => {
                match c {
                    b'"' => self.state = State::EndValue,
                    b'\\' => self.state = State::InStringEsc,
                    0x00..=0x1F => return Step::Error("in string literal"),
                    _ => {}
                }
                Step::Continue
            }
            State::InStringEsc => match c {
                b'b' | b'f' | b'n' | b'r' | b't' | b'\\' | b'/' | b'"' => {
                    self.state = State::InString;
                    Step::Continue
                }
                b'u' => {
                    self.state = State::InStringEscU(0);
                    Step::Continue
                }
                _ => Step::Error("in string escape code"),
            },
            State::InStringEscU(seen) => {
                if !c.is_ascii_hexdigit() {
                    return Step::Error("in \\u hexadecimal character escape");
                }
                self.state = if seen == 3 {
                    State::InString
                } else {
                    State::InStringEscU(seen + 1)
                };
                Step::Continue
            }
            State::Neg => match c {
                b'0' => self.go(State::Zero),
                b'1'..=b'9' => self.go(State::One),
                _ => Step::Error("in numeric literal"),
            },
            State::One if c.is_ascii_digit() => Step::Continue,
            State::One | State::Zero => match c {
                b'.' => self.go(State::Dot),
                b'e' | b'E' => self.go(State::E),
                _ => self.end_value(c),
            },
            State::Dot if c.is_ascii_digit() => self.go(State::Dot0),
            State::Dot => Step::Error("after decimal point in numeric literal"),
            State::Dot0 => match c {
                b'0'..=b'9' => Step::Continue,
                b'e' | b'E' => self.go(State::E),
                _ => self.end_value(c),
            },
            State::E if c == b'+' || c == b'-' => self.go(State::ESign),
            State::E | State::ESign if c.is_ascii_digit() => self.go(State::E0),
            State::E | State::ESign => Step::Error("in exponent of numeric literal"),
            State::E0 if c.is_ascii_digit() => Step::Continue,
            State::E0 => self.end_value(c),
            State::Literal(which, seen) => {
                let Some((word, contexts)) = LITERALS.get(usize::from(which)) else {
                    return Step::Error("looking for beginning of value");
                };
                let at = usize::from(seen);
                if word.get(at) != Some(&c) {
                    return Step::Error(contexts.get(at).copied().unwrap_or(""));
                }
                self.state = if at + 1 == word.len() {
                    State::EndValue
                } else {
                    State::Literal(which, seen + 1)
                };
                Step::Continue
            }
        }
    }

    fn go(&mut self, state: State) -> Step {
        self.state = state;
        Step::Continue
    }

    fn begin_value(&mut self, c: u8) -> Step {
        match c {
            _ if is_space(c) => Step::Continue,
            b'{' => self.push(Context::ObjectKey, State::BeginStringOrEmpty),
            b'[' => self.push(Context::ArrayValue, State::BeginValueOrEmpty),
            b'"' => self.go(State::InString),
            b'-' => self.go(State::Neg),
            b'0' => self.go(State::Zero),
            b'1'..=b'9' => self.go(State::One),
            b't' => self.go(State::Literal(0, 1)),
            b'f' => self.go(State::Literal(1, 1)),
            b'n' => self.go(State::Literal(2, 1)),
            _ => Step::Error("looking for beginning of value"),
        }
    }

    fn begin_string(&mut self, c: u8) -> Step {
        match c {
            _ if is_space(c) => Step::Continue,
            b'"' => self.go(State::InString),
            _ => Step::Error("looking for beginning of object key string"),
        }
    }

    fn push(&mut self, context: Context, next: State) -> Step {
        self.stack.push(context);
        if self.stack.len() > MAX_DEPTH {
            return Step::Error("exceeded max depth");
        }
        self.go(next)
    }

    fn end_value(&mut self, c: u8) -> Step {
        let Some(top) = self.stack.last_mut() else {
            // A complete top-level value: whatever follows is not part of it.
            return Step::EndBefore;
        };
        if is_space(c) {
            self.state = State::EndValue;
            return Step::Continue;
        }
        match (*top, c) {
            (Context::ObjectKey, b':') => {
                *top = Context::ObjectValue;
                self.go(State::BeginValue)
            }
            (Context::ObjectKey, _) => Step::Error("after object key"),
            (Context::ObjectValue, b',') => {
                *top = Context::ObjectKey;
                self.go(State::BeginString)
            }
            (Context::ArrayValue, b',') => self.go(State::BeginValue),
            (Context::ObjectValue, b'}') | (Context::ArrayValue, b']') => {
                self.stack.pop();
                if self.stack.is_empty() {
                    return Step::EndWith;
                }
                self.go(State::EndValue)
            }
            (Context::ObjectValue, _) => Step::Error("after object key:value pair"),
            (Context::ArrayValue, _) => Step::Error("after array element"),
        }
    }
}

/// The span of the first JSON value in `body` (leading white space skipped), as `Decoder.Decode` reads it.
pub fn first_value(body: &[u8]) -> Result<(usize, usize), DecodeError> {
    let start = body
        .iter()
        .position(|c| !is_space(*c))
        .ok_or(DecodeError::Eof)?;
    let mut scanner = Scanner {
        state: State::BeginValue,
        stack: Vec::new(),
    };
    for (at, &c) in body.iter().enumerate().skip(start) {
        match scanner.step(c) {
            Step::Continue => {}
            Step::EndBefore => return Ok((start, at)),
            Step::EndWith => return Ok((start, at + 1)),
            Step::Error(context) => return Err(DecodeError::Syntax { byte: c, context }),
        }
    }
    // At the end of the input Go offers the scanner a space: a number or literal may end there.
    match scanner.step(b' ') {
        Step::EndBefore | Step::EndWith => Ok((start, body.len())),
        _ => Err(DecodeError::UnexpectedEof),
    }
}

/// Go's `quoteChar`: the byte as a Go character literal (a byte above 0x7F is shown as the Latin-1 character of
/// that number, as Go's `string(rune(c))` does).
pub fn quote_char(c: u8) -> String {
    match c {
        b'\'' => "'\\''".to_string(),
        b'"' => "'\"'".to_string(),
        b'\\' => "'\\\\'".to_string(),
        0x07 => "'\\a'".to_string(),
        0x08 => "'\\b'".to_string(),
        0x0C => "'\\f'".to_string(),
        b'\n' => "'\\n'".to_string(),
        b'\r' => "'\\r'".to_string(),
        b'\t' => "'\\t'".to_string(),
        0x0B => "'\\v'".to_string(),
        0x00..=0x1F | 0x7F => format!("'\\x{c:02x}'"),
        // Not printable for Go: C1 controls, no-break space, soft hyphen.
        0x80..=0xA0 | 0xAD => format!("'\\u{c:04x}'"),
        _ => format!("'{}'", char::from(c)),
    }
}
