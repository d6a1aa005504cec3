//! The lockout guards: what refuses a move that could lock out the
//! operator, a space's administrators or everyone, each with a stable code.

use std::net::IpAddr;

use eos_identity::SpaceId;
use eos_ipset::IpSet;
use serde::{Deserialize, Serialize};

use crate::PolicyError;
use crate::compile::{ListenerMode, listener_mode};
use crate::model::{Policy, Stage};
use crate::simulate::Simulation;

/// Stable codes of the enforce guards (docs/POLICY.md, "Enforce and roll
/// back"). Every one but [`guard::SETS_MISSING`] can be overridden with
/// `--force`, which is audited.
pub mod guard {
    use super::GuardCode;

    /// The space's IPSets do not exist (run `eos-sec apply`); never forced.
    pub const SETS_MISSING: GuardCode = GuardCode::SetsMissing;
    /// The space's sets are empty: enforcing would block everyone.
    pub const SET_EMPTY: GuardCode = GuardCode::SetEmpty;
    /// The sets hold fewer addresses than `[ip_gate] min_addresses`.
    pub const SET_BELOW_MINIMUM: GuardCode = GuardCode::SetBelowMinimum;
    /// No operator address given (`--operator-ip`, `[policy] operator_ips`).
    pub const OPERATOR_UNKNOWN: GuardCode = GuardCode::OperatorUnknown;
    /// The operator's own address is outside the sets.
    pub const OPERATOR_OUTSIDE: GuardCode = GuardCode::OperatorOutside;
    /// A declared administrator's address is outside the sets.
    pub const ADMIN_OUTSIDE: GuardCode = GuardCode::AdminOutside;
    /// Simulation over the logs shows declared administrators blocked.
    pub const SIMULATE_BLOCKS_ADMINS: GuardCode = GuardCode::SimulateBlocksAdmins;
    /// The operator's own certificate would be refused by the bundle and
    /// CRL a listener is about to verify against.
    pub const OPERATOR_CERT: GuardCode = GuardCode::OperatorCert;
    /// No operator certificate given (`--operator-cert`, `[gate] operator_cert`).
    pub const OPERATOR_CERT_UNKNOWN: GuardCode = GuardCode::OperatorCertUnknown;
    /// The trust store does not hold exactly the CA's current bundle and
    /// CRL (or is not ACTIVE); never forced.
    pub const TRUST_STORE_STALE: GuardCode = GuardCode::TrustStoreStale;
    /// Verify with `IgnoreClientCertificateExpiry=true`; never forced.
    pub const IGNORE_EXPIRY: GuardCode = GuardCode::IgnoreExpiry;
    /// Spaces on one listener would need different modes; never forced.
    pub const LISTENER_SHARED: GuardCode = GuardCode::ListenerShared;
    /// ALB connection logs show a declared administrator's connections
    /// that the space's listener would refuse once it verifies (no
    /// certificate, unknown CA, expired, revoked, bound to another space).
    pub const ADMIN_CERT_REFUSED: GuardCode = GuardCode::AdminCertRefused;
}

/// A guard's stable code (docs/POLICY.md). Serialized, displayed and
/// audited as its string form ([`GuardCode::as_str`], `enforce-*`); compared
/// as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum GuardCode {
    /// The space's IPSets do not exist (run `eos-sec apply`); never forced.
    #[serde(rename = "enforce-sets-missing")]
    SetsMissing,
    /// The space's sets are empty: enforcing would block everyone.
    #[serde(rename = "enforce-set-empty")]
    SetEmpty,
    /// The sets hold fewer addresses than `[ip_gate] min_addresses`.
    #[serde(rename = "enforce-set-below-minimum")]
    SetBelowMinimum,
    /// No operator address given (`--operator-ip`, `[policy] operator_ips`).
    #[serde(rename = "enforce-operator-unknown")]
    OperatorUnknown,
    /// The operator's own address is outside the sets.
    #[serde(rename = "enforce-operator-outside-set")]
    OperatorOutside,
    /// A declared administrator's address is outside the sets.
    #[serde(rename = "enforce-admin-outside-set")]
    AdminOutside,
    /// Simulation over the logs shows declared administrators blocked.
    #[serde(rename = "enforce-simulate-blocks-admins")]
    SimulateBlocksAdmins,
    /// The operator's own certificate would be refused by the bundle and
    /// CRL a listener is about to verify against.
    #[serde(rename = "enforce-operator-cert")]
    OperatorCert,
    /// No operator certificate given (`--operator-cert`, `[gate] operator_cert`).
    #[serde(rename = "enforce-operator-cert-unknown")]
    OperatorCertUnknown,
    /// The trust store does not hold exactly the CA's current bundle and
    /// CRL (or is not ACTIVE); never forced.
    #[serde(rename = "enforce-trust-store-stale")]
    TrustStoreStale,
    /// Verify with `IgnoreClientCertificateExpiry=true`; never forced.
    #[serde(rename = "enforce-ignore-expiry")]
    IgnoreExpiry,
    /// Spaces on one listener would need different modes; never forced.
    #[serde(rename = "enforce-listener-shared")]
    ListenerShared,
    /// ALB connection logs show a declared administrator's connections
    /// that the space's listener would refuse once it verifies (no
    /// certificate, unknown CA, expired, revoked, bound to another space).
    #[serde(rename = "enforce-admin-cert-refused")]
    AdminCertRefused,
}

