//! What the store keeps for a code — its keyed hash and binding, never the
//! code — and how a code is listed.

use std::fmt;

use eos_identity::{Role, SpaceId, UserId};

use crate::binding::{Binding, CodeKind, Purpose};
use crate::format::CodeId;
use crate::pepper::PepperId;

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
    time::OffsetDateTime::from_unix_timestamp(t)
        .map_or_else(|_| t.to_string(), eos_identity::rfc3339)
}

/// The current time in Unix seconds.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
