//! Two f64 lanes, with one definition per target of each operation: wasm32 `simd128` (and
//! relaxed SIMD's `relaxed_madd`), x86_64 SSE2 and FMA3, aarch64 NEON, and plain arrays
//! elsewhere.
//!
//! Only operations whose results IEEE 754 (or the bit patterns) fix exactly are offered:
//! add, sub, mul, div, sqrt and the fused multiply-add [`F64x2::mul_add`] (correctly rounded
//! everywhere: every target fuses it, none contracts anything else), negation and absolute
//! value (the sign bit), ordered comparisons, bitwise selects and 64-bit integer adds and shifts
//! on the bit patterns. There is no IEEE min/max (their NaN and signed-zero rules differ between
//! instruction sets): [`F64x2::pmin`] and [`F64x2::pmax`] are defined as a comparison and a
//! select, which x86 `minpd`/`maxpd` compute exactly (the component and aarch64 compare and
//! select). So code written on these types computes the same bits on every target.
//!
//! The fused multiply-add is `f64x2.relaxed_madd`, which the host's engine compiles
//! deterministically (one rounding on every CPU; in software on a CPU without FMA), `vfmadd` on
//! x86_64 and `fmla` on aarch64. A pack built without relaxed SIMD calls a function that has it
//! (the same result, slower). With relaxed SIMD enabled, LLVM turns some plain instructions
//! into relaxed ones (`f64x2.pmin` into `f64x2.relaxed_min`), whose results a deterministic
//! engine may choose differently: [`F64x2::pmin`] and [`F64x2::pmax`] are therefore written as
//! a comparison and a select, and a test checks that the pack holds no relaxed instruction but
//! the fused multiply-add.

use core::ops::{Add, BitAnd, BitOr, Div, Mul, Neg, Not, Sub};

/// Two f64 lanes.
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub struct F64x2(imp::V);

/// The result of a lane-wise comparison: each lane all ones (true) or all zeros (false).
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub struct Mask(imp::V);

/// The bit patterns of two f64 lanes, as unsigned 64-bit integers (wrapping arithmetic).
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub struct U64x2(imp::V);

impl F64x2 {
    /// Both lanes `v`.
    #[inline(always)]
    pub fn splat(v: f64) -> Self {
        Self(imp::splat(v))
    }

    /// Lanes `[a, b]`.
    #[inline(always)]
    pub fn new(a: f64, b: f64) -> Self {
        Self(imp::new(a, b))
    }

    /// Reads two consecutive values.
    #[inline(always)]
    pub fn load(xs: &[f64; 2]) -> Self {
        Self(imp::load(xs))
    }

    /// Writes the lanes to two consecutive values.
    #[inline(always)]
    pub fn store(self, out: &mut [f64; 2]) {
        imp::store(self.0, out)
    }

    /// The lanes as an array.
    #[inline(always)]
    pub fn to_array(self) -> [f64; 2] {
        let mut out = [0.0; 2];
        self.store(&mut out);
        out
    }

    /// The first lane.
    #[inline(always)]
    pub fn first(self) -> f64 {
        imp::first(self.0)
    }

    /// `[self[1], next[0]]`: the pair between two consecutive pairs of values, from registers
    /// (one shuffle instruction) instead of a load that overlaps both.
    #[inline(always)]
    pub fn middle(self, next: Self) -> Self {
        Self(imp::middle(self.0, next.0))
    }

    /// `[[self[0], self[0]], [self[1], self[1]]]`: each lane in both lanes, from a register (a
    /// shuffle each) instead of two loads and splats.
    #[inline(always)]
    pub fn lanes_splat(self) -> [Self; 2] {
        [self.zip_low(self), self.zip_high(self)]
    }

    /// `[self[0], other[0]]` (one shuffle).
    #[inline(always)]
    pub fn zip_low(self, other: Self) -> Self {
        Self(imp::zip_low(self.0, other.0))
    }

    /// `[self[1], other[1]]` (one shuffle).
    #[inline(always)]
    pub fn zip_high(self, other: Self) -> Self {
        Self(imp::zip_high(self.0, other.0))
    }

    /// Correctly rounded square root.
    #[inline(always)]
    pub fn sqrt(self) -> Self {
        Self(imp::sqrt(self.0))
    }

    /// `self * b + c`, rounded once (fused multiply-add: IEEE 754 fixes its result as it does
    /// a sum's, so every target that fuses gives the same bits).
    #[inline(always)]
    pub fn mul_add(self, b: Self, c: Self) -> Self {
        Self(imp::mul_add(self.0, b.0, c.0))
    }

    /// The value with its sign bit cleared.
    #[inline(always)]
    pub fn abs(self) -> Self {
        Self::from_bits(self.to_bits() & U64x2::splat(!SIGN_BIT))
    }

    /// `self < o` (false where either is NaN).
    #[inline(always)]
    pub fn lt(self, o: Self) -> Mask {
        Mask(imp::lt(self.0, o.0))
    }

    /// `self <= o` (false where either is NaN).
    #[inline(always)]
    pub fn le(self, o: Self) -> Mask {
        Mask(imp::le(self.0, o.0))
    }

    /// `self > o` (false where either is NaN).
    #[inline(always)]
    pub fn gt(self, o: Self) -> Mask {
        o.lt(self)
    }

    /// `self >= o` (false where either is NaN).
    #[inline(always)]
    pub fn ge(self, o: Self) -> Mask {
        o.le(self)
    }

