//! Security codes (`eos-codes`) in SQLite: the [`CodeStore`] implementation,
//! running inside one transaction, so a check, the use it spends, its audit
//! entry and the caller's action commit together or not at all.
//!
//! Tables (migration 0003): `codes` (keyed hash + binding, immutable but for
//! revocation), `code_uses` (uses per purpose), `code_throttle` (backoff).

use crate::db::{Engine, KeyLock, Row, Sql, Tx};
use eos_codes::{
    Attempt, BackoffPolicy, Binding, CheckError, CodeEvent, CodeHash, CodeId, CodeInfo, CodeKind,
    CodeState, CodeStore, CodeUse, Grant, IssueError, IssueRequest, PepperId, PepperRing, Purpose,
    Purposes, SecurityCode, StoredCode, ThrottleKey, ThrottleState,
};
use eos_identity::{Role, SpaceId, UserId};
use serde::Serialize;
use serde_json::json;

use crate::{AuditEntry, Store, StoreError, audit_in};

/// [`CodeStore`] over a caller's transaction.
#[derive(Debug)]
pub struct SqlCodeStore<'a, 'c> {
    tx: &'a Tx<'c>,
}

impl<'a, 'c> SqlCodeStore<'a, 'c> {
    /// Code storage inside `tx`.
    pub fn new(tx: &'a Tx<'c>) -> Self {
        SqlCodeStore { tx }
    }
}

fn corrupt(what: &'static str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

fn to_i64(n: u32) -> i64 {
    i64::from(n)
}

fn to_u32(n: i64, what: &'static str) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| corrupt(what, n))
}

const CODE_COLUMNS: &str = "code_id, hash, pepper_id, space, user_id, role, kind, purposes, \
     max_uses, issued_at, expires_at, issued_by, revoked_at";

struct CodeRow {
    code_id: String,
    hash: Vec<u8>,
    pepper_id: String,
    space: String,
    user: String,
    role: String,
    kind: String,
    purposes: String,
    max_uses: Option<i64>,
    issued_at: i64,
    expires_at: i64,
    issued_by: String,
    revoked_at: Option<i64>,
}

impl CodeRow {
    fn read(r: &Row<'_>) -> Result<CodeRow, StoreError> {
        Ok(CodeRow {
            code_id: r.get(0)?,
            hash: r.get(1)?,
            pepper_id: r.get(2)?,
            space: r.get(3)?,
            user: r.get(4)?,
            role: r.get(5)?,
            kind: r.get(6)?,
            purposes: r.get(7)?,
            max_uses: r.get(8)?,
            issued_at: r.get(9)?,
            expires_at: r.get(10)?,
            issued_by: r.get(11)?,
            revoked_at: r.get(12)?,
        })
    }

    fn decode(self, conn: &impl Sql) -> Result<CodeState, StoreError> {
        let id = CodeId::parse(&self.code_id).map_err(|e| corrupt("code id", e))?;
        let hash: [u8; 32] = self
            .hash
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("code hash", format!("{id}: not 32 bytes")))?;
        let binding = Binding {
            space: SpaceId::new(&self.space).map_err(|e| corrupt("code space", e))?,
            user: UserId::new(&self.user).map_err(|e| corrupt("code user", e))?,
            role: self
                .role
                .parse::<Role>()
                .map_err(|e| corrupt("code role", e))?,
            kind: CodeKind::parse(&self.kind).ok_or_else(|| corrupt("code kind", &self.kind))?,
            purposes: Purposes::parse(&self.purposes).map_err(|e| corrupt("code purposes", e))?,
            max_uses: self
                .max_uses
                .map(|n| to_u32(n, "code max uses"))
                .transpose()?,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
        };
        let pepper_id = PepperId::from_stored(&self.pepper_id)
            .ok_or_else(|| corrupt("code pepper id", &self.pepper_id))?;
        let rows = conn.query(
            "SELECT purpose, uses FROM code_uses WHERE code_id = ?1",
            &[&id.as_str()],
            |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)),
        )?;
        let mut uses = Vec::new();
        for (purpose, n) in rows {
            let purpose: Purpose = purpose
                .parse()
                .map_err(|e| corrupt("code use purpose", e))?;
            uses.push((purpose, to_u32(n, "code uses")?));
        }
        Ok(CodeState {
            code: StoredCode {
                id,
                hash: CodeHash(hash),
                pepper_id,
                binding,
                issued_by: self.issued_by,
            },
            uses,
            revoked_at: self.revoked_at,
        })
    }
}

