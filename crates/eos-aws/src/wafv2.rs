//! The AWS WAFv2 IPSet backend.
//!
//! WAF's contract (AWS WAF API Reference, "UpdateIPSet"): an update replaces
//! the whole address list *and* the description, and must carry the
//! `LockToken` of the read it was computed from; a stale token is refused with
//! `WAFOptimisticLockException`. This backend sends exactly what it is given
//! with the token it is given; re-reading and re-applying only eos-sec's
//! delta on a conflict is [`eos_plan::apply_plan`]'s job.
//!
//! Everything WAF validates is validated here before sending, because the
//! moto server used in tests validates almost nothing: names, descriptions,
//! address format and family, the 10,000-address limit, tags.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_wafv2::Client;
use aws_sdk_wafv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_wafv2::types::{IpAddressVersion, Tag};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use eos_ipset::{Family, IpNet, canonical, parse_net};
use eos_plan::{
    ActualSet, BackendError, IpSetBackend, IpSetName, LockToken, NewIpSet, WAF_MAX_ENTRIES,
};

use crate::AwsOptions;

/// WAF scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Regional resources (ALB, API Gateway, ...), in the configured region.
    Regional,
    /// CloudFront distributions: WAF's CLOUDFRONT scope is only served from
    /// us-east-1 (AWS WAF Developer Guide, "Working with CloudFront").
    Cloudfront,
}

impl Scope {
    pub(crate) fn sdk(self) -> aws_sdk_wafv2::types::Scope {
        match self {
            Scope::Regional => aws_sdk_wafv2::types::Scope::Regional,
            Scope::Cloudfront => aws_sdk_wafv2::types::Scope::Cloudfront,
        }
    }

    /// `REGIONAL` or `CLOUDFRONT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Regional => "REGIONAL",
            Scope::Cloudfront => "CLOUDFRONT",
        }
    }
}

/// Connecting failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No region for a REGIONAL scope.
    #[error(
        "no AWS region: set [backend] region, --region or AWS_REGION (CLOUDFRONT scope always uses us-east-1)"
    )]
    NoRegion,
}

/// Attempts per call for transient WAF errors (WAFUnavailableEntityException,
/// WAFInternalErrorException) on top of the SDK's own throttling retries.
const TRANSIENT_ATTEMPTS: u32 = 5;

/// The WAFv2 IPSet backend.
#[derive(Debug)]
pub struct WafBackend {
    pub(crate) client: Client,
    pub(crate) scope: Scope,
    region: String,
    /// IPSet name → (id, ARN).
    ids: Mutex<HashMap<String, (String, String)>>,
    /// Web ACL name → id.
    pub(crate) acl_ids: Mutex<HashMap<String, String>>,
}

impl WafBackend {
    /// Connect with the standard AWS configuration and `opts` overrides.
    pub async fn connect(opts: &AwsOptions, scope: Scope) -> Result<WafBackend, ConnectError> {
        let mut opts = opts.clone();
        if scope == Scope::Cloudfront {
            opts.region = Some("us-east-1".to_owned());
        }
        let sdk = crate::sdk_config(&opts).await;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .ok_or(ConnectError::NoRegion)?;
        // WAF allows about one write per second per account and region; the
        // SDK's standard retry backs off on throttling, with more attempts
        // than its default of 3.
        let client =
            crate::client::client!(aws_sdk_wafv2, &sdk, |b: aws_sdk_wafv2::config::Builder| {
                b.retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(8))
            });
        Ok(WafBackend {
            client,
            scope,
            region,
            ids: Mutex::new(HashMap::new()),
            acl_ids: Mutex::new(HashMap::new()),
        })
    }

    fn cached_id(&self, name: &str) -> Option<(String, String)> {
        self.ids.lock().ok().and_then(|m| m.get(name).cloned())
    }

    fn cache_id(&self, name: &str, id: Option<(&str, &str)>) {
        if let Ok(mut m) = self.ids.lock() {
            match id {
                Some((id, arn)) => {
                    m.insert(name.to_owned(), (id.to_owned(), arn.to_owned()));
                }
                None => {
                    m.remove(name);
                }
            }
        }
    }

    /// The id of the set named `name`, listing the scope's sets.
    async fn find_id(&self, name: &str) -> Result<Option<String>, BackendError> {
        Ok(self.find_set(name).await?.map(|(id, _)| id))
    }

    /// The (id, ARN) of the set named `name`, listing the scope's sets.
    pub(crate) async fn find_set(
        &self,
        name: &str,
    ) -> Result<Option<(String, String)>, BackendError> {
        if let Some(found) = self.cached_id(name) {
            return Ok(Some(found));
        }
        let found = find_unique(name, "IPSets", self.scope, |marker| async move {
            let out = retry_transient(|| {
                self.client
                    .list_ip_sets()
                    .scope(self.scope.sdk())
                    .limit(100)
                    .set_next_marker(marker.clone())
                    .send()
            })
            .await
            .map_err(|e| failed(name, &e))?;
            let items = out
                .ip_sets()
                .iter()
                .filter_map(|s| Some((s.name()?.into(), s.id()?.into(), s.arn()?.into())))
                .collect();
            Ok((items, out.next_marker().map(str::to_owned)))
        })
        .await?;
        self.cache_id(name, found.as_ref().map(|(i, a)| (i.as_str(), a.as_str())));
        Ok(found)
    }
}

