//! The WAFv2 backend against a private moto server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use eos_aws::moto::MotoServer;
use eos_aws::wafv2::{Scope, WafBackend};
use eos_identity::SpaceId;
use eos_ipset::{Family, IpNet, IpSet, canonical};
use eos_plan::{
    ActualInput, BackendError, IpSetBackend, IpSetName, NewIpSet, PlanOptions, apply_change,
    apply_plan, desired_sets, plan_changes,
    rules::{Label, NetworkAccessRule, RuleCidr},
};
use time::macros::datetime;

fn name(space: &str, family: Family) -> IpSetName {
    IpSetName::staged(&SpaceId::new(space).unwrap(), family)
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

async fn backend(moto: &MotoServer, scope: Scope) -> WafBackend {
    WafBackend::connect(&moto.aws_options(), scope)
        .await
        .unwrap()
}

fn entries(set: &eos_plan::ActualSet) -> BTreeSet<String> {
    set.addresses.iter().map(canonical).collect()
}

#[tokio::test]
async fn create_read_update_with_lock_tokens() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let b = backend(&moto, Scope::Regional).await;
    assert_eq!(b.id(), "aws:REGIONAL:us-east-1");
    let n = name("acme", Family::V4);
    assert!(b.read(&n).await.unwrap().is_none());
    b.create(&NewIpSet::staged(&n, vec![net("203.0.113.0/28")]))
        .await
        .unwrap();
    assert!(matches!(
        b.create(&NewIpSet::staged(&n, vec![])).await,
        Err(BackendError::AlreadyExists { .. })
    ));
    let read = b.read(&n).await.unwrap().unwrap();
    assert_eq!(
        entries(&read),
        BTreeSet::from(["203.0.113.0/28".to_owned()])
    );
    assert_eq!(read.description, n.description());
    let lock = b
        .update(
            &n,
            &[net("203.0.113.0/28"), net("198.51.100.7/32")],
            &read.description,
            &read.lock,
        )
        .await
        .unwrap();
    assert_ne!(lock, read.lock);
    // The old token is stale now.
    let stale = b
        .update(&n, &[net("192.0.2.1/32")], &read.description, &read.lock)
        .await;
    assert!(
        matches!(stale, Err(BackendError::StaleLock { .. })),
        "{stale:?}"
    );
    let again = b.read(&n).await.unwrap().unwrap();
    assert_eq!(again.addresses.len(), 2);
    assert_eq!(
        again.description,
        n.description(),
        "description passed through"
    );
}

#[tokio::test]
async fn rejects_invalid_requests_client_side() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let b = backend(&moto, Scope::Regional).await;
    let n = name("acme", Family::V4);
    let wrong_family = b
        .create(&NewIpSet::staged(&n, vec![net("2001:db8::/32")]))
        .await;
    assert!(
        matches!(wrong_family, Err(BackendError::Invalid { .. })),
        "{wrong_family:?}"
    );
    let zero = b
        .create(&NewIpSet::staged(&n, vec![net("0.0.0.0/0")]))
        .await;
    assert!(matches!(zero, Err(BackendError::Invalid { .. })));
    let mut bad = NewIpSet::staged(&n, vec![]);
    bad.description = "bad;description".into();
    assert!(matches!(
        b.create(&bad).await,
        Err(BackendError::Invalid { .. })
    ));
    let mut bad = NewIpSet::staged(&n, vec![]);
    bad.tags.push(("aws:reserved".into(), "x".into()));
    assert!(matches!(
        b.create(&bad).await,
        Err(BackendError::Invalid { .. })
    ));
    // Nothing reached moto.
    assert!(b.read(&n).await.unwrap().is_none());
}

#[tokio::test]
async fn cloudfront_scope_is_us_east_1() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let mut opts = moto.aws_options();
    opts.region = Some("eu-west-1".into());
    let b = WafBackend::connect(&opts, Scope::Cloudfront).await.unwrap();
    assert_eq!(b.id(), "aws:CLOUDFRONT:us-east-1");
    let n = name("globex", Family::V6);
    b.create(&NewIpSet::staged(&n, vec![net("2001:db8:10::/48")]))
        .await
        .unwrap();
    assert_eq!(b.read(&n).await.unwrap().unwrap().addresses.len(), 1);
    // Not visible in the REGIONAL scope.
    let regional = backend(&moto, Scope::Regional).await;
    assert!(regional.read(&n).await.unwrap().is_none());
}

