//! Enforce and roll back in the state store: Web ACL snapshots, the stage
//! each space is at, and the audit entries for both (one transaction each,
//! [`eos_policy::enforce::EnforceJournal`]); and the local backend's Web
//! ACLs ([`eos_policy::WebAclBackend`] for [`LocalBackend`]).

use std::collections::BTreeMap;

use crate::db::Sql;
use eos_identity::SpaceId;
use eos_plan::{BackendError, LockToken};
use eos_policy::edge::GateSnapshot;
use eos_policy::enforce::{
    EnforceJournal, ListenerWrite, NewSnapshot, RunKind, SetSnapshot, Snapshot, StageChange,
    WriteRecord,
};
use eos_policy::waf::WebAcl;
use eos_policy::{AclRead, OwnedAcl, Stage, WebAclBackend, merge_document, owned_of_document};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use crate::ipsets::LocalBackend;
use crate::{AuditEntry, Store, StoreError, audit_in, now_rfc3339};

fn corrupt(what: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: e.to_string(),
    }
}

fn owned_summary(o: &OwnedAcl) -> Value {
    json!({ "default_action": o.default_action.as_str(), "rules": o.rule_names() })
}

const SNAPSHOT_COLUMNS: &str =
    "id, run, at, kind, space, backend, web_acl, lock_token, owned, document, sets, stages, gate";

/// The columns after the first ten: sets, stages, gate.
type SnapshotTail = (String, String, Option<String>);

fn snapshot_tail(r: &rusqlite::Row<'_>) -> rusqlite::Result<SnapshotTail> {
    Ok((r.get(10)?, r.get(11)?, r.get(12)?))
}

fn snapshot_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<[String; 10]> {
    Ok([
        r.get::<_, i64>(0)?.to_string(),
        r.get::<_, i64>(1)?.to_string(),
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ])
}

fn decode_snapshot(row: [String; 10], tail: SnapshotTail) -> Result<Snapshot, StoreError> {
    let (sets, stages, gate) = tail;
    let [
        id,
        run,
        at,
        kind,
        space,
        backend,
        web_acl,
        lock,
        owned,
        document,
    ] = row;
    let kind = match kind.as_str() {
        "enforce" => RunKind::Enforce,
        "rollback" => RunKind::Rollback,
        other => return Err(corrupt("snapshot kind", other)),
    };
    Ok(Snapshot {
        id: id.parse().map_err(|e| corrupt("snapshot id", e))?,
        run: run.parse().map_err(|e| corrupt("snapshot run", e))?,
        at,
        kind,
        space: SpaceId::new(&space).map_err(|e| corrupt("snapshot space", e))?,
        backend,
        web_acl,
        lock,
        owned: serde_json::from_str(&owned).map_err(|e| corrupt("snapshot owned part", e))?,
        document: serde_json::from_str(&document).map_err(|e| corrupt("snapshot document", e))?,
        sets: serde_json::from_str::<BTreeMap<String, SetSnapshot>>(&sets)
            .map_err(|e| corrupt("snapshot sets", e))?,
        stages: serde_json::from_str::<BTreeMap<SpaceId, Stage>>(&stages)
            .map_err(|e| corrupt("snapshot stages", e))?,
        gate: gate
            .map(|g| serde_json::from_str::<GateSnapshot>(&g))
            .transpose()
            .map_err(|e| corrupt("snapshot gate", e))?,
    })
}

