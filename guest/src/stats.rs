//! Descriptive statistics: `describe`, `percentile` and `corrcoef`.
//!
//! Edge cases follow NumPy/SciPy: an empty sample is an invalid-input error (NumPy raises); a
//! NaN in the sample makes every statistic derived from it NaN; a constant sample has NaN
//! skewness and kurtosis; a single observation has NaN variance (ddof=1); a constant column or
//! fewer than two rows gives NaN correlations.

use crate::check::{self, invalid};
use crate::gram;
use crate::lanes;
use crate::select::order_statistics;
use crate::tensor::{KernelError, Params, Tensor, TensorRef};
use crunch_math::F64x2;

/// `describe`: [x] -> [nobs, min, max, mean, variance, skewness, kurtosis].
pub fn describe(_: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
    let [x] = check::inputs(item, ["x"])?;
    let x = check::nonempty_vector(x, "x")?;
    let n = x.len() as f64;
    // One pass for the extremes and the sum (in lanes). A NaN anywhere makes min and max NaN
    // (the sum and the moments become NaN by themselves); only a NaN sum can come from one, so
    // only then are the values searched for it.
    let (low, high, sum) = lanes::extremes(x);
    let (mut min, mut max) = (first_equal(x, low), first_equal(x, high));
    if sum.is_nan() && x.iter().any(|v| v.is_nan()) {
        (min, max) = (f64::NAN, f64::NAN);
    }
    // A first estimate of the mean, then the moments about it; the sum of the deviations
    // corrects the mean (the corrected two-pass algorithm), and the moments are shifted to the
    // corrected mean exactly. So the mean is as good as a compensated sum's even for data far
    // from zero (1e9 +- 1, say), and the shape statistics with it.
    let estimate = sum / n;
    let shift = F64x2::splat(estimate);
    let [s1, s2, s3, s4] = lanes::sums(x, |step| {
        let d = step.map(|v| v - shift);
        let d2 = d.map(|d| d * d);
        [
            d,
            d2,
            core::array::from_fn(|k| d2[k] * d[k]),
            d2.map(|q| q * q),
        ]
    });
    let (c, s2, s3, s4) = (s1 / n, s2 / n, s3 / n, s4 / n);
    let mean = estimate + c;
    let c2 = c * c;
    let m2 = s2 - c2;
    let m3 = s3 - 3.0 * c * s2 + 2.0 * c2 * c;
    let m4 = s4 - 4.0 * c * s3 + 6.0 * c2 * s2 - 3.0 * c2 * c2;
    let variance = m2 * n / (n - 1.0);
    // SciPy's test for a constant sample: a second moment lost in the rounding of the mean
    // (`m2 <= (finfo.resolution * mean)**2`) gives NaN shape statistics, not rounding noise.
    let (skewness, kurtosis) = if m2 <= (1e-15 * mean) * (1e-15 * mean) {
        (f64::NAN, f64::NAN)
    } else {
        (m3 / libm::pow(m2, 1.5), m4 / (m2 * m2) - 3.0)
    };
    Ok(Tensor::vector(vec![
        n, min, max, mean, variance, skewness, kurtosis,
    ]))
}

/// The first value of `x` equal to `extreme`, as the sequential rule (`if v < min { v } else
/// { min }`, and the same for max) keeps it. The lanes keep the first of equal values in their
/// own order, not the sample's; only zeros are equal with different bits, so only a zero
/// extreme is looked up again.
fn first_equal(x: &[f64], extreme: f64) -> f64 {
    if extreme == 0.0 {
        x.iter().copied().find(|&v| v == 0.0).unwrap_or(extreme)
    } else {
        extreme
    }
}

/// `percentile`: [x] with param `q` -> the q-th percentiles of x (linear interpolation).
pub fn percentile(params: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
    let q = params.require("q")?;
    if let Some(bad) = q.data.iter().find(|v| !(0.0..=100.0).contains(*v)) {
        return Err(invalid(format!(
            "parameter `q` must hold percentages in [0, 100], got {bad}"
        )));
    }
    let [x] = check::inputs(item, ["x"])?;
    let x = check::nonempty_vector(x, "x")?;
    let last = x.len() - 1;
    // Each percentile interpolates between the order statistics at `below` and `below + 1`.
    let positions: Vec<(usize, f64)> = q
        .data
        .iter()
        .map(|&pct| {
            let position = pct / 100.0 * last as f64;
            let below = libm::floor(position);
            (below as usize, position - below)
        })
        .collect();
    let mut ranks: Vec<usize> = positions
        .iter()
        .flat_map(|&(i, _)| [i, (i + 1).min(last)])
        .collect();
    ranks.sort_unstable();
    ranks.dedup();
    let Some(ordered) = order_statistics(x, &ranks) else {
        // A NaN sorts last in NumPy and makes every percentile NaN.
        return Ok(Tensor::new(q.shape.clone(), vec![f64::NAN; q.data.len()]));
    };
    let at = |rank: usize| ordered[ranks.partition_point(|&r| r < rank)];
    let values = positions
        .iter()
        .map(|&(i, gamma)| lerp(at(i), at((i + 1).min(last)), gamma))
        .collect();
    Ok(Tensor::new(q.shape.clone(), values))
}

