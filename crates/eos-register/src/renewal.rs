//! Renewal: a certificate of this CA buys its own successor, no security
//! code needed. The caller has authenticated the presenter — the TLS
//! handshake proved possession of the certificate's key (the listener asks
//! for an optional client certificate of the entityOS CA), or a trusted
//! load balancer in mTLS passthrough mode did and forwarded it — and hands
//! the certificate and a CSR (same key or a new one) to [`prepare_in`].
//!
//! The presented certificate must be exactly one this CA issued and
//! recorded (byte for byte: a certificate of another CA or environment, or
//! a forged one with a known serial, is refused), unrevoked, unexpired,
//! inside the renewal window (the last third of its lifetime by default),
//! not renewed before, and its account not disabled. The successor is
//! planned from the **inventory record** — its account and profile, the
//! profile's lifetime — never from the CSR or the presented certificate,
//! and goes through the one issuance flow (`issuance`: validate, plan,
//! sign, `check_issued`, record), recorded with `renewed_from` naming its
//! predecessor and audited `cert.renewed`.
//!
//! The predecessor is left to expire, not revoked: see docs/MTLS.md
//! ("Renewal") for why.
//!
//! Every refusal has a stable code ([`Refusal::code`]), documented in
//! docs/MTLS.md; they are answered as such by `/v1/renew` and by any other
//! front end built on this module.
//!
//! The registration service runs it as `/v1/cert` runs issuance: the checks
//! and the plan in one transaction, the signature with the store free, the
//! record in a second ([`crate::Registrar::renew`]); [`renew_in`] runs all
//! three in the caller's transaction.

use std::fmt;
use std::time::{Duration, SystemTime};

use der::Decode;
use eos_ca::{Account, Certificate, Profile, ValidatedCsr};
use eos_identity::{SpaceId, UserId};
use eos_store::StoreError;
use eos_store::Tx;
use eos_store::certs::{self, CertRecord};

use eos_ops::issuance::{self, CaSetup, IssuanceError, IssueAudit, IssueInput, Issued, Prepared};

use crate::Code;

/// When a certificate may be renewed: in the last `window` of its
/// lifetime (notBefore to notAfter). The default is the last third, so a
/// client that renews at about two thirds is never early.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenewalPolicy {
    window: f64,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        RenewalPolicy { window: 1.0 / 3.0 }
    }
}

impl RenewalPolicy {
    /// Renewal opens when `window` (a fraction of the lifetime, above 0 and
    /// at most 1) is left.
    pub fn new(window: f64) -> Result<RenewalPolicy, String> {
        if !(window > 0.0 && window <= 1.0) {
            return Err(format!(
                "renewal window {window} must be a fraction above 0 and at most 1"
            ));
        }
        Ok(RenewalPolicy { window })
    }

    /// The fraction of the lifetime at its end in which renewal is open.
    pub fn window(&self) -> f64 {
        self.window
    }

    /// When renewal of a certificate valid from `not_before` to `not_after`
    /// opens.
    pub fn opens_at(&self, not_before: SystemTime, not_after: SystemTime) -> SystemTime {
        let lifetime = not_after
            .duration_since(not_before)
            .unwrap_or(Duration::ZERO);
        not_after
            .checked_sub(lifetime.mul_f64(self.window))
            .unwrap_or(not_before)
    }
}

