//! The one certificate issuance flow, for `eos-sec ca sign` and the open
//! zone's `/v1/cert` alike: validate the CSR → refuse a key bound to
//! another account → plan from the account record ([`prepare_in`]) → sign
//! (local key or AWS Private CA) → `check_issued` ([`sign`]) → check the
//! key's owner again, record in the inventory, audit ([`record_in`]).
//!
//! [`issue_in`] runs all three in the caller's transaction (`ca sign`: one
//! operator, nothing to wait for). The registration service runs them in
//! two transactions with the signing between them and its store free
//! meanwhile, because a Private CA answers in seconds and every other
//! registration would queue behind it (`registrar.rs`). Either way the
//! caller commits what it records, or drops the transaction and nothing is
//! recorded.
//!
//! Issuing a certificate as a Rust service would, with a local CA:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::{Duration, SystemTime};
//! use eos_ca::{Account, CaEnv, CsrLimits, IssuancePolicy, LocalCa, Profile};
//! use eos_ops::issuance::{CaSetup, IssueAudit, IssueInput, issue_in};
//!
//! # let dir = tempfile::tempdir()?;
//! let mut store = eos_store::Store::open(dir.path())?;
//! let now = SystemTime::now();
//! let ca = LocalCa::generate(CaEnv::Dev, Duration::from_secs(86400 * 365), now)?;
//! let ca = CaSetup::local(ca, IssuancePolicy::default(), CsrLimits::default())?;
//! // The client's CSR (it keeps its key); the identity comes from the account.
//! let key = rcgen::KeyPair::generate()?;
//! let csr = rcgen::CertificateParams::default().serialize_request(&key)?.pem()?;
//! let account = Account { space: "acme".parse()?, user: "alice".parse()? };
//! let input = IssueInput { csr: csr.as_bytes(), account: &account, profile: Profile::Device, lifetime: None };
//! let audit = IssueAudit { actor: "svc:enrol", action: "svc.issue", extra: Default::default() };
//! let tx = store.transaction()?;
//! let runtime = tokio::runtime::Builder::new_current_thread().build()?;
//! let issued = runtime.block_on(issue_in(&tx, &ca, &input, &audit, now))?;
//! tx.commit()?;
//! assert!(issued.pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! println!("issued {} until {}", issued.serial, issued.not_after);
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::{Duration, SystemTime};

use eos_ca::{
    Account, BoxedSigner, CaInfo, Certificate, CertificatePlan, CsrLimits, IgnoredRequest,
    IssuancePolicy, IssueError, IssueRequest, KeyOwner, LocalCa, Profile, Serial, Signer,
    ValidatedCsr,
};
use eos_identity::{SpaceId, UserId};
use eos_store::{AuditEntry, StoreError, audit_in, certs};
use eos_store::{Sql, Tx};
use serde_json::json;

use crate::ErrorKind;

/// The CA certificates are issued with: a signer, what planning needs to
/// know about the CA, the chain handed out with each certificate, the
/// issuance policy and the CSR limits.
#[derive(Debug)]
pub struct CaSetup {
    signer: BoxedSigner,
    info: CaInfo,
    signer_id: String,
    chain_pem: String,
    policy: IssuancePolicy,
    limits: CsrLimits,
}

impl CaSetup {
    /// Any signer: `info` from the CA's certificate, `signer_id` as the
    /// inventory records it (`local` or the Private CA's ARN), `chain_pem`
    /// the CA chain returned beside each certificate.
    pub fn new<S: Signer + Send + Sync + 'static>(
        signer: S,
        info: CaInfo,
        signer_id: String,
        chain_pem: String,
        policy: IssuancePolicy,
        limits: CsrLimits,
    ) -> CaSetup {
        CaSetup {
            signer: BoxedSigner::new(signer),
            info,
            signer_id,
            chain_pem,
            policy,
            limits,
        }
    }

    /// The local CA key (recorded as signer [`certs::LOCAL_SIGNER`]).
    pub fn local(
        ca: LocalCa,
        policy: IssuancePolicy,
        limits: CsrLimits,
    ) -> Result<CaSetup, IssueError> {
        let info = ca.info().clone();
        let chain = ca.trust_bundle()?;
        Ok(CaSetup::new(
            ca,
            info,
            certs::LOCAL_SIGNER.to_owned(),
            chain,
            policy,
            limits,
        ))
    }

    /// The CA chain, PEM.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The CSR limits (the caller reads at most this much).
    pub fn limits(&self) -> &CsrLimits {
        &self.limits
    }

    /// What planning knows about the CA (its name, validity, key).
    pub fn info(&self) -> &CaInfo {
        &self.info
    }

    /// The issuance policy (lifetimes per profile).
    pub fn policy(&self) -> &IssuancePolicy {
        &self.policy
    }

    /// `local` or the Private CA's ARN.
    pub fn signer_id(&self) -> &str {
        &self.signer_id
    }
}

