//! `ca sign`: one certificate through the issuance flow, with the refusal
//! or failure audited and the output file written before the commit.

use std::path::Path;
use std::time::{Duration, SystemTime};

use eos_ca::{Account, CsrError, IgnoredRequest, IssueError, Profile};
use eos_store::{AuditEntry, Store, StoreError, audit_in};

use super::{CaError, InventoryRecord, inventory, write_atomic};
use crate::ErrorKind;
use crate::issuance::{CaSetup, IssuanceError, IssueAudit, IssueInput, issue_in, withdraw};

/// What to sign.
#[derive(Debug, Clone, Copy)]
pub struct SignRequest<'a> {
    /// The CSR as read, PEM or DER: at most the CA's `max_bytes` plus one
    /// (a longer one is refused as too large without being parsed).
    pub csr: &'a [u8],
    /// The CSR's size when known (a file's), for the refusal.
    pub csr_size: Option<usize>,
    /// Where the CSR came from, for the audit entry (never its body).
    pub csr_name: &'a str,
    /// The account, from the operator's arguments (never the CSR).
    pub account: &'a Account,
    /// The profile.
    pub profile: Profile,
    /// A lifetime within the profile's cap; `None` for its default.
    pub lifetime: Option<Duration>,
    /// Write the certificate here (mode 0644) before the commit.
    pub out: Option<&'a Path>,
}

/// A certificate issued, recorded and committed.
#[derive(Debug, Clone)]
pub struct Signed {
    /// Its inventory record.
    pub record: InventoryRecord,
    /// The certificate, PEM.
    pub pem: String,
    /// What the CSR asked for and did not get.
    pub ignored: Vec<IgnoredRequest>,
    /// Whether the CSR asked for CA powers (ignored and audited).
    pub requested_ca: bool,
}

/// Why nothing was issued. A refusal and a failure of the signer are
/// audited (`ca.csr-refused`, `ca.sign-failed`) after the issuance's
/// transaction was rolled back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The request was refused (its stable code: [`IssueError::code`]).
    #[error("{} refused [{}]", refused_what(.0), .0.code())]
    Refused(#[source] IssueError),
    /// The signer failed; nothing recorded.
    #[error("not issued by {signer} [{}]; nothing recorded", .error.code())]
    Failed {
        /// `local` or the Private CA's ARN.
        signer: String,
        /// Why.
        #[source]
        error: IssueError,
    },
    /// The refusal or failure could not be audited.
    #[error("{refusal}; recording the refusal in the audit log failed")]
    Unaudited {
        /// What was refused or failed.
        refusal: Box<SignError>,
        /// Why it was not audited.
        #[source]
        audit: StoreError,
    },
    /// Signed, then not recorded (the output file could not be written or
    /// the commit failed): withdrawn from the signer.
    #[error(
        "certificate {serial} was signed but not recorded; {withdrawal}{}",
        .left_in.as_ref().map(|p| format!("; {} holds it and could not be removed", p.display())).unwrap_or_default()
    )]
    Unrecorded {
        /// The serial.
        serial: String,
        /// What became of it ([`eos_ca::withdrawal_note`]).
        withdrawal: String,
        /// The output file that holds it, when it could not be removed.
        left_in: Option<std::path::PathBuf>,
        /// Why it was not recorded.
        #[source]
        source: Box<CaError>,
    },
    /// The issuance flow stopped otherwise (the store, a disabled account,
    /// a certificate signed and not recorded).
    #[error(transparent)]
    Issuance(IssuanceError),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn refused_what(e: &IssueError) -> &'static str {
    match e {
        IssueError::Csr(_) => "csr",
        IssueError::LifetimeOverCap { .. } | IssueError::LifetimeZero { .. } => "lifetime",
        _ => "request",
    }
}

impl SignError {
    /// What kind of failure this is: a refusal is bad input.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SignError::Refused(_) => ErrorKind::BadInput,
            SignError::Unaudited { refusal, .. } => refusal.kind(),
            SignError::Issuance(e) => e.kind(),
            SignError::Failed { .. } | SignError::Unrecorded { .. } | SignError::Store(_) => {
                ErrorKind::Failure
            }
        }
    }

    /// Whether this is bad input ([`ErrorKind::BadInput`]).
    pub fn is_bad_input(&self) -> bool {
        self.kind() == ErrorKind::BadInput
    }

    /// The refusal, when this is one (audited or not).
    pub fn refusal(&self) -> Option<&IssueError> {
        match self {
            SignError::Refused(e) => Some(e),
            SignError::Unaudited { refusal, .. } => refusal.refusal(),
            _ => None,
        }
    }
}

