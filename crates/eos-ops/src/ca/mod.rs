//! The entityOS CA's lifecycle: install a local CA, sign through the one
//! issuance flow ([`crate::issuance`]), revoke (the inventory, the CRL or
//! AWS Private CA, the certificate gate's queue and the audit entry in one
//! transaction), issue and refresh CRLs, disable and enable accounts, and
//! the inventory as typed records ([`inventory`]).
//!
//! The caller (`eos-sec ca …`, or a Rust service) turns its configuration
//! into the values these take — a [`Ca`], a [`CrlPolicy`], the CA's
//! [`CaFiles`] — and renders the typed reports they return.

pub mod inventory;
mod sign;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use eos_aws::acmpca::{PrivateCa, PrivateCaError};
use eos_ca::{
    Account, CsrLimits, IssuancePolicy, IssueError, LocalCa, Passphrase, RevocationReason, Serial,
};
use eos_store::accounts::DisabledAccount;
use eos_store::certs::{self, CrlRecord};
use eos_store::{AuditEntry, Store, StoreError, Tx, audit_in};
use time::OffsetDateTime;

use crate::issuance::CaSetup;
use crate::{ErrorKind, write_atomic};
pub use inventory::{CertStatus, InventoryRecord};
pub use sign::{SignError, SignRequest, Signed, check_size, sign};

/// Why a CA operation stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// No local CA in the state directory.
    #[error(
        "no CA in {}: run `eos-sec ca init --env dev|staging|prod` or `eos-sec ca import` first",
        .dir.display()
    )]
    NoCa {
        /// The CA directory.
        dir: PathBuf,
    },
    /// `install` found a CA already there.
    #[error("a CA already exists in {}; refusing to replace it", .dir.display())]
    Exists {
        /// The CA directory.
        dir: PathBuf,
    },
    /// The inventory has no such certificate.
    #[error("certificate not found: {serial}")]
    NotFound {
        /// The serial asked for.
        serial: Serial,
    },
    /// The certificate was issued by another signer than the configured CA.
    #[error(
        "{serial} was issued by {issued_by}, not by the configured CA ({configured}); revoke it with the [ca] backend that issued it"
    )]
    OtherSigner {
        /// The certificate.
        serial: Serial,
        /// Who signed it.
        issued_by: String,
        /// The configured CA.
        configured: String,
    },
    /// A disable without a reason.
    #[error("say why the account is disabled")]
    NoReason,
    /// A file could not be read or written.
    #[error("{what} {}", .path.display())]
    File {
        /// `reading`, `writing`, `creating`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA key or certificate, a CRL or the signature failed.
    #[error(transparent)]
    Ca(#[from] IssueError),
    /// AWS Private CA refused or failed.
    #[error(transparent)]
    PrivateCa(#[from] PrivateCaError),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CaError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CaError::NoCa { .. }
            | CaError::Exists { .. }
            | CaError::NotFound { .. }
            | CaError::OtherSigner { .. }
            | CaError::NoReason => ErrorKind::BadInput,
            CaError::Ca(e) if e.is_bad_input() => ErrorKind::BadInput,
            CaError::PrivateCa(e) if e.is_bad_input() => ErrorKind::BadInput,
            CaError::File { .. } | CaError::Ca(_) | CaError::PrivateCa(_) | CaError::Store(_) => {
                ErrorKind::Failure
            }
        }
    }

    /// Whether this is bad input ([`ErrorKind::BadInput`]).
    pub fn is_bad_input(&self) -> bool {
        self.kind() == ErrorKind::BadInput
    }
}

fn not_found(serial: &Serial) -> impl FnOnce(StoreError) -> CaError + '_ {
    move |e| match e {
        StoreError::NotFound { .. } => CaError::NotFound {
            serial: serial.clone(),
        },
        other => CaError::Store(other),
    }
}

