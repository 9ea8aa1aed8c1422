//! Dense linear algebra: `matmul` and least squares (`ols`).
//!
//! Loops are written out in a fixed order (no BLAS, no runtime CPU dispatch) so that every
//! platform computes the same sums in the same order.

use crate::axpy::{axpy, axpy2};
use crate::check::{self, domain, invalid};
use crate::gram;
use crate::lanes;
use crate::tensor::{KernelError, Params, Tensor, TensorRef};
use crunch_math::F64x2;

/// `matmul`: [A (m x k), B (k x n)] -> A @ B.
pub fn matmul(_: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
    let [a, b] = check::inputs(item, ["A", "B"])?;
    let (a, b) = (check::matrix(a, "A")?, check::matrix(b, "B")?);
    if a.ncols() != b.nrows() {
        return Err(invalid(format!(
            "inner dimensions differ: A is {}x{}, B is {}x{}",
            a.nrows(),
            a.ncols(),
            b.nrows(),
            b.ncols()
        )));
    }
    let (rows, inner, cols) = (a.nrows(), a.ncols(), b.ncols());
    let c = product(
        a.as_slice().expect("tensors are row-major"),
        b.as_slice().expect("tensors are row-major"),
        rows,
        inner,
        cols,
    );
    Ok(Tensor::matrix(rows, cols, c))
}

/// C = A B for row-major A (rows x inner) and B (inner x cols). Every element of C is the sum
/// over `inner` in order, from 0: `((0 + a0 b0) + a1 b1) + ...`, whichever loop computes it.
///
/// Blocks of 4 x 4 elements of C stay in registers (eight f64x2 accumulators) for the whole
/// inner loop, which takes four steps per iteration: per step two loads of B and four of A feed
/// sixteen multiply-adds. The rows and columns left over take scaled rows of B (axpy).
fn product(a: &[f64], b: &[f64], rows: usize, inner: usize, cols: usize) -> Vec<f64> {
    let mut c = vec![0.0; rows * cols];
    if inner == 0 || cols == 0 {
        return c;
    }
    let block_cols = cols / BLOCK * BLOCK;
    let mut a_blocks = a.chunks_exact(BLOCK * inner);
    let mut c_blocks = c.chunks_exact_mut(BLOCK * cols);
    for (a_rows, c_rows) in (&mut a_blocks).zip(&mut c_blocks) {
        let a_rows: [&[f64]; BLOCK] = core::array::from_fn(|r| &a_rows[r * inner..][..inner]);
        for j in (0..block_cols).step_by(BLOCK) {
            let block = block_4x4(a_rows, &b[j..], inner, cols);
            for (r, values) in block.iter().enumerate() {
                c_rows[r * cols + j..][..BLOCK].copy_from_slice(values);
            }
        }
        if block_cols < cols {
            for (a_row, c_row) in a_rows.iter().zip(c_rows.chunks_exact_mut(cols)) {
                for (&a_ik, b_row) in a_row.iter().zip(b.chunks_exact(cols)) {
                    axpy(&mut c_row[block_cols..], a_ik, &b_row[block_cols..]);
                }
            }
        }
    }
    for (a_row, c_row) in a_blocks
        .remainder()
        .chunks_exact(inner)
        .zip(c_blocks.into_remainder().chunks_exact_mut(cols))
    {
        for (&a_ik, b_row) in a_row.iter().zip(b.chunks_exact(cols)) {
            axpy(c_row, a_ik, b_row);
        }
    }
    c
}

/// Rows and columns of C per register block.
const BLOCK: usize = 4;

