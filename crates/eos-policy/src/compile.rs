//! Policy + stages → a deterministic WAFv2 Web ACL and the mTLS listener
//! settings that go with it.
//!
//! Rule order is the security argument: managed rule groups and rate-based
//! rules come first, the gates' ALLOW rules last, because ALLOW terminates
//! evaluation — an early ALLOW would let listed callers skip inspection.

use std::collections::BTreeMap;

use eos_identity::SpaceId;
use eos_ipset::Family;
use serde::Serialize;

use crate::PolicyError;
use crate::model::{Mode, OverrideTo, Policy, RateKey, Routing, Stage};
use crate::waf::{
    ByteMatch, DefaultAction, Empty, FieldToMatch, IpSetForwardedIpConfig, IpSetReference, Label,
    ManagedRuleGroup, NotStatement, OverrideAction, RateBased, Rule, RuleAction,
    RuleActionOverride, SingleHeader, Statement, Statements, TextTransformation, VisibilityConfig,
    WebAcl,
};

/// WCU included in the Web ACL price; above it AWS bills extra.
pub const WCU_INCLUDED: u32 = 1_500;
/// WCU hard limit per Web ACL.
pub const WCU_MAX: u32 = 5_000;
/// Reference statements (IPSets, rule groups) per Web ACL.
pub const MAX_REFERENCES: u32 = 50;

/// The IPSet name of a space and family: `eos-<space>-v4` / `eos-<space>-v6`.
pub fn set_name(space: &SpaceId, family: Family) -> String {
    format!("eos-{space}-{}", family.as_str())
}

/// The label the count-stage rule adds to requests enforcement would block.
pub fn would_block_label(space: &SpaceId) -> String {
    format!("eos:{space}:ip-gate:would-block")
}

/// Names of the rules compiled for a space.
pub mod rule_names {
    use eos_identity::SpaceId;

    /// ALLOW when in the space's sets (stage enforce).
    pub fn ip_allow(space: &SpaceId) -> String {
        format!("eos-{space}-ip-allow")
    }
    /// COUNT when not in the space's sets (stage count).
    pub fn ip_count(space: &SpaceId) -> String {
        format!("eos-{space}-ip-count")
    }
    /// ALLOW the space without an IP gate at WAF (default BLOCK).
    pub fn allow(space: &SpaceId) -> String {
        format!("eos-{space}-allow")
    }
}

/// WCU and reference counts against AWS's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capacity {
    /// Estimated WCU of the whole Web ACL.
    pub wcu: u32,
    /// WCU included in the base price.
    pub wcu_included: u32,
    /// WCU hard limit.
    pub wcu_max: u32,
    /// Reference statements used.
    pub references: u32,
    /// Reference statement limit.
    pub references_max: u32,
    /// Human-readable warnings (e.g. billed capacity).
    pub warnings: Vec<String>,
}

/// How a space's entry point handles client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerMode {
    /// No client certificate requested.
    Off,
    /// ALB forwards the chain unverified (`X-Amzn-Mtls-Clientcert*`); the
    /// application decides with `eos_policy` (mode `either`, stage `count`).
    Passthrough,
    /// ALB verifies against the trust store (CA bundle + CRL) and refuses
    /// the handshake otherwise.
    Verify,
}

impl ListenerMode {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerMode::Off => "off",
            ListenerMode::Passthrough => "passthrough",
            ListenerMode::Verify => "verify",
        }
    }
}

/// The mTLS settings for a group of spaces that can share one listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerPlan {
    /// What the listener does with client certificates.
    pub mode: ListenerMode,
    /// The spaces served by such a listener.
    pub spaces: Vec<SpaceId>,
    /// `MutualAuthentication` for `elbv2 modify-listener`.
    pub mutual_authentication: serde_json::Value,
    /// Trust store contents: the CA bundle and CRL files to upload to S3.
    pub trust_store: Option<TrustStorePlan>,
}

/// An ALB trust store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustStorePlan {
    /// Trust store name.
    pub name: String,
    /// CA bundle file.
    pub ca_bundle: Option<String>,
    /// CRL files (`add-trust-store-revocations`).
    pub crls: Vec<String>,
}

