//! Applying a plan through an [`IpSetBackend`] with WAF's lock-token
//! contract: the plan's delta (its adds and removes) applied to a fresh read,
//! re-read and re-applied on a lock conflict, refused when another writer
//! touched an entry the delta changes.

use std::collections::BTreeSet;

use eos_identity::SpaceId;
use eos_ipset::{IpNet, canonical};
use serde::{Deserialize, Serialize};

use super::{Plan, SetAction, SetChange};
use crate::backend::{ActualSet, BackendError, IpSetBackend, LockToken, NewIpSet};
use crate::naming::IpSetName;

/// Applying stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The plan was made against another backend.
    #[error("the plan was made for backend {planned}, not {actual}; make a new plan")]
    WrongBackend {
        /// In the plan.
        planned: String,
        /// Configured now.
        actual: String,
    },
    /// Since the plan's read, another writer added or removed an entry the
    /// plan adds or removes, or deleted the set, or created it first.
    #[error("{name} changed since the plan was made ({detail}); make a new plan")]
    ChangedSincePlan {
        /// The set.
        name: String,
        /// What differs.
        detail: String,
    },
    /// Lost every race for the lock.
    #[error(
        "{name}: still conflicting after {attempts} attempts with concurrent writers; nothing lost, re-run apply"
    )]
    Conflict {
        /// The set.
        name: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// What an apply did to one set, serialized and displayed as its stable
/// string form (`created`, `updated`, `unchanged`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ApplyOutcome {
    /// The set did not exist: created with the plan's entries.
    Created,
    /// Written with the plan's delta.
    Updated,
    /// Already as planned: no write sent.
    Unchanged,
}

impl ApplyOutcome {
    /// The stable string form.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Updated => "updated",
            ApplyOutcome::Unchanged => "unchanged",
        }
    }
}

impl std::fmt::Display for ApplyOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What an apply did to one set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedSet {
    /// Set.
    pub name: IpSetName,
    /// Space.
    pub space: SpaceId,
    /// What was done.
    pub outcome: ApplyOutcome,
    /// The entries the set holds now.
    pub entries: Vec<String>,
    /// Entries eos-sec added (its delta).
    pub added: Vec<String>,
    /// Entries eos-sec removed.
    pub removed: Vec<String>,
    /// Writes attempted (more than one after lock conflicts).
    pub attempts: u32,
}

/// Most attempts per set before [`ApplyError::Conflict`].
pub const MAX_ATTEMPTS: u32 = 6;

/// Apply a plan (made by planning; a saved plan only through
/// [`SavedPlan::confirm`](crate::SavedPlan::confirm)). Every set is read first: a set deleted or
/// created by someone else since the plan, or one in which another writer
/// added or removed an entry this plan adds or removes, stops the apply
/// before anything is written ([`ApplyError::ChangedSincePlan`]). Other
/// writers' changes to other entries do not: the plan's delta (its adds and
/// removes) is applied to what is there now, with the token of that read.
/// On a lock conflict the set is re-read and only the delta re-applied —
/// never a stale full list — up to [`MAX_ATTEMPTS`], with the same check.
pub async fn apply_plan<B: IpSetBackend>(
    backend: &B,
    plan: &Plan,
) -> Result<Vec<AppliedSet>, ApplyError> {
    let id = backend.id();
    if id != plan.backend {
        return Err(ApplyError::WrongBackend {
            planned: plan.backend.clone(),
            actual: id,
        });
    }
    let mut reads = Vec::new();
    for c in plan
        .changes
        .iter()
        .filter(|c| c.action != SetAction::NoChange)
    {
        let read = backend.read(&c.name).await?;
        let existence_changed = (c.action == SetAction::Create) != read.is_none();
        if existence_changed {
            let detail = if read.is_none() {
                "it was deleted"
            } else {
                "it was created by someone else"
            };
            return Err(ApplyError::ChangedSincePlan {
                name: c.name.to_string(),
                detail: detail.to_owned(),
            });
        }
        if let Some(set) = &read {
            check_untouched(c, set)?;
        }
        reads.push((c, read));
    }
    let mut out = Vec::new();
    for (c, read) in reads {
        out.push(apply_change(backend, c, read).await?);
    }
    Ok(out)
}

/// Refuse when another writer changed, since `c.before` was read, whether
/// the set holds an entry `c` adds or removes. Applying the delta anyway
/// would claim an entry another writer added as eos-sec's own (to be removed
/// later), or report removing one eos-sec did not remove.
fn check_untouched(c: &SetChange, now: &ActualSet) -> Result<(), ApplyError> {
    let before: BTreeSet<&IpNet> = c.before.iter().collect();
    let now: BTreeSet<IpNet> = now.addresses.iter().map(IpNet::trunc).collect();
    let touched: Vec<String> = c
        .add
        .iter()
        .chain(&c.remove)
        .map(|e| &e.cidr)
        .filter(|e| before.contains(e) != now.contains(*e))
        .map(canonical)
        .collect();
    if touched.is_empty() {
        return Ok(());
    }
    Err(ApplyError::ChangedSincePlan {
        name: c.name.to_string(),
        detail: format!(
            "another writer added or removed {}, which the plan changes",
            touched.join(", ")
        ),
    })
}

