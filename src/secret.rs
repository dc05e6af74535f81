//! Comparing secrets (publish keys, tokens) a client presents with the ones the server holds.

/// Whether `a` equals the secret `b`, compared without an early exit, so the time taken does not reveal how much
/// of the secret matched (only its length may show).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, byte) in b.iter().enumerate() {
        diff |= byte ^ a.get(i).copied().unwrap_or(!byte);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_matches_only_equal_keys() {
        assert!(constant_time_eq(b"secret", b"secret"));
        for other in [
            &b""[..],
            b"secre",
            b"secreT",
            b"secret!",
            b"\xff\xff\xff\xff\xff\xff",
        ] {
            assert!(!constant_time_eq(other, b"secret"), "{other:?}");
        }
    }
}
