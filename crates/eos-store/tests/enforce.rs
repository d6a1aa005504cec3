//! Enforce → rollback on the local backend, through the real state store:
//! a rule eos-sec does not own and custom response bodies survive, a crash
//! between two writes is rolled back to the exact snapshot, rollback is
//! idempotent, and every change is in the audit log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use eos_store::Sql;
use std::cell::Cell;
use std::net::IpAddr;

use eos_identity::SpaceId;
use eos_ipset::{Family, IpNet};
use eos_plan::{BackendError, IpSetBackend, IpSetName, LockToken, NewIpSet};
use eos_policy::enforce::{
    EnforceJournal, EnforceOptions, GuardCode, RollbackOptions, RollbackReport, StepKind, enforce,
    guard, rollback,
};
use eos_policy::waf::WebAcl;
use eos_policy::{AclRead, OwnedAcl, Policy, PolicyError, Stage, WebAclBackend};
use eos_store::Store;
use eos_store::ipsets::LocalBackend;
use eos_store::testing::FreshStores;
use serde_json::json;

const POLICY: &str = r#"
[web_acl]
name = "eos-restricted"
[routing]
by = "host-label"
domain = "entityos.cloud"
[ip_gate]
min_addresses = 2
[[rate]]
name = "per-ip"
limit = 2000
[spaces.acme]
mode = "ip"
admins = ["alice@acme.example"]
admin_ips = ["198.51.100.10"]
[spaces.globex]
mode = "cert"
"#;

fn acme() -> SpaceId {
    SpaceId::new("acme").unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A Web ACL somebody else made, with their own rule and response body.
fn foreign_acl() -> serde_json::Value {
    json!({
        "Name": "eos-restricted",
        "Description": "shared with the platform team",
        "DefaultAction": {"Allow": {}},
        "Rules": [{
            "Name": "corp-geo-block",
            "Priority": 5,
            "Action": {"Block": {"CustomResponse": {"ResponseCode": 403, "CustomResponseBodyKey": "blocked"}}},
            "Statement": {"GeoMatchStatement": {"CountryCodes": ["KP"]}},
            "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "corp-geo-block"}
        }],
        "CustomResponseBodies": {"blocked": {"ContentType": "TEXT_PLAIN", "Content": "blocked by policy"}},
        "TokenDomains": ["entityos.cloud"],
        "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "eos-restricted"}
    })
}

struct Env {
    store: Store,
    backend: LocalBackend,
    policy: Policy,
}

/// Run `test` on each engine, with fresh stores of it.
fn on_each_engine(test: impl AsyncFn(&FreshStores)) {
    eos_store::testing::on_each_fresh(|fresh| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test(fresh))
    });
}

/// A fresh store with acme's sets holding `addresses` and the foreign Web
/// ACL, on the local backend (its own connection to the store, as the CLI
/// has).
async fn env(fresh: &FreshStores, addresses: &[&str]) -> Env {
    let at = fresh.location();
    let store = Store::open_at(&at).unwrap();
    let backend = LocalBackend::open_at(&at).unwrap();
    for family in [Family::V4, Family::V6] {
        let name = IpSetName::staged(&acme(), family);
        let nets = addresses
            .iter()
            .map(|a| net(a))
            .filter(|n| Family::of(n) == family)
            .collect();
        backend
            .create(&NewIpSet::staged(&name, nets))
            .await
            .unwrap();
    }
    backend
        .create_acl_document("eos-restricted", &foreign_acl())
        .unwrap();
    let policy = Policy::from_toml(POLICY, "policy.toml").unwrap();
    Env {
        store,
        backend,
        policy,
    }
}

fn opts(policy: &Policy, target: Option<Stage>) -> EnforceOptions<'_> {
    EnforceOptions {
        policy,
        space: acme(),
        target,
        operator_ips: vec![ip("198.51.100.10")],
        simulation: None,
        force: false,
        actor: "test".to_owned(),
    }
}

fn rollback_opts(policy: &Policy, to: Option<i64>) -> RollbackOptions<'_> {
    RollbackOptions {
        policy,
        space: acme(),
        to,
        actor: "test".to_owned(),
    }
}

