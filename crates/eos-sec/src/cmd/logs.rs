//! `eos-sec logs scan`: usage/ALB/CloudFront/WAF logs (files, directories,
//! globs, gzip, stdin, CloudWatch Logs) → per (space, address) observations.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::net::IpAddr;

use anyhow::Context;
use clap::{Args, Subcommand};
use eos_logs::{Observation, Progress, ScanReport};
use serde::Serialize;
use time::OffsetDateTime;

use crate::cmd::aws::{AwsArgs, aws_options};
use crate::cmd::scan::{CLOUDWATCH, ScanFlags};

use crate::exit::bad_input;
use crate::output::{emit, emit_json, emit_parts};

/// Work with access logs.
#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Count who calls each space: per (space, client address) evidence
    /// from usage, ALB, CloudFront or WAF logs. Bad lines are counted by
    /// reason and the run goes on (unless --strict).
    Scan(ScanArgs),
}

/// Arguments of `logs scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    pub scan: ScanFlags,
    /// Print the observations as CSV instead of the human report
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// Rows in the "top" tables of the human report
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// Record the observations in the state store (replacing the stored
    /// ones of every space found), for `eos-sec plan`
    #[arg(long)]
    pub save: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Files, directories, globs, `-` for stdin, or `cloudwatch://LOG-GROUP`
    /// (events read with FilterLogEvents over --since/--until)
    #[arg(required = true, value_name = "SOURCE")]
    pub sources: Vec<String>,
}

pub fn run(cmd: LogsCommand, ctx: &crate::Ctx) -> anyhow::Result<()> {
    match cmd {
        LogsCommand::Scan(args) => scan(args, ctx),
    }
}

fn scan(args: ScanArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let opts = args.scan.options(ctx)?;
    if args.aws.is_set() && !args.sources.iter().any(|s| s.starts_with(CLOUDWATCH)) {
        return Err(bad_input!(
            "--region, --profile and --endpoint-url apply to {CLOUDWATCH} sources only"
        ));
    }
    let aws = aws_options(&args.aws, &ctx.config.backend);
    let bar = Bar::on_terminal();
    let report = args.scan.read(
        &args.sources,
        &opts,
        &aws,
        bar.as_ref().map(|b| b as &dyn Progress),
    )?;
    if args.save {
        let mut store = ctx.store()?;
        eos_store::rules::replace_observations(
            &mut store,
            &report.observations,
            &crate::cmd::actor(),
        )
        .context("recording the observations")?;
    }
    let shown = if ctx.json {
        emit_json(&report)
    } else if args.csv {
        csv(&report.observations, opts.threads).and_then(|parts| emit_parts(&parts))
    } else {
        emit(&human(&report, args.top, args.save))
    };
    // The process ends next: the system takes the report's memory back at
    // once, where freeing a large report observation by observation took
    // tens of milliseconds on one thread (measured with `perf record`).
    std::mem::forget(report);
    shown
}

/// A progress bar on stderr, only when stderr is a terminal.
struct Bar(indicatif::ProgressBar);

impl Bar {
    fn on_terminal() -> Option<Bar> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        Some(Bar(bar))
    }
}

