//! The signer seam: the local key or AWS Private CA, and withdrawal.

use std::future::Future;

use x509_cert::certificate::Certificate;

use super::*;
use crate::csr::ValidatedCsr;

/// The seam between issuance and whoever holds the CA key: the local key
/// ([`LocalCa`]) or AWS Private CA (in `eos-aws`). The future lets a remote
/// signer wait on the network; the local one is ready at once. Callers run
/// [`check_issued`] on what comes back.
pub trait Signer {
    /// Sign the planned certificate for the validated CSR.
    fn issue(
        &self,
        plan: &CertificatePlan,
        csr: &ValidatedCsr,
    ) -> impl Future<Output = Result<Certificate, IssueError>> + Send;

    /// How closely to check what this signer returns.
    fn strictness(&self) -> Strictness;

    /// Make a certificate this signer signed unusable, because it will not
    /// be handed out: it broke its plan, or it could not be recorded. A
    /// signer that keeps nothing (the local key) has nothing to do; one that
    /// keeps what it signs (AWS Private CA) revokes it. No default: a new
    /// remote signer must say what it does.
    fn withdraw(
        &self,
        serial: &Serial,
    ) -> impl Future<Output = Result<Withdrawal, IssueError>> + Send;
}

/// What [`Signer::withdraw`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// The signer keeps no copy of what it signs: the certificate existed
    /// only in memory and is gone.
    NotKept,
    /// Revoked at the CA now.
    Revoked,
    /// The CA had revoked it already.
    AlreadyRevoked,
}

/// The reason a withdrawn certificate is revoked with: it is no longer
/// needed for the purpose it was signed for (it never reached its holder).
pub const WITHDRAWAL_REASON: RevocationReason = RevocationReason::CessationOfOperation;

/// What became of a withdrawn certificate, in words for an audit entry or
/// an error message.
pub fn withdrawal_note(outcome: &Result<Withdrawal, IssueError>) -> String {
    match outcome {
        Ok(Withdrawal::NotKept) => "the signer keeps no copy".to_owned(),
        Ok(Withdrawal::Revoked) => format!("revoked at the CA ({})", WITHDRAWAL_REASON.as_str()),
        Ok(Withdrawal::AlreadyRevoked) => "already revoked at the CA".to_owned(),
        Err(e) => format!("NOT revoked at the CA ({e}): revoke it there by hand"),
    }
}

/// Issue through any signer: plan-checked before (by the local signer) and
/// after (always). A returned certificate that breaks the plan is withdrawn
/// from the signer and refused as [`IssueError::Rejected`].
pub async fn issue<S: Signer>(
    signer: &S,
    plan: &CertificatePlan,
    csr: &ValidatedCsr,
) -> Result<Certificate, IssueError> {
    let cert = signer.issue(plan, csr).await?;
    if let Err(violation) = check_issued(&cert, plan, signer.strictness()) {
        let serial = serial_of(&cert);
        return Err(IssueError::Rejected {
            withdrawal: withdrawal_note(&signer.withdraw(&serial).await),
            serial: serial.to_string(),
            violation: Box::new(violation),
        });
    }
    Ok(cert)
}
