//! What the registration service did with each code use (migration 0007):
//! the address a code registered, or the certificate it was spent on. A
//! recovery finds the admin's previous recovery address here to replace it.
//!
//! Writes take the caller's transaction: the registration row commits with
//! the code's use, the rule or certificate and their audit entries.

use std::net::IpAddr;

use crate::db::{KeyLock, Row, Sql, Tx};
use eos_identity::{SpaceId, UserId};
use serde::Serialize;

use crate::{StoreError, now_rfc3339};

/// What a code was spent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationKind {
    /// `POST /v1/ip`: the caller's address as a rule.
    Ip,
    /// `POST /v1/cert`: a certificate.
    Cert,
    /// `POST /v1/recover`: an administrator's replacement address.
    Recover,
}

impl RegistrationKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationKind::Ip => "ip",
            RegistrationKind::Cert => "cert",
            RegistrationKind::Recover => "recover",
        }
    }

    fn parse(s: &str) -> Option<RegistrationKind> {
        match s {
            "ip" => Some(RegistrationKind::Ip),
            "cert" => Some(RegistrationKind::Cert),
            "recover" => Some(RegistrationKind::Recover),
            _ => None,
        }
    }
}

/// A registration to record.
#[derive(Debug, Clone, Copy)]
pub struct NewRegistration<'a> {
    /// What the code was spent on.
    pub kind: RegistrationKind,
    /// The code's space.
    pub space: &'a SpaceId,
    /// The code's user.
    pub user: &'a UserId,
    /// The code id (public half).
    pub code_id: &'a str,
    /// The resolved client address.
    pub source: IpAddr,
    /// `ip`, `recover`: the rule's network (canonical text).
    pub cidr: Option<&'a str>,
    /// Whether this registration wrote the rule (false: it existed).
    pub wrote_rule: bool,
    /// `cert`: the certificate serial.
    pub serial: Option<&'a str>,
}

/// A recorded registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registration {
    /// Row id.
    pub id: i64,
    /// RFC 3339 UTC.
    pub at: String,
    /// What the code was spent on.
    pub kind: RegistrationKind,
    /// The space.
    pub space: String,
    /// The user.
    pub user: String,
    /// The code id.
    pub code_id: String,
    /// The client address.
    pub source: String,
    /// The rule's network.
    pub cidr: Option<String>,
    /// Whether this registration wrote the rule.
    pub wrote_rule: bool,
    /// The certificate serial.
    pub serial: Option<String>,
    /// The registration that replaced this one (recovery).
    pub replaced_by: Option<i64>,
}

const COLUMNS: &str =
    "id, at, kind, space, user_id, code_id, source, cidr, wrote_rule, serial, replaced_by";

fn row(r: &Row<'_>) -> Result<(Registration, String), StoreError> {
    let kind: String = r.get(2)?;
    Ok((
        Registration {
            id: r.get(0)?,
            at: r.get(1)?,
            kind: RegistrationKind::Ip,
            space: r.get(3)?,
            user: r.get(4)?,
            code_id: r.get(5)?,
            source: r.get(6)?,
            cidr: r.get(7)?,
            wrote_rule: r.get(8)?,
            serial: r.get(9)?,
            replaced_by: r.get(10)?,
        },
        kind,
    ))
}

fn decode((mut reg, kind): (Registration, String)) -> Result<Registration, StoreError> {
    reg.kind = RegistrationKind::parse(&kind).ok_or_else(|| StoreError::Corrupt {
        what: "registration kind",
        detail: kind,
    })?;
    Ok(reg)
}

/// Record a registration inside the caller's transaction; returns its id.
pub fn record_in(tx: &Tx<'_>, reg: &NewRegistration<'_>) -> Result<i64, StoreError> {
    tx.query_one(
        "INSERT INTO registrations(at, kind, space, user_id, code_id, source, cidr, wrote_rule, serial)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
        &[
            &now_rfc3339(),
            &reg.kind.as_str(),
            &reg.space.as_str(),
            &reg.user.as_str(),
            &reg.code_id,
            &reg.source.to_string(),
            &reg.cidr,
            &reg.wrote_rule,
            &reg.serial,
        ],
        |r| r.get(0),
    )
}

