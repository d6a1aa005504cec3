//! CloudWatch Logs as a log source for eos-logs.
//!
//! Two ways in, both in the CloudWatch Logs API Reference:
//! - [`CloudWatchSource`]: "FilterLogEvents" page by page (`nextToken`)
//!   over a time range; every event's message becomes one line for
//!   eos-logs' parsers, so bad lines, trusted proxies and evidence filters
//!   work exactly as for files. For modest volumes.
//! - [`insights_rows`]: "StartQuery" with eos-logs' aggregation query
//!   (`stats count(*) ... by space, ip ...`), then "GetQueryResults" polled
//!   with a bounded wait; only the aggregate rows cross the network. For
//!   large log groups.

use std::io;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatchlogs::types::QueryStatus;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use eos_logs::{InsightsRow, LogSource};
use time::OffsetDateTime;

use crate::AwsOptions;

/// A CloudWatch Logs call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudWatchError {
    /// The log group does not exist (or is not visible to these credentials).
    #[error("log group `{0}` not found")]
    NoSuchGroup(String),
    /// A log group name CloudWatch would refuse.
    #[error("log group name `{0}`: {1}")]
    BadGroupName(String, &'static str),
    /// Any other failed call.
    #[error("{call} on `{group}`: {message}")]
    Call {
        /// The API call.
        call: &'static str,
        /// The log group(s).
        group: String,
        /// The service's message.
        message: String,
    },
    /// The Insights query ended without results.
    #[error("Logs Insights query {query_id} ended with status {status}")]
    QueryFailed {
        /// The query id.
        query_id: String,
        /// Failed, Cancelled, Timeout, ...
        status: String,
    },
    /// The Insights query did not complete within the wait allowed.
    #[error("Logs Insights query {query_id} did not complete within {waited:?}; it was stopped")]
    QueryTimeout {
        /// The query id.
        query_id: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The async runtime could not start.
    #[error("starting the async runtime: {0}")]
    Runtime(String),
}

impl CloudWatchError {
    /// True when what the user named is wrong (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            CloudWatchError::NoSuchGroup(_) | CloudWatchError::BadGroupName(..)
        )
    }
}

/// A time range in whole milliseconds: `[start, end)` as eos-logs means
/// `--since`/`--until`. CloudWatch's own bounds are inclusive, so `end` is
/// sent as `end - 1` ms; eos-logs still re-checks each line's own time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// Inclusive start.
    pub start: Option<OffsetDateTime>,
    /// Exclusive end.
    pub end: Option<OffsetDateTime>,
}

impl TimeRange {
    fn start_ms(self) -> Option<i64> {
        self.start.map(|t| millis(t).max(0))
    }
    fn end_ms(self) -> Option<i64> {
        self.end.map(|t| (millis(t) - 1).max(0))
    }
}

fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Log group names: 1–512 characters of `[.\-_/#A-Za-z0-9]` ("CreateLogGroup").
/// Checked here because moto accepts anything.
pub fn check_group_name(name: &str) -> Result<(), CloudWatchError> {
    let bad = |why| Err(CloudWatchError::BadGroupName(name.to_owned(), why));
    if name.is_empty() || name.len() > 512 {
        return bad("must be 1 to 512 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-/#".contains(&b))
    {
        return bad("may only contain letters, digits and . _ - / #");
    }
    Ok(())
}

fn call_error<E>(call: &'static str, group: &str, e: &SdkError<E, HttpResponse>) -> CloudWatchError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if e.as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|c| c == "ResourceNotFoundException")
    {
        return CloudWatchError::NoSuchGroup(group.to_owned());
    }
    let message = e
        .as_service_error()
        .and_then(ProvideErrorMetadata::message)
        .map_or_else(|| crate::client::describe(e), str::to_owned);
    CloudWatchError::Call {
        call,
        group: group.to_owned(),
        message,
    }
}

async fn client(opts: &AwsOptions) -> Client {
    crate::client::client!(aws_sdk_cloudwatchlogs, &crate::sdk_config(opts).await)
}

fn runtime() -> Result<tokio::runtime::Runtime, CloudWatchError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CloudWatchError::Runtime(e.to_string()))
}

