//! Sync: every declared Network Access Rule reaches its space's IPSet in
//! seconds, and removals and expiries too, without losing or doubling
//! anything on the way.
//!
//! The state store's outbox is written in the same transaction as every rule
//! change (`eos_store::rules`). A pass ([`sync_once`]) reads the pending
//! rows, recomputes the desired sets of the spaces they touch (rules ∪
//! evidence, with every guard of planning), plans each set against a fresh
//! read (lock token included) and applies only eos-sec's delta
//! ([`eos_plan::apply_change`]: on a lock conflict it re-reads and re-applies
//! the delta, never a stale list). Rows are marked delivered only after
//! their sets match, so a crash at any point leaves them pending and the
//! next pass converges; since every write is computed from desired state,
//! applying a change twice has the effect of applying it once. Entries
//! about to be written are recorded as eos-sec's before the write
//! (`record_intent`), so a crash between write and record cannot turn them
//! into drift.
//!
//! [`watch`] runs passes whenever changes are pending (batched: all the
//! changes of a burst become one write per set) and paces writes to the
//! backend's rate (WAF: about one write per second per account and region).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use eos_identity::SpaceId;
use eos_plan::{
    ActualInput, AppliedSet, CheckedOptions, Finding, IpSetBackend, IpSetName, SetAction,
    apply_change, desired_sets, names_in_scope, plan_changes,
};
use eos_store::ipsets::{managed_entries, record_apply, record_intent};
use eos_store::rules::{list_rules, load_observations};
use eos_store::sync::{
    Attempt, OutboxRow, expiries_checked, mark_delivered, oldest_pending, pending, record_attempt,
    set_expiries_checked, spaces_with_expiries,
};
use eos_store::{Store, StoreError};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::time::Instant;

/// The actor recorded in the audit log for the syncer's writes.
pub const ACTOR: &str = "eos-sec sync";

/// How a syncer behaves.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Evidence thresholds and guards (`[plan]`).
    pub plan: CheckedOptions,
    /// Allow a pass that removes more than `max_removal_percent` of a set
    /// (one explicit pass, never the watcher's default).
    pub allow_large_change: bool,
    /// Least time between two writes to the backend (WAF: 1 s).
    pub write_interval: Duration,
    /// How often the watcher looks for pending changes.
    pub poll_interval: Duration,
    /// How long the watcher lets a burst accumulate before a pass.
    pub batch_window: Duration,
    /// Most outbox rows one pass consumes.
    pub max_rows: usize,
    /// A removed rule whose addresses had evidence this recently is reported.
    pub recent_evidence: time::Duration,
}

impl SyncOptions {
    /// Defaults: 1 s between writes, poll every 250 ms, 200 ms batch window,
    /// 10,000 rows per pass, evidence within 30 days.
    pub fn new(plan: CheckedOptions) -> SyncOptions {
        SyncOptions {
            plan,
            allow_large_change: false,
            write_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(250),
            batch_window: Duration::from_millis(200),
            max_rows: 10_000,
            recent_evidence: time::Duration::days(30),
        }
    }
}

/// Errors that stop a pass (per-set failures do not: they are recorded and
/// reported, and their changes stay pending).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one pass did to one set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetOutcome {
    /// The IPSet.
    pub name: IpSetName,
    /// `created`, `updated`, `unchanged`, `refused` or `failed`.
    pub outcome: &'static str,
    /// Entries eos-sec added.
    pub added: Vec<String>,
    /// Entries eos-sec removed.
    pub removed: Vec<String>,
    /// Writes sent (0 for a no-op; more than 1 after lock conflicts).
    pub writes: u32,
    /// Why it was refused or failed.
    pub error: Option<String>,
}

/// A rule removed while its addresses still appear in recent evidence:
/// the caller may be locked out, or the evidence will put it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovedButSeen {
    /// Space.
    pub space: SpaceId,
    /// The removed rule's CIDR.
    pub cidr: String,
    /// Addresses inside it with recent evidence.
    pub addresses: Vec<String>,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PassReport {
    /// Outbox rows delivered.
    pub delivered: usize,
    /// Outbox rows left pending (their set failed or was refused).
    pub pending: usize,
    /// Spaces whose rules expired since the last pass.
    pub expired_spaces: Vec<SpaceId>,
    /// Per set written or checked.
    pub sets: Vec<SetOutcome>,
    /// Guard warnings and drift.
    pub warnings: Vec<Finding>,
    /// Removed rules with recent evidence.
    pub removed_but_seen: Vec<RemovedButSeen>,
}

impl PassReport {
    /// Writes sent in this pass.
    pub fn writes(&self) -> u32 {
        self.sets.iter().map(|s| s.writes).sum()
    }

    /// Whether any set failed or was refused.
    pub fn has_errors(&self) -> bool {
        self.sets.iter().any(|s| s.error.is_some())
    }
}

