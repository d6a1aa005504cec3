//! The two engines behind one small SQL surface.
//!
//! Every domain module writes its SQL once, with SQLite's numbered
//! placeholders (`?1`, `?2`, …), and runs it through [`Sql`], which both a
//! read handle ([`Conn`]) and a write transaction ([`Tx`]) implement. On
//! PostgreSQL the placeholders become `$1`, `$2`, …; the few statements
//! whose dialects differ branch on [`Sql::engine`]. Values cross as
//! [`Param`] (anything both drivers can bind) and come back through
//! [`Row::get`] (anything both can read).
//!
//! What is SQLite's own (`store migrate`'s source, SQLite-only tests)
//! reaches SQLite through [`Sql::sqlite`], which on PostgreSQL is a clear
//! [`StoreError::Unsupported`] rather than a wrong answer.

use std::cell::{RefCell, RefMut};
use std::collections::HashMap;

use postgres::GenericClient;

use crate::StoreError;

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The embedded default: one file in the state directory.
    Sqlite,
    /// A shared server, for several `serve` and `sync` instances.
    Postgres,
}

impl Engine {
    /// Its name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgresql",
        }
    }
}

/// A value both drivers can bind.
pub trait Param: rusqlite::ToSql + Sync {
    /// As PostgreSQL binds it.
    fn pg(&self) -> &(dyn postgres::types::ToSql + Sync);
}

impl<T: rusqlite::ToSql + postgres::types::ToSql + Sync> Param for T {
    fn pg(&self) -> &(dyn postgres::types::ToSql + Sync) {
        self
    }
}

/// A value both drivers can read.
pub trait Get: rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a> {}
impl<T: rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a>> Get for T {}

/// One result row.
pub enum Row<'r> {
    /// From SQLite.
    Sqlite(&'r rusqlite::Row<'r>),
    /// From PostgreSQL.
    Postgres(&'r postgres::Row),
}

impl std::fmt::Debug for Row<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Row")
    }
}

impl Row<'_> {
    /// Column `idx` (from 0).
    pub fn get<T: Get>(&self, idx: usize) -> Result<T, StoreError> {
        match self {
            Row::Sqlite(r) => Ok(r.get(idx)?),
            Row::Postgres(r) => Ok(r.try_get(idx)?),
        }
    }

    /// Text column `idx`, read in place (no copy).
    pub fn str(&self, idx: usize) -> Result<&str, StoreError> {
        match self {
            Row::Sqlite(r) => r.get_ref(idx)?.as_str().map_err(|e| StoreError::Corrupt {
                what: "text column",
                detail: e.to_string(),
            }),
            Row::Postgres(r) => Ok(r.try_get(idx)?),
        }
    }
}

/// SQLite's `?N` placeholders as PostgreSQL's `$N` (outside string literals).
pub(crate) fn to_pg(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

/// Statements, on either engine. Implemented by [`Conn`] (reads, each
/// statement on its own) and [`Tx`] (a write transaction).
pub trait Sql {
    /// The engine underneath.
    fn engine(&self) -> Engine;

    /// The SQLite connection, for what is SQLite's own.
    fn sqlite(&self) -> Result<&rusqlite::Connection, StoreError>;

    /// Run a statement; the number of rows it changed.
    fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<usize, StoreError>;

    /// Run a query and map every row.
    fn query<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError>;

    /// Run a query and map its first row, if any.
    fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut f = Some(f);
        let mut out = self.query(sql, params, |r| match f.take() {
            Some(f) => f(r).map(Some),
            None => Ok(None),
        })?;
        Ok(if out.is_empty() {
            None
        } else {
            out.swap_remove(0)
        })
    }

    /// Run a query that returns exactly one row.
    fn query_one<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.query_opt(sql, params, f)?
            .ok_or_else(|| StoreError::Corrupt {
                what: "query",
                detail: format!("no row from: {sql}"),
            })
    }
}

fn sqlite_execute(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[&dyn Param],
) -> Result<usize, StoreError> {
    let params: Vec<&dyn rusqlite::ToSql> = params.iter().map(|p| *p as _).collect();
    Ok(conn.prepare_cached(sql)?.execute(params.as_slice())?)
}

fn sqlite_query<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[&dyn Param],
    mut f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let params: Vec<&dyn rusqlite::ToSql> = params.iter().map(|p| *p as _).collect();
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params.as_slice())?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(f(&Row::Sqlite(r))?);
    }
    Ok(out)
}

fn pg_params<'p>(params: &'p [&dyn Param]) -> Vec<&'p (dyn postgres::types::ToSql + Sync)> {
    params.iter().map(|p| p.pg()).collect()
}

