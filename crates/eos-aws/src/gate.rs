//! The certificate gate on AWS: S3 for the trust material, ELBv2 trust
//! stores, API Gateway v2 custom domains — eos-policy's
//! [`GateBackend`](eos_policy::gate::GateBackend).
//!
//! The rules (content-addressed keys, add the new CRL before removing the
//! superseded one, read back) are `eos_policy::gate`'s; this module sends
//! exactly the calls it is asked for.

use aws_sdk_apigatewayv2::types::MutualTlsAuthenticationInput;
use aws_sdk_elasticloadbalancingv2::types::{
    AdvertiseTrustStoreCaNamesEnum, MutualAuthenticationAttributes, RevocationContent,
    RevocationType,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use eos_policy::compile::ListenerMode;
use eos_policy::gate::{
    DomainRead, GateBackend, GateError, ListenerAuth, ObjectRef, Revocation, TrustStoreRead,
    sha256_hex,
};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::AwsOptions;

/// ELBv2's request throttling ("Request throttling for the Elastic Load
/// Balancing API", Elastic Load Balancing User Guide): a token bucket per
/// account and Region, shared with every other caller of the account; a
/// call over it fails with `ThrottlingException` ("Rate exceeded"). eos-sec
/// paces its own calls below the refill rates and retries a throttled call
/// with the SDK's standard backoff.
pub mod elb_limits {
    use std::time::Duration;

    /// `Describe*` (non-mutating) calls: the bucket holds 40 tokens and
    /// refills 10 per second; eos-sec sends at most one per 100 ms, the
    /// refill rate, so it never drains the bucket on its own.
    pub const DESCRIBE_INTERVAL: Duration = Duration::from_millis(100);
    /// Mutating calls (CreateTrustStore, ModifyTrustStore,
    /// Add/RemoveTrustStoreRevocations, ModifyListener): at most two per
    /// second, well below the 10 per second of the non-mutating bucket —
    /// the per-action rows of the mutating buckets were not verified
    /// (docs/MTLS.md).
    pub const MUTATE_INTERVAL: Duration = Duration::from_millis(500);
    /// Attempts per call (the first and four retries) for a throttled or
    /// transient failure, with the standard strategy's exponential backoff
    /// and jitter.
    pub const ATTEMPTS: u32 = 5;
    /// The first retry's backoff ceiling; it doubles per attempt.
    pub const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
}

/// One caller's spacing of calls: each waits until `interval` after the
/// one before it (a pacer, not a bucket: eos-sec's calls come in short
/// bursts and nothing is gained by sending them faster than the refill).
#[derive(Debug, Default)]
struct Pacer {
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    async fn wait(&self, interval: Duration) {
        let wait = {
            let Ok(mut next) = self.next.lock() else {
                return;
            };
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + interval);
            at - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The AWS side of the certificate gate.
#[derive(Debug, Clone)]
pub struct AwsGate {
    s3: aws_sdk_s3::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    apigw: aws_sdk_apigatewayv2::Client,
    bucket: String,
    region: String,
    describes: Arc<Pacer>,
    mutations: Arc<Pacer>,
}

/// ELBv2's error code for a trust store name that does not exist.
const TRUST_STORE_NOT_FOUND: &str = "TrustStoreNotFound";

/// The error codes ELBv2 throttles with.
const THROTTLING: [&str; 2] = ["ThrottlingException", "Throttling"];

fn backend_error<E>(
    call: &str,
    what: &str,
    e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> GateError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = crate::client::describe(e);
    if e.code().is_some_and(|c| THROTTLING.contains(&c)) {
        return GateError::Backend(format!(
            "{call} {what}: throttled by ELBv2 after {} attempts ({detail}); the account's ELBv2 API rate is shared with every other caller — retry later or ask AWS Support for a higher limit",
            elb_limits::ATTEMPTS
        ));
    }
    GateError::Backend(format!("{call} {what}: {detail}"))
}

impl AwsGate {
    /// Connect with the standard AWS configuration and `opts` overrides;
    /// objects go to `bucket`.
    pub async fn connect(opts: &AwsOptions, bucket: &str) -> Result<AwsGate, GateError> {
        let sdk = crate::sdk_config(opts).await;
        Self::from_sdk_config(&sdk, bucket, opts.endpoint_url.is_some())
    }

    /// Build on an SDK configuration (tests pass one with a replay HTTP
    /// client). `path_style` addresses the bucket in the path, as a local
    /// endpoint (moto) needs.
    pub fn from_sdk_config(
        sdk: &aws_config::SdkConfig,
        bucket: &str,
        path_style: bool,
    ) -> Result<AwsGate, GateError> {
        let region = sdk.region().map(ToString::to_string).ok_or_else(|| {
            GateError::Backend(
                "no AWS region: set [backend] region, --region or AWS_REGION".to_owned(),
            )
        })?;
        Ok(AwsGate {
            s3: crate::client::client!(aws_sdk_s3, sdk, |b: aws_sdk_s3::config::Builder| b
                .force_path_style(path_style)),
            elb: crate::client::client!(
                aws_sdk_elasticloadbalancingv2,
                sdk,
                |b: aws_sdk_elasticloadbalancingv2::config::Builder| b.retry_config(
                    aws_smithy_types::retry::RetryConfig::standard()
                        .with_max_attempts(elb_limits::ATTEMPTS)
                        .with_initial_backoff(elb_limits::INITIAL_BACKOFF)
                )
            ),
            apigw: crate::client::client!(aws_sdk_apigatewayv2, sdk),
            bucket: bucket.to_owned(),
            region,
            describes: Arc::default(),
            mutations: Arc::default(),
        })
    }

    /// Wait for the next ELBv2 `Describe*` call's turn.
    async fn describe_turn(&self) {
        self.describes.wait(elb_limits::DESCRIBE_INTERVAL).await;
    }

    /// Wait for the next mutating ELBv2 call's turn.
    async fn mutate_turn(&self) {
        self.mutations.wait(elb_limits::MUTATE_INTERVAL).await;
    }

    /// The bucket objects go to.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The body stored under `key`, `None` when there is none.
    async fn read_object(&self, key: &str) -> Result<Option<(Vec<u8>, Option<String>)>, GateError> {
        let out = match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Ok(None);
            }
            Err(e) => return Err(backend_error("GetObject", key, &e)),
        };
        let version = out.version_id().map(str::to_owned);
        let body =
            out.body.collect().await.map_err(|e| {
                GateError::Backend(format!("GetObject {key}: reading the body: {e}"))
            })?;
        Ok(Some((body.into_bytes().to_vec(), version)))
    }

    async fn revocations(&self, arn: &str) -> Result<Vec<Revocation>, GateError> {
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            self.describe_turn().await;
            let out = self
                .elb
                .describe_trust_store_revocations()
                .trust_store_arn(arn)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| backend_error("DescribeTrustStoreRevocations", arn, &e))?;
            for r in out.trust_store_revocations() {
                let id = r.revocation_id().ok_or_else(|| {
                    GateError::Backend(format!(
                        "DescribeTrustStoreRevocations {arn}: a revocation without an id"
                    ))
                })?;
                all.push(Revocation {
                    id,
                    entries: r
                        .number_of_revoked_entries()
                        .and_then(|n| u64::try_from(n).ok())
                        .unwrap_or(0),
                });
            }
            match out.next_marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        all.sort_by_key(|r| r.id);
        Ok(all)
    }
}

