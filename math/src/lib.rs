//! Deterministic vector math for Crunch's kernels: `exp`, `log`, the standard normal CDF, density
//! and quantile, on two f64 lanes ([`F64x2`]).
//!
//! Every function is written with the lane operations of [`simd`], which map one to one onto
//! wasm `simd128`, x86_64 SSE2/FMA3 and aarch64 NEON instructions whose results IEEE 754 fixes
//! exactly (fused multiply-add on every target alike, no min/max, no platform `libm`). So a
//! kernel pack built for wasm, the same kernels built natively for x86_64 or arm64, and the
//! component run by wasmtime on either architecture all compute the same bits. Built natively
//! for x86_64, the functions need a CPU with FMA3 ([`cpu_supported`]). The [`scalar`]
//! functions are the same code on one value (both lanes equal), for per-item code that must
//! agree with the batch loops.

mod explog;
mod normal;
pub mod simd;

pub use explog::{exp, exp_with_tail, log};
pub use normal::{
    FRAC_1_SQRT_2PI, cdf, cdf_both, cdf_both_exp, cdf_both_given_exp, exp_minus_half_square, pdf,
    ppf, ppf_central,
};
pub use simd::{F64x2, F64x4, Mask, Mask4, Real, U64x2, U64x4};

/// Whether this CPU runs the native build of these functions: on x86_64 built without FMA in
/// its baseline they use the FMA3 instruction all the same (every x86_64 CPU since 2013 has it,
/// some low-power ones do not). Elsewhere always true. A wasm pack runs on any CPU: its engine
/// fuses in software where the CPU cannot.
pub fn cpu_supported() -> bool {
    #[cfg(all(target_arch = "x86_64", not(target_feature = "fma")))]
    return std::arch::is_x86_feature_detected!("fma");
    #[cfg(not(all(target_arch = "x86_64", not(target_feature = "fma"))))]
    true
}

/// The vector functions on one value: the same code and bits as each lane of the vector forms.
pub mod scalar {
    use crate::F64x2;

    /// `exp(x)`.
    #[inline]
    pub fn exp(x: f64) -> f64 {
        crate::exp(F64x2::splat(x)).first()
    }

    /// `log(x)`, the natural logarithm.
    #[inline]
    pub fn log(x: f64) -> f64 {
        crate::log(F64x2::splat(x)).first()
    }

    /// Φ(x), the standard normal CDF.
    #[inline]
    pub fn cdf(x: f64) -> f64 {
        crate::cdf(F64x2::splat(x)).first()
    }

    /// Φ(x) and Φ(-x), each to full relative accuracy.
    #[inline]
    pub fn cdf_both(x: f64) -> (f64, f64) {
        let (lower, upper) = crate::cdf_both(F64x2::splat(x));
        (lower.first(), upper.first())
    }

    /// φ(x), the standard normal density.
    #[inline]
    pub fn pdf(x: f64) -> f64 {
        crate::pdf(F64x2::splat(x)).first()
    }

    /// Φ⁻¹(p), the standard normal quantile.
    #[inline]
    pub fn ppf(p: f64) -> f64 {
        crate::ppf(F64x2::splat(p)).first()
    }
}

/// Each value replaced by `f` of it, four lanes at a time (the last values padded with a copy
/// of the last one). Each value's result depends only on that value.
#[inline(always)]
pub fn map(values: &mut [f64], f: impl Fn(F64x4) -> F64x4) {
    let (quads, rest) = values.as_chunks_mut::<4>();
    let mut padded = [rest.last().copied().unwrap_or_default(); 4];
    padded[..rest.len()].copy_from_slice(rest);
    let tail = if rest.is_empty() { 0 } else { 1 };
    // One call of `f` in one loop (the padded last group goes through it too): with a second
    // call after the loop, the compiler kept `f` out of line and passed each group through
    // memory.
    for x in quads
        .iter_mut()
        .chain(core::slice::from_mut(&mut padded)[..tail].iter_mut())
    {
        *x = f(F64x4::load(x)).to_array();
    }
    rest.copy_from_slice(&padded[..rest.len()]);
}

/// Each value replaced by `f` of it like [`map`], for an `f` with a common branch that is cheap
/// to compute everywhere: `common(x)` gives `f(x)` in the lanes its mask sets, and the other
/// lanes are set aside (with their values) and computed by `f` after each block of 256 values,
/// four at a time. So a group of four with one rare lane does not compute both branches. The
/// bits are those of `f` on each value, since each lane's result depends only on its own value.
#[inline(always)]
pub fn map_common(
    values: &mut [f64],
    common: impl Fn(F64x4) -> (F64x4, Mask4),
    f: impl Fn(F64x4) -> F64x4,
) {
    const BLOCK: usize = 256;
    let mut rare = [0u16; BLOCK];
    let mut rare_values = [0.0; BLOCK];
    for block in values.chunks_mut(BLOCK) {
        let mut n = 0;
        let (quads, rest) = block.as_chunks_mut::<4>();
        let whole = 4 * quads.len();
        for (i, x) in quads.iter_mut().enumerate() {
            let before = *x;
            let (value, mask) = common(F64x4::load(x));
            *x = value.to_array();
            let mut outside = !mask.bits() & 0b1111;
            if outside != 0 {
                // Each lane is written, and kept where it is rare: no branch per lane.
                for (lane, &v) in before.iter().enumerate() {
                    rare[n] = (4 * i + lane) as u16;
                    rare_values[n] = v;
                    n += usize::from(outside & 1);
                    outside >>= 1;
                }
            }
        }
        for (k, &v) in rest.iter().enumerate() {
            rare[n] = (whole + k) as u16;
            rare_values[n] = v;
            n += 1;
        }
        for (group, x) in rare[..n].chunks(4).zip(rare_values[..n].chunks(4)) {
            let x = core::array::from_fn(|i| x[i.min(x.len() - 1)]);
            let y = f(F64x4::from_array(x)).to_array();
            for (&at, y) in group.iter().zip(y) {
                block[usize::from(at)] = y;
            }
        }
    }
}