/// Run `f`, which blocks on the synchronous PostgreSQL driver, where that
/// is allowed. The driver drives its connection with a runtime of its own
/// and panics on a thread that is already driving async tasks: the sync
/// loop and the local backend call the store from async code (as they call
/// SQLite, which blocks the same way). On a multi-threaded runtime's worker
/// the worker is handed over first (`block_in_place`; on a blocking-pool
/// thread, such as `serve`'s `spawn_blocking`, that costs nothing); on a
/// current-thread runtime `f` runs on a scoped thread of its own.
pub(crate) fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => f(),
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|scope| match scope.spawn(f).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

fn pg_execute<C: GenericClient + Send>(
    c: &mut C,
    statements: &mut Statements,
    sql: &str,
    params: &[&dyn Param],
) -> Result<usize, StoreError> {
    let (stmt, params) = (statements.prepared(c, sql)?, pg_params(params));
    let n = off_runtime(|| c.execute(&stmt, &params))?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

fn pg_query<C: GenericClient + Send, T>(
    c: &mut C,
    statements: &mut Statements,
    sql: &str,
    params: &[&dyn Param],
    mut f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let (stmt, params) = (statements.prepared(c, sql)?, pg_params(params));
    let rows = off_runtime(|| c.query(&stmt, &params))?;
    rows.iter().map(|r| f(&Row::Postgres(r))).collect()
}

/// How many prepared statements one connection keeps. The store's SQL is
/// a fixed set of texts (a few hundred at most, counting the per-engine
/// and per-shape variants); the bound only keeps a caller that builds
/// texts from data from growing the server's memory without end.
const STATEMENTS_KEPT: usize = 512;

/// The statements prepared on one PostgreSQL connection, by their SQL text
/// (SQLite's placeholders, as the domain modules write it): each is parsed
/// and planned by the server once per connection, and then only bound and
/// run — one round trip instead of two, and no parse. A statement belongs
/// to the connection that prepared it, so the cache lives in [`PgClient`]
/// beside it and goes when a dropped connection is made again.
#[derive(Default)]
pub(crate) struct Statements(HashMap<String, postgres::Statement>);

impl Statements {
    /// `sql`'s statement on `c`, prepared now if it is not yet.
    fn prepared<C: GenericClient + Send>(
        &mut self,
        c: &mut C,
        sql: &str,
    ) -> Result<postgres::Statement, StoreError> {
        if let Some(stmt) = self.0.get(sql) {
            return Ok(stmt.clone());
        }
        let text = to_pg(sql);
        let stmt = off_runtime(|| c.prepare(&text))?;
        if self.0.len() >= STATEMENTS_KEPT {
            // Dropping a statement closes it on the server.
            self.0.clear();
        }
        self.0.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }
}

/// A live PostgreSQL connection and the statements prepared on it.
pub(crate) struct PgClient {
    pub(crate) client: postgres::Client,
    statements: Statements,
}

impl PgClient {
    pub(crate) fn new(client: postgres::Client) -> PgClient {
        PgClient {
            client,
            statements: Statements::default(),
        }
    }

    /// Begin a transaction on this connection; its statements are prepared
    /// (and kept) on it.
    pub(crate) fn transaction(&mut self) -> Result<PgTx<'_>, StoreError> {
        let PgClient { client, statements } = self;
        let tx = off_runtime(|| client.transaction())?;
        Ok(PgTx {
            tx: Some(tx),
            statements,
        })
    }
}

/// A PostgreSQL connection and what it takes to make it again.
pub(crate) struct PgConn {
    /// Always `Some` but while being dropped (see `Drop`).
    pub(crate) client: RefCell<Option<PgClient>>,
    pub(crate) config: postgres::Config,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds the password: never printed.
        f.write_str("PgConn")
    }
}

impl PgConn {
    /// The client, connected again first if the server dropped it (a
    /// restarted server, a failed-over RDS instance): a lost connection
    /// fails the requests that were using it and recovers without a restart.
    /// The connection made again starts with no prepared statements: those
    /// of the dropped one are gone with it.
    pub(crate) fn client(&self) -> Result<RefMut<'_, PgClient>, StoreError> {
        let mut client = self.client.borrow_mut();
        if client.as_ref().is_none_or(|c| c.client.is_closed()) {
            *client = Some(PgClient::new(crate::pg::connect(&self.config)?));
        }
        RefMut::filter_map(client, Option::as_mut).map_err(|_| StoreError::Unavailable {
            reason: "no connection".to_owned(),
        })
    }

    /// [`PgConn::client`] through `&mut`.
    pub(crate) fn client_mut(&mut self) -> Result<&mut PgClient, StoreError> {
        let client = self.client.get_mut();
        if client.as_ref().is_none_or(|c| c.client.is_closed()) {
            *client = Some(PgClient::new(crate::pg::connect(&self.config)?));
        }
        client.as_mut().ok_or_else(|| StoreError::Unavailable {
            reason: "no connection".to_owned(),
        })
    }
}

