//! The AWS WAFv2 Web ACL backend ([`eos_policy::WebAclBackend`] for
//! [`WafBackend`]).
//!
//! UpdateWebACL replaces the *whole* Web ACL (AWS WAF API Reference,
//! "UpdateWebACL": "any fields you omit are reset"): so a write is a
//! read-modify-write with the LockToken of the read. eos-sec replaces only
//! the default action and the rules named `eos-*`; every other rule and
//! every other field — custom response bodies, CAPTCHA and challenge
//! config, token domains, association config, data protection, description,
//! visibility — is copied back from a fresh GetWebACL with that same token.
//! Rules eos-sec did not write keep their priorities; its own follow them.
//!
//! Reads keep the Web ACL exactly as the service sent it (the response body,
//! captured before the SDK parses it), so a snapshot holds the whole ACL as
//! WAFv2 API JSON without eos-sec modelling every statement type.

use std::sync::{Arc, Mutex};

use aws_sdk_wafv2::config::interceptors::AfterDeserializationInterceptorContextRef;
use aws_sdk_wafv2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_wafv2::error::{BoxError, ProvideErrorMetadata};
use aws_sdk_wafv2::primitives::Blob;
use aws_sdk_wafv2::types as sdk;
use base64::Engine as _;
use eos_plan::{BackendError, LockToken};
use eos_policy::waf::{self, WebAcl, is_owned};
use eos_policy::{AclRead, OwnedAcl, WebAclBackend, owned_of_document, owned_priority_base};
use serde_json::Value;

use crate::wafv2::{WafBackend, backoff, failed, find_unique, retry_transient};

/// Keeps the raw body of the response it is attached to.
#[derive(Debug, Clone, Default)]
struct CaptureBody(Arc<Mutex<Option<Vec<u8>>>>);

impl Intercept for CaptureBody {
    fn name(&self) -> &'static str {
        "eos-sec-capture-body"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Non-streaming responses are buffered before deserialising.
        if let Some(bytes) = context.response().body().bytes()
            && let Ok(mut slot) = self.0.lock()
        {
            *slot = Some(bytes.to_vec());
        }
        Ok(())
    }
}

impl CaptureBody {
    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }
}

fn malformed(name: &str, detail: impl Into<String>) -> BackendError {
    BackendError::Malformed {
        name: name.to_owned(),
        detail: detail.into(),
    }
}

fn invalid(name: &str, detail: impl std::fmt::Display) -> BackendError {
    BackendError::Invalid {
        name: name.to_owned(),
        reason: detail.to_string(),
    }
}

/// The API sends `SearchString` base64-encoded (a blob); the typed model
/// holds text. Decode it inside `eos-*` rules so they parse.
fn decode_search_strings(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(bm) = m.get_mut("ByteMatchStatement")
                && let Some(Value::String(s)) = bm.get_mut("SearchString")
                && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s.as_bytes())
                && let Ok(text) = String::from_utf8(bytes)
            {
                *s = text;
            }
            m.values_mut().for_each(decode_search_strings);
        }
        Value::Array(a) => a.iter_mut().for_each(decode_search_strings),
        _ => {}
    }
}

