//! Address networks: `198.18.0.0/15`, `fd00::/8`, or a bare address (a /32 or /128). One
//! parser for the filter (`--host`), lab specs (subnets, addresses) and `explain`.
use std::net::{IpAddr, Ipv4Addr};

/// An address with a prefix length (the address may have host bits set: `198.18.0.1/24`
/// is an interface address; [`Cidr::network`] is its network).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// Why text is not a network; the messages say what is expected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    #[error("'{0}' is not an address or CIDR (a.b.c.d/len)")]
    Syntax(String),
    #[error("'{0}' needs a /prefix length")]
    NoPrefix(String),
    #[error("'{0}': the prefix length must be {1}..{2}")]
    Prefix(String, u8, u8),
    #[error("'{0}' is not IPv4")]
    NotV4(String),
    #[error("'{0}' has host bits set")]
    HostBits(String),
}

impl Cidr {
    /// An address with an optional prefix length (none: the whole address).
    pub fn parse(s: &str) -> Result<Self, CidrError> {
        let (a, p) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = a.parse().map_err(|_| CidrError::Syntax(s.to_owned()))?;
        let max = Self::max_prefix(addr);
        let prefix = match p {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| CidrError::Prefix(s.to_owned(), 0, max))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }

    /// An IPv4 address with a prefix length, as an interface has it (`198.18.0.1/24`).
    pub fn parse_v4_with_prefix(s: &str) -> Result<(Ipv4Addr, u8), CidrError> {
        if !s.contains('/') {
            return Err(CidrError::NoPrefix(s.to_owned()));
        }
        let c = Self::parse(s)?;
        match c.addr {
            IpAddr::V4(a) => Ok((a, c.prefix)),
            IpAddr::V6(_) => Err(CidrError::NotV4(s.to_owned())),
        }
    }

    /// An IPv4 network (no host bits) whose prefix length is within `lengths`.
    pub fn parse_v4_network(
        s: &str,
        lengths: std::ops::RangeInclusive<u8>,
    ) -> Result<(Ipv4Addr, u8), CidrError> {
        let (a, p) = Self::parse_v4_with_prefix(s)?;
        if !lengths.contains(&p) {
            return Err(CidrError::Prefix(
                s.to_owned(),
                *lengths.start(),
                *lengths.end(),
            ));
        }
        if Self::v4(a, p).network() != IpAddr::V4(a) {
            return Err(CidrError::HostBits(s.to_owned()));
        }
        Ok((a, p))
    }

    #[must_use]
    pub const fn v4(a: Ipv4Addr, prefix: u8) -> Self {
        Self {
            addr: IpAddr::V4(a),
            prefix,
        }
    }

    fn max_prefix(a: IpAddr) -> u8 {
        if a.is_ipv4() { 32 } else { 128 }
    }

    /// The mask as a 128-bit number over the address's own width.
    fn mask(&self) -> u128 {
        let bits = u32::from(Self::max_prefix(self.addr));
        let p = u32::from(self.prefix).min(bits);
        let all = if bits == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        if p == 0 { 0 } else { all & (all << (bits - p)) }
    }

    fn bits(a: IpAddr) -> u128 {
        match a {
            IpAddr::V4(v) => u128::from(u32::from(v)),
            IpAddr::V6(v) => u128::from(v),
        }
    }

    /// The network address (host bits cleared).
    #[must_use]
    pub fn network(&self) -> IpAddr {
        let n = Self::bits(self.addr) & self.mask();
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
            IpAddr::V6(_) => IpAddr::V6(n.into()),
        }
    }

    /// Whether `ip` is inside this network (same family).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && Self::bits(ip) & self.mask() == Self::bits(self.addr) & self.mask()
    }

    /// Whether the two networks share an address.
    #[must_use]
    pub fn overlaps(&self, other: &Self) -> bool {
        let wider = if self.prefix <= other.prefix {
            self
        } else {
            other
        };
        let narrower = if std::ptr::eq(wider, self) {
            other
        } else {
            self
        };
        wider.contains(narrower.addr)
    }

    /// The `n`th address of the network (0 is the network address itself).
    #[must_use]
    pub fn nth_v4(&self, n: u32) -> Option<Ipv4Addr> {
        let IpAddr::V4(_) = self.addr else {
            return None;
        };
        let size = 1u64 << (32 - u32::from(self.prefix));
        (u64::from(n) < size).then(|| {
            let base = Self::bits(self.network()) as u32;
            Ipv4Addr::from(base + n)
        })
    }

    /// How many addresses the network spans (capped at `u64::MAX`).
    #[must_use]
    pub fn size(&self) -> u64 {
        let width = u32::from(Self::max_prefix(self.addr)) - u32::from(self.prefix);
        1u64.checked_shl(width).unwrap_or(u64::MAX)
    }

    /// (family 4/6, network bytes, mask bytes) in the 16-byte layout of the kernel's keys.
    #[must_use]
    pub fn to_key_bytes(&self) -> (u8, [u8; 16], [u8; 16]) {
        let (fam, width) = if self.addr.is_ipv4() { (4, 4) } else { (6, 16) };
        let m = self.mask();
        let n = Self::bits(self.addr) & m;
        let mut net = [0u8; 16];
        let mut mask = [0u8; 16];
        net[..width].copy_from_slice(&n.to_be_bytes()[16 - width..]);
        mask[..width].copy_from_slice(&m.to_be_bytes()[16 - width..]);
        (fam, net, mask)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_partial_bytes() {
        let (fam, net, mask) = Cidr::parse("198.18.3.77/15").unwrap().to_key_bytes();
        assert_eq!(fam, 4);
        assert_eq!(&net[..4], &[198, 18, 0, 0]);
        assert_eq!(&mask[..4], &[255, 254, 0, 0]);
        assert_eq!(&mask[4..], &[0; 12]);
        let (fam, _, mask) = Cidr::parse("fd00::/12").unwrap().to_key_bytes();
        assert_eq!((fam, mask[0], mask[1], mask[2]), (6, 0xff, 0xf0, 0));
    }

    #[test]
    fn networks_contain_and_overlap() {
        let c = Cidr::parse("198.18.20.1/24").unwrap();
        assert_eq!(c.network(), "198.18.20.0".parse::<IpAddr>().unwrap());
        assert!(c.contains("198.18.20.200".parse().unwrap()));
        assert!(!c.contains("198.18.21.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        assert!(c.overlaps(&Cidr::parse("198.18.0.0/16").unwrap()));
        assert!(!c.overlaps(&Cidr::parse("198.18.21.0/24").unwrap()));
        assert_eq!(c.nth_v4(2), Some(Ipv4Addr::new(198, 18, 20, 2)));
        assert_eq!(c.nth_v4(256), None);
        assert_eq!(c.size(), 256);
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
    }

    #[test]
    fn bad_networks_name_their_problem() {
        assert_eq!(
            Cidr::parse("198.18.0.0/33"),
            Err(CidrError::Prefix("198.18.0.0/33".into(), 0, 32))
        );
        assert_eq!(
            Cidr::parse_v4_network("198.18.30.7/24", 8..=30),
            Err(CidrError::HostBits("198.18.30.7/24".into()))
        );
        assert_eq!(
            Cidr::parse_v4_with_prefix("198.18.0.1"),
            Err(CidrError::NoPrefix("198.18.0.1".into()))
        );
        assert!(matches!(
            Cidr::parse_v4_network("198.18.0.0/31", 8..=30),
            Err(CidrError::Prefix(..))
        ));
        assert!(matches!(Cidr::parse("banana"), Err(CidrError::Syntax(_))));
    }
}
