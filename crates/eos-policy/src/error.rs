//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the policy model. Bad input (the policy
/// file, a certificate file, a record) is distinguishable from operational
/// failures with [`PolicyError::is_bad_input`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy file could not be parsed or is inconsistent.
    #[error("{file}:{line}:{column}: {message}")]
    File {
        /// The policy file.
        file: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// What was wrong.
        message: String,
    },
    /// A space was named that the policy does not declare.
    #[error("space `{0}` is not declared in the policy file")]
    UnknownSpace(String),
    /// A certificate, chain, CA bundle or CRL could not be read or parsed.
    #[error("{what} {path}: {message}")]
    Pki {
        /// "CA bundle", "CRL", "client certificate".
        what: &'static str,
        /// Where it came from.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The compiled Web ACL would exceed an AWS WAF limit.
    #[error("compiled web ACL exceeds an AWS WAF limit: {0}")]
    Limit(String),
    /// A guard refused (nothing was written). Every guard carries its
    /// stable code.
    #[error("{what} refused: {}", guards.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused {
        /// What was refused (`enforce`).
        what: String,
        /// The guards that tripped.
        guards: Vec<crate::enforce::Guard>,
    },
    /// A stage or snapshot that cannot be moved to.
    #[error("{0}")]
    Stage(String),
    /// The Web ACL or IPSet backend failed.
    #[error(transparent)]
    Backend(#[from] eos_plan::BackendError),
    /// The certificate gate's backend failed, or a listener or trust store
    /// is missing or read back wrong.
    #[error(transparent)]
    Gate(#[from] crate::gate::GateError),
    /// The state store failed.
    #[error("state store: {0}")]
    Journal(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl PolicyError {
    /// True when the error is about what the user supplied (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            PolicyError::Gate(e) => e.is_bad_input(),
            PolicyError::Backend(_) | PolicyError::Journal(_) => false,
            _ => true,
        }
    }

    pub(crate) fn file(file: &str, message: impl Into<String>) -> PolicyError {
        PolicyError::File {
            file: file.to_owned(),
            line: 0,
            column: 0,
            message: message.into(),
        }
    }
}
