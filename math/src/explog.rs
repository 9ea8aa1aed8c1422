//! `exp` and `log` on two lanes, after the classic fdlibm algorithms (Cody-Waite argument
//! reduction, then a Remez rational or polynomial on the reduced argument), written with the
//! lane operations of [`crate::simd`] so every target computes the same bits. Both are within
//! one ulp of the exact result (docs/kernels.md gives the measured errors).

// The published coefficients are kept digit for digit as their sources give them.
#![allow(clippy::excessive_precision)]

use crate::simd::Real;
use core::f64::consts::LOG2_E;

/// ln 2 split so that `k * LN2_HI` is exact for |k| < 2^20.
const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;

/// 1.5 * 2^52: adding it rounds a value below 2^51 in magnitude to an integer, which then
/// sits in the low bits of the sum's bit pattern.
const ROUNDER: f64 = 6_755_399_441_055_744.0;

/// fdlibm's Remez coefficients for `R(r^2)` in `exp(r) = 1 + 2r / (R(r^2) - r)`.
const EXP_P: [f64; 5] = [
    1.666_666_666_666_660_190_37e-1,
    -2.777_777_777_701_559_338_42e-3,
    6.613_756_321_437_934_361_17e-5,
    -1.653_390_220_546_525_153_90e-6,
    4.138_136_797_057_238_460_39e-8,
];

/// Above this, `exp` overflows to +inf; below the lower bound it is 0.
const EXP_MAX_ARG: f64 = 710.0;
const EXP_MIN_ARG: f64 = -746.0;

/// `exp(x)` on each lane.
#[inline(always)]
pub fn exp<V: Real>(x: V) -> V {
    exp_with_tail(x, V::splat(0.0))
}

/// `exp(x + tail)` on each lane, where `tail` is a small correction below the rounding error
/// of `x` (for example the low part of `-y * y / 2` computed exactly): the tail enters the
/// reduced argument, so none of its accuracy is lost to rounding `x + tail` first.
#[inline(always)]
pub fn exp_with_tail<V: Real>(x: V, tail: V) -> V {
    let c = V::splat;
    // Clamp to where the result is neither certainly 0 nor certainly +inf, keeping NaN.
    let x = V::select(x.gt(c(EXP_MAX_ARG)), c(EXP_MAX_ARG), x);
    let x = V::select(x.lt(c(EXP_MIN_ARG)), c(EXP_MIN_ARG), x);
    let rounder = c(ROUNDER);
    let shifted = x.mul_add(c(LOG2_E), rounder);
    let k = shifted - rounder;
    let hi = (-k).mul_add(c(LN2_HI), x);
    let lo = k.mul_add(c(LN2_LO), -tail);
    let r = hi - lo;
    let rr = r * r;
    let mut p = c(EXP_P[4]);
    for &coefficient in EXP_P[..4].iter().rev() {
        p = rr.mul_add(p, c(coefficient));
    }
    let t = (-rr).mul_add(p, r);
    let y = c(1.0) - ((lo - (r * t) / (c(2.0) - t)) - hi);
    scale_by_power_of_two(y, k)
}

/// `y * 2^k` for an integral `k` in [-1077, 1025], in two exact steps (each factor a normal
/// power of two) so that a subnormal or overflowing result is rounded once, correctly.
#[inline(always)]
fn scale_by_power_of_two<V: Real>(y: V, k: V) -> V {
    let rounder = V::splat(ROUNDER);
    let half = k.mul_add(V::splat(0.5), rounder);
    let k1 = half - rounder;
    let k2 = (k - k1) + rounder;
    y * power_of_two(half) * power_of_two(k2)
}

/// 2^k from `k + ROUNDER` (k integral, |k| < 1023): the bit pattern's low bits hold k.
#[inline(always)]
fn power_of_two<V: Real>(k_plus_rounder: V) -> V {
    let bias = 1023u64.wrapping_sub(ROUNDER.to_bits());
    V::from_bits(V::shl52(k_plus_rounder.to_bits() + V::splat_bits(bias)))
}

/// fdlibm's Remez coefficients for `log(1 + f)` in terms of `s = f / (2 + f)`.
const LG: [f64; 7] = [
    6.666_666_666_666_735_130e-1,
    3.999_999_999_940_941_908e-1,
    2.857_142_874_366_239_149e-1,
    2.222_219_843_214_978_396e-1,
    1.818_357_216_161_805_012e-1,
    1.531_383_769_920_937_332e-1,
    1.479_819_860_511_658_591e-1,
];

/// 2^54, which brings a subnormal into the normal range.
const TWO_54: f64 = 18_014_398_509_481_984.0;

