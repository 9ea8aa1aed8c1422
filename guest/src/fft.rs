//! A deterministic FFT of any length, two transforms at a time: each f64x2 lane carries a
//! different sequence (two items of a batch), so the butterflies are plain lane arithmetic with
//! no shuffles. Powers of two take an iterative radix-4 transform (one radix-2 stage first for
//! odd powers) whose first stage reads the input in bit-reversed order; other lengths Bluestein's chirp-z algorithm on a power of two. Real input of
//! even length is transformed at half the length.
//!
//! Written here rather than taken from rustfft because bit-identical results across native and
//! wasm builds need twiddle factors from `libm` (rustfft computes them with the platform's
//! `sin`/`cos`, which differ between glibc and wasi-libc in the last bit) and one code path on
//! every platform (rustfft picks SIMD algorithms per CPU). Every lane's result depends only on
//! its own input, so an item gives the same bits whichever item shares its pass.

use core::f64::consts::PI;
use core::ops::{Add, Mul, Sub};
use std::cell::RefCell;
use std::rc::Rc;

use crunch_math::F64x2;

/// Lengths whose plans stay cached (a batch's items usually share one length).
const CACHED_LENGTHS: usize = 8;

/// Values cached by length.
type ByLength<T> = RefCell<Vec<(usize, Rc<T>)>>;

thread_local! {
    /// Power-of-two plans and real-input plans by length: computed once per length, not once
    /// per item.
    static POW2: ByLength<Pow2Plan> = const { RefCell::new(Vec::new()) };
    static REAL: ByLength<RealPlan> = const { RefCell::new(Vec::new()) };
}

/// The value cached for `n` in `cache`, made by `make` on a miss.
fn cached<T>(
    cache: &'static std::thread::LocalKey<ByLength<T>>,
    n: usize,
    make: impl FnOnce() -> T,
) -> Rc<T> {
    if let Some(hit) =
        cache.with_borrow(|c| c.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()))
    {
        return hit;
    }
    let value = Rc::new(make());
    cache.with_borrow_mut(|c| {
        if c.len() == CACHED_LENGTHS {
            c.remove(0);
        }
        c.push((n, value.clone()));
    });
    value
}

/// A complex number in each of two lanes.
#[derive(Clone, Copy, Debug)]
pub struct C2 {
    /// Real parts.
    pub re: F64x2,
    /// Imaginary parts.
    pub im: F64x2,
}

impl C2 {
    /// The same complex number `re + i im` in both lanes.
    #[inline(always)]
    fn splat(re: f64, im: f64) -> Self {
        Self {
            re: F64x2::splat(re),
            im: F64x2::splat(im),
        }
    }

    #[inline(always)]
    fn conj(self) -> Self {
        Self {
            re: self.re,
            im: -self.im,
        }
    }

    /// `-i * self`.
    #[inline(always)]
    fn mul_neg_i(self) -> Self {
        Self {
            re: self.im,
            im: -self.re,
        }
    }

    #[inline(always)]
    fn scale(self, s: F64x2) -> Self {
        Self {
            re: self.re * s,
            im: self.im * s,
        }
    }
}

impl Add for C2 {
    type Output = Self;
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Self {
            re: self.re + o.re,
            im: self.im + o.im,
        }
    }
}

impl Sub for C2 {
    type Output = Self;
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        Self {
            re: self.re - o.re,
            im: self.im - o.im,
        }
    }
}

