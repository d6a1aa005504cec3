//! AWS Private CA as an [`eos_ca::Signer`].
//!
//! The certificate is planned by eos-ca exactly as for the local key; this
//! module only carries the plan to AWS Private CA ("IssueCertificate" in the
//! AWS Private CA API Reference) and brings the certificate back:
//!
//! - the template is `EndEntityClientAuthCertificate_APIPassthrough/V1`, so
//!   the subject (`O=<space>, CN=<user>`, no CN for a user id over 64
//!   characters) and the URI SAN come from the plan
//!   through `ApiPassthrough` — without a passthrough template Private CA
//!   copies them from the CSR, which never names anyone here;
//! - `Validity` (ABSOLUTE: the plan's notAfter) and `ValidityNotBefore`
//!   (ABSOLUTE: the plan's backdated notBefore) carry the plan's lifetime;
//! - the signing algorithm follows the CA's own key (read once with
//!   "DescribeCertificateAuthority");
//! - an idempotency token derived from the plan, so a retried call inside
//!   AWS's five-minute idempotency window never issues twice;
//! - "GetCertificate" is polled with a bounded, backed-off wait
//!   (`RequestInProgressException` means "not yet").
//!
//! What comes back is parsed strictly and, through [`eos_ca::issue`], held to
//! the plan by [`eos_ca::check_issued`] with [`Strictness::Remote`] (Private
//! CA picks the serial and key identifiers). Everything AWS validates that
//! the moto server used in tests does not is validated here first: ARNs,
//! token length, validity inside the plan and the CA's usage mode, subject
//! lengths, serial format.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_acmpca::Client;
use aws_sdk_acmpca::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_acmpca::types::{
    ApiPassthrough, Asn1Subject, CertificateAuthorityStatus, CertificateAuthorityType,
    CertificateAuthorityUsageMode, CustomAttribute, Extensions, GeneralName, KeyAlgorithm,
    SigningAlgorithm, Validity, ValidityPeriodType,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use eos_ca::{
    CaInfo, Certificate, CertificatePlan, IssueError, RevocationReason, Serial, Signer, Strictness,
    ValidatedCsr, Withdrawal,
};
use sha2::Digest;

use crate::AwsOptions;

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

/// A Private CA call or its answer failed, or a request was refused before
/// it was sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivateCaError {
    /// An ARN that AWS would refuse.
    #[error("{what} `{arn}` is not a valid ARN: {why}")]
    BadArn {
        /// `certificate authority ARN` or `certificate ARN`.
        what: &'static str,
        /// The ARN as given.
        arn: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The CA cannot issue now.
    #[error("certificate authority {arn} is {status}, not ACTIVE: it cannot issue or revoke")]
    NotActive {
        /// The CA.
        arn: String,
        /// Its status.
        status: String,
    },
    /// A CA that is neither ROOT nor SUBORDINATE.
    #[error("certificate authority {arn} has type {kind}; only ROOT and SUBORDINATE CAs issue")]
    UnsupportedType {
        /// The CA.
        arn: String,
        /// Its type.
        kind: String,
    },
    /// A CA key whose certificates the ALB trust store cannot use.
    #[error(
        "certificate authority {arn} has key algorithm {algorithm}; eos-sec issues with RSA or EC P-256/P-384 CAs only"
    )]
    UnsupportedKey {
        /// The CA.
        arn: String,
        /// Its key algorithm.
        algorithm: String,
    },
    /// The CA's own certificate is unusable.
    #[error("certificate authority {arn}: its certificate: {detail}")]
    BadCaCertificate {
        /// The CA.
        arn: String,
        /// What is wrong.
        detail: String,
    },
    /// A request refused before sending: what AWS would refuse, or what the
    /// plan does not allow.
    #[error("{0}")]
    Refused(String),
    /// The certificate was not ready within the wait allowed.
    #[error(
        "certificate {certificate_arn} was not ready after {waited:?}; fetch it later with `aws acm-pca get-certificate --certificate-authority-arn {ca_arn} --certificate-arn {certificate_arn}`"
    )]
    Timeout {
        /// The CA.
        ca_arn: String,
        /// The certificate, for fetching it later.
        certificate_arn: String,
        /// How long we waited.
        waited: Duration,
    },
    /// AWS answered something that is not what the API promises.
    #[error("{call}: unexpected answer: {detail}")]
    BadResponse {
        /// The API call.
        call: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The CA publishes no complete CRL eos-sec can carry to the edge.
    #[error(
        "certificate authority {arn} {why}: an ALB trust store would never see a revocation; enable a complete CRL written to S3 (`aws acm-pca update-certificate-authority --revocation-configuration CrlConfiguration={{Enabled=true,S3BucketName=<bucket>}}`)"
    )]
    NoCrl {
        /// The CA.
        arn: String,
        /// Why (`publishes no CRL`, `publishes partitioned CRLs`).
        why: &'static str,
    },
    /// The CRL object in the CA's bucket is not a CRL of this CA.
    #[error("the CRL at s3://{bucket}/{key} is refused: {error}")]
    BadCrl {
        /// The CA's CRL bucket.
        bucket: String,
        /// The object.
        key: String,
        /// Why.
        error: eos_ca::CrlError,
    },
    /// Any other failed call.
    #[error("{call} on {arn}: {code}: {message}")]
    Call {
        /// The API call.
        call: &'static str,
        /// The CA or certificate.
        arn: String,
        /// The AWS error code (e.g. `ResourceNotFoundException`).
        code: String,
        /// The service's message.
        message: String,
    },
}

