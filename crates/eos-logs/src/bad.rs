//! Bad lines: counted by named reason; the first few kept with their
//! location so an operator can look at them.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Why a line could not be used. The `as_str` names are stable (JSON and
/// CLI output, tests match on them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BadReason {
    /// Not valid UTF-8.
    InvalidUtf8,
    /// Not a JSON object (usage and WAF logs).
    InvalidJson,
    /// Fewer fields than the format requires (ALB, CloudFront).
    FieldCount,
    /// A quoted field that is not closed: the line was cut short (ALB).
    UnclosedQuote,
    /// The request field is not `METHOD scheme://host/path VERSION` (ALB).
    BadRequestLine,
    /// A required field is absent or empty.
    MissingField,
    /// The timestamp does not parse.
    BadTime,
    /// The client or peer address does not parse.
    BadAddress,
    /// An X-Forwarded-For entry needed for client resolution does not parse.
    BadForwardedFor,
    /// The status is not a number from 100 to 599.
    BadStatus,
    /// No space could be found for the request.
    NoSpace,
    /// The space found is not a valid space id.
    InvalidSpace,
    /// A line longer than the configured maximum.
    LineTooLong,
    /// A gzip stream that ends early.
    TruncatedGzip,
    /// Reading the input failed part-way.
    ReadError,
}

impl BadReason {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            BadReason::InvalidUtf8 => "invalid_utf8",
            BadReason::InvalidJson => "invalid_json",
            BadReason::FieldCount => "field_count",
            BadReason::UnclosedQuote => "unclosed_quote",
            BadReason::BadRequestLine => "bad_request_line",
            BadReason::MissingField => "missing_field",
            BadReason::BadTime => "bad_time",
            BadReason::BadAddress => "bad_address",
            BadReason::BadForwardedFor => "bad_forwarded_for",
            BadReason::BadStatus => "bad_status",
            BadReason::NoSpace => "no_space",
            BadReason::InvalidSpace => "invalid_space",
            BadReason::LineTooLong => "line_too_long",
            BadReason::TruncatedGzip => "truncated_gzip",
            BadReason::ReadError => "read_error",
        }
    }
}

impl fmt::Display for BadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason plus the detail that names the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bad {
    pub reason: BadReason,
    pub detail: String,
}

impl Bad {
    pub(crate) fn new(reason: BadReason, detail: impl Into<String>) -> Bad {
        Bad {
            reason,
            detail: detail.into(),
        }
    }
}

/// Shorthand: `Err(Bad)` with a detail showing at most 80 characters of `value`.
pub(crate) fn bad<T>(reason: BadReason, what: &str, value: &str) -> Result<T, Bad> {
    Err(Bad::new(reason, format!("{what} `{}`", shown(value))))
}

/// At most 80 characters, control characters escaped: details are printed
/// on a terminal and must not carry escape sequences from a log.
pub(crate) fn shown(value: &str) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == 80 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// One bad line, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadLine {
    /// The input's name (path, `-` for stdin, or a source label).
    pub source: String,
    /// 1-based line number within the input.
    pub line: u64,
    /// Why.
    pub reason: BadReason,
    /// The offending value, shortened.
    pub detail: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.source, self.line, self.reason, self.detail
        )
    }
}

/// Bad lines of a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BadLines {
    /// Count per reason.
    pub by_reason: BTreeMap<BadReason, u64>,
    /// The first few, in input order.
    pub examples: Vec<BadLine>,
}

impl BadLines {
    /// Total bad lines.
    pub fn total(&self) -> u64 {
        self.by_reason.values().sum()
    }
}
