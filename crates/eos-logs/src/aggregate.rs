//! Records → observations: per (space, client) evidence, merged across
//! parser threads. Memory grows with distinct (space, ip) pairs (and the
//! distinct days and users of each), never with the input size.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::net::IpAddr;

use foldhash::HashMap;
use foldhash::fast::FixedState;

use eos_identity::{SpaceId, UserId};
use serde::Serialize;
use time::OffsetDateTime;

use crate::error::ScanError;
use crate::input::Input;
use crate::observation::{Observation, StatusCounts};
use crate::options::{Format, ScanOptions};
use crate::record::{LogRecord, Stamp};
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

/// Distinct days (since the epoch) of one pair. Logs arrive mostly in time
/// order, so the days of a pair are a bitmap of a 128-day window anchored a
/// little before the first day seen: an insert sets a bit, with nothing to
/// search and nothing allocated. The rare day outside the window goes to a
/// sorted vector.
#[derive(Debug, Clone, Default)]
struct Days {
    base: i32,
    bits: [u64; 2],
    /// Boxed: one pointer in the hot struct instead of a vector's three
    /// words, for a case that is rare.
    #[allow(clippy::box_collection)]
    outside: Option<Box<Vec<i32>>>,
}

impl Days {
    /// Days of the window before the first day seen.
    const LEAD: i32 = 32;

    fn is_empty(&self) -> bool {
        self.bits == [0, 0] && self.outside.is_none()
    }

    fn insert(&mut self, day: i32) {
        if self.is_empty() {
            self.base = day.saturating_sub(Self::LEAD);
        }
        match usize::try_from(i64::from(day) - i64::from(self.base)) {
            Ok(off) if off < 128 => {
                if let Some(w) = self.bits.get_mut(off / 64) {
                    *w |= 1 << (off % 64);
                }
            }
            _ => {
                let v = self.outside.get_or_insert_default();
                if let Err(at) = v.binary_search(&day) {
                    v.insert(at, day);
                }
            }
        }
    }

    fn len(&self) -> usize {
        let bits: u32 = self.bits.iter().map(|w| w.count_ones()).sum();
        bits as usize + self.outside.as_ref().map_or(0, |v| v.len())
    }

    /// Every day, in no particular order.
    fn iter(&self) -> impl Iterator<Item = i32> + '_ {
        let base = i64::from(self.base);
        // The set bits only, lowest first: a pair has a few days, not 128,
        // and the report merges every pair's days across threads.
        let window = self.bits.iter().enumerate().flat_map(move |(w, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let off = rest.trailing_zeros();
                // Clear the lowest set bit (rest is not 0).
                rest &= rest - 1;
                // In the window: base + off fits an i32.
                Some(day_i32(base + (w * 64) as i64 + i64::from(off)))
            })
        });
        window.chain(self.outside.iter().flat_map(|v| v.iter().copied()))
    }

    fn merge(&mut self, o: &Days) {
        for d in o.iter() {
            self.insert(d);
        }
    }
}

/// The seed of the user hash: fixed, so distinct-user counts are the same
/// on every run.
const USER_HASH: FixedState = FixedState::with_seed(0x6575_7365_7273);

/// Up to this many distinct users a pair keeps their hashes inline; beyond
/// it, in a hash set of its own.
const FEW_USERS: usize = 8;

/// Distinct users of one pair, by a 64-bit hash of the user: exact unless
/// two of one pair's users collide (odds ~n²/2^65).
#[derive(Debug, Clone)]
enum Users {
    Few {
        n: u8,
        hashes: [u64; FEW_USERS],
    },
    /// Boxed: the inline case sets the size of every pair's state.
    #[allow(clippy::box_collection)]
    Many(Box<HashSet<u64, FixedState>>),
}

impl Default for Users {
    fn default() -> Users {
        Users::Few {
            n: 0,
            hashes: [0; FEW_USERS],
        }
    }
}

