//! The standard normal distribution: CDF, density and quantile, accurate deep into the tails.
//!
//! Edge cases follow SciPy: NaN in gives NaN out; `norm_ppf` gives -inf at 0, +inf at 1 and NaN
//! outside [0, 1]. Any shape is accepted, including empty tensors, and kept.

use crate::check;
use crate::tensor::{KernelError, Params, Tensor, TensorRef};
use core::f64::consts::FRAC_1_SQRT_2;

/// 1 / sqrt(2 pi).
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Standard normal CDF, with full relative accuracy in the lower tail (as SciPy's `ndtr`).
pub fn cdf(x: f64) -> f64 {
    let t = x * FRAC_1_SQRT_2;
    let z = t.abs();
    if z < FRAC_1_SQRT_2 {
        0.5 + 0.5 * libm::erf(t)
    } else {
        let tail = 0.5 * libm::erfc(z);
        if t > 0.0 { 1.0 - tail } else { tail }
    }
}

/// Standard normal density.
pub fn pdf(x: f64) -> f64 {
    FRAC_1_SQRT_2PI * libm::exp(-0.5 * x * x)
}

/// Standard normal quantile (inverse CDF).
///
/// Solves for the lower-tail quantile of `min(p, 1 - p)` (both exact in f64) from the
/// Abramowitz-Stegun 26.2.23 starting point with Halley steps on an erf/erfc residual that keeps
/// full relative accuracy, then mirrors for `p > 0.5`.
pub fn ppf(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let upper = p > 0.5;
    let q = if upper { 1.0 - p } else { p };
    let mut y = -abramowitz_stegun_guess(q);
    for _ in 0..6 {
        // Residual Phi(y) - q, computed where it is accurate: through erf near the centre
        // (q - 0.5 is exact there) and erfc in the tail.
        let residual = if q > 0.25 {
            0.5 * libm::erf(y * FRAC_1_SQRT_2) - (q - 0.5)
        } else {
            0.5 * libm::erfc(-y * FRAC_1_SQRT_2) - q
        };
        let density = pdf(y);
        if residual == 0.0 || density == 0.0 {
            break;
        }
        let u = residual / density;
        let step = u / (1.0 + 0.5 * y * u);
        y -= step;
        if step.abs() <= 1e-17 * y.abs() {
            break;
        }
    }
    if upper { -y } else { y }
}

/// Abramowitz & Stegun 26.2.23: |x| with upper-tail probability q in (0, 0.5], error < 4.5e-4.
fn abramowitz_stegun_guess(q: f64) -> f64 {
    let t = (-2.0 * libm::log(q)).sqrt();
    t - (2.515_517 + t * (0.802_853 + t * 0.010_328))
        / (1.0 + t * (1.432_788 + t * (0.189_269 + t * 0.001_308)))
}

/// `norm_cdf`: elementwise CDF of one tensor of any shape.
pub fn cdf_kernel(_: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
    elementwise(item, "x", cdf)
}

/// `norm_ppf`: elementwise quantile of one tensor of any shape.
pub fn ppf_kernel(_: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
    elementwise(item, "p", ppf)
}

fn elementwise(
    item: &[TensorRef<'_>],
    name: &str,
    f: fn(f64) -> f64,
) -> Result<Tensor, KernelError> {
    let [x] = check::inputs(item, [name])?;
    Ok(Tensor::new(
        x.shape.to_vec(),
        x.data.iter().map(|&v| f(v)).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::views;

    #[test]
    fn cdf_known_values() {
        assert_eq!(cdf(0.0), 0.5);
        assert!((cdf(1.96) - 0.975_002_104_851_780_1).abs() < 1e-15);
        // Deep lower tail keeps relative accuracy: Phi(-30) = 4.906713927148187e-198.
        assert!((cdf(-30.0) / 4.906_713_927_148_187e-198 - 1.0).abs() < 1e-12);
        assert!(cdf(f64::NAN).is_nan());
    }

    #[test]
    fn ppf_inverts_cdf_across_the_range() {
        for &p in &[
            1e-300,
            1e-100,
            1e-14,
            1e-5,
            0.01,
            0.2,
            0.3,
            0.5,
            0.7,
            0.99,
            1.0 - 1e-12,
        ] {
            let x = ppf(p);
            let back = cdf(x);
            assert!((back / p - 1.0).abs() < 1e-12, "p={p} x={x} back={back}");
        }
        assert_eq!(ppf(0.5), 0.0);
        assert_eq!(ppf(0.0), f64::NEG_INFINITY);
        assert_eq!(ppf(1.0), f64::INFINITY);
        assert!(ppf(1.5).is_nan() && ppf(-0.1).is_nan() && ppf(f64::NAN).is_nan());
    }

    #[test]
    fn keeps_shape_including_empty() {
        let t = Tensor::new(vec![2, 0], vec![]);
        let out = cdf_kernel(Params(&[]), &views(&[t])).unwrap();
        assert_eq!(out.shape, vec![2, 0]);
    }
}
