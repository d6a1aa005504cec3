//! Validate + plan + sign throughput for one CSR, P-256 and RSA-2048 (the
//! in-process rate that `cargo xtask bench-peers ca` compares with openssl
//! and Python `cryptography`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eos_ca::{
    Account, CaEnv, CsrLimits, IssuancePolicy, IssueRequest, LocalCa, Profile, plan_certificate,
    validate_csr,
};
use eos_identity::{SpaceId, UserId};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../examples/data/csr/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let now = SystemTime::now();
    let ca = LocalCa::generate(CaEnv::Dev, Duration::from_secs(86400 * 365), now).unwrap();
    let policy = IssuancePolicy::default();
    let limits = CsrLimits::default();
    let account = Account {
        space: SpaceId::new("acme").unwrap(),
        user: UserId::new("alice").unwrap(),
    };
    let mut g = c.benchmark_group("validate_sign");
    g.throughput(Throughput::Elements(1));
    for (name, file) in [("p256", "p256.csr"), ("rsa2048", "rsa2048.csr")] {
        let pem = fixture(file);
        g.bench_function(name, |b| {
            b.iter(|| {
                let csr = validate_csr(black_box(&pem), &limits).unwrap();
                let req = IssueRequest {
                    csr: &csr,
                    account: &account,
                    profile: Profile::Service,
                    lifetime: None,
                };
                let plan = plan_certificate(ca.info(), &req, &policy, None, now).unwrap();
                black_box(ca.sign(&plan).unwrap())
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
