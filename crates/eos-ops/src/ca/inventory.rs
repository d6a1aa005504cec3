//! The CA's inventory as typed records: what `ca list`, `ca show` and `ca
//! expiring` print, read once from the store's rows (`eos_store::certs`)
//! and checked there, so no caller parses a stored string again.

use std::time::{Duration, SystemTime};

use eos_ca::{Profile, RevocationReason, RevokedEntry, Serial};
use eos_identity::{SpaceId, UserId};
use eos_store::certs::{self, CertFilter, CertRecord};
use eos_store::{Sql, StoreError};
use serde::{Serialize, Serializer};
use time::OffsetDateTime;

/// Whether a certificate is still good as far as its CA is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CertStatus {
    /// Not revoked (it may have expired).
    Active,
    /// Revoked.
    Revoked,
}

impl CertStatus {
    /// `active` or `revoked`, as the inventory stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            CertStatus::Active => "active",
            CertStatus::Revoked => "revoked",
        }
    }
}

/// When and why a certificate was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    /// When.
    pub at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
}

/// One certificate of the inventory. Serialised with the stored field
/// names and forms (serials in lower-case hex, times RFC 3339 UTC); the PEM
/// is left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InventoryRecord {
    /// The serial.
    #[serde(serialize_with = "display")]
    pub serial: Serial,
    /// The space.
    pub space: SpaceId,
    /// The user.
    pub user: UserId,
    /// The profile.
    pub profile: Profile,
    /// `sha256:<hex>` of the public key.
    pub key_fingerprint: String,
    /// notBefore.
    #[serde(serialize_with = "rfc3339")]
    pub not_before: OffsetDateTime,
    /// notAfter.
    #[serde(serialize_with = "rfc3339")]
    pub not_after: OffsetDateTime,
    /// When it was recorded.
    #[serde(serialize_with = "rfc3339")]
    pub issued_at: OffsetDateTime,
    /// `local` or the AWS Private CA's ARN.
    pub signer: String,
    /// Active or revoked.
    pub status: CertStatus,
    /// When revoked.
    #[serde(serialize_with = "rfc3339_opt")]
    pub revoked_at: Option<OffsetDateTime>,
    /// Why revoked.
    pub revocation_reason: Option<RevocationReason>,
    /// The certificate it renewed, if any.
    #[serde(serialize_with = "display_opt")]
    pub renewed_from: Option<Serial>,
    /// The certificate that renewed it, if any (its one successor).
    #[serde(serialize_with = "display_opt")]
    pub renewed_by: Option<Serial>,
    /// The certificate, PEM.
    #[serde(skip)]
    pub pem: String,
}

impl InventoryRecord {
    /// When and why it was revoked (`None` while active; a revocation
    /// recorded without a reason is `unspecified`).
    pub fn revocation(&self) -> Option<Revoked> {
        Some(Revoked {
            at: self.revoked_at?,
            reason: self
                .revocation_reason
                .unwrap_or(RevocationReason::Unspecified),
        })
    }

    /// Whether it was signed by the local CA key.
    pub fn is_local(&self) -> bool {
        self.signer == certs::LOCAL_SIGNER
    }

    /// Its entry on a CRL (`None` while active).
    pub fn crl_entry(&self) -> Option<RevokedEntry> {
        let r = self.revocation()?;
        Some(RevokedEntry {
            serial: self.serial.clone(),
            revoked_at: r.at.into(),
            reason: r.reason,
        })
    }
}

impl TryFrom<CertRecord> for InventoryRecord {
    type Error = StoreError;

    /// Checks every stored field; a row that does not parse is a corrupt
    /// inventory, named by serial and field.
    fn try_from(r: CertRecord) -> Result<InventoryRecord, StoreError> {
        let serial_text = r.serial.clone();
        let bad = |field: &str| StoreError::Corrupt {
            what: "certificate inventory",
            detail: format!("certificate {serial_text}: bad {field}"),
        };
        let serial = |s: &str, field: &str| Serial::from_hex(s).map_err(|_| bad(field));
        let at = |s: &str, field: &str| parse_time(s).ok_or_else(|| bad(field));
        let status = match r.status.as_str() {
            "active" => CertStatus::Active,
            "revoked" => CertStatus::Revoked,
            _ => return Err(bad("status")),
        };
        let revoked_at = r
            .revoked_at
            .as_deref()
            .map(|s| at(s, "revoked_at"))
            .transpose()?;
        let revocation_reason = r
            .revocation_reason
            .as_deref()
            .map(|s| s.parse().map_err(|_| bad("revocation_reason")))
            .transpose()?;
        if status == CertStatus::Revoked && revoked_at.is_none() {
            return Err(bad("revoked_at"));
        }
        Ok(InventoryRecord {
            serial: serial(&r.serial, "serial")?,
            space: SpaceId::new(&r.space).map_err(|_| bad("space"))?,
            user: UserId::new(&r.user).map_err(|_| bad("user"))?,
            profile: r.profile.parse().map_err(|_| bad("profile"))?,
            not_before: at(&r.not_before, "not_before")?,
            not_after: at(&r.not_after, "not_after")?,
            issued_at: at(&r.issued_at, "issued_at")?,
            status,
            revoked_at,
            revocation_reason,
            renewed_from: r
                .renewed_from
                .as_deref()
                .map(|s| serial(s, "renewed_from"))
                .transpose()?,
            renewed_by: r
                .renewed_by
                .as_deref()
                .map(|s| serial(s, "renewed_by"))
                .transpose()?,
            key_fingerprint: r.key_fingerprint,
            signer: r.signer,
            pem: r.pem,
        })
    }
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// A stored RFC 3339 time (`None` when it does not parse).
pub(crate) fn stored_time(s: &str) -> Option<OffsetDateTime> {
    parse_time(s)
}

fn display<S: Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn display_opt<S: Serializer, T: std::fmt::Display>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// Serialise a time in the inventory's stored form (RFC 3339 UTC, seconds).
pub(crate) fn rfc3339<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&eos_identity::rfc3339(*t))
}

