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

/// The engines every store test runs on: SQLite (in memory) and, when a
/// PostgreSQL server is installed (required under `EOS_SEC_REQUIRE_ORACLES`
/// or `CI`), a fresh database on a throwaway cluster of this test's own.
pub struct Engines {
    pub cluster: Option<eos_store::testing::PgCluster>,
    dir: tempfile::TempDir,
}

impl Engines {
    pub fn start() -> Engines {
        Engines {
            cluster: eos_store::testing::PgCluster::start(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A fresh PostgreSQL database's URL, if there is a cluster.
    pub fn pg_url(&self, name: &str) -> Option<eos_store::StoreUrl> {
        let c = self.cluster.as_ref()?;
        Some(eos_store::StoreUrl::parse(&c.create_database(name)).unwrap())
    }

    /// Where an empty store of each engine lives: a temporary state
    /// directory (removed with `self`), and a fresh PostgreSQL database.
    pub fn locations(&self) -> Vec<eos_store::StoreLocation> {
        let mut out = vec![eos_store::StoreLocation::Dir(self.dir.path().join("state"))];
        if let Some(url) = self.pg_url("location_test") {
            out.push(eos_store::StoreLocation::Postgres(url));
        }
        out
    }

    /// One empty store per engine, named for messages.
    pub fn stores(&self) -> Vec<(&'static str, Store)> {
        let mut out = vec![("sqlite", Store::open_in_memory().unwrap())];
        if let Some(url) = self.pg_url("store_test") {
            out.push(("postgresql", Store::open_postgres(&url).unwrap()));
        }
        out
    }
}

/// Run `test` on an empty store of each engine.
pub fn on_each_engine(test: impl Fn(Store)) {
    eos_store::testing::on_each_engine(test);
}
