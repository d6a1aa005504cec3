//! The syncer's tables: the outbox it consumes (written by `rules` in the
//! same transaction as each rule change) and its record per backend and
//! IPSet (`sync_state`, migration 6), from which `eos-sec sync status` and the
//! service's metrics are read.

use std::collections::BTreeMap;

use std::time::Duration;

use crate::db::{Engine, Param, Sql, Tx};
use eos_identity::SpaceId;
use eos_ipset::Family;
use eos_plan::{IpSetName, NetworkAccessRule};
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::rules::{corrupt, parse_time};
use crate::{
    AuditEntry, Store, StoreError, audit_in, format_rfc3339, format_rfc3339_ms, kv_get, kv_set,
};

/// One pending rule change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Row id (delivery marks rows up to an id).
    pub id: i64,
    /// When the change was committed.
    pub at: OffsetDateTime,
    /// `rule.added`, `rule.updated` or `rule.removed`.
    pub topic: String,
    /// The space.
    pub space: SpaceId,
    /// The rule as it was written (for removals: as it was).
    pub rule: NetworkAccessRule,
}

impl OutboxRow {
    /// The IPSet the change lands in.
    pub fn set_name(&self) -> IpSetName {
        IpSetName::staged(&self.space, Family::of(&self.rule.cidr.net()))
    }
}

/// Pending (undelivered) rule changes, oldest first, at most `limit`.
pub fn pending(conn: &impl Sql, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
    outbox_rows(
        conn,
        "SELECT id, at, topic, space, payload FROM outbox
         WHERE delivered_at IS NULL ORDER BY id LIMIT ?1",
        &[&i64::try_from(limit).unwrap_or(i64::MAX)],
    )
}

/// One space's pending rule changes, oldest first (read by the
/// `outbox_pending_space` index, migration 9). All of them: a pass plans
/// the space from every rule, so every pending row of a set that matches
/// afterwards is delivered.
pub fn pending_of_space(conn: &impl Sql, space: &SpaceId) -> Result<Vec<OutboxRow>, StoreError> {
    outbox_rows(
        conn,
        "SELECT id, at, topic, space, payload FROM outbox
         WHERE delivered_at IS NULL AND space = ?1 ORDER BY id",
        &[&space.as_str()],
    )
}

/// A space with pending rule changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSpace {
    /// The space.
    pub space: SpaceId,
    /// Its oldest pending change.
    pub oldest_id: i64,
    /// Its newest pending change.
    pub newest_id: i64,
    /// How many changes are pending.
    pub count: u64,
}

/// Asked once per pass and on every poll of the watcher: read through the
/// `outbox_pending_space` partial index, which holds the pending rows only
/// (migration 9; named, because on a small table SQLite's planner prefers
/// `outbox_pending` and a sort for the grouping).
const PENDING_SPACES: &str = "SELECT space, MIN(id), MAX(id), COUNT(*)
     FROM outbox INDEXED BY outbox_pending_space
     WHERE delivered_at IS NULL GROUP BY space ORDER BY MIN(id)";

/// [`PENDING_SPACES`] on PostgreSQL, which has no `INDEXED BY` (its
/// planner picks the partial index by the same `WHERE`).
const PENDING_SPACES_PG: &str = "SELECT space, MIN(id), MAX(id), COUNT(*)
     FROM outbox WHERE delivered_at IS NULL GROUP BY space ORDER BY MIN(id)";

/// Every space with pending changes, the space waiting longest first: the
/// order a pass serves them in, so no space waits behind another's backlog.
pub fn pending_spaces(conn: &impl Sql) -> Result<Vec<PendingSpace>, StoreError> {
    let sql = match conn.engine() {
        Engine::Sqlite => PENDING_SPACES,
        Engine::Postgres => PENDING_SPACES_PG,
    };
    conn.query(sql, &[], |r| {
        Ok(PendingSpace {
            space: SpaceId::new(r.str(0)?).map_err(|e| corrupt("outbox", e))?,
            oldest_id: r.get(1)?,
            newest_id: r.get(2)?,
            count: u64::try_from(r.get::<i64>(3)?).unwrap_or(0),
        })
    })
}

