//! Lag from a rule committed to the state store to the rule's address being
//! in the IPSet, with `eos_sync::watch` running with its default options
//! (poll 250 ms, batch window 200 ms). Backends: the local store, and AWS
//! WAFv2 on moto's server when moto is installed (WAF pacing: 1 write/s).
//!
//! `cargo bench -p eos-sync --bench lag` — prints median, p90, p99 and max
//! per backend. Not a test: nothing here asserts a time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use eos_identity::{SpaceId, UserId};
use eos_plan::rules::{Label, RuleCidr};
use eos_plan::{IpSetBackend, IpSetName, NetworkAccessRule, PlanOptions};
use eos_store::Store;
use eos_store::ipsets::LocalBackend;
use eos_store::rules::import_rules;
use eos_sync::{SyncOptions, watch};

/// Rules measured per backend: 60 under `cargo bench`, a smoke run of 3
/// when `cargo test --all-targets` runs the bench without `--bench`.
fn rules() -> u32 {
    if std::env::args().any(|a| a == "--bench") {
        60
    } else {
        3
    }
}

fn rule(i: u32) -> NetworkAccessRule {
    NetworkAccessRule::new(
        SpaceId::new("bench").unwrap(),
        RuleCidr::parse(&format!("198.51.{}.{}/32", i / 250, i % 250 + 1)).unwrap(),
        Label::new("bench").unwrap(),
        UserId::new("alice").unwrap(),
        time::OffsetDateTime::now_utc(),
        None,
    )
    .unwrap()
}

/// Run the watcher on its own thread (backend futures are not `Send`) and
/// measure each rule's lag by polling the backend from this thread.
fn measure<B, F>(name: &str, dir: &std::path::Path, make: F, write_interval: Duration)
where
    B: IpSetBackend + 'static,
    F: Fn() -> B + Send + Clone + 'static,
{
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let wdir = dir.to_path_buf();
    let make_w = make.clone();
    let watcher = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut store = Store::open(&wdir).unwrap();
        let backend = make_w();
        let mut opts = SyncOptions::new(PlanOptions::default().check().unwrap());
        opts.write_interval = write_interval;
        rt.block_on(watch(
            &mut store,
            &backend,
            &opts,
            async {
                let _ = stop_rx.await;
            },
            |_| {},
        ))
        .unwrap();
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut writer = Store::open(dir).unwrap();
    let reader = make();
    let set = IpSetName::staged(&SpaceId::new("bench").unwrap(), eos_ipset::Family::V4);
    let mut lags = Vec::new();
    let n = rules();
    for i in 0..n {
        let r = rule(i);
        // The set is aggregated: look for a network covering the address.
        let want = r.cidr.net();
        let start = Instant::now();
        import_rules(&mut writer, &[r], "bench").unwrap();
        loop {
            let s = rt.block_on(reader.read(&set)).unwrap();
            if s.is_some_and(|s| s.addresses.iter().any(|n| n.contains(&want))) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "rule {i} never arrived"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        lags.push(start.elapsed());
        // Spread the rules out so each is its own change, not one burst.
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = stop_tx.send(());
    watcher.join().unwrap();
    lags.sort();
    let pct = |p: usize| lags[(lags.len() * p / 100).min(lags.len() - 1)];
    println!(
        "sync lag ({name}, {n} rules one at a time): median {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pct(50).as_secs_f64() * 1e3,
        pct(90).as_secs_f64() * 1e3,
        pct(99).as_secs_f64() * 1e3,
        lags[lags.len() - 1].as_secs_f64() * 1e3,
    );
}

fn main() {
    let local = tempfile::tempdir().unwrap();
    let ldir = local.path().to_path_buf();
    measure(
        "local backend",
        local.path(),
        move || LocalBackend::open(&ldir).unwrap(),
        Duration::ZERO,
    );

    let Some(moto) = eos_aws::moto::MotoServer::start() else {
        println!("sync lag (AWS WAFv2 on moto): skipped, moto_server not installed");
        return;
    };
    let opts = moto.aws_options();
    let aws = tempfile::tempdir().unwrap();
    measure(
        "AWS WAFv2 on moto, 1 write/s",
        aws.path(),
        move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(eos_aws::wafv2::WafBackend::connect(
                &opts,
                eos_aws::wafv2::Scope::Regional,
            ))
            .unwrap()
        },
        Duration::from_secs(1),
    );
}
