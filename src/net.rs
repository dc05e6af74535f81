//! Listening sockets: one `SO_REUSEPORT` listener per worker and address, so the kernel spreads new connections
//! over the workers; and the options set on accepted sockets.
//!
//! With port 0 the first bind picks the port and every other worker binds that same port.

use std::io;
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Api, Listen};

/// The accept backlog asked for; the kernel caps it at `net.core.somaxconn` (logged at start).
pub const BACKLOG: i32 = 65_535;

/// A bound listener and the API it serves.
pub struct BoundListener {
    pub listener: TcpListener,
    pub api: Api,
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
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
        let bind = |addr: SocketAddr| {
            bind_one(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
        };
        let first = bind(spec.addr)?;
        let addr = first.local_addr()?;
        bound.push(Listen {
            addr,
            api: spec.api,
        });
        let mut first = Some(first);
        for listeners in per_worker.iter_mut() {
            let listener = match first.take() {
                Some(listener) => listener,
                None => bind(addr)?,
            };
            listeners.push(BoundListener {
                listener,
                api: spec.api,
            });
        }
    }
    Ok((per_worker, bound))
}

/// Options on every accepted socket: events are small and latency matters, so no Nagle delay.
pub fn prepare_accepted(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        log::debug!("TCP_NODELAY failed: {e}");
    }
}