/// `log(x)` (natural) on each lane: NaN below 0 and for NaN, -inf at 0, +inf at +inf.
#[inline(always)]
pub fn log<V: Real>(x: V) -> V {
    let c = V::splat;
    let zero = c(0.0);
    // Below the smallest normal: subnormals are scaled into the normal range (zero and the
    // negatives are too, and then replaced by the special values). One comparison: with
    // `x > 0` beside it, it would become an integer range check, which the component does
    // lane by lane (wasm has no unsigned 64-bit lane comparison).
    let subnormal = x.lt(c(f64::MIN_POSITIVE));
    let scaled = V::select(subnormal, x * c(TWO_54), x);
    // Split x = 2^k * m with m in [sqrt(2)/2, sqrt(2)): moving the bit pattern up by the
    // distance from sqrt(2)/2 to 1 carries into the exponent exactly when m >= sqrt(2).
    let bits = scaled.to_bits() + V::splat_bits((0x3ff0_0000u64 - 0x3fe6_a09e) << 32);
    let exponent = V::shr52(bits);
    let mantissa =
        (bits & V::splat_bits(0x000f_ffff_ffff_ffff)) + V::splat_bits(0x3fe6_a09e_u64 << 32);
    let f = V::from_bits(mantissa) - c(1.0);
    // The exponent as a double: 2^52 + e has e in its low bits.
    let two_52 = c(4_503_599_627_370_496.0);
    let biased = V::from_bits(exponent | two_52.to_bits()) - two_52;
    let k = biased - c(1023.0) - V::select(subnormal, c(54.0), zero);

    let half_f2 = c(0.5) * f * f;
    let s = f / (c(2.0) + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * w.mul_add(w.mul_add(c(LG[5]), c(LG[3])), c(LG[1]));
    let t2 = z * w.mul_add(w.mul_add(w.mul_add(c(LG[6]), c(LG[4])), c(LG[2])), c(LG[0]));
    let r = t2 + t1;
    let result = s * (half_f2 + r) + k * c(LN2_LO) - half_f2 + f + k * c(LN2_HI);

    // Special values: log(+inf) = +inf, log(0) = -inf, log(x < 0) = NaN (NaN stays NaN).
    let result = V::select(x.eq(c(f64::INFINITY)), x, result);
    let result = V::select(x.eq(zero), c(f64::NEG_INFINITY), result);
    V::select(x.lt(zero) | x.is_nan(), c(f64::NAN), result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::{F64x2, F64x4};

    fn exp1(x: f64) -> f64 {
        exp(F64x2::splat(x)).first()
    }

    fn log1(x: f64) -> f64 {
        log(F64x2::splat(x)).first()
    }

    /// Distance in units in the last place, counting through zero.
    fn ulps(a: f64, b: f64) -> u64 {
        let key = |v: f64| {
            let bits = v.to_bits() as i64;
            if bits < 0 { i64::MIN - bits } else { bits }
        };
        key(a).abs_diff(key(b))
    }

    #[test]
    fn exp_matches_libm_within_one_ulp() {
        let mut x = -745.0;
        while x < 709.7 {
            let (got, want) = (exp1(x), libm::exp(x));
            assert!(ulps(got, want) <= 1, "exp({x}) = {got:e}, libm {want:e}");
            x += 0.012_345_678_9;
        }
    }

    #[test]
    fn exp_edges() {
        assert_eq!(exp1(0.0), 1.0);
        assert_eq!(exp1(-0.0), 1.0);
        assert_eq!(exp1(710.0), f64::INFINITY);
        assert_eq!(exp1(1e300), f64::INFINITY);
        assert_eq!(exp1(f64::INFINITY), f64::INFINITY);
        assert_eq!(exp1(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp1(-746.0), 0.0);
        assert!(exp1(f64::NAN).is_nan());
        // Subnormal results, rounded once.
        for x in [-708.5, -720.0, -740.0, -744.5, -745.1] {
            assert!(ulps(exp1(x), libm::exp(x)) <= 1, "{x}");
        }
        assert_eq!(exp1(709.78), libm::exp(709.78));
    }

    #[test]
    fn exp_with_tail_adds_the_tail() {
        let (x, tail) = (-12.5, 3.0e-16);
        let got = exp_with_tail(F64x2::splat(x), F64x2::splat(tail)).first();
        let want = libm::exp(x) * (1.0 + tail);
        assert!(ulps(got, want) <= 1, "{got:e} vs {want:e}");
    }

    #[test]
    fn log_matches_libm_within_one_ulp() {
        let mut x = 1e-310;
        while x < 1e300 {
            let (got, want) = (log1(x), libm::log(x));
            assert!(ulps(got, want) <= 1, "log({x:e}) = {got}, libm {want}");
            x *= 1.001_234_5;
        }
        for x in [
            0.5,
            0.999_999,
            1.000_001,
            core::f64::consts::FRAC_1_SQRT_2,
            core::f64::consts::SQRT_2,
            3.0,
        ] {
            assert!(ulps(log1(x), libm::log(x)) <= 1, "{x}");
        }
    }

    #[test]
    fn four_lanes_give_each_lane_what_two_give() {
        let xs = [-745.5, -1.0, 3.0e-300, 709.0];
        let four = exp(F64x4::load(&xs)).to_array();
        let logs = log(F64x4::load(&xs)).to_array();
        for (i, &x) in xs.iter().enumerate() {
            assert_eq!(four[i].to_bits(), exp1(x).to_bits());
            assert!(
                logs[i].to_bits() == log1(x).to_bits() || (logs[i].is_nan() && log1(x).is_nan())
            );
        }
    }

    #[test]
    fn log_edges() {
        assert_eq!(log1(1.0), 0.0);
        assert_eq!(log1(0.0), f64::NEG_INFINITY);
        assert_eq!(log1(-0.0), f64::NEG_INFINITY);
        assert_eq!(log1(f64::INFINITY), f64::INFINITY);
        assert!(log1(-1.0).is_nan() && log1(f64::NAN).is_nan() && log1(f64::NEG_INFINITY).is_nan());
        assert!(ulps(log1(5e-324), libm::log(5e-324)) <= 1);
        assert!(ulps(log1(f64::MAX), libm::log(f64::MAX)) <= 1);
    }
}
