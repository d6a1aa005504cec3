//! The certificate gate's record (migration 9): per backend, ALB trust
//! store and API Gateway domain, what eos-sec attached — written only after
//! the backend read it back — and the last error. `eos-sec gate publish`
//! writes it, `eos-sec gate status` reads it beside the live state.

use crate::db::{Row, Sql};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use crate::rules::corrupt;
use crate::{AuditEntry, Store, StoreError, audit_in, format_rfc3339};

/// What a gate target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// An ALB trust store (record: `eos_policy::gate::TrustStoreRecord`).
    TrustStore,
    /// An API Gateway custom domain (record: `eos_policy::gate::DomainRecord`).
    Domain,
}

impl TargetKind {
    /// `trust-store` or `domain`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::TrustStore => "trust-store",
            TargetKind::Domain => "domain",
        }
    }
}

/// A gate target: a trust store or domain on one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The backend (`aws:<region>`).
    pub backend: &'a str,
    /// Trust store or domain.
    pub kind: TargetKind,
    /// Its name.
    pub name: &'a str,
}

/// One target's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRow<R> {
    /// What eos-sec attached, as read back; `None` before the first success.
    pub record: Option<R>,
    /// When the record was written (RFC 3339).
    pub updated_at: Option<String>,
    /// The last failure, when newer than the record.
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<String>,
}

/// The row of `(backend, kind, name)`, `None` when eos-sec never touched it.
pub fn target<R: DeserializeOwned>(
    conn: &impl Sql,
    t: Target<'_>,
) -> Result<Option<TargetRow<R>>, StoreError> {
    conn.query_opt(
        "SELECT record, updated_at, last_error, last_error_at FROM gate_targets
         WHERE backend = ?1 AND kind = ?2 AND name = ?3",
        &[&t.backend, &t.kind.as_str(), &t.name],
        |r| target_row(r, 0),
    )
}

/// Record what was attached to a target after it was read back, clearing
/// its error, with an audit entry (`gate.publish`) in the same transaction.
pub fn record_success<R: Serialize>(
    store: &mut Store,
    t: Target<'_>,
    record: &R,
    detail: serde_json::Value,
    actor: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(record).map_err(|e| corrupt("gate target", e))?;
    let tx = store.transaction()?;
    tx.execute(
        "INSERT INTO gate_targets(backend, kind, name, record, updated_at, last_error, last_error_at)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL, NULL)
         ON CONFLICT(backend, kind, name) DO UPDATE SET
           record = excluded.record, updated_at = excluded.updated_at,
           last_error = NULL, last_error_at = NULL",
        &[&t.backend, &t.kind.as_str(), &t.name, &json, &format_rfc3339(now)],
    )?;
    audit_in(
        &tx,
        &AuditEntry::new(
            actor,
            "gate.publish",
            &format!("{}:{}", t.kind.as_str(), t.name),
        )
        .with_detail(detail),
    )?;
    tx.commit()?;
    Ok(())
}

/// Record a failure for a target (its record stays as it was).
pub fn record_error(
    store: &mut Store,
    t: Target<'_>,
    error: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    store.conn().execute(
        "INSERT INTO gate_targets(backend, kind, name, last_error, last_error_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(backend, kind, name) DO UPDATE SET
           last_error = excluded.last_error, last_error_at = excluded.last_error_at",
        &[
            &t.backend,
            &t.kind.as_str(),
            &t.name,
            &error,
            &format_rfc3339(now),
        ],
    )?;
    Ok(())
}

/// Queue CRL `number` for delivery to the edge, in the caller's transaction
/// (the one that records the CRL).
pub fn enqueue_crl(tx: &impl Sql, number: u64, now: OffsetDateTime) -> Result<(), StoreError> {
    let number = i64::try_from(number).map_err(|_| corrupt("crl number", number))?;
    tx.execute(
        "INSERT INTO gate_outbox(at, crl_number) VALUES (?1, ?2)",
        &[&format_rfc3339(now), &number],
    )?;
    Ok(())
}

