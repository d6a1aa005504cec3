//! Desired sets: per space and address family, the declared rules ∪ the
//! observations that pass the evidence thresholds, as an exact [`IpSet`],
//! aggregated losslessly to the CIDR list WAF stores — every entry with the
//! rules and observations that put it there.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use eos_identity::{SpaceId, UserId};
use eos_ipset::{Family, IpNet, IpSet, SpecialRange, canonical, classify_net};
use eos_logs::Observation;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::naming::IpSetName;
use crate::options::CheckedOptions;
use crate::rules::NetworkAccessRule;

/// Why an entry is in a desired set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// A declared Network Access Rule.
    Declared {
        /// The rule's CIDR.
        cidr: String,
        /// Its label.
        label: String,
        /// The administrator who declared it.
        declared_by: UserId,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        created: OffsetDateTime,
        /// Until when, if limited.
        #[serde(with = "time::serde::rfc3339::option", default)]
        expires: Option<OffsetDateTime>,
    },
    /// Evidence from the usage logs.
    Observed {
        /// The client address.
        ip: IpAddr,
        /// Evidence requests.
        requests: u64,
        /// Distinct UTC days.
        distinct_days: u32,
        /// Distinct authenticated users.
        distinct_users: u64,
        /// Some of them.
        example_users: Vec<UserId>,
        /// First evidence request.
        #[serde(with = "time::serde::rfc3339")]
        first_seen: OffsetDateTime,
        /// Last evidence request.
        #[serde(with = "time::serde::rfc3339")]
        last_seen: OffsetDateTime,
    },
}

impl Source {
    fn from_rule(r: &NetworkAccessRule) -> Source {
        Source::Declared {
            cidr: r.cidr.to_string(),
            label: r.label.to_string(),
            declared_by: r.declared_by.clone(),
            created: r.created,
            expires: r.expires,
        }
    }

    fn from_observation(o: &Observation) -> Source {
        Source::Observed {
            ip: o.ip,
            requests: o.requests,
            distinct_days: o.distinct_days,
            distinct_users: o.distinct_users,
            example_users: o.example_users.clone(),
            first_seen: o.first_seen,
            last_seen: o.last_seen,
        }
    }

    /// One line for people: `declared by alice (HQ office)` or
    /// `observed 198.51.100.7: 120 requests, 5 days, 3 users, 2026-01-02..2026-01-30`.
    pub fn describe(&self) -> String {
        match self {
            Source::Declared {
                cidr,
                label,
                declared_by,
                expires,
                ..
            } => {
                let until = expires
                    .map(|e| format!(", expires {}", crate::rules::rfc3339(e)))
                    .unwrap_or_default();
                format!("declared {cidr} by {declared_by} ({label}{until})")
            }
            Source::Observed {
                ip,
                requests,
                distinct_days,
                distinct_users,
                first_seen,
                last_seen,
                ..
            } => format!(
                "observed {ip}: {}, {}, {}, {}..{}",
                plural(*requests, "request"),
                plural(u64::from(*distinct_days), "day"),
                plural(*distinct_users, "user"),
                first_seen.date(),
                last_seen.date()
            ),
        }
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Stable codes of guard findings (documented in docs/RULES.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FindingCode {
    /// A `/0`: refused always.
    ZeroPrefix,
    /// A prefix broader than the configured bound and not allowed.
    BroadPrefix,
    /// Private, loopback, link-local, CGNAT, documentation or other special range.
    SpecialRange,
    /// More entries after aggregation than an IPSet may hold.
    TooManyEntries,
    /// A plan removing more than the allowed share of a set, or emptying it.
    LargeChange,
    /// Entries in the actual set that eos-sec never wrote (kept, reported).
    Drift,
    /// A declared rule past its expiry (not in the desired set).
    ExpiredRule,
    /// A saved or confirmed plan whose changes differ from what planning
    /// makes now (an edited file, or rules, evidence or sets changed since).
    PlanStale,
}

impl FindingCode {
    /// Every code, in the order of docs/CODES.md (this crate's registry).
    pub const ALL: &[FindingCode] = &[
        FindingCode::ZeroPrefix,
        FindingCode::BroadPrefix,
        FindingCode::SpecialRange,
        FindingCode::TooManyEntries,
        FindingCode::LargeChange,
        FindingCode::Drift,
        FindingCode::ExpiredRule,
        FindingCode::PlanStale,
    ];

    /// The kebab-case code.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingCode::ZeroPrefix => "zero-prefix",
            FindingCode::BroadPrefix => "broad-prefix",
            FindingCode::SpecialRange => "special-range",
            FindingCode::TooManyEntries => "too-many-entries",
            FindingCode::LargeChange => "large-change",
            FindingCode::Drift => "drift",
            FindingCode::ExpiredRule => "expired-rule",
            FindingCode::PlanStale => "plan-stale",
        }
    }
}

/// Refusals stop a plan; warnings are shown with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Stops the plan.
    Refusal,
    /// Shown, does not stop.
    Warning,
}

