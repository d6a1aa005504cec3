//! Property tests: every set operation against a simple model (a `BTreeSet`
//! of addresses over a small universe placed at awkward spots of the address
//! space), and the CIDR output for exactness and minimality.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use eos_ipset::{IpNet, IpSet, Ipv4Net, Ipv6Net, canonical, parse_list, parse_net};
use proptest::prelude::*;

/// Universe bases: the bottom, the middle and the very top of each space, so
/// overflow at 2^32 - 1 and 2^128 - 1 is exercised.
const V4_BASES: [u32; 3] = [0, 0xC000_0200, u32::MAX - 255];
const V6_BASES: [u128; 2] = [0x2001_0db8 << 96, u128::MAX - 255];

#[derive(Debug, Clone)]
enum Item {
    V4(u32, u8),
    V6(u128, u8),
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        (0..V4_BASES.len(), 0u32..256, 24u8..=32)
            .prop_map(|(b, off, len)| Item::V4(V4_BASES[b] + off, len)),
        (0..V6_BASES.len(), 0u128..256, 120u8..=128)
            .prop_map(|(b, off, len)| Item::V6(V6_BASES[b] + off, len)),
    ]
}

fn net(i: &Item) -> IpNet {
    match *i {
        Item::V4(a, l) => IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc()),
        Item::V6(a, l) => IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc()),
    }
}

/// The model: every address, as u128 with a family tag.
fn model(items: &[Item]) -> BTreeSet<(u8, u128)> {
    let mut m = BTreeSet::new();
    for i in items {
        match net(i) {
            IpNet::V4(n) => {
                for a in u32::from(n.network())..=u32::from(n.broadcast()) {
                    m.insert((4, a as u128));
                }
            }
            IpNet::V6(n) => {
                for a in u128::from(n.network())..=u128::from(n.broadcast()) {
                    m.insert((6, a));
                }
            }
        }
    }
    m
}

fn set_model(s: &IpSet) -> BTreeSet<(u8, u128)> {
    let mut m = BTreeSet::new();
    for n in s.to_cidrs() {
        match n {
            IpNet::V4(n) => {
                for a in u32::from(n.network())..=u32::from(n.broadcast()) {
                    assert!(m.insert((4, a as u128)), "overlapping CIDRs in output");
                }
            }
            IpNet::V6(n) => {
                for a in u128::from(n.network())..=u128::from(n.broadcast()) {
                    assert!(m.insert((6, a)), "overlapping CIDRs in output");
                }
            }
        }
    }
    m
}

fn build(items: &[Item]) -> IpSet {
    items.iter().map(net).collect()
}

