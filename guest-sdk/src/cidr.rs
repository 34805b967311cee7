//! Client address selectors: CIDR prefixes and sets of them, kept as sorted, merged address
//! ranges so membership is a binary search.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 prefix such as `10.0.0.0/8` or `fd00::/8`.
///
/// A bare address is a single-host prefix. Host bits set below the prefix length
/// (`10.0.0.1/8`) are rejected: they are usually a typo for a different prefix.
///
/// ```
/// use zonegate_policy::Cidr;
///
/// let cidr: Cidr = "10.0.0.0/8".parse()?;
/// assert!(cidr.contains("10.20.30.40".parse()?));
/// assert!(!cidr.contains("11.0.0.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// The prefix `addr/len`.
    ///
    /// ```
    /// use std::net::Ipv6Addr;
    /// use zonegate_policy::Cidr;
    ///
    /// let cidr = Cidr::new(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0).into(), 8)?;
    /// assert_eq!(cidr.to_string(), "fd00::/8");
    /// assert!(Cidr::new(Ipv6Addr::LOCALHOST.into(), 129).is_err());
    /// # Ok::<(), zonegate_policy::CidrError>(())
    /// ```
    pub fn new(addr: IpAddr, len: u8) -> Result<Cidr, CidrError> {
        let cidr = Cidr { addr, len };
        let error = |reason| CidrError {
            input: cidr.to_string(),
            reason,
        };
        let (first, _) = match addr {
            IpAddr::V4(_) if len > 32 => return Err(error(CidrReason::Length)),
            IpAddr::V6(_) if len > 128 => return Err(error(CidrReason::Length)),
            _ => cidr.range(),
        };
        if first != bits(addr) {
            return Err(error(CidrReason::HostBits));
        }
        Ok(cidr)
    }

    /// Whether `addr` is in the prefix. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is
    /// treated as the IPv4 address it maps, as dual-stack sockets report IPv4 clients that way.
    ///
    /// ```
    /// use zonegate_policy::Cidr;
    ///
    /// let cidr: Cidr = "10.0.0.0/8".parse()?;
    /// assert!(cidr.contains("::ffff:10.0.0.1".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = unmap(addr);
        let (first, last) = self.range();
        addr.is_ipv4() == self.addr.is_ipv4() && (first..=last).contains(&bits(addr))
    }

    /// The first and last address, as integers of the family's width.
    fn range(&self) -> (u128, u128) {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        let host_bits = width - u32::from(self.len);
        let host_mask = if host_bits == 0 {
            0
        } else {
            u128::MAX >> (128 - host_bits)
        };
        let first = bits(self.addr) & !host_mask;
        (first, first | host_mask)
    }
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn unmap(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = |reason| CidrError {
            input: s.to_owned(),
            reason,
        };
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| error(CidrReason::Address))?;
        let len = match len {
            None if addr.is_ipv4() => 32,
            None => 128,
            Some(len) => len.parse::<u8>().map_err(|_| error(CidrReason::Length))?,
        };
        Cidr::new(addr, len).map_err(|e| error(e.reason))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CidrReason {
    Address,
    Length,
    HostBits,
}

/// A prefix that could not be parsed; its message names the input and the reason.
///
/// ```
/// let err = "10.0.0.1/8".parse::<zonegate_policy::Cidr>().unwrap_err();
/// assert_eq!(err.to_string(), r#"invalid CIDR "10.0.0.1/8": host bits are set below the prefix length"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError {
    input: String,
    reason: CidrReason,
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = match self.reason {
            CidrReason::Address => "not an IPv4 or IPv6 address",
            CidrReason::Length => "the prefix length must be 0-32 for IPv4, 0-128 for IPv6",
            CidrReason::HostBits => "host bits are set below the prefix length",
        };
        write!(f, "invalid CIDR {:?}: {reason}", self.input)
    }
}

impl std::error::Error for CidrError {}

/// A set of prefixes, both families: is a client address in any of them?
///
/// Overlapping and adjacent prefixes are merged; a lookup is a binary search over what is
/// left, so hundreds of prefixes cost a handful of comparisons.
///
/// ```
/// use zonegate_policy::CidrSet;
///
/// let clients: CidrSet = ["10.0.0.0/8", "192.168.1.0/24", "fd00::/8"]
///     .into_iter()
///     .map(str::parse)
///     .collect::<Result<_, _>>()?;
/// assert!(clients.contains("192.168.1.77".parse()?));
/// assert!(clients.contains("fd12::1".parse()?));
/// assert!(!clients.contains("192.168.2.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet {
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
}

impl CidrSet {
    /// An empty set: it contains no address.
    ///
    /// ```
    /// let set = zonegate_policy::CidrSet::new();
    /// assert!(set.is_empty());
    /// assert!(!set.contains("127.0.0.1".parse().unwrap()));
    /// ```
    pub fn new() -> Self {
        CidrSet::default()
    }