/// Spaces writes to the backend at most once per interval.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    last: Option<Instant>,
}

impl Pacer {
    /// A pacer allowing one write per `interval`.
    pub fn new(interval: Duration) -> Pacer {
        Pacer {
            interval,
            last: None,
        }
    }

    /// Wait until the next write is allowed, and count it as made.
    pub async fn wait(&mut self) {
        if let Some(last) = self.last {
            tokio::time::sleep_until(last + self.interval).await;
        }
        self.last = Some(Instant::now());
    }
}

/// One pass: deliver every pending change (and every expiry since the last
/// pass) to the backend.
pub async fn sync_once<B: IpSetBackend>(
    store: &mut Store,
    backend: &B,
    opts: &SyncOptions,
    pacer: &mut Pacer,
) -> Result<PassReport, SyncError> {
    let id = backend.id();
    let now = OffsetDateTime::now_utc();
    let rows = pending(store.conn(), opts.max_rows)?;
    let checked = expiries_checked(store.conn(), &id)?;
    let expired = spaces_with_expiries(store.conn(), checked, now)?;
    let mut by_space: BTreeMap<SpaceId, Vec<&OutboxRow>> = BTreeMap::new();
    for r in &rows {
        by_space.entry(r.space.clone()).or_default().push(r);
    }
    for s in &expired {
        by_space.entry(s.clone()).or_default();
    }
    let mut report = PassReport {
        expired_spaces: expired.clone(),
        ..PassReport::default()
    };
    let mut expiries_ok = true;
    for (space, rows) in &by_space {
        let ok = sync_space(store, backend, opts, pacer, space, rows, now, &mut report).await?;
        if ok {
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            mark_delivered(store, &ids, &id, ACTOR, OffsetDateTime::now_utc())?;
            report.delivered += ids.len();
            report
                .removed_but_seen
                .extend(removed_but_seen(store, opts, space, rows, now)?);
        } else {
            report.pending += rows.len();
            expiries_ok &= !expired.contains(space);
        }
    }
    if expiries_ok {
        set_expiries_checked(store, &id, now)?;
    }
    Ok(report)
}

/// Sync one space's sets; whether they now match (rows may be delivered).
#[allow(clippy::too_many_arguments)]
async fn sync_space<B: IpSetBackend>(
    store: &mut Store,
    backend: &B,
    opts: &SyncOptions,
    pacer: &mut Pacer,
    space: &SpaceId,
    rows: &[&OutboxRow],
    now: OffsetDateTime,
    report: &mut PassReport,
) -> Result<bool, SyncError> {
    let id = backend.id();
    let scope = std::slice::from_ref(space);
    let names = names_in_scope(scope);
    let fail = |store: &mut Store, name: &IpSetName, error: String| {
        record_attempt(
            store,
            &id,
            name,
            &Attempt::Failure { error },
            OffsetDateTime::now_utc(),
        )
    };
    // Read both sets first; a set we cannot read cannot be planned.
    let mut actual = BTreeMap::new();
    for name in &names {
        match backend.read(name).await {
            Ok(set) => {
                let managed = managed_entries(store.conn(), &id, name)?;
                actual.insert(name.clone(), ActualInput { set, managed });
            }
            Err(e) => {
                let error = e.to_string();
                fail(store, name, error.clone())?;
                report.sets.push(outcome(name, "failed", Some(error)));
                return Ok(false);
            }
        }
    }
    let rules: Vec<_> = list_rules(store.conn(), scope)?
        .into_iter()
        .map(|r| r.rule)
        .collect();
    let observations = load_observations(store.conn(), scope)?;
    let desired = desired_sets(&rules, &observations, &opts.plan, now);
    let plan = match plan_changes(
        &desired,
        &actual,
        &opts.plan,
        opts.allow_large_change,
        &id,
        now,
    ) {
        Ok(plan) => plan,
        Err(refused) => {
            let error = refused.to_string();
            for name in &names {
                fail(store, name, error.clone())?;
                report
                    .sets
                    .push(outcome(name, "refused", Some(error.clone())));
            }
            report.warnings.extend(refused.findings);
            return Ok(false);
        }
    };
    // Findings about entries this pass writes, and set-wide ones (drift):
    // not the flags of every entry already in the set, pass after pass.
    let adding: BTreeSet<&str> = plan
        .changes()
        .iter()
        .flat_map(|c| c.add.iter().map(|e| e.cidr.as_str()))
        .collect();
    report.warnings.extend(
        plan.warnings()
            .iter()
            .filter(|f| f.cidr.as_deref().is_none_or(|c| adding.contains(c)))
            .cloned(),
    );
    let mut all_ok = true;
    for c in plan.changes() {
        let oldest = rows
            .iter()
            .filter(|r| r.set_name() == c.name)
            .map(|r| r.at)
            .min();
        if c.action == SetAction::NoChange {
            let lag_ms = oldest.map(lag_ms);
            record_attempt(
                store,
                &id,
                &c.name,
                &Attempt::Success { writes: 0, lag_ms },
                OffsetDateTime::now_utc(),
            )?;
            report.sets.push(outcome(&c.name, "unchanged", None));
            continue;
        }
        record_intent(store, &id, &[c])?;
        pacer.wait().await;
        let read = actual.get(&c.name).and_then(|a| a.set.clone());
        match apply_change(backend, c, read).await {
            Ok(applied) => {
                record_apply(store, &id, None, std::slice::from_ref(&applied), ACTOR)?;
                let lag_ms = oldest.map(lag_ms);
                record_attempt(
                    store,
                    &id,
                    &c.name,
                    &Attempt::Success {
                        writes: applied.attempts,
                        lag_ms,
                    },
                    OffsetDateTime::now_utc(),
                )?;
                tracing::info!(
                    set = %c.name,
                    outcome = applied.outcome,
                    added = applied.added.len(),
                    removed = applied.removed.len(),
                    writes = applied.attempts,
                    "synced"
                );
                report.sets.push(applied_outcome(&applied));
            }
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(set = %c.name, %error, "sync failed; changes stay pending");
                fail(store, &c.name, error.clone())?;
                report.sets.push(outcome(&c.name, "failed", Some(error)));
                all_ok = false;
            }
        }
    }
    Ok(all_ok)
}

