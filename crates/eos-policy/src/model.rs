//! The policy file (TOML): the restricted firewall as data. See
//! `docs/POLICY.md` for the format; `examples/data/policy.toml` is a full
//! example.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use eos_identity::{SpaceId, UserId};
use eos_ipset::parse_addr_strict;
use serde::{Deserialize, Serialize};

use crate::PolicyError;

/// Which gates a space requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The IP gate only (fixed office desktops).
    Ip,
    /// The certificate gate only (roaming laptops).
    Cert,
    /// Both gates (administrators).
    Both,
    /// Either gate suffices; needs the application to decide (passthrough).
    Either,
    /// No gate: the space is public behind the standard rules.
    Open,
}

impl Mode {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ip => "ip",
            Mode::Cert => "cert",
            Mode::Both => "both",
            Mode::Either => "either",
            Mode::Open => "open",
        }
    }

    /// Whether the IP gate is enforced at WAF in this mode. `either` is not:
    /// WAF cannot see a client certificate, so an IP rule at WAF would block
    /// certificate holders on other networks.
    pub fn ip_gate_at_waf(self) -> bool {
        matches!(self, Mode::Ip | Mode::Both)
    }

    /// Whether the mode involves the IP gate at all (WAF or application).
    pub fn uses_ip_gate(self) -> bool {
        matches!(self, Mode::Ip | Mode::Both | Mode::Either)
    }

    /// Whether the mode involves the certificate gate.
    pub fn uses_cert_gate(self) -> bool {
        matches!(self, Mode::Cert | Mode::Both | Mode::Either)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a space's gates are rolled out. Ordered: each stage is one step
/// further than the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Nothing exists for the space's gates.
    Off,
    /// The IPSets exist and are populated, but no rule uses them.
    Staged,
    /// A COUNT rule labels what enforcement would block; nothing is blocked.
    Count,
    /// The gates block.
    Enforce,
}

impl Stage {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Off => "off",
            Stage::Staged => "staged",
            Stage::Count => "count",
            Stage::Enforce => "enforce",
        }
    }

    /// The next stage forward, if any.
    pub fn next(self) -> Option<Stage> {
        match self {
            Stage::Off => Some(Stage::Staged),
            Stage::Staged => Some(Stage::Count),
            Stage::Count => Some(Stage::Enforce),
            Stage::Enforce => None,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Stage, String> {
        match s {
            "off" => Ok(Stage::Off),
            "staged" => Ok(Stage::Staged),
            "count" => Ok(Stage::Count),
            "enforce" => Ok(Stage::Enforce),
            other => Err(format!(
                "unknown stage `{other}` (expected off, staged, count or enforce)"
            )),
        }
    }
}

/// WAF scope of the Web ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// ALB, API Gateway, AppSync, Cognito, App Runner, Verified Access.
    #[default]
    Regional,
    /// CloudFront (API calls go to us-east-1).
    Cloudfront,
}

impl Scope {
    /// The WAFv2 API spelling.
    pub fn as_api(self) -> &'static str {
        match self {
            Scope::Regional => "REGIONAL",
            Scope::Cloudfront => "CLOUDFRONT",
        }
    }
}

/// How a request is tied to a space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "kebab-case")]
pub enum Routing {
    /// `Host: <space>.<domain>`.
    HostLabel {
        /// The parent domain, lower case, e.g. `entityos.cloud`.
        domain: String,
    },
    /// URI path `<prefix><space>/...`.
    PathPrefix {
        /// The prefix, starting and ending with `/`, e.g. `/spaces/`.
        prefix: String,
    },
    /// A header written by a trusted front end carries the space id.
    Header {
        /// Header name, lower case.
        name: String,
    },
}

/// A managed rule group (AWS or Marketplace) the Web ACL runs before the gates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagedGroup {
    /// `AWS` or a Marketplace vendor.
    pub vendor: String,
    /// Group name, e.g. `AWSManagedRulesCommonRuleSet`.
    pub name: String,
    /// Pinned version (`Version_1.12`); `None` follows the vendor default.
    pub version: Option<String>,
    /// Per-rule action overrides (rule name → action).
    pub overrides: Vec<(String, OverrideTo)>,
    /// WCU of the group.
    pub capacity: u32,
}

/// What an overridden managed rule does instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverrideTo {
    /// Count instead of the rule's own action.
    Count,
    /// Block.
    Block,
    /// Allow.
    Allow,
}

