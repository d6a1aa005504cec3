//! Issuing, checking and spending codes against a [`CodeStore`].
//!
//! The rules live here; storage plugs in through the trait. A check answers
//! the caller with one generic refusal whatever went wrong, and tells the
//! store (hence the audit log) the precise reason. Failures are counted per
//! source address, with exponential backoff — never per code: code ids are
//! public, and a per-code count would let anyone who knows an id lock its
//! owner out, while adding nothing against guessing a 130-bit secret.

use std::fmt;
use std::net::IpAddr;
use std::ops::Deref;
use std::time::Duration;

use eos_identity::{Role, SpaceId, UserId};
use hmac::Mac;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::binding::{Binding, CodeKind, IssueRequest, Purpose};
use crate::format::{CodeId, RandomError, SecurityCode};
use crate::pepper::{Pepper, PepperId, PepperRing};

/// The one message a caller ever sees for a refused code.
pub const GENERIC_REJECTION: &str = "security code not accepted";

/// A stored keyed hash. Not secret on its own, but never printed either.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeHash(pub [u8; 32]);

impl fmt::Debug for CodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeHash(<hidden>)")
    }
}

/// What the store keeps for a code: never the code itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCode {
    /// The public id.
    pub id: CodeId,
    /// `HMAC-SHA256(pepper, "eos-sec/code/v1" ‖ id ‖ secret ‖ binding)`.
    pub hash: CodeHash,
    /// Which pepper made the hash.
    pub pepper_id: PepperId,
    /// What the code is bound to.
    pub binding: Binding,
    /// Who issued it (operator name).
    pub issued_by: String,
}

/// A stored code with its mutable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeState {
    /// The immutable part.
    pub code: StoredCode,
    /// Uses so far per purpose (purposes never used may be absent).
    pub uses: Vec<(Purpose, u32)>,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
}

/// Where a code stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Usable for at least one purpose.
    Live,
    /// Past its expiry.
    Expired,
    /// Every purpose used up.
    Spent,
    /// Revoked by an operator.
    Revoked,
}

impl Status {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Live => "live",
            Status::Expired => "expired",
            Status::Spent => "spent",
            Status::Revoked => "revoked",
        }
    }
}

impl CodeState {
    /// Uses so far for one purpose.
    pub fn uses_for(&self, purpose: Purpose) -> u32 {
        self.uses
            .iter()
            .find(|(p, _)| *p == purpose)
            .map_or(0, |(_, n)| *n)
    }

    /// Where the code stands at `now`.
    pub fn status(&self, now: i64) -> Status {
        let b = &self.code.binding;
        if self.revoked_at.is_some() {
            Status::Revoked
        } else if now >= b.expires_at {
            Status::Expired
        } else if let Some(max) = b.max_uses
            && b.purposes.iter().all(|p| self.uses_for(p) >= max)
        {
            Status::Spent
        } else {
            Status::Live
        }
    }

    /// Metadata for listings: everything but the hash.
    pub fn info(&self, now: i64) -> CodeInfo {
        let b = &self.code.binding;
        CodeInfo {
            code_id: self.code.id.clone(),
            space: b.space.clone(),
            user: b.user.clone(),
            role: b.role,
            kind: b.kind,
            purposes: b.purposes.iter().collect(),
            max_uses: b.max_uses,
            uses: b
                .purposes
                .iter()
                .map(|p| PurposeUses {
                    purpose: p,
                    uses: self.uses_for(p),
                })
                .collect(),
            status: self.status(now),
            issued_at: rfc3339(b.issued_at),
            expires_at: rfc3339(b.expires_at),
            issued_by: self.code.issued_by.clone(),
            revoked_at: self.revoked_at.map(rfc3339),
            pepper_id: self.code.pepper_id.clone(),
        }
    }
}

/// Uses of one purpose.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PurposeUses {
    /// The purpose.
    pub purpose: Purpose,
    /// Uses so far.
    pub uses: u32,
}

