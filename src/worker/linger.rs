//! Sockets whose connection is over but whose last answer may still sit in the kernel.
//!
//! A connection that closes after its final answer (a refusal, a `Connection: close` answer, a WebSocket close
//! after a protocol error) has written that answer only into its socket's send buffer. A plain close then would
//! leave the kernel holding whatever the peer has not taken, in FIN-WAIT-1, for as long as the peer keeps its
//! socket open without reading: a hostile or dead peer could pin up to a send buffer (megabytes, with autotuning)
//! per connection in kernel memory. So the worker keeps such a socket here instead, its write side shut down (the
//! peer sees the end of the stream after the last byte): a peer that ends its side too lets it close normally,
//! and one that has not done so by the end of the connection's linger gets an abortive close (a reset, which
//! discards what is unsent).
//!
//! The connection itself is gone (unsubscribed, out of the slab) before its socket comes here; only the descriptor
//! and its kernel state remain, counted among the open connections until closed. Nothing here is registered with
//! the poll: `check` reads each socket once per tick, discarding what the peer still sends.

use std::net::Shutdown;
use std::time::Instant;

use mio::net::TcpStream;

use crate::conn::io::{self, IoOutcome};

/// Reads per socket and check: a peer that keeps sending is read a bounded amount per tick, then closed at the end
/// of its linger like any other.
const READS_PER_CHECK: usize = 4;

struct Lingering {
    socket: TcpStream,
    until: Instant,
}

/// The sockets a worker keeps until their peers have taken their last answer; see the module doc.
#[derive(Default)]
pub(super) struct Linger {
    sockets: Vec<Lingering>,
}

impl Linger {
    /// Keeps `socket`, whose connection wrote its last answer, until its peer ends its side or `until`. A socket
    /// whose write side cannot be shut down (the peer is gone) is closed at once; the return says whether it was
    /// kept.
    pub(super) fn keep(&mut self, socket: TcpStream, until: Instant) -> bool {
        if socket.shutdown(Shutdown::Write).is_err() {
            return false;
        }
        self.sockets.push(Lingering { socket, until });
        true
    }

    /// Closes the sockets whose peer has ended its side (normally) and those past their linger (abortively);
    /// returns how many it closed.
    pub(super) fn check(&mut self, now: Instant, buf: &mut [u8]) -> usize {
        let before = self.sockets.len();
        self.sockets.retain_mut(|lingering| {
            for _ in 0..READS_PER_CHECK {
                match io::read_once(&mut lingering.socket, buf) {
                    IoOutcome::Done(_) => {}
                    IoOutcome::WouldBlock => break,
                    IoOutcome::Closed | IoOutcome::Error(_) => return false,
                }
            }
            if now >= lingering.until {
                io::discard_unsent(&lingering.socket);
                return false;
            }
            true
        });
        before - self.sockets.len()
    }

    /// Closes every socket kept (the worker is exiting); returns how many.
    pub(super) fn close_all(&mut self) -> usize {
        let closed = self.sockets.len();
        self.sockets.clear();
        closed
    }
}
