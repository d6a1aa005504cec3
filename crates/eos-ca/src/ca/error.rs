//! Why a certificate was not issued, or a CA not created, loaded or used.

use std::fmt;

use crate::Code;
use crate::csr::CsrError;
use crate::profile::Profile;

/// Why a certificate was not issued (besides a refused CSR), or a CA could
/// not be created, loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The CSR or its key was refused.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// A lifetime over the profile's cap was asked for.
    #[error("lifetime {requested} for profile {profile} is over its cap {max}")]
    LifetimeOverCap {
        /// The profile.
        profile: Profile,
        /// What was asked.
        requested: String,
        /// The cap.
        max: String,
    },
    /// A lifetime of zero was asked for.
    #[error("lifetime 0s for profile {profile} is empty; give a lifetime above zero, up to {max}")]
    LifetimeZero {
        /// The profile.
        profile: Profile,
        /// The cap.
        max: String,
    },
    /// The CA certificate has expired or expires before anything useful
    /// could be issued.
    #[error("the CA certificate is not valid now (valid {not_before} to {not_after})")]
    CaNotValid {
        /// CA notBefore.
        not_before: String,
        /// CA notAfter.
        not_after: String,
    },
    /// The CA certificate or key is unusable (not a CA, key mismatch,
    /// unsupported key).
    #[error("ca: {0}")]
    BadCa(String),
    /// The issuance policy is incoherent.
    #[error("issuance policy: {0}")]
    BadPolicy(String),
    /// The certificate about to be signed, or the one returned, breaks the
    /// plan. Never expected: it means a bug or a misbehaving backend, and
    /// nothing is issued.
    #[error("certificate policy violation: {rule}: {detail}")]
    PolicyViolation {
        /// The rule, e.g. `basic-constraints`.
        rule: &'static str,
        /// What was found.
        detail: String,
    },
    /// Encoding failed.
    #[error("encoding: {0}")]
    Encoding(String),
    /// The signing backend failed (AWS Private CA, key unavailable).
    #[error("signer: {0}")]
    Signer(String),
    /// The signer returned a certificate that breaks the plan: it is not
    /// handed out, and it was withdrawn from the signer ([`Signer::withdraw`](crate::Signer::withdraw):
    /// revoked where the signer keeps what it signs).
    #[error(
        "the CA signed certificate {serial}, which breaks its plan ({violation}); {withdrawal}"
    )]
    Rejected {
        /// The certificate's serial.
        serial: String,
        /// What it breaks.
        violation: Box<IssueError>,
        /// What became of it ([`withdrawal_note`](crate::withdrawal_note)).
        withdrawal: String,
    },
}

impl IssueError {
    /// A stable code for scripts and JSON output.
    pub fn code(&self) -> &'static str {
        match self {
            IssueError::Csr(e) => e.code(),
            IssueError::LifetimeOverCap { .. } => Code::LifetimeOverCap.as_str(),
            IssueError::LifetimeZero { .. } => Code::LifetimeZero.as_str(),
            IssueError::CaNotValid { .. } => Code::CaNotValid.as_str(),
            IssueError::BadCa(_) => Code::CaUnusable.as_str(),
            IssueError::BadPolicy(_) => Code::PolicyInvalid.as_str(),
            IssueError::PolicyViolation { .. } => Code::CertPolicyViolation.as_str(),
            IssueError::Encoding(_) => Code::Encoding.as_str(),
            IssueError::Signer(_) => Code::SignerFailed.as_str(),
            IssueError::Rejected { violation, .. } => violation.code(),
        }
    }

    /// Whether the refusal is about the caller's input (exit 2) rather than
    /// an operational failure (exit 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            IssueError::Csr(_)
                | IssueError::LifetimeOverCap { .. }
                | IssueError::LifetimeZero { .. }
        )
    }
}

pub(super) fn enc(e: impl fmt::Display) -> IssueError {
    IssueError::Encoding(e.to_string())
}

pub(super) fn violation(rule: &'static str, detail: impl Into<String>) -> IssueError {
    IssueError::PolicyViolation {
        rule,
        detail: detail.into(),
    }
}
