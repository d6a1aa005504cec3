//! The CA's inventory: issued certificates, key bindings, revocations, CRLs.
//!
//! Writes take a `&Transaction` so a caller can record a certificate in the
//! same transaction as whatever else the issuance depends on (the
//! registration service spends a security code and records the certificate
//! together, or neither).

use crate::db::{Row, Sql, Tx};
use serde::Serialize;

use crate::StoreError;

/// A certificate as recorded.
/// The `signer` of certificates the local CA key signed (the others name
/// their AWS Private CA by ARN).
pub const LOCAL_SIGNER: &str = "local";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertRecord {
    /// Lower-case hex serial.
    pub serial: String,
    /// The space.
    pub space: String,
    /// The user.
    pub user: String,
    /// The profile.
    pub profile: String,
    /// `sha256:<hex>` of the public key.
    pub key_fingerprint: String,
    /// RFC 3339 UTC.
    pub not_before: String,
    /// RFC 3339 UTC.
    pub not_after: String,
    /// RFC 3339 UTC.
    pub issued_at: String,
    /// [`LOCAL_SIGNER`] or the AWS Private CA ARN.
    pub signer: String,
    /// `active` or `revoked`.
    pub status: String,
    /// When revoked.
    pub revoked_at: Option<String>,
    /// Why revoked.
    pub revocation_reason: Option<String>,
    /// The certificate it renewed (presented to get this one), if any.
    pub renewed_from: Option<String>,
    /// The certificate that renewed it, if any (its one successor).
    pub renewed_by: Option<String>,
    /// The certificate.
    #[serde(skip)]
    pub pem: String,
}

/// A certificate to record (all fields as stored).
#[derive(Debug, Clone, Copy)]
pub struct NewCert<'a> {
    /// Lower-case hex serial.
    pub serial: &'a str,
    /// The space.
    pub space: &'a str,
    /// The user.
    pub user: &'a str,
    /// The profile.
    pub profile: &'a str,
    /// `sha256:<hex>` of the public key.
    pub key_fingerprint: &'a str,
    /// RFC 3339 UTC.
    pub not_before: &'a str,
    /// RFC 3339 UTC.
    pub not_after: &'a str,
    /// [`LOCAL_SIGNER`] or the Private CA ARN.
    pub signer: &'a str,
    /// The certificate PEM.
    pub pem: &'a str,
    /// The certificate this one renews (at most one successor each).
    pub renewed_from: Option<&'a str>,
}

const COLUMNS: &str = "serial, space, \"user\", profile, key_fingerprint, not_before, not_after, \
                       issued_at, signer, status, revoked_at, revocation_reason, pem, renewed_from, \
                       (SELECT n.serial FROM certs n WHERE n.renewed_from = certs.serial) AS renewed_by";

fn row(r: &Row<'_>) -> Result<CertRecord, StoreError> {
    Ok(CertRecord {
        serial: r.get(0)?,
        space: r.get(1)?,
        user: r.get(2)?,
        profile: r.get(3)?,
        key_fingerprint: r.get(4)?,
        not_before: r.get(5)?,
        not_after: r.get(6)?,
        issued_at: r.get(7)?,
        signer: r.get(8)?,
        status: r.get(9)?,
        revoked_at: r.get(10)?,
        revocation_reason: r.get(11)?,
        pem: r.get(12)?,
        renewed_from: r.get(13)?,
        renewed_by: r.get(14)?,
    })
}

/// Record an issued certificate inside the caller's transaction.
pub fn record_issued(tx: &Tx<'_>, cert: &NewCert<'_>) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO certs(serial, space, \"user\", profile, key_fingerprint, not_before, not_after,
                           issued_at, signer, pem, renewed_from)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        &[
            &cert.serial,
            &cert.space,
            &cert.user,
            &cert.profile,
            &cert.key_fingerprint,
            &cert.not_before,
            &cert.not_after,
            &crate::now_rfc3339(),
            &cert.signer,
            &cert.pem,
            &cert.renewed_from,
        ],
    )?;
    Ok(())
}

/// Which account a key is bound to: the first account a certificate for
/// this key was issued to (revoked or not — a key that was revoked for
/// compromise must not come back under another name either).
pub fn key_owner(
    conn: &impl Sql,
    fingerprint: &str,
) -> Result<Option<(String, String)>, StoreError> {
    conn.query_opt(
        "SELECT space, \"user\" FROM certs WHERE key_fingerprint = ?1
         ORDER BY issued_at, serial LIMIT 1",
        &[&fingerprint],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// One certificate by serial.
pub fn get(conn: &impl Sql, serial: &str) -> Result<CertRecord, StoreError> {
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM certs WHERE serial = ?1"),
        &[&serial],
        row,
    )?
    .ok_or_else(|| StoreError::NotFound {
        what: "certificate",
        key: serial.to_owned(),
    })
}

/// Filter for [`list`].
#[derive(Debug, Clone, Default)]
pub struct CertFilter<'a> {
    /// Only this space.
    pub space: Option<&'a str>,
    /// Only this user.
    pub user: Option<&'a str>,
    /// Only this status (`active` or `revoked`).
    pub status: Option<&'a str>,
    /// Only certificates whose notAfter is before this (RFC 3339).
    pub not_after_before: Option<&'a str>,
    /// Only certificates whose notAfter is at or after this (RFC 3339).
    pub not_after_from: Option<&'a str>,
}