/// The administrator's current (not yet replaced) recovery registration.
pub fn current_recovery(
    conn: &impl Sql,
    space: &SpaceId,
    user: &UserId,
) -> Result<Option<Registration>, StoreError> {
    conn.query_opt(
        &format!(
            "SELECT {COLUMNS} FROM registrations
             WHERE space = ?1 AND user_id = ?2 AND kind = 'recover' AND replaced_by IS NULL
             ORDER BY id DESC LIMIT 1"
        ),
        &[&space.as_str(), &user.as_str()],
        row,
    )?
    .map(decode)
    .transpose()
}

/// [`current_recovery`] inside a write transaction that goes on to replace
/// it: the account's recovery is locked first ([`Tx::lock_key`]), so two
/// recoveries of one administrator on two instances take turns and the
/// second replaces the first's address, instead of both replacing the same
/// old one.
pub fn current_recovery_for_update(
    tx: &Tx<'_>,
    space: &SpaceId,
    user: &UserId,
) -> Result<Option<Registration>, StoreError> {
    tx.lock_key(KeyLock::Recovery, &format!("{space} {user}"))?;
    current_recovery(tx, space, user)
}

/// Mark `old` as replaced by `new` (inside the caller's transaction).
pub fn mark_replaced_in(tx: &Tx<'_>, old: i64, new: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE registrations SET replaced_by = ?2 WHERE id = ?1 AND replaced_by IS NULL",
        &[&old, &new],
    )?;
    Ok(())
}

/// Registrations, optionally of one space, oldest first.
pub fn list(conn: &impl Sql, space: Option<&SpaceId>) -> Result<Vec<Registration>, StoreError> {
    conn.query(
        &format!(
            "SELECT {COLUMNS} FROM registrations
             WHERE (CAST(?1 AS TEXT) IS NULL OR space = ?1) ORDER BY id"
        ),
        &[&space.map(SpaceId::as_str)],
        |r| decode(row(r)?),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::on_each_engine;

    #[test]
    fn recovery_is_replaced_not_accumulated() {
        on_each_engine(|mut s| {
            let space = SpaceId::new("acme").unwrap();
            let user = UserId::new("root").unwrap();
            let reg = |cidr: &'static str| NewRegistration {
                kind: RegistrationKind::Recover,
                space: &space,
                user: &user,
                code_id: "ABCDEFGHJ",
                source: "192.0.2.1".parse().unwrap(),
                cidr: Some(cidr),
                wrote_rule: true,
                serial: None,
            };
            let tx = s.transaction().unwrap();
            let first = record_in(&tx, &reg("192.0.2.1/32")).unwrap();
            tx.commit().unwrap();
            assert_eq!(
                current_recovery(s.conn(), &space, &user)
                    .unwrap()
                    .unwrap()
                    .id,
                first
            );
            let tx = s.transaction().unwrap();
            let second = record_in(&tx, &reg("198.51.100.1/32")).unwrap();
            mark_replaced_in(&tx, first, second).unwrap();
            tx.commit().unwrap();
            let cur = current_recovery(s.conn(), &space, &user).unwrap().unwrap();
            assert_eq!(cur.id, second);
            assert_eq!(cur.cidr.as_deref(), Some("198.51.100.1/32"));
            let all = list(s.conn(), Some(&space)).unwrap();
            assert_eq!(all.len(), 2);
            assert_eq!(all[0].replaced_by, Some(second));
        });
    }

    #[test]
    fn cert_rows_carry_a_serial_and_no_cidr() {
        on_each_engine(|mut s| {
            let space = SpaceId::new("acme").unwrap();
            let user = UserId::new("alice").unwrap();
            let bad = NewRegistration {
                kind: RegistrationKind::Cert,
                space: &space,
                user: &user,
                code_id: "ABCDEFGHJ",
                source: "192.0.2.1".parse().unwrap(),
                cidr: None,
                wrote_rule: false,
                serial: None,
            };
            // The refused row in a transaction of its own: on PostgreSQL a
            // failed statement aborts its transaction (callers roll back on
            // any error), on SQLite only the statement.
            let tx = s.transaction().unwrap();
            assert!(record_in(&tx, &bad).is_err());
            tx.rollback().unwrap();
            let tx = s.transaction().unwrap();
            record_in(
                &tx,
                &NewRegistration {
                    serial: Some("0a"),
                    ..bad
                },
            )
            .unwrap();
        });
    }
}
