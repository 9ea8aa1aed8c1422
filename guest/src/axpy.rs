//! `y += a * x`, the inner loop of `matmul` and `convolve`, written sixteen elements at a time
//! so that it compiles to unrolled 128-bit SIMD on both targets (Cranelift does not unroll
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
            axpy(&mut y, 1.3, &x);
            assert_eq!(y, plain);
        }
    }
}