fn query_snapshot(
    conn: &Connection,
    sql_where: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Option<Snapshot>, StoreError> {
    let sql = format!("SELECT {SNAPSHOT_COLUMNS} FROM acl_snapshots WHERE {sql_where}");
    let row = conn
        .query_row(&sql, args, |r| Ok((snapshot_row(r)?, snapshot_tail(r)?)))
        .optional()?;
    row.map(|(row, tail)| decode_snapshot(row, tail))
        .transpose()
}

/// Every snapshot of a backend's Web ACL, newest first (for listing).
pub fn list_snapshots(
    conn: &impl Sql,
    backend: &str,
    web_acl: &str,
) -> Result<Vec<Snapshot>, StoreError> {
    let conn = conn.sqlite()?;
    let sql = format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM acl_snapshots WHERE backend = ?1 AND web_acl = ?2 ORDER BY id DESC"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![backend, web_acl], |r| {
        Ok((snapshot_row(r)?, snapshot_tail(r)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (row, tail) = row?;
        out.push(decode_snapshot(row, tail)?);
    }
    Ok(out)
}

impl EnforceJournal for Store {
    type Error = StoreError;

    fn stages(
        &mut self,
        backend: &str,
        web_acl: &str,
    ) -> Result<BTreeMap<SpaceId, Stage>, StoreError> {
        let mut stmt = self
            .sqlite()?
            .prepare("SELECT space, stage FROM space_stages WHERE backend = ?1 AND web_acl = ?2")?;
        let rows = stmt.query_map(params![backend, web_acl], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (space, stage) = row?;
            out.insert(
                SpaceId::new(&space).map_err(|e| corrupt("stage space", e))?,
                stage.parse::<Stage>().map_err(|e| corrupt("stage", e))?,
            );
        }
        Ok(out)
    }

    fn save_snapshot(&mut self, s: &NewSnapshot<'_>, actor: &str) -> Result<i64, StoreError> {
        let tx = self.sqlite_transaction()?;
        // The first snapshot of a run names the run: its own id, which is
        // the next rowid (AUTOINCREMENT, inside this write transaction).
        let next: i64 = tx.query_row(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'acl_snapshots'), 0) + 1",
            [],
            |r| r.get(0),
        )?;
        let run = s.run.unwrap_or(next);
        tx.execute(
            "INSERT INTO acl_snapshots(id, run, at, kind, space, backend, web_acl, lock_token, owned, document, sets, stages, gate)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                next,
                run,
                now_rfc3339(),
                s.kind.as_str(),
                s.space.as_str(),
                s.backend,
                s.web_acl,
                s.read.lock.0,
                crate::to_json(&s.read.owned),
                s.read.document.to_string(),
                crate::to_json(s.sets),
                crate::to_json(s.stages),
                s.gate.map(crate::to_json),
            ],
        )?;
        audit_in(
            &*tx,
            &AuditEntry::new(actor, "webacl.snapshot", s.web_acl).with_detail(json!({
                "snapshot": next,
                "run": run,
                "kind": s.kind.as_str(),
                "space": s.space,
                "backend": s.backend,
                "lock_token": s.read.lock.0,
                "owned": owned_summary(&s.read.owned),
                "sets": s.sets.iter().map(|(k, v)| (k.clone(), v.addresses.len())).collect::<BTreeMap<_, _>>(),
                "gate": s.gate,
            })),
        )?;
        tx.commit()?;
        Ok(next)
    }

    fn snapshot(&mut self, id: i64) -> Result<Option<Snapshot>, StoreError> {
        query_snapshot(self.sqlite()?, "id = ?1", &[&id])
    }

    fn latest_enforce_start(
        &mut self,
        backend: &str,
        web_acl: &str,
        space: &SpaceId,
    ) -> Result<Option<Snapshot>, StoreError> {
        query_snapshot(
            self.sqlite()?,
            "id = (SELECT MAX(run) FROM acl_snapshots WHERE backend = ?1 AND web_acl = ?2 AND space = ?3 AND kind = 'enforce')",
            &[&backend, &web_acl, &space.as_str()],
        )
    }

    fn record_write(&mut self, w: &WriteRecord<'_>, actor: &str) -> Result<(), StoreError> {
        let tx = self.sqlite_transaction()?;
        audit_in(
            &*tx,
            &AuditEntry::new(actor, "webacl.write", w.web_acl).with_detail(json!({
                "backend": w.backend,
                "snapshot": w.snapshot,
                "step": w.kind.as_str(),
                "before": owned_summary(w.before),
                "after": owned_summary(w.after),
            })),
        )?;
        tx.commit()?;
        Ok(())
    }

    fn record_listener_write(
        &mut self,
        w: &ListenerWrite<'_>,
        actor: &str,
    ) -> Result<(), StoreError> {
        let tx = self.transaction()?;
        audit_in(
            &tx,
            &AuditEntry::new(actor, "listener.write", w.arn).with_detail(json!({
                "snapshot": w.snapshot,
                "before": w.before,
                "after": w.after,
            })),
        )?;
        tx.commit()?;
        Ok(())
    }

    fn record_stages(&mut self, c: &StageChange<'_>, actor: &str) -> Result<(), StoreError> {
        let tx = self.sqlite_transaction()?;
        tx.execute(
            "DELETE FROM space_stages WHERE backend = ?1 AND web_acl = ?2",
            params![c.backend, c.web_acl],
        )?;
        let now = now_rfc3339();
        for (space, stage) in c.stages {
            tx.execute(
                "INSERT INTO space_stages(backend, web_acl, space, stage, updated) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![c.backend, c.web_acl, space.as_str(), stage.as_str(), now],
            )?;
        }
        let mut detail = c.detail.clone();
        if let Some(m) = detail.as_object_mut() {
            m.insert("backend".to_owned(), json!(c.backend));
            m.insert("web_acl".to_owned(), json!(c.web_acl));
        }
        audit_in(
            &*tx,
            &AuditEntry::new(actor, c.action, c.space.as_str()).with_detail(detail),
        )?;
        tx.commit()?;
        Ok(())
    }
}