impl GateBackend for AwsGate {
    fn gate_backend_id(&self) -> String {
        format!("aws:{}", self.region)
    }

    async fn put_object(&self, key: &str, body: &[u8]) -> Result<ObjectRef, GateError> {
        let sha256 = sha256_hex(body);
        let existing = self.read_object(key).await?;
        let version = match existing {
            Some((stored, version)) => {
                // A content address holding another body was not written
                // by eos-sec: never overwrite it, a trust store may use it.
                if sha256_hex(&stored) != sha256 {
                    return Err(GateError::ReadBack {
                        what: "S3 object",
                        name: format!("s3://{}/{key}", self.bucket),
                        found: format!("sha256 {}", sha256_hex(&stored)),
                        expected: format!("sha256 {sha256} (refusing to overwrite it)"),
                    });
                }
                version
            }
            None => {
                let out = self
                    .s3
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .content_type("application/x-pem-file")
                    .body(body.to_vec().into())
                    .send()
                    .await
                    .map_err(|e| backend_error("PutObject", key, &e))?;
                let version = out.version_id().map(str::to_owned);
                let read = self.read_object(key).await?;
                let found = read.as_ref().map(|(b, _)| sha256_hex(b));
                if found.as_deref() != Some(sha256.as_str()) {
                    return Err(GateError::ReadBack {
                        what: "S3 object",
                        name: format!("s3://{}/{key}", self.bucket),
                        found: found
                            .map_or_else(|| "nothing".to_owned(), |s| format!("sha256 {s}")),
                        expected: format!("sha256 {sha256}"),
                    });
                }
                version
            }
        };
        Ok(ObjectRef {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            version,
            sha256,
        })
    }