/// Why a renewal is refused: each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// No certificate was presented (`renewal-no-certificate`).
    NoCertificate,
    /// What was presented is not a certificate (`renewal-bad-certificate`).
    BadCertificate,
    /// Issued by another CA or another environment's CA, or by a signer
    /// this service no longer issues with (`renewal-foreign-ca`).
    ForeignCa,
    /// Not in the inventory, or not byte for byte the certificate recorded
    /// under its serial (`renewal-unknown-certificate`).
    UnknownCertificate,
    /// Revoked (`renewal-revoked`).
    Revoked {
        /// The serial.
        serial: String,
    },
    /// Past its notAfter, or before its notBefore (`renewal-expired`).
    Expired {
        /// The serial.
        serial: String,
    },
    /// Before the renewal window opens (`renewal-too-early`).
    TooEarly {
        /// The serial.
        serial: String,
        /// When it opens.
        opens_at: SystemTime,
    },
    /// Renewed already, by another key (`renewal-superseded`): a
    /// certificate has one successor, so a copy of it cannot fork the
    /// account's line of certificates.
    Superseded {
        /// The serial.
        serial: String,
        /// Its successor.
        by: String,
    },
    /// The account is disabled (`account-disabled`).
    AccountDisabled {
        /// The serial.
        serial: String,
    },
}

impl Refusal {
    /// Every code, for metrics and docs.
    pub const CODES: [&'static str; 9] = [
        Code::RenewalNoCertificate.as_str(),
        Code::RenewalBadCertificate.as_str(),
        Code::RenewalForeignCa.as_str(),
        Code::RenewalUnknownCertificate.as_str(),
        Code::RenewalRevoked.as_str(),
        Code::RenewalExpired.as_str(),
        Code::RenewalTooEarly.as_str(),
        Code::RenewalSuperseded.as_str(),
        Code::AccountDisabled.as_str(),
    ];

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NoCertificate => Code::RenewalNoCertificate.as_str(),
            Refusal::BadCertificate => Code::RenewalBadCertificate.as_str(),
            Refusal::ForeignCa => Code::RenewalForeignCa.as_str(),
            Refusal::UnknownCertificate => Code::RenewalUnknownCertificate.as_str(),
            Refusal::Revoked { .. } => Code::RenewalRevoked.as_str(),
            Refusal::Expired { .. } => Code::RenewalExpired.as_str(),
            Refusal::TooEarly { .. } => Code::RenewalTooEarly.as_str(),
            Refusal::Superseded { .. } => Code::RenewalSuperseded.as_str(),
            Refusal::AccountDisabled { .. } => Code::AccountDisabled.as_str(),
        }
    }

    /// How long until a retry can succeed (only [`Refusal::TooEarly`]).
    pub fn retry_after(&self, now: SystemTime) -> Option<Duration> {
        match self {
            Refusal::TooEarly { opens_at, .. } => {
                Some(opens_at.duration_since(now).unwrap_or(Duration::ZERO))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoCertificate => f.write_str(
                "no client certificate was presented; connect with the certificate to renew",
            ),
            Refusal::BadCertificate => f.write_str("the presented certificate cannot be read"),
            Refusal::ForeignCa => f.write_str("the certificate was not issued by this CA"),
            Refusal::UnknownCertificate => f.write_str("the certificate is not one this CA issued"),
            Refusal::Revoked { serial } => write!(f, "certificate {serial} is revoked"),
            Refusal::Expired { serial } => write!(
                f,
                "certificate {serial} is not valid now; get a new one with a security code"
            ),
            Refusal::TooEarly { serial, opens_at } => write!(
                f,
                "certificate {serial} can be renewed from {}",
                eos_ca::rfc3339(*opens_at)
            ),
            Refusal::Superseded { serial, by } => {
                write!(f, "certificate {serial} was already renewed (by {by})")
            }
            Refusal::AccountDisabled { serial } => {
                write!(f, "the account of certificate {serial} is disabled")
            }
        }
    }
}

/// Why a renewal did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenewalError {
    /// Refused, with a stable code.
    #[error("{0}")]
    Refused(Refusal),
    /// The issuance flow refused or failed (a bad CSR: `csr-*`).
    #[error(transparent)]
    Issuance(IssuanceError),
}

impl From<IssuanceError> for RenewalError {
    fn from(e: IssuanceError) -> Self {
        RenewalError::Issuance(e)
    }
}

