//! Revocation drills (migration 13): which certificates in the inventory
//! are a drill's throwaway ones, and how each drill ended.
//!
//! A drill marks its certificate with [`record_in`] inside the transaction
//! that records the certificate itself, so there is never a drill
//! certificate the inventory does not know as one. A drill that dies before
//! it revokes leaves an unfinished row over an active certificate
//! ([`live_leftovers`]); the next drill revokes it before anything else.

use crate::certs::CertRecord;
use crate::{Sql, StoreError, Tx};

/// Mark `serial` (recorded in `certs` in the same transaction) as the
/// throwaway certificate of a drill against `target`; returns the drill's id.
pub fn record_in(tx: &Tx<'_>, serial: &str, target: &str) -> Result<i64, StoreError> {
    tx.query_one(
        "INSERT INTO drills(serial, target, started_at) VALUES (?1, ?2, ?3) RETURNING id",
        &[&serial, &target, &crate::now_rfc3339()],
        |r| r.get(0),
    )
}

/// Record how drill `id` ended (`outcome`: the drill's report).
pub fn finish(conn: &impl Sql, id: i64, outcome: &serde_json::Value) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE drills SET finished_at = ?2, outcome = ?3 WHERE id = ?1",
        &[&id, &crate::now_rfc3339(), &outcome.to_string()],
    )?;
    Ok(())
}

/// Drill certificates that are still active (not revoked), whatever their
/// expiry: left by a drill that died before it revoked. Oldest first.
pub fn live_leftovers(conn: &impl Sql) -> Result<Vec<CertRecord>, StoreError> {
    let serials = conn.query(
        "SELECT c.serial FROM drills d JOIN certs c ON c.serial = d.serial
         WHERE c.status = 'active' ORDER BY d.id",
        &[],
        |r| r.get::<String>(0),
    )?;
    serials.iter().map(|s| crate::certs::get(conn, s)).collect()
}

/// Whether `serial` is a drill's certificate.
pub fn is_drill(conn: &impl Sql, serial: &str) -> Result<bool, StoreError> {
    let n: i64 = conn.query_one(
        "SELECT COUNT(*) FROM drills WHERE serial = ?1",
        &[&serial],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::certs::{NewCert, record_issued, revoke};

    fn cert(serial: &str) -> NewCert<'_> {
        NewCert {
            serial,
            space: "acme",
            user: "eos-drill",
            profile: "service",
            key_fingerprint: serial,
            not_before: "2026-01-01T00:00:00Z",
            not_after: "2026-01-01T00:10:00Z",
            signer: crate::certs::LOCAL_SIGNER,
            pem: "-",
            renewed_from: None,
        }
    }

    #[test]
    fn an_unrevoked_drill_certificate_is_a_leftover_until_revoked() {
        crate::testing::on_each_engine(|mut store| {
            let tx = store.transaction().unwrap();
            record_issued(&tx, &cert("0a")).unwrap();
            record_issued(&tx, &cert("0b")).unwrap();
            let id = record_in(&tx, "0a", "https://x/").unwrap();
            tx.commit().unwrap();
            assert!(is_drill(store.conn(), "0a").unwrap());
            assert!(!is_drill(store.conn(), "0b").unwrap());
            let left = live_leftovers(store.conn()).unwrap();
            assert_eq!(left.len(), 1);
            assert_eq!(left[0].serial, "0a");
            let tx = store.transaction().unwrap();
            revoke(&tx, "0a", "2026-01-01T00:01:00Z", "cessation-of-operation").unwrap();
            tx.commit().unwrap();
            assert!(live_leftovers(store.conn()).unwrap().is_empty());
            finish(store.conn(), id, &serde_json::json!({"status": "passed"})).unwrap();
            let outcome = store
                .conn()
                .query_one("SELECT outcome FROM drills WHERE id = ?1", &[&id], |r| {
                    r.get::<String>(0)
                })
                .unwrap();
            assert_eq!(outcome, r#"{"status":"passed"}"#);
        });
    }
}
