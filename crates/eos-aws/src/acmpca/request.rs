//! What a call to Private CA carries, decided and checked before it is
//! sent: everything AWS validates that the moto server does not.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_acmpca::types::{KeyAlgorithm, SigningAlgorithm};
use eos_ca::{CertificatePlan, RevocationReason, Serial, ValidatedCsr};
use sha2::Digest;

use super::PrivateCaError;

/// The API-passthrough client-authentication template: basicConstraints
/// CA:false, keyUsage digitalSignature (critical), extendedKeyUsage
/// clientAuth, AKI, SKI, and the subject and SAN from `ApiPassthrough`
/// ("AWS Private CA template definitions").
pub const CLIENT_AUTH_TEMPLATE: &str =
    "arn:aws:acm-pca:::template/EndEntityClientAuthCertificate_APIPassthrough/V1";

/// AWS caps `IdempotencyToken` at 36 characters.
pub const MAX_IDEMPOTENCY_TOKEN: usize = 36;

/// A CA in `SHORT_LIVED_CERTIFICATE` mode issues certificates of at most
/// seven days ("CertificateAuthority: UsageMode").
pub const SHORT_LIVED_MAX: Duration = Duration::from_secs(7 * 24 * 3600);

/// X.520's upper bound for a common name or organization name (ub-common-name,
/// ub-organization-name): 64 characters.
const MAX_NAME_CHARS: usize = 64;

/// "IssueCertificate": the CSR blob is 1 to 32,768 bytes.
const MAX_CSR_BYTES: usize = 32_768;

/// Check a certificate authority ARN:
/// `arn:<partition>:acm-pca:<region>:<12-digit account>:certificate-authority/<uuid>`.
pub fn check_ca_arn(arn: &str) -> Result<(), PrivateCaError> {
    let bad = |why| {
        Err(PrivateCaError::BadArn {
            what: "certificate authority ARN",
            arn: arn.to_owned(),
            why,
        })
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts.as_slice() else {
        return bad(
            "expected arn:<partition>:acm-pca:<region>:<account>:certificate-authority/<id>",
        );
    };
    if *prefix != "arn" || !partition.starts_with("aws") {
        return bad("must start with arn:aws");
    }
    if *service != "acm-pca" {
        return bad("the service must be acm-pca");
    }
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return bad("the region is missing or malformed");
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return bad("the account must be 12 digits");
    }
    let Some(id) = resource.strip_prefix("certificate-authority/") else {
        return bad("the resource must be certificate-authority/<id>");
    };
    if !is_uuid(id) {
        return bad("the CA id must be a UUID");
    }
    Ok(())
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Check a certificate ARN returned by IssueCertificate: it must name a
/// certificate of `ca_arn` (`<ca arn>/certificate/<hex id>`).
pub fn check_certificate_arn(ca_arn: &str, arn: &str) -> Result<(), PrivateCaError> {
    let id = arn
        .strip_prefix(ca_arn)
        .and_then(|rest| rest.strip_prefix("/certificate/"));
    match id {
        Some(id)
            if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(())
        }
        _ => Err(PrivateCaError::BadArn {
            what: "certificate ARN",
            arn: arn.to_owned(),
            why: "not a certificate of the configured CA",
        }),
    }
}

/// A serial as RevokeCertificate takes it: hex byte pairs separated by
/// colons, as `openssl x509 -text` prints them ("RevokeCertificate:
/// CertificateSerial"). Upper case: the moto server compares it
/// case-sensitively with upper-case text, and AWS reads hex either way.
pub fn aws_serial(serial: &Serial) -> String {
    serial
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The AWS revocation reason for ours (RFC 5280 §5.3.1 names, upper case).
pub fn aws_reason(reason: RevocationReason) -> aws_sdk_acmpca::types::RevocationReason {
    use aws_sdk_acmpca::types::RevocationReason as Aws;
    match reason {
        RevocationReason::KeyCompromise => Aws::KeyCompromise,
        RevocationReason::AffiliationChanged => Aws::AffiliationChanged,
        RevocationReason::Superseded => Aws::Superseded,
        RevocationReason::CessationOfOperation => Aws::CessationOfOperation,
        _ => Aws::Unspecified,
    }
}

/// The signing algorithm for a CA key: SHA-256 for RSA and P-256, SHA-384
/// for P-384 (the hash no weaker than the curve, RFC 5480 §4). Other keys
/// (P-521, SM2, ML-DSA) are refused: ALB and API Gateway trust stores take
/// RSA and ECDSA P-256/P-384 chains.
pub fn signing_algorithm(key: &KeyAlgorithm) -> Option<SigningAlgorithm> {
    match key {
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
            Some(SigningAlgorithm::Sha256Withrsa)
        }
        KeyAlgorithm::EcPrime256v1 => Some(SigningAlgorithm::Sha256Withecdsa),
        KeyAlgorithm::EcSecp384r1 => Some(SigningAlgorithm::Sha384Withecdsa),
        _ => None,
    }
}

