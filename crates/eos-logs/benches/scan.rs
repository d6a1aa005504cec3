//! Criterion bench of a whole usage-log scan on an in-memory buffer: the
//! quick loop for work on the hot path (reader, parser threads, aggregate).
//! The peer comparison on 1 GiB files is `cargo xtask bench-peers --only logs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eos_logs::{Format, Input, LogRecord, ScanOptions, fold_records, scan};

/// Deterministic xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Zipf-like rank in `0..n`, as in the bench-peers generator.
    fn zipf(&mut self, n: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * u * n as f64) as u64).min(n - 1)
    }
}

/// About `bytes` of usage log in the bench-peers shape: 300 spaces,
/// `addresses` clients, a line per request.
fn usage_log(bytes: usize, addresses: u64) -> Vec<u8> {
    let mut rng = Rng(0x10c5);
    let mut out = String::with_capacity(bytes + 512);
    let mut i: u64 = 0;
    while out.len() < bytes {
        let a = rng.zipf(addresses);
        let space = if rng.next().is_multiple_of(16) {
            rng.zipf(300)
        } else {
            a % 300
        };
        let secs = i / 4;
        let _ = writeln!(
            out,
            "{{\"timestamp\":\"2026-11-{:02}T{:02}:{:02}:{:02}.{:03}Z\",\"space\":\"space-{space:03}\",\"user\":\"user{}@space-{space:03}.example\",\"method\":\"POST\",\"path\":\"/rpc/core_space_info\",\"status\":{},\"source_ip\":\"{}.{}.{}.{}\",\"host\":\"space-{space:03}.entityos.cloud\",\"duration_ms\":{},\"request_id\":\"req-{i:010}\"}}",
            1 + secs / 86_400 % 30,
            secs / 3600 % 24,
            secs / 60 % 60,
            secs % 60,
            rng.next() % 1000,
            rng.next() % 7,
            if rng.next().is_multiple_of(10) {
                302
            } else {
                200
            },
            1 + a % 223,
            (a >> 8) & 0xff,
            a & 0xff,
            1 + (a >> 16) % 254,
            rng.next() % 900,
        );
        i += 1;
    }
    out.into_bytes()
}

fn bench(c: &mut Criterion) {
    let data = usage_log(16 << 20, 40_000);
    let opts = ScanOptions::new(Format::Usage);
    let mut g = c.benchmark_group("scan");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("usage 16 MiB", |b| {
        b.iter(|| {
            let r = scan(vec![Input::bytes("bench", data.clone())], &opts, None).unwrap();
            black_box(r.observations.len())
        });
    });
    // The same scan without the aggregate: reading, parsing and resolving
    // only. The difference is what the pair tables and the report cost.
    g.bench_function("usage 16 MiB, records only", |b| {
        b.iter(|| {
            let (counts, stats) = fold_records(
                vec![Input::bytes("bench", data.clone())],
                &opts,
                None,
                || 0u64,
                |n: &mut u64, r: &LogRecord<'_>| *n += u64::from(r.status.unwrap_or(0)),
            )
            .unwrap();
            black_box((counts, stats.records))
        });
    });
    // The floor under any scan that checks its lines: every line's UTF-8
    // and JSON syntax checked by serde_json on two threads, the buffer
    // already in memory, nothing extracted. docs/PERFORMANCE.md compares it
    // with `cat` for the "within 3× of cat" target.
    g.bench_function("usage 16 MiB, JSON syntax check only, 2 threads", |b| {
        b.iter(|| {
            let mid = data.len() / 2;
            let mid = mid + memchr::memchr(b'\n', &data[mid..]).map_or(0, |k| k + 1);
            let (front, back) = data.split_at(mid);
            let valid = std::thread::scope(|s| {
                let other = s.spawn(|| json_lines(back));
                json_lines(front) + other.join().unwrap()
            });
            black_box(valid)
        });
    });
    g.finish();
}

/// Lines of `data` (each ending in a newline) that are UTF-8 JSON.
fn json_lines(data: &[u8]) -> u64 {
    let mut start = 0;
    let mut valid = 0;
    for end in memchr::memchr_iter(b'\n', data) {
        let line = &data[start..end];
        start = end + 1;
        valid += u64::from(
            std::str::from_utf8(line)
                .is_ok_and(|s| serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()),
        );
    }
    valid
}

criterion_group!(benches, bench);
criterion_main!(benches);
