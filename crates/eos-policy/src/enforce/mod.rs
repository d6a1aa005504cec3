//! Enforce and roll back: move one space one stage forward at a time, in
//! the order that never blocks legitimate traffic while WAF propagates a
//! change, snapshot the whole Web ACL before every change, and restore a
//! snapshot exactly.
//!
//! The order forward is: the space's IPSets populated and read back →
//! the rule that uses them added (stage `count`: a COUNT rule) → at
//! `enforce` first the ALLOW rules under the old default ALLOW, then the
//! default BLOCK on its own. Backwards ([`rollback`]) the default goes back
//! to ALLOW first, then the rules. [`ordered_steps`] computes both.
//!
//! Storage plugs in through [`EnforceJournal`] (`eos-store` implements it:
//! snapshots, the stage of each space, the audit log); the Web ACL through
//! [`WebAclBackend`] and the sets through `eos_plan::IpSetBackend`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use eos_identity::SpaceId;
use eos_ipset::{Family, IpNet, IpSet};
use eos_plan::{BackendError, IpSetBackend, IpSetName};
use serde::{Deserialize, Serialize};

use crate::PolicyError;
use crate::acl::{AclRead, OwnedAcl, WebAclBackend};
use crate::compile::{ListenerMode, SetArns, compile, listener_mode, set_name};
use crate::edge::{EdgeGate, GateSnapshot, NoGate};
use crate::gate::{GateBackend, ListenerAuth};
use crate::model::{Policy, Stage};
use crate::simulate::Simulation;

/// Attempts per write when somebody else wrote the Web ACL in between
/// (WAFOptimisticLockException): re-read, re-snapshot, re-write.
pub const MAX_ATTEMPTS: u32 = 5;

/// Stable codes of the enforce guards (docs/POLICY.md, "Enforce and roll
/// back"). Every one but [`guard::SETS_MISSING`] can be overridden with
/// `--force`, which is audited.
pub mod guard {
    use super::GuardCode;

    /// The space's IPSets do not exist (run `eos-sec apply`); never forced.
    pub const SETS_MISSING: GuardCode = GuardCode::SetsMissing;
    /// The space's sets are empty: enforcing would block everyone.
    pub const SET_EMPTY: GuardCode = GuardCode::SetEmpty;
    /// The sets hold fewer addresses than `[ip_gate] min_addresses`.
    pub const SET_BELOW_MINIMUM: GuardCode = GuardCode::SetBelowMinimum;
    /// No operator address given (`--operator-ip`, `[policy] operator_ips`).
    pub const OPERATOR_UNKNOWN: GuardCode = GuardCode::OperatorUnknown;
    /// The operator's own address is outside the sets.
    pub const OPERATOR_OUTSIDE: GuardCode = GuardCode::OperatorOutside;
    /// A declared administrator's address is outside the sets.
    pub const ADMIN_OUTSIDE: GuardCode = GuardCode::AdminOutside;
    /// Simulation over the logs shows declared administrators blocked.
    pub const SIMULATE_BLOCKS_ADMINS: GuardCode = GuardCode::SimulateBlocksAdmins;
    /// The operator's own certificate would be refused by the bundle and
    /// CRL a listener is about to verify against.
    pub const OPERATOR_CERT: GuardCode = GuardCode::OperatorCert;
    /// No operator certificate given (`--operator-cert`, `[gate] operator_cert`).
    pub const OPERATOR_CERT_UNKNOWN: GuardCode = GuardCode::OperatorCertUnknown;
    /// The trust store does not hold exactly the CA's current bundle and
    /// CRL (or is not ACTIVE); never forced.
    pub const TRUST_STORE_STALE: GuardCode = GuardCode::TrustStoreStale;
    /// Verify with `IgnoreClientCertificateExpiry=true`; never forced.
    pub const IGNORE_EXPIRY: GuardCode = GuardCode::IgnoreExpiry;
    /// Spaces on one listener would need different modes; never forced.
    pub const LISTENER_SHARED: GuardCode = GuardCode::ListenerShared;
    /// ALB connection logs show a declared administrator's connections
    /// that the space's listener would refuse once it verifies (no
    /// certificate, unknown CA, expired, revoked, bound to another space).
    pub const ADMIN_CERT_REFUSED: GuardCode = GuardCode::AdminCertRefused;
}

/// A guard's stable code (docs/POLICY.md). Serialized, displayed and
/// audited as its string form ([`GuardCode::as_str`], `enforce-*`); compared
/// as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum GuardCode {
    /// The space's IPSets do not exist (run `eos-sec apply`); never forced.
    #[serde(rename = "enforce-sets-missing")]
    SetsMissing,
    /// The space's sets are empty: enforcing would block everyone.
    #[serde(rename = "enforce-set-empty")]
    SetEmpty,
    /// The sets hold fewer addresses than `[ip_gate] min_addresses`.
    #[serde(rename = "enforce-set-below-minimum")]
    SetBelowMinimum,
    /// No operator address given (`--operator-ip`, `[policy] operator_ips`).
    #[serde(rename = "enforce-operator-unknown")]
    OperatorUnknown,
    /// The operator's own address is outside the sets.
    #[serde(rename = "enforce-operator-outside-set")]
    OperatorOutside,
    /// A declared administrator's address is outside the sets.
    #[serde(rename = "enforce-admin-outside-set")]
    AdminOutside,
    /// Simulation over the logs shows declared administrators blocked.
    #[serde(rename = "enforce-simulate-blocks-admins")]
    SimulateBlocksAdmins,
    /// The operator's own certificate would be refused by the bundle and
    /// CRL a listener is about to verify against.
    #[serde(rename = "enforce-operator-cert")]
    OperatorCert,
    /// No operator certificate given (`--operator-cert`, `[gate] operator_cert`).
    #[serde(rename = "enforce-operator-cert-unknown")]
    OperatorCertUnknown,
    /// The trust store does not hold exactly the CA's current bundle and
    /// CRL (or is not ACTIVE); never forced.
    #[serde(rename = "enforce-trust-store-stale")]
    TrustStoreStale,
    /// Verify with `IgnoreClientCertificateExpiry=true`; never forced.
    #[serde(rename = "enforce-ignore-expiry")]
    IgnoreExpiry,
    /// Spaces on one listener would need different modes; never forced.
    #[serde(rename = "enforce-listener-shared")]
    ListenerShared,
    /// ALB connection logs show a declared administrator's connections
    /// that the space's listener would refuse once it verifies (no
    /// certificate, unknown CA, expired, revoked, bound to another space).
    #[serde(rename = "enforce-admin-cert-refused")]
    AdminCertRefused,
}