/// Linear interpolation as NumPy's `_lerp`: from the nearer end, so that t = 1 gives b exactly.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// `corrcoef`: [X (n x p)] -> the p x p Pearson correlations of X's columns.
pub fn corrcoef(_: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
    let [x] = check::inputs(item, ["X"])?;
    let (n, p) = check::matrix(x, "X")?.dim();
    if p == 0 {
        return Ok(Tensor::matrix(0, 0, Vec::new()));
    }
    // The centred rows, each padded with a zero column to an even width, so that the products
    // go two columns at a time.
    let width = p + p % 2;
    let mut centred = if width == p {
        x.data.to_vec()
    } else {
        let mut padded = vec![0.0; n * width];
        for (z, row) in padded.chunks_exact_mut(width).zip(x.data.chunks_exact(p)) {
            z[..p].copy_from_slice(row);
        }
        padded
    };
    let means = column_means(&centred, width);
    for row in centred.chunks_exact_mut(width) {
        for (z, mean) in row
            .as_chunks_mut::<2>()
            .0
            .iter_mut()
            .zip(means.as_chunks::<2>().0)
        {
            (F64x2::load(z) - F64x2::load(mean)).store(z);
        }
    }
    let products = gram::upper_products(&centred, width);
    let scale = 1.0 / (n as f64 - 1.0);
    let mut corr = vec![0.0; p * p];
    for i in 0..p {
        for j in i..p {
            let c = products[i * width + j] * scale;
            corr[i * p + j] = c;
            corr[j * p + i] = c;
        }
    }
    let stddev: Vec<f64> = (0..p).map(|i| corr[i * p + i].sqrt()).collect();
    for (row, &si) in corr.chunks_exact_mut(p).zip(&stddev) {
        for (c, &sj) in row.iter_mut().zip(&stddev) {
            // `clamp(-1, 1)` by comparisons and selects (NaN stays NaN): the compiler makes
            // `f64::clamp` a relaxed min and max in the component, which the host computes as
            // IEEE min and max.
            let r = F64x2::splat(*c / si / sj);
            *c = r.pmax(F64x2::splat(-1.0)).pmin(F64x2::splat(1.0)).first();
        }
    }
    Ok(Tensor::matrix(p, p, corr))
}

/// Rows summed per step into each column's lanes (row k of a step into lane k), the lanes then
/// combined pairwise: no less accurate than summing each column in sequence.
const MEAN_LANES: usize = 4;

