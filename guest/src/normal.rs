//! The standard normal distribution: `norm_cdf` and `norm_ppf`, whole-batch elementwise
//! kernels over crunch-math's two-lane CDF and quantile.
//!
//! Edge cases follow SciPy: NaN in gives NaN out; `norm_ppf` gives -inf at 0, +inf at 1 and NaN
//! outside [0, 1]. Any shape is accepted, including empty tensors, and kept.

use crate::check::{self, unreadable};
use crate::tensor::{KernelError, Params};
use crunch_abi::{BatchResults, ItemsMut};
use crunch_math::F64x4;

/// `norm_cdf`: the CDF of every value of every item, written over it.
pub fn cdf_batch(_: Params<'_>, items: ItemsMut<'_>) -> BatchResults<KernelError> {
    elementwise(items, "x", |xs| {
        crunch_math::map(xs, crunch_math::cdf::<F64x4>)
    })
}

/// `norm_ppf`: the quantile of every value of every item, written over it: the central region
/// four lanes at a time, the tails set aside and gathered four at a time
/// ([`crunch_math::map_common`]).
pub fn ppf_batch(_: Params<'_>, items: ItemsMut<'_>) -> BatchResults<KernelError> {
    elementwise(items, "p", |ps| {
        crunch_math::map_common(ps, crunch_math::ppf_central, crunch_math::ppf::<F64x4>);
    })
}

/// Every item one tensor named `name`, `f` over its values.
#[inline(always)]
fn elementwise(
    items: ItemsMut<'_>,
    name: &str,
    f: impl FnMut(&mut [f64]),
) -> BatchResults<KernelError> {
    crunch_abi::map_elementwise_in_place(
        items,
        unreadable,
        |item| check::inputs(item, [name]).map(|_| ()),
        f,
    )
}

#[cfg(test)]
mod tests {
    use crate::table::run;
    use crate::tensor::{KernelError, Tensor};

    #[test]
    fn cdf_known_values() {
        assert_eq!(cdf(0.0), 0.5);
        assert!((cdf(1.96) - 0.975_002_104_851_779_6).abs() < 1e-15);
        // Deep lower tail keeps relative accuracy: Phi(-30) = 4.906713927148187e-198.
        assert!((cdf(-30.0) / 4.906_713_927_148_187e-198 - 1.0).abs() < 1e-15);
        assert!(cdf(f64::NAN).is_nan());
    }

    use crunch_math::scalar::{cdf, ppf};

    #[test]
    fn ppf_inverts_cdf_across_the_range() {
        for &p in &[
            5e-324,
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
            assert!(
                (back / p - 1.0).abs() < 1e-13 * x.abs().max(1.0),
                "p={p} x={x} back={back}"
            );
        }
        assert_eq!(ppf(0.5), 0.0);
        assert_eq!(ppf(0.0), f64::NEG_INFINITY);
        assert_eq!(ppf(1.0), f64::INFINITY);
        assert!(ppf(1.5).is_nan() && ppf(-0.1).is_nan() && ppf(f64::NAN).is_nan());
    }

    #[test]
    fn subnormal_p_keeps_full_accuracy() {
        // mpmath: the p = 5e-324 (2^-1074) quantile is -38.4674056172733...
        let x = ppf(5e-324);
        assert!((x / -38.467_405_617_144_346 - 1.0).abs() < 1e-15, "{x}");
    }

    #[test]
    fn keeps_shape_including_empty_and_fails_bad_items_alone() {
        let items = vec![
            vec![Tensor::new(vec![2, 0], vec![])],
            vec![],
            vec![Tensor::new(vec![3], vec![0.0, 0.0, 0.0])],
        ];
        let out = run("norm_cdf", &[], &items);
        assert_eq!(out[0].as_ref().unwrap().shape, vec![2, 0]);
        assert!(
            matches!(&out[1], Err(KernelError::InvalidInput(m)) if m.contains("expected 1 input"))
        );
        assert_eq!(out[2].as_ref().unwrap().data, vec![0.5; 3]);
    }
}
