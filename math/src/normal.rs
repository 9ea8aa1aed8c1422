//! The standard normal distribution on two lanes: the CDF `Φ` (both tails at full relative
//! accuracy), the density and the quantile `Φ⁻¹`.
//!
//! `Φ` follows W. J. Cody's rational Chebyshev approximations (the algorithm behind R's
//! `pnorm`): `|x| <= 0.67448975` a rational in x², up to √32 `exp(-x²/2)` times a rational in
//! `|x|`, beyond an asymptotic rational in 1/x². `exp(-x²/2)` is computed with x² split
//! exactly into a high and a low part, so the tails keep full relative accuracy down to
//! `Φ(-38.4) ≈ 1e-323`. `Φ⁻¹` is Wichura's AS 241 (PPND16): three rationals of degree 7,
//! accurate to about 1e-16 with no refinement step. Lanes in different regions are computed in
//! the same pass; each lane's value depends only on its own input.

// The published coefficients are kept digit for digit as their sources give them.
#![allow(clippy::excessive_precision)]

use crate::explog::{exp_with_tail, log};
use crate::simd::Real;

/// 1 / sqrt(2 pi).
pub const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_677_94;

/// Below this |x|, Φ is 1/2 plus a rational in x (0.67448975 = Φ⁻¹(3/4)).
const CENTER: f64 = 0.674_489_75;
/// Up to this |x| (√32), the tail is exp(-x²/2) times a rational in |x|.
const MIDDLE: f64 = 5.656_854_249_492_380_195_206_754_896_84;
/// Beyond this |x|, exp(-x²/2) is 0 in f64; clamping keeps the split of x² finite.
const NEGLIGIBLE: f64 = 40.0;

/// Cody's coefficients for |x| <= 0.67448975.
const A: [f64; 5] = [
    2.235_252_035_460_683_928_7,
    161.028_231_068_555_878_81,
    1_067.689_485_460_370_958_2,
    18_154.981_253_343_561_249,
    0.065_682_337_918_207_449_113,
];
const B: [f64; 4] = [
    47.202_581_904_688_241_87,
    976.098_551_737_776_693_22,
    10_260.932_208_618_978_205,
    45_507.789_335_026_729_956,
];
/// Cody's coefficients for 0.67448975 < |x| <= √32.
const C: [f64; 9] = [
    0.398_941_512_088_134_667_64,
    8.883_149_794_388_375_941_2,
    93.506_656_132_177_855_979,
    597.270_276_394_800_262_26,
    2_494.537_585_290_372_671_1,
    6_848.190_450_536_282_332_6,
    11_602.651_437_647_350_124,
    9_842.714_838_383_978_021_8,
    1.076_557_677_372_019_231_7e-8,
];
const D: [f64; 8] = [
    22.266_688_044_328_115_691,
    235.387_901_782_624_998_61,
    1_519.377_599_407_554_805,
    6_485.558_298_266_760_755,
    18_615.571_640_885_098_091,
    34_900.952_721_145_977_266,
    38_912.003_286_093_271_411,
    19_685.429_676_859_990_727,
];
/// Cody's coefficients for |x| > √32.
const P: [f64; 6] = [
    0.215_898_534_057_956_99,
    0.127_401_161_160_247_363_9,
    0.022_235_277_870_649_807,
    0.001_421_619_193_227_893_466,
    2.911_287_495_116_879_2e-5,
    0.023_073_441_764_940_173_03,
];
const Q: [f64; 5] = [
    1.284_260_096_144_911_21,
    0.468_238_212_480_865_118,
    0.065_988_137_868_928_551_5,
    0.003_782_396_332_027_582_44,
    7.297_515_550_839_662_05e-5,
];

/// `exp(-y²/2)` to full relative accuracy: y = hi + lo with hi of 26 significant bits, so
/// hi² is exact and y² = hi² + lo (y + hi) loses nothing that matters.
#[inline(always)]
pub fn exp_minus_half_square<V: Real>(y: V) -> V {
    let y = y.abs();
    let y = V::select(y.gt(V::splat(NEGLIGIBLE)), V::splat(NEGLIGIBLE), y);
    let hi = V::from_bits(y.to_bits() & V::splat_bits(0xffff_ffff_f800_0000));
    let lo = y - hi;
    let half = V::splat(-0.5);
    exp_with_tail(hi * hi * half, lo * (y + hi) * half)
}

