//! Sync: every declared Network Access Rule reaches its space's IPSet in
//! seconds, and removals and expiries too, without losing or doubling
//! anything on the way.
//!
//! The state store's outbox is written in the same transaction as every rule
//! change (`eos_store::rules`). A pass ([`sync_once`]) serves every space
//! with pending rows, the one waiting longest first, each on its own: it
//! reads the space's rows, recomputes its desired sets (rules ∪ evidence,
//! with every guard of planning), plans each set on its own against a fresh
//! read (lock token included) and applies only eos-sec's delta
//! ([`eos_plan::apply_change`]: on a lock conflict it re-reads and re-applies
//! the delta, never a stale list). A refused or failing set holds back only
//! its own rows, never another set's or another space's. Rows are marked
//! delivered only after their set matches, so a crash at any point leaves
//! them pending and the next pass converges; since every write is computed from desired state,
//! applying a change twice has the effect of applying it once. Entries
//! about to be written are recorded as eos-sec's before the write
//! (`record_intent`), so a crash between write and record cannot turn them
//! into drift.
//!
//! [`watch`] runs passes whenever changes are pending (batched: all the
//! changes of a burst become one write per set), paces writes to the
//! backend's rate (WAF: about one write per second per account and region),
//! and backs off per space: a space that keeps failing is retried later (or
//! at its next change) while the others are served at once.
//!
//! Several workers (processes, hosts) may run on one store: each space is
//! served under a lease ([`SyncOptions::lease`], `eos_store::sync::Lease`),
//! taken or renewed when a pass starts the space and before each write,
//! and renewed again in the transaction that marks its rows delivered, so a
//! worker that lost the space records nothing; a dead worker's spaces are
//! taken over once its lease expires (docs/SYNC.md, "Several workers").

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use eos_identity::SpaceId;
use eos_ipset::canonical;
use eos_plan::{
    ActualInput, AppliedSet, CheckedOptions, Desired, Finding, IpSetBackend, IpSetName, SetAction,
    apply_change, desired_sets, names_in_scope, plan_changes,
};
use eos_store::ipsets::{managed_entries, record_apply, record_intent};
use eos_store::rules::{list_rules, load_observations};
use eos_store::sync::{
    Attempt, Lease, OutboxRow, count_pending, expiries_checked, mark_delivered_under,
    pending_of_space, pending_spaces, record_attempt, release_leases, set_expiries_checked,
    spaces_with_expiries, take_lease,
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
    /// A removed rule whose addresses had evidence this recently is reported.
    pub recent_evidence: time::Duration,
    /// How long a worker's claim on a space holds after its last renewal:
    /// when the worker dies, another takes the space over within this
    /// (plus a poll and a batch window).
    pub lease: Duration,
    /// This worker, as its leases name it ([`worker_id`]).
    pub holder: String,
}

/// The default [`SyncOptions::lease`].
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// A name for this worker that no other worker has: host, process id and
/// start time.
pub fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let start = OffsetDateTime::now_utc().unix_timestamp_nanos();
    format!("{host}:{}:{start:x}", std::process::id())
}