    /// `o` where `o < self`, else `self`: so `self` where either is NaN and where the two are
    /// equal (+0 and -0). As `if o < min { o } else { min }` keeps the first of equal values.
    #[inline(always)]
    pub fn pmin(self, o: Self) -> Self {
        Self(imp::pmin(self.0, o.0))
    }

    /// `o` where `self < o`, else `self`: so `self` where either is NaN and where the two are
    /// equal (+0 and -0).
    #[inline(always)]
    pub fn pmax(self, o: Self) -> Self {
        Self(imp::pmax(self.0, o.0))
    }

    /// `self == o` (false where either is NaN).
    #[inline(always)]
    pub fn eq(self, o: Self) -> Mask {
        Mask(imp::eq(self.0, o.0))
    }

    /// Where the lane is NaN.
    #[inline(always)]
    pub fn is_nan(self) -> Mask {
        !self.eq(self)
    }

    /// The bit patterns.
    #[inline(always)]
    pub fn to_bits(self) -> U64x2 {
        U64x2(self.0)
    }

    /// The values with these bit patterns.
    #[inline(always)]
    pub fn from_bits(bits: U64x2) -> Self {
        Self(bits.0)
    }
}

/// The sign bit of an f64.
const SIGN_BIT: u64 = 1 << 63;

impl Mask {
    /// `if_true` in the lanes where the mask is set, `if_false` elsewhere.
    #[inline(always)]
    pub fn select(self, if_true: F64x2, if_false: F64x2) -> F64x2 {
        F64x2(imp::select(self.0, if_true.0, if_false.0))
    }

    /// Whether any lane is set.
    #[inline(always)]
    pub fn any(self) -> bool {
        imp::bitmask(self.0) != 0
    }

    /// Whether every lane is set.
    #[inline(always)]
    pub fn all(self) -> bool {
        imp::bitmask(self.0) == 0b11
    }

    /// Whether lane `i` (0 or 1) is set.
    #[inline(always)]
    pub fn lane(self, i: usize) -> bool {
        imp::bitmask(self.0) & (1 << i) != 0
    }

    /// Bit `i` set where lane `i` is.
    #[inline(always)]
    pub fn bits(self) -> u8 {
        imp::bitmask(self.0)
    }
}

impl Mask4 {
    /// Bit `i` set where lane `i` (0 to 3) is.
    #[inline(always)]
    pub fn bits(self) -> u8 {
        self.0.bits() | (self.1.bits() << 2)
    }
}

impl U64x2 {
    /// Both lanes `v`.
    #[inline(always)]
    pub fn splat(v: u64) -> Self {
        Self(imp::splat_u64(v))
    }

    /// Each lane shifted left by `N` bits.
    #[inline(always)]
    pub fn shl<const N: i32>(self) -> Self {
        Self(imp::shl::<N>(self.0))
    }

    /// Each lane shifted right by `N` bits, filling with zeros.
    #[inline(always)]
    pub fn shr<const N: i32>(self) -> Self {
        Self(imp::shr::<N>(self.0))
    }
}

/// Lane-wise f64 arithmetic that every target computes the same way, for code written once
/// over two lanes ([`F64x2`]) or four ([`F64x4`]: two `F64x2` side by side, two independent
/// chains of operations for the processor to overlap).
pub trait Real:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// Lane-wise comparison results.
    type Mask: Copy
        + BitAnd<Output = Self::Mask>
        + BitOr<Output = Self::Mask>
        + Not<Output = Self::Mask>;
    /// The lanes' bit patterns as unsigned integers (wrapping arithmetic).
    type Bits: Copy
        + Add<Output = Self::Bits>
        + Sub<Output = Self::Bits>
        + BitAnd<Output = Self::Bits>
        + BitOr<Output = Self::Bits>;

    /// Every lane `v`.
    fn splat(v: f64) -> Self;
    /// Correctly rounded square root.
    fn sqrt(self) -> Self;
    /// `self * b + c` rounded once (fused multiply-add).
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// The value with its sign bit cleared.
    fn abs(self) -> Self;
    /// `self < o` (false where either is NaN).
    fn lt(self, o: Self) -> Self::Mask;
    /// `self <= o` (false where either is NaN).
    fn le(self, o: Self) -> Self::Mask;
    /// `self == o` (false where either is NaN).
    fn eq(self, o: Self) -> Self::Mask;
    /// `self > o` (false where either is NaN).
    #[inline(always)]
    fn gt(self, o: Self) -> Self::Mask {
        o.lt(self)
    }
    /// `self >= o` (false where either is NaN).
    #[inline(always)]
    fn ge(self, o: Self) -> Self::Mask {
        o.le(self)
    }
    /// Where the lane is NaN.
    #[inline(always)]
    fn is_nan(self) -> Self::Mask {
        !self.eq(self)
    }
    /// `if_true` where `mask` is set, `if_false` elsewhere.
    fn select(mask: Self::Mask, if_true: Self, if_false: Self) -> Self;
    /// Whether any lane of `mask` is set.
    fn any(mask: Self::Mask) -> bool;
    /// Whether every lane of `mask` is set.
    fn all(mask: Self::Mask) -> bool;
    /// The bit patterns.
    fn to_bits(self) -> Self::Bits;
    /// The values with these bit patterns.
    fn from_bits(bits: Self::Bits) -> Self;
    /// Every lane of the bit patterns `v`.
    fn splat_bits(v: u64) -> Self::Bits;
    /// Each lane's bits shifted left by 52 (into the exponent field).
    fn shl52(bits: Self::Bits) -> Self::Bits;
    /// Each lane's bits shifted right by 52 (the exponent field, filling with zeros).
    fn shr52(bits: Self::Bits) -> Self::Bits;
}

