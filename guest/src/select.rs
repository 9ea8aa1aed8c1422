//! Order statistics: the values a full sort (by `f64::total_cmp`) would put at a few ranks,
//! found without sorting.
//!
//! Bucket selection: one pass finds the extremes, one counts the values per bucket of equal
//! width between them (a monotone map, so bucket order is value order) and keeps each bucket's
//! first few values, and the counts say which bucket holds each wanted rank. Where those
//! buckets' values were all kept (the usual case, two values per bucket on average), each is
//! sorted and read. Otherwise one more pass gathers only the wanted buckets' values (without a
//! branch: each value is written, and the end of the gathered values moves on only for the
//! wanted buckets), which are then put in bucket order and sorted or selected in, bucket by
//! bucket. Two or three cheap, branch-free passes over the data where quickselect's partitions
//! take several data-dependent ones per rank. The results are exact (the buckets only narrow
//! the search), so every target gives the same bits. Short inputs, many ranks and ranges that
//! are not finite (an infinity, or a span beyond f64) take divide-and-conquer quickselect
//! instead.

use crate::lanes;
use crunch_math::F64x2;

/// Below this many values, quickselect on a copy is as fast.
const SHORT: usize = 64;
/// Above this many ranks, a sort is as fast.
const MANY_RANKS: usize = 16;
/// A bucket of at most this many values is sorted rather than selected in.
const SORT_BELOW: usize = 24;
/// Values per bucket, on average.
const PER_BUCKET: usize = 2;
/// Values per step of a pass over the data (the component pays its time-limit check per loop
/// iteration).
const STEP: usize = 8;
/// 2^52: added to a value in [0, 2^31), it leaves the value rounded to an integer in the low 32
/// bits.
const ROUNDER: f64 = 4_503_599_627_370_496.0;

/// The values at `ranks` (sorted, distinct, each below `values.len()`) of `values` sorted by
/// `f64::total_cmp`, in the order of `ranks`; `None` if `values` holds a NaN.
pub fn order_statistics(values: &[f64], ranks: &[usize]) -> Option<Vec<f64>> {
    if values.len() < SHORT || ranks.len() > MANY_RANKS {
        return (!values.iter().any(|v| v.is_nan())).then(|| by_quickselect(values, ranks));
    }
    let (min, max) = extremes(values)?;
    if min == max {
        return Some(vec![min; ranks.len()]);
    }
    let buckets = (values.len() / PER_BUCKET).next_power_of_two();
    let Some(map) = BucketMap::new(min, max, buckets) else {
        return Some(by_quickselect(values, ranks));
    };
    if buckets > KEEP_UP_TO {
        let mut counts = vec![0u32; buckets];
        map.count(values, &mut counts);
        let places = rank_places(&counts, ranks);
        return Some(by_gathering(values, &places, &map, &mut counts));
    }
    SCRATCH.with_borrow_mut(|scratch| {
        let (counts, kept) = scratch.for_buckets(buckets);
        map.count_and_keep(values, counts, kept);
        let places = rank_places(counts, ranks);
        Some(if places.iter().all(|&(_, _, len)| len <= KEPT) {
            from_kept(&places, kept)
        } else {
            by_gathering(values, &places, &map, counts)
        })
    })
}

/// Values kept per bucket by the counting pass, in the order they come: a bucket holding a
/// wanted rank with no more values than this needs no second pass over the data.
const KEPT: usize = 8;

/// Up to this many buckets (8192 values), the counting pass keeps values: their room, four
/// times the data's size, stays within 256 KiB, held from item to item. Past it, the counts
/// are the item's own and a second pass gathers.
const KEEP_UP_TO: usize = 4096;

thread_local! {
    /// The counting pass's buffers, reused from item to item.
    static SCRATCH: core::cell::RefCell<Scratch> = const {
        core::cell::RefCell::new(Scratch { counts: Vec::new(), kept: Vec::new() })
    };
}

/// A count per bucket and room for [`KEPT`] values per bucket.
struct Scratch {
    counts: Vec<u32>,
    kept: Vec<f64>,
}

impl Scratch {
    /// Zeroed counts for `buckets` buckets and room to keep their values (holding whatever an
    /// earlier item left there: only what this item's pass writes is read).
    fn for_buckets(&mut self, buckets: usize) -> (&mut [u32], &mut [f64]) {
        self.counts.clear();
        self.counts.resize(buckets, 0);
        let room = buckets * KEPT;
        if self.kept.len() < room {
            self.kept.resize(room, 0.0);
        }
        (&mut self.counts, &mut self.kept[..room])
    }
}

