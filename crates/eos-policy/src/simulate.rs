//! Replay historical requests through the policy: per space, what
//! enforcement would block, and a hard warning when a declared
//! administrator would be among them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use eos_identity::{SpaceId, UserId};
use rustls_pki_types::UnixTime;
use serde::Serialize;

use crate::eval::{Evaluator, Request, Verdict};
use crate::model::Policy;

/// One historical request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRecord {
    /// The space it was for.
    pub space: SpaceId,
    /// The client address.
    pub ip: IpAddr,
    /// The authenticated user, when known.
    pub user: Option<UserId>,
}

impl SimRecord {
    /// The request a log recorded (any format `eos_logs` reads), with the
    /// space and client address as `eos_logs` resolved them (trusted-proxy
    /// rule applied). A logged user that is not a valid user id is treated
    /// as no user.
    pub fn from_log(r: &eos_logs::LogRecord<'_>) -> SimRecord {
        SimRecord {
            space: r.space.clone(),
            ip: r.client_ip,
            user: r.user.and_then(|u| UserId::new(u).ok()),
        }
    }
}

/// How many top blocked addresses a report lists per space.
pub const TOP_BLOCKED: usize = 10;

/// A blocked address and how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockedAddress {
    /// The address.
    pub ip: IpAddr,
    /// Requests from it that would be blocked.
    pub requests: u64,
}

/// Per space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct SpaceSimulation {
    /// Requests replayed.
    pub requests: u64,
    /// Requests blocked at the evaluated stages (now).
    pub blocked_now: u64,
    /// Requests blocked once enforced.
    pub would_block: u64,
    /// Distinct addresses that would be blocked.
    pub blocked_addresses: u64,
    /// The most frequent ones.
    pub top_blocked: Vec<BlockedAddress>,
    /// Users that would be blocked (sorted).
    pub blocked_users: Vec<UserId>,
    /// Declared administrators that would be blocked: a hard warning.
    pub blocked_admins: Vec<UserId>,
}

/// The whole simulation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Simulation {
    /// Per space.
    pub spaces: BTreeMap<SpaceId, SpaceSimulation>,
    /// Records for spaces the policy does not declare (skipped).
    pub unknown_space_records: u64,
    /// The certificate gate over ALB connection logs, when they were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificates: Option<crate::CertSimulation>,
}

impl Simulation {
    /// True when any declared administrator would be blocked (by the IP
    /// gate, or refused by the certificate gate of a space that verifies).
    pub fn blocks_admins(&self) -> bool {
        self.spaces.values().any(|s| !s.blocked_admins.is_empty())
            || self.certificates.as_ref().is_some_and(|c| {
                c.spaces
                    .values()
                    .any(|s| s.verify_at_enforce && !s.refused_admins.is_empty())
            })
    }
}

/// Accumulates records; [`Simulator::finish`] gives the report.
#[derive(Debug)]
pub struct Simulator<'e, 'p> {
    eval: &'e Evaluator<'p>,
    policy: &'p Policy,
    now: UnixTime,
    acc: BTreeMap<SpaceId, Acc>,
    unknown: u64,
}

#[derive(Debug, Default)]
struct Acc {
    requests: u64,
    blocked_now: u64,
    would_block: u64,
    by_ip: BTreeMap<IpAddr, u64>,
    users: BTreeSet<UserId>,
}

impl<'e, 'p> Simulator<'e, 'p> {
    /// A simulator over `eval` (certificates are not in logs: requests are
    /// replayed without one).
    pub fn new(policy: &'p Policy, eval: &'e Evaluator<'p>, now: UnixTime) -> Self {
        Simulator {
            eval,
            policy,
            now,
            acc: BTreeMap::new(),
            unknown: 0,
        }
    }

    /// Replay one record.
    pub fn record(&mut self, r: &SimRecord) {
        if !self.policy.spaces.contains_key(&r.space) {
            self.unknown += 1;
            return;
        }
        let req = Request::to_space(&self.policy.routing, &r.space, r.ip);
        let d = self.eval.evaluate(&req, None, self.now);
        let a = self.acc.entry(r.space.clone()).or_default();
        a.requests += 1;
        if d.now.verdict == Verdict::Block {
            a.blocked_now += 1;
        }
        if d.enforced.verdict == Verdict::Block {
            a.would_block += 1;
            *a.by_ip.entry(r.ip).or_default() += 1;
            if let Some(u) = &r.user {
                a.users.insert(u.clone());
            }
        }
    }

    /// The report.
    pub fn finish(self) -> Simulation {
        let mut spaces = BTreeMap::new();
        for (id, a) in self.acc {
            let mut top: Vec<BlockedAddress> = a
                .by_ip
                .iter()
                .map(|(ip, n)| BlockedAddress {
                    ip: *ip,
                    requests: *n,
                })
                .collect();
            top.sort_by(|x, y| y.requests.cmp(&x.requests).then(x.ip.cmp(&y.ip)));
            top.truncate(TOP_BLOCKED);
            let admins: BTreeSet<&UserId> = self
                .policy
                .spaces
                .get(&id)
                .map(|s| s.admins.iter().collect())
                .unwrap_or_default();
            let blocked_admins = a
                .users
                .iter()
                .filter(|u| admins.contains(u))
                .cloned()
                .collect();
            spaces.insert(
                id,
                SpaceSimulation {
                    requests: a.requests,
                    blocked_now: a.blocked_now,
                    would_block: a.would_block,
                    blocked_addresses: u64::try_from(a.by_ip.len()).unwrap_or(u64::MAX),
                    top_blocked: top,
                    blocked_users: a.users.into_iter().collect(),
                    blocked_admins,
                },
            );
        }
        Simulation {
            spaces,
            unknown_space_records: self.unknown,
            certificates: None,
        }
    }
}