impl Users {
    /// Add a user hash; true when it is new.
    fn insert(&mut self, h: u64) -> bool {
        match self {
            Users::Many(set) => set.insert(h),
            Users::Few { n, hashes } => {
                let len = usize::from(*n);
                if hashes.get(..len).is_some_and(|seen| seen.contains(&h)) {
                    return false;
                }
                if let Some(slot) = hashes.get_mut(len) {
                    *slot = h;
                    *n += 1;
                    return true;
                }
                let mut set: HashSet<u64, FixedState> =
                    HashSet::with_capacity_and_hasher(FEW_USERS * 4, FixedState::default());
                set.extend(hashes.iter().copied());
                set.insert(h);
                *self = Users::Many(Box::new(set));
                true
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Users::Few { n, .. } => usize::from(*n),
            Users::Many(set) => set.len(),
        }
    }

    /// Every user hash, in no particular order.
    fn hashes(&self) -> impl Iterator<Item = u64> + '_ {
        let (few, many) = match self {
            Users::Few { n, hashes } => (hashes.get(..usize::from(*n)).unwrap_or_default(), None),
            Users::Many(set) => (&[][..], Some(set.iter())),
        };
        few.iter().chain(many.into_iter().flatten()).copied()
    }

    fn merge(&mut self, o: &Users) {
        for h in o.hashes() {
            self.insert(h);
        }
    }
}

/// Per-pair state: one is touched per record, so it holds no pointer the
/// common case follows (days and users are inline).
#[derive(Debug, Clone)]
pub(crate) struct Agg {
    requests: u64,
    /// First and last evidence; `first > last` while there is none.
    first: Stamp,
    last: Stamp,
    status: StatusCounts,
    days: Days,
    users: Users,
    /// A known lower bound of distinct users (Logs Insights rows).
    users_floor: u64,
}

impl Default for Agg {
    fn default() -> Agg {
        Agg {
            requests: 0,
            first: Stamp::MAX,
            last: Stamp::MIN,
            status: StatusCounts::default(),
            days: Days::default(),
            users: Users::default(),
            users_floor: 0,
        }
    }
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
        let mut agg = Agg {
            requests,
            first: Stamp::of(first.min(last)),
            last: Stamp::of(first.max(last)),
            users_floor: users,
            ..Agg::default()
        };
        agg.days.insert(day_i32(day));
        agg
    }

    fn distinct_users(&self) -> u64 {
        (self.users.len() as u64).max(self.users_floor)
    }

    /// First and last evidence, if any.
    fn seen(&self) -> Option<(OffsetDateTime, OffsetDateTime)> {
        if self.first > self.last {
            return None;
        }
        Some((
            self.first.to_datetime().ok()?,
            self.last.to_datetime().ok()?,
        ))
    }

    /// Count `p`; true when its user is new to the pair.
    fn add(&mut self, p: &Pending) -> bool {
        let s = &mut self.status;
        match p.status.map(|c| c / 100) {
            Some(1) => s.s1xx += 1,
            Some(2) => s.s2xx += 1,
            Some(3) => s.s3xx += 1,
            Some(4) => s.s4xx += 1,
            Some(5) => s.s5xx += 1,
            _ => {}
        }
        if p.blocked {
            s.waf_blocked += 1;
        }
        if !p.evidence {
            return false;
        }
        self.requests += 1;
        let t = p.stamp;
        if t < self.first {
            self.first = t;
        }
        if t > self.last {
            self.last = t;
        }
        self.days.insert(day_i32(t.day()));
        p.user.as_ref().is_some_and(|(h, _)| self.users.insert(*h))
    }

    /// A few of the pair's users, sorted: those with the smallest hashes,
    /// a choice that depends on the users only, not on the order of the
    /// input or of the threads.
    fn examples(&self, names: &Names) -> Vec<UserId> {
        const KEEP: usize = Observation::MAX_EXAMPLE_USERS;
        // The smallest hashes so far, ascending: a sorted insert into a
        // small array, with nothing allocated until the names are cloned.
        let mut best: [(u64, Option<&UserId>); KEEP] = [(u64::MAX, None); KEEP];
        let mut len = 0;
        for h in self.users.hashes() {
            let Some(Some(name)) = names.get(&h) else {
                continue;
            };
            if len == KEEP && best.last().is_some_and(|(worst, _)| h >= *worst) {
                continue;
            }
            let at = best[..len].partition_point(|(b, _)| *b < h);
            len = (len + 1).min(KEEP);
            best.copy_within(at..len - 1, at + 1);
            best[at] = (h, Some(name));
        }
        let mut users: Vec<UserId> = best[..len].iter().filter_map(|(_, n)| n.cloned()).collect();
        users.sort_unstable();
        users
    }

    fn merge(&mut self, o: &Agg) {
        self.requests += o.requests;
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
        self.days.merge(&o.days);
        self.users.merge(&o.users);
        self.users_floor = self.users_floor.max(o.users_floor);
        let (s, t) = (&mut self.status, o.status);
        s.s1xx += t.s1xx;
        s.s2xx += t.s2xx;
        s.s3xx += t.s3xx;
        s.s4xx += t.s4xx;
        s.s5xx += t.s5xx;
        s.waf_blocked += t.waf_blocked;
    }
}

