//! Helpers shared by the code-store integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use eos_codes::format::{ALPHABET, CODE_LEN, ID_LEN, check_symbol, symbol_value};
use eos_codes::{
    Attempt, BackoffPolicy, CheckError, GENERIC_REJECTION, IssueRequest, Pepper, PepperRing,
    Purpose, Purposes, RefusalReason,
};
use eos_identity::{Role, SpaceId, UserId};
use eos_store::codes::SpendError;
use eos_store::{Store, StoreError};

pub const PEPPER_A: &str = "a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0";
pub const PEPPER_B: &str = "0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000";
pub const T0: i64 = 1_800_000_000;

pub fn ring_a() -> PepperRing {
    PepperRing::new(Pepper::from_hex(PEPPER_A, "test").unwrap(), vec![])
}

pub fn space(s: &str) -> SpaceId {
    SpaceId::new(s).unwrap()
}

pub fn onboarding(purposes: &[Purpose]) -> IssueRequest {
    IssueRequest::onboarding(
        space("acme"),
        UserId::new("alice").unwrap(),
        Role::User,
        Purposes::new(purposes.iter().copied()).unwrap(),
    )
    .unwrap()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn attempt<'a>(code: &'a str, purpose: Purpose, source: &str) -> Attempt<'a> {
    Attempt {
        presented: code,
        purpose,
        source: ip(source),
        space: None,
    }
}

pub fn spend(
    store: &mut Store,
    ring: &PepperRing,
    a: &Attempt<'_>,
    now: i64,
) -> Result<eos_codes::CodeUse, CheckError<StoreError>> {
    store
        .spend_code(ring, &BackoffPolicy::default(), a, now, |_, g| {
            Ok::<_, std::convert::Infallible>((**g).clone())
        })
        .map_err(|e| match e {
            SpendError::Check(c) => c,
            SpendError::Store(s) => CheckError::Store(s),
            SpendError::Action(never) => match never {},
            _ => unreachable!(),
        })
}

pub fn reason(r: Result<eos_codes::CodeUse, CheckError<StoreError>>) -> RefusalReason {
    match r {
        Err(CheckError::Rejected(rej)) => {
            assert_eq!(rej.to_string(), GENERIC_REJECTION);
            rej.audit_reason()
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// A code with the same id as `code` and a different secret, with a valid
/// check symbol (so it passes the format check and reaches the hash).
pub fn wrong_secret(code: &str) -> String {
    let mut v: Vec<u8> = code
        .trim_start_matches("EOS-")
        .chars()
        .filter(|&c| c != '-')
        .map(|c| symbol_value(c).unwrap())
        .collect();
    v[ID_LEN + 3] = (v[ID_LEN + 3] + 1) % 32;
    v[CODE_LEN - 1] = check_symbol(&v[..CODE_LEN - 1]);
    v.iter()
        .map(|&s| char::from(ALPHABET[usize::from(s)]))
        .collect()
}
