//! A deterministic FFT of any length: iterative radix-2 for powers of two, Bluestein's chirp-z
//! for every other length (primes included).
//!
//! Written here rather than taken from rustfft because bit-identical results across native and
//! wasm builds need twiddle factors from `libm` (rustfft computes them with the platform's
//! `sin`/`cos`, which differ between glibc and wasi-libc in the last bit) and one code path on
//! every platform (rustfft picks SIMD algorithms per CPU).

use core::f64::consts::PI;
use std::cell::RefCell;
use std::rc::Rc;

/// Lengths whose twiddles and chirps stay cached (a batch's items usually share one length).
const CACHED_LENGTHS: usize = 8;

/// Values cached by length.
type ByLength<T> = RefCell<Vec<(usize, Rc<T>)>>;

thread_local! {
    /// Radix-2 twiddles by length, and Bluestein chirps (with the FFT of the conjugate chirp
    /// sequence) by length: computed once per length, not once per item.
    static TWIDDLES: ByLength<[Complex]> = const { RefCell::new(Vec::new()) };
    static CHIRPS: ByLength<Chirp> = const { RefCell::new(Vec::new()) };
}

/// The value cached for `n` in `cache`, made by `make` on a miss.
fn cached<T: ?Sized>(
    cache: &'static std::thread::LocalKey<ByLength<T>>,
    n: usize,
    make: impl FnOnce() -> Rc<T>,
) -> Rc<T> {
    if let Some(hit) =
        cache.with_borrow(|c| c.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()))
    {
        return hit;
    }
    let value = make();
    cache.with_borrow_mut(|c| {
        if c.len() == CACHED_LENGTHS {
            c.remove(0);
        }
        c.push((n, value.clone()));
    });
    value
}

/// e^{-2 pi i k / n} for k < n / 2.
fn twiddles(n: usize) -> Rc<[Complex]> {
    cached(&TWIDDLES, n, || {
        (0..n / 2)
            .map(|k| Complex::expi_neg(2.0 * PI * k as f64 / n as f64))
            .collect()
    })
}

/// What Bluestein's algorithm needs for length n: the chirp and the FFT of its padded
/// conjugate.
struct Chirp {
    chirp: Vec<Complex>,
    b_hat: Vec<Complex>,
}

/// A complex number.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Complex {
    /// Real part.
    pub re: f64,
    /// Imaginary part.
    pub im: f64,
}

impl Complex {
    fn mul(self, o: Self) -> Self {
        Self {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }

    fn conj(self) -> Self {
        Self {
            re: self.re,
            im: -self.im,
        }
    }

    /// e^{-i angle}.
    fn expi_neg(angle: f64) -> Self {
        let (s, c) = libm::sincos(angle);
        Self { re: c, im: -s }
    }
}

/// The forward DFT of `x`: X[k] = sum_j x[j] e^{-2 pi i j k / n}.
pub fn forward(x: &[Complex]) -> Vec<Complex> {
    let n = x.len();
    if n.is_power_of_two() {
        let mut buf = x.to_vec();
        radix2(&mut buf);
        buf
    } else {
        bluestein(x)
    }
}

/// The first `n / 2 + 1` bins of the DFT of the real sequence `x` (the rest mirror them).
///
/// For even n, the standard real-input method: the even and odd samples become the real and
/// imaginary parts of one complex sequence of length n / 2, whose DFT is split back into the
/// two halves' DFTs and combined with the length-n twiddles. Half the length, so about half
/// the work of transforming `x` as complex values. Odd lengths take the complex transform.
pub fn forward_real(x: &[f64]) -> Vec<Complex> {
    let n = x.len();
    if n % 2 == 1 {
        let complex: Vec<Complex> = x.iter().map(|&re| Complex { re, im: 0.0 }).collect();
        let mut spectrum = forward(&complex);
        spectrum.truncate(n / 2 + 1);
        return spectrum;
    }
    let z: Vec<Complex> = x
        .chunks_exact(2)
        .map(|pair| Complex {
            re: pair[0],
            im: pair[1],
        })
        .collect();
    let z = forward(&z);
    let twiddles = twiddles(n);
    // With h = n / 2, bin k pairs z[k] with conj(z[h - k]) (z[0] with itself at both ends); k = h uses the
    // twiddle -1, just past the table.
    let mirrored = z[..1].iter().chain(z[1..].iter().rev());
    let w = twiddles.iter().chain([&Complex { re: -1.0, im: 0.0 }]);
    let bins = z.iter().chain(&z[..1]).zip(mirrored.chain(&z[..1])).zip(w);
    bins.map(|((a, b), w)| {
        let b = b.conj();
        // Even samples' DFT: (a + b) / 2; odd samples' DFT: (a - b) / 2i.
        let even = Complex {
            re: 0.5 * (a.re + b.re),
            im: 0.5 * (a.im + b.im),
        };
        let odd = Complex {
            re: 0.5 * (a.im - b.im),
            im: -0.5 * (a.re - b.re),
        };
        let t = odd.mul(*w);
        Complex {
            re: even.re + t.re,
            im: even.im + t.im,
        }
    })
    .collect()
}

/// In-place radix-2 decimation-in-time FFT; `buf.len()` must be a power of two (or 0).
fn radix2(buf: &mut [Complex]) {
    let n = buf.len();
    if n <= 1 {
        return;
    }
    let bits = n.trailing_zeros();
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if i < j {
            buf.swap(i, j);
        }
    }
    let twiddles = twiddles(n);
    let mut len = 2;
    while len <= n {
        let stride = n / len;
        // Each block of `len` combines its halves; iterators rather than indices, so neither
        // compiler keeps bounds checks in the butterfly.
        for block in buf.chunks_exact_mut(len) {
            let (low, high) = block.split_at_mut(len / 2);
            let w = twiddles.iter().step_by(stride);
            for ((a, b), w) in low.iter_mut().zip(high.iter_mut()).zip(w) {
                let (u, t) = (*a, b.mul(*w));
                *a = Complex {
                    re: u.re + t.re,
                    im: u.im + t.im,
                };
                *b = Complex {
                    re: u.re - t.re,
                    im: u.im - t.im,
                };
            }
        }
        len *= 2;
    }
}