/// A guard's result, with the provenance of what tripped it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable code.
    pub code: FindingCode,
    /// Refusal or warning.
    pub severity: Severity,
    /// The IPSet concerned.
    pub set: IpSetName,
    /// The entry concerned, if one.
    pub cidr: Option<String>,
    /// What happened and what to do.
    pub message: String,
    /// Where the entry came from.
    #[serde(default)]
    pub sources: Vec<Source>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Refusal => "refused",
            Severity::Warning => "warning",
        };
        write!(f, "{sev} [{}] {}", self.code.as_str(), self.set)?;
        if let Some(c) = &self.cidr {
            write!(f, " {c}")?;
        }
        write!(f, ": {}", self.message)?;
        for s in &self.sources {
            write!(f, "; {}", s.describe())?;
        }
        Ok(())
    }
}

/// One entry of a desired set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredEntry {
    /// The CIDR as WAF stores it.
    pub cidr: IpNet,
    /// The rules and observations inside it.
    pub sources: Vec<Source>,
    /// Special ranges it overlaps.
    pub flags: Vec<SpecialRange>,
}

/// The desired IPSet of one space and family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredSet {
    /// Space.
    pub space: SpaceId,
    /// Family.
    pub family: Family,
    /// The exact set.
    pub set: IpSet,
    /// Its minimal CIDR list with provenance, in address order.
    pub entries: Vec<DesiredEntry>,
}

impl DesiredSet {
    /// The IPSet this becomes.
    pub fn name(&self) -> IpSetName {
        IpSetName::staged(&self.space, self.family)
    }
}

/// What the evidence says about one space, for the review report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpaceCoverage {
    /// Space.
    pub space: SpaceId,
    /// Rules in force.
    pub active_rules: usize,
    /// Rules past their expiry.
    pub expired_rules: usize,
    /// Declared rules no observed address falls in.
    pub rules_never_seen: Vec<String>,
    /// Observed addresses (any amount of evidence).
    pub observed_addresses: usize,
    /// Observed addresses that passed the thresholds.
    pub addresses_passing: usize,
    /// Evidence requests in the window.
    pub requests_total: u64,
    /// Evidence requests the desired set would have admitted.
    pub requests_admitted: u64,
    /// Users (from the observations' examples) the set would have admitted.
    pub users_admitted: Vec<UserId>,
    /// Addresses with evidence below the thresholds and no rule: the set
    /// would not admit them (with their requests).
    pub not_admitted: Vec<(IpAddr, u64)>,
    /// Fewer evidence requests than `min_space_requests`.
    pub too_little_traffic: bool,
}

/// Desired sets of every space in scope, the guard findings, and coverage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Non-empty sets, by space then family.
    pub sets: Vec<DesiredSet>,
    /// Every space that had rules or observations (even with empty sets).
    pub spaces: Vec<SpaceId>,
    /// Refusals and warnings.
    pub findings: Vec<Finding>,
    /// Per space.
    pub coverage: Vec<SpaceCoverage>,
}