/// The `crl_number` of a row queued by a revocation at a CA that signs its
/// own CRL (AWS Private CA): the number is known only once the CA has
/// published it. The local CA numbers its CRLs from 1.
const NEXT_CA_CRL: i64 = 0;

/// Queue a revocation at a CA that publishes its own CRL (AWS Private CA),
/// in the caller's transaction (the one that records the revocation): the
/// CA's next CRL is to reach the edge.
pub fn enqueue_ca_crl(tx: &impl Sql, now: OffsetDateTime) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO gate_outbox(at, crl_number) VALUES (?1, ?2)",
        &[&format_rfc3339(now), &NEXT_CA_CRL],
    )?;
    Ok(())
}

/// A CRL waiting to reach the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingCrl {
    /// Row id.
    pub id: i64,
    /// When it was queued (RFC 3339).
    pub at: String,
    /// Its CRL number; `None` for the next CRL of a CA that publishes its
    /// own ([`enqueue_ca_crl`]).
    pub crl_number: Option<u64>,
}

/// The CRLs not yet delivered, oldest first.
pub fn pending_crls(conn: &impl Sql) -> Result<Vec<PendingCrl>, StoreError> {
    conn.query(
        "SELECT id, at, crl_number FROM gate_outbox WHERE delivered_at IS NULL ORDER BY id",
        &[],
        |r| {
            let number: i64 = r.get(2)?;
            Ok(PendingCrl {
                id: r.get(0)?,
                at: r.get(1)?,
                crl_number: if number == NEXT_CA_CRL {
                    None
                } else {
                    Some(u64::try_from(number).map_err(|_| corrupt("gate outbox", number))?)
                },
            })
        },
    )
}

/// Mark the queued CRLs up to row `up_to` delivered, with one audit entry
/// (`gate.delivered`); how many rows.
pub fn mark_crls_delivered(
    store: &mut Store,
    up_to: i64,
    crl_number: u64,
    actor: &str,
    now: OffsetDateTime,
) -> Result<usize, StoreError> {
    let tx = store.transaction()?;
    let n = tx.execute(
        "UPDATE gate_outbox SET delivered_at = ?1 WHERE delivered_at IS NULL AND id <= ?2",
        &[&format_rfc3339(now), &up_to],
    )?;
    if n > 0 {
        audit_in(
            &tx,
            &AuditEntry::new(actor, "gate.delivered", &format!("crl {crl_number}"))
                .with_detail(serde_json::json!({ "rows": n, "up_to": up_to })),
        )?;
    }
    tx.commit()?;
    Ok(n)
}

/// A target's row with its key: backend, kind (`trust-store`, `domain`),
/// name, and the row with its record as JSON.
pub type TargetListing = (String, String, String, TargetRow<serde_json::Value>);

/// Every target eos-sec has a row for, by backend, kind and name.
pub fn targets(conn: &impl Sql) -> Result<Vec<TargetListing>, StoreError> {
    conn.query(
        "SELECT backend, kind, name, record, updated_at, last_error, last_error_at
         FROM gate_targets ORDER BY backend, kind, name",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, target_row(r, 3)?)),
    )
}

