//! The CloudWatch Logs source against a private moto server on 127.0.0.1:
//! events read back through eos-logs' scan with paging and a time range;
//! Logs Insights as far as moto implements it.
//!
//! The source blocks on its own runtime (eos-logs is synchronous), so these
//! are plain tests that make a runtime only for the setup calls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use eos_aws::cloudwatch::{
    CloudWatchError, CloudWatchSource, InsightsWait, TimeRange, insights_rows, put_events,
};
use eos_aws::moto::MotoServer;
use eos_logs::{BadReason, Format, Input, ScanOptions, TrustedProxies};
use time::OffsetDateTime;

const GROUP: &str = "/eos/usage";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap()
}

/// Midnight UTC four days ago: CloudWatch refuses events over 14 days old.
fn day0() -> OffsetDateTime {
    (OffsetDateTime::now_utc() - Duration::from_secs(4 * 86_400))
        .date()
        .midnight()
        .assume_utc()
}

/// `n` usage-log events, one a minute from `day0()`, over 6 clients and 2
/// spaces behind a proxy, with every 500th line broken.
fn events(n: usize) -> Vec<(i64, String)> {
    let start = day0();
    (0..n)
        .map(|i| {
            let t = start + Duration::from_secs(60 * i as u64);
            let stamp = t
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            let space = if i % 3 == 0 { "globex" } else { "acme" };
            let message = if i % 500 == 499 {
                format!("{{\"timestamp\":\"{stamp}\",\"space\":")
            } else {
                format!(
                    "{{\"timestamp\":\"{stamp}\",\"space\":\"{space}\",\"user\":\"u{}\",\"status\":200,\"source_ip\":\"10.0.0.{}\",\"x_forwarded_for\":\"203.0.113.{}\"}}",
                    i % 4,
                    i % 2,
                    i % 6
                )
            };
            (ms(t), message)
        })
        .collect()
}

fn opts() -> ScanOptions {
    let mut o = ScanOptions::new(Format::Usage);
    o.trusted_proxies = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
    o
}

#[test]
fn events_read_back_through_scan_with_paging() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = moto.aws_options();
    let evs = events(2_500);
    block_on(put_events(&aws, GROUP, "api-1", &evs)).unwrap();

    let source = CloudWatchSource::connect(&aws, GROUP, TimeRange::default(), Some(1000)).unwrap();
    let report = eos_logs::scan(vec![Input::source(Box::new(source))], &opts(), None).unwrap();

    // The same lines from memory: CloudWatch adds nothing and loses nothing.
    let text: String = evs.iter().map(|(_, m)| format!("{m}\n")).collect();
    let local = eos_logs::scan(
        vec![Input::bytes("local", text.into_bytes())],
        &opts(),
        None,
    )
    .unwrap();
    assert_eq!(report.stats.lines, 2_500);
    assert_eq!(report.stats.bad.total(), 5);
    assert_eq!(report.stats.bad.by_reason[&BadReason::InvalidJson], 5);
    assert_eq!(report.observations, local.observations);
    assert_eq!(report.observations.len(), 6, "{report:#?}");
    let first_bad = &report.stats.bad.examples[0];
    assert_eq!(first_bad.source, "cloudwatch:///eos/usage");
    assert_eq!(first_bad.line, 500);
}

#[test]
fn time_range_is_sent_to_cloudwatch_and_honoured() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = moto.aws_options();
    let evs = events(3 * 24 * 60); // three days, one event a minute
    block_on(put_events(&aws, GROUP, "api-1", &evs)).unwrap();
    let day1 = day0() + Duration::from_secs(86_400);
    let range = TimeRange {
        start: Some(day1),
        end: Some(day1 + Duration::from_secs(12 * 3600)),
    };
    let mut source = CloudWatchSource::connect(&aws, GROUP, range, Some(250)).unwrap();
    let mut lines = 0usize;
    while let Some(batch) = eos_logs::LogSource::next_batch(&mut source).unwrap() {
        lines += batch.iter().filter(|b| **b == b'\n').count();
    }
    // Only the 12 hours asked for crossed the network (half-open range).
    assert_eq!(lines, 12 * 60);
    assert!(source.pages() >= 3, "{} pages", source.pages());

    let mut o = opts();
    o.since = range.start;
    o.until = range.end;
    let source = CloudWatchSource::connect(&aws, GROUP, range, None).unwrap();
    let report = eos_logs::scan(vec![Input::source(Box::new(source))], &o, None).unwrap();
    assert_eq!(report.stats.outside_window, 0);
    assert_eq!(report.stats.lines, 12 * 60);
    for obs in &report.observations {
        assert!(obs.first_seen >= day1);
        assert!(obs.last_seen < day1 + Duration::from_secs(12 * 3600));
        assert_eq!(obs.distinct_days, 1);
    }
}

#[test]
fn missing_group_and_bad_names_are_bad_input() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = moto.aws_options();
    let err =
        CloudWatchSource::connect(&aws, "/no/such/group", TimeRange::default(), None).unwrap_err();
    assert!(matches!(err, CloudWatchError::NoSuchGroup(_)), "{err}");
    assert!(err.is_bad_input());
    // moto would accept this name; AWS would not, so eos-sec refuses first.
    let err =
        CloudWatchSource::connect(&aws, "bad group!", TimeRange::default(), None).unwrap_err();
    assert!(matches!(err, CloudWatchError::BadGroupName(..)), "{err}");
}

/// moto runs StartQuery/GetQueryResults but implements only the `fields`,
/// `sort` and `limit` commands of the query language: `stats` is ignored
/// and each event in the time range comes back as a row holding only its
/// `@ptr`. So this checks the call shapes, the polling, the time range and
/// that rows which are not the aggregate are counted as unusable, never
/// guessed at; the query text and the row → observation conversion are
/// checked against the Insights documentation in eos-logs' unit tests.
#[test]
fn insights_call_shapes_against_moto() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = moto.aws_options();
    let evs = events(3 * 24 * 60);
    block_on(put_events(&aws, GROUP, "api-1", &evs)).unwrap();
    let mut o = opts();
    let day1 = day0() + Duration::from_secs(86_400);
    o.since = Some(day1);
    o.until = Some(day1 + Duration::from_secs(3600));
    let query = eos_logs::insights_query(&o).unwrap();
    let range = TimeRange {
        start: o.since,
        end: o.until,
    };
    let wait = InsightsWait {
        max: Duration::from_secs(20),
        poll: Duration::from_millis(100),
    };
    let rows = block_on(insights_rows(
        &aws,
        &[GROUP.to_owned()],
        &query,
        range,
        wait,
    ))
    .unwrap();
    // 60 events in [00:00, 01:00) — Insights' inclusive end was sent as
    // 00:59:59.
    assert_eq!(rows.len(), 60);
    assert!(rows.iter().all(|r| r.iter().any(|(f, _)| f == "@ptr")));
    // moto ignores `stats`: its answer is not an aggregate, and is said so.
    let err = eos_logs::report_from_insights(&rows, "cloudwatch:///eos/usage", &o).unwrap_err();
    assert!(
        matches!(err, eos_logs::ScanError::NotAggregate { rows: 60, .. }),
        "{err}"
    );

    let err = block_on(insights_rows(
        &aws,
        &["/no/such/group".to_owned()],
        &query,
        range,
        wait,
    ))
    .unwrap_err();
    assert!(matches!(err, CloudWatchError::NoSuchGroup(_)), "{err}");
}
