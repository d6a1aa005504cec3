//! Evaluate a request against the firewall: which layer decides, and why.
//!
//! The WAF layer is evaluated by interpreting the *compiled* Web ACL, so
//! `eval` and `compile` cannot disagree. Managed rule groups and rate-based
//! rules run at AWS on data eos-sec does not have; they are reported as not
//! evaluated and treated as not matching.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use eos_identity::SpaceId;
use eos_ipset::{Family, IpSet};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Serialize;

use crate::PolicyError;
use crate::cert::{CertStatus, TrustConfig};
use crate::compile::{ListenerMode, SetArns, compile, listener_mode, set_name};
use crate::model::{Mode, Policy, Routing, Stage};
use crate::waf::{ByteMatch, FieldToMatch, RuleAction, Statement, WebAcl};

/// Where the IP gate's sets come from (the state store, AWS, a file).
pub trait SetSource {
    /// The set named `name` (`eos-<space>-v4`/`-v6`), or `None` when it
    /// does not exist.
    fn ip_set(&self, name: &str) -> Result<Option<IpSet>, PolicyError>;
}

impl SetSource for BTreeMap<String, IpSet> {
    fn ip_set(&self, name: &str) -> Result<Option<IpSet>, PolicyError> {
        Ok(self.get(name).cloned())
    }
}

/// A space's whole allowed set (v4 ∪ v6) from a source.
pub fn space_set(source: &dyn SetSource, space: &SpaceId) -> Result<Option<IpSet>, PolicyError> {
    let v4 = source.ip_set(&set_name(space, Family::V4))?;
    let v6 = source.ip_set(&set_name(space, Family::V6))?;
    Ok(match (v4, v6) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or_default().union(&b.unwrap_or_default())),
    })
}

/// The parts of a request the firewall looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `Host` header.
    pub host: Option<String>,
    /// URI path.
    pub path: String,
    /// Other headers (lower-case names).
    pub headers: BTreeMap<String, String>,
    /// The client address as WAF resolves it (the source address, or the
    /// LAST entry of the trusted proxy's header).
    pub ip: IpAddr,
}

impl Request {
    /// A request that routes to `space` under the policy's routing.
    pub fn to_space(routing: &Routing, space: &SpaceId, ip: IpAddr) -> Request {
        let mut r = Request {
            host: None,
            path: "/".to_owned(),
            headers: BTreeMap::new(),
            ip,
        };
        match routing {
            Routing::HostLabel { domain } => r.host = Some(format!("{space}.{domain}")),
            Routing::PathPrefix { prefix } => r.path = format!("{prefix}{space}/"),
            Routing::Header { name } => {
                r.headers.insert(name.clone(), space.to_string());
            }
        }
        r
    }

    fn header(&self, name: &str) -> Option<&str> {
        if name == "host" {
            return self.host.as_deref();
        }
        self.headers.get(name).map(String::as_str)
    }
}

/// ALLOW or BLOCK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Let through.
    Allow,
    /// Refused.
    Block,
}

/// Which layer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// The load balancer's mTLS verification (TLS handshake).
    Listener,
    /// The Web ACL.
    Waf,
    /// The application (mode `either`, via this library).
    Application,
}

impl Layer {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Listener => "listener",
            Layer::Waf => "waf",
            Layer::Application => "application",
        }
    }
}

/// The decision for one request at one set of stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// ALLOW or BLOCK.
    pub verdict: Verdict,
    /// The layer that decided.
    pub layer: Layer,
    /// The rule that decided (`default` for the Web ACL default action).
    pub rule: String,
    /// COUNT rules that matched (what enforcement would block).
    pub counted: Vec<String>,
}

/// What the firewall does with a request now, and once enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The space the request routes to, if any.
    pub space: Option<SpaceId>,
    /// Its mode.
    pub mode: Option<Mode>,
    /// Its stage in this evaluation.
    pub stage: Option<Stage>,
    /// At the evaluated stages.
    pub now: Outcome,
    /// With the space at `enforce`.
    pub enforced: Outcome,
    /// Whether the address is in the space's set (`None`: no sets).
    pub ip_in_set: Option<bool>,
    /// The certificate gate's view.
    pub cert: CertStatus,
    /// Rules that were not evaluated (managed, rate-based).
    pub not_evaluated: Vec<String>,
}

/// A policy ready to evaluate requests: compiled at the given stages and at
/// `enforce`, with the sets and trust configuration loaded.
#[derive(Debug)]
pub struct Evaluator<'p> {
    policy: Cow<'p, Policy>,
    stages: BTreeMap<SpaceId, Stage>,
    acl_now: WebAcl,
    acl_enforced: WebAcl,
    sets: BTreeMap<String, IpSet>,
    trust: Option<TrustConfig>,
}