impl Mul for C2 {
    type Output = Self;
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        Self {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
}

/// A twiddle factor: one complex number, the same for both lanes.
#[derive(Clone, Copy, Debug, Default)]
struct Twiddle {
    re: f64,
    im: f64,
}

impl Twiddle {
    /// The twiddle in both lanes.
    #[inline(always)]
    fn lanes(self) -> C2 {
        C2::splat(self.re, self.im)
    }
}

/// e^{-2 pi i j / n} for j < n, from `n / 8 + 1` sines and cosines and the circle's
/// symmetries (each value is exactly the libm value of one angle in the first octant, up to
/// sign and swap).
fn unit_circle(n: usize) -> Vec<Twiddle> {
    let angle = |j: usize| 2.0 * PI * j as f64 / n as f64;
    if !n.is_multiple_of(8) {
        return (0..n)
            .map(|j| {
                let (s, c) = libm::sincos(angle(j));
                Twiddle { re: c, im: -s }
            })
            .collect();
    }
    let eighth = n / 8;
    let octant: Vec<(f64, f64)> = (0..=eighth).map(|j| libm::sincos(angle(j))).collect();
    (0..n)
        .map(|j| {
            // j = q * n/4 + r with r < n/4; within a quarter, angles past n/8 mirror.
            let (quarter, r) = (j / (2 * eighth), j % (2 * eighth));
            let (s, c) = if r <= eighth {
                octant[r]
            } else {
                let (s, c) = octant[2 * eighth - r];
                (c, s)
            };
            // Rotate by quarter * (pi/2): (c, s) -> (-s, c) per quarter.
            let (c, s) = match quarter {
                0 => (c, s),
                1 => (-s, c),
                2 => (-c, -s),
                _ => (s, -c),
            };
            Twiddle { re: c, im: -s }
        })
        .collect()
}

/// What a power-of-two transform of length `m` needs: where the first stage reads its inputs
/// (the bit-reversal permutation, folded into that stage's loads) and the twiddles of each
/// later radix-4 stage, in the order the butterflies read them.
struct Pow2Plan {
    m: usize,
    /// The first stage's width, the length of the transforms it makes: 1 for m = 1, 2 for
    /// m = 2, 8 for the other odd powers of two, 4 for the even ones.
    first_radix: usize,
    /// Per group of the first stage, the input index of its first element in bit-reversed
    /// order; the others are multiples of `m / first_radix` past it.
    first_sources: Vec<u32>,
    /// For a first stage of width 8 (a radix-2 stage and a radix-4 stage of quarter length 2,
    /// in registers): that radix-4 stage's W^1, W^2, W^3, W = e^{-2 pi i / 8}.
    first_twiddles: [C2; 3],
    /// Per later radix-4 stage (quarter length L = 4 or 8, then times 4): for k < L, W^k,
    /// W^2k, W^3k with W = e^{-2 pi i / 4L}, in both lanes.
    stages: Vec<Vec<[C2; 3]>>,
}

impl Pow2Plan {
    fn new(m: usize) -> Self {
        debug_assert!(m.is_power_of_two());
        let bits = m.trailing_zeros();
        let first_radix = match bits {
            0 | 1 => m,
            _ if bits % 2 == 1 => 8,
            _ => 4,
        };
        let reversed = |i: usize| match bits {
            0 => 0,
            _ => i.reverse_bits() >> (usize::BITS - bits),
        };
        let first_sources = (0..m)
            .step_by(first_radix)
            .map(|i| reversed(i) as u32)
            .collect();
        let circle = unit_circle(m);
        let first_twiddles = match first_radix {
            8 => [1, 2, 3].map(|p| circle[p * m / 8].lanes()),
            _ => [C2::splat(1.0, 0.0); 3],
        };
        let mut stages = Vec::new();
        let mut quarter = first_radix;
        while 4 * quarter <= m {
            let stride = m / (4 * quarter);
            stages.push(
                (0..quarter)
                    .map(|k| [1, 2, 3].map(|p| circle[p * k * stride].lanes()))
                    .collect(),
            );
            quarter *= 4;
        }
        Self {
            m,
            first_radix,
            first_sources,
            first_twiddles,
            stages,
        }
    }

    /// The forward DFT of the `m` values `load(0)`, ..., `load(m - 1)`, into `out` (length m).
    ///
    /// The first stage reads its inputs in bit-reversed order straight from `load`, so no pass
    /// permutes the data: the transform is one pass per stage.
    fn forward(&self, out: &mut [C2], load: impl Fn(usize) -> C2) {
        let out = &mut out[..self.m];
        self.first_stage(out, load);
        for twiddles in &self.stages {
            radix4_stage(out, twiddles);
        }
    }