/// The events of one log group, read with FilterLogEvents page by page.
/// The scan reads it on its own reader thread, so it owns a small runtime
/// and blocks on each page: eos-logs stays free of async.
pub struct CloudWatchSource {
    rt: tokio::runtime::Runtime,
    client: Client,
    group: String,
    range: TimeRange,
    page_limit: Option<i32>,
    next_token: Option<String>,
    /// The first page, fetched by `connect` so a wrong group or missing
    /// credentials fail before the scan starts.
    first: Option<Vec<u8>>,
    done: bool,
    pages: u64,
}

impl std::fmt::Debug for CloudWatchSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudWatchSource")
            .field("group", &self.group)
            .field("range", &self.range)
            .field("pages", &self.pages)
            .finish_non_exhaustive()
    }
}

impl CloudWatchSource {
    /// Connect and read the first page of `group` within `range`.
    /// `page_limit` caps events per page (CloudWatch's default and maximum
    /// is 10,000; tests use small pages to exercise paging).
    pub fn connect(
        opts: &AwsOptions,
        group: &str,
        range: TimeRange,
        page_limit: Option<i32>,
    ) -> Result<CloudWatchSource, CloudWatchError> {
        check_group_name(group)?;
        let rt = runtime()?;
        let client = rt.block_on(client(opts));
        let mut source = CloudWatchSource {
            rt,
            client,
            group: group.to_owned(),
            range,
            page_limit,
            next_token: None,
            first: None,
            done: false,
            pages: 0,
        };
        source.first = source.page()?;
        Ok(source)
    }

    /// Pages fetched so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// The next non-empty page of lines, or `None` at the end. CloudWatch
    /// may return empty pages with a token while it searches; the end is
    /// a page without a token (or the same token again).
    fn page(&mut self) -> Result<Option<Vec<u8>>, CloudWatchError> {
        while !self.done {
            let req = self
                .client
                .filter_log_events()
                .log_group_name(&self.group)
                .set_start_time(self.range.start_ms())
                .set_end_time(self.range.end_ms())
                .set_limit(self.page_limit)
                .set_next_token(self.next_token.clone());
            let out = self
                .rt
                .block_on(req.send())
                .map_err(|e| call_error("FilterLogEvents", &self.group, &e))?;
            self.pages += 1;
            let token = out.next_token().map(str::to_owned);
            self.done = token.is_none() || token == self.next_token;
            self.next_token = token;
            let mut buf = Vec::new();
            for event in out.events() {
                let Some(message) = event.message() else {
                    continue;
                };
                // One event, one line: a message's own line breaks would
                // split it (JSON allows whitespace there; a break inside a
                // string is invalid JSON anyway and stays a bad line).
                let message = message.trim_end_matches(['\r', '\n']);
                buf.extend(message.bytes().map(|b| if b == b'\n' { b' ' } else { b }));
                buf.push(b'\n');
            }
            if !buf.is_empty() {
                return Ok(Some(buf));
            }
        }
        Ok(None)
    }
}

impl LogSource for CloudWatchSource {
    fn name(&self) -> String {
        format!("cloudwatch://{}", self.group)
    }

    fn next_batch(&mut self) -> io::Result<Option<Vec<u8>>> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        self.page().map_err(io::Error::other)
    }
}

/// How long to wait for a Logs Insights query, and how often to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsightsWait {
    /// Give up (and stop the query) after this long. Default 5 minutes.
    pub max: Duration,
    /// Between GetQueryResults calls. Default 1 second.
    pub poll: Duration,
}

impl Default for InsightsWait {
    fn default() -> InsightsWait {
        InsightsWait {
            max: Duration::from_secs(300),
            poll: Duration::from_secs(1),
        }
    }
}

