//! The guards on one set's outcome, run on every plan made and on every
//! saved plan read back: `/0` and breadth of what it adds, the set's size
//! after the change, and the large-change guard.

use eos_ipset::{IpNet, IpSet, canonical};

use super::SetChange;
use crate::desired::{Finding, FindingCode, Severity, Source};
use crate::options::CheckedOptions;

fn nets<'a>(list: impl IntoIterator<Item = &'a IpNet>) -> IpSet {
    IpSet::from_nets(list.into_iter().copied())
}

fn addresses(s: &IpSet) -> f64 {
    // Precision is irrelevant for a share; u128 -> f64 rounds.
    s.v4_len() as f64 + s.v6_len() as f64
}

pub(super) fn removed_percent<'a>(
    before: &[IpNet],
    after: impl IntoIterator<Item = &'a IpNet>,
) -> f64 {
    let b = nets(before);
    let removed = b.difference(&nets(after));
    if removed.is_empty() {
        return 0.0;
    }
    100.0 * addresses(&removed) / addresses(&b)
}

/// The guards on one set's outcome: size, /0 and breadth of what the plan
/// adds, and the large-change guard. Returns (refusals, warnings).
pub(super) fn guard_change(
    c: &SetChange,
    opts: &CheckedOptions,
    allow_large: bool,
) -> (Vec<Finding>, Vec<Finding>) {
    let mut refusals = Vec::new();
    let mut warnings = Vec::new();
    let finding =
        |code, severity, cidr: Option<String>, message: String, sources: Vec<Source>| Finding {
            code,
            severity,
            set: c.name.clone(),
            cidr,
            message,
            sources,
        };
    for e in &c.add {
        if e.cidr.prefix_len() == 0 {
            refusals.push(finding(
                FindingCode::ZeroPrefix,
                Severity::Refusal,
                Some(canonical(&e.cidr)),
                "a /0 admits every address; refused always".into(),
                e.sources.clone(),
            ));
        } else if opts.too_broad(&e.cidr) {
            refusals.push(finding(
                FindingCode::BroadPrefix,
                Severity::Refusal,
                Some(canonical(&e.cidr)),
                "broader than the configured bound and not in [plan] allow_broad".into(),
                e.sources.clone(),
            ));
        }
    }
    let after = c.after();
    let max = opts.options().max_entries;
    if after.len() > max {
        refusals.push(finding(
            FindingCode::TooManyEntries,
            Severity::Refusal,
            None,
            format!("{} entries after the change (including {} drift entries), more than {max}; nothing was truncated. Options: raise the evidence thresholds, declare networks as rules instead of many single addresses, or remove the drift entries outside eos-sec", after.len(), c.drift.len()),
            Vec::new(),
        ));
    }
    let empties = !c.before.is_empty() && after.is_empty();
    let limit = f64::from(opts.options().max_removal_percent);
    if empties || c.removed_percent > limit {
        let what = if empties {
            "empties the set".to_owned()
        } else {
            format!(
                "removes {:.1}% of the set's addresses (limit {limit}%)",
                c.removed_percent
            )
        };
        if allow_large {
            warnings.push(finding(
                FindingCode::LargeChange,
                Severity::Warning,
                None,
                format!("{what}; allowed by --allow-large-change"),
                Vec::new(),
            ));
        } else {
            refusals.push(finding(
                FindingCode::LargeChange,
                Severity::Refusal,
                None,
                format!("{what}; review it and re-run with --allow-large-change"),
                Vec::new(),
            ));
        }
    }
    (refusals, warnings)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::desired::FindingCode;
    use crate::plan::tests::{actual, plan};

    #[test]
    fn rejects_large_change_and_emptying_without_flag() {
        let act = actual(&["8.8.8.0/24", "9.9.9.0/24"], &["8.8.8.0/24", "9.9.9.0/24"]);
        let e = plan(&["8.8.8.0/24"], &act, false).unwrap_err();
        assert_eq!(e.findings[0].code, FindingCode::LargeChange);
        assert!(
            e.findings[0].message.contains("50.0%"),
            "{}",
            e.findings[0].message
        );
        let p = plan(&["8.8.8.0/24"], &act, true).unwrap();
        assert!(
            p.warnings()
                .iter()
                .any(|w| w.code == FindingCode::LargeChange)
        );
        // A space with no rule left empties the set.
        let e = plan(&[], &act, false).unwrap_err();
        assert!(e.findings[0].message.contains("empties"));
    }
}