/// An issuance error of the renewal of `serial`: a disabled account is the
/// renewal's own refusal.
fn issuance(serial: &str) -> impl FnOnce(IssuanceError) -> RenewalError + '_ {
    move |e| match e {
        IssuanceError::AccountDisabled { .. } => refused(Refusal::AccountDisabled {
            serial: serial.to_owned(),
        }),
        e => RenewalError::Issuance(e),
    }
}

impl From<StoreError> for RenewalError {
    fn from(e: StoreError) -> Self {
        RenewalError::Issuance(IssuanceError::Store(e))
    }
}

fn refused(r: Refusal) -> RenewalError {
    RenewalError::Refused(r)
}

/// What [`prepare_in`] found to do.
#[derive(Debug)]
pub enum Renewal {
    /// A successor is to be signed ([`Successor::prepared`] with
    /// [`issuance::sign`]) and recorded ([`record_in`]).
    Sign(Box<Successor>),
    /// The certificate was renewed before for the CSR's very key (a client
    /// retrying after a lost answer): that successor is the answer, nothing
    /// new is signed or recorded.
    Done(Box<Renewed>),
}

/// A successor checked and planned, ready to be signed.
#[derive(Debug)]
pub struct Successor {
    old: CertRecord,
    profile: Profile,
    prepared: Prepared,
}

impl Successor {
    /// The plan to sign ([`issuance::sign`]).
    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    /// The presented certificate's record.
    pub fn old(&self) -> &CertRecord {
        &self.old
    }
}

/// A renewal done (not yet committed when it came from [`record_in`]).
#[derive(Debug, Clone)]
pub struct Renewed {
    /// The presented certificate's serial.
    pub renewed: String,
    /// The account.
    pub account: Account,
    /// The profile.
    pub profile: Profile,
    /// The successor's serial.
    pub serial: String,
    /// The successor, PEM.
    pub pem: String,
    /// Its notAfter, RFC 3339.
    pub not_after: String,
    /// Whether this is an earlier renewal's answer again (see
    /// [`Renewal::Done`]).
    pub replayed: bool,
}

fn account_of(r: &CertRecord) -> Result<(Account, Profile), RenewalError> {
    let corrupt = |detail: String| {
        RenewalError::from(StoreError::Corrupt {
            what: "certificate inventory",
            detail,
        })
    };
    let space = SpaceId::new(&r.space).map_err(|e| corrupt(e.to_string()))?;
    let user = UserId::new(&r.user).map_err(|e| corrupt(e.to_string()))?;
    let profile = r.profile.parse::<Profile>().map_err(corrupt)?;
    Ok((Account { space, user }, profile))
}

fn parse_time(s: &str) -> Result<SystemTime, RenewalError> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(SystemTime::from)
        .map_err(|e| {
            RenewalError::from(StoreError::Corrupt {
                what: "certificate inventory",
                detail: format!("time `{s}`: {e}"),
            })
        })
}

