//! Roll back: restore a snapshot exactly, the default ALLOW first.

use std::collections::BTreeMap;

use eos_identity::SpaceId;
use eos_plan::IpSetBackend;
use serde::Serialize;

use super::{
    EnforceJournal, Guard, ListenerStep, Run, RunKind, StageChange, StepReport, guard, journal,
    ordered_steps, read_existing, read_sets, tag_stages,
};
use crate::PolicyError;
use crate::acl::WebAclBackend;
use crate::edge::{EdgeGate, GateSnapshot, NoGate};
use crate::gate::GateBackend;
use crate::model::{Policy, Stage};

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
