//! Errors: a scan fails only on bad options, unreadable inputs, or a bad
//! line under `--strict`. Bad lines otherwise are counted, not errors.

use std::path::PathBuf;

use crate::bad::BadLine;

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
    /// A parser thread panicked (a bug: parsers never panic on input).
    #[error("a parser thread failed: {0}")]
    Worker(String),
}

impl ScanError {
    /// True for errors caused by what the user gave (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ScanError::Worker(_))
    }
}