impl GuardCode {
    /// Every code, in the order they are documented.
    pub const ALL: &[GuardCode] = &[
        GuardCode::SetsMissing,
        GuardCode::SetEmpty,
        GuardCode::SetBelowMinimum,
        GuardCode::OperatorUnknown,
        GuardCode::OperatorOutside,
        GuardCode::AdminOutside,
        GuardCode::SimulateBlocksAdmins,
        GuardCode::OperatorCert,
        GuardCode::OperatorCertUnknown,
        GuardCode::TrustStoreStale,
        GuardCode::IgnoreExpiry,
        GuardCode::ListenerShared,
        GuardCode::AdminCertRefused,
    ];

    /// The stable string form.
    pub fn as_str(self) -> &'static str {
        match self {
            GuardCode::SetsMissing => "enforce-sets-missing",
            GuardCode::SetEmpty => "enforce-set-empty",
            GuardCode::SetBelowMinimum => "enforce-set-below-minimum",
            GuardCode::OperatorUnknown => "enforce-operator-unknown",
            GuardCode::OperatorOutside => "enforce-operator-outside-set",
            GuardCode::AdminOutside => "enforce-admin-outside-set",
            GuardCode::SimulateBlocksAdmins => "enforce-simulate-blocks-admins",
            GuardCode::OperatorCert => "enforce-operator-cert",
            GuardCode::OperatorCertUnknown => "enforce-operator-cert-unknown",
            GuardCode::TrustStoreStale => "enforce-trust-store-stale",
            GuardCode::IgnoreExpiry => "enforce-ignore-expiry",
            GuardCode::ListenerShared => "enforce-listener-shared",
            GuardCode::AdminCertRefused => "enforce-admin-cert-refused",
        }
    }
}

impl std::fmt::Display for GuardCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for GuardCode {
    type Err = String;

    fn from_str(s: &str) -> Result<GuardCode, String> {
        GuardCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown guard code `{s}`"))
    }
}

#[cfg(test)]
mod guard_code_tests {
    #![allow(clippy::unwrap_used)]

    use super::GuardCode;

    /// The string forms are the documented, stable codes: serde, Display
    /// and `FromStr` agree on each, and no two codes share one.
    #[test]
    fn string_forms_are_stable_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for code in GuardCode::ALL {
            let s = code.as_str();
            assert!(s.starts_with("enforce-"), "{s}");
            assert!(seen.insert(s), "{s} twice");
            assert_eq!(serde_json::to_value(code).unwrap(), s);
            assert_eq!(code.to_string(), s);
            assert_eq!(s.parse::<GuardCode>().unwrap(), *code);
            let back: GuardCode = serde_json::from_value(serde_json::json!(s)).unwrap();
            assert_eq!(back, *code);
        }
        assert_eq!(
            format!("{:<22}|", GuardCode::SetEmpty),
            "enforce-set-empty     |"
        );
        assert!("enforce-nothing".parse::<GuardCode>().is_err());
    }
}

/// One guard's finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Guard {
    /// Stable code ([`guard`]).
    pub code: GuardCode,
    /// What and why, naming the address or user.
    pub message: String,
}

impl std::fmt::Display for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

/// What the guards look at.
#[derive(Debug, Clone, Copy)]
pub struct GuardInput<'a> {
    /// The policy.
    pub policy: &'a Policy,
    /// The space.
    pub space: &'a SpaceId,
    /// The space's sets (v4 ∪ v6) as read back.
    pub set: &'a IpSet,
    /// The operator's own addresses.
    pub operator_ips: &'a [IpAddr],
    /// A simulation over the logs, when logs were given.
    pub simulation: Option<&'a Simulation>,
}

/// The lockout guards for a space whose IP gate is about to block. Empty
/// when nothing is wrong.
pub fn guards(g: &GuardInput<'_>) -> Result<Vec<Guard>, PolicyError> {
    let sp = g.policy.space(g.space)?;
    let mut out = cert_guards(g)?;
    if !sp.mode.uses_ip_gate() {
        return Ok(out);
    }
    let size = u128::from(g.set.v4_len()).saturating_add(g.set.v6_len());
    if g.set.is_empty() {
        out.push(Guard {
            code: guard::SET_EMPTY,
            message: format!(
                "the sets of space {} are empty: enforcing would block everyone",
                g.space
            ),
        });
    } else if size < u128::from(g.policy.ip_gate.min_addresses) {
        out.push(Guard {
            code: guard::SET_BELOW_MINIMUM,
            message: format!(
                "the sets of space {} hold {size} addresses, fewer than [ip_gate] min_addresses = {}",
                g.space, g.policy.ip_gate.min_addresses
            ),
        });
    }
    if g.operator_ips.is_empty() {
        out.push(Guard {
            code: guard::OPERATOR_UNKNOWN,
            message: "no operator address to check: pass --operator-ip ADDR (your own address as WAF sees it) or set [policy] operator_ips".to_owned(),
        });
    }
    for ip in g.operator_ips {
        if !g.set.contains(*ip) {
            out.push(Guard {
                code: guard::OPERATOR_OUTSIDE,
                message: format!(
                    "the operator's address {ip} is outside the sets of space {}",
                    g.space
                ),
            });
        }
    }
    for ip in &sp.admin_ips {
        if !g.set.contains(*ip) {
            out.push(Guard {
                code: guard::ADMIN_OUTSIDE,
                message: format!(
                    "administrator address {ip} (spaces.{}.admin_ips) is outside the sets",
                    g.space
                ),
            });
        }
    }
    if let Some(s) = g.simulation.and_then(|s| s.spaces.get(g.space))
        && !s.blocked_admins.is_empty()
    {
        let admins: Vec<&str> = s.blocked_admins.iter().map(|u| u.as_str()).collect();
        out.push(Guard {
            code: guard::SIMULATE_BLOCKS_ADMINS,
            message: format!(
                "simulation over the logs blocks declared administrators of space {}: {}",
                g.space,
                admins.join(", ")
            ),
        });
    }
    Ok(out)
}

