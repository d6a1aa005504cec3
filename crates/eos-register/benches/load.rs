//! Load benchmark of the registration service (not a timed test): C
//! concurrent clients over loopback TLS each register addresses with their
//! own single-use codes (`POST /v1/ip`, one store transaction per request:
//! code check + spend, rule, outbox row, registration row, audit entries).
//! Prints sustained registrations per second and latency percentiles.
//!
//! With `--cert-clients K`, K more clients register certificates
//! (`POST /v1/cert`) the whole time through a CA that takes
//! `--ca-latency-ms` (default 1000, as AWS Private CA can): the address
//! registrations' figures then show whether they wait for the CA.
//!
//! With `--postgres`, the store is a PostgreSQL database on a throwaway
//! cluster (`eos_store::testing::PgCluster::start_durable`: on disk, fsync
//! on, a Unix socket) instead of SQLite;
//! `--instances N` starts N services on that one database and spreads the
//! clients over them (the codes are issued once, into the shared store).
//!
//! CPU per registration is measured over the timed run only: the
//! services run on a runtime of their own whose threads are named
//! `eos-serve` (their user + system time from `/proc/self/task`), the
//! PostgreSQL server's processes are the postmaster's children (from
//! `/proc`), and the load generator is the rest of this process. The load
//! average is printed before and after: other work on the machine shows
//! there.
//!
//! cargo bench -p eos-register --bench load -- [--quick] [--clients N] [--requests N]
//!     [--cert-clients K] [--ca-latency-ms MS] [--postgres [--instances N]]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};

use common::{Harness, Setup, Signing, bench_arg as arg, csr, percentile};
use eos_codes::Purpose;
use serde_json::json;

/// Thread names of the services' runtime.
const SERVE_THREADS: &str = "eos-serve";

/// Clock ticks per second of `/proc`'s CPU times.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// (parent pid, user + system ticks) of a `/proc/.../stat` line.
fn stat_ticks(stat: &str) -> Option<(u32, u64)> {
    // The command name is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// CPU ticks of this process's threads named `name`, and of all of it.
fn own_ticks(name: &str) -> (u64, u64) {
    let mut named = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        if comm.trim_end().starts_with(name)
            && let Some((_, t)) = stat_ticks(&stat)
        {
            named += t;
        }
    }
    let all = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_ticks(&s))
        .map_or(0, |(_, t)| t);
    (named, all)
}

