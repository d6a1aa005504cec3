//! What every command that reads logs shares (`logs scan`, `bootstrap`):
//! the scan flags (format, window, trusted proxies, evidence filters,
//! strictness) over the `[logs]` config section, and reading the sources —
//! files, directories, globs, stdin, CloudWatch Logs — into one report.

use std::time::Duration;

use clap::Args;
use eos_aws::cloudwatch::{
    CloudWatchError, CloudWatchSource, InsightsWait, TimeRange, insights_rows,
};
use eos_logs::{Format, Input, OptionsError, Progress, ScanOptions, ScanReport, TrustedProxies};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};

use crate::exit::bad_input;

/// Log reading options shared by `logs scan` and `bootstrap` (flags
/// override `[logs]`).
#[derive(Debug, Clone, Args)]
pub struct ScanFlags {
    /// Log format of every source (docs/LOG-FORMATS.md): usage, alb,
    /// cloudfront or waf
    #[arg(long, value_parser = parse_format, default_value = "usage")]
    pub format: Format,
    /// Only requests at or after this instant: RFC 3339
    /// (2026-11-01T00:00:00Z), a UTC date (2026-11-01), or an age (30d, 12h)
    /// [default: no bound]
    #[arg(long, value_parser = parse_instant)]
    pub since: Option<OffsetDateTime>,
    /// Only requests before this instant (same forms as --since)
    /// [default: no bound]
    #[arg(long, value_parser = parse_instant)]
    pub until: Option<OffsetDateTime>,
    /// Stop with exit code 2 at the first bad line, naming file:line (with
    /// --insights: the first unusable result row)
    #[arg(long)]
    pub strict: bool,
    /// Exit 0 even when not one line could be used (by default such a scan
    /// fails with exit code 2, naming what to check: --format, the field
    /// mapping or the space rule)
    #[arg(long, conflicts_with = "strict")]
    pub allow_unusable: bool,
    /// A proxy whose X-Forwarded-For entries are believed (CIDR or address;
    /// repeatable; replaces `[logs] trusted_proxies`): the client is the
    /// right-most entry that is not one [default: none: the peer is the
    /// client]
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
    /// cloudwatch:// sources: run a Logs Insights aggregation in AWS and
    /// read only its result rows instead of every event (usage log only)
    #[arg(long)]
    pub insights: bool,
    /// Longest wait for the Logs Insights query, e.g. 90s, 5m; it is
    /// stopped after that
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = eos_codes::duration::parse)]
    pub insights_wait: Duration,
}

/// The SOURCE prefix naming a CloudWatch Logs log group.
pub const CLOUDWATCH: &str = "cloudwatch://";

fn parse_format(s: &str) -> Result<Format, OptionsError> {
    s.parse()
}

fn cloudwatch_error(e: CloudWatchError) -> anyhow::Error {
    if e.is_bad_input() {
        bad_input!("{e}")
    } else {
        anyhow::Error::new(e)
    }
}

impl ScanFlags {
    /// The scan options: `[logs]` from the config, then these flags.
    pub fn options(&self, ctx: &crate::Ctx) -> anyhow::Result<ScanOptions> {
        let mut opts = ScanOptions::from_config(self.format, &ctx.config.logs);
        if !self.trusted_proxy.is_empty() {
            opts.trusted_proxies =
                TrustedProxies::parse(&self.trusted_proxy).map_err(|e| bad_input!("{e}"))?;
        }
        if let Some(n) = self.min_requests {
            opts.evidence.min_requests = n;
        }
        if let Some(n) = self.min_days {
            opts.evidence.min_distinct_days = n;
        }
        if self.allow_anonymous {
            opts.evidence.require_user = false;
        }
        if !self.status_class.is_empty() {
            opts.evidence.status_classes.clone_from(&self.status_class);
        }
        if let Some(n) = self.threads {
            opts.threads = n.max(1);
        }
        opts.since = self.since;
        opts.until = self.until;
        opts.strict = self.strict;
        opts.allow_unusable = self.allow_unusable;
        opts.validate().map_err(|e| bad_input!("{e}"))?;
        Ok(opts)
    }