impl PrivateCaError {
    /// True when what the operator gave is wrong (exit code 2): an ARN, a
    /// CA that cannot be used, a request the plan or AWS does not allow.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            PrivateCaError::BadArn { .. }
                | PrivateCaError::NotActive { .. }
                | PrivateCaError::UnsupportedType { .. }
                | PrivateCaError::UnsupportedKey { .. }
                | PrivateCaError::Refused(_)
                | PrivateCaError::NoCrl { .. }
        ) || matches!(self, PrivateCaError::Call { code, .. } if code == "ResourceNotFoundException")
    }
}

fn call_error<E>(call: &'static str, arn: &str, e: &SdkError<E, HttpResponse>) -> PrivateCaError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = e.code().unwrap_or("error").to_owned();
    let message = e
        .message()
        .map_or_else(|| crate::client::describe(e), str::to_owned);
    PrivateCaError::Call {
        call,
        arn: arn.to_owned(),
        code,
        message,
    }
}

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

fn epoch_seconds(t: SystemTime) -> i64 {
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
struct CaLimits {
    signing: SigningAlgorithm,
    short_lived: bool,
}

/// Decide the call for a plan, refusing what AWS or the CA would refuse.
fn issue_call(
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

/// How long to wait for an issued certificate, and how often to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueWait {
    /// Give up after this long (the certificate may still be issued: the
    /// error names its ARN). Default 60 s.
    pub max: Duration,
    /// First pause before asking again; doubles each time. Default 200 ms.
    pub first: Duration,
    /// Longest pause between two calls. Default 5 s.
    pub longest: Duration,
}

impl Default for IssueWait {
    fn default() -> IssueWait {
        IssueWait {
            max: Duration::from_secs(60),
            first: Duration::from_millis(200),
            longest: Duration::from_secs(5),
        }
    }
}

/// Ask `fetch` until it answers `Some`, backing off from `wait.first` to
/// `wait.longest`, for at most `wait.max`; then [`PrivateCaError::Timeout`]
/// naming the certificate.
async fn poll<T, F, Fut>(
    wait: IssueWait,
    ca_arn: &str,
    certificate_arn: &str,
    mut fetch: F,
) -> Result<T, PrivateCaError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, PrivateCaError>>,
{
    let began = Instant::now();
    let mut pause = wait.first;
    loop {
        if let Some(found) = fetch().await? {
            return Ok(found);
        }
        let elapsed = began.elapsed();
        if elapsed >= wait.max {
            return Err(PrivateCaError::Timeout {
                ca_arn: ca_arn.to_owned(),
                certificate_arn: certificate_arn.to_owned(),
                waited: elapsed,
            });
        }
        tokio::time::sleep(pause.min(wait.max - elapsed)).await;
        pause = (pause * 2).min(wait.longest);
    }
}

/// Split a PEM bundle into its certificates, each parsed strictly; any
/// other content is an error.
fn certificates_from_bundle(
    call: &'static str,
    pem: &str,
) -> Result<Vec<Certificate>, PrivateCaError> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut rest = pem;
    while let Some(i) = rest.find(END) {
        let (block, tail) = rest.split_at(i + END.len());
        let cert =
            eos_ca::certificate_from_pem(block).map_err(|e| PrivateCaError::BadResponse {
                call,
                detail: format!("certificate {}: {e}", certs.len() + 1),
            })?;
        certs.push(cert);
        rest = tail;
    }
    if !rest.trim().is_empty() {
        return Err(PrivateCaError::BadResponse {
            call,
            detail: "text after the last certificate".to_owned(),
        });
    }
    Ok(certs)
}