/// Where a local CA keeps its files: `<state-dir>/ca/` with `ca.key`
/// (PKCS#8, mode 0600, encrypted with a passphrase when one is given),
/// `ca.pem` and `crl.pem`.
#[derive(Debug, Clone)]
pub struct CaFiles {
    /// The directory (mode 0700).
    pub dir: PathBuf,
    /// The key.
    pub key: PathBuf,
    /// The certificate (and its issuers, for an intermediate).
    pub cert: PathBuf,
    /// The latest CRL.
    pub crl: PathBuf,
}

impl CaFiles {
    /// The files in `state_dir`.
    pub fn new(state_dir: &Path) -> CaFiles {
        let dir = state_dir.join("ca");
        CaFiles {
            key: dir.join("ca.key"),
            cert: dir.join("ca.pem"),
            crl: dir.join("crl.pem"),
            dir,
        }
    }

    /// Whether a local CA was made or imported here.
    pub fn exists(&self) -> bool {
        self.key.exists()
    }
}

impl From<crate::WriteError> for CaError {
    fn from(e: crate::WriteError) -> Self {
        CaError::File {
            what: e.what,
            path: e.path,
            source: e.source,
        }
    }
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| CaError::File {
        what: "reading",
        path: path.to_owned(),
        source,
    })
}

/// The local CA in `files`, its key decrypted with `pass`.
pub fn load_local(files: &CaFiles, pass: Option<&Passphrase>) -> Result<LocalCa, CaError> {
    if !files.exists() {
        return Err(CaError::NoCa {
            dir: files.dir.clone(),
        });
    }
    let key = zeroize::Zeroizing::new(read(&files.key)?);
    let cert = read(&files.cert)?;
    Ok(LocalCa::from_pem(&key, &cert, pass)?)
}

/// The CA that signs: the local key or AWS Private CA.
#[derive(Debug)]
pub enum Ca {
    /// The local key.
    Local(Box<LocalCa>),
    /// AWS Private CA.
    Private(Box<PrivateCa>),
}

impl Ca {
    /// The signer as the inventory records it: `local` or the ARN.
    pub fn signer_id(&self) -> &str {
        match self {
            Ca::Local(_) => certs::LOCAL_SIGNER,
            Ca::Private(p) => p.arn(),
        }
    }

    /// The CA's subject and trust bundle (the CA chain, PEM).
    pub fn trust_bundle(&self) -> Result<(String, String), CaError> {
        Ok(match self {
            Ca::Local(ca) => (ca.info().subject().to_string(), ca.trust_bundle()?),
            Ca::Private(ca) => (ca.info().subject().to_string(), ca.trust_bundle()),
        })
    }

    /// Ready to issue with `policy` and `limits`. AWS Private CA writes its
    /// own CRL distribution point into what it issues, so the plan carries
    /// that URL unless `policy` names one (taken as what the CA writes).
    pub fn setup(self, mut policy: IssuancePolicy, limits: CsrLimits) -> Result<CaSetup, CaError> {
        match self {
            Ca::Local(ca) => Ok(CaSetup::local(*ca, policy, limits)?),
            Ca::Private(ca) => {
                if policy.crl_url.is_none() {
                    policy.crl_url = ca.crl_url().map(str::to_owned);
                }
                let info = ca.info().clone();
                let id = ca.arn().to_owned();
                let chain = ca.trust_bundle();
                Ok(CaSetup::new(*ca, info, id, chain, policy, limits))
            }
        }
    }
}

/// How the local CA issues CRLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlPolicy {
    /// nextUpdate − thisUpdate (at most [`eos_ca::MAX_CRL_VALIDITY`]).
    pub validity: Duration,
    /// Queue each CRL (and each Private CA revocation) for the certificate
    /// gate (`[gate]` configured), in the transaction that records it.
    pub gate: bool,
}

impl Default for CrlPolicy {
    fn default() -> CrlPolicy {
        CrlPolicy {
            validity: eos_ca::MAX_CRL_VALIDITY,
            gate: false,
        }
    }
}

