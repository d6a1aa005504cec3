//! Backoff on failed checks, counted per source address (IPv6 per /64),
//! never per code.

use std::net::IpAddr;
use std::time::Duration;

/// What backoff is keyed on: a source address, IPv4 exactly, IPv6 by its
/// /64 (one host usually holds a whole /64, so counting single addresses
/// would be free to evade). Only sources: a per-code key would let anyone
/// who knows a (public) code id make its owner's correct code wait.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThrottleKey(String);

impl ThrottleKey {
    /// The key for a source address.
    pub fn source(ip: IpAddr) -> ThrottleKey {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => ThrottleKey(v4.to_string()),
            IpAddr::V6(v6) => {
                let net = u128::from(v6) & !((1u128 << 64) - 1);
                ThrottleKey(format!("{}/64", std::net::Ipv6Addr::from(net)))
            }
        }
    }

    /// The key as stored: `src:<addr>`.
    pub fn as_stored(&self) -> String {
        format!("src:{}", self.0)
    }
}

/// Failure count for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleState {
    /// Failures since the counter last reset.
    pub failures: u32,
    /// Unix seconds of the last failure.
    pub last_failure_at: i64,
    /// No attempt is evaluated before this (Unix seconds).
    pub blocked_until: i64,
}

/// Exponential backoff on failed checks. After `free_failures` failures the
/// key waits `base`, then twice that after each further failure, up to
/// `max`. A key's count resets after `reset_after` without failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Failures allowed without delay (typos happen).
    pub free_failures: u32,
    /// The first delay.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Quiet time after which the count starts over.
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            free_failures: 3,
            base: Duration::from_secs(1),
            max: Duration::from_secs(15 * 60),
            reset_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl BackoffPolicy {
    /// The wait imposed after `failures` consecutive failures.
    pub fn delay_after(&self, failures: u32) -> Duration {
        let Some(extra) = failures.checked_sub(self.free_failures.saturating_add(1)) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(extra.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    pub(super) fn after_failure(&self, prev: Option<ThrottleState>, now: i64) -> ThrottleState {
        let reset = i64::try_from(self.reset_after.as_secs()).unwrap_or(i64::MAX);
        let failures = match prev {
            Some(p) if now.saturating_sub(p.last_failure_at) < reset => {
                p.failures.saturating_add(1)
            }
            _ => 1,
        };
        let delay = i64::try_from(self.delay_after(failures).as_secs()).unwrap_or(i64::MAX);
        ThrottleState {
            failures,
            last_failure_at: now,
            blocked_until: now.saturating_add(delay),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = BackoffPolicy::default();
        let d: Vec<u64> = (0..=16).map(|n| p.delay_after(n).as_secs()).collect();
        assert_eq!(
            d,
            [
                0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900
            ]
        );
        assert_eq!(p.delay_after(u32::MAX), p.max);
    }

    #[test]
    fn counts_reset_after_quiet_time() {
        let p = BackoffPolicy::default();
        let s = p.after_failure(None, 0);
        let s = p.after_failure(Some(s), 10);
        assert_eq!(s.failures, 2);
        let s = p.after_failure(Some(s), 10 + 24 * 3600);
        assert_eq!(s.failures, 1);
    }

    #[test]
    fn ipv6_sources_count_per_64() {
        let a = ThrottleKey::source("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = ThrottleKey::source("2001:db8:1:2:bbbb::2".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(a.as_stored(), "src:2001:db8:1:2::/64");
        let m = ThrottleKey::source("::ffff:192.0.2.1".parse().unwrap());
        assert_eq!(m.as_stored(), "src:192.0.2.1");
    }
}
