//! IPSets in the state store: the local backend (the embedded default),
//! saved plans, and what eos-sec wrote to each backend's sets (so entries it
//! did not write are drift, reported and never removed).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use crate::db::Sql;
use eos_ipset::{IpNet, canonical, parse_net};
use eos_plan::{ActualSet, AppliedSet, BackendError, IpSetBackend, IpSetName, LockToken, NewIpSet};
use serde_json::json;

use crate::{AuditEntry, Store, StoreError, StoreLocation, audit_in, now_rfc3339};

/// Entries eos-sec wrote to `name` on `backend` and has not removed since.
pub fn managed_entries(
    conn: &impl Sql,
    backend: &str,
    name: &IpSetName,
) -> Result<BTreeSet<String>, StoreError> {
    Ok(conn
        .query(
            "SELECT cidr FROM managed_entries WHERE backend = ?1 AND name = ?2",
            &[&backend, &name.to_string()],
            |r| r.get(0),
        )?
        .into_iter()
        .collect())
}

/// Save a plan as shown; its id.
pub fn save_plan(
    store: &mut Store,
    backend: &str,
    body: &str,
    actor: &str,
) -> Result<i64, StoreError> {
    let tx = store.transaction()?;
    let id = save_plan_in(&tx, backend, body, actor)?;
    tx.commit()?;
    Ok(id)
}

/// [`save_plan`] inside the caller's transaction.
pub fn save_plan_in(
    tx: &impl Sql,
    backend: &str,
    body: &str,
    actor: &str,
) -> Result<i64, StoreError> {
    let id: i64 = tx.query_one(
        "INSERT INTO plans(created, backend, body) VALUES (?1, ?2, ?3) RETURNING id",
        &[&now_rfc3339(), &backend, &body],
        |r| r.get(0),
    )?;
    audit_in(
        tx,
        &AuditEntry::new(actor, "plan.create", &format!("plan {id}"))
            .with_detail(json!({ "backend": backend })),
    )?;
    Ok(id)
}

/// A managed entry, kept if it is already recorded (both engines' upsert).
const INSERT_MANAGED: &str = "INSERT INTO managed_entries(backend, name, cidr, written_at)
     VALUES (?1, ?2, ?3, ?4) ON CONFLICT(backend, name, cidr) DO NOTHING";

