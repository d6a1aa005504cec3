//! The entityOS CA: CSR validation, certificate signing from the account
//! record, revocation lists and trust bundles.
//!
//! Flow: outside bytes → [`validate_csr`] → [`ValidatedCsr`] (proof type) →
//! [`plan_certificate`] (identity from the account record, lifetime from the
//! profile) → a [`Signer`] (the [`LocalCa`] key, or AWS Private CA in
//! `eos-aws`) → [`check_issued`] (the certificate that came back is held to
//! the plan before anyone sees it).
//!
//! The crate does no I/O: key files, the inventory and AWS live in the CLI,
//! `eos-store` and `eos-aws`, which plug in through [`Signer`].

mod boxed;
mod ca;
mod codes;
mod crl;
mod csr;
mod key;
mod oids;
mod profile;

pub use boxed::BoxedSigner;
pub use ca::{
    Account, CRL_BACKDATE, CaEnv, CaInfo, CertificatePlan, IssueError, IssueRequest, KeyOwner,
    LocalCa, MAX_COMMON_NAME, MAX_CRL_VALIDITY, Passphrase, RevocationReason, RevokedEntry, Serial,
    Signer, Strictness, WITHDRAWAL_REASON, Withdrawal, certificate_from_pem, certificate_pem,
    check_issued, check_tbs, crl_pem, issue, plan_certificate, rfc3339, serial_of, withdrawal_note,
};
pub use codes::Code;
pub use crl::{CheckedCrl, CrlError, check_ca_crl};
pub use csr::{
    CsrError, CsrLimits, IgnoredRequest, KeyFingerprint, KeyKind, ValidatedCsr, validate_csr,
};
pub use profile::{IssuancePolicy, Lifetime, Profile, format_duration};
pub use x509_cert::Certificate;
pub use x509_cert::crl::CertificateList;