/// The record of the presented certificate, if it may be renewed at `now`
/// under `policy`: issued by `ca`, recorded byte for byte, not revoked,
/// valid now, in its window. Its successor, when it has one, is returned
/// beside it (the caller decides between replay and `renewal-superseded`).
fn check_presented(
    tx: &Tx<'_>,
    ca: &CaSetup,
    policy: &RenewalPolicy,
    presented: &[u8],
    now: SystemTime,
) -> Result<CertRecord, RenewalError> {
    if presented.is_empty() {
        return Err(refused(Refusal::NoCertificate));
    }
    let cert = Certificate::from_der(presented).map_err(|_| refused(Refusal::BadCertificate))?;
    let tbs = cert.tbs_certificate();
    if tbs.issuer() != ca.info().subject() {
        return Err(refused(Refusal::ForeignCa));
    }
    let serial = eos_ca::serial_of(&cert).to_string();
    let record = match certs::get(tx, &serial) {
        Ok(r) => r,
        Err(StoreError::NotFound { .. }) => return Err(refused(Refusal::UnknownCertificate)),
        Err(e) => return Err(e.into()),
    };
    if record.signer != ca.signer_id() {
        return Err(refused(Refusal::ForeignCa));
    }
    // The recorded certificate, byte for byte: a certificate with a known
    // serial and the right issuer name that this CA did not sign is not it.
    let recorded = eos_ca::certificate_from_pem(&record.pem).map_err(|e| {
        RenewalError::from(StoreError::Corrupt {
            what: "certificate inventory",
            detail: format!("certificate {serial}: {e}"),
        })
    })?;
    if recorded != cert {
        return Err(refused(Refusal::UnknownCertificate));
    }
    if record.status == "revoked" {
        return Err(refused(Refusal::Revoked { serial }));
    }
    let not_before = parse_time(&record.not_before)?;
    let not_after = parse_time(&record.not_after)?;
    if now < not_before || now >= not_after {
        return Err(refused(Refusal::Expired { serial }));
    }
    // A retry after a lost answer is recognised before the window check:
    // the window has not moved, but the client already holds the answer's
    // key and only lost the certificate.
    if record.renewed_by.is_none() {
        let opens_at = policy.opens_at(not_before, not_after);
        if now < opens_at {
            return Err(refused(Refusal::TooEarly { serial, opens_at }));
        }
    }
    Ok(record)
}

/// Check the presented certificate (`presented`: its DER, from a TLS
/// handshake the caller verified or from a trusted proxy's header) and the
/// CSR, and plan its successor from the inventory record, reading the
/// store in `tx`. Nothing is written.
pub fn prepare_in(
    tx: &Tx<'_>,
    ca: &CaSetup,
    policy: &RenewalPolicy,
    presented: &[u8],
    csr: &[u8],
    now: SystemTime,
) -> Result<Renewal, RenewalError> {
    let old = check_presented(tx, ca, policy, presented, now)?;
    let csr: ValidatedCsr = issuance::validate(ca, csr)?;
    if let Some(by) = &old.renewed_by {
        let successor = certs::get(tx, by)?;
        if successor.key_fingerprint == csr.fingerprint().to_string()
            && successor.status == "active"
        {
            return Ok(Renewal::Done(Box::new(replay(&old, &successor)?)));
        }
        return Err(refused(Refusal::Superseded {
            serial: old.serial.clone(),
            by: by.clone(),
        }));
    }
    let (account, profile) = account_of(&old)?;
    let input = IssueInput {
        csr: &[],
        account: &account,
        profile,
        lifetime: None,
    };
    let prepared =
        issuance::prepare_validated_in(tx, ca, csr, &input, Some(old.serial.clone()), now)
            .map_err(issuance(&old.serial))?;
    Ok(Renewal::Sign(Box::new(Successor {
        old,
        profile,
        prepared,
    })))
}

/// What the presented certificate is and whether it can be renewed now
/// ([`status_in`]; the page shows it before offering "Renew").
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The space (from the inventory record).
    pub space: String,
    /// The user (from the inventory record).
    pub user: String,
    /// Lower-case hex serial.
    pub serial: String,
    /// RFC 3339.
    pub not_after: String,
    /// Whether a renewal with a new key would be accepted now.
    pub renewable: bool,
    /// When the renewal window opens, RFC 3339.
    pub renewable_from: String,
}

