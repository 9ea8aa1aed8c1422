//! Products of the columns of a row-major matrix with each other (Z^T Z), for `corrcoef`'s
//! covariances and `ols`'s normal equations, and with a weight per row (`ols`'s X^T r): a few
//! factors against up to four pairs of columns at a time, their sums in registers while the
//! rows go by.

use crunch_math::F64x2;

/// Rows per loop iteration.
const ROWS_PER_STEP: usize = 4;

/// Column pairs whose sums one pass over the rows keeps in registers, beside two columns.
const TILE: usize = 4;

/// The products `sum over rows of z[r][i] * z[r][j]` of the row-major `z` (`width` columns,
/// even), for every `j >= i` (row-major `width x width`; entries below the diagonal are left
/// at zero or hold the same sums). Each sum runs over the rows in order from zero. Two columns
/// `i` against up to [`TILE`] pairs of columns `j` at a time, their sums in registers while
/// the rows go by: each row then costs one load per pair for four products.
pub fn upper_products(z: &[f64], width: usize) -> Vec<f64> {
    let mut out = vec![0.0; width * width];
    for i in (0..width).step_by(2) {
        let factors = |_: usize, row: &[f64]| {
            F64x2::load(row[i..i + 2].try_into().expect("two columns")).lanes_splat()
        };
        tiled_column_products(z, width, i / 2, factors, |pair, sums: [&[F64x2]; 2]| {
            for (r, row_sums) in sums.iter().enumerate() {
                let at = (i + r) * width + 2 * pair;
                for (t, s) in row_sums.iter().enumerate() {
                    s.store(
                        (&mut out[at + 2 * t..at + 2 * t + 2])
                            .try_into()
                            .expect("two sums"),
                    );
                }
            }
        });
    }
    out
}

/// [`column_products`] for every column pair from `first` on, up to [`TILE`] pairs per pass
/// over the rows: `each(pair, sums)` gets each pass's sums (`sums[s]`, one per column pair)
/// and the first pair of the pass.
pub fn tiled_column_products<const S: usize>(
    z: &[f64],
    width: usize,
    first: usize,
    factors: impl Fn(usize, &[f64]) -> [F64x2; S] + Copy,
    mut each: impl FnMut(usize, [&[F64x2]; S]),
) {
    let pairs = width / 2;
    let mut pair = first;
    while pair < pairs {
        let tile = (pairs - pair).min(TILE);
        match tile {
            4 => each(
                pair,
                as_slices(&column_products::<S, 4>(z, width, pair, factors)),
            ),
            3 => each(
                pair,
                as_slices(&column_products::<S, 3>(z, width, pair, factors)),
            ),
            2 => each(
                pair,
                as_slices(&column_products::<S, 2>(z, width, pair, factors)),
            ),
            _ => each(
                pair,
                as_slices(&column_products::<S, 1>(z, width, pair, factors)),
            ),
        }
        pair += tile;
    }
}

/// Each factor's sums as a slice, whatever the number of column pairs.
fn as_slices<const S: usize, const T: usize>(sums: &[[F64x2; T]; S]) -> [&[F64x2]; S] {
    sums.each_ref().map(|s| s.as_slice())
}

/// The sums over the rows of the row-major `z` (`width` columns, even) of each of `S` factors
/// (`factors` gives them for row `r`, splatted) times each of the `T` column pairs from `pair`
/// on: `sums[s][t]` holds factor `s` times columns `2 (pair + t)` and `2 (pair + t) + 1`, each
/// sum over the rows in order from zero, in registers while the rows go by.
fn column_products<const S: usize, const T: usize>(
    z: &[f64],
    width: usize,
    pair: usize,
    factors: impl Fn(usize, &[f64]) -> [F64x2; S],
) -> [[F64x2; T]; S] {
    let mut sums = [[F64x2::splat(0.0); T]; S];
    let add = |sums: &mut [[F64x2; T]; S], r: usize, row: &[f64]| {
        let factors = factors(r, row);
        let columns = &row[2 * pair..2 * (pair + T)];
        for (t, v) in columns.as_chunks::<2>().0.iter().enumerate() {
            let v = F64x2::load(v);
            for (sum, factor) in sums.iter_mut().zip(factors) {
                sum[t] = sum[t] + factor * v;
            }
        }
    };
    // Four rows per loop iteration: the component checks its time limit (and spills the sums
    // around the check) once per four rows.
    let mut steps = z.chunks_exact(ROWS_PER_STEP * width);
    let mut r = 0;
    for step in &mut steps {
        let (first, rest) = step.split_at(width);
        let (second, rest) = rest.split_at(width);
        let (third, fourth) = rest.split_at(width);
        add(&mut sums, r, first);
        add(&mut sums, r + 1, second);
        add(&mut sums, r + 2, third);
        add(&mut sums, r + 3, fourth);
        r += ROWS_PER_STEP;
    }
    for row in steps.remainder().chunks_exact(width) {
        add(&mut sums, r, row);
        r += 1;
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_upper_product_is_the_sum_over_the_rows_in_order() {
        for (rows, width) in [(0, 2), (1, 2), (3, 4), (7, 6), (9, 10), (5, 12), (4, 18)] {
            let z: Vec<f64> = (0..rows * width)
                .map(|k| libm::sin(k as f64 * 0.61) * 3.0)
                .collect();
            let got = upper_products(&z, width);
            for i in 0..width {
                for j in i..width {
                    let want = (0..rows).fold(0.0, |s, r| s + z[r * width + i] * z[r * width + j]);
                    assert_eq!(
                        got[i * width + j].to_bits(),
                        want.to_bits(),
                        "{rows} x {width}: ({i}, {j})"
                    );
                }
            }
        }
    }
}