    /// The first stage: the transforms of length `first_radix` of the inputs taken in
    /// bit-reversed order.
    #[inline(always)]
    fn first_stage(&self, out: &mut [C2], load: impl Fn(usize) -> C2) {
        let (half, quarter, eighth) = (self.m / 2, self.m / 4, self.m / 8);
        match self.first_radix {
            1 => out[0] = load(0),
            2 => {
                for (pair, &j) in out.chunks_exact_mut(2).zip(&self.first_sources) {
                    let j = j as usize;
                    let (a, b) = (load(j), load(j + half));
                    pair[0] = a + b;
                    pair[1] = a - b;
                }
            }
            8 => {
                // In bit-reversed order a group of 8 holds the elements j + r m/8 for r = 0, 4,
                // 2, 6, 1, 5, 3, 7: a radix-2 stage on its pairs, then a radix-4 stage of
                // quarter length 2, as the separate passes would compute them.
                let w = &self.first_twiddles;
                for (group, &j) in out.chunks_exact_mut(8).zip(&self.first_sources) {
                    let x = |r: usize| load(j as usize + r * eighth);
                    let radix2 = |a: C2, b: C2| (a + b, a - b);
                    let (p0, p1) = radix2(x(0), x(4));
                    let (p2, p3) = radix2(x(2), x(6));
                    let (p4, p5) = radix2(x(1), x(5));
                    let (p6, p7) = radix2(x(3), x(7));
                    [group[0], group[2], group[4], group[6]] = radix4(p0, p2, p4, p6);
                    [group[1], group[3], group[5], group[7]] =
                        radix4(p1, p3 * w[1], p5 * w[0], p7 * w[2]);
                }
            }
            _ => {
                // In bit-reversed order a group of 4 holds the elements j, j + m/2, j + m/4
                // and j + 3m/4; every twiddle of this stage is 1.
                for (group, &j) in out.chunks_exact_mut(4).zip(&self.first_sources) {
                    let j = j as usize;
                    let (q0, q1) = (load(j), load(j + half));
                    let (q2, q3) = (load(j + quarter), load(j + half + quarter));
                    [group[0], group[1], group[2], group[3]] = radix4(q0, q1, q2, q3);
                }
            }
        }
    }
}

/// One radix-4 stage over `out` with quarter length L = `twiddles.len()`.
#[inline(always)]
fn radix4_stage(out: &mut [C2], twiddles: &[[C2; 3]]) {
    let quarter = twiddles.len();
    // In bit-reversed order a block of 4L holds the length-L transforms of the elements = 0,
    // 2, 1 and 3 (mod 4) in its quarters.
    for block in out.chunks_exact_mut(4 * quarter) {
        let (q01, q23) = block.split_at_mut(2 * quarter);
        let (q0, q1) = q01.split_at_mut(quarter);
        let (q2, q3) = q23.split_at_mut(quarter);
        let lanes = q0
            .iter_mut()
            .zip(q1.iter_mut())
            .zip(q2.iter_mut().zip(q3.iter_mut()));
        let mut lanes = lanes.zip(twiddles);
        // k = 0: every twiddle is 1.
        if let Some((((a0, a1), (a2, a3)), _)) = lanes.next() {
            [*a0, *a1, *a2, *a3] = radix4(*a0, *a1, *a2, *a3);
        }
        for (((a0, a1), (a2, a3)), w) in lanes {
            let b1 = *a1 * w[1];
            let b2 = *a2 * w[0];
            let b3 = *a3 * w[2];
            [*a0, *a1, *a2, *a3] = radix4(*a0, b1, b2, b3);
        }
    }
}

/// A radix-4 butterfly on the quarters' elements q0..q3 (the elements = 0, 2, 1, 3 mod 4 of
/// the transform being built, already twiddled): the new values of q0..q3.
#[inline(always)]
fn radix4(q0: C2, q1: C2, q2: C2, q3: C2) -> [C2; 4] {
    let (t0, t1) = (q0 + q1, q0 - q1);
    let (t2, t3) = (q2 + q3, (q2 - q3).mul_neg_i());
    [t0 + t2, t1 + t3, t0 - t2, t1 - t3]
}

/// What Bluestein's algorithm needs for length n: the chirp and the transform of its padded
/// conjugate, with the power-of-two plan it runs on.
struct Chirp {
    pow2: Rc<Pow2Plan>,
    chirp: Vec<C2>,
    b_hat: Vec<C2>,
}

impl Chirp {
    fn new(n: usize) -> Self {
        let m = (2 * n - 1).next_power_of_two();
        let pow2 = cached(&POW2, m, || Pow2Plan::new(m));
        // chirp[k] = e^{-i pi k^2 / n}, with k^2 reduced mod 2n exactly so the angle stays small.
        let chirp: Vec<C2> = (0..n as u64)
            .map(|k| {
                let r = (k * k) % (2 * n as u64);
                let (s, c) = libm::sincos(PI * r as f64 / n as f64);
                C2::splat(c, -s)
            })
            .collect();
        let mut b = vec![C2::splat(0.0, 0.0); m];
        b[0] = chirp[0].conj();
        for k in 1..n {
            b[k] = chirp[k].conj();
            b[m - k] = b[k];
        }
        let mut b_hat = vec![C2::splat(0.0, 0.0); m];
        pow2.forward(&mut b_hat, |j| b[j]);
        Self { pow2, chirp, b_hat }
    }