/// The 4 x 4 block of `A B` whose rows are `a_rows` and whose columns start at `b[0]` (B's
/// rows are `stride` apart).
#[inline(always)]
fn block_4x4(
    a_rows: [&[f64]; BLOCK],
    b: &[f64],
    inner: usize,
    stride: usize,
) -> [[f64; BLOCK]; BLOCK] {
    let zero = F64x2::splat(0.0);
    let mut acc = [[zero; 2]; BLOCK];
    // Step `p` with `a[r]` holding `a_rows[r][p]` in both lanes.
    let mut step = |p: usize, a: [F64x2; BLOCK]| {
        let b_row = &b[p * stride..][..BLOCK];
        let (b0, b1) = (
            F64x2::new(b_row[0], b_row[1]),
            F64x2::new(b_row[2], b_row[3]),
        );
        for (acc, a) in acc.iter_mut().zip(a) {
            acc[0] = acc[0] + a * b0;
            acc[1] = acc[1] + a * b1;
        }
    };
    let unrolled = inner / 4 * 4;
    for p in (0..unrolled).step_by(4) {
        // A's values for the four steps from two pair loads per row and their lanes (one
        // shuffle each, where a splat of a loaded value is three instructions in Cranelift).
        for at in [p, p + 2] {
            let splats = a_rows.map(|row| {
                F64x2::load(row[at..at + 2].try_into().expect("two values")).lanes_splat()
            });
            step(at, splats.map(|[a, _]| a));
            step(at + 1, splats.map(|[_, a]| a));
        }
    }
    for p in unrolled..inner {
        step(p, a_rows.map(|row| F64x2::splat(row[p])));
    }
    acc.map(|[lo, hi]| {
        let (lo, hi) = (lo.to_array(), hi.to_array());
        [lo[0], lo[1], hi[0], hi[1]]
    })
}

/// `ols`: [X (n x p), y (n)] -> the coefficients b minimising |X b - y|.
///
/// The normal equations, refined once (as a vectorised NumPy solution does), where X is well
/// enough conditioned for them; else Householder QR. Unlike `lstsq`, which returns a
/// minimum-norm solution, a rank-deficient or under-determined X (n < p) is a domain error: the
/// coefficients are not unique.
pub fn ols(_: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
    let [x, y] = check::inputs(item, ["X", "y"])?;
    let x = check::matrix(x, "X")?;
    let y = check::vector(y, "y")?;
    let (n, p) = x.dim();
    if y.len() != n {
        return Err(invalid(format!(
            "X has {n} rows but y has {} values",
            y.len()
        )));
    }
    if p == 0 {
        return Err(invalid("X has no columns".to_string()));
    }
    if n < p {
        return Err(domain(format!(
            "under-determined: {n} observations for {p} coefficients"
        )));
    }
    let values = x.as_slice().expect("tensors are row-major");
    let b = match normal_equations(values, y, p) {
        Some(b) => b,
        None => householder_least_squares(values, y, p)?,
    };
    Ok(Tensor::vector(b))
}

/// The least-squares coefficients by Householder QR: NaN coefficients for NaN input, a domain
/// error for a rank-deficient X.
fn householder_least_squares(values: &[f64], y: &[f64], p: usize) -> Result<Vec<f64>, KernelError> {
    let n = y.len();
    // R is kept column by column (each column contiguous, X's p columns then y's, which
    // becomes Q^T y), so that the reflections below stream through memory.
    let mut r = vec![0.0; n * (p + 1)];
    let (columns, qty) = r.split_at_mut(n * p);
    for (j, column) in columns.chunks_exact_mut(n).enumerate() {
        for (v, row) in column.iter_mut().zip(values.chunks_exact(p)) {
            *v = row[j];
        }
    }
    qty.copy_from_slice(y);
    let scale = values
        .iter()
        .fold(0.0f64, |m, v| if v.abs() > m { v.abs() } else { m });
    let mut v = Vec::with_capacity(n);
    for j in 0..p {
        householder_step(&mut r, n, j, &mut v);
        let pivot = r[j * n + j];
        if pivot.is_nan() {
            return Ok(vec![f64::NAN; p]);
        }
        if pivot.abs() <= scale * f64::EPSILON * n as f64 {
            return Err(domain(format!(
                "X is rank-deficient: column {j} is (nearly) a combination of the columns before it"
            )));
        }
    }
    let mut b = vec![0.0; p];
    for j in (0..p).rev() {
        let tail: f64 = (j + 1..p).map(|k| r[k * n + j] * b[k]).sum();
        b[j] = (r[p * n + j] - tail) / r[j * n + j];
    }
    Ok(b)
}

/// The largest refinement step, relative to the coefficients, at which the normal equations'
/// answer stands: the error left after the step is then far below it.
const REFINED: f64 = 1e-8;