impl Drop for PgConn {
    /// The driver closes its connection by blocking on a runtime of its
    /// own, which panics on a thread that drives async tasks (a store
    /// dropped at the end of `serve`): it is closed on a thread of its own.
    fn drop(&mut self) {
        if let Some(client) = self.client.get_mut().take() {
            let _ = std::thread::spawn(move || drop(client)).join();
        }
    }
}

/// A read handle: SQLite's connection or PostgreSQL's client.
#[derive(Debug)]
pub enum Conn {
    /// SQLite.
    Sqlite(rusqlite::Connection),
    /// PostgreSQL.
    #[allow(private_interfaces)]
    Postgres(Box<PgConn>),
}

impl Sql for Conn {
    fn engine(&self) -> Engine {
        match self {
            Conn::Sqlite(_) => Engine::Sqlite,
            Conn::Postgres(_) => Engine::Postgres,
        }
    }

    fn sqlite(&self) -> Result<&rusqlite::Connection, StoreError> {
        match self {
            Conn::Sqlite(c) => Ok(c),
            Conn::Postgres(_) => Err(StoreError::Unsupported),
        }
    }

    fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<usize, StoreError> {
        match self {
            Conn::Sqlite(c) => sqlite_execute(c, sql, params),
            Conn::Postgres(p) => {
                let mut pc = p.client()?;
                let PgClient { client, statements } = &mut *pc;
                pg_execute(client, statements, sql, params)
            }
        }
    }

    fn query<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        match self {
            Conn::Sqlite(c) => sqlite_query(c, sql, params, f),
            Conn::Postgres(p) => {
                let mut pc = p.client()?;
                let PgClient { client, statements } = &mut *pc;
                pg_query(client, statements, sql, params, f)
            }
        }
    }
}

/// A bare SQLite connection (inside the modules still on SQLite only).
impl Sql for rusqlite::Connection {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn sqlite(&self) -> Result<&rusqlite::Connection, StoreError> {
        Ok(self)
    }

    fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<usize, StoreError> {
        sqlite_execute(self, sql, params)
    }

    fn query<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        sqlite_query(self, sql, params, f)
    }
}

/// A PostgreSQL transaction, rolled back when dropped (off the async
/// runtime, see [`off_runtime`]), and its connection's prepared statements.
pub(crate) struct PgTx<'a> {
    /// Always `Some` but while being committed.
    tx: Option<postgres::Transaction<'a>>,
    statements: &'a mut Statements,
}

impl<'a> PgTx<'a> {
    fn get(&mut self) -> Result<(&mut postgres::Transaction<'a>, &mut Statements), StoreError> {
        match self.tx.as_mut() {
            Some(tx) => Ok((tx, &mut *self.statements)),
            None => Err(StoreError::Unavailable {
                reason: "transaction already ended".to_owned(),
            }),
        }
    }

    fn end(mut self, commit: bool) -> Result<(), StoreError> {
        let Some(t) = self.tx.take() else {
            return Ok(());
        };
        Ok(off_runtime(
            move || if commit { t.commit() } else { t.rollback() },
        )?)
    }
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.tx.take() {
            off_runtime(move || drop(t));
        }
    }
}

/// A write transaction: committed by [`Tx::commit`], rolled back when
/// dropped. On SQLite it is `BEGIN IMMEDIATE`; on PostgreSQL one from
/// [`crate::Store::transaction`] holds the store's write lock (a
/// transaction-scoped advisory lock) from its first statement, so writers
/// on every instance take turns exactly as they do on one SQLite file, and
/// a read-then-write inside it cannot be raced; one from
/// [`crate::Store::concurrent_transaction`] does not, and locks what it
/// reads-then-writes itself (row locks, [`Tx::lock_key`]).
pub enum Tx<'a> {
    /// SQLite.
    Sqlite(rusqlite::Transaction<'a>),
    /// PostgreSQL.
    #[allow(private_interfaces)]
    Postgres(RefCell<PgTx<'a>>),
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tx({})", self.engine().as_str())
    }
}

impl Tx<'_> {
    /// Commit.
    pub fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => Ok(t.commit()?),
            Tx::Postgres(t) => t.into_inner().end(true),
        }
    }

    /// Roll back (as dropping it does, but reporting an error).
    pub fn rollback(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => Ok(t.rollback()?),
            Tx::Postgres(t) => t.into_inner().end(false),
        }
    }
}

/// What a [`Tx::lock_key`] lock is about: each kind is its own key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyLock {
    /// A source address's failure count (`code_throttle`): read, then
    /// written after a refusal.
    Throttle,
    /// A Network Access Rule by (space, CIDR): read, then inserted,
    /// updated or deleted.
    Rule,
    /// An administrator's current recovery registration: read, then
    /// replaced.
    Recovery,
}

