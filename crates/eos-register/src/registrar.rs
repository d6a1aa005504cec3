//! What a registration does, synchronously. An address registration or a
//! recovery is one store transaction: the code check and spend, then the
//! rule with its registration row and audit entry — all committed together,
//! or nothing. A certificate is two, with the CA's signature between them
//! and the store free meanwhile ([`Registrar::execute`], `issue`): the
//! spend and the plan, then the record; if signing or recording fails, the
//! spent use is given back, so the outcome is again all or nothing.
//!
//! Every request is a [`Registration`] variant, and each variant names the
//! purpose its code is checked for. The work that follows runs inside
//! [`eos_store::Store::spend_code`]'s action (or
//! [`eos_store::Store::spend_code_keeping_grant`]'s), which is only called
//! with the [`Grant`] that a successful check makes: nothing reaches a rule
//! or the CA without the code check, and the CSR is not even parsed before
//! it.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use eos_ca::{Account, IssueError};
use eos_codes::{Attempt, BackoffPolicy, CheckError, Grant, PepperRing, Purpose};
use eos_identity::{SpaceId, UserId};
use eos_plan::rules::{Label, NetworkAccessRule, RuleCidr};
use eos_store::codes::{self, SpendError};
use eos_store::registrations::{self, NewRegistration, RegistrationKind};
use eos_store::{AuditEntry, Engine, Store, StoreError, Tx, audit_in, rules};
use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

use crate::ApiError;
use crate::commit::GroupCommit;
use crate::config::ServeOptions;
use crate::pool::{Pool, Pooled};
use crate::renewal::{self, Refusal, Renewal, RenewalError, Renewed};
use eos_ops::issuance::{self, CaSetup, IssuanceError, IssueAudit, IssueInput};

/// A security code as a client sent it. Never logged, never displayed;
/// `Debug` redacts it and the memory is wiped on drop.
#[derive(Clone)]
pub struct PresentedCode(Zeroizing<String>);

impl<'de> Deserialize<'de> for PresentedCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(PresentedCode::new)
    }
}

impl PresentedCode {
    /// Wrap a code (tests, other front ends).
    pub fn new(code: String) -> PresentedCode {
        PresentedCode(Zeroizing::new(code))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PresentedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresentedCode(<redacted>)")
    }
}

/// One request of the open zone. Each variant is checked for its own
/// purpose; there is no path to an action without [`Registrar::execute`]'s
/// code check.
#[derive(Debug)]
#[non_exhaustive]
pub enum Registration {
    /// `POST /v1/ip`: register the address the request comes from.
    Ip {
        /// The code (purpose `register-ip`).
        code: PresentedCode,
        /// An address the client says it has: accepted only when it equals
        /// the resolved client address.
        claimed: Option<IpAddr>,
    },
    /// `POST /v1/cert`: sign a CSR.
    Cert {
        /// The code (purpose `register-cert`).
        code: PresentedCode,
        /// The CSR, PEM. Not parsed before the code is accepted.
        csr: String,
    },
    /// `POST /v1/recover`: an administrator's new address replaces their
    /// previous recovery address.
    Recover {
        /// The recovery code (purpose `recover`).
        code: PresentedCode,
    },
}

impl Registration {
    /// The purpose the code is checked for.
    pub fn purpose(&self) -> Purpose {
        match self {
            Registration::Ip { .. } => Purpose::RegisterIp,
            Registration::Cert { .. } => Purpose::RegisterCert,
            Registration::Recover { .. } => Purpose::Recover,
        }
    }

    fn code(&self) -> &PresentedCode {
        match self {
            Registration::Ip { code, .. }
            | Registration::Cert { code, .. }
            | Registration::Recover { code } => code,
        }
    }
}

/// An address registration or recovery waiting for its transaction.
#[derive(Debug)]
struct Job {
    request: Registration,
    client: IpAddr,
    now: i64,
}

