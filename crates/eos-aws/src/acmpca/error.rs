//! What goes wrong talking to Private CA.

use std::time::Duration;

use aws_sdk_acmpca::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

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

pub(super) fn call_error<E>(
    call: &'static str,
    arn: &str,
    e: &SdkError<E, HttpResponse>,
) -> PrivateCaError
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
