//! Records → observations: per (space, client) evidence, merged across
//! parser threads. Memory grows with distinct (space, ip) pairs (and the
//! distinct days and users of each), never with the input size.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::net::IpAddr;

use foldhash::HashMap;
use foldhash::fast::FixedState;
use smallvec::SmallVec;

use eos_identity::{SpaceId, UserId};
use serde::Serialize;
use time::OffsetDateTime;

use crate::error::ScanError;
use crate::input::Input;
use crate::observation::{Observation, StatusCounts};
use crate::options::{Format, ScanOptions};
use crate::record::LogRecord;
use crate::scan::{Progress, ScanStats, fold_records};

/// What one scan found.
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    /// The format scanned.
    pub format: Format,
    /// `--since`, if any.
    #[serde(with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    /// `--until`, if any.
    #[serde(with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
    /// Per (space, client) evidence that passed the thresholds, sorted by
    /// space then address.
    pub observations: Vec<Observation>,
    /// (space, client) pairs seen at all, before thresholds.
    pub pairs_seen: u64,
    /// Pairs with no evidence request (e.g. only 403s or WAF blocks).
    pub pairs_without_evidence: u64,
    /// Pairs with evidence below `min_requests` / `min_distinct_days`.
    pub pairs_below_threshold: u64,
    /// Line, record and bad-line counts.
    pub stats: ScanStats,
}

/// Distinct days (since the epoch) of one pair, sorted; the first few
/// inline, so a pair seen on a few days needs no allocation of its own.
/// Logs arrive mostly in time order: a day is usually the last or appended.
#[derive(Debug, Clone, Default)]
struct Days(SmallVec<[i32; 6]>);

