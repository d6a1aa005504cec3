//! A plan read back from a file: checked, guarded again, and confirmed
//! only against a plan made now.

use std::collections::{BTreeMap, BTreeSet};

use eos_identity::SpaceId;
use eos_ipset::{Family, IpNet, canonical, classify_net};
use serde::Deserialize;
use time::OffsetDateTime;

use super::guards::{guard_change, removed_percent};
use super::{PLAN_FORMAT, Plan, PlanEntry, Refused, SetAction, SetChange, action_for};
use crate::desired::{Finding, FindingCode, Severity, Source};
use crate::naming::IpSetName;
use crate::options::CheckedOptions;

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
                // Every entry was read in its canonical text (anything else
                // is a syntax error naming it): only its family is left.
                if Family::of(&e.cidr) != c.name.family() {
                    return Err(invalid(format!(
                        "entry {} is not a canonical {} CIDR",
                        canonical(&e.cidr),
                        c.name.family()
                    )));
                }
                e.flags = classify_net(&e.cidr);
            }
            let before: BTreeSet<&IpNet> = c.before.iter().collect();
            let kept: BTreeSet<&IpNet> = c
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
pub(super) fn differences(planned: &[SetChange], now: &[SetChange]) -> Vec<Finding> {
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
        // Keyed by canonical text: findings come in the order printed.
        let cidrs = |c: Option<&SetChange>,
                     f: fn(&SetChange) -> &Vec<PlanEntry>|
         -> BTreeMap<String, PlanEntry> {
            c.map(|c| {
                f(c).iter()
                    .map(|e| (canonical(&e.cidr), e.clone()))
                    .collect()
            })
            .unwrap_or_default()
        };
        let holds = |c: Option<&SetChange>, cidr: &str, f: fn(&SetChange) -> &Vec<PlanEntry>| {
            c.is_some_and(|c| f(c).iter().any(|e| canonical(&e.cidr) == cidr))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::plan::tests::{actual, opts, plan};

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
        // An entry spelt otherwise than eos-sec writes it names its line.
        let edited = json.replace("8.8.8.0/24", "8.8.8.1/24");
        let e = SavedPlan::parse(&edited, "p.json", &opts()).unwrap_err();
        assert!(matches!(e, SavedPlanError::Syntax { .. }), "{e}");
        assert!(e.to_string().contains("write `8.8.8.0/24`"), "{e}");
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
        assert_eq!(canonical(&p.changes()[0].drift[0].cidr), "100.64.9.9/32");
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
}