/// The ARN-like reference a local Web ACL rule uses for a local IPSet.
pub fn local_set_arn(name: &str) -> String {
    format!("local:ipset/{name}")
}

fn read_acl_row(conn: &Connection, name: &str) -> Result<Option<(String, i64)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT document, version FROM local_web_acls WHERE name = ?1",
            params![name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

impl LocalBackend {
    /// Create a local Web ACL from a whole WAFv2 API document (which may
    /// hold rules eos-sec does not own, custom response bodies, ...).
    pub fn create_acl_document(&self, name: &str, document: &Value) -> Result<(), BackendError> {
        self.with_acl_store(name, |s| {
            let tx = s.sqlite_transaction()?;
            if read_acl_row(&tx, name)?.is_some() {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO local_web_acls(name, document, version, updated) VALUES (?1, ?2, 1, ?3)",
                params![name, document.to_string(), now_rfc3339()],
            )?;
            tx.commit()?;
            Ok(true)
        })?
        .then_some(())
        .ok_or_else(|| BackendError::AlreadyExists {
            name: name.to_owned(),
        })
    }
}

impl WebAclBackend for LocalBackend {
    fn acl_backend_id(&self) -> String {
        Self::ID.to_owned()
    }

    async fn read_acl(&self, name: &str) -> Result<Option<AclRead>, BackendError> {
        let Some((document, version)) =
            self.with_acl_store(name, |s| read_acl_row(s.sqlite()?, name))?
        else {
            return Ok(None);
        };
        let malformed = |detail: String| BackendError::Malformed {
            name: name.to_owned(),
            detail,
        };
        let document: Value =
            serde_json::from_str(&document).map_err(|e| malformed(e.to_string()))?;
        let owned = owned_of_document(&document).map_err(malformed)?;
        Ok(Some(AclRead {
            owned,
            document,
            lock: LockToken(version.to_string()),
        }))
    }

    async fn create_acl(&self, acl: &WebAcl) -> Result<LockToken, BackendError> {
        let doc = serde_json::to_value(acl).map_err(|e| BackendError::Invalid {
            name: acl.name.clone(),
            reason: e.to_string(),
        })?;
        self.create_acl_document(&acl.name, &doc)?;
        Ok(LockToken("1".to_owned()))
    }

    async fn write_acl(
        &self,
        name: &str,
        owned: &OwnedAcl,
        lock: &LockToken,
    ) -> Result<LockToken, BackendError> {
        enum Outcome {
            Missing,
            Stale,
            Bad(String),
            Written(i64),
        }
        let outcome = self.with_acl_store(name, |s| {
            let tx = s.sqlite_transaction()?;
            let Some((document, version)) = read_acl_row(&tx, name)? else {
                return Ok(Outcome::Missing);
            };
            if version.to_string() != lock.0 {
                return Ok(Outcome::Stale);
            }
            let doc: Value = match serde_json::from_str(&document) {
                Ok(d) => d,
                Err(e) => return Ok(Outcome::Bad(e.to_string())),
            };
            let merged = match merge_document(&doc, owned) {
                Ok(m) => m,
                Err(e) => return Ok(Outcome::Bad(e)),
            };
            let next = version + 1;
            tx.execute(
                "UPDATE local_web_acls SET document = ?2, version = ?3, updated = ?4 WHERE name = ?1",
                params![name, merged.to_string(), next, now_rfc3339()],
            )?;
            tx.commit()?;
            Ok(Outcome::Written(next))
        })?;
        match outcome {
            Outcome::Missing => Err(BackendError::NotFound {
                name: name.to_owned(),
            }),
            Outcome::Stale => Err(BackendError::StaleLock {
                name: name.to_owned(),
            }),
            Outcome::Bad(detail) => Err(BackendError::Malformed {
                name: name.to_owned(),
                detail,
            }),
            Outcome::Written(v) => Ok(LockToken(v.to_string())),
        }
    }

    async fn ip_set_arn(&self, name: &str) -> Result<Option<String>, BackendError> {
        let exists = self.with_acl_store(name, |s| {
            Ok(s.sqlite()?
                .query_row(
                    "SELECT 1 FROM local_ipsets WHERE name = ?1",
                    params![name],
                    |_| Ok(()),
                )
                .optional()?
                .is_some())
        })?;
        Ok(exists.then(|| local_set_arn(name)))
    }

    async fn tag_ip_set_stage(&self, name: &str, value: &str) -> Result<(), BackendError> {
        self.with_acl_store(name, |s| {
            s.sqlite()?.execute(
                "UPDATE local_ipsets SET tags = json_set(tags, '$.' || ?2, ?3) WHERE name = ?1",
                params![name, eos_plan::STAGE_TAG, value],
            )?;
            Ok(())
        })
    }

    async fn pause_before_acl_retry(&self, _attempt: u32) {}
}