    /// The forward DFT of the n values `load(0..n)` into `out` (resized to n), through `work`
    /// and `spare` (resized to the plan's length).
    fn forward(
        &self,
        out: &mut Vec<C2>,
        work: &mut Vec<C2>,
        spare: &mut Vec<C2>,
        load: impl Fn(usize) -> C2,
    ) {
        let (n, m) = (self.chirp.len(), self.pow2.m);
        let zero = C2::splat(0.0, 0.0);
        work.resize(m, zero);
        spare.resize(m, zero);
        let chirp = &self.chirp;
        self.pow2
            .forward(work, |j| if j < n { load(j) * chirp[j] } else { zero });
        // Inverse transform of the product through conjugation: ifft(v) = conj(fft(conj(v))) / m.
        for (a, b) in work.iter_mut().zip(&self.b_hat) {
            *a = (*a * *b).conj();
        }
        self.pow2.forward(spare, |j| work[j]);
        let scale = F64x2::splat(1.0 / m as f64);
        out.clear();
        out.extend(
            spare[..n]
                .iter()
                .zip(chirp)
                .map(|(w, &c)| w.conj().scale(scale) * c),
        );
    }
}

/// A transform of any length n: radix-4 for powers of two, Bluestein otherwise.
enum Plan {
    Pow2(Rc<Pow2Plan>),
    Bluestein(Chirp),
}

impl Plan {
    fn new(n: usize) -> Self {
        if n.is_power_of_two() {
            Self::Pow2(cached(&POW2, n, || Pow2Plan::new(n)))
        } else {
            Self::Bluestein(Chirp::new(n))
        }
    }