/// Who acts and what the audit entry adds.
#[derive(Debug, Clone, Default)]
pub struct Audit<'a> {
    /// The actor.
    pub actor: &'a str,
    /// The action (`ca.revoke`, `drill.revoke`, …).
    pub action: &'a str,
    /// Fields added to the entry's detail.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn create_dir(dir: &Path) -> Result<(), CaError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|source| CaError::File {
        what: "creating",
        path: dir.to_owned(),
        source,
    })
}

/// A local CA installed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Installed {
    /// The CA's subject.
    pub subject: String,
    /// Its key's fingerprint.
    pub key_fingerprint: String,
    /// Its notAfter.
    #[serde(serialize_with = "inventory::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Whether the key file is encrypted.
    pub key_encrypted: bool,
    /// The key file.
    pub key: PathBuf,
    /// The certificate file.
    pub certificate: PathBuf,
    /// The first CRL's file.
    pub crl: PathBuf,
    /// The first CRL's number.
    pub crl_number: u64,
}

/// Install `ca` in `files` (refused when a CA is there): key (0600,
/// encrypted with `pass`), certificate, a first CRL and the audit entry
/// (`action`: `ca.init`, `ca.import`) — the files written before the
/// transaction commits.
pub fn install(
    store: &mut Store,
    files: &CaFiles,
    ca: &LocalCa,
    pass: Option<&Passphrase>,
    crls: CrlPolicy,
    actor: &str,
    action: &str,
) -> Result<Installed, CaError> {
    if files.key.exists() || files.cert.exists() {
        return Err(CaError::Exists {
            dir: files.dir.clone(),
        });
    }
    create_dir(&files.dir)?;
    let key_pem = ca.key_pem(pass)?;
    let cert_pem = ca.certificate_pem()?;
    let tx = store.transaction()?;
    let (crl_number, crl_pem) = issue_crl_in(&tx, ca, crls.validity)?;
    let info = ca.info();
    let subject = info.subject().to_string();
    let not_after = OffsetDateTime::from(info.not_after());
    audit_in(
        &tx,
        &AuditEntry::new(actor, action, &subject).with_detail(serde_json::json!({
            "key_fingerprint": info.fingerprint().to_string(),
            "not_after": eos_identity::rfc3339(not_after),
        })),
    )?;
    write_atomic(&files.key, key_pem.as_bytes(), 0o600)?;
    write_atomic(&files.cert, cert_pem.as_bytes(), 0o644)?;
    write_atomic(&files.crl, crl_pem.as_bytes(), 0o644)?;
    tx.commit()?;
    Ok(Installed {
        subject,
        key_fingerprint: info.fingerprint().to_string(),
        not_after,
        key_encrypted: pass.is_some(),
        key: files.key.clone(),
        certificate: files.cert.clone(),
        crl: files.crl.clone(),
        crl_number,
    })
}

/// Build and record the local CA's next CRL inside `tx`: every revoked
/// certificate of its key that has not expired. Returns its number and PEM.
fn issue_crl_in(tx: &Tx<'_>, ca: &LocalCa, validity: Duration) -> Result<(u64, String), CaError> {
    let now = SystemTime::now();
    let entries = inventory::crl_entries(tx, now)?;
    let number = certs::next_crl_number(tx)?;
    let crl = ca.crl(number, &entries, now, validity)?;
    let pem = eos_ca::crl_pem(&crl)?;
    let this_update = crl.tbs_cert_list.this_update.to_system_time();
    certs::record_crl(
        tx,
        &CrlRecord {
            number,
            this_update: eos_ca::rfc3339(this_update),
            next_update: eos_ca::rfc3339(now + validity),
            pem: pem.clone(),
        },
    )?;
    Ok((number, pem))
}

/// A CRL issued and written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Crl {
    /// Its number.
    pub crl_number: u64,
    /// The file it was written to (`<ca dir>/crl.pem`).
    pub crl: PathBuf,
    /// The CRL, PEM.
    pub pem: String,
}

