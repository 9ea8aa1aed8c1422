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
/// Solves for the lower-tail quantile of `q = min(p, 1 - p)` (both exact in f64): Acklam's
/// rational approximation (relative error below 1.2e-9), then one Halley step on an erf/erfc
/// residual that keeps full relative accuracy, which brings it to full double precision; then
/// mirrors for `p > 0.5`.
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
    let mut y = acklam(q);
    // Residual Phi(y) - q, computed where it is accurate: through erf near the centre (q - 0.5
    // is exact there) and erfc in the tail.
    let residual = if q > 0.25 {
        0.5 * libm::erf(y * FRAC_1_SQRT_2) - (q - 0.5)
    } else {
        0.5 * libm::erfc(-y * FRAC_1_SQRT_2) - q
    };
    let density = pdf(y);
    if residual != 0.0 && density != 0.0 {
        let u = residual / density;
        y -= u / (1.0 + 0.5 * y * u);
    }
    if upper { -y } else { y }
}

/// Acklam's approximation of the quantile for a lower-tail probability q in (0, 0.5].
fn acklam(q: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    if q < 0.02425 {
        let t = (-2.0 * libm::log(q)).sqrt();
        (((((C[0] * t + C[1]) * t + C[2]) * t + C[3]) * t + C[4]) * t + C[5])
            / ((((D[0] * t + D[1]) * t + D[2]) * t + D[3]) * t + 1.0)
    } else {
        let r = q - 0.5;
        let s = r * r;
        (((((A[0] * s + A[1]) * s + A[2]) * s + A[3]) * s + A[4]) * s + A[5]) * r
            / (((((B[0] * s + B[1]) * s + B[2]) * s + B[3]) * s + B[4]) * s + 1.0)
    }
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
