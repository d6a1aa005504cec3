//! CloudWatch Logs Insights: push the per (space, client) count to AWS for
//! large log groups, then turn the aggregate rows into observations with
//! the same space and trusted-proxy rules as a line scan.
//!
//! The query groups by space, host, peer address, X-Forwarded-For and UTC
//! day, so the client can still be resolved here (Insights cannot apply the
//! trusted-proxy walk) and distinct days stay exact. The evidence filters
//! (status classes, excluded statuses, authenticated user) run in AWS.
//! What an aggregate cannot give: status-class counts (only evidence is
//! counted, so they stay 0), example users, and exact distinct users (the
//! largest per-day `count_distinct(user)` of a pair: a lower bound).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;

use eos_identity::SpaceId;

use crate::aggregate::{Agg, Aggregator, ScanReport, report};
use crate::bad::{Bad, BadLine, BadReason, bad};
use crate::error::{OptionsError, ScanError};
use crate::options::{Format, ScanOptions, SpaceRule};
use crate::record::{Raw, Stamp, parse_addr, resolve_client, space_name};
use crate::scan::{ScanStats, check_usable};
use crate::stamp;

/// Result field names of [`insights_query`].
mod field {
    pub const SPACE: &str = "space";
    pub const HOST: &str = "host";
    pub const PEER: &str = "peer";
    pub const XFF: &str = "xff";
    pub const DAY: &str = "day";
    pub const REQUESTS: &str = "requests";
    pub const USERS: &str = "users";
    pub const FIRST: &str = "first_seen";
    pub const LAST: &str = "last_seen";
}

/// The most rows one Logs Insights query returns ("Logs Insights query
/// language quotas": 10,000). A result that size may be truncated.
pub const INSIGHTS_MAX_ROWS: usize = 10_000;

/// The Logs Insights query for a scan with `opts`: the usage log only
/// (the AWS formats are not JSON Insights can read field by field, except
/// WAF, whose Host sits in a headers array it cannot index by name).
pub fn insights_query(opts: &ScanOptions) -> Result<String, OptionsError> {
    opts.validate()?;
    if opts.format != Format::Usage {
        return Err(OptionsError::Source(
            "--insights".to_owned(),
            format!(
                "Logs Insights aggregation reads the usage log only, not {}",
                opts.format
            ),
        ));
    }
    if let SpaceRule::PathPrefix { .. } = opts.space_rule {
        return Err(OptionsError::Source(
            "--insights".to_owned(),
            "the path-prefix space rule needs every path; use a line scan".to_owned(),
        ));
    }
    let f = &opts.fields;
    for (name, path) in [("space", &f.space), ("source_ip", &f.source_ip)] {
        if path.is_empty() {
            return Err(OptionsError::Source(
                "--insights".to_owned(),
                format!("the `{name}` field must be mapped"),
            ));
        }
    }
    let e = &opts.evidence;
    let mut q = String::new();
    let name = |p: &str| quoted(p);
    let _ = write!(
        q,
        "fields datefloor(@timestamp, 1d) as {day}",
        day = field::DAY
    );
    let status = name(&f.status);
    if !f.status.is_empty() {
        let classes: Vec<String> = e
            .status_classes
            .iter()
            .map(|c| {
                let lo = u16::from(*c) * 100;
                format!("({status} >= {lo} and {status} < {})", lo + 100)
            })
            .collect();
        if classes.is_empty() {
            // No class counts: nothing is evidence.
            q.push_str("\n| filter 1 = 0");
        } else {
            let _ = write!(q, "\n| filter {}", classes.join(" or "));
        }
        if !e.exclude_statuses.is_empty() {
            let list: Vec<String> = e.exclude_statuses.iter().map(u16::to_string).collect();
            let _ = write!(q, "\n| filter {status} not in [{}]", list.join(", "));
        }
    }
    if e.require_user && !f.user.is_empty() {
        let user = name(&f.user);
        let _ = write!(
            q,
            "\n| filter ispresent({user}) and {user} != \"\" and {user} != \"-\""
        );
    }
    let mut by = vec![
        format!("{} as {}", name(&f.space), field::SPACE),
        format!("{} as {}", name(&f.source_ip), field::PEER),
    ];
    if !f.host.is_empty() {
        by.push(format!("{} as {}", name(&f.host), field::HOST));
    }
    if !f.x_forwarded_for.is_empty() {
        by.push(format!("{} as {}", name(&f.x_forwarded_for), field::XFF));
    }
    by.push(field::DAY.to_owned());
    let users = if f.user.is_empty() {
        String::new()
    } else {
        format!(", count_distinct({}) as {}", name(&f.user), field::USERS)
    };
    let _ = write!(
        q,
        "\n| stats count(*) as {req}{users}, min(@timestamp) as {first}, max(@timestamp) as {last} by {by}\n| limit {INSIGHTS_MAX_ROWS}",
        req = field::REQUESTS,
        first = field::FIRST,
        last = field::LAST,
        by = by.join(", "),
    );
    Ok(q)
}