/// `x * A(x²) / B(x²)`: Φ(x) - 1/2 for |x| <= 0.67448975.
#[inline(always)]
fn center<V: Real>(x: V) -> V {
    let xsq = x * x;
    let num = horner(xsq, V::splat(A[4]), &A[..4]);
    let den = horner(xsq, xsq + V::splat(B[0]), &B[1..]);
    x * num / den
}

/// `((lead x + c0) x + c1) x + ...`, each step one fused multiply-add.
#[inline(always)]
fn horner<V: Real>(x: V, lead: V, coefficients: &[f64]) -> V {
    coefficients
        .iter()
        .fold(lead, |acc, &c| acc.mul_add(x, V::splat(c)))
}

/// The tail Φ(-y) of y > 0.67448975 divided by exp(-y²/2), up to √32.
#[inline(always)]
fn middle<V: Real>(y: V) -> V {
    horner(y, V::splat(C[8]), &C[..8]) / horner(y, y + V::splat(D[0]), &D[1..])
}

/// The tail Φ(-y) of y > √32 divided by exp(-y²/2).
#[inline(always)]
fn far<V: Real>(y: V) -> V {
    let xsq = V::splat(1.0) / (y * y);
    let num = horner(xsq, V::splat(P[5]), &P[..5]);
    let den = horner(xsq, xsq + V::splat(Q[0]), &Q[1..]);
    let r = xsq * num / den;
    (V::splat(FRAC_1_SQRT_2PI) - r) / y
}

/// Φ(x) and Φ(-x) = 1 - Φ(x), and exp(-x²/2): `known` when the caller has it, else computed
/// here when `with_exp` or a lane needs it (else 0).
#[inline(always)]
fn cdf_parts<V: Real>(x: V, known: Option<V>, with_exp: bool) -> (V, V, V) {
    let zero = V::splat(0.0);
    let y = x.abs();
    let central = y.le(V::splat(CENTER));
    let all_central = V::all(central);
    let e = match known {
        Some(e) => e,
        None if with_exp || !all_central => exp_minus_half_square(y),
        None => zero,
    };
    let mut lower = zero;
    let mut upper = zero;
    if !all_central {
        // NaN lands here too (every comparison is false) and stays NaN.
        let near = y.le(V::splat(MIDDLE));
        let ratio = if V::all(near) {
            middle(y)
        } else if !V::any(near & !central) {
            far(y)
        } else {
            V::select(near, middle(y), far(y))
        };
        let tail = e * ratio;
        let rest = V::splat(1.0) - tail;
        let positive = x.gt(zero);
        lower = V::select(positive, rest, tail);
        upper = V::select(positive, tail, rest);
    }
    if V::any(central) {
        let t = center(x);
        let half = V::splat(0.5);
        lower = V::select(central, half + t, lower);
        upper = V::select(central, half - t, upper);
    }
    (lower, upper, e)
}

/// Φ(x) and Φ(-x), each to full relative accuracy (Φ(-x) is not computed as 1 - Φ(x)).
#[inline(always)]
pub fn cdf_both<V: Real>(x: V) -> (V, V) {
    let (lower, upper, _) = cdf_parts(x, None, false);
    (lower, upper)
}

/// Φ(x), Φ(-x) and `exp(-x²/2)` (the density is that times [`FRAC_1_SQRT_2PI`]), sharing one
/// exponential.
#[inline(always)]
pub fn cdf_both_exp<V: Real>(x: V) -> (V, V, V) {
    cdf_parts(x, None, true)
}

/// Φ(x) and Φ(-x) when `exp(-x²/2)` is known (`e`, to full relative accuracy), for example
/// from an identity with another point's: the tails are `e` times a rational, so nothing else
/// changes. Where `e` is not accurate the results are not either.
#[inline(always)]
pub fn cdf_both_given_exp<V: Real>(x: V, e: V) -> (V, V) {
    let (lower, upper, _) = cdf_parts(x, Some(e), false);
    (lower, upper)
}

/// Φ(x), the standard normal CDF.
#[inline(always)]
pub fn cdf<V: Real>(x: V) -> V {
    cdf_both(x).0
}

