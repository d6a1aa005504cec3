//! The AWS Private CA signer against a private moto server on 127.0.0.1.
//!
//! moto (5.x) implements CreateCertificateAuthority, Import...Certificate,
//! IssueCertificate, GetCertificate, RevokeCertificate and
//! GetCertificateAuthorityCertificate, but ignores templates, ApiPassthrough,
//! Validity and the signing algorithm: it copies the CSR's subject and SANs,
//! signs with its own RSA key and SHA-512, and makes every certificate valid
//! for 365 days. So these tests check the *call shapes* (the recorded JSON
//! bodies) and the round trip, and they check that `check_issued` refuses
//! what moto returns — exactly what must happen if a real CA ever returned a
//! certificate that does not follow the plan. The content rules themselves
//! are tested on the local CA (eos-ca, eos-sec's `tests/ca.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use eos_aws::acmpca::{
    CLIENT_AUTH_TEMPLATE, IssueWait, PrivateCa, PrivateCaError, Revocation, connect_recording,
    create_test_ca,
};
use eos_aws::moto::{MotoServer, block_on};
use eos_ca::{
    Account, CaEnv, CsrLimits, IssuancePolicy, IssueError, IssueRequest, LocalCa, Profile,
    RevocationReason, Signer, Strictness, ValidatedCsr,
};
use eos_identity::{SpaceId, UserId};

/// The certificate moto's CA presents: a real entityOS root whose subject is
/// the CA configuration's (moto names the issuer of what it signs from it).
fn root() -> LocalCa {
    LocalCa::generate(
        CaEnv::Dev,
        Duration::from_secs(3650 * 86400),
        SystemTime::now(),
    )
    .unwrap()
}

const SUBJECT: (&str, &str, &str) = ("entityOS", "dev", "entityOS dev Root CA");

/// A CSR made in-process, with the subject as given (RDNs in order, UTF8).
fn csr(subject: &[(rcgen::DnType, &str)]) -> ValidatedCsr {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    for (t, v) in subject {
        dn.push(t.clone(), rcgen::DnValue::Utf8String((*v).to_owned()));
    }
    params.distinguished_name = dn;
    let req = params.serialize_request(&key).unwrap();
    eos_ca::validate_csr(req.pem().unwrap().as_bytes(), &CsrLimits::default()).unwrap()
}

fn account() -> Account {
    Account {
        space: SpaceId::new("acme").unwrap(),
        user: UserId::new("alice").unwrap(),
    }
}

struct Setup {
    _moto: MotoServer,
    arn: String,
    ca: PrivateCa,
    recorded: eos_aws::acmpca::Recorded,
}

fn setup(wait: IssueWait) -> Option<Setup> {
    let moto = MotoServer::start()?;
    let opts = moto.aws_options();
    let root = root();
    let (arn, (ca, recorded)) = block_on(async {
        let arn = create_test_ca(
            &opts,
            SUBJECT,
            "EC_prime256v1",
            Some(&root.certificate_pem().unwrap()),
        )
        .await
        .unwrap();
        let connected = connect_recording(&opts, &arn, wait).await.unwrap();
        (arn, connected)
    });
    Some(Setup {
        _moto: moto,
        arn,
        ca,
        recorded,
    })
}

fn plan(ca: &PrivateCa, csr: &ValidatedCsr, account: &Account) -> eos_ca::CertificatePlan {
    eos_ca::plan_certificate(
        ca.info(),
        &IssueRequest {
            csr,
            account,
            profile: Profile::Cli,
            lifetime: None,
        },
        &IssuancePolicy::default(),
        None,
        SystemTime::now(),
    )
    .unwrap()
}