impl Progress for Bar {
    fn start(&self, total_bytes: Option<u64>) {
        let style = match total_bytes {
            Some(total) => {
                self.0.set_length(total);
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
            }
            None => indicatif::ProgressStyle::with_template(
                "{spinner} {binary_bytes} {binary_bytes_per_sec}",
            ),
        };
        if let Ok(style) = style {
            self.0.set_style(style);
        }
    }
    fn position(&self, bytes: u64) {
        self.0.set_position(bytes);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// One CSV row per observation; column names match the JSON fields.
#[derive(Serialize)]
struct CsvRow<'a> {
    space: &'a str,
    ip: String,
    requests: u64,
    first_seen: String,
    last_seen: String,
    distinct_days: u32,
    distinct_users: u64,
    /// `;`-separated.
    example_users: String,
    s1xx: u64,
    s2xx: u64,
    s3xx: u64,
    s4xx: u64,
    s5xx: u64,
    waf_blocked: u64,
    flag: &'a str,
}

/// Below this many observations the CSV is written on the calling thread.
const PARALLEL_CSV: usize = 20_000;

/// The observations as CSV, formatted in `threads` slices at once (the
/// header with the first): the parts, in order.
fn csv(observations: &[Observation], threads: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let parts = if observations.len() < PARALLEL_CSV {
        1
    } else {
        threads.max(1)
    };
    let slices: Vec<&[Observation]> = observations
        .chunks(observations.len().div_ceil(parts).max(1))
        .collect();
    let written: Vec<anyhow::Result<Vec<u8>>> = if slices.len() <= 1 {
        vec![csv_rows(observations, true)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = slices
                .iter()
                .enumerate()
                .map(|(i, slice)| s.spawn(move || csv_rows(slice, i == 0)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    };
    written.into_iter().collect()
}

/// About the bytes of one CSV row, so a part's buffer rarely grows.
const CSV_ROW_BYTES: usize = 160;

/// The CSV header: [`CsvRow`]'s fields. Written by hand rather than by the
/// csv crate, which writes a header only with the first row.
const CSV_COLUMNS: [&str; 15] = [
    "space",
    "ip",
    "requests",
    "first_seen",
    "last_seen",
    "distinct_days",
    "distinct_users",
    "example_users",
    "s1xx",
    "s2xx",
    "s3xx",
    "s4xx",
    "s5xx",
    "waf_blocked",
    "flag",
];

fn csv_rows(observations: &[Observation], header: bool) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::with_capacity(observations.len() * CSV_ROW_BYTES));
    if header {
        w.write_record(CSV_COLUMNS)?;
    }
    for o in observations {
        w.serialize(csv_row(o))?;
    }
    w.into_inner().context("writing CSV")
}

fn csv_row(o: &Observation) -> CsvRow<'_> {
    let users: Vec<&str> = o.example_users.iter().map(|u| u.as_str()).collect();
    CsvRow {
        space: o.space.as_str(),
        ip: o.ip.to_string(),
        requests: o.requests,
        first_seen: eos_identity::rfc3339_exact(o.first_seen),
        last_seen: eos_identity::rfc3339_exact(o.last_seen),
        distinct_days: o.distinct_days,
        distinct_users: o.distinct_users,
        example_users: users.join(";"),
        s1xx: o.status.s1xx,
        s2xx: o.status.s2xx,
        s3xx: o.status.s3xx,
        s4xx: o.status.s4xx,
        s5xx: o.status.s5xx,
        waf_blocked: o.status.waf_blocked,
        flag: o.flag.map_or("", eos_ipset::SpecialRange::as_str),
    }
}

/// `2026-11-02 08:01:37Z`: to the second, for people.
fn short_time(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    t.format(&f).unwrap_or_else(|_| t.to_string())
}

/// `1234567` → `1.2 MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss)]
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS.get(unit).copied().unwrap_or("B"))
    }
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn table(out: &mut String, rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::from("  ");
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let w = widths.get(c).copied().unwrap_or(0);
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// Addresses and requests per space. Observations come sorted by space:
/// one map update per run of a space, not per observation (the map still
/// adds up the runs if they are not).
fn space_totals(observations: &[Observation]) -> BTreeMap<&str, (u64, u64)> {
    observations
        .chunk_by(|a, b| a.space == b.space)
        .fold(BTreeMap::new(), |mut m, run| {
            if let Some(first) = run.first() {
                let e = m.entry(first.space.as_str()).or_insert((0, 0));
                e.0 += run.len() as u64;
                e.1 += run.iter().map(|o| o.requests).sum::<u64>();
            }
            m
        })
}

/// The `top` observations with the most requests, then by (space,
/// address). That order is total, so selecting the first `top` and sorting
/// only those gives the rows a full sort would, without sorting every
/// observation on the main thread.
fn top_addresses(observations: &[Observation], top: usize) -> Vec<&Observation> {
    let order = |a: &&Observation, b: &&Observation| {
        b.requests
            .cmp(&a.requests)
            .then((&a.space, a.ip).cmp(&(&b.space, b.ip)))
    };
    let mut obs: Vec<&Observation> = observations.iter().collect();
    if top < obs.len() {
        if let Some(last) = top.checked_sub(1) {
            obs.select_nth_unstable_by(last, order);
        }
        obs.truncate(top);
    }
    obs.sort_by(order);
    obs
}

fn human(r: &ScanReport, top: usize, saved: bool) -> String {
    let s = &r.stats;
    let mut out = String::new();
    let window = match (r.since, r.until) {
        (None, None) => String::new(),
        (a, b) => format!(
            ", window {} to {}",
            a.map_or("-".to_owned(), short_time),
            b.map_or("-".to_owned(), short_time)
        ),
    };
    let _ = writeln!(
        out,
        "scanned {} input(s) as {}: {} lines, {}{window}",
        s.inputs,
        r.format,
        s.lines,
        size(s.bytes)
    );
    let _ = writeln!(
        out,
        "  records {} ({} outside the time window), evidence requests {}",
        s.records, s.outside_window, s.evidence
    );
    let _ = writeln!(
        out,
        "  unusable lines {} ({:.1}% of lines)",
        s.bad.total(),
        s.unusable_share() * 100.0
    );
    let spaces = space_totals(&r.observations);
    let _ = writeln!(
        out,
        "\nobservations: {} (space, address) pairs in {} space(s); {} pairs seen, {} without evidence, {} below the thresholds",
        r.observations.len(),
        spaces.len(),
        r.pairs_seen,
        r.pairs_without_evidence,
        r.pairs_below_threshold
    );
    if !spaces.is_empty() {
        let mut by_requests: Vec<_> = spaces.into_iter().collect();
        by_requests.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(a.0.cmp(b.0)));
        let _ = writeln!(out, "\ntop spaces");
        let mut rows = vec![vec!["space".into(), "addresses".into(), "requests".into()]];
        for (space, (addrs, reqs)) in by_requests.into_iter().take(top) {
            rows.push(vec![space.into(), addrs.to_string(), reqs.to_string()]);
        }
        table(&mut out, &rows);

        let obs = top_addresses(&r.observations, top);
        let _ = writeln!(out, "\ntop addresses");
        let mut rows = vec![
            [
                "space",
                "address",
                "requests",
                "days",
                "users",
                "last seen",
                "flag",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for o in obs.into_iter().take(top) {
            rows.push(vec![
                o.space.to_string(),
                o.ip.to_string(),
                o.requests.to_string(),
                o.distinct_days.to_string(),
                if r.format.has_users() {
                    o.distinct_users.to_string()
                } else {
                    "-".to_owned()
                },
                short_time(o.last_seen),
                o.flag
                    .map_or("", eos_ipset::SpecialRange::as_str)
                    .to_owned(),
            ]);
        }
        table(&mut out, &rows);
    }
    flagged(&mut out, &r.observations);
    if s.bad.total() > 0 {
        let _ = writeln!(out, "\nunusable lines by reason");
        let rows: Vec<Vec<String>> = s
            .bad
            .by_reason
            .iter()
            .map(|(reason, n)| vec![reason.to_string(), n.to_string()])
            .collect();
        table(&mut out, &rows);
        let _ = writeln!(out, "first {} unusable lines:", s.bad.examples.len());
        for b in &s.bad.examples {
            let _ = writeln!(out, "  {b}");
        }
    }
    if saved {
        let _ = writeln!(
            out,
            "\nrecorded {} observations in the state store",
            r.observations.len()
        );
    }
    out
}

/// Special-range addresses, by range: usually a proxy missing from
/// `trusted_proxies` (private, CGNAT) or test data (documentation).
fn flagged(out: &mut String, observations: &[Observation]) {
    /// Addresses shown per range; the rest are counted.
    const SHOWN: usize = 5;
    // Per range: the distinct addresses, and the first SHOWN of them in
    // report order. A set, not a search of a list: a scan can flag tens of
    // thousands of addresses (documentation ranges in test data).
    let mut by_range: BTreeMap<&str, (HashSet<IpAddr>, Vec<IpAddr>)> = BTreeMap::new();
    for o in observations {
        if let Some(f) = o.flag {
            let (seen, first) = by_range.entry(f.as_str()).or_default();
            if seen.insert(o.ip) && first.len() < SHOWN {
                first.push(o.ip);
            }
        }
    }
    if by_range.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nflagged addresses (special ranges: usually a proxy missing from --trusted-proxy / [logs] trusted_proxies)"
    );
    let rows: Vec<Vec<String>> = by_range
        .into_iter()
        .map(|(range, (seen, first))| {
            let n = seen.len();
            let mut shown: Vec<String> = first.iter().map(IpAddr::to_string).collect();
            if n > SHOWN {
                shown.push(format!("... ({n} in all)"));
            }
            vec![range.to_owned(), shown.join(", ")]
        })
        .collect();
    table(out, &rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation(i: u32) -> Observation {
        let t = OffsetDateTime::from_unix_timestamp(1_793_491_200 + i64::from(i))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Observation {
            space: eos_identity::SpaceId::new(&format!("space-{:03}", i % 300))
                .unwrap_or_else(|e| panic!("{e}")),
            ip: std::net::IpAddr::V4(i.into()),
            requests: u64::from(i) + 1,
            first_seen: t,
            last_seen: t,
            distinct_days: 1,
            distinct_users: u64::from(i % 3),
            example_users: (0..i % 3)
                .map(|u| {
                    eos_identity::UserId::new(&format!("user{u}@x"))
                        .unwrap_or_else(|e| panic!("{e}"))
                })
                .collect(),
            status: eos_logs::StatusCounts::default(),
            flag: eos_ipset::classify_addr(std::net::IpAddr::V4(i.into())),
        }
    }

    #[test]
    fn csv_in_parallel_slices_is_the_csv_of_one_thread() {
        let many: Vec<Observation> = (0..PARALLEL_CSV as u32 * 2 + 7).map(observation).collect();
        let text = |observations: &[Observation], threads| {
            let parts = csv(observations, threads).unwrap_or_else(|e| panic!("{e}"));
            String::from_utf8(parts.concat()).unwrap_or_else(|e| panic!("{e}"))
        };
        let one = text(&many, 1);
        assert_eq!(one.lines().count(), many.len() + 1);
        assert!(one.starts_with("space,ip,requests,"));
        for threads in [2, 3, 8] {
            assert_eq!(text(&many, threads), one, "{threads} threads");
        }
        // No observations: the header alone.
        assert_eq!(text(&[], 4), format!("{}\n", CSV_COLUMNS.join(",")));
        // The header is what the csv crate writes for a row.
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(csv_row(&many[0]))
            .unwrap_or_else(|e| panic!("{e}"));
        let written = w.into_inner().unwrap_or_else(|e| panic!("{e}"));
        let written = String::from_utf8(written).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(written.lines().next(), Some(CSV_COLUMNS.join(",").as_str()));
    }

    #[test]
    fn top_addresses_and_space_totals_match_a_full_sort_and_a_plain_fold() {
        // Many ties on requests; spaces out of order, so runs repeat.
        let mut many: Vec<Observation> = (0..2_000u32)
            .map(|i| Observation {
                requests: u64::from(i.wrapping_mul(7_919) % 50),
                ..observation(i)
            })
            .collect();
        many.reverse();
        let mut full: Vec<&Observation> = many.iter().collect();
        full.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then((&a.space, a.ip).cmp(&(&b.space, b.ip)))
        });
        for top in [0, 1, 2, 10, 1_999, 2_000, 2_050] {
            let want: Vec<&Observation> = full.iter().copied().take(top).collect();
            assert_eq!(top_addresses(&many, top), want, "top {top}");
        }
        let mut plain: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for o in &many {
            let e = plain.entry(o.space.to_string()).or_insert((0, 0));
            e.0 += 1;
            e.1 += o.requests;
        }
        let owned = |m: BTreeMap<&str, (u64, u64)>| -> BTreeMap<String, (u64, u64)> {
            m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
        };
        assert_eq!(owned(space_totals(&many)), plain);
        many.sort_by(|a, b| (&a.space, a.ip).cmp(&(&b.space, b.ip)));
        assert_eq!(owned(space_totals(&many)), plain);
    }

    #[test]
    fn flagged_shows_the_first_five_distinct_addresses_and_counts_all() {
        // 10.0.0.1..=10.0.0.8 (private), each in two spaces, and a public one.
        let ip = |i: u32| std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        let mut obs: Vec<Observation> = Vec::new();
        for space in ["alpha", "beta"] {
            for i in 1..=8 {
                obs.push(Observation {
                    space: eos_identity::SpaceId::new(space).unwrap_or_else(|e| panic!("{e}")),
                    ip: ip(i),
                    flag: eos_ipset::classify_addr(ip(i)),
                    ..observation(1)
                });
            }
        }
        obs.push(Observation {
            ip: std::net::IpAddr::V4(std::net::Ipv4Addr::new(8, 8, 8, 8)),
            flag: None,
            ..observation(2)
        });
        let mut out = String::new();
        flagged(&mut out, &obs);
        assert!(
            out.contains(
                "private  10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 10.0.0.5, ... (8 in all)"
            ),
            "{out}"
        );
        assert!(!out.contains("8.8.8.8"), "{out}");
        let mut none = String::new();
        flagged(&mut none, &obs[16..]);
        assert_eq!(none, "");
    }
}
