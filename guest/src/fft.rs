//! A deterministic FFT of any length, two transforms at a time: each f64x2 lane carries a
//! different sequence (two items of a batch), so the butterflies are plain lane arithmetic with
//! no shuffles. Powers of two take an iterative radix-4 transform (one radix-2 stage first for
//! odd powers); other lengths Bluestein's chirp-z algorithm on a power of two. Real input of
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

/// What a power-of-two transform of length `m` needs: the bit-reversal pairs to swap and the
/// twiddles of each radix-4 stage, in the order the butterflies read them.
struct Pow2Plan {
    m: usize,
    swaps: Vec<(u32, u32)>,
    /// Per radix-4 stage (quarter length L = 1 or 2, then times 4): for k < L, W^k, W^2k, W^3k
    /// with W = e^{-2 pi i / 4L}.
    stages: Vec<Vec<[Twiddle; 3]>>,
}

impl Pow2Plan {
    fn new(m: usize) -> Self {
        debug_assert!(m.is_power_of_two());
        let bits = m.trailing_zeros();
        let swaps = (0..m)
            .filter_map(|i| {
                let j = if bits == 0 {
                    0
                } else {
                    i.reverse_bits() >> (usize::BITS - bits)
                };
                (i < j).then_some((i as u32, j as u32))
            })
            .collect();
        let circle = unit_circle(m);
        let mut stages = Vec::new();
        let mut quarter = if bits % 2 == 1 { 2 } else { 1 };
        while 4 * quarter <= m {
            let stride = m / (4 * quarter);
            stages.push(
                (0..quarter)
                    .map(|k| [1, 2, 3].map(|p| circle[p * k * stride]))
                    .collect(),
            );
            quarter *= 4;
        }
        Self { m, swaps, stages }
    }

    /// The forward DFT of `buf` (length `m`) in place.
    fn forward(&self, buf: &mut [C2]) {
        let buf = &mut buf[..self.m];
        for &(i, j) in &self.swaps {
            buf.swap(i as usize, j as usize);
        }
        if self.m.trailing_zeros() % 2 == 1 {
            for pair in buf.chunks_exact_mut(2) {
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a + b;
                pair[1] = a - b;
            }
        }
        for twiddles in &self.stages {
            let quarter = twiddles.len();
            // In bit-reversed order a block of 4L holds the length-L transforms of the
            // elements = 0, 2, 1 and 3 (mod 4) in its quarters.
            for block in buf.chunks_exact_mut(4 * quarter) {
                let (q01, q23) = block.split_at_mut(2 * quarter);
                let (q0, q1) = q01.split_at_mut(quarter);
                let (q2, q3) = q23.split_at_mut(quarter);
                let lanes = q0
                    .iter_mut()
                    .zip(q1.iter_mut())
                    .zip(q2.iter_mut().zip(q3.iter_mut()));
                let mut lanes = lanes.zip(twiddles);
                // k = 0: every twiddle is 1.
                if let Some((((a0, a2), (a1, a3)), _)) = lanes.next() {
                    butterfly(a0, a1, a2, a3, *a1, *a2, *a3);
                }
                for (((a0, a2), (a1, a3)), w) in lanes {
                    let b1 = *a2 * w[1].lanes();
                    let b2 = *a1 * w[0].lanes();
                    let b3 = *a3 * w[2].lanes();
                    butterfly(a0, a1, a2, a3, b2, b1, b3);
                }
            }
        }
    }
}

/// A radix-4 butterfly on a0 and the twiddled b1 = W^2k a2, b2 = W^k a1, b3 = W^3k a3 (the
/// quarters hold the elements = 0, 2, 1, 3 mod 4), in place.
#[inline(always)]
fn butterfly(a0: &mut C2, a1: &mut C2, a2: &mut C2, a3: &mut C2, b2: C2, b1: C2, b3: C2) {
    let b0 = *a0;
    let (t0, t1) = (b0 + b1, b0 - b1);
    let (t2, t3) = (b2 + b3, (b2 - b3).mul_neg_i());
    *a0 = t0 + t2;
    *a2 = t1 + t3;
    *a1 = t0 - t2;
    *a3 = t1 - t3;
}

/// What Bluestein's algorithm needs for length n: the chirp and the transform of its padded
/// conjugate, with the power-of-two plan it runs on.
struct Chirp {
    pow2: Rc<Pow2Plan>,
    chirp: Vec<Twiddle>,
    b_hat: Vec<C2>,
}

impl Chirp {
    fn new(n: usize) -> Self {
        let m = (2 * n - 1).next_power_of_two();
        let pow2 = cached(&POW2, m, || Pow2Plan::new(m));
        // chirp[k] = e^{-i pi k^2 / n}, with k^2 reduced mod 2n exactly so the angle stays small.
        let chirp: Vec<Twiddle> = (0..n as u64)
            .map(|k| {
                let r = (k * k) % (2 * n as u64);
                let (s, c) = libm::sincos(PI * r as f64 / n as f64);
                Twiddle { re: c, im: -s }
            })
            .collect();
        let mut b_hat = vec![C2::splat(0.0, 0.0); m];
        b_hat[0] = chirp[0].lanes().conj();
        for k in 1..n {
            let c = chirp[k].lanes().conj();
            b_hat[k] = c;
            b_hat[m - k] = c;
        }
        pow2.forward(&mut b_hat);
        Self { pow2, chirp, b_hat }
    }