/// A rate-based rule: block an address above `limit` requests per window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateRule {
    /// Rule name suffix (`eos-rate-<name>`).
    pub name: String,
    /// Requests per window (10 to 2,000,000,000).
    pub limit: u64,
    /// Window in seconds: 60, 120, 300 or 600.
    pub window_seconds: u32,
    /// What is counted per key.
    pub key: RateKey,
    /// Restrict the rule to one space's traffic.
    pub space: Option<SpaceId>,
}

/// Aggregation key of a rate-based rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateKey {
    /// The request's source address (the connection peer).
    Ip,
}

/// The IP gate's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpGate {
    /// When WAF sits behind a trusted proxy: the header that proxy appends
    /// the client address to. Matched at position LAST only.
    pub forwarded_ip_header: Option<String>,
    /// Refuse to enforce when a space's set has fewer addresses than this.
    pub min_addresses: u64,
}

/// The certificate gate's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertGate {
    /// PEM CA bundle (the entityOS CA), relative paths from the policy file.
    pub ca_bundle: Option<PathBuf>,
    /// CRL files (PEM or DER), one per issuing CA.
    pub crls: Vec<PathBuf>,
    /// Name of the ALB trust store in compiled listener settings.
    pub trust_store_name: String,
}

/// One space's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpacePolicy {
    /// The space.
    pub id: SpaceId,
    /// Which gates.
    pub mode: Mode,
    /// Declared stage (compile's default; `enforce` records what is applied).
    pub stage: Stage,
    /// Declared administrators: enforcing refuses when simulate shows one of
    /// them blocked.
    pub admins: Vec<UserId>,
    /// Addresses administrators declared they work from: enforcing refuses
    /// when one of them is outside the set.
    pub admin_ips: Vec<IpAddr>,
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Web ACL name.
    pub web_acl_name: String,
    /// Web ACL description (passed through to AWS).
    pub description: Option<String>,
    /// WAF scope.
    pub scope: Scope,
    /// Request → space.
    pub routing: Routing,
    /// Managed rule groups, in evaluation order.
    pub managed: Vec<ManagedGroup>,
    /// Rate-based rules, in evaluation order.
    pub rate: Vec<RateRule>,
    /// IP gate settings.
    pub ip_gate: IpGate,
    /// Certificate gate settings.
    pub cert_gate: CertGate,
    /// Spaces by id.
    pub spaces: BTreeMap<SpaceId, SpacePolicy>,
}

impl Policy {
    /// The space's policy, or a bad-input error naming it.
    pub fn space(&self, id: &SpaceId) -> Result<&SpacePolicy, PolicyError> {
        self.spaces
            .get(id)
            .ok_or_else(|| PolicyError::UnknownSpace(id.to_string()))
    }

    /// The declared stage of every space.
    pub fn declared_stages(&self) -> BTreeMap<SpaceId, Stage> {
        self.spaces
            .iter()
            .map(|(id, s)| (id.clone(), s.stage))
            .collect()
    }