/// What one record adds to its pair, waiting in a batch.
#[derive(Debug, Clone)]
struct Pending {
    space: u32,
    ip: IpAddr,
    stamp: Stamp,
    status: Option<u16>,
    /// WAF blocked it.
    blocked: bool,
    evidence: bool,
    /// An evidence request's user: its hash and where its name is in the
    /// batch's text.
    user: Option<(u64, std::ops::Range<usize>)>,
}

/// Records are folded in batches of this many: the cache misses of finding
/// and touching their pairs' states then overlap instead of queueing.
const BATCH: usize = 64;

/// Users by hash, as [`Users`] counts them (`None`: not a valid user id,
/// counted but never shown), so pairs keep hashes only.
type Names = HashMap<u64, Option<UserId>>;

/// Pair states by index, in fixed-size segments: growing never moves them.
#[derive(Debug, Default, Clone)]
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

    fn get(&self, i: usize) -> Option<&Agg> {
        self.segments.get(i / Self::SEGMENT)?.get(i % Self::SEGMENT)
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Agg> {
        self.segments
            .get_mut(i / Self::SEGMENT)?
            .get_mut(i % Self::SEGMENT)
    }
}

/// Per-thread accumulator. The pair map holds only indices into `aggs`:
/// the table stays small and cache-friendly, and each record touches one
/// `Agg`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Aggregator {
    /// Spaces by index, and the index of each.
    spaces: Vec<SpaceId>,
    by_name: HashMap<SpaceId, u32>,
    /// The parser thread's space-cache slot → index in `spaces`
    /// (`u32::MAX`: not looked up yet), for the cache's `generation`.
    by_slot: Vec<u32>,
    generation: u32,
    /// Pairs with an IPv4 client, keyed `space << 32 | address`: 16-byte
    /// buckets, so more of the table stays in cache.
    v4: HashMap<u64, u32>,
    /// Pairs with an IPv6 client.
    v6: HashMap<(u128, u32), u32>,
    aggs: Slab,
    /// The users of every pair, by hash.
    names: Names,
    /// Records not folded yet, the user names they hold, and (reused) the
    /// index of each one's pair.
    batch: Vec<Pending>,
    batch_users: String,
    batch_index: Vec<u32>,
}

impl Aggregator {
    fn space_index(&mut self, space: &SpaceId) -> u32 {
        if let Some(&i) = self.by_name.get(space) {
            return i;
        }
        // Pairs are counted in u32: at most 4 billion spaces.
        let i = u32::try_from(self.spaces.len()).unwrap_or(u32::MAX);
        self.spaces.push(space.clone());
        self.by_name.insert(space.clone(), i);
        i
    }

    /// The space of `rec`, by its cache slot when the slot is current.
    fn record_space(&mut self, rec: &LogRecord<'_>) -> u32 {
        let slot = rec.space_slot;
        if slot.index == u32::MAX {
            return self.space_index(rec.space);
        }
        if slot.generation != self.generation {
            self.by_slot.clear();
            self.generation = slot.generation;
        }
        let at = slot.index as usize;
        if let Some(&i) = self.by_slot.get(at)
            && i != u32::MAX
        {
            return i;
        }
        let i = self.space_index(rec.space);
        if self.by_slot.len() <= at {
            self.by_slot.resize(at + 1, u32::MAX);
        }
        if let Some(s) = self.by_slot.get_mut(at) {
            *s = i;
        }
        i
    }

    /// The index of (space, ip)'s state, pushed if it is new.
    fn index(&mut self, space: u32, ip: IpAddr) -> u32 {
        // More than 4 billion pairs do not fit in memory anyway.
        let next = u32::try_from(self.aggs.len).unwrap_or(u32::MAX);
        let i = match ip {
            IpAddr::V4(a) => *self
                .v4
                .entry(u64::from(space) << 32 | u64::from(u32::from(a)))
                .or_insert(next),
            IpAddr::V6(a) => *self.v6.entry((u128::from(a), space)).or_insert(next),
        };
        if i == next {
            self.aggs.push(Agg::default());
        }
        i
    }

