//! Issuing, checking and spending codes against a [`CodeStore`].
//!
//! The rules live here; storage plugs in through the trait. A check answers
//! the caller with one generic refusal whatever went wrong, and tells the
//! store (hence the audit log) the precise reason. Failures are counted per
//! source address, with exponential backoff — never per code: code ids are
//! public, and a per-code count would let anyone who knows an id lock its
//! owner out, while adding nothing against guessing a 130-bit secret.
//!
//! - this module: issuing, checking, spending, returning and revoking, and
//!   the [`Grant`] only a check makes;
//! - `stored.rs`: what the store keeps for a code (never the code) and how
//!   it is listed;
//! - `backoff.rs`: the failure count per source address and its backoff;
//! - `refusal.rs`: why a code was refused, and the errors a check or an
//!   issue returns;
//! - `store.rs`: the [`CodeStore`] trait and the [`CodeEvent`]s it audits.

use std::net::IpAddr;
use std::ops::Deref;
use std::time::Duration;

use eos_identity::{Role, SpaceId, UserId};
use hmac::Mac;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::binding::{Binding, CodeKind, IssueRequest, Purpose};
use crate::format::{CodeId, SecurityCode};
use crate::pepper::{Pepper, PepperRing};

mod backoff;
mod refusal;
mod store;
mod stored;

pub use backoff::{BackoffPolicy, ThrottleKey, ThrottleState};
pub use refusal::{CheckError, IssueError, RefusalReason, Rejection};
pub use store::{CodeEvent, CodeStore};
pub use stored::{
    CodeHash, CodeInfo, CodeState, PurposeUses, Status, StoredCode, rfc3339, unix_now,
};

/// The one message a caller ever sees for a refused code.
pub const GENERIC_REJECTION: &str = "security code not accepted";

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
}
