//! The syncer on the local backend and on AWS WAFv2 (moto's server on
//! 127.0.0.1): a rule reaches its set; a burst becomes a bounded number of
//! writes; a concurrent writer's change survives; a crash between write and
//! record converges without drift; expiries and guards hold.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![recursion_limit = "256"]

use std::cell::Cell;
use std::collections::BTreeSet;

use eos_aws::moto::MotoServer;
use eos_aws::wafv2::{Scope, WafBackend};
use eos_identity::{SpaceId, UserId};
use eos_ipset::{Family, IpNet, canonical};
use eos_plan::rules::{Label, RuleCidr};
use eos_plan::{
    ActualSet, BackendError, IpSetBackend, IpSetName, LockToken, NetworkAccessRule, NewIpSet,
    PlanOptions,
};
use eos_store::Store;
use eos_store::ipsets::LocalBackend;
use eos_store::rules::{import_rules, remove_rules, replace_observations};
use eos_store::testing::PgCluster;
use eos_sync::{Pacer, PassReport, SyncOptions, sync_once};
use time::{Duration, OffsetDateTime};

fn space(s: &str) -> SpaceId {
    SpaceId::new(s).unwrap()
}

fn rule_at(sp: &str, cidr: &str, expires: Option<OffsetDateTime>) -> NetworkAccessRule {
    NetworkAccessRule::new(
        space(sp),
        RuleCidr::parse(cidr).unwrap(),
        Label::new("test").unwrap(),
        UserId::new("alice").unwrap(),
        OffsetDateTime::now_utc() - Duration::hours(1),
        expires,
    )
    .unwrap()
}

fn rule(sp: &str, cidr: &str) -> NetworkAccessRule {
    rule_at(sp, cidr, None)
}

fn v4(sp: &str) -> IpSetName {
    IpSetName::staged(&space(sp), Family::V4)
}

fn opts() -> SyncOptions {
    let mut o = SyncOptions::new(PlanOptions::default().check().unwrap());
    o.write_interval = std::time::Duration::ZERO;
    o
}

async fn pass<B: IpSetBackend>(store: &mut Store, b: &B, o: &SyncOptions) -> PassReport {
    sync_once(store, b, o, &mut Pacer::new(o.write_interval))
        .await
        .unwrap()
}

async fn entries<B: IpSetBackend>(b: &B, name: &IpSetName) -> BTreeSet<String> {
    b.read(name)
        .await
        .unwrap()
        .map(|s| s.addresses.iter().map(canonical).collect())
        .unwrap_or_default()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A fresh state directory with its store, and a local backend on it.
fn local() -> (tempfile::TempDir, Store, LocalBackend) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let backend = LocalBackend::open(dir.path()).unwrap();
    (dir, store, backend)
}

async fn moto_backend(moto: &MotoServer) -> WafBackend {
    WafBackend::connect(&moto.aws_options(), Scope::Regional)
        .await
        .unwrap()
}

// ---- the scenarios, generic over the backend ----

async fn rule_reaches_set<B: IpSetBackend>(store: &mut Store, b: &B) {
    import_rules(store, &[rule("acme", "203.0.113.7")], "op").unwrap();
    let r = pass(store, b, &opts()).await;
    assert_eq!(r.delivered, 1, "{r:?}");
    assert_eq!(r.writes(), 1);
    assert_eq!(entries(b, &v4("acme")).await, set(&["203.0.113.7/32"]));
    // Nothing pending: the next pass does nothing and writes nothing.
    let r = pass(store, b, &opts()).await;
    assert_eq!((r.delivered, r.writes(), r.sets.len()), (0, 0, 0));
    // Removal reaches the set too.
    remove_rules(
        store,
        &space("acme"),
        &[RuleCidr::parse("203.0.113.7").unwrap()],
        "op",
    )
    .unwrap();
    let mut o = opts();
    o.allow_large_change = true; // emptying a set is a large change
    let r = pass(store, b, &o).await;
    assert_eq!(r.delivered, 1);
    assert_eq!(entries(b, &v4("acme")).await, set(&[]));
}