/// Where AWS Private CA writes the CA's complete CRL ("Planning a
/// certificate revocation list (CRL)", AWS Private CA User Guide):
/// `s3://<S3BucketName>/<CustomPath or crl>/<CA id>.crl`, DER, replaced in
/// place at every update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlLocation {
    /// The CRL bucket of the CA's `CrlConfiguration`.
    pub bucket: String,
    /// The object key.
    pub key: String,
}

/// What the CA's `CrlConfiguration` says about its CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CrlSource {
    /// CRLs are off.
    Disabled,
    /// Partitioned CRLs: several objects, none of them the whole list.
    Partitioned,
    /// One complete CRL in S3.
    S3(CrlLocation),
}

/// The CA's CRL as read from its bucket and checked against the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCrl {
    /// Where it was read.
    pub location: CrlLocation,
    /// The CRL, checked ([`eos_ca::check_ca_crl`]).
    pub crl: eos_ca::CheckedCrl,
}

/// An AWS Private CA that issues eos-sec's client certificates.
pub struct PrivateCa {
    client: Client,
    s3: aws_sdk_s3::Client,
    crl: CrlSource,
    arn: String,
    limits: CaLimits,
    info: CaInfo,
    certificate_pem: String,
    chain_pem: String,
    crl_url: Option<String>,
    wait: IssueWait,
}

impl fmt::Debug for PrivateCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateCa")
            .field("arn", &self.arn)
            .field("signing_algorithm", &self.limits.signing)
            .field("subject", &self.info.subject().to_string())
            .finish_non_exhaustive()
    }
}

/// Whether a RevokeCertificate changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked now.
    Revoked,
    /// Private CA had already revoked it (`RequestAlreadyProcessedException`).
    AlreadyRevoked,
}

impl PrivateCa {
    /// Connect to the CA `arn`: read its configuration once
    /// (DescribeCertificateAuthority) and its certificate and chain
    /// (GetCertificateAuthorityCertificate). Refuses a CA that is not
    /// ACTIVE, not ROOT or SUBORDINATE, or whose key eos-sec does not sign
    /// with.
    pub async fn connect(
        opts: &AwsOptions,
        arn: &str,
        wait: IssueWait,
    ) -> Result<PrivateCa, PrivateCaError> {
        let sdk = crate::sdk_config(opts).await;
        let client = crate::client::client!(aws_sdk_acmpca, &sdk);
        PrivateCa::with_client(client, crl_reader(&sdk, opts), arn, wait).await
    }

