//! The seam between enforcement and where a Web ACL lives: the local state
//! store (the embedded default, in `eos-store`) or AWS WAFv2 (in `eos-aws`).
//!
//! The contract is WAF's (AWS WAF API Reference, "UpdateWebACL"): an update
//! replaces the *whole* Web ACL and must carry the `LockToken` of the read it
//! was computed from. eos-sec owns only the default action and the rules
//! named `eos-*` ([`OwnedAcl`]); a backend's write replaces exactly those
//! and copies back everything else it read — other rules, custom response
//! bodies, CAPTCHA/challenge config, token domains, association config — so
//! a rule eos-sec did not write is never changed or removed.

use eos_plan::{BackendError, LockToken};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::waf::{DefaultAction, Rule, WebAcl, is_owned};

/// What eos-sec owns in a Web ACL: the default action and its `eos-*`
/// rules in evaluation order. Priorities are relative (0, 1, ...): a backend
/// places them after every rule it does not own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct OwnedAcl {
    /// The default action.
    pub default_action: DefaultAction,
    /// eos-sec's rules, priorities 0..n in order.
    pub rules: Vec<Rule>,
}

impl OwnedAcl {
    /// The owned part of a compiled Web ACL.
    pub fn of(acl: &WebAcl) -> OwnedAcl {
        OwnedAcl {
            default_action: acl.default_action,
            rules: acl.rules.clone(),
        }
        .normalised()
    }

    /// Rules sorted by priority and renumbered 0..n.
    pub fn normalised(mut self) -> OwnedAcl {
        self.rules.sort_by_key(|r| r.priority);
        for (i, r) in self.rules.iter_mut().enumerate() {
            r.priority = i32::try_from(i).unwrap_or(i32::MAX);
        }
        self
    }

    /// The same rules with another default action.
    pub fn with_default(&self, default_action: DefaultAction) -> OwnedAcl {
        OwnedAcl {
            default_action,
            rules: self.rules.clone(),
        }
    }

    /// Rule names, in order (for reports).
    pub fn rule_names(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.name.clone()).collect()
    }
}

/// A Web ACL as read from a backend.
#[derive(Debug, Clone, PartialEq)]
pub struct AclRead {
    /// The part eos-sec owns, parsed.
    pub owned: OwnedAcl,
    /// The whole Web ACL as the backend returned it (WAFv2 API JSON: rules
    /// eos-sec does not own, custom response bodies, ...), kept verbatim in
    /// snapshots.
    pub document: Value,
    /// The token to write with.
    pub lock: LockToken,
}

/// Where a Web ACL lives.
///
/// Futures need not be `Send`: the local store's connection is not `Sync`,
/// and a CLI drives one change at a time.
#[allow(async_fn_in_trait)]
pub trait WebAclBackend {
    /// A stable description of the backend and its location (`local`,
    /// `aws:REGIONAL:eu-west-1`), recorded with snapshots and stages.
    fn acl_backend_id(&self) -> String;

    /// Read the Web ACL named `name`, `None` when it does not exist.
    async fn read_acl(&self, name: &str) -> Result<Option<AclRead>, BackendError>;

    /// Create the Web ACL (fails with [`BackendError::AlreadyExists`]).
    async fn create_acl(&self, acl: &WebAcl) -> Result<LockToken, BackendError>;

    /// Replace what eos-sec owns with `owned`, copying back everything else
    /// as read with `lock`; [`BackendError::StaleLock`] when the ACL changed
    /// since that read.
    async fn write_acl(
        &self,
        name: &str,
        owned: &OwnedAcl,
        lock: &LockToken,
    ) -> Result<LockToken, BackendError>;

    /// The ARN a rule uses to reference the IPSet `name`, `None` when the
    /// set does not exist.
    async fn ip_set_arn(&self, name: &str) -> Result<Option<String>, BackendError>;

    /// Set the [`eos_plan::STAGE_TAG`] tag of the IPSet `name` to `value`
    /// (other tags stay); nothing when the set does not exist.
    async fn tag_ip_set_stage(&self, name: &str, value: &str) -> Result<(), BackendError>;

    /// Wait before retry `attempt` (1-based) after a lock conflict.
    async fn pause_before_acl_retry(&self, attempt: u32);
}

/// Drop `null` members recursively: services (and moto) write absent
/// optional fields as `null`, which the typed model spells as absence.
pub fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// The owned part of a Web ACL document (WAFv2 API JSON of a `WebACL`).
/// An `eos-*` rule eos-sec cannot parse is an error, not something to
/// overwrite blindly.
pub fn owned_of_document(doc: &Value) -> Result<OwnedAcl, String> {
    let mut doc = doc.clone();
    strip_nulls(&mut doc);
    let default_action: DefaultAction = serde_json::from_value(
        doc.get("DefaultAction")
            .cloned()
            .ok_or("the Web ACL has no DefaultAction")?,
    )
    .map_err(|e| format!("DefaultAction: {e}"))?;
    let mut rules = Vec::new();
    for r in doc
        .get("Rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let name = r.get("Name").and_then(Value::as_str).unwrap_or_default();
        if !is_owned(name) {
            continue;
        }
        // Fields eos-sec never writes, filled in by the service.
        let mut r = r.clone();
        if let Some(m) = r.as_object_mut() {
            for k in ["CaptchaConfig", "ChallengeConfig"] {
                if m.get(k)
                    .is_some_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
                {
                    m.remove(k);
                }
            }
        }
        let rule: Rule = serde_json::from_value(r).map_err(|e| format!("rule `{name}`: {e}"))?;
        rules.push(rule);
    }
    Ok(OwnedAcl {
        default_action,
        rules,
    }
    .normalised())
}