async fn burst_is_batched<B: IpSetBackend>(store: &mut Store, b: &B) {
    let rules: Vec<_> = (0..500u32)
        .map(|i| rule("burst", &format!("198.51.{}.{}", i / 200, i % 200 + 1)))
        .collect();
    // 500 separate transactions, as 500 administrators' clicks would be.
    for r in &rules {
        import_rules(store, std::slice::from_ref(r), "op").unwrap();
    }
    let r = pass(store, b, &opts()).await;
    assert_eq!(r.delivered, 500);
    assert!(r.writes() <= 2, "500 changes took {} writes", r.writes());
    let want: BTreeSet<String> = rules.iter().map(|r| r.cidr.to_string()).collect();
    let have = entries(b, &v4("burst")).await;
    // Aggregated losslessly: every rule's address is covered.
    let nets: Vec<IpNet> = have.iter().map(|s| s.parse().unwrap()).collect();
    for w in &want {
        let n: IpNet = w.parse().unwrap();
        assert!(nets.iter().any(|h| h.contains(&n)), "{w} missing");
    }
}

/// Wraps a backend: the first update is preceded by another writer's
/// update (adding `foreign`), so our lock token is stale when we send.
struct Interfering<'a, B> {
    inner: &'a B,
    foreign: IpNet,
    done: Cell<bool>,
}

impl<B: IpSetBackend> IpSetBackend for Interfering<'_, B> {
    fn id(&self) -> String {
        self.inner.id()
    }
    async fn read(&self, name: &IpSetName) -> Result<Option<ActualSet>, BackendError> {
        self.inner.read(name).await
    }
    async fn create(&self, set: &NewIpSet) -> Result<LockToken, BackendError> {
        self.inner.create(set).await
    }
    async fn update(
        &self,
        name: &IpSetName,
        addresses: &[IpNet],
        description: &str,
        lock: &LockToken,
    ) -> Result<LockToken, BackendError> {
        if !self.done.replace(true) {
            let theirs = self.inner.read(name).await?.unwrap();
            let mut list = theirs.addresses.clone();
            list.push(self.foreign);
            self.inner
                .update(name, &list, &theirs.description, &theirs.lock)
                .await?;
        }
        self.inner.update(name, addresses, description, lock).await
    }
    async fn pause_before_retry(&self, _attempt: u32) {}
}

async fn concurrent_writer_survives<B: IpSetBackend>(store: &mut Store, b: &B) {
    import_rules(store, &[rule("race", "203.0.113.1")], "op").unwrap();
    pass(store, b, &opts()).await;
    import_rules(store, &[rule("race", "203.0.113.2")], "op").unwrap();
    let racing = Interfering {
        inner: b,
        foreign: "192.0.2.99/32".parse().unwrap(),
        done: Cell::new(false),
    };
    let r = pass(store, &racing, &opts()).await;
    assert_eq!(r.delivered, 1, "{r:?}");
    assert_eq!(r.sets[0].writes, 2, "one conflict, one retry: {r:?}");
    assert_eq!(
        entries(b, &v4("race")).await,
        set(&["192.0.2.99/32", "203.0.113.1/32", "203.0.113.2/32"]),
        "both writers' changes survive"
    );
    // The other writer's entry is drift: reported, never removed.
    let r = pass(store, b, &opts()).await;
    assert_eq!(r.writes(), 0);
    import_rules(store, &[rule("race", "203.0.113.3")], "op").unwrap();
    let r = pass(store, b, &opts()).await;
    assert!(
        r.warnings
            .iter()
            .any(|w| w.code == eos_plan::FindingCode::Drift)
    );
    assert!(entries(b, &v4("race")).await.contains("192.0.2.99/32"));
}

/// Wraps a backend: the first update reaches the backend, then the process
/// "dies" before hearing back.
struct CrashAfterWrite<'a, B> {
    inner: &'a B,
    done: Cell<bool>,
}

impl<B: IpSetBackend> IpSetBackend for CrashAfterWrite<'_, B> {
    fn id(&self) -> String {
        self.inner.id()
    }
    async fn read(&self, name: &IpSetName) -> Result<Option<ActualSet>, BackendError> {
        self.inner.read(name).await
    }
    async fn create(&self, set: &NewIpSet) -> Result<LockToken, BackendError> {
        self.inner.create(set).await
    }
    async fn update(
        &self,
        name: &IpSetName,
        addresses: &[IpNet],
        description: &str,
        lock: &LockToken,
    ) -> Result<LockToken, BackendError> {
        let token = self
            .inner
            .update(name, addresses, description, lock)
            .await?;
        if !self.done.replace(true) {
            return Err(BackendError::Failed {
                name: name.to_string(),
                detail: "connection reset (injected)".into(),
            });
        }
        Ok(token)
    }
    async fn pause_before_retry(&self, _attempt: u32) {}
}

