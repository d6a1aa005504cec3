//! The CA's CRL: where its `CrlConfiguration` has Private CA write it, the
//! distribution point in what it issues, and reading it back from S3.

use super::{PrivateCa, PrivateCaError, call_error};
use crate::AwsOptions;

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
pub(super) enum CrlSource {
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

impl PrivateCa {
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
}

/// The S3 client that reads the CA's CRL: path-style addressing with a
/// local endpoint (moto), as [`crate::gate::AwsGate`] does.
pub(super) fn crl_reader(sdk: &aws_config::SdkConfig, opts: &AwsOptions) -> aws_sdk_s3::Client {
    let path_style = opts.endpoint_url.is_some();
    crate::client::client!(aws_sdk_s3, sdk, |b: aws_sdk_s3::config::Builder| b
        .force_path_style(path_style))
}

/// Where the CA's `CrlConfiguration` has Private CA write its CRL: the key
/// is `<CustomPath or crl>/<CA id>.crl`, as in the CRL distribution point
/// ([`crl_url`]).
pub(super) fn crl_source(arn: &str, ca: &aws_sdk_acmpca::types::CertificateAuthority) -> CrlSource {
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
pub(super) fn crl_url(
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