#[test]
fn issue_sends_the_plan_not_the_csr_and_check_issued_refuses_what_moto_returns() {
    let Some(s) = setup(IssueWait::default()) else {
        return;
    };
    assert_eq!(s.ca.strictness(), Strictness::Remote);
    // The CSR names someone else (and the wrong RDN order): moto copies it.
    let csr = csr(&[
        (rcgen::DnType::CommonName, "mallory"),
        (rcgen::DnType::OrganizationName, "globex"),
    ]);
    let account = account();
    let plan = plan(&s.ca, &csr, &account);
    let err = block_on(eos_ca::issue(&s.ca, &plan, &csr)).unwrap_err();
    // moto ignored ApiPassthrough and copied the CSR's subject: refused,
    // and the certificate, which Private CA keeps, revoked there.
    let IssueError::Rejected {
        serial,
        violation,
        withdrawal,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(
        matches!(violation.as_ref(), IssueError::PolicyViolation { rule: "subject", detail } if detail.contains("mallory")),
        "{err:?}"
    );
    assert_eq!(withdrawal, "revoked at the CA (cessation-of-operation)");
    let revoked = s.recorded.bodies("RevokeCertificate");
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["CertificateAuthorityArn"], s.arn.as_str());
    assert_eq!(revoked[0]["RevocationReason"], "CESSATION_OF_OPERATION");
    let sent = revoked[0]["CertificateSerial"].as_str().unwrap();
    assert_eq!(sent.replace(':', "").to_lowercase(), serial.to_lowercase());

    // The call carried the plan: template, passthrough subject and SAN,
    // absolute validity with the backdate, the CA key's algorithm, a token.
    let bodies = s.recorded.bodies("IssueCertificate");
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let body = &bodies[0];
    assert_eq!(body["CertificateAuthorityArn"], s.arn.as_str());
    assert_eq!(body["TemplateArn"], CLIENT_AUTH_TEMPLATE);
    assert_eq!(body["SigningAlgorithm"], "SHA256WITHECDSA");
    let attrs = &body["ApiPassthrough"]["Subject"]["CustomAttributes"];
    assert_eq!(attrs[0]["ObjectIdentifier"], "2.5.4.10");
    assert_eq!(attrs[0]["Value"], "acme");
    assert_eq!(attrs[1]["ObjectIdentifier"], "2.5.4.3");
    assert_eq!(attrs[1]["Value"], "alice");
    assert_eq!(
        body["ApiPassthrough"]["Extensions"]["SubjectAlternativeNames"][0]["UniformResourceIdentifier"],
        "urn:entityos:space:acme:user:alice"
    );
    let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(body["Validity"]["Type"], "ABSOLUTE");
    assert_eq!(body["Validity"]["Value"], secs(plan.not_after()));
    assert_eq!(body["ValidityNotBefore"]["Type"], "ABSOLUTE");
    assert_eq!(body["ValidityNotBefore"]["Value"], secs(plan.not_before()));
    let token = body["IdempotencyToken"].as_str().unwrap();
    assert!(!token.is_empty() && token.len() <= 36, "{token}");
    assert_eq!(token, eos_aws::acmpca::idempotency_token(&plan));
    // The CSR went as PEM (the JSON protocol base64-encodes the blob).
    use base64::Engine as _;
    let sent = base64::engine::general_purpose::STANDARD
        .decode(body["Csr"].as_str().unwrap())
        .unwrap();
    assert!(sent.starts_with(b"-----BEGIN CERTIFICATE REQUEST-----\n"));
    // And the certificate was fetched with GetCertificate.
    assert_eq!(s.recorded.bodies("GetCertificate").len(), 1);
}

#[test]
fn a_csr_that_matches_the_plan_still_fails_on_moto_validity() {
    let Some(s) = setup(IssueWait::default()) else {
        return;
    };
    // Subject exactly as planned: moto's copy then matches, and the next
    // difference is moto's fixed 365-day validity, outside the plan (72h).
    let csr = csr(&[
        (rcgen::DnType::OrganizationName, "acme"),
        (rcgen::DnType::CommonName, "alice"),
    ]);
    let plan = plan(&s.ca, &csr, &account());
    let cert = block_on(s.ca.issue_certificate(&plan, &csr)).unwrap();
    let err = eos_ca::check_issued(&cert, &plan, Strictness::Remote).unwrap_err();
    assert!(
        matches!(
            &err,
            IssueError::PolicyViolation {
                rule: "validity",
                ..
            }
        ),
        "{err:?}"
    );
    // The issuer is the CA's certificate's subject: planning read it.
    assert_eq!(cert.tbs_certificate().issuer(), s.ca.info().subject());
}

