//! spout: a minimal, low-level, high-performance pub/sub push server.
#![forbid(unsafe_code)]