impl GuardCode {
    /// Every code, in the order they are documented.
    pub const ALL: &[GuardCode] = &[
        GuardCode::SetsMissing,
        GuardCode::SetEmpty,
        GuardCode::SetBelowMinimum,
        GuardCode::OperatorUnknown,
        GuardCode::OperatorOutside,
        GuardCode::AdminOutside,
        GuardCode::SimulateBlocksAdmins,
        GuardCode::OperatorCert,
        GuardCode::OperatorCertUnknown,
        GuardCode::TrustStoreStale,
        GuardCode::IgnoreExpiry,
        GuardCode::ListenerShared,
        GuardCode::AdminCertRefused,
    ];

    /// The stable string form.
    pub fn as_str(self) -> &'static str {
        match self {
            GuardCode::SetsMissing => "enforce-sets-missing",
            GuardCode::SetEmpty => "enforce-set-empty",
            GuardCode::SetBelowMinimum => "enforce-set-below-minimum",
            GuardCode::OperatorUnknown => "enforce-operator-unknown",
            GuardCode::OperatorOutside => "enforce-operator-outside-set",
            GuardCode::AdminOutside => "enforce-admin-outside-set",
            GuardCode::SimulateBlocksAdmins => "enforce-simulate-blocks-admins",
            GuardCode::OperatorCert => "enforce-operator-cert",
            GuardCode::OperatorCertUnknown => "enforce-operator-cert-unknown",
            GuardCode::TrustStoreStale => "enforce-trust-store-stale",
            GuardCode::IgnoreExpiry => "enforce-ignore-expiry",
            GuardCode::ListenerShared => "enforce-listener-shared",
            GuardCode::AdminCertRefused => "enforce-admin-cert-refused",
        }
    }
}

impl std::fmt::Display for GuardCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for GuardCode {
    type Err = String;

    fn from_str(s: &str) -> Result<GuardCode, String> {
        GuardCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown guard code `{s}`"))
    }
}

#[cfg(test)]
mod guard_code_tests {
    #![allow(clippy::unwrap_used)]

    use super::GuardCode;

    /// The string forms are the documented, stable codes: serde, Display
    /// and `FromStr` agree on each, and no two codes share one.
    #[test]
    fn string_forms_are_stable_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for code in GuardCode::ALL {
            let s = code.as_str();
            assert!(s.starts_with("enforce-"), "{s}");
            assert!(seen.insert(s), "{s} twice");
            assert_eq!(serde_json::to_value(code).unwrap(), s);
            assert_eq!(code.to_string(), s);
            assert_eq!(s.parse::<GuardCode>().unwrap(), *code);
            let back: GuardCode = serde_json::from_value(serde_json::json!(s)).unwrap();
            assert_eq!(back, *code);
        }
        assert_eq!(
            format!("{:<22}|", GuardCode::SetEmpty),
            "enforce-set-empty     |"
        );
        assert!("enforce-nothing".parse::<GuardCode>().is_err());
    }
}

/// One guard's finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Guard {
    /// Stable code ([`guard`]).
    pub code: GuardCode,
    /// What and why, naming the address or user.
    pub message: String,
}

impl std::fmt::Display for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