/// True when the space's listener verifies certificates at `enforce`
/// (modes `cert` and `both`): the step there can refuse a client.
pub fn verifies_at_enforce(policy: &Policy, space: &SpaceId) -> Result<bool, PolicyError> {
    let sp = policy.space(space)?;
    Ok(listener_mode(sp.mode, Stage::Enforce) == ListenerMode::Verify)
}

/// The certificate gate's lockout guard: declared administrators whose
/// connections (ALB connection logs) the listener would refuse in `verify`.
fn cert_guards(g: &GuardInput<'_>) -> Result<Vec<Guard>, PolicyError> {
    if !verifies_at_enforce(g.policy, g.space)? {
        return Ok(Vec::new());
    }
    let Some(certs) = g.simulation.and_then(|s| s.certificates.as_ref()) else {
        return Ok(Vec::new());
    };
    let Some(sp) = certs.spaces.get(g.space) else {
        return Ok(Vec::new());
    };
    if sp.refused_admins.is_empty() {
        return Ok(Vec::new());
    }
    let admins: Vec<&str> = sp.refused_admins.iter().map(|u| u.as_str()).collect();
    let reasons: Vec<String> = sp
        .by_reason
        .iter()
        .map(|(r, n)| format!("{} {n}", r.as_str()))
        .collect();
    Ok(vec![Guard {
        code: guard::ADMIN_CERT_REFUSED,
        message: format!(
            "the connection logs show declared administrators of space {} whose connections the listener would refuse in verify mode: {} (refused connections: {})",
            g.space,
            admins.join(", "),
            reasons.join(", ")
        ),
    }])
}

/// What one write changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// Rules change, the default action stays.
    Rules,
    /// The default action becomes BLOCK (rules already in place).
    DefaultBlock,
    /// The default action becomes ALLOW (before any rule is removed).
    DefaultAllow,
}

impl StepKind {
    /// Kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Rules => "rules",
            StepKind::DefaultBlock => "default-block",
            StepKind::DefaultAllow => "default-allow",
        }
    }
}

/// One write: the whole owned part it leaves behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What changes.
    pub kind: StepKind,
    /// The owned part after the write.
    pub target: OwnedAcl,
}

/// The writes from `current` to `target` in the safe order: rules before
/// a default BLOCK, a default ALLOW before rules are taken away. Empty when
/// there is nothing to change.
pub fn ordered_steps(current: &OwnedAcl, target: &OwnedAcl) -> Vec<Step> {
    if current == target {
        return Vec::new();
    }
    let step = |kind, target: &OwnedAcl| Step {
        kind,
        target: target.clone(),
    };
    match (
        current.default_action.is_block(),
        target.default_action.is_block(),
    ) {
        (false, true) => {
            let rules_first = target.with_default(current.default_action);
            let mut v = Vec::new();
            if rules_first != *current {
                v.push(step(StepKind::Rules, &rules_first));
            }
            v.push(step(StepKind::DefaultBlock, target));
            v
        }
        (true, false) => {
            let allow_first = current.with_default(target.default_action);
            let mut v = vec![step(StepKind::DefaultAllow, &allow_first)];
            if allow_first != *target {
                v.push(step(StepKind::Rules, target));
            }
            v
        }
        _ => vec![step(StepKind::Rules, target)],
    }
}

/// Whether a snapshot was taken by enforce or by rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// `eos-sec enforce`.
    Enforce,
    /// `eos-sec rollback`.
    Rollback,
}

impl RunKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Enforce => "enforce",
            RunKind::Rollback => "rollback",
        }
    }
}

/// A set's contents in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetSnapshot {
    /// Canonical CIDRs, in the order stored.
    pub addresses: Vec<String>,
    /// Its lock token at the time.
    pub lock: String,
}

/// A snapshot to record.
#[derive(Debug, Clone, Copy)]
pub struct NewSnapshot<'a> {
    /// The run it belongs to (the id of the run's first snapshot); `None`
    /// for the first snapshot of a run.
    pub run: Option<i64>,
    /// Enforce or rollback.
    pub kind: RunKind,
    /// The space the run is for.
    pub space: &'a SpaceId,
    /// The backend id.
    pub backend: &'a str,
    /// The Web ACL name.
    pub web_acl: &'a str,
    /// The whole Web ACL as read, with its lock token.
    pub read: &'a AclRead,
    /// The space's sets as read.
    pub sets: &'a BTreeMap<String, SetSnapshot>,
    /// The recorded stage of every space.
    pub stages: &'a BTreeMap<SpaceId, Stage>,
    /// The space's listener and trust store, when eos-sec moves one.
    pub gate: Option<&'a GateSnapshot>,
}

/// A recorded snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Its id.
    pub id: i64,
    /// The run (the id of the run's first snapshot).
    pub run: i64,
    /// When (RFC 3339 UTC).
    pub at: String,
    /// Enforce or rollback.
    pub kind: RunKind,
    /// The space the run was for.
    pub space: SpaceId,
    /// The backend id.
    pub backend: String,
    /// The Web ACL name.
    pub web_acl: String,
    /// The lock token of the read.
    pub lock: String,
    /// The owned part.
    pub owned: OwnedAcl,
    /// The whole Web ACL document.
    pub document: serde_json::Value,
    /// The space's sets.
    pub sets: BTreeMap<String, SetSnapshot>,
    /// The stage of every space.
    pub stages: BTreeMap<SpaceId, Stage>,
    /// The space's listener and trust store, when eos-sec moved one.
    pub gate: Option<GateSnapshot>,
}

/// A listener change to record (after it was read back).
#[derive(Debug, Clone, Copy)]
pub struct ListenerWrite<'a> {
    /// The listener's ARN.
    pub arn: &'a str,
    /// The snapshot taken just before.
    pub snapshot: i64,
    /// Its `MutualAuthentication` before.
    pub before: &'a ListenerAuth,
    /// And after.
    pub after: &'a ListenerAuth,
}