/// A code's metadata as `code list` shows it (the stable JSON shape).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CodeInfo {
    /// The public id.
    pub code_id: CodeId,
    /// The space.
    pub space: SpaceId,
    /// The person.
    pub user: UserId,
    /// Their role.
    pub role: Role,
    /// Onboarding or recovery.
    pub kind: CodeKind,
    /// What it may be used for.
    pub purposes: Vec<Purpose>,
    /// Uses allowed per purpose; `null` is unlimited.
    pub max_uses: Option<u32>,
    /// Uses so far per purpose.
    pub uses: Vec<PurposeUses>,
    /// Where it stands.
    pub status: Status,
    /// RFC 3339.
    pub issued_at: String,
    /// RFC 3339.
    pub expires_at: String,
    /// Who issued it.
    pub issued_by: String,
    /// RFC 3339, when revoked.
    pub revoked_at: Option<String>,
    /// The pepper its hash was made with.
    pub pepper_id: PepperId,
}

/// Format Unix seconds as RFC 3339 UTC.
pub fn rfc3339(t: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&fmt).ok())
        .unwrap_or_else(|| t.to_string())
}

/// The current time in Unix seconds.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// What backoff is keyed on: a source address, IPv4 exactly, IPv6 by its
/// /64 (one host usually holds a whole /64, so counting single addresses
/// would be free to evade). Only sources: a per-code key would let anyone
/// who knows a (public) code id make its owner's correct code wait.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThrottleKey(String);

impl ThrottleKey {
    /// The key for a source address.
    pub fn source(ip: IpAddr) -> ThrottleKey {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => ThrottleKey(v4.to_string()),
            IpAddr::V6(v6) => {
                let net = u128::from(v6) & !((1u128 << 64) - 1);
                ThrottleKey(format!("{}/64", std::net::Ipv6Addr::from(net)))
            }
        }
    }

    /// The key as stored: `src:<addr>`.
    pub fn as_stored(&self) -> String {
        format!("src:{}", self.0)
    }
}

/// Failure count for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleState {
    /// Failures since the counter last reset.
    pub failures: u32,
    /// Unix seconds of the last failure.
    pub last_failure_at: i64,
    /// No attempt is evaluated before this (Unix seconds).
    pub blocked_until: i64,
}

