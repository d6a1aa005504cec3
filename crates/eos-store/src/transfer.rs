//! `eos-sec store migrate`: copy a SQLite state store into an empty
//! PostgreSQL database, in one transaction, verified before it commits.
//!
//! The target must be empty (no row in any table; an empty schema left by
//! an earlier `serve` is fine): a non-empty one is refused before anything
//! is written ([`StoreError::TargetNotEmpty`]). The schema is PostgreSQL's
//! own migrations; the rows are copied table by table in the order the
//! tables were created (a table's foreign keys name earlier tables) and
//! each table's rows in insertion order (a renewal after the certificate it
//! renews, CRL numbers increasing), with every trigger and constraint of
//! the target on. The source is read in one read transaction, so a
//! consistent snapshot is copied even if something else writes to it.
//!
//! Before the commit, every table's row count on the target is compared
//! with the source's, and the audit log is compared entry by entry, in
//! order, through a SHA-256 digest of each side's entries
//! ([`CopyReport::audit_digest`]); a difference rolls everything back.

use rusqlite::types::Value;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::pg::{StoreUrl, WRITE_LOCK};
use crate::{Store, StoreError};

/// Rows of one table on each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCount {
    /// The table.
    pub table: String,
    /// Rows in the SQLite source.
    pub source: u64,
    /// Rows in the PostgreSQL target after the copy.
    pub target: u64,
}

/// What [`copy_to_postgres`] copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// The target, without its password.
    pub target: String,
    /// The schema version of both sides.
    pub schema_version: i64,
    /// Every table, in copy order.
    pub tables: Vec<TableCount>,
    /// Audit entries copied.
    pub audit_entries: u64,
    /// SHA-256 (hex) over the audit log's entries in id order, the same on
    /// both sides.
    pub audit_digest: String,
}