    async fn with_client(
        client: Client,
        s3: aws_sdk_s3::Client,
        arn: &str,
        wait: IssueWait,
    ) -> Result<PrivateCa, PrivateCaError> {
        check_ca_arn(arn)?;
        let described = client
            .describe_certificate_authority()
            .certificate_authority_arn(arn)
            .send()
            .await
            .map_err(|e| call_error("DescribeCertificateAuthority", arn, &e))?;
        let Some(ca) = described.certificate_authority() else {
            return Err(PrivateCaError::BadResponse {
                call: "DescribeCertificateAuthority",
                detail: "no CertificateAuthority".to_owned(),
            });
        };
        match ca.status() {
            Some(CertificateAuthorityStatus::Active) => {}
            other => {
                return Err(PrivateCaError::NotActive {
                    arn: arn.to_owned(),
                    status: other.map_or("without a status", |s| s.as_str()).to_owned(),
                });
            }
        }
        match ca.r#type() {
            Some(CertificateAuthorityType::Root | CertificateAuthorityType::Subordinate) => {}
            other => {
                return Err(PrivateCaError::UnsupportedType {
                    arn: arn.to_owned(),
                    kind: other.map_or("none", |t| t.as_str()).to_owned(),
                });
            }
        }
        let key = ca
            .certificate_authority_configuration()
            .map(|c| c.key_algorithm().clone());
        let Some(signing) = key.as_ref().and_then(signing_algorithm) else {
            return Err(PrivateCaError::UnsupportedKey {
                arn: arn.to_owned(),
                algorithm: key.map_or("none".to_owned(), |k| k.as_str().to_owned()),
            });
        };
        let short_lived =
            ca.usage_mode() == Some(&CertificateAuthorityUsageMode::ShortLivedCertificate);
        let crl_url = crl_url(arn, ca)?;
        let crl = crl_source(arn, ca);
        let got = client
            .get_certificate_authority_certificate()
            .certificate_authority_arn(arn)
            .send()
            .await
            .map_err(|e| call_error("GetCertificateAuthorityCertificate", arn, &e))?;
        let certificate_pem = got.certificate().unwrap_or_default().trim().to_owned();
        let cert = eos_ca::certificate_from_pem(&certificate_pem).map_err(|e| {
            PrivateCaError::BadCaCertificate {
                arn: arn.to_owned(),
                detail: e,
            }
        })?;
        let info =
            CaInfo::from_certificate(&cert).map_err(|e| PrivateCaError::BadCaCertificate {
                arn: arn.to_owned(),
                detail: e.to_string(),
            })?;
        let chain_pem = got
            .certificate_chain()
            .unwrap_or_default()
            .trim()
            .to_owned();
        certificates_from_bundle("GetCertificateAuthorityCertificate", &chain_pem)?;
        Ok(PrivateCa {
            client,
            s3,
            crl,
            arn: arn.to_owned(),
            limits: CaLimits {
                signing,
                short_lived,
            },
            info,
            certificate_pem,
            chain_pem,
            crl_url,
            wait,
        })
    }

    /// The CA's ARN (recorded as the signer of what it issues).
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// What planning needs to know about the CA (from its certificate).
    pub fn info(&self) -> &CaInfo {
        &self.info
    }

    /// The signing algorithm sent with every IssueCertificate.
    pub fn signing_algorithm(&self) -> &SigningAlgorithm {
        &self.limits.signing
    }

    /// The CRL distribution point Private CA writes into the certificates
    /// it issues, when the CA publishes a CRL (`CrlConfiguration`) and does
    /// not omit the extension; planning must carry the same URL.
    pub fn crl_url(&self) -> Option<&str> {
        self.crl_url.as_deref()
    }

    /// Where the CA writes its complete CRL; refused when it writes none
    /// (or only partitions) — an edge behind it would see no revocation.
    pub fn crl_location(&self) -> Result<&CrlLocation, PrivateCaError> {
        match &self.crl {
            CrlSource::S3(location) => Ok(location),
            CrlSource::Disabled => Err(PrivateCaError::NoCrl {
                arn: self.arn.clone(),
                why: "publishes no CRL",
            }),
            CrlSource::Partitioned => Err(PrivateCaError::NoCrl {
                arn: self.arn.clone(),
                why: "publishes partitioned CRLs, none of which lists every revocation",
            }),
        }
    }

    /// The CRL Private CA wrote to its bucket (GetObject), held to this CA
    /// by [`eos_ca::check_ca_crl`]; `None` while there is none (Private CA
    /// writes the first one when CRLs are enabled, and a new one about 30
    /// minutes after a revocation). eos-sec never signs a CRL for this CA.
    pub async fn current_crl(&self) -> Result<Option<CaCrl>, PrivateCaError> {
        let location = self.crl_location()?.clone();
        let got = self
            .s3
            .get_object()
            .bucket(&location.bucket)
            .key(&location.key)
            .send()
            .await;
        let out = match got {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Ok(None);
            }
            Err(e) => {
                return Err(call_error(
                    "GetObject",
                    &format!("s3://{}/{}", location.bucket, location.key),
                    &e,
                ));
            }
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| PrivateCaError::BadResponse {
                call: "GetObject",
                detail: format!("s3://{}/{}: {e}", location.bucket, location.key),
            })?
            .into_bytes();
        // The ELBv2 revocation-file limit bounds what is worth reading.
        if body.len() > eos_policy::gate::limits::REVOCATION_FILE_BYTES {
            return Err(PrivateCaError::BadCrl {
                bucket: location.bucket,
                key: location.key,
                error: eos_ca::CrlError::Unsupported(format!(
                    "{} bytes; an ALB revocation file is at most {}",
                    body.len(),
                    eos_policy::gate::limits::REVOCATION_FILE_BYTES
                )),
            });
        }
        match eos_ca::check_ca_crl(&self.info, &body) {
            Ok(crl) => Ok(Some(CaCrl { location, crl })),
            Err(error) => Err(PrivateCaError::BadCrl {
                bucket: location.bucket,
                key: location.key,
                error,
            }),
        }
    }

    /// The CA certificate as PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The trust bundle: the CA certificate, then the chain above it (empty
    /// for a root), as GetCertificateAuthorityCertificate returns them.
    pub fn trust_bundle(&self) -> String {
        let mut out = format!("{}\n", self.certificate_pem);
        if !self.chain_pem.is_empty() {
            out.push_str(&self.chain_pem);
            out.push('\n');
        }
        out
    }

    /// The IssueCertificate call for a plan, decided and checked.
    pub fn issue_call(
        &self,
        plan: &CertificatePlan,
        csr: &ValidatedCsr,
    ) -> Result<IssueCall, PrivateCaError> {
        issue_call(plan, csr, &self.limits)
    }

    /// IssueCertificate, then GetCertificate until it is ready: the
    /// certificate, parsed strictly. The caller checks it against the plan
    /// ([`eos_ca::issue`] does).
    pub async fn issue_certificate(
        &self,
        plan: &CertificatePlan,
        csr: &ValidatedCsr,
    ) -> Result<Certificate, PrivateCaError> {
        let certificate_arn = self.request_certificate(plan, csr).await?;
        self.wait_for(&certificate_arn).await
    }

    /// IssueCertificate alone: the new certificate's ARN.
    pub async fn request_certificate(
        &self,
        plan: &CertificatePlan,
        csr: &ValidatedCsr,
    ) -> Result<String, PrivateCaError> {
        let call = self.issue_call(plan, csr)?;
        self.send_issue(call).await
    }

    /// GetCertificate until the certificate is ready (within the wait this
    /// CA was connected with), parsed strictly.
    pub async fn wait_for(&self, certificate_arn: &str) -> Result<Certificate, PrivateCaError> {
        check_certificate_arn(&self.arn, certificate_arn)?;
        let pem = poll(self.wait, &self.arn, certificate_arn, || {
            self.fetch(certificate_arn)
        })
        .await?;
        eos_ca::certificate_from_pem(&pem).map_err(|e| PrivateCaError::BadResponse {
            call: "GetCertificate",
            detail: format!("{certificate_arn}: {e}"),
        })
    }

    async fn send_issue(&self, call: IssueCall) -> Result<String, PrivateCaError> {
        let subject = call
            .subject
            .iter()
            .map(|(oid, value)| {
                CustomAttribute::builder()
                    .object_identifier(oid)
                    .value(value)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PrivateCaError::Refused(format!("subject: {e}")))?;
        let passthrough = ApiPassthrough::builder()
            .subject(
                Asn1Subject::builder()
                    .set_custom_attributes(Some(subject))
                    .build(),
            )
            .extensions(
                Extensions::builder()
                    .subject_alternative_names(
                        GeneralName::builder()
                            .uniform_resource_identifier(&call.san_uri)
                            .build(),
                    )
                    .build(),
            )
            .build();
        let absolute = |value: i64| {
            Validity::builder()
                .value(value)
                .r#type(ValidityPeriodType::Absolute)
                .build()
                .map_err(|e| PrivateCaError::Refused(format!("validity: {e}")))
        };
        let out = self
            .client
            .issue_certificate()
            .certificate_authority_arn(&self.arn)
            .csr(aws_smithy_types::Blob::new(call.csr))
            .signing_algorithm(call.signing_algorithm)
            .template_arn(call.template_arn)
            .validity(absolute(call.not_after)?)
            .validity_not_before(absolute(call.not_before)?)
            .api_passthrough(passthrough)
            .idempotency_token(call.idempotency_token)
            .send()
            .await
            .map_err(|e| call_error("IssueCertificate", &self.arn, &e))?;
        let arn = out.certificate_arn().unwrap_or_default().to_owned();
        check_certificate_arn(&self.arn, &arn)?;
        Ok(arn)
    }

    /// One GetCertificate: `None` while Private CA is still issuing.
    async fn fetch(&self, certificate_arn: &str) -> Result<Option<String>, PrivateCaError> {
        let got = self
            .client
            .get_certificate()
            .certificate_authority_arn(&self.arn)
            .certificate_arn(certificate_arn)
            .send()
            .await;
        match got {
            Ok(out) => match out.certificate() {
                Some(pem) => Ok(Some(pem.to_owned())),
                None => Err(PrivateCaError::BadResponse {
                    call: "GetCertificate",
                    detail: format!("{certificate_arn}: no certificate"),
                }),
            },
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_request_in_progress_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(call_error("GetCertificate", certificate_arn, &e)),
        }
    }

    /// Revoke a certificate this CA issued. Private CA publishes the
    /// revocation in its own CRL (and OCSP, when configured).
    pub async fn revoke(
        &self,
        serial: &Serial,
        reason: RevocationReason,
    ) -> Result<Revocation, PrivateCaError> {
        let text = aws_serial(serial);
        if serial.as_bytes().is_empty() || serial.as_bytes().len() > 20 {
            return Err(PrivateCaError::Refused(format!(
                "serial {serial} must be 1 to 20 bytes"
            )));
        }
        let sent = self
            .client
            .revoke_certificate()
            .certificate_authority_arn(&self.arn)
            .certificate_serial(&text)
            .revocation_reason(aws_reason(reason))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(Revocation::Revoked),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_request_already_processed_exception()) =>
            {
                Ok(Revocation::AlreadyRevoked)
            }
            Err(e) => Err(call_error("RevokeCertificate", &self.arn, &e)),
        }
    }
}