/// Issue the local CA's next CRL: recorded, queued for the gate (when
/// `crls.gate`), written to `files.crl` and to `also`, committed last.
pub fn issue_crl(
    store: &mut Store,
    ca: &LocalCa,
    files: &CaFiles,
    crls: CrlPolicy,
    also: Option<&Path>,
) -> Result<Crl, CaError> {
    let tx = store.transaction()?;
    let (number, pem) = issue_crl_in(&tx, ca, crls.validity)?;
    enqueue_crl(&tx, crls, number)?;
    write_atomic(&files.crl, pem.as_bytes(), 0o644)?;
    if let Some(out) = also {
        write_atomic(out, pem.as_bytes(), 0o644)?;
    }
    tx.commit()?;
    Ok(Crl {
        crl_number: number,
        crl: files.crl.clone(),
        pem,
    })
}

fn enqueue_crl(tx: &Tx<'_>, crls: CrlPolicy, number: u64) -> Result<(), StoreError> {
    if crls.gate {
        eos_store::gate::enqueue_crl(tx, number, OffsetDateTime::now_utc())?;
    }
    Ok(())
}

/// Whether the local CA's next CRL is due: the latest has less than half
/// its validity left (or there is none), so an edge never holds an expired
/// CRL even when nothing is revoked (`sync --watch` issues it then).
pub fn crl_due(conn: &impl eos_store::Sql, crls: CrlPolicy) -> Result<bool, CaError> {
    let Some(latest) = certs::latest_crl(conn)? else {
        return Ok(true);
    };
    let next = inventory::stored_time(&latest.next_update).ok_or_else(|| StoreError::Corrupt {
        what: "CRL",
        detail: format!("CRL {}: bad next_update", latest.number),
    })?;
    Ok(next - OffsetDateTime::now_utc() <= crls.validity / 2)
}

/// Write a PEM file others read (a CRL, a trust bundle) whole or not at
/// all, mode 0644.
pub fn write_pem(path: &Path, pem: &str) -> Result<(), CaError> {
    Ok(write_atomic(path, pem.as_bytes(), 0o644)?)
}

/// What a revocation did.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// The inventory record after it.
    pub record: InventoryRecord,
    /// Whether it was revoked now (not already).
    pub changed: bool,
    /// The CRL it produced (local CA).
    pub crl_number: Option<u64>,
    /// The CRL file (local CA); AWS Private CA publishes its own.
    pub crl: Option<PathBuf>,
    /// The configured signer.
    pub signer: String,
}

/// Revoke `serial` with `ca`: recorded and audited (`audit`, its detail
/// naming the account, reason and signer) in one transaction; for the
/// local CA a new CRL is issued, queued for the gate and written to
/// `files.crl` before the commit; for AWS Private CA RevokeCertificate is
/// called first (if it refuses, nothing changes here) and the CA's own CRL
/// is queued for the gate. Revoking a revoked certificate changes nothing.
pub async fn revoke(
    store: &mut Store,
    ca: &Ca,
    files: &CaFiles,
    crls: CrlPolicy,
    serial: &Serial,
    reason: RevocationReason,
    audit: Audit<'_>,
) -> Result<Revocation, CaError> {
    let signer = ca.signer_id();
    let hex = serial.to_string();
    let tx = store.transaction()?;
    let known = certs::get(&tx, &hex).map_err(not_found(serial))?;
    if known.signer != signer {
        return Err(CaError::OtherSigner {
            serial: serial.clone(),
            issued_by: known.signer,
            configured: signer.to_owned(),
        });
    }
    let now = eos_ca::rfc3339(SystemTime::now());
    let outcome = certs::revoke(&tx, &hex, &now, reason.as_str()).map_err(not_found(serial))?;
    let (record, crl_number, changed) = match outcome {
        certs::Revoked::Already(r) => (r, None, false),
        certs::Revoked::Now(r) => {
            let mut detail = serde_json::json!({
                "space": r.space, "user": r.user, "reason": reason, "signer": signer,
            });
            let number = match ca {
                Ca::Local(local) => {
                    let (number, pem) = issue_crl_in(&tx, local, crls.validity)?;
                    enqueue_crl(&tx, crls, number)?;
                    write_atomic(&files.crl, pem.as_bytes(), 0o644)?;
                    detail["crl_number"] = serde_json::json!(number);
                    Some(number)
                }
                Ca::Private(private) => {
                    // AWS first: if it refuses, the inventory is not
                    // changed (the transaction is dropped). Revoked there
                    // already (an earlier run that failed to commit) is
                    // the same outcome.
                    let done = private.revoke(serial, reason).await?;
                    detail["aws"] = serde_json::json!(match done {
                        eos_aws::acmpca::Revocation::Revoked => "revoked",
                        _ => "already-revoked",
                    });
                    // Private CA signs the CRL; sync carries it to the edge
                    // once it lists this serial.
                    if crls.gate {
                        eos_store::gate::enqueue_ca_crl(&tx, OffsetDateTime::now_utc())?;
                    }
                    None
                }
            };
            if let Some(d) = detail.as_object_mut() {
                d.extend(audit.extra);
            }
            audit_in(
                &tx,
                &AuditEntry::new(audit.actor, audit.action, &hex).with_detail(detail),
            )?;
            (r, number, true)
        }
    };
    tx.commit()?;
    Ok(Revocation {
        record: InventoryRecord::try_from(record)?,
        changed,
        crl_number,
        crl: matches!(ca, Ca::Local(_)).then(|| files.crl.clone()),
        signer: signer.to_owned(),
    })
}