/// The minimal cover is the set of maximal aligned blocks: no block's parent
/// is wholly inside the set.
fn assert_minimal(s: &IpSet) {
    for n in s.to_cidrs() {
        if n.prefix_len() == 0 {
            continue;
        }
        let parent = IpNet::new(n.network(), n.prefix_len() - 1).unwrap().trunc();
        assert!(!s.contains_net(&parent), "{n} could merge into {parent}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cidrs_cover_exactly_and_minimally(items in prop::collection::vec(item(), 0..24)) {
        let s = build(&items);
        prop_assert_eq!(set_model(&s), model(&items));
        assert_minimal(&s);
        prop_assert_eq!(s.cidr_count(), s.to_cidrs().len());
        // Sorted: IPv4 first, then IPv6, each ascending.
        let cidrs = s.to_cidrs();
        for w in cidrs.windows(2) {
            let key = |n: &IpNet| (matches!(n, IpNet::V6(_)), match n.network() { IpAddr::V4(a) => u32::from(a) as u128, IpAddr::V6(a) => u128::from(a) });
            prop_assert!(key(&w[0]) < key(&w[1]));
        }
    }

    #[test]
    fn algebra_matches_model(a in prop::collection::vec(item(), 0..16), b in prop::collection::vec(item(), 0..16)) {
        let (sa, sb) = (build(&a), build(&b));
        let (ma, mb) = (model(&a), model(&b));
        prop_assert_eq!(set_model(&sa.union(&sb)), ma.union(&mb).copied().collect::<BTreeSet<_>>());
        prop_assert_eq!(set_model(&sa.intersection(&sb)), ma.intersection(&mb).copied().collect::<BTreeSet<_>>());
        prop_assert_eq!(set_model(&sa.difference(&sb)), ma.difference(&mb).copied().collect::<BTreeSet<_>>());
        prop_assert_eq!(sa.is_subset(&sb), ma.is_subset(&mb));
        let count = |m: &BTreeSet<(u8, u128)>, f| m.iter().filter(|(x, _)| *x == f).count() as u128;
        prop_assert_eq!(sa.v4_len() as u128, count(&ma, 4));
        prop_assert_eq!(sa.v6_len(), count(&ma, 6));
        // Canonical: the same addresses built another way compare equal.
        let rebuilt: IpSet = sa.to_cidrs().into_iter().collect();
        prop_assert_eq!(&rebuilt, &sa);
        assert_minimal(&sa.difference(&sb));
    }

    #[test]
    fn membership_matches_model(items in prop::collection::vec(item(), 0..16), probe in item()) {
        let s = build(&items);
        let m = model(&items);
        let addr = match probe { Item::V4(a, _) => IpAddr::V4(Ipv4Addr::from(a)), Item::V6(a, _) => IpAddr::V6(Ipv6Addr::from(a)) };
        let key = match probe { Item::V4(a, _) => (4, a as u128), Item::V6(a, _) => (6, a) };
        prop_assert_eq!(s.contains(addr), m.contains(&key));
    }

    /// Canonical text parses back to the same network.
    #[test]
    fn canonical_round_trips(i in item()) {
        let n = net(&i);
        let text = canonical(&n);
        prop_assert!(text.contains('/'));
        prop_assert_eq!(text.to_lowercase(), text.clone());
        let back = parse_net(&text).unwrap();
        prop_assert_eq!(back.net, n);
        prop_assert!(!back.host_bits_cleared);
    }

    /// The parser never panics, whatever the bytes.
    #[test]
    fn parser_never_panics(s in ".{0,64}") {
        let _ = parse_net(&s);
        let _ = parse_list(&s, "fuzz");
    }

    /// Any address, written any of the ways std prints it, parses to itself.
    #[test]
    fn addresses_round_trip(a in any::<u32>(), b in any::<u128>()) {
        let v4 = Ipv4Addr::from(a);
        prop_assert_eq!(parse_net(&v4.to_string()).unwrap().net, IpNet::V4(Ipv4Net::new(v4, 32).unwrap()));
        let v6 = Ipv6Addr::from(b);
        let parsed = parse_net(&v6.to_string()).unwrap().net;
        match v6.to_ipv4_mapped() {
            Some(m) => prop_assert_eq!(parsed, IpNet::V4(Ipv4Net::new(m, 32).unwrap())),
            None => prop_assert_eq!(parsed, IpNet::V6(Ipv6Net::new(v6, 128).unwrap())),
        }
    }
}

#[test]
fn full_spaces() {
    let s: IpSet = ["0.0.0.0/0", "::/0"]
        .iter()
        .map(|t| parse_net(t).unwrap().net)
        .collect();
    assert_eq!(
        s.to_cidrs().iter().map(canonical).collect::<Vec<_>>(),
        ["0.0.0.0/0", "::/0"]
    );
    assert_eq!(s.v4_len(), 1 << 32);
    assert_eq!(s.v6_len(), u128::MAX);
    let hole = IpSet::from_nets([parse_net("10.0.0.0/8").unwrap().net]);
    let d = s.v4().difference(&hole);
    assert_eq!(d.to_cidrs().len(), 8, "0/0 minus 10/8 is 8 blocks");
}