impl KeyLock {
    /// The first half of PostgreSQL's two-key advisory lock. The two-key
    /// form is a key space of its own, apart from the one-key
    /// [`crate::pg::WRITE_LOCK`] ("the two key spaces do not overlap",
    /// PostgreSQL manual, Advisory Lock Functions).
    fn class(self) -> i32 {
        match self {
            KeyLock::Throttle => 1,
            KeyLock::Rule => 2,
            KeyLock::Recovery => 3,
        }
    }
}

/// The second half: 32 bits of SHA-256 of the key, the same on every
/// instance and every build. Two keys that collide only wait for each
/// other; they never share a row.
fn key_hash(key: &str) -> i32 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let mut first = [0u8; 4];
    first.copy_from_slice(&digest[..4]);
    i32::from_be_bytes(first)
}

/// A savepoint inside a [`Tx`]: [`Savepoint::release`] keeps what was
/// written since, [`Savepoint::rollback`] (or dropping it) undoes only
/// that, and the transaction goes on either way.
#[derive(Debug)]
pub struct Savepoint<'t, 'a> {
    tx: &'t Tx<'a>,
    open: bool,
}

impl Savepoint<'_, '_> {
    /// Keep what was written since the savepoint.
    pub fn release(mut self) -> Result<(), StoreError> {
        self.open = false;
        self.tx.batch("RELEASE SAVEPOINT eos_step")
    }

    /// Undo what was written since the savepoint.
    pub fn rollback(mut self) -> Result<(), StoreError> {
        self.open = false;
        self.tx
            .batch("ROLLBACK TO SAVEPOINT eos_step; RELEASE SAVEPOINT eos_step")
    }
}

impl Drop for Savepoint<'_, '_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self
                .tx
                .batch("ROLLBACK TO SAVEPOINT eos_step; RELEASE SAVEPOINT eos_step");
        }
    }
}

impl<'a> Tx<'a> {
    /// Serialise with every other transaction that locks the same `key` of
    /// the same `kind`, until this one ends: the lock of a read-then-write
    /// on rows that may not exist yet (a row lock, `FOR UPDATE`, needs the
    /// row). PostgreSQL: a transaction-scoped advisory lock on (kind,
    /// hash of key), bounded by the connection's `lock_timeout`. SQLite: a
    /// no-op — its write transaction (`BEGIN IMMEDIATE`) holds the
    /// database's one write lock already.
    pub fn lock_key(&self, kind: KeyLock, key: &str) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(_) => Ok(()),
            Tx::Postgres(_) => {
                let (class, hash) = (kind.class(), key_hash(key));
                self.execute("SELECT pg_advisory_xact_lock(?1, ?2)", &[&class, &hash])?;
                Ok(())
            }
        }
    }

    /// Open a savepoint: one step of a transaction that several steps
    /// share (group commit), undone alone if it fails.
    pub fn savepoint(&self) -> Result<Savepoint<'_, 'a>, StoreError> {
        self.batch("SAVEPOINT eos_step")?;
        Ok(Savepoint {
            tx: self,
            open: true,
        })
    }

    /// Statements without parameters or results.
    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => Ok(t.execute_batch(sql)?),
            Tx::Postgres(t) => {
                let mut t = t.borrow_mut();
                let (t, _) = t.get()?;
                Ok(off_runtime(|| t.batch_execute(sql))?)
            }
        }
    }
}

impl Sql for Tx<'_> {
    fn engine(&self) -> Engine {
        match self {
            Tx::Sqlite(_) => Engine::Sqlite,
            Tx::Postgres(_) => Engine::Postgres,
        }
    }

    fn sqlite(&self) -> Result<&rusqlite::Connection, StoreError> {
        match self {
            Tx::Sqlite(t) => Ok(t),
            Tx::Postgres(_) => Err(StoreError::Unsupported),
        }
    }

    fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<usize, StoreError> {
        match self {
            Tx::Sqlite(t) => sqlite_execute(t, sql, params),
            Tx::Postgres(t) => {
                let mut t = t.borrow_mut();
                let (t, statements) = t.get()?;
                pg_execute(t, statements, sql, params)
            }
        }
    }

    fn query<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        match self {
            Tx::Sqlite(t) => sqlite_query(t, sql, params, f),
            Tx::Postgres(t) => {
                let mut t = t.borrow_mut();
                let (t, statements) = t.get()?;
                pg_query(t, statements, sql, params, f)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::to_pg;

    #[test]
    fn placeholders_become_dollars_outside_literals() {
        assert_eq!(
            to_pg("SELECT ?1, '?2' FROM t WHERE a = ?2 OR ?3 IS NULL"),
            "SELECT $1, '?2' FROM t WHERE a = $2 OR $3 IS NULL"
        );
    }
}