impl Days {
    fn insert(&mut self, day: i32) {
        if self.0.last() == Some(&day) {
            return;
        }
        if let Err(at) = self.0.binary_search(&day) {
            self.0.insert(at, day);
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// The seed of the user hash: fixed, so distinct-user counts are the same
/// on every run.
const USER_HASH: FixedState = FixedState::with_seed(0x6575_7365_7273);

/// Up to this many distinct users a pair keeps their hashes in a sorted
/// vector; beyond it, in a hash set.
const FEW_USERS: usize = 32;

/// Distinct users of one pair, by a 64-bit hash of the user: exact unless
/// two of one pair's users collide (odds ~n²/2^65).
#[derive(Debug, Clone)]
enum Users {
    Few(SmallVec<[u64; 4]>),
    Many(HashSet<u64, FixedState>),
}

impl Default for Users {
    fn default() -> Users {
        Users::Few(SmallVec::new())
    }
}

impl Users {
    /// Add a user hash; true when it is new.
    fn insert(&mut self, h: u64) -> bool {
        match self {
            Users::Many(set) => set.insert(h),
            Users::Few(v) => match v.binary_search(&h) {
                Ok(_) => false,
                Err(_) if v.len() >= FEW_USERS => {
                    let mut set: HashSet<u64, FixedState> =
                        HashSet::with_capacity_and_hasher(v.len() * 2, FixedState::default());
                    set.extend(v.iter().copied());
                    set.insert(h);
                    *self = Users::Many(set);
                    true
                }
                Err(at) => {
                    v.insert(at, h);
                    true
                }
            },
        }
    }

    fn len(&self) -> usize {
        match self {
            Users::Few(v) => v.len(),
            Users::Many(set) => set.len(),
        }
    }

    fn merge(&mut self, o: Users) {
        match o {
            Users::Few(v) => v.into_iter().for_each(|h| {
                self.insert(h);
            }),
            Users::Many(set) => set.into_iter().for_each(|h| {
                self.insert(h);
            }),
        }
    }
}

/// Per-pair state. Kept small: one is touched per record.
#[derive(Debug, Clone, Default)]
pub(crate) struct Agg {
    requests: u64,
    first: Option<OffsetDateTime>,
    last: Option<OffsetDateTime>,
    days: Days,
    users: Users,
    /// Sorted, at most [`Observation::MAX_EXAMPLE_USERS`].
    examples: Vec<UserId>,
    /// A known lower bound of distinct users (Logs Insights rows).
    users_floor: u64,
    status: StatusCounts,
}

/// Days since the epoch of `t`.
fn day_of(t: OffsetDateTime) -> i32 {
    day_i32(t.unix_timestamp().div_euclid(86_400))
}

/// A day number as an `i32` (the `time` crate's range fits one).
fn day_i32(day: i64) -> i32 {
    i32::try_from(day).unwrap_or(if day < 0 { i32::MIN } else { i32::MAX })
}

impl Agg {
    /// One pre-aggregated row: `requests` evidence requests on `day` (days
    /// since the epoch) by at least `users` distinct users.
    pub(crate) fn from_aggregate(
        requests: u64,
        first: OffsetDateTime,
        last: OffsetDateTime,
        day: i64,
        users: u64,
    ) -> Agg {
        Agg {
            requests,
            first: Some(first.min(last)),
            last: Some(first.max(last)),
            days: Days(smallvec::smallvec![day_i32(day)]),
            users_floor: users,
            ..Agg::default()
        }
    }

    fn distinct_users(&self) -> u64 {
        (self.users.len() as u64).max(self.users_floor)
    }

    fn add(&mut self, rec: &LogRecord<'_>, evidence: bool) {
        let s = &mut self.status;
        match rec.status.map(|c| c / 100) {
            Some(1) => s.s1xx += 1,
            Some(2) => s.s2xx += 1,
            Some(3) => s.s3xx += 1,
            Some(4) => s.s4xx += 1,
            Some(5) => s.s5xx += 1,
            _ => {}
        }
        if rec.waf_action.is_some_and(crate::WafAction::blocked) {
            s.waf_blocked += 1;
        }
        if !evidence {
            return;
        }
        self.requests += 1;
        let t = rec.time;
        if self.first.is_none_or(|f| t < f) {
            self.first = Some(t);
        }
        if self.last.is_none_or(|l| t > l) {
            self.last = Some(t);
        }
        self.days.insert(day_of(t));
        if let Some(user) = rec.user.filter(|u| !u.is_empty())
            && self.users.insert(USER_HASH.hash_one(user))
        {
            self.keep_example(user);
        }
    }

    /// Where `user` goes among the examples, if it is kept.
    fn example_slot(&self, user: &str) -> Option<usize> {
        if self.examples.len() >= Observation::MAX_EXAMPLE_USERS
            && self
                .examples
                .last()
                .is_some_and(|last| user >= last.as_str())
        {
            return None;
        }
        self.examples
            .binary_search_by(|e| e.as_str().cmp(user))
            .err()
    }

    fn keep_example(&mut self, user: &str) {
        if let Some(at) = self.example_slot(user)
            && let Ok(id) = UserId::new(user)
        {
            self.examples.insert(at, id);
            self.examples.truncate(Observation::MAX_EXAMPLE_USERS);
        }
    }

    fn merge(&mut self, o: Agg) {
        self.requests += o.requests;
        self.first = match (self.first, o.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last = match (self.last, o.last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for d in o.days.0 {
            self.days.insert(d);
        }
        self.users.merge(o.users);
        self.users_floor = self.users_floor.max(o.users_floor);
        for u in o.examples {
            if let Some(at) = self.example_slot(u.as_str()) {
                self.examples.insert(at, u);
                self.examples.truncate(Observation::MAX_EXAMPLE_USERS);
            }
        }
        let (s, t) = (&mut self.status, o.status);
        s.s1xx += t.s1xx;
        s.s2xx += t.s2xx;
        s.s3xx += t.s3xx;
        s.s4xx += t.s4xx;
        s.s5xx += t.s5xx;
        s.waf_blocked += t.waf_blocked;
    }
}

/// Pair states by index, in fixed-size segments: growing never moves them.
#[derive(Debug, Default)]
struct Slab {
    segments: Vec<Vec<Agg>>,
    len: usize,
}

impl Slab {
    const SEGMENT: usize = 4096;

    fn push(&mut self, agg: Agg) {
        if self.len.is_multiple_of(Self::SEGMENT) {
            self.segments.push(Vec::with_capacity(Self::SEGMENT));
        }
        if let Some(seg) = self.segments.last_mut() {
            seg.push(agg);
            self.len += 1;
        }
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Agg> {
        self.segments
            .get_mut(i / Self::SEGMENT)?
            .get_mut(i % Self::SEGMENT)
    }
}

/// Per-thread accumulator. The maps hold only indices into `aggs`: the
/// tables stay small and cache-friendly, and each record touches one
/// `Agg`.
#[derive(Debug, Default)]
pub(crate) struct Aggregator {
    pairs: HashMap<SpaceId, HashMap<IpAddr, usize>>,
    aggs: Slab,
}

impl Aggregator {
    /// Where the state of (space, ip) is in `aggs`, or where it goes.
    fn index(&mut self, space: &SpaceId, ip: IpAddr) -> usize {
        let ips = match self.pairs.get_mut(space) {
            Some(m) => m,
            None => self.pairs.entry(space.clone()).or_default(),
        };
        *ips.entry(ip).or_insert(self.aggs.len)
    }

    fn add(&mut self, rec: &LogRecord<'_>, evidence: bool) {
        let i = self.index(rec.space, rec.client_ip);
        if i == self.aggs.len {
            self.aggs.push(Agg::default());
        }
        if let Some(agg) = self.aggs.get_mut(i) {
            agg.add(rec, evidence);
        }
    }

    pub(crate) fn add_agg(&mut self, space: &SpaceId, ip: IpAddr, agg: Agg) {
        let i = self.index(space, ip);
        match self.aggs.get_mut(i) {
            Some(mine) => mine.merge(agg),
            None => self.aggs.push(agg),
        }
    }

    fn len(&self) -> usize {
        self.aggs.len
    }

    /// Hand every pair with its state to `f`.
    fn drain(self, mut f: impl FnMut(&SpaceId, IpAddr, Agg)) {
        let Aggregator { pairs, mut aggs } = self;
        for (space, ips) in &pairs {
            for (&ip, &i) in ips {
                if let Some(agg) = aggs.get_mut(i) {
                    f(space, ip, std::mem::take(agg));
                }
            }
        }
    }

    fn merge(&mut self, other: Aggregator) {
        other.drain(|space, ip, agg| self.add_agg(space, ip, agg));
    }
}

/// Scan `inputs` into observations.
pub fn scan(
    inputs: Vec<Input>,
    opts: &ScanOptions,
    progress: Option<&dyn Progress>,
) -> Result<ScanReport, ScanError> {
    let has_users = opts.format.has_users();
    let (accs, stats) = fold_records(
        inputs,
        opts,
        progress,
        Aggregator::default,
        |acc: &mut Aggregator, rec| acc.add(rec, rec.is_evidence(&opts.evidence, has_users)),
    )?;
    // Merge into the largest accumulator: fewer pairs move.
    let mut accs = accs;
    accs.sort_by_key(|a| std::cmp::Reverse(a.len()));
    let mut accs = accs.into_iter();
    let mut all = accs.next().unwrap_or_default();
    for a in accs {
        all.merge(a);
    }
    Ok(report(all, stats, opts))
}

pub(crate) fn report(all: Aggregator, stats: ScanStats, opts: &ScanOptions) -> ScanReport {
    let mut observations = Vec::new();
    let (mut seen, mut without, mut below) = (0u64, 0u64, 0u64);
    all.drain(|space, ip, agg| {
        seen += 1;
        let (Some(first), Some(last)) = (agg.first, agg.last) else {
            without += 1;
            return;
        };
        let days = u32::try_from(agg.days.len()).unwrap_or(u32::MAX);
        if agg.requests < opts.evidence.min_requests || days < opts.evidence.min_distinct_days {
            below += 1;
            return;
        }
        observations.push(Observation {
            space: space.clone(),
            ip,
            requests: agg.requests,
            first_seen: first,
            last_seen: last,
            distinct_days: days,
            distinct_users: agg.distinct_users(),
            example_users: agg.examples,
            status: agg.status,
            flag: eos_ipset::classify_addr(ip),
        });
    });
    observations.sort_unstable_by(|a, b| (&a.space, a.ip).cmp(&(&b.space, b.ip)));
    ScanReport {
        format: opts.format,
        since: opts.since,
        until: opts.until,
        observations,
        pairs_seen: seen,
        pairs_without_evidence: without,
        pairs_below_threshold: below,
        stats,
    }
}