fn rfc3339_opt<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// Which certificates [`list`] returns.
#[derive(Debug, Clone, Default)]
pub struct Query<'a> {
    /// Only this space.
    pub space: Option<&'a SpaceId>,
    /// Only this user.
    pub user: Option<&'a UserId>,
    /// Only active or only revoked ones.
    pub status: Option<CertStatus>,
}

fn records(rows: Vec<CertRecord>) -> Result<Vec<InventoryRecord>, StoreError> {
    rows.into_iter().map(InventoryRecord::try_from).collect()
}

/// Certificates, ordered by notAfter then serial.
pub fn list(conn: &impl Sql, q: &Query<'_>) -> Result<Vec<InventoryRecord>, StoreError> {
    records(certs::list(
        conn,
        &CertFilter {
            space: q.space.map(SpaceId::as_str),
            user: q.user.map(UserId::as_str),
            status: q.status.map(CertStatus::as_str),
            ..CertFilter::default()
        },
    )?)
}

/// One certificate (`StoreError::NotFound` when the inventory has no such
/// serial).
pub fn get(conn: &impl Sql, serial: &Serial) -> Result<InventoryRecord, StoreError> {
    InventoryRecord::try_from(certs::get(conn, &serial.to_string())?)
}

/// Active certificates whose notAfter is within `within` of `now` (not
/// already expired), ordered by notAfter: what renewal should have
/// replaced; each says whether it was (`renewed_by`).
pub fn expiring(
    conn: &impl Sql,
    within: Duration,
    now: SystemTime,
) -> Result<Vec<InventoryRecord>, StoreError> {
    let from = eos_ca::rfc3339(now);
    let until = eos_ca::rfc3339(now + within);
    records(certs::list(
        conn,
        &CertFilter {
            status: Some(CertStatus::Active.as_str()),
            not_after_from: Some(&from),
            not_after_before: Some(&until),
            ..CertFilter::default()
        },
    )?)
}

/// Revoked certificates of the local CA key that have not expired at
/// `now`: the entries of its next CRL (AWS Private CA lists its own).
pub fn crl_entries(conn: &impl Sql, now: SystemTime) -> Result<Vec<RevokedEntry>, StoreError> {
    let rows = certs::revoked_unexpired(conn, &eos_ca::rfc3339(now))?;
    let mut entries = Vec::with_capacity(rows.len());
    for r in rows.into_iter().filter(|r| r.signer == certs::LOCAL_SIGNER) {
        let r = InventoryRecord::try_from(r)?;
        entries.extend(r.crl_entry());
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> CertRecord {
        CertRecord {
            serial: "0a1b".into(),
            space: "acme".into(),
            user: "alice".into(),
            profile: "device".into(),
            key_fingerprint: "sha256:00".into(),
            not_before: "2026-01-01T00:00:00Z".into(),
            not_after: "2026-01-04T00:00:00Z".into(),
            issued_at: "2026-01-01T00:05:00Z".into(),
            signer: "local".into(),
            status: "revoked".into(),
            revoked_at: Some("2026-01-02T00:00:00Z".into()),
            revocation_reason: Some("key-compromise".into()),
            renewed_from: None,
            renewed_by: Some("0c".into()),
            pem: String::new(),
        }
    }

    #[test]
    fn a_record_serialises_as_the_stored_row_does() {
        let stored = row();
        let typed = InventoryRecord::try_from(stored.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&typed).unwrap(),
            serde_json::to_value(&stored).unwrap()
        );
        let entry = typed.crl_entry().unwrap();
        assert_eq!(entry.reason, RevocationReason::KeyCompromise);
        assert_eq!(entry.serial.to_string(), "0a1b");
    }

    #[test]
    fn a_bad_stored_field_is_a_corrupt_inventory_naming_it() {
        for (field, edit) in [
            (
                "revoked_at",
                (|r: &mut CertRecord| r.revoked_at = Some("yesterday".into()))
                    as fn(&mut CertRecord),
            ),
            ("revocation_reason", |r| {
                r.revocation_reason = Some("bored".into())
            }),
            ("serial", |r| r.serial = "xyz".into()),
            ("profile", |r| r.profile = "root".into()),
            ("status", |r| r.status = "paused".into()),
        ] {
            let mut r = row();
            edit(&mut r);
            let e = InventoryRecord::try_from(r).unwrap_err().to_string();
            assert!(e.contains(&format!(": bad {field}")), "{e}");
            assert!(
                e.starts_with("state database: corrupt certificate inventory: certificate "),
                "{e}"
            );
        }
    }
}
