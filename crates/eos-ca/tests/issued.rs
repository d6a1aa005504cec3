#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `check_issued`: what comes back from a signer is held to its plan, and a
//! remote CA's certificate must be signed by the CA key the plan was made
//! for.

use std::time::{Duration, SystemTime};

use der::{Decode, Encode};
use eos_ca::{
    Account, CaEnv, Certificate, CsrLimits, IssuancePolicy, IssueRequest, LocalCa, Profile,
    Strictness, check_issued, plan_certificate, validate_csr,
};
use eos_identity::{SpaceId, UserId};

/// A fresh dev CA (every dev CA has the same name) and one certificate it
/// issued at `now` for acme/alice.
fn setup(now: SystemTime) -> (eos_ca::CertificatePlan, Certificate) {
    let ca = LocalCa::generate(CaEnv::Dev, Duration::from_secs(86400 * 365), now).unwrap();
    let pem = std::fs::read(format!(
        "{}/../../examples/data/csr/p256.csr",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let csr = validate_csr(&pem, &CsrLimits::default()).unwrap();
    let account = Account {
        space: SpaceId::new("acme").unwrap(),
        user: UserId::new("alice").unwrap(),
    };
    let req = IssueRequest {
        csr: &csr,
        account: &account,
        profile: Profile::Service,
        lifetime: None,
    };
    let plan = plan_certificate(ca.info(), &req, &IssuancePolicy::default(), None, now).unwrap();
    let cert = ca.sign(&plan).unwrap();
    (plan, cert)
}

#[test]
fn a_certificate_signed_by_the_ca_passes_both_checks() {
    let (plan, cert) = setup(SystemTime::now());
    check_issued(&cert, &plan, Strictness::Exact).unwrap();
    check_issued(&cert, &plan, Strictness::Remote).unwrap();
}

#[test]
fn a_remote_certificate_not_signed_by_the_ca_is_refused() {
    let now = SystemTime::now();
    let (plan, cert) = setup(now);
    // The same to-be-signed certificate, the last byte of the signature
    // changed: still well-formed DER, no longer the CA's signature.
    let mut der = cert.to_der().unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let forged = Certificate::from_der(&der).unwrap();
    let err = check_issued(&forged, &plan, Strictness::Remote).unwrap_err();
    assert_eq!(err.code(), "cert-policy-violation", "{err}");
    assert!(err.to_string().contains("signature"), "{err}");

    // Signed by another CA of the same name, for a plan that matches field
    // by field except the key identifiers (which a remote CA picks): only
    // the signature check tells them apart.
    let (other_plan, _) = setup(now);
    let err = check_issued(&cert, &other_plan, Strictness::Remote).unwrap_err();
    assert!(
        err.to_string().contains("not signed by the CA's key"),
        "{err}"
    );
}