fn rule(cidr: &str) -> NetworkAccessRule {
    NetworkAccessRule::new(
        SpaceId::new("acme").unwrap(),
        RuleCidr::parse(cidr).unwrap(),
        Label::new("r").unwrap(),
        eos_identity::UserId::new("alice").unwrap(),
        datetime!(2026-01-05 09:00 UTC),
        None,
    )
    .unwrap()
}

/// Two writers plan against the same set from the same read, each adding its
/// own entries, and write at the same time with that read's lock token: one
/// wins, the other gets WAFOptimisticLockException, re-reads and re-applies
/// only its delta. Nothing either wrote is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_lose_nothing() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let n = name("acme", Family::V4);
    let seed = backend(&moto, Scope::Regional).await;
    seed.create(&NewIpSet::staged(&n, vec![net("203.0.113.0/28")]))
        .await
        .unwrap();
    let opts = PlanOptions::default().check().unwrap();
    let now = datetime!(2026-03-01 00:00 UTC);
    let mut writers = Vec::new();
    for w in 0..2u8 {
        let b = backend(&moto, Scope::Regional).await;
        let actual = b.read(&n).await.unwrap();
        let managed = BTreeSet::from(["203.0.113.0/28".to_owned()]);
        let mut rules = vec![rule("203.0.113.0/28")];
        for i in 0..5u8 {
            rules.push(rule(&format!("198.51.{w}.{}/32", i * 2)));
        }
        let desired = desired_sets(&rules, &[], &opts, now);
        let map = BTreeMap::from([(
            n.clone(),
            ActualInput {
                set: actual.clone(),
                managed,
            },
        )]);
        let plan = plan_changes(&desired, &map, &opts, false, &b.id(), now).unwrap();
        writers.push((b, plan, actual));
    }
    // Both reads happened before either write: the lock tokens are equal.
    assert_eq!(
        writers[0].2.as_ref().unwrap().lock,
        writers[1].2.as_ref().unwrap().lock
    );
    let handles: Vec<_> = writers
        .into_iter()
        .map(|(b, plan, actual)| {
            tokio::spawn(async move { apply_change(&b, &plan.changes()[0], actual).await })
        })
        .collect();
    let mut attempts = Vec::new();
    for h in handles {
        attempts.push(h.await.unwrap().unwrap().attempts);
    }
    let fin = seed.read(&n).await.unwrap().unwrap();
    let got: IpSet = fin.addresses.iter().copied().collect();
    let mut want = vec![net("203.0.113.0/28")];
    for w in 0..2 {
        for i in 0..5 {
            want.push(net(&format!("198.51.{w}.{}/32", i * 2)));
        }
    }
    let want: IpSet = want.into_iter().collect();
    assert_eq!(got, want, "attempts {attempts:?}");
    assert_eq!(fin.addresses.len(), 11);
    // One of them must have lost the race and retried.
    let mut sorted = attempts.clone();
    sorted.sort();
    assert_eq!(sorted[0], 1, "attempts {attempts:?}");
    assert!(sorted[1] >= 2, "attempts {attempts:?}");
}

/// A plan is refused when another writer added or removed an entry it
/// changes since it was made.
#[tokio::test]
async fn plan_touched_by_another_writer_is_refused() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let n = name("acme", Family::V4);
    let b = backend(&moto, Scope::Regional).await;
    b.create(&NewIpSet::staged(&n, vec![net("203.0.113.0/28")]))
        .await
        .unwrap();
    let opts = PlanOptions::default().check().unwrap();
    let now = datetime!(2026-03-01 00:00 UTC);
    let actual = b.read(&n).await.unwrap();
    let managed = BTreeSet::from(["203.0.113.0/28".to_owned()]);
    let desired = desired_sets(
        &[rule("203.0.113.0/28"), rule("198.51.100.1/32")],
        &[],
        &opts,
        now,
    );
    let map = BTreeMap::from([(
        n.clone(),
        ActualInput {
            set: actual.clone(),
            managed,
        },
    )]);
    let plan = plan_changes(&desired, &map, &opts, false, &b.id(), now).unwrap();
    let cur = actual.unwrap();
    b.update(
        &n,
        &[net("203.0.113.0/28"), net("198.51.100.1/32")],
        &cur.description,
        &cur.lock,
    )
    .await
    .unwrap();
    let e = apply_plan(&b, &plan).await.unwrap_err();
    assert!(
        matches!(e, eos_plan::ApplyError::ChangedSincePlan { .. }),
        "{e}"
    );
}
