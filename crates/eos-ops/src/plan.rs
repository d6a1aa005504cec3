//! Plan from the store against a backend; apply a plan and record it.
//!
//! A plan is made from the rules and observations in the store
//! ([`eos_sync::desired_in`], the function sync plans with too) and the
//! sets as the backend has them now, with the entries eos-sec recorded as
//! its own. Applying records the entries a plan adds as eos-sec's *before*
//! writing them ([`write_recorded`], the only place that writes a plan), so
//! a crash between the write and the record cannot turn them into drift.

use std::collections::BTreeMap;

use eos_identity::SpaceId;
use eos_plan::{
    ActualInput, AppliedSet, CheckedOptions, Desired, IpSetBackend, Plan, SetAction, SetChange,
    apply_plan, names_in_scope, plan_changes,
};
use eos_store::Sql;
use eos_store::Store;
use eos_store::ipsets::{managed_entries, record_apply, record_intent, save_plan};
use serde::Serialize;
use time::OffsetDateTime;

use crate::OpsError;

/// The desired sets of `spaces` (all when empty) from the stored rules and
/// observations, now.
pub fn desired_from_store(
    store: &Store,
    spaces: &[SpaceId],
    opts: &CheckedOptions,
) -> Result<Desired, OpsError> {
    desired_in(store.conn(), spaces, opts)
}

/// [`desired_from_store`] on a connection (also a transaction, to plan from
/// writes not yet committed).
pub fn desired_in(
    conn: &impl Sql,
    spaces: &[SpaceId],
    opts: &CheckedOptions,
) -> Result<Desired, OpsError> {
    Ok(eos_sync::desired_in(
        conn,
        spaces,
        opts,
        OffsetDateTime::now_utc(),
    )?)
}

/// Read every set in scope (`spaces`, else every space `desired` has) from
/// `backend`, with the entries eos-sec recorded as its own, and plan.
/// `store` is taken `&mut` (a connection serves one caller at a time) so
/// that the future is `Send` with a `Send` backend.
pub async fn make_plan<B: IpSetBackend>(
    store: &mut Store,
    backend: &B,
    desired: &Desired,
    spaces: &[SpaceId],
    opts: &CheckedOptions,
    allow_large_change: bool,
) -> Result<Plan, OpsError> {
    let scope: Vec<SpaceId> = if spaces.is_empty() {
        desired.spaces.clone()
    } else {
        spaces.to_vec()
    };
    let id = backend.id();
    let mut actual = BTreeMap::new();
    for name in names_in_scope(&scope) {
        let set = backend.read(&name).await.map_err(|source| OpsError::Read {
            name: name.clone(),
            source,
        })?;
        let managed = managed_entries(store.conn(), &id, &name)?;
        actual.insert(name, ActualInput { set, managed });
    }
    Ok(plan_changes(
        desired,
        &actual,
        opts,
        allow_large_change,
        &id,
        OffsetDateTime::now_utc(),
    )?)
}

/// Plan `spaces` (all when empty) from the store as it is now.
pub async fn plan<B: IpSetBackend>(
    store: &mut Store,
    backend: &B,
    spaces: &[SpaceId],
    opts: &CheckedOptions,
    allow_large_change: bool,
) -> Result<Plan, OpsError> {
    let desired = desired_from_store(store, spaces, opts)?;
    make_plan(store, backend, &desired, spaces, opts, allow_large_change).await
}

/// Plan now, with the outbox rows the plan delivers once applied: those
/// pending before planning (a plan made from the rules as they are after
/// delivers them). What a saved or confirmed plan is compared with
/// (`Plan::confirm`, `SavedPlan::confirm`) before it is applied.
pub async fn replan<B: IpSetBackend>(
    store: &mut Store,
    backend: &B,
    spaces: &[SpaceId],
    opts: &CheckedOptions,
    allow_large_change: bool,
) -> Result<(Plan, Vec<i64>), OpsError> {
    let delivers = pending_in(store.conn(), spaces)?;
    let plan = plan(store, backend, spaces, opts, allow_large_change).await?;
    Ok((plan, delivers))
}

/// The outbox rows of `spaces` (all when empty) pending now.
pub fn pending_in(conn: &impl Sql, spaces: &[SpaceId]) -> Result<Vec<i64>, OpsError> {
    Ok(eos_store::sync::pending(conn, usize::MAX)?
        .into_iter()
        .filter(|r| spaces.is_empty() || spaces.contains(&r.space))
        .map(|r| r.id)
        .collect())
}

/// Write `plan` to `backend`, having first recorded the entries it adds as
/// eos-sec's (`eos_store::ipsets::record_intent`): an apply that dies
/// between the write and its record leaves entries eos-sec knows it may
/// have written, never drift it would refuse to remove. Every plan eos-sec
/// writes goes through here (`apply`, `bootstrap`).
///
/// # Errors
/// [`OpsError::Store`] when the record fails (nothing written);
/// [`OpsError::Apply`] when the write stops.
pub async fn write_recorded<B: IpSetBackend>(
    store: &mut Store,
    backend: &B,
    plan: &Plan,
) -> Result<Vec<AppliedSet>, OpsError> {
    let changes: Vec<&SetChange> = plan
        .changes()
        .iter()
        .filter(|c| c.action != SetAction::NoChange)
        .collect();
    record_intent(store, plan.backend(), &changes)?;
    apply_plan(backend, plan).await.map_err(OpsError::Apply)
}

/// What an apply did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// The stored plan's id.
    pub plan_id: i64,
    /// The backend written.
    pub backend: String,
    /// Per set.
    pub applied: Vec<AppliedSet>,
}

/// Apply a plan made now (from [`replan`], confirmed) and record it: the
/// plan, the write ([`write_recorded`]), what each set holds after it, and
/// the outbox rows `delivers` marked delivered.
pub async fn apply_and_record<B: IpSetBackend>(
    store: &mut Store,
    backend: &B,
    plan: &Plan,
    delivers: &[i64],
    actor: &str,
) -> Result<ApplyReport, OpsError> {
    let plan_id = save_plan(store, plan.backend(), &plan.to_json(), actor)?;
    let applied = write_recorded(store, backend, plan).await?;
    record_apply(store, plan.backend(), Some(plan_id), &applied, actor)?;
    eos_store::sync::mark_delivered(
        store,
        delivers,
        plan.backend(),
        actor,
        OffsetDateTime::now_utc(),
    )?;
    Ok(ApplyReport {
        plan_id,
        backend: plan.backend().to_owned(),
        applied,
    })
}
