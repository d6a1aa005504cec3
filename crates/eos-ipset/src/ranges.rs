//! Sorted, disjoint, non-adjacent inclusive ranges over one address width.
//!
//! This is the exact core of [`crate::IpSet`]: every operation keeps the
//! invariant `r[i].hi + 1 < r[i+1].lo`, so two equal sets always have equal
//! representations and the minimal CIDR cover is a pure function of it.

use std::fmt::Debug;

/// An unsigned address word: `u32` for IPv4, `u128` for IPv6.
pub(crate) trait Word: Copy + Ord + Debug + Send + Sync + 'static {
    const BITS: u32;
    const ZERO: Self;
    fn checked_succ(self) -> Option<Self>;
    fn checked_pred(self) -> Option<Self>;
    fn trailing_zeros_(self) -> u32;
    /// `hi - lo + 1`, saturating at `u128::MAX` (only `::/0` saturates).
    fn span(lo: Self, hi: Self) -> u128;
    /// `self + 2^bits`, `None` on overflow.
    fn add_pow2(self, bits: u32) -> Option<Self>;
    /// Largest `k` with `2^k <= hi - lo + 1`.
    fn span_log2(lo: Self, hi: Self) -> u32;
}

macro_rules! impl_word {
    ($t:ty) => {
        impl Word for $t {
            const BITS: u32 = <$t>::BITS;
            const ZERO: Self = 0;
            fn checked_succ(self) -> Option<Self> {
                self.checked_add(1)
            }
            fn checked_pred(self) -> Option<Self> {
                self.checked_sub(1)
            }
            fn trailing_zeros_(self) -> u32 {
                self.trailing_zeros()
            }
            fn span(lo: Self, hi: Self) -> u128 {
                ((hi - lo) as u128).saturating_add(1)
            }
            fn add_pow2(self, bits: u32) -> Option<Self> {
                if bits >= <$t>::BITS {
                    return None;
                }
                self.checked_add((1 as $t) << bits)
            }
            fn span_log2(lo: Self, hi: Self) -> u32 {
                let diff = hi - lo;
                match diff.checked_add(1) {
                    // The whole space: 2^BITS addresses.
                    None => <$t>::BITS,
                    Some(n) => <$t>::BITS - 1 - n.leading_zeros(),
                }
            }
        }
    };
}
impl_word!(u32);
impl_word!(u128);

/// Canonical range list. `Ranges::from_unsorted` and the set operations are
/// the only ways to build one, so the invariant always holds.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct Ranges<T: Word> {
    items: Vec<(T, T)>,
}

impl<T: Word> Debug for Ranges<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.items.iter()).finish()
    }
}

impl<T: Word> Ranges<T> {
    pub(crate) fn new() -> Self {
        Self { items: Vec::new() }
    }

    pub(crate) fn as_slice(&self) -> &[(T, T)] {
        &self.items
    }

    /// Sort and coalesce arbitrary inclusive ranges (`lo <= hi` required).
    pub(crate) fn from_unsorted(mut items: Vec<(T, T)>) -> Self {
        items.sort_unstable_by_key(|r| r.0);
        Self::from_sorted_by_lo(items)
    }

    /// Coalesce ranges already sorted by their low end.
    pub(crate) fn from_sorted_by_lo(items: Vec<(T, T)>) -> Self {
        let mut out: Vec<(T, T)> = Vec::with_capacity(items.len());
        for (lo, hi) in items {
            debug_assert!(lo <= hi);
            if let Some(last) = out.last_mut() {
                // Adjacent or overlapping: extend. `hi == MAX` absorbs everything after.
                let touches = match last.1.checked_succ() {
                    None => true,
                    Some(next) => lo <= next,
                };
                if touches {
                    if hi > last.1 {
                        last.1 = hi;
                    }
                    continue;
                }
            }
            out.push((lo, hi));
        }
        out.shrink_to_fit();
        Self { items: out }
    }

    /// Build from sorted, deduplicated single addresses.
    pub(crate) fn from_sorted_points(points: &[T]) -> Self {
        let mut out: Vec<(T, T)> = Vec::new();
        for &p in points {
            if let Some(last) = out.last_mut() {
                if p <= last.1 {
                    continue;
                }
                if last.1.checked_succ() == Some(p) {
                    last.1 = p;
                    continue;
                }
            }
            out.push((p, p));
        }
        out.shrink_to_fit();
        Self { items: out }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn contains(&self, x: T) -> bool {
        let i = self.items.partition_point(|r| r.1 < x);
        match self.items.get(i) {
            Some(&(lo, _)) => lo <= x,
            None => false,
        }
    }

    /// True when every address of `[lo, hi]` is in the set.
    pub(crate) fn contains_range(&self, lo: T, hi: T) -> bool {
        let i = self.items.partition_point(|r| r.1 < lo);
        match self.items.get(i) {
            Some(&(a, b)) => a <= lo && hi <= b,
            None => false,
        }
    }

    /// Number of addresses, saturating at `u128::MAX`.
    pub(crate) fn count(&self) -> u128 {
        self.items
            .iter()
            .fold(0u128, |acc, &(lo, hi)| acc.saturating_add(T::span(lo, hi)))
    }

    pub(crate) fn union(&self, other: &Self) -> Self {
        let (a, b) = (&self.items, &other.items);
        let mut merged = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            if a[i].0 <= b[j].0 {
                merged.push(a[i]);
                i += 1;
            } else {
                merged.push(b[j]);
                j += 1;
            }
        }
        merged.extend_from_slice(&a[i..]);
        merged.extend_from_slice(&b[j..]);
        Self::from_sorted_by_lo(merged)
    }

