//! Plans: desired vs actual per IPSet, guarded; and applying them through a
//! backend with WAF's lock-token contract.
//!
//! - this module: the plan types and [`plan_changes`], the only maker of a
//!   [`Plan`];
//! - [`guards`]: the guards on one set's outcome (size, `/0`, breadth, the
//!   large-change guard), run when planning and when a saved plan is read;
//! - [`saved`]: [`SavedPlan`], a plan file read back for review and
//!   confirmed against a plan made now;
//! - [`apply`]: applying a plan's delta through an [`crate::IpSetBackend`]
//!   with WAF's lock-token contract.

use std::collections::{BTreeMap, BTreeSet};

use eos_identity::SpaceId;
use eos_ipset::{Family, IpNet, SpecialRange, canonical, classify_net};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::backend::ActualSet;
use crate::desired::{Desired, Finding, FindingCode, Severity, Source};
use crate::naming::IpSetName;
use crate::options::CheckedOptions;

mod apply;
mod guards;
mod saved;

pub use apply::{AppliedSet, ApplyError, ApplyOutcome, MAX_ATTEMPTS, apply_change, apply_plan};
pub use saved::{SavedPlan, SavedPlanError};

use guards::{guard_change, removed_percent};
use saved::differences;

/// The saved-plan format version.
pub const PLAN_FORMAT: u32 = 1;

/// What an apply does to one set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetAction {
    /// The set does not exist: create it (staged, referenced by no rule).
    Create,
    /// Replace its list.
    Update,
    /// Nothing to do.
    NoChange,
}

/// One entry in a plan, with why it is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEntry {
    /// The network, host bits zero; written as its canonical text
    /// ([`eos_ipset::canonical`]) and read back only in that form.
    #[serde(with = "eos_ipset::canonical_serde")]
    pub cidr: IpNet,
    /// The rules and observations behind it (empty for removals and drift).
    #[serde(default)]
    pub sources: Vec<Source>,
    /// Special ranges it overlaps (recomputed when a saved plan is read).
    #[serde(default, skip_deserializing)]
    pub flags: Vec<SpecialRange>,
}

/// The change to one IPSet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetChange {
    /// Name.
    pub name: IpSetName,
    /// Create, update or nothing.
    pub action: SetAction,
    /// The entries the set held when planned (host bits zero, in the order
    /// of their canonical text): a saved plan is refused when the set no
    /// longer holds exactly these.
    #[serde(with = "eos_ipset::canonical_serde::vec")]
    pub before: Vec<IpNet>,
    /// Entries to add.
    pub add: Vec<PlanEntry>,
    /// Entries eos-sec wrote that are no longer desired.
    pub remove: Vec<PlanEntry>,
    /// Entries that stay.
    pub unchanged: Vec<PlanEntry>,
    /// Entries eos-sec never wrote: kept and reported, never removed.
    pub drift: Vec<PlanEntry>,
    /// Share of the set's addresses removed, in percent.
    pub removed_percent: f64,
}

impl SetChange {
    /// The entries after the change: unchanged, added and drift.
    pub fn after(&self) -> BTreeSet<IpNet> {
        let mut v = BTreeSet::new();
        v.extend(self.unchanged.iter().map(|e| e.cidr));
        v.extend(self.add.iter().map(|e| e.cidr));
        v.extend(self.drift.iter().map(|e| e.cidr));
        v
    }
}

/// A change to IPSets, ready to apply. Only made by [`plan_changes`], so
/// it removes only entries eos-sec wrote and adds only what rules and
/// evidence ask for. A plan read back from a file is a [`SavedPlan`], which
/// cannot be applied: [`SavedPlan::confirm`] turns a plan made now into the
/// applied one when both make the same changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    format: u32,
    #[serde(with = "time::serde::rfc3339")]
    created: OffsetDateTime,
    backend: String,
    allow_large_change: bool,
    changes: Vec<SetChange>,
    warnings: Vec<Finding>,
}

/// Planning stopped by guards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plan refused by {} guard(s):\n  {}", .findings.len(), list(.findings))]
pub struct Refused {
    /// Every refusal, with provenance.
    pub findings: Vec<Finding>,
}

