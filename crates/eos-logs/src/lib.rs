//! Log extraction: turn the platform's usage logs and AWS ALB, CloudFront and
//! WAF logs into [`Observation`]s — per (space, client address) evidence of
//! who really calls each space.
//!
//! - [`scan`]: inputs + [`ScanOptions`] → [`ScanReport`] (observations, counts,
//!   bad lines).
//! - [`fold_records`] / [`for_each_record`]: every parsed [`LogRecord`] (space
//!   and client resolved, time window applied), for replaying requests through
//!   a firewall policy.
//! - [`for_each_connection`]: ALB connection logs (one entry per TLS
//!   connection, with the client certificate's serial, subject, validity
//!   and verify status) — evidence for the certificate gate.
//! - [`LogSource`]: plug in inputs that are not files (CloudWatch Logs, in
//!   eos-aws).
//! - [`insights_query`] / [`report_from_insights`]: push the aggregation to
//!   CloudWatch Logs Insights and read only its rows.
//!
//! Formats are documented in docs/LOG-FORMATS.md. Nothing here panics on
//! input: every unusable line is counted under a [`BadReason`].

mod aggregate;
mod alb;
mod bad;
mod cloudfront;
mod connection;
mod error;
mod input;
mod insights;
mod observation;
mod options;
mod record;
mod scan;
mod stamp;
mod usage;
mod waf;

pub use aggregate::{ScanReport, scan};
pub use bad::{BadLine, BadLines, BadReason};
pub use connection::{Connection, VerifyStatus, for_each_connection};
pub use error::{OptionsError, ScanError};
pub use input::{Input, LogSource};
pub use insights::{INSIGHTS_MAX_ROWS, InsightsRow, insights_query, report_from_insights};
pub use observation::{Observation, StatusCounts};
pub use options::{
    EvidenceFilter, FieldMap, Format, LogsConfig, ScanOptions, SpaceRule, TrustedProxies,
};
pub use record::{LogRecord, WafAction};
pub use scan::{Progress, ScanStats, fold_records, for_each_record};