/// One page of a `List*` call: (name, id, ARN) per item, and the next marker.
pub(crate) type Page = (Vec<(String, String, String)>, Option<String>);

/// Page through a `List*` call for the one item named `name`: its (id,
/// ARN). Two items of one name in a scope (left by racing creators) are
/// an error, never a guess.
pub(crate) async fn find_unique<F, Fut>(
    name: &str,
    what: &str,
    scope: Scope,
    mut page: F,
) -> Result<Option<(String, String)>, BackendError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Page, BackendError>>,
{
    let mut marker = None;
    let mut found = Vec::new();
    loop {
        let (items, next) = page(marker.take()).await?;
        let empty = items.is_empty();
        found.extend(
            items
                .into_iter()
                .filter(|(n, _, _)| n == name)
                .map(|(_, id, arn)| (id, arn)),
        );
        match next {
            Some(m) if !m.is_empty() && !empty => marker = Some(m),
            _ => break,
        }
    }
    if found.len() > 1 {
        return Err(BackendError::Malformed {
            name: name.to_owned(),
            detail: format!(
                "{} {what} share this name in scope {}; remove the extras",
                found.len(),
                scope.as_str()
            ),
        });
    }
    Ok(found.pop())
}

pub(crate) fn failed<E>(name: &str, e: &SdkError<E, HttpResponse>) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    BackendError::Failed {
        name: name.to_owned(),
        detail: crate::client::describe(e),
    }
}

fn transient(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("WAFUnavailableEntityException" | "WAFInternalErrorException")
    )
}

/// Retry a call on WAF's transient errors with exponential backoff and
/// jitter (the SDK retries throttling itself).
pub(crate) async fn retry_transient<T, E, R, F, Fut>(mut call: F) -> Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if attempt < TRANSIENT_ATTEMPTS && transient(e.code()) => {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Full-jitter exponential backoff: uniform in [0, min(5 s, 200 ms · 2^(n-1))].
/// Jitter spreads racing writers apart so they do not collide again in step.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let cap_ms = 200u64
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(10))
        .min(5_000);
    let mut b = [0u8; 8];
    let r = match getrandom::fill(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        // No randomness: fall back to the clock's nanoseconds.
        Err(_) => u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0),
        ),
    };
    Duration::from_millis(r % (cap_ms + 1))
}

/// WAF's `Description` pattern, owned by the WAF model in eos-policy.
pub use eos_policy::waf::validate_description;

/// WAF's `Name`: 1–128 characters of `[A-Za-z0-9_-]`.
pub fn validate_name(n: &str) -> Result<(), String> {
    if n.is_empty()
        || n.len() > 128
        || !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "name `{n}` must be 1 to 128 characters of A-Z, a-z, 0-9, _ and -"
        ));
    }
    Ok(())
}

/// WAF's `Addresses`: CIDRs of the set's family, any prefix but `/0`, at
/// most 10,000, each at most 50 characters.
pub fn validate_addresses(family: Family, addresses: &[IpNet]) -> Result<(), String> {
    if addresses.len() > WAF_MAX_ENTRIES {
        return Err(format!(
            "{} addresses, more than WAF's {WAF_MAX_ENTRIES}",
            addresses.len()
        ));
    }
    for a in addresses {
        let text = canonical(a);
        if Family::of(a) != family {
            return Err(format!(
                "{text} is not {family} (the set's IPAddressVersion)"
            ));
        }
        if a.prefix_len() == 0 {
            return Err(format!("{text}: WAF refuses /0"));
        }
        if text.len() > 50 {
            return Err(format!("{text} is longer than 50 characters"));
        }
    }
    Ok(())
}