/// What a registration did (the response body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Outcome {
    /// The address is in the space's Network Access Rules.
    Registered {
        /// The space.
        space: SpaceId,
        /// The user the code belongs to.
        user: UserId,
        /// The rule's network (the client address as /32 or /128).
        cidr: String,
        /// `added`, or `exists` when a live rule already covered it.
        rule: &'static str,
    },
    /// A certificate was issued.
    Issued {
        /// The space.
        space: SpaceId,
        /// The user.
        user: UserId,
        /// Lower-case hex serial.
        serial: String,
        /// The profile.
        profile: String,
        /// RFC 3339.
        not_after: String,
        /// The certificate, PEM.
        certificate: String,
        /// The CA chain above it, PEM (the entityOS root).
        chain: String,
    },
    /// A certificate was renewed with itself (`/v1/renew`).
    Renewed {
        /// The space (from the inventory record).
        space: SpaceId,
        /// The user (from the inventory record).
        user: UserId,
        /// The new certificate's serial, lower-case hex.
        serial: String,
        /// The serial of the certificate presented and renewed.
        renewed: String,
        /// The profile (the renewed certificate's).
        profile: String,
        /// RFC 3339.
        not_after: String,
        /// The certificate, PEM.
        certificate: String,
        /// The CA chain above it, PEM.
        chain: String,
    },
    /// The administrator's recovery address was replaced.
    Recovered {
        /// The space.
        space: SpaceId,
        /// The administrator.
        user: UserId,
        /// The new address's network.
        cidr: String,
        /// The previous recovery address, when one was replaced.
        replaced: Option<String>,
        /// The code id, for the notification (public half).
        #[serde(skip)]
        code_id: String,
    },
}

/// The registration service's state: the store, the pepper ring, the
/// backoff policy and, when certificates are issued, the CA.
pub struct Registrar {
    stores: Pool,
    /// SQLite's address registrations and recoveries, several per commit.
    group: GroupCommit<Job, Result<Outcome, ApiError>>,
    ring: PepperRing,
    backoff: BackoffPolicy,
    ca: Option<CaSetup>,
    options: ServeOptions,
    sync_backend: Option<String>,
    renewals: RenewalCounters,
}

/// Renewals since the service started, and refusals by code, for
/// `/metrics`.
#[derive(Debug, Default)]
struct RenewalCounters {
    renewed: AtomicU64,
    refused: Mutex<BTreeMap<&'static str, u64>>,
}

impl RenewalCounters {
    fn refused(&self, code: &'static str) {
        let mut map = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(code).or_default() += 1;
    }

    fn prometheus(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP eos_register_renewals_total Certificates renewed with themselves (/v1/renew).\n\
             # TYPE eos_register_renewals_total counter\n\
             eos_register_renewals_total {}",
            self.renewed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP eos_register_renewal_refusals_total Renewals refused, by code.\n\
             # TYPE eos_register_renewal_refusals_total counter"
        );
        let map = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        for code in Refusal::CODES
            .iter()
            .copied()
            .chain(["csr-refused", "internal"])
        {
            let n = map.get(code).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "eos_register_renewal_refusals_total{{reason=\"{code}\"}} {n}"
            );
        }
        out
    }
}

impl fmt::Debug for Registrar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registrar")
            .field("issues_certificates", &self.ca.is_some())
            .finish_non_exhaustive()
    }
}

pub(crate) fn internal(what: &str, e: impl fmt::Display) -> ApiError {
    tracing::error!(error = %e, "{what}");
    ApiError::internal()
}

/// Run an issuance future from synchronous code: on the current Tokio
/// runtime when there is one (the service calls this from
/// `spawn_blocking`, where the runtime's workers drive the AWS client's
/// I/O), else on a small runtime of its own (the local key never waits).
fn drive<F: std::future::Future>(f: F) -> Result<F::Output, std::io::Error> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => Ok(handle.block_on(f)),
        Err(_) => Ok(tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(f)),
    }
}

fn store_err(e: StoreError) -> ApiError {
    if e.is_unavailable() {
        tracing::warn!(error = %e, "state store unavailable");
        return ApiError::store_unavailable();
    }
    internal("state store", e)
}

fn spend_error(e: SpendError<ApiError>) -> ApiError {
    match e {
        SpendError::Action(e) => e,
        SpendError::Check(CheckError::Rejected(_)) => ApiError::code_rejected(),
        SpendError::Check(CheckError::Throttled { retry_after }) => {
            ApiError::throttled(retry_after)
        }
        SpendError::Check(CheckError::Store(e)) | SpendError::Store(e) => store_err(e),
        e => internal("code check", e),
    }
}