/// A read: the whole ACL document, its owned part and token.
fn parse_read(name: &str, body: &[u8]) -> Result<AclRead, BackendError> {
    let out: Value = serde_json::from_slice(body)
        .map_err(|e| malformed(name, format!("GetWebACL response: {e}")))?;
    let lock = out
        .get("LockToken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| malformed(name, "GetWebACL returned no LockToken"))?;
    let mut document = out
        .get("WebACL")
        .cloned()
        .ok_or_else(|| malformed(name, "GetWebACL returned no WebACL"))?;
    // The token is kept beside the document (moto also copies it into the
    // WebACL object, where AWS has none): documents compare by content.
    if let Some(m) = document.as_object_mut() {
        m.remove("LockToken");
    }
    let mut for_owned = document.clone();
    decode_search_strings(&mut for_owned);
    let owned = owned_of_document(&for_owned).map_err(|e| malformed(name, e))?;
    Ok(AclRead {
        owned,
        document,
        lock: LockToken(lock.to_owned()),
    })
}

// ---- typed model -> SDK ------------------------------------------------

fn rule_action(a: &waf::RuleAction) -> sdk::RuleAction {
    let b = sdk::RuleAction::builder();
    match a {
        waf::RuleAction::Allow(_) => b.allow(sdk::AllowAction::builder().build()),
        waf::RuleAction::Block(_) => b.block(sdk::BlockAction::builder().build()),
        waf::RuleAction::Count(_) => b.count(sdk::CountAction::builder().build()),
    }
    .build()
}

/// The SDK form of a default action.
pub fn default_action(a: &waf::DefaultAction) -> sdk::DefaultAction {
    let b = sdk::DefaultAction::builder();
    match a {
        waf::DefaultAction::Allow(_) => b.allow(sdk::AllowAction::builder().build()),
        waf::DefaultAction::Block(_) => b.block(sdk::BlockAction::builder().build()),
    }
    .build()
}

/// The SDK form of a visibility config.
pub fn visibility(v: &waf::VisibilityConfig) -> Result<sdk::VisibilityConfig, BoxError> {
    Ok(sdk::VisibilityConfig::builder()
        .sampled_requests_enabled(v.sampled_requests_enabled)
        .cloud_watch_metrics_enabled(v.cloud_watch_metrics_enabled)
        .metric_name(&v.metric_name)
        .build()?)
}

fn statements(s: &waf::Statements) -> Result<Vec<sdk::Statement>, BoxError> {
    s.statements.iter().map(statement).collect()
}

fn statement(s: &waf::Statement) -> Result<sdk::Statement, BoxError> {
    let b = sdk::Statement::builder();
    Ok(match s {
        waf::Statement::IpSetReference(r) => {
            let fwd = r
                .forwarded_ip_config
                .as_ref()
                .map(|f| {
                    sdk::IpSetForwardedIpConfig::builder()
                        .header_name(&f.header_name)
                        .fallback_behavior(sdk::FallbackBehavior::from(
                            f.fallback_behavior.as_str(),
                        ))
                        .position(sdk::ForwardedIpPosition::from(f.position.as_str()))
                        .build()
                })
                .transpose()?;
            b.ip_set_reference_statement(
                sdk::IpSetReferenceStatement::builder()
                    .arn(&r.arn)
                    .set_ip_set_forwarded_ip_config(fwd)
                    .build()?,
            )
        }
        waf::Statement::ManagedRuleGroupStatement(m) => {
            let overrides = m
                .rule_action_overrides
                .iter()
                .map(|o| {
                    sdk::RuleActionOverride::builder()
                        .name(&o.name)
                        .action_to_use(rule_action(&o.action_to_use))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            b.managed_rule_group_statement(
                sdk::ManagedRuleGroupStatement::builder()
                    .vendor_name(&m.vendor_name)
                    .name(&m.name)
                    .set_version(m.version.clone())
                    .set_rule_action_overrides((!overrides.is_empty()).then_some(overrides))
                    .build()?,
            )
        }
        waf::Statement::RateBasedStatement(r) => {
            let mut rb = sdk::RateBasedStatement::builder()
                .limit(r.limit)
                .evaluation_window_sec(r.evaluation_window_sec)
                .aggregate_key_type(sdk::RateBasedStatementAggregateKeyType::from(
                    r.aggregate_key_type.as_str(),
                ));
            if let Some(sd) = &r.scope_down_statement {
                rb = rb.scope_down_statement(statement(sd)?);
            }
            b.rate_based_statement(rb.build()?)
        }
        waf::Statement::ByteMatchStatement(m) => {
            let field = match &m.field_to_match {
                waf::FieldToMatch::SingleHeader(h) => sdk::FieldToMatch::builder()
                    .single_header(sdk::SingleHeader::builder().name(&h.name).build()?)
                    .build(),
                waf::FieldToMatch::UriPath(_) => sdk::FieldToMatch::builder()
                    .uri_path(sdk::UriPath::builder().build())
                    .build(),
            };
            let transforms = m
                .text_transformations
                .iter()
                .map(|t| {
                    sdk::TextTransformation::builder()
                        .priority(t.priority)
                        .r#type(sdk::TextTransformationType::from(t.kind.as_str()))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            b.byte_match_statement(
                sdk::ByteMatchStatement::builder()
                    .search_string(Blob::new(m.search_string.as_bytes()))
                    .field_to_match(field)
                    .set_text_transformations(Some(transforms))
                    .positional_constraint(sdk::PositionalConstraint::from(
                        m.positional_constraint.as_str(),
                    ))
                    .build()?,
            )
        }
        waf::Statement::AndStatement(s) => b.and_statement(
            sdk::AndStatement::builder()
                .set_statements(Some(statements(s)?))
                .build()?,
        ),
        waf::Statement::OrStatement(s) => b.or_statement(
            sdk::OrStatement::builder()
                .set_statements(Some(statements(s)?))
                .build()?,
        ),
        waf::Statement::NotStatement(n) => b.not_statement(
            sdk::NotStatement::builder()
                .statement(statement(&n.statement)?)
                .build(),
        ),
    }
    .build())
}

/// The SDK form of one of eos-sec's rules, at `priority`.
pub fn rule(r: &waf::Rule, priority: i32) -> Result<sdk::Rule, BoxError> {
    let labels = r
        .rule_labels
        .iter()
        .map(|l| sdk::Label::builder().name(&l.name).build())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(sdk::Rule::builder()
        .name(&r.name)
        .priority(priority)
        .statement(statement(&r.statement)?)
        .set_action(r.action.as_ref().map(rule_action))
        .set_override_action(r.override_action.as_ref().map(|o| {
            let b = sdk::OverrideAction::builder();
            match o {
                waf::OverrideAction::None(_) => b.none(sdk::NoneAction::builder().build()),
                waf::OverrideAction::Count(_) => b.count(sdk::CountAction::builder().build()),
            }
            .build()
        }))
        .set_rule_labels((!labels.is_empty()).then_some(labels))
        .visibility_config(visibility(&r.visibility_config)?)
        .build()?)
}

/// The rules to send: every rule eos-sec does not own as read (verbatim,
/// own priorities), then `owned`'s after them.
pub fn merged_rules(read: &sdk::WebAcl, owned: &OwnedAcl) -> Result<Vec<sdk::Rule>, BoxError> {
    let foreign: Vec<sdk::Rule> = read
        .rules()
        .iter()
        .filter(|r| !is_owned(r.name()))
        .cloned()
        .collect();
    let base = owned_priority_base(foreign.iter().map(sdk::Rule::priority));
    let mut rules = foreign;
    for (i, r) in owned.rules.iter().enumerate() {
        let offset = i32::try_from(i).unwrap_or(i32::MAX);
        rules.push(rule(r, base.saturating_add(offset))?);
    }
    Ok(rules)
}

impl WafBackend {
    fn cached_acl_id(&self, name: &str) -> Option<String> {
        self.acl_ids.lock().ok().and_then(|m| m.get(name).cloned())
    }

    fn cache_acl_id(&self, name: &str, id: Option<&str>) {
        if let Ok(mut m) = self.acl_ids.lock() {
            match id {
                Some(id) => m.insert(name.to_owned(), id.to_owned()),
                None => m.remove(name),
            };
        }
    }

    /// The id of the Web ACL named `name` in the scope.
    async fn find_acl_id(&self, name: &str) -> Result<Option<String>, BackendError> {
        if let Some(id) = self.cached_acl_id(name) {
            return Ok(Some(id));
        }
        let found = find_unique(name, "Web ACLs", self.scope, |marker| async move {
            let out = retry_transient(|| {
                self.client
                    .list_web_acls()
                    .scope(self.scope.sdk())
                    .limit(100)
                    .set_next_marker(marker.clone())
                    .send()
            })
            .await
            .map_err(|e| failed(name, &e))?;
            let items = out
                .web_acls()
                .iter()
                .filter_map(|a| Some((a.name()?.into(), a.id()?.into(), a.arn()?.into())))
                .collect();
            Ok((items, out.next_marker().map(str::to_owned)))
        })
        .await?;
        let id = found.map(|(id, _)| id);
        self.cache_acl_id(name, id.as_deref());
        Ok(id)
    }

    /// GetWebACL: the SDK's parsed ACL and the raw read.
    async fn get_acl(
        &self,
        name: &str,
        id: &str,
    ) -> Result<Option<(sdk::WebAcl, AclRead)>, BackendError> {
        let capture = CaptureBody::default();
        let out = retry_transient(|| {
            self.client
                .get_web_acl()
                .name(name)
                .scope(self.scope.sdk())
                .id(id)
                .customize()
                .interceptor(capture.clone())
                .send()
        })
        .await;
        let out = match out {
            Ok(o) => o,
            Err(e) if e.code() == Some("WAFNonexistentItemException") => {
                self.cache_acl_id(name, None);
                return Ok(None);
            }
            Err(e) => return Err(failed(name, &e)),
        };
        let body = capture
            .take()
            .ok_or_else(|| malformed(name, "GetWebACL response body was not captured"))?;
        let read = parse_read(name, &body)?;
        let acl = out
            .web_acl()
            .cloned()
            .ok_or_else(|| malformed(name, "GetWebACL returned no WebACL"))?;
        Ok(Some((acl, read)))
    }
}

/// The UpdateWebACL request for `read` with `owned` in place: everything
/// eos-sec does not own copied from the read (UpdateWebACL resets what is
/// omitted).
pub fn update_request(
    client: &aws_sdk_wafv2::Client,
    scope: sdk::Scope,
    read: &sdk::WebAcl,
    owned: &OwnedAcl,
    lock: &str,
) -> Result<aws_sdk_wafv2::operation::update_web_acl::builders::UpdateWebACLFluentBuilder, BoxError>
{
    let bodies = read
        .custom_response_bodies()
        .filter(|m| !m.is_empty())
        .cloned();
    let domains = read.token_domains();
    Ok(client
        .update_web_acl()
        .name(read.name())
        .id(read.id())
        .scope(scope)
        .lock_token(lock)
        .default_action(default_action(&owned.default_action))
        .set_rules(Some(merged_rules(read, owned)?))
        .set_description(read.description().map(str::to_owned))
        .set_visibility_config(read.visibility_config().cloned())
        .set_data_protection_config(read.data_protection_config().cloned())
        .set_custom_response_bodies(bodies)
        .set_captcha_config(read.captcha_config().cloned())
        .set_challenge_config(read.challenge_config().cloned())
        .set_token_domains((!domains.is_empty()).then(|| domains.to_vec()))
        .set_association_config(read.association_config().cloned())
        .set_on_source_d_do_s_protection_config(read.on_source_d_do_s_protection_config().cloned())
        .set_application_config(read.application_config().cloned()))
}

impl WebAclBackend for WafBackend {
    fn acl_backend_id(&self) -> String {
        eos_plan::IpSetBackend::id(self)
    }

    async fn read_acl(&self, name: &str) -> Result<Option<AclRead>, BackendError> {
        let Some(id) = self.find_acl_id(name).await? else {
            return Ok(None);
        };
        Ok(self.get_acl(name, &id).await?.map(|(_, read)| read))
    }

    async fn create_acl(&self, acl: &WebAcl) -> Result<LockToken, BackendError> {
        let name = acl.name.as_str();
        crate::wafv2::validate_name(name).map_err(|e| invalid(name, e))?;
        if let Some(d) = &acl.description {
            crate::wafv2::validate_description(d).map_err(|e| invalid(name, e))?;
        }
        if self.find_acl_id(name).await?.is_some() {
            return Err(BackendError::AlreadyExists {
                name: name.to_owned(),
            });
        }
        let rules = acl
            .rules
            .iter()
            .map(|r| rule(r, r.priority))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(name, e))?;
        let vis = visibility(&acl.visibility_config).map_err(|e| invalid(name, e))?;
        let out = retry_transient(|| {
            self.client
                .create_web_acl()
                .name(name)
                .scope(self.scope.sdk())
                .set_description(acl.description.clone())
                .default_action(default_action(&acl.default_action))
                .set_rules(Some(rules.clone()))
                .visibility_config(vis.clone())
                .send()
        })
        .await;
        let out = match out {
            Ok(o) => o,
            Err(e) if e.code() == Some("WAFDuplicateItemException") => {
                return Err(BackendError::AlreadyExists {
                    name: name.to_owned(),
                });
            }
            Err(e) => return Err(failed(name, &e)),
        };
        let summary = out
            .summary()
            .ok_or_else(|| malformed(name, "CreateWebACL returned no summary"))?;
        self.cache_acl_id(name, summary.id());
        Ok(LockToken(
            summary.lock_token().unwrap_or_default().to_owned(),
        ))
    }

    async fn write_acl(
        &self,
        name: &str,
        owned: &OwnedAcl,
        lock: &LockToken,
    ) -> Result<LockToken, BackendError> {
        if lock.0.is_empty() {
            return Err(invalid(name, "empty lock token"));
        }
        for r in &owned.rules {
            if !is_owned(&r.name) {
                return Err(invalid(
                    name,
                    format!("rule `{}` is not eos-sec's to write", r.name),
                ));
            }
            crate::wafv2::validate_name(&r.name).map_err(|e| invalid(name, e))?;
        }
        let Some(id) = self.find_acl_id(name).await? else {
            return Err(BackendError::NotFound {
                name: name.to_owned(),
            });
        };
        // The fields to copy back come from a read with the same token: if
        // the ACL changed since the caller's read, the token differs and
        // the write is refused as stale, never merged with stale copies.
        let Some((current, read)) = self.get_acl(name, &id).await? else {
            return Err(BackendError::NotFound {
                name: name.to_owned(),
            });
        };
        if read.lock != *lock {
            return Err(BackendError::StaleLock {
                name: name.to_owned(),
            });
        }
        let request = update_request(&self.client, self.scope.sdk(), &current, owned, &lock.0)
            .map_err(|e| invalid(name, e))?;
        // A rule referencing a just-created IPSet can meet
        // WAFUnavailableEntityException while the set propagates:
        // retry_transient retries it with bounded jittered backoff.
        let out = retry_transient(|| request.clone().send()).await;
        match out {
            Ok(o) => Ok(LockToken(
                o.next_lock_token().unwrap_or_default().to_owned(),
            )),
            Err(e) if e.code() == Some("WAFOptimisticLockException") => {
                Err(BackendError::StaleLock {
                    name: name.to_owned(),
                })
            }
            Err(e) if e.code() == Some("WAFNonexistentItemException") => {
                self.cache_acl_id(name, None);
                Err(BackendError::NotFound {
                    name: name.to_owned(),
                })
            }
            Err(e) => Err(failed(name, &e)),
        }
    }

    async fn ip_set_arn(&self, name: &str) -> Result<Option<String>, BackendError> {
        Ok(self.find_set(name).await?.map(|(_, arn)| arn))
    }

    async fn tag_ip_set_stage(&self, name: &str, value: &str) -> Result<(), BackendError> {
        let Some((_, arn)) = self.find_set(name).await? else {
            return Ok(());
        };
        let tag = sdk::Tag::builder()
            .key(eos_plan::STAGE_TAG)
            .value(value)
            .build()
            .map_err(|e| invalid(name, e))?;
        // TagResource adds the tag or replaces its value; the others stay.
        retry_transient(|| {
            self.client
                .tag_resource()
                .resource_arn(&arn)
                .tags(tag.clone())
                .send()
        })
        .await
        .map_err(|e| failed(name, &e))?;
        Ok(())
    }

    async fn pause_before_acl_retry(&self, attempt: u32) {
        tokio::time::sleep(backoff(attempt)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_strings_are_decoded_in_place() {
        let mut v = serde_json::json!({"Rules": [{"Statement": {"ByteMatchStatement": {"SearchString": "YWNtZS5lbnRpdHlvcy5jbG91ZA=="}}}]});
        decode_search_strings(&mut v);
        assert_eq!(
            v["Rules"][0]["Statement"]["ByteMatchStatement"]["SearchString"],
            "acme.entityos.cloud"
        );
    }

    #[test]
    fn update_copies_back_every_field_it_does_not_own() {
        let client = aws_sdk_wafv2::Client::from_conf(
            aws_sdk_wafv2::Config::builder()
                .behavior_version(aws_sdk_wafv2::config::BehaviorVersion::latest())
                .region(aws_sdk_wafv2::config::Region::new("us-east-1"))
                .build(),
        );
        let vis = sdk::VisibilityConfig::builder()
            .sampled_requests_enabled(true)
            .cloud_watch_metrics_enabled(true)
            .metric_name("m")
            .build()
            .unwrap_or_else(|_| unreachable!());
        let foreign = sdk::Rule::builder()
            .name("corp-block-bad-bots")
            .priority(3)
            .statement(
                sdk::Statement::builder()
                    .geo_match_statement(
                        sdk::GeoMatchStatement::builder()
                            .country_codes(sdk::CountryCode::Kp)
                            .build(),
                    )
                    .build(),
            )
            .action(rule_action(&waf::RuleAction::Block(waf::Empty {})))
            .visibility_config(vis.clone())
            .build()
            .unwrap_or_else(|_| unreachable!());
        let stale_own = sdk::Rule::builder()
            .name("eos-old")
            .priority(9)
            .statement(
                foreign
                    .statement()
                    .cloned()
                    .unwrap_or_else(|| unreachable!()),
            )
            .action(rule_action(&waf::RuleAction::Allow(waf::Empty {})))
            .visibility_config(vis.clone())
            .build()
            .unwrap_or_else(|_| unreachable!());
        let body = sdk::CustomResponseBody::builder()
            .content_type(sdk::ResponseContentType::TextPlain)
            .content("blocked")
            .build()
            .unwrap_or_else(|_| unreachable!());
        let read = sdk::WebAcl::builder()
            .name("acl")
            .id("id-1")
            .arn("arn")
            .description("theirs")
            .default_action(default_action(&waf::DefaultAction::allow()))
            .rules(foreign.clone())
            .rules(stale_own)
            .visibility_config(vis.clone())
            .custom_response_bodies("blocked", body)
            .captcha_config(
                sdk::CaptchaConfig::builder()
                    .immunity_time_property(
                        sdk::ImmunityTimeProperty::builder()
                            .immunity_time(300)
                            .build()
                            .unwrap_or_else(|_| unreachable!()),
                    )
                    .build(),
            )
            .challenge_config(sdk::ChallengeConfig::builder().build())
            .token_domains("entityos.cloud")
            .association_config(sdk::AssociationConfig::builder().build())
            .build()
            .unwrap_or_else(|_| unreachable!());
        let owned = OwnedAcl {
            default_action: waf::DefaultAction::block(),
            rules: vec![],
        };
        let req = update_request(&client, sdk::Scope::Regional, &read, &owned, "lock-1")
            .unwrap_or_else(|_| unreachable!());
        let input = req.as_input();
        assert_eq!(input.get_lock_token().as_deref(), Some("lock-1"));
        assert_eq!(input.get_rules().as_deref(), Some(&[foreign][..]));
        assert_eq!(input.get_description().as_deref(), Some("theirs"));
        assert_eq!(input.get_visibility_config().as_ref(), Some(&vis));
        assert_eq!(
            input.get_custom_response_bodies().as_ref(),
            read.custom_response_bodies()
        );
        assert_eq!(input.get_captcha_config().as_ref(), read.captcha_config());
        assert_eq!(
            input.get_challenge_config().as_ref(),
            read.challenge_config()
        );
        assert_eq!(
            input.get_token_domains().as_deref(),
            Some(&["entityos.cloud".to_owned()][..])
        );
        assert_eq!(
            input.get_association_config().as_ref(),
            read.association_config()
        );
        assert!(
            input
                .get_default_action()
                .as_ref()
                .is_some_and(|d| d.block().is_some())
        );
    }
}