/// φ(x), the standard normal density.
#[inline(always)]
pub fn pdf<V: Real>(x: V) -> V {
    exp_minus_half_square(x) * V::splat(FRAC_1_SQRT_2PI)
}

/// AS 241 for 0.075 <= p <= 0.925, in r = 0.180625 - q².
const PPF_A: [f64; 8] = [
    3.387_132_872_796_366_608,
    133.141_667_891_784_377_45,
    1_971.590_950_306_551_442_7,
    13_731.693_765_509_461_125,
    45_921.953_931_549_871_457,
    67_265.770_927_008_700_853,
    33_430.575_583_588_128_105,
    2_509.080_928_730_122_672_7,
];
const PPF_B: [f64; 8] = [
    1.0,
    42.313_330_701_600_911_252,
    687.187_007_492_057_908_3,
    5_394.196_021_424_751_107_7,
    21_213.794_301_586_595_867,
    39_307.895_800_092_710_61,
    28_729.085_735_721_942_674,
    5_226.495_278_852_854_561,
];
/// AS 241 for min(p, 1 - p) >= exp(-25), in r - 1.6 with r = sqrt(-log(min(p, 1 - p))).
const PPF_C: [f64; 8] = [
    1.423_437_110_749_683_577_34,
    4.630_337_846_156_545_295_9,
    5.769_497_221_460_691_405_5,
    3.647_848_324_763_204_605_04,
    1.270_458_252_452_368_382_58,
    0.241_780_725_177_450_611_77,
    0.022_723_844_989_269_184_583_3,
    7.745_450_142_783_414_076_4e-4,
];
const PPF_D: [f64; 8] = [
    1.0,
    2.053_191_626_637_758_821_87,
    1.676_384_830_183_803_849_4,
    0.689_767_334_985_100_004_55,
    0.148_103_976_427_480_074_59,
    0.015_198_666_563_616_457_196_6,
    5.475_938_084_995_344_946e-4,
    1.050_750_071_644_416_843_24e-9,
];
/// AS 241 for min(p, 1 - p) < exp(-25), in r - 5.
const PPF_E: [f64; 8] = [
    6.657_904_643_501_103_777_2,
    5.463_784_911_164_114_369_9,
    1.784_826_539_917_291_335_8,
    0.296_560_571_828_504_891_23,
    0.026_532_189_526_576_123_093,
    0.001_242_660_947_388_078_438_6,
    2.711_555_568_743_487_578_15e-5,
    2.010_334_399_292_288_132_65e-7,
];
const PPF_F: [f64; 8] = [
    1.0,
    0.599_832_206_555_887_937_69,
    0.136_929_880_922_735_805_31,
    0.014_875_361_290_850_614_852_5,
    7.868_691_311_456_132_591e-4,
    1.846_318_317_510_054_681_8e-5,
    1.421_511_758_316_445_888_7e-7,
    2.044_263_103_389_939_785_64e-15,
];

/// `N(t) / D(t)` for degree-7 polynomials given lowest coefficient first, by Horner's rule.
#[inline(always)]
fn rational7<V: Real>(t: V, num: [V; 8], den: [V; 8]) -> V {
    let mut n = num[7];
    let mut d = den[7];
    for i in (0..7).rev() {
        n = n.mul_add(t, num[i]);
        d = d.mul_add(t, den[i]);
    }
    n / d
}

#[inline(always)]
fn splat8<V: Real>(c: [f64; 8]) -> [V; 8] {
    c.map(V::splat)
}

/// Φ⁻¹(p), the standard normal quantile: -inf at 0, +inf at 1, NaN outside [0, 1] and for NaN.
#[inline(always)]
pub fn ppf<V: Real>(p: V) -> V {
    let central = ppf_is_central(p);
    if V::all(central) {
        ppf_central_value(p)
    } else if !V::any(central) {
        ppf_tail(p)
    } else {
        V::select(central, ppf_central_value(p), ppf_tail(p))
    }
}

/// Φ⁻¹(p) for the lanes where p is in [0.075, 0.925] (the mask), by AS 241's central rational:
/// the common branch for [`crate::map_common`].
#[inline(always)]
pub fn ppf_central<V: Real>(p: V) -> (V, V::Mask) {
    (ppf_central_value(p), ppf_is_central(p))
}

