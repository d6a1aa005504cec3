//! Exact IPv4/IPv6 sets for allowlists.
//!
//! [`IpSet`] holds addresses as sorted disjoint ranges and converts them to
//! the minimal list of CIDRs that covers exactly the set — never wider.
//! Parsing ([`parse_net`], [`read_list`]) is strict: zone ids and ambiguous
//! leading zeros are refused, host bits and IPv4-mapped IPv6 are normalised
//! and reported. [`classify_addr`] flags private, loopback, link-local,
//! CGNAT, documentation and other special-purpose ranges.
//!
//! ```
//! use eos_ipset::{IpSet, parse_list};
//! let (set, _) = parse_list("192.0.2.0\n192.0.2.1\n192.0.2.2/31\n", "example").unwrap();
//! let cidrs: Vec<String> = set.to_cidrs().iter().map(eos_ipset::canonical).collect();
//! assert_eq!(cidrs, ["192.0.2.0/30"]);
//! assert!(set.contains("192.0.2.3".parse().unwrap()));
//! ```

pub mod canonical_serde;
mod parse;
mod ranges;
mod set;
mod special;

pub use ipnet::{IpNet, Ipv4Net, Ipv6Net};
pub use parse::{
    LineError, MAX_NOTICES, Notice, ParseError, ParseErrorKind, ParsedNet, ReadError, ReadStats,
    parse_addr_strict, parse_list, parse_net, parse_v4_fast, read_list,
};
pub use set::{Family, IpSet, IpSetBuilder};
pub use special::{SpecialRange, classify_addr, classify_net, is_unicast_source, special_nets};

/// The canonical text of a network, the form AWS WAF stores in an IPSet:
/// always with a prefix length, host bits zero, IPv6 lowercase and
/// compressed (RFC 5952).
pub fn canonical(net: &IpNet) -> String {
    let n = net.trunc();
    match n {
        IpNet::V4(v4) => format!("{}/{}", v4.network(), v4.prefix_len()),
        IpNet::V6(v6) => format!("{}/{}", v6.network(), v6.prefix_len()),
    }
}
