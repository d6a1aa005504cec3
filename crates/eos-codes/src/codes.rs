//! Every stable code eos-codes produces, in one place (docs/CODES.md): why a
//! code was not issued ([`crate::BindingError::code`]). Why a presented code
//! was refused is [`crate::RefusalReason`], recorded in the audit log only.
//! Scripts, JSON output and the audit log match on these strings; `cargo xtask
//! tidy` checks each is distinct, documented and produced by a test.

/// A stable code of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// A purpose that is not `register-ip`, `register-cert` or `recover`.
    UnknownPurpose,
    /// A code with no purpose.
    NoPurpose,
    /// A lifetime outside the allowed range.
    TtlOutOfRange,
    /// A lifetime that is not a duration.
    TtlSyntax,
    /// Zero uses.
    ZeroUses,
    /// A code that can recover, for someone who is not an administrator.
    RecoverNotAdmin,
}

impl Code {
    /// Every code, in the order of docs/CODES.md.
    pub const ALL: &[Code] = &[
        Code::UnknownPurpose,
        Code::NoPurpose,
        Code::TtlOutOfRange,
        Code::TtlSyntax,
        Code::ZeroUses,
        Code::RecoverNotAdmin,
    ];

    /// The code as scripts see it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::UnknownPurpose => "unknown-purpose",
            Code::NoPurpose => "no-purpose",
            Code::TtlOutOfRange => "ttl-out-of-range",
            Code::TtlSyntax => "ttl-syntax",
            Code::ZeroUses => "zero-uses",
            Code::RecoverNotAdmin => "recover-not-admin",
        }
    }
}