    /// The state of (space, ip), pushed if it is new.
    fn state(&mut self, space: u32, ip: IpAddr) -> Option<&mut Agg> {
        let i = self.index(space, ip);
        self.aggs.get_mut(i as usize)
    }

    fn add(&mut self, rec: &LogRecord<'_>) {
        let evidence = rec.evidence;
        let space = self.record_space(rec);
        let user = rec.user.filter(|u| evidence && !u.is_empty()).map(|u| {
            let start = self.batch_users.len();
            self.batch_users.push_str(u);
            (USER_HASH.hash_one(u), start..self.batch_users.len())
        });
        self.batch.push(Pending {
            space,
            ip: rec.client_ip,
            stamp: rec.stamp,
            status: rec.status,
            blocked: rec.waf_action.is_some_and(crate::WafAction::blocked),
            evidence,
            user,
        });
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    /// Fold the batch: find every record's pair first, then touch each
    /// state, then update them. The finds and the touches do not depend on
    /// one another, so their cache misses overlap.
    fn flush(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        let mut index = std::mem::take(&mut self.batch_index);
        index.clear();
        index.extend(batch.iter().map(|p| self.index(p.space, p.ip)));
        let mut touched = 0u64;
        for &i in &index {
            if let Some(a) = self.aggs.get(i as usize) {
                touched = touched
                    .wrapping_add(a.requests)
                    .wrapping_add(a.days.bits[0])
                    .wrapping_add(a.users.len() as u64);
            }
        }
        std::hint::black_box(touched);
        for (p, &i) in batch.iter().zip(&index) {
            let new_user = self.aggs.get_mut(i as usize).is_some_and(|a| a.add(p));
            if new_user && let Some((h, at)) = &p.user {
                let name = self.batch_users.get(at.clone()).unwrap_or_default();
                self.names
                    .entry(*h)
                    .or_insert_with(|| UserId::new(name).ok());
            }
        }
        self.batch = batch;
        self.batch.clear();
        self.batch_index = index;
        self.batch_users.clear();
    }

    pub(crate) fn add_agg(&mut self, space: &SpaceId, ip: IpAddr, agg: Agg) {
        let space = self.space_index(space);
        if let Some(mine) = self.state(space, ip) {
            mine.merge(&agg);
        }
    }

    fn len(&self) -> usize {
        self.aggs.len
    }

    /// Every pair of this accumulator (number `acc`), with its space as
    /// ranked by `rank`.
    fn entries(&self, acc: u32, rank: &[u32], out: &mut Vec<Entry>) {
        let space = |local: u32| rank.get(local as usize).copied().unwrap_or(u32::MAX);
        out.extend(self.v4.iter().map(|(&k, &idx)| Entry {
            // The high half is the space, the low half the address.
            space: space((k >> 32) as u32),
            v6: false,
            addr: u128::from(k as u32),
            acc,
            idx,
        }));
        out.extend(self.v6.iter().map(|(&(addr, local), &idx)| Entry {
            space: space(local),
            v6: true,
            addr,
            acc,
            idx,
        }));
    }
}

/// One pair of one accumulator. Sorting by (space, v6, addr) is the
/// report's order (spaces by name, then `IpAddr`'s order) and brings the
/// same pair of different accumulators together.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The space's rank among all spaces by name.
    space: u32,
    v6: bool,
    addr: u128,
    acc: u32,
    idx: u32,
}

impl Entry {
    fn key(&self) -> (u32, bool, u128) {
        (self.space, self.v6, self.addr)
    }

    fn ip(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(self.addr.into())
        } else {
            // Made from a u32.
            IpAddr::V4(u32::try_from(self.addr).unwrap_or_default().into())
        }
    }
}

/// Scan `inputs` into observations.
pub fn scan(
    inputs: Vec<Input>,
    opts: &ScanOptions,
    progress: Option<&dyn Progress>,
) -> Result<ScanReport, ScanError> {
    let (accs, stats) = fold_records(inputs, opts, progress, Aggregator::default, Aggregator::add)?;
    Ok(report(accs, stats, opts))
}