/// Exponential backoff on failed checks. After `free_failures` failures the
/// key waits `base`, then twice that after each further failure, up to
/// `max`. A key's count resets after `reset_after` without failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Failures allowed without delay (typos happen).
    pub free_failures: u32,
    /// The first delay.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Quiet time after which the count starts over.
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            free_failures: 3,
            base: Duration::from_secs(1),
            max: Duration::from_secs(15 * 60),
            reset_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl BackoffPolicy {
    /// The wait imposed after `failures` consecutive failures.
    pub fn delay_after(&self, failures: u32) -> Duration {
        let Some(extra) = failures.checked_sub(self.free_failures.saturating_add(1)) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(extra.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    fn after_failure(&self, prev: Option<ThrottleState>, now: i64) -> ThrottleState {
        let reset = i64::try_from(self.reset_after.as_secs()).unwrap_or(i64::MAX);
        let failures = match prev {
            Some(p) if now.saturating_sub(p.last_failure_at) < reset => {
                p.failures.saturating_add(1)
            }
            _ => 1,
        };
        let delay = i64::try_from(self.delay_after(failures).as_secs()).unwrap_or(i64::MAX);
        ThrottleState {
            failures,
            last_failure_at: now,
            blocked_until: now.saturating_add(delay),
        }
    }
}

/// Why a code was refused. For the audit log and operators only: callers
/// get [`GENERIC_REJECTION`] whatever the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RefusalReason {
    /// Not a well-formed code (length, symbol, check symbol).
    Malformed,
    /// No code with this id.
    UnknownCode,
    /// The id exists, the secret does not match.
    WrongSecret,
    /// Past its expiry.
    Expired,
    /// This purpose's uses are used up.
    Spent,
    /// Revoked by an operator.
    Revoked,
    /// Not issued for this purpose.
    WrongPurpose,
    /// Presented for another space than the one it was issued for.
    WrongSpace,
    /// Its hash was made with a pepper that is no longer configured.
    PepperUnavailable,
    /// Presented to recover, but not an administrator's: recovery is only
    /// ever granted to administrators (issuing refuses such codes; this
    /// catches one issued before it did).
    RecoverNotAdmin,
}

impl RefusalReason {
    /// The stable name, as in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Malformed => "malformed",
            RefusalReason::UnknownCode => "unknown-code",
            RefusalReason::WrongSecret => "wrong-secret",
            RefusalReason::Expired => "expired",
            RefusalReason::Spent => "spent",
            RefusalReason::Revoked => "revoked",
            RefusalReason::WrongPurpose => "wrong-purpose",
            RefusalReason::WrongSpace => "wrong-space",
            RefusalReason::PepperUnavailable => "pepper-unavailable",
            RefusalReason::RecoverNotAdmin => "recover-not-admin",
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused code. Displays as [`GENERIC_REJECTION`], whatever the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    reason: RefusalReason,
    code_id: Option<CodeId>,
}

impl Rejection {
    /// The precise reason, for the audit log and operators — never for the
    /// caller that presented the code.
    pub fn audit_reason(&self) -> RefusalReason {
        self.reason
    }

    /// The id the presented code named, when it was well-formed.
    pub fn code_id(&self) -> Option<&CodeId> {
        self.code_id.as_ref()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(GENERIC_REJECTION)
    }
}

impl std::error::Error for Rejection {}

/// Why a check did not produce a grant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError<E> {
    /// The code was refused (one generic message for every reason).
    #[error(transparent)]
    Rejected(Rejection),
    /// The source address is backing off; nothing was evaluated.
    #[error("too many failed attempts from this address; retry in {}s", retry_after.as_secs())]
    Throttled {
        /// How long until an attempt is evaluated again.
        retry_after: Duration,
    },
    /// The store failed; nothing was decided.
    #[error("code store: {0}")]
    Store(#[source] E),
}

/// Why issuing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError<E> {
    /// The random source failed.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// Fresh ids kept colliding with stored ones (should never happen with
    /// 45-bit ids; a sign of a broken random source).
    #[error("generated code ids collided {0} times in a row; refusing to continue")]
    IdCollision(u32),
    /// The store failed.
    #[error("code store: {0}")]
    Store(#[source] E),
}

/// What a successful check found: the code's binding and this use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CodeUse {
    /// The code.
    pub code_id: CodeId,
    /// Its space.
    pub space: SpaceId,
    /// Its person.
    pub user: UserId,
    /// Their role.
    pub role: Role,
    /// Onboarding or recovery.
    pub kind: CodeKind,
    /// The purpose it was presented for.
    pub purpose: Purpose,
    /// Which use of this purpose this is (1-based).
    pub use_number: u32,
    /// Uses allowed per purpose; `None` is unlimited.
    pub max_uses: Option<u32>,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Proof that a code was checked and one use of it spent. Only
/// [`check_and_spend`] makes one, so an action that takes a `Grant` cannot
/// run without the check. Not `Clone`: one grant, one action.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a grant is a spent use of a code: perform the action it authorises"]
pub struct Grant {
    usage: CodeUse,
}

impl Deref for Grant {
    type Target = CodeUse;
    fn deref(&self) -> &CodeUse {
        &self.usage
    }
}

/// Something that happened to a code, for the store to audit. Carries ids,
/// names and reasons only: there is no field a code or pepper could go in.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum CodeEvent<'a> {
    /// A code was issued.
    Issued {
        /// What was stored.
        code: &'a StoredCode,
    },
    /// A use was spent.
    Used {
        /// The use.
        usage: &'a CodeUse,
        /// Who presented it.
        source: IpAddr,
    },
    /// A code checked without spending (`code verify`).
    Verified {
        /// What a use would be.
        usage: &'a CodeUse,
        /// Who presented it.
        source: IpAddr,
    },
    /// A code was refused.
    Rejected {
        /// The id it named, if well-formed.
        code_id: Option<&'a CodeId>,
        /// Why.
        reason: RefusalReason,
        /// What it was presented for.
        purpose: Purpose,
        /// Who presented it.
        source: IpAddr,
        /// A `code verify` check rather than a real use.
        dry_run: bool,
    },
    /// A spent use was given back: the action it was spent for failed
    /// after the spend had been committed (see [`return_use`]).
    Returned {
        /// The use given back.
        usage: &'a CodeUse,
        /// Why, in a few words (never the code).
        reason: &'a str,
    },
    /// A code was revoked.
    Revoked {
        /// The code.
        code_id: &'a CodeId,
        /// Who revoked it.
        by: &'a str,
        /// Why, as the operator said.
        reason: &'a str,
    },
}