impl SyncOptions {
    /// Defaults: 1 s between writes, poll every 250 ms, 200 ms batch window,
    /// evidence within 30 days.
    pub fn new(plan: CheckedOptions) -> SyncOptions {
        SyncOptions {
            plan,
            allow_large_change: false,
            write_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(250),
            batch_window: Duration::from_millis(200),
            recent_evidence: time::Duration::days(30),
            lease: DEFAULT_LEASE,
            holder: worker_id(),
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
    /// Outbox rows pending after the pass, over every space (as `sync
    /// status` counts them): those of sets that failed or were refused, and
    /// any written meanwhile.
    pub pending: usize,
    /// Spaces whose rules expired since the last pass.
    pub expired_spaces: Vec<SpaceId>,
    /// Per set written or checked.
    pub sets: Vec<SetOutcome>,
    /// Guard warnings and drift.
    pub warnings: Vec<Finding>,
    /// Removed rules with recent evidence.
    pub removed_but_seen: Vec<RemovedButSeen>,
    /// Spaces with pending work that another worker holds (it serves them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leased_elsewhere: Vec<SpaceId>,
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
    let pass = sync_pass(store, backend, opts, pacer, &Holds::default()).await;
    // A one-shot pass keeps no space from a watcher once it is done.
    release_leases(store, &backend.id(), &opts.holder)?;
    Ok(pass?.report)
}

/// The desired sets of `spaces` (all when empty) from the rules and
/// observations stored in `conn` (also a transaction, to plan from writes
/// not yet committed), as of `now`: the one way every command plans from
/// the store (`plan`, `apply`, `bootstrap` through `eos-ops`, and sync).
pub fn desired_in(
    conn: &impl eos_store::Sql,
    spaces: &[SpaceId],
    opts: &CheckedOptions,
    now: OffsetDateTime,
) -> Result<Desired, StoreError> {
    let rules: Vec<_> = list_rules(conn, spaces)?
        .into_iter()
        .map(|r| r.rule)
        .collect();
    let observations = load_observations(conn, spaces)?;
    Ok(desired_sets(&rules, &observations, opts, now))
}

/// One space's work in a pass.
struct Work {
    space: SpaceId,
    /// Its newest pending change when the pass began (none: only expiries).
    newest_id: Option<i64>,
}

/// What a pass did, and which spaces it could not bring to match.
struct Pass {
    report: PassReport,
    /// Spaces the pass worked on (not held).
    served: Vec<SpaceId>,
    /// Spaces with a set that failed or was refused, with their newest
    /// pending change when the pass began.
    failed: Vec<(SpaceId, Option<i64>)>,
}

/// A pass over every space with pending changes or expiries, the space
/// waiting longest first, except those `holds` keeps back. Each space is
/// read, planned and delivered on its own (its rows read by the
/// `outbox_pending_space` index), and each of its sets too: a refused or
/// failing set delays nothing but its own changes.
async fn sync_pass<B: IpSetBackend>(
    store: &mut Store,
    backend: &B,
    opts: &SyncOptions,
    pacer: &mut Pacer,
    holds: &Holds,
) -> Result<Pass, SyncError> {
    let id = backend.id();
    let now = OffsetDateTime::now_utc();
    let checked = expiries_checked(store.conn(), &id)?;
    let expired = spaces_with_expiries(store.conn(), checked, now)?;
    let mut work: Vec<Work> = pending_spaces(store.conn())?
        .into_iter()
        .map(|p| Work {
            space: p.space,
            newest_id: Some(p.newest_id),
        })
        .collect();
    for s in &expired {
        if !work.iter().any(|w| &w.space == s) {
            work.push(Work {
                space: s.clone(),
                newest_id: None,
            });
        }
    }
    let mut pass = Pass {
        report: PassReport {
            expired_spaces: expired.clone(),
            ..PassReport::default()
        },
        served: Vec::new(),
        failed: Vec::new(),
    };
    let report = &mut pass.report;
    let mut expiries_ok = true;
    for w in work {
        let space = &w.space;
        if holds.holds(space, w.newest_id) {
            expiries_ok &= !expired.contains(space);
            continue;
        }
        let lease = lease_of(opts, &id, space);
        if !take_lease(store, &lease)? {
            // Another worker serves it (and its expiries).
            report.leased_elsewhere.push(space.clone());
            expiries_ok &= !expired.contains(space);
            continue;
        }
        pass.served.push(space.clone());
        let rows = pending_of_space(store.conn(), space)?;
        let failed = sync_space(store, backend, opts, pacer, space, &rows, now, report).await?;
        let delivered: Vec<&OutboxRow> = rows
            .iter()
            .filter(|r| !failed.contains(&r.set_name()))
            .collect();
        let ids: Vec<i64> = delivered.iter().map(|r| r.id).collect();
        if !ids.is_empty()
            && !mark_delivered_under(store, &lease, &ids, ACTOR, OffsetDateTime::now_utc())?
        {
            // Paused past the lease: the worker that took the space over
            // delivers these rows; nothing is recorded twice.
            tracing::warn!(%space, "lost this space's lease before recording its delivery; the worker that took it over delivers its changes");
            report.leased_elsewhere.push(space.clone());
            pass.failed.push((space.clone(), w.newest_id));
            expiries_ok &= !expired.contains(space);
            continue;
        }
        report.delivered += ids.len();
        report
            .removed_but_seen
            .extend(removed_but_seen(store, opts, space, &delivered, now)?);
        if !failed.is_empty() {
            pass.failed.push((space.clone(), w.newest_id));
            expiries_ok &= !expired.contains(space);
        }
    }
    // What is left, counted as `sync status` counts it.
    report.pending = usize::try_from(count_pending(store.conn())?).unwrap_or(usize::MAX);
    if expiries_ok {
        set_expiries_checked(store, &id, now)?;
    }
    Ok(pass)
}

/// This worker's lease on `space` of `backend`.
fn lease_of<'a>(opts: &'a SyncOptions, backend: &'a str, space: &'a SpaceId) -> Lease<'a> {
    Lease {
        backend,
        space,
        holder: &opts.holder,
        ttl: opts.lease,
    }
}