fn lag_ms(at: OffsetDateTime) -> i64 {
    i64::try_from((OffsetDateTime::now_utc() - at).whole_milliseconds()).unwrap_or(i64::MAX)
}

fn outcome(name: &IpSetName, what: &'static str, error: Option<String>) -> SetOutcome {
    SetOutcome {
        name: name.clone(),
        outcome: what,
        added: Vec::new(),
        removed: Vec::new(),
        writes: 0,
        error,
    }
}

fn applied_outcome(a: &AppliedSet) -> SetOutcome {
    SetOutcome {
        name: a.name.clone(),
        outcome: a.outcome,
        added: a.added.clone(),
        removed: a.removed.clone(),
        writes: a.attempts,
        error: None,
    }
}

/// Removed rules of `space` whose addresses still have recent evidence.
fn removed_but_seen(
    store: &Store,
    opts: &SyncOptions,
    space: &SpaceId,
    rows: &[&OutboxRow],
    now: OffsetDateTime,
) -> Result<Vec<RemovedButSeen>, SyncError> {
    let removed: Vec<&OutboxRow> = rows
        .iter()
        .copied()
        .filter(|r| r.topic == "rule.removed")
        .collect();
    if removed.is_empty() {
        return Ok(Vec::new());
    }
    let obs = load_observations(store.conn(), std::slice::from_ref(space))?;
    let since = now - opts.recent_evidence;
    let mut out = Vec::new();
    let mut seen_cidrs = BTreeSet::new();
    for r in removed {
        let cidr = r.rule.cidr.to_string();
        if !seen_cidrs.insert(cidr.clone()) {
            continue;
        }
        let net = r.rule.cidr.net();
        let addresses: Vec<String> = obs
            .iter()
            .filter(|o| o.last_seen >= since && net.contains(&o.ip))
            .map(|o| o.ip.to_string())
            .collect();
        if !addresses.is_empty() {
            out.push(RemovedButSeen {
                space: space.clone(),
                cidr,
                addresses,
            });
        }
    }
    Ok(out)
}

/// Run passes whenever changes are pending or rules expire, until
/// `shutdown` resolves. A failed pass is logged and retried on the next
/// poll; its changes stay pending.
pub async fn watch<B: IpSetBackend>(
    store: &mut Store,
    backend: &B,
    opts: &SyncOptions,
    shutdown: impl std::future::Future<Output = ()>,
    mut on_pass: impl FnMut(&PassReport),
) -> Result<(), SyncError> {
    let mut pacer = Pacer::new(opts.write_interval);
    let id = backend.id();
    tokio::pin!(shutdown);
    let mut failing = false;
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(opts.poll_interval) => {}
        }
        let now = OffsetDateTime::now_utc();
        let due = oldest_pending(store.conn())?.is_some()
            || !spaces_with_expiries(store.conn(), expiries_checked(store.conn(), &id)?, now)?
                .is_empty();
        if !due {
            continue;
        }
        if !failing {
            // Let a burst accumulate into one write per set.
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(opts.batch_window) => {}
            }
        }
        match sync_once(store, backend, opts, &mut pacer).await {
            Ok(report) => {
                failing = report.has_errors();
                on_pass(&report);
                if failing {
                    // Back off before retrying a failing set.
                    tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(opts.write_interval.max(Duration::from_secs(1)) * 5) => {}
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "sync pass failed; retrying");
                failing = true;
            }
        }
    }
}
