//! A [`Signer`] picked at run time.
//!
//! [`Signer::issue`] returns `impl Future`, so `dyn Signer` is not a type.
//! A service that is configured with either the local key or AWS Private CA
//! holds a [`BoxedSigner`] instead: one concrete type that implements
//! [`Signer`] again by boxing the inner signer's future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::ca::{CertificatePlan, IssueError, Serial, Signer, Strictness, Withdrawal};
use crate::csr::ValidatedCsr;
use x509_cert::Certificate;

type IssueFuture<'a> = Pin<Box<dyn Future<Output = Result<Certificate, IssueError>> + Send + 'a>>;
type WithdrawFuture<'a> = Pin<Box<dyn Future<Output = Result<Withdrawal, IssueError>> + Send + 'a>>;

/// The object-safe half of [`Signer`], private so that no caller sees two
/// `strictness` methods.
trait ErasedSigner: Send + Sync {
    fn issue_erased<'a>(
        &'a self,
        plan: &'a CertificatePlan,
        csr: &'a ValidatedCsr,
    ) -> IssueFuture<'a>;
    fn strictness_erased(&self) -> Strictness;
    fn withdraw_erased<'a>(&'a self, serial: &'a Serial) -> WithdrawFuture<'a>;
}

impl<S: Signer + Send + Sync> ErasedSigner for S {
    fn issue_erased<'a>(
        &'a self,
        plan: &'a CertificatePlan,
        csr: &'a ValidatedCsr,
    ) -> IssueFuture<'a> {
        Box::pin(self.issue(plan, csr))
    }

    fn strictness_erased(&self) -> Strictness {
        self.strictness()
    }

    fn withdraw_erased<'a>(&'a self, serial: &'a Serial) -> WithdrawFuture<'a> {
        Box::pin(self.withdraw(serial))
    }
}

/// Any [`Signer`], boxed: the local key or AWS Private CA, chosen by
/// configuration at run time.
pub struct BoxedSigner {
    inner: Box<dyn ErasedSigner>,
    name: &'static str,
}

impl BoxedSigner {
    /// Box `signer`.
    pub fn new<S: Signer + Send + Sync + 'static>(signer: S) -> BoxedSigner {
        BoxedSigner {
            inner: Box::new(signer),
            name: std::any::type_name::<S>(),
        }
    }
}

impl fmt::Debug for BoxedSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BoxedSigner").field(&self.name).finish()
    }
}

impl Signer for BoxedSigner {
    async fn issue(
        &self,
        plan: &CertificatePlan,
        csr: &ValidatedCsr,
    ) -> Result<Certificate, IssueError> {
        self.inner.issue_erased(plan, csr).await
    }

    fn strictness(&self) -> Strictness {
        self.inner.strictness_erased()
    }

    async fn withdraw(&self, serial: &Serial) -> Result<Withdrawal, IssueError> {
        self.inner.withdraw_erased(serial).await
    }
}