/// Certificates, ordered by notAfter then serial.
pub fn list(conn: &impl Sql, f: &CertFilter<'_>) -> Result<Vec<CertRecord>, StoreError> {
    conn.query(
        &format!(
            "SELECT {COLUMNS} FROM certs
             WHERE (CAST(?1 AS TEXT) IS NULL OR space = ?1)
               AND (CAST(?2 AS TEXT) IS NULL OR \"user\" = ?2)
               AND (CAST(?3 AS TEXT) IS NULL OR status = ?3)
               AND (CAST(?4 AS TEXT) IS NULL OR not_after < ?4)
               AND (CAST(?5 AS TEXT) IS NULL OR not_after >= ?5)
             ORDER BY not_after, serial"
        ),
        &[
            &f.space,
            &f.user,
            &f.status,
            &f.not_after_before,
            &f.not_after_from,
        ],
        row,
    )
}

/// What [`revoke`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// Newly revoked.
    Now(CertRecord),
    /// Was already revoked (idempotent: nothing changed).
    Already(CertRecord),
}

/// Mark a certificate revoked inside the caller's transaction.
pub fn revoke(tx: &Tx<'_>, serial: &str, at: &str, reason: &str) -> Result<Revoked, StoreError> {
    let before = get(tx, serial)?;
    if before.status == "revoked" {
        return Ok(Revoked::Already(before));
    }
    tx.execute(
        "UPDATE certs SET status = 'revoked', revoked_at = ?2, revocation_reason = ?3
         WHERE serial = ?1",
        &[&serial, &at, &reason],
    )?;
    Ok(Revoked::Now(get(tx, serial)?))
}

/// Revoked certificates that have not yet expired as of `now` (an expired
/// certificate need not stay on the CRL, RFC 5280 §3.3).
pub fn revoked_unexpired(conn: &impl Sql, now: &str) -> Result<Vec<CertRecord>, StoreError> {
    conn.query(
        &format!(
            "SELECT {COLUMNS} FROM certs WHERE status = 'revoked' AND not_after >= ?1
             ORDER BY revoked_at, serial"
        ),
        &[&now],
        row,
    )
}

/// The next CRL number: one more than the highest issued, 1 for the first.
pub fn next_crl_number(tx: &Tx<'_>) -> Result<u64, StoreError> {
    let max: Option<i64> = tx.query_one("SELECT MAX(number) FROM crls", &[], |r| r.get(0))?;
    let next = max.unwrap_or(0) + 1;
    u64::try_from(next).map_err(|_| StoreError::Corrupt {
        what: "crl number",
        detail: next.to_string(),
    })
}

/// A CRL as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrlRecord {
    /// Its number.
    pub number: u64,
    /// thisUpdate.
    pub this_update: String,
    /// nextUpdate.
    pub next_update: String,
    /// The CRL.
    #[serde(skip)]
    pub pem: String,
}

/// Record a CRL inside the caller's transaction. Refuses a number that is
/// not above every recorded one.
pub fn record_crl(tx: &Tx<'_>, crl: &CrlRecord) -> Result<(), StoreError> {
    let next = next_crl_number(tx)?;
    if crl.number < next {
        return Err(StoreError::Corrupt {
            what: "crl number",
            detail: format!("{} is not above the last issued {}", crl.number, next - 1),
        });
    }
    let number = i64::try_from(crl.number).map_err(|_| StoreError::Corrupt {
        what: "crl number",
        detail: crl.number.to_string(),
    })?;
    tx.execute(
        "INSERT INTO crls(number, this_update, next_update, pem) VALUES (?1, ?2, ?3, ?4)",
        &[&number, &crl.this_update, &crl.next_update, &crl.pem],
    )?;
    Ok(())
}

