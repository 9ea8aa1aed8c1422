//! `y += a * x`, the inner loop of `matmul` and of `ols`'s reflections, written sixteen
//! elements at a time so that it compiles to unrolled 128-bit SIMD on both targets (Cranelift does not unroll
//! loops itself, and the component pays its time-limit check once per loop iteration). Each
//! element is updated exactly as the plain loop would, so results do not change.

/// Elements updated per loop iteration.
const WIDTH: usize = 16;

/// `y[i] += a * x[i]` for every `i` (`x` at least as long as `y`).
pub fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    let x = &x[..y.len()];
    let mut y_chunks = y.chunks_exact_mut(WIDTH);
    let mut x_chunks = x.chunks_exact(WIDTH);
    for (ys, xs) in (&mut y_chunks).zip(&mut x_chunks) {
        let xs: &[f64; WIDTH] = xs.try_into().expect("chunks of WIDTH");
        let ys: &mut [f64; WIDTH] = ys.try_into().expect("chunks of WIDTH");
        for k in 0..WIDTH {
            ys[k] += a * xs[k];
        }
    }
    for (y, x) in y_chunks
        .into_remainder()
        .iter_mut()
        .zip(x_chunks.remainder())
    {
        *y += a * x;
    }
}

/// `y[i] += a * x[i]` and `z[i] += b * x[i]` in one pass over `x` (each element updated
/// exactly as [`axpy`] would).
pub fn axpy2(y: &mut [f64], a: f64, z: &mut [f64], b: f64, x: &[f64]) {
    let n = y.len().min(z.len());
    let (y, z, x) = (&mut y[..n], &mut z[..n], &x[..n]);
    const HALF: usize = WIDTH / 2;
    let mut ys = y.chunks_exact_mut(HALF);
    let mut zs = z.chunks_exact_mut(HALF);
    let mut xs = x.chunks_exact(HALF);
    for ((yc, zc), xc) in (&mut ys).zip(&mut zs).zip(&mut xs) {
        let xc: &[f64; HALF] = xc.try_into().expect("chunks of HALF");
        let yc: &mut [f64; HALF] = yc.try_into().expect("chunks of HALF");
        let zc: &mut [f64; HALF] = zc.try_into().expect("chunks of HALF");
        for k in 0..HALF {
            yc[k] += a * xc[k];
            zc[k] += b * xc[k];
        }
    }
    let rest = ys.into_remainder().iter_mut().zip(zs.into_remainder());
    for ((y, z), x) in rest.zip(xs.remainder()) {
        *y += a * x;
        *z += b * x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_plain_loop_for_every_length() {
        for n in 0..20 {
            let x: Vec<f64> = (0..n).map(|i| 0.1 * i as f64 - 0.7).collect();
            let mut y: Vec<f64> = (0..n).map(|i| 1.0 / (i as f64 + 1.0)).collect();
            let mut plain = y.clone();
            for (p, v) in plain.iter_mut().zip(&x) {
                *p += 1.3 * v;
            }
            let mut z = y.clone();
            axpy(&mut y, 1.3, &x);
            assert_eq!(y, plain);
            let mut twice = z.clone();
            axpy2(&mut twice, 1.3, &mut z, 1.3, &x);
            assert_eq!((twice, z), (plain.clone(), plain));
        }
    }
}
