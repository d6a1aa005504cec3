//! Bootstrap: the operator's first job. Store the declared rules and the
//! observations of a log scan, plan the desired sets against the backend,
//! and stage them (created or updated, referenced by no rule) — all or
//! nothing.
//!
//! Nothing of the input (rules, observations, their outbox rows and audit
//! entries, the plan) is committed unless planning accepted it and the sets
//! were staged: planning reads the input written in a transaction that is
//! rolled back, and the commit after staging writes it again with the plan
//! and what was staged. A refused or failed bootstrap keeps nothing but the
//! write-ahead record of entries it may have written, so no later sync works
//! on input the operator was told was refused.

use std::collections::BTreeSet;

use eos_identity::SpaceId;
use eos_logs::Observation;
use eos_plan::{
    AppliedSet, CheckedOptions, IpSetBackend, NetworkAccessRule, Plan, SetAction, SpaceCoverage,
};
use eos_store::Store;
use eos_store::Tx;
use eos_store::ipsets::{record_apply_in, save_plan_in};
use eos_store::rules::{ImportCounts, import_rules_in, replace_observations_in};
use eos_store::sync::mark_delivered_in;
use time::OffsetDateTime;

use crate::OpsError;
use crate::plan::{desired_in, make_plan, pending_in, write_recorded};

/// What to bootstrap.
#[derive(Debug, Clone, Copy)]
pub struct BootstrapInput<'a> {
    /// Declared rules to import (upserted; may be empty).
    pub rules: &'a [NetworkAccessRule],
    /// The scan's observations (already limited to `spaces`).
    pub observations: &'a [Observation],
    /// Only these spaces (all in the input when empty).
    pub spaces: &'a [SpaceId],
    /// Evidence thresholds and guards.
    pub opts: &'a CheckedOptions,
    /// Allow staging a change that removes more than `max_removal_percent`
    /// of an existing staged set.
    pub allow_large_change: bool,
    /// Who, for the audit log.
    pub actor: &'a str,
}

/// What a bootstrap did.
#[derive(Debug)]
pub struct BootstrapReport {
    /// The plan it staged.
    pub plan: Plan,
    /// The stored plan's id.
    pub plan_id: i64,
    /// The rules imported.
    pub imported: ImportCounts,
    /// Per set staged.
    pub staged: Vec<AppliedSet>,
    /// Per space in scope: what the staged sets would have admitted.
    pub coverage: Vec<SpaceCoverage>,
}

/// Stage the desired sets of `input` on `backend` and record it all.
///
/// # Errors
/// [`OpsError::NotStored`] when planning refused or failed;
/// [`OpsError::Staging`] when the write stopped; [`OpsError::Recording`]
/// when the sets were staged but the record could not be committed.
pub async fn bootstrap<B: IpSetBackend>(
    store: &mut Store,
    backend: &B,
    input: &BootstrapInput<'_>,
) -> Result<BootstrapReport, OpsError> {
    let spaces = input.spaces;
    let actor = input.actor;
    // Changes pending before this bootstrap that its plan delivers.
    let delivers = pending_in(store.conn(), spaces)?;
    // Plan from the store as it would be with the input: written in a
    // transaction that is rolled back (so the rules are upserted exactly as
    // the commit below will), holding the write lock only for that.
    let desired = {
        let tx = store.transaction()?;
        write_input(&tx, input)?;
        let desired = desired_in(&tx, spaces, input.opts)?;
        tx.rollback()?;
        desired
    };
    let plan = make_plan(
        store,
        backend,
        &desired,
        spaces,
        input.opts,
        input.allow_large_change,
    )
    .await
    .map_err(|e| OpsError::NotStored(Box::new(e)))?;
    let staged = match write_recorded(store, backend, &plan).await {
        Ok(staged) => staged,
        Err(OpsError::Apply(source)) => {
            return Err(OpsError::Staging {
                sets: changed_sets(&plan),
                source,
            });
        }
        Err(e) => return Err(e),
    };
    let tx = store.transaction()?;
    let before: BTreeSet<i64> = pending_in(&tx, spaces)?.into_iter().collect();
    let imported = write_input(&tx, input)?;
    let plan_id = save_plan_in(&tx, plan.backend(), &plan.to_json(), actor)?;
    record_apply_in(&tx, plan.backend(), Some(plan_id), &staged, actor)?;
    // This bootstrap's own outbox rows are delivered by the staging too; rows
    // another writer added since planning stay pending for sync.
    let mut delivered = delivers;
    delivered.extend(
        pending_in(&tx, spaces)?
            .into_iter()
            .filter(|id| !before.contains(id)),
    );
    mark_delivered_in(
        &tx,
        &delivered,
        plan.backend(),
        actor,
        OffsetDateTime::now_utc(),
    )?;
    tx.commit().map_err(OpsError::Recording)?;
    let coverage = desired
        .coverage
        .into_iter()
        .filter(|c| spaces.is_empty() || spaces.contains(&c.space))
        .collect();
    Ok(BootstrapReport {
        plan,
        plan_id,
        imported,
        staged,
        coverage,
    })
}

/// Write the input inside `tx`: rules with their outbox rows and audit
/// entries, the observations of the spaces scanned.
fn write_input(tx: &Tx<'_>, input: &BootstrapInput<'_>) -> Result<ImportCounts, OpsError> {
    let counts = import_rules_in(tx, input.rules, input.actor)?;
    replace_observations_in(tx, input.observations, input.actor)?;
    Ok(counts)
}

/// The sets a plan writes, for an error message.
fn changed_sets(plan: &Plan) -> String {
    let names: Vec<String> = plan
        .changes()
        .iter()
        .filter(|c| c.action != SetAction::NoChange)
        .map(|c| c.name.to_string())
        .collect();
    names.join(", ")
}