/// CPU ticks of the processes whose parent is `ppid` (a PostgreSQL
/// server's backends and helpers), and of `ppid` itself.
fn children_ticks(ppid: u32) -> u64 {
    let mut sum = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if let Some((parent, t)) = stat_ticks(&stat)
            && (parent == ppid || pid == ppid)
        {
            sum += t;
        }
    }
    sum
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it: then only a smoke run, like criterion's test mode.
    let measuring = std::env::args().any(|a| a == "--bench");
    let quick = std::env::args().any(|a| a == "--quick");
    let (default_clients, default_requests) = match (measuring, quick) {
        (false, _) => (4, 20),
        (true, true) => (50, 500),
        (true, false) => (300, 6000),
    };
    let clients = arg("--clients").unwrap_or(default_clients);
    let requests = arg("--requests").unwrap_or(default_requests);
    let cert_clients = arg("--cert-clients").unwrap_or(0);
    let ca_latency = Duration::from_millis(arg("--ca-latency-ms").unwrap_or(1000) as u64);
    let mut setup = Setup::default();
    if cert_clients > 0 {
        setup.signing = Signing::Delayed(ca_latency);
    }
    setup.options.trusted_proxies = eos_logs::TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
    // The benchmark measures the service, not the limiter in front of it.
    setup.options.limits.global_per_second = 1_000_000.try_into().unwrap();
    setup.options.limits.global_burst = 1_000_000.try_into().unwrap();
    let postgres = std::env::args().any(|a| a == "--postgres");
    let instances = arg("--instances").unwrap_or(1).max(1);
    assert!(postgres || instances == 1, "--instances needs --postgres");
    // The cluster's set-up uses the synchronous driver: off the runtime.
    let cluster = postgres.then(|| {
        tokio::task::block_in_place(|| {
            let c = eos_store::testing::PgCluster::start_durable()
                .expect("--postgres needs a PostgreSQL server");
            let url = c.create_database("bench");
            (c, url)
        })
    });
    if let Some((_, url)) = &cluster {
        setup.store_url = Some(eos_store::StoreUrl::parse(url).unwrap());
    }
    // The services on a runtime of their own, so that their CPU time can
    // be told from the clients': its threads (workers and the blocking pool
    // where store work runs) are named, and kept for the whole run.
    let serve_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVE_THREADS)
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()
        .unwrap();
    let mut others = Vec::new();
    for _ in 1..instances {
        let mut more = Setup {
            store_url: setup.store_url.clone(),
            ..Setup::default()
        };
        more.options = setup.options.clone();
        others.push(Arc::new(
            serve_rt.spawn(Harness::start_with(more)).await.unwrap(),
        ));
    }
    let h = Arc::new(serve_rt.spawn(Harness::start_with(setup)).await.unwrap());
    let serving: Vec<Arc<Harness>> = std::iter::once(h.clone()).chain(others).collect();
    let codes: Vec<String> = (0..requests)
        .map(|i| h.issue_for(&format!("u{i}"), &[Purpose::RegisterIp]))
        .collect();
    let codes = Arc::new(tokio::sync::Mutex::new(codes.into_iter().enumerate()));
    // Enough certificate codes for the run (each client stops when the
    // address registrations are done, or when its codes run out).
    let cert_codes: Vec<String> = (0..cert_clients * 200)
        .map(|i| h.issue_for(&format!("c{i}"), &[Purpose::RegisterCert]))
        .collect();
    let cert_codes = Arc::new(tokio::sync::Mutex::new(cert_codes.into_iter()));
    let done = Arc::new(AtomicBool::new(false));
    // Warm the connection pools: one connection per client, so the timed
    // run measures registrations, not the first TLS handshakes.
    let mut warm = Vec::new();
    for c in 0..clients {
        let s = serving[c % serving.len()].clone();
        warm.push(tokio::spawn(async move {
            let _ = s.client.get(format!("{}/healthz", s.url)).send().await;
        }));
    }
    for w in warm {
        w.await.unwrap();
    }
    let postmaster: Option<u32> = cluster.as_ref().map(|(c, _)| {
        let pid = std::fs::read_to_string(c.socket_dir().join("data/postmaster.pid")).unwrap();
        pid.lines().next().unwrap().trim().parse().unwrap()
    });
    println!(
        "store: {}, {} instance(s)",
        if postgres { "postgresql" } else { "sqlite" },
        serving.len()
    );
    let mut cert_tasks = Vec::new();
    for _ in 0..cert_clients {
        let (h, codes, done) = (h.clone(), cert_codes.clone(), done.clone());
        cert_tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let Some(code) = codes.lock().await.next() else {
                    break;
                };
                let t = Instant::now();
                let (status, body) = h
                    .post("/v1/cert", json!({ "code": code, "csr": csr().0 }))
                    .await;
                assert_eq!(status, 200, "{body}");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let load_before = load_average();
    let (serve_before, all_before) = own_ticks(SERVE_THREADS);
    let pg_before = postmaster.map(children_ticks);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let h = serving[c % serving.len()].clone();
        let codes = codes.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let Some((i, code)) = codes.lock().await.next() else {
                    return lat;
                };
                let xff = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
                let t = Instant::now();
                let (status, body) = h
                    .post_from("/v1/ip", json!({ "code": code }), Some(&xff))
                    .await;
                assert_eq!(status, 200, "{body}");
                lat.push(t.elapsed());
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    let (serve_after, all_after) = own_ticks(SERVE_THREADS);
    let pg_after = postmaster.map(children_ticks);
    let load_after = load_average();
    done.store(true, Ordering::Relaxed);
    let mut cert_lat = Vec::new();
    for t in cert_tasks {
        cert_lat.extend(t.await.unwrap());
    }
    cert_lat.sort();
    lat.sort();
    println!(
        "register /v1/ip over TLS: {} registrations, {} clients, {:.2}s: {:.0} registrations/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        clients,
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    let per_registration = |ticks: u64| ticks as f64 / clock_ticks() / lat.len() as f64 * 1e3;
    let serve = serve_after - serve_before;
    let clients_cpu = (all_after - all_before).saturating_sub(serve);
    let db = pg_before
        .zip(pg_after)
        .map(|(b, a)| {
            format!(
                ", PostgreSQL {:.2} ms",
                per_registration(a.saturating_sub(b))
            )
        })
        .unwrap_or_default();
    println!(
        "CPU per registration: service {:.2} ms{db}, load generator {:.2} ms; load average {load_before} before, {load_after} after",
        per_registration(serve),
        per_registration(clients_cpu),
    );
    if cert_clients > 0 && !cert_lat.is_empty() {
        println!(
            "meanwhile {cert_clients} clients on /v1/cert through a CA taking {} ms: {} certificates; latency p50 {:.1} ms, max {:.1} ms",
            ca_latency.as_millis(),
            cert_lat.len(),
            percentile(&cert_lat, 0.50).as_secs_f64() * 1e3,
            cert_lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    }
    // The services' runtime ends without waiting for its threads (this
    // is an async context, where a runtime may not be dropped).
    serve_rt.shutdown_background();
}
