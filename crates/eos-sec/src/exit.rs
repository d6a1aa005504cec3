//! Exit codes: 0 success, 1 operational failure, 2 bad input or usage.

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

/// Exit code for an error: 2 when anything in its chain is a bad-input error
/// of ours or of a library, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let bad = err.chain().any(|e| {
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
    });
    if bad { 2 } else { 1 }
}