/// The newest CRL.
pub fn latest_crl(conn: &impl Sql) -> Result<Option<CrlRecord>, StoreError> {
    conn.query_opt(
        "SELECT number, this_update, next_update, pem FROM crls ORDER BY number DESC LIMIT 1",
        &[],
        |r| {
            let n: i64 = r.get(0)?;
            Ok(CrlRecord {
                number: u64::try_from(n).unwrap_or(0),
                this_update: r.get(1)?,
                next_update: r.get(2)?,
                pem: r.get(3)?,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::on_each_engine;

    fn cert<'a>(serial: &'a str, user: &'a str, fp: &'a str, not_after: &'a str) -> NewCert<'a> {
        NewCert {
            serial,
            space: "acme",
            user,
            profile: "cli",
            key_fingerprint: fp,
            not_before: "2026-01-01T00:00:00Z",
            not_after,
            signer: LOCAL_SIGNER,
            pem: "-----BEGIN CERTIFICATE-----\n...",
            renewed_from: None,
        }
    }

    #[test]
    fn record_list_revoke_in_caller_transactions() {
        on_each_engine(|mut s| {
            let tx = s.transaction().unwrap();
            record_issued(
                &tx,
                &cert("0a", "alice", "sha256:aa", "2026-01-04T00:00:00Z"),
            )
            .unwrap();
            record_issued(&tx, &cert("0b", "bob", "sha256:bb", "2026-02-01T00:00:00Z")).unwrap();
            tx.commit().unwrap();

            assert_eq!(
                key_owner(s.conn(), "sha256:aa").unwrap(),
                Some(("acme".into(), "alice".into()))
            );
            assert_eq!(key_owner(s.conn(), "sha256:cc").unwrap(), None);
            let expiring = list(
                s.conn(),
                &CertFilter {
                    not_after_before: Some("2026-01-05T00:00:00Z"),
                    ..CertFilter::default()
                },
            )
            .unwrap();
            assert_eq!(expiring.len(), 1);
            assert_eq!(expiring[0].serial, "0a");

            let tx = s.transaction().unwrap();
            let r = revoke(&tx, "0a", "2026-01-02T00:00:00Z", "key-compromise").unwrap();
            assert!(matches!(r, Revoked::Now(ref c) if c.status == "revoked"));
            let again = revoke(&tx, "0a", "2026-01-03T00:00:00Z", "superseded").unwrap();
            assert!(
                matches!(again, Revoked::Already(ref c) if c.revoked_at.as_deref() == Some("2026-01-02T00:00:00Z"))
            );
            assert!(matches!(
                revoke(&tx, "ff", "x", "y"),
                Err(StoreError::NotFound { .. })
            ));
            tx.commit().unwrap();
            let revoked = revoked_unexpired(s.conn(), "2026-01-03T00:00:00Z").unwrap();
            assert_eq!(revoked.len(), 1);
            assert!(
                revoked_unexpired(s.conn(), "2026-01-05T00:00:00Z")
                    .unwrap()
                    .is_empty()
            );
            // The trigger refuses reinstating, on either engine.
            let err = s
                .conn()
                .execute(
                    "UPDATE certs SET status = 'active', revoked_at = NULL WHERE serial = '0a'",
                    &[],
                )
                .unwrap_err();
            assert!(err.to_string().contains("cannot be reinstated"), "{err}");
            assert_eq!(get(s.conn(), "0a").unwrap().status, "revoked");
        });
    }

    #[test]
    fn a_certificate_has_at_most_one_successor() {
        on_each_engine(|mut s| {
            let tx = s.transaction().unwrap();
            record_issued(
                &tx,
                &cert("0a", "alice", "sha256:aa", "2026-01-04T00:00:00Z"),
            )
            .unwrap();
            let renewal = |serial| NewCert {
                renewed_from: Some("0a"),
                ..cert(serial, "alice", "sha256:aa", "2026-01-05T00:00:00Z")
            };
            record_issued(&tx, &renewal("0b")).unwrap();
            tx.commit().unwrap();
            // A second renewal of 0a is refused by the database itself (the
            // refused statement ends its transaction on PostgreSQL).
            let tx = s.transaction().unwrap();
            assert!(record_issued(&tx, &renewal("0c")).is_err());
            drop(tx);
            let old = get(s.conn(), "0a").unwrap();
            assert_eq!(old.renewed_by.as_deref(), Some("0b"));
            assert_eq!(old.renewed_from, None);
            let new = get(s.conn(), "0b").unwrap();
            assert_eq!(new.renewed_from.as_deref(), Some("0a"));
            assert_eq!(new.renewed_by, None);
            assert!(matches!(
                get(s.conn(), "0c"),
                Err(StoreError::NotFound { .. })
            ));
        });
    }

    #[test]
    fn a_rolled_back_transaction_records_nothing() {
        on_each_engine(|mut s| {
            let tx = s.transaction().unwrap();
            record_issued(
                &tx,
                &cert("0a", "alice", "sha256:aa", "2026-01-04T00:00:00Z"),
            )
            .unwrap();
            drop(tx);
            assert!(list(s.conn(), &CertFilter::default()).unwrap().is_empty());
        });
    }

    #[test]
    fn crl_numbers_only_grow() {
        on_each_engine(|mut s| {
            let tx = s.transaction().unwrap();
            assert_eq!(next_crl_number(&tx).unwrap(), 1);
            let crl = |n| CrlRecord {
                number: n,
                this_update: "t".into(),
                next_update: "n".into(),
                pem: "p".into(),
            };
            record_crl(&tx, &crl(1)).unwrap();
            assert_eq!(next_crl_number(&tx).unwrap(), 2);
            assert!(record_crl(&tx, &crl(1)).is_err());
            record_crl(&tx, &crl(2)).unwrap();
            tx.commit().unwrap();
            assert_eq!(latest_crl(s.conn()).unwrap().unwrap().number, 2);
        });
    }
}
