//! Certificate profiles and their lifetimes: server-chosen, capped, with a
//! small backdate for clock skew.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// What a certificate is for. Decides its lifetime; the contents are the
/// same client-auth certificate for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Profile {
    /// A service calling another service: short-lived, renewed automatically.
    Service,
    /// An enrolled device.
    Device,
    /// The command line of a person.
    Cli,
    /// A browser: a person re-imports by hand, so longer-lived; the CRL
    /// covers the gap after a revocation.
    Browser,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 4] = [
        Profile::Service,
        Profile::Device,
        Profile::Cli,
        Profile::Browser,
    ];

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Service => "service",
            Profile::Device => "device",
            Profile::Cli => "cli",
            Profile::Browser => "browser",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Profile::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!("unknown profile `{s}`; expected service, device, cli or browser")
            })
    }
}

/// A profile's default lifetime and the most a caller may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Used when the caller does not ask for a lifetime.
    pub default: Duration,
    /// The cap; a request over it is refused, a default over it is a
    /// configuration error.
    pub max: Duration,
}

/// Issuance policy: lifetimes per profile, backdate, optional CRL
/// distribution point. [`IssuancePolicy::default`] holds the documented
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuancePolicy {
    /// `service`: 24 h, at most 7 days.
    pub service: Lifetime,
    /// `device`: 72 h, at most 30 days.
    pub device: Lifetime,
    /// `cli`: 72 h, at most 30 days.
    pub cli: Lifetime,
    /// `browser`: 30 days, at most 90 days.
    pub browser: Lifetime,
    /// How far notBefore is set before now, for clients with slow clocks: 5 min.
    pub backdate: Duration,
    /// Optional `http://` URL of the CRL, put in every certificate.
    pub crl_url: Option<String>,
}

impl Default for IssuancePolicy {
    fn default() -> Self {
        let lt = |d: u64, m: u64| Lifetime {
            default: Duration::from_secs(d),
            max: Duration::from_secs(m),
        };
        IssuancePolicy {
            service: lt(24 * HOUR, 7 * DAY),
            device: lt(72 * HOUR, 30 * DAY),
            cli: lt(72 * HOUR, 30 * DAY),
            browser: lt(30 * DAY, 90 * DAY),
            backdate: crate::CRL_BACKDATE,
            crl_url: None,
        }
    }
}

impl IssuancePolicy {
    /// The lifetime rule of a profile.
    pub fn lifetime(&self, profile: Profile) -> Lifetime {
        match profile {
            Profile::Service => self.service,
            Profile::Device => self.device,
            Profile::Cli => self.cli,
            Profile::Browser => self.browser,
        }
    }

    /// Check the policy is coherent: every default within its cap, no zero
    /// lifetimes, a backdate of at most one hour and shorter than every
    /// default lifetime, an `http(s)` CRL URL.
    pub fn check(&self) -> Result<(), String> {
        for p in Profile::ALL {
            let l = self.lifetime(p);
            if l.default.is_zero() || l.max.is_zero() {
                return Err(format!("profile {p}: lifetimes must be positive"));
            }
            if l.default > l.max {
                return Err(format!(
                    "profile {p}: default lifetime {} is over its max {}",
                    format_duration(l.default),
                    format_duration(l.max)
                ));
            }
        }
        if self.backdate > Duration::from_secs(HOUR) {
            return Err(format!(
                "backdate {} must be at most 1h",
                format_duration(self.backdate)
            ));
        }
        // The backdate counts in a certificate's lifetime (notBefore to
        // notAfter), and renewal opens two thirds into it: a backdate as
        // long as the lifetime would make a certificate renewable almost
        // as soon as it is issued.
        for p in Profile::ALL {
            let l = self.lifetime(p);
            if l.default <= self.backdate {
                return Err(format!(
                    "profile {p}: default lifetime {} must be longer than the backdate {}",
                    format_duration(l.default),
                    format_duration(self.backdate)
                ));
            }
        }
        if let Some(url) = &self.crl_url {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.is_ascii()
                && !url.contains(|c: char| c.is_ascii_whitespace() || c.is_ascii_control());
            if !ok {
                return Err(format!("crl url `{url}` must be an ASCII http(s) URL"));
            }
        }
        Ok(())
    }
}

/// Format a duration in the largest unit that divides it, in eos-sec's
/// duration grammar (`eos_codes::duration` reads it back).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s != 0 && s.is_multiple_of(DAY) {
        format!("{}d", s / DAY)
    } else if s != 0 && s.is_multiple_of(HOUR) {
        format!("{}h", s / HOUR)
    } else if s != 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_format_in_the_largest_unit() {
        for (secs, s) in [
            (90, "90s"),
            (900, "15m"),
            (36 * HOUR, "36h"),
            (30 * DAY, "30d"),
        ] {
            assert_eq!(format_duration(Duration::from_secs(secs)), s);
        }
    }

    #[test]
    fn defaults_are_coherent() {
        IssuancePolicy::default().check().unwrap();
        let p = IssuancePolicy::default();
        assert_eq!(p.service.default, Duration::from_secs(24 * 3600));
        assert_eq!(p.cli.default, Duration::from_secs(72 * 3600));
        assert_eq!(p.browser.default, Duration::from_secs(30 * 86400));
        assert_eq!(p.backdate, Duration::from_secs(300));
    }

    #[test]
    fn default_over_cap_is_refused() {
        let mut p = IssuancePolicy::default();
        p.cli.default = Duration::from_secs(31 * 86400);
        assert!(p.check().unwrap_err().contains("over its max"));
        let mut p = IssuancePolicy::default();
        p.service.default = Duration::from_secs(300);
        assert_eq!(
            p.check().unwrap_err(),
            "profile service: default lifetime 5m must be longer than the backdate 5m"
        );
        p.backdate = Duration::ZERO;
        p.check().unwrap();
        p.backdate = Duration::from_secs(HOUR + 1);
        assert_eq!(p.check().unwrap_err(), "backdate 3601s must be at most 1h");
        let p = IssuancePolicy {
            crl_url: Some("ldap://x".into()),
            ..IssuancePolicy::default()
        };
        assert!(p.check().is_err());
    }
}