/// Sync one space's sets, each planned on its own; the sets that do not
/// match now (failed or refused: their rows stay pending).
#[allow(clippy::too_many_arguments)]
async fn sync_space<B: IpSetBackend>(
    store: &mut Store,
    backend: &B,
    opts: &SyncOptions,
    pacer: &mut Pacer,
    space: &SpaceId,
    rows: &[OutboxRow],
    now: OffsetDateTime,
    report: &mut PassReport,
) -> Result<BTreeSet<IpSetName>, SyncError> {
    let scope = std::slice::from_ref(space);
    let desired = desired_in(store.conn(), scope, &opts.plan, now)?;
    let mut failed = BTreeSet::new();
    for name in names_in_scope(scope) {
        let oldest = rows
            .iter()
            .filter(|r| r.set_name() == name)
            .map(|r| r.at)
            .min();
        let one = SetWork {
            name: &name,
            space,
            desired: &desired,
            oldest,
            now,
        };
        if !sync_set(store, backend, opts, pacer, one, report).await? {
            failed.insert(name);
        }
    }
    Ok(failed)
}

/// One set of a space in a pass.
struct SetWork<'a> {
    name: &'a IpSetName,
    space: &'a SpaceId,
    /// The desired sets of its space.
    desired: &'a Desired,
    /// Its oldest pending change.
    oldest: Option<OffsetDateTime>,
    now: OffsetDateTime,
}

/// The desired state of one set: its entries and the findings about it, so
/// that planning refuses it for its own guards and no other set's.
fn desired_for(desired: &Desired, name: &IpSetName) -> Desired {
    Desired {
        sets: desired
            .sets
            .iter()
            .filter(|s| &s.name() == name)
            .cloned()
            .collect(),
        spaces: desired.spaces.clone(),
        findings: desired
            .findings
            .iter()
            .filter(|f| &f.set == name)
            .cloned()
            .collect(),
        coverage: Vec::new(),
    }
}