pub(super) fn epoch_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Everything an IssueCertificate call carries, decided before sending
/// (and checked by the unit tests without a network).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueCall {
    /// Always [`CLIENT_AUTH_TEMPLATE`].
    pub template_arn: &'static str,
    /// From the CA's key.
    pub signing_algorithm: SigningAlgorithm,
    /// ABSOLUTE, Unix seconds: the plan's notBefore (the backdate).
    pub not_before: i64,
    /// ABSOLUTE, Unix seconds: the plan's notAfter.
    pub not_after: i64,
    /// The subject's RDNs in order, as (dotted OID, value): O = space,
    /// CN = user when it fits ([`eos_ca::Account::subject_attributes`]).
    pub subject: Vec<(String, String)>,
    /// The one URI SAN: the account URI.
    pub san_uri: String,
    /// The CSR: the validated DER byte for byte, in PEM armour.
    pub csr: Vec<u8>,
    /// Derived from the plan; at most 36 characters.
    pub idempotency_token: String,
}

/// The idempotency token of a plan: the first 32 hex digits of SHA-256
/// over the key fingerprint, the account URI, notBefore and notAfter. The
/// same plan sent twice (an SDK retry after a lost answer) names the same
/// request; a new plan (a new lifetime window) is a new request.
pub fn idempotency_token(plan: &CertificatePlan) -> String {
    let mut h = sha2::Sha256::new();
    h.update(plan.fingerprint().to_string().as_bytes());
    h.update(b"\n");
    h.update(plan.uri().as_bytes());
    h.update(b"\n");
    h.update(epoch_seconds(plan.not_before()).to_be_bytes());
    h.update(epoch_seconds(plan.not_after()).to_be_bytes());
    let digest = h.finalize();
    hex::encode(digest.get(..16).unwrap_or_default())
}

/// What a CA allows, as far as one issuance is concerned.
#[derive(Debug, Clone)]
pub(super) struct CaLimits {
    pub(super) signing: SigningAlgorithm,
    pub(super) short_lived: bool,
}