/// A target's row from column `from` on: record (JSON), updated_at,
/// last_error, last_error_at.
fn target_row<R: DeserializeOwned>(r: &Row<'_>, from: usize) -> Result<TargetRow<R>, StoreError> {
    Ok(TargetRow {
        record: r
            .get::<Option<String>>(from)?
            .map(|j| serde_json::from_str(&j).map_err(|e| corrupt("gate target", e)))
            .transpose()?,
        updated_at: r.get(from + 1)?,
        last_error: r.get(from + 2)?,
        last_error_at: r.get(from + 3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::on_each_engine;

    #[test]
    fn success_replaces_the_record_and_clears_the_error() {
        on_each_engine(|mut s| {
            let now = OffsetDateTime::UNIX_EPOCH;
            let t = Target {
                backend: "aws:x",
                kind: TargetKind::TrustStore,
                name: "ts",
            };
            let domain = Target {
                kind: TargetKind::Domain,
                ..t
            };
            assert!(target::<serde_json::Value>(s.conn(), t).unwrap().is_none());
            record_error(&mut s, t, "boom", now).unwrap();
            let row = target::<serde_json::Value>(s.conn(), t).unwrap().unwrap();
            assert_eq!(
                (row.record, row.last_error.as_deref()),
                (None, Some("boom"))
            );
            let rec = serde_json::json!({"arn": "a"});
            record_success(&mut s, t, &rec, serde_json::json!({}), "t", now).unwrap();
            record_error(&mut s, domain, "other", now).unwrap();
            let row = target::<serde_json::Value>(s.conn(), t).unwrap().unwrap();
            assert_eq!(row.record, Some(rec.clone()));
            assert_eq!(row.last_error, None);
            assert_eq!(row.updated_at.as_deref(), Some("1970-01-01T00:00:00Z"));
            let all = targets(s.conn()).unwrap();
            let keys: Vec<(&str, &str)> = all
                .iter()
                .map(|(_, kind, name, _)| (kind.as_str(), name.as_str()))
                .collect();
            assert_eq!(keys, [("domain", "ts"), ("trust-store", "ts")]);
            assert_eq!(all[1].3.record, Some(rec));
            assert_eq!(all[0].3.last_error.as_deref(), Some("other"));
            // The success and its audit entry were one transaction.
            assert_eq!(s.audit_log(10).unwrap()[0].action, "gate.publish");
        });
    }

    #[test]
    fn queued_crls_stay_pending_until_marked() {
        on_each_engine(|mut s| {
            let now = OffsetDateTime::UNIX_EPOCH;
            let tx = s.transaction().unwrap();
            enqueue_crl(&tx, 2, now).unwrap();
            enqueue_crl(&tx, 3, now).unwrap();
            enqueue_ca_crl(&tx, now).unwrap();
            tx.commit().unwrap();
            let pending = pending_crls(s.conn()).unwrap();
            let numbers: Vec<Option<u64>> = pending.iter().map(|p| p.crl_number).collect();
            assert_eq!(numbers, [Some(2), Some(3), None]);
            assert_eq!(
                mark_crls_delivered(&mut s, pending[0].id, 2, "t", now).unwrap(),
                1
            );
            assert_eq!(pending_crls(s.conn()).unwrap().len(), 2);
            assert_eq!(
                mark_crls_delivered(&mut s, pending[2].id, 3, "t", now).unwrap(),
                2
            );
            assert!(pending_crls(s.conn()).unwrap().is_empty());
            assert_eq!(
                mark_crls_delivered(&mut s, pending[2].id, 3, "t", now).unwrap(),
                0,
                "nothing is delivered twice"
            );
        });
    }

    /// The outbox's record is kept by the database, whoever writes: a
    /// delivery is never undone, moved or forgotten, and a queued CRL's
    /// number never changes.
    #[test]
    fn a_delivered_crl_stays_delivered_even_for_a_raw_statement() {
        on_each_engine(|mut s| {
            let now = OffsetDateTime::UNIX_EPOCH;
            let tx = s.transaction().unwrap();
            enqueue_crl(&tx, 2, now).unwrap();
            enqueue_crl(&tx, 3, now).unwrap();
            tx.commit().unwrap();
            let first = pending_crls(s.conn()).unwrap()[0].id;
            mark_crls_delivered(&mut s, first, 2, "t", now).unwrap();
            for sql in [
                "UPDATE gate_outbox SET delivered_at = NULL",
                "UPDATE gate_outbox SET delivered_at = 'later' WHERE delivered_at IS NOT NULL",
                "UPDATE gate_outbox SET crl_number = 9",
                "DELETE FROM gate_outbox",
            ] {
                let err = s.conn().execute(sql, &[]).unwrap_err();
                assert!(
                    err.to_string().contains("only marked delivered, once"),
                    "{sql}: {err}"
                );
            }
            let pending = pending_crls(s.conn()).unwrap();
            assert_eq!(pending.len(), 1);
            assert_eq!(pending[0].crl_number, Some(3));
        });
    }
}
