//! Special-purpose address ranges (IANA IPv4 and IPv6 Special-Purpose Address
//! Registries, RFC 6890 and successors). An allowlist entry in one of these
//! almost always means a proxy is missing from the trusted list, or a typo:
//! the layers above flag them, they do not drop them silently.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::IpSet;

/// Why an address is not an ordinary public unicast address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SpecialRange {
    /// RFC 1918 private (10/8, 172.16/12, 192.168/16) or IPv6 unique local (fc00::/7).
    Private,
    /// 127/8, ::1.
    Loopback,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// RFC 6598 shared address space, 100.64/10.
    Cgnat,
    /// RFC 5737 / RFC 3849 / RFC 9637 documentation ranges.
    Documentation,
    /// RFC 2544 benchmarking, 198.18/15.
    Benchmarking,
    /// 224/4, ff00::/8.
    Multicast,
    /// 0/8, ::, 240/4, 192.0.0/24, 100::/64 and other never-routed space.
    Reserved,
}

impl SpecialRange {
    /// Stable kebab-case name used in reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SpecialRange::Private => "private",
            SpecialRange::Loopback => "loopback",
            SpecialRange::LinkLocal => "link-local",
            SpecialRange::Cgnat => "cgnat",
            SpecialRange::Documentation => "documentation",
            SpecialRange::Benchmarking => "benchmarking",
            SpecialRange::Multicast => "multicast",
            SpecialRange::Reserved => "reserved",
        }
    }
}

impl std::fmt::Display for SpecialRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const V4: &[([u8; 4], u8, SpecialRange)] = &[
    ([0, 0, 0, 0], 8, SpecialRange::Reserved),
    ([10, 0, 0, 0], 8, SpecialRange::Private),
    ([100, 64, 0, 0], 10, SpecialRange::Cgnat),
    ([127, 0, 0, 0], 8, SpecialRange::Loopback),
    ([169, 254, 0, 0], 16, SpecialRange::LinkLocal),
    ([172, 16, 0, 0], 12, SpecialRange::Private),
    ([192, 0, 0, 0], 24, SpecialRange::Reserved),
    ([192, 0, 2, 0], 24, SpecialRange::Documentation),
    ([192, 168, 0, 0], 16, SpecialRange::Private),
    ([198, 18, 0, 0], 15, SpecialRange::Benchmarking),
    ([198, 51, 100, 0], 24, SpecialRange::Documentation),
    ([203, 0, 113, 0], 24, SpecialRange::Documentation),
    ([224, 0, 0, 0], 4, SpecialRange::Multicast),
    ([240, 0, 0, 0], 4, SpecialRange::Reserved),
];

const V6: &[([u16; 8], u8, SpecialRange)] = &[
    ([0, 0, 0, 0, 0, 0, 0, 0], 128, SpecialRange::Reserved),
    ([0, 0, 0, 0, 0, 0, 0, 1], 128, SpecialRange::Loopback),
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, SpecialRange::Reserved),
    (
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        SpecialRange::Documentation,
    ),
    (
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        SpecialRange::Documentation,
    ),
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, SpecialRange::Private),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, SpecialRange::LinkLocal),
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, SpecialRange::Multicast),
];

fn v4_net(a: [u8; 4], len: u8) -> Option<Ipv4Net> {
    Ipv4Net::new(Ipv4Addr::from(a), len).ok()
}

fn v6_net(a: [u16; 8], len: u8) -> Option<Ipv6Net> {
    let [a0, a1, a2, a3, a4, a5, a6, a7] = a;
    Ipv6Net::new(Ipv6Addr::new(a0, a1, a2, a3, a4, a5, a6, a7), len).ok()
}

/// The special range `addr` falls in, if any. IPv4-mapped IPv6 is classified
/// as the IPv4 address it maps.
pub fn classify_addr(addr: IpAddr) -> Option<SpecialRange> {
    match addr {
        IpAddr::V4(a) => V4
            .iter()
            .find(|(b, l, _)| v4_net(*b, *l).is_some_and(|n| n.contains(&a)))
            .map(|e| e.2),
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return classify_addr(IpAddr::V4(v4));
            }
            V6.iter()
                .find(|(b, l, _)| v6_net(*b, *l).is_some_and(|n| n.contains(&a)))
                .map(|e| e.2)
        }
    }
}

