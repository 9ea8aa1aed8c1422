//! Sums and dot products in eight interleaved lanes: lane k adds the elements k, k + 8,
//! k + 16, ..., the lanes are combined pairwise ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7)), and
//! the elements left over are added in order. A fixed order, so the results are the same on
//! every platform; eight independent additions per step instead of one long chain of them.
//! [`sums`] runs the lanes two at a time in [`F64x2`]; the dot products are written on scalars,
//! which both compilers turn into 128-bit SIMD. Eight lanes rather than four because the
//! component pays per loop iteration (its time-limit check and the spills around it), not per
//! element. No less accurate than summing in sequence (each lane sums an eighth).

use crunch_math::F64x2;

/// Elements added per step.
const LANES: usize = 8;

/// The lanes' total, combined in the fixed order.
fn combine(lanes: [f64; LANES]) -> f64 {
    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
        + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
}

/// One step of eight elements as four pairs: elements 2k and 2k + 1 (lanes 2k and 2k + 1) in
/// pair k.
pub type Step = [F64x2; LANES / 2];

/// The sums over `xs` of each of the `M` values `terms` gives for an element, each sum in
/// lanes, two lanes at a time: `terms` gets a step of eight elements and returns each sum's
/// terms for them, pair by pair. The elements after the last whole step go through `terms` one
/// at a time, in every lane of a step (its first lane counts). `terms` sees every element (a
/// kernel may also fold, say, extremes in it), the elements of a step at once.
pub fn sums<const M: usize>(xs: &[f64], mut terms: impl FnMut(Step) -> [Step; M]) -> [f64; M] {
    let mut lanes = [[F64x2::splat(-0.0); LANES / 2]; M];
    let mut add = |lanes: &mut [Step; M], chunk: &[f64; LANES]| {
        let pairs = chunk.as_chunks::<2>().0;
        let step: Step = core::array::from_fn(|k| F64x2::load(&pairs[k]));
        for (lane, term) in lanes.iter_mut().zip(terms(step)) {
            for (sum, t) in lane.iter_mut().zip(term) {
                *sum = *sum + t;
            }
        }
    };
    // Two steps per loop iteration (the same additions in the same order as one step each).
    let (doubles, rest) = xs.as_chunks::<{ 2 * LANES }>();
    for double in doubles {
        let (first, second) = double.split_at(LANES);
        add(&mut lanes, first.try_into().expect("a step"));
        add(&mut lanes, second.try_into().expect("a step"));
    }
    let (steps, tail) = rest.as_chunks::<LANES>();
    for step in steps {
        add(&mut lanes, step);
    }
    let mut totals = lanes.map(|lane| {
        let [a, b, c, d] = lane.map(F64x2::to_array);
        combine([a[0], a[1], b[0], b[1], c[0], c[1], d[0], d[1]])
    });
    for &x in tail {
        for (total, term) in totals.iter_mut().zip(terms([F64x2::splat(x); LANES / 2])) {
            *total += term[0].first();
        }
    }
    totals
}

/// The smallest and the largest of `xs` (not empty) by `<`, and their sum, in one pass of
/// [`sums`]. The extremes are kept in lanes by `pmin`/`pmax`, which a NaN does not always pass
/// through; a NaN always makes the sum NaN. Of equal values (only zeros are equal with
/// different bits) one is kept by a fixed rule, the same on every target, not the sample's first.
pub fn extremes(xs: &[f64]) -> (f64, f64, f64) {
    let (mut low, mut high) = (F64x2::splat(xs[0]), F64x2::splat(xs[0]));
    let [sum] = sums(xs, |[a, b, c, d]| {
        // One comparison orders each of the first two pairs for both extremes (the component
        // selects in two instructions where a native `minpd` takes one, so comparisons count).
        let (ab, cd) = (b.lt(a), d.lt(c));
        let (low_ab, high_ab) = (ab.select(b, a), ab.select(a, b));
        let (low_cd, high_cd) = (cd.select(d, c), cd.select(c, d));
        low = low.pmin(low_ab.pmin(low_cd));
        high = high.pmax(high_ab.pmax(high_cd));
        [[a, b, c, d]]
    });
    let ([l0, l1], [h0, h1]) = (low.to_array(), high.to_array());
    (
        if l1 < l0 { l1 } else { l0 },
        if h0 < h1 { h1 } else { h0 },
        sum,
    )
}

/// The dot product of `a` and `b` (over the shorter of the two).
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [-0.0; LANES];
    let (mut a_chunks, mut b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut a_chunks).zip(&mut b_chunks) {
        for k in 0..LANES {
            lanes[k] += x[k] * y[k];
        }
    }
    a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .fold(combine(lanes), |total, (x, y)| total + x * y)
}

/// The dot products of `a` with `b` and with `c`, in one pass over `a` (each summed exactly as
/// [`dot`] sums it).
pub fn dot2(a: &[f64], b: &[f64], c: &[f64]) -> (f64, f64) {
    let n = a.len().min(b.len()).min(c.len());
    let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
    let (mut lanes_b, mut lanes_c) = ([-0.0; LANES], [-0.0; LANES]);
    let mut a_chunks = a.chunks_exact(LANES);
    let mut b_chunks = b.chunks_exact(LANES);
    let mut c_chunks = c.chunks_exact(LANES);
    for ((x, y), z) in (&mut a_chunks).zip(&mut b_chunks).zip(&mut c_chunks) {
        for k in 0..LANES {
            lanes_b[k] += x[k] * y[k];
            lanes_c[k] += x[k] * z[k];
        }
    }
    let rest = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .zip(c_chunks.remainder());
    rest.fold(
        (combine(lanes_b), combine(lanes_c)),
        |(sb, sc), ((x, y), z)| (sb + x * y, sc + x * z),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_then_the_rest_in_order() {
        for n in 0..40 {
            let a: Vec<f64> = (0..n).map(|i| 0.3 * i as f64 - 1.1).collect();
            let b: Vec<f64> = (0..n).map(|i| 1.0 / (i as f64 + 2.0)).collect();
            let mut lanes = [-0.0; LANES];
            let mut dot_lanes = [-0.0; LANES];
            let whole = n / LANES * LANES;
            for i in 0..whole {
                lanes[i % LANES] += a[i];
                dot_lanes[i % LANES] += a[i] * b[i];
            }
            let (mut s, mut d) = (combine(lanes), combine(dot_lanes));
            for i in whole..n {
                s += a[i];
                d += a[i] * b[i];
            }
            assert_eq!(sums(&a, |x| [x])[0].to_bits(), s.to_bits(), "n={n}");
            let squares = sums(&a, |x| [x.map(|x| x * x)])[0];
            let plain: f64 = {
                let mut lanes = [-0.0; LANES];
                for i in 0..whole {
                    lanes[i % LANES] += a[i] * a[i];
                }
                (whole..n).fold(combine(lanes), |s, i| s + a[i] * a[i])
            };
            assert_eq!(squares.to_bits(), plain.to_bits(), "n={n}");
            assert_eq!(dot(&a, &b).to_bits(), d.to_bits(), "n={n}");
            let (d1, d2) = dot2(&a, &b, &a);
            assert_eq!(
                (d1.to_bits(), d2.to_bits()),
                (d.to_bits(), dot(&a, &a).to_bits())
            );
        }
        assert_eq!(sums(&[], |x| [x])[0].to_bits(), (-0.0f64).to_bits());
    }
}
