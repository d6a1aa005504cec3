//! Errors: a scan fails only on bad options, unreadable inputs, or a bad
//! line under `--strict`. Bad lines otherwise are counted, not errors.

use std::path::PathBuf;

use crate::bad::{BadLine, BadReason};

/// Options that contradict themselves or cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// Unknown `--format`.
    #[error("unknown log format `{0}`; expected usage, alb, cloudfront or waf")]
    UnknownFormat(String),
    /// A trusted proxy that is not a CIDR or address.
    #[error("trusted proxy `{0}` is not an IP address or CIDR")]
    TrustedProxy(String),
    /// A dotted field path that is empty inside or collides with another.
    #[error("field mapping `{field}` = `{path}`: {reason}")]
    FieldPath {
        /// The mapped field.
        field: &'static str,
        /// Its path.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A status class outside 1–5.
    #[error("evidence status class {0} is not 1 to 5")]
    StatusClass(u8),
    /// `since` is not before `until`.
    #[error("time window is empty: --since must be before --until")]
    EmptyWindow,
    /// A path-prefix space rule whose prefix does not start with `/`.
    #[error("space rule path prefix `{0}` must start with `/`")]
    PathPrefix(String),
    /// A max line length too small to be useful.
    #[error("max line length {0} is below 1024 bytes")]
    MaxLine(usize),
    /// A source string that names nothing usable.
    #[error("source `{0}`: {1}")]
    Source(String, String),
}

/// Why a scan failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// Bad options.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// An input could not be opened (missing file, permission, bad glob).
    #[error("{}: cannot open: {source}", path.display())]
    Open {
        /// The input.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A source pattern that matched no file.
    #[error("{0}: no such file, directory or matching glob")]
    NoMatch(String),
    /// `--strict` and a bad line.
    #[error("{0} (--strict)")]
    Strict(BadLine),
    /// Not one line could be used: most likely the wrong `--format` or a
    /// field mapping that names no field of the log.
    #[error(
        "none of the {lines} lines could be used (most were {reason}; the first: {first}): {hint}"
    )]
    NothingUsable {
        /// Lines read (neither blank nor comments).
        lines: u64,
        /// The most frequent reason.
        reason: BadReason,
        /// The first bad line.
        first: BadLine,
        /// What to check.
        hint: String,
    },
    /// A Logs Insights answer whose rows are not the aggregate the query
    /// asks for (one row per event, as moto returns: its `stats` did not
    /// run).
    #[error(
        "{input}: the Logs Insights answer is not an aggregate: {rows} rows with the fields {fields}, none with `requests`"
    )]
    NotAggregate {
        /// The source (`cloudwatch://GROUP`).
        input: String,
        /// Rows returned.
        rows: usize,
        /// The field names the rows have.
        fields: String,
    },
    /// A parser thread panicked (a bug: parsers never panic on input).
    #[error("a parser thread failed: {0}")]
    Worker(String),
}

impl ScanError {
    /// True for errors caused by what the user gave (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ScanError::Worker(_) | ScanError::NotAggregate { .. })
    }
}