    /// Add a prefix.
    ///
    /// ```
    /// use zonegate_policy::CidrSet;
    ///
    /// let mut set = CidrSet::new();
    /// set.insert("0.0.0.0/0".parse()?);
    /// assert!(set.contains("203.0.113.9".parse()?));
    /// assert!(!set.contains("2001:db8::1".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn insert(&mut self, cidr: Cidr) {
        let ranges = if cidr.addr.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        };
        let (mut first, mut last) = cidr.range();
        // Absorb every range that overlaps or touches the new one, then put it in order.
        ranges.retain(|&(a, b)| {
            let apart = b.saturating_add(1) < first || last.saturating_add(1) < a;
            if !apart {
                first = first.min(a);
                last = last.max(b);
            }
            apart
        });
        let at = ranges.partition_point(|&(a, _)| a < first);
        ranges.insert(at, (first, last));
    }

    /// Whether `addr` is in any prefix (IPv4-mapped IPv6 addresses count as IPv4, as in
    /// [`Cidr::contains`]).
    ///
    /// ```
    /// use zonegate_policy::{Cidr, CidrSet};
    ///
    /// let set: CidrSet = ["10.0.0.0/8".parse::<Cidr>()?].into_iter().collect();
    /// assert!(set.contains("10.1.1.1".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = unmap(addr);
        let ranges = if addr.is_ipv4() { &self.v4 } else { &self.v6 };
        let value = bits(addr);
        let after = ranges.partition_point(|&(first, _)| first <= value);
        after > 0 && ranges[after - 1].1 >= value
    }

    /// Whether the set holds no prefix.
    ///
    /// ```
    /// assert!(zonegate_policy::CidrSet::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

impl FromIterator<Cidr> for CidrSet {
    fn from_iter<I: IntoIterator<Item = Cidr>>(iter: I) -> Self {
        let mut set = CidrSet::new();
        for cidr in iter {
            set.insert(cidr);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn set(cidrs: &[&str]) -> CidrSet {
        cidrs.iter().map(|c| c.parse::<Cidr>().expect(c)).collect()
    }

    #[test]
    fn parse_table() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("10.0.0.0/8", Ok("10.0.0.0/8")),
            ("10.0.0.1", Ok("10.0.0.1/32")),
            ("0.0.0.0/0", Ok("0.0.0.0/0")),
            ("::/0", Ok("::/0")),
            ("2001:db8::/32", Ok("2001:db8::/32")),
            ("::1", Ok("::1/128")),
            ("10.0.0.1/8", Err("host bits")),
            ("10.0.0.0/33", Err("prefix length")),
            ("fd00::/129", Err("prefix length")),
            ("10.0.0.0/x", Err("prefix length")),
            ("10.0.0/8", Err("not an IPv4 or IPv6 address")),
            ("", Err("not an IPv4 or IPv6 address")),
        ];
        for (input, want) in cases {
            let got = input
                .parse::<Cidr>()
                .map(|c| c.to_string())
                .map_err(|e| e.to_string());
            match (want, &got) {
                (Ok(want), Ok(got)) => assert_eq!(got, want),
                (Err(want), Err(got)) => assert!(got.contains(want), "{input}: {got}"),
                _ => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn membership_table() {
        let set = set(&[
            "10.0.0.0/8",
            "192.168.1.0/24",
            "192.168.2.0/24",
            "fd00::/8",
            "2001:db8::1",
        ]);
        let cases = [
            ("10.0.0.0", true),
            ("10.255.255.255", true),
            ("11.0.0.0", false),
            ("9.255.255.255", false),
            ("192.168.1.0", true),
            ("192.168.2.255", true),
            ("192.168.3.0", false),
            ("::ffff:10.1.2.3", true),
            ("::ffff:11.1.2.3", false),
            ("fdff:ffff::1", true),
            ("fe00::", false),
            ("2001:db8::1", true),
            ("2001:db8::2", false),
            ("::a00:1", false),
        ];
        for (addr, want) in cases {
            assert_eq!(set.contains(addr.parse().expect(addr)), want, "{addr}");
        }
    }

    #[test]
    fn overlapping_and_adjacent_prefixes_merge() {
        let merged = set(&[
            "10.0.0.0/24",
            "10.0.1.0/24",
            "10.0.0.128/25",
            "10.0.3.0/24",
            "10.0.2.0/24",
        ]);
        assert_eq!(merged.v4, vec![(0x0a00_0000, 0x0a00_03ff)]);
        let disjoint = set(&["10.0.3.0/24", "10.0.0.0/24"]);
        assert_eq!(disjoint.v4.len(), 2);
        assert!(!disjoint.contains("10.0.1.1".parse().expect("address")));
    }

    #[test]
    fn hundreds_of_prefixes() {
        let cidrs: Vec<Cidr> = (0..=255u8)
            .map(|i| Cidr::new(Ipv4Addr::new(10, i, 0, 0).into(), 24).expect("cidr"))
            .collect();
        let set: CidrSet = cidrs.iter().copied().collect();
        for i in 0..=255u8 {
            assert!(set.contains(Ipv4Addr::new(10, i, 0, 200).into()));
            assert!(!set.contains(Ipv4Addr::new(10, i, 1, 0).into()));
        }
        let full = set.v4.len();
        assert_eq!(full, 256);
    }
}