impl Real for F64x2 {
    type Mask = Mask;
    type Bits = U64x2;

    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        F64x2::mul_add(self, b, c)
    }
    #[inline(always)]
    fn splat(v: f64) -> Self {
        F64x2::splat(v)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        F64x2::sqrt(self)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        F64x2::abs(self)
    }
    #[inline(always)]
    fn lt(self, o: Self) -> Mask {
        F64x2::lt(self, o)
    }
    #[inline(always)]
    fn le(self, o: Self) -> Mask {
        F64x2::le(self, o)
    }
    #[inline(always)]
    fn eq(self, o: Self) -> Mask {
        F64x2::eq(self, o)
    }
    #[inline(always)]
    fn select(mask: Mask, if_true: Self, if_false: Self) -> Self {
        mask.select(if_true, if_false)
    }
    #[inline(always)]
    fn any(mask: Mask) -> bool {
        mask.any()
    }
    #[inline(always)]
    fn all(mask: Mask) -> bool {
        mask.all()
    }
    #[inline(always)]
    fn to_bits(self) -> U64x2 {
        F64x2::to_bits(self)
    }
    #[inline(always)]
    fn from_bits(bits: U64x2) -> Self {
        F64x2::from_bits(bits)
    }
    #[inline(always)]
    fn splat_bits(v: u64) -> U64x2 {
        U64x2::splat(v)
    }
    #[inline(always)]
    fn shl52(bits: U64x2) -> U64x2 {
        bits.shl::<52>()
    }
    #[inline(always)]
    fn shr52(bits: U64x2) -> U64x2 {
        bits.shr::<52>()
    }
}

/// Four f64 lanes as two [`F64x2`]: every operation is two independent instructions.
#[derive(Clone, Copy, Debug)]
pub struct F64x4(pub F64x2, pub F64x2);

/// The comparison results of [`F64x4`].
#[derive(Clone, Copy, Debug)]
pub struct Mask4(pub Mask, pub Mask);

/// The bit patterns of [`F64x4`].
#[derive(Clone, Copy, Debug)]
pub struct U64x4(pub U64x2, pub U64x2);

impl F64x4 {
    /// Lanes `[a, b, c, d]` from values, set lane by lane: for values gathered from scattered
    /// places or just computed. (In wasm a vector [`load`](Self::load) of an array just built
    /// from scalars goes through memory, or through integer registers.)
    #[inline(always)]
    pub fn from_array([a, b, c, d]: [f64; 4]) -> Self {
        Self(F64x2::new(a, b), F64x2::new(c, d))
    }

    /// Reads four consecutive values.
    #[inline(always)]
    pub fn load(xs: &[f64; 4]) -> Self {
        let (lo, hi) = xs.split_at(2);
        Self(
            F64x2::load(lo.try_into().expect("two values")),
            F64x2::load(hi.try_into().expect("two values")),
        )
    }

    /// The lanes as an array.
    #[inline(always)]
    pub fn to_array(self) -> [f64; 4] {
        let (a, b) = (self.0.to_array(), self.1.to_array());
        [a[0], a[1], b[0], b[1]]
    }
}

macro_rules! pairwise {
    ($type:ident, $trait:ident, $method:ident) => {
        impl $trait for $type {
            type Output = Self;
            #[inline(always)]
            fn $method(self, o: Self) -> Self {
                Self(self.0.$method(o.0), self.1.$method(o.1))
            }
        }
    };
}

pairwise!(F64x4, Add, add);
pairwise!(F64x4, Sub, sub);
pairwise!(F64x4, Mul, mul);
pairwise!(F64x4, Div, div);
pairwise!(U64x4, Add, add);
pairwise!(U64x4, Sub, sub);
pairwise!(U64x4, BitAnd, bitand);
pairwise!(U64x4, BitOr, bitor);
pairwise!(Mask4, BitAnd, bitand);
pairwise!(Mask4, BitOr, bitor);

impl Neg for F64x4 {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        Self(-self.0, -self.1)
    }
}

impl Not for Mask4 {
    type Output = Self;
    #[inline(always)]
    fn not(self) -> Self {
        Self(!self.0, !self.1)
    }
}