/// The S3 client that reads the CA's CRL: path-style addressing with a
/// local endpoint (moto), as [`crate::gate::AwsGate`] does.
fn crl_reader(sdk: &aws_config::SdkConfig, opts: &AwsOptions) -> aws_sdk_s3::Client {
    let path_style = opts.endpoint_url.is_some();
    crate::client::client!(aws_sdk_s3, sdk, |b: aws_sdk_s3::config::Builder| b
        .force_path_style(path_style))
}

/// Where the CA's `CrlConfiguration` has Private CA write its CRL: the key
/// is `<CustomPath or crl>/<CA id>.crl`, as in the CRL distribution point
/// ([`crl_url`]).
fn crl_source(arn: &str, ca: &aws_sdk_acmpca::types::CertificateAuthority) -> CrlSource {
    let Some(crl) = ca
        .revocation_configuration()
        .and_then(|r| r.crl_configuration())
        .filter(|c| c.enabled())
    else {
        return CrlSource::Disabled;
    };
    if crl.crl_type() == Some(&aws_sdk_acmpca::types::CrlType::Partitioned) {
        return CrlSource::Partitioned;
    }
    let Some(bucket) = crl.s3_bucket_name().filter(|b| !b.is_empty()) else {
        return CrlSource::Disabled;
    };
    let id = arn.rsplit('/').next().unwrap_or_default();
    let path = crl.custom_path().unwrap_or("crl").trim_matches('/');
    CrlSource::S3(CrlLocation {
        bucket: bucket.to_owned(),
        key: format!("{path}/{id}.crl"),
    })
}