/// Audit a refused or failed request and return `err`; `error` is the
/// failure's message when it says more than its code.
fn audited(store: &mut Store, req: &SignRequest<'_>, actor: &str, err: SignError) -> SignError {
    let (action, code, error) = match &err {
        SignError::Refused(e) => ("ca.csr-refused", e.code(), None),
        SignError::Failed { error, .. } => {
            ("ca.sign-failed", error.code(), Some(error.to_string()))
        }
        _ => return err,
    };
    let mut detail = serde_json::json!({
        "space": req.account.space,
        "user": req.account.user,
        "profile": req.profile,
        "csr": req.csr_name,
    });
    if let Some(error) = error {
        detail["error"] = serde_json::json!(error);
    }
    let entry = AuditEntry::new(actor, action, code).with_detail(detail);
    let written = store.transaction().and_then(|tx| {
        audit_in(&tx, &entry)?;
        tx.commit()
    });
    match written {
        Ok(()) => err,
        Err(audit) => SignError::Unaudited {
            refusal: Box::new(err),
            audit,
        },
    }
}

/// Refuse (and audit) a CSR longer than `max_bytes` without parsing it:
/// [`sign`] does, and a caller may before it opens the CA.
pub fn check_size(
    store: &mut Store,
    req: &SignRequest<'_>,
    max_bytes: usize,
    actor: &str,
) -> Result<(), SignError> {
    if req.csr.len() <= max_bytes {
        return Ok(());
    }
    let err = IssueError::from(CsrError::TooLarge {
        size: req.csr_size,
        max: max_bytes,
    });
    Err(audited(store, req, actor, SignError::Refused(err)))
}

/// Sign `req` with `ca` through the one issuance flow (validated, planned
/// from the account, signed, checked, recorded and audited as `ca.sign`).
/// The output file is written before the commit: if it cannot be written
/// nothing is recorded, and a failed commit removes it again; a certificate
/// signed but not recorded is withdrawn from the signer (AWS Private CA
/// revokes it).
pub async fn sign(
    store: &mut Store,
    ca: &CaSetup,
    req: &SignRequest<'_>,
    actor: &str,
    now: SystemTime,
) -> Result<Signed, SignError> {
    check_size(store, req, ca.limits().max_bytes, actor)?;
    let tx = store.transaction()?;
    let mut extra = serde_json::Map::new();
    extra.insert("csr".into(), serde_json::json!(req.csr_name));
    let issued = issue_in(
        &tx,
        ca,
        &IssueInput {
            csr: req.csr,
            account: req.account,
            profile: req.profile,
            lifetime: req.lifetime,
        },
        &IssueAudit {
            actor,
            action: "ca.sign",
            extra,
        },
        now,
    )
    .await;
    let issued = match issued {
        Ok(issued) => issued,
        Err(e) => {
            // Roll back before the refusal or failure is audited.
            drop(tx);
            let err = match e {
                IssuanceError::Refused(e) => SignError::Refused(e),
                IssuanceError::Failed(error) => SignError::Failed {
                    signer: ca.signer_id().to_owned(),
                    error,
                },
                other => SignError::Issuance(other),
            };
            return Err(audited(store, req, actor, err));
        }
    };
    let serial = issued.serial.to_string();
    let mut left_in = None;
    let recorded = match req.out {
        Some(out) => write_atomic(out, issued.pem.as_bytes(), 0o644).map_err(CaError::from),
        None => Ok(()),
    }
    .and_then(|()| {
        tx.commit().map_err(|e| {
            if let Some(out) = req.out
                && std::fs::remove_file(out).is_err()
            {
                left_in = Some(out.to_owned());
            }
            CaError::Store(e)
        })
    });
    if let Err(e) = recorded {
        return Err(SignError::Unrecorded {
            withdrawal: withdraw(ca, &issued.serial).await,
            serial,
            left_in,
            source: Box::new(e),
        });
    }
    let record = inventory::get(store.conn(), &issued.serial)?;
    Ok(Signed {
        record,
        pem: issued.pem,
        ignored: issued.ignored,
        requested_ca: issued.requested_ca,
    })
}