/// Decide the call for a plan, refusing what AWS or the CA would refuse.
pub(super) fn issue_call(
    plan: &CertificatePlan,
    csr: &ValidatedCsr,
    limits: &CaLimits,
) -> Result<IssueCall, PrivateCaError> {
    let refuse = |m: String| Err(PrivateCaError::Refused(m));
    // The subject the plan holds the certificate to (a user id too long
    // for a CommonName is in the URI SAN only).
    let subject = plan.account().subject_attributes();
    for (oid, value) in &subject {
        if value.chars().count() > MAX_NAME_CHARS {
            return refuse(format!(
                "subject attribute {oid} `{value}` is over {MAX_NAME_CHARS} characters: AWS Private CA takes subject names of at most {MAX_NAME_CHARS}"
            ));
        }
    }
    let not_before = epoch_seconds(plan.not_before());
    let not_after = epoch_seconds(plan.not_after());
    if not_before <= 0 || not_after <= not_before {
        return refuse(format!(
            "planned validity {} to {} is empty",
            eos_ca::rfc3339(plan.not_before()),
            eos_ca::rfc3339(plan.not_after())
        ));
    }
    let lifetime = plan
        .not_after()
        .duration_since(plan.not_before())
        .unwrap_or_default();
    if limits.short_lived && lifetime > SHORT_LIVED_MAX {
        return refuse(format!(
            "the CA is in SHORT_LIVED_CERTIFICATE mode (at most 7d) but the plan asks for {}; use a shorter --lifetime or a GENERAL_PURPOSE CA",
            eos_ca::format_duration(lifetime)
        ));
    }
    let san_uri = plan.uri().to_owned();
    if san_uri.is_empty() || san_uri.len() > 253 {
        return refuse(format!("URI SAN `{san_uri}` must be 1 to 253 characters"));
    }
    let csr_pem =
        der::pem::encode_string("CERTIFICATE REQUEST", der::pem::LineEnding::LF, csr.der())
            .map_err(|e| PrivateCaError::Refused(format!("csr: {e}")))?;
    if csr_pem.len() > MAX_CSR_BYTES {
        return refuse(format!(
            "the CSR is {} bytes as PEM; AWS Private CA takes at most {MAX_CSR_BYTES}",
            csr_pem.len()
        ));
    }
    let idempotency_token = idempotency_token(plan);
    if idempotency_token.is_empty() || idempotency_token.len() > MAX_IDEMPOTENCY_TOKEN {
        return refuse(format!(
            "idempotency token of {} characters; AWS takes 1 to {MAX_IDEMPOTENCY_TOKEN}",
            idempotency_token.len()
        ));
    }
    Ok(IssueCall {
        template_arn: CLIENT_AUTH_TEMPLATE,
        signing_algorithm: limits.signing.clone(),
        not_before,
        not_after,
        subject: subject
            .into_iter()
            .map(|(oid, value)| (oid.to_string(), value.to_owned()))
            .collect(),
        san_uri,
        csr: csr_pem.into_bytes(),
        idempotency_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/12345678-1234-1234-1234-123456789012";

    #[test]
    fn ca_arns_are_checked_client_side() {
        check_ca_arn(ARN).unwrap();
        check_ca_arn(
            "arn:aws-us-gov:acm-pca:us-gov-west-1:123456789012:certificate-authority/abcdefab-1234-1234-1234-123456789012",
        )
        .unwrap();
        for (bad, why) in [
            ("", "expected"),
            (
                "arn:aws:acm:eu-west-1:123456789012:certificate-authority/12345678-1234-1234-1234-123456789012",
                "service",
            ),
            (
                "arn:aws:acm-pca::123456789012:certificate-authority/12345678-1234-1234-1234-123456789012",
                "region",
            ),
            (
                "arn:aws:acm-pca:eu-west-1:1234:certificate-authority/12345678-1234-1234-1234-123456789012",
                "12 digits",
            ),
            (
                "arn:aws:acm-pca:eu-west-1:123456789012:certificate/12345678-1234-1234-1234-123456789012",
                "resource",
            ),
            (
                "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/not-a-uuid",
                "UUID",
            ),
            (
                "urn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/12345678-1234-1234-1234-123456789012",
                "arn:aws",
            ),
        ] {
            let e = check_ca_arn(bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
            assert!(e.is_bad_input());
        }
    }

    #[test]
    fn certificate_arns_must_belong_to_the_ca() {
        check_certificate_arn(
            ARN,
            &format!("{ARN}/certificate/0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        for bad in [
            String::new(),
            format!("{ARN}/certificate/"),
            format!("{ARN}/certificate/../x"),
            "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/other/certificate/00"
                .to_owned(),
        ] {
            assert!(check_certificate_arn(ARN, &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serials_are_colon_separated_hex_pairs() {
        let s = Serial::from_hex("0a1b2c").unwrap();
        assert_eq!(aws_serial(&s), "0A:1B:2C");
        let s = Serial::from_hex("7f").unwrap();
        assert_eq!(aws_serial(&s), "7F");
    }

    #[test]
    fn reasons_map_one_to_one() {
        use aws_sdk_acmpca::types::RevocationReason as Aws;
        assert_eq!(
            aws_reason(RevocationReason::KeyCompromise),
            Aws::KeyCompromise
        );
        assert_eq!(aws_reason(RevocationReason::Superseded), Aws::Superseded);
        assert_eq!(
            aws_reason(RevocationReason::AffiliationChanged),
            Aws::AffiliationChanged
        );
        assert_eq!(
            aws_reason(RevocationReason::CessationOfOperation),
            Aws::CessationOfOperation
        );
        assert_eq!(aws_reason(RevocationReason::Unspecified), Aws::Unspecified);
    }

    #[test]
    fn signing_follows_the_ca_key() {
        assert_eq!(
            signing_algorithm(&KeyAlgorithm::EcPrime256v1),
            Some(SigningAlgorithm::Sha256Withecdsa)
        );
        assert_eq!(
            signing_algorithm(&KeyAlgorithm::EcSecp384r1),
            Some(SigningAlgorithm::Sha384Withecdsa)
        );
        assert_eq!(
            signing_algorithm(&KeyAlgorithm::Rsa4096),
            Some(SigningAlgorithm::Sha256Withrsa)
        );
        assert_eq!(signing_algorithm(&KeyAlgorithm::Sm2), None);
        assert_eq!(signing_algorithm(&KeyAlgorithm::EcSecp521r1), None);
    }

    fn plan_for(user: &str, profile: eos_ca::Profile) -> (CertificatePlan, ValidatedCsr) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let req = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        let csr =
            eos_ca::validate_csr(req.pem().unwrap().as_bytes(), &eos_ca::CsrLimits::default())
                .unwrap();
        let ca = eos_ca::LocalCa::generate(
            eos_ca::CaEnv::Dev,
            Duration::from_secs(3650 * 86400),
            SystemTime::now(),
        )
        .unwrap();
        let account = eos_ca::Account {
            space: eos_identity::SpaceId::new("acme").unwrap(),
            user: eos_identity::UserId::new(user).unwrap(),
        };
        let plan = eos_ca::plan_certificate(
            ca.info(),
            &eos_ca::IssueRequest {
                csr: &csr,
                account: &account,
                profile,
                lifetime: None,
            },
            &eos_ca::IssuancePolicy::default(),
            None,
            SystemTime::now(),
        )
        .unwrap();
        (plan, csr)
    }

    fn limits(short_lived: bool) -> CaLimits {
        CaLimits {
            signing: SigningAlgorithm::Sha256Withecdsa,
            short_lived,
        }
    }

    #[test]
    fn the_call_carries_the_plan() {
        let (plan, csr) = plan_for("alice", eos_ca::Profile::Cli);
        let call = issue_call(&plan, &csr, &limits(false)).unwrap();
        assert_eq!(call.template_arn, CLIENT_AUTH_TEMPLATE);
        assert_eq!(call.signing_algorithm, SigningAlgorithm::Sha256Withecdsa);
        assert_eq!(call.not_before, epoch_seconds(plan.not_before()));
        assert_eq!(call.not_after, epoch_seconds(plan.not_after()));
        assert_eq!(call.not_after - call.not_before, 72 * 3600 + 300);
        assert_eq!(
            call.subject,
            vec![
                ("2.5.4.10".to_owned(), "acme".to_owned()),
                ("2.5.4.3".to_owned(), "alice".to_owned())
            ]
        );
        assert_eq!(call.san_uri, "urn:entityos:space:acme:user:alice");
        assert!(
            call.csr
                .starts_with(b"-----BEGIN CERTIFICATE REQUEST-----\n")
        );
        assert_eq!(call.idempotency_token.len(), 32);
        // The same plan, the same token; another plan, another token.
        assert_eq!(call.idempotency_token, idempotency_token(&plan));
        let (other, _) = plan_for("alice", eos_ca::Profile::Cli);
        assert_ne!(idempotency_token(&other), call.idempotency_token);
    }

    #[test]
    fn rejects_what_aws_or_the_ca_mode_would_refuse() {
        // A 30-day browser certificate from a short-lived-mode CA.
        let (plan, csr) = plan_for("alice", eos_ca::Profile::Browser);
        issue_call(&plan, &csr, &limits(false)).unwrap();
        let err = issue_call(&plan, &csr, &limits(true)).unwrap_err();
        assert!(err.to_string().contains("SHORT_LIVED_CERTIFICATE"), "{err}");
        assert!(err.is_bad_input());
        // A user id too long for a CommonName is in the URI SAN only, as
        // the plan says, so AWS gets no subject name over its limit.
        let long = "u".repeat(128);
        let (plan, csr) = plan_for(&long, eos_ca::Profile::Cli);
        let call = issue_call(&plan, &csr, &limits(false)).unwrap();
        assert_eq!(call.subject, [("2.5.4.10".to_owned(), "acme".to_owned())]);
        assert!(call.san_uri.ends_with(&long));
        let (plan, csr) = plan_for(&"u".repeat(64), eos_ca::Profile::Cli);
        let call = issue_call(&plan, &csr, &limits(false)).unwrap();
        assert_eq!(call.subject.len(), 2);
    }
}
