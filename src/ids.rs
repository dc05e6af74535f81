//! Server-assigned random values: client ids for streams that do not name one, and the jitter of a drain's retry
//! hints. One generator per worker, so nothing here is shared or locked.

use std::time::SystemTime;

/// Server-assigned client ids: 16 hex digits from a per-worker xorshift generator seeded from the OS.
pub struct IdSource {
    state: u64,
}

impl IdSource {
    pub fn new() -> IdSource {
        let mut seed = [0u8; 8];
        if getrandom::getrandom(&mut seed).is_err() {
            // Uniqueness, not secrecy, is what client ids need; the clock is an acceptable fallback seed.
            seed = (SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64))
            .to_le_bytes();
        }
        IdSource {
            state: u64::from_le_bytes(seed) | 1,
        }
    }

    /// xorshift64*: full period over non-zero states, so values from one worker never repeat within 2^64 draws.
    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn next_client_id(&mut self) -> Box<str> {
        format!("{:016x}", self.next_u64()).into()
    }
}

impl Default for IdSource {
    fn default() -> Self {
        IdSource::new()
    }
}