/// What the guards look at.
#[derive(Debug, Clone, Copy)]
pub struct GuardInput<'a> {
    /// The policy.
    pub policy: &'a Policy,
    /// The space.
    pub space: &'a SpaceId,
    /// The space's sets (v4 ∪ v6) as read back.
    pub set: &'a IpSet,
    /// The operator's own addresses.
    pub operator_ips: &'a [IpAddr],
    /// A simulation over the logs, when logs were given.
    pub simulation: Option<&'a Simulation>,
}

/// The lockout guards for a space whose IP gate is about to block. Empty
/// when nothing is wrong.
pub fn guards(g: &GuardInput<'_>) -> Result<Vec<Guard>, PolicyError> {
    let sp = g.policy.space(g.space)?;
    let mut out = cert_guards(g)?;
    if !sp.mode.uses_ip_gate() {
        return Ok(out);
    }
    let size = u128::from(g.set.v4_len()).saturating_add(g.set.v6_len());
    if g.set.is_empty() {
        out.push(Guard {
            code: guard::SET_EMPTY,
            message: format!(
                "the sets of space {} are empty: enforcing would block everyone",
                g.space
            ),
        });
    } else if size < u128::from(g.policy.ip_gate.min_addresses) {
        out.push(Guard {
            code: guard::SET_BELOW_MINIMUM,
            message: format!(
                "the sets of space {} hold {size} addresses, fewer than [ip_gate] min_addresses = {}",
                g.space, g.policy.ip_gate.min_addresses
            ),
        });
    }
    if g.operator_ips.is_empty() {
        out.push(Guard {
            code: guard::OPERATOR_UNKNOWN,
            message: "no operator address to check: pass --operator-ip ADDR (your own address as WAF sees it) or set [policy] operator_ips".to_owned(),
        });
    }
    for ip in g.operator_ips {
        if !g.set.contains(*ip) {
            out.push(Guard {
                code: guard::OPERATOR_OUTSIDE,
                message: format!(
                    "the operator's address {ip} is outside the sets of space {}",
                    g.space
                ),
            });
        }
    }
    for ip in &sp.admin_ips {
        if !g.set.contains(*ip) {
            out.push(Guard {
                code: guard::ADMIN_OUTSIDE,
                message: format!(
                    "administrator address {ip} (spaces.{}.admin_ips) is outside the sets",
                    g.space
                ),
            });
        }
    }
    if let Some(s) = g.simulation.and_then(|s| s.spaces.get(g.space))
        && !s.blocked_admins.is_empty()
    {
        let admins: Vec<&str> = s.blocked_admins.iter().map(|u| u.as_str()).collect();
        out.push(Guard {
            code: guard::SIMULATE_BLOCKS_ADMINS,
            message: format!(
                "simulation over the logs blocks declared administrators of space {}: {}",
                g.space,
                admins.join(", ")
            ),
        });
    }
    Ok(out)
}

/// True when the space's listener verifies certificates at `enforce`
/// (modes `cert` and `both`): the step there can refuse a client.
pub fn verifies_at_enforce(policy: &Policy, space: &SpaceId) -> Result<bool, PolicyError> {
    let sp = policy.space(space)?;
    Ok(listener_mode(sp.mode, Stage::Enforce) == ListenerMode::Verify)
}

/// The certificate gate's lockout guard: declared administrators whose
/// connections (ALB connection logs) the listener would refuse in `verify`.
fn cert_guards(g: &GuardInput<'_>) -> Result<Vec<Guard>, PolicyError> {
    if !verifies_at_enforce(g.policy, g.space)? {
        return Ok(Vec::new());
    }
    let Some(certs) = g.simulation.and_then(|s| s.certificates.as_ref()) else {
        return Ok(Vec::new());
    };
    let Some(sp) = certs.spaces.get(g.space) else {
        return Ok(Vec::new());
    };
    if sp.refused_admins.is_empty() {
        return Ok(Vec::new());
    }
    let admins: Vec<&str> = sp.refused_admins.iter().map(|u| u.as_str()).collect();
    let reasons: Vec<String> = sp
        .by_reason
        .iter()
        .map(|(r, n)| format!("{} {n}", r.as_str()))
        .collect();
    Ok(vec![Guard {
        code: guard::ADMIN_CERT_REFUSED,
        message: format!(
            "the connection logs show declared administrators of space {} whose connections the listener would refuse in verify mode: {} (refused connections: {})",
            g.space,
            admins.join(", "),
            reasons.join(", ")
        ),
    }])
}
