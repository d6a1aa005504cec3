//! `eos-sec logs scan`: usage/ALB/CloudFront/WAF logs (files, directories,
//! globs, gzip, stdin, CloudWatch Logs) → per (space, address) observations.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use eos_aws::cloudwatch::{
    CloudWatchError, CloudWatchSource, InsightsWait, TimeRange, insights_rows,
};
use eos_logs::{
    Format, Input, Observation, OptionsError, Progress, ScanOptions, ScanReport, TrustedProxies,
};
use serde::Serialize;
use time::OffsetDateTime;

use crate::cmd::aws::{AwsArgs, aws_options};

use crate::exit::bad_input;
use crate::output::{emit, emit_json};

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
    /// Log format of every source (docs/LOG-FORMATS.md)
    #[arg(long, value_parser = parse_format)]
    pub format: Format,
    /// Print the observations as CSV instead of the human report
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// Only requests at or after this time: RFC 3339 or YYYY-MM-DD (UTC)
    /// [default: no bound]
    #[arg(long, value_parser = parse_bound)]
    pub since: Option<OffsetDateTime>,
    /// Only requests before this time: RFC 3339 or YYYY-MM-DD (UTC)
    /// [default: no bound]
    #[arg(long, value_parser = parse_bound)]
    pub until: Option<OffsetDateTime>,
    /// Stop with exit code 2 at the first bad line, naming file:line
    #[arg(long)]
    pub strict: bool,
    /// A proxy whose X-Forwarded-For entries are believed (CIDR or address;
    /// repeatable; replaces `[logs] trusted_proxies`) [default: none: the
    /// peer is the client]
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxy: Vec<String>,
    /// Requests a (space, address) pair needs to be reported
    /// [default: `[logs.evidence] min_requests`, else 1]
    #[arg(long, value_name = "N")]
    pub min_requests: Option<u64>,
    /// Distinct UTC days with evidence a pair needs to be reported
    /// [default: `[logs.evidence] min_distinct_days`, else 1]
    #[arg(long, value_name = "N")]
    pub min_days: Option<u32>,
    /// Count requests without an authenticated user as evidence too (usage
    /// log) [default: `[logs.evidence] require_user`, else users required]
    #[arg(long)]
    pub allow_anonymous: bool,
    /// Status class that counts as evidence, 1 to 5 (repeatable; replaces
    /// `[logs.evidence] status_classes`) [default: 2 and 3]
    #[arg(long = "status-class", value_name = "N")]
    pub status_class: Vec<u8>,
    /// Parser threads [default: the number of cores]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Rows in the "top" tables of the human report
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// Record the observations in the state store (replacing the stored
    /// ones of every space found), for `eos-sec plan`
    #[arg(long)]
    pub save: bool,
    /// cloudwatch:// sources: run a Logs Insights aggregation in AWS and
    /// read only its result rows instead of every event (usage log only)
    #[arg(long)]
    pub insights: bool,
    /// Longest wait for the Logs Insights query, in seconds; it is stopped
    /// after that
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub insights_wait: u64,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Files, directories, globs, `-` for stdin, or `cloudwatch://LOG-GROUP`
    /// (events read with FilterLogEvents over --since/--until)
    #[arg(required = true, value_name = "SOURCE")]
    pub sources: Vec<String>,
}

/// The SOURCE prefix naming a CloudWatch Logs log group.
const CLOUDWATCH: &str = "cloudwatch://";

fn cloudwatch_error(e: CloudWatchError) -> anyhow::Error {
    if e.is_bad_input() {
        bad_input!("{e}")
    } else {
        anyhow::Error::new(e)
    }
}

#[allow(clippy::print_stderr)]
fn warn(s: &str) {
    eprintln!("{s}");
}

fn parse_format(s: &str) -> Result<Format, OptionsError> {
    s.parse()
}

/// `--since`/`--until`: RFC 3339, or a date meaning its midnight UTC.
fn parse_bound(s: &str) -> Result<OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &date_format)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| format!("`{s}` is not an RFC 3339 time or a YYYY-MM-DD date"))
}

pub fn run(cmd: LogsCommand, ctx: &crate::Ctx) -> anyhow::Result<()> {
    match cmd {
        LogsCommand::Scan(args) => scan(args, ctx),
    }
}

/// The scan options: `[logs]` config, then the flags.
fn options(args: &ScanArgs, ctx: &crate::Ctx) -> anyhow::Result<ScanOptions> {
    let mut opts = ScanOptions::from_config(args.format, &ctx.config.logs);
    if !args.trusted_proxy.is_empty() {
        opts.trusted_proxies =
            TrustedProxies::parse(&args.trusted_proxy).map_err(|e| bad_input!("{e}"))?;
    }
    if let Some(n) = args.min_requests {
        opts.evidence.min_requests = n;
    }
    if let Some(n) = args.min_days {
        opts.evidence.min_distinct_days = n;
    }
    if args.allow_anonymous {
        opts.evidence.require_user = false;
    }
    if !args.status_class.is_empty() {
        opts.evidence.status_classes.clone_from(&args.status_class);
    }
    if let Some(n) = args.threads {
        opts.threads = n.max(1);
    }
    opts.since = args.since;
    opts.until = args.until;
    opts.strict = args.strict;
    opts.validate().map_err(|e| bad_input!("{e}"))?;
    Ok(opts)
}

