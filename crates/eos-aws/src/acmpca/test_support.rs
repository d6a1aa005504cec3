//! Test support (feature `test-support`): a CA in a moto server, its CRL
//! turned on, and a client that records what it sends.

use aws_sdk_acmpca::types::{
    Asn1Subject, CertificateAuthorityType, KeyAlgorithm, SigningAlgorithm,
};

use super::{IssueWait, PrivateCa, PrivateCaError, call_error, crl_reader, signing_algorithm};
use crate::AwsOptions;

/// Test support: create a CA in a moto server and, given `certificate_pem`,
/// activate it by importing that as its certificate (moto's CAs stay
/// PENDING_CERTIFICATE until then). `subject` is the CA configuration's
/// subject as (organization, organizational unit, common name): moto names
/// the issuer of what it signs from it; `key` an AWS key algorithm name
/// (`EC_prime256v1`, `RSA_2048`, ...). Returns the CA's ARN.
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
#[derive(Debug, Clone, Default)]
pub struct Recorded(std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>);

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