/// A write to record (after it succeeded).
#[derive(Debug, Clone, Copy)]
pub struct WriteRecord<'a> {
    /// The backend id.
    pub backend: &'a str,
    /// The Web ACL name.
    pub web_acl: &'a str,
    /// The snapshot taken just before.
    pub snapshot: i64,
    /// What changed.
    pub kind: StepKind,
    /// The owned part before.
    pub before: &'a OwnedAcl,
    /// The owned part after.
    pub after: &'a OwnedAcl,
}

/// A change of recorded stages.
#[derive(Debug, Clone)]
pub struct StageChange<'a> {
    /// The backend id.
    pub backend: &'a str,
    /// The Web ACL name.
    pub web_acl: &'a str,
    /// `enforce.stage` or `enforce.rollback`.
    pub action: &'static str,
    /// The space the command was for.
    pub space: &'a SpaceId,
    /// Every space's stage after the change (replaces what is recorded).
    pub stages: &'a BTreeMap<SpaceId, Stage>,
    /// Audit details (before, after, forced guards, snapshots).
    pub detail: serde_json::Value,
}

/// Where snapshots, stages and the audit log are kept (`eos-store`). Each
/// method is one transaction that also appends its audit entry.
pub trait EnforceJournal {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The recorded stage of each space on this backend and Web ACL.
    fn stages(
        &mut self,
        backend: &str,
        web_acl: &str,
    ) -> Result<BTreeMap<SpaceId, Stage>, Self::Error>;
    /// Record a snapshot (audited `webacl.snapshot`); its id.
    fn save_snapshot(&mut self, s: &NewSnapshot<'_>, actor: &str) -> Result<i64, Self::Error>;
    /// A snapshot by id.
    fn snapshot(&mut self, id: i64) -> Result<Option<Snapshot>, Self::Error>;
    /// The first snapshot of the latest enforce run for `space`.
    fn latest_enforce_start(
        &mut self,
        backend: &str,
        web_acl: &str,
        space: &SpaceId,
    ) -> Result<Option<Snapshot>, Self::Error>;
    /// Record a successful write (audited `webacl.write`).
    fn record_write(&mut self, w: &WriteRecord<'_>, actor: &str) -> Result<(), Self::Error>;
    /// Record a listener change read back (audited `listener.write`).
    fn record_listener_write(
        &mut self,
        w: &ListenerWrite<'_>,
        actor: &str,
    ) -> Result<(), Self::Error>;
    /// Replace the recorded stages (audited with `change.action`).
    fn record_stages(&mut self, change: &StageChange<'_>, actor: &str) -> Result<(), Self::Error>;
}

fn journal<E: std::error::Error + Send + Sync + 'static>(e: E) -> PolicyError {
    PolicyError::Journal(Box::new(e))
}

/// What `enforce` asks for.
#[derive(Debug, Clone)]
pub struct EnforceOptions<'a> {
    /// The policy.
    pub policy: &'a Policy,
    /// The space.
    pub space: SpaceId,
    /// The stage to move to; `None`: the next one.
    pub target: Option<Stage>,
    /// The operator's own addresses.
    pub operator_ips: Vec<IpAddr>,
    /// A simulation over the logs, when logs were given.
    pub simulation: Option<Simulation>,
    /// Override the guards (audited).
    pub force: bool,
    /// Who.
    pub actor: String,
}

/// One write done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    /// What changed.
    pub kind: StepKind,
    /// The snapshot taken just before.
    pub snapshot: i64,
    /// The default action after.
    pub default_action: &'static str,
    /// eos-sec's rules after, in order.
    pub rules: Vec<String>,
    /// Writes tried (more than 1 after lock conflicts).
    pub attempts: u32,
}

/// A listener change done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerStep {
    /// The listener's ARN.
    pub arn: String,
    /// The snapshot taken just before.
    pub snapshot: i64,
    /// Its `MutualAuthentication` before.
    pub before: ListenerAuth,
    /// After (read back).
    pub after: ListenerAuth,
}

/// What `enforce` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnforceReport {
    /// The space.
    pub space: SpaceId,
    /// The backend id.
    pub backend: String,
    /// The Web ACL.
    pub web_acl: String,
    /// The stage before.
    pub from: Stage,
    /// The stage after.
    pub to: Stage,
    /// The run: the id of its first snapshot, what `rollback` restores.
    pub run: Option<i64>,
    /// Whether the Web ACL had to be created first.
    pub created_web_acl: bool,
    /// The writes, in order.
    pub steps: Vec<StepReport>,
    /// The listener change, after the Web ACL writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerStep>,
    /// Guard findings that do not block this stage.
    pub warnings: Vec<Guard>,
    /// Guard findings overridden with `--force`.
    pub forced: Vec<Guard>,
}

/// What `rollback` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackReport {
    /// The space.
    pub space: SpaceId,
    /// The backend id.
    pub backend: String,
    /// The Web ACL.
    pub web_acl: String,
    /// The snapshot restored.
    pub snapshot: i64,
    /// The writes, in order (empty: already at the snapshot).
    pub steps: Vec<StepReport>,
    /// The listener restored, before the Web ACL writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerStep>,
    /// The trust store changed since the snapshot (kept: `gate publish` and
    /// `sync` own its bundle and revocations, and a rollback never
    /// un-revokes a certificate): what it held then and holds now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_store_changes: Option<(
        crate::edge::TrustStoreSnapshot,
        crate::edge::TrustStoreSnapshot,
    )>,
    /// Stages that changed: space → (before, after).
    pub stage_changes: BTreeMap<SpaceId, (Stage, Stage)>,
    /// The space's sets changed since the snapshot (kept: `apply` owns
    /// them): set name → entries added since, removed since.
    pub set_changes: BTreeMap<String, (Vec<String>, Vec<String>)>,
}

impl RollbackReport {
    /// True when nothing had to change.
    pub fn was_noop(&self) -> bool {
        self.steps.is_empty() && self.listener.is_none() && self.stage_changes.is_empty()
    }
}

