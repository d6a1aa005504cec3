//! `/v1/renew` over real TLS on loopback: a certificate of the service's
//! CA, presented in the handshake (or forwarded by a trusted passthrough
//! proxy), buys its successor; each refusal has its code. Issued
//! certificates are checked with openssl.

use std::process::Command;
use std::time::{Duration, SystemTime};

use eos_ca::{CaEnv, CsrLimits, IssuancePolicy, LocalCa, Profile};
use eos_ops::issuance::CaSetup;
use eos_store::certs;
use serde_json::json;

use crate::common::{Harness, Setup, csr, issue_into};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86400);

fn hours_ago(h: u64) -> SystemTime {
    SystemTime::now() - HOUR * u32::try_from(h).unwrap()
}

/// A CSR for an existing key.
fn csr_for(key: &rcgen::KeyPair) -> String {
    let params = rcgen::CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
    params.serialize_request(key).unwrap().pem().unwrap()
}

pub(crate) fn openssl(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl is needed by these tests");
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The certificate verifies under the CA as a TLS client certificate, and
/// its public key (PEM) as openssl prints it.
fn verified_pubkey(h: &Harness, cert: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let leaf = dir.path().join("leaf.pem");
    std::fs::write(&ca, &h.ca_pem).unwrap();
    std::fs::write(&leaf, cert).unwrap();
    let (ca, leaf) = (ca.to_str().unwrap(), leaf.to_str().unwrap());
    let ok = openssl(
        &["verify", "-CAfile", ca, "-purpose", "sslclient", leaf],
        None,
    );
    assert!(ok.contains(": OK"), "{ok}");
    openssl(&["x509", "-noout", "-pubkey", "-in", leaf], None)
}

fn text(cert: &str) -> String {
    openssl(&["x509", "-noout", "-text"], Some(cert))
}

pub(crate) fn key_pubkey(key: &rcgen::KeyPair) -> String {
    openssl(&["pkey", "-pubout"], Some(&key.serialize_pem()))
}

async fn renew(
    h: &Harness,
    cert: &str,
    key: &rcgen::KeyPair,
    csr: &str,
) -> (u16, serde_json::Value) {
    h.post_with(
        &h.client_with(cert, key),
        "/v1/renew",
        json!({ "csr": csr }),
        &[],
    )
    .await
    .unwrap()
}

fn refused((status, body): (u16, serde_json::Value), want: (u16, &str)) {
    assert_eq!(
        (status, body["error"].as_str().unwrap_or("")),
        want,
        "{body}"
    );
}

#[tokio::test]
async fn renews_the_presented_certificate_with_the_same_key_or_a_new_one() {
    let h = Harness::start().await;
    // 20 h into a 24 h service certificate: inside the last third.
    let (old, old_serial, key) = h
        .issued_at("alice", Profile::Service, DAY, hours_ago(20))
        .await;

    // Same key; the CSR asks for another name, which it does not get.
    let (status, body) = renew(&h, &old, &key, &csr_for(&key)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "renewed");
    assert_eq!(
        (body["space"].as_str(), body["user"].as_str()),
        (Some("acme"), Some("alice"))
    );
    assert_eq!(body["renewed"].as_str(), Some(old_serial.as_str()));
    assert_eq!(body["profile"], "service");
    let new = body["certificate"].as_str().unwrap().to_owned();
    let new_serial = body["serial"].as_str().unwrap().to_owned();
    assert_ne!(new_serial, old_serial);
    assert_eq!(verified_pubkey(&h, &new), key_pubkey(&key));
    let t = text(&new);
    assert!(t.contains("URI:urn:entityos:space:acme:user:alice"), "{t}");
    assert!(!t.contains("evil.example"), "{t}");
    // The profile's lifetime from now, not the old certificate's end.
    let not_after = time::OffsetDateTime::parse(
        body["not_after"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = not_after - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::hours(23) && left <= time::Duration::hours(24),
        "{left}"
    );

    // The inventory links the two; the old one is left to expire.
    let store = h.store();
    let old_rec = certs::get(store.conn(), &old_serial).unwrap();
    assert_eq!(old_rec.renewed_by.as_deref(), Some(new_serial.as_str()));
    assert_eq!(old_rec.status, "active");
    let new_rec = certs::get(store.conn(), &new_serial).unwrap();
    assert_eq!(new_rec.renewed_from.as_deref(), Some(old_serial.as_str()));
    let audit = store.audit_log(10).unwrap();
    let entry = audit.iter().find(|a| a.action == "cert.renewed").unwrap();
    assert_eq!(entry.actor, format!("cert:{old_serial}"));
    assert_eq!(entry.subject, new_serial);

    // A retry after a lost answer (same key) gets the same successor; a
    // renewal of the old certificate for another key is refused.
    let (status, again) = renew(&h, &old, &key, &csr_for(&key)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["serial"].as_str(), Some(new_serial.as_str()));
    let (other, _) = csr();
    refused(
        renew(&h, &old, &key, &other).await,
        (403, "renewal-superseded"),
    );

    // A new key: the successor certifies it, under the record's identity.
    let (bob, _, bob_key) = h
        .issued_at("bob", Profile::Device, DAY, hours_ago(20))
        .await;
    let (new_csr, new_key) = csr();
    let (status, body) = renew(&h, &bob, &bob_key, &new_csr).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"], "bob");
    assert_eq!(body["profile"], "device");
    let cert = body["certificate"].as_str().unwrap();
    assert_eq!(verified_pubkey(&h, cert), key_pubkey(&new_key));
    assert_ne!(key_pubkey(&new_key), key_pubkey(&bob_key));

    // The successor itself renews in its turn once in its window — not now.
    let (status, body) = renew(&h, &new, &key, &csr_for(&key)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (425, Some("renewal-too-early"))
    );

    let metrics = h
        .client
        .get(format!("{}/metrics", h.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("eos_register_renewals_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("eos_register_renewal_refusals_total{reason=\"renewal-superseded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("eos_register_renewal_refusals_total{reason=\"renewal-too-early\"} 1"),
        "{metrics}"
    );
    h.stop().await;
}

#[tokio::test]
async fn each_refusal_has_its_code() {
    let h = Harness::start().await;

    // No certificate in the handshake.
    refused(
        h.post("/v1/renew", json!({ "csr": csr().0 })).await,
        (401, "renewal-no-certificate"),
    );

    // Too early: a fresh 24 h certificate, with when to come back.
    let (fresh, _, key) = h
        .issued_at("alice", Profile::Service, DAY, SystemTime::now())
        .await;
    let resp = h
        .client_with(&fresh, &key)
        .post(format!("{}/v1/renew", h.url))
        .json(&json!({ "csr": csr_for(&key) }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 425);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Opens at two thirds of 24 h (+ the 5-minute backdate).
    assert!((15 * 3600..=16 * 3600 + 600).contains(&retry), "{retry}");

    // Revoked: refused and audited.
    let (revoked, serial, key) = h
        .issued_at("carol", Profile::Service, DAY, hours_ago(20))
        .await;
    {
        let mut store = h.store();
        let tx = store.transaction().unwrap();
        certs::revoke(&tx, &serial, "2026-01-01T00:00:00Z", "key-compromise").unwrap();
        tx.commit().unwrap();
    }
    refused(
        renew(&h, &revoked, &key, &csr_for(&key)).await,
        (403, "renewal-revoked"),
    );
    let audit = h.store().audit_log(5).unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "cert.renewal-refused" && a.subject == serial),
        "{audit:?}"
    );

    // The account disabled: no renewal, and no certificate by a code.
    let (dave, _, key) = h
        .issued_at("dave", Profile::Service, DAY, hours_ago(20))
        .await;
    {
        let mut store = h.store();
        let tx = store.transaction().unwrap();
        eos_store::accounts::disable_in(&tx, "acme", "dave", "test", "left").unwrap();
        tx.commit().unwrap();
    }
    refused(
        renew(&h, &dave, &key, &csr_for(&key)).await,
        (403, "account-disabled"),
    );
    let code = h.issue_for("dave", &[eos_codes::Purpose::RegisterCert]);
    refused(
        h.post("/v1/cert", json!({ "code": code, "csr": csr().0 }))
            .await,
        (403, "account-disabled"),
    );

    // Signed by this CA's key but not in the inventory.
    let (stray, _, key) = {
        let (csr, key) = csr();
        let mut elsewhere = eos_store::Store::open_in_memory().unwrap();
        let ca = h.ca_setup(IssuancePolicy::default());
        let (pem, serial) = issue_into(
            &mut elsewhere,
            &ca,
            &csr,
            "erin",
            Profile::Service,
            DAY,
            hours_ago(20),
        )
        .await;
        (pem, serial, key)
    };
    refused(
        renew(&h, &stray, &key, &csr_for(&key)).await,
        (403, "renewal-unknown-certificate"),
    );

    // A bad CSR is the CA's refusal.
    let (ok, _, key) = h
        .issued_at("frank", Profile::Service, DAY, hours_ago(20))
        .await;
    let (status, body) = renew(&h, &ok, &key, "not a csr").await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("csr-"),
        "{body}"
    );

    // Expired, and another environment's CA: the handshake itself refuses
    // them (the listener verifies the certificate it asks for).
    let (expired, _, key) = h
        .issued_at("gina", Profile::Service, DAY, SystemTime::now() - DAY * 2)
        .await;
    assert!(
        renew_err(&h, &expired, &key).await,
        "an expired certificate passed the handshake"
    );
    let (foreign, key) = other_environment_certificate().await;
    assert!(
        renew_err(&h, &foreign, &key).await,
        "another CA's certificate passed the handshake"
    );
    h.stop().await;
}

/// Whether the request failed before an answer (the TLS handshake).
async fn renew_err(h: &Harness, cert: &str, key: &rcgen::KeyPair) -> bool {
    h.post_with(
        &h.client_with(cert, key),
        "/v1/renew",
        json!({ "csr": csr_for(key) }),
        &[],
    )
    .await
    .is_err()
}

/// A certificate of a `staging` CA (another environment), in window.
async fn other_environment_certificate() -> (String, rcgen::KeyPair) {
    let ca = LocalCa::generate(CaEnv::Staging, DAY * 30, SystemTime::now() - DAY * 7).unwrap();
    let ca = CaSetup::local(ca, IssuancePolicy::default(), CsrLimits::default()).unwrap();
    let (csr, key) = csr();
    let mut store = eos_store::Store::open_in_memory().unwrap();
    let (pem, _) = issue_into(
        &mut store,
        &ca,
        &csr,
        "alice",
        Profile::Service,
        DAY,
        hours_ago(20),
    )
    .await;
    (pem, key)
}

fn escaped(pem: &str) -> String {
    percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test]
async fn behind_a_trusted_passthrough_proxy_the_forwarded_certificate_renews() {
    let mut setup = Setup::default();
    setup.options.trusted_proxies = eos_logs::TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
    let h = Harness::start_with(setup).await;
    let via_proxy = |cert: &str, key: &rcgen::KeyPair| {
        let header = escaped(cert);
        let csr = csr_for(key);
        let h = &h;
        async move {
            h.post_with(
                &h.client,
                "/v1/renew",
                json!({ "csr": csr }),
                &[
                    ("x-forwarded-for", "198.51.100.7"),
                    ("x-amzn-mtls-clientcert", &header),
                ],
            )
            .await
            .unwrap()
        }
    };
    let (cert, serial, key) = h
        .issued_at("alice", Profile::Service, DAY, hours_ago(20))
        .await;
    let (status, body) = via_proxy(&cert, &key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["renewed"].as_str(), Some(serial.as_str()));
    verified_pubkey(&h, body["certificate"].as_str().unwrap());

    // What the handshake refuses directly, the proxy's forward gets a code
    // for: expired, another environment, not a certificate.
    let (expired, _, key) = h
        .issued_at("gina", Profile::Service, DAY, SystemTime::now() - DAY * 2)
        .await;
    refused(via_proxy(&expired, &key).await, (403, "renewal-expired"));
    let (foreign, key) = other_environment_certificate().await;
    refused(via_proxy(&foreign, &key).await, (403, "renewal-foreign-ca"));
    refused(
        via_proxy(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            &key,
        )
        .await,
        (403, "renewal-bad-certificate"),
    );
    h.stop().await;
}

#[tokio::test]
async fn a_forged_passthrough_header_from_an_untrusted_peer_is_ignored() {
    // No trusted proxies: the peer is the client, and a client can write
    // any header.
    let h = Harness::start().await;
    let (cert, _, key) = h
        .issued_at("alice", Profile::Service, DAY, hours_ago(20))
        .await;
    let (status, body) = h
        .post_with(
            &h.client,
            "/v1/renew",
            json!({ "csr": csr_for(&key) }),
            &[("x-amzn-mtls-clientcert", &escaped(&cert))],
        )
        .await
        .unwrap();
    refused((status, body), (401, "renewal-no-certificate"));
    assert!(
        h.store()
            .audit_log(10)
            .unwrap()
            .iter()
            .all(|a| a.action != "cert.renewed")
    );
    h.stop().await;
}
