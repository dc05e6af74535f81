//! Open connections per client address, over all workers, for `--max-connections-per-ip`.
//!
//! A client's address is the socket's peer, or on a `+proxy` listener the address its PROXY protocol header names
//! (`proxy`): behind a load balancer every socket's peer is the balancer. A connection is counted once its address
//! is known (at accept, or when its header has been read) and given back when the worker reaps it. IPv4-mapped
//! IPv6 addresses count as the IPv4 address they map.
//!
//! Without a limit nothing is counted and no lock is taken. With one, the count is one map behind one lock, taken
//! once per connection opened and once per connection closed, never on the per-request or fan-out path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::sync::lock;

/// What `Peers::admit` decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// No limit is set: nothing counted, nothing to give back.
    Unlimited,
    /// Counted: give it back with `release` when the connection ends.
    Counted,
    /// The address has its limit of connections open: refuse this one.
    Refused,
}

/// See the module doc.
pub struct Peers {
    limit: Option<usize>,
    /// Keyed by client addresses: foldhash with a random seed, as the channel table's client-chosen keys.
    open: Mutex<HashMap<IpAddr, usize, foldhash::fast::RandomState>>,
}

impl Peers {
    pub fn new(limit: Option<usize>) -> Peers {
        Peers {
            limit,
            open: Mutex::new(HashMap::default()),
        }
    }

    /// The limit, if any.
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }

    /// Counts a new connection from `ip`, unless it is at its limit.
    pub fn admit(&self, ip: IpAddr) -> Admission {
        let Some(limit) = self.limit else {
            return Admission::Unlimited;
        };
        let mut open = lock(&self.open);
        let count = open.entry(ip.to_canonical()).or_insert(0);
        if *count >= limit {
            return Admission::Refused;
        }
        *count += 1;
        Admission::Counted
    }

    /// Gives back a connection `admit` counted.
    pub fn release(&self, ip: IpAddr) {
        let mut open = lock(&self.open);
        let ip = ip.to_canonical();
        if let Some(count) = open.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_limit_and_mapped_addresses_count_as_theirs() {
        let peers = Peers::new(Some(2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a_mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(peers.admit(a), Admission::Counted);
        assert_eq!(peers.admit(a_mapped), Admission::Counted);
        assert_eq!(peers.admit(a), Admission::Refused);
        assert_eq!(peers.admit(b), Admission::Counted);
        peers.release(a);
        assert_eq!(peers.admit(a_mapped), Admission::Counted);
        peers.release(a);
        peers.release(a);
        peers.release(b);
        assert!(lock(&peers.open).is_empty());
        assert_eq!(Peers::new(None).admit(a), Admission::Unlimited);
    }
}