/// The CRL distribution point Private CA puts in issued certificates
/// ("CrlConfiguration"): `http://<CustomCname>/crl/<CA id>.crl`, else
/// `http://<S3BucketName>.s3.<region>.amazonaws.com/crl/<CA id>.crl`; none
/// when CRLs are off or the extension is omitted.
fn crl_url(
    arn: &str,
    ca: &aws_sdk_acmpca::types::CertificateAuthority,
) -> Result<Option<String>, PrivateCaError> {
    let Some(crl) = ca
        .revocation_configuration()
        .and_then(|r| r.crl_configuration())
        .filter(|c| c.enabled())
    else {
        return Ok(None);
    };
    if crl
        .crl_distribution_point_extension_configuration()
        .is_some_and(|c| c.omit_extension())
    {
        return Ok(None);
    }
    let mut parts = arn.splitn(6, ':');
    let region = parts.nth(3).unwrap_or_default();
    let id = arn.rsplit('/').next().unwrap_or_default();
    let path = crl.custom_path().unwrap_or("crl");
    let host = match (crl.custom_cname(), crl.s3_bucket_name()) {
        (Some(cname), _) if !cname.is_empty() => cname.to_owned(),
        (_, Some(bucket)) if !bucket.is_empty() => format!("{bucket}.s3.{region}.amazonaws.com"),
        _ => {
            return Err(PrivateCaError::BadCaCertificate {
                arn: arn.to_owned(),
                detail: "CRLs are enabled without a bucket or CNAME".to_owned(),
            });
        }
    };
    Ok(Some(format!("http://{host}/{path}/{id}.crl")))
}