/// Bluestein's algorithm: the length-n DFT as a circular convolution of power-of-two length.
fn bluestein(x: &[Complex]) -> Vec<Complex> {
    let n = x.len();
    let m = (2 * n - 1).next_power_of_two();
    let plan = cached(&CHIRPS, n, || Rc::new(chirp(n, m)));
    let (chirp, b) = (&plan.chirp, &plan.b_hat);
    let mut a = vec![Complex::default(); m];
    for (k, (&xk, &ck)) in x.iter().zip(chirp).enumerate() {
        a[k] = xk.mul(ck);
    }
    radix2(&mut a);
    // Inverse FFT of the product through conjugation: ifft(v) = conj(fft(conj(v))) / m.
    let mut c: Vec<Complex> = a.iter().zip(b).map(|(p, q)| p.mul(*q).conj()).collect();
    radix2(&mut c);
    let scale = 1.0 / m as f64;
    (0..n)
        .map(|k| {
            let v = Complex {
                re: c[k].re * scale,
                im: -c[k].im * scale,
            };
            v.mul(chirp[k])
        })
        .collect()
}

/// The chirp for length `n` and the FFT of its conjugate, padded circularly to length `m`.
fn chirp(n: usize, m: usize) -> Chirp {
    // chirp[k] = e^{-i pi k^2 / n}, with k^2 reduced mod 2n exactly so the angle stays small.
    let chirp: Vec<Complex> = (0..n as u64)
        .map(|k| {
            let r = (k * k) % (2 * n as u64);
            Complex::expi_neg(PI * r as f64 / n as f64)
        })
        .collect();
    let mut b_hat = vec![Complex::default(); m];
    b_hat[0] = chirp[0].conj();
    for k in 1..n {
        b_hat[k] = chirp[k].conj();
        b_hat[m - k] = chirp[k].conj();
    }
    radix2(&mut b_hat);
    Chirp { chirp, b_hat }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[Complex]) -> Vec<Complex> {
        let n = x.len();
        (0..n)
            .map(|k| {
                x.iter()
                    .enumerate()
                    .fold(Complex::default(), |acc, (j, &v)| {
                        let w = Complex::expi_neg(2.0 * PI * ((j * k) % n) as f64 / n as f64);
                        let p = v.mul(w);
                        Complex {
                            re: acc.re + p.re,
                            im: acc.im + p.im,
                        }
                    })
            })
            .collect()
    }

    #[test]
    fn real_input_matches_the_definition_for_odd_and_even_lengths() {
        for n in [1usize, 2, 3, 4, 6, 7, 8, 10, 12, 16, 31, 64, 100, 1000] {
            let x: Vec<f64> = (0..n)
                .map(|i| libm::cos(i as f64 * 0.91) - 0.05 * i as f64)
                .collect();
            let complex: Vec<Complex> = x.iter().map(|&re| Complex { re, im: 0.0 }).collect();
            let want = naive(&complex);
            let got = forward_real(&x);
            assert_eq!(got.len(), n / 2 + 1, "n={n}");
            for (k, (got, want)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (got.re - want.re).abs() < 1e-9 && (got.im - want.im).abs() < 1e-9,
                    "n={n} k={k}: {got:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn matches_the_definition_for_many_lengths() {
        for n in [1usize, 2, 3, 5, 7, 8, 12, 16, 31, 97, 100, 128] {
            let x: Vec<Complex> = (0..n)
                .map(|i| Complex {
                    re: libm::sin(i as f64 * 0.37) + 0.1 * i as f64,
                    im: 0.0,
                })
                .collect();
            for (got, want) in forward(&x).iter().zip(naive(&x)) {
                assert!(
                    (got.re - want.re).abs() < 1e-9 && (got.im - want.im).abs() < 1e-9,
                    "n={n}"
                );
            }
        }
    }
}
