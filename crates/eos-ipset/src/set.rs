//! The exact IP set type.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::ranges::{Ranges, radix_sort_u32};

/// An exact set of IPv4 and IPv6 addresses.
///
/// Always canonical: two sets holding the same addresses compare equal, and
/// [`IpSet::to_cidrs`] returns the minimal list of CIDRs that covers exactly
/// the set — never a wider one. IPv4-mapped IPv6 input is stored as IPv4 (see
/// [`crate::parse_net`]), so membership does not depend on how a caller wrote
/// an address.
#[derive(Clone, PartialEq, Eq, Hash, Default, Debug)]
pub struct IpSet {
    v4: Ranges<u32>,
    v6: Ranges<u128>,
}

/// Address family of a set or entry.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4 (`u32` addresses).
    V4,
    /// IPv6 (`u128` addresses).
    V6,
}

impl Family {
    /// `"v4"` or `"v6"`, as used in IPSet names.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }

    /// The family of a network.
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn v4_bounds(net: &Ipv4Net) -> (u32, u32) {
    (u32::from(net.network()), u32::from(net.broadcast()))
}

fn v6_bounds(net: &Ipv6Net) -> (u128, u128) {
    (u128::from(net.network()), u128::from(net.broadcast()))
}

impl IpSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set built from networks. Host bits are ignored (the network's whole
    /// block is included), which is what [`crate::parse_net`] normalises to.
    pub fn from_nets<I: IntoIterator<Item = IpNet>>(nets: I) -> Self {
        let mut b = IpSetBuilder::new();
        for n in nets {
            b.insert_net(n);
        }
        b.build()
    }

    /// True when the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Is `addr` in the set? IPv4-mapped IPv6 addresses are looked up as IPv4.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.v4.contains(u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.v4.contains(u32::from(v4)),
                None => self.v6.contains(u128::from(a)),
            },
        }
    }

    /// Is `addr` (IPv4) in the set?
    pub fn contains_v4(&self, addr: Ipv4Addr) -> bool {
        self.v4.contains(u32::from(addr))
    }

    /// Is every address of `net` in the set?
    pub fn contains_net(&self, net: &IpNet) -> bool {
        match net {
            IpNet::V4(n) => {
                let (lo, hi) = v4_bounds(n);
                self.v4.contains_range(lo, hi)
            }
            IpNet::V6(n) => {
                let (lo, hi) = v6_bounds(n);
                self.v6.contains_range(lo, hi)
            }
        }
    }

    /// Every address in `self` or `other`.
    pub fn union(&self, other: &IpSet) -> IpSet {
        IpSet {
            v4: self.v4.union(&other.v4),
            v6: self.v6.union(&other.v6),
        }
    }

    /// Every address in both `self` and `other`.
    pub fn intersection(&self, other: &IpSet) -> IpSet {
        IpSet {
            v4: self.v4.intersection(&other.v4),
            v6: self.v6.intersection(&other.v6),
        }
    }

    /// Every address in `self` but not in `other`.
    pub fn difference(&self, other: &IpSet) -> IpSet {
        IpSet {
            v4: self.v4.difference(&other.v4),
            v6: self.v6.difference(&other.v6),
        }
    }

    /// Is every address of `self` also in `other`?
    pub fn is_subset(&self, other: &IpSet) -> bool {
        self.difference(other).is_empty()
    }

    /// Number of IPv4 addresses (at most 2^32).
    pub fn v4_len(&self) -> u64 {
        // A u32 range list holds at most 2^32 addresses, which fits in u64.
        u64::try_from(self.v4.count()).unwrap_or(u64::MAX)
    }

    /// Number of IPv6 addresses, saturating at `u128::MAX` (only `::/0`
    /// itself, 2^128 addresses, saturates).
    pub fn v6_len(&self) -> u128 {
        self.v6.count()
    }

    /// The IPv4 part alone.
    pub fn v4(&self) -> IpSet {
        IpSet {
            v4: self.v4.clone(),
            v6: Ranges::new(),
        }
    }

    /// The IPv6 part alone.
    pub fn v6(&self) -> IpSet {
        IpSet {
            v4: Ranges::new(),
            v6: self.v6.clone(),
        }
    }

    /// The part of one family.
    pub fn family(&self, family: Family) -> IpSet {
        match family {
            Family::V4 => self.v4(),
            Family::V6 => self.v6(),
        }
    }

    /// Inclusive IPv4 ranges, sorted and non-adjacent.
    pub fn v4_ranges(&self) -> impl ExactSizeIterator<Item = (Ipv4Addr, Ipv4Addr)> + '_ {
        self.v4
            .as_slice()
            .iter()
            .map(|&(a, b)| (Ipv4Addr::from(a), Ipv4Addr::from(b)))
    }

    /// Inclusive IPv6 ranges, sorted and non-adjacent.
    pub fn v6_ranges(&self) -> impl ExactSizeIterator<Item = (Ipv6Addr, Ipv6Addr)> + '_ {
        self.v6
            .as_slice()
            .iter()
            .map(|&(a, b)| (Ipv6Addr::from(a), Ipv6Addr::from(b)))
    }

    /// The minimal IPv4 CIDR list covering exactly the IPv4 part.
    pub fn v4_cidrs(&self) -> Vec<Ipv4Net> {
        self.v4
            .cidr_blocks()
            .into_iter()
            .filter_map(|(base, len)| Ipv4Net::new(Ipv4Addr::from(base), len).ok())
            .collect()
    }

    /// The minimal IPv6 CIDR list covering exactly the IPv6 part.
    pub fn v6_cidrs(&self) -> Vec<Ipv6Net> {
        self.v6
            .cidr_blocks()
            .into_iter()
            .filter_map(|(base, len)| Ipv6Net::new(Ipv6Addr::from(base), len).ok())
            .collect()
    }

    /// The minimal CIDR list covering exactly the set: IPv4 first, then IPv6,
    /// each in address order.
    pub fn to_cidrs(&self) -> Vec<IpNet> {
        let mut out: Vec<IpNet> = self.v4_cidrs().into_iter().map(IpNet::V4).collect();
        out.extend(self.v6_cidrs().into_iter().map(IpNet::V6));
        out
    }

    /// `to_cidrs().len()` without building the list: the number of IPSet
    /// entries this set needs (WAF counts entries, not addresses).
    pub fn cidr_count(&self) -> usize {
        self.v4.cidr_block_count() + self.v6.cidr_block_count()
    }
}