/// What compile produced for one space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpaceSummary {
    /// The space.
    pub space: SpaceId,
    /// Its mode.
    pub mode: Mode,
    /// The stage compiled.
    pub stage: Stage,
    /// The rules compiled for it.
    pub rules: Vec<String>,
    /// Its listener mode.
    pub listener: ListenerMode,
}

/// The compiled firewall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Compiled {
    /// The Web ACL.
    pub web_acl: WebAcl,
    /// Capacity against limits.
    pub capacity: Capacity,
    /// Per space.
    pub spaces: Vec<SpaceSummary>,
    /// mTLS listener settings, grouped by listener mode.
    pub listeners: Vec<ListenerPlan>,
}

/// How IPSet ARNs are filled in: known ARNs (read from the backend) by set
/// name, and a placeholder for the rest.
#[derive(Debug, Clone, Default)]
pub struct SetArns {
    /// Set name → ARN.
    pub known: BTreeMap<String, String>,
}

impl SetArns {
    /// The ARN of set `name`, or a placeholder naming it.
    pub fn arn(&self, name: &str, policy: &Policy) -> String {
        match self.known.get(name) {
            Some(a) => a.clone(),
            None => {
                let scope = match policy.scope {
                    crate::model::Scope::Regional => "regional",
                    crate::model::Scope::Cloudfront => "global",
                };
                format!("arn:aws:wafv2:<region>:<account>:{scope}/ipset/{name}/<id>")
            }
        }
    }
}

/// The statement matching requests for `space` under `routing`.
pub fn space_match(routing: &Routing, space: &SpaceId) -> Statement {
    let (search, field, constraint, transforms) = match routing {
        // Host names are case-insensitive: compare lower-cased.
        Routing::HostLabel { domain } => (
            format!("{space}.{domain}"),
            FieldToMatch::SingleHeader(SingleHeader {
                name: "host".to_owned(),
            }),
            "EXACTLY",
            vec![TextTransformation {
                priority: 0,
                kind: "LOWERCASE".to_owned(),
            }],
        ),
        Routing::PathPrefix { prefix } => (
            format!("{prefix}{space}/"),
            FieldToMatch::UriPath(Empty {}),
            "STARTS_WITH",
            vec![TextTransformation {
                priority: 0,
                kind: "NONE".to_owned(),
            }],
        ),
        Routing::Header { name } => (
            space.to_string(),
            FieldToMatch::SingleHeader(SingleHeader { name: name.clone() }),
            "EXACTLY",
            vec![TextTransformation {
                priority: 0,
                kind: "NONE".to_owned(),
            }],
        ),
    };
    Statement::ByteMatchStatement(ByteMatch {
        search_string: search,
        field_to_match: field,
        text_transformations: transforms,
        positional_constraint: constraint.to_owned(),
    })
}

/// The statement "address in the space's v4 or v6 set".
fn in_sets(policy: &Policy, space: &SpaceId, arns: &SetArns) -> Statement {
    let reference = |family| {
        Statement::IpSetReference(IpSetReference {
            arn: arns.arn(&set_name(space, family), policy),
            // Only the entry the trusted proxy appends; a request whose
            // header holds no valid address there must not be ALLOWed.
            forwarded_ip_config: policy.ip_gate.forwarded_ip_header.as_ref().map(|h| {
                IpSetForwardedIpConfig {
                    header_name: h.clone(),
                    fallback_behavior: "NO_MATCH".to_owned(),
                    position: "LAST".to_owned(),
                }
            }),
        })
    };
    Statement::OrStatement(Statements {
        statements: vec![reference(Family::V4), reference(Family::V6)],
    })
}

fn and(a: Statement, b: Statement) -> Statement {
    Statement::AndStatement(Statements {
        statements: vec![a, b],
    })
}

fn action_rule(name: String, statement: Statement, action: RuleAction) -> Rule {
    Rule {
        visibility_config: VisibilityConfig::named(&name),
        name,
        priority: 0,
        statement,
        action: Some(action),
        override_action: None,
        rule_labels: Vec::new(),
    }
}

