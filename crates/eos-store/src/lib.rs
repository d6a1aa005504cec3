//! eos-sec's state: one SQLite database (`state.db`) in a state directory.
//!
//! Everything eos-sec decides is recorded here, in transactions, so a killed
//! process leaves the store consistent. The schema is versioned from the
//! first release: [`MIGRATIONS`] is applied in order and `PRAGMA
//! user_version` records how far a database has come. A database from a newer
//! eos-sec is refused rather than guessed at.
//!
//! Each domain owns its tables and the SQL that reads and writes them (a
//! module of this crate per domain); the domain crates themselves never see
//! SQLite.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};
use serde::Serialize;

pub mod accounts;
mod audit;
pub mod certs;
pub mod codes;
pub mod db;
pub mod drills;
pub mod enforce;
pub mod gate;
pub mod ipsets;
mod pg;
pub mod registrations;
pub mod rules;
pub mod sync;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod transfer;

pub use audit::{Actor, AuditEntry, AuditRecord};
pub use db::{Conn, Engine, KeyLock, Param, Row, Savepoint, Sql, Tx};
pub use pg::StoreUrl;
pub use rusqlite;

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Switch to WAL: readers (sync status, serve) never block the writer.
/// SQLite answers a switch that races another connection's with "database
/// is locked" at once, without its busy handler (seen with 8 processes
/// opening a fresh store together), so the switch is retried here, within
/// the same time a locked statement would wait.
fn wal_mode(conn: &Connection) -> Result<(), StoreError> {
    let start = std::time::Instant::now();
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && start.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The database file inside the state directory.
pub const DB_FILE: &str = "state.db";

/// Versioned schema migrations, applied in order. Never edit a released one:
/// add a new version. Versions are reserved per domain while work is in
/// flight (2: rules/observations/plans, 3: security codes, 4: certificates,
/// 5: enforce snapshots, stages and local Web ACLs).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "base",
        sql: include_str!("migrations/0001_base.sql"),
    },
    Migration {
        version: 2,
        name: "rules",
        sql: include_str!("migrations/0002_rules.sql"),
    },
    Migration {
        version: 3,
        name: "codes",
        sql: include_str!("migrations/0003_codes.sql"),
    },
    Migration {
        version: 4,
        name: "certs",
        sql: include_str!("migrations/0004_certs.sql"),
    },
    Migration {
        version: 5,
        name: "enforce",
        sql: include_str!("migrations/0005_enforce.sql"),
    },
    Migration {
        version: 6,
        name: "sync",
        sql: include_str!("migrations/0006_sync.sql"),
    },
    Migration {
        version: 7,
        name: "register",
        sql: include_str!("migrations/0007_register.sql"),
    },
    Migration {
        version: 8,
        name: "rules-expires",
        sql: include_str!("migrations/0008_rules_expires.sql"),
    },
    Migration {
        version: 9,
        name: "outbox-ms",
        sql: include_str!("migrations/0009_outbox_ms.sql"),
    },
    Migration {
        version: 10,
        name: "gate",
        sql: include_str!("migrations/0010_gate.sql"),
    },
    Migration {
        version: 11,
        name: "gate-outbox",
        sql: include_str!("migrations/0011_gate_outbox.sql"),
    },
    Migration {
        version: 12,
        name: "listener-snapshots",
        sql: include_str!("migrations/0012_listener_snapshots.sql"),
    },
    Migration {
        version: 13,
        name: "drills",
        sql: include_str!("migrations/0013_drills.sql"),
    },
    Migration {
        version: 14,
        name: "renewal",
        sql: include_str!("migrations/0014_renewal.sql"),
    },
    Migration {
        version: 15,
        name: "invariants",
        sql: include_str!("migrations/0015_invariants.sql"),
    },
    Migration {
        version: 16,
        name: "sync-leases",
        sql: include_str!("migrations/0016_sync_leases.sql"),
    },
    Migration {
        version: 18,
        name: "edge-invariants",
        sql: include_str!("migrations/0018_edge_invariants.sql"),
    },
];

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Stored in `PRAGMA user_version` once applied.
    pub version: i64,
    /// Short name for messages.
    pub name: &'static str,
    /// The SQL, applied in one transaction with the version bump.
    pub sql: &'static str,
}

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The state directory could not be created or opened.
    #[error("state directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed. (Its messages never carry the connection's
    /// password.)
    #[error("state database: {}", pg_message(.0))]
    Postgres(#[from] postgres::Error),
    /// The store URL could not be used. The URL itself is not repeated: it
    /// may carry a password.
    #[error("state store url: {reason}")]
    BadUrl {
        /// Why.
        reason: String,
    },
    /// The database server cannot be reached (now): nothing was written.
    #[error("state database unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// This part of eos-sec keeps its state on SQLite only so far.
    #[error("not available on a postgresql store yet; use the sqlite state directory")]
    Unsupported,
    /// The database was written by a newer eos-sec.
    #[error(
        "state database {path} has schema version {found}, newer than this eos-sec knows ({known}); upgrade eos-sec"
    )]
    TooNew {
        /// The database.
        path: String,
        /// Its version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// A stored value could not be decoded.
    #[error("state database: corrupt {what}: {detail}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// Details.
        detail: String,
    },
    /// `store migrate`'s target already holds data: nothing was written.
    #[error(
        "target database {target} is not empty (table {table} has rows); store migrate copies into an empty database only"
    )]
    TargetNotEmpty {
        /// The target, without its password.
        target: String,
        /// The first table found with rows.
        table: String,
    },
    /// `store migrate`'s copy differs from its source: rolled back.
    #[error("copy verification failed: {what}: source {source_value}, target {target_value}")]
    CopyMismatch {
        /// What was compared.
        what: String,
        /// On the source.
        source_value: String,
        /// On the target.
        target_value: String,
    },
    /// A record that was asked for does not exist.
    #[error("{what} not found: {key}")]
    NotFound {
        /// What kind of record.
        what: &'static str,
        /// Its key.
        key: String,
    },
}

