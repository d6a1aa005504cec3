//! The operations' error, and what kind of failure each is.

use eos_plan::{ApplyError, BackendError, IpSetName, Refused};
use eos_policy::PolicyError;
use eos_store::StoreError;

/// What kind of failure an error is, for callers that map errors to exit
/// codes or HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A problem with what the caller gave (input, a plan file, a refused
    /// guard): nothing changed; fix the input and run again.
    BadInput,
    /// Something failed on the way (the store, a backend).
    Failure,
}

impl ErrorKind {
    /// The CLI's exit code: 2 for bad input, 1 for a failure.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::BadInput => 2,
            ErrorKind::Failure => 1,
        }
    }
}

/// Why an operation stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpsError {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A set could not be read from the backend.
    #[error("reading {name}")]
    Read {
        /// The set.
        name: IpSetName,
        /// Why.
        source: BackendError,
    },
    /// Planning refused (guards with stable codes).
    #[error(transparent)]
    Refused(#[from] Refused),
    /// Applying a plan stopped.
    #[error("apply stopped")]
    Apply(#[source] ApplyError),
    /// Staging (bootstrap's apply) stopped; nothing of the bootstrap's
    /// input was stored.
    #[error(
        "staging stopped; nothing of this bootstrap was stored (no rule, observation, plan or audit entry). \
         Of the sets it was staging ({sets}), any written before the failure keeps what was written, \
         recorded as eos-sec's: `eos-sec plan` shows it, and running bootstrap again completes it"
    )]
    Staging {
        /// The sets it was staging.
        sets: String,
        /// Why.
        source: ApplyError,
    },
    /// Bootstrap planning failed; nothing of its input was stored.
    #[error("nothing of this bootstrap was stored")]
    NotStored(#[source] Box<OpsError>),
    /// The sets were staged but the bootstrap's record failed.
    #[error("recording the bootstrap (the sets were staged; run bootstrap again)")]
    Recording(#[source] StoreError),
    /// Enforce or rollback stopped or refused.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl OpsError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        let apply = |e: &ApplyError| match e {
            ApplyError::WrongBackend { .. } => ErrorKind::BadInput,
            _ => ErrorKind::Failure,
        };
        match self {
            OpsError::Refused(_) => ErrorKind::BadInput,
            OpsError::Apply(e) | OpsError::Staging { source: e, .. } => apply(e),
            OpsError::NotStored(e) => e.kind(),
            OpsError::Policy(e) if e.is_bad_input() => ErrorKind::BadInput,
            OpsError::Store(_)
            | OpsError::Read { .. }
            | OpsError::Recording(_)
            | OpsError::Policy(_) => ErrorKind::Failure,
        }
    }

    /// Whether this is bad input ([`ErrorKind::BadInput`]).
    pub fn is_bad_input(&self) -> bool {
        self.kind() == ErrorKind::BadInput
    }

    /// The findings of a planning refusal, when this is one (also inside
    /// [`OpsError::NotStored`]).
    pub fn refused(&self) -> Option<&Refused> {
        match self {
            OpsError::Refused(r) => Some(r),
            OpsError::NotStored(e) => e.refused(),
            _ => None,
        }
    }
}