/// The listener mode a space needs at a stage.
pub fn listener_mode(mode: Mode, stage: Stage) -> ListenerMode {
    if !mode.uses_cert_gate() {
        return ListenerMode::Off;
    }
    match stage {
        Stage::Off | Stage::Staged => ListenerMode::Off,
        // Observe: the application logs what verification would refuse.
        Stage::Count => ListenerMode::Passthrough,
        Stage::Enforce => match mode {
            // ALB cannot express "certificate OR address": pass the chain
            // through and let the application decide (eos_policy::Evaluator).
            Mode::Either => ListenerMode::Passthrough,
            _ => ListenerMode::Verify,
        },
    }
}

/// Whether the Web ACL's default is BLOCK: as soon as one space enforces its
/// IP gate at WAF.
pub fn default_blocks(policy: &Policy, stages: &BTreeMap<SpaceId, Stage>) -> bool {
    policy.spaces.values().any(|s| {
        s.mode.ip_gate_at_waf() && stages.get(&s.id).copied().unwrap_or(s.stage) == Stage::Enforce
    })
}

/// Compile the policy with the given stages (spaces missing from `stages`
/// use their declared stage).
pub fn compile(
    policy: &Policy,
    stages: &BTreeMap<SpaceId, Stage>,
    arns: &SetArns,
) -> Result<Compiled, PolicyError> {
    for id in stages.keys() {
        policy.space(id)?;
    }
    let default_block = default_blocks(policy, stages);
    let mut rules = Vec::new();

    for m in &policy.managed {
        let name = format!("eos-managed-{}-{}", m.vendor, m.name);
        rules.push(Rule {
            visibility_config: VisibilityConfig::named(&name),
            name,
            priority: 0,
            statement: Statement::ManagedRuleGroupStatement(ManagedRuleGroup {
                vendor_name: m.vendor.clone(),
                name: m.name.clone(),
                version: m.version.clone(),
                rule_action_overrides: m
                    .overrides
                    .iter()
                    .map(|(rule, to)| RuleActionOverride {
                        name: rule.clone(),
                        action_to_use: match to {
                            OverrideTo::Count => RuleAction::Count(Empty {}),
                            OverrideTo::Block => RuleAction::Block(Empty {}),
                            OverrideTo::Allow => RuleAction::Allow(Empty {}),
                        },
                    })
                    .collect(),
            }),
            action: None,
            override_action: Some(OverrideAction::None(Empty {})),
            rule_labels: Vec::new(),
        });
    }
    for r in &policy.rate {
        let RateKey::Ip = r.key;
        rules.push(action_rule(
            format!("eos-rate-{}", r.name),
            Statement::RateBasedStatement(RateBased {
                limit: i64::try_from(r.limit).unwrap_or(i64::MAX),
                evaluation_window_sec: i64::from(r.window_seconds),
                aggregate_key_type: "IP".to_owned(),
                scope_down_statement: r
                    .space
                    .as_ref()
                    .map(|s| Box::new(space_match(&policy.routing, s))),
            }),
            RuleAction::Block(Empty {}),
        ));
    }

    let mut summaries = Vec::new();
    for (id, sp) in &policy.spaces {
        let stage = stages.get(id).copied().unwrap_or(sp.stage);
        let mut names = Vec::new();
        let matches = space_match(&policy.routing, id);
        let ip_at_waf = sp.mode.ip_gate_at_waf();
        if ip_at_waf && stage == Stage::Count {
            let name = rule_names::ip_count(id);
            let mut rule = action_rule(
                name.clone(),
                and(
                    matches.clone(),
                    Statement::NotStatement(NotStatement {
                        statement: Box::new(in_sets(policy, id, arns)),
                    }),
                ),
                RuleAction::Count(Empty {}),
            );
            rule.rule_labels.push(Label {
                name: would_block_label(id),
            });
            rules.push(rule);
            names.push(name);
        }
        if ip_at_waf && stage == Stage::Enforce {
            let name = rule_names::ip_allow(id);
            rules.push(action_rule(
                name.clone(),
                and(matches, in_sets(policy, id, arns)),
                RuleAction::Allow(Empty {}),
            ));
            names.push(name);
        } else if default_block {
            // The default BLOCK is for spaces whose IP gate is enforced;
            // every other space is let through to its own gates.
            let name = rule_names::allow(id);
            rules.push(action_rule(
                name.clone(),
                matches,
                RuleAction::Allow(Empty {}),
            ));
            names.push(name);
        }
        summaries.push(SpaceSummary {
            space: id.clone(),
            mode: sp.mode,
            stage,
            rules: names,
            listener: listener_mode(sp.mode, stage),
        });
    }
    for (i, r) in rules.iter_mut().enumerate() {
        r.priority = i32::try_from(i).unwrap_or(i32::MAX);
    }

    let web_acl = WebAcl {
        name: policy.web_acl_name.clone(),
        description: policy.description.clone(),
        default_action: if default_block {
            DefaultAction::block()
        } else {
            DefaultAction::allow()
        },
        rules,
        visibility_config: VisibilityConfig::named(&policy.web_acl_name),
    };
    let capacity = capacity(policy, &web_acl.rules)?;
    let listeners = listeners(policy, &summaries);
    Ok(Compiled {
        web_acl,
        capacity,
        spaces: summaries,
        listeners,
    })
}