/// What is asked for.
#[derive(Debug, Clone, Copy)]
pub struct IssueInput<'a> {
    /// The CSR as received, PEM or DER (validated here).
    pub csr: &'a [u8],
    /// The account, from eos-sec's records (never from the CSR).
    pub account: &'a Account,
    /// The profile.
    pub profile: Profile,
    /// A lifetime within the profile's cap; `None` for its default.
    pub lifetime: Option<Duration>,
}

/// Who the audit entry names and what it adds.
#[derive(Debug, Clone)]
pub struct IssueAudit<'a> {
    /// The actor (`operator name` or `code:<id>`).
    pub actor: &'a str,
    /// The action (`ca.sign`, `register.cert`).
    pub action: &'a str,
    /// Fields added to the entry's detail (e.g. the request's source).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A certificate issued and recorded (not yet committed).
#[derive(Debug, Clone)]
pub struct Issued {
    /// The serial (shown as lower-case hex).
    pub serial: Serial,
    /// The certificate, PEM.
    pub pem: String,
    /// RFC 3339.
    pub not_after: String,
    /// What the CSR asked for and did not get.
    pub ignored: Vec<IgnoredRequest>,
    /// Whether the CSR asked for CA powers (logged on its own).
    pub requested_ca: bool,
}

/// Why nothing was issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuanceError {
    /// The request is refused: the CSR, its key, the lifetime (the
    /// caller's input; exit 2, `csr-refused` on the wire).
    #[error(transparent)]
    Refused(IssueError),
    /// Signing or the check of the signed certificate failed (never the
    /// caller's fault; nothing recorded).
    #[error(transparent)]
    Failed(IssueError),
    /// The inventory could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The account is disabled (`eos-sec ca disable`): nothing is issued to
    /// it, by a code or by renewal (`account-disabled`).
    #[error("account {space}/{user} is disabled")]
    AccountDisabled {
        /// The space.
        space: String,
        /// The user.
        user: String,
    },
    /// Signed, then not recorded: the certificate was withdrawn from the
    /// signer ([`withdraw`]) and is not handed out.
    #[error("certificate {serial} was signed but not recorded ({source}); {withdrawal}")]
    Unrecorded {
        /// The certificate's serial.
        serial: String,
        /// Why it was not recorded.
        source: Box<IssuanceError>,
        /// What became of it ([`eos_ca::withdrawal_note`]).
        withdrawal: String,
    },
}

impl IssuanceError {
    /// What kind of failure this is: a refused request is bad input, the
    /// rest failures (a certificate signed and then not recorded is one
    /// whatever stopped its record; a disabled account is refused to the
    /// client that asked, but `ca sign` exits 1 for it, as before).
    pub fn kind(&self) -> ErrorKind {
        match self {
            IssuanceError::Refused(_) => ErrorKind::BadInput,
            IssuanceError::Failed(_)
            | IssuanceError::Unrecorded { .. }
            | IssuanceError::Store(_)
            | IssuanceError::AccountDisabled { .. } => ErrorKind::Failure,
        }
    }

    /// Whether this is bad input ([`ErrorKind::BadInput`]).
    pub fn is_bad_input(&self) -> bool {
        self.kind() == ErrorKind::BadInput
    }

    fn of(e: IssueError) -> IssuanceError {
        if e.is_bad_input() {
            IssuanceError::Refused(e)
        } else {
            IssuanceError::Failed(e)
        }
    }
}