/// Roll back on the local backend (to the snapshot `to`, else before the
/// latest enforce run); it must succeed.
async fn roll_back(e: &mut Env, to: Option<i64>) -> RollbackReport {
    rollback(
        &e.backend,
        &e.backend,
        &mut e.store,
        &rollback_opts(&e.policy, to),
    )
    .await
    .unwrap()
}

async fn document(b: &LocalBackend) -> serde_json::Value {
    b.read_acl("eos-restricted")
        .await
        .unwrap()
        .unwrap()
        .document
}

/// The guards' codes of a refusal.
fn codes(err: PolicyError) -> Vec<GuardCode> {
    match err {
        PolicyError::Refused { guards, .. } => guards.iter().map(|g| g.code).collect(),
        other => panic!("not a refusal: {other}"),
    }
}

/// Move acme to stage count.
async fn to_count(e: &mut Env) {
    for target in [Stage::Staged, Stage::Count] {
        enforce(
            &e.backend,
            &e.backend,
            &mut e.store,
            &opts(&e.policy, Some(target)),
        )
        .await
        .unwrap();
    }
}

const SETS: [&str; 3] = ["198.51.100.10/32", "198.51.100.11/32", "2001:db8:10::/48"];

#[test]
fn staged_count_enforce_rollback_round_trip() {
    on_each_engine(async |fresh| {
        let mut e = env(fresh, &SETS).await;
        let before = document(&e.backend).await;

        let r = enforce(&e.backend, &e.backend, &mut e.store, &opts(&e.policy, None))
            .await
            .unwrap();
        assert_eq!((r.from, r.to), (Stage::Off, Stage::Staged));
        // The policy's standard rules arrive first; no gate yet.
        assert_eq!(r.steps.len(), 1);
        assert_eq!(r.steps[0].rules, ["eos-rate-per-ip"]);
        let staged = document(&e.backend).await;
        assert_eq!(staged["DefaultAction"], json!({"Allow": {}}));
        assert_eq!(staged["Rules"][0], before["Rules"][0]);

        let r = enforce(&e.backend, &e.backend, &mut e.store, &opts(&e.policy, None))
            .await
            .unwrap();
        assert_eq!((r.from, r.to), (Stage::Staged, Stage::Count));
        assert_eq!(r.steps.len(), 1);
        let count_doc = document(&e.backend).await;
        let names: Vec<&str> = count_doc["Rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["corp-geo-block", "eos-rate-per-ip", "eos-acme-ip-count"]
        );
        assert_eq!(count_doc["DefaultAction"], json!({"Allow": {}}));

        let r = enforce(&e.backend, &e.backend, &mut e.store, &opts(&e.policy, None))
            .await
            .unwrap();
        assert_eq!((r.from, r.to), (Stage::Count, Stage::Enforce));
        let kinds: Vec<StepKind> = r.steps.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [StepKind::Rules, StepKind::DefaultBlock],
            "rules before BLOCK"
        );
        let enforced = document(&e.backend).await;
        assert_eq!(enforced["DefaultAction"], json!({"Block": {}}));
        // Everything eos-sec does not own is carried through unchanged.
        for key in [
            "CustomResponseBodies",
            "TokenDomains",
            "Description",
            "VisibilityConfig",
        ] {
            assert_eq!(enforced[key], before[key], "{key}");
        }
        assert_eq!(enforced["Rules"][0], before["Rules"][0]);
        let run = r.run.unwrap();

        // Already enforced: nothing further.
        let err = enforce(&e.backend, &e.backend, &mut e.store, &opts(&e.policy, None))
            .await
            .unwrap_err();
        assert!(matches!(err, PolicyError::Stage(_)), "{err}");

        let rb = roll_back(&mut e, None).await;
        assert_eq!(rb.snapshot, run);
        let kinds: Vec<StepKind> = rb.steps.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [StepKind::DefaultAllow, StepKind::Rules],
            "ALLOW first"
        );
        assert_eq!(
            document(&e.backend).await,
            count_doc,
            "exactly the snapshot"
        );
        assert_eq!(
            e.store.stages("local", "eos-restricted").unwrap()[&acme()],
            Stage::Count
        );
        // Idempotent.
        let again = roll_back(&mut e, None).await;
        assert!(again.was_noop(), "{again:?}");
        assert_eq!(document(&e.backend).await, count_doc);

        // Back to before any enforce, by snapshot id.
        let first = e
            .store
            .conn()
            .query_one("SELECT MIN(id) FROM acl_snapshots", &[], |r| {
                r.get::<i64>(0)
            })
            .unwrap();
        roll_back(&mut e, Some(first)).await;
        assert_eq!(document(&e.backend).await, before);
        assert!(
            e.store
                .stages("local", "eos-restricted")
                .unwrap()
                .is_empty()
        );

        let actions: Vec<String> = e
            .store
            .audit_log(100)
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .collect();
        for a in [
            "webacl.snapshot",
            "webacl.write",
            "enforce.stage",
            "enforce.rollback",
        ] {
            assert!(actions.iter().any(|x| x == a), "{a} audited: {actions:?}");
        }
    });
}