/// Where a rank lies: (bucket, the rank among the bucket's values, the bucket's count).
type Place = (usize, usize, usize);

/// Where each of `ranks` lies ([`Place`]), walking the counts once, eight buckets at a time while the rank lies beyond them.
fn rank_places(counts: &[u32], ranks: &[usize]) -> Vec<Place> {
    let last = counts.len() - 1;
    let (mut b, mut below) = (0usize, 0usize);
    ranks
        .iter()
        .map(|&rank| {
            while let Some(block) = counts.get(b..b + 8) {
                let in_block = block.iter().sum::<u32>() as usize;
                if below + in_block > rank {
                    break;
                }
                below += in_block;
                b += 8;
            }
            while below + counts[b & last] as usize <= rank {
                below += counts[b & last] as usize;
                b += 1;
            }
            (b & last, rank - below, counts[b & last] as usize)
        })
        .collect()
}

/// The order statistics when every wanted bucket's values were all kept: each such bucket
/// sorted in place, once (`places` are in rank order, so a bucket's places come together).
fn from_kept(places: &[Place], kept: &mut [f64]) -> Vec<f64> {
    let mut sorted = usize::MAX;
    places
        .iter()
        .map(|&(b, at, len)| {
            let bucket = &mut kept[b * KEPT..b * KEPT + len];
            if b != sorted {
                bucket.sort_unstable_by(f64::total_cmp);
                sorted = b;
            }
            bucket[at]
        })
        .collect()
}

/// The order statistics at `places` by a second pass that gathers the wanted buckets' values:
/// for when a wanted bucket held more values than the counting pass keeps. `next` has one
/// entry per bucket (what it holds does not matter).
fn by_gathering(values: &[f64], places: &[Place], map: &BucketMap, next: &mut [u32]) -> Vec<f64> {
    let last = next.len() - 1;
    // Each wanted bucket gets its place among the gathered values (which, sorted, are the
    // wanted buckets' values sorted, one bucket after another), and each rank its rank among
    // them.
    let mut wanted = vec![0u8; last + 1];
    let mut starts = Vec::with_capacity(places.len()); // (bucket, start, len) among the gathered
    let mut local = Vec::with_capacity(places.len());
    let mut gathered = 0usize;
    for &(b, at, len) in places {
        if wanted[b] == 0 {
            wanted[b] = 1;
            starts.push((b, gathered, len));
            gathered += len;
        }
        let start = starts.last().map_or(0, |&(_, start, _)| start);
        local.push(start + at);
    }
    let mut pool = vec![0.0; (gathered + 1).next_power_of_two()];
    map.gather(values, &wanted, &mut pool);
    // The few gathered values in bucket order, then each bucket's ranks selected within it.
    for &(b, start, _) in &starts {
        next[b] = start as u32;
    }
    let mut ordered = vec![0.0; gathered];
    for &v in &pool[..gathered] {
        let at = &mut next[map.one(v) & last];
        ordered[*at as usize] = v;
        *at += 1;
    }
    let mut ranks_left = local.as_slice();
    for (_, start, len) in starts {
        let inside = ranks_left.partition_point(|&r| r < start + len);
        let (these, rest) = ranks_left.split_at(inside);
        let bucket = &mut ordered[start..start + len];
        if len <= SORT_BELOW {
            bucket.sort_unstable_by(f64::total_cmp);
        } else {
            select_within(bucket, start, these);
        }
        ranks_left = rest;
    }
    local.iter().map(|&r| ordered[r]).collect()
}

/// A monotone map from the values in [min, max] to buckets 0..buckets: (v - min) * scale, with
/// scale = (buckets - 1) / (max - min), rounded to the nearest integer by adding 2^52. Each step
/// is monotone in v, so bucket order is value order; max lands at most a rounding error above
/// buckets - 1, so no bucket is out of range.
struct BucketMap {
    min: f64,
    scale: f64,
}

impl BucketMap {
    /// `None` if the span between `min` and `max` (not equal) is beyond f64 or so small that
    /// the scale is.
    fn new(min: f64, max: f64, buckets: usize) -> Option<Self> {
        let scale = (buckets - 1) as f64 / (max - min);
        (scale.is_finite() && scale > 0.0).then_some(Self { min, scale })
    }

    /// The bucket of `v`.
    #[inline(always)]
    fn one(&self, v: f64) -> usize {
        ((v - self.min) * self.scale + ROUNDER).to_bits() as u32 as usize
    }