/// Below this many pairs the report is built on the calling thread.
const PARALLEL_REPORT: usize = 50_000;

/// The report of per-thread accumulators. Their pairs are split into
/// `parts` ranges of the report's order (by splitters drawn from a sample),
/// and each range is sorted, merged and turned into observations on a
/// thread of its own: the same pair of different accumulators lands in one
/// range, side by side. No hash merge, no string sort, nothing serial but
/// one pass over the pairs.
pub(crate) fn report(
    mut accs: Vec<Aggregator>,
    stats: ScanStats,
    opts: &ScanOptions,
) -> ScanReport {
    accs.iter_mut().for_each(Aggregator::flush);
    let pairs: usize = accs.iter().map(Aggregator::len).sum();
    let parts = if pairs < PARALLEL_REPORT {
        1
    } else {
        opts.threads.max(1)
    };
    report_in(parts, accs, stats, opts)
}

/// Sample size per part for choosing the splitters.
const SAMPLE_PER_PART: usize = 256;

/// Keys that cut `entries` into `parts` ranges of about equal size: part
/// `i` holds the keys `k` with `splitters[i - 1] <= k < splitters[i]`, so
/// equal keys always share a part. Drawn from evenly spaced entries, which
/// in hash-table order are a fair sample.
fn splitters(entries: &[Entry], parts: usize) -> Vec<(u32, bool, u128)> {
    if parts < 2 || entries.is_empty() {
        return Vec::new();
    }
    let n = (SAMPLE_PER_PART * parts).min(entries.len());
    let step = entries.len() / n;
    let mut sample: Vec<(u32, bool, u128)> = entries
        .iter()
        .step_by(step.max(1))
        .map(Entry::key)
        .collect();
    sample.sort_unstable();
    (1..parts)
        .filter_map(|k| sample.get(sample.len() * k / parts).copied())
        .collect()
}

/// [`report`] on `parts` threads.
fn report_in(
    parts: usize,
    accs: Vec<Aggregator>,
    stats: ScanStats,
    opts: &ScanOptions,
) -> ScanReport {
    let mut spaces: Vec<&SpaceId> = accs.iter().flat_map(|a| a.spaces.iter()).collect();
    spaces.sort_unstable();
    spaces.dedup();
    let total: usize = accs.iter().map(Aggregator::len).sum();
    let mut entries = Vec::with_capacity(total);
    for (n, a) in accs.iter().enumerate() {
        let rank: Vec<u32> = a
            .spaces
            .iter()
            .map(|s| {
                spaces
                    .binary_search(&s)
                    .map_or(u32::MAX, |r| u32::try_from(r).unwrap_or(u32::MAX))
            })
            .collect();
        a.entries(u32::try_from(n).unwrap_or(u32::MAX), &rank, &mut entries);
    }
    let cuts = splitters(&entries, parts);
    let mut ranges: Vec<Vec<Entry>> = (0..=cuts.len())
        .map(|_| Vec::with_capacity(total / (cuts.len() + 1) + total / 16))
        .collect();
    for e in entries {
        let part = cuts.partition_point(|c| *c <= e.key());
        if let Some(r) = ranges.get_mut(part) {
            r.push(e);
        }
    }
    let mut names = Names::default();
    for a in &accs {
        for (h, name) in &a.names {
            names.entry(*h).or_insert_with(|| name.clone());
        }
    }
    let ctx = (&accs[..], &spaces[..], &names, opts);
    // The first range's observations get room for every range's, so the
    // others are appended without moving it.
    let sort_and_build = |(i, mut range): (usize, Vec<Entry>)| {
        range.sort_unstable_by_key(Entry::key);
        build(&range, if i == 0 { total } else { range.len() }, ctx)
    };
    let built: Vec<Built> = if ranges.len() == 1 {
        ranges.into_iter().enumerate().map(sort_and_build).collect()
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = ranges
                .into_iter()
                .enumerate()
                .map(|r| s.spawn(move || sort_and_build(r)))
                .collect();
            handles
                .into_iter()
                // A panic in `build` is the caller's, as on one thread.
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    };
    let mut out = Built::default();
    let join = || {
        for b in built {
            if out.observations.is_empty() {
                out.observations = b.observations;
            } else {
                out.observations.extend(b.observations);
            }
            out.seen += b.seen;
            out.without += b.without;
            out.below += b.below;
        }
    };
    if parts < 2 {
        join();
    } else {
        // Freeing an accumulator visits every pair's state: each is freed
        // on a thread of its own while the parts are joined.
        std::thread::scope(|s| {
            for a in accs {
                s.spawn(move || drop(a));
            }
            join();
        });
    }
    ScanReport {
        format: opts.format,
        since: opts.since,
        until: opts.until,
        observations: out.observations,
        pairs_seen: out.seen,
        pairs_without_evidence: out.without,
        pairs_below_threshold: out.below,
        stats,
    }
}