/// A code with its uses. `lock`: inside a write transaction that goes on
/// to spend, return or revoke — on PostgreSQL the code's row is locked
/// (`FOR UPDATE`) before its uses are read, so transactions on one code
/// take turns across instances and each reads the uses the one before it
/// committed. (SQLite's write transaction excludes every other writer.)
fn load(conn: &impl Sql, id: &CodeId, lock: bool) -> Result<Option<CodeState>, StoreError> {
    let for_update = match conn.engine() {
        Engine::Postgres if lock => " FOR UPDATE",
        _ => "",
    };
    let row = conn.query_opt(
        &format!("SELECT {CODE_COLUMNS} FROM codes WHERE code_id = ?1{for_update}"),
        &[&id.as_str()],
        CodeRow::read,
    )?;
    row.map(|r| r.decode(conn)).transpose()
}

impl CodeStore for SqlCodeStore<'_, '_> {
    type Error = StoreError;

    fn insert_code(&mut self, code: &StoredCode) -> Result<bool, StoreError> {
        let b = &code.binding;
        let n = self.tx.execute(
            "INSERT INTO codes(code_id, hash, pepper_id, space, user_id, role, kind, purposes,
                               max_uses, issued_at, expires_at, issued_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT(code_id) DO NOTHING",
            &[
                &code.id.as_str(),
                &code.hash.0.as_slice(),
                &code.pepper_id.as_str(),
                &b.space.as_str(),
                &b.user.as_str(),
                &b.role.as_str(),
                &b.kind.as_str(),
                &b.purposes.to_string(),
                &b.max_uses.map(to_i64),
                &b.issued_at,
                &b.expires_at,
                &code.issued_by,
            ],
        )?;
        Ok(n == 1)
    }

    fn load_code(&mut self, id: &CodeId) -> Result<Option<CodeState>, StoreError> {
        load(self.tx, id, true)
    }

    fn record_use(
        &mut self,
        id: &CodeId,
        purpose: Purpose,
        max_uses: Option<u32>,
        now: i64,
    ) -> Result<bool, StoreError> {
        // The limit is enforced in the statement itself as well as by the
        // check before it: a second writer can never push uses past it.
        let n = self.tx.execute(
            "INSERT INTO code_uses(code_id, purpose, uses, last_used_at) VALUES (?1, ?2, 1, ?4)
             ON CONFLICT(code_id, purpose) DO UPDATE
                SET uses = code_uses.uses + 1, last_used_at = excluded.last_used_at
                WHERE CAST(?3 AS BIGINT) IS NULL OR code_uses.uses < ?3",
            &[&id.as_str(), &purpose.as_str(), &max_uses.map(to_i64), &now],
        )?;
        Ok(n == 1)
    }

    fn release_use(&mut self, id: &CodeId, purpose: Purpose) -> Result<bool, StoreError> {
        let n = self.tx.execute(
            "UPDATE code_uses SET uses = uses - 1
             WHERE code_id = ?1 AND purpose = ?2 AND uses > 0",
            &[&id.as_str(), &purpose.as_str()],
        )?;
        Ok(n == 1)
    }

    fn mark_revoked(
        &mut self,
        id: &CodeId,
        by: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self.tx.execute(
            "UPDATE codes SET revoked_at = ?2, revoked_by = ?3, revoke_reason = ?4
             WHERE code_id = ?1 AND revoked_at IS NULL",
            &[&id.as_str(), &now, &by, &reason],
        )?;
        Ok(n == 1)
    }