/// A PostgreSQL error with its cause (the driver's own text is only its
/// kind, e.g. "db error"): the server's message, never the statement's
/// values or the connection's password.
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

impl StoreError {
    /// The database could not be reached (a lost or refused connection), as
    /// opposed to a statement it refused: the request can be retried later
    /// and nothing of it was committed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable { .. } => true,
            StoreError::Postgres(e) => {
                e.is_closed()
                    || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
            }
            _ => false,
        }
    }
}

/// Where the state lives: the `[store]` choice.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // made once per process
pub enum StoreLocation {
    /// SQLite: `state.db` in this directory (the default).
    Dir(PathBuf),
    /// PostgreSQL at this URL.
    Postgres(StoreUrl),
}

/// Opens more connections to an open PostgreSQL store
/// ([`Store::connector`]); its `Debug` never shows the password.
#[derive(Clone)]
pub struct Connector {
    config: postgres::Config,
    path: String,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connector({})", self.path)
    }
}

impl Connector {
    /// One more connection to the same database (migrated already by the
    /// store it came from).
    pub fn connect(&self) -> Result<Store, StoreError> {
        let client = pg::connect(&self.config)?;
        Ok(Store {
            conn: Conn::Postgres(Box::new(db::PgConn {
                client: std::cell::RefCell::new(Some(db::PgClient::new(client))),
                config: self.config.clone(),
            })),
            path: self.path.clone(),
        })
    }
}

/// An open state store.
#[derive(Debug)]
pub struct Store {
    conn: Conn,
    path: String,
}

