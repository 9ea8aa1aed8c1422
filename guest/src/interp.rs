//! Interpolation: the natural cubic spline (`cubic_spline`).
//!
//! Matches `scipy.interpolate.CubicSpline(x, y, bc_type='natural')(xq)`, extrapolating with the
//! end pieces. x must be strictly increasing with at least two points (else invalid-input);
//! NaN in y or xq gives NaN where it reaches.

use crate::check::{self, invalid};
use crate::tensor::{KernelError, Params, Tensor, TensorRef};
use core::cmp::Ordering;

/// `cubic_spline`: [x (n), y (n), xq (any shape)] -> spline values at xq, shaped like xq.
pub fn cubic_spline(_: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
    let [x, y, xq] = check::inputs(item, ["x", "y", "xq"])?;
    let (x, y) = (check::vector(x, "x")?, check::vector(y, "y")?);
    if x.len() != y.len() {
        return Err(invalid(format!(
            "x has {} values but y has {}",
            x.len(),
            y.len()
        )));
    }
    if x.len() < 2 {
        return Err(invalid(format!("need at least 2 points, got {}", x.len())));
    }
    if let Some(i) = x
        .windows(2)
        .position(|w| w[0].partial_cmp(&w[1]) != Some(Ordering::Less))
    {
        return Err(invalid(format!(
            "x must be strictly increasing and finite; x[{i}] = {}, x[{}] = {}",
            x[i],
            i + 1,
            x[i + 1]
        )));
    }
    let m = second_derivatives(x, y);
    let values = xq.data.iter().map(|&t| evaluate(x, y, &m, t)).collect();
    Ok(Tensor::new(xq.shape.to_vec(), values))
}

/// Second derivatives at the knots with M[0] = M[n-1] = 0 (Thomas algorithm).
fn second_derivatives(x: &[f64], y: &[f64]) -> Vec<f64> {
    let n = x.len();
    let mut m = vec![0.0; n];
    if n < 3 {
        return m;
    }
    let h: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let slope: Vec<f64> = (0..n - 1).map(|i| (y[i + 1] - y[i]) / h[i]).collect();
    // Forward sweep over the interior knots 1..n-1.
    let mut diag = vec![0.0; n];
    let mut rhs = vec![0.0; n];
    for i in 1..n - 1 {
        diag[i] = 2.0 * (h[i - 1] + h[i]);
        rhs[i] = 6.0 * (slope[i] - slope[i - 1]);
        if i > 1 {
            let factor = h[i - 1] / diag[i - 1];
            diag[i] -= factor * h[i - 1];
            rhs[i] -= factor * rhs[i - 1];
        }
    }
    for i in (1..n - 1).rev() {
        m[i] = (rhs[i] - h[i] * m[i + 1]) / diag[i];
    }
    m
}

/// The spline at `t`, using the piece of the interval that holds it (end pieces outside).
fn evaluate(x: &[f64], y: &[f64], m: &[f64], t: f64) -> f64 {
    let i = x.partition_point(|&knot| knot <= t).clamp(1, x.len() - 1) - 1;
    let h = x[i + 1] - x[i];
    let a = x[i + 1] - t;
    let b = t - x[i];
    (m[i] * a * a * a + m[i + 1] * b * b * b) / (6.0 * h)
        + (y[i] / h - m[i] * h / 6.0) * a
        + (y[i + 1] / h - m[i + 1] * h / 6.0) * b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::views;

    fn run(x: &[f64], y: &[f64], q: &[f64]) -> Result<Tensor, KernelError> {
        let t = |v: &[f64]| Tensor::vector(v.to_vec());
        cubic_spline(Params(&[]), &views(&[t(x), t(y), t(q)]))
    }

    #[test]
    fn reproduces_knots_and_lines() {
        let out = run(
            &[0.0, 1.0, 2.0, 4.0],
            &[1.0, 3.0, 5.0, 9.0],
            &[0.0, 0.5, 3.0, 4.0, 5.0],
        )
        .unwrap();
        let expect = [1.0, 2.0, 7.0, 9.0, 11.0];
        for (g, e) in out.data.iter().zip(expect) {
            assert!((g - e).abs() < 1e-12, "{g} vs {e}");
        }
    }

    #[test]
    fn rejects_unsorted_and_short() {
        assert!(run(&[0.0, 0.0], &[1.0, 2.0], &[0.5]).is_err());
        assert!(run(&[0.0], &[1.0], &[0.5]).is_err());
        assert!(run(&[0.0, 1.0], &[1.0], &[0.5]).is_err());
    }
}