    fn throttle(&mut self, key: &ThrottleKey) -> Result<Option<ThrottleState>, StoreError> {
        // Read now, written after a refusal (`set_throttle`): two refusals
        // of one source on two instances must both count.
        self.tx.lock_key(KeyLock::Throttle, &key.as_stored())?;
        let row = self.tx.query_opt(
            "SELECT failures, last_failure_at, blocked_until FROM code_throttle WHERE key = ?1",
            &[&key.as_stored()],
            |r| Ok((r.get::<i64>(0)?, r.get::<i64>(1)?, r.get::<i64>(2)?)),
        )?;
        row.map(|(failures, last_failure_at, blocked_until)| {
            Ok(ThrottleState {
                failures: to_u32(failures, "throttle failures")?,
                last_failure_at,
                blocked_until,
            })
        })
        .transpose()
    }

    fn set_throttle(
        &mut self,
        key: &ThrottleKey,
        state: Option<&ThrottleState>,
    ) -> Result<(), StoreError> {
        match state {
            None => {
                self.tx.execute(
                    "DELETE FROM code_throttle WHERE key = ?1",
                    &[&key.as_stored()],
                )?;
            }
            Some(s) => {
                self.tx.execute(
                    "INSERT INTO code_throttle(key, failures, last_failure_at, blocked_until)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(key) DO UPDATE SET failures = excluded.failures,
                        last_failure_at = excluded.last_failure_at,
                        blocked_until = excluded.blocked_until",
                    &[
                        &key.as_stored(),
                        &to_i64(s.failures),
                        &s.last_failure_at,
                        &s.blocked_until,
                    ],
                )?;
            }
        }
        Ok(())
    }