async fn crash_mid_write_converges<B: IpSetBackend>(store: &mut Store, b: &B) {
    import_rules(
        store,
        &[rule("crash", "203.0.113.1"), rule("crash", "203.0.113.20")],
        "op",
    )
    .unwrap();
    pass(store, b, &opts()).await;
    import_rules(store, &[rule("crash", "203.0.113.9")], "op").unwrap();
    let crashing = CrashAfterWrite {
        inner: b,
        done: Cell::new(false),
    };
    let r = pass(store, &crashing, &opts()).await;
    assert!(r.has_errors());
    assert_eq!((r.delivered, r.pending), (0, 1), "the change stays pending");
    // Restarted: the set already holds the entry; no write, delivered.
    let r = pass(store, b, &opts()).await;
    assert_eq!((r.delivered, r.writes()), (1, 0), "{r:?}");
    // The entry is eos-sec's (recorded before the write), not drift: its
    // rule's removal removes it.
    remove_rules(
        store,
        &space("crash"),
        &[RuleCidr::parse("203.0.113.9").unwrap()],
        "op",
    )
    .unwrap();
    let mut o = opts();
    o.allow_large_change = true;
    let r = pass(store, b, &o).await;
    assert!(
        r.warnings
            .iter()
            .all(|w| w.code != eos_plan::FindingCode::Drift),
        "{r:?}"
    );
    assert_eq!(
        entries(b, &v4("crash")).await,
        set(&["203.0.113.1/32", "203.0.113.20/32"])
    );
}

// ---- local backend ----

#[tokio::test]
async fn local_rule_reaches_set() {
    let (_d, mut s, b) = local();
    rule_reaches_set(&mut s, &b).await;
}

#[tokio::test]
async fn local_burst_is_batched() {
    let (_d, mut s, b) = local();
    burst_is_batched(&mut s, &b).await;
}

#[tokio::test]
async fn local_concurrent_writer_survives() {
    let (_d, mut s, b) = local();
    concurrent_writer_survives(&mut s, &b).await;
}

#[tokio::test]
async fn local_crash_mid_write_converges() {
    let (_d, mut s, b) = local();
    crash_mid_write_converges(&mut s, &b).await;
}

// ---- the local backend on a PostgreSQL store ----

/// A fresh database on `cluster`: the syncer's store and, on a connection
/// of its own, the local backend (its sets live in the same database).
fn pg_local(cluster: &PgCluster, db: &str) -> (Store, LocalBackend) {
    let url = eos_store::StoreUrl::parse(&cluster.create_database(db)).unwrap();
    let location = eos_store::StoreLocation::Postgres(url.clone());
    let store = Store::open_postgres(&url).unwrap();
    (store, LocalBackend::open_at(&location).unwrap())
}

/// Every scenario of the local backend, on PostgreSQL: the outbox, the
/// syncer's record, managed entries and the sets themselves, each scenario
/// in a database of its own on one throwaway cluster.
#[tokio::test]
async fn postgres_store_syncs_like_sqlite() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let (mut s, b) = pg_local(&cluster, "reaches");
    rule_reaches_set(&mut s, &b).await;
    let (mut s, b) = pg_local(&cluster, "burst");
    burst_is_batched(&mut s, &b).await;
    let (mut s, b) = pg_local(&cluster, "race");
    concurrent_writer_survives(&mut s, &b).await;
    let (mut s, b) = pg_local(&cluster, "crash");
    crash_mid_write_converges(&mut s, &b).await;
    let status = eos_store::sync::status(s.conn(), "local", OffsetDateTime::now_utc()).unwrap();
    let crash = status.iter().find(|x| x.name == "eos-crash-v4").unwrap();
    assert_eq!(crash.pending, 0, "{crash:?}");
    assert!(
        crash.writes >= 2 && crash.last_success.is_some(),
        "{crash:?}"
    );
}