    /// The buckets of a pair of values: the same operations as [`Self::one`], two lanes at once.
    #[inline(always)]
    fn pair(&self, pair: &[f64; 2]) -> [usize; 2] {
        let min = F64x2::splat(self.min);
        let scale = F64x2::splat(self.scale);
        let at = (F64x2::load(pair) - min) * scale + F64x2::splat(ROUNDER);
        at.to_array().map(|x| x.to_bits() as u32 as usize)
    }

    /// Adds each of `values` to the count of its bucket in `counts` (one per bucket, a power of
    /// two of them). A function of its own, so that the compiler keeps its few values in
    /// registers.
    #[inline(never)]
    fn count(&self, values: &[f64], counts: &mut [u32]) {
        let last = counts.len() - 1;
        self.each(values, |_, b| counts[b & last] += 1);
    }

    /// [`Self::count`], and keeps the first [`KEPT`] values of each bucket in its part of `kept`
    /// (later ones overwrite the last place). A function of its own, so that the compiler keeps
    /// its few values in registers.
    #[inline(never)]
    fn count_and_keep(&self, values: &[f64], counts: &mut [u32], kept: &mut [f64]) {
        let last = counts.len() - 1;
        let kept_last = kept.len() - 1;
        self.each(values, |v, b| {
            let b = b & last;
            let count = counts[b];
            kept[(b * KEPT + (count as usize).min(KEPT - 1)) & kept_last] = v;
            counts[b] = count + 1;
        });
    }

    /// Writes the values of the buckets marked 1 in `wanted` (one per bucket, a power of two of
    /// them) to the front of `pool`, in their order in `values`. Every value is written at the
    /// end of the pool and only a wanted one moves the end on, so `pool` holds more than the
    /// wanted values (a power of two of them: indexing with a mask that changes nothing lets
    /// the compiler see that the index is in range).
    #[inline(never)]
    fn gather(&self, values: &[f64], wanted: &[u8], pool: &mut [f64]) {
        let (last, pool_last) = (wanted.len() - 1, pool.len() - 1);
        let mut end = 0;
        self.each(values, |v, b| {
            pool[end & pool_last] = v;
            end += usize::from(wanted[b & last]);
        });
    }

    /// Calls `visit` with each of `values` and its bucket, in order.
    #[inline(always)]
    fn each(&self, values: &[f64], mut visit: impl FnMut(f64, usize)) {
        let mut steps = values.chunks_exact(STEP);
        for step in &mut steps {
            for pair in step.as_chunks::<2>().0 {
                let [a, b] = self.pair(pair);
                visit(pair[0], a);
                visit(pair[1], b);
            }
        }
        for &v in steps.remainder() {
            visit(v, self.one(v));
        }
    }
}

/// The smallest and largest of `values` (not empty); `None` if they hold a NaN.
fn extremes(values: &[f64]) -> Option<(f64, f64)> {
    let (min, max, sum) = lanes::extremes(values);
    (!sum.is_nan() || !values.iter().any(|v| v.is_nan())).then_some((min, max))
}

/// [`order_statistics`] by quickselect on a copy.
fn by_quickselect(values: &[f64], ranks: &[usize]) -> Vec<f64> {
    let mut ordered = values.to_vec();
    select_ranks(&mut ordered, ranks);
    ranks.iter().map(|&r| ordered[r]).collect()
}

/// Puts the order statistic of each of `ranks` (sorted, distinct) at its index, as a full sort
/// would. For a handful of ranks, by selection, divide and conquer: the middle rank first, then
/// the lower ranks in the part before it and the upper ones in the part after it, so each
/// selection works on a smaller part (n log k rather than n k comparisons). Many ranks: a sort.
fn select_ranks(values: &mut [f64], ranks: &[usize]) {
    if ranks.len() > MANY_RANKS {
        values.sort_unstable_by(f64::total_cmp);
    } else {
        select_within(values, 0, ranks);
    }
}