    fn record_event(&mut self, event: &CodeEvent<'_>) -> Result<(), StoreError> {
        let action = event.action();
        match event {
            CodeEvent::Issued { code } => {
                let b = &code.binding;
                audit_in(
                    self.tx,
                    &AuditEntry::new(&code.issued_by, action, code.id.as_str()).with_detail(
                        json!({
                            "space": b.space,
                            "user": b.user,
                            "role": b.role,
                            "kind": b.kind,
                            "purposes": b.purposes,
                            "max_uses": b.max_uses,
                            "expires_at": eos_codes::rfc3339(b.expires_at),
                            "pepper_id": code.pepper_id,
                        }),
                    ),
                )?;
            }
            CodeEvent::Used { usage, source } | CodeEvent::Verified { usage, source } => {
                audit_use(
                    self.tx,
                    action,
                    usage,
                    ("source", json!(source.to_string())),
                )?;
            }
            CodeEvent::Rejected {
                code_id,
                reason,
                purpose,
                source,
                dry_run,
            } => {
                let actor = crate::Actor::Source(&source.to_string()).to_string();
                let subject = code_id.map(CodeId::as_str).unwrap_or("");
                audit_in(
                    self.tx,
                    &AuditEntry::new(&actor, action, subject).with_detail(json!({
                        "reason": reason,
                        "purpose": purpose,
                        "source": source.to_string(),
                        "dry_run": dry_run,
                    })),
                )?;
            }
            CodeEvent::Returned { usage, reason } => {
                audit_use(self.tx, action, usage, ("reason", json!(reason)))?;
            }
            CodeEvent::Revoked {
                code_id,
                by,
                reason,
            } => {
                audit_in(
                    self.tx,
                    &AuditEntry::new(by, action, code_id.as_str())
                        .with_detail(json!({ "reason": reason })),
                )?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Issue a code inside `tx` (with its `code.issue` audit entry). Returns the
/// code — the only copy — and its metadata.
pub fn issue_in(
    tx: &Tx<'_>,
    ring: &PepperRing,
    request: &IssueRequest,
    now: i64,
    issued_by: &str,
) -> Result<(SecurityCode, CodeInfo), IssueError<StoreError>> {
    let mut store = SqlCodeStore::new(tx);
    let (code, stored) = eos_codes::issue(&mut store, ring, request, now, issued_by)?;
    let info = CodeState {
        code: stored,
        uses: Vec::new(),
        revoked_at: None,
    }
    .info(now);
    Ok((code, info))
}

/// Check a code and spend one use inside the caller's transaction, so the
/// registration service can spend the code, write the IP rule or
/// certificate record and the audit entry in one commit.
///
/// On a refusal the failure counts and the `code.reject` audit entry have
/// been written to `tx`: **commit it** before returning the error, or the
/// refusal does not count towards backoff. [`Store::spend_code`] does this
/// for you.
pub fn check_and_spend_in(
    tx: &Tx<'_>,
    ring: &PepperRing,
    policy: &BackoffPolicy,
    attempt: &Attempt<'_>,
    now: i64,
) -> Result<Grant, CheckError<StoreError>> {
    prune_throttle(tx, policy, now).map_err(CheckError::Store)?;
    eos_codes::check_and_spend(&mut SqlCodeStore::new(tx), ring, policy, attempt, now)
}

/// Check a code without spending it (`code verify`), inside `tx`. Refusals
/// count as in [`check_and_spend_in`]; commit `tx` either way.
pub fn verify_in(
    tx: &Tx<'_>,
    ring: &PepperRing,
    policy: &BackoffPolicy,
    attempt: &Attempt<'_>,
    now: i64,
) -> Result<CodeUse, CheckError<StoreError>> {
    prune_throttle(tx, policy, now).map_err(CheckError::Store)?;
    eos_codes::verify(&mut SqlCodeStore::new(tx), ring, policy, attempt, now)
}

/// An audit entry about one use of a code: the code as actor, its space as
/// subject, the use's fields and one more (`source` or `reason`).
fn audit_use(
    tx: &Tx<'_>,
    action: &str,
    usage: &CodeUse,
    (key, value): (&str, serde_json::Value),
) -> Result<(), StoreError> {
    let mut detail = json!({
        "code_id": usage.code_id,
        "user": usage.user,
        "role": usage.role,
        "kind": usage.kind,
        "purpose": usage.purpose,
        "use_number": usage.use_number,
        "max_uses": usage.max_uses,
    });
    if let Some(fields) = detail.as_object_mut() {
        fields.insert(key.to_owned(), value);
    }
    let actor = crate::Actor::Code(usage.code_id.as_str()).to_string();
    audit_in(
        tx,
        &AuditEntry::new(&actor, action, usage.space.as_str()).with_detail(detail),
    )?;
    Ok(())
}

/// Give back the use `grant` spent, inside `tx` (see
/// [`eos_codes::return_use`]).
pub fn return_use_in(tx: &Tx<'_>, grant: Grant, reason: &str) -> Result<(), StoreError> {
    eos_codes::return_use(&mut SqlCodeStore::new(tx), grant, reason)
}

/// Revoke a code inside `tx`. `Ok(false)`: unknown or already revoked.
pub fn revoke_in(
    tx: &Tx<'_>,
    id: &CodeId,
    by: &str,
    reason: &str,
    now: i64,
) -> Result<bool, StoreError> {
    eos_codes::revoke(&mut SqlCodeStore::new(tx), id, by, reason, now)
}

/// Forget failure counts that have reset and no longer block, so an open
/// endpoint cannot grow the table without bound.
fn prune_throttle(tx: &Tx<'_>, policy: &BackoffPolicy, now: i64) -> Result<(), StoreError> {
    let reset = i64::try_from(policy.reset_after.as_secs()).unwrap_or(i64::MAX);
    // On PostgreSQL rows another transaction holds are left for a later
    // prune: concurrent checks never wait for (or deadlock over) each
    // other's housekeeping.
    let sql = match tx.engine() {
        Engine::Sqlite => {
            "DELETE FROM code_throttle WHERE last_failure_at < ?1 AND blocked_until <= ?2"
        }
        Engine::Postgres => {
            "DELETE FROM code_throttle WHERE key IN (
                 SELECT key FROM code_throttle WHERE last_failure_at < ?1 AND blocked_until <= ?2
                 FOR UPDATE SKIP LOCKED)"
        }
    };
    tx.execute(sql, &[&now.saturating_sub(reset), &now])?;
    Ok(())
}

/// One code's metadata by id.
pub fn code_info(conn: &impl Sql, id: &CodeId, now: i64) -> Result<Option<CodeInfo>, StoreError> {
    Ok(load(conn, id, false)?.map(|s| s.info(now)))
}

/// Which codes `code list` shows.
#[derive(Debug, Clone, Default)]
pub struct CodeFilter {
    /// Only this space.
    pub space: Option<SpaceId>,
    /// Include expired, spent and revoked codes.
    pub include_inactive: bool,
}

/// Code metadata (never hashes, never codes), in issue order.
pub fn list_codes(
    conn: &impl Sql,
    filter: &CodeFilter,
    now: i64,
) -> Result<Vec<CodeInfo>, StoreError> {
    // Issue order; within one second, insertion order on SQLite (its rowid)
    // and the code id on PostgreSQL (which keeps no insertion order).
    let tie = match conn.engine() {
        Engine::Sqlite => "rowid",
        Engine::Postgres => "code_id",
    };
    let rows = conn.query(
        &format!(
            "SELECT {CODE_COLUMNS} FROM codes
             WHERE (CAST(?1 AS TEXT) IS NULL OR space = ?1)
             ORDER BY issued_at, {tie}"
        ),
        &[&filter.space.as_ref().map(SpaceId::as_str)],
        CodeRow::read,
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let info = row.decode(conn)?.info(now);
        if filter.include_inactive || info.status == eos_codes::Status::Live {
            out.push(info);
        }
    }
    Ok(out)
}

/// Live codes per pepper: what a pepper rotation must keep checkable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PepperUsage {
    /// The pepper.
    pub pepper_id: PepperId,
    /// Codes under it that are neither expired nor revoked.
    pub live_codes: u64,
    /// RFC 3339: after this no code needs the pepper.
    pub needed_until: String,
}

/// Live (unexpired, unrevoked) codes grouped by pepper id.
pub fn pepper_usage(conn: &impl Sql, now: i64) -> Result<Vec<PepperUsage>, StoreError> {
    let rows = conn.query(
        "SELECT pepper_id, count(*), max(expires_at) FROM codes
         WHERE revoked_at IS NULL AND expires_at > ?1
         GROUP BY pepper_id ORDER BY pepper_id",
        &[&now],
        |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?, r.get::<i64>(2)?)),
    )?;
    let mut out = Vec::new();
    for (id, n, until) in rows {
        out.push(PepperUsage {
            pepper_id: PepperId::from_stored(&id).ok_or_else(|| corrupt("code pepper id", &id))?,
            live_codes: u64::try_from(n).unwrap_or(0),
            needed_until: eos_codes::rfc3339(until),
        });
    }
    Ok(out)
}