fn list(f: &[Finding]) -> String {
    f.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// What the backend holds for one set, and which of its entries eos-sec
/// wrote (from the applied state).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActualInput {
    /// The set, if it exists.
    pub set: Option<ActualSet>,
    /// Entries eos-sec wrote to it and has not removed since, as their
    /// canonical text (as recorded).
    pub managed: BTreeSet<String>,
}

impl Plan {
    /// The backend the plan was made against.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// When it was made.
    pub fn created(&self) -> OffsetDateTime {
        self.created
    }

    /// Was it made with `--allow-large-change`?
    pub fn allow_large_change(&self) -> bool {
        self.allow_large_change
    }

    /// Per-set changes (including sets with nothing to do).
    pub fn changes(&self) -> &[SetChange] {
        &self.changes
    }

    /// Warnings (drift, special ranges, expired rules, allowed large changes).
    pub fn warnings(&self) -> &[Finding] {
        &self.warnings
    }

    /// Does applying it change anything?
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action != SetAction::NoChange)
    }

    /// The plan as pretty JSON (the saved-plan format, documented in
    /// docs/RULES.md).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Confirm this plan (shown to the operator, who agreed) against `now`,
    /// a plan made afterwards from the current rules, evidence and sets:
    /// `now` when both make the same changes, otherwise every difference as
    /// a `plan-stale` refusal. Other writers' changes to entries this plan
    /// does not touch are not differences.
    pub fn confirm(&self, now: Plan) -> Result<Plan, Refused> {
        let findings = differences(&self.changes, &now.changes);
        if findings.is_empty() {
            Ok(now)
        } else {
            Err(Refused { findings })
        }
    }
}

fn action_for(creating: bool, c: &SetChange) -> SetAction {
    if creating {
        SetAction::Create
    } else if c.add.is_empty() && c.remove.is_empty() {
        SetAction::NoChange
    } else {
        SetAction::Update
    }
}

