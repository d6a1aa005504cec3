//! The seam between plans and where IPSets live: the local state store (the
//! embedded default, in `eos-store`) or AWS WAFv2 (in `eos-aws`).
//!
//! The contract is WAF's: a read returns the whole list with a lock token;
//! an update replaces the whole list and the description and must carry the
//! token of the read it was computed from; a stale token is refused
//! ([`BackendError::StaleLock`]), never merged silently.

use eos_identity::SpaceId;
use eos_ipset::{Family, IpNet};

use crate::naming::IpSetName;

/// An opaque optimistic-lock token (WAF's `LockToken`, the local store's
/// version).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockToken(pub String);

/// An IPSet as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActualSet {
    /// Its name.
    pub name: IpSetName,
    /// Its entries, canonical, in the order stored.
    pub addresses: Vec<IpNet>,
    /// Its description (passed through on update: WAF replaces it too).
    pub description: String,
    /// The token to write with.
    pub lock: LockToken,
}

/// A set to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIpSet {
    /// Name (`eos-<space>-<family>`).
    pub name: IpSetName,
    /// Space.
    pub space: SpaceId,
    /// Family.
    pub family: Family,
    /// Description.
    pub description: String,
    /// Entries.
    pub addresses: Vec<IpNet>,
    /// Tags (managed-by, space, stage).
    pub tags: Vec<(String, String)>,
}

impl NewIpSet {
    /// A staged set with eos-sec's description and tags.
    pub fn staged(name: &IpSetName, addresses: Vec<IpNet>) -> NewIpSet {
        NewIpSet {
            name: name.clone(),
            space: name.space().clone(),
            family: name.family(),
            description: name.description(),
            addresses,
            tags: name.tags(),
        }
    }
}

/// What can go wrong talking to a backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// Somebody wrote the set (or Web ACL) after our read
    /// (WAFOptimisticLockException).
    #[error("{name}: changed since it was read (stale lock token)")]
    StaleLock {
        /// The set.
        name: String,
    },
    /// Create raced with another creator (WAFDuplicateItemException).
    #[error("{name}: already exists")]
    AlreadyExists {
        /// The set.
        name: String,
    },
    /// Update of a set that does not exist.
    #[error("{name}: not found")]
    NotFound {
        /// The set.
        name: String,
    },
    /// Refused client-side before sending: what the service would refuse.
    #[error("{name}: invalid request: {reason}")]
    Invalid {
        /// The set.
        name: String,
        /// Why.
        reason: String,
    },
    /// The service answered something we cannot use.
    #[error("{name}: unexpected response: {detail}")]
    Malformed {
        /// The set.
        name: String,
        /// What.
        detail: String,
    },
    /// Any other failure (network, permissions, throttling after retries).
    #[error("{name}: {detail}")]
    Failed {
        /// The set.
        name: String,
        /// What.
        detail: String,
    },
}

/// Where IPSets live.
///
/// Futures need not be `Send`: the local store's connection is not `Sync`,
/// and a CLI drives one plan at a time.
#[allow(async_fn_in_trait)]
pub trait IpSetBackend {
    /// A stable description of the backend and its location, recorded in
    /// plans so a plan is never applied to another backend (`local`,
    /// `aws:REGIONAL:eu-west-1`).
    fn id(&self) -> String;

    /// Read a set, `None` when it does not exist.
    async fn read(&self, name: &IpSetName) -> Result<Option<ActualSet>, BackendError>;

    /// Create a set; [`BackendError::AlreadyExists`] when it exists.
    async fn create(&self, set: &NewIpSet) -> Result<LockToken, BackendError>;

    /// Replace a set's whole list and description, with the token of the
    /// read the change was computed from; [`BackendError::StaleLock`] when
    /// the set changed since.
    async fn update(
        &self,
        name: &IpSetName,
        addresses: &[IpNet],
        description: &str,
        lock: &LockToken,
    ) -> Result<LockToken, BackendError>;

    /// Wait before retry `attempt` (1-based) after a lock conflict: bounded
    /// exponential backoff with jitter on AWS, nothing locally.
    async fn pause_before_retry(&self, attempt: u32);
}
