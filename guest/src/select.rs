//! Order statistics: the values a full sort (by `f64::total_cmp`) would put at a few ranks,
//! found without sorting.
//!
//! Bucket selection: one pass finds the extremes, one counts the values per bucket of equal
//! width between them (a monotone map, so bucket order is value order), the counts say which
//! bucket holds each wanted rank, and one more pass gathers only those buckets' values, which
//! are then selected among. About three cheap, branch-free passes over the data where
//! quickselect's partitions take several data-dependent ones per rank. The results are exact
//! (the buckets only narrow the search), so every target gives the same bits. Short inputs,
//! many ranks and ranges that are not finite (an infinity, or a span beyond f64) take
//! divide-and-conquer quickselect instead.

/// Below this many values, quickselect on a copy is as fast.
const SHORT: usize = 64;
/// Above this many ranks, a sort is as fast.
const MANY_RANKS: usize = 16;
/// Values per bucket, on average.
const PER_BUCKET: usize = 4;
/// 2^52: added to a value in [0, 2^51), it leaves the value rounded to an integer in the low bits.
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
    let scale = buckets as f64 / (max - min);
    if !scale.is_finite() || scale == 0.0 {
        return Some(by_quickselect(values, ranks));
    }
    // (v - min) * scale lies in [0, buckets]; adding 2^52 rounds it to an integer in the low
    // bits of the mantissa. Every step is monotone in v, so bucket order is value order.
    let last = buckets - 1;
    let bucket = move |v: f64| {
        let rounded = ((v - min) * scale + ROUNDER).to_bits() - ROUNDER.to_bits();
        (rounded as usize).min(last)
    };
    let mut counts = vec![0u32; buckets];
    // Each value's bucket, kept for the gathering pass; four values per step (the component
    // pays its time-limit check per loop iteration).
    let mut ids = vec![0u32; values.len()];
    let mut chunks = values.chunks_exact(4);
    for (chunk, id) in (&mut chunks).zip(ids.chunks_exact_mut(4)) {
        for k in 0..4 {
            let b = bucket(chunk[k]);
            id[k] = b as u32;
            counts[b] += 1;
        }
    }
    let tail = values.len() - chunks.remainder().len();
    for (&v, id) in chunks.remainder().iter().zip(&mut ids[tail..]) {
        let b = bucket(v);
        *id = b as u32;
        counts[b] += 1;
    }
    // Which bucket each rank falls in, and where the gathered buckets start.
    const SKIP: u32 = u32::MAX;
    let mut gathered_at = vec![SKIP; buckets];
    let mut wanted = Vec::with_capacity(ranks.len()); // (bucket, first rank in it)
    let mut gathered = 0u32;
    let mut first_rank = 0usize;
    let mut ranks_left = ranks.iter().peekable();
    for (b, &count) in counts.iter().enumerate() {
        let end = first_rank + count as usize;
        if ranks_left.next_if(|&&r| r < end).is_some() {
            while ranks_left.next_if(|&&r| r < end).is_some() {}
            gathered_at[b] = gathered;
            gathered += count;
            wanted.push((b, first_rank));
        }
        if ranks_left.peek().is_none() {
            break;
        }
        first_rank = end;
    }
    let mut pool = vec![0.0; gathered as usize];
    let mut fill = gathered_at.clone();
    for (&v, &b) in values.iter().zip(&ids) {
        let at = fill[b as usize];
        if at != SKIP {
            pool[at as usize] = v;
            fill[b as usize] = at + 1;
        }
    }
    let mut out = Vec::with_capacity(ranks.len());
    let mut ranks_left = ranks;
    for (b, first) in wanted {
        let start = gathered_at[b] as usize;
        let part = &mut pool[start..start + counts[b] as usize];
        let inside = ranks_left.partition_point(|&r| r < first + part.len());
        let local: Vec<usize> = ranks_left[..inside].iter().map(|r| r - first).collect();
        select_ranks(part, &local);
        out.extend(local.iter().map(|&r| part[r]));
        ranks_left = &ranks_left[inside..];
    }
    Some(out)
}

/// The smallest and largest of `values` (not empty); `None` if they hold a NaN.
fn extremes(values: &[f64]) -> Option<(f64, f64)> {
    let mut lo = [values[0]; 4];
    let mut hi = [values[0]; 4];
    let mut nan = [false; 4];
    let mut chunks = values.chunks_exact(4);
    for chunk in &mut chunks {
        for k in 0..4 {
            lo[k] = if chunk[k] < lo[k] { chunk[k] } else { lo[k] };
            hi[k] = if hi[k] < chunk[k] { chunk[k] } else { hi[k] };
            nan[k] |= chunk[k].is_nan();
        }
    }
    if nan.contains(&true) || chunks.remainder().iter().any(|v| v.is_nan()) {
        return None;
    }
    let (mut min, mut max) = (lo[0], hi[0]);
    for k in 1..4 {
        min = if lo[k] < min { lo[k] } else { min };
        max = if max < hi[k] { hi[k] } else { max };
    }
    for &v in chunks.remainder() {
        min = if v < min { v } else { min };
        max = if max < v { v } else { max };
    }
    Some((min, max))
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