/// The coefficients from the normal equations `X^T X b = X^T y` (Cholesky), refined once with
/// the residual's `X^T (y - X b)`; `None` when they cannot be trusted: `X^T X` is not positive
/// definite, or the refinement step is not tiny next to the coefficients (an ill-conditioned
/// or rank-deficient X, or NaN), for QR to decide.
fn normal_equations(x: &[f64], y: &[f64], p: usize) -> Option<Vec<f64>> {
    match p {
        1 => normal_equations_in(x, y, Fixed::<1>),
        2 => normal_equations_in(x, y, Fixed::<2>),
        3 => normal_equations_in(x, y, Fixed::<3>),
        4 => normal_equations_in(x, y, Fixed::<4>),
        5 => normal_equations_in(x, y, Fixed::<5>),
        6 => normal_equations_in(x, y, Fixed::<6>),
        7 => normal_equations_in(x, y, Fixed::<7>),
        _ => normal_equations_in(x, y, p),
    }
}

/// A number of columns, known when the code is compiled ([`Fixed`]) or only when it runs
/// (`usize`). Known, the per-row copies and fits and the small factorisation and solves become
/// straight-line code: loops of a length known only at run time cost the component a
/// `memory.copy` call per row copied and a time-limit check per iteration.
trait Columns: Copy {
    /// The number of columns.
    fn get(self) -> usize;
}

impl Columns for usize {
    #[inline(always)]
    fn get(self) -> usize {
        self
    }
}

/// `P` columns, known when the code is compiled.
#[derive(Clone, Copy)]
struct Fixed<const P: usize>;

impl<const P: usize> Columns for Fixed<P> {
    #[inline(always)]
    fn get(self) -> usize {
        P
    }
}

/// [`normal_equations`] for X with `columns` columns.
fn normal_equations_in(x: &[f64], y: &[f64], columns: impl Columns) -> Option<Vec<f64>> {
    let p = columns.get();
    // [X y], padded with a zero column to an even width, so that one pass gives X^T X and X^T y.
    let width = (p + 1).next_multiple_of(2);
    let mut xy = vec![0.0; y.len() * width];
    for ((row, x_row), &y) in xy.chunks_exact_mut(width).zip(x.chunks_exact(p)).zip(y) {
        row[..p].copy_from_slice(x_row);
        row[p] = y;
    }
    let products = gram::upper_products(&xy, width);
    let gram_at = |i: usize, j: usize| products[i.min(j) * width + i.max(j)];
    let factor = cholesky(columns, gram_at)?;
    let xty: Vec<f64> = (0..p).map(|i| products[i * width + p]).collect();
    let mut b = cholesky_solve(&factor, columns, &xty);
    let residual_products = residual_products(&xy, columns, &b);
    let step = cholesky_solve(&factor, columns, &residual_products);
    b.iter_mut().zip(&step).for_each(|(b, s)| *b += s);
    let norm = |v: &[f64]| v.iter().fold(0.0, |s, v| s + v * v).sqrt();
    (norm(&step) <= REFINED * norm(&b)).then_some(b)
}

/// `X^T (y - X b)` over the rows of `[X y]` (X of `columns` columns, then y, then a zero column
/// if that makes the width even): each row's residual (its fit as two lane sums added) times
/// the row, with up to four pairs of columns at a time (`gram::tiled_column_products`).
fn residual_products(xy: &[f64], columns: impl Columns, b: &[f64]) -> Vec<f64> {
    let p = columns.get();
    let pairs = (p + 1).div_ceil(2);
    let width = 2 * pairs;
    let coefficient = |j: usize| b.get(j).copied().unwrap_or(0.0);
    let coefficients: Vec<F64x2> = (0..pairs)
        .map(|t| F64x2::new(coefficient(2 * t), coefficient(2 * t + 1)))
        .collect();
    let coefficients = &coefficients[..pairs];
    let residual = |_: usize, row: &[f64]| {
        let fit = row
            .as_chunks::<2>()
            .0
            .iter()
            .zip(coefficients)
            .fold(F64x2::splat(0.0), |s, (x, b)| s + F64x2::load(x) * *b)
            .to_array();
        [F64x2::splat(row[p] - (fit[0] + fit[1]))]
    };
    let mut products = Vec::with_capacity(width);
    gram::tiled_column_products(xy, width, 0, residual, |_, [sums]: [&[F64x2]; 1]| {
        products.extend(sums.iter().flat_map(|s| s.to_array()));
    });
    products.truncate(p);
    products
}