    /// The forward DFT of `buf` (length n) in place, using `work` (resized as needed).
    fn forward(&self, buf: &mut [C2], work: &mut Vec<C2>) {
        let m = self.pow2.m;
        work.clear();
        work.extend(buf.iter().zip(&self.chirp).map(|(&v, c)| v * c.lanes()));
        work.resize(m, C2::splat(0.0, 0.0));
        self.pow2.forward(work);
        // Inverse transform of the product through conjugation: ifft(v) = conj(fft(conj(v))) / m.
        for (a, b) in work.iter_mut().zip(&self.b_hat) {
            *a = (*a * *b).conj();
        }
        self.pow2.forward(work);
        let scale = F64x2::splat(1.0 / m as f64);
        for ((o, w), c) in buf.iter_mut().zip(work.iter()).zip(&self.chirp) {
            *o = w.conj().scale(scale) * c.lanes();
        }
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

    /// The forward DFT of `buf` in place, using `work`.
    fn forward(&self, buf: &mut [C2], work: &mut Vec<C2>) {
        match self {
            Self::Pow2(plan) => plan.forward(buf),
            Self::Bluestein(chirp) => chirp.forward(buf, work),
        }
    }
}

/// The plan for the real-input transform of length n: the complex transform of length n / 2
/// for even n (of length n for odd n) and, for even n, the length-n twiddles that recombine
/// its halves.
struct RealPlan {
    complex: Plan,
    /// -i W^k for k < n / 2, W = e^{-2 pi i / n}.
    rotated_twiddles: Vec<Twiddle>,
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
        let rotated_twiddles = circle
            .into_iter()
            .map(|w| Twiddle {
                re: w.im,
                im: -w.re,
            })
            .collect();
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
}

/// The power spectrum |X[k]|^2, k = 0..=n/2, of two real sequences of the same length n at
/// once (lane 0 from `a`, lane 1 from `b`): `out_a` and `out_b` get n / 2 + 1 values each.
///
/// For even n, the standard real-input method: the even and odd samples become the real and
/// imaginary parts of one complex sequence of length n / 2, whose DFT is split back into the
/// two halves' DFTs and combined with the length-n twiddles. Odd lengths take the complex
/// transform.
pub fn power_spectra(
    a: &[f64],
    b: &[f64],
    out_a: &mut [f64],
    out_b: &mut [f64],
    scratch: &mut Scratch,
) {
    let n = a.len();
    debug_assert_eq!(b.len(), n);
    let plan = cached(&REAL, n, || RealPlan::new(n));
    let buf = &mut scratch.buf;
    buf.clear();
    if n % 2 == 1 {
        buf.extend(a.iter().zip(b).map(|(&x, &y)| C2 {
            re: F64x2::new(x, y),
            im: F64x2::splat(0.0),
        }));
        plan.complex.forward(buf, &mut scratch.work);
        let bins = n / 2 + 1;
        let outs = out_a[..bins].iter_mut().zip(&mut out_b[..bins]);
        for (z, (oa, ob)) in buf[..bins].iter().zip(outs) {
            store(z.re * z.re + z.im * z.im, oa, ob);
        }
        return;
    }
    let h = n / 2;
    let (a_pairs, _) = a.as_chunks::<2>();
    let (b_pairs, _) = b.as_chunks::<2>();
    buf.extend(a_pairs.iter().zip(b_pairs).map(|(x, y)| C2 {
        re: F64x2::new(x[0], y[0]),
        im: F64x2::new(x[1], y[1]),
    }));
    plan.complex.forward(buf, &mut scratch.work);
    // Bin k pairs z[k] with conj(z[h - k]): with s = z[k] + conj(z[h - k]) and d = z[k] -
    // conj(z[h - k]), the even samples' DFT is s / 2, the odd samples' d / 2i, and X[k] =
    // (s + d (-i W^k)) / 2, so |X[k]|^2 = |s + d (-i W^k)|^2 / 4 (the table holds -i W^k).
    // Bins 0 and h pair z[0] with itself; bin h uses W^h = -1, just past the table.
    let quarter = F64x2::splat(0.25);
    let power = |za: C2, zb: C2, v: Twiddle| {
        let zb = zb.conj();
        let y = (za + zb) + (za - zb) * v.lanes();
        (y.re * y.re + y.im * y.im) * quarter
    };
    let rotated = &plan.rotated_twiddles;
    store(
        power(buf[0], buf[0], rotated[0]),
        &mut out_a[0],
        &mut out_b[0],
    );
    let bins = buf[1..h].iter().zip(buf[1..h].iter().rev());
    let outs = out_a[1..h].iter_mut().zip(&mut out_b[1..h]);
    for (((&za, &zb), &v), (oa, ob)) in bins.zip(&rotated[1..h]).zip(outs) {
        store(power(za, zb, v), oa, ob);
    }
    let last = Twiddle { re: 0.0, im: 1.0 }; // -i * -1
    store(power(buf[0], buf[0], last), &mut out_a[h], &mut out_b[h]);
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
        power_spectra(a, b, &mut pa, &mut pb, &mut Scratch::default());
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