impl<'p> Evaluator<'p> {
    /// Prepare. `stages` overrides the declared stages; sets are read once
    /// from `source`.
    pub fn new(
        policy: &'p Policy,
        stages: &BTreeMap<SpaceId, Stage>,
        source: &dyn SetSource,
        trust: Option<TrustConfig>,
    ) -> Result<Evaluator<'p>, PolicyError> {
        Evaluator::with_policy(Cow::Borrowed(policy), stages, source, trust)
    }

    /// Like [`Evaluator::new`], owning the policy: for a long-running
    /// decision point that swaps whole evaluators when its inputs change.
    pub fn owned(
        policy: Policy,
        stages: &BTreeMap<SpaceId, Stage>,
        source: &dyn SetSource,
        trust: Option<TrustConfig>,
    ) -> Result<Evaluator<'static>, PolicyError> {
        Evaluator::with_policy(Cow::Owned(policy), stages, source, trust)
    }

    /// The policy evaluated.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn with_policy(
        policy: Cow<'p, Policy>,
        stages: &BTreeMap<SpaceId, Stage>,
        source: &dyn SetSource,
        trust: Option<TrustConfig>,
    ) -> Result<Evaluator<'p>, PolicyError> {
        let mut all = policy.declared_stages();
        all.extend(stages.iter().map(|(k, v)| (k.clone(), *v)));
        // The ARN of each set is its name here: the interpreter looks sets
        // up by it.
        let mut arns = SetArns::default();
        let mut sets = BTreeMap::new();
        for id in policy.spaces.keys() {
            for family in [Family::V4, Family::V6] {
                let name = set_name(id, family);
                arns.known.insert(name.clone(), name.clone());
                if let Some(s) = source.ip_set(&name)? {
                    sets.insert(name, s);
                }
            }
        }
        let acl_now = compile(&policy, &all, &arns)?.web_acl;
        let enforced: BTreeMap<SpaceId, Stage> = policy
            .spaces
            .keys()
            .map(|k| (k.clone(), Stage::Enforce))
            .collect();
        let acl_enforced = compile(&policy, &enforced, &arns)?.web_acl;
        Ok(Evaluator {
            policy,
            stages: all,
            acl_now,
            acl_enforced,
            sets,
            trust,
        })
    }

    /// The space a request routes to.
    pub fn space_of(&self, req: &Request) -> Option<SpaceId> {
        let candidate = match &self.policy.routing {
            Routing::HostLabel { domain } => {
                let host = req.host.as_deref()?.to_ascii_lowercase();
                let host = host.split(':').next().unwrap_or("");
                let label = host.strip_suffix(domain.as_str())?.strip_suffix('.')?;
                label.to_owned()
            }
            Routing::PathPrefix { prefix } => {
                let rest = req.path.strip_prefix(prefix.as_str())?;
                rest.split('/').next().unwrap_or("").to_owned()
            }
            Routing::Header { name } => req.headers.get(name)?.clone(),
        };
        let id = SpaceId::new(&candidate).ok()?;
        self.policy.spaces.contains_key(&id).then_some(id)
    }

    /// Decide a request. `chain` is the client's certificate chain (leaf
    /// first) when one was presented.
    pub fn evaluate(
        &self,
        req: &Request,
        chain: Option<&[CertificateDer<'_>]>,
        now: UnixTime,
    ) -> Decision {
        self.evaluate_with(req, chain, |trust, chain, space| {
            trust.verify(chain, space, now)
        })
    }

    /// [`Evaluator::evaluate`] with the certificate gate's check done by
    /// `verify` (trust configuration, non-empty chain, space), which must
    /// answer as [`TrustConfig::verify`] does: for a decision point that
    /// caches verified chains ([`crate::VerifiedChain`]).
    pub fn evaluate_with(
        &self,
        req: &Request,
        chain: Option<&[CertificateDer<'_>]>,
        verify: impl FnOnce(&TrustConfig, &[CertificateDer<'_>], &SpaceId) -> CertStatus,
    ) -> Decision {
        let space = self.space_of(req);
        let sp = space.as_ref().and_then(|s| self.policy.spaces.get(s));
        let stage = space.as_ref().and_then(|s| self.stages.get(s).copied());
        let cert = match (chain, &space) {
            (None, _) | (Some([]), _) => CertStatus::Absent,
            (Some(c), Some(s)) => match &self.trust {
                Some(t) => verify(t, c, s),
                None => CertStatus::Invalid {
                    reason: "no CA bundle configured ([cert_gate] ca_bundle)".to_owned(),
                },
            },
            (Some(_), None) => CertStatus::Invalid {
                reason: "request routes to no space".to_owned(),
            },
        };
        let ip_in_set = space.as_ref().and_then(|s| {
            let v4 = self.sets.get(&set_name(s, Family::V4));
            let v6 = self.sets.get(&set_name(s, Family::V6));
            if v4.is_none() && v6.is_none() {
                return None;
            }
            Some(v4.is_some_and(|x| x.contains(req.ip)) || v6.is_some_and(|x| x.contains(req.ip)))
        });
        let mut not_evaluated = Vec::new();
        let now_outcome = self.layers(
            &self.acl_now,
            req,
            sp.map(|p| (p.mode, stage.unwrap_or(p.stage))),
            ip_in_set,
            &cert,
            &mut not_evaluated,
        );
        let enforced = self.layers(
            &self.acl_enforced,
            req,
            sp.map(|p| (p.mode, Stage::Enforce)),
            ip_in_set,
            &cert,
            &mut Vec::new(),
        );
        Decision {
            space,
            mode: sp.map(|p| p.mode),
            stage,
            now: now_outcome,
            enforced,
            ip_in_set,
            cert,
            not_evaluated,
        }
    }

    fn layers(
        &self,
        acl: &WebAcl,
        req: &Request,
        space: Option<(Mode, Stage)>,
        ip_in_set: Option<bool>,
        cert: &CertStatus,
        not_evaluated: &mut Vec<String>,
    ) -> Outcome {
        let mut counted = Vec::new();
        let listener = space.map_or(ListenerMode::Off, |(m, s)| listener_mode(m, s));
        // The handshake happens before any HTTP request reaches WAF.
        if listener == ListenerMode::Verify && !cert.is_valid() {
            return Outcome {
                verdict: Verdict::Block,
                layer: Layer::Listener,
                rule: "mtls-verify".to_owned(),
                counted,
            };
        }
        let cert_would_block =
            space.is_some_and(|(m, _)| m.uses_cert_gate() && m != Mode::Either) && !cert.is_valid();
        if listener == ListenerMode::Passthrough
            && space.is_some_and(|(_, s)| s == Stage::Count)
            && cert_would_block
        {
            counted.push("mtls-verify".to_owned());
        }
        for rule in &acl.rules {
            match &rule.statement {
                Statement::ManagedRuleGroupStatement(_) | Statement::RateBasedStatement(_) => {
                    not_evaluated.push(rule.name.clone());
                    continue;
                }
                _ => {}
            }
            if !self.matches(&rule.statement, req) {
                continue;
            }
            match rule.action {
                Some(RuleAction::Count(_)) => counted.push(rule.name.clone()),
                Some(RuleAction::Allow(_)) => {
                    return self.application(space, ip_in_set, cert, rule.name.clone(), counted);
                }
                Some(RuleAction::Block(_)) => {
                    return Outcome {
                        verdict: Verdict::Block,
                        layer: Layer::Waf,
                        rule: rule.name.clone(),
                        counted,
                    };
                }
                None => {}
            }
        }
        if acl.default_action.is_block() {
            return Outcome {
                verdict: Verdict::Block,
                layer: Layer::Waf,
                rule: "default".to_owned(),
                counted,
            };
        }
        self.application(space, ip_in_set, cert, "default".to_owned(), counted)
    }

    /// After WAF allowed: the application's check for mode `either`.
    fn application(
        &self,
        space: Option<(Mode, Stage)>,
        ip_in_set: Option<bool>,
        cert: &CertStatus,
        waf_rule: String,
        mut counted: Vec<String>,
    ) -> Outcome {
        if let Some((Mode::Either, stage)) = space {
            let ok = ip_in_set == Some(true) || cert.is_valid();
            match stage {
                Stage::Enforce if !ok => {
                    return Outcome {
                        verdict: Verdict::Block,
                        layer: Layer::Application,
                        rule: "either".to_owned(),
                        counted,
                    };
                }
                Stage::Count if !ok => counted.push("either".to_owned()),
                _ => {}
            }
        }
        Outcome {
            verdict: Verdict::Allow,
            layer: Layer::Waf,
            rule: waf_rule,
            counted,
        }
    }

    fn matches(&self, st: &Statement, req: &Request) -> bool {
        match st {
            Statement::IpSetReference(r) => {
                self.sets.get(&r.arn).is_some_and(|s| s.contains(req.ip))
            }
            Statement::ByteMatchStatement(b) => byte_match(b, req),
            Statement::AndStatement(s) => s.statements.iter().all(|x| self.matches(x, req)),
            Statement::OrStatement(s) => s.statements.iter().any(|x| self.matches(x, req)),
            Statement::NotStatement(n) => !self.matches(&n.statement, req),
            Statement::ManagedRuleGroupStatement(_) | Statement::RateBasedStatement(_) => false,
        }
    }
}

fn byte_match(b: &ByteMatch, req: &Request) -> bool {
    let value = match &b.field_to_match {
        FieldToMatch::SingleHeader(h) => match req.header(&h.name) {
            Some(v) => v,
            None => return false,
        },
        FieldToMatch::UriPath(_) => req.path.as_str(),
    };
    let lower = b.text_transformations.iter().any(|t| t.kind == "LOWERCASE");
    let value = if lower {
        value.to_ascii_lowercase()
    } else {
        value.to_owned()
    };
    match b.positional_constraint.as_str() {
        "EXACTLY" => value == b.search_string,
        "STARTS_WITH" => value.starts_with(&b.search_string),
        "ENDS_WITH" => value.ends_with(&b.search_string),
        "CONTAINS" => value.contains(&b.search_string),
        _ => false,
    }
}
