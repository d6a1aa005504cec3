//! The service's connections to its state store.
//!
//! SQLite: the one connection (writers take turns on one file; a second
//! connection would only wait for the first). PostgreSQL: up to
//! [`PG_CONNECTIONS`], opened when requests need them, so that one
//! instance's registrations run side by side — each transaction locks only
//! the rows it spends ([`eos_store::Store::concurrent_transaction`]) and
//! the database's group commit shares the fsyncs between them.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};

use eos_store::{Connector, Store, StoreError};

/// Connections one instance opens to a PostgreSQL store, at most. Enough to
/// keep a commit's fsync wait from idling the instance; more only queue in
/// the database (two instances on one server open twice this many).
pub const PG_CONNECTIONS: usize = 8;

/// Stores to borrow, one request at a time each.
pub(crate) struct Pool {
    state: Mutex<State>,
    freed: Condvar,
    connector: Option<Connector>,
    max: usize,
}

struct State {
    idle: Vec<Store>,
    /// Idle or borrowed.
    open: usize,
}

impl Pool {
    pub(crate) fn new(store: Store) -> Pool {
        let connector = store.connector();
        let max = if connector.is_some() {
            PG_CONNECTIONS
        } else {
            1
        };
        Pool {
            state: Mutex::new(State {
                idle: vec![store],
                open: 1,
            }),
            freed: Condvar::new(),
            connector,
            max,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Only counts and idle stores are behind this lock, changed
        // without panicking: a poisoned lock holds a consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A store for this request: an idle one, a new connection while
    /// fewer than the most are open, else the next one given back. A new
    /// connection that fails is the request's error (`store-unavailable`).
    pub(crate) fn get(&self) -> Result<Pooled<'_>, StoreError> {
        let mut state = self.state();
        loop {
            if let Some(store) = state.idle.pop() {
                return Ok(Pooled {
                    pool: self,
                    store: Some(store),
                });
            }
            if let Some(connector) = self.connector.as_ref().filter(|_| state.open < self.max) {
                state.open += 1;
                drop(state);
                return match connector.connect() {
                    Ok(store) => Ok(Pooled {
                        pool: self,
                        store: Some(store),
                    }),
                    Err(e) => {
                        self.state().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A borrowed store, given back when dropped. A panic while it was
/// borrowed dropped its transaction, which rolled back: it is reusable.
pub(crate) struct Pooled<'p> {
    pool: &'p Pool,
    /// `Some` until dropped.
    store: Option<Store>,
}

impl Deref for Pooled<'_> {
    type Target = Store;

    fn deref(&self) -> &Store {
        // Invariant: `Some` until drop.
        self.store.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        self.store.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            self.pool.state().idle.push(store);
            self.pool.freed.notify_one();
        }
    }
}