impl FromIterator<IpNet> for IpSet {
    fn from_iter<I: IntoIterator<Item = IpNet>>(iter: I) -> Self {
        IpSet::from_nets(iter)
    }
}

impl FromIterator<IpAddr> for IpSet {
    fn from_iter<I: IntoIterator<Item = IpAddr>>(iter: I) -> Self {
        let mut b = IpSetBuilder::new();
        for a in iter {
            b.insert_addr(a);
        }
        b.build()
    }
}

/// Collects addresses and networks cheaply and canonicalises once at
/// [`IpSetBuilder::build`]. Single IPv4 addresses, the bulk of any log-derived
/// input, are kept as bare `u32`s and radix-sorted.
#[derive(Debug, Default)]
pub struct IpSetBuilder {
    v4_points: Vec<u32>,
    v4_ranges: Vec<(u32, u32)>,
    v6_ranges: Vec<(u128, u128)>,
}

impl IpSetBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one address. IPv4-mapped IPv6 is added as IPv4.
    pub fn insert_addr(&mut self, addr: IpAddr) {
        match addr {
            IpAddr::V4(a) => self.v4_points.push(u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.v4_points.push(u32::from(v4)),
                None => {
                    let x = u128::from(a);
                    self.v6_ranges.push((x, x));
                }
            },
        }
    }

    /// Add one IPv4 address given as its `u32` value.
    pub fn insert_v4_u32(&mut self, addr: u32) {
        self.v4_points.push(addr);
    }

    /// Add a whole network (host bits ignored).
    pub fn insert_net(&mut self, net: IpNet) {
        match net {
            IpNet::V4(n) => {
                if n.prefix_len() == 32 {
                    self.v4_points.push(u32::from(n.addr()));
                } else {
                    self.v4_ranges.push(v4_bounds(&n));
                }
            }
            IpNet::V6(n) => self.v6_ranges.push(v6_bounds(&n)),
        }
    }

    /// Move everything `other` holds into `self` (for merging per-thread builders).
    pub fn append(&mut self, other: &mut IpSetBuilder) {
        self.v4_points.append(&mut other.v4_points);
        self.v4_ranges.append(&mut other.v4_ranges);
        self.v6_ranges.append(&mut other.v6_ranges);
    }

    /// Number of entries collected so far (before deduplication).
    pub fn len(&self) -> usize {
        self.v4_points.len() + self.v4_ranges.len() + self.v6_ranges.len()
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Canonicalise into an [`IpSet`].
    pub fn build(self) -> IpSet {
        let IpSetBuilder {
            mut v4_points,
            v4_ranges,
            v6_ranges,
        } = self;
        radix_sort_u32(&mut v4_points);
        v4_points.dedup();
        let points = Ranges::from_sorted_points(&v4_points);
        drop(v4_points);
        let v4 = if v4_ranges.is_empty() {
            points
        } else {
            points.union(&Ranges::from_unsorted(v4_ranges))
        };
        IpSet {
            v4,
            v6: Ranges::from_unsorted(v6_ranges),
        }
    }
}
