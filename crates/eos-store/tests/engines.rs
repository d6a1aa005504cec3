//! The open zone's invariants, enforced by the database itself on both
//! engines (SQLite, and PostgreSQL on a throwaway cluster): a raw statement
//! that breaks one is refused, whoever sends it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::on_each_engine;
use eos_store::certs::{self, CrlRecord, NewCert};
use eos_store::registrations::{self, NewRegistration, RegistrationKind};
use eos_store::{AuditEntry, Sql, audit_in, rules};

fn cert<'a>(serial: &'a str, user: &'a str) -> NewCert<'a> {
    NewCert {
        serial,
        space: "acme",
        user,
        profile: "cli",
        key_fingerprint: "sha256:00aa",
        not_before: "2026-01-01T00:00:00Z",
        not_after: "2027-01-01T00:00:00Z",
        signer: certs::LOCAL_SIGNER,
        pem: "-----BEGIN CERTIFICATE-----",
        renewed_from: None,
    }
}

/// Main's renewal invariant (migration 14) on both engines: a certificate
/// has at most one successor, refused by the database itself; disabled
/// accounts and drills read back the same.
#[test]
fn a_certificate_has_at_most_one_successor_and_accounts_disable() {
    on_each_engine(|mut store| {
        let tx = store.transaction().unwrap();
        certs::record_issued(&tx, &cert("0a", "alice")).unwrap();
        let renewal = |serial| NewCert {
            renewed_from: Some("0a"),
            ..cert(serial, "alice")
        };
        certs::record_issued(&tx, &renewal("0b")).unwrap();
        tx.commit().unwrap();
        let tx = store.transaction().unwrap();
        assert!(certs::record_issued(&tx, &renewal("0c")).is_err());
        drop(tx);
        let old = certs::get(store.conn(), "0a").unwrap();
        assert_eq!(old.renewed_by.as_deref(), Some("0b"));
        assert_eq!(
            certs::get(store.conn(), "0b")
                .unwrap()
                .renewed_from
                .as_deref(),
            Some("0a")
        );

        let tx = store.transaction().unwrap();
        assert!(eos_store::accounts::disable_in(&tx, "acme", "alice", "op", "left").unwrap());
        assert!(!eos_store::accounts::disable_in(&tx, "acme", "alice", "op", "again").unwrap());
        let drill = eos_store::drills::record_in(&tx, "0b", "https://x/").unwrap();
        tx.commit().unwrap();
        let d = eos_store::accounts::disabled(store.conn(), "acme", "alice")
            .unwrap()
            .unwrap();
        assert_eq!((d.user.as_str(), d.reason.as_str()), ("alice", "left"));
        assert!(eos_store::drills::is_drill(store.conn(), "0b").unwrap());
        let left = eos_store::drills::live_leftovers(store.conn()).unwrap();
        assert_eq!(left.len(), 1);
        eos_store::drills::finish(
            store.conn(),
            drill,
            &serde_json::json!({"status": "passed"}),
        )
        .unwrap();
        let tx = store.transaction().unwrap();
        assert!(eos_store::accounts::enable_in(&tx, "acme", "alice").unwrap());
        tx.commit().unwrap();
        assert_eq!(
            eos_store::accounts::disabled(store.conn(), "acme", "alice").unwrap(),
            None
        );
    });
}

