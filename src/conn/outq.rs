//! `OutQueue`: the bytes waiting to be written to one connection.
//!
//! Shared frames are queued as `Arc` clones, never copied; a response built for this connection alone is queued
//! as an owned boxed slice, and a few bytes made per recipient (a WebSocket header in front of shared payload
//! parts) by value in the queue slot. `write_to` sends as many chunks as fit in one `write_vectored` call, so a subscriber
//! with many queued events gets them in one syscall.
//!
//! Invariant: `bytes` is the number of unwritten bytes in `chunks` after `offset`. An emptied queue gives its
//! allocation back, so an idle connection holds no output buffer.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use crate::message::Frame;

/// How many chunks one vectored write carries at most (Linux's `UIO_MAXIOV` is 1024; 64 keeps the stack array
/// small and is plenty: a write is also capped by the socket buffer).
pub const MAX_IOV: usize = 64;

/// One queued piece of output.
#[derive(Debug)]
pub enum Chunk {
    /// A frame shared with other subscribers (an encoded event).
    Shared(Frame),
    /// A shared frame from an offset on: the part of an event's encoding after its id, behind an id made for
    /// this connection (a cursor over the stream's channels).
    SharedFrom(Frame, u32),
    /// Bytes made for this connection alone (a response, a stream head).
    Owned(Box<[u8]>),
    /// Constant bytes (heartbeat comments).
    Static(&'static [u8]),
    /// A few bytes made for this connection, held in the queue slot itself: the WebSocket header of a frame whose
    /// payload is queued as shared chunks behind it (no allocation per recipient).
    Inline(Inline),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(frame) => frame,
            Chunk::SharedFrom(frame, from) => frame.get(*from as usize..).unwrap_or_default(),
            Chunk::Owned(bytes) => bytes,
            Chunk::Static(bytes) => bytes,
            Chunk::Inline(inline) => inline.as_bytes(),
        }
    }
}

/// Up to `Inline::CAPACITY` bytes stored by value: sized so that a `Chunk` stays as large as a fat pointer plus
/// its tag, and a WebSocket frame header (at most 10 bytes, RFC 6455 §5.2) fits.
#[derive(Clone, Copy, Debug)]
pub struct Inline {
    len: u8,
    bytes: [u8; Inline::CAPACITY],
}

impl Inline {
    pub const CAPACITY: usize = 14;

    /// `None` when `bytes` is longer than `CAPACITY`.
    pub fn new(bytes: &[u8]) -> Option<Inline> {
        let mut inline = Inline {
            len: u8::try_from(bytes.len()).ok()?,
            bytes: [0; Inline::CAPACITY],
        };
        inline.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(inline)
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// What one `write_to` call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub bytes: usize,
    /// Chunks fully written.
    pub chunks: usize,
}

#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    offset: usize,
    bytes: usize,
}

impl OutQueue {
    pub fn push(&mut self, chunk: Chunk) {
        let len = chunk.bytes().len();
        if len == 0 {
            return;
        }
        self.bytes += len;
        self.chunks.push_back(chunk);
    }

    /// Unwritten bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// What the queue holds in memory, roughly: its unwritten bytes and a queue slot per chunk. Answers a client
    /// provokes (pongs, replies) are held to the output cap by this, not by bytes alone: an empty pong is 2 bytes
    /// on the wire but a whole slot in the queue, so a flood of empty pings would otherwise queue millions of
    /// them under a cap counted in bytes.
    pub fn footprint(&self) -> usize {
        self.bytes + self.chunks.len() * std::mem::size_of::<Chunk>()
    }

    /// Chunks waiting, the front one counted even when partly written.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// One vectored write of up to `MAX_IOV` chunks. Errors are returned as they are (`conn/io.rs` classifies them).
    pub fn write_to<W: Write>(&mut self, sink: &mut W) -> io::Result<Written> {
        let written = match self.chunks.len() {
            0 => return Ok(Written::default()),
            // One chunk (the common case for a paced subscriber) goes out with a plain `write`, and without filling
            // the slice array: the kernel's `writev` path costs more per call for a single buffer.
            1 => sink.write(self.unwritten_front())?,
            _ => {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let mut count = 0;
                for (slot, chunk) in slices.iter_mut().zip(&self.chunks) {
                    *slot = IoSlice::new(chunk.bytes());
                    count += 1;
                }
                slices[0] = IoSlice::new(self.unwritten_front());
                sink.write_vectored(&slices[..count])?
            }
        };
        Ok(self.advance(written))
    }