/// How many rule changes are pending, over every space.
pub fn count_pending(conn: &impl Sql) -> Result<u64, StoreError> {
    let n: i64 = conn.query_one(
        "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL",
        &[],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn outbox_rows(
    conn: &impl Sql,
    sql: &str,
    params: &[&dyn Param],
) -> Result<Vec<OutboxRow>, StoreError> {
    conn.query(sql, params, |r| {
        Ok(OutboxRow {
            id: r.get(0)?,
            at: parse_time(r.str(1)?, "outbox")?,
            topic: r.get(2)?,
            space: SpaceId::new(r.str(3)?).map_err(|e| corrupt("outbox", e))?,
            rule: serde_json::from_str(r.str(4)?).map_err(|e| corrupt("outbox", e))?,
        })
    })
}

/// Mark rows delivered, with one audit entry for the batch.
pub fn mark_delivered(
    store: &mut Store,
    ids: &[i64],
    backend: &str,
    actor: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let tx = store.transaction()?;
    mark_delivered_in(&tx, ids, backend, actor, now)?;
    tx.commit()?;
    Ok(())
}

/// [`mark_delivered`] inside the caller's transaction.
pub fn mark_delivered_in(
    tx: &impl Sql,
    ids: &[i64],
    backend: &str,
    actor: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let at = format_rfc3339_ms(now);
    // Only the rows this call delivered are audited: a row another writer
    // delivered first appears in that writer's entry, so every outbox row
    // is in exactly one `sync.deliver` entry.
    let mut delivered = Vec::with_capacity(ids.len());
    for id in ids {
        let n = tx.execute(
            "UPDATE outbox SET delivered_at = ?2 WHERE id = ?1 AND delivered_at IS NULL",
            &[id, &at],
        )?;
        if n == 1 {
            delivered.push(*id);
        }
    }
    if delivered.is_empty() {
        return Ok(());
    }
    audit_in(
        tx,
        &AuditEntry::new(actor, "sync.deliver", backend)
            .with_detail(json!({ "outbox_ids": delivered })),
    )?;
    Ok(())
}

/// The database's clock in milliseconds since the Unix epoch (leases are
/// timed by it, so workers whose clocks differ agree on an expiry). On
/// PostgreSQL the wall clock now, not the transaction's start.
fn db_now_ms(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        Engine::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// A sync worker's claim on one space of one backend (migration 16): the
/// worker `holder` writes the space's IPSets only while its lease holds,
/// and renews it as it goes; `ttl` after its last renewal another worker
/// may take the space over.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    /// The backend's id.
    pub backend: &'a str,
    /// The space.
    pub space: &'a SpaceId,
    /// The worker.
    pub holder: &'a str,
    /// How long a renewal holds.
    pub ttl: Duration,
}

/// Take or renew `lease`: true when `lease.holder` holds it now, until
/// `ttl` from now (it was free, expired, or already its own); false when
/// another worker holds it. One conditional upsert, so two workers racing
/// for a free space cannot both win, whatever else the transaction locks.
pub fn take_lease(store: &mut Store, lease: &Lease<'_>) -> Result<bool, StoreError> {
    let tx = store.transaction()?;
    let now = db_now_ms(tx.engine());
    let taken = tx.execute(
        &format!(
            "INSERT INTO sync_leases(backend, space, holder, expires_ms)
             VALUES (?1, ?2, ?3, {now} + ?4)
             ON CONFLICT(backend, space) DO UPDATE
                 SET holder = excluded.holder, expires_ms = excluded.expires_ms
                 WHERE sync_leases.holder = excluded.holder OR sync_leases.expires_ms <= {now}"
        ),
        &[
            &lease.backend,
            &lease.space.as_str(),
            &lease.holder,
            &ttl_ms(lease.ttl),
        ],
    )?;
    tx.commit()?;
    Ok(taken == 1)
}

/// Inside the caller's transaction: whether `lease.holder` still holds
/// `lease`, renewing it if so. The renewal locks the lease's row until the
/// transaction ends, so no other worker can take the space over between
/// this check and the commit: what the transaction records was done under
/// the lease (fencing).
pub fn renew_lease_in(tx: &Tx<'_>, lease: &Lease<'_>) -> Result<bool, StoreError> {
    let now = db_now_ms(tx.engine());
    let held = tx.execute(
        &format!(
            "UPDATE sync_leases SET expires_ms = {now} + ?4
             WHERE backend = ?1 AND space = ?2 AND holder = ?3 AND expires_ms > {now}"
        ),
        &[
            &lease.backend,
            &lease.space.as_str(),
            &lease.holder,
            &ttl_ms(lease.ttl),
        ],
    )?;
    Ok(held == 1)
}

/// Give up every lease `holder` holds on `backend` (a worker stopping), so
/// another worker need not wait for them to expire.
pub fn release_leases(store: &mut Store, backend: &str, holder: &str) -> Result<(), StoreError> {
    let tx = store.transaction()?;
    tx.execute(
        "DELETE FROM sync_leases WHERE backend = ?1 AND holder = ?2",
        &[&backend, &holder],
    )?;
    tx.commit()
}

/// A space's lease: who holds it and for how many milliseconds more
/// (negative: expired), if anyone took it.
pub fn lease_holder(
    conn: &impl Sql,
    backend: &str,
    space: &SpaceId,
) -> Result<Option<(String, i64)>, StoreError> {
    let now = db_now_ms(conn.engine());
    conn.query_opt(
        &format!(
            "SELECT holder, expires_ms - {now} FROM sync_leases WHERE backend = ?1 AND space = ?2"
        ),
        &[&backend, &space.as_str()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// [`mark_delivered`] only while `lease` holds, checked and renewed in the
/// transaction that marks the rows: false (nothing marked) when the worker
/// lost the space, so a worker that was paused past its lease cannot
/// record a delivery the worker that took over records too.
pub fn mark_delivered_under(
    store: &mut Store,
    lease: &Lease<'_>,
    ids: &[i64],
    actor: &str,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    let tx = store.transaction()?;
    if !renew_lease_in(&tx, lease)? {
        return Ok(false);
    }
    mark_delivered_in(&tx, ids, lease.backend, actor, now)?;
    tx.commit()?;
    Ok(true)
}

/// Asked on every poll of the sync watcher: served by the `rules_expires`
/// index (migration 8), not a scan of every rule.
const SPACES_WITH_EXPIRIES: &str = "SELECT DISTINCT space FROM rules
     WHERE expires IS NOT NULL AND expires > ?1 AND expires <= ?2 ORDER BY space";

/// Spaces with a rule whose expiry falls in `(after, upto]`: their sets must
/// lose it even though no outbox row says so.
pub fn spaces_with_expiries(
    conn: &impl Sql,
    after: Option<OffsetDateTime>,
    upto: OffsetDateTime,
) -> Result<Vec<SpaceId>, StoreError> {
    let after = after.map_or_else(|| "0000".to_owned(), format_rfc3339);
    conn.query(
        SPACES_WITH_EXPIRIES,
        &[&after, &format_rfc3339(upto)],
        |r| SpaceId::new(r.str(0)?).map_err(|e| corrupt("rule", e)),
    )
}

fn expiry_key(backend: &str) -> String {
    format!("sync.expiries_checked.{backend}")
}

/// Up to when expiries have been synced to `backend`.
pub fn expiries_checked(
    conn: &impl Sql,
    backend: &str,
) -> Result<Option<OffsetDateTime>, StoreError> {
    kv_get(conn, &expiry_key(backend))?
        .map(|s| parse_time(&s, "sync cursor"))
        .transpose()
}

/// Record that expiries up to `upto` have been synced to `backend`.
pub fn set_expiries_checked(
    store: &mut Store,
    backend: &str,
    upto: OffsetDateTime,
) -> Result<(), StoreError> {
    let tx = store.transaction()?;
    kv_set(&tx, &expiry_key(backend), &format_rfc3339(upto))?;
    tx.commit()?;
    Ok(())
}

/// The outcome of one sync attempt on one set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The set matches; `writes` calls were sent (0 for a no-op);
    /// `lag_ms` is the age of the oldest change delivered, if any.
    Success {
        /// Calls sent.
        writes: u32,
        /// Oldest delivered change's lag.
        lag_ms: Option<i64>,
    },
    /// The attempt failed (the change stays pending).
    Failure {
        /// Why.
        error: String,
    },
}

/// Record a sync attempt on one set.
pub fn record_attempt(
    store: &mut Store,
    backend: &str,
    name: &IpSetName,
    attempt: &Attempt,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let tx = store.transaction()?;
    let at = format_rfc3339_ms(now);
    let name = name.to_string();
    tx.execute(
        "INSERT INTO sync_state(backend, name, last_attempt) VALUES (?1, ?2, ?3)
         ON CONFLICT(backend, name) DO UPDATE SET last_attempt = excluded.last_attempt",
        &[&backend, &name, &at],
    )?;
    match attempt {
        Attempt::Success { writes, lag_ms } => {
            tx.execute(
                "UPDATE sync_state SET last_success = ?3, writes = writes + ?4,
                     last_lag_ms = COALESCE(?5, last_lag_ms)
                 WHERE backend = ?1 AND name = ?2",
                &[&backend, &name, &at, &i64::from(*writes), lag_ms],
            )?;
        }
        Attempt::Failure { error } => {
            tx.execute(
                "UPDATE sync_state SET last_error = ?3, last_error_at = ?4
                 WHERE backend = ?1 AND name = ?2",
                &[&backend, &name, error, &at],
            )?;
            audit_in(
                &tx,
                &AuditEntry::new("eos-sec sync", "sync.error", &name)
                    .with_detail(json!({ "backend": backend, "error": error })),
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// What `sync status` shows for one IPSet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SetStatus {
    /// The IPSet.
    pub name: String,
    /// Last successful sync.
    pub last_success: Option<String>,
    /// Last attempt.
    pub last_attempt: Option<String>,
    /// Rule changes waiting for this set.
    pub pending: u64,
    /// Age in milliseconds of the oldest pending change (0 when none).
    pub lag_ms: i64,
    /// Lag of the last delivery in milliseconds.
    pub last_lag_ms: Option<i64>,
    /// Writes sent so far.
    pub writes: u64,
    /// The last error, when it is newer than the last success.
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<String>,
}

/// Per IPSet of `backend`: what the syncer recorded, and the changes still
/// pending for it (sets with pending changes but no attempt yet included).
pub fn status(
    conn: &impl Sql,
    backend: &str,
    now: OffsetDateTime,
) -> Result<Vec<SetStatus>, StoreError> {
    let mut by_name: BTreeMap<String, SetStatus> = BTreeMap::new();
    let rows = conn.query(
        "SELECT name, last_success, last_attempt, writes, last_lag_ms, last_error, last_error_at
         FROM sync_state WHERE backend = ?1",
        &[&backend],
        |r| {
            Ok(SetStatus {
                name: r.get(0)?,
                last_success: r.get(1)?,
                last_attempt: r.get(2)?,
                pending: 0,
                lag_ms: 0,
                writes: u64::try_from(r.get::<i64>(3)?).unwrap_or(0),
                last_lag_ms: r.get(4)?,
                last_error: r.get(5)?,
                last_error_at: r.get(6)?,
            })
        },
    )?;
    for mut s in rows {
        // An error older than the last success is history, not state.
        if let (Some(ok), Some(err)) = (&s.last_success, &s.last_error_at)
            && ok >= err
        {
            s.last_error = None;
            s.last_error_at = None;
        }
        by_name.insert(s.name.clone(), s);
    }
    for row in pending(conn, usize::MAX)? {
        let name = row.set_name().to_string();
        let s = by_name.entry(name.clone()).or_insert_with(|| SetStatus {
            name,
            ..SetStatus::default()
        });
        s.pending += 1;
        let lag = i64::try_from((now - row.at).whole_milliseconds()).unwrap_or(i64::MAX);
        s.lag_ms = s.lag_ms.max(lag.max(0));
    }
    Ok(by_name.into_values().collect())
}

/// A metric: name, type, help, and its value for one set.
type Metric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&SetStatus) -> Option<i64>,
);

/// The figures of [`status`] in the Prometheus text format, one gauge or
/// counter per IPSet (for `eos-sec serve`'s `/metrics`).
pub fn prometheus(backend: &str, rows: &[SetStatus]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let metrics: [Metric; 5] = [
        (
            "eos_sync_pending",
            "gauge",
            "Rule changes waiting for the IPSet",
            |s| i64::try_from(s.pending).ok(),
        ),
        (
            "eos_sync_lag_milliseconds",
            "gauge",
            "Age of the oldest pending change",
            |s| Some(s.lag_ms),
        ),
        (
            "eos_sync_last_delivery_lag_milliseconds",
            "gauge",
            "Commit of the oldest change of the last delivery to the IPSet written",
            |s| s.last_lag_ms,
        ),
        (
            "eos_sync_writes_total",
            "counter",
            "Writes sent to the IPSet",
            |s| i64::try_from(s.writes).ok(),
        ),
        (
            "eos_sync_failing",
            "gauge",
            "1 when the last attempt failed or was refused after the last success",
            |s| Some(i64::from(s.last_error.is_some())),
        ),
    ];
    for (name, kind, help, value) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for r in rows {
            if let Some(v) = value(r) {
                let _ = writeln!(
                    out,
                    "{name}{{backend=\"{backend}\",ipset=\"{}\"}} {v}",
                    r.name
                );
            }
        }
    }
    out
}

/// The oldest pending change's id, if any (cheap: the watcher polls it).
pub fn oldest_pending(conn: &impl Sql) -> Result<Option<i64>, StoreError> {
    conn.query_opt(
        "SELECT id FROM outbox WHERE delivered_at IS NULL ORDER BY id LIMIT 1",
        &[],
        |r| r.get(0),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::rules::{import_rules, remove_rules};
    use crate::testing::on_each_engine;
    use eos_identity::UserId;
    use eos_plan::{Label, RuleCidr};
    use rusqlite::params;
    use time::macros::datetime;

    fn rule(space: &str, cidr: &str, expires: Option<OffsetDateTime>) -> NetworkAccessRule {
        NetworkAccessRule::new(
            SpaceId::new(space).unwrap(),
            RuleCidr::parse(cidr).unwrap(),
            Label::new("x").unwrap(),
            UserId::new("alice").unwrap(),
            datetime!(2026-01-05 09:00 UTC),
            expires,
        )
        .unwrap()
    }

    // SQLite only: reads SQLite's query plan (EXPLAIN QUERY PLAN).
    #[test]
    fn the_expiry_poll_reads_the_index_not_every_rule() {
        let s = Store::open_in_memory().unwrap();
        let mut stmt = s
            .conn()
            .sqlite()
            .unwrap()
            .prepare(&format!("EXPLAIN QUERY PLAN {SPACES_WITH_EXPIRIES}"))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map(params!["0000", "9999"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|step| step.contains("USING INDEX rules_expires")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|step| step == "SCAN rules"), "{plan:?}");
    }

    // SQLite only: reads SQLite's query plan (EXPLAIN QUERY PLAN).
    #[test]
    fn pending_spaces_are_read_from_the_partial_index_of_pending_rows() {
        let s = Store::open_in_memory().unwrap();
        let mut stmt = s
            .conn()
            .sqlite()
            .unwrap()
            .prepare(&format!("EXPLAIN QUERY PLAN {PENDING_SPACES}"))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|step| step.contains("INDEX outbox_pending_space")),
            "{plan:?}"
        );
    }

    #[test]
    fn pending_spaces_come_longest_waiting_first_with_their_counts() {
        on_each_engine(|mut s| {
            import_rules(&mut s, &[rule("zeta", "192.0.2.1/32", None)], "op").unwrap();
            import_rules(
                &mut s,
                &[
                    rule("acme", "192.0.2.2/32", None),
                    rule("acme", "192.0.2.3/32", None),
                ],
                "op",
            )
            .unwrap();
            import_rules(&mut s, &[rule("zeta", "192.0.2.4/32", None)], "op").unwrap();
            let p = pending_spaces(s.conn()).unwrap();
            let got: Vec<(&str, u64)> = p.iter().map(|x| (x.space.as_str(), x.count)).collect();
            assert_eq!(got, [("zeta", 2), ("acme", 2)]);
            assert!(p[0].oldest_id < p[1].oldest_id && p[0].newest_id > p[1].newest_id);
            let acme = pending_of_space(s.conn(), &SpaceId::new("acme").unwrap()).unwrap();
            assert_eq!(acme.len(), 2);
            assert!(acme.iter().all(|r| r.space.as_str() == "acme"));
            assert_eq!(count_pending(s.conn()).unwrap(), 4);
        });
    }

    /// `outbox.at` is stored to the millisecond, and `sync status` reports
    /// the lag in milliseconds: a change 263 ms old is 263 ms late, not
    /// 1,000 or 1,100.
    #[test]
    fn outbox_times_and_lag_have_millisecond_precision() {
        on_each_engine(|mut s| {
            let now = OffsetDateTime::now_utc();
            let before = now
                .replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
                .unwrap();
            import_rules(&mut s, &[rule("acme", "192.0.2.1/32", None)], "op").unwrap();
            let after = OffsetDateTime::now_utc();
            let row = pending(s.conn(), 10).unwrap().remove(0);
            assert!(
                before <= row.at && row.at <= after,
                "{before} <= {} <= {after}",
                row.at
            );
            let st = status(
                s.conn(),
                "local",
                row.at + time::Duration::milliseconds(263),
            )
            .unwrap();
            assert_eq!(st[0].lag_ms, 263);
            let stored: String = s
                .conn()
                .query_one("SELECT at FROM outbox", &[], |r| r.get(0))
                .unwrap();
            assert_eq!(stored.len(), "2026-01-05T09:00:00.263Z".len(), "{stored}");
        });
    }

    /// Rows written before migration 9 (whole seconds) are converted: one
    /// format, read back as the same time. SQLite only: PostgreSQL's
    /// outbox was written in milliseconds from the start (its migration 9
    /// only adds an index), so there is nothing to convert there.
    #[test]
    fn migration_9_converts_second_stamps() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        import_rules(&mut s, &[rule("acme", "192.0.2.1/32", None)], "op").unwrap();
        let id = pending(s.conn(), 1).unwrap()[0].id;
        mark_delivered(&mut s, &[id], "local", "op", OffsetDateTime::now_utc()).unwrap();
        import_rules(&mut s, &[rule("acme", "192.0.2.2/32", None)], "op").unwrap();
        // As an eos-sec before migration 9 left them.
        s.conn().sqlite().unwrap()
            .execute_batch(
                "UPDATE outbox SET at = '2026-01-05T09:00:07Z';
                 UPDATE outbox SET delivered_at = '2026-01-05T09:00:08Z' WHERE delivered_at IS NOT NULL;
                 DROP INDEX outbox_pending_space;
                 DELETE FROM schema_migrations WHERE version = 9;",
            )
            .unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        let rows: Vec<(String, Option<String>)> = s
            .conn()
            .sqlite()
            .unwrap()
            .prepare("SELECT at, delivered_at FROM outbox ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (
                    "2026-01-05T09:00:07.000Z".to_owned(),
                    Some("2026-01-05T09:00:08.000Z".to_owned())
                ),
                ("2026-01-05T09:00:07.000Z".to_owned(), None),
            ]
        );
        assert_eq!(
            pending(s.conn(), 10).unwrap()[0].at,
            datetime!(2026-01-05 09:00:07 UTC)
        );
    }

    #[test]
    fn pending_rows_are_delivered_once_and_status_follows() {
        on_each_engine(|mut s| {
            import_rules(
                &mut s,
                &[
                    rule("acme", "198.51.100.0/24", None),
                    rule("acme", "2001:db8::/48", None),
                ],
                "op",
            )
            .unwrap();
            let rows = pending(s.conn(), 10).unwrap();
            assert_eq!(rows.len(), 2);
            assert_eq!(rows[0].set_name().to_string(), "eos-acme-v4");
            assert_eq!(rows[1].set_name().to_string(), "eos-acme-v6");
            let now = OffsetDateTime::now_utc();
            let st = status(s.conn(), "local", now).unwrap();
            assert_eq!(st.len(), 2);
            assert!(
                st.iter()
                    .all(|x| x.pending == 1 && x.last_success.is_none())
            );

            let v4 = rows[0].set_name();
            record_attempt(
                &mut s,
                "local",
                &v4,
                &Attempt::Failure {
                    error: "boom".into(),
                },
                now,
            )
            .unwrap();
            let st = status(s.conn(), "local", now).unwrap();
            assert_eq!(st[0].last_error.as_deref(), Some("boom"));

            mark_delivered(&mut s, &[rows[0].id], "local", "op", now).unwrap();
            record_attempt(
                &mut s,
                "local",
                &v4,
                &Attempt::Success {
                    writes: 1,
                    lag_ms: Some(1200),
                },
                now + time::Duration::seconds(1),
            )
            .unwrap();
            let st = status(s.conn(), "local", now).unwrap();
            let v4s = st.iter().find(|x| x.name == "eos-acme-v4").unwrap();
            assert_eq!(
                (v4s.pending, v4s.writes, v4s.last_lag_ms),
                (0, 1, Some(1200))
            );
            assert_eq!(
                v4s.last_error, None,
                "an error older than the success is history"
            );
            assert_eq!(pending(s.conn(), 10).unwrap().len(), 1);
            assert_eq!(oldest_pending(s.conn()).unwrap(), Some(rows[1].id));

            // Removal is a change too.
            remove_rules(
                &mut s,
                &SpaceId::new("acme").unwrap(),
                &[RuleCidr::parse("198.51.100.0/24").unwrap()],
                "op",
            )
            .unwrap();
            let rows = pending(s.conn(), 10).unwrap();
            assert_eq!(rows.last().unwrap().topic, "rule.removed");
        });
    }

    #[test]
    fn expiries_in_a_window() {
        on_each_engine(|mut s| {
            import_rules(
                &mut s,
                &[
                    rule(
                        "acme",
                        "198.51.100.0/24",
                        Some(datetime!(2026-06-01 00:00 UTC)),
                    ),
                    rule(
                        "globex",
                        "192.0.2.0/24",
                        Some(datetime!(2026-07-01 00:00 UTC)),
                    ),
                    rule("initech", "203.0.113.0/24", None),
                ],
                "op",
            )
            .unwrap();
            let ids = |v: Vec<SpaceId>| v.iter().map(|s| s.as_str().to_owned()).collect::<Vec<_>>();
            assert_eq!(
                ids(spaces_with_expiries(s.conn(), None, datetime!(2026-06-15 00:00 UTC)).unwrap()),
                ["acme"]
            );
            assert_eq!(
                ids(spaces_with_expiries(
                    s.conn(),
                    Some(datetime!(2026-06-01 00:00 UTC)),
                    datetime!(2026-08-01 00:00 UTC)
                )
                .unwrap()),
                ["globex"]
            );
            assert_eq!(expiries_checked(s.conn(), "local").unwrap(), None);
            set_expiries_checked(&mut s, "local", datetime!(2026-06-15 00:00 UTC)).unwrap();
            assert_eq!(
                expiries_checked(s.conn(), "local").unwrap(),
                Some(datetime!(2026-06-15 00:00 UTC))
            );
        });
    }
}
