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
//!
//! - this module: [`PrivateCa`], connecting to the CA, issuing, fetching
//!   and revoking, and the [`eos_ca::Signer`] it is;
//! - `request.rs`: what an IssueCertificate or RevokeCertificate carries,
//!   decided and checked before sending ([`IssueCall`], ARNs, serials);
//! - `wait.rs`: the bounded, backed-off wait for an issued certificate;
//! - `crl.rs`: where the CA writes its CRL, and reading it back;
//! - `error.rs`: [`PrivateCaError`];
//! - `test_support.rs` (feature `test-support`): a CA in moto, and a client
//!   that records what it sends.

use std::fmt;

use aws_sdk_acmpca::Client;
use aws_sdk_acmpca::types::{
    ApiPassthrough, Asn1Subject, CertificateAuthorityStatus, CertificateAuthorityType,
    CertificateAuthorityUsageMode, CustomAttribute, Extensions, GeneralName, SigningAlgorithm,
    Validity, ValidityPeriodType,
};
use eos_ca::{
    CaInfo, Certificate, CertificatePlan, IssueError, RevocationReason, Serial, Signer, Strictness,
    ValidatedCsr, Withdrawal,
};

use crate::AwsOptions;

mod crl;
mod error;
mod request;
#[cfg(feature = "test-support")]
mod test_support;
mod wait;

pub use crl::{CaCrl, CrlLocation};
pub use error::PrivateCaError;
pub use request::{
    CLIENT_AUTH_TEMPLATE, IssueCall, MAX_IDEMPOTENCY_TOKEN, SHORT_LIVED_MAX, aws_reason,
    aws_serial, check_ca_arn, check_certificate_arn, idempotency_token, signing_algorithm,
};
#[cfg(feature = "test-support")]
pub use test_support::{Recorded, connect_recording, create_test_ca, enable_test_crl};
pub use wait::IssueWait;

use crl::{CrlSource, crl_reader, crl_source, crl_url};
use error::call_error;
use request::{CaLimits, issue_call};
use wait::poll;

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

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

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
}
