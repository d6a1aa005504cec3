//! How eos-sec names and tags the IPSets it manages.

use std::fmt;

use eos_identity::SpaceId;
use eos_ipset::Family;
use serde::{Deserialize, Serialize};

/// The tag that says how far a set's space is rolled out.
pub const STAGE_TAG: &str = "stage";

/// The name of an IPSet eos-sec manages: `eos-<space>-v4` / `eos-<space>-v6`.
/// Space ids are at most 48 characters of `a-z0-9-`, so the name always fits
/// WAF's 128-character `^[\w\-]+$` names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpSetName {
    space: SpaceId,
    family: Family,
}

impl IpSetName {
    /// The staged set of a space and family.
    pub fn staged(space: &SpaceId, family: Family) -> IpSetName {
        IpSetName {
            space: space.clone(),
            family,
        }
    }

    /// Its space.
    pub fn space(&self) -> &SpaceId {
        &self.space
    }

    /// Its family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The description a new set gets (WAF: at most 256 characters of
    /// `^[\w+=:#@/\-,\.][\w+=:#@/\-,\.\s]+[\w+=:#@/\-,\.]$`).
    pub fn description(&self) -> String {
        let fam = match self.family {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        };
        format!("eos-sec allowlist for space {} - {fam}", self.space)
    }

    /// The tags a new set gets: who manages it, for which space, at which
    /// stage ([`STAGE_TAG`]: `staged` until a rule references it; enforce
    /// and rollback move it with the space).
    pub fn tags(&self) -> Vec<(String, String)> {
        vec![
            ("managed-by".to_owned(), "eos-sec".to_owned()),
            ("space".to_owned(), self.space.to_string()),
            (STAGE_TAG.to_owned(), "staged".to_owned()),
        ]
    }
}

impl fmt::Display for IpSetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "eos-{}-{}", self.space, self.family)
    }
}

impl From<IpSetName> for String {
    fn from(n: IpSetName) -> String {
        n.to_string()
    }
}

impl TryFrom<String> for IpSetName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for IpSetName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("`{s}` is not an eos-sec IPSet name (eos-<space>-v4 or eos-<space>-v6)");
        let rest = s.strip_prefix("eos-").ok_or_else(bad)?;
        let (space, family) = if let Some(sp) = rest.strip_suffix("-v4") {
            (sp, Family::V4)
        } else if let Some(sp) = rest.strip_suffix("-v6") {
            (sp, Family::V6)
        } else {
            return Err(bad());
        };
        let space = SpaceId::new(space).map_err(|e| e.to_string())?;
        Ok(IpSetName { space, family })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = IpSetName::staged(&SpaceId::new("acme-2").unwrap(), Family::V6);
        assert_eq!(n.to_string(), "eos-acme-2-v6");
        assert_eq!("eos-acme-2-v6".parse::<IpSetName>().unwrap(), n);
        assert!("eos-acme".parse::<IpSetName>().is_err());
        assert!("eos-Acme-v4".parse::<IpSetName>().is_err());
    }
}