impl Real for F64x4 {
    type Mask = Mask4;
    type Bits = U64x4;

    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        Self(self.0.mul_add(b.0, c.0), self.1.mul_add(b.1, c.1))
    }
    #[inline(always)]
    fn splat(v: f64) -> Self {
        Self(F64x2::splat(v), F64x2::splat(v))
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        Self(self.0.sqrt(), self.1.sqrt())
    }
    #[inline(always)]
    fn abs(self) -> Self {
        Self(self.0.abs(), self.1.abs())
    }
    #[inline(always)]
    fn lt(self, o: Self) -> Mask4 {
        Mask4(self.0.lt(o.0), self.1.lt(o.1))
    }
    #[inline(always)]
    fn le(self, o: Self) -> Mask4 {
        Mask4(self.0.le(o.0), self.1.le(o.1))
    }
    #[inline(always)]
    fn eq(self, o: Self) -> Mask4 {
        Mask4(self.0.eq(o.0), self.1.eq(o.1))
    }
    #[inline(always)]
    fn select(mask: Mask4, if_true: Self, if_false: Self) -> Self {
        Self(
            mask.0.select(if_true.0, if_false.0),
            mask.1.select(if_true.1, if_false.1),
        )
    }
    #[inline(always)]
    fn any(mask: Mask4) -> bool {
        (mask.0 | mask.1).any()
    }
    #[inline(always)]
    fn all(mask: Mask4) -> bool {
        (mask.0 & mask.1).all()
    }
    #[inline(always)]
    fn to_bits(self) -> U64x4 {
        U64x4(self.0.to_bits(), self.1.to_bits())
    }
    #[inline(always)]
    fn from_bits(bits: U64x4) -> Self {
        Self(F64x2::from_bits(bits.0), F64x2::from_bits(bits.1))
    }
    #[inline(always)]
    fn splat_bits(v: u64) -> U64x4 {
        U64x4(U64x2::splat(v), U64x2::splat(v))
    }
    #[inline(always)]
    fn shl52(bits: U64x4) -> U64x4 {
        U64x4(bits.0.shl::<52>(), bits.1.shl::<52>())
    }
    #[inline(always)]
    fn shr52(bits: U64x4) -> U64x4 {
        U64x4(bits.0.shr::<52>(), bits.1.shr::<52>())
    }
}

macro_rules! binary {
    ($type:ident, $trait:ident, $method:ident, $imp:path) => {
        impl $trait for $type {
            type Output = Self;
            #[inline(always)]
            fn $method(self, o: Self) -> Self {
                Self($imp(self.0, o.0))
            }
        }
    };
}

binary!(F64x2, Add, add, imp::add);
binary!(F64x2, Sub, sub, imp::sub);
binary!(F64x2, Mul, mul, imp::mul);
binary!(F64x2, Div, div, imp::div);
binary!(U64x2, Add, add, imp::add_u64);
binary!(U64x2, Sub, sub, imp::sub_u64);
binary!(U64x2, BitAnd, bitand, imp::and);
binary!(U64x2, BitOr, bitor, imp::or);
binary!(Mask, BitAnd, bitand, imp::and);
binary!(Mask, BitOr, bitor, imp::or);

impl Neg for F64x2 {
    type Output = Self;
    /// Flips the sign bit (so -0.0 for 0.0, unlike `0.0 - x`).
    #[inline(always)]
    fn neg(self) -> Self {
        Self::from_bits(U64x2(imp::xor(self.0, imp::splat_u64(SIGN_BIT))))
    }
}