/// The lower Cholesky factor L (row-major p x p) of the symmetric matrix whose entries `at`
/// gives, with the reciprocals of its diagonal on the diagonal (the solves multiply by them:
/// a multiplication is a few cycles in their chains of dependent steps, a division many), or
/// `None` if the matrix is not (numerically) positive definite.
fn cholesky(columns: impl Columns, at: impl Fn(usize, usize) -> f64) -> Option<Vec<f64>> {
    let p = columns.get();
    let mut l = vec![0.0; p * p];
    for j in 0..p {
        let d = at(j, j) - (0..j).fold(0.0, |s, k| s + l[j * p + k] * l[j * p + k]);
        if d.is_nan() || d <= 0.0 {
            return None;
        }
        let inverse = 1.0 / d.sqrt();
        l[j * p + j] = inverse;
        for i in j + 1..p {
            let dot = (0..j).fold(0.0, |s, k| s + l[i * p + k] * l[j * p + k]);
            l[i * p + j] = (at(i, j) - dot) * inverse;
        }
    }
    Some(l)
}

/// Solves `L L^T b = c` with the factor of [`cholesky`] (reciprocals on its diagonal).
fn cholesky_solve(l: &[f64], columns: impl Columns, c: &[f64]) -> Vec<f64> {
    let p = columns.get();
    let mut z = vec![0.0; p];
    for i in 0..p {
        let dot = (0..i).fold(0.0, |s, k| s + l[i * p + k] * z[k]);
        z[i] = (c[i] - dot) * l[i * p + i];
    }
    for i in (0..p).rev() {
        let dot = (i + 1..p).fold(0.0, |s, k| s + l[k * p + i] * z[k]);
        z[i] = (z[i] - dot) * l[i * p + i];
    }
    z
}

