//! Listening sockets: one `SO_REUSEPORT` listener per worker and address, so the kernel spreads new connections
//! over the workers; and the options of accepted sockets.
//!
//! `TCP_NODELAY` is set once on each listener: Linux copies a listener's TCP options into every socket it
//! accepts, so no connection needs a `setsockopt` of its own for it (one system call less per connection, the
//! commonest cost of a subscribe storm; `accepted_sockets_inherit_nodelay` checks the kernel does so).
//!
//! With port 0 the first bind picks the port and every other worker binds that same port.
//!
//! `SO_REUSEPORT` would also let a second spout (or anything else of the same user that sets it) bind a port
//! this one serves, and the kernel would then split new connections between the two processes without a word:
//! subscribers on one, publishers on the other, events lost. So before binding a named port, a probe socket
//! without `SO_REUSEPORT` claims it for a moment; if anything already listens there, the probe fails and spout
//! refuses to start.

use std::io;
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Api, Listen};

/// The accept backlog asked for; the kernel caps it at `net.core.somaxconn` (logged at start).
pub const BACKLOG: i32 = 65_535;

/// Descriptors a spout process keeps back from connections: per worker its epoll, waker, spare and one per
/// listener; plus stdio, the signal pipe and some slack for the process. `main` subtracts them from the fd limit
/// to get the connection ceiling, and `spout doctor` from the limit it finds.
pub fn reserved_descriptors(workers: usize, listeners: usize) -> u64 {
    32 + workers as u64 * (4 + listeners as u64)
}

/// A bound listener, the API it serves, and whether its connections start with a PROXY protocol header.
pub struct BoundListener {
    pub listener: TcpListener,
    pub api: Api,
    pub proxy: bool,
}

fn new_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // SO_REUSEADDR: a restarted spout binds over its predecessor's TIME_WAIT connections.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = new_socket(addr, true)?;
    socket.set_nonblocking(true)?;
    // Events are small and latency matters, so no Nagle delay; accepted sockets inherit it (module doc).
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Fails with `AddrInUse` when something already listens on `addr`, even with `SO_REUSEPORT` (see the module
/// doc). The probe is closed before the workers bind.
fn ensure_unclaimed(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    new_socket(addr, false)?
        .bind(&addr.into())
        .map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => io::Error::new(
                e.kind(),
                "address already in use (is another spout running on it?)",
            ),
            _ => e,
        })
}

/// Binds every `--listen` address once per worker. Returns the listeners per worker and the addresses actually
/// bound (with the real port where 0 was asked), in `--listen` order.
pub fn bind_all(
    listen: &[Listen],
    workers: usize,
) -> io::Result<(Vec<Vec<BoundListener>>, Vec<Listen>)> {
    let mut per_worker: Vec<Vec<BoundListener>> = (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(listen.len());
    for spec in listen {
        let bind = |addr: SocketAddr| bind_one(addr).map_err(|e| cannot_listen(addr, e));
        ensure_unclaimed(spec.addr).map_err(|e| cannot_listen(spec.addr, e))?;
        let first = bind(spec.addr)?;
        let addr = first.local_addr()?;
        bound.push(Listen { addr, ..*spec });
        let mut first = Some(first);
        for listeners in per_worker.iter_mut() {
            let listener = match first.take() {
                Some(listener) => listener,
                None => bind(addr)?,
            };
            listeners.push(BoundListener {
                listener,
                api: spec.api,
                proxy: spec.proxy,
            });
        }
    }
    Ok((per_worker, bound))
}

fn cannot_listen(addr: SocketAddr, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
}

/// Bounds the kernel send buffer of a socket that has become an event stream (`--socket-send-buffer`; 0 leaves the
/// kernel's autotuning). Set then, not at accept: requests and their answers keep the kernel's default, and the
/// bound is what a stream whose subscriber reads slowly can hold in kernel memory on top of `--max-queued-bytes`.
pub fn size_stream_send_buffer(stream: &TcpStream, bytes: usize) {
    if bytes == 0 {
        return;
    }
    if let Err(e) = socket2::SockRef::from(stream).set_send_buffer_size(bytes) {
        log::debug!("SO_SNDBUF failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let spec = Listen {
            addr: "127.0.0.1:0".parse().unwrap(),
            api: Api::Native,
            proxy: false,
        };
        let (mut per_worker, bound) = bind_all(&[spec], 1).unwrap();
        let listener = per_worker.remove(0).remove(0).listener;
        let _client = std::net::TcpStream::connect(bound[0].addr).unwrap();
        let accepted = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("accept failed: {e}"),
            }
        };
        assert!(accepted.nodelay().unwrap());
    }
}