impl Signer for PrivateCa {
    async fn issue(
        &self,
        plan: &CertificatePlan,
        csr: &ValidatedCsr,
    ) -> Result<Certificate, IssueError> {
        self.issue_certificate(plan, csr)
            .await
            .map_err(|e| IssueError::Signer(e.to_string()))
    }

    fn strictness(&self) -> Strictness {
        Strictness::Remote
    }

    /// Private CA keeps what it signs: revoke it, so its CRL (and OCSP)
    /// lists it.
    async fn withdraw(&self, serial: &Serial) -> Result<Withdrawal, IssueError> {
        match self.revoke(serial, eos_ca::WITHDRAWAL_REASON).await {
            Ok(Revocation::Revoked) => Ok(Withdrawal::Revoked),
            Ok(Revocation::AlreadyRevoked) => Ok(Withdrawal::AlreadyRevoked),
            Err(e) => Err(IssueError::Signer(e.to_string())),
        }
    }
}

/// Test support: create a CA in a moto server and, given `certificate_pem`,
/// activate it by importing that as its certificate (moto's CAs stay
/// PENDING_CERTIFICATE until then). `subject` is the CA configuration's
/// subject as (organization, organizational unit, common name): moto names
/// the issuer of what it signs from it; `key` an AWS key algorithm name
/// (`EC_prime256v1`, `RSA_2048`, ...). Returns the CA's ARN.
#[cfg(feature = "test-support")]
pub async fn create_test_ca(
    opts: &AwsOptions,
    subject: (&str, &str, &str),
    key: &str,
    certificate_pem: Option<&str>,
) -> Result<String, PrivateCaError> {
    use aws_sdk_acmpca::types::CertificateAuthorityConfiguration;
    let key = KeyAlgorithm::from(key);
    let client = crate::client::client!(aws_sdk_acmpca, &crate::sdk_config(opts).await);
    let signing = signing_algorithm(&key).unwrap_or(SigningAlgorithm::Sha256Withrsa);
    let config = CertificateAuthorityConfiguration::builder()
        .key_algorithm(key)
        .signing_algorithm(signing)
        .subject(
            Asn1Subject::builder()
                .organization(subject.0)
                .organizational_unit(subject.1)
                .common_name(subject.2)
                .build(),
        )
        .build()
        .map_err(|e| PrivateCaError::Refused(e.to_string()))?;
    let created = client
        .create_certificate_authority()
        .certificate_authority_configuration(config)
        .certificate_authority_type(CertificateAuthorityType::Root)
        .send()
        .await
        .map_err(|e| call_error("CreateCertificateAuthority", "(new)", &e))?;
    let arn = created
        .certificate_authority_arn()
        .unwrap_or_default()
        .to_owned();
    let Some(certificate_pem) = certificate_pem else {
        return Ok(arn);
    };
    client
        .import_certificate_authority_certificate()
        .certificate_authority_arn(&arn)
        .certificate(aws_smithy_types::Blob::new(certificate_pem.as_bytes()))
        .send()
        .await
        .map_err(|e| call_error("ImportCertificateAuthorityCertificate", &arn, &e))?;
    Ok(arn)
}