/// Record, before writing, the entries eos-sec is about to add to each set
/// (write-ahead): if the process dies after the backend took the write but
/// before [`record_apply`], the entries are still known as eos-sec's and a
/// later removal removes them instead of keeping them as drift. An intent
/// whose write never happened is harmless: removal only touches entries
/// that are in the set.
pub fn record_intent(
    store: &mut Store,
    backend: &str,
    changes: &[&eos_plan::SetChange],
) -> Result<(), StoreError> {
    let tx = store.transaction()?;
    let now = now_rfc3339();
    for c in changes {
        let name = c.name.to_string();
        for e in &c.add {
            let cidr = canonical(&e.cidr);
            tx.execute(INSERT_MANAGED, &[&backend, &name, &cidr, &now])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Record an apply: the managed entries of each set move by eos-sec's delta
/// (added entries become managed, removed ones stop being), the plan is
/// marked applied, and one audit entry per set — all in one transaction.
pub fn record_apply(
    store: &mut Store,
    backend: &str,
    plan_id: Option<i64>,
    applied: &[AppliedSet],
    actor: &str,
) -> Result<(), StoreError> {
    let tx = store.transaction()?;
    record_apply_in(&tx, backend, plan_id, applied, actor)?;
    tx.commit()?;
    Ok(())
}

/// [`record_apply`] inside the caller's transaction.
pub fn record_apply_in(
    tx: &impl Sql,
    backend: &str,
    plan_id: Option<i64>,
    applied: &[AppliedSet],
    actor: &str,
) -> Result<(), StoreError> {
    let now = now_rfc3339();
    for a in applied {
        let name = a.name.to_string();
        for c in &a.removed {
            tx.execute(
                "DELETE FROM managed_entries WHERE backend = ?1 AND name = ?2 AND cidr = ?3",
                &[&backend, &name, c],
            )?;
        }
        for c in &a.added {
            tx.execute(INSERT_MANAGED, &[&backend, &name, c, &now])?;
        }
        audit_in(
            tx,
            &AuditEntry::new(actor, "ipset.apply", &name).with_detail(json!({
                "backend": backend,
                "plan": plan_id,
                "outcome": a.outcome,
                "added": a.added,
                "removed": a.removed,
                "entries": a.entries.len(),
                "attempts": a.attempts,
            })),
        )?;
    }
    if let Some(id) = plan_id {
        tx.execute(
            "UPDATE plans SET applied_at = ?2 WHERE id = ?1",
            &[&id, &now],
        )?;
    }
    Ok(())
}

/// The local backend: IPSets kept in the state store, with a version number
/// as the lock token, so the same plan/apply contract holds without AWS.
#[derive(Debug)]
pub struct LocalBackend {
    store: Mutex<Store>,
}

impl LocalBackend {
    /// The backend id recorded in plans.
    pub const ID: &'static str = "local";

    /// Open the local backend on its own connection to the state in `dir`.
    pub fn open(dir: &Path) -> Result<LocalBackend, StoreError> {
        Self::open_at(&StoreLocation::Dir(dir.to_path_buf()))
    }

    /// Open the local backend on its own connection to the store at
    /// `location` (its sets live in the store, on either engine).
    pub fn open_at(location: &StoreLocation) -> Result<LocalBackend, StoreError> {
        Ok(LocalBackend {
            store: Mutex::new(Store::open_at(location)?),
        })
    }

    /// On an already open store (tests, in-memory dry runs).
    pub fn new(store: Store) -> LocalBackend {
        LocalBackend {
            store: Mutex::new(store),
        }
    }

    fn with_store<T>(
        &self,
        name: &IpSetName,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, BackendError> {
        self.with_acl_store(&name.to_string(), f)
    }

    /// Run `f` on the store; failures are backend failures naming `name`
    /// (an IPSet or a Web ACL).
    pub(crate) fn with_acl_store<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, BackendError> {
        let mut guard = self.store.lock().map_err(|_| BackendError::Failed {
            name: name.to_owned(),
            detail: "local backend lock poisoned".into(),
        })?;
        f(&mut guard).map_err(|e| BackendError::Failed {
            name: name.to_owned(),
            detail: e.to_string(),
        })
    }

    /// Every local set's name (for listing).
    pub fn names(&self) -> Result<Vec<String>, StoreError> {
        let guard = self.store.lock().map_err(|_| StoreError::Corrupt {
            what: "local backend",
            detail: "lock poisoned".into(),
        })?;
        guard
            .conn()
            .query("SELECT name FROM local_ipsets ORDER BY name", &[], |r| {
                r.get(0)
            })
    }
}

fn encode(addresses: &[IpNet]) -> String {
    let v: Vec<String> = addresses.iter().map(canonical).collect();
    crate::to_json(&v)
}

fn read_row(
    conn: &impl Sql,
    name: &IpSetName,
) -> Result<Option<(String, String, i64)>, StoreError> {
    conn.query_opt(
        "SELECT addresses, description, version FROM local_ipsets WHERE name = ?1",
        &[&name.to_string()],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}

impl IpSetBackend for LocalBackend {
    fn id(&self) -> String {
        Self::ID.to_owned()
    }

    async fn read(&self, name: &IpSetName) -> Result<Option<ActualSet>, BackendError> {
        let row = self.with_store(name, |s| read_row(s.conn(), name))?;
        let Some((addresses, description, version)) = row else {
            return Ok(None);
        };
        let malformed = |detail: String| BackendError::Malformed {
            name: name.to_string(),
            detail,
        };
        let list: Vec<String> =
            serde_json::from_str(&addresses).map_err(|e| malformed(e.to_string()))?;
        let addresses = list
            .iter()
            .map(|s| {
                parse_net(s)
                    .map(|p| p.net)
                    .map_err(|e| malformed(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(ActualSet {
            name: name.clone(),
            addresses,
            description,
            lock: LockToken(version.to_string()),
        }))
    }

    async fn create(&self, set: &NewIpSet) -> Result<LockToken, BackendError> {
        let name = &set.name;
        let outcome = self.with_store(name, |s| {
            let tx = s.transaction()?;
            if read_row(&tx, name)?.is_some() {
                return Ok(None);
            }
            let tags: serde_json::Map<String, serde_json::Value> =
                set.tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            tx.execute(
                "INSERT INTO local_ipsets(name, space, family, description, tags, addresses, version, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)",
                &[
                    &name.to_string(),
                    &set.space.as_str(),
                    &set.family.as_str(),
                    &set.description,
                    &serde_json::Value::Object(tags).to_string(),
                    &encode(&set.addresses),
                    &now_rfc3339(),
                ],
            )?;
            tx.commit()?;
            Ok(Some(LockToken("1".into())))
        })?;
        outcome.ok_or_else(|| BackendError::AlreadyExists {
            name: name.to_string(),
        })
    }

    async fn update(
        &self,
        name: &IpSetName,
        addresses: &[IpNet],
        description: &str,
        lock: &LockToken,
    ) -> Result<LockToken, BackendError> {
        enum Outcome {
            Missing,
            Stale,
            Written(i64),
        }
        let outcome = self.with_store(name, |s| {
            let tx = s.transaction()?;
            let Some((_, _, version)) = read_row(&tx, name)? else {
                return Ok(Outcome::Missing);
            };
            if version.to_string() != lock.0 {
                return Ok(Outcome::Stale);
            }
            let next = version + 1;
            tx.execute(
                "UPDATE local_ipsets SET addresses = ?2, description = ?3, version = ?4, updated = ?5 WHERE name = ?1",
                &[&name.to_string(), &encode(addresses), &description, &next, &now_rfc3339()],
            )?;
            tx.commit()?;
            Ok(Outcome::Written(next))
        })?;
        match outcome {
            Outcome::Missing => Err(BackendError::NotFound {
                name: name.to_string(),
            }),
            Outcome::Stale => Err(BackendError::StaleLock {
                name: name.to_string(),
            }),
            Outcome::Written(v) => Ok(LockToken(v.to_string())),
        }
    }

    async fn pause_before_retry(&self, _attempt: u32) {}
}