/// Every declared space's stage: recorded, else `off`.
fn full_stages(policy: &Policy, recorded: &BTreeMap<SpaceId, Stage>) -> BTreeMap<SpaceId, Stage> {
    policy
        .spaces
        .keys()
        .map(|id| (id.clone(), recorded.get(id).copied().unwrap_or(Stage::Off)))
        .collect()
}

async fn read_sets<S: IpSetBackend>(
    sets: &S,
    space: &SpaceId,
) -> Result<(BTreeMap<String, SetSnapshot>, IpSet, Vec<String>), PolicyError> {
    let mut snap = BTreeMap::new();
    let mut nets: Vec<IpNet> = Vec::new();
    let mut missing = Vec::new();
    for family in [Family::V4, Family::V6] {
        let name = IpSetName::staged(space, family);
        match sets.read(&name).await? {
            Some(a) => {
                snap.insert(
                    name.to_string(),
                    SetSnapshot {
                        addresses: a.addresses.iter().map(eos_ipset::canonical).collect(),
                        lock: a.lock.0.clone(),
                    },
                );
                nets.extend(a.addresses.iter().copied());
            }
            None => missing.push(name.to_string()),
        }
    }
    Ok((snap, IpSet::from_nets(nets), missing))
}

/// The ARNs of the sets every IP-gated space at `count`/`enforce` needs.
async fn set_arns<A: WebAclBackend>(
    acl: &A,
    policy: &Policy,
    stages: &BTreeMap<SpaceId, Stage>,
) -> Result<SetArns, PolicyError> {
    let mut arns = SetArns::default();
    let mut missing = Vec::new();
    for (id, sp) in &policy.spaces {
        let stage = stages.get(id).copied().unwrap_or(Stage::Off);
        if !sp.mode.ip_gate_at_waf() || stage < Stage::Count {
            continue;
        }
        for family in [Family::V4, Family::V6] {
            let name = set_name(id, family);
            match acl.ip_set_arn(&name).await? {
                Some(arn) => {
                    arns.known.insert(name, arn);
                }
                None => missing.push(name),
            }
        }
    }
    if !missing.is_empty() {
        return Err(PolicyError::Refused {
            what: "enforce".to_owned(),
            guards: vec![Guard {
                code: guard::SETS_MISSING,
                message: format!(
                    "IPSets {} do not exist on the backend: create them with `eos-sec plan` and `eos-sec apply`",
                    missing.join(", ")
                ),
            }],
        });
    }
    Ok(arns)
}

/// Tag each space's sets with its stage, so the sets say in AWS how far
/// their space is rolled out. An `off` space's sets, where they exist, are
/// `staged`: no rule uses them.
async fn tag_stages<A: WebAclBackend>(
    acl: &A,
    stages: &BTreeMap<SpaceId, Stage>,
) -> Result<(), PolicyError> {
    for (space, stage) in stages {
        let value = (*stage).max(Stage::Staged).as_str();
        for family in [Family::V4, Family::V6] {
            acl.tag_ip_set_stage(&set_name(space, family), value)
                .await?;
        }
    }
    Ok(())
}

/// The Web ACL `name`, which must exist.
async fn read_existing<A: WebAclBackend>(acl: &A, name: &str) -> Result<AclRead, PolicyError> {
    acl.read_acl(name).await?.ok_or_else(|| {
        PolicyError::Backend(BackendError::NotFound {
            name: name.to_owned(),
        })
    })
}

struct Run<'a, J> {
    journal: &'a mut J,
    kind: RunKind,
    space: &'a SpaceId,
    backend: String,
    web_acl: &'a str,
    sets: BTreeMap<String, SetSnapshot>,
    stages: BTreeMap<SpaceId, Stage>,
    gate: Option<GateSnapshot>,
    actor: &'a str,
    run: Option<i64>,
}

