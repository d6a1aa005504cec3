//! PostgreSQL: the URL, the connection, the migrations.
//!
//! Driver: `postgres` (the synchronous face of `tokio-postgres`, from the
//! rust-postgres project). The store's API is synchronous — domain modules
//! pass a transaction down, and async callers already run store work on
//! `spawn_blocking` — so a synchronous client keeps one API for both
//! engines. One [`crate::Store`] is one connection, as with SQLite; a lost
//! connection is made again on the next use.

use std::time::Duration;

use crate::StoreError;
use crate::db::PgConn;

/// How long to wait for a connection, and for a statement's locks: the same
/// budget SQLite's busy timeout has.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const LOCK_TIMEOUT: &str = "10s";
const STATEMENT_TIMEOUT: &str = "30s";

/// The advisory lock every write transaction takes first (`"eos-sec"` as
/// a number): writers on every instance take turns, as on one SQLite file.
pub(crate) const WRITE_LOCK: i64 = 0x0065_6f73_2d73_6563;

/// A PostgreSQL URL (`postgres://user:password@host:port/db?…`), kept so
/// that its password is never shown: [`std::fmt::Display`] and
/// [`std::fmt::Debug`] print `postgres://user@host:port/db`.
#[derive(Clone)]
pub struct StoreUrl {
    config: postgres::Config,
    shown: String,
}

impl StoreUrl {
    /// Parse a `postgres://` or `postgresql://` URL. The error never
    /// carries the URL itself (it may hold a password).
    pub fn parse(url: &str) -> Result<StoreUrl, StoreError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::BadUrl {
                reason: "expected postgres://user@host:port/database".to_owned(),
            });
        }
        let config: postgres::Config =
            url.parse()
                .map_err(|e: postgres::Error| StoreError::BadUrl {
                    reason: e.to_string(),
                })?;
        let shown = shown(&config);
        Ok(StoreUrl { config, shown })
    }

    /// The URL without its password.
    pub fn redacted(&self) -> &str {
        &self.shown
    }

    /// The connection's configuration.
    pub(crate) fn config(&self) -> &postgres::Config {
        &self.config
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreUrl({})", self.shown)
    }
}

fn shown(c: &postgres::Config) -> String {
    let user = c.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let host = c
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default();
    let port = c
        .get_ports()
        .first()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let db = c.get_dbname().unwrap_or("");
    format!("postgres://{user}{host}{port}/{db}")
}

/// Connect, with every phase bounded: the connect itself, each lock wait
/// and each statement.
pub(crate) fn connect(config: &postgres::Config) -> Result<postgres::Client, StoreError> {
    crate::db::off_runtime(|| connect_here(config))
}

fn connect_here(config: &postgres::Config) -> Result<postgres::Client, StoreError> {
    let mut config = config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    let mut client = config
        .connect(postgres::NoTls)
        .map_err(|e| StoreError::Unavailable {
            reason: e.to_string(),
        })?;
    client.batch_execute(&format!(
        "SET lock_timeout = '{LOCK_TIMEOUT}'; SET statement_timeout = '{STATEMENT_TIMEOUT}'"
    ))?;
    Ok(client)
}

pub(crate) fn open(url: &StoreUrl) -> Result<PgConn, StoreError> {
    let client = connect(&url.config)?;
    Ok(PgConn {
        client: std::cell::RefCell::new(Some(crate::db::PgClient::new(client))),
        config: url.config.clone(),
    })
}

/// Versioned migrations for PostgreSQL: the same versions and names as
/// SQLite's [`crate::MIGRATIONS`], in this engine's dialect.
pub const MIGRATIONS: &[crate::Migration] = &[
    m(1, "base", include_str!("migrations/pg/0001_base.sql")),
    m(2, "rules", include_str!("migrations/pg/0002_rules.sql")),
    m(3, "codes", include_str!("migrations/pg/0003_codes.sql")),
    m(4, "certs", include_str!("migrations/pg/0004_certs.sql")),
    m(5, "enforce", include_str!("migrations/pg/0005_enforce.sql")),
    m(6, "sync", include_str!("migrations/pg/0006_sync.sql")),
    m(
        7,
        "register",
        include_str!("migrations/pg/0007_register.sql"),
    ),
    m(
        8,
        "rules-expires",
        include_str!("migrations/pg/0008_rules_expires.sql"),
    ),
    m(
        9,
        "outbox-ms",
        include_str!("migrations/pg/0009_outbox_ms.sql"),
    ),
    m(10, "gate", include_str!("migrations/pg/0010_gate.sql")),
    m(
        11,
        "gate-outbox",
        include_str!("migrations/pg/0011_gate_outbox.sql"),
    ),
    m(
        12,
        "listener-snapshots",
        include_str!("migrations/pg/0012_listener_snapshots.sql"),
    ),
    m(13, "drills", include_str!("migrations/pg/0013_drills.sql")),
    m(
        14,
        "renewal",
        include_str!("migrations/pg/0014_renewal.sql"),
    ),
    m(
        15,
        "invariants",
        include_str!("migrations/pg/0015_invariants.sql"),
    ),
    m(
        16,
        "sync-leases",
        include_str!("migrations/pg/0016_sync_leases.sql"),
    ),
    m(
        18,
        "edge-invariants",
        include_str!("migrations/pg/0018_edge_invariants.sql"),
    ),
];

const fn m(version: i64, name: &'static str, sql: &'static str) -> crate::Migration {
    crate::Migration { version, name, sql }
}

/// Apply every missing migration, each in its own transaction with its
/// version row, under the write lock (two instances starting together on a
/// fresh database run each migration once).
pub(crate) fn migrate(conn: &PgConn, shown: &str) -> Result<(), StoreError> {
    let mut guard = conn.client()?;
    let client = &mut guard.client;
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TEXT NOT NULL
         )",
    )?;
    tx.commit()?;
    let known = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
    for m in MIGRATIONS {
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        let newest: Option<i64> = tx
            .query_one("SELECT MAX(version) FROM schema_migrations", &[])?
            .try_get(0)?;
        if let Some(found) = newest.filter(|v| *v > known) {
            return Err(StoreError::TooNew {
                path: shown.to_owned(),
                found,
                known,
            });
        }
        let applied: bool = tx
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE version = $1)",
                &[&m.version],
            )?
            .try_get(0)?;
        if !applied {
            tx.batch_execute(m.sql)?;
            tx.execute(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &crate::now_rfc3339()],
            )?;
        }
        tx.commit()?;
    }
    Ok(())
}