impl Not for Mask {
    type Output = Self;
    #[inline(always)]
    fn not(self) -> Self {
        Self(imp::xor(self.0, imp::splat_u64(u64::MAX)))
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    //! wasm32 with `simd128` (the kernel pack's build enables it).
    // SAFETY (the load below): it reads through a reference to exactly two f64 (16 bytes);
    // wasm loads need no alignment.
    #![allow(unsafe_code)]
    use core::arch::wasm32::*;

    pub type V = v128;

    #[inline(always)]
    pub fn splat(v: f64) -> V {
        f64x2_splat(v)
    }
    #[inline(always)]
    pub fn new(a: f64, b: f64) -> V {
        f64x2(a, b)
    }
    #[inline(always)]
    pub fn load(xs: &[f64; 2]) -> V {
        // One `v128.load`: built from the two values instead, LLVM reuses scalar loads between
        // overlapping windows (convolve's) and assembles each vector lane by lane.
        unsafe { v128_load(xs.as_ptr().cast()) }
    }
    #[inline(always)]
    pub fn store(v: V, out: &mut [f64; 2]) {
        *out = [f64x2_extract_lane::<0>(v), f64x2_extract_lane::<1>(v)];
    }
    #[inline(always)]
    pub fn first(v: V) -> f64 {
        f64x2_extract_lane::<0>(v)
    }
    #[inline(always)]
    pub fn middle(a: V, b: V) -> V {
        i8x16_shuffle::<8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23>(a, b)
    }
    #[inline(always)]
    pub fn zip_low(a: V, b: V) -> V {
        i64x2_shuffle::<0, 2>(a, b)
    }
    #[inline(always)]
    pub fn zip_high(a: V, b: V) -> V {
        i64x2_shuffle::<1, 3>(a, b)
    }
    #[inline(always)]
    pub fn add(a: V, b: V) -> V {
        f64x2_add(a, b)
    }
    #[inline(always)]
    pub fn sub(a: V, b: V) -> V {
        f64x2_sub(a, b)
    }
    #[inline(always)]
    pub fn mul(a: V, b: V) -> V {
        f64x2_mul(a, b)
    }
    #[inline(always)]
    pub fn div(a: V, b: V) -> V {
        f64x2_div(a, b)
    }
    /// `f64x2.relaxed_madd`, which the host's engine makes the fused operation on every CPU
    /// (wasmtime's deterministic relaxed SIMD; in software where the CPU has no FMA). A pack
    /// built without relaxed SIMD calls a function that has it: the same result, slower.
    #[inline(always)]
    pub fn mul_add(a: V, b: V, c: V) -> V {
        f64x2_relaxed_madd(a, b, c)
    }
    #[inline(always)]
    pub fn sqrt(a: V) -> V {
        f64x2_sqrt(a)
    }
    #[inline(always)]
    pub fn lt(a: V, b: V) -> V {
        f64x2_lt(a, b)
    }
    #[inline(always)]
    pub fn le(a: V, b: V) -> V {
        f64x2_le(a, b)
    }
    #[inline(always)]
    pub fn eq(a: V, b: V) -> V {
        f64x2_eq(a, b)
    }
    #[inline(always)]
    pub fn select(mask: V, a: V, b: V) -> V {
        v128_bitselect(a, b, mask)
    }
    #[inline(always)]
    pub fn pmin(a: V, b: V) -> V {
        // `b < a ? b : a` as a comparison and a select, not `f64x2.pmin`: with relaxed SIMD
        // enabled, LLVM turns `f64x2.pmin` into `f64x2.relaxed_min`, which a deterministic
        // engine computes as IEEE `min` (other NaN and signed-zero results).
        v128_bitselect(b, a, f64x2_lt(b, a))
    }
    #[inline(always)]
    pub fn pmax(a: V, b: V) -> V {
        // `a < b ? b : a`, likewise.
        v128_bitselect(b, a, f64x2_lt(a, b))
    }
    #[inline(always)]
    pub fn bitmask(mask: V) -> u8 {
        i64x2_bitmask(mask)
    }
    #[inline(always)]
    pub fn splat_u64(v: u64) -> V {
        u64x2_splat(v)
    }
    #[inline(always)]
    pub fn add_u64(a: V, b: V) -> V {
        i64x2_add(a, b)
    }
    #[inline(always)]
    pub fn sub_u64(a: V, b: V) -> V {
        i64x2_sub(a, b)
    }
    #[inline(always)]
    pub fn shl<const N: i32>(a: V) -> V {
        i64x2_shl(a, N as u32)
    }
    #[inline(always)]
    pub fn shr<const N: i32>(a: V) -> V {
        u64x2_shr(a, N as u32)
    }
    #[inline(always)]
    pub fn and(a: V, b: V) -> V {
        v128_and(a, b)
    }
    #[inline(always)]
    pub fn or(a: V, b: V) -> V {
        v128_or(a, b)
    }
    #[inline(always)]
    pub fn xor(a: V, b: V) -> V {
        v128_xor(a, b)
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    //! x86_64: SSE2 is part of the baseline, so these instructions are always there; the fused
    //! multiply-add is FMA3's, which [`crate::cpu_supported`] checks for.
    // SAFETY (every block below): the intrinsics need SSE2, which every x86_64 CPU has; the
    // loads and stores go through references to exactly two f64 (16 bytes, unaligned access).
    // The FMA3 instruction touches registers only: on a CPU without it the process stops with
    // an illegal instruction, it reads or writes nothing.
    #![allow(unsafe_code)]
    use core::arch::x86_64::*;

    pub type V = __m128d;

    #[inline(always)]
    pub fn splat(v: f64) -> V {
        unsafe { _mm_set1_pd(v) }
    }
    #[inline(always)]
    pub fn new(a: f64, b: f64) -> V {
        unsafe { _mm_set_pd(b, a) }
    }
    #[inline(always)]
    pub fn load(xs: &[f64; 2]) -> V {
        unsafe { _mm_loadu_pd(xs.as_ptr()) }
    }
    #[inline(always)]
    pub fn store(v: V, out: &mut [f64; 2]) {
        unsafe { _mm_storeu_pd(out.as_mut_ptr(), v) }
    }
    #[inline(always)]
    pub fn first(v: V) -> f64 {
        unsafe { _mm_cvtsd_f64(v) }
    }
    #[inline(always)]
    pub fn middle(a: V, b: V) -> V {
        // Lane 0 from a's lane 1, lane 1 from b's lane 0.
        unsafe { _mm_shuffle_pd::<0b01>(a, b) }
    }
    #[inline(always)]
    pub fn zip_low(a: V, b: V) -> V {
        unsafe { _mm_unpacklo_pd(a, b) }
    }
    #[inline(always)]
    pub fn zip_high(a: V, b: V) -> V {
        unsafe { _mm_unpackhi_pd(a, b) }
    }
    #[inline(always)]
    pub fn add(a: V, b: V) -> V {
        unsafe { _mm_add_pd(a, b) }
    }
    #[inline(always)]
    pub fn sub(a: V, b: V) -> V {
        unsafe { _mm_sub_pd(a, b) }
    }
    #[inline(always)]
    pub fn mul(a: V, b: V) -> V {
        unsafe { _mm_mul_pd(a, b) }
    }
    #[inline(always)]
    pub fn div(a: V, b: V) -> V {
        unsafe { _mm_div_pd(a, b) }
    }
    #[cfg(target_feature = "fma")]
    #[inline(always)]
    pub fn mul_add(a: V, b: V, c: V) -> V {
        unsafe { _mm_fmadd_pd(a, b, c) }
    }
    /// Built without FMA in the baseline (the default x86_64 target): the FMA3 instruction
    /// all the same, which every x86_64 CPU since 2013 has but some low-power ones
    /// ([`crate::cpu_supported`] says whether this one does). A check per operation would
    /// cost more than the fused operation saves.
    #[cfg(not(target_feature = "fma"))]
    #[inline(always)]
    pub fn mul_add(a: V, b: V, c: V) -> V {
        let mut a = a;
        // vfmadd213pd a, b, c: a = b * a + c, rounded once.
        unsafe {
            core::arch::asm!(
                "vfmadd213pd {a}, {b}, {c}",
                a = inout(xmm_reg) a,
                b = in(xmm_reg) b,
                c = in(xmm_reg) c,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        a
    }
    #[inline(always)]
    pub fn sqrt(a: V) -> V {
        unsafe { _mm_sqrt_pd(a) }
    }
    #[inline(always)]
    pub fn lt(a: V, b: V) -> V {
        unsafe { _mm_cmplt_pd(a, b) }
    }
    #[inline(always)]
    pub fn le(a: V, b: V) -> V {
        unsafe { _mm_cmple_pd(a, b) }
    }
    #[inline(always)]
    pub fn eq(a: V, b: V) -> V {
        unsafe { _mm_cmpeq_pd(a, b) }
    }
    #[inline(always)]
    pub fn select(mask: V, a: V, b: V) -> V {
        unsafe { _mm_or_pd(_mm_and_pd(mask, a), _mm_andnot_pd(mask, b)) }
    }
    #[inline(always)]
    pub fn pmin(a: V, b: V) -> V {
        // MINPD: `src1 < src2 ? src1 : src2`, so `b < a ? b : a`.
        unsafe { _mm_min_pd(b, a) }
    }
    #[inline(always)]
    pub fn pmax(a: V, b: V) -> V {
        // MAXPD: `src1 > src2 ? src1 : src2`, so `a < b ? b : a`.
        unsafe { _mm_max_pd(b, a) }
    }
    #[inline(always)]
    pub fn bitmask(mask: V) -> u8 {
        unsafe { _mm_movemask_pd(mask) as u8 }
    }
    #[inline(always)]
    pub fn splat_u64(v: u64) -> V {
        unsafe { _mm_castsi128_pd(_mm_set1_epi64x(v as i64)) }
    }
    #[inline(always)]
    pub fn add_u64(a: V, b: V) -> V {
        unsafe { _mm_castsi128_pd(_mm_add_epi64(_mm_castpd_si128(a), _mm_castpd_si128(b))) }
    }
    #[inline(always)]
    pub fn sub_u64(a: V, b: V) -> V {
        unsafe { _mm_castsi128_pd(_mm_sub_epi64(_mm_castpd_si128(a), _mm_castpd_si128(b))) }
    }
    #[inline(always)]
    pub fn shl<const N: i32>(a: V) -> V {
        unsafe { _mm_castsi128_pd(_mm_slli_epi64::<N>(_mm_castpd_si128(a))) }
    }
    #[inline(always)]
    pub fn shr<const N: i32>(a: V) -> V {
        unsafe { _mm_castsi128_pd(_mm_srli_epi64::<N>(_mm_castpd_si128(a))) }
    }
    #[inline(always)]
    pub fn and(a: V, b: V) -> V {
        unsafe { _mm_and_pd(a, b) }
    }
    #[inline(always)]
    pub fn or(a: V, b: V) -> V {
        unsafe { _mm_or_pd(a, b) }
    }
    #[inline(always)]
    pub fn xor(a: V, b: V) -> V {
        unsafe { _mm_xor_pd(a, b) }
    }
}

#[cfg(target_arch = "aarch64")]
mod imp {
    //! aarch64: NEON is part of the baseline. Only the plain (unfused) arithmetic instructions
    //! are used.
    // SAFETY (every block below): the intrinsics need NEON, which every aarch64 CPU has; the
    // loads and stores go through references to exactly two f64.
    #![allow(unsafe_code)]
    use core::arch::aarch64::*;

    pub type V = float64x2_t;

    #[inline(always)]
    fn u(v: V) -> uint64x2_t {
        unsafe { vreinterpretq_u64_f64(v) }
    }
    #[inline(always)]
    fn f(v: uint64x2_t) -> V {
        unsafe { vreinterpretq_f64_u64(v) }
    }

    #[inline(always)]
    pub fn splat(v: f64) -> V {
        unsafe { vdupq_n_f64(v) }
    }
    #[inline(always)]
    pub fn new(a: f64, b: f64) -> V {
        load(&[a, b])
    }
    #[inline(always)]
    pub fn load(xs: &[f64; 2]) -> V {
        unsafe { vld1q_f64(xs.as_ptr()) }
    }
    #[inline(always)]
    pub fn store(v: V, out: &mut [f64; 2]) {
        unsafe { vst1q_f64(out.as_mut_ptr(), v) }
    }
    #[inline(always)]
    pub fn first(v: V) -> f64 {
        unsafe { vgetq_lane_f64::<0>(v) }
    }
    #[inline(always)]
    pub fn middle(a: V, b: V) -> V {
        unsafe { vextq_f64::<1>(a, b) }
    }
    #[inline(always)]
    pub fn zip_low(a: V, b: V) -> V {
        unsafe { vzip1q_f64(a, b) }
    }
    #[inline(always)]
    pub fn zip_high(a: V, b: V) -> V {
        unsafe { vzip2q_f64(a, b) }
    }
    #[inline(always)]
    pub fn add(a: V, b: V) -> V {
        unsafe { vaddq_f64(a, b) }
    }
    #[inline(always)]
    pub fn sub(a: V, b: V) -> V {
        unsafe { vsubq_f64(a, b) }
    }
    #[inline(always)]
    pub fn mul(a: V, b: V) -> V {
        unsafe { vmulq_f64(a, b) }
    }
    #[inline(always)]
    pub fn div(a: V, b: V) -> V {
        unsafe { vdivq_f64(a, b) }
    }
    #[inline(always)]
    pub fn mul_add(a: V, b: V, c: V) -> V {
        unsafe { vfmaq_f64(c, a, b) }
    }
    #[inline(always)]
    pub fn sqrt(a: V) -> V {
        unsafe { vsqrtq_f64(a) }
    }
    #[inline(always)]
    pub fn lt(a: V, b: V) -> V {
        f(unsafe { vcltq_f64(a, b) })
    }
    #[inline(always)]
    pub fn le(a: V, b: V) -> V {
        f(unsafe { vcleq_f64(a, b) })
    }
    #[inline(always)]
    pub fn eq(a: V, b: V) -> V {
        f(unsafe { vceqq_f64(a, b) })
    }
    #[inline(always)]
    pub fn select(mask: V, a: V, b: V) -> V {
        unsafe { vbslq_f64(u(mask), a, b) }
    }
    #[inline(always)]
    pub fn pmin(a: V, b: V) -> V {
        // Not FMIN: its NaN and signed-zero rules differ.
        select(lt(b, a), b, a)
    }
    #[inline(always)]
    pub fn pmax(a: V, b: V) -> V {
        select(lt(a, b), b, a)
    }
    #[inline(always)]
    pub fn bitmask(mask: V) -> u8 {
        let m = u(mask);
        unsafe { ((vgetq_lane_u64::<0>(m) & 1) | ((vgetq_lane_u64::<1>(m) & 1) << 1)) as u8 }
    }
    #[inline(always)]
    pub fn splat_u64(v: u64) -> V {
        f(unsafe { vdupq_n_u64(v) })
    }
    #[inline(always)]
    pub fn add_u64(a: V, b: V) -> V {
        f(unsafe { vaddq_u64(u(a), u(b)) })
    }
    #[inline(always)]
    pub fn sub_u64(a: V, b: V) -> V {
        f(unsafe { vsubq_u64(u(a), u(b)) })
    }
    #[inline(always)]
    pub fn shl<const N: i32>(a: V) -> V {
        f(unsafe { vshlq_n_u64::<N>(u(a)) })
    }
    #[inline(always)]
    pub fn shr<const N: i32>(a: V) -> V {
        f(unsafe { vshrq_n_u64::<N>(u(a)) })
    }
    #[inline(always)]
    pub fn and(a: V, b: V) -> V {
        f(unsafe { vandq_u64(u(a), u(b)) })
    }
    #[inline(always)]
    pub fn or(a: V, b: V) -> V {
        f(unsafe { vorrq_u64(u(a), u(b)) })
    }
    #[inline(always)]
    pub fn xor(a: V, b: V) -> V {
        f(unsafe { veorq_u64(u(a), u(b)) })
    }
}

#[cfg(not(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    target_arch = "x86_64",
    target_arch = "aarch64"
)))]
mod imp {
    //! Any other target: two plain f64 per value, the same IEEE operations lane by lane.