/// Tables eos-sec's migrations create on the target, with rows or not:
/// the first one that has a row makes the target non-empty.
fn first_nonempty(tx: &mut impl postgres::GenericClient) -> Result<Option<String>, StoreError> {
    let tables: Vec<String> = tx
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
               AND table_name <> 'schema_migrations'
             ORDER BY table_name",
            &[],
        )?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    for t in tables {
        let any: bool = tx
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {})", ident(&t)), &[])?
            .try_get(0)?;
        if any {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

/// A quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One column of a target table.
struct Column {
    name: String,
    /// `information_schema.columns.data_type`.
    kind: String,
    identity: bool,
}

fn target_columns(
    tx: &mut postgres::Transaction<'_>,
    table: &str,
) -> Result<Vec<Column>, StoreError> {
    tx.query(
        "SELECT column_name::text, data_type::text, is_identity::text = 'YES'
         FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1
         ORDER BY ordinal_position",
        &[&table],
    )?
    .iter()
    .map(|r| {
        Ok(Column {
            name: r.try_get(0)?,
            kind: r.try_get(1)?,
            identity: r.try_get(2)?,
        })
    })
    .collect()
}

type PgValue = Box<dyn postgres::types::ToSql + Sync>;

/// A SQLite value as the target column's type; anything else is corrupt.
fn convert(table: &str, col: &Column, v: Value) -> Result<PgValue, StoreError> {
    let bad = |v: &Value| StoreError::Corrupt {
        what: "value to copy",
        detail: format!(
            "{table}.{}: a {} cannot go into {}",
            col.name,
            v.data_type(),
            col.kind
        ),
    };
    Ok(match (col.kind.as_str(), v) {
        ("bigint", Value::Null) => Box::new(None::<i64>),
        ("bigint", Value::Integer(i)) => Box::new(i),
        ("integer", Value::Null) => Box::new(None::<i32>),
        ("integer", Value::Integer(i)) => {
            Box::new(i32::try_from(i).map_err(|_| bad(&Value::Integer(i)))?)
        }
        ("boolean", Value::Null) => Box::new(None::<bool>),
        ("boolean", Value::Integer(i)) => Box::new(i != 0),
        ("bytea", Value::Null) => Box::new(None::<Vec<u8>>),
        ("bytea", Value::Blob(b)) => Box::new(b),
        ("text", Value::Null) => Box::new(None::<String>),
        ("text", Value::Text(s)) => Box::new(s),
        ("double precision", Value::Null) => Box::new(None::<f64>),
        ("double precision", Value::Real(f)) => Box::new(f),
        (_, v) => return Err(bad(&v)),
    })
}

/// The audit log's digest: every entry, in id order, field by field.
fn audit_digest(rows: impl Iterator<Item = [String; 6]>) -> (u64, String) {
    let mut h = Sha256::new();
    let mut n = 0;
    for row in rows {
        for field in row {
            h.update(field.len().to_le_bytes());
            h.update(field.as_bytes());
        }
        n += 1;
    }
    (n, hex::encode(h.finalize()))
}

const AUDIT_SQL: &str = "SELECT id, at, actor, action, subject, detail FROM audit_log ORDER BY id";

/// Copy the SQLite store `source` into the empty PostgreSQL database at
/// `target` (see the module's documentation).
pub fn copy_to_postgres(source: &Store, target: &StoreUrl) -> Result<CopyReport, StoreError> {
    let src = source.sqlite()?;
    let shown = target.redacted().to_owned();
    // Refused before anything is written, migrations included.
    let mut client = crate::pg::connect(target.config())?;
    if let Some(table) = first_nonempty(&mut client)? {
        return Err(StoreError::TargetNotEmpty {
            target: shown,
            table,
        });
    }
    drop(client);
    let store = Store::open_postgres(target)?;
    let schema_version = store.schema_version()?;
    let source_version = source.schema_version()?;
    if schema_version != source_version {
        return Err(StoreError::Corrupt {
            what: "schema version",
            detail: format!("source {source_version}, target {schema_version}"),
        });
    }
    drop(store);

    let read = src.unchecked_transaction()?;
    let mut client = crate::pg::connect(target.config())?;
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
    // Again under the write lock: nobody wrote in between.
    if let Some(table) = first_nonempty(&mut tx)? {
        return Err(StoreError::TargetNotEmpty {
            target: shown,
            table,
        });
    }
    let tables: Vec<String> = read
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table'
             AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations' ORDER BY rowid",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut counts = Vec::new();
    for table in &tables {
        let columns = target_columns(&mut tx, table)?;
        if columns.is_empty() {
            return Err(StoreError::Corrupt {
                what: "table to copy",
                detail: format!("{table} is not in the target's schema"),
            });
        }
        let names: Vec<String> = columns.iter().map(|c| ident(&c.name)).collect();
        let list = names.join(", ");
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let overriding = if columns.iter().any(|c| c.identity) {
            " OVERRIDING SYSTEM VALUE"
        } else {
            ""
        };
        let insert = tx.prepare(&format!(
            "INSERT INTO {} ({list}){overriding} VALUES ({})",
            ident(table),
            placeholders.join(", ")
        ))?;
        let mut stmt = read.prepare(&format!(
            "SELECT {list} FROM {} ORDER BY rowid",
            ident(table)
        ))?;
        let mut rows = stmt.query([])?;
        let mut source_rows = 0u64;
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns.len());
            for (i, col) in columns.iter().enumerate() {
                values.push(convert(table, col, row.get::<_, Value>(i)?)?);
            }
            let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                values.iter().map(|v| v.as_ref()).collect();
            tx.execute(&insert, &refs)?;
            source_rows += 1;
        }
        for col in columns.iter().filter(|c| c.identity) {
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence($1, $2), m) FROM
                     (SELECT MAX({c}) AS m FROM {t}) x WHERE m IS NOT NULL",
                    c = ident(&col.name),
                    t = ident(table)
                ),
                &[&ident(table), &col.name],
            )?;
        }
        let target_rows: i64 = tx
            .query_one(&format!("SELECT COUNT(*) FROM {}", ident(table)), &[])?
            .try_get(0)?;
        let target_rows = u64::try_from(target_rows).unwrap_or(0);
        if target_rows != source_rows {
            return Err(StoreError::CopyMismatch {
                what: format!("rows of {table}"),
                source_value: source_rows.to_string(),
                target_value: target_rows.to_string(),
            });
        }
        counts.push(TableCount {
            table: table.to_string(),
            source: source_rows,
            target: target_rows,
        });
    }
    let (audit_entries, source_digest) = audit_digest(
        read.prepare(AUDIT_SQL)?
            .query_map([], |r| {
                Ok([
                    r.get::<_, i64>(0)?.to_string(),
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ])
            })?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter(),
    );
    let target_rows = tx.query(AUDIT_SQL, &[])?;
    let target_audit = target_rows
        .iter()
        .map(|r| {
            Ok([
                r.try_get::<_, i64>(0)?.to_string(),
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
            ])
        })
        .collect::<Result<Vec<_>, postgres::Error>>()?;
    let (_, target_digest) = audit_digest(target_audit.into_iter());
    if source_digest != target_digest {
        return Err(StoreError::CopyMismatch {
            what: "audit log digest".to_owned(),
            source_value: source_digest,
            target_value: target_digest,
        });
    }
    tx.commit()?;
    Ok(CopyReport {
        target: shown,
        schema_version,
        tables: counts,
        audit_entries,
        audit_digest: source_digest,
    })
}
