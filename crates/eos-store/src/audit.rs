//! The append-only audit log.

use serde::Serialize;

use crate::{Conn, Sql, StoreError, now_rfc3339};

/// Who did it, in the one form the audit log's `actor` column (and a
/// code's `issued_by`) is written: `<kind>:<name>`. Rows written before
/// this form (`operator:alice`, a bare `alice`) are kept as they are: the
/// log is append-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Actor<'a> {
    /// An operator at the command line, by OS user name: `cli:alice`.
    Cli(&'a str),
    /// The holder of a security code, by its public id: `code:<id>`.
    Code(&'a str),
    /// The holder of a certificate, by its serial: `cert:<serial>`.
    Cert(&'a str),
    /// A client address (a refused code attempt): `src:<address>`.
    Source(&'a str),
}

impl std::fmt::Display for Actor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, name) = match self {
            Actor::Cli(n) => ("cli", n),
            Actor::Code(n) => ("code", n),
            Actor::Cert(n) => ("cert", n),
            Actor::Source(n) => ("src", n),
        };
        write!(f, "{kind}:{name}")
    }
}

/// An entry to append. `detail` is JSON and must never carry a secret (code,
/// pepper, key, passphrase): callers pass ids and fingerprints instead.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// Who: an [`Actor`]'s text (`cli:alice`, `code:<id>`, …).
    pub actor: &'a str,
    /// Stable dotted action name, e.g. `ipset.apply`.
    pub action: &'a str,
    /// What it acted on.
    pub subject: &'a str,
    /// JSON details.
    pub detail: serde_json::Value,
}

impl<'a> AuditEntry<'a> {
    /// An entry with empty details.
    pub fn new(actor: &'a str, action: &'a str, subject: &'a str) -> Self {
        Self {
            actor,
            action,
            subject,
            detail: serde_json::Value::Object(Default::default()),
        }
    }

    /// Attach JSON details.
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// A stored audit entry.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditRecord {
    /// Monotonic id.
    pub id: i64,
    /// RFC 3339 UTC.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub subject: String,
    /// JSON details.
    pub detail: serde_json::Value,
}

pub(crate) fn append(tx: &impl Sql, e: &AuditEntry<'_>) -> Result<i64, StoreError> {
    tx.query_one(
        "INSERT INTO audit_log(at, actor, action, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5)
         RETURNING id",
        &[
            &now_rfc3339(),
            &e.actor,
            &e.action,
            &e.subject,
            &e.detail.to_string(),
        ],
        |r| r.get(0),
    )
}

pub(crate) fn list(conn: &Conn, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = conn.query(
        "SELECT id, at, actor, action, subject, detail FROM audit_log ORDER BY id DESC LIMIT ?1",
        &[&limit],
        |r| {
            Ok((
                r.get::<i64>(0)?,
                r.get::<String>(1)?,
                r.get::<String>(2)?,
                r.get::<String>(3)?,
                r.get::<String>(4)?,
                r.get::<String>(5)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for (id, at, actor, action, subject, detail) in rows {
        let detail = serde_json::from_str(&detail).map_err(|e| StoreError::Corrupt {
            what: "audit detail",
            detail: e.to_string(),
        })?;
        out.push(AuditRecord {
            id,
            at,
            actor,
            action,
            subject,
            detail,
        });
    }
    Ok(out)
}
