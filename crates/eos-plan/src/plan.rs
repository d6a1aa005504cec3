//! Plans: desired vs actual per IPSet, guarded; and applying them through a
//! backend with WAF's lock-token contract.

use std::collections::{BTreeMap, BTreeSet};

use eos_identity::SpaceId;
use eos_ipset::{Family, IpNet, IpSet, SpecialRange, canonical, classify_net, parse_net};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::backend::{ActualSet, BackendError, IpSetBackend, LockToken, NewIpSet};
use crate::desired::{Desired, Finding, FindingCode, Severity, Source};
use crate::naming::IpSetName;
use crate::options::CheckedOptions;

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
    /// Canonical CIDR.
    pub cidr: String,
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
    /// The entries the set held when planned (canonical, sorted): a saved
    /// plan is refused when the set no longer holds exactly these.
    pub before: Vec<String>,
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
    pub fn after(&self) -> Vec<String> {
        let mut v: BTreeSet<String> = BTreeSet::new();
        v.extend(self.unchanged.iter().map(|e| e.cidr.clone()));
        v.extend(self.add.iter().map(|e| e.cidr.clone()));
        v.extend(self.drift.iter().map(|e| e.cidr.clone()));
        v.into_iter().collect()
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    format: u32,
    // `created` and `warnings` are for the reviewer: checked for form, not used.
    #[serde(rename = "created", with = "time::serde::rfc3339")]
    _created: OffsetDateTime,
    backend: String,
    allow_large_change: bool,
    changes: Vec<SetChange>,
    #[serde(rename = "warnings")]
    _warnings: Vec<Finding>,
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

/// A saved plan that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SavedPlanError {
    /// Not a plan.
    #[error("{file}:{line}:{column}: not a saved plan: {message}")]
    Syntax {
        /// File.
        file: String,
        /// Line.
        line: usize,
        /// Column.
        column: usize,
        /// What.
        message: String,
    },
    /// Written by another eos-sec version.
    #[error("{file}: plan format {found} is not {PLAN_FORMAT}; make the plan again")]
    Format {
        /// File.
        file: String,
        /// Found.
        found: u32,
    },
    /// Inconsistent content.
    #[error("{file}: {set}: {message}")]
    Invalid {
        /// File.
        file: String,
        /// The set.
        set: String,
        /// What.
        message: String,
    },
    /// The guards refuse it now.
    #[error("{file}: the saved plan is refused")]
    Refused {
        /// File.
        file: String,
        /// Refusals (the error's source: shown once, after this).
        #[source]
        refused: Refused,
    },
    /// Planning now, from the current rules, evidence and sets, does not
    /// make exactly the plan's changes: the file was edited, or something
    /// changed since it was made. Every difference is a `plan-stale` finding.
    #[error("{file}: the saved plan is not what planning makes now; review a new plan")]
    Stale {
        /// File.
        file: String,
        /// The differences (the error's source).
        #[source]
        refused: Refused,
    },
    /// Made against another backend.
    #[error("{file}: the plan was made for backend {planned}, not {actual}; make a new plan")]
    WrongBackend {
        /// File.
        file: String,
        /// In the plan.
        planned: String,
        /// Configured now.
        actual: String,
    },
}

/// What the backend holds for one set, and which of its entries eos-sec
/// wrote (from the applied state).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActualInput {
    /// The set, if it exists.
    pub set: Option<ActualSet>,
    /// Entries eos-sec wrote to it and has not removed since.
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

/// A plan read back from a file (`plan --out`): the operator's review
/// artifact, not an input language. It cannot be applied as it stands —
/// only a [`Plan`] can, and only planning makes one. [`SavedPlan::confirm`]
/// takes the plan made now from the current state and returns it when it
/// makes exactly the saved changes (Terraform's "saved plan is stale"
/// model), so an edited file can neither remove an entry eos-sec did not
/// write nor add one no rule or observation asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedPlan {
    backend: String,
    allow_large_change: bool,
    changes: Vec<SetChange>,
}

