//! Every stable code eos-ca produces, in one place (docs/CODES.md): the CSR
//! refusals (`csr-*`, [`crate::CsrError::code`]) and why a certificate was not
//! issued ([`crate::IssueError::code`]). Scripts, JSON output and the audit log
//! match on these strings; `cargo xtask tidy` checks each is distinct,
//! documented and produced by a test.

/// A stable code of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// No CSR was given.
    CsrEmpty,
    /// The CSR is over the size cap (checked before parsing).
    CsrTooLarge,
    /// The PEM armour is broken.
    CsrBadPem,
    /// PEM with a label other than `CERTIFICATE REQUEST`.
    CsrWrongPemLabel,
    /// Bytes after the request (DER) or after the PEM end line.
    CsrTrailingBytes,
    /// Not a strict-DER PKCS#10 structure.
    CsrMalformed,
    /// A PKCS#10 version other than 0 (v1).
    CsrBadVersion,
    /// The subject name is larger than allowed.
    CsrSubjectTooLarge,
    /// A key algorithm other than EC or RSA.
    CsrUnsupportedKey,
    /// An EC key on a curve other than P-256 or P-384.
    CsrUnsupportedCurve,
    /// An EC key with explicit curve parameters (CVE-2020-0601).
    CsrExplicitCurveParams,
    /// The public key does not decode.
    CsrInvalidKey,
    /// An RSA modulus outside 2048 to 4096 bits.
    CsrRsaKeySize,
    /// An RSA public exponent other than 65537.
    CsrRsaExponent,
    /// Signed with a broken hash (MD2, MD5, SHA-1).
    CsrWeakHash,
    /// A signature algorithm eos-sec does not accept.
    CsrUnsupportedSignatureAlgorithm,
    /// A signature algorithm that does not belong to the key's type.
    CsrSignatureAlgorithmMismatch,
    /// The proof of possession failed.
    CsrBadSignature,
    /// The same extension requested twice.
    CsrDuplicateExtension,
    /// A requested extension that does not decode.
    CsrMalformedExtension,
    /// The CSR's key is the CA's own key.
    CsrCaKey,
    /// The CSR's key is already bound to another account.
    CsrKeyReuse,
    /// A lifetime over the profile's cap was asked for.
    LifetimeOverCap,
    /// A lifetime of zero was asked for.
    LifetimeZero,
    /// The CA certificate has expired or expires too soon to issue.
    CaNotValid,
    /// The CA certificate or key is unusable.
    CaUnusable,
    /// The issuance policy is incoherent.
    PolicyInvalid,
    /// A certificate about to be signed, or returned, breaks its plan.
    CertPolicyViolation,
    /// Encoding a certificate or CRL failed.
    Encoding,
    /// The signing backend failed.
    SignerFailed,
}

impl Code {
    /// Every code, in the order of docs/CODES.md.
    pub const ALL: &[Code] = &[
        Code::CsrEmpty,
        Code::CsrTooLarge,
        Code::CsrBadPem,
        Code::CsrWrongPemLabel,
        Code::CsrTrailingBytes,
        Code::CsrMalformed,
        Code::CsrBadVersion,
        Code::CsrSubjectTooLarge,
        Code::CsrUnsupportedKey,
        Code::CsrUnsupportedCurve,
        Code::CsrExplicitCurveParams,
        Code::CsrInvalidKey,
        Code::CsrRsaKeySize,
        Code::CsrRsaExponent,
        Code::CsrWeakHash,
        Code::CsrUnsupportedSignatureAlgorithm,
        Code::CsrSignatureAlgorithmMismatch,
        Code::CsrBadSignature,
        Code::CsrDuplicateExtension,
        Code::CsrMalformedExtension,
        Code::CsrCaKey,
        Code::CsrKeyReuse,
        Code::LifetimeOverCap,
        Code::LifetimeZero,
        Code::CaNotValid,
        Code::CaUnusable,
        Code::PolicyInvalid,
        Code::CertPolicyViolation,
        Code::Encoding,
        Code::SignerFailed,
    ];

    /// The code as scripts see it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::CsrEmpty => "csr-empty",
            Code::CsrTooLarge => "csr-too-large",
            Code::CsrBadPem => "csr-bad-pem",
            Code::CsrWrongPemLabel => "csr-wrong-pem-label",
            Code::CsrTrailingBytes => "csr-trailing-bytes",
            Code::CsrMalformed => "csr-malformed",
            Code::CsrBadVersion => "csr-bad-version",
            Code::CsrSubjectTooLarge => "csr-subject-too-large",
            Code::CsrUnsupportedKey => "csr-unsupported-key",
            Code::CsrUnsupportedCurve => "csr-unsupported-curve",
            Code::CsrExplicitCurveParams => "csr-explicit-curve-params",
            Code::CsrInvalidKey => "csr-invalid-key",
            Code::CsrRsaKeySize => "csr-rsa-key-size",
            Code::CsrRsaExponent => "csr-rsa-exponent",
            Code::CsrWeakHash => "csr-weak-hash",
            Code::CsrUnsupportedSignatureAlgorithm => "csr-unsupported-signature-algorithm",
            Code::CsrSignatureAlgorithmMismatch => "csr-signature-algorithm-mismatch",
            Code::CsrBadSignature => "csr-bad-signature",
            Code::CsrDuplicateExtension => "csr-duplicate-extension",
            Code::CsrMalformedExtension => "csr-malformed-extension",
            Code::CsrCaKey => "csr-ca-key",
            Code::CsrKeyReuse => "csr-key-reuse",
            Code::LifetimeOverCap => "lifetime-over-cap",
            Code::LifetimeZero => "lifetime-zero",
            Code::CaNotValid => "ca-not-valid",
            Code::CaUnusable => "ca-unusable",
            Code::PolicyInvalid => "policy-invalid",
            Code::CertPolicyViolation => "cert-policy-violation",
            Code::Encoding => "encoding",
            Code::SignerFailed => "signer-failed",
        }
    }
}
