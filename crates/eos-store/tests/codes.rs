#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Security codes through the real SQLite store: issue, check, spend,
//! refusals, backoff, concurrency, rotation, and that secrets never leak.

use eos_store::Sql;
use std::sync::{Arc, Barrier};

use eos_codes::{
    Attempt, BackoffPolicy, CheckError, CodeKind, GENERIC_REJECTION, IssueRequest, Pepper,
    PepperRing, Purpose, RefusalReason, SecurityCode, Status,
};
use eos_identity::{Role, UserId};
use eos_store::codes::{
    CodeFilter, SpendError, check_and_spend_in, list_codes, pepper_usage, revoke_pepper_in,
};
use eos_store::{Store, StoreLocation};

mod common;
use common::*;

#[test]
fn schema_has_codes_migration() {
    let store = Store::open_in_memory().unwrap();
    assert!(store.schema_version().unwrap() >= 3);
}

#[test]
fn single_use_per_purpose() {
    on_each_engine(|mut store| {
        let ring = ring_a();
        let (code, info) = store
            .issue_code(
                &ring,
                &onboarding(&[Purpose::RegisterIp, Purpose::RegisterCert]),
                T0,
                "op",
            )
            .unwrap();
        assert_eq!(info.status, Status::Live);
        let c = code.reveal();
        let used = spend(
            &mut store,
            &ring,
            &attempt(&c, Purpose::RegisterIp, "192.0.2.1"),
            T0 + 5,
        )
        .unwrap();
        assert_eq!(used.space.as_str(), "acme");
        assert_eq!(used.user.as_str(), "alice");
        assert_eq!((used.use_number, used.max_uses), (1, Some(1)));
        let again = spend(
            &mut store,
            &ring,
            &attempt(&c, Purpose::RegisterIp, "192.0.2.1"),
            T0 + 6,
        );
        assert_eq!(reason(again), RefusalReason::Spent);
        // The other purpose has its own use.
        spend(
            &mut store,
            &ring,
            &attempt(&c, Purpose::RegisterCert, "192.0.2.1"),
            T0 + 7,
        )
        .unwrap();
        let info = &list_codes(
            store.conn(),
            &CodeFilter {
                include_inactive: true,
                ..CodeFilter::default()
            },
            T0 + 8,
        )
        .unwrap()[0];
        assert_eq!(info.status, Status::Spent);
        // Spent codes drop out of the default listing.
        assert!(
            list_codes(store.conn(), &CodeFilter::default(), T0 + 8)
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn every_refusal_reason_is_generic_to_the_caller_and_precise_in_the_audit_log() {
    on_each_engine(|mut store| {
        let ring = ring_a();
        let issue = |store: &mut Store, p: &[Purpose]| {
            store.issue_code(&ring, &onboarding(p), T0, "op").unwrap().0
        };
        let expiring = issue(&mut store, &[Purpose::RegisterIp]).reveal();
        let ip_only = issue(&mut store, &[Purpose::RegisterIp]).reveal();
        let revoked = issue(&mut store, &[Purpose::RegisterIp]);
        assert!(store.revoke_code(revoked.id(), "op", "lost", T0).unwrap());
        let revoked = revoked.reveal();
        let unknown = SecurityCode::generate().unwrap().reveal();
        let guessed = wrong_secret(&ip_only);
        let acme_space = space("other");

        // Each from its own address so backoff does not interfere.
        let cases: Vec<(RefusalReason, Result<_, _>)> = vec![
            (
                RefusalReason::Expired,
                spend(
                    &mut store,
                    &ring,
                    &attempt(&expiring, Purpose::RegisterIp, "192.0.2.1"),
                    T0 + 14 * 86_400,
                ),
            ),
            (
                RefusalReason::WrongPurpose,
                spend(
                    &mut store,
                    &ring,
                    &attempt(&ip_only, Purpose::RegisterCert, "192.0.2.2"),
                    T0,
                ),
            ),
            (
                RefusalReason::Revoked,
                spend(
                    &mut store,
                    &ring,
                    &attempt(&revoked, Purpose::RegisterIp, "192.0.2.3"),
                    T0,
                ),
            ),
            (
                RefusalReason::UnknownCode,
                spend(
                    &mut store,
                    &ring,
                    &attempt(&unknown, Purpose::RegisterIp, "192.0.2.4"),
                    T0,
                ),
            ),
            (
                RefusalReason::WrongSecret,
                spend(
                    &mut store,
                    &ring,
                    &attempt(&guessed, Purpose::RegisterIp, "192.0.2.5"),
                    T0,
                ),
            ),
            (
                RefusalReason::Malformed,
                spend(
                    &mut store,
                    &ring,
                    &attempt("EOS-1234", Purpose::RegisterIp, "192.0.2.6"),
                    T0,
                ),
            ),
            (
                RefusalReason::WrongSpace,
                spend(
                    &mut store,
                    &ring,
                    &Attempt {
                        space: Some(&acme_space),
                        ..attempt(&ip_only, Purpose::RegisterIp, "192.0.2.7")
                    },
                    T0,
                ),
            ),
            (
                RefusalReason::PepperUnavailable,
                spend(
                    &mut store,
                    &PepperRing::new(Pepper::from_hex(PEPPER_B, "b").unwrap(), vec![]),
                    &attempt(&ip_only, Purpose::RegisterIp, "192.0.2.8"),
                    T0,
                ),
            ),
        ];
        let mut messages = std::collections::BTreeSet::new();
        for (want, got) in cases {
            let msg = match &got {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{want:?} was accepted"),
            };
            messages.insert(msg);
            assert_eq!(reason(got), want);
        }
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert_eq!(
            messages.first().map(String::as_str),
            Some(GENERIC_REJECTION)
        );

        let rejects: Vec<String> = store
            .audit_log(100)
            .unwrap()
            .into_iter()
            .filter(|r| r.action == "code.reject")
            .map(|r| r.detail["reason"].as_str().unwrap().to_owned())
            .collect();
        for want in [
            "expired",
            "wrong-purpose",
            "revoked",
            "unknown-code",
            "wrong-secret",
            "malformed",
            "wrong-space",
            "pepper-unavailable",
        ] {
            assert!(
                rejects.iter().any(|r| r == want),
                "{want} not audited: {rejects:?}"
            );
        }
        // The genuine code is still good after all that.
        spend(
            &mut store,
            &ring,
            &attempt(&ip_only, Purpose::RegisterIp, "192.0.2.9"),
            T0,
        )
        .unwrap();
    });
}

#[test]
fn brute_force_from_one_address_backs_off_exponentially() {
    on_each_engine(|mut store| {
        let ring = ring_a();
        let (code, _) = store
            .issue_code(&ring, &onboarding(&[Purpose::RegisterIp]), T0, "op")
            .unwrap();
        let target = code.reveal();
        let policy = BackoffPolicy::default();
        let mut now = T0;
        let mut waits = Vec::new();
        let mut evaluated = 0;
        // An attacker who always waits exactly as long as told, guessing whole
        // codes from one address.
        for _ in 0..40 {
            let guess = SecurityCode::generate().unwrap().reveal().to_string();
            let tx_result = {
                let tx = store.transaction().unwrap();
                let r = check_and_spend_in(
                    &tx,
                    &ring,
                    &policy,
                    &attempt(&guess, Purpose::RegisterIp, "198.51.100.7"),
                    now,
                );
                tx.commit().unwrap();
                r
            };
            match tx_result {
                Ok(_) => panic!("a guess succeeded"),
                Err(CheckError::Throttled { retry_after }) => {
                    waits.push(retry_after.as_secs());
                    now += i64::try_from(retry_after.as_secs()).unwrap();
                }
                Err(CheckError::Rejected(r)) => {
                    assert_eq!(r.audit_reason(), RefusalReason::UnknownCode);
                    evaluated += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        // The free failures and the one that starts the first wait went through
        // at once; every later guess was preceded by a wait, and the waits
        // double up to the cap.
        let free = usize::try_from(policy.free_failures).unwrap();
        assert_eq!(evaluated, free + 1 + waits.len());
        assert_eq!(&waits[..6], &[1, 2, 4, 8, 16, 32], "{waits:?}");
        assert!(waits.windows(2).all(|w| w[1] >= w[0]), "{waits:?}");
        assert_eq!(*waits.last().unwrap(), policy.max.as_secs());
        // Total time an attacker needed for ~20 guesses: hours, not seconds.
        assert!(now - T0 > 3600, "{}", now - T0);
        // Attempts are not evaluated while the address waits, even a right one.
        let blocked = spend(
            &mut store,
            &ring,
            &attempt(&target, Purpose::RegisterIp, "198.51.100.7"),
            now,
        );
        assert!(
            matches!(blocked, Err(CheckError::Throttled { .. })),
            "{blocked:?}"
        );
        // Another address is not held back by this one.
        let other = spend(
            &mut store,
            &ring,
            &attempt(&target, Purpose::RegisterIp, "203.0.113.9"),
            now,
        )
        .unwrap();
        assert_eq!(other.use_number, 1);
    });
}

#[test]
fn guesses_against_one_code_from_many_addresses_never_lock_its_owner_out() {
    // Code ids are public (they are in rule labels): failures counted per
    // code would let anyone who knows an id make its owner's correct code
    // wait. Only the guessing sources back off.
    on_each_engine(|mut store| {
        let ring = ring_a();
        let (code, _) = store
            .issue_code(&ring, &onboarding(&[Purpose::RegisterIp]), T0, "op")
            .unwrap();
        let target = code.reveal();
        let guess = wrong_secret(&target);
        // Far past the point where a per-code wait would have reached its cap,
        // each guess from a fresh address.
        for i in 0..40 {
            let r = spend(
                &mut store,
                &ring,
                &attempt(&guess, Purpose::RegisterIp, &format!("192.0.2.{}", i + 10)),
                T0,
            );
            assert_eq!(reason(r), RefusalReason::WrongSecret);
        }
        // The owner's correct code, from another address, at the same moment.
        let u = spend(
            &mut store,
            &ring,
            &attempt(&target, Purpose::RegisterIp, "192.0.2.99"),
            T0,
        )
        .unwrap();
        assert_eq!(u.use_number, 1);
        // Nothing but sources is ever keyed.
        let keys: Vec<String> = store
            .conn()
            .query("SELECT key FROM code_throttle", &[], |r| r.get(0))
            .unwrap();
        assert_eq!(keys.len(), 40, "{keys:?}");
        assert!(keys.iter().all(|k| k.starts_with("src:")), "{keys:?}");
    });
}

#[test]
fn concurrent_uses_of_a_single_use_code_exactly_one_wins() {
    // Separate connections (processes share a file, or a server): the
    // database, not one process's lock, decides who spends the use.
    let engines = Engines::start();
    for location in engines.locations() {
        concurrent_uses_on(&location);
    }
}

fn concurrent_uses_on(location: &StoreLocation) {
    let ring = Arc::new(ring_a());
    let code = {
        let mut store = Store::open_at(location).unwrap();
        store
            .issue_code(&ring, &onboarding(&[Purpose::RegisterIp]), T0, "op")
            .unwrap()
            .0
            .reveal()
            .to_string()
    };
    for round in 0..3 {
        let code = if round == 0 {
            code.clone()
        } else {
            let mut store = Store::open_at(location).unwrap();
            store
                .issue_code(&ring, &onboarding(&[Purpose::RegisterIp]), T0, "op")
                .unwrap()
                .0
                .reveal()
                .to_string()
        };
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (location, ring, barrier, code) = (
                    location.clone(),
                    ring.clone(),
                    barrier.clone(),
                    code.clone(),
                );
                std::thread::spawn(move || {
                    let mut store = Store::open_at(&location).unwrap();
                    barrier.wait();
                    store.spend_code(
                        &ring,
                        &BackoffPolicy::default(),
                        &attempt(&code, Purpose::RegisterIp, &format!("192.0.2.{t}")),
                        T0 + 1,
                        |tx, grant| {
                            // The action writes in the same transaction.
                            tx.execute(
                                "INSERT INTO kv(key, value) VALUES (?1, 'done')",
                                &[&format!("action:{}:{t}", grant.code_id)],
                            )
                            .map(|_| ())
                        },
                    )
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "{location:?} round {round}: {results:?}");
        let loser = results
            .into_iter()
            .find(|r| r.is_err())
            .unwrap()
            .unwrap_err();
        match loser {
            SpendError::Check(CheckError::Rejected(r)) => {
                assert_eq!(r.audit_reason(), RefusalReason::Spent);
            }
            other => panic!("{other:?}"),
        }
        let store = Store::open_at(location).unwrap();
        let actions: i64 = store
            .conn()
            .query_one(
                "SELECT count(*) FROM kv WHERE key LIKE 'action:%'",
                &[],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(actions, round + 1);
    }
}

/// Registrations without the store's write lock
/// (`Store::concurrent_transaction`, what `serve` uses on PostgreSQL): two
/// connections spending different codes from different addresses do not
/// wait for each other, while two spending the same code take turns on its
/// row and the second finds it spent. Before, every write transaction took
/// one store-wide lock, and the second connection waited for the first.
#[test]
fn registrations_on_two_postgresql_connections_run_side_by_side_and_take_turns_on_a_code() {
    let engines = Engines::start();
    let Some(url) = engines.pg_url("side_by_side") else {
        return;
    };
    let (mut a, mut b) = (
        Store::open_postgres(&url).unwrap(),
        Store::open_postgres(&url).unwrap(),
    );
    let ring = ring_a();
    let policy = BackoffPolicy::default();
    let mut issue = || {
        a.issue_code(&ring, &onboarding(&[Purpose::RegisterIp]), T0, "op")
            .unwrap()
            .0
            .reveal()
            .to_string()
    };
    let (first, second) = (issue(), issue());
    let spend_in = |tx: &eos_store::Tx<'_>, code: &str, source: &str| {
        eos_store::codes::spend_in(
            tx,
            &ring,
            &policy,
            &attempt(code, Purpose::RegisterIp, source),
            T0 + 1,
            |tx, grant| {
                tx.execute(
                    "INSERT INTO kv(key, value) VALUES (?1, 'done')",
                    &[&format!("action:{}", grant.code_id)],
                )
            },
        )
    };
    let held = a.concurrent_transaction().unwrap();
    let _spent = spend_in(&held, &first, "192.0.2.1").unwrap();
    // Another code from another address, while `held` is open: no wait.
    let started = std::time::Instant::now();
    let tx = b.concurrent_transaction().unwrap();
    let _spent = spend_in(&tx, &second, "192.0.2.2").unwrap();
    tx.commit().unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "waited {:?} for another registration's transaction",
        started.elapsed()
    );
    // The same code: waits for `held`, then finds its one use spent.
    std::thread::scope(|s| {
        let racer = s.spawn(|| {
            let tx = b.concurrent_transaction().unwrap();
            let out = spend_in(&tx, &first, "192.0.2.3");
            tx.commit().unwrap();
            out
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!racer.is_finished(), "the code's row was not locked");
        held.commit().unwrap();
        match racer.join().unwrap() {
            Err(SpendError::Check(CheckError::Rejected(r))) => {
                assert_eq!(r.audit_reason(), RefusalReason::Spent);
            }
            other => panic!("{other:?}"),
        }
    });
    let store = Store::open_postgres(&url).unwrap();
    let count = |sql: &str| {
        store
            .conn()
            .query_one(sql, &[], |r| r.get::<i64>(0))
            .unwrap()
    };
    assert_eq!(
        count("SELECT count(*) FROM kv WHERE key LIKE 'action:%'"),
        2
    );
    assert_eq!(
        count("SELECT COALESCE(SUM(uses), 0)::bigint FROM code_uses"),
        2
    );
}

#[test]
fn failed_action_rolls_back_the_use() {
    on_each_engine(|mut store| {
        let ring = ring_a();
        let (code, _) = store
            .issue_code(&ring, &onboarding(&[Purpose::RegisterIp]), T0, "op")
            .unwrap();
        let c = code.reveal();
        let r: Result<(), SpendError<&str>> = store.spend_code(
            &ring,
            &BackoffPolicy::default(),
            &attempt(&c, Purpose::RegisterIp, "192.0.2.1"),
            T0,
            |_, _| Err("rule write failed"),
        );
        assert!(matches!(r, Err(SpendError::Action("rule write failed"))));
        assert!(
            store
                .audit_log(10)
                .unwrap()
                .iter()
                .all(|e| e.action != "code.use")
        );
        spend(
            &mut store,
            &ring,
            &attempt(&c, Purpose::RegisterIp, "192.0.2.1"),
            T0,
        )
        .unwrap();
    });
}

#[test]
fn a_kept_grant_holds_its_use_until_it_is_given_back() {
    on_each_engine(|mut store| {
        let ring = ring_a();
        let (code, _) = store
            .issue_code(&ring, &onboarding(&[Purpose::RegisterCert]), T0, "op")
            .unwrap();
        let c = code.reveal();
        let (grant, planned) = store
            .spend_code_keeping_grant(
                &ring,
                &BackoffPolicy::default(),
                &attempt(&c, Purpose::RegisterCert, "192.0.2.1"),
                T0,
                |_, g| Ok::<_, std::convert::Infallible>(g.use_number),
            )
            .unwrap();
        assert_eq!(planned, 1);
        // The spend is committed: the code's one use is taken while the grant
        // is out (say, while a remote CA signs).
        let second = spend(
            &mut store,
            &ring,
            &attempt(&c, Purpose::RegisterCert, "192.0.2.2"),
            T0 + 1,
        );
        assert!(matches!(second, Err(CheckError::Rejected(_))), "{second:?}");
        // Given back: one more use, and the audit log says which and why.
        let tx = store.transaction().unwrap();
        eos_store::codes::return_use_in(&tx, grant, "certificate not issued: signer-failed")
            .unwrap();
        tx.commit().unwrap();
        let log = store.audit_log(20).unwrap();
        let returned: Vec<_> = log
            .iter()
            .filter(|e| e.action == "code.use-returned")
            .collect();
        assert_eq!(returned.len(), 1);
        assert_eq!(returned[0].subject, "acme");
        assert_eq!(returned[0].detail["use_number"], 1);
        assert_eq!(
            returned[0].detail["reason"],
            "certificate not issued: signer-failed"
        );
        let again = spend(
            &mut store,
            &ring,
            &attempt(&c, Purpose::RegisterCert, "192.0.2.1"),
            T0 + 2,
        )
        .unwrap();
        assert_eq!(again.use_number, 1);
        // And it is spent once more.
        assert!(matches!(
            spend(
                &mut store,
                &ring,
                &attempt(&c, Purpose::RegisterCert, "192.0.2.1"),
                T0 + 3
            ),
            Err(CheckError::Rejected(_))
        ));
    });
}

#[test]
fn recovery_codes_are_reusable_and_every_use_is_audited() {
    on_each_engine(|mut store| {
        let ring = ring_a();
        let req = IssueRequest::recovery(space("acme"), UserId::new("root").unwrap(), Role::Admin)
            .unwrap();
        let (code, info) = store.issue_code(&ring, &req, T0, "op").unwrap();
        assert_eq!(info.kind, CodeKind::Recovery);
        assert_eq!(info.max_uses, None);
        let c = code.reveal();
        for n in 1..=5 {
            let u = spend(
                &mut store,
                &ring,
                &attempt(&c, Purpose::Recover, "192.0.2.1"),
                T0 + n,
            )
            .unwrap();
            assert_eq!(u.use_number, u32::try_from(n).unwrap());
        }
        let r = spend(
            &mut store,
            &ring,
            &attempt(&c, Purpose::RegisterCert, "192.0.2.1"),
            T0,
        );
        assert_eq!(reason(r), RefusalReason::WrongPurpose);
        let uses = store
            .audit_log(100)
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "code.recovery.use")
            .count();
        assert_eq!(uses, 5);
    });
}

#[test]
fn pepper_rotation_keeps_live_codes_checkable_until_retired() {
    on_each_engine(|mut store| {
        let a = ring_a();
        let (old, _) = store
            .issue_code(
                &a,
                &onboarding(&[Purpose::RegisterIp, Purpose::RegisterCert]),
                T0,
                "op",
            )
            .unwrap();
        let old = old.reveal();
        // Rotate: B is current, A stays as a previous pepper.
        let rotated = PepperRing::new(
            Pepper::from_hex(PEPPER_B, "b").unwrap(),
            vec![Pepper::from_hex(PEPPER_A, "a").unwrap()],
        );
        spend(
            &mut store,
            &rotated,
            &attempt(&old, Purpose::RegisterIp, "192.0.2.1"),
            T0,
        )
        .unwrap();
        let (new, info) = store
            .issue_code(&rotated, &onboarding(&[Purpose::RegisterIp]), T0, "op")
            .unwrap();
        assert_eq!(&info.pepper_id, rotated.current().id());
        let usage = pepper_usage(store.conn(), T0).unwrap();
        assert_eq!(usage.len(), 2);
        // Retire A early: its live codes are revoked, B's are untouched.
        let tx = store.transaction().unwrap();
        let a_id = a.current().id().clone();
        let revoked = revoke_pepper_in(&tx, &a_id, "op", "pepper retired", T0).unwrap();
        tx.commit().unwrap();
        assert_eq!(revoked.len(), 1);
        let r = spend(
            &mut store,
            &rotated,
            &attempt(&old, Purpose::RegisterCert, "192.0.2.2"),
            T0,
        );
        assert_eq!(reason(r), RefusalReason::Revoked);
        let only_b = PepperRing::new(Pepper::from_hex(PEPPER_B, "b").unwrap(), vec![]);
        spend(
            &mut store,
            &only_b,
            &attempt(&new.reveal(), Purpose::RegisterIp, "192.0.2.3"),
            T0,
        )
        .unwrap();
    });
}

#[test]
fn binding_is_immutable_and_tampering_breaks_the_hash() {
    on_each_engine(|mut store| {
        let ring = ring_a();
        let (code, info) = store
            .issue_code(&ring, &onboarding(&[Purpose::RegisterIp]), T0, "op")
            .unwrap();
        let id = info.code_id.as_str().to_owned();
        let err = store
            .conn()
            .execute(
                "UPDATE codes SET expires_at = expires_at + 999999 WHERE code_id = ?1",
                &[&id],
            )
            .unwrap_err();
        assert!(err.to_string().contains("immutable"), "{err}");
        // Someone with raw write access drops the trigger and moves the code to
        // another space: without the pepper, the hash no longer matches.
        let drop_trigger = match store.engine() {
            eos_store::Engine::Sqlite => "DROP TRIGGER codes_immutable",
            _ => "DROP TRIGGER codes_immutable ON codes",
        };
        store.conn().execute(drop_trigger, &[]).unwrap();
        store
            .conn()
            .execute("UPDATE codes SET space = 'evil' WHERE code_id = ?1", &[&id])
            .unwrap();
        let r = spend(
            &mut store,
            &ring,
            &attempt(&code.reveal(), Purpose::RegisterIp, "192.0.2.1"),
            T0,
        );
        assert_eq!(reason(r), RefusalReason::WrongSecret);
    });
}