    pub type V = [u64; 2];

    #[inline(always)]
    fn map(a: V, op: impl Fn(f64) -> f64) -> V {
        a.map(|x| op(f64::from_bits(x)).to_bits())
    }
    #[inline(always)]
    fn zip(a: V, b: V, op: impl Fn(f64, f64) -> f64) -> V {
        [0, 1].map(|i| op(f64::from_bits(a[i]), f64::from_bits(b[i])).to_bits())
    }
    #[inline(always)]
    fn test(a: V, b: V, op: impl Fn(f64, f64) -> bool) -> V {
        [0, 1].map(|i| {
            if op(f64::from_bits(a[i]), f64::from_bits(b[i])) {
                u64::MAX
            } else {
                0
            }
        })
    }
    #[inline(always)]
    fn ints(a: V, b: V, op: impl Fn(u64, u64) -> u64) -> V {
        [op(a[0], b[0]), op(a[1], b[1])]
    }

    pub fn splat(v: f64) -> V {
        [v.to_bits(); 2]
    }
    pub fn new(a: f64, b: f64) -> V {
        [a.to_bits(), b.to_bits()]
    }
    pub fn load(xs: &[f64; 2]) -> V {
        new(xs[0], xs[1])
    }
    pub fn store(v: V, out: &mut [f64; 2]) {
        *out = v.map(f64::from_bits);
    }
    pub fn first(v: V) -> f64 {
        f64::from_bits(v[0])
    }
    pub fn middle(a: V, b: V) -> V {
        [a[1], b[0]]
    }
    pub fn zip_low(a: V, b: V) -> V {
        [a[0], b[0]]
    }
    pub fn zip_high(a: V, b: V) -> V {
        [a[1], b[1]]
    }
    pub fn add(a: V, b: V) -> V {
        zip(a, b, |x, y| x + y)
    }
    pub fn sub(a: V, b: V) -> V {
        zip(a, b, |x, y| x - y)
    }
    pub fn mul(a: V, b: V) -> V {
        zip(a, b, |x, y| x * y)
    }
    pub fn div(a: V, b: V) -> V {
        zip(a, b, |x, y| x / y)
    }
    pub fn mul_add(a: V, b: V, c: V) -> V {
        let f = f64::from_bits;
        [0, 1].map(|i| f(a[i]).mul_add(f(b[i]), f(c[i])).to_bits())
    }
    pub fn sqrt(a: V) -> V {
        map(a, f64::sqrt)
    }
    pub fn lt(a: V, b: V) -> V {
        test(a, b, |x, y| x < y)
    }
    pub fn le(a: V, b: V) -> V {
        test(a, b, |x, y| x <= y)
    }
    pub fn eq(a: V, b: V) -> V {
        test(a, b, |x, y| x == y)
    }
    pub fn select(mask: V, a: V, b: V) -> V {
        ints(
            ints(mask, a, |m, x| m & x),
            ints(mask, b, |m, y| !m & y),
            |x, y| x | y,
        )
    }
    pub fn pmin(a: V, b: V) -> V {
        select(lt(b, a), b, a)
    }
    pub fn pmax(a: V, b: V) -> V {
        select(lt(a, b), b, a)
    }
    pub fn bitmask(mask: V) -> u8 {
        (mask[0] >> 63) as u8 | ((mask[1] >> 63) as u8) << 1
    }
    pub fn splat_u64(v: u64) -> V {
        [v; 2]
    }
    pub fn add_u64(a: V, b: V) -> V {
        ints(a, b, u64::wrapping_add)
    }
    pub fn sub_u64(a: V, b: V) -> V {
        ints(a, b, u64::wrapping_sub)
    }
    pub fn shl<const N: i32>(a: V) -> V {
        a.map(|x| x << N)
    }
    pub fn shr<const N: i32>(a: V) -> V {
        a.map(|x| x >> N)
    }
    pub fn and(a: V, b: V) -> V {
        ints(a, b, |x, y| x & y)
    }
    pub fn or(a: V, b: V) -> V {
        ints(a, b, |x, y| x | y)
    }
    pub fn xor(a: V, b: V) -> V {
        ints(a, b, |x, y| x ^ y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mul_add_rounds_once() {
        assert!(
            crate::cpu_supported(),
            "this CPU has no FMA3, which the native build needs"
        );
        // (1 + 2^-52)(1 - 2^-52) - 1 = -2^-104 exactly; rounding the product first gives 0.
        let e = f64::EPSILON;
        let a = F64x2::new(1.0 + e, 3.0);
        let b = F64x2::new(1.0 - e, 0.1);
        let c = F64x2::new(-1.0, -0.3);
        let fused = a.mul_add(b, c).to_array();
        assert_eq!(fused[0], -(e * e));
        assert_eq!(fused[1], 3.0f64.mul_add(0.1, -0.3));
        assert_ne!(fused[1], 3.0 * 0.1 - 0.3);
        let four = F64x4(a, b).mul_add(F64x4(b, a), F64x4(c, c)).to_array();
        assert_eq!(four[0], fused[0]);
        assert_eq!(four[2], (1.0 - e).mul_add(1.0 + e, -1.0));
    }

    #[test]
    fn lanes_and_bits() {
        let v = F64x2::new(1.5, -2.0);
        assert_eq!(v.to_array(), [1.5, -2.0]);
        assert_eq!((-v).to_array(), [-1.5, 2.0]);
        assert_eq!(v.middle(F64x2::new(3.0, 4.0)).to_array(), [-2.0, 3.0]);
        let w = F64x2::new(3.0, 4.0);
        assert_eq!(v.zip_low(w).to_array(), [1.5, 3.0]);
        assert_eq!(v.zip_high(w).to_array(), [-2.0, 4.0]);
        let [low, high] = v.lanes_splat();
        assert_eq!(
            (low.to_array(), high.to_array()),
            ([1.5, 1.5], [-2.0, -2.0])
        );
        assert_eq!(v.abs().to_array(), [1.5, 2.0]);
        assert_eq!((-F64x2::splat(0.0)).first().to_bits(), (-0.0f64).to_bits());
        let m = v.lt(F64x2::splat(0.0));
        assert!(m.any() && !m.all() && !m.lane(0) && m.lane(1));
        let s = m.select(F64x2::splat(9.0), v);
        assert_eq!(s.to_array(), [1.5, 9.0]);
        let nan = F64x2::new(f64::NAN, 1.0);
        let n = nan.is_nan();
        assert!(n.lane(0) && !n.lane(1));
        assert!(!nan.lt(F64x2::splat(2.0)).lane(0));
        let bits = F64x2::splat(1.0).to_bits().shr::<52>();
        assert_eq!(F64x2::from_bits(bits).to_array()[0].to_bits(), 1023);
        let back = F64x2::from_bits((bits + U64x2::splat(1)).shl::<52>());
        assert_eq!(back.to_array(), [2.0, 2.0]);
        assert_eq!(
            (F64x2::splat(2.0).sqrt() * F64x2::splat(2.0).sqrt()).first(),
            2.0000000000000004
        );
    }

    #[test]
    fn pmin_and_pmax_compare_and_select() {
        let values = [
            -1.5,
            -0.0,
            0.0,
            2.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        for a in values {
            for b in values {
                let (x, y) = (F64x2::new(a, b), F64x2::new(b, a));
                // The expected lanes computed at run time: LLVM's constant folding for aarch64
                // gives -0 for `if a < b { a } else { b }` with a = -0, b = +0 (the program
                // gives +0).
                let (a, b) = (std::hint::black_box(a), std::hint::black_box(b));
                let min = [if b < a { b } else { a }, if a < b { a } else { b }];
                let max = [if a < b { b } else { a }, if b < a { a } else { b }];
                let bits = |v: [f64; 2]| v.map(f64::to_bits);
                assert_eq!(bits(x.pmin(y).to_array()), bits(min), "pmin {a} {b}");
                assert_eq!(bits(x.pmax(y).to_array()), bits(max), "pmax {a} {b}");
            }
        }
    }
}