/// The local backend, failing every write after the first `ok` ones: a
/// crash between two steps of one enforce.
struct CrashAfter<'a> {
    inner: &'a LocalBackend,
    ok: Cell<u32>,
}

impl WebAclBackend for CrashAfter<'_> {
    fn acl_backend_id(&self) -> String {
        self.inner.acl_backend_id()
    }
    async fn read_acl(&self, name: &str) -> Result<Option<AclRead>, BackendError> {
        self.inner.read_acl(name).await
    }
    async fn create_acl(&self, acl: &WebAcl) -> Result<LockToken, BackendError> {
        self.inner.create_acl(acl).await
    }
    async fn write_acl(
        &self,
        name: &str,
        owned: &OwnedAcl,
        lock: &LockToken,
    ) -> Result<LockToken, BackendError> {
        if self.ok.get() == 0 {
            return Err(BackendError::Failed {
                name: name.to_owned(),
                detail: "injected crash".to_owned(),
            });
        }
        self.ok.set(self.ok.get() - 1);
        self.inner.write_acl(name, owned, lock).await
    }
    async fn ip_set_arn(&self, name: &str) -> Result<Option<String>, BackendError> {
        self.inner.ip_set_arn(name).await
    }
    async fn tag_ip_set_stage(&self, name: &str, value: &str) -> Result<(), BackendError> {
        self.inner.tag_ip_set_stage(name, value).await
    }
    async fn pause_before_acl_retry(&self, attempt: u32) {
        self.inner.pause_before_acl_retry(attempt).await
    }
}

#[test]
fn crash_between_rules_and_default_block_is_rolled_back_exactly() {
    on_each_engine(async |fresh| {
        let mut e = env(fresh, &SETS).await;
        to_count(&mut e).await;
        let count_doc = document(&e.backend).await;
        let crashing = CrashAfter {
            inner: &e.backend,
            ok: Cell::new(1),
        };
        let err = enforce(&crashing, &e.backend, &mut e.store, &opts(&e.policy, None))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("injected crash"), "{err}");
        // Half way: ALLOW rules in, default still ALLOW, stage not recorded.
        let half = document(&e.backend).await;
        assert_eq!(half["DefaultAction"], json!({"Allow": {}}));
        assert_ne!(half, count_doc);
        assert_eq!(
            e.store.stages("local", "eos-restricted").unwrap()[&acme()],
            Stage::Count
        );
        let rb = roll_back(&mut e, None).await;
        assert_eq!(rb.steps.len(), 1);
        assert_eq!(document(&e.backend).await, count_doc);
        let snap = e.store.snapshot(rb.snapshot).unwrap().unwrap();
        assert_eq!(snap.document, count_doc, "the snapshot holds the whole ACL");
        assert_eq!(snap.sets["eos-acme-v4"].addresses.len(), 2);
    });
}

