//! Renewal benchmark (issue 24; not a timed test): against one running
//! service over loopback TLS, in the same run, C concurrent clients first
//! issue N certificates with security codes (`POST /v1/cert`), then renew N
//! certificates by presenting them (`POST /v1/renew`, same key). Every
//! request is a new TLS handshake (a fresh client per request: a renew
//! agent connects once a day, not over a kept-alive connection; the
//! renewal's handshake carries the client certificate). CSRs are made
//! before the clock starts. Prints each rate, latency percentiles and the
//! ratio renewals/s ÷ issuances/s.
//!
//! cargo bench -p eos-register --bench renew -- [--clients C] [--requests N]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{Harness, Setup, bench_arg as arg, csr, percentile};
use eos_codes::Purpose;
use serde_json::json;

/// One request's work: its client (made before the clock starts, not yet
/// connected), path and body.
type Job = (reqwest::Client, &'static str, serde_json::Value);

/// Run `jobs` on `clients` concurrent tasks; (per-second rate, sorted
/// latencies, elapsed).
async fn run(h: &Arc<Harness>, jobs: Vec<Job>, clients: usize) -> (f64, Vec<Duration>, Duration) {
    let jobs = Arc::new(tokio::sync::Mutex::new(jobs.into_iter()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (h, jobs) = (h.clone(), jobs.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let Some((client, path, body)) = jobs.lock().await.next() else {
                    return lat;
                };
                let t = Instant::now();
                let (status, answer) = h.post_with(&client, path, body, &[]).await.unwrap();
                assert_eq!(status, 200, "{path}: {answer}");
                lat.push(t.elapsed());
                // The connection closes with its only client.
                drop(client);
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    lat.sort();
    (lat.len() as f64 / elapsed.as_secs_f64(), lat, elapsed)
}

fn report(
    what: &str,
    n: usize,
    clients: usize,
    (rate, lat, elapsed): &(f64, Vec<Duration>, Duration),
) {
    println!(
        "{what}: {n} in {:.2}s with {clients} clients: {rate:.0}/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        elapsed.as_secs_f64(),
        percentile(lat, 0.50).as_secs_f64() * 1e3,
        percentile(lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs this without --bench: a smoke run.
    let measuring = std::env::args().any(|a| a == "--bench");
    let clients = arg("--clients").unwrap_or(if measuring { 8 } else { 2 });
    let requests = arg("--requests").unwrap_or(if measuring { 1000 } else { 10 });
    let mut setup = Setup::default();
    // The benchmark measures the service, not the limiters in front of it.
    let big = 1_000_000u32;
    setup.options.limits.global_per_second = big.try_into().unwrap();
    setup.options.limits.global_burst = big.try_into().unwrap();
    setup.options.limits.per_source_per_minute = big.try_into().unwrap();
    setup.options.limits.per_source_burst = big.try_into().unwrap();
    let h = Arc::new(Harness::start_with(setup).await);
    let plain = || h.client_without_identity();

    // Issuance with codes: a code and a fresh-key CSR per request.
    let issue_jobs: Vec<Job> = (0..requests)
        .map(|i| {
            let code = h.issue_for(&format!("i{i}"), &[Purpose::RegisterCert]);
            (plain(), "/v1/cert", json!({ "code": code, "csr": csr().0 }))
        })
        .collect();
    // Renewal: certificates 20 h into a 24 h lifetime (in their window),
    // each renewed once with a CSR for its own key, presented by its client.
    let day = Duration::from_secs(86400);
    let then = SystemTime::now() - Duration::from_secs(20 * 3600);
    let mut renew_jobs: Vec<Job> = Vec::new();
    for i in 0..requests {
        let (pem, _, key) = h
            .issued_at(&format!("r{i}"), eos_ca::Profile::Service, day, then)
            .await;
        let params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        renew_jobs.push((
            h.client_with(&pem, &key),
            "/v1/renew",
            json!({ "csr": csr }),
        ));
    }

    let issued = run(&h, issue_jobs, clients).await;
    report(
        "issue with a code (POST /v1/cert)",
        requests,
        clients,
        &issued,
    );
    let renewed = run(&h, renew_jobs, clients).await;
    report(
        "renew by the certificate (POST /v1/renew)",
        requests,
        clients,
        &renewed,
    );
    println!(
        "ratio renewals/s / issuances/s: {:.2}; p50 latency ratio: {:.2}",
        renewed.0 / issued.0,
        percentile(&renewed.1, 0.5).as_secs_f64() / percentile(&issued.1, 0.5).as_secs_f64()
    );
}