/// Estimate WCU and count references; refuse what AWS would refuse.
pub fn capacity(policy: &Policy, rules: &[Rule]) -> Result<Capacity, PolicyError> {
    let managed_capacity = |m: &ManagedRuleGroup| {
        policy
            .managed
            .iter()
            .find(|g| g.vendor == m.vendor_name && g.name == m.name)
            .map_or_else(
                || crate::model::known_capacity(&m.vendor_name, &m.name).unwrap_or(0),
                |g| g.capacity,
            )
    };
    let wcu: u32 = rules
        .iter()
        .map(|r| r.statement.wcu(&managed_capacity))
        .sum();
    let references: u32 = rules.iter().map(|r| r.statement.reference_count()).sum();
    if wcu > WCU_MAX {
        return Err(PolicyError::Limit(format!(
            "estimated {wcu} WCU, above the {WCU_MAX} WCU maximum; remove managed groups or spaces"
        )));
    }
    if references > MAX_REFERENCES {
        return Err(PolicyError::Limit(format!(
            "{references} reference statements, above the {MAX_REFERENCES} allowed; each IP-gated space uses 2"
        )));
    }
    let mut warnings = Vec::new();
    if wcu > WCU_INCLUDED {
        warnings.push(format!(
            "estimated {wcu} WCU is above the {WCU_INCLUDED} included in the Web ACL price: AWS bills every further 500 WCU"
        ));
    }
    Ok(Capacity {
        wcu,
        wcu_included: WCU_INCLUDED,
        wcu_max: WCU_MAX,
        references,
        references_max: MAX_REFERENCES,
        warnings,
    })
}

fn listeners(policy: &Policy, spaces: &[SpaceSummary]) -> Vec<ListenerPlan> {
    let mut by_mode: BTreeMap<ListenerMode, Vec<SpaceId>> = BTreeMap::new();
    for s in spaces {
        by_mode.entry(s.listener).or_default().push(s.space.clone());
    }
    by_mode
        .into_iter()
        .map(|(mode, spaces)| {
            let trust_store = (mode == ListenerMode::Verify).then(|| TrustStorePlan {
                name: policy.cert_gate.trust_store_name.clone(),
                ca_bundle: policy
                    .cert_gate
                    .ca_bundle
                    .as_ref()
                    .map(|p| p.display().to_string()),
                crls: policy
                    .cert_gate
                    .crls
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            });
            let mutual_authentication = match mode {
                ListenerMode::Off => serde_json::json!({ "Mode": "off" }),
                ListenerMode::Passthrough => serde_json::json!({ "Mode": "passthrough" }),
                ListenerMode::Verify => serde_json::json!({
                    "Mode": "verify",
                    "TrustStoreArn": format!("<ARN of trust store {}>", policy.cert_gate.trust_store_name),
                    "IgnoreClientCertificateExpiry": false,
                    "AdvertiseTrustStoreCaNames": "on",
                }),
            };
            ListenerPlan {
                mode,
                spaces,
                mutual_authentication,
                trust_store,
            }
        })
        .collect()
}