#[tokio::test]
async fn expired_rules_leave_the_set_without_an_outbox_row() {
    let (_d, mut s, b) = local();
    let soon = OffsetDateTime::now_utc() + Duration::milliseconds(1500);
    import_rules(
        &mut s,
        &[
            rule("exp", "203.0.113.1"),
            rule("exp", "203.0.113.5"),
            rule_at("exp", "203.0.113.9", Some(soon)),
        ],
        "op",
    )
    .unwrap();
    pass(&mut s, &b, &opts()).await;
    assert_eq!(entries(&b, &v4("exp")).await.len(), 3);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let mut o = opts();
    o.allow_large_change = true; // one of three is more than 10%
    let r = pass(&mut s, &b, &o).await;
    assert_eq!(r.expired_spaces, vec![space("exp")]);
    assert_eq!(
        entries(&b, &v4("exp")).await,
        set(&["203.0.113.1/32", "203.0.113.5/32"])
    );
    // Checked once: the next pass has nothing to do.
    let r = pass(&mut s, &b, &opts()).await;
    assert!(r.expired_spaces.is_empty() && r.sets.is_empty(), "{r:?}");
}

#[tokio::test]
async fn large_removal_waits_for_an_explicit_pass() {
    let (_d, mut s, b) = local();
    import_rules(
        &mut s,
        &[rule("big", "203.0.113.1"), rule("big", "203.0.113.2")],
        "op",
    )
    .unwrap();
    pass(&mut s, &b, &opts()).await;
    remove_rules(
        &mut s,
        &space("big"),
        &[RuleCidr::parse("203.0.113.2").unwrap()],
        "op",
    )
    .unwrap();
    let r = pass(&mut s, &b, &opts()).await;
    assert_eq!(r.sets[0].outcome, "refused", "{r:?}");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.code == eos_plan::FindingCode::LargeChange)
    );
    assert_eq!((r.delivered, r.pending), (0, 1));
    assert_eq!(entries(&b, &v4("big")).await.len(), 2, "nothing removed");
    let status = eos_store::sync::status(s.conn(), "local", OffsetDateTime::now_utc()).unwrap();
    let v4s = status.iter().find(|x| x.name == "eos-big-v4").unwrap();
    assert_eq!(v4s.pending, 1);
    assert!(
        v4s.last_error.as_deref().unwrap().contains("large-change"),
        "{v4s:?}"
    );
    let mut o = opts();
    o.allow_large_change = true;
    let r = pass(&mut s, &b, &o).await;
    assert_eq!(r.delivered, 1);
    assert_eq!(entries(&b, &v4("big")).await, set(&["203.0.113.1/32"]));
}

#[tokio::test]
async fn removed_rule_with_recent_evidence_is_reported() {
    let (_d, mut s, b) = local();
    import_rules(
        &mut s,
        &[rule("seen", "203.0.113.0/28"), rule("seen", "198.51.100.1")],
        "op",
    )
    .unwrap();
    let now = OffsetDateTime::now_utc();
    let obs = eos_logs::Observation {
        space: space("seen"),
        ip: "203.0.113.5".parse().unwrap(),
        requests: 2,
        first_seen: now - Duration::days(2),
        last_seen: now - Duration::days(1),
        distinct_days: 1,
        distinct_users: 1,
        example_users: vec![UserId::new("bob").unwrap()],
        status: eos_logs::StatusCounts::default(),
        flag: None,
    };
    replace_observations(&mut s, &[obs], "op").unwrap();
    pass(&mut s, &b, &opts()).await;
    remove_rules(
        &mut s,
        &space("seen"),
        &[RuleCidr::parse("203.0.113.0/28").unwrap()],
        "op",
    )
    .unwrap();
    let mut o = opts();
    o.allow_large_change = true;
    let r = pass(&mut s, &b, &o).await;
    assert_eq!(r.removed_but_seen.len(), 1, "{r:?}");
    assert_eq!(
        r.removed_but_seen[0].addresses,
        vec!["203.0.113.5".to_owned()]
    );
}

// ---- AWS WAFv2 on moto ----

/// A test of `scenario` against a fresh moto server and state directory.
macro_rules! on_moto {
    ($name:ident, $scenario:ident) => {
        #[tokio::test]
        async fn $name() {
            let Some(moto) = MotoServer::start() else {
                return;
            };
            let dir = tempfile::tempdir().unwrap();
            let mut s = Store::open(dir.path()).unwrap();
            $scenario(&mut s, &moto_backend(&moto).await).await;
        }
    };
}

on_moto!(moto_rule_reaches_set, rule_reaches_set);
on_moto!(moto_burst_is_batched, burst_is_batched);
on_moto!(moto_concurrent_writer_survives, concurrent_writer_survives);
on_moto!(moto_crash_mid_write_converges, crash_mid_write_converges);

// ---- one space's refusal never delays another ----