/// Revoke every live code whose hash was made with `pepper_id` (after that
/// pepper leaked, or to retire it early). Returns the revoked ids.
pub fn revoke_pepper_in(
    tx: &Tx<'_>,
    pepper_id: &PepperId,
    by: &str,
    reason: &str,
    now: i64,
) -> Result<Vec<CodeId>, StoreError> {
    let ids: Vec<String> = tx.query(
        "SELECT code_id FROM codes
         WHERE pepper_id = ?1 AND revoked_at IS NULL AND expires_at > ?2
         ORDER BY code_id",
        &[&pepper_id.as_str(), &now],
        |r| r.get(0),
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let id = CodeId::parse(&id).map_err(|e| corrupt("code id", e))?;
        if revoke_in(tx, &id, by, reason, now)? {
            out.push(id);
        }
    }
    Ok(out)
}

/// Check a code, spend one use and run `action` with the grant, inside the
/// caller's transaction (or savepoint): [`Store::spend_code_keeping_grant`]
/// without its transaction, for callers that choose the transaction (one
/// without the store's write lock, [`Store::concurrent_transaction`]) or
/// share one between several requests (group commit, each request in a
/// savepoint). What was written must be kept exactly when
/// [`keeps_writes`] says so: on success (the use, the action's writes, the
/// audit entries) and on a refusal (its failure count and audit entry);
/// after an action or store error it must be rolled back.
pub fn spend_in<T, E>(
    tx: &Tx<'_>,
    ring: &PepperRing,
    policy: &BackoffPolicy,
    attempt: &Attempt<'_>,
    now: i64,
    action: impl FnOnce(&Tx<'_>, &Grant) -> Result<T, E>,
) -> Result<(Grant, T), SpendError<E>> {
    match check_and_spend_in(tx, ring, policy, attempt, now) {
        Ok(grant) => {
            let out = action(tx, &grant).map_err(SpendError::Action)?;
            Ok((grant, out))
        }
        Err(CheckError::Store(e)) => Err(SpendError::Store(e)),
        Err(refused) => Err(SpendError::Check(refused)),
    }
}

/// Whether [`spend_in`]'s writes are to be committed: after a success or
/// a refusal, not after an action's or the store's error.
pub fn keeps_writes<T, E>(outcome: &Result<T, SpendError<E>>) -> bool {
    matches!(outcome, Ok(_) | Err(SpendError::Check(_)))
}

/// Why [`Store::spend_code`] did not run the action to completion.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpendError<E> {
    /// The code was refused or the source is backing off; the failure was
    /// recorded and committed, the action did not run.
    #[error(transparent)]
    Check(CheckError<StoreError>),
    /// The action failed: everything, including the use, was rolled back.
    #[error("action after the code check: {0}")]
    Action(#[source] E),
    /// Committing failed; nothing was changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Issue a code in its own transaction.
    pub fn issue_code(
        &mut self,
        ring: &PepperRing,
        request: &IssueRequest,
        now: i64,
        issued_by: &str,
    ) -> Result<(SecurityCode, CodeInfo), IssueError<StoreError>> {
        let tx = self.transaction().map_err(IssueError::Store)?;
        let out = issue_in(&tx, ring, request, now, issued_by)?;
        tx.commit().map_err(IssueError::Store)?;
        Ok(out)
    }

    /// Check a code, spend one use and run `action` with the grant, all in
    /// one transaction: the use, the action's writes and the audit entries
    /// commit together. If the action fails, nothing is written and the code
    /// is not spent. If the code is refused, the action does not run and the
    /// refusal (failure counts, audit entry) is committed.
    pub fn spend_code<T, E>(
        &mut self,
        ring: &PepperRing,
        policy: &BackoffPolicy,
        attempt: &Attempt<'_>,
        now: i64,
        action: impl FnOnce(&Tx<'_>, &Grant) -> Result<T, E>,
    ) -> Result<T, SpendError<E>> {
        self.spend_code_keeping_grant(ring, policy, attempt, now, action)
            .map(|(_, out)| out)
    }

    /// [`Store::spend_code`] for an action that goes on after the commit:
    /// the use, `action`'s writes and the audit entries commit together, and
    /// the grant comes back with `action`'s result. The caller finishes the
    /// action in a later transaction, or gives the use back with
    /// [`return_use_in`] if it fails. Until then the use counts as spent, so
    /// a code with one use left cannot be spent twice meanwhile; if the
    /// process dies before either, the use stays spent (refused, not
    /// reopened: a new code is needed).
    pub fn spend_code_keeping_grant<T, E>(
        &mut self,
        ring: &PepperRing,
        policy: &BackoffPolicy,
        attempt: &Attempt<'_>,
        now: i64,
        action: impl FnOnce(&Tx<'_>, &Grant) -> Result<T, E>,
    ) -> Result<(Grant, T), SpendError<E>> {
        let tx = self.transaction()?;
        let out = spend_in(&tx, ring, policy, attempt, now, action);
        if keeps_writes(&out) {
            tx.commit()?;
        }
        out
    }

    /// Check a code without spending it, committing the outcome's audit
    /// entry and failure counts.
    pub fn verify_code(
        &mut self,
        ring: &PepperRing,
        policy: &BackoffPolicy,
        attempt: &Attempt<'_>,
        now: i64,
    ) -> Result<CodeUse, CheckError<StoreError>> {
        let tx = self.transaction().map_err(CheckError::Store)?;
        let out = verify_in(&tx, ring, policy, attempt, now);
        if let Err(CheckError::Store(_)) = out {
            return out;
        }
        tx.commit().map_err(CheckError::Store)?;
        out
    }

    /// Revoke a code in its own transaction.
    pub fn revoke_code(
        &mut self,
        id: &CodeId,
        by: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let tx = self.transaction()?;
        let done = revoke_in(&tx, id, by, reason, now)?;
        tx.commit()?;
        Ok(done)
    }
}
