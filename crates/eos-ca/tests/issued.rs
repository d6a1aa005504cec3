#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `check_issued`: what comes back from a signer is held to its plan, and a
//! remote CA's certificate must be signed by the CA key the plan was made
//! for.

use std::time::{Duration, SystemTime};

use der::{Decode, Encode};
use eos_ca::{
    Account, CaEnv, Certificate, CsrLimits, IssuancePolicy, IssueError, IssueRequest, LocalCa,
    Profile, Strictness, Withdrawal, check_issued, issue, plan_certificate, serial_of,
    validate_csr, withdrawal_note,
};
use eos_identity::{SpaceId, UserId};

/// The example P-256 CSR, validated, and the account acme/alice.
fn csr_and_account() -> (eos_ca::ValidatedCsr, Account) {
    let pem = std::fs::read(format!(
        "{}/../../examples/data/csr/p256.csr",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let account = Account {
        space: SpaceId::new("acme").unwrap(),
        user: UserId::new("alice").unwrap(),
    };
    (validate_csr(&pem, &CsrLimits::default()).unwrap(), account)
}

/// A fresh dev CA (every dev CA has the same name) and one certificate it
/// issued at `now` for acme/alice.
fn setup(now: SystemTime) -> (eos_ca::CertificatePlan, Certificate) {
    let ca = LocalCa::generate(CaEnv::Dev, Duration::from_secs(86400 * 365), now).unwrap();
    let (csr, account) = csr_and_account();
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

/// A remote CA that keeps what it signs: it answers every request with the
/// certificate it was given, and notes what it is asked to withdraw.
struct KeepingCa {
    answer: Certificate,
    withdrawn: std::sync::Mutex<Vec<String>>,
}

impl eos_ca::Signer for KeepingCa {
    async fn issue(
        &self,
        _plan: &eos_ca::CertificatePlan,
        _csr: &eos_ca::ValidatedCsr,
    ) -> Result<Certificate, eos_ca::IssueError> {
        Ok(self.answer.clone())
    }

    fn strictness(&self) -> Strictness {
        Strictness::Remote
    }

    async fn withdraw(&self, serial: &eos_ca::Serial) -> Result<Withdrawal, eos_ca::IssueError> {
        self.withdrawn.lock().unwrap().push(serial.to_string());
        Ok(Withdrawal::Revoked)
    }
}

/// Run a future that never waits (every signer here answers at once).
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("the test signer waited"),
    }
}

#[test]
fn a_signed_certificate_that_breaks_its_plan_is_withdrawn_and_refused() {
    let now = SystemTime::now();
    let (plan, cert) = setup(now);
    let (other_plan, _) = setup(now);
    let csr = validate_csr(
        &std::fs::read(format!(
            "{}/../../examples/data/csr/p256.csr",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
        &CsrLimits::default(),
    )
    .unwrap();
    let ca = KeepingCa {
        answer: cert.clone(),
        withdrawn: std::sync::Mutex::default(),
    };
    // What matches its plan is handed out, and nothing is withdrawn.
    let got = ready(issue(&ca, &plan, &csr)).unwrap();
    assert_eq!(got, cert);
    assert!(ca.withdrawn.lock().unwrap().is_empty());
    // The same certificate against another CA's plan: refused, and revoked
    // at the signer, by its serial.
    let serial = serial_of(&cert).to_string();
    let err = ready(issue(&ca, &other_plan, &csr)).unwrap_err();
    assert_eq!(err.code(), "cert-policy-violation", "{err}");
    let IssueError::Rejected {
        serial: named,
        violation,
        withdrawal,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(named, &serial);
    assert!(
        violation.to_string().contains("not signed by the CA's key"),
        "{violation}"
    );
    assert_eq!(withdrawal, "revoked at the CA (cessation-of-operation)");
    assert_eq!(*ca.withdrawn.lock().unwrap(), std::slice::from_ref(&serial));
    assert!(
        err.to_string().starts_with(&format!(
            "the CA signed certificate {serial}, which breaks its plan ("
        )),
        "{err}"
    );
}

#[test]
fn a_withdrawal_says_what_became_of_the_certificate() {
    let (_, cert) = setup(SystemTime::now());
    let local =
        LocalCa::generate(CaEnv::Dev, Duration::from_secs(86400), SystemTime::now()).unwrap();
    // The local key keeps nothing it signs.
    assert_eq!(
        withdrawal_note(&ready(eos_ca::Signer::withdraw(&local, &serial_of(&cert)))),
        "the signer keeps no copy"
    );
    assert_eq!(
        withdrawal_note(&Ok(Withdrawal::AlreadyRevoked)),
        "already revoked at the CA"
    );
    let failed = withdrawal_note(&Err(eos_ca::IssueError::Signer("throttled".to_owned())));
    assert_eq!(
        failed,
        "NOT revoked at the CA (signer: throttled): revoke it there by hand"
    );
}

/// A remote CA is handed the CSR as received and may write the point in
/// the form the CSR used: the same key compressed passes the remote check,
/// not the exact one (the local key signs the canonical form only).
#[test]
fn a_remote_certificate_may_carry_the_same_key_compressed() {
    use p256::elliptic_curve::sec1::ToSec1Point;
    let (plan, cert) = setup(SystemTime::now());
    let tbs_der = cert.tbs_certificate().to_der().unwrap();
    let spki = plan.public_key();
    let key = p256::PublicKey::from_sec1_bytes(spki.subject_public_key.raw_bytes()).unwrap();
    let squeezed = spki::SubjectPublicKeyInfoOwned {
        algorithm: spki.algorithm.clone(),
        subject_public_key: der::asn1::BitString::from_bytes(key.to_sec1_point(true).as_bytes())
            .unwrap(),
    };
    let (old, new) = (spki.to_der().unwrap(), squeezed.to_der().unwrap());
    let at = tbs_der.windows(old.len()).position(|w| w == old).unwrap();
    let mut body = tbs_der[4..at].to_vec();
    body.extend_from_slice(&new);
    body.extend_from_slice(&tbs_der[at + old.len()..]);
    assert_eq!(tbs_der[..2], [0x30, 0x82]);
    let mut patched = vec![0x30, 0x82];
    patched.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    patched.extend_from_slice(&body);
    let tbs = x509_cert::TbsCertificate::from_der(&patched).unwrap();
    eos_ca::check_tbs(&tbs, &plan, Strictness::Remote).unwrap();
    let err = eos_ca::check_tbs(&tbs, &plan, Strictness::Exact).unwrap_err();
    assert!(err.to_string().contains("public-key"), "{err}");
}

/// Every code of [`eos_ca::Code`] that planning or a CA can refuse with,
/// produced the way a caller meets it (the `csr-*` codes are in
/// tests/validate.rs, one `rejects_*` test each).
#[test]
fn issue_refusals_carry_their_codes() {
    let now = SystemTime::now();
    let ca = LocalCa::generate(CaEnv::Dev, Duration::from_secs(86400), now).unwrap();
    let (csr, account) = csr_and_account();
    let request = |lifetime| IssueRequest {
        csr: &csr,
        account: &account,
        profile: Profile::Cli,
        lifetime,
    };
    let policy = IssuancePolicy::default();
    let code = |r: Result<eos_ca::CertificatePlan, IssueError>| r.unwrap_err().code();
    let plan = |lifetime, policy: &IssuancePolicy, at| {
        plan_certificate(ca.info(), &request(lifetime), policy, None, at)
    };
    assert_eq!(
        code(plan(Some(Duration::ZERO), &policy, now)),
        "lifetime-zero"
    );
    assert_eq!(
        code(plan(Some(Duration::from_secs(86400 * 400)), &policy, now)),
        "lifetime-over-cap"
    );
    // The CA expired a day from now; planning two days on.
    let later = now + Duration::from_secs(2 * 86400);
    assert_eq!(code(plan(None, &policy, later)), "ca-not-valid");
    let incoherent = IssuancePolicy {
        backdate: Duration::from_secs(2 * 3600),
        ..IssuancePolicy::default()
    };
    assert_eq!(code(plan(None, &incoherent, now)), "policy-invalid");
    // A client certificate is no CA.
    let leaf = ca.sign(&plan(None, &policy, now).unwrap()).unwrap();
    let err = eos_ca::CaInfo::from_certificate(&leaf).unwrap_err();
    assert_eq!(err.code(), "ca-unusable", "{err}");
}
