//! Why a code was refused (for the audit log; callers see one generic
//! message), and the errors of a check and of issuing.

use std::fmt;
use std::time::Duration;

use super::GENERIC_REJECTION;
use crate::format::{CodeId, RandomError};

/// Why a code was refused. For the audit log and operators only: callers
/// get [`GENERIC_REJECTION`] whatever the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RefusalReason {
    /// Not a well-formed code (length, symbol, check symbol).
    Malformed,
    /// No code with this id.
    UnknownCode,
    /// The id exists, the secret does not match.
    WrongSecret,
    /// Past its expiry.
    Expired,
    /// This purpose's uses are used up.
    Spent,
    /// Revoked by an operator.
    Revoked,
    /// Not issued for this purpose.
    WrongPurpose,
    /// Presented for another space than the one it was issued for.
    WrongSpace,
    /// Its hash was made with a pepper that is no longer configured.
    PepperUnavailable,
    /// Presented to recover, but not an administrator's: recovery is only
    /// ever granted to administrators (issuing refuses such codes; this
    /// catches one issued before it did).
    RecoverNotAdmin,
}

impl RefusalReason {
    /// Every reason, in the order of docs/CODES.md.
    pub const ALL: &[RefusalReason] = &[
        RefusalReason::Malformed,
        RefusalReason::UnknownCode,
        RefusalReason::WrongSecret,
        RefusalReason::Expired,
        RefusalReason::Spent,
        RefusalReason::Revoked,
        RefusalReason::WrongPurpose,
        RefusalReason::WrongSpace,
        RefusalReason::PepperUnavailable,
        RefusalReason::RecoverNotAdmin,
    ];

    /// The stable name, as in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Malformed => "malformed",
            RefusalReason::UnknownCode => "unknown-code",
            RefusalReason::WrongSecret => "wrong-secret",
            RefusalReason::Expired => "expired",
            RefusalReason::Spent => "spent",
            RefusalReason::Revoked => "revoked",
            RefusalReason::WrongPurpose => "wrong-purpose",
            RefusalReason::WrongSpace => "wrong-space",
            RefusalReason::PepperUnavailable => "pepper-unavailable",
            RefusalReason::RecoverNotAdmin => "recover-not-admin",
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused code. Displays as [`GENERIC_REJECTION`], whatever the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub(super) reason: RefusalReason,
    pub(super) code_id: Option<CodeId>,
}

impl Rejection {
    /// The precise reason, for the audit log and operators — never for the
    /// caller that presented the code.
    pub fn audit_reason(&self) -> RefusalReason {
        self.reason
    }

    /// The id the presented code named, when it was well-formed.
    pub fn code_id(&self) -> Option<&CodeId> {
        self.code_id.as_ref()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(GENERIC_REJECTION)
    }
}

impl std::error::Error for Rejection {}

/// Why a check did not produce a grant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError<E> {
    /// The code was refused (one generic message for every reason).
    #[error(transparent)]
    Rejected(Rejection),
    /// The source address is backing off; nothing was evaluated.
    #[error("too many failed attempts from this address; retry in {}s", retry_after.as_secs())]
    Throttled {
        /// How long until an attempt is evaluated again.
        retry_after: Duration,
    },
    /// The store failed; nothing was decided.
    #[error("code store: {0}")]
    Store(#[source] E),
}

/// Why issuing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError<E> {
    /// The random source failed.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// Fresh ids kept colliding with stored ones (should never happen with
    /// 45-bit ids; a sign of a broken random source).
    #[error("generated code ids collided {0} times in a row; refusing to continue")]
    IdCollision(u32),
    /// The store failed.
    #[error("code store: {0}")]
    Store(#[source] E),
}