/// The priority of the first owned rule: after every rule eos-sec does not
/// own, which keep their own priorities.
pub fn owned_priority_base(foreign: impl IntoIterator<Item = i32>) -> i32 {
    foreign.into_iter().max().map_or(0, |m| m.saturating_add(1))
}

/// A document with its owned part replaced by `owned`: the default action
/// set, `eos-*` rules replaced, every other member and rule kept as it was.
pub fn merge_document(doc: &Value, owned: &OwnedAcl) -> Result<Value, String> {
    let mut doc = doc.clone();
    let obj = doc
        .as_object_mut()
        .ok_or("the Web ACL document is not an object")?;
    let foreign: Vec<Value> = obj
        .get("Rules")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .filter(|r| !is_owned(r.get("Name").and_then(Value::as_str).unwrap_or_default()))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let base = owned_priority_base(foreign.iter().filter_map(|r| {
        r.get("Priority")
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok())
    }));
    let mut rules = foreign;
    for (i, r) in owned.rules.iter().enumerate() {
        let mut r = r.clone();
        r.priority = base.saturating_add(i32::try_from(i).unwrap_or(i32::MAX));
        rules.push(serde_json::to_value(&r).map_err(|e| e.to_string())?);
    }
    obj.insert(
        "DefaultAction".to_owned(),
        serde_json::to_value(owned.default_action).map_err(|e| e.to_string())?,
    );
    obj.insert("Rules".to_owned(), Value::Array(rules));
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waf::{Empty, RuleAction, Statement, VisibilityConfig};
    use serde_json::json;

    fn rule(name: &str, priority: i32) -> Rule {
        Rule {
            name: name.to_owned(),
            priority,
            statement: Statement::ByteMatchStatement(crate::waf::ByteMatch {
                search_string: "x".to_owned(),
                field_to_match: crate::waf::FieldToMatch::UriPath(Empty {}),
                text_transformations: vec![],
                positional_constraint: "EXACTLY".to_owned(),
            }),
            action: Some(RuleAction::Allow(Empty {})),
            override_action: None,
            rule_labels: vec![],
            visibility_config: VisibilityConfig::named(name),
        }
    }

    #[test]
    fn merge_keeps_foreign_rules_and_members() {
        let doc = json!({
            "Name": "acl",
            "DefaultAction": {"Allow": {}},
            "CustomResponseBodies": {"blocked": {"ContentType": "TEXT_PLAIN", "Content": "no"}},
            "Rules": [
                {"Name": "corp-geo", "Priority": 7, "Action": {"Block": {}}, "Statement": {"GeoMatchStatement": {"CountryCodes": ["KP"]}}, "VisibilityConfig": {}},
                serde_json::to_value(rule("eos-old", 8)).unwrap()
            ]
        });
        let owned = OwnedAcl {
            default_action: DefaultAction::block(),
            rules: vec![rule("eos-a", 0), rule("eos-b", 1)],
        };
        let merged = merge_document(&doc, &owned).unwrap();
        assert_eq!(merged["DefaultAction"], json!({"Block": {}}));
        assert_eq!(merged["CustomResponseBodies"], doc["CustomResponseBodies"]);
        let names: Vec<&str> = merged["Rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["corp-geo", "eos-a", "eos-b"]);
        assert_eq!(merged["Rules"][0], doc["Rules"][0], "foreign rule verbatim");
        assert_eq!(merged["Rules"][1]["Priority"], 8);
        assert_eq!(owned_of_document(&merged).unwrap(), owned);
    }

    #[test]
    fn owned_part_ignores_nulls_and_foreign_rules() {
        let mut r = serde_json::to_value(rule("eos-a", 40)).unwrap();
        r["OverrideAction"] = Value::Null;
        r["RuleLabels"] = Value::Null;
        let doc = json!({"DefaultAction": {"Allow": {}}, "Rules": [r, {"Name": "theirs", "Priority": 1}]});
        let owned = owned_of_document(&doc).unwrap();
        assert_eq!(owned.rules, vec![rule("eos-a", 0)]);
        let bad = json!({"DefaultAction": {"Allow": {}}, "Rules": [{"Name": "eos-x", "Priority": 1, "Statement": {"GeoMatchStatement": {}}}]});
        assert!(owned_of_document(&bad).unwrap_err().contains("eos-x"));
    }
}