/// Zeroes column `j` of R (columns of `n` values, one after another) below the diagonal with a
/// Householder reflection, applied to the columns after it (the last is Q^T y). Column `j`
/// itself becomes `alpha` on the diagonal (what the reflection gives it; the entries below are
/// never read again), and the other columns are reflected two at a time: one pass for both dot
/// products with v, one for both updates. `v` is scratch space.
fn householder_step(r: &mut [f64], n: usize, j: usize, v: &mut Vec<f64>) {
    let (head, rest) = r.split_at_mut((j + 1) * n);
    let pivot_column = &mut head[j * n..];
    let norm = lanes::dot(&pivot_column[j..], &pivot_column[j..]).sqrt();
    if norm == 0.0 {
        return;
    }
    let alpha = if pivot_column[j] > 0.0 { -norm } else { norm };
    v.clear();
    v.extend_from_slice(&pivot_column[j..]);
    v[0] -= alpha;
    let v_norm2 = lanes::dot(v, v);
    if v_norm2 == 0.0 {
        return;
    }
    pivot_column[j] = alpha;
    let scale = 2.0 / v_norm2;
    let mut pairs = rest.chunks_exact_mut(2 * n);
    for pair in &mut pairs {
        let (a, b) = pair.split_at_mut(n);
        let (a, b) = (&mut a[j..], &mut b[j..]);
        let (da, db) = lanes::dot2(v, a, b);
        axpy2(a, -(scale * da), b, -(scale * db), v);
    }
    let last = pairs.into_remainder();
    if !last.is_empty() {
        let column = &mut last[j..];
        let f = scale * lanes::dot(v, column);
        axpy(column, -f, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::views;

    #[test]
    fn matmul_small() {
        let a = Tensor::matrix(2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = Tensor::matrix(3, 1, vec![1.0, 0.0, -1.0]);
        let c = matmul(Params(&[]), &views(&[a.clone(), b])).unwrap();
        assert_eq!((c.shape, c.data), (vec![2, 1], vec![-2.0, -2.0]));
        assert!(matmul(Params(&[]), &views(&[a.clone(), a])).is_err());
    }

    #[test]
    fn blocked_product_sums_each_element_in_order() {
        for (rows, inner, cols) in [
            (1, 1, 1),
            (4, 4, 4),
            (5, 7, 6),
            (9, 3, 13),
            (8, 9, 8),
            (3, 0, 2),
        ] {
            let a: Vec<f64> = (0..rows * inner).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..inner * cols)
                .map(|i| (i as f64 * 0.11).cos() - 0.3)
                .collect();
            let got = product(&a, &b, rows, inner, cols);
            for i in 0..rows {
                for j in 0..cols {
                    let want = (0..inner).fold(0.0, |s, p| s + a[i * inner + p] * b[p * cols + j]);
                    assert_eq!(
                        got[i * cols + j].to_bits(),
                        want.to_bits(),
                        "{rows}x{inner}x{cols} [{i},{j}]"
                    );
                }
            }
        }
    }

    /// A least-squares problem of `n` x `p` whose columns are `coupling`-close to each other
    /// (0: unrelated; near 1: nearly collinear).
    fn problem(n: usize, p: usize, coupling: f64) -> (Vec<f64>, Vec<f64>) {
        let base: Vec<f64> = (0..n).map(|r| libm::sin(r as f64 * 1.3)).collect();
        let x: Vec<f64> = (0..n * p)
            .map(|k| {
                let (r, j) = (k / p, k % p);
                coupling * base[r]
                    + (1.0 - coupling) * libm::cos((r * (j + 2)) as f64 * 0.71 + j as f64)
            })
            .collect();
        let y = (0..n)
            .map(|r| {
                (0..p).map(|j| x[r * p + j] * (j as f64 - 1.5)).sum::<f64>()
                    + 0.1 * libm::sin(r as f64 * 7.1)
            })
            .collect();
        (x, y)
    }

    #[test]
    fn the_normal_equations_agree_with_qr_where_they_are_used() {
        let every_small_p = (1..=9).map(|p| (3 * p + 2, p));
        for (n, p) in [(1, 1), (5, 2), (20, 3), (200, 5), (64, 8), (30, 11)]
            .into_iter()
            .chain(every_small_p)
        {
            let (x, y) = problem(n, p, 0.0);
            let fast = normal_equations(&x, &y, p).expect("a well-conditioned X");
            let qr = householder_least_squares(&x, &y, p).unwrap();
            for (a, b) in fast.iter().zip(&qr) {
                assert!(
                    (a - b).abs() <= 1e-11 * (1.0 + b.abs()),
                    "{n} x {p}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn columns_known_at_compile_time_give_the_same_bits() {
        let bits =
            |b: Option<Vec<f64>>| b.map(|b| b.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        for p in 1..=7 {
            for n in [p, p + 1, 4 * p + 3, 50] {
                let (x, y) = problem(n, p, 0.0);
                assert_eq!(
                    bits(normal_equations(&x, &y, p)),
                    bits(normal_equations_in(&x, &y, p)),
                    "{n} x {p}"
                );
            }
        }
    }

    #[test]
    fn an_ill_conditioned_x_goes_to_qr() {
        let (x, y) = problem(100, 4, 1.0 - 1e-7);
        assert!(normal_equations(&x, &y, 4).is_none());
        let xt = Tensor::matrix(100, 4, x.clone());
        let got = ols(Params(&[]), &views(&[xt, Tensor::vector(y.clone())])).unwrap();
        assert_eq!(got.data, householder_least_squares(&x, &y, 4).unwrap());
        let mut nan = x.clone();
        nan[17] = f64::NAN;
        assert!(normal_equations(&nan, &y, 4).is_none());
    }

    #[test]
    fn ols_recovers_exact_fit() {
        let x = Tensor::matrix(4, 2, vec![1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1.0, 3.0]);
        let y = Tensor::vector(vec![1.0, 3.0, 5.0, 7.0]);
        let b = ols(Params(&[]), &views(&[x, y])).unwrap();
        assert!((b.data[0] - 1.0).abs() < 1e-14 && (b.data[1] - 2.0).abs() < 1e-14);
    }

    #[test]
    fn ols_rejects_rank_deficient() {
        let x = Tensor::matrix(3, 2, vec![1.0, 2.0, 2.0, 4.0, 3.0, 6.0]);
        let y = Tensor::vector(vec![1.0, 2.0, 3.0]);
        assert!(
            matches!(ols(Params(&[]), &views(&[x, y])), Err(KernelError::Domain(m)) if m.contains("rank"))
        );
    }
}