/// Where p is in AS 241's central region [0.075, 0.925].
#[inline(always)]
fn ppf_is_central<V: Real>(p: V) -> V::Mask {
    (p - V::splat(0.5)).abs().le(V::splat(0.425))
}

/// AS 241's central rational, right where [`ppf_is_central`].
#[inline(always)]
fn ppf_central_value<V: Real>(p: V) -> V {
    let q = p - V::splat(0.5);
    let r = V::splat(0.180_625) - q * q;
    q * rational7(r, splat8(PPF_A), splat8(PPF_B))
}

/// Φ⁻¹(p) for the lanes outside [0.075, 0.925]: AS 241's tail rationals in sqrt(-log) of the
/// smaller tail probability, and the values at 0, 1, NaN and outside [0, 1].
#[inline(always)]
fn ppf_tail<V: Real>(p: V) -> V {
    let c = V::splat;
    let zero = c(0.0);
    let one = c(1.0);
    let q = p - c(0.5);
    // The smaller tail probability (1 - p is exact for p >= 0.5).
    let lower = q.lt(zero);
    let s = V::select(lower, p, one - p);
    let r = (-log(s)).sqrt();
    let near = r.le(c(5.0));
    let value = if V::all(near) {
        rational7(r - c(1.6), splat8(PPF_C), splat8(PPF_D))
    } else if !V::any(near) {
        rational7(r - c(5.0), splat8(PPF_E), splat8(PPF_F))
    } else {
        let t = r - V::select(near, c(1.6), c(5.0));
        let pick =
            |a: [f64; 8], b: [f64; 8]| core::array::from_fn(|i| V::select(near, c(a[i]), c(b[i])));
        rational7(t, pick(PPF_C, PPF_E), pick(PPF_D, PPF_F))
    };
    let result = V::select(lower, -value, value);
    let result = V::select(p.eq(zero), c(f64::NEG_INFINITY), result);
    let result = V::select(p.eq(one), c(f64::INFINITY), result);
    // p (1 - p) >= 0 exactly for p in [0, 1] (-0 included), false for NaN. Two comparisons
    // would become an integer range check, which the component does lane by lane (wasm has
    // no unsigned 64-bit lane comparison).
    let outside = !(p * (one - p)).ge(zero);
    V::select(outside, c(f64::NAN), result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::{F64x2, F64x4};

    fn cdf1(x: f64) -> (f64, f64) {
        let (l, u) = cdf_both(F64x2::splat(x));
        (l.first(), u.first())
    }

    fn ppf1(p: f64) -> f64 {
        ppf(F64x2::splat(p)).first()
    }

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    #[test]
    fn cdf_known_values() {
        assert_eq!(cdf1(0.0), (0.5, 0.5));
        assert!(rel(cdf1(1.96).0, 0.975_002_104_851_779_6) < 2e-16);
        assert!(rel(cdf1(-1.0).0, 0.158_655_253_931_457_05) < 2e-16);
        // Tails keep relative accuracy: Φ(-30) = 4.906713927148187e-198, Φ(-10) = 7.619853024160527e-24.
        assert!(rel(cdf1(-30.0).0, 4.906_713_927_148_187e-198) < 1e-15);
        assert!(rel(cdf1(10.0).1, 7.619_853_024_160_527e-24) < 1e-15);
        assert!(rel(cdf1(-3.0).0, 1.349_898_031_630_094_6e-3) < 2e-16);
        assert_eq!(cdf1(f64::INFINITY), (1.0, 0.0));
        assert_eq!(cdf1(f64::NEG_INFINITY), (0.0, 1.0));
        assert_eq!(cdf1(-40.0).0, 0.0);
        let (l, u) = cdf1(f64::NAN);
        assert!(l.is_nan() && u.is_nan());
    }

    #[test]
    fn lanes_in_different_regions_agree_with_each_alone() {
        let xs = [-40.0, -7.0, -3.0, -0.5, 0.0, 0.3, 2.0, 6.5, f64::NAN, 1e300];
        for &a in &xs {
            for &b in &xs {
                let (l, u, d) = cdf_both_exp(F64x2::new(a, b));
                let (la, ua, da) = cdf_both_exp(F64x2::splat(a));
                let (lb, ub, db) = cdf_both_exp(F64x2::splat(b));
                let bits = |v: F64x2| v.to_array().map(f64::to_bits);
                assert_eq!(bits(l), [la.first().to_bits(), lb.first().to_bits()]);
                assert_eq!(bits(u), [ua.first().to_bits(), ub.first().to_bits()]);
                assert_eq!(bits(d), [da.first().to_bits(), db.first().to_bits()]);
                let p = [a, b].map(|v| cdf1(v).0);
                let got = ppf(F64x2::new(p[0], p[1])).to_array();
                assert_eq!(got[0].to_bits(), ppf1(p[0]).to_bits());
                assert_eq!(got[1].to_bits(), ppf1(p[1]).to_bits());
            }
        }
    }

    #[test]
    fn four_lanes_give_each_lane_what_one_gives() {
        let xs = [-7.0, 0.3, 3.0, f64::NAN];
        let (l, u, d) = cdf_both_exp(F64x4::load(&xs));
        let ps = [1e-300, 0.3, 0.99, 0.5];
        let q = ppf(F64x4::load(&ps)).to_array();
        for i in 0..4 {
            let (la, ua, da) = cdf_both_exp(F64x2::splat(xs[i]));
            for (four, two) in [(l, la), (u, ua), (d, da)] {
                let (a, b) = (four.to_array()[i], two.first());
                assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
            }
            assert_eq!(q[i].to_bits(), ppf1(ps[i]).to_bits());
        }
    }

    #[test]
    fn the_common_branch_first_gives_each_value_what_one_gives() {
        // Central values and tails in the same groups of four, over more than one block and
        // with a ragged end.
        let edges = [
            0.5,
            0.1,
            0.9,
            0.075,
            0.925,
            0.0749,
            0.9251,
            1e-3,
            0.999,
            1e-12,
            1e-300,
            5e-324,
            0.0,
            1.0,
            -0.5,
            1.5,
            f64::NAN,
            f64::INFINITY,
            0.3,
            0.7,
        ];
        for len in [0, 1, 3, 4, 5, 255, 256, 257, 1000] {
            let ps: Vec<f64> = (0..len)
                .map(|i| edges[(i * 7 + i / 3) % edges.len()])
                .collect();
            let mut out = ps.clone();
            crate::map_common(&mut out, ppf_central::<F64x4>, ppf::<F64x4>);
            for (p, y) in ps.iter().zip(&out) {
                let one = ppf1(*p);
                assert!(
                    y.to_bits() == one.to_bits() || (y.is_nan() && one.is_nan()),
                    "p={p}: {y} against {one}"
                );
            }
        }
    }

    #[test]
    fn pdf_known_values() {
        let pdf1 = |x: f64| pdf(F64x2::splat(x)).first();
        assert_eq!(pdf1(0.0), FRAC_1_SQRT_2PI);
        assert!(rel(pdf1(1.0), 0.241_970_724_519_143_35) < 3e-16);
        assert!(rel(pdf1(-20.0), 5.520_948_362_159_763e-88) < 1e-15);
    }

    #[test]
    fn ppf_inverts_cdf_across_the_range() {
        for &p in &[
            5e-324,
            1e-310,
            1e-300,
            1e-100,
            1e-20,
            1e-14,
            1e-5,
            0.01,
            0.074,
            0.076,
            0.2,
            0.3,
            0.5,
            0.7,
            0.924,
            0.926,
            0.99,
            1.0 - 1e-12,
        ] {
            let x = ppf1(p);
            let back = cdf1(x).0;
            assert!(
                rel(back, p) < 1e-13 * x.abs().max(1.0),
                "p={p} x={x} back={back}"
            );
        }
        assert_eq!(ppf1(0.5), 0.0);
        assert_eq!(ppf1(0.0), f64::NEG_INFINITY);
        assert_eq!(ppf1(1.0), f64::INFINITY);
        assert!(ppf1(1.5).is_nan() && ppf1(-0.1).is_nan() && ppf1(f64::NAN).is_nan());
        assert_eq!(ppf1(0.75), -ppf1(0.25));
    }
}