/// A field name as Insights reads it: dotted paths into JSON are its own
/// flattened names; anything beyond `[A-Za-z0-9_.]` is backquoted.
fn quoted(path: &str) -> String {
    if path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        path.to_owned()
    } else {
        format!("`{}`", path.replace('`', "``"))
    }
}

/// One result row of GetQueryResults: `(field, value)` pairs.
pub type InsightsRow = Vec<(String, String)>;

/// Turn the rows of [`insights_query`] into a report. Rows that cannot be
/// used are counted like bad lines, located as `source:ROW`; as for a scan,
/// `strict` stops at the first and a result with no usable row fails
/// (unless `allow_unusable`). An answer whose rows are not aggregates at
/// all (no row has `requests`: the query's `stats` did not run) is
/// [`ScanError::NotAggregate`], not a row count of bad lines.
pub fn report_from_insights(
    rows: &[InsightsRow],
    source: &str,
    opts: &ScanOptions,
) -> Result<ScanReport, ScanError> {
    let has = |row: &InsightsRow, name: &str| row.iter().any(|(f, _)| f == name);
    if !rows.is_empty() && !rows.iter().any(|r| has(r, field::REQUESTS)) {
        let names: BTreeSet<&str> = rows.iter().flatten().map(|(f, _)| f.as_str()).collect();
        let fields: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        return Err(ScanError::NotAggregate {
            input: source.to_owned(),
            rows: rows.len(),
            fields: fields.join(", "),
        });
    }
    let mut all = Aggregator::default();
    let mut stats = ScanStats {
        inputs: 1,
        ..ScanStats::default()
    };
    let mut spaces: HashMap<String, Option<SpaceId>> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        stats.lines += 1;
        match one_row(row, opts, &mut spaces) {
            Ok((space, ip, requests, agg)) => {
                stats.records += requests;
                stats.evidence += requests;
                all.add_agg(&space, ip, agg);
            }
            Err(b) => {
                *stats.bad.by_reason.entry(b.reason).or_default() += 1;
                let bad = BadLine {
                    source: source.to_owned(),
                    line: i as u64 + 1,
                    reason: b.reason,
                    detail: b.detail,
                };
                if opts.strict {
                    return Err(ScanError::Strict(bad));
                }
                if stats.bad.examples.len() < opts.max_bad_examples.max(1) {
                    stats.bad.examples.push(bad);
                }
            }
        }
    }
    check_usable(&stats, opts)?;
    Ok(report(vec![all], stats, opts))
}

