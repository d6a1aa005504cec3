//! Criterion benches for security codes: what one check costs the open
//! endpoint (parse, HMAC, SQLite lookup, spend, audit entry, commit).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use eos_codes::{
    Attempt, BackoffPolicy, IssueRequest, Pepper, PepperRing, Purpose, Purposes, SecurityCode,
};
use eos_identity::{Role, SpaceId, UserId};
use eos_store::Store;

const PEPPER: &str = "a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0";
const T0: i64 = 1_800_000_000;

fn ring() -> PepperRing {
    PepperRing::new(Pepper::from_hex(PEPPER, "bench").unwrap(), vec![])
}

fn recovery_code(store: &mut Store, ring: &PepperRing) -> String {
    let req = IssueRequest::recovery(
        SpaceId::new("acme").unwrap(),
        UserId::new("root").unwrap(),
        Role::Admin,
    )
    .unwrap();
    store
        .issue_code(ring, &req, T0, "bench")
        .unwrap()
        .0
        .reveal()
        .to_string()
}

fn source(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i & 0x00ff_ffff)))
}

fn bench_codes(c: &mut Criterion) {
    let ring = ring();
    let policy = BackoffPolicy::default();
    let mut g = c.benchmark_group("codes");

    let written = SecurityCode::generate().unwrap().reveal().to_string();
    g.bench_function("parse", |b| {
        b.iter(|| SecurityCode::parse(black_box(&written)).unwrap())
    });

    let mut mem = Store::open_in_memory().unwrap();
    g.bench_function("issue (in-memory store)", |b| {
        let req = IssueRequest::onboarding(
            SpaceId::new("acme").unwrap(),
            UserId::new("alice").unwrap(),
            Role::User,
            Purposes::new([Purpose::RegisterIp]).unwrap(),
        )
        .unwrap();
        b.iter(|| mem.issue_code(&ring, &req, T0, "bench").unwrap())
    });

    let code = recovery_code(&mut mem, &ring);
    g.bench_function("check_and_spend (in-memory store)", |b| {
        let attempt = Attempt {
            presented: &code,
            purpose: Purpose::Recover,
            source: source(1),
            space: None,
        };
        b.iter(|| {
            mem.spend_code(&ring, &policy, &attempt, T0 + 1, |_, g| {
                Ok::<_, std::convert::Infallible>(g.use_number)
            })
            .unwrap()
        })
    });

    let wrong = SecurityCode::generate().unwrap().reveal().to_string();
    let mut n = 0u32;
    g.bench_function("reject unknown code (in-memory store)", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let attempt = Attempt {
                presented: &wrong,
                purpose: Purpose::Recover,
                source: source(n),
                space: None,
            };
            assert!(mem.verify_code(&ring, &policy, &attempt, T0 + 1).is_err());
        })
    });

    let dir = tempfile::tempdir().unwrap();
    let mut disk = Store::open(dir.path()).unwrap();
    let code = recovery_code(&mut disk, &ring);
    g.bench_function("check_and_spend (on-disk store, fsync)", |b| {
        let attempt = Attempt {
            presented: &code,
            purpose: Purpose::Recover,
            source: source(2),
            space: None,
        };
        b.iter(|| {
            disk.spend_code(&ring, &policy, &attempt, T0 + 1, |_, g| {
                Ok::<_, std::convert::Infallible>(g.use_number)
            })
            .unwrap()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench_codes
}
criterion_main!(benches);