/// Can `addr` be the source address of a host's connection? Not when it is
/// `reserved` (the unspecified address, "this network" 0/8, broadcast and
/// the rest of 240/4, the IETF protocol assignments 192.0.0/24, the
/// discard-only 100::/64) or `multicast`: RFC 6890 lists none of these as a
/// valid source. A client address in one of them is a proxy's placeholder
/// or a forgery, never a client to allow. Private, loopback, link-local and
/// the other special ranges are real sources on some network and pass.
pub fn is_unicast_source(addr: IpAddr) -> bool {
    !matches!(
        classify_addr(addr),
        Some(SpecialRange::Reserved | SpecialRange::Multicast)
    )
}

/// Every special range that overlaps `net` (a wide prefix can overlap several).
pub fn classify_net(net: &IpNet) -> Vec<SpecialRange> {
    let probe = IpSet::from_nets([*net]);
    let mut out: Vec<SpecialRange> = special_nets()
        .into_iter()
        .filter(|(n, _)| !probe.intersection(&IpSet::from_nets([*n])).is_empty())
        .map(|(_, kind)| kind)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The registry as networks, for callers that want to intersect sets with it.
pub fn special_nets() -> Vec<(IpNet, SpecialRange)> {
    let v4 = V4
        .iter()
        .filter_map(|(b, l, k)| v4_net(*b, *l).map(|n| (IpNet::V4(n), *k)));
    let v6 = V6
        .iter()
        .filter_map(|(b, l, k)| v6_net(*b, *l).map(|n| (IpNet::V6(n), *k)));
    v4.chain(v6).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Option<SpecialRange> {
        classify_addr(s.parse().unwrap())
    }

    #[test]
    fn classifies_known_ranges() {
        assert_eq!(c("10.1.2.3"), Some(SpecialRange::Private));
        assert_eq!(c("172.31.255.255"), Some(SpecialRange::Private));
        assert_eq!(c("172.32.0.0"), None);
        assert_eq!(c("100.64.0.1"), Some(SpecialRange::Cgnat));
        assert_eq!(c("127.0.0.1"), Some(SpecialRange::Loopback));
        assert_eq!(c("169.254.1.1"), Some(SpecialRange::LinkLocal));
        assert_eq!(c("192.0.2.44"), Some(SpecialRange::Documentation));
        assert_eq!(c("203.0.113.9"), Some(SpecialRange::Documentation));
        assert_eq!(c("8.8.8.8"), None);
        assert_eq!(c("::1"), Some(SpecialRange::Loopback));
        assert_eq!(c("fe80::1"), Some(SpecialRange::LinkLocal));
        assert_eq!(c("fd00::1"), Some(SpecialRange::Private));
        assert_eq!(c("2001:db8::1"), Some(SpecialRange::Documentation));
        assert_eq!(c("::ffff:10.0.0.1"), Some(SpecialRange::Private));
        assert_eq!(c("2606:4700::1"), None);
    }

    #[test]
    fn only_unicast_sources_can_be_clients() {
        let source = |s: &str| is_unicast_source(s.parse().unwrap());
        for never in [
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "240.0.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "192.0.0.170",
            "::",
            "ff02::1",
            "100::1",
            "::ffff:255.255.255.255",
        ] {
            assert!(!source(never), "{never}");
        }
        for real in [
            "8.8.8.8",
            "10.0.0.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "203.0.113.9",
            "::1",
            "fe80::1",
            "2606:4700::1",
        ] {
            assert!(source(real), "{real}");
        }
    }

    #[test]
    fn wide_net_overlaps_several() {
        let n: IpNet = "0.0.0.0/0".parse().unwrap();
        let k = classify_net(&n);
        assert!(k.contains(&SpecialRange::Private));
        assert!(k.contains(&SpecialRange::Loopback));
        let n: IpNet = "8.8.8.0/24".parse().unwrap();
        assert!(classify_net(&n).is_empty());
    }
}
