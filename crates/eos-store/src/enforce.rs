//! Enforce and roll back in the state store: Web ACL snapshots, the stage
//! each space is at, and the audit entries for both (one transaction each,
//! [`eos_policy::enforce::EnforceJournal`]); and the local backend's Web
//! ACLs ([`eos_policy::WebAclBackend`] for [`LocalBackend`]).

use std::collections::BTreeMap;

use crate::db::{Engine, Param, Row, Sql, Tx};
use eos_identity::SpaceId;
use eos_plan::{BackendError, LockToken};
use eos_policy::edge::GateSnapshot;
use eos_policy::enforce::{
    EnforceJournal, ListenerWrite, NewSnapshot, RunKind, SetSnapshot, Snapshot, StageChange,
    WriteRecord,
};
use eos_policy::waf::WebAcl;
use eos_policy::{AclRead, OwnedAcl, Stage, WebAclBackend, merge_document, owned_of_document};
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

fn decode_snapshot(r: &Row<'_>) -> Result<Snapshot, StoreError> {
    let kind = match r.str(3)? {
        "enforce" => RunKind::Enforce,
        "rollback" => RunKind::Rollback,
        other => return Err(corrupt("snapshot kind", other)),
    };
    let json = |idx: usize| r.str(idx);
    Ok(Snapshot {
        id: r.get(0)?,
        run: r.get(1)?,
        at: r.get(2)?,
        kind,
        space: SpaceId::new(r.str(4)?).map_err(|e| corrupt("snapshot space", e))?,
        backend: r.get(5)?,
        web_acl: r.get(6)?,
        lock: r.get(7)?,
        owned: serde_json::from_str(json(8)?).map_err(|e| corrupt("snapshot owned part", e))?,
        document: serde_json::from_str(json(9)?).map_err(|e| corrupt("snapshot document", e))?,
        sets: serde_json::from_str::<BTreeMap<String, SetSnapshot>>(json(10)?)
            .map_err(|e| corrupt("snapshot sets", e))?,
        stages: serde_json::from_str::<BTreeMap<SpaceId, Stage>>(json(11)?)
            .map_err(|e| corrupt("snapshot stages", e))?,
        gate: r
            .get::<Option<String>>(12)?
            .map(|g| serde_json::from_str::<GateSnapshot>(&g))
            .transpose()
            .map_err(|e| corrupt("snapshot gate", e))?,
    })
}

fn query_snapshot(
    conn: &impl Sql,
    sql_where: &str,
    args: &[&dyn Param],
) -> Result<Option<Snapshot>, StoreError> {
    let sql = format!("SELECT {SNAPSHOT_COLUMNS} FROM acl_snapshots WHERE {sql_where}");
    conn.query_opt(&sql, args, decode_snapshot)
}

/// The id the next snapshot gets, inside the write transaction that
/// inserts it: the first snapshot of a run names the run by this id.
fn next_snapshot_id(tx: &Tx<'_>) -> Result<i64, StoreError> {
    match tx.engine() {
        // AUTOINCREMENT's counter: never reused, even for a rolled-back id.
        Engine::Sqlite => tx.query_one(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'acl_snapshots'), 0) + 1",
            &[],
            |r| r.get(0),
        ),
        // The identity's own sequence, so an insert without an id (a
        // copy by `store migrate`, a raw statement) never collides.
        Engine::Postgres => tx.query_one(
            "SELECT nextval(pg_get_serial_sequence('acl_snapshots', 'id'))",
            &[],
            |r| r.get(0),
        ),
    }
}

/// Every snapshot of a backend's Web ACL, newest first (for listing).
pub fn list_snapshots(
    conn: &impl Sql,
    backend: &str,
    web_acl: &str,
) -> Result<Vec<Snapshot>, StoreError> {
    let sql = format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM acl_snapshots WHERE backend = ?1 AND web_acl = ?2 ORDER BY id DESC"
    );
    conn.query(&sql, &[&backend, &web_acl], decode_snapshot)
}

impl EnforceJournal for Store {
    type Error = StoreError;

    fn stages(
        &mut self,
        backend: &str,
        web_acl: &str,
    ) -> Result<BTreeMap<SpaceId, Stage>, StoreError> {
        let rows = self.conn().query(
            "SELECT space, stage FROM space_stages WHERE backend = ?1 AND web_acl = ?2",
            &[&backend, &web_acl],
            |r| {
                Ok((
                    SpaceId::new(r.str(0)?).map_err(|e| corrupt("stage space", e))?,
                    r.str(1)?
                        .parse::<Stage>()
                        .map_err(|e| corrupt("stage", e))?,
                ))
            },
        )?;
        Ok(rows.into_iter().collect())
    }

    fn save_snapshot(&mut self, s: &NewSnapshot<'_>, actor: &str) -> Result<i64, StoreError> {
        let tx = self.transaction()?;
        let next = next_snapshot_id(&tx)?;
        let run = s.run.unwrap_or(next);
        tx.execute(
            "INSERT INTO acl_snapshots(id, run, at, kind, space, backend, web_acl, lock_token, owned, document, sets, stages, gate)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            &[
                &next,
                &run,
                &now_rfc3339(),
                &s.kind.as_str(),
                &s.space.as_str(),
                &s.backend,
                &s.web_acl,
                &s.read.lock.0,
                &crate::to_json(&s.read.owned),
                &s.read.document.to_string(),
                &crate::to_json(s.sets),
                &crate::to_json(s.stages),
                &s.gate.map(crate::to_json),
            ],
        )?;
        audit_in(
            &tx,
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
        query_snapshot(self.conn(), "id = ?1", &[&id])
    }

