//! The connection layer over real sockets: which address a connection is
//! from, and how long and how many connections the service holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::net::SocketAddr;

use common::{Harness, Setup};
use eos_codes::Purpose;
use serde_json::json;

/// Can this host listen on and connect to IPv6 loopback? A dual-stack test
/// needs `[::]`; a host without IPv6 says so loudly instead of passing.
async fn has_ipv6_loopback() -> bool {
    let Ok(l) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("SKIPPED: this host has no IPv6 loopback; the dual-stack test did not run");
        assert!(
            std::env::var_os("EOS_SEC_REQUIRE_ORACLES").is_none(),
            "EOS_SEC_REQUIRE_ORACLES is set and this host has no IPv6 loopback"
        );
        return false;
    };
    drop(l);
    true
}

#[tokio::test]
async fn a_dual_stack_listener_trusts_an_ipv4_proxy() {
    if !has_ipv6_loopback().await {
        return;
    }
    let mut setup = Setup {
        listen: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
        ..Setup::default()
    };
    setup.options.trusted_proxies = eos_logs::TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
    let h = Harness::start_with(setup).await;
    // The request comes from 127.0.0.1, which the `[::]` listener sees as
    // ::ffff:127.0.0.1: still the trusted proxy.
    let code = h.issue_for("alice", &[Purpose::RegisterIp]);
    let (status, body) = h
        .post_from("/v1/ip", json!({ "code": code }), Some("203.0.113.60"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cidr"], "203.0.113.60/32");
    // Without a forwarded header the proxy itself is the client, in its
    // IPv4 form.
    let code = h.issue_for("bob", &[Purpose::RegisterIp]);
    let (status, body) = h.post_from("/v1/ip", json!({ "code": code }), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cidr"], "127.0.0.1/32");
    h.stop().await;
}

#[tokio::test]
async fn a_forwarded_address_that_cannot_be_a_client_is_refused() {
    let mut setup = Setup::default();
    setup.options.trusted_proxies = eos_logs::TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
    let h = Harness::start_with(setup).await;
    let code = h.issue_for("alice", &[Purpose::RegisterIp]);
    // Unspecified, broadcast, reserved, multicast, discard-only: no host
    // connects from these, so a proxy that forwards one does not know the
    // client, and no rule may be written for it.
    for forwarded in [
        "0.0.0.0",
        "255.255.255.255",
        "0.1.2.3",
        "240.0.0.1",
        "224.0.0.1",
        "::",
        "ff02::1",
        "100::1",
        "::ffff:0.0.0.0",
    ] {
        let (status, body) = h
            .post_from("/v1/ip", json!({ "code": code }), Some(forwarded))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("unroutable-client-address")),
            "{forwarded}: {body}"
        );
    }
    let rules = eos_store::rules::list_rules(
        h.store().conn(),
        &[eos_identity::SpaceId::new("acme").unwrap()],
    )
    .unwrap();
    assert!(rules.is_empty(), "{rules:?}");
    // The code was never spent: a routable client registers with it.
    let (status, body) = h
        .post_from("/v1/ip", json!({ "code": code }), Some("198.51.100.7"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cidr"], "198.51.100.7/32");
    h.stop().await;
}