    /// The forward DFT of the n values `load(0..n)`, in `scratch.buf` (length n).
    fn forward(&self, scratch: &mut Scratch, load: impl Fn(usize) -> C2) {
        let Scratch { buf, work, spare } = scratch;
        match self {
            Self::Pow2(plan) => {
                buf.resize(plan.m, C2::splat(0.0, 0.0));
                plan.forward(buf, load);
            }
            Self::Bluestein(chirp) => chirp.forward(buf, work, spare, load),
        }
    }
}

/// The plan for the real-input transform of length n: the complex transform of length n / 2
/// for even n (of length n for odd n) and, for even n, the length-n twiddles that recombine
/// its halves.
struct RealPlan {
    complex: Plan,
    /// -i W^k for k < n / 2, W = e^{-2 pi i / n}, in both lanes.
    rotated_twiddles: Vec<C2>,
}

impl RealPlan {
    fn new(n: usize) -> Self {
        if n % 2 == 1 {
            return Self {
                complex: Plan::new(n),
                rotated_twiddles: Vec::new(),
            };
        }
        let mut circle = unit_circle(n);
        circle.truncate(n / 2);
        let rotated_twiddles = circle.into_iter().map(|w| C2::splat(w.im, -w.re)).collect();
        Self {
            complex: Plan::new(n / 2),
            rotated_twiddles,
        }
    }
}

/// Scratch buffers reused across the items of a batch.
#[derive(Default)]
pub struct Scratch {
    buf: Vec<C2>,
    work: Vec<C2>,
    spare: Vec<C2>,
}

/// The power spectra |X[k]|^2, k = 0..=n/2, of two real sequences of the same length n at once
/// (lane 0 from `a`, lane 1 from `b`), in two steps: this one transforms them into `scratch`
/// and reads them no more (so that the spectra may be written over them), then
/// [`Transformed::write_power`] writes n / 2 + 1 values for each.
///
/// For even n, the standard real-input method: the even and odd samples become the real and
/// imaginary parts of one complex sequence of length n / 2, whose DFT is split back into the
/// two halves' DFTs and combined with the length-n twiddles. Odd lengths take the complex
/// transform.
pub fn transform(a: &[f64], b: &[f64], scratch: &mut Scratch) -> Transformed {
    let n = a.len();
    debug_assert_eq!(b.len(), n);
    let plan = cached(&REAL, n, || RealPlan::new(n));
    if n % 2 == 1 {
        plan.complex.forward(scratch, |j| C2 {
            re: F64x2::new(a[j], b[j]),
            im: F64x2::splat(0.0),
        });
    } else {
        let (a_pairs, _) = a.as_chunks::<2>();
        let (b_pairs, _) = b.as_chunks::<2>();
        // Sample pairs (2j, 2j + 1) of each sequence in one load, their lanes regrouped by one
        // shuffle each (four values set one by one go through integer registers in the
        // component).
        plan.complex.forward(scratch, |j| {
            let (a, b) = (F64x2::load(&a_pairs[j]), F64x2::load(&b_pairs[j]));
            C2 {
                re: a.zip_low(b),
                im: a.zip_high(b),
            }
        });
    }
    Transformed { plan, n }
}

/// Two sequences of length `n` transformed into a [`Scratch`] by [`transform`].
pub struct Transformed {
    plan: Rc<RealPlan>,
    n: usize,
}

impl Transformed {
    /// The length of the two sequences.
    pub fn length(&self) -> usize {
        self.n
    }