impl Store {
    /// Open the store at `location`.
    pub fn open_at(location: &StoreLocation) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Dir(dir) => Store::open(dir),
            StoreLocation::Postgres(url) => Store::open_postgres(url),
        }
    }

    /// Connect to a PostgreSQL store, applying missing migrations.
    pub fn open_postgres(url: &StoreUrl) -> Result<Store, StoreError> {
        db::off_runtime(|| {
            let conn = pg::open(url)?;
            pg::migrate(&conn, url.redacted())?;
            Ok(Store {
                conn: Conn::Postgres(Box::new(conn)),
                path: url.redacted().to_owned(),
            })
        })
    }

    /// The engine this store runs on.
    pub fn engine(&self) -> Engine {
        self.conn.engine()
    }

    /// Where it is, for messages (a PostgreSQL URL without its password).
    pub fn location(&self) -> &str {
        &self.path
    }

    /// Open (creating if needed) the store in `dir`. The directory is created
    /// with mode 0700: it holds the audit log and, for some deployments, keys.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        create_private_dir(dir)?;
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path)?;
        Self::init(conn, path.display().to_string())
    }

    /// A throwaway in-memory store (tests, dry runs).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory()?, ":memory:".to_owned())
    }

    fn init(mut conn: Connection, path: String) -> Result<Store, StoreError> {
        // A killed writer's transaction is rolled back on next open.
        conn.busy_timeout(BUSY_TIMEOUT)?;
        wal_mode(&conn)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate_sqlite(&mut conn, &path)?;
        Ok(Store {
            conn: Conn::Sqlite(conn),
            path,
        })
    }

    /// The newest schema version this build knows.
    pub fn latest_version() -> i64 {
        MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn.query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
            |r| r.get(0),
        )
    }

    /// The connection, for reads.
    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    /// Begin a write transaction. SQLite: `BEGIN IMMEDIATE` (takes the write
    /// lock now, so a read-then-write inside it cannot be invalidated by
    /// another writer). PostgreSQL: the same guarantee across instances, by
    /// the store's advisory write lock taken first; a connection the server
    /// dropped is made again here.
    pub fn transaction(&mut self) -> Result<Tx<'_>, StoreError> {
        match &mut self.conn {
            Conn::Sqlite(c) => Ok(Tx::Sqlite(
                c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?,
            )),
            Conn::Postgres(p) => {
                let tx = Tx::Postgres(std::cell::RefCell::new(p.client_mut()?.transaction()?));
                tx.execute("SELECT pg_advisory_xact_lock(?1)", &[&pg::WRITE_LOCK])?;
                Ok(tx)
            }
        }
    }

    /// Begin a write transaction that does **not** take the store's write
    /// lock on PostgreSQL, so that it runs beside other instances' and
    /// other connections' transactions: for writers that lock what they
    /// read-then-write themselves — a code's row (`FOR UPDATE`), keys with
    /// [`Tx::lock_key`] — and whose other writes only append (the
    /// registration path: code check and spend, rule, outbox, registration,
    /// audit). A writer that needs store-wide order (CRL numbers, the
    /// inventory's key check, enforce, sync) uses [`Store::transaction`],
    /// whose lock these transactions never wait for, so the two kinds
    /// cannot deadlock over it. SQLite: the same `BEGIN IMMEDIATE` as
    /// [`Store::transaction`] (one writer at a time is all a file allows).
    pub fn concurrent_transaction(&mut self) -> Result<Tx<'_>, StoreError> {
        match &mut self.conn {
            Conn::Sqlite(c) => Ok(Tx::Sqlite(
                c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?,
            )),
            Conn::Postgres(p) => Ok(Tx::Postgres(std::cell::RefCell::new(
                p.client_mut()?.transaction()?,
            ))),
        }
    }

    /// What it takes to open more connections to this store, on
    /// PostgreSQL (a service's pool); `None` on SQLite, where writers take
    /// turns on one file and a second connection would only wait.
    pub fn connector(&self) -> Option<Connector> {
        match &self.conn {
            Conn::Sqlite(_) => None,
            Conn::Postgres(p) => Some(Connector {
                config: p.config.clone(),
                path: self.path.clone(),
            }),
        }
    }

    /// Can the database be reached and read now? (readiness; on
    /// PostgreSQL a dropped connection is made again first)
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn.query("SELECT 1", &[], |_| Ok(()))?;
        Ok(())
    }

    /// The SQLite connection, for what is SQLite's own (`store migrate`'s source);
    /// [`StoreError::Unsupported`] on PostgreSQL.
    pub(crate) fn sqlite(&self) -> Result<&Connection, StoreError> {
        self.conn.sqlite()
    }

    /// Append one audit entry in its own transaction.
    pub fn audit(&mut self, entry: &AuditEntry<'_>) -> Result<i64, StoreError> {
        let tx = self.transaction()?;
        let id = audit::append(&tx, entry)?;
        tx.commit()?;
        Ok(id)
    }

    /// The audit log, newest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        audit::list(&self.conn, limit)
    }
}

fn migrate_sqlite(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    // Applied versions are recorded one by one, not as a high-water mark:
    // versions are reserved per domain while work is in flight, so a
    // database can have 3 applied before 2 exists in the code. Every
    // missing version is applied, in order.
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at TEXT NOT NULL
             );",
    )?;
    let known = Store::latest_version();
    let mut pending: Vec<&Migration> = MIGRATIONS.iter().collect();
    pending.sort_by_key(|m| m.version);
    for m in pending {
        // IMMEDIATE: two processes opening a fresh store at once must not
        // both run the same migration.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let newest: Option<i64> =
            tx.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })?;
        if let Some(found) = newest.filter(|v| *v > known) {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found,
                known,
            });
        }
        let legacy: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if newest.is_none() && legacy > known {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found: legacy,
                known,
            });
        }
        let applied: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE version = ?1)",
            params![m.version],
            |r| r.get(0),
        )?;
        // Databases from before this table recorded only user_version.
        let legacy_applied = newest.is_none() && m.version <= legacy;
        if !applied {
            if !legacy_applied {
                tx.execute_batch(m.sql)?;
            }
            tx.execute(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![m.version, m.name, now_rfc3339()],
            )?;
            let top = legacy.max(m.version);
            tx.pragma_update(None, "user_version", top)?;
        }
        tx.commit()?;
    }
    Ok(())
}