    /// Read every source — files, directories, globs, `-`, or
    /// `cloudwatch://LOG-GROUP` (FilterLogEvents over --since/--until, or a
    /// Logs Insights aggregation with --insights) — into one report.
    pub fn read(
        &self,
        sources: &[String],
        opts: &ScanOptions,
        aws: &eos_aws::AwsOptions,
        progress: Option<&dyn Progress>,
    ) -> anyhow::Result<ScanReport> {
        let mut inputs = Vec::new();
        let mut groups = Vec::new();
        for spec in sources {
            match spec.strip_prefix(CLOUDWATCH) {
                Some(group) => groups.push(group.to_owned()),
                None => inputs.extend(Input::expand(spec)?),
            }
        }
        if self.insights && (groups.is_empty() || !inputs.is_empty()) {
            return Err(bad_input!(
                "--insights reads CloudWatch Logs only: every SOURCE must be {CLOUDWATCH}LOG-GROUP"
            ));
        }
        let range = TimeRange {
            start: opts.since,
            end: opts.until,
        };
        if self.insights {
            let query = eos_logs::insights_query(opts).map_err(|e| bad_input!("{e}"))?;
            let wait = InsightsWait {
                max: self.insights_wait,
                ..InsightsWait::default()
            };
            let rows = crate::cmd::plan::runtime()?
                .block_on(insights_rows(aws, &groups, &query, range, wait))
                .map_err(cloudwatch_error)?;
            if rows.len() >= eos_logs::INSIGHTS_MAX_ROWS {
                warn(&format!(
                    "warning: the Logs Insights result has {} rows, its maximum: it may be truncated; narrow --since/--until",
                    rows.len()
                ));
            }
            let name = format!("{CLOUDWATCH}{}", groups.join(","));
            return Ok(eos_logs::report_from_insights(&rows, &name, opts)?);
        }
        for group in &groups {
            let source =
                CloudWatchSource::connect(aws, group, range, None).map_err(cloudwatch_error)?;
            inputs.push(Input::source(Box::new(source)));
        }
        Ok(eos_logs::scan(inputs, opts, progress)?)
    }
}

#[allow(clippy::print_stderr)]
fn warn(s: &str) {
    eprintln!("{s}");
}

/// `--since`/`--until`: RFC 3339, a UTC date, or an age before now.
pub fn parse_instant(s: &str) -> Result<OffsetDateTime, String> {
    parse_instant_at(s, OffsetDateTime::now_utc())
}

fn parse_instant_at(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.to_offset(time::UtcOffset::UTC));
    }
    let date_fmt = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = Date::parse(s, &date_fmt) {
        return Ok(d.with_time(Time::MIDNIGHT).assume_utc());
    }
    let age = s
        .strip_suffix('d')
        .map(|n| (n, 86_400))
        .or_else(|| s.strip_suffix('h').map(|n| (n, 3_600)))
        .and_then(|(n, unit)| n.parse::<i64>().ok().map(|n| n.saturating_mul(unit)))
        .filter(|secs| *secs > 0);
    match age {
        Some(secs) => Ok(now - time::Duration::seconds(secs)),
        None => Err(format!(
            "{s:?} is not an instant: use RFC 3339 (2026-11-01T00:00:00Z), a date (2026-11-01) or an age (30d, 12h)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn instants() {
        let now = datetime!(2026-11-29 12:00 UTC);
        assert_eq!(
            parse_instant_at("2026-11-01T08:00:00+01:00", now),
            Ok(datetime!(2026-11-01 07:00 UTC))
        );
        assert_eq!(
            parse_instant_at("2026-11-01", now),
            Ok(datetime!(2026-11-01 00:00 UTC))
        );
        assert_eq!(
            parse_instant_at("30d", now),
            Ok(datetime!(2026-10-30 12:00 UTC))
        );
        assert_eq!(
            parse_instant_at("12h", now),
            Ok(datetime!(2026-11-29 00:00 UTC))
        );
        for bad in ["", "0d", "-3d", "yesterday", "2026-13-01", "5m"] {
            let e = parse_instant_at(bad, now).unwrap_err();
            assert!(e.contains("not an instant"), "{bad}: {e}");
        }
    }
}
