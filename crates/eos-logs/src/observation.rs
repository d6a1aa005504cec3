//! The product of log extraction, consumed by desired-set computation.

use std::net::IpAddr;

use eos_identity::{SpaceId, UserId};
use eos_ipset::SpecialRange;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Requests per HTTP status class. Read back (the state store keeps it as
/// JSON), a class that is missing counts 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusCounts {
    /// 1xx responses.
    pub s1xx: u64,
    /// 2xx responses.
    pub s2xx: u64,
    /// 3xx responses.
    pub s3xx: u64,
    /// 4xx responses.
    pub s4xx: u64,
    /// 5xx responses.
    pub s5xx: u64,
    /// Requests blocked by WAF (WAF logs, `action` BLOCK).
    pub waf_blocked: u64,
}

/// Evidence that `ip` called `space`, aggregated over the scanned window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observation {
    /// The space called.
    pub space: SpaceId,
    /// The resolved client address (trusted-proxy rule applied).
    pub ip: IpAddr,
    /// Requests that count as evidence (passed the evidence filters).
    pub requests: u64,
    /// First evidence request (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    /// Last evidence request (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// Distinct UTC days with evidence.
    pub distinct_days: u32,
    /// Distinct authenticated users seen from this address.
    pub distinct_users: u64,
    /// A few of those users (sorted, at most [`Observation::MAX_EXAMPLE_USERS`]):
    /// all of them when they are that few; otherwise a choice by a fixed
    /// hash of the user, the same for the same input.
    pub example_users: Vec<UserId>,
    /// All requests from this address to this space by status class,
    /// including those that did not count as evidence.
    pub status: StatusCounts,
    /// Set when the address is private, loopback, link-local, CGNAT,
    /// documentation or otherwise special: usually a missing trusted proxy.
    pub flag: Option<SpecialRange>,
}

impl Observation {
    /// How many example users are kept.
    pub const MAX_EXAMPLE_USERS: usize = 5;
}