/// An issuance failure as the client sees it: what is wrong with the CSR
/// (`csr-refused`, with its reason), else an internal error (logged).
fn issuance_error(e: IssuanceError) -> ApiError {
    match e {
        IssuanceError::Refused(e) => {
            let message = match &e {
                // The inventory's owner of the key is another account's
                // business: say only that the key is taken.
                IssueError::Csr(eos_ca::CsrError::KeyReuse { .. }) => {
                    "this key is already certified for another account; generate a new key"
                        .to_owned()
                }
                _ => e.to_string(),
            };
            ApiError::csr_refused(e.code(), message)
        }
        IssuanceError::AccountDisabled { .. } => ApiError::renewal_refused(
            "account-disabled",
            "this account is disabled; ask its space's administrator".to_owned(),
            None,
        ),
        IssuanceError::Store(e) => store_err(e),
        other => internal("certificate issuance", other),
    }
}

/// A renewal failure as the client sees it: its refusal code, a CSR
/// refusal, else an internal error (logged).
fn renewal_error(e: RenewalError) -> ApiError {
    match e {
        RenewalError::Refused(r) => {
            ApiError::renewal_refused(r.code(), r.to_string(), r.retry_after(SystemTime::now()))
        }
        RenewalError::Issuance(e) => issuance_error(e),
    }
}

/// `<addr>/32` or `<addr>/128`: exactly the one address.
fn host_cidr(addr: IpAddr) -> Result<RuleCidr, ApiError> {
    let len = if addr.is_ipv4() { 32 } else { 128 };
    RuleCidr::parse(&format!("{addr}/{len}")).map_err(|e| internal("host cidr", e))
}

fn now_utc() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
}

impl Registrar {
    /// A registrar over an open store. `ca: None` refuses `/v1/cert` with
    /// `ca-unavailable`.
    pub fn new(
        store: Store,
        ring: PepperRing,
        backoff: BackoffPolicy,
        ca: Option<CaSetup>,
        options: ServeOptions,
    ) -> Registrar {
        Registrar {
            stores: Pool::new(store),
            group: GroupCommit::new(),
            ring,
            backoff,
            ca,
            options,
            sync_backend: None,
            renewals: RenewalCounters::default(),
        }
    }

    /// The renewal figures as Prometheus text (always served on
    /// `/metrics`).
    pub fn renewal_metrics(&self) -> String {
        self.renewals.prometheus()
    }

    /// Serve the sync figures of `backend` (its id) on `/metrics`: set when
    /// the service runs the sync watcher.
    pub fn with_sync_metrics(mut self, backend: String) -> Registrar {
        self.sync_backend = Some(backend);
        self
    }

    /// The sync figures as Prometheus text, when the service runs the
    /// watcher; `None` otherwise (`/metrics` then serves the renewal figures only).
    pub fn sync_metrics(&self) -> Option<Result<String, StoreError>> {
        let backend = self.sync_backend.as_deref()?;
        let rows = self
            .store()
            .and_then(|store| eos_store::sync::status(store.conn(), backend, now_utc()));
        Some(rows.map(|rows| eos_store::sync::prometheus(backend, &rows)))
    }

    /// The options it was made with.
    pub fn options(&self) -> &ServeOptions {
        &self.options
    }

    /// Whether `/v1/cert` can issue.
    pub fn issues_certificates(&self) -> bool {
        self.ca.is_some()
    }