    fn latest_enforce_start(
        &mut self,
        backend: &str,
        web_acl: &str,
        space: &SpaceId,
    ) -> Result<Option<Snapshot>, StoreError> {
        query_snapshot(
            self.conn(),
            "id = (SELECT MAX(run) FROM acl_snapshots WHERE backend = ?1 AND web_acl = ?2 AND space = ?3 AND kind = 'enforce')",
            &[&backend, &web_acl, &space.as_str()],
        )
    }

    fn record_write(&mut self, w: &WriteRecord<'_>, actor: &str) -> Result<(), StoreError> {
        self.audit(
            &AuditEntry::new(actor, "webacl.write", w.web_acl).with_detail(json!({
                "backend": w.backend,
                "snapshot": w.snapshot,
                "step": w.kind.as_str(),
                "before": owned_summary(w.before),
                "after": owned_summary(w.after),
            })),
        )?;
        Ok(())
    }

    fn record_listener_write(
        &mut self,
        w: &ListenerWrite<'_>,
        actor: &str,
    ) -> Result<(), StoreError> {
        self.audit(
            &AuditEntry::new(actor, "listener.write", w.arn).with_detail(json!({
                "snapshot": w.snapshot,
                "before": w.before,
                "after": w.after,
            })),
        )?;
        Ok(())
    }

    fn record_stages(&mut self, c: &StageChange<'_>, actor: &str) -> Result<(), StoreError> {
        let tx = self.transaction()?;
        tx.execute(
            "DELETE FROM space_stages WHERE backend = ?1 AND web_acl = ?2",
            &[&c.backend, &c.web_acl],
        )?;
        let now = now_rfc3339();
        for (space, stage) in c.stages {
            tx.execute(
                "INSERT INTO space_stages(backend, web_acl, space, stage, updated) VALUES (?1, ?2, ?3, ?4, ?5)",
                &[&c.backend, &c.web_acl, &space.as_str(), &stage.as_str(), &now],
            )?;
        }
        let mut detail = c.detail.clone();
        if let Some(m) = detail.as_object_mut() {
            m.insert("backend".to_owned(), json!(c.backend));
            m.insert("web_acl".to_owned(), json!(c.web_acl));
        }
        audit_in(
            &tx,
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

fn read_acl_row(conn: &impl Sql, name: &str) -> Result<Option<(String, i64)>, StoreError> {
    conn.query_opt(
        "SELECT document, version FROM local_web_acls WHERE name = ?1",
        &[&name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

impl LocalBackend {
    /// Create a local Web ACL from a whole WAFv2 API document (which may
    /// hold rules eos-sec does not own, custom response bodies, ...).
    pub fn create_acl_document(&self, name: &str, document: &Value) -> Result<(), BackendError> {
        self.with_acl_store(name, |s| {
            let tx = s.transaction()?;
            // The primary key decides between two creators on any instance.
            let created = tx.execute(
                "INSERT INTO local_web_acls(name, document, version, updated) VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT(name) DO NOTHING",
                &[&name, &document.to_string(), &now_rfc3339()],
            )?;
            tx.commit()?;
            Ok(created == 1)
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
            self.with_acl_store(name, |s| read_acl_row(s.conn(), name))?
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
            let tx = s.transaction()?;
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
            // Compare-and-set on the version read: the lock token is kept
            // by the statement itself, whatever else writes the row.
            let written = tx.execute(
                "UPDATE local_web_acls SET document = ?2, version = ?3, updated = ?4
                 WHERE name = ?1 AND version = ?5",
                &[&name, &merged.to_string(), &next, &now_rfc3339(), &version],
            )?;
            if written != 1 {
                return Ok(Outcome::Stale);
            }
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
            Ok(s.conn()
                .query_opt(
                    "SELECT 1 FROM local_ipsets WHERE name = ?1",
                    &[&name],
                    |_| Ok(()),
                )?
                .is_some())
        })?;
        Ok(exists.then(|| local_set_arn(name)))
    }

    async fn tag_ip_set_stage(&self, name: &str, value: &str) -> Result<(), BackendError> {
        self.with_acl_store(name, |s| {
            let tag = eos_plan::STAGE_TAG;
            let sql = match s.engine() {
                Engine::Sqlite => {
                    "UPDATE local_ipsets SET tags = json_set(tags, '$.' || ?2, ?3) WHERE name = ?1"
                }
                Engine::Postgres => {
                    "UPDATE local_ipsets SET tags = (tags::jsonb || jsonb_build_object(?2::text, ?3::text))::text WHERE name = ?1"
                }
            };
            s.conn().execute(sql, &[&name, &tag, &value])?;
            Ok(())
        })
    }

    async fn pause_before_acl_retry(&self, _attempt: u32) {}
}