impl Desired {
    /// The refusals among the findings.
    pub fn refusals(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Refusal)
    }

    /// The desired set for a name, if not empty.
    pub fn get(&self, name: &IpSetName) -> Option<&DesiredSet> {
        self.sets.iter().find(|s| &s.name() == name)
    }
}

/// Does an observation pass the evidence thresholds?
pub fn passes(o: &Observation, opts: &CheckedOptions) -> bool {
    let o2 = opts.options();
    o.requests >= o2.min_requests
        && o.distinct_days >= o2.min_days
        && o.distinct_users >= o2.min_users
}

fn bounds(net: &IpNet) -> (u128, u128) {
    match net {
        IpNet::V4(n) => (
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

/// Compute the desired sets. `now` decides which rules have expired.
/// Rules and observations of every space are used; filter before calling to
/// narrow the scope.
pub fn desired_sets(
    rules: &[NetworkAccessRule],
    observations: &[Observation],
    opts: &CheckedOptions,
    now: OffsetDateTime,
) -> Desired {
    let mut findings = Vec::new();
    // (space, family) -> items
    let mut items: BTreeMap<(SpaceId, Family), Vec<(IpNet, Source)>> = BTreeMap::new();
    for r in rules {
        let net = r.cidr.net();
        let name = IpSetName::staged(&r.space, Family::of(&net));
        if r.is_expired(now) {
            findings.push(Finding {
                code: FindingCode::ExpiredRule,
                severity: Severity::Warning,
                set: name,
                cidr: Some(r.cidr.to_string()),
                message: "rule has expired and is not in the desired set; remove it with `eos-sec rules remove`".into(),
                sources: vec![Source::from_rule(r)],
            });
            continue;
        }
        if net.prefix_len() == 0 {
            findings.push(Finding {
                code: FindingCode::ZeroPrefix,
                severity: Severity::Refusal,
                set: name,
                cidr: Some(r.cidr.to_string()),
                message: "a /0 admits every address; refused always".into(),
                sources: vec![Source::from_rule(r)],
            });
            continue;
        }
        if opts.too_broad(&net) {
            let o = opts.options();
            findings.push(Finding {
                code: FindingCode::BroadPrefix,
                severity: Severity::Refusal,
                set: name,
                cidr: Some(r.cidr.to_string()),
                message: format!(
                    "broader than the bound (/{} IPv4, /{} IPv6); narrow the rule, or list it in [plan] allow_broad if it is really meant",
                    o.broadest_v4, o.broadest_v6
                ),
                sources: vec![Source::from_rule(r)],
            });
            continue;
        }
        items
            .entry((r.space.clone(), Family::of(&net)))
            .or_default()
            .push((net, Source::from_rule(r)));
    }
    for o in observations {
        if !passes(o, opts) {
            continue;
        }
        let net = host_net(o.ip);
        items
            .entry((o.space.clone(), Family::of(&net)))
            .or_default()
            .push((net, Source::from_observation(o)));
    }
    let max_entries = opts.options().max_entries;
    let mut sets = Vec::new();
    for ((space, family), list) in items {
        let set = IpSet::from_nets(list.iter().map(|(n, _)| *n));
        let cidrs = set.to_cidrs();
        let name = IpSetName::staged(&space, family);
        if cidrs.len() > max_entries {
            findings.push(Finding {
                code: FindingCode::TooManyEntries,
                severity: Severity::Refusal,
                set: name.clone(),
                cidr: None,
                message: format!(
                    "{} entries after lossless aggregation, more than {max_entries}; nothing was truncated. Options: raise the evidence thresholds (min_requests, min_days, min_users) so fewer observed addresses qualify; declare the networks those addresses come from as rules (one CIDR replaces many /32s); or split the space's traffic across more IPSets",
                    cidrs.len()
                ),
                sources: Vec::new(),
            });
        }
        let entries = attribute(&cidrs, &list);
        for e in &entries {
            if !e.flags.is_empty() {
                let kinds: Vec<&str> = e.flags.iter().map(|f| f.as_str()).collect();
                findings.push(Finding {
                    code: FindingCode::SpecialRange,
                    severity: Severity::Warning,
                    set: name.clone(),
                    cidr: Some(canonical(&e.cidr)),
                    message: format!(
                        "overlaps {} address space: usually a missing trusted proxy or a typo",
                        kinds.join(", ")
                    ),
                    sources: e.sources.clone(),
                });
            }
        }
        sets.push(DesiredSet {
            space,
            family,
            set,
            entries,
        });
    }
    // Each space's rules and observations, gathered in one pass: a scan of
    // every observation for each space was most of `eos-sec plan` (300
    // spaces of 244,000 observations: 73 million name comparisons).
    let mut by_space: BTreeMap<&SpaceId, (Vec<&NetworkAccessRule>, Vec<&Observation>)> =
        BTreeMap::new();
    for r in rules {
        by_space.entry(&r.space).or_default().0.push(r);
    }
    for o in observations {
        by_space.entry(&o.space).or_default().1.push(o);
    }
    let coverage = by_space
        .iter()
        .map(|(space, (rules, obs))| coverage(space, rules, obs, &sets, opts, now))
        .collect();
    Desired {
        sets,
        spaces: by_space.keys().map(|&s| s.clone()).collect(),
        findings,
        coverage,
    }
}

/// Each CIDR of the aggregated list, with every source overlapping it.
fn attribute(cidrs: &[IpNet], list: &[(IpNet, Source)]) -> Vec<DesiredEntry> {
    let spans: Vec<(u128, u128)> = cidrs.iter().map(bounds).collect();
    let mut sources: Vec<Vec<Source>> = vec![Vec::new(); cidrs.len()];
    for (net, src) in list {
        let (lo, hi) = bounds(net);
        let start = spans.partition_point(|&(_, h)| h < lo);
        for (i, &(clo, _)) in spans.iter().enumerate().skip(start) {
            if clo > hi {
                break;
            }
            if let Some(v) = sources.get_mut(i) {
                v.push(src.clone());
            }
        }
    }
    cidrs
        .iter()
        .zip(sources)
        .map(|(c, s)| DesiredEntry {
            cidr: *c,
            sources: s,
            flags: classify_net(c),
        })
        .collect()
}

/// The coverage of `space`, given its own rules and observations.
fn coverage(
    space: &SpaceId,
    space_rules: &[&NetworkAccessRule],
    obs: &[&Observation],
    sets: &[DesiredSet],
    opts: &CheckedOptions,
    now: OffsetDateTime,
) -> SpaceCoverage {
    let desired = sets
        .iter()
        .filter(|s| &s.space == space)
        .fold(IpSet::new(), |acc, s| acc.union(&s.set));
    let seen: IpSet = obs.iter().map(|o| o.ip).collect();
    let mut active_rules = 0;
    let mut expired_rules = 0;
    let mut rules_never_seen = Vec::new();
    for r in space_rules {
        if r.is_expired(now) {
            expired_rules += 1;
            continue;
        }
        active_rules += 1;
        if seen
            .intersection(&IpSet::from_nets([r.cidr.net()]))
            .is_empty()
        {
            rules_never_seen.push(format!("{} ({})", r.cidr, r.label));
        }
    }
    let mut requests_total = 0u64;
    let mut requests_admitted = 0u64;
    let mut users = BTreeSet::new();
    let mut not_admitted = Vec::new();
    let mut addresses_passing = 0;
    for o in obs {
        requests_total = requests_total.saturating_add(o.requests);
        if passes(o, opts) {
            addresses_passing += 1;
        }
        if desired.contains(o.ip) {
            requests_admitted = requests_admitted.saturating_add(o.requests);
            users.extend(o.example_users.iter().cloned());
        } else {
            not_admitted.push((o.ip, o.requests));
        }
    }
    not_admitted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    SpaceCoverage {
        space: space.clone(),
        active_rules,
        expired_rules,
        rules_never_seen,
        observed_addresses: obs.len(),
        addresses_passing,
        requests_total,
        requests_admitted,
        users_admitted: users.into_iter().collect(),
        not_admitted,
        too_little_traffic: requests_total < opts.options().min_space_requests,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::options::PlanOptions;
    use crate::rules::{Label, RuleCidr};
    use time::macros::datetime;

    pub(crate) fn obs(
        space: &str,
        ip: &str,
        requests: u64,
        days: u32,
        users: &[&str],
    ) -> Observation {
        Observation {
            space: SpaceId::new(space).unwrap(),
            ip: ip.parse().unwrap(),
            requests,
            first_seen: datetime!(2026-02-01 08:00 UTC),
            last_seen: datetime!(2026-02-20 18:00 UTC),
            distinct_days: days,
            distinct_users: users.len() as u64,
            example_users: users.iter().map(|u| UserId::new(u).unwrap()).collect(),
            status: Default::default(),
            flag: eos_ipset::classify_addr(ip.parse().unwrap()),
        }
    }

    pub(crate) fn rule(space: &str, cidr: &str, label: &str) -> NetworkAccessRule {
        NetworkAccessRule::new(
            SpaceId::new(space).unwrap(),
            RuleCidr::parse(cidr).unwrap(),
            Label::new(label).unwrap(),
            UserId::new("alice").unwrap(),
            datetime!(2026-01-05 09:00 UTC),
            None,
        )
        .unwrap()
    }

    fn opts() -> CheckedOptions {
        PlanOptions::default().check().unwrap()
    }

    const NOW: OffsetDateTime = datetime!(2026-03-01 00:00 UTC);

    #[test]
    fn union_of_rules_and_passing_observations_with_provenance() {
        let rules = [rule("acme", "8.8.8.0/24", "HQ")];
        let observations = [
            obs("acme", "8.8.8.9", 50, 5, &["bob"]),   // inside the rule
            obs("acme", "9.9.9.9", 50, 5, &["carol"]), // passes
            obs("acme", "9.9.9.8", 50, 5, &["dave"]),  // passes, aggregates with .9
            obs("acme", "1.1.1.1", 3, 1, &["eve"]),    // below thresholds
            obs("globex", "2606:4700::1", 40, 3, &["x"]),
        ];
        let d = desired_sets(&rules, &observations, &opts(), NOW);
        assert_eq!(d.refusals().count(), 0);
        let acme = d
            .get(&IpSetName::staged(
                &SpaceId::new("acme").unwrap(),
                Family::V4,
            ))
            .unwrap();
        let cidrs: Vec<String> = acme.entries.iter().map(|e| canonical(&e.cidr)).collect();
        assert_eq!(cidrs, ["8.8.8.0/24", "9.9.9.8/31"]);
        assert_eq!(
            acme.entries[0].sources.len(),
            2,
            "rule and the observation inside it"
        );
        assert_eq!(acme.entries[1].sources.len(), 2);
        assert!(!acme.set.contains("1.1.1.1".parse().unwrap()));
        let globex = d
            .get(&IpSetName::staged(
                &SpaceId::new("globex").unwrap(),
                Family::V6,
            ))
            .unwrap();
        assert_eq!(canonical(&globex.entries[0].cidr), "2606:4700::1/128");
        let cov = &d.coverage[0];
        assert_eq!(cov.requests_total, 153);
        assert_eq!(cov.requests_admitted, 150);
        assert_eq!(cov.not_admitted, vec![("1.1.1.1".parse().unwrap(), 3)]);
        assert!(cov.rules_never_seen.is_empty());
        assert!(!cov.too_little_traffic);
        assert!(d.coverage[1].too_little_traffic);
    }

    #[test]
    fn rejects_broad_prefix_unless_allowed() {
        let rules = [rule("acme", "11.0.0.0/15", "carrier")];
        let d = desired_sets(&rules, &[], &opts(), NOW);
        let r: Vec<_> = d.refusals().collect();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].code, FindingCode::BroadPrefix);
        assert!(matches!(r[0].sources[0], Source::Declared { .. }));
        let allowed = PlanOptions {
            allow_broad: vec!["11.0.0.0/15".into()],
            ..PlanOptions::default()
        }
        .check()
        .unwrap();
        let d = desired_sets(&rules, &[], &allowed, NOW);
        assert_eq!(d.refusals().count(), 0);
        assert_eq!(d.sets.len(), 1);
    }

    #[test]
    fn rejects_too_many_entries_with_options() {
        let observations: Vec<Observation> = (0..30u32)
            .map(|i| {
                obs(
                    "acme",
                    &std::net::Ipv4Addr::from(0x0808_0000 + i * 2).to_string(),
                    50,
                    5,
                    &["u"],
                )
            })
            .collect();
        let o = PlanOptions {
            max_entries: 20,
            ..PlanOptions::default()
        }
        .check()
        .unwrap();
        let d = desired_sets(&[], &observations, &o, NOW);
        let r: Vec<_> = d.refusals().collect();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].code, FindingCode::TooManyEntries);
        assert!(r[0].message.contains("30 entries"));
        assert!(r[0].message.contains("min_requests"));
    }

    #[test]
    fn flags_special_ranges_and_skips_expired_rules() {
        let mut expired = rule("acme", "8.8.4.0/24", "old");
        expired.expires = Some(datetime!(2026-02-01 00:00 UTC));
        let rules = [rule("acme", "10.1.0.0/16", "office LAN"), expired];
        let d = desired_sets(
            &rules,
            &[obs("acme", "192.168.1.1", 99, 9, &["a"])],
            &opts(),
            NOW,
        );
        let codes: Vec<FindingCode> = d.findings.iter().map(|f| f.code).collect();
        assert_eq!(
            codes,
            [
                FindingCode::ExpiredRule,
                FindingCode::SpecialRange,
                FindingCode::SpecialRange
            ]
        );
        assert!(d.findings[1].message.contains("private"));
        assert_eq!(d.coverage[0].expired_rules, 1);
        assert_eq!(d.coverage[0].rules_never_seen, ["10.1.0.0/16 (office LAN)"]);
    }

    proptest::proptest! {
        #[test]
        fn desired_set_is_exactly_the_union(
            hosts in proptest::collection::vec((any_u32(), 0u64..40, 0u32..5), 0..60),
            nets in proptest::collection::vec((any_u32(), 16u8..=32), 0..8),
        ) {
            let mut seen = BTreeSet::new();
            let rules: Vec<NetworkAccessRule> = nets.iter().filter_map(|(a, l)| {
                let n = eos_ipset::Ipv4Net::new(std::net::Ipv4Addr::from(*a), *l).ok()?.trunc();
                seen.insert(n).then(|| rule("acme", &n.to_string(), "r"))
            }).collect();
            let observations: Vec<Observation> = hosts.iter()
                .map(|(a, r, d)| obs("acme", &std::net::Ipv4Addr::from(*a).to_string(), *r, *d, &["u"]))
                .collect();
            let o = opts();
            let d = desired_sets(&rules, &observations, &o, NOW);
            let mut expect = IpSet::from_nets(rules.iter().map(|r| r.cidr.net()));
            expect = expect.union(&observations.iter().filter(|x| passes(x, &o)).map(|x| x.ip).collect());
            let got = d.sets.iter().fold(IpSet::new(), |a, s| a.union(&s.set));
            proptest::prop_assert_eq!(&got, &expect);
            // Every entry has a source and every source lands in an entry.
            for s in &d.sets {
                for e in &s.entries {
                    proptest::prop_assert!(!e.sources.is_empty());
                }
            }
        }
    }

    fn any_u32() -> impl proptest::strategy::Strategy<Value = u32> {
        proptest::prelude::any::<u32>()
    }
}