/// Observations and pair counts of one range of sorted pairs.
#[derive(Debug, Default)]
struct Built {
    observations: Vec<Observation>,
    seen: u64,
    without: u64,
    below: u64,
}

fn build(
    entries: &[Entry],
    room: usize,
    (accs, spaces, names, opts): (&[Aggregator], &[&SpaceId], &Names, &ScanOptions),
) -> Built {
    let mut out = Built {
        observations: Vec::with_capacity(room),
        ..Built::default()
    };
    let state = |e: &Entry| accs.get(e.acc as usize)?.aggs.get(e.idx as usize);
    for pair in entries.chunk_by(|a, b| a.key() == b.key()) {
        let (Some(first), Some(space)) = (pair.first(), spaces.get(pair[0].space as usize)) else {
            continue;
        };
        let Some(mut agg) = state(first).cloned() else {
            continue;
        };
        for e in &pair[1..] {
            if let Some(o) = state(e) {
                agg.merge(o);
            }
        }
        out.seen += 1;
        let Some((first_seen, last_seen)) = agg.seen() else {
            out.without += 1;
            continue;
        };
        let days = u32::try_from(agg.days.len()).unwrap_or(u32::MAX);
        if agg.requests < opts.evidence.min_requests || days < opts.evidence.min_distinct_days {
            out.below += 1;
            continue;
        }
        let ip = first.ip();
        out.observations.push(Observation {
            space: (*space).clone(),
            ip,
            requests: agg.requests,
            first_seen,
            last_seen,
            distinct_days: days,
            distinct_users: agg.distinct_users(),
            example_users: agg.examples(names),
            status: agg.status,
            flag: eos_ipset::classify_addr(ip),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Days: the bitmap window plus the vector outside it count what a
        /// set would, in any insert order, and merging is a union.
        #[test]
        fn days_count_like_a_set(
            a in proptest::collection::vec(-400i32..400, 0..200),
            b in proptest::collection::vec(-400i32..400, 0..200),
        ) {
            let (mut da, mut db) = (Days::default(), Days::default());
            a.iter().for_each(|&d| da.insert(d));
            b.iter().for_each(|&d| db.insert(d));
            let sa: BTreeSet<i32> = a.iter().copied().collect();
            let sb: BTreeSet<i32> = b.iter().copied().collect();
            prop_assert_eq!(da.len(), sa.len());
            prop_assert_eq!(da.iter().collect::<BTreeSet<_>>(), sa.clone());
            da.merge(&db);
            prop_assert_eq!(da.len(), sa.union(&sb).count());
        }

        /// Users: inline and spilled to a set, counts and merges are exact.
        #[test]
        fn users_count_like_a_set(
            a in proptest::collection::vec(0u64..40, 0..100),
            b in proptest::collection::vec(0u64..40, 0..100),
        ) {
            let (mut ua, mut ub) = (Users::default(), Users::default());
            let mut sa = BTreeSet::new();
            for &h in &a {
                prop_assert_eq!(ua.insert(h), sa.insert(h));
            }
            b.iter().for_each(|&h| { ub.insert(h); });
            let sb: BTreeSet<u64> = b.iter().copied().collect();
            prop_assert_eq!(ua.len(), sa.len());
            ua.merge(&ub);
            prop_assert_eq!(ua.len(), sa.union(&sb).count());
        }

        /// Example users: the named users with the smallest hashes, at
        /// most five, sorted by name; users without a valid id are skipped.
        #[test]
        fn examples_are_the_named_users_with_the_smallest_hashes(
            users in proptest::collection::btree_map(any::<u64>(), any::<bool>(), 0..30),
        ) {
            let mut agg = Agg::default();
            let mut names = Names::default();
            for (&h, &valid) in &users {
                agg.users.insert(h);
                let name = UserId::new(&format!("user-{h:016x}")).ok();
                names.insert(h, if valid { name } else { None });
            }
            let mut model: Vec<UserId> = users
                .iter()
                .filter(|&(_, valid)| *valid)
                .take(Observation::MAX_EXAMPLE_USERS)
                .filter_map(|(h, _)| names.get(h).cloned().flatten())
                .collect();
            model.sort_unstable();
            prop_assert_eq!(agg.examples(&names), model);
        }
    }

    #[test]
    fn days_at_the_ends_of_the_range() {
        let mut d = Days::default();
        for day in [i32::MIN, i32::MAX, 0, i32::MIN, 127 - 32, 128 - 32] {
            d.insert(day);
        }
        assert_eq!(d.len(), 5);
    }

    /// Example users depend on the users only: not on the order of the
    /// lines, nor on how many threads share them out.
    #[test]
    fn example_users_are_the_same_whatever_the_order_and_threads() {
        let line = |u: usize| {
            format!(
                "{{\"timestamp\":\"2026-11-02T08:00:{:02}Z\",\"space\":\"acme\",\"user\":\"u{u:02}\",\"status\":200,\"source_ip\":\"203.0.113.9\"}}\n",
                u % 60
            )
        };
        // Each user on a run of lines: about 12 MB, three of the reader's
        // 4 MiB chunks, so two parser threads see different users and the
        // report merges them.
        let run = |u: usize| line(u).repeat(2_400);
        let forward: String = (0..40).map(run).collect();
        let backward: String = (0..40).rev().map(run).collect();
        assert!(forward.len() > 2 * (4 << 20));
        let mut got = Vec::new();
        for (text, threads) in [(&forward, 1), (&forward, 2), (&backward, 2)] {
            let mut opts = ScanOptions::new(crate::Format::Usage);
            opts.threads = threads;
            let input = Input::bytes("t", text.clone().into_bytes());
            let report = scan(vec![input], &opts, None).unwrap_or_else(|e| panic!("{e}"));
            let [o] = report.observations.as_slice() else {
                panic!("{:?}", report.observations);
            };
            assert_eq!(o.distinct_users, 40);
            assert_eq!(o.example_users.len(), Observation::MAX_EXAMPLE_USERS);
            assert!(o.example_users.is_sorted());
            got.push(o.example_users.clone());
        }
        assert_eq!(got[0], got[1]);
        assert_eq!(got[0], got[2]);
    }

    /// The report's order is (space, `IpAddr`), and the same pair from
    /// several accumulators is one observation.
    #[test]
    fn report_merges_and_orders_pairs() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|e| panic!("{e}"));
        let space = |s: &str| SpaceId::new(s).unwrap_or_else(|e| panic!("{e}"));
        let row = |n| {
            let t = OffsetDateTime::UNIX_EPOCH;
            Agg::from_aggregate(n, t, t, 0, 1)
        };
        let mut a = Aggregator::default();
        let mut b = Aggregator::default();
        for addr in ["::ffff:10.0.0.1", "10.0.0.1", "255.255.255.255", "::"] {
            a.add_agg(&space("zeta"), ip(addr), row(1));
            b.add_agg(&space("acme"), ip(addr), row(2));
        }
        b.add_agg(&space("zeta"), ip("10.0.0.1"), row(4));
        let opts = ScanOptions::new(crate::Format::Usage);
        for parts in [1, 2, 3, 9, 20] {
            let r = report_in(
                parts,
                vec![a.clone(), b.clone()],
                ScanStats::default(),
                &opts,
            );
            let got: Vec<(String, IpAddr, u64)> = r
                .observations
                .iter()
                .map(|o| (o.space.to_string(), o.ip, o.requests))
                .collect();
            let mut want = Vec::new();
            for (s, n) in [("acme", 2), ("zeta", 1)] {
                for addr in ["10.0.0.1", "255.255.255.255", "::", "::ffff:10.0.0.1"] {
                    let n = if s == "zeta" && addr == "10.0.0.1" {
                        5
                    } else {
                        n
                    };
                    want.push((s.to_owned(), ip(addr), n));
                }
            }
            assert_eq!(got, want);
            assert_eq!(r.pairs_seen, 8);
        }
    }
}
