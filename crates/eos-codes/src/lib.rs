//! Security codes: the onboarding secrets that open the registration zone.
//!
//! A code is 130 random bits from the operating system's CSPRNG, written in
//! Crockford base32 with a public code id and a check symbol
//! ([`SecurityCode`], see [`format`]). Only a keyed hash is stored:
//! HMAC-SHA256 under a server-side [`Pepper`] that lives outside the
//! database, over the code and everything it is bound to ([`Binding`]: space,
//! user, role, purposes, expiry, use limit). A code of this strength needs no
//! slow password hash — and a slow hash on an open endpoint would be a CPU
//! lever for attackers.
//!
//! [`check_and_spend`] looks the code up by id, compares hashes in constant
//! time, checks the binding and spends one use, returning a [`Grant`] — the
//! only way to get one. Every refusal looks the same to the caller
//! ([`GENERIC_REJECTION`]); the precise [`RefusalReason`] goes to the audit
//! log. Failures are counted per source address with exponential backoff
//! ([`BackoffPolicy`]); never per code, since code ids are public. Storage
//! plugs in through [`CodeStore`]; the crate does no I/O besides the OS
//! random source and reading a pepper file it is pointed at.
//!
//! Times are Unix seconds passed in by the caller, so tests drive a clock
//! instead of sleeping.

pub mod binding;
mod check;
mod codes;
pub mod duration;
pub mod format;
pub mod pepper;

pub use binding::{
    Binding, BindingError, CodeKind, DEFAULT_MAX_USES, DEFAULT_RECOVERY_TTL, DEFAULT_TTL,
    IssueRequest, MAX_TTL, Purpose, Purposes, format_duration, parse_duration,
};
pub use check::{
    Attempt, BackoffPolicy, CheckError, CodeEvent, CodeHash, CodeInfo, CodeState, CodeStore,
    CodeUse, GENERIC_REJECTION, Grant, IssueError, PurposeUses, RefusalReason, Rejection, Status,
    StoredCode, ThrottleKey, ThrottleState, check_and_spend, issue, return_use, revoke, rfc3339,
    unix_now, verify,
};
pub use codes::Code;
pub use format::{CodeId, FormatError, RandomError, SecurityCode};
pub use pepper::{PEPPER_ENV, Pepper, PepperError, PepperId, PepperRing, PepperSources};