/// Compare desired with actual for every set in scope: each set of
/// `desired` and each set in `actual` (pass the actual state of every
/// space and family in scope, including those with nothing desired, so that
/// entries eos-sec wrote are removed when no longer desired).
pub fn plan_changes(
    desired: &Desired,
    actual: &BTreeMap<IpSetName, ActualInput>,
    opts: &CheckedOptions,
    allow_large_change: bool,
    backend: &str,
    now: OffsetDateTime,
) -> Result<Plan, Refused> {
    let mut refusals: Vec<Finding> = desired.refusals().cloned().collect();
    let mut warnings: Vec<Finding> = desired
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .cloned()
        .collect();
    let mut names: BTreeSet<IpSetName> = desired.sets.iter().map(|s| s.name()).collect();
    names.extend(actual.keys().cloned());
    let empty = ActualInput::default();
    let mut changes = Vec::new();
    for name in names {
        let act = actual.get(&name).unwrap_or(&empty);
        let want: BTreeMap<String, PlanEntry> = desired
            .get(&name)
            .map(|d| {
                d.entries
                    .iter()
                    .map(|e| {
                        (
                            canonical(&e.cidr),
                            PlanEntry {
                                cidr: e.cidr.trunc(),
                                sources: e.sources.clone(),
                                flags: e.flags.clone(),
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Keyed by canonical text: equal networks meet, and the plan lists
        // entries in the order of their text, as printed.
        let have: BTreeMap<String, IpNet> = act
            .set
            .as_ref()
            .map(|s| {
                s.addresses
                    .iter()
                    .map(|n| (canonical(n), n.trunc()))
                    .collect()
            })
            .unwrap_or_default();
        if act.set.is_none() && want.is_empty() {
            continue;
        }
        let entry = |net: &IpNet| PlanEntry {
            cidr: *net,
            sources: Vec::new(),
            flags: classify_net(net),
        };
        let mut c = SetChange {
            name: name.clone(),
            action: SetAction::NoChange,
            before: have.values().copied().collect(),
            add: want
                .iter()
                .filter(|(k, _)| !have.contains_key(*k))
                .map(|(_, v)| v.clone())
                .collect(),
            unchanged: want
                .iter()
                .filter(|(k, _)| have.contains_key(*k))
                .map(|(_, v)| v.clone())
                .collect(),
            remove: have
                .iter()
                .filter(|(k, _)| !want.contains_key(*k) && act.managed.contains(*k))
                .map(|(_, h)| entry(h))
                .collect(),
            drift: have
                .iter()
                .filter(|(k, _)| !want.contains_key(*k) && !act.managed.contains(*k))
                .map(|(_, h)| entry(h))
                .collect(),
            removed_percent: 0.0,
        };
        c.action = action_for(act.set.is_none(), &c);
        c.removed_percent = removed_percent(&c.before, &c.after());
        if !c.drift.is_empty() {
            let shown: Vec<String> = c.drift.iter().take(5).map(|e| canonical(&e.cidr)).collect();
            warnings.push(Finding {
                code: FindingCode::Drift,
                severity: Severity::Warning,
                set: name.clone(),
                cidr: None,
                message: format!(
                    "{} entr{} eos-sec never wrote ({}{}): kept, not removed; declare them as rules or remove them outside eos-sec",
                    c.drift.len(),
                    if c.drift.len() == 1 { "y" } else { "ies" },
                    shown.join(", "),
                    if c.drift.len() > 5 { ", ..." } else { "" }
                ),
                sources: Vec::new(),
            });
        }
        let (r, w) = guard_change(&c, opts, allow_large_change);
        // A set already refused for size by desired-set computation need not
        // be refused twice.
        refusals.extend(r.into_iter().filter(|f| {
            let already_refused =
                f.code == FindingCode::TooManyEntries && refusals_has(desired, &name);
            !already_refused
                && !matches!(f.code, FindingCode::BroadPrefix | FindingCode::ZeroPrefix)
        }));
        warnings.extend(w);
        changes.push(c);
    }
    if !refusals.is_empty() {
        return Err(Refused { findings: refusals });
    }
    Ok(Plan {
        format: PLAN_FORMAT,
        created: now,
        backend: backend.to_owned(),
        allow_large_change,
        changes,
        warnings,
    })
}

fn refusals_has(desired: &Desired, name: &IpSetName) -> bool {
    desired
        .refusals()
        .any(|f| f.code == FindingCode::TooManyEntries && &f.set == name)
}

/// The spaces and families in scope as set names.
pub fn names_in_scope(spaces: &[SpaceId]) -> Vec<IpSetName> {
    spaces
        .iter()
        .flat_map(|s| {
            [
                IpSetName::staged(s, Family::V4),
                IpSetName::staged(s, Family::V6),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::backend::LockToken;
    use crate::desired::desired_sets;
    use crate::options::PlanOptions;
    use crate::rules::{Label, NetworkAccessRule, RuleCidr};
    use eos_identity::UserId;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 00:00 UTC);

    pub(super) fn rule(cidr: &str) -> NetworkAccessRule {
        NetworkAccessRule::new(
            SpaceId::new("acme").unwrap(),
            RuleCidr::parse(cidr).unwrap(),
            Label::new("r").unwrap(),
            UserId::new("alice").unwrap(),
            datetime!(2026-01-05 09:00 UTC),
            None,
        )
        .unwrap()
    }

    pub(super) fn opts() -> CheckedOptions {
        PlanOptions::default().check().unwrap()
    }

    pub(super) fn name() -> IpSetName {
        IpSetName::staged(&SpaceId::new("acme").unwrap(), Family::V4)
    }

    pub(super) fn actual(entries: &[&str], managed: &[&str]) -> BTreeMap<IpSetName, ActualInput> {
        let set = ActualSet {
            name: name(),
            addresses: entries.iter().map(|e| e.parse().unwrap()).collect(),
            description: "d".into(),
            lock: LockToken("1".into()),
        };
        BTreeMap::from([(
            name(),
            ActualInput {
                set: Some(set),
                managed: managed.iter().map(|s| s.to_string()).collect(),
            },
        )])
    }

    pub(super) fn plan(
        rules: &[&str],
        act: &BTreeMap<IpSetName, ActualInput>,
        allow: bool,
    ) -> Result<Plan, Refused> {
        let rules: Vec<_> = rules.iter().map(|r| rule(r)).collect();
        let d = desired_sets(&rules, &[], &opts(), NOW);
        plan_changes(&d, act, &opts(), allow, "test", NOW)
    }

    #[test]
    fn add_remove_unchanged_and_drift() {
        let act = actual(
            &["8.8.8.0/24", "9.9.9.9/32", "1.2.3.4/32"],
            &["8.8.8.0/24", "9.9.9.9/32"],
        );
        // Removing 9.9.9.9 is 1 of 260 addresses: under the 10% guard.
        let p = plan(&["8.8.8.0/24", "7.7.7.0/24"], &act, false).unwrap();
        let c = &p.changes()[0];
        assert_eq!(c.action, SetAction::Update);
        let cidrs = |v: &[PlanEntry]| v.iter().map(|e| canonical(&e.cidr)).collect::<Vec<_>>();
        assert_eq!(cidrs(&c.add), ["7.7.7.0/24"]);
        assert_eq!(cidrs(&c.remove), ["9.9.9.9/32"]);
        assert_eq!(cidrs(&c.unchanged), ["8.8.8.0/24"]);
        assert_eq!(cidrs(&c.drift), ["1.2.3.4/32"]);
        let after: Vec<String> = c.after().iter().map(canonical).collect();
        assert_eq!(after, ["1.2.3.4/32", "7.7.7.0/24", "8.8.8.0/24"]);
        assert!(p.warnings().iter().any(|w| w.code == FindingCode::Drift));
    }

    #[test]
    fn other_writers_unrelated_changes_do_not_stale_a_plan() {
        let act = actual(&["8.8.8.0/24"], &["8.8.8.0/24"]);
        let p = plan(&["8.8.8.0/24", "7.7.7.7/32"], &act, false).unwrap();
        let later = actual(&["8.8.8.0/24", "1.1.1.1/32"], &["8.8.8.0/24"]);
        let now = plan(&["8.8.8.0/24", "7.7.7.7/32"], &later, false).unwrap();
        assert_eq!(p.confirm(now.clone()).unwrap(), now);
        // Unless they touch an entry the plan changes.
        let touched = actual(&["8.8.8.0/24", "7.7.7.7/32"], &["8.8.8.0/24"]);
        let now = plan(&["8.8.8.0/24", "7.7.7.7/32"], &touched, false).unwrap();
        let e = p.confirm(now).unwrap_err();
        assert_eq!(e.findings[0].cidr.as_deref(), Some("7.7.7.7/32"), "{e}");
        assert!(e.findings[0].message.contains("holds it already"), "{e}");
    }

    /// Any network, host bits set or not: a plan entry holds it with host
    /// bits zero.
    fn any_net() -> impl proptest::strategy::Strategy<Value = IpNet> {
        use proptest::prelude::*;
        prop_oneof![
            (any::<u32>(), 0u8..=32)
                .prop_map(|(a, p)| { IpNet::V4(eos_ipset::Ipv4Net::new(a.into(), p).unwrap()) }),
            (any::<u128>(), 0u8..=128)
                .prop_map(|(a, p)| { IpNet::V6(eos_ipset::Ipv6Net::new(a.into(), p).unwrap()) }),
        ]
    }

    proptest::proptest! {
        /// A plan entry and a set's `before` are written as canonical text
        /// and read back as the same networks; a spelling with host bits
        /// is refused, never read as another network.
        #[test]
        fn plan_entries_round_trip_through_their_saved_form(
            nets in proptest::collection::vec(any_net(), 1..6),
        ) {
            let entries: Vec<PlanEntry> = nets
                .iter()
                .map(|n| PlanEntry {
                    cidr: n.trunc(),
                    sources: Vec::new(),
                    flags: Vec::new(),
                })
                .collect();
            let change = SetChange {
                name: name(),
                action: SetAction::Update,
                before: entries.iter().map(|e| e.cidr).collect(),
                add: Vec::new(),
                remove: entries.clone(),
                unchanged: Vec::new(),
                drift: Vec::new(),
                removed_percent: 0.0,
            };
            let json = serde_json::to_value(&change).unwrap();
            for (e, v) in entries.iter().zip(json["remove"].as_array().unwrap()) {
                let text = canonical(&e.cidr);
                proptest::prop_assert_eq!(v["cidr"].as_str(), Some(text.as_str()));
            }
            let back: SetChange = serde_json::from_value(json).unwrap();
            proptest::prop_assert_eq!(&back, &change);
            for n in &nets {
                let text = format!("{}/{}", n.addr(), n.prefix_len());
                let json = serde_json::json!({"cidr": text});
                let read = serde_json::from_value::<PlanEntry>(json);
                if *n == n.trunc() {
                    proptest::prop_assert_eq!(read.unwrap().cidr, *n);
                } else {
                    proptest::prop_assert!(read.is_err(), "{} was read", text);
                }
            }
        }
    }
}