/// What `disable` or `enable` did to an account.
#[derive(Debug, Clone)]
pub struct AccountChange {
    /// Whether anything changed (not already disabled, or not disabled).
    pub changed: bool,
    /// The account's record as disabled (after `disable`; `None` after
    /// `enable`).
    pub disabled: Option<DisabledAccount>,
    /// Its active certificates (they stay valid until they expire).
    pub active_certificates: usize,
}

fn active_certificates(store: &Store, account: &Account) -> Result<usize, StoreError> {
    Ok(inventory::list(
        store.conn(),
        &inventory::Query {
            space: Some(&account.space),
            user: Some(&account.user),
            status: Some(CertStatus::Active),
        },
    )?
    .len())
}

/// Disable an account: nothing is issued to it any more, by a code or by
/// renewal, until [`enable`]; audited (`account.disabled`) when it was not
/// disabled already.
pub fn disable(
    store: &mut Store,
    account: &Account,
    reason: &str,
    actor: &str,
) -> Result<AccountChange, CaError> {
    if reason.trim().is_empty() {
        return Err(CaError::NoReason);
    }
    let (space, user) = (account.space.as_str(), account.user.as_str());
    let tx = store.transaction()?;
    let changed = eos_store::accounts::disable_in(&tx, space, user, actor, reason)?;
    if changed {
        let subject = eos_identity::account_uri(&account.space, &account.user);
        audit_in(
            &tx,
            &AuditEntry::new(actor, "account.disabled", &subject)
                .with_detail(serde_json::json!({ "reason": reason })),
        )?;
    }
    let disabled = eos_store::accounts::disabled(&tx, space, user)?;
    tx.commit()?;
    Ok(AccountChange {
        changed,
        disabled,
        active_certificates: active_certificates(store, account)?,
    })
}

/// Enable a disabled account again; audited (`account.enabled`, with the
/// reason it was disabled for) when it was disabled.
pub fn enable(store: &mut Store, account: &Account, actor: &str) -> Result<AccountChange, CaError> {
    let (space, user) = (account.space.as_str(), account.user.as_str());
    let tx = store.transaction()?;
    let was = eos_store::accounts::disabled(&tx, space, user)?;
    let changed = eos_store::accounts::enable_in(&tx, space, user)?;
    if changed {
        let subject = eos_identity::account_uri(&account.space, &account.user);
        let reason = was.as_ref().map(|w| w.reason.as_str());
        audit_in(
            &tx,
            &AuditEntry::new(actor, "account.enabled", &subject)
                .with_detail(serde_json::json!({ "disabled_for": reason })),
        )?;
    }
    tx.commit()?;
    Ok(AccountChange {
        changed,
        disabled: None,
        active_certificates: active_certificates(store, account)?,
    })
}
