//! Socket reads and writes, and the one place where socket errors are classified: `io::ErrorKind` for reads and
//! writes, the descriptor-exhaustion errnos for `accept`.

use std::io::{self, Read};

/// What a socket operation came to.
#[derive(Debug)]
pub enum IoOutcome {
    /// Bytes moved.
    Done(usize),
    /// Nothing more until the next readiness event.
    WouldBlock,
    /// The peer closed or reset the connection: expected, logged at debug and counted.
    Closed,
    /// Anything else: logged as a warning.
    Error(io::Error),
}

/// Classifies an I/O result. `Interrupted` is the caller's to retry (see `retrying`).
pub fn classify(result: io::Result<usize>) -> IoOutcome {
    match result {
        Ok(0) => IoOutcome::Closed,
        Ok(n) => IoOutcome::Done(n),
        Err(e) => match e.kind() {
            io::ErrorKind::WouldBlock => IoOutcome::WouldBlock,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
            | io::ErrorKind::TimedOut => IoOutcome::Closed,
            _ => IoOutcome::Error(e),
        },
    }
}

/// Whether an `accept` failed because the process (`EMFILE`) or the system (`ENFILE`) is out of file descriptors:
/// the listener stays readable and the client waits in the backlog until one is freed (`Worker::accept_all`).
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Makes the coming close of `socket` abortive (`SO_LINGER` with a zero timeout): the kernel discards unsent data
/// and answers with a reset instead of holding the data for a peer that does not read. Best effort.
pub fn discard_unsent(socket: &mio::net::TcpStream) {
    if let Err(e) = socket2::SockRef::from(socket).set_linger(Some(std::time::Duration::ZERO)) {
        log::debug!("SO_LINGER: {e}");
    }
}

/// Runs `op` again while it is interrupted by a signal, then classifies its result.
pub fn retrying(mut op: impl FnMut() -> io::Result<usize>) -> IoOutcome {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return classify(result),
        }
    }
}

/// One read into `buf`.
pub fn read_once<R: Read>(source: &mut R, buf: &mut [u8]) -> IoOutcome {
    retrying(|| source.read(buf))
}