/// [`select_ranks`] for `part`, which starts at index `offset` of the whole.
fn select_within(part: &mut [f64], offset: usize, ranks: &[usize]) {
    let Some(&rank) = ranks.get(ranks.len() / 2) else {
        return;
    };
    let at = rank - offset;
    part.select_nth_unstable_by(at, f64::total_cmp);
    let (below, rest) = part.split_at_mut(at);
    let (lower, upper) = (&ranks[..ranks.len() / 2], &ranks[ranks.len() / 2 + 1..]);
    select_within(below, offset, lower);
    select_within(&mut rest[1..], rank + 1, upper);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(values: &[f64], ranks: &[usize]) {
        let mut sorted = values.to_vec();
        sorted.sort_unstable_by(f64::total_cmp);
        let want: Vec<u64> = ranks.iter().map(|&r| sorted[r].to_bits()).collect();
        let got: Vec<u64> = order_statistics(values, ranks)
            .expect("no NaN")
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(got, want, "ranks {ranks:?} of {} values", values.len());
    }

    fn spread(n: usize) -> Vec<Vec<usize>> {
        let last = n - 1;
        vec![
            vec![0],
            vec![last],
            vec![0, last],
            vec![n / 20, n / 20 + 1, n / 2, n / 2 + 1, last - n / 20],
            (0..16).map(|i| i * last / 15).collect(),
            (0..40.min(n)).collect(),
        ]
    }

    #[test]
    fn selection_matches_sorting() {
        let x: Vec<f64> = (0..97).map(|i| libm::sin(i as f64 * 1.7) * 10.0).collect();
        let mut sorted = x.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        for ranks in spread(97) {
            let mut selected = x.clone();
            select_ranks(&mut selected, &ranks);
            for &r in &ranks {
                assert_eq!(selected[r], sorted[r], "rank {r}");
            }
        }
    }

    #[test]
    fn random_samples_and_ranks_give_what_a_sort_gives() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..300 {
            let n = 60 + (next() % 3000) as usize;
            // Uniform, clustered (a few distinct values) or heavy-tailed samples.
            let kind = next() % 3;
            let values: Vec<f64> = (0..n)
                .map(|_| {
                    let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
                    match kind {
                        0 => u * 200.0 - 100.0,
                        1 => (next() % 5) as f64,
                        _ => libm::tan((u - 0.5) * 3.1),
                    }
                })
                .collect();
            let mut ranks: Vec<usize> = (0..1 + next() % 12)
                .map(|_| (next() % n as u64) as usize)
                .collect();
            ranks.sort_unstable();
            ranks.dedup();
            check(&values, &ranks);
        }
    }

    #[test]
    fn inputs_on_both_sides_of_keeping_values_give_what_a_sort_gives() {
        // Up to KEEP_UP_TO buckets the counting pass keeps values; past it, it only counts.
        let edge = KEEP_UP_TO * PER_BUCKET;
        for n in [edge - 1, edge, edge + 1, 3 * edge] {
            let smooth: Vec<f64> = (0..n).map(|i| libm::sin(i as f64 * 1.7) * 10.0).collect();
            let ties: Vec<f64> = (0..n).map(|i| (i % 13) as f64).collect();
            for values in [smooth, ties] {
                for ranks in spread(n) {
                    check(&values, &ranks);
                }
            }
        }
    }

    #[test]
    fn buckets_give_what_a_sort_gives() {
        let smooth: Vec<f64> = (0..1000)
            .map(|i| libm::sin(i as f64 * 1.7) * 10.0)
            .collect();
        // Nearly every value in one bucket: a few outliers stretch the range.
        let skewed: Vec<f64> = (0..1000)
            .map(|i| match i % 250 {
                0 => 1e12,
                1 => -1e12,
                _ => libm::cos(i as f64) * 1e-3,
            })
            .collect();
        let ties: Vec<f64> = (0..1000).map(|i| (i % 7) as f64).collect();
        let zeros: Vec<f64> = (0..500)
            .map(|i| if i % 2 == 0 { 0.0 } else { -0.0 })
            .chain((0..500).map(|i| i as f64 - 250.0))
            .collect();
        let tiny: Vec<f64> = (0..300).map(|i| f64::from_bits(i % 17)).collect();
        let constant = vec![2.5; 200];
        let infinite: Vec<f64> = (0..200)
            .map(|i| match i {
                7 => f64::INFINITY,
                8 => f64::NEG_INFINITY,
                _ => i as f64,
            })
            .collect();
        let huge: Vec<f64> = (0..200)
            .map(|i| if i % 2 == 0 { f64::MAX } else { -f64::MAX } / (i + 1) as f64)
            .collect();
        for values in [smooth, skewed, ties, zeros, tiny, constant, infinite, huge] {
            for ranks in spread(values.len()) {
                check(&values, &ranks);
            }
        }
        for n in [10, 1000, 1001] {
            for at in [0, n / 2, n - 1] {
                let mut values: Vec<f64> = (0..n).map(|i| i as f64).collect();
                values[at] = f64::NAN;
                assert_eq!(
                    order_statistics(&values, &[0, n - 1]),
                    None,
                    "NaN at {at} of {n}"
                );
            }
        }
    }
}