    /// The CA chain, PEM, when certificates are issued.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca.as_ref().map(|c| c.chain_pem().to_owned())
    }

    /// A store connection for this request (waits for one when all are
    /// in use).
    fn store(&self) -> Result<Pooled<'_>, StoreError> {
        self.stores.get()
    }

    /// Can the store be read? (readiness)
    pub fn ready(&self) -> bool {
        self.store().and_then(|s| s.ping()).is_ok()
    }

    /// Append an audit entry in its own transaction.
    pub fn audit(&self, entry: &AuditEntry<'_>) -> Result<(), StoreError> {
        self.store()?.audit(entry).map(|_| ())
    }

    /// Check the code, then do what the request asks, in one transaction.
    /// `client` is the resolved client address; `now` Unix seconds.
    pub fn execute(
        &self,
        request: Registration,
        client: IpAddr,
        now: i64,
    ) -> Result<Outcome, ApiError> {
        let client = client.to_canonical();
        match &request {
            // Refused before the code is looked at: a code can only ever
            // open the gate to the address the request comes from.
            Registration::Ip {
                claimed: Some(a), ..
            } if a.to_canonical() != client => return Err(ApiError::address_mismatch()),
            Registration::Cert { .. } if self.ca.is_none() => {
                return Err(ApiError::ca_unavailable());
            }
            _ => {}
        }
        if let Registration::Cert { code, csr } = &request {
            // Signed between two transactions.
            let attempt = Attempt {
                presented: code.expose(),
                purpose: Purpose::RegisterCert,
                source: client,
                space: None,
            };
            return self.issue(&attempt, csr, client, now);
        }
        let job = Job {
            request,
            client,
            now,
        };
        let mut store = self.store().map_err(store_err)?;
        if store.engine() == Engine::Postgres {
            // Side by side with the other connections and instances: the
            // transaction locks only the code, source and rule it touches,
            // and the database's own group commit shares the fsyncs.
            let tx = store.concurrent_transaction().map_err(store_err)?;
            let out = self.spend(&tx, &job);
            if codes::keeps_writes(&out) {
                tx.commit().map_err(store_err)?;
            }
            return out.map(|(_, outcome)| outcome).map_err(spend_error);
        }
        // SQLite: one writer, so the requests that queue behind a commit
        // share the next one.
        drop(store);
        self.group
            .submit(job, |jobs| self.commit_together(jobs))
            .unwrap_or_else(|| Err(internal("group commit", "a batch was lost")))
    }

    /// A batch of address registrations and recoveries in one transaction,
    /// each in a savepoint: one that fails is undone alone (its code not
    /// spent), a refusal keeps its failure count and audit entry, as it
    /// would in a transaction of its own. The results are returned after
    /// the commit; if the commit fails, every one is that failure.
    fn commit_together(&self, jobs: Vec<Job>) -> Vec<Result<Outcome, ApiError>> {
        let fail_all = |jobs: usize, e: StoreError| -> Vec<Result<Outcome, ApiError>> {
            let e = store_err(e);
            (0..jobs).map(|_| Err(e.clone())).collect()
        };
        let mut store = match self.store() {
            Ok(store) => store,
            Err(e) => return fail_all(jobs.len(), e),
        };
        let tx = match store.concurrent_transaction() {
            Ok(tx) => tx,
            Err(e) => return fail_all(jobs.len(), e),
        };
        let mut results = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let step = (|| {
                let savepoint = tx.savepoint()?;
                let out = self.spend(&tx, job);
                if codes::keeps_writes(&out) {
                    savepoint.release()?;
                } else {
                    savepoint.rollback()?;
                }
                Ok(out)
            })();
            match step {
                Ok(out) => results.push(out.map(|(_, outcome)| outcome).map_err(spend_error)),
                // The transaction itself failed: nothing of it commits.
                Err(e) => return fail_all(jobs.len(), e),
            }
        }
        match tx.commit() {
            Ok(()) => results,
            Err(e) => fail_all(jobs.len(), e),
        }
    }

    /// Check and spend `job`'s code and do what it asks, in `tx`
    /// ([`codes::spend_in`]: the caller keeps or undoes the writes).
    fn spend(&self, tx: &Tx<'_>, job: &Job) -> Result<(Grant, Outcome), SpendError<ApiError>> {
        let attempt = Attempt {
            presented: job.request.code().expose(),
            purpose: job.request.purpose(),
            source: job.client,
            space: None,
        };
        type Action = fn(&Registrar, &Tx<'_>, &Grant, IpAddr) -> Result<Outcome, ApiError>;
        let action: Action = match &job.request {
            Registration::Recover { .. } => Registrar::recover,
            _ => Registrar::register_ip,
        };
        codes::spend_in(
            tx,
            &self.ring,
            &self.backoff,
            &attempt,
            job.now,
            |tx, grant| action(self, tx, grant, job.client),
        )
    }

    fn label(
        &self,
        kind: RegistrationKind,
        user: &UserId,
        code_id: &str,
    ) -> Result<Label, ApiError> {
        Label::new(&format!(
            "{} {} by {user} with code {code_id}",
            self.options.rule_label,
            kind.as_str()
        ))
        .map_err(|e| internal("rule label", e))
    }

    /// Write the rule for `client` unless a live one exists, and record the
    /// registration. Returns (registration id, cidr, whether the rule is
    /// this registration's: written now, or `inherits_rule` — written by the
    /// recovery it replaces, for the same address).
    fn put_address(
        &self,
        tx: &Tx<'_>,
        grant: &Grant,
        client: IpAddr,
        kind: RegistrationKind,
        inherits_rule: bool,
    ) -> Result<(i64, RuleCidr, bool), ApiError> {
        let cidr = host_cidr(client)?;
        let now = now_utc();
        let existing = rules::rule_for_update(tx, &grant.space, &cidr).map_err(store_err)?;
        let wrote = match &existing {
            Some(r) if !r.rule.is_expired(now) => false,
            _ => {
                let rule = NetworkAccessRule::new(
                    grant.space.clone(),
                    cidr,
                    self.label(kind, &grant.user, grant.code_id.as_str())?,
                    grant.user.clone(),
                    now,
                    None,
                )
                .map_err(|e| internal("rule", e))?;
                rules::put_rule_over(
                    tx,
                    &rule,
                    existing.as_ref(),
                    &eos_store::Actor::Code(grant.code_id.as_str()).to_string(),
                )
                .map_err(store_err)?;
                true
            }
        } || inherits_rule;
        let cidr_text = cidr.to_string();
        let id = registrations::record_in(
            tx,
            &NewRegistration {
                kind,
                space: &grant.space,
                user: &grant.user,
                code_id: grant.code_id.as_str(),
                source: client,
                cidr: Some(&cidr_text),
                wrote_rule: wrote,
                serial: None,
            },
        )
        .map_err(store_err)?;
        Ok((id, cidr, wrote))
    }

    fn register_ip(&self, tx: &Tx<'_>, grant: &Grant, client: IpAddr) -> Result<Outcome, ApiError> {
        let (id, cidr, wrote) = self.put_address(tx, grant, client, RegistrationKind::Ip, false)?;
        audit_in(
            tx,
            &AuditEntry::new(
                &eos_store::Actor::Code(grant.code_id.as_str()).to_string(),
                "register.ip",
                &format!("{} {cidr}", grant.space),
            )
            .with_detail(json!({
                "user": grant.user,
                "source": client.to_string(),
                "rule_written": wrote,
                "registration": id,
            })),
        )
        .map_err(store_err)?;
        tracing::info!(space = %grant.space, user = %grant.user, code_id = %grant.code_id, %cidr, rule_written = wrote, "address registered");
        Ok(Outcome::Registered {
            space: grant.space.clone(),
            user: grant.user.clone(),
            cidr: cidr.to_string(),
            rule: if wrote { "added" } else { "exists" },
        })
    }

    fn recover(&self, tx: &Tx<'_>, grant: &Grant, client: IpAddr) -> Result<Outcome, ApiError> {
        // Only an administrator's code gets here: the check refuses `recover`
        // for any other role (`recover-not-admin`, audited and counted).
        let previous = registrations::current_recovery_for_update(tx, &grant.space, &grant.user)
            .map_err(store_err)?;
        let prev_cidr = previous
            .as_ref()
            .and_then(|p| p.cidr.as_deref())
            .and_then(|c| RuleCidr::parse(c).ok());
        let here = host_cidr(client)?;
        // Same address again: the rule the previous recovery wrote becomes
        // this one's to replace later.
        let inherits = previous.as_ref().is_some_and(|p| p.wrote_rule) && prev_cidr == Some(here);
        let (id, cidr, wrote) =
            self.put_address(tx, grant, client, RegistrationKind::Recover, inherits)?;
        let mut replaced = None;
        if let Some(prev) = &previous {
            registrations::mark_replaced_in(tx, prev.id, id).map_err(store_err)?;
            if let Some(old) = prev_cidr.filter(|c| *c != cidr) {
                // Remove the old rule only if it is still the one recovery
                // wrote; a rule declared since is left alone.
                let ours = self.label(RegistrationKind::Recover, &grant.user, &prev.code_id)?;
                let current = rules::rule_for_update(tx, &grant.space, &old).map_err(store_err)?;
                if prev.wrote_rule
                    && current
                        .is_some_and(|r| r.rule.label == ours && r.rule.declared_by == grant.user)
                {
                    rules::remove_rule_in(
                        tx,
                        &grant.space,
                        &old,
                        &eos_store::Actor::Code(grant.code_id.as_str()).to_string(),
                    )
                    .map_err(store_err)?;
                }
                replaced = Some(old.to_string());
            }
        }
        audit_in(
            tx,
            &AuditEntry::new(
                &eos_store::Actor::Code(grant.code_id.as_str()).to_string(),
                "register.recover",
                &format!("{} {}", grant.space, grant.user),
            )
            .with_detail(json!({
                "cidr": cidr.to_string(),
                "replaced": replaced,
                "source": client.to_string(),
                "rule_written": wrote,
                "registration": id,
            })),
        )
        .map_err(store_err)?;
        tracing::info!(space = %grant.space, user = %grant.user, code_id = %grant.code_id, %cidr, replaced = ?replaced, "administrator recovered");
        Ok(Outcome::Recovered {
            space: grant.space.clone(),
            user: grant.user.clone(),
            cidr: cidr.to_string(),
            replaced,
            code_id: grant.code_id.to_string(),
        })
    }

    /// `/v1/cert`, in three steps, so that the store is not held while the
    /// CA signs (AWS Private CA answers in seconds; every other
    /// registration would queue behind it):
    /// 1. one transaction checks and spends the code, validates the CSR and
    ///    plans the certificate from the code's account (nothing of the CSR
    ///    is parsed before the code is accepted);
    /// 2. the CA signs, the store free;
    /// 3. a second transaction checks the key's owner again, records the
    ///    certificate, the registration and the audit entries.
    ///
    /// If step 2 or 3 fails, the spent use is given back (audited as
    /// `code.use-returned`) and nothing is recorded: as when the one
    /// transaction of the other requests rolls back. A certificate the CA
    /// signed but that is not handed out (it broke its plan, or step 3
    /// failed) is withdrawn from the signer first, the store free: AWS
    /// Private CA revokes it. The reason names its serial and what became of
    /// it. A use being signed for counts as spent, so a code's last use
    /// cannot be spent twice.
    fn issue(
        &self,
        attempt: &Attempt<'_>,
        csr_pem: &str,
        client: IpAddr,
        now: i64,
    ) -> Result<Outcome, ApiError> {
        let Some(ca) = &self.ca else {
            return Err(ApiError::ca_unavailable());
        };
        let profile = self.options.cert_profile;
        let (grant, prepared) = self
            .store()
            .map_err(store_err)?
            .spend_code_keeping_grant(&self.ring, &self.backoff, attempt, now, |tx, grant| {
                let input = IssueInput {
                    csr: csr_pem.as_bytes(),
                    account: &Account {
                        space: grant.space.clone(),
                        user: grant.user.clone(),
                    },
                    profile,
                    lifetime: None,
                };
                issuance::prepare_in(tx, ca, &input, SystemTime::now()).map_err(issuance_error)
            })
            .map_err(spend_error)?;
        // The store is free from here until the certificate is recorded.
        let issued = match drive(issuance::sign(ca, &prepared)) {
            Err(e) => Err((
                "certificate not issued: internal".to_owned(),
                internal("async runtime", e),
            )),
            Ok(Err(e)) => {
                let rejected = match &e {
                    IssuanceError::Failed(IssueError::Rejected {
                        serial, withdrawal, ..
                    }) => Some(format!(
                        "certificate {serial} signed, broke its plan; {withdrawal}"
                    )),
                    _ => None,
                };
                let e = issuance_error(e);
                let reason =
                    rejected.unwrap_or_else(|| format!("certificate not issued: {}", e.code()));
                Err((reason, e))
            }
            Ok(Ok(cert)) => self
                .record_cert(ca, &grant, client, &prepared, &cert)
                .map_err(|e| {
                    // Signed, but neither recorded nor handed out: withdrawn
                    // from the signer (a Private CA revokes it), with the
                    // store free. Its serial goes in the audit entry.
                    let serial = eos_ca::serial_of(&cert);
                    let withdrawal = drive(issuance::withdraw(ca, &serial)).unwrap_or_else(|r| {
                        eos_ca::withdrawal_note(&Err(IssueError::Signer(format!(
                            "async runtime: {r}"
                        ))))
                    });
                    let reason = format!(
                        "certificate {serial} signed, not recorded: {}; {withdrawal}",
                        e.code()
                    );
                    (reason, e)
                }),
        };
        let (issued, id) = match issued {
            Ok(done) => done,
            Err((reason, e)) => {
                let code_id = grant.code_id.clone();
                let given_back = self.store().and_then(|mut store| {
                    let tx = store.transaction()?;
                    eos_store::codes::return_use_in(&tx, grant, &reason)?;
                    tx.commit()
                });
                if let Err(g) = given_back {
                    tracing::error!(%code_id, error = %g, "giving back the use of a certificate that was not issued");
                }
                return Err(e);
            }
        };
        let account = prepared.account();
        tracing::info!(space = %account.space, user = %account.user, code_id = %grant.code_id, serial = %issued.serial, registration = id, "certificate issued");
        Ok(Outcome::Issued {
            space: account.space.clone(),
            user: account.user.clone(),
            serial: issued.serial.to_string(),
            profile: profile.as_str().to_owned(),
            not_after: issued.not_after,
            certificate: issued.pem,
            chain: ca.chain_pem().to_owned(),
        })
    }

    /// Renew the certificate `presented` (its DER; `None` when the client
    /// presented none) with `csr` (PEM or DER, same key or a new one): the
    /// caller has authenticated the presenter (the TLS handshake with the
    /// client certificate, or a trusted proxy that did it and forwarded
    /// the certificate). No security code is involved. As code-based
    /// issuance (`/v1/cert`): checks and plan in one transaction, the
    /// signature with the store free, the record in a second transaction
    /// that checks the predecessor again; a successor signed but not
    /// recorded is withdrawn from the signer. Refusals carry the stable
    /// codes of [`renewal::Refusal`] (`csr-*` for the CSR).
    pub fn renew(
        &self,
        presented: Option<&[u8]>,
        csr: &[u8],
        client: IpAddr,
    ) -> Result<Outcome, ApiError> {
        let outcome = self.renew_inner(presented.unwrap_or_default(), csr, client);
        match &outcome {
            Ok(_) => {
                self.renewals.renewed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.renewals.refused(match e.code() {
                c if Refusal::CODES.contains(&c) || c == "internal" => c,
                _ => "csr-refused",
            }),
        }
        outcome
    }

    /// What renewing the certificate `presented` would do ([`renewal::status_in`]),
    /// for the page. Reads only.
    pub fn renewal_status(&self, presented: Option<&[u8]>) -> Result<renewal::Status, ApiError> {
        let Some(ca) = &self.ca else {
            return Err(ApiError::ca_unavailable());
        };
        let mut store = self.store().map_err(store_err)?;
        let tx = store.transaction().map_err(store_err)?;
        renewal::status_in(
            &tx,
            ca,
            &self.options.renewal,
            presented.unwrap_or_default(),
            SystemTime::now(),
        )
        .map_err(renewal_error)
        // Read only: the transaction is dropped.
    }

    fn renew_inner(
        &self,
        presented: &[u8],
        csr: &[u8],
        client: IpAddr,
    ) -> Result<Outcome, ApiError> {
        let Some(ca) = &self.ca else {
            return Err(ApiError::ca_unavailable());
        };
        let policy = &self.options.renewal;
        let prepared = {
            let mut store = self.store().map_err(store_err)?;
            let tx = store.transaction().map_err(store_err)?;
            renewal::prepare_in(&tx, ca, policy, presented, csr, SystemTime::now())
            // Read only: the transaction is dropped.
        };
        let successor = match prepared {
            Ok(Renewal::Done(renewed)) => return Ok(self.renewed(ca, *renewed, client)),
            Ok(Renewal::Sign(s)) => s,
            Err(e) => {
                self.audit_refusal(&e, client);
                return Err(renewal_error(e));
            }
        };
        // The store is free from here until the successor is recorded.
        let cert = match drive(issuance::sign(ca, successor.prepared())) {
            Err(e) => return Err(internal("async runtime", e)),
            Ok(Err(e)) => return Err(issuance_error(e)),
            Ok(Ok(cert)) => cert,
        };
        let recorded = (|| {
            let mut store = self.store()?;
            let tx = store.transaction().map_err(RenewalError::from)?;
            let mut extra = serde_json::Map::new();
            extra.insert("source".into(), json!(client.to_string()));
            let audit = IssueAudit {
                actor: &renewal::actor(&successor.old().serial),
                action: "cert.renewed",
                extra,
            };
            let renewed = renewal::record_in(&tx, ca, &audit, &successor, &cert)?;
            tx.commit()?;
            Ok(renewed)
        })();
        match recorded {
            Ok(renewed) => Ok(self.renewed(ca, renewed, client)),
            Err(e) => {
                let serial = eos_ca::serial_of(&cert);
                let withdrawal = drive(issuance::withdraw(ca, &serial)).unwrap_or_else(|r| {
                    eos_ca::withdrawal_note(&Err(IssueError::Signer(format!("async runtime: {r}"))))
                });
                tracing::warn!(%serial, %withdrawal, error = %e, "renewed certificate signed, not recorded");
                self.audit_refusal(&e, client);
                Err(renewal_error(e))
            }
        }
    }

    fn renewed(&self, ca: &CaSetup, r: Renewed, client: IpAddr) -> Outcome {
        tracing::info!(space = %r.account.space, user = %r.account.user, renewed = %r.renewed, serial = %r.serial, replayed = r.replayed, %client, "certificate renewed");
        Outcome::Renewed {
            space: r.account.space,
            user: r.account.user,
            serial: r.serial,
            renewed: r.renewed,
            profile: r.profile.as_str().to_owned(),
            not_after: r.not_after,
            certificate: r.pem,
            chain: ca.chain_pem().to_owned(),
        }
    }

    /// A refusal worth an operator's eye — a revoked or superseded
    /// certificate still in use, a disabled account's — is audited
    /// (`cert.renewal-refused`); the rest are counted and logged only.
    fn audit_refusal(&self, e: &RenewalError, client: IpAddr) {
        let RenewalError::Refused(r) = e else {
            return;
        };
        let serial = match r {
            Refusal::Revoked { serial }
            | Refusal::Superseded { serial, .. }
            | Refusal::AccountDisabled { serial } => serial.clone(),
            _ => {
                tracing::info!(code = r.code(), %client, "renewal refused");
                return;
            }
        };
        tracing::warn!(code = r.code(), %serial, %client, "renewal refused");
        let actor = renewal::actor(&serial);
        let entry = AuditEntry::new(&actor, "cert.renewal-refused", &serial)
            .with_detail(json!({"code": r.code(), "source": client.to_string()}));
        if let Err(e) = self.audit(&entry) {
            tracing::error!(error = %e, "auditing a refused renewal");
        }
    }

    /// The second transaction of [`Registrar::issue`]: check the key's owner
    /// again, record the certificate, the registration and the audit
    /// entries. Holds the store until it returns.
    fn record_cert(
        &self,
        ca: &CaSetup,
        grant: &Grant,
        client: IpAddr,
        prepared: &issuance::Prepared,
        cert: &eos_ca::Certificate,
    ) -> Result<(issuance::Issued, i64), ApiError> {
        let mut store = self.store().map_err(store_err)?;
        let tx = store.transaction().map_err(store_err)?;
        let mut extra = serde_json::Map::new();
        extra.insert("source".into(), json!(client.to_string()));
        let issued = issuance::record_in(
            &tx,
            ca,
            &IssueAudit {
                actor: &eos_store::Actor::Code(grant.code_id.as_str()).to_string(),
                action: "register.cert",
                extra,
            },
            prepared,
            cert,
        )
        .map_err(issuance_error)?;
        let id = registrations::record_in(
            &tx,
            &NewRegistration {
                kind: RegistrationKind::Cert,
                space: &grant.space,
                user: &grant.user,
                code_id: grant.code_id.as_str(),
                source: client,
                cidr: None,
                wrote_rule: false,
                serial: Some(&issued.serial.to_string()),
            },
        )
        .map_err(store_err)?;
        tx.commit().map_err(store_err)?;
        Ok((issued, id))
    }
}