/// Apply one set's delta (its adds and removes) starting from `current`,
/// the read whose lock token the first write carries. On a lock conflict
/// the set is re-read and only the delta re-applied, unless another writer
/// added or removed one of the delta's entries since `c.before` was read
/// ([`ApplyError::ChangedSincePlan`]). [`apply_plan`] calls this after the
/// same check on every set; a caller applying deltas directly (e.g. syncing
/// rule changes) passes the read its plan was made from.
pub async fn apply_change<B: IpSetBackend>(
    backend: &B,
    c: &SetChange,
    mut current: Option<ActualSet>,
) -> Result<AppliedSet, ApplyError> {
    let add: Vec<IpNet> = c.add.iter().map(|e| e.cidr).collect();
    let remove: BTreeSet<IpNet> = c.remove.iter().map(|e| e.cidr).collect();
    // The report lists entries by their canonical text, in its order.
    let removed: BTreeSet<String> = remove.iter().map(canonical).collect();
    let done = |outcome, entries: Vec<IpNet>, attempts| AppliedSet {
        name: c.name.clone(),
        space: c.name.space().clone(),
        outcome,
        entries: entries.iter().map(canonical).collect(),
        added: c.add.iter().map(|e| canonical(&e.cidr)).collect(),
        removed: removed.iter().cloned().collect(),
        attempts,
    };
    for attempt in 1..=MAX_ATTEMPTS {
        let Some(actual) = current.take() else {
            let new = NewIpSet::staged(&c.name, sorted(add.clone()));
            match backend.create(&new).await {
                Ok(_) => return Ok(done(ApplyOutcome::Created, new.addresses, attempt)),
                Err(BackendError::AlreadyExists { .. }) => {
                    // Another writer created it first: apply our delta to
                    // theirs, unless theirs holds what we add.
                    current = backend.read(&c.name).await?;
                    if let Some(set) = &current {
                        check_untouched(c, set)?;
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let mut next: BTreeSet<IpNet> = actual
            .addresses
            .iter()
            .filter(|n| !remove.contains(&n.trunc()))
            .copied()
            .collect();
        next.extend(add.iter().copied());
        let next: Vec<IpNet> = next.into_iter().collect();
        let before: BTreeSet<IpNet> = actual.addresses.iter().copied().collect();
        if next.iter().copied().collect::<BTreeSet<_>>() == before {
            // WAF counts every UpdateIPSet against the account's write rate:
            // a no-op is not sent.
            return Ok(done(ApplyOutcome::Unchanged, actual.addresses, attempt - 1));
        }
        match backend
            .update(&c.name, &next, &actual.description, &actual.lock)
            .await
        {
            Ok(LockToken(_)) => return Ok(done(ApplyOutcome::Updated, next, attempt)),
            Err(BackendError::StaleLock { .. }) => {
                backend.pause_before_retry(attempt).await;
                current = backend.read(&c.name).await?;
                match &current {
                    Some(set) => check_untouched(c, set)?,
                    None => {
                        return Err(ApplyError::ChangedSincePlan {
                            name: c.name.to_string(),
                            detail: "it was deleted during the apply".into(),
                        });
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApplyError::Conflict {
        name: c.name.to_string(),
        attempts: MAX_ATTEMPTS,
    })
}

fn sorted(mut v: Vec<IpNet>) -> Vec<IpNet> {
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::cell::RefCell;

    use super::*;
    use crate::plan::tests::{actual, name, plan};

    /// A backend whose every first update loses a race against a writer that
    /// adds one entry: exercises the re-read-and-reapply-delta path.
    #[derive(Debug)]
    struct Racing {
        set: RefCell<Option<(Vec<IpNet>, u64)>>,
        races_left: RefCell<u32>,
    }

    impl IpSetBackend for Racing {
        fn id(&self) -> String {
            "test".into()
        }
        async fn read(&self, name: &IpSetName) -> Result<Option<ActualSet>, BackendError> {
            Ok(self.set.borrow().as_ref().map(|(a, v)| ActualSet {
                name: name.clone(),
                addresses: a.clone(),
                description: "kept".into(),
                lock: LockToken(v.to_string()),
            }))
        }
        async fn create(&self, s: &NewIpSet) -> Result<LockToken, BackendError> {
            *self.set.borrow_mut() = Some((s.addresses.clone(), 1));
            Ok(LockToken("1".into()))
        }
        async fn update(
            &self,
            name: &IpSetName,
            a: &[IpNet],
            d: &str,
            lock: &LockToken,
        ) -> Result<LockToken, BackendError> {
            assert_eq!(d, "kept", "description passed through");
            let mut races = self.races_left.borrow_mut();
            let mut set = self.set.borrow_mut();
            let (list, version) = set.as_mut().unwrap();
            if *races > 0 {
                *races -= 1;
                list.push(format!("5.5.5.{}/32", *races).parse().unwrap());
                *version += 1;
            }
            if lock.0 != version.to_string() {
                return Err(BackendError::StaleLock {
                    name: name.to_string(),
                });
            }
            *list = a.to_vec();
            *version += 1;
            Ok(LockToken(version.to_string()))
        }
        async fn pause_before_retry(&self, _attempt: u32) {}
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        // The fake backend never awaits anything that pends.
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn lock_conflicts_reapply_only_the_delta() {
        let backend = Racing {
            set: RefCell::new(Some((
                vec!["8.8.8.0/24".parse().unwrap(), "9.9.9.9/32".parse().unwrap()],
                1,
            ))),
            races_left: RefCell::new(2),
        };
        let mut act = actual(&["8.8.8.0/24", "9.9.9.9/32"], &["8.8.8.0/24", "9.9.9.9/32"]);
        act.get_mut(&name()).unwrap().set.as_mut().unwrap().lock = LockToken("1".into());
        let mut p = plan(&["8.8.8.0/24", "7.7.7.7/32"], &act, false).unwrap();
        p.backend = "test".into();
        let applied = block_on(apply_plan(&backend, &p)).unwrap();
        assert_eq!(applied[0].attempts, 3);
        let (list, _) = backend.set.borrow().clone().unwrap();
        let mut got: Vec<String> = list.iter().map(canonical).collect();
        got.sort();
        // Ours: +7.7.7.7 -9.9.9.9; theirs (two racing writes) kept.
        assert_eq!(
            got,
            ["5.5.5.0/32", "5.5.5.1/32", "7.7.7.7/32", "8.8.8.0/24"]
        );
    }

    #[test]
    fn apply_is_refused_only_when_another_writer_touched_the_delta() {
        let act = actual(&["8.8.8.0/24"], &["8.8.8.0/24"]);
        let mut p = plan(&["8.8.8.0/24", "7.7.7.7/32"], &act, false).unwrap();
        p.backend = "test".into();
        let backend = |entries: &[&str]| Racing {
            set: RefCell::new(Some((
                entries.iter().map(|e| e.parse().unwrap()).collect(),
                4,
            ))),
            races_left: RefCell::new(0),
        };
        // Another writer added 1.1.1.1: not the plan's business.
        let b = backend(&["8.8.8.0/24", "1.1.1.1/32"]);
        let applied = block_on(apply_plan(&b, &p)).unwrap();
        assert_eq!(applied[0].added, ["7.7.7.7/32"]);
        assert_eq!(
            applied[0].entries,
            ["1.1.1.1/32", "7.7.7.7/32", "8.8.8.0/24"]
        );
        // Another writer added 7.7.7.7, which the plan adds: refused.
        let b = backend(&["8.8.8.0/24", "7.7.7.7/32"]);
        let e = block_on(apply_plan(&b, &p)).unwrap_err();
        assert!(matches!(e, ApplyError::ChangedSincePlan { .. }), "{e}");
        assert!(e.to_string().contains("7.7.7.7/32"), "{e}");
        // Another writer deleted the set.
        let b = Racing {
            set: RefCell::new(None),
            races_left: RefCell::new(0),
        };
        let e = block_on(apply_plan(&b, &p)).unwrap_err();
        assert!(e.to_string().contains("deleted"), "{e}");
        let mut p2 = p.clone();
        p2.backend = "other".into();
        assert!(matches!(
            block_on(apply_plan(&b, &p2)).unwrap_err(),
            ApplyError::WrongBackend { .. }
        ));
    }

    #[test]
    fn a_race_that_touches_the_delta_stops_the_retry() {
        let act = actual(&["8.8.8.0/24"], &["8.8.8.0/24"]);
        let mut p = plan(&["8.8.8.0/24", "5.5.5.0/32"], &act, false).unwrap();
        p.backend = "test".into();
        // The racing write before our first update adds 5.5.5.0/32 itself.
        let b = Racing {
            set: RefCell::new(Some((vec!["8.8.8.0/24".parse().unwrap()], 1))),
            races_left: RefCell::new(1),
        };
        let e = block_on(apply_plan(&b, &p)).unwrap_err();
        assert!(matches!(e, ApplyError::ChangedSincePlan { .. }), "{e}");
        assert!(e.to_string().contains("5.5.5.0/32"), "{e}");
    }
}