impl SavedPlan {
    /// Read a saved plan, check it is consistent, and run every guard on it
    /// again (early, named refusals; the plan made at apply is guarded too).
    pub fn parse(
        text: &str,
        file: &str,
        opts: &CheckedOptions,
    ) -> Result<SavedPlan, SavedPlanError> {
        let saved: PlanFile = serde_json::from_str(text).map_err(|e| SavedPlanError::Syntax {
            file: file.to_owned(),
            line: e.line(),
            column: e.column(),
            message: crate::rules::json_message(&e),
        })?;
        if saved.format != PLAN_FORMAT {
            return Err(SavedPlanError::Format {
                file: file.to_owned(),
                found: saved.format,
            });
        }
        let mut changes = saved.changes;
        let mut refusals = Vec::new();
        for c in &mut changes {
            let invalid = |message: String| SavedPlanError::Invalid {
                file: file.to_owned(),
                set: c.name.to_string(),
                message,
            };
            for e in c
                .add
                .iter_mut()
                .chain(c.remove.iter_mut())
                .chain(c.unchanged.iter_mut())
                .chain(c.drift.iter_mut())
            {
                let net = parse_net(&e.cidr)
                    .map_err(|err| invalid(format!("entry {}: {err}", e.cidr)))?
                    .net;
                if canonical(&net) != e.cidr || Family::of(&net) != c.name.family() {
                    return Err(invalid(format!(
                        "entry {} is not a canonical {} CIDR",
                        e.cidr,
                        c.name.family()
                    )));
                }
                e.flags = classify_net(&net);
            }
            for b in &c.before {
                let ok = parse_net(b).is_ok_and(|p| canonical(&p.net) == *b);
                if !ok {
                    return Err(invalid(format!("entry {b} is not a canonical CIDR")));
                }
            }
            let before: BTreeSet<&String> = c.before.iter().collect();
            let kept: BTreeSet<&String> = c
                .unchanged
                .iter()
                .chain(&c.remove)
                .chain(&c.drift)
                .map(|e| &e.cidr)
                .collect();
            if before != kept || c.add.iter().any(|e| before.contains(&e.cidr)) {
                return Err(invalid(
                    "before, add, remove, unchanged and drift do not agree".to_owned(),
                ));
            }
            let expected_action = if c.action == SetAction::Create && c.before.is_empty() {
                SetAction::Create
            } else {
                action_for(false, c)
            };
            if c.action != expected_action {
                return Err(invalid(format!(
                    "action {:?} does not match the entries",
                    c.action
                )));
            }
            c.removed_percent = removed_percent(&c.before, &c.after());
            refusals.extend(guard_change(c, opts, saved.allow_large_change).0);
        }
        if !refusals.is_empty() {
            return Err(SavedPlanError::Refused {
                file: file.to_owned(),
                refused: Refused { findings: refusals },
            });
        }
        Ok(SavedPlan {
            backend: saved.backend,
            allow_large_change: saved.allow_large_change,
            changes,
        })
    }

    /// Was it made with `--allow-large-change`? (Plan again with the same.)
    pub fn allow_large_change(&self) -> bool {
        self.allow_large_change
    }

    /// Its per-set changes, as saved (for review; never applied).
    pub fn changes(&self) -> &[SetChange] {
        &self.changes
    }

    /// Does it change anything?
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action != SetAction::NoChange)
    }

    /// The spaces of its sets: the scope to plan again.
    pub fn spaces(&self) -> Vec<SpaceId> {
        let spaces: BTreeSet<SpaceId> = self
            .changes
            .iter()
            .map(|c| c.name.space().clone())
            .collect();
        spaces.into_iter().collect()
    }

    /// The plan to apply: `now` (made from the current state over
    /// [`SavedPlan::spaces`], with [`SavedPlan::allow_large_change`]) when it
    /// makes exactly the saved changes — the same sets created or updated,
    /// the same entries added and removed. Otherwise
    /// [`SavedPlanError::Stale`] naming every difference. Changes other
    /// writers made since to entries the plan does not touch are not
    /// differences: the applied delta is the same.
    pub fn confirm(&self, now: Plan, file: &str) -> Result<Plan, SavedPlanError> {
        if now.backend != self.backend {
            return Err(SavedPlanError::WrongBackend {
                file: file.to_owned(),
                planned: self.backend.clone(),
                actual: now.backend,
            });
        }
        let findings = differences(&self.changes, &now.changes);
        if findings.is_empty() {
            Ok(now)
        } else {
            Err(SavedPlanError::Stale {
                file: file.to_owned(),
                refused: Refused { findings },
            })
        }
    }
}