    pub(crate) fn intersection(&self, other: &Self) -> Self {
        let (a, b) = (&self.items, &other.items);
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            let lo = a[i].0.max(b[j].0);
            let hi = a[i].1.min(b[j].1);
            if lo <= hi {
                out.push((lo, hi));
            }
            if a[i].1 < b[j].1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        Self { items: out }
    }

    pub(crate) fn difference(&self, other: &Self) -> Self {
        let b = &other.items;
        let mut out = Vec::new();
        let mut j = 0;
        for &(lo, hi) in &self.items {
            let mut cur = Some(lo);
            // Skip subtrahend ranges entirely below this one.
            while j < b.len() && b[j].1 < lo {
                j += 1;
            }
            let mut k = j;
            while let Some(start) = cur {
                match b.get(k) {
                    Some(&(blo, bhi)) if blo <= hi => {
                        if blo > start {
                            // `blo > start >= 0`, so the predecessor exists.
                            if let Some(end) = blo.checked_pred() {
                                out.push((start, end));
                            }
                        }
                        cur = if bhi >= hi {
                            None
                        } else {
                            bhi.checked_succ().map(|n| n.max(start))
                        };
                        k += 1;
                    }
                    _ => {
                        out.push((start, hi));
                        cur = None;
                    }
                }
            }
        }
        Self { items: out }
    }

    /// The minimal list of aligned blocks `(base, prefix_len)` covering the set
    /// exactly. Greedy largest-aligned-block is optimal for a single range, and
    /// ranges are non-adjacent, so no block can span two of them.
    pub(crate) fn cidr_blocks(&self) -> Vec<(T, u8)> {
        let mut out = Vec::with_capacity(self.items.len());
        for &(lo, hi) in &self.items {
            push_range_blocks(lo, hi, &mut out);
        }
        out
    }

    /// Number of blocks `cidr_blocks` would return, without allocating them.
    pub(crate) fn cidr_block_count(&self) -> usize {
        let mut n = 0;
        for &(lo, hi) in &self.items {
            let mut start = lo;
            loop {
                let bits = block_bits(start, hi);
                n += 1;
                match start.add_pow2(bits) {
                    Some(next) if next <= hi && next > start => start = next,
                    _ => break,
                }
            }
        }
        n
    }
}

fn block_bits<T: Word>(start: T, hi: T) -> u32 {
    let align = if start == T::ZERO {
        T::BITS
    } else {
        start.trailing_zeros_()
    };
    align.min(T::span_log2(start, hi))
}

fn push_range_blocks<T: Word>(lo: T, hi: T, out: &mut Vec<(T, u8)>) {
    let mut start = lo;
    loop {
        let bits = block_bits(start, hi);
        // BITS <= 128 so the prefix length always fits in a u8.
        out.push((start, (T::BITS - bits) as u8));
        match start.add_pow2(bits) {
            Some(next) if next <= hi && next > start => start = next,
            _ => break,
        }
    }
}

/// LSD radix sort for `u32`, 3 passes of 11 bits: several times faster than a
/// comparison sort for the tens of millions of addresses a log scan yields.
pub(crate) fn radix_sort_u32(v: &mut Vec<u32>) {
    if v.len() < 4096 {
        v.sort_unstable();
        return;
    }
    let mut buf = vec![0u32; v.len()];
    for pass in 0..3u32 {
        let shift = pass * 11;
        let mut counts = [0usize; 2048];
        for &x in v.iter() {
            counts[((x >> shift) & 0x7ff) as usize] += 1;
        }
        let mut sum = 0;
        for c in counts.iter_mut() {
            let n = *c;
            *c = sum;
            sum += n;
        }
        for &x in v.iter() {
            let d = ((x >> shift) & 0x7ff) as usize;
            buf[counts[d]] = x;
            counts[d] += 1;
        }
        std::mem::swap(v, &mut buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_of_awkward_range() {
        let r = Ranges::<u32>::from_unsorted(vec![(1, 6)]);
        assert_eq!(r.cidr_blocks(), vec![(1, 32), (2, 31), (4, 31), (6, 32)]);
        assert_eq!(r.cidr_block_count(), 4);
    }

    #[test]
    fn whole_space() {
        let r = Ranges::<u32>::from_unsorted(vec![(0, u32::MAX)]);
        assert_eq!(r.cidr_blocks(), vec![(0, 0)]);
        assert_eq!(r.count(), 1 << 32);
        let r6 = Ranges::<u128>::from_unsorted(vec![(0, u128::MAX)]);
        assert_eq!(r6.cidr_blocks(), vec![(0, 0)]);
        assert_eq!(r6.count(), u128::MAX);
    }

    #[test]
    fn top_of_space() {
        let r = Ranges::<u32>::from_unsorted(vec![(u32::MAX - 1, u32::MAX), (5, 5)]);
        assert_eq!(r.cidr_blocks(), vec![(5, 32), (u32::MAX - 1, 31)]);
        let d = r.difference(&Ranges::from_unsorted(vec![(u32::MAX, u32::MAX)]));
        assert_eq!(d.as_slice(), &[(5, 5), (u32::MAX - 1, u32::MAX - 1)]);
    }

    #[test]
    fn radix_matches_std() {
        let mut x: u32 = 12345;
        let mut v: Vec<u32> = (0..10_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x
            })
            .collect();
        let mut w = v.clone();
        radix_sort_u32(&mut v);
        w.sort_unstable();
        assert_eq!(v, w);
    }
}
