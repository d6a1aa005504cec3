//! Enforce: move one space one stage forward, past the lockout guards.

use std::collections::BTreeMap;
use std::net::IpAddr;

use eos_identity::SpaceId;
use eos_plan::IpSetBackend;
use serde::Serialize;

use super::{
    EnforceJournal, Guard, GuardInput, ListenerStep, Run, RunKind, StageChange, StepReport,
    full_stages, guard, guards, journal, ordered_steps, read_existing, read_sets, set_arns,
    tag_stages, verifies_at_enforce,
};
use crate::PolicyError;
use crate::acl::{OwnedAcl, WebAclBackend};
use crate::compile::compile;
use crate::edge::{EdgeGate, NoGate};
use crate::gate::GateBackend;
use crate::model::{Policy, Stage};
use crate::simulate::Simulation;

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