    /// What is left to write of the front chunk (empty when there is none).
    fn unwritten_front(&self) -> &[u8] {
        let bytes = self.chunks.front().map_or(&[][..], Chunk::bytes);
        bytes
            .get(self.offset.min(bytes.len())..)
            .unwrap_or_default()
    }

    fn advance(&mut self, mut written: usize) -> Written {
        let total = written;
        let mut chunks = 0;
        while let Some(front) = self.chunks.front() {
            let left = front.bytes().len() - self.offset;
            if written < left {
                self.offset += written;
                break;
            }
            written -= left;
            self.offset = 0;
            self.chunks.pop_front();
            chunks += 1;
        }
        self.bytes -= total;
        if self.chunks.is_empty() {
            debug_assert_eq!(self.bytes, 0);
            self.chunks = VecDeque::new();
        }
        Written {
            bytes: total,
            chunks,
        }
    }

    /// Drops everything queued and gives the memory back.
    pub fn clear(&mut self) {
        *self = OutQueue::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that accepts at most `limit` bytes per call.
    struct Trickle {
        got: Vec<u8>,
        limit: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.limit - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn queue() -> OutQueue {
        let mut q = OutQueue::default();
        q.push(Chunk::Owned(b"head;".to_vec().into()));
        q.push(Chunk::Inline(Inline::new(b"ev").expect("fits")));
        q.push(Chunk::Shared(Frame::from(&b"ent1;"[..])));
        q.push(Chunk::Static(b""));
        q.push(Chunk::Static(b"beat;"));
        q.push(Chunk::SharedFrom(Frame::from(&b"xxend"[..]), 2));
        q
    }

    #[test]
    fn inline_chunks_hold_a_websocket_header_and_keep_chunk_small() {
        assert!(Inline::new(&[0u8; Inline::CAPACITY]).is_some());
        assert!(Inline::new(&[0u8; Inline::CAPACITY + 1]).is_none());
        assert_eq!(
            Inline::new(b"abc").map(|i| i.as_bytes().to_vec()),
            Some(b"abc".to_vec())
        );
        assert!(
            std::mem::size_of::<Chunk>() <= 24,
            "Chunk grew to {}",
            std::mem::size_of::<Chunk>()
        );
    }

    #[test]
    fn everything_goes_out_in_one_call_when_the_socket_takes_it() {
        let mut q = queue();
        assert_eq!((q.bytes(), q.len()), (20, 5));
        let mut sink = Trickle {
            got: Vec::new(),
            limit: 1 << 20,
            calls: 0,
        };
        let w = q.write_to(&mut sink).expect("write");
        assert_eq!(
            w,
            Written {
                bytes: 20,
                chunks: 5
            }
        );
        assert_eq!(
            (sink.got.as_slice(), sink.calls),
            (&b"head;event1;beat;end"[..], 1)
        );
        assert!(q.is_empty());
    }

    #[test]
    fn partial_writes_resume_at_the_right_byte() {
        for limit in 1..21 {
            let mut q = queue();
            let mut sink = Trickle {
                got: Vec::new(),
                limit,
                calls: 0,
            };
            while !q.is_empty() {
                q.write_to(&mut sink).expect("write");
            }
            assert_eq!(sink.got, b"head;event1;beat;end", "limit {limit}");
        }
    }

    #[test]
    fn at_most_max_iov_chunks_per_call() {
        let mut q = OutQueue::default();
        for _ in 0..MAX_IOV + 5 {
            q.push(Chunk::Static(b"x"));
        }
        let mut sink = Trickle {
            got: Vec::new(),
            limit: 1 << 20,
            calls: 0,
        };
        assert_eq!(q.write_to(&mut sink).expect("write").chunks, MAX_IOV);
        assert_eq!(q.bytes(), 5);
    }
}
