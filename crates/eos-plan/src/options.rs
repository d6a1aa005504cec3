//! Evidence thresholds and guards: every default written down once, here.
//! The CLI's `[plan]` config section deserialises straight into
//! [`PlanOptions`].

use eos_ipset::{IpNet, parse_net};
use serde::{Deserialize, Serialize};

/// WAF's limit on addresses (entries) in one IPSet (AWS WAF quotas: "IP
/// addresses in an IP set": 10,000).
pub const WAF_MAX_ENTRIES: usize = 10_000;

/// Thresholds and guards for desired sets and plans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlanOptions {
    /// An observed address counts as evidence with at least this many
    /// evidence requests over the window. Default 5.
    pub min_requests: u64,
    /// ... on at least this many distinct UTC days. Default 2.
    pub min_days: u32,
    /// ... from at least this many distinct authenticated users. Default 1.
    pub min_users: u64,
    /// A space with fewer evidence requests than this in the window is
    /// reported as "too little traffic to trust". Default 100.
    pub min_space_requests: u64,
    /// The broadest IPv4 prefix accepted without being listed in
    /// `allow_broad`: prefixes shorter than this are refused. Default 16.
    pub broadest_v4: u8,
    /// The broadest IPv6 prefix accepted without being listed. Default 32.
    pub broadest_v6: u8,
    /// Broad prefixes explicitly allowed (exact networks, e.g. a carrier
    /// range an administrator vouched for). `/0` can never be allowed.
    pub allow_broad: Vec<String>,
    /// Most entries one IPSet may hold after lossless aggregation (at most
    /// WAF's 10,000). Default 10,000.
    pub max_entries: usize,
    /// A plan that removes more than this share of a set's addresses (in
    /// percent), or empties it, needs `--allow-large-change`. Default 10.
    pub max_removal_percent: u8,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            min_requests: 5,
            min_days: 2,
            min_users: 1,
            min_space_requests: 100,
            broadest_v4: 16,
            broadest_v6: 32,
            allow_broad: Vec::new(),
            max_entries: WAF_MAX_ENTRIES,
            max_removal_percent: 10,
        }
    }
}

/// An invalid option value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plan option {field}: {message}")]
pub struct OptionsError {
    /// The option.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// [`PlanOptions`] after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedOptions {
    pub(crate) raw: PlanOptions,
    pub(crate) allow_broad: Vec<IpNet>,
}

impl PlanOptions {
    /// Validate the values (prefix bounds within the family, the entry
    /// limit within WAF's, allowed broad prefixes canonical and not `/0`).
    pub fn check(&self) -> Result<CheckedOptions, OptionsError> {
        let err = |field, message: String| OptionsError { field, message };
        if !(1..=32).contains(&self.broadest_v4) {
            return Err(err(
                "broadest_v4",
                format!("{} is not 1..=32", self.broadest_v4),
            ));
        }
        if !(1..=128).contains(&self.broadest_v6) {
            return Err(err(
                "broadest_v6",
                format!("{} is not 1..=128", self.broadest_v6),
            ));
        }
        if self.max_entries == 0 || self.max_entries > WAF_MAX_ENTRIES {
            return Err(err(
                "max_entries",
                format!(
                    "{} is not 1..={WAF_MAX_ENTRIES} (WAF's limit)",
                    self.max_entries
                ),
            ));
        }
        if self.max_removal_percent > 100 {
            return Err(err(
                "max_removal_percent",
                format!("{} is not 0..=100", self.max_removal_percent),
            ));
        }
        let mut allow_broad = Vec::new();
        for s in &self.allow_broad {
            let p = parse_net(s).map_err(|e| err("allow_broad", e.to_string()))?;
            if p.host_bits_cleared {
                return Err(err("allow_broad", format!("`{s}` has host bits set")));
            }
            if p.net.prefix_len() == 0 {
                return Err(err(
                    "allow_broad",
                    format!("`{s}` is a /0 and can never be allowed"),
                ));
            }
            allow_broad.push(p.net);
        }
        Ok(CheckedOptions {
            raw: self.clone(),
            allow_broad,
        })
    }
}

impl CheckedOptions {
    /// The options as given.
    pub fn options(&self) -> &PlanOptions {
        &self.raw
    }

    /// Is `net` broader than the bound and not explicitly allowed?
    pub(crate) fn too_broad(&self, net: &IpNet) -> bool {
        let bound = match net {
            IpNet::V4(_) => self.raw.broadest_v4,
            IpNet::V6(_) => self.raw.broadest_v6,
        };
        net.prefix_len() < bound && !self.allow_broad.contains(net)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_check_and_bad_values_are_named() {
        assert!(PlanOptions::default().check().is_ok());
        let o = PlanOptions {
            max_entries: 20_000,
            ..PlanOptions::default()
        };
        assert!(o.check().unwrap_err().to_string().contains("max_entries"));
        let o = PlanOptions {
            allow_broad: vec!["::/0".into()],
            ..PlanOptions::default()
        };
        assert!(o.check().unwrap_err().to_string().contains("/0"));
    }

    #[test]
    fn broad_bound() {
        let o = PlanOptions {
            allow_broad: vec!["10.0.0.0/8".into()],
            ..PlanOptions::default()
        }
        .check()
        .unwrap();
        assert!(o.too_broad(&"11.0.0.0/15".parse().unwrap()));
        assert!(!o.too_broad(&"11.0.0.0/16".parse().unwrap()));
        assert!(!o.too_broad(&"10.0.0.0/8".parse().unwrap()));
        assert!(o.too_broad(&"2001:db8::/31".parse().unwrap()));
        assert!(!o.too_broad(&"2001:db8::/32".parse().unwrap()));
    }
}