#[test]
fn bundle_is_the_ca_certificate() {
    let Some(s) = setup(IssueWait::default()) else {
        return;
    };
    let bundle = s.ca.trust_bundle();
    let cert = eos_ca::certificate_from_pem(&bundle).unwrap();
    assert_eq!(cert.tbs_certificate().subject(), s.ca.info().subject());
    assert_eq!(s.ca.crl_url(), None);
}

#[test]
fn revoke_then_the_wait_times_out_naming_the_certificate() {
    let Some(s) = setup(IssueWait {
        max: Duration::from_millis(600),
        first: Duration::from_millis(50),
        longest: Duration::from_millis(200),
    }) else {
        return;
    };
    let csr = csr(&[
        (rcgen::DnType::OrganizationName, "acme"),
        (rcgen::DnType::CommonName, "alice"),
    ]);
    let plan = plan(&s.ca, &csr, &account());
    // moto formats serials as upper-case hex without a leading zero nibble;
    // ours pads to whole bytes, so pick a certificate whose first byte is
    // at least 0x10 for the two to agree.
    let (arn, cert) = (0..8)
        .map(|_| {
            let arn = block_on(s.ca.request_certificate(&plan, &csr)).unwrap();
            let cert = block_on(s.ca.wait_for(&arn)).unwrap();
            (arn, cert)
        })
        .find(|(_, c)| eos_ca::serial_of(c).as_bytes()[0] >= 0x10)
        .unwrap();
    let serial = eos_ca::serial_of(&cert);
    let done = block_on(s.ca.revoke(&serial, RevocationReason::KeyCompromise)).unwrap();
    assert_eq!(done, Revocation::Revoked);
    let revoke = s.recorded.bodies("RevokeCertificate");
    assert_eq!(revoke[0]["CertificateAuthorityArn"], s.arn.as_str());
    assert_eq!(revoke[0]["RevocationReason"], "KEY_COMPROMISE");
    assert_eq!(
        revoke[0]["CertificateSerial"],
        eos_aws::acmpca::aws_serial(&serial).as_str()
    );
    // moto answers GetCertificate for a revoked certificate with
    // RequestInProgressException, AWS's "not yet": the bounded wait gives
    // up and names the certificate so the operator can fetch it later.
    let began = std::time::Instant::now();
    let err = block_on(s.ca.wait_for(&arn)).unwrap_err();
    assert!(began.elapsed() < Duration::from_secs(5));
    match &err {
        PrivateCaError::Timeout {
            certificate_arn, ..
        } => assert_eq!(certificate_arn, &arn),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains(&arn), "{err}");
    // A certificate ARN of another CA is refused before any call.
    let err = block_on(s.ca.wait_for("arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/00000000-0000-0000-0000-000000000000/certificate/00")).unwrap_err();
    assert!(matches!(err, PrivateCaError::BadArn { .. }), "{err:?}");
}

#[test]
fn refuses_a_ca_that_is_not_active_or_unknown() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let opts = moto.aws_options();
    block_on(async {
        let missing = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/12345678-1234-1234-1234-123456789012";
        let err = PrivateCa::connect(&opts, missing, IssueWait::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, PrivateCaError::Call { code, .. } if code == "ResourceNotFoundException"),
            "{err:?}"
        );
        assert!(err.is_bad_input());
        let err = PrivateCa::connect(&opts, "arn:aws:acm-pca:nope", IssueWait::default())
            .await
            .unwrap_err();
        assert!(matches!(err, PrivateCaError::BadArn { .. }), "{err:?}");
        // Created but never given its certificate: PENDING_CERTIFICATE.
        let pending = create_test_ca(&opts, SUBJECT, "EC_prime256v1", None)
            .await
            .unwrap();
        let err = PrivateCa::connect(&opts, &pending, IssueWait::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, PrivateCaError::NotActive { status, .. } if status == "PENDING_CERTIFICATE"),
            "{err:?}"
        );
        assert!(err.to_string().contains("not ACTIVE"), "{err}");
    });
}
