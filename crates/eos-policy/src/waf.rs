//! The part of the WAFv2 JSON model eos-sec writes, as typed data. Field
//! names and shapes follow the WAFv2 API reference (`WebACL`, `Rule`,
//! `Statement`), so the serialised form is what `aws wafv2 update-web-acl
//! --cli-input-json` and CloudFormation accept (except that
//! `SearchString` is shown as text, not base64).
//!
//! Only the statements eos-sec compiles are modelled; rules it did not
//! write are carried opaquely by the backends and never parsed.

use serde::{Deserialize, Serialize};

/// `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// A Web ACL as eos-sec compiles it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct WebAcl {
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What happens to a request no rule terminated.
    pub default_action: DefaultAction,
    /// Rules in priority order.
    pub rules: Vec<Rule>,
    /// Metrics and sampling.
    pub visibility_config: VisibilityConfig,
}

/// The Web ACL's default action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DefaultAction {
    /// Default ALLOW.
    Allow(Empty),
    /// Default BLOCK.
    Block(Empty),
}

impl DefaultAction {
    /// `ALLOW` or `BLOCK`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DefaultAction::Allow(_) => "ALLOW",
            DefaultAction::Block(_) => "BLOCK",
        }
    }

    /// True for BLOCK.
    pub fn is_block(&self) -> bool {
        matches!(self, DefaultAction::Block(_))
    }

    /// ALLOW.
    pub fn allow() -> DefaultAction {
        DefaultAction::Allow(Empty {})
    }

    /// BLOCK.
    pub fn block() -> DefaultAction {
        DefaultAction::Block(Empty {})
    }
}

/// CloudWatch metrics and sampled requests for a rule or the ACL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct VisibilityConfig {
    /// Keep sampled requests.
    pub sampled_requests_enabled: bool,
    /// Publish CloudWatch metrics.
    pub cloud_watch_metrics_enabled: bool,
    /// Metric name.
    pub metric_name: String,
}

impl VisibilityConfig {
    /// Sampling and metrics on, named `name`.
    pub fn named(name: &str) -> VisibilityConfig {
        VisibilityConfig {
            sampled_requests_enabled: true,
            cloud_watch_metrics_enabled: true,
            metric_name: name.to_owned(),
        }
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Rule {
    /// Name (eos-sec's own rules start with `eos-`).
    pub name: String,
    /// Priority: lower runs first.
    pub priority: i32,
    /// What it matches.
    pub statement: Statement,
    /// Action (rules that are not rule-group references).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<RuleAction>,
    /// Override (rule-group references).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_action: Option<OverrideAction>,
    /// Labels added to matching requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule_labels: Vec<Label>,
    /// Metrics.
    pub visibility_config: VisibilityConfig,
}

/// A rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleAction {
    /// ALLOW (terminating).
    Allow(Empty),
    /// BLOCK (terminating).
    Block(Empty),
    /// COUNT (not terminating).
    Count(Empty),
}

/// A rule group reference's override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OverrideAction {
    /// Use the group's own actions.
    None(Empty),
    /// Count everything.
    Count(Empty),
}

/// A label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Label {
    /// `namespace:name`.
    pub name: String,
}

/// The statements eos-sec compiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Statement {
    /// Source (or forwarded) address in an IPSet.
    #[serde(rename = "IPSetReferenceStatement")]
    IpSetReference(IpSetReference),
    /// A managed rule group.
    ManagedRuleGroupStatement(ManagedRuleGroup),
    /// Rate limit per key.
    RateBasedStatement(RateBased),
    /// Compare part of the request with a string.
    ByteMatchStatement(ByteMatch),
    /// All of.
    AndStatement(Statements),
    /// Any of.
    OrStatement(Statements),
    /// Not.
    NotStatement(NotStatement),
}

/// `IPSetReferenceStatement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct IpSetReference {
    /// The IPSet's ARN.
    #[serde(rename = "ARN")]
    pub arn: String,
    /// Read the address from a header the trusted proxy writes.
    #[serde(
        rename = "IPSetForwardedIPConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub forwarded_ip_config: Option<IpSetForwardedIpConfig>,
}

/// `IPSetForwardedIPConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct IpSetForwardedIpConfig {
    /// Header name.
    pub header_name: String,
    /// `MATCH` or `NO_MATCH` when the header holds no valid address.
    pub fallback_behavior: String,
    /// `FIRST`, `LAST` or `ANY` (eos-sec writes only `LAST`).
    pub position: String,
}

/// `ManagedRuleGroupStatement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ManagedRuleGroup {
    /// Vendor.
    pub vendor_name: String,
    /// Group.
    pub name: String,
    /// Pinned version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Per-rule overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule_action_overrides: Vec<RuleActionOverride>,
}

/// `RuleActionOverride`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RuleActionOverride {
    /// Rule inside the group.
    pub name: String,
    /// Its new action.
    pub action_to_use: RuleAction,
}