impl CodeEvent<'_> {
    /// The stable audit action name.
    pub fn action(&self) -> &'static str {
        match self {
            CodeEvent::Issued { .. } => "code.issue",
            CodeEvent::Used { usage, .. } if usage.kind == CodeKind::Recovery => {
                "code.recovery.use"
            }
            CodeEvent::Used { .. } => "code.use",
            CodeEvent::Verified { .. } => "code.verify",
            CodeEvent::Rejected { .. } => "code.reject",
            CodeEvent::Returned { .. } => "code.use-returned",
            CodeEvent::Revoked { .. } => "code.revoke",
        }
    }
}

/// Storage for codes. The SQLite implementation is `eos_store::codes`; its
/// methods run inside one transaction, so a check, the use it spends, the
/// audit entry and the caller's action commit together.
pub trait CodeStore {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Store a new code. `Ok(false)` when the id is taken (nothing written).
    fn insert_code(&mut self, code: &StoredCode) -> Result<bool, Self::Error>;
    /// A code by id, with its uses and revocation.
    fn load_code(&mut self, id: &CodeId) -> Result<Option<CodeState>, Self::Error>;
    /// Count one use of `purpose`, only while fewer than `max_uses` (if any)
    /// were counted. `Ok(false)`: the limit was reached, nothing written.
    fn record_use(
        &mut self,
        id: &CodeId,
        purpose: Purpose,
        max_uses: Option<u32>,
        now: i64,
    ) -> Result<bool, Self::Error>;
    /// Take back one counted use of `purpose`. `Ok(false)`: none was
    /// counted, nothing written.
    fn release_use(&mut self, id: &CodeId, purpose: Purpose) -> Result<bool, Self::Error>;
    /// Mark a code revoked. `Ok(false)`: no such code, or already revoked.
    fn mark_revoked(
        &mut self,
        id: &CodeId,
        by: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, Self::Error>;
    /// The failure count for a key.
    fn throttle(&mut self, key: &ThrottleKey) -> Result<Option<ThrottleState>, Self::Error>;
    /// Replace (or with `None`, clear) the failure count for a key.
    fn set_throttle(
        &mut self,
        key: &ThrottleKey,
        state: Option<&ThrottleState>,
    ) -> Result<(), Self::Error>;
    /// Record an event in the audit log.
    fn record_event(&mut self, event: &CodeEvent<'_>) -> Result<(), Self::Error>;
}

/// How many fresh ids to try when one collides.
const ISSUE_TRIES: u32 = 4;

fn code_hash(pepper: &Pepper, code: &SecurityCode, binding: &Binding) -> CodeHash {
    let mut mac = pepper.mac();
    mac.update(b"eos-sec/code/v1\0");
    mac.update(code.id().as_str().as_bytes());
    mac.update(b"\0");
    let secret = code.secret_ascii();
    mac.update(secret.as_ref());
    mac.update(b"\0");
    mac.update(binding.canonical().as_bytes());
    let tag = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
    CodeHash(*tag)
}

/// Issue a code: generate it, store its keyed hash under the current pepper,
/// record the event. The returned [`SecurityCode`] is the only copy there
/// will ever be: hand it over once.
pub fn issue<S: CodeStore>(
    store: &mut S,
    ring: &PepperRing,
    request: &IssueRequest,
    now: i64,
    issued_by: &str,
) -> Result<(SecurityCode, StoredCode), IssueError<S::Error>> {
    let binding = request.binding(now);
    for _ in 0..ISSUE_TRIES {
        let code = SecurityCode::generate()?;
        let stored = StoredCode {
            id: code.id().clone(),
            hash: code_hash(ring.current(), &code, &binding),
            pepper_id: ring.current().id().clone(),
            binding: binding.clone(),
            issued_by: issued_by.to_owned(),
        };
        if store.insert_code(&stored).map_err(IssueError::Store)? {
            store
                .record_event(&CodeEvent::Issued { code: &stored })
                .map_err(IssueError::Store)?;
            tracing::info!(
                code_id = %stored.id,
                space = %binding.space,
                user = %binding.user,
                kind = %binding.kind,
                purposes = %binding.purposes,
                "security code issued"
            );
            return Ok((code, stored));
        }
    }
    Err(IssueError::IdCollision(ISSUE_TRIES))
}

/// A code presented for a purpose.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The code as the person typed it. Never stored or logged.
    pub presented: &'a str,
    /// What it is presented for.
    pub purpose: Purpose,
    /// The client address (for backoff and the audit log).
    pub source: IpAddr,
    /// The space the request is for, when the caller knows it: a code for
    /// another space is refused.
    pub space: Option<&'a SpaceId>,
}

/// Check a code and spend one use of the purpose. On success the use is
/// recorded and a [`Grant`] returned; the store's transaction must then
/// commit together with the action the grant authorises.
///
/// On a refusal the failure counts and the audit entry are written to the
/// store too, and they must be committed as well: a refusal that is rolled
/// back does not count towards backoff.
pub fn check_and_spend<S: CodeStore>(
    store: &mut S,
    ring: &PepperRing,
    policy: &BackoffPolicy,
    attempt: &Attempt<'_>,
    now: i64,
) -> Result<Grant, CheckError<S::Error>> {
    check(store, ring, policy, attempt, now, true).map(|usage| Grant { usage })
}

/// Check a code without spending it (operators testing a code). Refusals
/// count towards backoff exactly as in [`check_and_spend`]; success is
/// audited as `code.verify`.
pub fn verify<S: CodeStore>(
    store: &mut S,
    ring: &PepperRing,
    policy: &BackoffPolicy,
    attempt: &Attempt<'_>,
    now: i64,
) -> Result<CodeUse, CheckError<S::Error>> {
    check(store, ring, policy, attempt, now, false)
}

/// Give back the use `grant` spent, when the action it authorised failed
/// after the spend was committed (an action that runs partly outside the
/// spend's transaction, such as a certificate signed by a remote CA while
/// the store is not held). The grant is consumed: a use is either acted on
/// or given back, once. Revocation and expiry are untouched: a code revoked
/// meanwhile stays revoked.
pub fn return_use<S: CodeStore>(store: &mut S, grant: Grant, reason: &str) -> Result<(), S::Error> {
    let usage = grant.usage;
    if store.release_use(&usage.code_id, usage.purpose)? {
        store.record_event(&CodeEvent::Returned {
            usage: &usage,
            reason,
        })?;
        tracing::info!(code_id = %usage.code_id, purpose = %usage.purpose, reason, "security code use returned");
    }
    Ok(())
}

/// Revoke a code and record who did it. `Ok(false)`: unknown or already
/// revoked.
pub fn revoke<S: CodeStore>(
    store: &mut S,
    id: &CodeId,
    by: &str,
    reason: &str,
    now: i64,
) -> Result<bool, S::Error> {
    if !store.mark_revoked(id, by, reason, now)? {
        return Ok(false);
    }
    store.record_event(&CodeEvent::Revoked {
        code_id: id,
        by,
        reason,
    })?;
    tracing::info!(code_id = %id, by, "security code revoked");
    Ok(true)
}

type Refused = (RefusalReason, Option<CodeId>);

fn check<S: CodeStore>(
    store: &mut S,
    ring: &PepperRing,
    policy: &BackoffPolicy,
    attempt: &Attempt<'_>,
    now: i64,
    spend: bool,
) -> Result<CodeUse, CheckError<S::Error>> {
    let src_key = ThrottleKey::source(attempt.source);
    let src_state = store.throttle(&src_key).map_err(CheckError::Store)?;
    if let Some(st) = src_state
        && st.blocked_until > now
    {
        let secs = u64::try_from(st.blocked_until.saturating_sub(now)).unwrap_or(0);
        tracing::warn!(source = %attempt.source, retry_after = secs, "security code attempt while backing off");
        return Err(CheckError::Throttled {
            retry_after: Duration::from_secs(secs),
        });
    }
    match evaluate(store, ring, attempt, now, spend).map_err(CheckError::Store)? {
        Ok(usage) => {
            let event = if spend {
                CodeEvent::Used {
                    usage: &usage,
                    source: attempt.source,
                }
            } else {
                CodeEvent::Verified {
                    usage: &usage,
                    source: attempt.source,
                }
            };
            store.record_event(&event).map_err(CheckError::Store)?;
            tracing::info!(
                code_id = %usage.code_id,
                purpose = %usage.purpose,
                source = %attempt.source,
                action = event.action(),
                "security code accepted"
            );
            Ok(usage)
        }
        Err((reason, code_id)) => {
            let next = policy.after_failure(src_state, now);
            store
                .set_throttle(&src_key, Some(&next))
                .map_err(CheckError::Store)?;
            store
                .record_event(&CodeEvent::Rejected {
                    code_id: code_id.as_ref(),
                    reason,
                    purpose: attempt.purpose,
                    source: attempt.source,
                    dry_run: !spend,
                })
                .map_err(CheckError::Store)?;
            tracing::warn!(
                code_id = code_id.as_ref().map(CodeId::as_str),
                reason = %reason,
                purpose = %attempt.purpose,
                source = %attempt.source,
                failures = next.failures,
                "security code rejected"
            );
            Err(CheckError::Rejected(Rejection { reason, code_id }))
        }
    }
}

/// The decision, without its bookkeeping. The outer `Result` is the store's.
fn evaluate<S: CodeStore>(
    store: &mut S,
    ring: &PepperRing,
    attempt: &Attempt<'_>,
    now: i64,
    spend: bool,
) -> Result<Result<CodeUse, Refused>, S::Error> {
    let Ok(code) = SecurityCode::parse(attempt.presented) else {
        return Ok(Err((RefusalReason::Malformed, None)));
    };
    let id = code.id().clone();
    let refuse = |reason| Ok(Err((reason, Some(id.clone()))));
    let Some(state) = store.load_code(&id)? else {
        return refuse(RefusalReason::UnknownCode);
    };
    let b = &state.code.binding;
    let Some(pepper) = ring.get(&state.code.pepper_id) else {
        return refuse(RefusalReason::PepperUnavailable);
    };
    let computed = code_hash(pepper, &code, b);
    if !bool::from(computed.0.ct_eq(&state.code.hash.0)) {
        return refuse(RefusalReason::WrongSecret);
    }
    // The secret matched: from here on the reasons concern a genuine code.
    if state.revoked_at.is_some() {
        return refuse(RefusalReason::Revoked);
    }
    if now >= b.expires_at {
        return refuse(RefusalReason::Expired);
    }
    if attempt.space.is_some_and(|s| s != &b.space) {
        return refuse(RefusalReason::WrongSpace);
    }
    if !b.purposes.contains(attempt.purpose) {
        return refuse(RefusalReason::WrongPurpose);
    }
    if attempt.purpose == Purpose::Recover && b.role != Role::Admin {
        return refuse(RefusalReason::RecoverNotAdmin);
    }
    let used = state.uses_for(attempt.purpose);
    if b.max_uses.is_some_and(|max| used >= max) {
        return refuse(RefusalReason::Spent);
    }
    if spend && !store.record_use(&id, attempt.purpose, b.max_uses, now)? {
        // Another transaction spent it between load and update.
        return refuse(RefusalReason::Spent);
    }
    Ok(Ok(CodeUse {
        code_id: id.clone(),
        space: b.space.clone(),
        user: b.user.clone(),
        role: b.role,
        kind: b.kind,
        purpose: attempt.purpose,
        use_number: used.saturating_add(1),
        max_uses: b.max_uses,
        expires_at: b.expires_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = BackoffPolicy::default();
        let d: Vec<u64> = (0..=16).map(|n| p.delay_after(n).as_secs()).collect();
        assert_eq!(
            d,
            [
                0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900
            ]
        );
        assert_eq!(p.delay_after(u32::MAX), p.max);
    }

    #[test]
    fn counts_reset_after_quiet_time() {
        let p = BackoffPolicy::default();
        let s = p.after_failure(None, 0);
        let s = p.after_failure(Some(s), 10);
        assert_eq!(s.failures, 2);
        let s = p.after_failure(Some(s), 10 + 24 * 3600);
        assert_eq!(s.failures, 1);
    }

    /// Codes, uses, backoff and events in memory: enough to drive a check.
    #[derive(Default)]
    struct Memory {
        codes: Vec<StoredCode>,
        uses: Vec<(CodeId, Purpose)>,
        throttle: std::collections::HashMap<String, ThrottleState>,
        events: Vec<String>,
    }

    impl CodeStore for Memory {
        type Error = std::convert::Infallible;
        fn insert_code(&mut self, code: &StoredCode) -> Result<bool, Self::Error> {
            self.codes.push(code.clone());
            Ok(true)
        }
        fn load_code(&mut self, id: &CodeId) -> Result<Option<CodeState>, Self::Error> {
            Ok(self.codes.iter().find(|c| &c.id == id).map(|c| CodeState {
                code: c.clone(),
                uses: Vec::new(),
                revoked_at: None,
            }))
        }
        fn record_use(
            &mut self,
            id: &CodeId,
            purpose: Purpose,
            _: Option<u32>,
            _: i64,
        ) -> Result<bool, Self::Error> {
            self.uses.push((id.clone(), purpose));
            Ok(true)
        }
        fn release_use(&mut self, _: &CodeId, _: Purpose) -> Result<bool, Self::Error> {
            Ok(false)
        }
        fn mark_revoked(
            &mut self,
            _: &CodeId,
            _: &str,
            _: &str,
            _: i64,
        ) -> Result<bool, Self::Error> {
            Ok(false)
        }
        fn throttle(&mut self, key: &ThrottleKey) -> Result<Option<ThrottleState>, Self::Error> {
            Ok(self.throttle.get(&key.as_stored()).copied())
        }
        fn set_throttle(
            &mut self,
            key: &ThrottleKey,
            state: Option<&ThrottleState>,
        ) -> Result<(), Self::Error> {
            match state {
                Some(s) => self.throttle.insert(key.as_stored(), *s),
                None => self.throttle.remove(&key.as_stored()),
            };
            Ok(())
        }
        fn record_event(&mut self, event: &CodeEvent<'_>) -> Result<(), Self::Error> {
            let reason = match event {
                CodeEvent::Rejected { reason, .. } => format!(" {reason}"),
                _ => String::new(),
            };
            self.events.push(format!("{}{reason}", event.action()));
            Ok(())
        }
    }

    #[test]
    fn a_recover_code_of_a_non_administrator_is_refused_and_counted() {
        // Issuing refuses such a code now; one issued before that is
        // refused by the check, as a code refusal: audited and counted.
        let ring = PepperRing::new(Pepper::generate().unwrap(), vec![]);
        let binding = Binding {
            space: SpaceId::new("acme").unwrap(),
            user: UserId::new("alice").unwrap(),
            role: Role::User,
            kind: CodeKind::Onboarding,
            purposes: crate::Purposes::new([Purpose::Recover, Purpose::RegisterIp]).unwrap(),
            max_uses: Some(1),
            issued_at: 0,
            expires_at: 1000,
        };
        let code = SecurityCode::generate().unwrap();
        let mut store = Memory::default();
        store.codes.push(StoredCode {
            id: code.id().clone(),
            hash: code_hash(ring.current(), &code, &binding),
            pepper_id: ring.current().id().clone(),
            binding,
            issued_by: "before the check".to_owned(),
        });
        let written = code.reveal();
        let source: IpAddr = "192.0.2.1".parse().unwrap();
        let attempt = |purpose| Attempt {
            presented: &written,
            purpose,
            source,
            space: None,
        };
        let policy = BackoffPolicy::default();
        let r = check_and_spend(&mut store, &ring, &policy, &attempt(Purpose::Recover), 10);
        match r {
            Err(CheckError::Rejected(r)) => {
                assert_eq!(r.audit_reason(), RefusalReason::RecoverNotAdmin);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.events, ["code.reject recover-not-admin"]);
        assert_eq!(
            store.throttle[&ThrottleKey::source(source).as_stored()].failures,
            1
        );
        assert!(store.uses.is_empty());
        // Its other purpose still works.
        let grant = check_and_spend(
            &mut store,
            &ring,
            &policy,
            &attempt(Purpose::RegisterIp),
            10,
        );
        assert_eq!(grant.unwrap().purpose, Purpose::RegisterIp);
    }

    #[test]
    fn ipv6_sources_count_per_64() {
        let a = ThrottleKey::source("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = ThrottleKey::source("2001:db8:1:2:bbbb::2".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(a.as_stored(), "src:2001:db8:1:2::/64");
        let m = ThrottleKey::source("::ffff:192.0.2.1".parse().unwrap());
        assert_eq!(m.as_stored(), "src:192.0.2.1");
    }
}