/// The mean of each of the `width` columns of the row-major `data` (`width` even), two
/// columns at a time.
fn column_means(data: &[f64], width: usize) -> Vec<f64> {
    let rows = data.len() / width;
    let pairs = width / 2;
    let mut lanes = vec![[F64x2::splat(-0.0); MEAN_LANES]; pairs];
    let mut steps = data.chunks_exact(width * MEAN_LANES);
    for step in &mut steps {
        for (k, row) in step.chunks_exact(width).enumerate() {
            for (lane, v) in lanes.iter_mut().zip(row.as_chunks::<2>().0) {
                lane[k] = lane[k] + F64x2::load(v);
            }
        }
    }
    let mut sums: Vec<F64x2> = lanes
        .iter()
        .map(|l| (l[0] + l[1]) + (l[2] + l[3]))
        .collect();
    for row in steps.remainder().chunks_exact(width) {
        for (sum, v) in sums.iter_mut().zip(row.as_chunks::<2>().0) {
            *sum = *sum + F64x2::load(v);
        }
    }
    let count = F64x2::splat(rows as f64);
    sums.into_iter()
        .flat_map(|s| (s / count).to_array())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::views;

    fn one(v: &[f64]) -> Vec<Tensor> {
        vec![Tensor::vector(v.to_vec())]
    }

    #[test]
    fn describe_small_sample() {
        let d = describe(Params(&[]), &views(&one(&[1.0, 2.0, 3.0, 4.0])))
            .unwrap()
            .data;
        assert_eq!(&d[..5], &[4.0, 1.0, 4.0, 2.5, 5.0 / 3.0]);
        assert!(d[5].abs() < 1e-15);
        assert!((d[6] - (-1.36)).abs() < 1e-12);
    }

    #[test]
    fn describe_far_from_zero_keeps_the_mean_and_shape() {
        // 1001 values near 1e9 with spread ~1; references by mpmath (60 digits) on these doubles.
        let x: Vec<f64> = (0..1001)
            .map(|i| {
                let u = ((i * 7919) % 1000) as f64 / 1000.0;
                1e9 + u * u * 3.0
            })
            .collect();
        let out = describe(Params(&[]), &views(&one(&x))).unwrap().data;
        assert_eq!(out[3], 1_000_000_000.997_503, "mean");
        let rel = |got: f64, want: f64| ((got - want) / want).abs();
        assert!(
            rel(out[4], 0.799_495_758_963_369_3) < 1e-12,
            "variance {}",
            out[4]
        );
        assert!(
            rel(out[5], 0.640_493_573_879_047_2) < 1e-9,
            "skewness {}",
            out[5]
        );
        assert!(
            rel(out[6], -0.855_336_280_155_965_3) < 1e-9,
            "kurtosis {}",
            out[6]
        );
    }

    #[test]
    fn describe_extremes_are_the_first_of_equal_values() {
        // The sequential rule keeps the first of equal values: with zeros of both signs, the
        // sign of the first zero. Zeros at every position, in both orders, across the lanes and
        // the tail.
        for n in [1, 5, 8, 9, 16, 17, 23, 40] {
            for at in 0..n {
                for (first, later) in [(0.0, -0.0), (-0.0, 0.0)] {
                    let mut x: Vec<f64> = (0..n).map(|i| 1.0 + i as f64).collect();
                    x[at] = first;
                    x[(at + 3) % n] = if (at + 3) % n == at { first } else { later };
                    let neg: Vec<f64> = x.iter().map(|v| -v).collect();
                    for x in [x, neg] {
                        let out = describe(Params(&[]), &views(&one(&x))).unwrap().data;
                        let (mut min, mut max) = (x[0], x[0]);
                        for &v in &x {
                            min = if v < min { v } else { min };
                            max = if max < v { v } else { max };
                        }
                        assert_eq!(out[1].to_bits(), min.to_bits(), "min of {x:?}");
                        assert_eq!(out[2].to_bits(), max.to_bits(), "max of {x:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn describe_edges() {
        assert!(matches!(
            describe(Params(&[]), &views(&one(&[]))),
            Err(KernelError::InvalidInput(_))
        ));
        let single = describe(Params(&[]), &views(&one(&[3.0]))).unwrap().data;
        assert!(single[4].is_nan() && single[5].is_nan());
        let tenths = describe(Params(&[]), &views(&one(&[0.1; 10])))
            .unwrap()
            .data;
        assert!(tenths[5].is_nan() && tenths[6].is_nan(), "{tenths:?}");
        let nan = describe(Params(&[]), &views(&one(&[1.0, f64::NAN])))
            .unwrap()
            .data;
        assert!(nan[1..].iter().all(|v| v.is_nan()));
    }

    #[test]
    fn percentile_interpolates_and_checks_q() {
        let q = vec![(
            "q".to_string(),
            Tensor::vector(vec![0.0, 50.0, 100.0, 25.0]),
        )];
        let out = percentile(Params(&q), &views(&one(&[4.0, 1.0, 3.0, 2.0]))).unwrap();
        assert_eq!(out.data, vec![1.0, 2.5, 4.0, 1.75]);
        let bad = vec![("q".to_string(), Tensor::vector(vec![101.0]))];
        assert!(percentile(Params(&bad), &views(&one(&[1.0]))).is_err());
        assert!(percentile(Params(&[]), &views(&one(&[1.0]))).is_err());
    }

    #[test]
    fn corrcoef_agrees_with_the_textbook_formula_on_every_shape() {
        for (n, p) in [
            (2, 1),
            (3, 2),
            (3, 3),
            (9, 5),
            (17, 7),
            (250, 10),
            (5, 13),
            (40, 20),
        ] {
            let data: Vec<f64> = (0..n * p)
                .map(|k| libm::sin(k as f64 * 0.37) * 5.0 + (k % p) as f64 * 100.0)
                .collect();
            let x = Tensor::matrix(n, p, data.clone());
            let got = corrcoef(Params(&[]), &views(&[x])).unwrap().data;
            let col = |j: usize| -> Vec<f64> { (0..n).map(|r| data[r * p + j]).collect() };
            let mean = |j: usize| col(j).iter().sum::<f64>() / n as f64;
            let cov = |i: usize, j: usize| {
                let (mi, mj) = (mean(i), mean(j));
                col(i)
                    .iter()
                    .zip(col(j))
                    .map(|(a, b)| (a - mi) * (b - mj))
                    .sum::<f64>()
            };
            for i in 0..p {
                for j in 0..p {
                    let want = (cov(i, j) / (cov(i, i).sqrt() * cov(j, j).sqrt())).clamp(-1.0, 1.0);
                    let g = got[i * p + j];
                    assert!(
                        (g - want).abs() <= 1e-12,
                        "n {n} p {p} ({i}, {j}): {g} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn corrcoef_of_linear_columns() {
        let x = Tensor::matrix(3, 2, vec![1.0, -2.0, 2.0, -4.0, 3.0, -6.0]);
        let c = corrcoef(Params(&[]), &views(&[x])).unwrap();
        assert_eq!(c.shape, vec![2, 2]);
        assert!((c.data[1] + 1.0).abs() < 1e-15 && (c.data[0] - 1.0).abs() < 1e-15);
    }
}