/// Test support: turn on the CA's complete CRL, written to `bucket`
/// (UpdateCertificateAuthority with `RevocationConfiguration`), as an
/// operator does once. moto records the configuration but, unlike AWS,
/// never writes a CRL: tests put the object there themselves.
#[cfg(feature = "test-support")]
pub async fn enable_test_crl(
    opts: &AwsOptions,
    arn: &str,
    bucket: &str,
) -> Result<(), PrivateCaError> {
    use aws_sdk_acmpca::types::{CrlConfiguration, RevocationConfiguration};
    let client = crate::client::client!(aws_sdk_acmpca, &crate::sdk_config(opts).await);
    let crl = CrlConfiguration::builder()
        .enabled(true)
        .expiration_in_days(7)
        .s3_bucket_name(bucket)
        .build()
        .map_err(|e| PrivateCaError::Refused(e.to_string()))?;
    client
        .update_certificate_authority()
        .certificate_authority_arn(arn)
        .revocation_configuration(
            RevocationConfiguration::builder()
                .crl_configuration(crl)
                .build(),
        )
        .send()
        .await
        .map_err(|e| call_error("UpdateCertificateAuthority", arn, &e))?;
    Ok(())
}

/// Test support: a [`PrivateCa`] whose client records the JSON body of
/// every request it sends, with the `X-Amz-Target` operation name.
#[cfg(feature = "test-support")]
pub async fn connect_recording(
    opts: &AwsOptions,
    arn: &str,
    wait: IssueWait,
) -> Result<(PrivateCa, Recorded), PrivateCaError> {
    let recorded = Recorded::default();
    let sdk = crate::sdk_config(opts).await;
    let client = crate::client::client!(
        aws_sdk_acmpca,
        &sdk,
        |b: aws_sdk_acmpca::config::Builder| { b.interceptor(recorded.clone()) }
    );
    let ca = PrivateCa::with_client(client, crl_reader(&sdk, opts), arn, wait).await?;
    Ok((ca, recorded))
}

/// Requests seen by a [`connect_recording`] client: (operation, JSON body).
#[cfg(feature = "test-support")]
#[derive(Debug, Clone, Default)]
pub struct Recorded(std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>);

#[cfg(feature = "test-support")]
impl Recorded {
    /// The bodies of the requests to `operation` (e.g. `IssueCertificate`).
    pub fn bodies(&self, operation: &str) -> Vec<serde_json::Value> {
        self.0
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(op, _)| op == operation)
                    .map(|(_, body)| body.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(feature = "test-support")]
impl aws_sdk_acmpca::config::Intercept for Recorded {
    fn name(&self) -> &'static str {
        "eos-aws-recorded"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_acmpca::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_acmpca::config::RuntimeComponents,
        _cfg: &mut aws_sdk_acmpca::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request();
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or_default()
            .to_owned();
        let body = request
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(serde_json::Value::Null);
        if let Ok(mut v) = self.0.lock() {
            v.push((operation, body));
        }
        Ok(())
    }
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

    #[test]
    fn bundles_are_split_strictly() {
        let ca = eos_ca::LocalCa::generate(
            eos_ca::CaEnv::Dev,
            Duration::from_secs(86400),
            SystemTime::now(),
        )
        .unwrap();
        let one = ca.certificate_pem().unwrap();
        assert_eq!(certificates_from_bundle("t", &one).unwrap().len(), 1);
        assert_eq!(
            certificates_from_bundle("t", &format!("{one}\n{one}"))
                .unwrap()
                .len(),
            2
        );
        assert!(certificates_from_bundle("t", "").unwrap().is_empty());
        assert!(certificates_from_bundle("t", &format!("{one}junk")).is_err());
        assert!(certificates_from_bundle("t", &one.replace("MII", "MIJ")).is_err());
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

    #[tokio::test]
    async fn waiting_is_bounded_and_names_the_certificate() {
        let wait = IssueWait {
            max: Duration::from_millis(120),
            first: Duration::from_millis(10),
            longest: Duration::from_millis(40),
        };
        let mut calls = 0;
        let began = Instant::now();
        let err = poll::<(), _, _>(wait, ARN, "arn:cert", || {
            calls += 1;
            std::future::ready(Ok(None))
        })
        .await
        .unwrap_err();
        assert!(began.elapsed() < Duration::from_secs(2));
        assert!((3..12).contains(&calls), "{calls} calls");
        let msg = err.to_string();
        assert!(matches!(err, PrivateCaError::Timeout { .. }));
        assert!(msg.contains("certificate arn:cert was not ready"), "{msg}");
        assert!(msg.contains("--certificate-arn arn:cert"), "{msg}");

        let mut n = 0;
        let got = poll(wait, ARN, "arn:cert", || {
            n += 1;
            std::future::ready(Ok((n == 3).then_some(n)))
        })
        .await
        .unwrap();
        assert_eq!(got, 3);
    }
}
