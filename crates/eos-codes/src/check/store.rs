//! Where codes are kept: the [`CodeStore`] trait, and the events it
//! records in the audit log.

use std::net::IpAddr;

use super::{CodeState, CodeUse, RefusalReason, StoredCode, ThrottleKey, ThrottleState};
use crate::binding::{CodeKind, Purpose};
use crate::format::CodeId;

/// Something that happened to a code, for the store to audit. Carries ids,
/// names and reasons only: there is no field a code or pepper could go in.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum CodeEvent<'a> {
    /// A code was issued.
    Issued {
        /// What was stored.
        code: &'a StoredCode,
    },
    /// A use was spent.
    Used {
        /// The use.
        usage: &'a CodeUse,
        /// Who presented it.
        source: IpAddr,
    },
    /// A code checked without spending (`code verify`).
    Verified {
        /// What a use would be.
        usage: &'a CodeUse,
        /// Who presented it.
        source: IpAddr,
    },
    /// A code was refused.
    Rejected {
        /// The id it named, if well-formed.
        code_id: Option<&'a CodeId>,
        /// Why.
        reason: RefusalReason,
        /// What it was presented for.
        purpose: Purpose,
        /// Who presented it.
        source: IpAddr,
        /// A `code verify` check rather than a real use.
        dry_run: bool,
    },
    /// A spent use was given back: the action it was spent for failed
    /// after the spend had been committed (see [`return_use`](super::return_use)).
    Returned {
        /// The use given back.
        usage: &'a CodeUse,
        /// Why, in a few words (never the code).
        reason: &'a str,
    },
    /// A code was revoked.
    Revoked {
        /// The code.
        code_id: &'a CodeId,
        /// Who revoked it.
        by: &'a str,
        /// Why, as the operator said.
        reason: &'a str,
    },
}

impl CodeEvent<'_> {
    /// The stable audit action name.
    pub fn action(&self) -> &'static str {
        match self {
            CodeEvent::Issued { .. } => "code.issue",
            CodeEvent::Used { usage, .. } if usage.kind == CodeKind::Recovery => {
                "code.recovery.use"
            }
            CodeEvent::Used { .. } => "code.use",
            CodeEvent::Verified { .. } => "code.verify",
            CodeEvent::Rejected { .. } => "code.reject",
            CodeEvent::Returned { .. } => "code.use-returned",
            CodeEvent::Revoked { .. } => "code.revoke",
        }
    }
}

/// Storage for codes. The SQLite implementation is `eos_store::codes`; its
/// methods run inside one transaction, so a check, the use it spends, the
/// audit entry and the caller's action commit together.
pub trait CodeStore {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Store a new code. `Ok(false)` when the id is taken (nothing written).
    fn insert_code(&mut self, code: &StoredCode) -> Result<bool, Self::Error>;
    /// A code by id, with its uses and revocation.
    fn load_code(&mut self, id: &CodeId) -> Result<Option<CodeState>, Self::Error>;
    /// Count one use of `purpose`, only while fewer than `max_uses` (if any)
    /// were counted. `Ok(false)`: the limit was reached, nothing written.
    fn record_use(
        &mut self,
        id: &CodeId,
        purpose: Purpose,
        max_uses: Option<u32>,
        now: i64,
    ) -> Result<bool, Self::Error>;
    /// Take back one counted use of `purpose`. `Ok(false)`: none was
    /// counted, nothing written.
    fn release_use(&mut self, id: &CodeId, purpose: Purpose) -> Result<bool, Self::Error>;
    /// Mark a code revoked. `Ok(false)`: no such code, or already revoked.
    fn mark_revoked(
        &mut self,
        id: &CodeId,
        by: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, Self::Error>;
    /// The failure count for a key.
    fn throttle(&mut self, key: &ThrottleKey) -> Result<Option<ThrottleState>, Self::Error>;
    /// Replace (or with `None`, clear) the failure count for a key.
    fn set_throttle(
        &mut self,
        key: &ThrottleKey,
        state: Option<&ThrottleState>,
    ) -> Result<(), Self::Error>;
    /// Record an event in the audit log.
    fn record_event(&mut self, event: &CodeEvent<'_>) -> Result<(), Self::Error>;
}