/// WAF's tags: at most 50; keys 1–128 and values 0–256 characters of
/// letters, whitespace, digits and `_ . : / = + - @`; keys not `aws:`.
pub fn validate_tags(tags: &[(String, String)]) -> Result<(), String> {
    if tags.len() > 50 {
        return Err(format!("{} tags, more than 50", tags.len()));
    }
    let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
    for (k, v) in tags {
        if k.is_empty()
            || k.chars().count() > 128
            || !k.chars().all(allowed)
            || k.starts_with("aws:")
        {
            return Err(format!("tag key `{k}` is not valid for WAF"));
        }
        if v.chars().count() > 256 || !v.chars().all(allowed) {
            return Err(format!("tag value `{v}` (key {k}) is not valid for WAF"));
        }
    }
    Ok(())
}

fn version(family: Family) -> IpAddressVersion {
    match family {
        Family::V4 => IpAddressVersion::Ipv4,
        Family::V6 => IpAddressVersion::Ipv6,
    }
}

fn texts(addresses: &[IpNet]) -> Vec<String> {
    addresses.iter().map(canonical).collect()
}

impl IpSetBackend for WafBackend {
    fn id(&self) -> String {
        format!("aws:{}:{}", self.scope.as_str(), self.region)
    }

    async fn read(&self, name: &IpSetName) -> Result<Option<ActualSet>, BackendError> {
        let n = name.to_string();
        let Some(id) = self.find_id(&n).await? else {
            return Ok(None);
        };
        let out = retry_transient(|| {
            self.client
                .get_ip_set()
                .name(&n)
                .scope(self.scope.sdk())
                .id(&id)
                .send()
        })
        .await;
        let out = match out {
            Ok(o) => o,
            Err(e) if e.code() == Some("WAFNonexistentItemException") => {
                // Deleted since we cached its id.
                self.cache_id(&n, None);
                return Ok(None);
            }
            Err(e) => return Err(failed(&n, &e)),
        };
        let malformed = |detail: String| BackendError::Malformed {
            name: n.clone(),
            detail,
        };
        let set = out
            .ip_set()
            .ok_or_else(|| malformed("GetIPSet returned no IPSet".into()))?;
        let lock = out
            .lock_token()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| malformed("GetIPSet returned no LockToken".into()))?;
        let family = match set.ip_address_version() {
            IpAddressVersion::Ipv4 => Family::V4,
            IpAddressVersion::Ipv6 => Family::V6,
            other => return Err(malformed(format!("unknown IPAddressVersion {other:?}"))),
        };
        if family != name.family() {
            return Err(malformed(format!(
                "the set is {family}, its name says {}",
                name.family()
            )));
        }
        let addresses = set
            .addresses()
            .iter()
            .map(|a| {
                parse_net(a)
                    .map(|p| p.net)
                    .map_err(|e| malformed(format!("address {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(ActualSet {
            name: name.clone(),
            addresses,
            description: set.description().unwrap_or_default().to_owned(),
            lock: LockToken(lock.to_owned()),
        }))
    }

    async fn create(&self, set: &NewIpSet) -> Result<LockToken, BackendError> {
        let n = set.name.to_string();
        let invalid = |reason: String| BackendError::Invalid {
            name: n.clone(),
            reason,
        };
        validate_name(&n).map_err(invalid)?;
        validate_description(&set.description).map_err(invalid)?;
        validate_addresses(set.family, &set.addresses).map_err(invalid)?;
        validate_tags(&set.tags).map_err(invalid)?;
        // WAF refuses a second set of the same name (WAFDuplicateItemException);
        // moto does not, so look first as well.
        if self.find_id(&n).await?.is_some() {
            return Err(BackendError::AlreadyExists { name: n });
        }
        let tags = set
            .tags
            .iter()
            .map(|(k, v)| {
                Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .map_err(|e| invalid(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = retry_transient(|| {
            self.client
                .create_ip_set()
                .name(&n)
                .scope(self.scope.sdk())
                .description(&set.description)
                .ip_address_version(version(set.family))
                .set_addresses(Some(texts(&set.addresses)))
                .set_tags(Some(tags.clone()))
                .send()
        })
        .await;
        let out = match out {
            Ok(o) => o,
            Err(e) if e.code() == Some("WAFDuplicateItemException") => {
                return Err(BackendError::AlreadyExists { name: n });
            }
            Err(e) => return Err(failed(&n, &e)),
        };
        let summary = out.summary().ok_or_else(|| BackendError::Malformed {
            name: n.clone(),
            detail: "CreateIPSet returned no summary".into(),
        })?;
        if let (Some(id), Some(arn)) = (summary.id(), summary.arn()) {
            self.cache_id(&n, Some((id, arn)));
        }
        let lock = summary.lock_token().unwrap_or_default();
        Ok(LockToken(lock.to_owned()))
    }

    async fn update(
        &self,
        name: &IpSetName,
        addresses: &[IpNet],
        description: &str,
        lock: &LockToken,
    ) -> Result<LockToken, BackendError> {
        let n = name.to_string();
        let invalid = |reason: String| BackendError::Invalid {
            name: n.clone(),
            reason,
        };
        validate_addresses(name.family(), addresses).map_err(invalid)?;
        // The description read is passed through: UpdateIPSet replaces it,
        // and an empty one is sent as absent (WAF refuses "").
        let description = if description.is_empty() {
            None
        } else {
            validate_description(description).map_err(invalid)?;
            Some(description.to_owned())
        };
        if lock.0.is_empty() {
            return Err(invalid("empty lock token".into()));
        }
        let Some(id) = self.find_id(&n).await? else {
            return Err(BackendError::NotFound { name: n });
        };
        let out = retry_transient(|| {
            self.client
                .update_ip_set()
                .name(&n)
                .scope(self.scope.sdk())
                .id(&id)
                .set_description(description.clone())
                .set_addresses(Some(texts(addresses)))
                .lock_token(&lock.0)
                .send()
        })
        .await;
        match out {
            Ok(o) => Ok(LockToken(
                o.next_lock_token().unwrap_or_default().to_owned(),
            )),
            Err(e) if e.code() == Some("WAFOptimisticLockException") => {
                Err(BackendError::StaleLock { name: n })
            }
            Err(e) if e.code() == Some("WAFNonexistentItemException") => {
                self.cache_id(&n, None);
                Err(BackendError::NotFound { name: n })
            }
            Err(e) => Err(failed(&n, &e)),
        }
    }

    async fn pause_before_retry(&self, attempt: u32) {
        tokio::time::sleep(backoff(attempt)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_what_waf_validates() {
        assert!(validate_description("eos-sec allowlist for space acme - IPv4").is_ok());
        assert!(validate_description(" leading space").is_err());
        assert!(validate_description("semi;colon").is_err());
        assert!(validate_description(&"a".repeat(257)).is_err());
        assert!(validate_name("eos-acme-v4").is_ok());
        assert!(validate_name("eos acme").is_err());
        assert!(validate_name(&"a".repeat(129)).is_err());
        let v4: IpNet = "192.0.2.0/24".parse().unwrap_or_else(|_| unreachable!());
        let v6: IpNet = "2001:db8::/32".parse().unwrap_or_else(|_| unreachable!());
        let zero: IpNet = "0.0.0.0/0".parse().unwrap_or_else(|_| unreachable!());
        assert!(validate_addresses(Family::V4, &[v4]).is_ok());
        assert!(validate_addresses(Family::V4, &[v6]).is_err());
        assert!(validate_addresses(Family::V4, &[zero]).is_err());
        assert!(validate_addresses(Family::V4, &vec![v4; WAF_MAX_ENTRIES + 1]).is_err());
        assert!(validate_tags(&[("managed-by".into(), "eos-sec".into())]).is_ok());
        assert!(validate_tags(&[("aws:x".into(), "y".into())]).is_err());
        assert!(validate_tags(&[("k".into(), "semi;colon".into())]).is_err());
    }

    #[test]
    fn backoff_is_bounded() {
        for attempt in 1..20 {
            assert!(backoff(attempt) <= Duration::from_secs(5));
        }
        assert!(backoff(1) <= Duration::from_millis(200));
    }
}
