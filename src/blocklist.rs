//! The IP block list: exact addresses and CIDR ranges, IPv4 and IPv6.

use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;
use core::str::FromStr;

/// An address range in CIDR form (`10.0.0.0/8`, `2001:db8::/32`), or one
/// address (a `/32` or `/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The range of `prefix` leading bits of `addr`; host bits are cleared.
    /// Returns `None` if `prefix` exceeds the address length (32 or 128).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpNet> {
        // An IPv4-mapped IPv6 range (`::ffff:a.b.c.d/96+n`) is the IPv4
        // range `a.b.c.d/n`, the form `contains` compares against.
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return None;
        }
        Some(IpNet { addr: mask(addr, prefix), prefix })
    }

    /// Exactly one address.
    pub fn host(addr: IpAddr) -> IpNet {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        IpNet { addr, prefix }
    }

    /// The network address.
    pub const fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub const fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this range. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) matches the IPv4 range it maps to.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            IpAddr::V6((bits & m).into())
        }
    }
}

impl From<IpAddr> for IpNet {
    fn from(addr: IpAddr) -> IpNet {
        IpNet::host(addr)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An [`IpNet`] string did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpNetParseError;

impl fmt::Display for IpNetParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an address or CIDR range: write e.g. 192.0.2.7, 10.0.0.0/8 or 2001:db8::/32")
    }
}

impl core::error::Error for IpNetParseError {}

impl FromStr for IpNet {
    type Err = IpNetParseError;
    fn from_str(s: &str) -> Result<IpNet, IpNetParseError> {
        match s.split_once('/') {
            None => s.parse().map(IpNet::host).map_err(|_| IpNetParseError),
            Some((a, p)) => {
                let addr: IpAddr = a.parse().map_err(|_| IpNetParseError)?;
                let prefix: u8 = p.parse().map_err(|_| IpNetParseError)?;
                IpNet::new(addr, prefix).ok_or(IpNetParseError)
            }
        }
    }
}

/// A set of blocked ranges, checked for every datagram and `connect`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockList {
    nets: Vec<IpNet>,
}

impl BlockList {
    /// Adds a range; returns false if it was already present.
    pub fn add(&mut self, net: IpNet) -> bool {
        match self.nets.binary_search(&net) {
            Ok(_) => false,
            Err(i) => {
                self.nets.insert(i, net);
                true
            }
        }
    }

    /// Removes a range exactly as added; returns false if absent.
    pub fn remove(&mut self, net: IpNet) -> bool {
        match self.nets.binary_search(&net) {
            Ok(i) => {
                self.nets.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Whether any range contains `ip`.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        !self.nets.is_empty() && self.nets.iter().any(|n| n.contains(ip))
    }

    /// The ranges, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &IpNet> {
        self.nets.iter()
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.nets.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_v4_v6_and_exact() {
        let mut b = BlockList::default();
        assert!(b.add("10.1.0.0/16".parse().unwrap()));
        assert!(!b.add("10.1.2.3/16".parse().unwrap()), "host bits are cleared");
        b.add("2001:db8::/32".parse().unwrap());
        b.add("192.0.2.7".parse().unwrap());
        assert!(b.contains(ip("10.1.255.1")));
        assert!(!b.contains(ip("10.2.0.1")));
        assert!(b.contains(ip("2001:db8:1::5")));
        assert!(!b.contains(ip("2001:db9::5")));
        assert!(b.contains(ip("192.0.2.7")));
        assert!(!b.contains(ip("192.0.2.8")));
        assert!(b.contains(ip("::ffff:10.1.0.9")), "v4-mapped v6 matches v4 range");
        // A peer seen on a dual-stack socket, as `ban` blocks it.
        b.add(IpNet::host(ip("::ffff:198.51.100.4")));
        assert!(b.contains(ip("::ffff:198.51.100.4")) && b.contains(ip("198.51.100.4")));
        b.add("::ffff:203.0.113.0/120".parse().unwrap());
        assert!(b.contains(ip("203.0.113.77")));
        assert!(b.remove("192.0.2.7/32".parse().unwrap()));
        assert!(!b.contains(ip("192.0.2.7")));
        assert!("0.0.0.0/0".parse::<IpNet>().unwrap().contains(ip("8.8.8.8")));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nonsense".parse::<IpNet>().is_err());
    }
}