#[test]
fn guards_refuse_enforce_and_force_is_audited() {
    on_each_engine(async |fresh| {
        // 198.51.100.10 (the declared admin) is missing from the sets.
        let mut e = env(fresh, &["198.51.100.11/32", "198.51.100.12/32"]).await;
        to_count(&mut e).await;
        let before = document(&e.backend).await;
        let err = enforce(&e.backend, &e.backend, &mut e.store, &opts(&e.policy, None))
            .await
            .unwrap_err();
        assert_eq!(
            codes(err),
            [guard::OPERATOR_OUTSIDE, guard::ADMIN_OUTSIDE],
            "operator 198.51.100.10 and admin 198.51.100.10"
        );
        assert_eq!(document(&e.backend).await, before, "nothing written");

        let mut o = opts(&e.policy, None);
        o.operator_ips.clear();
        o.operator_ips.push(ip("198.51.100.11"));
        let err = enforce(&e.backend, &e.backend, &mut e.store, &o)
            .await
            .unwrap_err();
        assert_eq!(codes(err), [guard::ADMIN_OUTSIDE]);

        o.operator_ips.clear();
        let err = enforce(&e.backend, &e.backend, &mut e.store, &o)
            .await
            .unwrap_err();
        assert!(codes(err).contains(&guard::OPERATOR_UNKNOWN));

        o.operator_ips.push(ip("198.51.100.11"));
        o.force = true;
        let r = enforce(&e.backend, &e.backend, &mut e.store, &o)
            .await
            .unwrap();
        assert_eq!(r.forced.len(), 1);
        let forced = e
            .store
            .audit_log(100)
            .unwrap()
            .into_iter()
            .find(|a| a.action == "enforce.stage" && a.detail["to"] == "enforce")
            .unwrap();
        assert_eq!(
            forced.detail["forced"][0]["code"],
            guard::ADMIN_OUTSIDE.as_str()
        );
        assert_eq!(forced.actor, "test");
    });
}

#[test]
fn refuses_empty_small_and_missing_sets() {
    on_each_engine(async |fresh| {
        for (sets, code) in [
            (&[][..], guard::SET_EMPTY),
            (&["198.51.100.10/32"][..], guard::SET_BELOW_MINIMUM),
        ] {
            let mut e = env(fresh, sets).await;
            to_count(&mut e).await;
            let err = enforce(&e.backend, &e.backend, &mut e.store, &opts(&e.policy, None))
                .await
                .unwrap_err();
            assert!(codes(err).contains(&code), "{code}");
        }
        // No sets at all: refused at the first step, never forced.
        let at = fresh.location();
        let mut store = Store::open_at(&at).unwrap();
        let backend = LocalBackend::open_at(&at).unwrap();
        let policy = Policy::from_toml(POLICY, "policy.toml").unwrap();
        let mut o = opts(&policy, None);
        o.force = true;
        let err = enforce(&backend, &backend, &mut store, &o)
            .await
            .unwrap_err();
        assert_eq!(codes(err), [guard::SETS_MISSING]);
    });
}

#[test]
fn refuses_skipping_a_stage_and_going_back() {
    on_each_engine(async |fresh| {
        let mut e = env(fresh, &SETS).await;
        let err = enforce(
            &e.backend,
            &e.backend,
            &mut e.store,
            &opts(&e.policy, Some(Stage::Enforce)),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("one stage at a time"), "{err}");
        enforce(&e.backend, &e.backend, &mut e.store, &opts(&e.policy, None))
            .await
            .unwrap();
        let err = enforce(
            &e.backend,
            &e.backend,
            &mut e.store,
            &opts(&e.policy, Some(Stage::Off)),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("eos-sec rollback"), "{err}");
        let err = rollback(
            &e.backend,
            &e.backend,
            &mut e.store,
            &RollbackOptions {
                space: SpaceId::new("globex").unwrap(),
                ..rollback_opts(&e.policy, None)
            },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("nothing to roll back"), "{err}");
    });
}

/// The local sets' `stage` tag follows their space, as on AWS.
#[test]
fn sets_are_tagged_with_their_stage() {
    on_each_engine(async |fresh| {
        let mut e = env(fresh, &SETS).await;
        let stages = |e: &Env| -> Vec<String> {
            e.store
                .conn()
                .query("SELECT tags FROM local_ipsets ORDER BY name", &[], |r| {
                    let tags: serde_json::Value = serde_json::from_str(r.str(0)?).unwrap();
                    Ok(tags["stage"].as_str().unwrap().to_owned())
                })
                .unwrap()
        };
        assert_eq!(stages(&e), ["staged", "staged"]);
        to_count(&mut e).await;
        assert_eq!(stages(&e), ["count", "count"]);
        roll_back(&mut e, None).await;
        assert_eq!(stages(&e), ["staged", "staged"]);
    });
}

