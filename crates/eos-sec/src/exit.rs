//! Exit codes: 0 success, 1 operational failure, 2 bad input or usage; a
//! command with outcomes of its own (`drill`) returns [`Failed`] with its
//! documented code after printing its report.

/// A problem with what the user gave us (arguments, files, config). Maps to
/// exit code 2. The message names what was wrong and where.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Shorthand for returning a [`BadInput`].
macro_rules! bad_input {
    ($($arg:tt)*) => {
        ::anyhow::Error::new($crate::exit::BadInput(format!($($arg)*)))
    };
}
pub(crate) use bad_input;

/// A refusal the CLI words itself, with its stable code (docs/CODES.md),
/// carried into `--json`'s refusal document. An operational outcome (exit
/// 1), like the open zone's answer to the same refusal: `code verify`'s
/// rejected code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// The stable code.
    pub code: &'static str,
    /// What was refused.
    pub message: String,
}

/// A command ran and its report is printed, but its outcome is a failure
/// with a code of its own (`drill revocation`: 3 SLA missed, 4 the target
/// did not admit the drill certificate).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failed {
    /// The exit code.
    pub code: u8,
    /// What failed.
    pub message: String,
}

/// Exit code for an error: a [`Failed`]'s own code; 2 when anything in its chain is a bad-input error
/// of ours or of a library, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(f) = err.chain().find_map(|e| e.downcast_ref::<Failed>()) {
        return f.code;
    }
    if err.chain().any(is_bad_input) { 2 } else { 1 }
}

/// Library error types that are operational failures (exit 1) whatever
/// they hold. [`exit_code`] needs no list for them (what is not bad input
/// exits 1), but `cargo xtask tidy` requires every error type of a library
/// crate to be named either here or in [`is_bad_input`] — and every name
/// here to be an error type of that crate — so a new error type is
/// classified on purpose and never exits 1 by omission.
#[allow(dead_code)] // read by `cargo xtask tidy`
const OPERATIONAL: &[&str] = &[
    "eos_store::StoreError",
    "eos_store::codes::SpendError",
    "eos_sync::SyncError",
    "eos_plan::BackendError",
    "eos_codes::CheckError",
    "eos_codes::IssueError",
    "eos_codes::RandomError",
    "eos_register::renewal::RenewalError",
    "eos_authz::ReloadError",
    // A CRL that AWS Private CA published and that does not check out
    // against the CA (it reaches the CLI wrapped in a PrivateCaError).
    "eos_ca::CrlError",
    // A file that could not be written whole (it reaches the CLI inside the
    // CA's or the renew agent's errors, which say whether it was the user's
    // path).
    "eos_ops::WriteError",
    "eos_aws::cloudwatch::CloudWatchError",
    "eos_aws::wafv2::ConnectError",
    "eos_aws::client::Unreachable",
    // The kind inside an `eos_ipset::ParseError`, which is bad input.
    "eos_ipset::ParseErrorKind",
];

/// Whether `e` is a problem with what the user gave: arguments, files,
/// config.
fn is_bad_input(e: &(dyn std::error::Error + 'static)) -> bool {
    {
        e.is::<BadInput>()
            || e.is::<eos_ipset::LineError>()
            || e.is::<eos_ipset::ParseError>()
            || matches!(
                e.downcast_ref::<eos_ipset::ReadError>(),
                Some(eos_ipset::ReadError::Line(_))
            )
            || e.is::<toml::de::Error>()
            || e.is::<eos_codes::PepperError>()
            || e.is::<eos_codes::BindingError>()
            || e.is::<eos_codes::FormatError>()
            || e.is::<eos_ca::CsrError>()
            || e.is::<eos_identity::IdError>()
            || e.downcast_ref::<eos_ca::IssueError>()
                .is_some_and(eos_ca::IssueError::is_bad_input)
            || e.downcast_ref::<eos_ops::OpsError>()
                .is_some_and(eos_ops::OpsError::is_bad_input)
            || e.downcast_ref::<eos_ops::issuance::IssuanceError>()
                .is_some_and(eos_ops::issuance::IssuanceError::is_bad_input)
            || e.downcast_ref::<eos_ops::ca::CaError>()
                .is_some_and(eos_ops::ca::CaError::is_bad_input)
            || e.downcast_ref::<eos_ops::ca::SignError>()
                .is_some_and(eos_ops::ca::SignError::is_bad_input)
            || e.downcast_ref::<eos_policy::PolicyError>()
                .is_some_and(eos_policy::PolicyError::is_bad_input)
            || e.downcast_ref::<eos_policy::gate::GateError>()
                .is_some_and(eos_policy::gate::GateError::is_bad_input)
            || e.downcast_ref::<eos_aws::acmpca::PrivateCaError>()
                .is_some_and(eos_aws::acmpca::PrivateCaError::is_bad_input)
            || e.is::<eos_logs::OptionsError>()
            || e.downcast_ref::<eos_logs::ScanError>()
                .is_some_and(eos_logs::ScanError::is_bad_input)
            || e.is::<eos_plan::RuleImportError>()
            || e.is::<eos_plan::Refused>()
            || e.is::<eos_plan::SavedPlanError>()
            || e.is::<eos_plan::OptionsError>()
            || e.is::<eos_plan::rules::RuleFieldError>()
            // The listen address in the config or on the command line
            // cannot be used (taken, not a socket, not permitted).
            || e.is::<eos_authz::BindError>()
            || e.downcast_ref::<eos_authz::probe::ProbeError>()
                .is_some_and(eos_authz::probe::ProbeError::is_bad_input)
            || e.downcast_ref::<eos_register::agent::AgentError>()
                .is_some_and(eos_register::agent::AgentError::is_bad_input)
            || matches!(
                e.downcast_ref::<eos_register::RegisterError>(),
                Some(
                    eos_register::RegisterError::Config(_)
                        | eos_register::RegisterError::Tls { .. }
                )
            )
            || matches!(
                e.downcast_ref::<eos_plan::ApplyError>(),
                Some(eos_plan::ApplyError::WrongBackend { .. })
            )
    }
}