/// The presented certificate's [`Status`], reading the store in `tx`:
/// refused as [`prepare_in`] refuses it (a renewed certificate is
/// `renewal-superseded`, since a new key cannot renew it again), except
/// that one not yet in its window is described with `renewable: false`.
pub fn status_in(
    tx: &Tx<'_>,
    ca: &CaSetup,
    policy: &RenewalPolicy,
    presented: &[u8],
    now: SystemTime,
) -> Result<Status, RenewalError> {
    let (record, renewable) = match check_presented(tx, ca, policy, presented, now) {
        Ok(record) => (record, true),
        Err(RenewalError::Refused(Refusal::TooEarly { serial, .. })) => {
            (certs::get(tx, &serial)?, false)
        }
        Err(e) => return Err(e),
    };
    if let Some(by) = record.renewed_by {
        return Err(refused(Refusal::Superseded {
            serial: record.serial,
            by,
        }));
    }
    let serial = record.serial.clone();
    if eos_store::accounts::disabled(tx, &record.space, &record.user)?.is_some() {
        return Err(refused(Refusal::AccountDisabled { serial }));
    }
    let opens_at = policy.opens_at(
        parse_time(&record.not_before)?,
        parse_time(&record.not_after)?,
    );
    Ok(Status {
        space: record.space,
        user: record.user,
        serial,
        not_after: record.not_after,
        renewable,
        renewable_from: eos_ca::rfc3339(opens_at),
    })
}

/// Record a signed successor inside `tx` and audit it `cert.renewed`
/// (`audit.action` is ignored). The predecessor is checked again first: if
/// it was revoked or renewed meanwhile (the store was free while the CA
/// signed), the successor is refused (not recorded, not to be handed out).
pub fn record_in(
    tx: &Tx<'_>,
    ca: &CaSetup,
    audit: &IssueAudit<'_>,
    successor: &Successor,
    cert: &Certificate,
) -> Result<Renewed, RenewalError> {
    let Successor {
        old,
        profile,
        prepared,
    } = successor;
    let now = certs::get(tx, &old.serial)?;
    if now.status == "revoked" {
        return Err(refused(Refusal::Revoked {
            serial: old.serial.clone(),
        }));
    }
    if let Some(by) = now.renewed_by {
        return Err(refused(Refusal::Superseded {
            serial: old.serial.clone(),
            by,
        }));
    }
    let audit = IssueAudit {
        actor: audit.actor,
        action: "cert.renewed",
        extra: audit.extra.clone(),
    };
    let Issued {
        serial,
        pem,
        not_after,
        ..
    } = issuance::record_in(tx, ca, &audit, prepared, cert).map_err(issuance(&old.serial))?;
    Ok(Renewed {
        renewed: old.serial.clone(),
        account: prepared.account().clone(),
        profile: *profile,
        serial: serial.to_string(),
        pem,
        not_after,
        replayed: false,
    })
}

fn replay(old: &CertRecord, successor: &CertRecord) -> Result<Renewed, RenewalError> {
    let (account, profile) = account_of(successor)?;
    Ok(Renewed {
        renewed: old.serial.clone(),
        account,
        profile,
        serial: successor.serial.clone(),
        pem: successor.pem.clone(),
        not_after: successor.not_after.clone(),
        replayed: true,
    })
}

/// The actor a renewal is audited under: the presented certificate.
pub fn actor(serial: &str) -> String {
    eos_store::Actor::Cert(serial).to_string()
}

/// Renew inside `tx` in one go (prepare, sign, record), for callers that
/// need not free the store while the CA signs. A successor signed but not
/// recorded is withdrawn from the signer.
pub async fn renew_in(
    tx: &Tx<'_>,
    ca: &CaSetup,
    policy: &RenewalPolicy,
    presented: &[u8],
    csr: &[u8],
    audit: &IssueAudit<'_>,
    now: SystemTime,
) -> Result<Renewed, RenewalError> {
    let successor = match prepare_in(tx, ca, policy, presented, csr, now)? {
        Renewal::Done(renewed) => return Ok(*renewed),
        Renewal::Sign(s) => s,
    };
    let cert = issuance::sign(ca, &successor.prepared).await?;
    match record_in(tx, ca, audit, &successor, &cert) {
        Ok(r) => Ok(r),
        Err(e) => {
            let serial = eos_ca::serial_of(&cert);
            let withdrawal = issuance::withdraw(ca, &serial).await;
            tracing::warn!(%serial, %withdrawal, error = %e, "renewed certificate not recorded");
            Err(e)
        }
    }
}