/// A snapshot of the foreign Web ACL for `space`, starting a run when
/// `run` is `None`.
fn new_snapshot<'a>(
    run: Option<i64>,
    kind: eos_policy::enforce::RunKind,
    space: &'a SpaceId,
    read: &'a AclRead,
    sets: &'a std::collections::BTreeMap<String, eos_policy::enforce::SetSnapshot>,
    stages: &'a std::collections::BTreeMap<SpaceId, Stage>,
    gate: Option<&'a eos_policy::edge::GateSnapshot>,
) -> eos_policy::enforce::NewSnapshot<'a> {
    eos_policy::enforce::NewSnapshot {
        run,
        kind,
        space,
        backend: "local",
        web_acl: "eos-restricted",
        read,
        sets,
        stages,
        gate,
    }
}

/// The enforce journal on each engine: snapshots read back exactly (the
/// listener's part too), runs name their first snapshot, the newest run
/// start is found, stages and audit entries are kept — and the database
/// itself refuses a snapshot that would break a run or go back in ids, and
/// any change to a recorded one.
#[test]
fn the_enforce_journal_keeps_its_invariants_on_each_engine() {
    use eos_policy::compile::ListenerMode;
    use eos_policy::edge::{GateSnapshot, TrustStoreSnapshot};
    use eos_policy::enforce::{RunKind, SetSnapshot, StageChange};
    use eos_policy::gate::ListenerAuth;
    eos_store::testing::on_each_engine(|mut store| {
        let engine = store.engine().as_str();
        let acme = acme();
        let globex = SpaceId::new("globex").unwrap();
        let document = foreign_acl();
        let read = AclRead {
            owned: eos_policy::owned_of_document(&document).unwrap(),
            document,
            lock: LockToken("7".to_owned()),
        };
        let sets = [(
            "eos-acme-v4".to_owned(),
            SetSnapshot {
                addresses: vec!["198.51.100.10/32".to_owned()],
                lock: "3".to_owned(),
            },
        )]
        .into();
        let stages = [(acme.clone(), Stage::Staged)].into();
        let gate = GateSnapshot {
            listener_arn: "arn:aws:elasticloadbalancing:us-east-1:111122223333:listener/app/a/b/c"
                .to_owned(),
            listener: ListenerAuth {
                mode: ListenerMode::Verify,
                trust_store_arn: Some("arn:ts".to_owned()),
                ignore_client_certificate_expiry: Some(false),
                advertise_trust_store_ca_names: None,
            },
            trust_store: TrustStoreSnapshot {
                name: "eos-ca".to_owned(),
                arn: Some("arn:ts".to_owned()),
                status: Some("ACTIVE".to_owned()),
                ca_certificates: Some(1),
                bundle_key: Some("bundle/ab.pem".to_owned()),
                bundle_sha256: Some("ab".to_owned()),
                crl_number: Some(4),
                revocations: vec![],
            },
        };
        let snap = |store: &mut Store, run, kind, space| {
            store
                .save_snapshot(
                    &new_snapshot(run, kind, space, &read, &sets, &stages, Some(&gate)),
                    "test",
                )
                .unwrap()
        };
        let first = snap(&mut store, None, RunKind::Enforce, &acme);
        let second = snap(&mut store, Some(first), RunKind::Enforce, &acme);
        let other = snap(&mut store, None, RunKind::Enforce, &globex);
        let undo = snap(&mut store, None, RunKind::Rollback, &acme);
        assert!(first < second && second < other && other < undo, "{engine}");

        let got = store.snapshot(second).unwrap().unwrap();
        assert_eq!(
            (got.id, got.run, got.kind, &got.space),
            (second, first, RunKind::Enforce, &acme)
        );
        assert_eq!(
            (got.document, got.owned),
            (read.document.clone(), read.owned.clone())
        );
        assert_eq!(
            (got.lock.as_str(), got.sets, got.stages),
            ("7", sets.clone(), stages.clone())
        );
        assert_eq!(got.gate.as_ref(), Some(&gate), "{engine}");
        assert_eq!(store.snapshot(undo + 100).unwrap(), None);
        let start = store
            .latest_enforce_start("local", "eos-restricted", &acme)
            .unwrap()
            .unwrap();
        assert_eq!(start.id, first, "{engine}");
        let listed: Vec<i64> =
            eos_store::enforce::list_snapshots(store.conn(), "local", "eos-restricted")
                .unwrap()
                .iter()
                .map(|s| s.id)
                .collect();
        assert_eq!(listed, [undo, other, second, first]);

        store
            .record_stages(
                &StageChange {
                    backend: "local",
                    web_acl: "eos-restricted",
                    space: &acme,
                    stages: &[
                        (acme.clone(), Stage::Count),
                        (globex.clone(), Stage::Staged),
                    ]
                    .into(),
                    action: "enforce.stage",
                    detail: json!({"to": "count"}),
                },
                "test",
            )
            .unwrap();
        let recorded = store.stages("local", "eos-restricted").unwrap();
        assert_eq!(recorded[&acme], Stage::Count);
        assert_eq!(recorded[&globex], Stage::Staged);
        let actions: Vec<String> = store
            .audit_log(10)
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .collect();
        assert_eq!(
            actions,
            [
                "enforce.stage",
                "webacl.snapshot",
                "webacl.snapshot",
                "webacl.snapshot",
                "webacl.snapshot"
            ]
        );

        // Past the store's own code: raw statements the database refuses.
        let insert = |id: i64, run: i64, kind: &str| {
            format!(
                "INSERT INTO acl_snapshots(id, run, at, kind, space, backend, web_acl, lock_token, owned, document, sets, stages)
                 VALUES ({id}, {run}, 'x', '{kind}', 'acme', 'local', 'eos-restricted', '1', '{{}}', '{{}}', '{{}}', '{{}}')"
            )
        };
        let refused = [
            // An id below the newest.
            (insert(0, 0, "enforce"), "id must exceed"),
            // A run that is not a run's first snapshot.
            (insert(undo + 1, second, "enforce"), "run must name"),
            // Another space's run.
            (insert(undo + 1, other, "enforce"), "run must name"),
            // A rollback joining an enforce run.
            (insert(undo + 1, first, "rollback"), "run must name"),
            (
                format!("UPDATE acl_snapshots SET document = '{{}}' WHERE id = {first}"),
                "append-only",
            ),
            (
                format!("DELETE FROM acl_snapshots WHERE id = {undo}"),
                "append-only",
            ),
        ];
        for (sql, why) in &refused {
            let err = store.conn().execute(sql, &[]).unwrap_err();
            assert!(err.to_string().contains(why), "{engine}: {sql}: {err}");
        }
        // The journal goes on after the refusals, ids still growing.
        let next = snap(&mut store, Some(first), RunKind::Enforce, &acme);
        assert!(next > undo, "{engine}: {next} after {undo}");
        assert_eq!(
            eos_store::enforce::list_snapshots(store.conn(), "local", "eos-restricted")
                .unwrap()
                .len(),
            5
        );
    });
}
/// The local backend's Web ACLs on each engine: one creator wins, a write
/// carries the lock token of its read and moves it by one, a stale token
/// is refused — by the statement itself, and for a raw statement by the
/// database — and a set's stage tag is set beside its other tags.
#[test]
fn local_web_acls_keep_their_lock_token_on_each_engine() {
    on_each_engine(async |fresh| {
        let at = fresh.location();
        // A second connection: another process or instance on the store.
        let other = Store::open_at(&at).unwrap();
        let engine = other.engine().as_str();
        let b = LocalBackend::open_at(&at).unwrap();
        b.create_acl_document("eos-restricted", &foreign_acl())
            .unwrap();
        assert!(matches!(
            b.create_acl_document("eos-restricted", &foreign_acl()),
            Err(BackendError::AlreadyExists { .. })
        ));
        let read = b.read_acl("eos-restricted").await.unwrap().unwrap();
        assert_eq!(read.lock.0, "1", "{engine}");
        assert_eq!(read.document, foreign_acl());
        let owned = read
            .owned
            .with_default(eos_policy::waf::DefaultAction::block());
        let lock = b
            .write_acl("eos-restricted", &owned, &read.lock)
            .await
            .unwrap();
        assert_eq!(lock.0, "2");
        assert!(matches!(
            b.write_acl("eos-restricted", &owned, &read.lock).await,
            Err(BackendError::StaleLock { .. })
        ));
        assert!(matches!(
            b.write_acl("nothing-here", &owned, &lock).await,
            Err(BackendError::NotFound { .. })
        ));
        let now = b.read_acl("eos-restricted").await.unwrap().unwrap();
        assert_eq!(now.owned, owned, "{engine}");
        // The foreign rule and the custom response body survive.
        assert_eq!(now.document["Rules"][0]["Name"], "corp-geo-block");
        assert_eq!(
            now.document["CustomResponseBodies"],
            foreign_acl()["CustomResponseBodies"]
        );

        assert_eq!(b.ip_set_arn("eos-acme-v4").await.unwrap(), None);
        b.tag_ip_set_stage("eos-acme-v4", "count").await.unwrap();
        for sql in [
            "UPDATE local_web_acls SET document = '{}'",
            "UPDATE local_web_acls SET version = version + 2",
            "UPDATE local_web_acls SET version = 1",
        ] {
            let err = other.conn().execute(sql, &[]).unwrap_err();
            assert!(
                err.to_string()
                    .contains("moves the version up by exactly one"),
                "{engine}: {sql}: {err}"
            );
        }
        other.conn()
                .execute(
                    "INSERT INTO local_ipsets(name, space, family, description, tags, addresses, version, updated)
                     VALUES ('eos-acme-v4', 'acme', 'v4', 'd', '{\"owner\":\"eos-sec\",\"stage\":\"staged\"}', '[]', 1, 'x')",
                    &[],
                )
                .unwrap();
        assert_eq!(
            b.ip_set_arn("eos-acme-v4").await.unwrap().as_deref(),
            Some("local:ipset/eos-acme-v4")
        );
        b.tag_ip_set_stage("eos-acme-v4", "count").await.unwrap();
        let tags = other
            .conn()
            .query_one("SELECT tags FROM local_ipsets", &[], |r| r.get::<String>(0))
            .unwrap();
        let tags: serde_json::Value = serde_json::from_str(&tags).unwrap();
        assert_eq!(
            tags,
            json!({"owner": "eos-sec", "stage": "count"}),
            "{engine}"
        );
    });
}

