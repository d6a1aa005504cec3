//! Revocation entries and reasons, and the CRL's time limits.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use x509_cert::ext::pkix::CrlReason;

use super::*;

/// A revoked certificate, for the CRL.
#[derive(Debug, Clone)]
pub struct RevokedEntry {
    /// Its serial.
    pub serial: Serial,
    /// When it was revoked.
    pub revoked_at: SystemTime,
    /// Why.
    pub reason: RevocationReason,
}

/// RFC 5280 §5.3.1 reasons an operator may give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RevocationReason {
    /// No reason given.
    Unspecified,
    /// The private key was compromised.
    KeyCompromise,
    /// The user left the space or changed role.
    AffiliationChanged,
    /// Replaced by a new certificate.
    Superseded,
    /// No longer needed.
    CessationOfOperation,
}

impl RevocationReason {
    /// Kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::AffiliationChanged => "affiliation-changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation-of-operation",
        }
    }

    pub(super) fn crl_reason(self) -> CrlReason {
        match self {
            RevocationReason::Unspecified => CrlReason::Unspecified,
            RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
            RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
            RevocationReason::Superseded => CrlReason::Superseded,
            RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevocationReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            RevocationReason::Unspecified,
            RevocationReason::KeyCompromise,
            RevocationReason::AffiliationChanged,
            RevocationReason::Superseded,
            RevocationReason::CessationOfOperation,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| {
            format!(
                "unknown revocation reason `{s}`; expected unspecified, key-compromise, affiliation-changed, superseded or cessation-of-operation"
            )
        })
    }
}

/// The longest a CRL may be valid: relying parties refetch within a day.
pub const MAX_CRL_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// How far a CRL's thisUpdate is set before now: the default backdate of
/// certificates' notBefore ([`IssuancePolicy::backdate`](crate::IssuancePolicy::backdate)), for the same
/// verifiers with slow clocks.
pub const CRL_BACKDATE: Duration = Duration::from_secs(300);