fn one_row(
    row: &InsightsRow,
    opts: &ScanOptions,
    spaces: &mut HashMap<String, Option<SpaceId>>,
) -> Result<(SpaceId, IpAddr, u64, Agg), Bad> {
    let get = |name: &str| {
        row.iter()
            .find(|(f, _)| f == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let need = |name: &'static str| {
        get(name).ok_or_else(|| Bad::new(BadReason::MissingField, format!("no `{name}` in row")))
    };
    let requests = need(field::REQUESTS)?;
    let Ok(requests) = requests.parse::<u64>() else {
        return bad(BadReason::MissingField, "request count", requests);
    };
    let first = insights_time(need(field::FIRST)?)?;
    let last = insights_time(need(field::LAST)?)?;
    let day = insights_time(need(field::DAY)?)?;
    let peer_text = need(field::PEER)?;
    let Some(peer) = parse_addr(peer_text, false) else {
        return bad(BadReason::BadAddress, "peer address", peer_text);
    };
    let raw = Raw {
        space: get(field::SPACE).map(Into::into),
        host: get(field::HOST).map(Into::into),
        ..Raw::default()
    };
    let client = resolve_client(peer, get(field::XFF), &opts.trusted_proxies)?;
    let name = space_name(&raw, &opts.space_rule)?;
    let space = spaces
        .entry(name.to_string())
        .or_insert_with(|| SpaceId::new(&name).ok())
        .clone();
    let Some(space) = space else {
        return bad(BadReason::InvalidSpace, "space", &name);
    };
    let users = get(field::USERS)
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or(0);
    let agg = Agg::from_aggregate(
        requests,
        first.to_datetime()?,
        last.to_datetime()?,
        day.secs.div_euclid(86_400),
        users,
    );
    Ok((space, client, requests, agg))
}

/// Insights prints times as `2026-11-02 08:01:37.001` (UTC, no zone);
/// epoch milliseconds and RFC 3339 are accepted too.
fn insights_time(s: &str) -> Result<Stamp, Bad> {
    if let Ok(ms) = s.parse::<i64>() {
        return stamp::epoch_millis(ms).ok_or_else(|| Bad::new(BadReason::BadTime, s.to_owned()));
    }
    stamp::rfc3339(s)
        .or_else(|| stamp::rfc3339(&format!("{s}Z")))
        .map_or_else(|| bad(BadReason::BadTime, "time", s), Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::TrustedProxies;

    fn row(pairs: &[(&str, &str)]) -> InsightsRow {
        pairs
            .iter()
            .map(|(f, v)| ((*f).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn query_for_the_default_mapping() {
        let q = insights_query(&ScanOptions::new(Format::Usage)).unwrap();
        assert_eq!(
            q,
            "fields datefloor(@timestamp, 1d) as day\n\
             | filter (status >= 200 and status < 300) or (status >= 300 and status < 400)\n\
             | filter status not in [401, 403, 429]\n\
             | filter ispresent(user) and user != \"\" and user != \"-\"\n\
             | stats count(*) as requests, count_distinct(user) as users, min(@timestamp) as first_seen, max(@timestamp) as last_seen by space as space, source_ip as peer, host as host, x_forwarded_for as xff, day\n\
             | limit 10000"
        );
    }

    #[test]
    fn query_quotes_odd_names_and_refuses_other_formats() {
        let mut o = ScanOptions::new(Format::Usage);
        o.fields.x_forwarded_for = "req.headers.x-forwarded-for".to_owned();
        o.evidence.require_user = false;
        let q = insights_query(&o).unwrap();
        assert!(q.contains("`req.headers.x-forwarded-for` as xff"), "{q}");
        assert!(!q.contains("ispresent"), "{q}");
        assert!(insights_query(&ScanOptions::new(Format::Alb)).is_err());
        let mut o = ScanOptions::new(Format::Usage);
        o.space_rule = SpaceRule::PathPrefix {
            prefix: "/s/".to_owned(),
        };
        assert!(insights_query(&o).is_err());
    }

    #[test]
    fn rows_become_observations_with_the_proxy_rule() {
        let mut o = ScanOptions::new(Format::Usage);
        o.trusted_proxies = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        let base = [
            ("space", "acme"),
            ("peer", "10.0.1.5"),
            ("host", "acme.entityos.cloud"),
            ("requests", "3"),
            ("users", "2"),
        ];
        let mut a = row(&base);
        a.extend(row(&[
            ("xff", "203.0.113.10, 10.0.1.6"),
            ("day", "2026-11-02 00:00:00.000"),
            ("first_seen", "2026-11-02 08:01:37.001"),
            ("last_seen", "2026-11-02 09:00:00.000"),
        ]));
        let mut b = row(&base);
        b.extend(row(&[
            ("xff", "203.0.113.10"),
            ("day", "2026-11-03 00:00:00.000"),
            ("first_seen", "2026-11-03 08:00:00.000"),
            ("last_seen", "1793700000000"),
        ]));
        let garbage = row(&[("@ptr", "CmAKJgoi")]);
        let bad_xff = {
            let mut r = row(&base);
            r.extend(row(&[
                ("xff", "203.0.113.10, junk"),
                ("day", "2026-11-03 00:00:00.000"),
                ("first_seen", "2026-11-03 08:00:00.000"),
                ("last_seen", "2026-11-03 08:00:00.000"),
            ]));
            r
        };
        let rows = [a, b, garbage, bad_xff];
        let r = report_from_insights(&rows, "cloudwatch:g", &o).unwrap();
        assert_eq!(r.observations.len(), 1);
        let obs = &r.observations[0];
        assert_eq!(obs.ip.to_string(), "203.0.113.10");
        assert_eq!(obs.requests, 6);
        assert_eq!(obs.distinct_days, 2);
        assert_eq!(obs.distinct_users, 2);
        assert_eq!(
            obs.first_seen,
            time::macros::datetime!(2026-11-02 08:01:37.001 UTC)
        );
        assert_eq!(
            obs.last_seen,
            time::macros::datetime!(2026-11-03 10:00:00 UTC)
        );
        assert_eq!(r.stats.lines, 4);
        assert_eq!(r.stats.bad.total(), 2);
        let where_: Vec<String> = r.stats.bad.examples.iter().map(|b| b.to_string()).collect();
        assert_eq!(
            where_,
            [
                "cloudwatch:g:3: missing_field: no `requests` in row",
                "cloudwatch:g:4: bad_forwarded_for: x-forwarded-for entry `junk`",
            ]
        );
        // --strict stops at the first unusable row.
        o.strict = true;
        match report_from_insights(&rows, "cloudwatch:g", &o) {
            Err(ScanError::Strict(first)) => assert_eq!(first.line, 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_answer_of_events_is_not_an_aggregate() {
        let o = ScanOptions::new(Format::Usage);
        let events: Vec<InsightsRow> = (0..3)
            .map(|i| row(&[("@ptr", &format!("Cm{i}")), ("@timestamp", "1")]))
            .collect();
        let err = report_from_insights(&events, "cloudwatch:///eos/usage", &o).unwrap_err();
        assert!(
            matches!(err, ScanError::NotAggregate { rows: 3, .. }),
            "{err}"
        );
        assert!(!err.is_bad_input());
        assert_eq!(
            err.to_string(),
            "cloudwatch:///eos/usage: the Logs Insights answer is not an aggregate: 3 rows with the fields `@ptr`, `@timestamp`, none with `requests`"
        );
        // No rows at all is an empty aggregate.
        let r = report_from_insights(&[], "cloudwatch:///eos/usage", &o).unwrap();
        assert_eq!(r.stats.lines, 0);
    }

    #[test]
    fn an_answer_with_no_usable_row_says_what_to_check() {
        let mut o = ScanOptions::new(Format::Usage);
        let unusable = row(&[("requests", "3"), ("peer", "10.0.1.5")]);
        let err = report_from_insights(std::slice::from_ref(&unusable), "cw", &o).unwrap_err();
        assert!(
            matches!(err, ScanError::NothingUsable { lines: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("[logs.fields]"), "{err}");
        o.allow_unusable = true;
        let r = report_from_insights(&[unusable], "cw", &o).unwrap();
        assert_eq!(r.stats.bad.total(), 1);
    }
}
