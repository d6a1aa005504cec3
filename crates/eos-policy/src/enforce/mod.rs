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
//!
//! - this module: a run's writes (read, snapshot, write, record; again from
//!   a fresh read on a lock conflict) and what enforce and rollback share;
//! - `forward.rs`: [`enforce()`], one stage forward;
//! - `rollback.rs`: [`rollback()`], a snapshot restored exactly;
//! - `lockout.rs`: the lockout [`guards`] and their stable codes ([`guard`]);
//! - `steps.rs`: [`ordered_steps`], the safe order of writes;
//! - `journal.rs`: [`EnforceJournal`], where snapshots, stages and the audit
//!   log are kept, and the records it takes.

use std::collections::BTreeMap;

use eos_identity::SpaceId;
use eos_ipset::{Family, IpNet, IpSet};
use eos_plan::{BackendError, IpSetBackend, IpSetName};
use serde::Serialize;

use crate::PolicyError;
use crate::acl::{AclRead, WebAclBackend};
use crate::compile::{SetArns, set_name};
use crate::edge::GateSnapshot;
use crate::gate::{GateBackend, ListenerAuth};
use crate::model::{Policy, Stage};

mod forward;
mod journal;
mod lockout;
mod rollback;
mod steps;

pub use forward::{EnforceOptions, EnforceReport, enforce, enforce_with_gate};
pub use journal::{
    EnforceJournal, ListenerWrite, NewSnapshot, RunKind, SetSnapshot, Snapshot, StageChange,
    WriteRecord,
};
pub use lockout::{Guard, GuardCode, GuardInput, guard, guards, verifies_at_enforce};
pub use rollback::{RollbackOptions, RollbackReport, rollback, rollback_with_gate};
pub use steps::{Step, StepKind, ordered_steps};

use journal::journal;

/// Attempts per write when somebody else wrote the Web ACL in between
/// (WAFOptimisticLockException): re-read, re-snapshot, re-write.
pub const MAX_ATTEMPTS: u32 = 5;

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

/// Every declared space's stage: recorded, else `off`.
pub(super) fn full_stages(
    policy: &Policy,
    recorded: &BTreeMap<SpaceId, Stage>,
) -> BTreeMap<SpaceId, Stage> {
    policy
        .spaces
        .keys()
        .map(|id| (id.clone(), recorded.get(id).copied().unwrap_or(Stage::Off)))
        .collect()
}

pub(super) async fn read_sets<S: IpSetBackend>(
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
pub(super) async fn set_arns<A: WebAclBackend>(
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
pub(super) async fn tag_stages<A: WebAclBackend>(
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
pub(super) async fn read_existing<A: WebAclBackend>(
    acl: &A,
    name: &str,
) -> Result<AclRead, PolicyError> {
    acl.read_acl(name).await?.ok_or_else(|| {
        PolicyError::Backend(BackendError::NotFound {
            name: name.to_owned(),
        })
    })
}

pub(super) struct Run<'a, J> {
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