fn corrupt(what: impl fmt::Display) -> IssuanceError {
    IssuanceError::Store(StoreError::Corrupt {
        what: "certificate inventory",
        detail: what.to_string(),
    })
}

/// What a certificate is planned from: the validated CSR and what the
/// caller asked for.
struct Request {
    csr: ValidatedCsr,
    fingerprint: String,
    account: Account,
    profile: Profile,
    lifetime: Option<Duration>,
    now: SystemTime,
    /// The serial of the certificate this one renews.
    renews: Option<String>,
}

/// A request validated and planned, ready to be signed. It keeps the
/// account and profile it was planned for, so that [`record_in`] records
/// exactly those.
pub struct Prepared {
    request: Request,
    plan: CertificatePlan,
}

impl Prepared {
    /// The account the certificate is planned for.
    pub fn account(&self) -> &Account {
        &self.request.account
    }
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("account", &self.request.account)
            .field("fingerprint", &self.request.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The plan for `r` under the records as `conn` sees them now: refused
/// when the key is bound to another account.
fn plan_in(conn: &impl Sql, ca: &CaSetup, r: &Request) -> Result<CertificatePlan, IssuanceError> {
    let Request {
        csr,
        fingerprint,
        account,
        profile,
        lifetime,
        now,
        renews: _,
    } = r;
    if certs_disabled(conn, account)? {
        return Err(IssuanceError::AccountDisabled {
            space: account.space.to_string(),
            user: account.user.to_string(),
        });
    }
    let owner = match certs::key_owner(conn, fingerprint)? {
        Some((space, user)) => Some(KeyOwner {
            space: SpaceId::new(&space).map_err(corrupt)?,
            user: UserId::new(&user).map_err(corrupt)?,
        }),
        None => None,
    };
    let request = IssueRequest {
        csr,
        account,
        profile: *profile,
        lifetime: *lifetime,
    };
    eos_ca::plan_certificate(&ca.info, &request, &ca.policy, owner.as_ref(), *now)
        .map_err(IssuanceError::of)
}

fn certs_disabled(conn: &impl Sql, account: &Account) -> Result<bool, IssuanceError> {
    Ok(
        eos_store::accounts::disabled(conn, account.space.as_str(), account.user.as_str())?
            .is_some(),
    )
}

/// Validate a CSR against the CA's limits (refused: `csr-*`).
pub fn validate(ca: &CaSetup, csr: &[u8]) -> Result<ValidatedCsr, IssuanceError> {
    eos_ca::validate_csr(csr, &ca.limits).map_err(|e| IssuanceError::Refused(e.into()))
}

/// Validate the CSR, refuse a disabled account or a key bound to another
/// account and plan the certificate from the account record, reading the
/// inventory in `tx`.
pub fn prepare_in(
    tx: &Tx<'_>,
    ca: &CaSetup,
    input: &IssueInput<'_>,
    now: SystemTime,
) -> Result<Prepared, IssuanceError> {
    let csr = validate(ca, input.csr)?;
    prepare_validated_in(tx, ca, csr, input, None, now)
}

/// [`prepare_in`] for a CSR already validated ([`validate`]); `renews`
/// names the certificate this one renews (recorded as its predecessor).
pub fn prepare_validated_in(
    tx: &Tx<'_>,
    ca: &CaSetup,
    csr: ValidatedCsr,
    input: &IssueInput<'_>,
    renews: Option<String>,
    now: SystemTime,
) -> Result<Prepared, IssuanceError> {
    let request = Request {
        fingerprint: csr.fingerprint().to_string(),
        csr,
        account: input.account.clone(),
        profile: input.profile,
        lifetime: input.lifetime,
        now,
        renews,
    };
    let plan = plan_in(tx, ca, &request)?;
    Ok(Prepared { request, plan })
}

/// Sign a prepared request and check what the signer returned against the
/// plan. Touches no store: with AWS Private CA this waits on the network,
/// so callers that serialise store access run it without holding it.
pub async fn sign(ca: &CaSetup, prepared: &Prepared) -> Result<Certificate, IssuanceError> {
    eos_ca::issue(&ca.signer, &prepared.plan, &prepared.request.csr)
        .await
        .map_err(IssuanceError::Failed)
}

/// Record a signed certificate in the inventory and audit it, inside `tx`.
/// The key's owner is checked again first: when [`sign`] ran outside the
/// transaction of [`prepare_in`], another account may have certified the
/// same key meanwhile, and then this one is refused (not recorded, not to
/// be handed out).
pub fn record_in(
    tx: &Tx<'_>,
    ca: &CaSetup,
    audit: &IssueAudit<'_>,
    prepared: &Prepared,
    cert: &Certificate,
) -> Result<Issued, IssuanceError> {
    let Prepared { request, plan } = prepared;
    plan_in(tx, ca, request)?;
    let Request {
        csr,
        fingerprint,
        account,
        profile,
        renews,
        ..
    } = request;
    let pem = eos_ca::certificate_pem(cert).map_err(IssuanceError::Failed)?;
    let serial = eos_ca::serial_of(cert);
    let hex = serial.to_string();
    let not_after = eos_ca::rfc3339(plan.not_after());
    certs::record_issued(
        tx,
        &certs::NewCert {
            serial: &hex,
            space: account.space.as_str(),
            user: account.user.as_str(),
            profile: profile.as_str(),
            key_fingerprint: fingerprint,
            not_before: &eos_ca::rfc3339(plan.not_before()),
            not_after: &not_after,
            signer: &ca.signer_id,
            pem: &pem,
            renewed_from: renews.as_deref(),
        },
    )?;
    let mut detail = serde_json::Map::new();
    detail.insert("space".into(), json!(account.space));
    detail.insert("user".into(), json!(account.user));
    detail.insert("profile".into(), json!(profile));
    detail.insert("key_fingerprint".into(), json!(fingerprint));
    detail.insert("key".into(), json!(csr.key_kind().to_string()));
    detail.insert("ignored_requests".into(), json!(csr.ignored()));
    detail.insert("signer".into(), json!(ca.signer_id));
    if let Some(old) = renews {
        detail.insert("renewed_from".into(), json!(old));
    }
    detail.extend(audit.extra.clone());
    audit_in(
        tx,
        &AuditEntry::new(audit.actor, audit.action, &hex)
            .with_detail(serde_json::Value::Object(detail)),
    )?;
    if csr.requested_ca() {
        // Someone asked this CA to make them a CA: worth its own entry.
        audit_in(
            tx,
            &AuditEntry::new(audit.actor, "ca.csr-requested-ca", &hex)
                .with_detail(json!({"space": account.space, "user": account.user})),
        )?;
    }
    Ok(Issued {
        serial,
        pem,
        not_after,
        ignored: csr.ignored().to_vec(),
        requested_ca: csr.requested_ca(),
    })
}

/// Issue a certificate for `input` with `ca`, inside `tx`: validated,
/// planned, signed, checked against the plan, recorded and audited. A CSR
/// that asked for CA powers gets an audit entry of its own
/// (`ca.csr-requested-ca`).
pub async fn issue_in(
    tx: &Tx<'_>,
    ca: &CaSetup,
    input: &IssueInput<'_>,
    audit: &IssueAudit<'_>,
    now: SystemTime,
) -> Result<Issued, IssuanceError> {
    let prepared = prepare_in(tx, ca, input, now)?;
    let cert = sign(ca, &prepared).await?;
    match record_in(tx, ca, audit, &prepared, &cert) {
        Ok(issued) => Ok(issued),
        Err(e) => {
            let serial = eos_ca::serial_of(&cert);
            Err(IssuanceError::Unrecorded {
                withdrawal: withdraw(ca, &serial).await,
                serial: serial.to_string(),
                source: Box::new(e),
            })
        }
    }
}

/// Withdraw a certificate that was signed but will not be handed out
/// ([`eos_ca::Signer::withdraw`]: AWS Private CA revokes it, the local key
/// keeps nothing) and say what became of it, for the error or audit entry.
pub async fn withdraw(ca: &CaSetup, serial: &Serial) -> String {
    let outcome = ca.signer.withdraw(serial).await;
    if let Err(e) = &outcome {
        tracing::error!(%serial, signer = %ca.signer_id, error = %e, "a signed certificate that is not handed out could not be revoked at the CA: revoke it there by hand");
    }
    eos_ca::withdrawal_note(&outcome)
}
