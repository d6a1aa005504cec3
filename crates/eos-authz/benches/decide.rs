//! Decisions per second in process: the ceiling of `eos-sec authz serve`
//! (no HTTP, no TLS). `evaluate` is `eos_policy`'s decision alone; `decide`
//! adds what the server does per subrequest (trusted-proxy rule,
//! `X-Forwarded-For`, the certificate header's URL-encoded PEM) with the
//! cache of verified chains off (`decide-uncached`, every chain verified)
//! and on (`decide`, the server's default: the chain verified once). The
//! end-to-end figures behind nginx are in docs/PERFORMANCE.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use axum::http::{HeaderMap, HeaderValue};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eos_authz::{ChainCache, decide};
use eos_identity::SpaceId;
use eos_ipset::{IpNet, IpSet, Ipv4Net};
use eos_logs::TrustedProxies;
use eos_policy::{
    CertificateDer, Evaluator, Policy, Request, TrustConfig, UnixTime, Verdict, chain_from_header,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber, date_time_ymd,
};

/// Spaces in the policy and networks in each space's set: a large tenant
/// population at the web ACL's limit (25 IP-gated spaces).
const SPACES: usize = 25;
const NETS_PER_SET: usize = 1000;

/// Every set also holds this network (the "inside" client).
const OFFICE: &str = "198.51.100.0/24";

/// A CA's PEM, its CRL (DER) and a client certificate (PEM) for
/// `space-0`'s user alice, shaped like `eos-ca`'s (URI SAN, clientAuth).
fn pki() -> (String, Vec<u8>, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "eos bench CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::URI(
        "urn:entityos:space:space-0:user:alice".try_into().unwrap(),
    )];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let crl = CertificateRevocationListParams {
        this_update: date_time_ymd(2020, 1, 1),
        next_update: date_time_ymd(2100, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap();
    (ca_cert.pem(), crl.der().to_vec(), leaf_cert.pem())
}

fn policy(mode: &str) -> Policy {
    let mut toml = String::from(
        "[web_acl]\nname = \"bench\"\n[routing]\nby = \"host-label\"\ndomain = \"entityos.cloud\"\n",
    );
    for i in 0..SPACES {
        toml.push_str(&format!(
            "[spaces.space-{i}]\nmode = \"{mode}\"\nstage = \"enforce\"\n"
        ));
    }
    Policy::from_toml(&toml, "bench.toml").unwrap()
}

fn sets() -> BTreeMap<String, IpSet> {
    (0..SPACES)
        .map(|i| {
            // Deterministic, spread over the address space (Fibonacci hashing).
            let mut nets: Vec<IpNet> = (0..NETS_PER_SET)
                .map(|j| {
                    let k = (i * NETS_PER_SET + j) as u32;
                    let len = 16 + (k % 17) as u8;
                    let addr = Ipv4Addr::from(k.wrapping_mul(0x9e37_79b9));
                    IpNet::V4(Ipv4Net::new(addr, len).unwrap().trunc())
                })
                .collect();
            nets.push(OFFICE.parse().unwrap());
            (format!("eos-space-{i}-v4"), IpSet::from_nets(nets))
        })
        .collect()
}

fn bench_decide(c: &mut Criterion) {
    let (ca_pem, crl_der, leaf_pem) = pki();
    let trust = || {
        TrustConfig::new(
            (Path::new("ca.pem"), ca_pem.as_bytes()),
            &[(PathBuf::from("ca.crl"), crl_der.clone())],
        )
        .unwrap()
    };
    let sets = sets();
    let inside: IpAddr = "198.51.100.7".parse().unwrap();
    let outside: IpAddr = "192.0.2.1".parse().unwrap();
    let escaped =
        percent_encoding::utf8_percent_encode(&leaf_pem, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let chain: Vec<CertificateDer<'static>> = chain_from_header(escaped.as_bytes()).unwrap();
    let trusted = TrustedProxies::parse(&["127.0.0.1/32"]).unwrap();
    let proxy: IpAddr = "127.0.0.1".parse().unwrap();
    // What nginx's generated `auth_request` location sends.
    let headers = |client: IpAddr, cert: bool| {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("space-0.entityos.cloud"));
        h.insert(
            "x-original-uri",
            HeaderValue::from_static("/app/index.html"),
        );
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_str(&client.to_string()).unwrap(),
        );
        let cert = if cert { escaped.as_str() } else { "" };
        h.insert("x-ssl-client-cert", HeaderValue::from_str(cert).unwrap());
        h
    };
    let now = UnixTime::now();
    let space: SpaceId = "space-0".parse().unwrap();

    let mut g = c.benchmark_group("authz");
    g.throughput(Throughput::Elements(1));
    for (mode, client, cert) in [
        ("ip", inside, false),
        ("cert", outside, true),
        ("either", outside, true),
        ("either", inside, false),
    ] {
        let policy = policy(mode);
        let ev = Evaluator::new(&policy, &BTreeMap::new(), &sets, Some(trust())).unwrap();
        let label = format!("{mode}/{}", if cert { "cert" } else { "ip" });
        let req = Request::to_space(&policy.routing, &space, client);
        let chain = cert.then_some(chain.as_slice());
        let d = ev.evaluate(&req, chain, now);
        assert_eq!(d.now.verdict, Verdict::Allow, "{d:?}");
        g.bench_function(format!("evaluate/{label}"), |b| {
            b.iter(|| ev.evaluate(black_box(&req), black_box(chain), now))
        });
        let h = headers(client, cert);
        for (name, capacity) in [("decide-uncached", 0), ("decide", 10_000)] {
            let chains = ChainCache::new(capacity);
            let a = decide(&ev, &chains, &trusted, proxy, &h, now);
            assert_eq!(a.status.as_u16(), 200, "{a:?}");
            g.bench_function(format!("{name}/{label}"), |b| {
                b.iter(|| decide(&ev, &chains, &trusted, black_box(proxy), black_box(&h), now))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_decide);
criterion_main!(benches);