/// Append an audit entry inside a caller's transaction, so the entry and the
/// change it records commit together or not at all.
pub fn audit_in(tx: &impl Sql, entry: &AuditEntry<'_>) -> Result<i64, StoreError> {
    audit::append(tx, entry)
}

/// Current time as RFC 3339 UTC, the format every timestamp column uses.
pub fn now_rfc3339() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

/// Format a time as RFC 3339 UTC with second precision (eos-identity's
/// one format).
pub use eos_identity::rfc3339 as format_rfc3339;

/// Format a time as RFC 3339 UTC with milliseconds
/// (`2026-01-05T09:00:00.263Z`): for times whose differences are reported
/// in milliseconds (the outbox, the syncer's attempts); eos-identity's.
pub use eos_identity::rfc3339_ms as format_rfc3339_ms;

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let err = |source| StoreError::Dir {
        path: dir.to_path_buf(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(err)?;
    Ok(())
}

/// A small key/value table for settings that belong to the state (not the
/// config), e.g. the CRL number or the last sync cursor.
pub fn kv_get(db: &impl Sql, key: &str) -> Result<Option<String>, StoreError> {
    db.query_opt("SELECT value FROM kv WHERE key = ?1", &[&key], |r| r.get(0))
}

/// Set a key in the key/value table (inside the caller's transaction).
pub fn kv_set(tx: &impl Sql, key: &str, value: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO kv(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        &[&key, &value],
    )?;
    Ok(())
}

/// Serialise a value to JSON for a `detail` or payload column.
pub fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_and_reopens() {
        crate::testing::on_each_location(|at| {
            let s = Store::open_at(at).unwrap();
            assert_eq!(s.schema_version().unwrap(), Store::latest_version());
            drop(s);
            let s = Store::open_at(at).unwrap();
            assert_eq!(s.schema_version().unwrap(), Store::latest_version());
            let applied: Vec<(i64, String)> = s
                .conn()
                .query(
                    "SELECT version, name FROM schema_migrations ORDER BY version",
                    &[],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            let known: Vec<(i64, String)> = MIGRATIONS
                .iter()
                .map(|m| (m.version, m.name.to_owned()))
                .collect();
            assert_eq!(applied, known, "{}", s.engine().as_str());
        });
    }

    /// Processes open one store at once (serve, the CLI, the sync
    /// watcher), a fresh one too: every open waits its turn, none fails
    /// with "database is locked".
    #[test]
    fn concurrent_opens_of_a_fresh_store_all_succeed() {
        for _ in 0..60 {
            let dir = tempfile::tempdir().unwrap();
            let start = std::sync::Barrier::new(8);
            std::thread::scope(|s| {
                let opens: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            Store::open(dir.path()).map(|_| ())
                        })
                    })
                    .collect();
                for open in opens {
                    let opened = open.join().unwrap();
                    assert!(opened.is_ok(), "{opened:?}");
                }
            });
        }
    }

    #[test]
    fn refuses_newer_schema() {
        crate::testing::on_each_location(|at| {
            let s = Store::open_at(at).unwrap();
            s.conn()
                .execute(
                    "INSERT INTO schema_migrations(version, name, applied_at) VALUES (9999, 'future', 'x')",
                    &[],
                )
                .unwrap();
            drop(s);
            let err = Store::open_at(at).unwrap_err();
            assert!(
                matches!(err, StoreError::TooNew { found: 9999, .. }),
                "{err}"
            );
        });
    }

    #[test]
    fn applies_a_version_that_arrived_late() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        // Simulate a database that got version 3 before version 1 existed.
        s.conn()
            .sqlite()
            .unwrap()
            .execute("DELETE FROM schema_migrations WHERE version = 1", [])
            .unwrap();
        s.conn()
            .sqlite()
            .unwrap()
            .execute_batch("DROP TABLE kv; DROP TABLE audit_log;")
            .unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert!(
            kv_get(s.conn(), "x").unwrap().is_none(),
            "kv table recreated"
        );
    }

    #[test]
    fn kv_round_trip() {
        crate::testing::on_each_engine(|mut s| {
            let tx = s.transaction().unwrap();
            kv_set(&tx, "a", "1").unwrap();
            kv_set(&tx, "a", "2").unwrap();
            tx.commit().unwrap();
            assert_eq!(kv_get(s.conn(), "a").unwrap().as_deref(), Some("2"));
            assert_eq!(kv_get(s.conn(), "b").unwrap(), None);
            s.audit(&AuditEntry::new("tester", "test.thing", "x"))
                .unwrap();
            assert_eq!(s.audit_log(10).unwrap()[0].action, "test.thing");
        });
    }

    #[cfg(unix)]
    #[test]
    fn state_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("state");
        Store::open(&sub).unwrap();
        let mode = std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