impl<J: EnforceJournal> Run<'_, J> {
    fn snapshot(&mut self, read: &AclRead) -> Result<i64, PolicyError> {
        let id = self
            .journal
            .save_snapshot(
                &NewSnapshot {
                    run: self.run,
                    kind: self.kind,
                    space: self.space,
                    backend: &self.backend,
                    web_acl: self.web_acl,
                    read,
                    sets: &self.sets,
                    stages: &self.stages,
                    gate: self.gate.as_ref(),
                },
                self.actor,
            )
            .map_err(journal)?;
        self.run.get_or_insert(id);
        Ok(id)
    }

    /// Read the listener, snapshot (with the Web ACL as it stands), set it
    /// to `target` and read it back.
    async fn move_listener<A: WebAclBackend, G: GateBackend>(
        &mut self,
        acl: &A,
        gate: &G,
        arn: &str,
        target: &ListenerAuth,
    ) -> Result<ListenerStep, PolicyError> {
        let before = crate::edge::read_listener(gate, arn).await?;
        if let Some(g) = &mut self.gate {
            g.listener = before.clone();
        }
        let read = read_existing(acl, self.web_acl).await?;
        let snapshot = self.snapshot(&read)?;
        crate::edge::write_listener(gate, arn, target).await?;
        let after = target.normalized();
        self.journal
            .record_listener_write(
                &ListenerWrite {
                    arn,
                    snapshot,
                    before: &before,
                    after: &after,
                },
                self.actor,
            )
            .map_err(journal)?;
        if let Some(g) = &mut self.gate {
            g.listener = after.clone();
        }
        Ok(ListenerStep {
            arn: arn.to_owned(),
            snapshot,
            before,
            after,
        })
    }

    /// Read, snapshot, write; on a lock conflict again from a fresh read.
    async fn write<A: WebAclBackend>(
        &mut self,
        acl: &A,
        step: &Step,
    ) -> Result<StepReport, PolicyError> {
        let mut attempt = 1;
        loop {
            let read = read_existing(acl, self.web_acl).await?;
            let snapshot = self.snapshot(&read)?;
            match acl.write_acl(self.web_acl, &step.target, &read.lock).await {
                Ok(_) => {
                    self.journal
                        .record_write(
                            &WriteRecord {
                                backend: &self.backend,
                                web_acl: self.web_acl,
                                snapshot,
                                kind: step.kind,
                                before: &read.owned,
                                after: &step.target,
                            },
                            self.actor,
                        )
                        .map_err(journal)?;
                    return Ok(StepReport {
                        kind: step.kind,
                        snapshot,
                        default_action: step.target.default_action.as_str(),
                        rules: step.target.rule_names(),
                        attempts: attempt,
                    });
                }
                Err(BackendError::StaleLock { .. }) if attempt < MAX_ATTEMPTS => {
                    acl.pause_before_acl_retry(attempt).await;
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Move `opts.space` one stage forward. Refused (nothing written) when a
/// guard trips at stage `enforce` without `force`, when the target skips
/// a stage, or when the space's sets do not exist. No listener is moved:
/// [`enforce_with_gate`] moves them.
pub async fn enforce<A, S, J>(
    acl: &A,
    sets: &S,
    journal_store: &mut J,
    opts: &EnforceOptions<'_>,
) -> Result<EnforceReport, PolicyError>
where
    A: WebAclBackend,
    S: IpSetBackend,
    J: EnforceJournal,
{
    enforce_with_gate(
        acl,
        sets,
        None::<&EdgeGate<'_, NoGate>>,
        journal_store,
        opts,
    )
    .await
}

/// [`enforce`], and the listener serving the space (`[[gate.listeners]]`)
/// moved with it after its guards passed ([`crate::edge`]): after the Web
/// ACL writes, snapshotted first and read back.
pub async fn enforce_with_gate<A, S, G, J>(
    acl: &A,
    sets: &S,
    gate: Option<&EdgeGate<'_, G>>,
    journal_store: &mut J,
    opts: &EnforceOptions<'_>,
) -> Result<EnforceReport, PolicyError>
where
    A: WebAclBackend,
    S: IpSetBackend,
    G: GateBackend,
    J: EnforceJournal,
{
    let policy = opts.policy;
    let space = &opts.space;
    let sp = policy.space(space)?;
    let backend = acl.acl_backend_id();
    let web_acl = policy.web_acl_name.as_str();
    let recorded = journal_store.stages(&backend, web_acl).map_err(journal)?;
    let now = full_stages(policy, &recorded);
    let from = now.get(space).copied().unwrap_or(Stage::Off);
    let to = match opts.target {
        Some(t) => t,
        None => from.next().ok_or_else(|| {
            PolicyError::Stage(format!(
                "space {space} is already at stage enforce; `eos-sec rollback --space {space}` goes back"
            ))
        })?,
    };
    if to < from {
        return Err(PolicyError::Stage(format!(
            "space {space} is at stage {from}; going back to {to} is `eos-sec rollback --space {space}`"
        )));
    }
    if to > from && Some(to) != from.next() {
        return Err(PolicyError::Stage(format!(
            "space {space} is at stage {from}: enforce moves one stage at a time, next is {}",
            from.next().map_or("none", Stage::as_str)
        )));
    }

    // Sets populated and read back: every later stage references them.
    let (set_snap, set, missing) = read_sets(sets, space).await?;
    if sp.mode.uses_ip_gate() && to > Stage::Off && !missing.is_empty() {
        return Err(PolicyError::Refused {
            what: "enforce".to_owned(),
            guards: vec![Guard {
                code: guard::SETS_MISSING,
                message: format!(
                    "IPSets {} do not exist on backend {}: create them with `eos-sec plan` and `eos-sec apply`",
                    missing.join(", "),
                    sets.id()
                ),
            }],
        });
    }
    let found = guards(&GuardInput {
        policy,
        space,
        set: &set,
        operator_ips: &opts.operator_ips,
        simulation: opts.simulation.as_ref(),
    })?;
    let blocking =
        to == Stage::Enforce && (sp.mode.uses_ip_gate() || verifies_at_enforce(policy, space)?);
    let mut warnings = Vec::new();
    let mut next = now.clone();
    next.insert(space.clone(), to);
    // The listener's guards: they refuse a move to verify.
    let edge = match gate {
        Some(g) => crate::edge::plan(g, policy, space, &next).await?,
        None => None,
    };
    let (mut refused, mut blocked) = (Vec::new(), Vec::new());
    if blocking && !found.is_empty() {
        blocked = found;
    } else {
        warnings = found;
    }
    if let Some(m) = &edge {
        if m.target.mode == crate::compile::ListenerMode::Verify {
            refused.extend(m.hard.iter().cloned());
            blocked.extend(m.guards.iter().cloned());
        } else {
            warnings.extend(m.hard.iter().chain(&m.guards).cloned());
        }
    }
    if !refused.is_empty() || (!blocked.is_empty() && !opts.force) {
        refused.extend(blocked);
        return Err(PolicyError::Refused {
            what: "enforce".to_owned(),
            guards: refused,
        });
    }
    let forced = blocked;
    let listener_change = edge
        .as_ref()
        .filter(|m| !m.snapshot.listener.same_as(&m.target));
    let arns = set_arns(acl, policy, &next).await?;
    let target = OwnedAcl::of(&compile(policy, &next, &arns)?.web_acl);

    let mut created_web_acl = false;
    let current = match acl.read_acl(web_acl).await? {
        Some(r) => r,
        None => {
            // A new Web ACL starts as the recorded stages compile (nothing
            // gates yet); every later change is snapshotted.
            let initial = compile(policy, &now, &arns)?.web_acl;
            acl.create_acl(&initial).await?;
            created_web_acl = true;
            read_existing(acl, web_acl).await?
        }
    };

    let mut run = Run {
        journal: journal_store,
        kind: RunKind::Enforce,
        space,
        backend: backend.clone(),
        web_acl,
        sets: set_snap,
        stages: recorded.clone(),
        gate: edge.as_ref().map(|m| m.snapshot.clone()),
        actor: &opts.actor,
        run: None,
    };
    let steps = ordered_steps(&current.owned, &target);
    let mut done = Vec::new();
    let tags = BTreeMap::from([(space.clone(), to)]);
    if to == from && steps.is_empty() && listener_change.is_none() {
        // Nothing to change; the tags again, in case a run stopped before them.
        tag_stages(acl, &tags).await?;
        return Ok(EnforceReport {
            space: space.clone(),
            backend,
            web_acl: web_acl.to_owned(),
            from,
            to,
            run: None,
            created_web_acl,
            steps: done,
            listener: None,
            warnings,
            forced,
        });
    }
    if steps.is_empty() && listener_change.is_none() {
        // A stage change without an ACL change (off → staged) is still a
        // change: snapshot first, so rollback has a point to return to.
        run.snapshot(&current)?;
    }
    for step in &steps {
        done.push(run.write(acl, step).await?);
    }
    let listener = match (gate, listener_change) {
        (Some(g), Some(m)) => Some(
            run.move_listener(acl, g.backend, &m.snapshot.listener_arn, &m.target)
                .await?,
        ),
        _ => None,
    };
    let detail = serde_json::json!({
        "space": space,
        "from": from,
        "to": to,
        "listener": listener,
        "run": run.run,
        "snapshots": done.iter().map(|s| s.snapshot).collect::<Vec<_>>(),
        "before": { "default_action": current.owned.default_action.as_str(), "rules": current.owned.rule_names() },
        "after": { "default_action": target.default_action.as_str(), "rules": target.rule_names() },
        "forced": forced,
        "created_web_acl": created_web_acl,
    });
    let run_id = run.run;
    run.journal
        .record_stages(
            &StageChange {
                backend: &backend,
                web_acl,
                action: "enforce.stage",
                space,
                stages: &next,
                detail,
            },
            &opts.actor,
        )
        .map_err(journal)?;
    tag_stages(acl, &tags).await?;
    Ok(EnforceReport {
        space: space.clone(),
        backend,
        web_acl: web_acl.to_owned(),
        from,
        to,
        run: run_id,
        created_web_acl,
        steps: done,
        listener,
        warnings,
        forced,
    })
}

/// What `rollback` asks for.
#[derive(Debug, Clone)]
pub struct RollbackOptions<'a> {
    /// The policy (for the Web ACL name).
    pub policy: &'a Policy,
    /// The space.
    pub space: SpaceId,
    /// The snapshot to restore; `None`: the start of the space's latest
    /// enforce run.
    pub to: Option<i64>,
    /// Who.
    pub actor: String,
}

/// Restore a snapshot exactly: eos-sec's rules and default action as they
/// were (default ALLOW first), and the recorded stages. Rules eos-sec does
/// not own stay as they are now. Idempotent: a second run changes nothing.
/// A snapshot that holds a listener is refused: [`rollback_with_gate`]
/// restores it.
pub async fn rollback<A, S, J>(
    acl: &A,
    sets: &S,
    journal_store: &mut J,
    opts: &RollbackOptions<'_>,
) -> Result<RollbackReport, PolicyError>
where
    A: WebAclBackend,
    S: IpSetBackend,
    J: EnforceJournal,
{
    rollback_with_gate(
        acl,
        sets,
        None::<&EdgeGate<'_, NoGate>>,
        journal_store,
        opts,
    )
    .await
}

/// [`rollback`], and the listener the snapshot holds restored exactly
/// (first, before the Web ACL), read back. The trust store's bundle and
/// revocations are not rewritten (a rollback never un-revokes a
/// certificate): the report lists what changed since. Restoring `verify`
/// runs the certificate guards, and any finding refuses.
pub async fn rollback_with_gate<A, S, G, J>(
    acl: &A,
    sets: &S,
    gate: Option<&EdgeGate<'_, G>>,
    journal_store: &mut J,
    opts: &RollbackOptions<'_>,
) -> Result<RollbackReport, PolicyError>
where
    A: WebAclBackend,
    S: IpSetBackend,
    G: GateBackend,
    J: EnforceJournal,
{
    let space = &opts.space;
    let backend = acl.acl_backend_id();
    let web_acl = opts.policy.web_acl_name.as_str();
    let snap = match opts.to {
        Some(id) => journal_store
            .snapshot(id)
            .map_err(journal)?
            .ok_or_else(|| PolicyError::Stage(format!("no snapshot {id}")))?,
        None => journal_store
            .latest_enforce_start(&backend, web_acl, space)
            .map_err(journal)?
            .ok_or_else(|| {
                PolicyError::Stage(format!(
                    "nothing to roll back: no enforce of space {space} recorded on backend {backend} for Web ACL {web_acl}"
                ))
            })?,
    };
    if snap.backend != backend || snap.web_acl != web_acl {
        return Err(PolicyError::Stage(format!(
            "snapshot {} is of Web ACL {} on backend {}, not {web_acl} on {backend}",
            snap.id, snap.web_acl, snap.backend
        )));
    }
    let current = read_existing(acl, web_acl).await?;
    let recorded = journal_store.stages(&backend, web_acl).map_err(journal)?;
    let (set_now, _, _) = read_sets(sets, space).await?;
    let gate_now = match (&snap.gate, gate) {
        (None, _) => None,
        (Some(then), None) => {
            return Err(PolicyError::Stage(format!(
                "snapshot {} holds listener {}: rolling it back needs [gate] (the certificate gate's backend)",
                snap.id, then.listener_arn
            )));
        }
        (Some(then), Some(g)) => Some(GateSnapshot {
            listener_arn: then.listener_arn.clone(),
            listener: crate::edge::read_listener(g.backend, &then.listener_arn).await?,
            trust_store: crate::edge::read_trust_store(
                g.backend,
                &then.trust_store.name,
                g.records.get(&then.trust_store.name),
            )
            .await?,
        }),
    };
    // Back to verify only past the same guards as forward: no path around
    // them (nothing here is overridden).
    if let (Some(then), Some(now), Some(g)) = (&snap.gate, &gate_now, gate)
        && then.listener.mode == crate::compile::ListenerMode::Verify
        && !now.listener.same_as(&then.listener)
    {
        let (mut refused, soft) = crate::edge::verify_guards(
            g,
            &then.listener_arn,
            then.listener.ignore_client_certificate_expiry == Some(true),
            &now.trust_store,
        );
        if then.listener.trust_store_arn != now.trust_store.arn {
            refused.push(Guard {
                code: guard::TRUST_STORE_STALE,
                message: format!(
                    "snapshot {} verifies against trust store {}, but {} is now {}",
                    snap.id,
                    then.listener.trust_store_arn.as_deref().unwrap_or("none"),
                    now.trust_store.name,
                    now.trust_store.arn.as_deref().unwrap_or("missing")
                ),
            });
        }
        refused.extend(soft);
        if !refused.is_empty() {
            return Err(PolicyError::Refused {
                what: "rollback".to_owned(),
                guards: refused,
            });
        }
    }

    let mut run = Run {
        journal: journal_store,
        kind: RunKind::Rollback,
        space,
        backend: backend.clone(),
        web_acl,
        sets: set_now.clone(),
        stages: recorded.clone(),
        gate: gate_now.clone(),
        actor: &opts.actor,
        run: None,
    };
    // The listener first: its restored mode is the looser one when the run
    // being undone tightened it.
    let mut listener = None;
    let mut trust_store_changes = None;
    if let (Some(then), Some(now), Some(g)) = (&snap.gate, &gate_now, gate) {
        if !now.listener.same_as(&then.listener) {
            listener = Some(
                run.move_listener(acl, g.backend, &then.listener_arn, &then.listener)
                    .await?,
            );
        }
        let held = |t: &crate::edge::TrustStoreSnapshot| (t.arn.clone(), t.revocations.clone());
        if held(&now.trust_store) != held(&then.trust_store) {
            trust_store_changes = Some((then.trust_store.clone(), now.trust_store.clone()));
        }
    }
    let mut done = Vec::new();
    for step in ordered_steps(&current.owned, &snap.owned) {
        done.push(run.write(acl, &step).await?);
    }
    let mut stage_changes = BTreeMap::new();
    for id in recorded.keys().chain(snap.stages.keys()) {
        let before = recorded.get(id).copied().unwrap_or(Stage::Off);
        let after = snap.stages.get(id).copied().unwrap_or(Stage::Off);
        if before != after {
            stage_changes.insert(id.clone(), (before, after));
        }
    }
    let mut set_changes = BTreeMap::new();
    for name in set_now.keys().chain(snap.sets.keys()) {
        let now: Vec<String> = set_now
            .get(name)
            .map(|s| s.addresses.clone())
            .unwrap_or_default();
        let then: Vec<String> = snap
            .sets
            .get(name)
            .map(|s| s.addresses.clone())
            .unwrap_or_default();
        let added: Vec<String> = now.iter().filter(|a| !then.contains(a)).cloned().collect();
        let removed: Vec<String> = then.iter().filter(|a| !now.contains(a)).cloned().collect();
        if !added.is_empty() || !removed.is_empty() {
            set_changes.insert(name.clone(), (added, removed));
        }
    }
    let detail = serde_json::json!({
        "space": space,
        "snapshot": snap.id,
        "run": run.run,
        "snapshots": done.iter().map(|s| s.snapshot).collect::<Vec<_>>(),
        "listener": listener,
        "before": { "default_action": current.owned.default_action.as_str(), "rules": current.owned.rule_names(), "stages": recorded },
        "after": { "default_action": snap.owned.default_action.as_str(), "rules": snap.owned.rule_names(), "stages": snap.stages },
    });
    run.journal
        .record_stages(
            &StageChange {
                backend: &backend,
                web_acl,
                action: "enforce.rollback",
                space,
                stages: &snap.stages,
                detail,
            },
            &opts.actor,
        )
        .map_err(journal)?;
    let tags: BTreeMap<SpaceId, Stage> = stage_changes
        .keys()
        .chain([space])
        .map(|id| {
            (
                id.clone(),
                snap.stages.get(id).copied().unwrap_or(Stage::Off),
            )
        })
        .collect();
    tag_stages(acl, &tags).await?;
    Ok(RollbackReport {
        space: space.clone(),
        backend,
        web_acl: web_acl.to_owned(),
        snapshot: snap.id,
        steps: done,
        listener,
        trust_store_changes,
        stage_changes,
        set_changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waf::DefaultAction;

    fn owned(block: bool, rules: &[&str]) -> OwnedAcl {
        let acl = crate::waf::WebAcl {
            name: "t".into(),
            description: None,
            default_action: if block {
                DefaultAction::block()
            } else {
                DefaultAction::allow()
            },
            rules: rules
                .iter()
                .map(|n| crate::waf::Rule {
                    name: (*n).to_owned(),
                    priority: 0,
                    statement: crate::waf::Statement::ByteMatchStatement(crate::waf::ByteMatch {
                        search_string: "x".into(),
                        field_to_match: crate::waf::FieldToMatch::UriPath(crate::waf::Empty {}),
                        text_transformations: vec![],
                        positional_constraint: "EXACTLY".into(),
                    }),
                    action: None,
                    override_action: None,
                    rule_labels: vec![],
                    visibility_config: crate::waf::VisibilityConfig::named(n),
                })
                .collect(),
            visibility_config: crate::waf::VisibilityConfig::named("t"),
        };
        OwnedAcl::of(&acl)
    }

    fn kinds(steps: &[Step]) -> Vec<StepKind> {
        steps.iter().map(|s| s.kind).collect()
    }

    #[test]
    fn forward_adds_rules_before_default_block() {
        let count = owned(false, &["eos-a-ip-count"]);
        let enforced = owned(true, &["eos-a-ip-allow", "eos-b-allow"]);
        let steps = ordered_steps(&count, &enforced);
        assert_eq!(kinds(&steps), [StepKind::Rules, StepKind::DefaultBlock]);
        assert!(!steps[0].target.default_action.is_block());
        assert_eq!(steps[0].target.rules, enforced.rules);
        assert_eq!(steps[1].target, enforced);
    }

    #[test]
    fn backward_allows_before_removing_rules() {
        let count = owned(false, &["eos-a-ip-count"]);
        let enforced = owned(true, &["eos-a-ip-allow", "eos-b-allow"]);
        let steps = ordered_steps(&enforced, &count);
        assert_eq!(kinds(&steps), [StepKind::DefaultAllow, StepKind::Rules]);
        assert_eq!(steps[0].target.rules, enforced.rules);
        assert_eq!(steps[1].target, count);
        assert!(ordered_steps(&count, &count).is_empty());
        assert_eq!(
            kinds(&ordered_steps(&owned(false, &[]), &count)),
            [StepKind::Rules]
        );
    }
}