/// `RateBasedStatement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RateBased {
    /// Requests per window.
    pub limit: i64,
    /// Window in seconds.
    pub evaluation_window_sec: i64,
    /// `IP`.
    pub aggregate_key_type: String,
    /// Only count requests matching this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_down_statement: Option<Box<Statement>>,
}

/// `ByteMatchStatement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ByteMatch {
    /// The string (base64 on the wire; text here).
    pub search_string: String,
    /// Where to look.
    pub field_to_match: FieldToMatch,
    /// Transformations before matching.
    pub text_transformations: Vec<TextTransformation>,
    /// `EXACTLY`, `STARTS_WITH`, ...
    pub positional_constraint: String,
}

/// `FieldToMatch` (the parts eos-sec inspects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldToMatch {
    /// One header, by lower-case name.
    SingleHeader(SingleHeader),
    /// The URI path.
    UriPath(Empty),
}

/// `SingleHeader`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SingleHeader {
    /// Lower-case header name.
    pub name: String,
}

/// `TextTransformation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TextTransformation {
    /// Order.
    pub priority: i32,
    /// `NONE`, `LOWERCASE`, ...
    #[serde(rename = "Type")]
    pub kind: String,
}

/// `AndStatement` / `OrStatement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Statements {
    /// The operands (at least two).
    pub statements: Vec<Statement>,
}

/// `NotStatement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct NotStatement {
    /// The negated statement.
    pub statement: Box<Statement>,
}

impl Statement {
    /// Web ACL capacity units (AWS WAF Developer Guide, "Rule statements
    /// list": IP set match 1, or 5 with forwarded position ANY; string match
    /// EXACTLY/STARTS_WITH/ENDS_WITH 2, CONTAINS 10, plus 10 per text
    /// transformation other than NONE; rate-based 2 plus scope-down; logical
    /// statements the sum of their operands).
    pub fn wcu(&self, managed_capacity: &dyn Fn(&ManagedRuleGroup) -> u32) -> u32 {
        match self {
            Statement::IpSetReference(r) => {
                let any = r
                    .forwarded_ip_config
                    .as_ref()
                    .is_some_and(|f| f.position == "ANY");
                if any { 5 } else { 1 }
            }
            Statement::ManagedRuleGroupStatement(m) => managed_capacity(m),
            Statement::RateBasedStatement(r) => {
                2 + r
                    .scope_down_statement
                    .as_ref()
                    .map_or(0, |s| s.wcu(managed_capacity))
            }
            Statement::ByteMatchStatement(b) => {
                let base = match b.positional_constraint.as_str() {
                    "CONTAINS" | "CONTAINS_WORD" => 10,
                    _ => 2,
                };
                let transforms = b
                    .text_transformations
                    .iter()
                    .filter(|t| t.kind != "NONE")
                    .count();
                base + 10 * u32::try_from(transforms).unwrap_or(u32::MAX / 20)
            }
            Statement::AndStatement(s) | Statement::OrStatement(s) => {
                s.statements.iter().map(|x| x.wcu(managed_capacity)).sum()
            }
            Statement::NotStatement(n) => n.statement.wcu(managed_capacity),
        }
    }

    /// Reference statements (IPSet, managed rule group) inside, which WAF
    /// limits to 50 per Web ACL.
    pub fn reference_count(&self) -> u32 {
        match self {
            Statement::IpSetReference(_) | Statement::ManagedRuleGroupStatement(_) => 1,
            Statement::RateBasedStatement(r) => r
                .scope_down_statement
                .as_ref()
                .map_or(0, |s| s.reference_count()),
            Statement::ByteMatchStatement(_) => 0,
            Statement::AndStatement(s) | Statement::OrStatement(s) => {
                s.statements.iter().map(Statement::reference_count).sum()
            }
            Statement::NotStatement(n) => n.statement.reference_count(),
        }
    }
}

/// The prefix of every rule eos-sec owns. Rules without it are never
/// modified or removed.
pub const OWNED_PREFIX: &str = "eos-";

/// Whether eos-sec owns a rule of this name.
pub fn is_owned(rule_name: &str) -> bool {
    rule_name.starts_with(OWNED_PREFIX)
}

/// WAF's `Description`: 1–256 characters of
/// `^[\w+=:#@/\-,\.][\w+=:#@/\-,\.\s]+[\w+=:#@/\-,\.]$`.
pub fn validate_description(d: &str) -> Result<(), String> {
    let n = d.chars().count();
    if n == 0 || n > 256 {
        return Err(format!("description must be 1 to 256 characters, got {n}"));
    }
    let edge = |c: char| c.is_alphanumeric() || c == '_' || "+=:#@/-,.".contains(c);
    let inner = |c: char| edge(c) || c.is_whitespace();
    let chars: Vec<char> = d.chars().collect();
    let ok = chars.len() >= 3
        && chars.first().is_some_and(|&c| edge(c))
        && chars.last().is_some_and(|&c| edge(c))
        && chars.iter().all(|&c| inner(c));
    if !ok {
        return Err(format!(
            "description `{d}` does not match WAF's pattern (letters, digits, whitespace and + = : # @ / - , . _; no whitespace at either end)"
        ));
    }
    Ok(())
}
