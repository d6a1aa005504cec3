//! Every stable code eos-register produces, in one place (docs/CODES.md): the
//! `error` of every answer the open zone refuses ([`crate::ApiError::code`]),
//! and why a renewal was refused ([`crate::renewal::Refusal::code`]). A refused
//! CSR is answered with eos-ca's code. Scripts, JSON output and the audit log
//! match on these strings; `cargo xtask tidy` checks each is distinct,
//! documented and produced by a test.

/// A stable code of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// Any problem with a security code (the reason is in the audit log only).
    CodeRejected,
    /// The client address is backing off after failed code checks.
    Throttled,
    /// Over a rate limit.
    RateLimited,
    /// The body is not the JSON the endpoint takes.
    BadRequest,
    /// Not the `Content-Type` the endpoint takes.
    UnsupportedMediaType,
    /// An EST request without usable HTTP credentials (RFC 7030 §3.2.3).
    CredentialsRequired,
    /// The body is over the size limit.
    PayloadTooLarge,
    /// The request took longer than the request timeout.
    Timeout,
    /// The address to register is not the client's own.
    AddressMismatch,
    /// A trusted proxy forwarded something that is not an address.
    UnknownClientAddress,
    /// The client address is not one a host connects from.
    UnroutableClientAddress,
    /// This deployment issues no certificates.
    CaUnavailable,
    /// The state store cannot be reached now; nothing was changed.
    StoreUnavailable,
    /// Something failed on the service's side.
    Internal,
    /// No client certificate was presented.
    RenewalNoCertificate,
    /// The presented certificate does not parse.
    RenewalBadCertificate,
    /// The presented certificate is not the CA's.
    RenewalForeignCa,
    /// The certificate is not in the inventory.
    RenewalUnknownCertificate,
    /// The certificate is revoked.
    RenewalRevoked,
    /// The certificate has expired.
    RenewalExpired,
    /// Too early in the certificate's lifetime to renew.
    RenewalTooEarly,
    /// The certificate was already renewed.
    RenewalSuperseded,
    /// The account is disabled.
    AccountDisabled,
}

impl Code {
    /// Every code, in the order of docs/CODES.md.
    pub const ALL: &[Code] = &[
        Code::CodeRejected,
        Code::Throttled,
        Code::RateLimited,
        Code::BadRequest,
        Code::UnsupportedMediaType,
        Code::CredentialsRequired,
        Code::PayloadTooLarge,
        Code::Timeout,
        Code::AddressMismatch,
        Code::UnknownClientAddress,
        Code::UnroutableClientAddress,
        Code::CaUnavailable,
        Code::StoreUnavailable,
        Code::Internal,
        Code::RenewalNoCertificate,
        Code::RenewalBadCertificate,
        Code::RenewalForeignCa,
        Code::RenewalUnknownCertificate,
        Code::RenewalRevoked,
        Code::RenewalExpired,
        Code::RenewalTooEarly,
        Code::RenewalSuperseded,
        Code::AccountDisabled,
    ];

    /// The code as scripts see it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::CodeRejected => "code-rejected",
            Code::Throttled => "throttled",
            Code::RateLimited => "rate-limited",
            Code::BadRequest => "bad-request",
            Code::UnsupportedMediaType => "unsupported-media-type",
            Code::CredentialsRequired => "credentials-required",
            Code::PayloadTooLarge => "payload-too-large",
            Code::Timeout => "timeout",
            Code::AddressMismatch => "address-mismatch",
            Code::UnknownClientAddress => "unknown-client-address",
            Code::UnroutableClientAddress => "unroutable-client-address",
            Code::CaUnavailable => "ca-unavailable",
            Code::StoreUnavailable => "store-unavailable",
            Code::Internal => "internal",
            Code::RenewalNoCertificate => "renewal-no-certificate",
            Code::RenewalBadCertificate => "renewal-bad-certificate",
            Code::RenewalForeignCa => "renewal-foreign-ca",
            Code::RenewalUnknownCertificate => "renewal-unknown-certificate",
            Code::RenewalRevoked => "renewal-revoked",
            Code::RenewalExpired => "renewal-expired",
            Code::RenewalTooEarly => "renewal-too-early",
            Code::RenewalSuperseded => "renewal-superseded",
            Code::AccountDisabled => "account-disabled",
        }
    }
}