fn scan(args: ScanArgs, ctx: &crate::Ctx) -> anyhow::Result<()> {
    let opts = options(&args, ctx)?;
    let mut inputs = Vec::new();
    let mut groups = Vec::new();
    for spec in &args.sources {
        match spec.strip_prefix(CLOUDWATCH) {
            Some(group) => groups.push(group.to_owned()),
            None => inputs.extend(Input::expand(spec)?),
        }
    }
    if args.insights && (groups.is_empty() || !inputs.is_empty()) {
        return Err(bad_input!(
            "--insights reads CloudWatch Logs only: every SOURCE must be {CLOUDWATCH}LOG-GROUP"
        ));
    }
    if groups.is_empty() && args.aws.is_set() {
        return Err(bad_input!(
            "--region, --profile and --endpoint-url apply to {CLOUDWATCH} sources only"
        ));
    }
    let aws = aws_options(&args.aws, &ctx.config.backend);
    let range = TimeRange {
        start: opts.since,
        end: opts.until,
    };
    let report = if args.insights {
        let query = eos_logs::insights_query(&opts).map_err(|e| bad_input!("{e}"))?;
        let wait = InsightsWait {
            max: Duration::from_secs(args.insights_wait),
            ..InsightsWait::default()
        };
        let rows = crate::cmd::plan::runtime()?
            .block_on(insights_rows(&aws, &groups, &query, range, wait))
            .map_err(cloudwatch_error)?;
        if rows.len() >= eos_logs::INSIGHTS_MAX_ROWS {
            warn(&format!(
                "warning: the Logs Insights result has {} rows, its maximum: it may be truncated; narrow --since/--until",
                rows.len()
            ));
        }
        let name = format!("{CLOUDWATCH}{}", groups.join(","));
        eos_logs::report_from_insights(&rows, &name, &opts)
    } else {
        for group in &groups {
            let source =
                CloudWatchSource::connect(&aws, group, range, None).map_err(cloudwatch_error)?;
            inputs.push(Input::source(Box::new(source)));
        }
        let bar = Bar::on_terminal();
        eos_logs::scan(inputs, &opts, bar.as_ref().map(|b| b as &dyn Progress))?
    };
    if args.save {
        let mut store = ctx.store()?;
        eos_store::rules::replace_observations(
            &mut store,
            &report.observations,
            &crate::cmd::rules::actor(),
        )
        .context("recording the observations")?;
    }
    if ctx.json {
        return emit_json(&report);
    }
    if args.csv {
        return emit(&csv(&report.observations)?);
    }
    emit(&human(&report, args.top, args.save))
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

fn csv(observations: &[Observation]) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for o in observations {
        let users: Vec<&str> = o.example_users.iter().map(|u| u.as_str()).collect();
        w.serialize(CsvRow {
            space: o.space.as_str(),
            ip: o.ip.to_string(),
            requests: o.requests,
            first_seen: rfc3339(o.first_seen),
            last_seen: rfc3339(o.last_seen),
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
        })?;
    }
    let bytes = w.into_inner().context("writing CSV")?;
    String::from_utf8(bytes).context("CSV is UTF-8")
}

/// `2026-11-02 08:01:37Z`: to the second, for people.
fn short_time(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    t.format(&f).unwrap_or_else(|_| t.to_string())
}

fn rfc3339(t: OffsetDateTime) -> String {
    use time::format_description::well_known::Rfc3339;
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
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
    let spaces: BTreeMap<&str, (u64, u64)> =
        r.observations.iter().fold(BTreeMap::new(), |mut m, o| {
            let e = m.entry(o.space.as_str()).or_insert((0, 0));
            e.0 += 1;
            e.1 += o.requests;
            m
        });
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

        let mut obs: Vec<&Observation> = r.observations.iter().collect();
        obs.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then((&a.space, a.ip).cmp(&(&b.space, b.ip)))
        });
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
    let mut by_range: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for o in observations {
        if let Some(f) = o.flag {
            let list = by_range.entry(f.as_str()).or_default();
            let ip = o.ip.to_string();
            if !list.contains(&ip) {
                list.push(ip);
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
        .map(|(range, ips)| {
            let n = ips.len();
            let mut shown: Vec<String> = ips.into_iter().take(5).collect();
            if n > 5 {
                shown.push(format!("... ({n} in all)"));
            }
            vec![range.to_owned(), shown.join(", ")]
        })
        .collect();
    table(out, &rows);
}