    /// Read and validate a policy file. Relative paths inside it are taken
    /// from the file's directory.
    pub fn from_file(path: &Path) -> Result<Policy, PolicyError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| PolicyError::file(&name, format!("cannot read: {e}")))?;
        let mut policy = Policy::from_toml(&text, &name)?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        if let Some(b) = &policy.cert_gate.ca_bundle {
            policy.cert_gate.ca_bundle = Some(base.join(b));
        }
        policy.cert_gate.crls = policy.cert_gate.crls.iter().map(|c| base.join(c)).collect();
        Ok(policy)
    }

    /// Parse and validate policy text; errors carry `name:line:column`.
    pub fn from_toml(text: &str, name: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            PolicyError::File {
                file: name.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        raw.validate(text, name)
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

// ---- the file as written ---------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    web_acl: RawWebAcl,
    routing: RawRouting,
    #[serde(default)]
    ip_gate: RawIpGate,
    #[serde(default)]
    cert_gate: RawCertGate,
    #[serde(default)]
    managed: Vec<RawManaged>,
    #[serde(default)]
    rate: Vec<RawRate>,
    #[serde(default)]
    spaces: BTreeMap<String, RawSpace>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebAcl {
    name: String,
    description: Option<String>,
    #[serde(default)]
    scope: Scope,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    by: String,
    domain: Option<String>,
    prefix: Option<String>,
    header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIpGate {
    forwarded_ip_header: Option<String>,
    forwarded_ip_position: Option<String>,
    #[serde(default = "default_min_addresses")]
    min_addresses: u64,
}

fn default_min_addresses() -> u64 {
    1
}

impl Default for RawIpGate {
    fn default() -> Self {
        RawIpGate {
            forwarded_ip_header: None,
            forwarded_ip_position: None,
            min_addresses: default_min_addresses(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCertGate {
    ca_bundle: Option<PathBuf>,
    #[serde(default)]
    crl: Vec<PathBuf>,
    trust_store_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManaged {
    #[serde(default = "default_vendor")]
    vendor: String,
    name: String,
    version: Option<String>,
    capacity: Option<u32>,
    #[serde(default)]
    overrides: BTreeMap<String, OverrideTo>,
}

fn default_vendor() -> String {
    "AWS".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    name: String,
    limit: u64,
    #[serde(default = "default_window")]
    window_seconds: u32,
    #[serde(default = "default_key")]
    key: String,
    space: Option<SpaceId>,
}

fn default_window() -> u32 {
    300
}

fn default_key() -> String {
    "ip".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpace {
    mode: Mode,
    #[serde(default = "default_stage")]
    stage: Stage,
    #[serde(default)]
    admins: Vec<UserId>,
    #[serde(default)]
    admin_ips: Vec<String>,
}

fn default_stage() -> Stage {
    Stage::Staged
}

/// WCU of the AWS managed rule groups eos-sec knows (AWS WAF Developer Guide,
/// "AWS Managed Rules rule groups list"). Other groups need `capacity`.
pub fn known_capacity(vendor: &str, name: &str) -> Option<u32> {
    if vendor != "AWS" {
        return None;
    }
    Some(match name {
        "AWSManagedRulesCommonRuleSet" => 700,
        "AWSManagedRulesAdminProtectionRuleSet" => 100,
        "AWSManagedRulesKnownBadInputsRuleSet" => 200,
        "AWSManagedRulesSQLiRuleSet" => 200,
        "AWSManagedRulesLinuxRuleSet" => 200,
        "AWSManagedRulesUnixRuleSet" => 100,
        "AWSManagedRulesWindowsRuleSet" => 200,
        "AWSManagedRulesPHPRuleSet" => 100,
        "AWSManagedRulesWordPressRuleSet" => 100,
        "AWSManagedRulesAmazonIpReputationList" => 25,
        "AWSManagedRulesAnonymousIpList" => 50,
        "AWSManagedRulesBotControlRuleSet" => 50,
        _ => return None,
    })
}

/// WAF names (rules, metrics): letters, digits, `-` and `_`.
fn valid_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A header name as WAF accepts it: `^[a-zA-Z0-9-]+$`, 1–255.
fn valid_header(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl RawPolicy {
    fn validate(self, text: &str, file: &str) -> Result<Policy, PolicyError> {
        // Errors after parsing point at the key's first occurrence, which is
        // good enough to find it in a hand-written file.
        let at = |needle: &str, message: String| {
            let (line, column) = text
                .find(needle)
                .map(|o| line_col(text, o))
                .unwrap_or((0, 0));
            PolicyError::File {
                file: file.to_owned(),
                line,
                column,
                message,
            }
        };
        if !valid_name_part(&self.web_acl.name) {
            return Err(at(
                "name",
                format!(
                    "web_acl.name `{}`: use 1-64 letters, digits, '-' and '_'",
                    self.web_acl.name
                ),
            ));
        }
        if let Some(d) = &self.web_acl.description {
            // WAF refuses what moto accepts: check it here, at the file.
            crate::waf::validate_description(d)
                .map_err(|e| at("description", format!("web_acl.description: {e}")))?;
        }
        let routing = match self.routing.by.as_str() {
            "host-label" => {
                let domain = self.routing.domain.as_deref().unwrap_or("");
                let ok = !domain.is_empty()
                    && domain.len() <= 200
                    && domain.split('.').all(|l| {
                        !l.is_empty()
                            && l.bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    });
                if !ok {
                    return Err(at(
                        "by",
                        format!(
                            "routing by host-label needs `domain`, a lower-case DNS name (got `{domain}`)"
                        ),
                    ));
                }
                Routing::HostLabel {
                    domain: domain.to_owned(),
                }
            }
            "path-prefix" => {
                let prefix = self.routing.prefix.as_deref().unwrap_or("");
                let ok = prefix.starts_with('/')
                    && prefix.ends_with('/')
                    && prefix.len() <= 100
                    && prefix.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.')
                    });
                if !ok {
                    return Err(at(
                        "by",
                        format!(
                            "routing by path-prefix needs `prefix` starting and ending with '/' (got `{prefix}`)"
                        ),
                    ));
                }
                Routing::PathPrefix {
                    prefix: prefix.to_owned(),
                }
            }
            "header" => {
                let name = self.routing.header.as_deref().unwrap_or("");
                if !valid_header(name) {
                    return Err(at(
                        "by",
                        format!("routing by header needs `header`, a header name (got `{name}`)"),
                    ));
                }
                Routing::Header {
                    name: name.to_ascii_lowercase(),
                }
            }
            other => {
                return Err(at(
                    "by",
                    format!("routing.by `{other}`: expected host-label, path-prefix or header"),
                ));
            }
        };

        if let Some(pos) = &self.ip_gate.forwarded_ip_position {
            // WAF's FIRST and ANY read addresses the client wrote itself:
            // anyone could claim to be inside the set. Only the position the
            // trusted proxy appends to is evidence.
            if !pos.eq_ignore_ascii_case("last") {
                return Err(at(
                    "forwarded_ip_position",
                    format!(
                        "ip_gate.forwarded_ip_position `{pos}` is refused: FIRST and ANY read client-written addresses; only `last` (the entry the trusted proxy appends) is allowed"
                    ),
                ));
            }
        }
        if let Some(h) = &self.ip_gate.forwarded_ip_header
            && !valid_header(h)
        {
            return Err(at(
                "forwarded_ip_header",
                format!("ip_gate.forwarded_ip_header `{h}` is not a header name"),
            ));
        }
        if self.ip_gate.min_addresses == 0 {
            return Err(at(
                "min_addresses",
                "ip_gate.min_addresses must be at least 1: an empty set blocks everyone".to_owned(),
            ));
        }

        let mut managed = Vec::new();
        for m in self.managed {
            if !valid_name_part(&m.name) || !valid_name_part(&m.vendor) {
                return Err(at(
                    &m.name,
                    format!("managed group `{}/{}`: invalid name", m.vendor, m.name),
                ));
            }
            let capacity = match m.capacity.or_else(|| known_capacity(&m.vendor, &m.name)) {
                Some(c) => c,
                None => {
                    return Err(at(
                        &m.name,
                        format!(
                            "managed group `{}/{}`: unknown capacity; add `capacity = <WCU>` from the vendor's listing",
                            m.vendor, m.name
                        ),
                    ));
                }
            };
            managed.push(ManagedGroup {
                vendor: m.vendor,
                name: m.name,
                version: m.version,
                overrides: m.overrides.into_iter().collect(),
                capacity,
            });
        }

        let mut rate = Vec::new();
        for r in self.rate {
            if !valid_name_part(&r.name) {
                return Err(at(&r.name, format!("rate rule `{}`: invalid name", r.name)));
            }
            if !(10..=2_000_000_000).contains(&r.limit) {
                return Err(at(
                    &r.name,
                    format!(
                        "rate rule `{}`: limit {} outside 10..=2000000000",
                        r.name, r.limit
                    ),
                ));
            }
            if ![60, 120, 300, 600].contains(&r.window_seconds) {
                return Err(at(
                    &r.name,
                    format!(
                        "rate rule `{}`: window_seconds {} must be 60, 120, 300 or 600",
                        r.name, r.window_seconds
                    ),
                ));
            }
            let key = match r.key.as_str() {
                "ip" => RateKey::Ip,
                // WAF's ForwardedIPConfig for rate-based rules uses the first
                // address in the header, which the client controls: a key
                // on it lets a flood rotate its way under the limit.
                "forwarded-ip" => {
                    return Err(at(
                        &r.name,
                        format!(
                            "rate rule `{}`: key forwarded-ip is refused: WAF aggregates on the FIRST address of the header, which the client writes",
                            r.name
                        ),
                    ));
                }
                other => {
                    return Err(at(
                        &r.name,
                        format!("rate rule `{}`: key `{other}`: expected ip", r.name),
                    ));
                }
            };
            rate.push(RateRule {
                name: r.name,
                limit: r.limit,
                window_seconds: r.window_seconds,
                key,
                space: r.space,
            });
        }

        let mut spaces = BTreeMap::new();
        for (name, s) in self.spaces {
            let id =
                SpaceId::new(&name).map_err(|e| at(&format!("[spaces.{name}]"), e.to_string()))?;
            let mut admin_ips = Vec::new();
            for a in &s.admin_ips {
                let ip = parse_addr_strict(a).map_err(|e| {
                    at(
                        a,
                        format!("spaces.{name}.admin_ips: `{a}` is not an address: {e}"),
                    )
                })?;
                admin_ips.push(ip);
            }
            spaces.insert(
                id.clone(),
                SpacePolicy {
                    id,
                    mode: s.mode,
                    stage: s.stage,
                    admins: s.admins,
                    admin_ips,
                },
            );
        }
        for r in &rate {
            if let Some(sp) = &r.space
                && !spaces.contains_key(sp)
            {
                return Err(at(
                    &r.name,
                    format!("rate rule `{}`: space `{sp}` is not declared", r.name),
                ));
            }
        }
        if spaces.is_empty() {
            return Err(at("[", "no [spaces.<id>] declared".to_owned()));
        }

        Ok(Policy {
            web_acl_name: self.web_acl.name,
            description: self.web_acl.description,
            scope: self.web_acl.scope,
            routing,
            managed,
            rate,
            ip_gate: IpGate {
                forwarded_ip_header: self.ip_gate.forwarded_ip_header,
                min_addresses: self.ip_gate.min_addresses,
            },
            cert_gate: CertGate {
                ca_bundle: self.cert_gate.ca_bundle,
                crls: self.cert_gate.crl,
                trust_store_name: self
                    .cert_gate
                    .trust_store_name
                    .unwrap_or_else(|| "eos-ca".to_owned()),
            },
            spaces,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[web_acl]
name = "eos-restricted"
[routing]
by = "host-label"
domain = "entityos.cloud"
[spaces.acme]
mode = "ip"
"#;

    #[test]
    fn minimal_parses_with_defaults() {
        let p = Policy::from_toml(MIN, "p.toml").unwrap();
        let acme = p.space(&SpaceId::new("acme").unwrap()).unwrap();
        assert_eq!(acme.stage, Stage::Staged);
        assert_eq!(p.ip_gate.min_addresses, 1);
    }

    #[test]
    fn rejects_forwarded_position_first_and_any() {
        for pos in ["first", "ANY"] {
            let t = format!(
                "{MIN}[ip_gate]\nforwarded_ip_header = \"X-Forwarded-For\"\nforwarded_ip_position = \"{pos}\"\n"
            );
            let e = Policy::from_toml(&t, "p.toml").unwrap_err().to_string();
            assert!(e.contains("only `last`"), "{e}");
            assert!(e.starts_with("p.toml:"), "{e}");
        }
    }

    #[test]
    fn rejects_unknown_key_with_location() {
        let t = format!("{MIN}stgae = \"count\"\n");
        let e = Policy::from_toml(&t, "p.toml").unwrap_err().to_string();
        assert!(e.starts_with("p.toml:9:1: unknown field `stgae`"), "{e}");
    }

    #[test]
    fn rejects_description_waf_refuses() {
        let t = MIN.replace(
            "name = \"eos-restricted\"",
            "name = \"eos-restricted\"\ndescription = \"zone (managed)\"",
        );
        let e = Policy::from_toml(&t, "p.toml").unwrap_err().to_string();
        assert!(e.starts_with("p.toml:4:1: web_acl.description"), "{e}");
    }

    #[test]
    fn rejects_forwarded_ip_rate_key() {
        let t = format!("{MIN}[[rate]]\nname = \"flood\"\nlimit = 100\nkey = \"forwarded-ip\"\n");
        let e = Policy::from_toml(&t, "p.toml").unwrap_err().to_string();
        assert!(e.contains("FIRST address"), "{e}");
    }

    #[test]
    fn rejects_unknown_managed_capacity() {
        let t = format!("{MIN}[[managed]]\nname = \"SomethingNew\"\n");
        let e = Policy::from_toml(&t, "p.toml").unwrap_err().to_string();
        assert!(e.contains("unknown capacity"), "{e}");
    }

    #[test]
    fn rejects_bad_space_and_window() {
        let t = MIN.replace("[spaces.acme]", "[spaces.Acme]");
        assert!(Policy::from_toml(&t, "p").is_err());
        let t = format!("{MIN}[[rate]]\nname = \"x\"\nlimit = 100\nwindow_seconds = 30\n");
        assert!(
            Policy::from_toml(&t, "p")
                .unwrap_err()
                .to_string()
                .contains("window_seconds 30")
        );
    }
}
