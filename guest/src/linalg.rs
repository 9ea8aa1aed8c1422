//! Dense linear algebra: `matmul` and least squares (`ols`).
//!
//! Loops are written out in a fixed order (no BLAS, no runtime CPU dispatch) so that every
//! platform computes the same sums in the same order.

use crate::axpy::axpy;
use crate::check::{self, domain, invalid};
use crate::lanes;
use crate::tensor::{KernelError, Params, Tensor, TensorRef};

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

/// C = A B for row-major A (rows x inner) and B (inner x cols): each row of C accumulates
/// scaled rows of B, an elementwise loop over contiguous slices that vectorises (each element's
/// sum still runs over `inner` in order).
fn product(a: &[f64], b: &[f64], rows: usize, inner: usize, cols: usize) -> Vec<f64> {
    let mut c = vec![0.0; rows * cols];
    if inner == 0 || cols == 0 {
        return c;
    }
    for (a_row, c_row) in a.chunks_exact(inner).zip(c.chunks_exact_mut(cols)) {
        for (&a_ik, b_row) in a_row.iter().zip(b.chunks_exact(cols)) {
            axpy(c_row, a_ik, b_row);
        }
    }
    c
}

/// `ols`: [X (n x p), y (n)] -> the coefficients b minimising |X b - y|.
///
/// Householder QR. Unlike `lstsq`, which returns a minimum-norm solution, a rank-deficient or
/// under-determined X (n < p) is a domain error: the coefficients are not unique.
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
    // R is kept column by column (each column contiguous), so that the reflections below
    // stream through memory.
    let mut r: Vec<Vec<f64>> = x.columns().into_iter().map(|c| c.to_vec()).collect();
    let mut qty = y.to_vec();
    let scale = x
        .iter()
        .fold(0.0f64, |m, v| if v.abs() > m { v.abs() } else { m });
    for j in 0..p {
        householder_step(&mut r, &mut qty, j);
        let pivot = r[j][j];
        if pivot.is_nan() {
            return Ok(Tensor::vector(vec![f64::NAN; p]));
        }
        if pivot.abs() <= scale * f64::EPSILON * n as f64 {
            return Err(domain(format!(
                "X is rank-deficient: column {j} is (nearly) a combination of the columns before it"
            )));
        }
    }
    let mut b = vec![0.0; p];
    for j in (0..p).rev() {
        let tail: f64 = (j + 1..p).map(|k| r[k][j] * b[k]).sum();
        b[j] = (qty[j] - tail) / r[j][j];
    }
    Ok(Tensor::vector(b))
}

/// Zeroes column `j` of R (stored by columns) below the diagonal with a Householder reflection,
/// applied to the remaining columns and to `qty`.
fn householder_step(r: &mut [Vec<f64>], qty: &mut [f64], j: usize) {
    let norm = lanes::dot(&r[j][j..], &r[j][j..]).sqrt();
    if norm == 0.0 {
        return;
    }
    let alpha = if r[j][j] > 0.0 { -norm } else { norm };
    let mut v = r[j][j..].to_vec();
    v[0] -= alpha;
    let v_norm2 = lanes::dot(&v, &v);
    if v_norm2 == 0.0 {
        return;
    }
    let reflect = |column: &mut [f64]| {
        let f = 2.0 * lanes::dot(&v, column) / v_norm2;
        axpy(column, -f, &v);
    };
    for column in &mut r[j..] {
        reflect(&mut column[j..]);
    }
    reflect(&mut qty[j..]);
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
