//! Accounts an operator disabled: nothing is issued to a disabled account,
//! by a security code or by renewal, until it is enabled again. The table
//! holds only the exceptions; an account is otherwise implicit (a space and
//! a user that codes and certificates name).

use serde::Serialize;

use crate::{Sql, StoreError, Tx};

/// A disabled account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisabledAccount {
    /// The space.
    pub space: String,
    /// The user.
    pub user: String,
    /// RFC 3339 UTC.
    pub disabled_at: String,
    /// Who disabled it.
    pub actor: String,
    /// Why.
    pub reason: String,
}

/// Whether `space`/`user` is disabled, and since when.
pub fn disabled(
    conn: &impl Sql,
    space: &str,
    user: &str,
) -> Result<Option<DisabledAccount>, StoreError> {
    conn.query_opt(
        "SELECT space, \"user\", disabled_at, actor, reason FROM disabled_accounts
         WHERE space = ?1 AND \"user\" = ?2",
        &[&space, &user],
        |r| {
            Ok(DisabledAccount {
                space: r.get(0)?,
                user: r.get(1)?,
                disabled_at: r.get(2)?,
                actor: r.get(3)?,
                reason: r.get(4)?,
            })
        },
    )
}

/// Disable an account inside the caller's transaction. Returns `false`
/// when it already was (nothing changed).
pub fn disable_in(
    tx: &Tx<'_>,
    space: &str,
    user: &str,
    actor: &str,
    reason: &str,
) -> Result<bool, StoreError> {
    let n = tx.execute(
        "INSERT INTO disabled_accounts(space, \"user\", disabled_at, actor, reason)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(space, \"user\") DO NOTHING",
        &[&space, &user, &crate::now_rfc3339(), &actor, &reason],
    )?;
    Ok(n == 1)
}

/// Enable an account again inside the caller's transaction. Returns
/// `false` when it was not disabled.
pub fn enable_in(tx: &Tx<'_>, space: &str, user: &str) -> Result<bool, StoreError> {
    let n = tx.execute(
        "DELETE FROM disabled_accounts WHERE space = ?1 AND \"user\" = ?2",
        &[&space, &user],
    )?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::on_each_engine;

    #[test]
    fn disable_and_enable_are_idempotent() {
        on_each_engine(|mut s| {
            assert_eq!(disabled(s.conn(), "acme", "alice").unwrap(), None);
            let tx = s.transaction().unwrap();
            assert!(disable_in(&tx, "acme", "alice", "op", "left").unwrap());
            assert!(!disable_in(&tx, "acme", "alice", "op", "again").unwrap());
            tx.commit().unwrap();
            let d = disabled(s.conn(), "acme", "alice").unwrap().unwrap();
            assert_eq!(d.reason, "left");
            assert_eq!(disabled(s.conn(), "acme", "bob").unwrap(), None);
            let tx = s.transaction().unwrap();
            assert!(enable_in(&tx, "acme", "alice").unwrap());
            assert!(!enable_in(&tx, "acme", "alice").unwrap());
            tx.commit().unwrap();
            assert_eq!(disabled(s.conn(), "acme", "alice").unwrap(), None);
        });
    }
}
