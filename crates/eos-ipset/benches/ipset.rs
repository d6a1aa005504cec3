//! Criterion benches for the IP set engine. Peer comparisons (iprange,
//! netaddr, ipaddress) live in `cargo xtask bench-peers --only ipset`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use eos_ipset::{IpSet, IpSetBuilder, ReadStats, read_list};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Clustered IPv4 text, one address per line (Zipf-like over 4096 clusters
/// of /28 to /20), as log-derived input looks.
fn clustered_v4_text(count: usize) -> Vec<u8> {
    use std::io::Write;
    let mut rng = Rng(0xe05);
    let clusters: Vec<(u32, u32)> = (0..4096)
        .map(|_| {
            let bits = 4 + (rng.next() % 9) as u32;
            let base = (rng.next() as u32) & !((1u32 << bits) - 1);
            (base, 1u32 << bits)
        })
        .collect();
    let mut out = Vec::with_capacity(count * 15);
    for _ in 0..count {
        let u = (rng.next() % 65536) as f64 / 65536.0;
        let (base, size) = clusters[((u * u) * 4096.0) as usize % 4096];
        let a = Ipv4Addr::from(base.wrapping_add(rng.next() as u32 % size));
        writeln!(out, "{a}").unwrap();
    }
    out
}

fn clustered_v6_text(count: usize) -> Vec<u8> {
    use std::io::Write;
    let mut rng = Rng(0x6e05);
    let prefixes: Vec<u128> = (0..512)
        .map(|_| ((rng.next() & 0x3fff_ffff_ffff_0000 | 0x2000_0000_0000_0000) as u128) << 64)
        .collect();
    let mut out = Vec::with_capacity(count * 30);
    for _ in 0..count {
        let p = prefixes[rng.next() as usize % prefixes.len()];
        writeln!(out, "{}", Ipv6Addr::from(p | (rng.next() % 4096) as u128)).unwrap();
    }
    out
}

fn aggregate_text(text: &[u8]) -> usize {
    let mut b = IpSetBuilder::new();
    let mut stats = ReadStats::default();
    read_list(text, "bench", &mut b, &mut stats).unwrap();
    b.build().to_cidrs().len()
}

fn bench_aggregate(c: &mut Criterion) {
    let mut g = c.benchmark_group("aggregate");
    g.sample_size(10);
    for (label, count, v6) in [
        ("ipv4", 1_000_000, false),
        ("ipv4", 10_000_000, false),
        ("ipv6", 100_000, true),
    ] {
        let text = if v6 {
            clustered_v6_text(count)
        } else {
            clustered_v4_text(count)
        };
        g.throughput(Throughput::Elements(count as u64));
        g.bench_with_input(BenchmarkId::new(label, count), &text, |b, t| {
            b.iter(|| aggregate_text(black_box(t)))
        });
    }
    g.finish();
}

fn bench_membership(c: &mut Criterion) {
    // 10k CIDRs: the WAF IPSet limit.
    let mut rng = Rng(0x5e7);
    let set: IpSet = (0..10_000)
        .map(|_| {
            let len = 16 + (rng.next() % 17) as u8;
            eos_ipset::IpNet::new(IpAddr::V4(Ipv4Addr::from(rng.next() as u32)), len)
                .unwrap()
                .trunc()
        })
        .collect();
    let probes: Vec<IpAddr> = (0..1_000_000)
        .map(|_| IpAddr::V4(Ipv4Addr::from(rng.next() as u32)))
        .collect();
    let mut g = c.benchmark_group("membership");
    g.throughput(Throughput::Elements(probes.len() as u64));
    g.bench_function("10k-cidrs-1M-lookups", |b| {
        b.iter(|| {
            probes
                .iter()
                .filter(|a| set.contains(black_box(**a)))
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_aggregate, bench_membership);
criterion_main!(benches);