/// 10,001 /32s that do not aggregate (every other address of 10.0.0.0/8):
/// more than a WAF IPSet holds, so `big`'s set is refused.
fn too_many(sp: &str) -> Vec<NetworkAccessRule> {
    (0..10_001u32)
        .map(|i| {
            let j = 2 * i;
            rule(
                sp,
                &format!("10.{}.{}.{}", j >> 16, (j >> 8) & 255, j & 255),
            )
        })
        .collect()
}

/// `big`'s 10,001 changes come first in the outbox, `acme`'s one after
/// them: a pass still delivers `acme`'s, refuses only `big`'s v4 set, and
/// reports the pending count `sync status` reports.
#[tokio::test]
async fn a_refused_space_does_not_delay_another() {
    let (_d, mut s, b) = local();
    import_rules(&mut s, &too_many("big"), "op").unwrap();
    import_rules(&mut s, &[rule("acme", "198.51.100.7")], "op").unwrap();
    let r = pass(&mut s, &b, &opts()).await;
    assert_eq!(entries(&b, &v4("acme")).await, set(&["198.51.100.7/32"]));
    assert_eq!(r.delivered, 1, "{:?}", r.sets);
    let refused: Vec<String> = r
        .sets
        .iter()
        .filter(|x| x.outcome == "refused")
        .map(|x| x.name.to_string())
        .collect();
    assert_eq!(refused, ["eos-big-v4"], "{:?}", r.sets);
    let status = eos_store::sync::status(s.conn(), "local", OffsetDateTime::now_utc()).unwrap();
    let pending: u64 = status.iter().map(|x| x.pending).sum();
    assert_eq!((r.pending, pending), (10_001, 10_001));
    // Only the refused set carries the error; `big` has no v6 set to blame.
    let failing: Vec<&str> = status
        .iter()
        .filter(|x| x.last_error.is_some())
        .map(|x| x.name.as_str())
        .collect();
    assert_eq!(failing, ["eos-big-v4"], "{status:?}");
    // A v6 change of the refused space is delivered too: only the refused
    // set's own changes wait.
    import_rules(&mut s, &[rule("big", "2001:db8::7")], "op").unwrap();
    let r = pass(&mut s, &b, &opts()).await;
    assert_eq!(
        entries(&b, &IpSetName::staged(&space("big"), Family::V6)).await,
        set(&["2001:db8::7/128"])
    );
    assert_eq!((r.delivered, r.pending), (1, 10_001));
}

/// The watcher: `big` is refused and held back; `acme`'s change, made
/// while `big` backs off, reaches its set within the poll and batch
/// interval, not after `big`'s back-off (5 s).
#[tokio::test]
async fn the_watcher_serves_other_spaces_while_one_is_refused() {
    let (dir, mut s, b) = local();
    import_rules(&mut s, &too_many("big"), "op").unwrap();
    let mut writer = Store::open(dir.path()).unwrap();
    let mut o = opts();
    o.poll_interval = std::time::Duration::from_millis(50);
    o.batch_window = std::time::Duration::from_millis(50);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let passes = Cell::new(0u32);
    let watcher = eos_sync::watch(
        &mut s,
        &b,
        &o,
        async {
            let _ = stop_rx.await;
        },
        |_| passes.set(passes.get() + 1),
    );
    let driver = async {
        // Wait for big's refusal.
        let reader = Store::open(dir.path()).unwrap();
        let refused = || {
            eos_store::sync::status(reader.conn(), "local", OffsetDateTime::now_utc())
                .unwrap()
                .iter()
                .any(|x| x.name == "eos-big-v4" && x.last_error.is_some())
        };
        let start = std::time::Instant::now();
        while !refused() {
            assert!(start.elapsed() < std::time::Duration::from_secs(30));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        import_rules(&mut writer, &[rule("acme", "198.51.100.7")], "op").unwrap();
        let added = std::time::Instant::now();
        while entries(&b, &v4("acme")).await.is_empty() {
            assert!(
                added.elapsed() < std::time::Duration::from_secs(3),
                "acme waited behind big's refusal"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let _ = stop_tx.send(());
        added.elapsed()
    };
    let (watched, waited) = tokio::join!(watcher, driver);
    watched.unwrap();
    assert!(waited < std::time::Duration::from_secs(3), "{waited:?}");
    // big was not retried on every poll while held.
    assert!(passes.get() <= 3, "{} passes", passes.get());
}