#[test]
fn the_audit_log_refuses_update_and_delete() {
    on_each_engine(|mut store| {
        store
            .audit(&AuditEntry::new("tester", "test.thing", "x"))
            .unwrap();
        for sql in ["UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"] {
            let err = store.conn().execute(sql, &[]).unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
        assert_eq!(store.audit_log(10).unwrap().len(), 1);
    });
}

#[test]
fn crl_numbers_only_increase_even_for_a_raw_insert() {
    on_each_engine(|mut store| {
        let tx = store.transaction().unwrap();
        let crl = |number| CrlRecord {
            number,
            this_update: "2026-01-01T00:00:00Z".to_owned(),
            next_update: "2026-01-02T00:00:00Z".to_owned(),
            pem: "pem".to_owned(),
        };
        certs::record_crl(&tx, &crl(5)).unwrap();
        assert!(certs::record_crl(&tx, &crl(5)).is_err());
        tx.commit().unwrap();
        // Past the store's own check: the database refuses it too.
        for n in [5_i64, 4] {
            let err = store
                .conn()
                .execute(
                    "INSERT INTO crls(number, this_update, next_update, pem) VALUES (?1, 'a', 'b', 'c')",
                    &[&n],
                )
                .unwrap_err();
            assert!(err.to_string().contains("number must exceed"), "{n}: {err}");
        }
        assert_eq!(certs::latest_crl(store.conn()).unwrap().unwrap().number, 5);
    });
}

#[test]
fn a_key_is_certified_for_one_account_only() {
    on_each_engine(|mut store| {
        let tx = store.transaction().unwrap();
        certs::record_issued(&tx, &cert("0a", "alice")).unwrap();
        // The same account may renew with the same key.
        certs::record_issued(&tx, &cert("0b", "alice")).unwrap();
        let err = certs::record_issued(&tx, &cert("0c", "bob")).unwrap_err();
        assert!(err.to_string().contains("another account"), "{err}");
        drop(tx);
        assert_eq!(
            certs::key_owner(store.conn(), "sha256:00aa").unwrap(),
            None,
            "the dropped transaction recorded nothing"
        );
    });
}

#[test]
fn a_rule_its_outbox_row_registration_and_audit_commit_together_or_not_at_all() {
    use eos_identity::{SpaceId, UserId};
    use eos_plan::rules::{Label, NetworkAccessRule, RuleCidr};
    on_each_engine(|mut store| {
        let space = SpaceId::new("acme").unwrap();
        let user = UserId::new("alice").unwrap();
        let rule = NetworkAccessRule::new(
            space.clone(),
            RuleCidr::parse("192.0.2.7/32").unwrap(),
            Label::new("registered").unwrap(),
            user.clone(),
            time::OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap(),
            None,
        )
        .unwrap();
        let write = |store: &mut eos_store::Store, commit: bool| {
            let tx = store.transaction().unwrap();
            rules::put_rule(&tx, &rule, "code:ABCDEFGHJ").unwrap();
            registrations::record_in(
                &tx,
                &NewRegistration {
                    kind: RegistrationKind::Ip,
                    space: &space,
                    user: &user,
                    code_id: "ABCDEFGHJ",
                    source: "192.0.2.7".parse().unwrap(),
                    cidr: Some("192.0.2.7/32"),
                    wrote_rule: true,
                    serial: None,
                },
            )
            .unwrap();
            audit_in(
                &tx,
                &AuditEntry::new("code:ABCDEFGHJ", "register.ip", "acme"),
            )
            .unwrap();
            if commit {
                tx.commit().unwrap();
            }
        };
        let counts = |store: &eos_store::Store| {
            [
                "SELECT count(*) FROM rules",
                "SELECT count(*) FROM outbox",
                "SELECT count(*) FROM registrations",
                "SELECT count(*) FROM audit_log",
            ]
            .map(|sql| {
                store
                    .conn()
                    .query_one(sql, &[], |r| r.get::<i64>(0))
                    .unwrap()
            })
        };
        write(&mut store, false);
        assert_eq!(counts(&store), [0, 0, 0, 0]);
        write(&mut store, true);
        assert_eq!(counts(&store), [1, 1, 1, 2]);
        let stored = rules::get_rule(store.conn(), &space, &rule.cidr)
            .unwrap()
            .unwrap();
        assert_eq!(stored.rule, rule);
        let regs = registrations::list(store.conn(), Some(&space)).unwrap();
        assert_eq!(regs.len(), 1);
        assert!(regs[0].wrote_rule);
        assert_eq!(rules::pending_outbox(store.conn(), 10).unwrap().len(), 1);
    });
}

/// The syncer's tables on both engines: pending work space by space, the
/// longest waiting first; delivery once; attempts and status; the expiry
/// cursor; managed entries moved by an apply's delta; plans saved.
#[test]
fn the_outbox_and_the_syncer_record_behave_alike() {
    use eos_identity::{SpaceId, UserId};
    use eos_plan::rules::{Label, NetworkAccessRule, RuleCidr};
    use eos_store::{ipsets, sync};
    let rule = |space: &str, cidr: &str, expires| {
        NetworkAccessRule::new(
            SpaceId::new(space).unwrap(),
            RuleCidr::parse(cidr).unwrap(),
            Label::new("x").unwrap(),
            UserId::new("alice").unwrap(),
            time::macros::datetime!(2026-01-05 09:00 UTC),
            expires,
        )
        .unwrap()
    };
    on_each_engine(|mut s| {
        let june = time::macros::datetime!(2026-06-01 00:00 UTC);
        rules::import_rules(&mut s, &[rule("zeta", "192.0.2.1/32", Some(june))], "op").unwrap();
        rules::import_rules(
            &mut s,
            &[
                rule("acme", "192.0.2.2/32", None),
                rule("acme", "2001:db8::/48", None),
            ],
            "op",
        )
        .unwrap();
        let spaces = sync::pending_spaces(s.conn()).unwrap();
        let got: Vec<(&str, u64)> = spaces.iter().map(|p| (p.space.as_str(), p.count)).collect();
        assert_eq!(got, [("zeta", 1), ("acme", 2)]);
        let acme = sync::pending_of_space(s.conn(), &SpaceId::new("acme").unwrap()).unwrap();
        assert_eq!(acme.len(), 2);
        let now = time::OffsetDateTime::now_utc();
        sync::mark_delivered(&mut s, &[acme[0].id, acme[0].id], "local", "op", now).unwrap();
        assert_eq!(sync::count_pending(s.conn()).unwrap(), 2);
        let v4 = acme[0].set_name();
        let ok = sync::Attempt::Success {
            writes: 2,
            lag_ms: Some(15),
        };
        sync::record_attempt(&mut s, "local", &v4, &ok, now).unwrap();
        let status = sync::status(s.conn(), "local", now).unwrap();
        let row = status.iter().find(|r| r.name == "eos-acme-v4").unwrap();
        assert_eq!((row.pending, row.writes, row.last_lag_ms), (0, 2, Some(15)));
        assert_eq!(status.iter().map(|r| r.pending).sum::<u64>(), 2);
        assert_eq!(
            sync::oldest_pending(s.conn()).unwrap(),
            Some(spaces[0].oldest_id)
        );
        let expiring = sync::spaces_with_expiries(s.conn(), None, june).unwrap();
        assert_eq!(expiring, [SpaceId::new("zeta").unwrap()]);
        sync::set_expiries_checked(&mut s, "local", june).unwrap();
        assert_eq!(
            sync::expiries_checked(s.conn(), "local").unwrap(),
            Some(june)
        );

        let plan = ipsets::save_plan(&mut s, "local", "{}", "op").unwrap();
        assert_eq!(
            ipsets::save_plan(&mut s, "local", "{}", "op").unwrap(),
            plan + 1
        );
        let applied = eos_plan::AppliedSet {
            name: v4.clone(),
            space: SpaceId::new("acme").unwrap(),
            outcome: eos_plan::ApplyOutcome::Updated,
            entries: vec!["192.0.2.2/32".into()],
            added: vec!["192.0.2.2/32".into(), "192.0.2.2/32".into()],
            removed: vec!["192.0.2.9/32".into()],
            attempts: 1,
        };
        ipsets::record_apply(&mut s, "local", Some(plan), &[applied], "op").unwrap();
        let managed = ipsets::managed_entries(s.conn(), "local", &v4).unwrap();
        assert_eq!(managed.into_iter().collect::<Vec<_>>(), ["192.0.2.2/32"]);
    });
}

/// Sync workers' leases (migration 16) on both engines, each worker on a
/// connection of its own: one holder at a time, renewal by the holder only,
/// takeover after expiry, and a delivery recorded only under the lease —
/// a worker paused past its lease records nothing.
#[test]
fn a_space_has_one_sync_worker_at_a_time_and_deliveries_are_fenced() {
    use eos_identity::{SpaceId, UserId};
    use eos_plan::rules::{Label, NetworkAccessRule, RuleCidr};
    use eos_store::sync::{self, Lease};
    use std::time::Duration;
    eos_store::testing::on_each_location(|location| {
        let mut a = eos_store::Store::open_at(location).unwrap();
        let mut b = eos_store::Store::open_at(location).unwrap();
        let acme = SpaceId::new("acme").unwrap();
        let lease = |holder, ttl| Lease {
            backend: "local",
            space: &acme,
            holder,
            ttl,
        };
        let short = Duration::from_millis(300);
        assert!(sync::take_lease(&mut a, &lease("a", short)).unwrap());
        assert!(
            sync::take_lease(&mut a, &lease("a", short)).unwrap(),
            "renewed"
        );
        assert!(
            !sync::take_lease(&mut b, &lease("b", short)).unwrap(),
            "held by a"
        );
        let (holder, left) = sync::lease_holder(b.conn(), "local", &acme)
            .unwrap()
            .unwrap();
        assert_eq!(holder, "a");
        assert!(left > 0 && left <= 300, "{left}");

        let rule = NetworkAccessRule::new(
            acme.clone(),
            RuleCidr::parse("192.0.2.1/32").unwrap(),
            Label::new("x").unwrap(),
            UserId::new("alice").unwrap(),
            time::macros::datetime!(2026-01-05 09:00 UTC),
            None,
        )
        .unwrap();
        rules::import_rules(&mut a, &[rule], "op").unwrap();
        let ids: Vec<i64> = sync::pending(a.conn(), 10)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        let now = time::OffsetDateTime::now_utc();

        // a pauses past its lease; b takes the space over and delivers.
        std::thread::sleep(Duration::from_millis(400));
        assert!(sync::take_lease(&mut b, &lease("b", Duration::from_secs(30))).unwrap());
        assert!(!sync::mark_delivered_under(&mut a, &lease("a", short), &ids, "a", now).unwrap());
        assert_eq!(
            sync::count_pending(a.conn()).unwrap(),
            1,
            "a recorded nothing"
        );
        assert!(sync::mark_delivered_under(&mut b, &lease("b", short), &ids, "b", now).unwrap());
        assert!(
            !sync::take_lease(&mut a, &lease("a", short)).unwrap(),
            "renewed by b"
        );
        let delivers: Vec<String> = a
            .conn()
            .query(
                "SELECT actor FROM audit_log WHERE action = 'sync.deliver'",
                &[],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(delivers, ["b"]);

        // A stopping worker hands its spaces over at once.
        sync::release_leases(&mut b, "local", "b").unwrap();
        assert!(sync::take_lease(&mut a, &lease("a", short)).unwrap());
    });
}

/// PostgreSQL parses and plans each statement once per connection and
/// keeps it (the server lists it in `pg_prepared_statements` after use,
/// once however often it ran, in reads and in write transactions alike).
/// When the server drops the connection, the store connects again and
/// prepares afresh: the dropped connection's statements are never sent to
/// the new one.
#[test]
fn postgresql_prepares_a_statement_once_per_connection_and_again_after_a_reconnect() {
    let Some(cluster) = eos_store::testing::PgCluster::start() else {
        return;
    };
    let url = eos_store::StoreUrl::parse(&cluster.create_database("eos")).unwrap();
    let mut store = eos_store::Store::open_postgres(&url).unwrap();
    const COUNT: &str = "SELECT count(*) FROM rules WHERE space = ?1";
    let rules_in = |sql: &dyn SqlCount| sql.count(COUNT, "acme");
    let prepared = |store: &eos_store::Store| {
        store
            .conn()
            .query_one(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement = ?1",
                &[&"SELECT count(*) FROM rules WHERE space = $1"],
                |r| r.get::<i64>(0),
            )
            .unwrap()
    };
    assert_eq!(prepared(&store), 0);
    for _ in 0..3 {
        assert_eq!(rules_in(store.conn()).unwrap(), 0);
    }
    assert_eq!(prepared(&store), 1, "prepared once and kept");
    let tx = store.transaction().unwrap();
    assert_eq!(rules_in(&tx).unwrap(), 0);
    tx.commit().unwrap();
    assert_eq!(prepared(&store), 1, "the transaction used it too");

    cluster.stop();
    assert!(rules_in(store.conn()).is_err(), "the server is down");
    cluster.start_server();
    assert_eq!(rules_in(store.conn()).unwrap(), 0, "connected again");
    let tx = store.transaction().unwrap();
    assert_eq!(rules_in(&tx).unwrap(), 0);
    tx.commit().unwrap();
    assert_eq!(prepared(&store), 1, "prepared once on the new connection");
}

/// A count on either a read handle or a transaction.
trait SqlCount {
    fn count(&self, sql: &str, key: &str) -> Result<i64, eos_store::StoreError>;
}

impl<S: Sql> SqlCount for S {
    fn count(&self, sql: &str, key: &str) -> Result<i64, eos_store::StoreError> {
        self.query_one(sql, &[&key], |r| r.get(0))
    }
}