/// Every way the changes of `planned` differ from those of `now` (a plan
/// made later from the then current state), as `plan-stale` refusals naming
/// the set and entry. Only what an apply would do counts: which sets are
/// created or updated and which entries are added or removed.
fn differences(planned: &[SetChange], now: &[SetChange]) -> Vec<Finding> {
    let by_name = |v: &[SetChange]| -> BTreeMap<IpSetName, SetChange> {
        v.iter().map(|c| (c.name.clone(), c.clone())).collect()
    };
    let (planned, now) = (by_name(planned), by_name(now));
    let names: BTreeSet<&IpSetName> = planned.keys().chain(now.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let (p, q) = (planned.get(name), now.get(name));
        let stale = |cidr: Option<&str>, message: String, sources: Vec<Source>| Finding {
            code: FindingCode::PlanStale,
            severity: Severity::Refusal,
            set: name.clone(),
            cidr: cidr.map(str::to_owned),
            message,
            sources,
        };
        let action = |c: Option<&SetChange>| c.map_or(SetAction::NoChange, |c| c.action);
        let (pa, qa) = (action(p), action(q));
        if pa != qa && pa != SetAction::NoChange && qa != SetAction::NoChange {
            let message = if pa == SetAction::Create {
                "the plan creates the set; it exists now"
            } else {
                "the plan updates the set; it does not exist now"
            };
            out.push(stale(None, message.to_owned(), Vec::new()));
        }
        let cidrs = |c: Option<&SetChange>,
                     f: fn(&SetChange) -> &Vec<PlanEntry>|
         -> BTreeMap<String, PlanEntry> {
            c.map(|c| f(c).iter().map(|e| (e.cidr.clone(), e.clone())).collect())
                .unwrap_or_default()
        };
        let holds = |c: Option<&SetChange>, cidr: &str, f: fn(&SetChange) -> &Vec<PlanEntry>| {
            c.is_some_and(|c| f(c).iter().any(|e| e.cidr == cidr))
        };
        let (p_add, q_add) = (cidrs(p, |c| &c.add), cidrs(q, |c| &c.add));
        let (p_rm, q_rm) = (cidrs(p, |c| &c.remove), cidrs(q, |c| &c.remove));
        for cidr in p_add.keys().filter(|k| !q_add.contains_key(*k)) {
            let why = if holds(q, cidr, |c| &c.unchanged) || holds(q, cidr, |c| &c.drift) {
                "the plan adds it; the set holds it already"
            } else {
                "the plan adds it; no rule or observation asks for it now"
            };
            out.push(stale(Some(cidr), why.to_owned(), Vec::new()));
        }
        for (cidr, e) in q_add.iter().filter(|(k, _)| !p_add.contains_key(*k)) {
            out.push(stale(
                Some(cidr),
                "planning now adds it; the plan does not".to_owned(),
                e.sources.clone(),
            ));
        }
        for cidr in p_rm.keys().filter(|k| !q_rm.contains_key(*k)) {
            let why = if holds(q, cidr, |c| &c.drift) {
                "the plan removes it; eos-sec never wrote it (drift: kept, never removed)"
            } else if holds(q, cidr, |c| &c.unchanged) {
                "the plan removes it; a rule or observation asks for it now"
            } else {
                "the plan removes it; it is not in the set"
            };
            out.push(stale(Some(cidr), why.to_owned(), Vec::new()));
        }
        for cidr in q_rm.keys().filter(|k| !p_rm.contains_key(*k)) {
            out.push(stale(
                Some(cidr),
                "planning now removes it (eos-sec wrote it; no longer desired); the plan does not"
                    .to_owned(),
                Vec::new(),
            ));
        }
    }
    out
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

fn nets(list: &[String]) -> IpSet {
    IpSet::from_nets(list.iter().filter_map(|s| parse_net(s).ok().map(|p| p.net)))
}

fn addresses(s: &IpSet) -> f64 {
    // Precision is irrelevant for a share; u128 -> f64 rounds.
    s.v4_len() as f64 + s.v6_len() as f64
}

fn removed_percent(before: &[String], after: &[String]) -> f64 {
    let b = nets(before);
    let removed = b.difference(&nets(after));
    if removed.is_empty() {
        return 0.0;
    }
    100.0 * addresses(&removed) / addresses(&b)
}

/// The guards on one set's outcome: size, /0 and breadth of what the plan
/// adds, and the large-change guard. Returns (refusals, warnings).
fn guard_change(
    c: &SetChange,
    opts: &CheckedOptions,
    allow_large: bool,
) -> (Vec<Finding>, Vec<Finding>) {
    let mut refusals = Vec::new();
    let mut warnings = Vec::new();
    let finding =
        |code, severity, cidr: Option<String>, message: String, sources: Vec<Source>| Finding {
            code,
            severity,
            set: c.name.clone(),
            cidr,
            message,
            sources,
        };
    for e in &c.add {
        let Ok(p) = parse_net(&e.cidr) else { continue };
        if p.net.prefix_len() == 0 {
            refusals.push(finding(
                FindingCode::ZeroPrefix,
                Severity::Refusal,
                Some(e.cidr.clone()),
                "a /0 admits every address; refused always".into(),
                e.sources.clone(),
            ));
        } else if opts.too_broad(&p.net) {
            refusals.push(finding(
                FindingCode::BroadPrefix,
                Severity::Refusal,
                Some(e.cidr.clone()),
                "broader than the configured bound and not in [plan] allow_broad".into(),
                e.sources.clone(),
            ));
        }
    }
    let after = c.after();
    let max = opts.options().max_entries;
    if after.len() > max {
        refusals.push(finding(
            FindingCode::TooManyEntries,
            Severity::Refusal,
            None,
            format!("{} entries after the change (including {} drift entries), more than {max}; nothing was truncated. Options: raise the evidence thresholds, declare networks as rules instead of many single addresses, or remove the drift entries outside eos-sec", after.len(), c.drift.len()),
            Vec::new(),
        ));
    }
    let empties = !c.before.is_empty() && after.is_empty();
    let limit = f64::from(opts.options().max_removal_percent);
    if empties || c.removed_percent > limit {
        let what = if empties {
            "empties the set".to_owned()
        } else {
            format!(
                "removes {:.1}% of the set's addresses (limit {limit}%)",
                c.removed_percent
            )
        };
        if allow_large {
            warnings.push(finding(
                FindingCode::LargeChange,
                Severity::Warning,
                None,
                format!("{what}; allowed by --allow-large-change"),
                Vec::new(),
            ));
        } else {
            refusals.push(finding(
                FindingCode::LargeChange,
                Severity::Refusal,
                None,
                format!("{what}; review it and re-run with --allow-large-change"),
                Vec::new(),
            ));
        }
    }
    (refusals, warnings)
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
                        let c = canonical(&e.cidr);
                        (
                            c.clone(),
                            PlanEntry {
                                cidr: c,
                                sources: e.sources.clone(),
                                flags: e.flags.clone(),
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let have: BTreeSet<String> = act
            .set
            .as_ref()
            .map(|s| s.addresses.iter().map(canonical).collect())
            .unwrap_or_default();
        if act.set.is_none() && want.is_empty() {
            continue;
        }
        let entry = |c: &str| PlanEntry {
            cidr: c.to_owned(),
            sources: Vec::new(),
            flags: parse_net(c)
                .map(|p| classify_net(&p.net))
                .unwrap_or_default(),
        };
        let mut c = SetChange {
            name: name.clone(),
            action: SetAction::NoChange,
            before: have.iter().cloned().collect(),
            add: want
                .iter()
                .filter(|(k, _)| !have.contains(*k))
                .map(|(_, v)| v.clone())
                .collect(),
            unchanged: want
                .iter()
                .filter(|(k, _)| have.contains(*k))
                .map(|(_, v)| v.clone())
                .collect(),
            remove: have
                .iter()
                .filter(|h| !want.contains_key(*h) && act.managed.contains(*h))
                .map(|h| entry(h))
                .collect(),
            drift: have
                .iter()
                .filter(|h| !want.contains_key(*h) && !act.managed.contains(*h))
                .map(|h| entry(h))
                .collect(),
            removed_percent: 0.0,
        };
        c.action = action_for(act.set.is_none(), &c);
        c.removed_percent = removed_percent(&c.before, &c.after());
        if !c.drift.is_empty() {
            let shown: Vec<&str> = c.drift.iter().take(5).map(|e| e.cidr.as_str()).collect();
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

/// Applying stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The plan was made against another backend.
    #[error("the plan was made for backend {planned}, not {actual}; make a new plan")]
    WrongBackend {
        /// In the plan.
        planned: String,
        /// Configured now.
        actual: String,
    },
    /// Since the plan's read, another writer added or removed an entry the
    /// plan adds or removes, or deleted the set, or created it first.
    #[error("{name} changed since the plan was made ({detail}); make a new plan")]
    ChangedSincePlan {
        /// The set.
        name: String,
        /// What differs.
        detail: String,
    },
    /// Lost every race for the lock.
    #[error(
        "{name}: still conflicting after {attempts} attempts with concurrent writers; nothing lost, re-run apply"
    )]
    Conflict {
        /// The set.
        name: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// What an apply did to one set, serialized and displayed as its stable
/// string form (`created`, `updated`, `unchanged`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ApplyOutcome {
    /// The set did not exist: created with the plan's entries.
    Created,
    /// Written with the plan's delta.
    Updated,
    /// Already as planned: no write sent.
    Unchanged,
}

impl ApplyOutcome {
    /// The stable string form.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Updated => "updated",
            ApplyOutcome::Unchanged => "unchanged",
        }
    }
}

impl std::fmt::Display for ApplyOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What an apply did to one set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedSet {
    /// Set.
    pub name: IpSetName,
    /// Space.
    pub space: SpaceId,
    /// What was done.
    pub outcome: ApplyOutcome,
    /// The entries the set holds now.
    pub entries: Vec<String>,
    /// Entries eos-sec added (its delta).
    pub added: Vec<String>,
    /// Entries eos-sec removed.
    pub removed: Vec<String>,
    /// Writes attempted (more than one after lock conflicts).
    pub attempts: u32,
}

/// Most attempts per set before [`ApplyError::Conflict`].
pub const MAX_ATTEMPTS: u32 = 6;

/// Apply a plan (made by planning; a saved plan only through
/// [`SavedPlan::confirm`]). Every set is read first: a set deleted or
/// created by someone else since the plan, or one in which another writer
/// added or removed an entry this plan adds or removes, stops the apply
/// before anything is written ([`ApplyError::ChangedSincePlan`]). Other
/// writers' changes to other entries do not: the plan's delta (its adds and
/// removes) is applied to what is there now, with the token of that read.
/// On a lock conflict the set is re-read and only the delta re-applied —
/// never a stale full list — up to [`MAX_ATTEMPTS`], with the same check.
pub async fn apply_plan<B: IpSetBackend>(
    backend: &B,
    plan: &Plan,
) -> Result<Vec<AppliedSet>, ApplyError> {
    let id = backend.id();
    if id != plan.backend {
        return Err(ApplyError::WrongBackend {
            planned: plan.backend.clone(),
            actual: id,
        });
    }
    let mut reads = Vec::new();
    for c in plan
        .changes
        .iter()
        .filter(|c| c.action != SetAction::NoChange)
    {
        let read = backend.read(&c.name).await?;
        let existence_changed = (c.action == SetAction::Create) != read.is_none();
        if existence_changed {
            let detail = if read.is_none() {
                "it was deleted"
            } else {
                "it was created by someone else"
            };
            return Err(ApplyError::ChangedSincePlan {
                name: c.name.to_string(),
                detail: detail.to_owned(),
            });
        }
        if let Some(set) = &read {
            check_untouched(c, set)?;
        }
        reads.push((c, read));
    }
    let mut out = Vec::new();
    for (c, read) in reads {
        out.push(apply_change(backend, c, read).await?);
    }
    Ok(out)
}

/// Refuse when another writer changed, since `c.before` was read, whether
/// the set holds an entry `c` adds or removes. Applying the delta anyway
/// would claim an entry another writer added as eos-sec's own (to be removed
/// later), or report removing one eos-sec did not remove.
fn check_untouched(c: &SetChange, now: &ActualSet) -> Result<(), ApplyError> {
    let before: BTreeSet<&str> = c.before.iter().map(String::as_str).collect();
    let now: BTreeSet<String> = now.addresses.iter().map(canonical).collect();
    let touched: Vec<&str> = c
        .add
        .iter()
        .chain(&c.remove)
        .map(|e| e.cidr.as_str())
        .filter(|e| before.contains(e) != now.contains(*e))
        .collect();
    if touched.is_empty() {
        return Ok(());
    }
    Err(ApplyError::ChangedSincePlan {
        name: c.name.to_string(),
        detail: format!(
            "another writer added or removed {}, which the plan changes",
            touched.join(", ")
        ),
    })
}

fn parse_all(list: &[PlanEntry]) -> Vec<IpNet> {
    list.iter()
        .filter_map(|e| parse_net(&e.cidr).ok().map(|p| p.net))
        .collect()
}

/// Apply one set's delta (its adds and removes) starting from `current`,
/// the read whose lock token the first write carries. On a lock conflict
/// the set is re-read and only the delta re-applied, unless another writer
/// added or removed one of the delta's entries since `c.before` was read
/// ([`ApplyError::ChangedSincePlan`]). [`apply_plan`] calls this after the
/// same check on every set; a caller applying deltas directly (e.g. syncing
/// rule changes) passes the read its plan was made from.
pub async fn apply_change<B: IpSetBackend>(
    backend: &B,
    c: &SetChange,
    mut current: Option<ActualSet>,
) -> Result<AppliedSet, ApplyError> {
    let add = parse_all(&c.add);
    let remove: BTreeSet<String> = c.remove.iter().map(|e| e.cidr.clone()).collect();
    let done = |outcome, entries: Vec<IpNet>, attempts| AppliedSet {
        name: c.name.clone(),
        space: c.name.space().clone(),
        outcome,
        entries: entries.iter().map(canonical).collect(),
        added: c.add.iter().map(|e| e.cidr.clone()).collect(),
        removed: remove.iter().cloned().collect(),
        attempts,
    };
    for attempt in 1..=MAX_ATTEMPTS {
        let Some(actual) = current.take() else {
            let new = NewIpSet::staged(&c.name, sorted(add.clone()));
            match backend.create(&new).await {
                Ok(_) => return Ok(done(ApplyOutcome::Created, new.addresses, attempt)),
                Err(BackendError::AlreadyExists { .. }) => {
                    // Another writer created it first: apply our delta to
                    // theirs, unless theirs holds what we add.
                    current = backend.read(&c.name).await?;
                    if let Some(set) = &current {
                        check_untouched(c, set)?;
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let mut next: BTreeSet<IpNet> = actual
            .addresses
            .iter()
            .filter(|n| !remove.contains(&canonical(n)))
            .copied()
            .collect();
        next.extend(add.iter().copied());
        let next: Vec<IpNet> = next.into_iter().collect();
        let before: BTreeSet<IpNet> = actual.addresses.iter().copied().collect();
        if next.iter().copied().collect::<BTreeSet<_>>() == before {
            // WAF counts every UpdateIPSet against the account's write rate:
            // a no-op is not sent.
            return Ok(done(ApplyOutcome::Unchanged, actual.addresses, attempt - 1));
        }
        match backend
            .update(&c.name, &next, &actual.description, &actual.lock)
            .await
        {
            Ok(LockToken(_)) => return Ok(done(ApplyOutcome::Updated, next, attempt)),
            Err(BackendError::StaleLock { .. }) => {
                backend.pause_before_retry(attempt).await;
                current = backend.read(&c.name).await?;
                match &current {
                    Some(set) => check_untouched(c, set)?,
                    None => {
                        return Err(ApplyError::ChangedSincePlan {
                            name: c.name.to_string(),
                            detail: "it was deleted during the apply".into(),
                        });
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApplyError::Conflict {
        name: c.name.to_string(),
        attempts: MAX_ATTEMPTS,
    })
}

fn sorted(mut v: Vec<IpNet>) -> Vec<IpNet> {
    v.sort();
    v.dedup();
    v
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
    use std::cell::RefCell;

    use super::*;
    use crate::desired::desired_sets;
    use crate::options::PlanOptions;
    use crate::rules::{Label, NetworkAccessRule, RuleCidr};
    use eos_identity::UserId;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 00:00 UTC);

    fn rule(cidr: &str) -> NetworkAccessRule {
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

    fn opts() -> CheckedOptions {
        PlanOptions::default().check().unwrap()
    }

    fn name() -> IpSetName {
        IpSetName::staged(&SpaceId::new("acme").unwrap(), Family::V4)
    }

    fn actual(entries: &[&str], managed: &[&str]) -> BTreeMap<IpSetName, ActualInput> {
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

    fn plan(
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
        let cidrs = |v: &[PlanEntry]| v.iter().map(|e| e.cidr.clone()).collect::<Vec<_>>();
        assert_eq!(cidrs(&c.add), ["7.7.7.0/24"]);
        assert_eq!(cidrs(&c.remove), ["9.9.9.9/32"]);
        assert_eq!(cidrs(&c.unchanged), ["8.8.8.0/24"]);
        assert_eq!(cidrs(&c.drift), ["1.2.3.4/32"]);
        assert_eq!(c.after(), ["1.2.3.4/32", "7.7.7.0/24", "8.8.8.0/24"]);
        assert!(p.warnings().iter().any(|w| w.code == FindingCode::Drift));
    }

    #[test]
    fn rejects_large_change_and_emptying_without_flag() {
        let act = actual(&["8.8.8.0/24", "9.9.9.0/24"], &["8.8.8.0/24", "9.9.9.0/24"]);
        let e = plan(&["8.8.8.0/24"], &act, false).unwrap_err();
        assert_eq!(e.findings[0].code, FindingCode::LargeChange);
        assert!(
            e.findings[0].message.contains("50.0%"),
            "{}",
            e.findings[0].message
        );
        let p = plan(&["8.8.8.0/24"], &act, true).unwrap();
        assert!(
            p.warnings()
                .iter()
                .any(|w| w.code == FindingCode::LargeChange)
        );
        // A space with no rule left empties the set.
        let e = plan(&[], &act, false).unwrap_err();
        assert!(e.findings[0].message.contains("empties"));
    }

    #[test]
    fn saved_plan_round_trips_and_edits_are_rechecked() {
        let p = plan(&["8.8.8.0/24"], &BTreeMap::new(), false).unwrap();
        assert_eq!(p.changes()[0].action, SetAction::Create);
        let json = p.to_json();
        let back = SavedPlan::parse(&json, "p.json", &opts()).unwrap();
        assert_eq!(back.changes(), p.changes());
        assert_eq!(back.spaces(), [SpaceId::new("acme").unwrap()]);
        assert_eq!(back.confirm(p.clone(), "p.json").unwrap(), p);
        let edited = json.replace("8.8.8.0/24", "8.0.0.0/8");
        let e = SavedPlan::parse(&edited, "p.json", &opts()).unwrap_err();
        assert!(matches!(e, SavedPlanError::Refused { .. }), "{e}");
        // The guard list is the error's source, not repeated in its message.
        assert!(!e.to_string().contains("broad-prefix"), "{e}");
        let edited = json.replace("8.8.8.0/24", "0.0.0.0/0");
        assert!(SavedPlan::parse(&edited, "p.json", &opts()).is_err());
        let e = SavedPlan::parse("{", "p.json", &opts()).unwrap_err();
        assert!(e.to_string().starts_with("p.json:1:"), "{e}");
    }

    /// Edit a saved plan's JSON: `f` gets the first set's change.
    fn edit(p: &Plan, f: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut v: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
        f(&mut v["changes"][0]);
        v.to_string()
    }

    fn stale_cidrs(e: SavedPlanError) -> Vec<(String, String)> {
        let SavedPlanError::Stale { refused, .. } = e else {
            panic!("not stale: {e}")
        };
        refused
            .findings
            .into_iter()
            .map(|f| {
                assert_eq!(f.code, FindingCode::PlanStale);
                (f.cidr.unwrap_or_default(), f.message)
            })
            .collect()
    }

    #[test]
    fn rejects_saved_plan_removing_drift() {
        let act = actual(&["8.8.8.0/24", "100.64.9.9/32"], &["8.8.8.0/24"]);
        let p = plan(&["8.8.8.0/24", "7.7.7.7/32"], &act, false).unwrap();
        assert_eq!(p.changes()[0].drift[0].cidr, "100.64.9.9/32");
        let edited = edit(&p, |c| {
            let drift = c["drift"].as_array_mut().unwrap().remove(0);
            c["remove"].as_array_mut().unwrap().push(drift);
        });
        // The file is consistent and passes every guard ...
        let saved = SavedPlan::parse(&edited, "p.json", &opts()).unwrap();
        // ... but planning now keeps the drift entry.
        let now = plan(&["8.8.8.0/24", "7.7.7.7/32"], &act, false).unwrap();
        let diffs = stale_cidrs(saved.confirm(now, "p.json").unwrap_err());
        assert_eq!(diffs.len(), 1, "{diffs:?}");
        assert_eq!(diffs[0].0, "100.64.9.9/32");
        assert!(diffs[0].1.contains("never wrote"), "{diffs:?}");
    }

    #[test]
    fn rejects_saved_plan_adding_what_nothing_asks_for() {
        let act = actual(&["8.8.8.0/24"], &["8.8.8.0/24"]);
        let p = plan(&["8.8.8.0/24", "7.7.7.7/32"], &act, false).unwrap();
        let edited = edit(&p, |c| {
            c["add"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"cidr": "8.8.4.4/32"}));
        });
        let saved = SavedPlan::parse(&edited, "p.json", &opts()).unwrap();
        let now = plan(&["8.8.8.0/24", "7.7.7.7/32"], &act, false).unwrap();
        let diffs = stale_cidrs(saved.confirm(now, "p.json").unwrap_err());
        assert_eq!(diffs.len(), 1, "{diffs:?}");
        assert_eq!(diffs[0].0, "8.8.4.4/32");
        assert!(diffs[0].1.contains("no rule or observation"), "{diffs:?}");
        // A rule declared since the plan is a difference too, and so is a
        // plan made for another backend.
        let now = plan(&["8.8.8.0/24", "7.7.7.7/32", "6.6.6.6/32"], &act, false).unwrap();
        let saved = SavedPlan::parse(&p.to_json(), "p.json", &opts()).unwrap();
        let diffs = stale_cidrs(saved.confirm(now.clone(), "p.json").unwrap_err());
        assert_eq!(diffs[0].0, "6.6.6.6/32", "{diffs:?}");
        assert!(diffs[0].1.contains("planning now adds"), "{diffs:?}");
        let mut other = now;
        other.backend = "other".into();
        assert!(matches!(
            saved.confirm(other, "p.json").unwrap_err(),
            SavedPlanError::WrongBackend { .. }
        ));
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

    /// A backend whose every first update loses a race against a writer that
    /// adds one entry: exercises the re-read-and-reapply-delta path.
    #[derive(Debug)]
    struct Racing {
        set: RefCell<Option<(Vec<IpNet>, u64)>>,
        races_left: RefCell<u32>,
    }

    impl IpSetBackend for Racing {
        fn id(&self) -> String {
            "test".into()
        }
        async fn read(&self, name: &IpSetName) -> Result<Option<ActualSet>, BackendError> {
            Ok(self.set.borrow().as_ref().map(|(a, v)| ActualSet {
                name: name.clone(),
                addresses: a.clone(),
                description: "kept".into(),
                lock: LockToken(v.to_string()),
            }))
        }
        async fn create(&self, s: &NewIpSet) -> Result<LockToken, BackendError> {
            *self.set.borrow_mut() = Some((s.addresses.clone(), 1));
            Ok(LockToken("1".into()))
        }
        async fn update(
            &self,
            name: &IpSetName,
            a: &[IpNet],
            d: &str,
            lock: &LockToken,
        ) -> Result<LockToken, BackendError> {
            assert_eq!(d, "kept", "description passed through");
            let mut races = self.races_left.borrow_mut();
            let mut set = self.set.borrow_mut();
            let (list, version) = set.as_mut().unwrap();
            if *races > 0 {
                *races -= 1;
                list.push(format!("5.5.5.{}/32", *races).parse().unwrap());
                *version += 1;
            }
            if lock.0 != version.to_string() {
                return Err(BackendError::StaleLock {
                    name: name.to_string(),
                });
            }
            *list = a.to_vec();
            *version += 1;
            Ok(LockToken(version.to_string()))
        }
        async fn pause_before_retry(&self, _attempt: u32) {}
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        // The fake backend never awaits anything that pends.
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn lock_conflicts_reapply_only_the_delta() {
        let backend = Racing {
            set: RefCell::new(Some((
                vec!["8.8.8.0/24".parse().unwrap(), "9.9.9.9/32".parse().unwrap()],
                1,
            ))),
            races_left: RefCell::new(2),
        };
        let mut act = actual(&["8.8.8.0/24", "9.9.9.9/32"], &["8.8.8.0/24", "9.9.9.9/32"]);
        act.get_mut(&name()).unwrap().set.as_mut().unwrap().lock = LockToken("1".into());
        let mut p = plan(&["8.8.8.0/24", "7.7.7.7/32"], &act, false).unwrap();
        p.backend = "test".into();
        let applied = block_on(apply_plan(&backend, &p)).unwrap();
        assert_eq!(applied[0].attempts, 3);
        let (list, _) = backend.set.borrow().clone().unwrap();
        let mut got: Vec<String> = list.iter().map(canonical).collect();
        got.sort();
        // Ours: +7.7.7.7 -9.9.9.9; theirs (two racing writes) kept.
        assert_eq!(
            got,
            ["5.5.5.0/32", "5.5.5.1/32", "7.7.7.7/32", "8.8.8.0/24"]
        );
    }

    #[test]
    fn apply_is_refused_only_when_another_writer_touched_the_delta() {
        let act = actual(&["8.8.8.0/24"], &["8.8.8.0/24"]);
        let mut p = plan(&["8.8.8.0/24", "7.7.7.7/32"], &act, false).unwrap();
        p.backend = "test".into();
        let backend = |entries: &[&str]| Racing {
            set: RefCell::new(Some((
                entries.iter().map(|e| e.parse().unwrap()).collect(),
                4,
            ))),
            races_left: RefCell::new(0),
        };
        // Another writer added 1.1.1.1: not the plan's business.
        let b = backend(&["8.8.8.0/24", "1.1.1.1/32"]);
        let applied = block_on(apply_plan(&b, &p)).unwrap();
        assert_eq!(applied[0].added, ["7.7.7.7/32"]);
        assert_eq!(
            applied[0].entries,
            ["1.1.1.1/32", "7.7.7.7/32", "8.8.8.0/24"]
        );
        // Another writer added 7.7.7.7, which the plan adds: refused.
        let b = backend(&["8.8.8.0/24", "7.7.7.7/32"]);
        let e = block_on(apply_plan(&b, &p)).unwrap_err();
        assert!(matches!(e, ApplyError::ChangedSincePlan { .. }), "{e}");
        assert!(e.to_string().contains("7.7.7.7/32"), "{e}");
        // Another writer deleted the set.
        let b = Racing {
            set: RefCell::new(None),
            races_left: RefCell::new(0),
        };
        let e = block_on(apply_plan(&b, &p)).unwrap_err();
        assert!(e.to_string().contains("deleted"), "{e}");
        let mut p2 = p.clone();
        p2.backend = "other".into();
        assert!(matches!(
            block_on(apply_plan(&b, &p2)).unwrap_err(),
            ApplyError::WrongBackend { .. }
        ));
    }

    #[test]
    fn a_race_that_touches_the_delta_stops_the_retry() {
        let act = actual(&["8.8.8.0/24"], &["8.8.8.0/24"]);
        let mut p = plan(&["8.8.8.0/24", "5.5.5.0/32"], &act, false).unwrap();
        p.backend = "test".into();
        // The racing write before our first update adds 5.5.5.0/32 itself.
        let b = Racing {
            set: RefCell::new(Some((vec!["8.8.8.0/24".parse().unwrap()], 1))),
            races_left: RefCell::new(1),
        };
        let e = block_on(apply_plan(&b, &p)).unwrap_err();
        assert!(matches!(e, ApplyError::ChangedSincePlan { .. }), "{e}");
        assert!(e.to_string().contains("5.5.5.0/32"), "{e}");
    }
}