/// Run `query` (from [`eos_logs::insights_query`]) over `groups` within
/// `range` and return its rows. Insights takes whole seconds: the start
/// is rounded down and the end up, so the range is never narrowed.
pub async fn insights_rows(
    opts: &AwsOptions,
    groups: &[String],
    query: &str,
    range: TimeRange,
    wait: InsightsWait,
) -> Result<Vec<InsightsRow>, CloudWatchError> {
    for g in groups {
        check_group_name(g)?;
    }
    let names = groups.join(",");
    let client = client(opts).await;
    let start = range.start.map_or(0, OffsetDateTime::unix_timestamp).max(0);
    let end = range
        .end
        .map_or_else(
            || OffsetDateTime::now_utc().unix_timestamp() + 1,
            |t| {
                // Exclusive end in seconds, rounded up; Insights' end is inclusive.
                let s = t.unix_timestamp();
                if t.nanosecond() == 0 { s - 1 } else { s }
            },
        )
        .max(start);
    let started = client
        .start_query()
        .set_log_group_names(Some(groups.to_vec()))
        .start_time(start)
        .end_time(end)
        .query_string(query)
        .limit(i32::try_from(eos_logs::INSIGHTS_MAX_ROWS).unwrap_or(i32::MAX))
        .send()
        .await
        .map_err(|e| call_error("StartQuery", &names, &e))?;
    let Some(query_id) = started.query_id().map(str::to_owned) else {
        return Err(CloudWatchError::Call {
            call: "StartQuery",
            group: names,
            message: "no query id in the response".to_owned(),
        });
    };
    let began = Instant::now();
    loop {
        let out = client
            .get_query_results()
            .query_id(&query_id)
            .send()
            .await
            .map_err(|e| call_error("GetQueryResults", &names, &e))?;
        match out.status() {
            Some(QueryStatus::Complete) => {
                return Ok(out
                    .results()
                    .iter()
                    .map(|row| {
                        row.iter()
                            .filter_map(|f| Some((f.field()?.to_owned(), f.value()?.to_owned())))
                            .collect()
                    })
                    .collect());
            }
            Some(QueryStatus::Running | QueryStatus::Scheduled) | None => {}
            Some(other) => {
                return Err(CloudWatchError::QueryFailed {
                    query_id,
                    status: other.as_str().to_owned(),
                });
            }
        }
        if began.elapsed() >= wait.max {
            // Best effort: a query left running costs money until AWS's own
            // 60-minute limit.
            let _ = client.stop_query().query_id(&query_id).send().await;
            return Err(CloudWatchError::QueryTimeout {
                query_id,
                waited: began.elapsed(),
            });
        }
        tokio::time::sleep(wait.poll).await;
    }
}

/// Test support: create `group` and `stream` (if missing) and put
/// `events` (`(epoch ms, message)`, sorted by time as PutLogEvents requires).
#[cfg(feature = "test-support")]
pub async fn put_events(
    opts: &AwsOptions,
    group: &str,
    stream: &str,
    events: &[(i64, String)],
) -> Result<(), CloudWatchError> {
    use aws_sdk_cloudwatchlogs::types::InputLogEvent;
    let client = client(opts).await;
    if let Err(e) = client.create_log_group().log_group_name(group).send().await
        && e.code() != Some("ResourceAlreadyExistsException")
    {
        return Err(call_error("CreateLogGroup", group, &e));
    }
    if let Err(e) = client
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send()
        .await
        && e.code() != Some("ResourceAlreadyExistsException")
    {
        return Err(call_error("CreateLogStream", group, &e));
    }
    for batch in events.chunks(1000) {
        let mut req = client
            .put_log_events()
            .log_group_name(group)
            .log_stream_name(stream);
        for (ms, message) in batch {
            let event = InputLogEvent::builder()
                .timestamp(*ms)
                .message(message)
                .build()
                .map_err(|e| CloudWatchError::Call {
                    call: "PutLogEvents",
                    group: group.to_owned(),
                    message: e.to_string(),
                })?;
            req = req.log_events(event);
        }
        let out = req
            .send()
            .await
            .map_err(|e| call_error("PutLogEvents", group, &e))?;
        // Events over 14 days old or 2 hours ahead are rejected, not failed.
        if let Some(info) = out.rejected_log_events_info() {
            return Err(CloudWatchError::Call {
                call: "PutLogEvents",
                group: group.to_owned(),
                message: format!("events rejected: {info:?}"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_checked_client_side() {
        assert!(check_group_name("/aws/lambda/eos-api").is_ok());
        assert!(check_group_name("eos#usage_2026.11-a").is_ok());
        assert!(check_group_name("").is_err());
        assert!(check_group_name("has space").is_err());
        assert!(check_group_name(&"a".repeat(513)).is_err());
    }

    #[test]
    fn range_is_half_open_in_milliseconds() {
        let r = TimeRange {
            start: Some(time::macros::datetime!(2026-11-02 00:00:00.0009 UTC)),
            end: Some(time::macros::datetime!(2026-11-03 00:00 UTC)),
        };
        assert_eq!(r.start_ms(), Some(1_793_577_600_000));
        assert_eq!(r.end_ms(), Some(1_793_663_999_999));
        assert_eq!(TimeRange::default().start_ms(), None);
    }
}