/// Two instances (two connections to one store) writing one local Web ACL
/// at once, each with the lock token of its own read: every version is
/// written by exactly one of them — the other's write is refused as stale
/// and it reads again — so no write is lost or lands over a newer one.
#[test]
fn two_writers_of_one_local_web_acl_take_turns_by_its_lock_token() {
    const WRITES: u32 = 15;
    eos_store::testing::on_each_fresh(|fresh| {
        let at = fresh.location();
        LocalBackend::open_at(&at)
            .unwrap()
            .create_acl_document("eos-restricted", &foreign_acl())
            .unwrap();
        let stale: u32 = std::thread::scope(|s| {
            let writers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let b = LocalBackend::open_at(&at).unwrap();
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .build()
                            .unwrap();
                        rt.block_on(async {
                            let (mut written, mut stale) = (0, 0);
                            while written < WRITES {
                                let read = b.read_acl("eos-restricted").await.unwrap().unwrap();
                                let flip = match read.owned.default_action.as_str() {
                                    "BLOCK" => eos_policy::waf::DefaultAction::allow(),
                                    _ => eos_policy::waf::DefaultAction::block(),
                                };
                                let owned = read.owned.with_default(flip);
                                match b.write_acl("eos-restricted", &owned, &read.lock).await {
                                    Ok(_) => written += 1,
                                    Err(BackendError::StaleLock { .. }) => stale += 1,
                                    Err(e) => panic!("{e}"),
                                }
                            }
                            stale
                        })
                    })
                })
                .collect();
            writers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        let store = Store::open_at(&at).unwrap();
        let version: i64 = store
            .conn()
            .query_one("SELECT version FROM local_web_acls", &[], |r| r.get(0))
            .unwrap();
        assert_eq!(
            version,
            1 + 2 * i64::from(WRITES),
            "{}: {stale} stale writes refused",
            store.engine().as_str()
        );
    });
}