    async fn trust_store(&self, name: &str) -> Result<Option<TrustStoreRead>, GateError> {
        self.describe_turn().await;
        let out = match self.elb.describe_trust_stores().names(name).send().await {
            Ok(out) => out,
            Err(e) if e.code() == Some(TRUST_STORE_NOT_FOUND) => return Ok(None),
            Err(e) => return Err(backend_error("DescribeTrustStores", name, &e)),
        };
        let Some(ts) = out.trust_stores().iter().find(|t| t.name() == Some(name)) else {
            return Ok(None);
        };
        let arn = ts
            .trust_store_arn()
            .ok_or_else(|| GateError::Backend(format!("DescribeTrustStores {name}: no ARN")))?
            .to_owned();
        let revocations = self.revocations(&arn).await?;
        Ok(Some(TrustStoreRead {
            status: ts
                .status()
                .map_or_else(|| "UNKNOWN".to_owned(), |s| s.as_str().to_owned()),
            ca_certificates: ts
                .number_of_ca_certificates()
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0),
            arn,
            revocations,
        }))
    }

    async fn create_trust_store(
        &self,
        name: &str,
        bundle: &ObjectRef,
    ) -> Result<String, GateError> {
        self.mutate_turn().await;
        let out = self
            .elb
            .create_trust_store()
            .name(name)
            .ca_certificates_bundle_s3_bucket(&bundle.bucket)
            .ca_certificates_bundle_s3_key(&bundle.key)
            .set_ca_certificates_bundle_s3_object_version(bundle.version.clone())
            .send()
            .await
            .map_err(|e| backend_error("CreateTrustStore", name, &e))?;
        out.trust_stores()
            .first()
            .and_then(|t| t.trust_store_arn())
            .map(str::to_owned)
            .ok_or_else(|| GateError::Backend(format!("CreateTrustStore {name}: no ARN returned")))
    }

    async fn modify_trust_store(&self, arn: &str, bundle: &ObjectRef) -> Result<(), GateError> {
        self.mutate_turn().await;
        self.elb
            .modify_trust_store()
            .trust_store_arn(arn)
            .ca_certificates_bundle_s3_bucket(&bundle.bucket)
            .ca_certificates_bundle_s3_key(&bundle.key)
            .set_ca_certificates_bundle_s3_object_version(bundle.version.clone())
            .send()
            .await
            .map_err(|e| backend_error("ModifyTrustStore", arn, &e))?;
        Ok(())
    }

    async fn add_revocation(&self, arn: &str, crl: &ObjectRef) -> Result<Revocation, GateError> {
        let content = RevocationContent::builder()
            .s3_bucket(&crl.bucket)
            .s3_key(&crl.key)
            .set_s3_object_version(crl.version.clone())
            .revocation_type(RevocationType::Crl)
            .build();
        self.mutate_turn().await;
        let out = self
            .elb
            .add_trust_store_revocations()
            .trust_store_arn(arn)
            .revocation_contents(content)
            .send()
            .await
            .map_err(|e| backend_error("AddTrustStoreRevocations", arn, &e))?;
        let added = out.trust_store_revocations().first().ok_or_else(|| {
            GateError::Backend(format!(
                "AddTrustStoreRevocations {arn}: no revocation returned"
            ))
        })?;
        Ok(Revocation {
            id: added.revocation_id().ok_or_else(|| {
                GateError::Backend(format!("AddTrustStoreRevocations {arn}: no revocation id"))
            })?,
            entries: added
                .number_of_revoked_entries()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
        })
    }

    async fn remove_revocations(&self, arn: &str, ids: &[i64]) -> Result<(), GateError> {
        self.mutate_turn().await;
        self.elb
            .remove_trust_store_revocations()
            .trust_store_arn(arn)
            .set_revocation_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| backend_error("RemoveTrustStoreRevocations", arn, &e))?;
        Ok(())
    }

    async fn domain(&self, name: &str) -> Result<Option<DomainRead>, GateError> {
        let out = match self.apigw.get_domain_name().domain_name(name).send().await {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_not_found_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(backend_error("GetDomainName", name, &e)),
        };
        let mtls = out.mutual_tls_authentication();
        Ok(Some(DomainRead {
            truststore_uri: mtls
                .and_then(|m| m.truststore_uri())
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            truststore_version: mtls
                .and_then(|m| m.truststore_version())
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            warnings: mtls
                .map(|m| m.truststore_warnings().to_vec())
                .unwrap_or_default(),
        }))
    }

    async fn set_domain_truststore(&self, name: &str, bundle: &ObjectRef) -> Result<(), GateError> {
        let mtls = MutualTlsAuthenticationInput::builder()
            .truststore_uri(bundle.uri())
            .set_truststore_version(bundle.version.clone())
            .build();
        self.apigw
            .update_domain_name()
            .domain_name(name)
            .mutual_tls_authentication(mtls)
            .send()
            .await
            .map_err(|e| backend_error("UpdateDomainName", name, &e))?;
        Ok(())
    }

    async fn listener(&self, arn: &str) -> Result<Option<ListenerAuth>, GateError> {
        self.describe_turn().await;
        let out = match self
            .elb
            .describe_listeners()
            .listener_arns(arn)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_listener_not_found_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(backend_error("DescribeListeners", arn, &e)),
        };
        let Some(listener) = out
            .listeners()
            .iter()
            .find(|l| l.listener_arn() == Some(arn))
        else {
            return Ok(None);
        };
        // A listener that never had mutual TLS reports none: mode off.
        let Some(m) = listener.mutual_authentication() else {
            return Ok(Some(ListenerAuth::mode_only(ListenerMode::Off)));
        };
        let mode = match m.mode().unwrap_or("off") {
            "off" => ListenerMode::Off,
            "passthrough" => ListenerMode::Passthrough,
            "verify" => ListenerMode::Verify,
            other => {
                return Err(GateError::Backend(format!(
                    "DescribeListeners {arn}: unknown MutualAuthentication mode `{other}`"
                )));
            }
        };
        Ok(Some(ListenerAuth {
            mode,
            trust_store_arn: m
                .trust_store_arn()
                .filter(|a| !a.is_empty())
                .map(str::to_owned),
            ignore_client_certificate_expiry: m.ignore_client_certificate_expiry(),
            advertise_trust_store_ca_names: m
                .advertise_trust_store_ca_names()
                .map(|a| *a == AdvertiseTrustStoreCaNamesEnum::On),
        }))
    }

    async fn set_listener(&self, arn: &str, auth: &ListenerAuth) -> Result<(), GateError> {
        let auth = auth.normalized();
        let attributes = MutualAuthenticationAttributes::builder()
            .mode(auth.mode.as_str())
            .set_trust_store_arn(auth.trust_store_arn.clone())
            .set_ignore_client_certificate_expiry(auth.ignore_client_certificate_expiry)
            .set_advertise_trust_store_ca_names(auth.advertise_trust_store_ca_names.map(|on| {
                if on {
                    AdvertiseTrustStoreCaNamesEnum::On
                } else {
                    AdvertiseTrustStoreCaNamesEnum::Off
                }
            }))
            .build();
        self.mutate_turn().await;
        self.elb
            .modify_listener()
            .listener_arn(arn)
            .mutual_authentication(attributes)
            .send()
            .await
            .map_err(|e| backend_error("ModifyListener", arn, &e))?;
        Ok(())
    }
}