/// Sync one set; whether it matches now (its rows may be delivered).
async fn sync_set<B: IpSetBackend>(
    store: &mut Store,
    backend: &B,
    opts: &SyncOptions,
    pacer: &mut Pacer,
    work: SetWork<'_>,
    report: &mut PassReport,
) -> Result<bool, SyncError> {
    let id = backend.id();
    let name = work.name;
    let fail = |store: &mut Store, error: String| {
        record_attempt(
            store,
            &id,
            name,
            &Attempt::Failure { error },
            OffsetDateTime::now_utc(),
        )
    };
    // A set we cannot read cannot be planned.
    let set = match backend.read(name).await {
        Ok(set) => set,
        Err(e) => {
            let error = e.to_string();
            fail(store, error.clone())?;
            report.sets.push(outcome(name, "failed", Some(error)));
            return Ok(false);
        }
    };
    let managed = managed_entries(store.conn(), &id, name)?;
    let actual = BTreeMap::from([(name.clone(), ActualInput { set, managed })]);
    let plan = match plan_changes(
        &desired_for(work.desired, name),
        &actual,
        &opts.plan,
        opts.allow_large_change,
        &id,
        work.now,
    ) {
        Ok(plan) => plan,
        Err(refused) => {
            fail(store, refused.to_string())?;
            let codes: Vec<&str> = refused.findings.iter().map(|f| f.code.as_str()).collect();
            report
                .sets
                .push(outcome(name, "refused", Some(codes.join(", "))));
            report.warnings.extend(refused.findings);
            return Ok(false);
        }
    };
    // Findings about entries this pass writes, and set-wide ones (drift):
    // not the flags of every entry already in the set, pass after pass.
    let adding: BTreeSet<String> = plan
        .changes()
        .iter()
        .flat_map(|c| c.add.iter().map(|e| canonical(&e.cidr)))
        .collect();
    report.warnings.extend(
        plan.warnings()
            .iter()
            .filter(|f| f.cidr.as_deref().is_none_or(|c| adding.contains(c)))
            .cloned(),
    );
    let mut all_ok = true;
    for c in plan.changes() {
        if c.action == SetAction::NoChange {
            record_attempt(
                store,
                &id,
                &c.name,
                &Attempt::Success {
                    writes: 0,
                    lag_ms: work.oldest.map(lag_ms),
                },
                OffsetDateTime::now_utc(),
            )?;
            report.sets.push(outcome(&c.name, "unchanged", None));
            continue;
        }
        pacer.wait().await;
        // Renewed right before the write: a worker paused past its lease
        // (the space taken over meanwhile) does not write the set at all.
        if !take_lease(store, &lease_of(opts, &id, work.space))? {
            let error = "another worker took this space over".to_owned();
            report.sets.push(outcome(&c.name, "failed", Some(error)));
            all_ok = false;
            continue;
        }
        record_intent(store, &id, &[c])?;
        let read = actual.get(&c.name).and_then(|a| a.set.clone());
        match apply_change(backend, c, read).await {
            Ok(applied) => {
                record_apply(store, &id, None, std::slice::from_ref(&applied), ACTOR)?;
                let lag_ms = work.oldest.map(lag_ms);
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
                    outcome = applied.outcome.as_str(),
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
                fail(store, error.clone())?;
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
        outcome: a.outcome.as_str(),
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

/// Spaces the watcher leaves out of its passes for a while after one of
/// their sets failed or was refused: such a space is retried with a growing
/// back-off, while every other space is served at once. A new change to a
/// held space ends its hold (the change may be the fix).
#[derive(Debug, Default)]
struct Holds {
    by_space: BTreeMap<SpaceId, Hold>,
}

#[derive(Debug)]
struct Hold {
    until: Instant,
    /// The space's newest pending change when it failed.
    newest_id: Option<i64>,
    failures: u32,
}

/// The longest a failing space waits between two attempts.
const MAX_HOLD: Duration = Duration::from_secs(300);

impl Holds {
    /// Whether `space`, whose newest pending change is `newest_id`, waits.
    fn holds(&self, space: &SpaceId, newest_id: Option<i64>) -> bool {
        self.by_space
            .get(space)
            .is_some_and(|h| Instant::now() < h.until && newest_id <= h.newest_id)
    }

    /// After a pass: hold the spaces that failed, release those served.
    fn update(&mut self, pass: &Pass, base: Duration) {
        for space in &pass.served {
            match pass.failed.iter().find(|(s, _)| s == space) {
                Some((_, newest_id)) => {
                    let failures = self.by_space.get(space).map_or(0, |h| h.failures) + 1;
                    let wait = base
                        .saturating_mul(1 << (failures - 1).min(16))
                        .min(MAX_HOLD);
                    tracing::warn!(
                        %space,
                        retry_in_s = wait.as_secs(),
                        "a set of this space failed or was refused; its changes stay pending and are retried then, or at the space's next change; other spaces are not held"
                    );
                    self.by_space.insert(
                        space.clone(),
                        Hold {
                            until: Instant::now() + wait,
                            newest_id: *newest_id,
                            failures,
                        },
                    );
                }
                None => {
                    self.by_space.remove(space);
                }
            }
        }
    }
}

/// Whether a pass has work: a space with pending changes or expiries that
/// is not held.
fn due(store: &Store, backend: &str, holds: &Holds) -> Result<bool, SyncError> {
    if pending_spaces(store.conn())?
        .iter()
        .any(|p| !holds.holds(&p.space, Some(p.newest_id)))
    {
        return Ok(true);
    }
    let checked = expiries_checked(store.conn(), backend)?;
    Ok(
        spaces_with_expiries(store.conn(), checked, OffsetDateTime::now_utc())?
            .iter()
            .any(|s| !holds.holds(s, None)),
    )
}

/// Run passes whenever changes are pending or rules expire, until
/// `shutdown` resolves. A space whose set failed or was refused is held
/// back (its changes stay pending) and retried with a growing back-off, or
/// at its next change; other spaces are never held with it. A pass that
/// fails as a whole (the store) is logged and retried.
pub async fn watch<B: IpSetBackend>(
    store: &mut Store,
    backend: &B,
    opts: &SyncOptions,
    shutdown: impl std::future::Future<Output = ()>,
    mut on_pass: impl FnMut(&PassReport),
) -> Result<(), SyncError> {
    tokio::pin!(shutdown);
    let result = watch_until(store, backend, opts, shutdown, &mut on_pass).await;
    // A worker stopping hands its spaces over at once, not at expiry.
    release_leases(store, &backend.id(), &opts.holder)?;
    result
}

/// [`watch`]'s loop.
async fn watch_until<B: IpSetBackend>(
    store: &mut Store,
    backend: &B,
    opts: &SyncOptions,
    mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    on_pass: &mut impl FnMut(&PassReport),
) -> Result<(), SyncError> {
    let mut pacer = Pacer::new(opts.write_interval);
    let id = backend.id();
    let backoff = opts.write_interval.max(Duration::from_secs(1)) * 5;
    let mut holds = Holds::default();
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(opts.poll_interval) => {}
        }
        if !due(store, &id, &holds)? {
            continue;
        }
        // Let a burst accumulate into one write per set.
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(opts.batch_window) => {}
        }
        match sync_pass(store, backend, opts, &mut pacer, &holds).await {
            Ok(pass) => {
                holds.update(&pass, backoff);
                on_pass(&pass.report);
            }
            Err(e) => {
                tracing::warn!(error = %e, "sync pass failed; retrying");
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
}