    /// The two spectra from the transform in `scratch`: n / 2 + 1 values to each of `out_a`
    /// and `out_b`.
    pub fn write_power(&self, scratch: &Scratch, out_a: &mut [f64], out_b: &mut [f64]) {
        let bins = self.n / 2 + 1;
        if self.n % 2 == 1 {
            let outs = out_a[..bins].iter_mut().zip(&mut out_b[..bins]);
            for (z, (oa, ob)) in scratch.buf[..bins].iter().zip(outs) {
                store(z.re * z.re + z.im * z.im, oa, ob);
            }
        } else {
            let z = &scratch.buf[..self.n / 2];
            recombine(z, &self.plan.rotated_twiddles, out_a, out_b);
        }
    }
}

/// The power spectra of the two real sequences whose even and odd samples made the complex
/// sequence with DFT `z` (length h = n / 2), from the length-n twiddles -i W^k: h + 1 bins
/// each in `out_a` and `out_b`.
///
/// Kept out of line: compiled in a small function, Cranelift keeps the loop's constants in
/// registers where, inlined into the transform's large function, it spilled and reloaded
/// them on every iteration (60 instructions per bin there, 57 here; natively 3% fewer
/// instructions per batch).
#[inline(never)]
fn recombine(z: &[C2], rotated: &[C2], out_a: &mut [f64], out_b: &mut [f64]) {
    let h = z.len();
    // Bin k pairs z[k] with conj(z[h - k]): with s = z[k] + conj(z[h - k]) and d = z[k] -
    // conj(z[h - k]), the even samples' DFT is s / 2, the odd samples' d / 2i, and X[k] =
    // (s + d (-i W^k)) / 2, so |X[k]|^2 = |s + d (-i W^k)|^2 / 4 (the table holds -i W^k).
    // Bins 0 and h pair z[0] with itself; bin h uses W^h = -1, just past the table.
    let quarter = F64x2::splat(0.25);
    let power = |za: C2, zb: C2, v: C2| {
        let zb = zb.conj();
        let y = (za + zb) + (za - zb) * v;
        (y.re * y.re + y.im * y.im) * quarter
    };
    let rotated = &rotated[..h];
    store(power(z[0], z[0], rotated[0]), &mut out_a[0], &mut out_b[0]);
    let (head_a, head_b) = (&mut out_a[..h], &mut out_b[..h]);
    for k in 1..h {
        store(
            power(z[k], z[h - k], rotated[k]),
            &mut head_a[k],
            &mut head_b[k],
        );
    }
    let last = C2::splat(0.0, 1.0); // -i * -1
    store(power(z[0], z[0], last), &mut out_a[h], &mut out_b[h]);
}

/// Writes each lane of `p` (lane 0 from the first sequence) to its output bin.
#[inline(always)]
fn store(p: F64x2, out_a: &mut f64, out_b: &mut f64) {
    [*out_a, *out_b] = p.to_array();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The power spectrum by the definition, in f64.
    fn naive_power(x: &[f64]) -> Vec<f64> {
        let n = x.len();
        (0..=n / 2)
            .map(|k| {
                let (mut re, mut im) = (0.0, 0.0);
                for (j, &v) in x.iter().enumerate() {
                    let (s, c) = libm::sincos(2.0 * PI * ((j * k) % n) as f64 / n as f64);
                    re += v * c;
                    im -= v * s;
                }
                re * re + im * im
            })
            .collect()
    }

    fn spectra(a: &[f64], b: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let bins = a.len() / 2 + 1;
        let (mut pa, mut pb) = (vec![0.0; bins], vec![0.0; bins]);
        let mut scratch = Scratch::default();
        transform(a, b, &mut scratch).write_power(&scratch, &mut pa, &mut pb);
        (pa, pb)
    }

    #[test]
    fn matches_the_definition_for_many_lengths() {
        for n in [
            1usize, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 31, 32, 64, 97, 100, 128, 256, 1000, 1024,
        ] {
            let a: Vec<f64> = (0..n)
                .map(|i| libm::cos(i as f64 * 0.91) - 0.05 * i as f64)
                .collect();
            let b: Vec<f64> = (0..n)
                .map(|i| libm::sin(i as f64 * 0.37) + 0.1 * i as f64)
                .collect();
            let (pa, pb) = spectra(&a, &b);
            for (got, want) in [(pa, naive_power(&a)), (pb, naive_power(&b))] {
                let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!((g - w).abs() <= 1e-12 * scale, "n={n} k={k}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn each_lane_depends_only_on_its_own_input() {
        let a: Vec<f64> = (0..96).map(|i| libm::cos(i as f64)).collect();
        let b: Vec<f64> = (0..96).map(|i| i as f64 * 0.5).collect();
        let (pa, _) = spectra(&a, &b);
        let (alone, _) = spectra(&a, &a);
        assert_eq!(pa, alone);
    }

    #[test]
    fn the_unit_circle_from_one_octant_matches_each_angle() {
        for n in [8usize, 16, 64, 1024] {
            for (j, w) in unit_circle(n).iter().enumerate() {
                let (s, c) = libm::sincos(2.0 * PI * j as f64 / n as f64);
                assert!(
                    (w.re - c).abs() < 1e-15 && (w.im + s).abs() < 1e-15,
                    "n={n} j={j}"
                );
            }
        }
    }
}
