//! Signal processing: `fft_power` and `convolve`. Empty inputs are invalid-input errors, as in
//! NumPy.

use crate::check::{self, unreadable};
use crate::fft;
use crate::tensor::{KernelError, Params, Tensor, TensorRef};
use crunch_abi::{BatchResults, Items, WireData};
use crunch_math::{F64x4, Real};

/// `fft_power`: [x (n)] -> |rfft(x)|^2, n/2 + 1 values, for every item of the batch: two items
/// of the same length at a time, one per lane (an item without a partner of its length runs in
/// both lanes).
pub fn fft_power(_: Params<'_>, items: Items<'_>) -> BatchResults<KernelError> {
    let count = items.remaining();
    let (accepted, failures) = crunch_abi::read_items(items, unreadable, |item| {
        let [x] = check::inputs(item, ["x"])?;
        check::nonempty_vector(x, "x")
    });
    let bins = |x: &[f64]| x.len() / 2 + 1;
    let mut spectra = vec![0.0; accepted.iter().map(|(_, x)| bins(x)).sum()];
    let mut scratch = fft::Scratch::default();
    let mut spare = Vec::new();
    let (mut i, mut at) = (0, 0);
    while i < accepted.len() {
        let a = accepted[i].1;
        let (out_a, rest) = spectra[at..].split_at_mut(bins(a));
        match accepted.get(i + 1) {
            Some(&(_, b)) if b.len() == a.len() => {
                fft::power_spectra(a, b, out_a, &mut rest[..bins(b)], &mut scratch);
                i += 2;
                at += 2 * bins(a);
            }
            _ => {
                spare.resize(bins(a), 0.0);
                fft::power_spectra(a, a, out_a, &mut spare, &mut scratch);
                i += 1;
                at += bins(a);
            }
        }
    }
    if failures.is_empty() {
        let outputs = WireData::vectors(accepted.iter().map(|(_, x)| bins(x)), spectra);
        return BatchResults { outputs, failures };
    }
    let mut at = 0;
    let shapes: Vec<[u32; 1]> = accepted.iter().map(|(_, x)| [bins(x) as u32]).collect();
    let outputs = accepted.iter().zip(&shapes).map(|((index, x), shape)| {
        let out = &spectra[at..at + bins(x)];
        at += bins(x);
        (*index, &shape[..], out)
    });
    BatchResults {
        outputs: crunch_abi::wire_outputs(count, outputs),
        failures,
    }
}

/// `convolve`: [x (n), w (m)] -> numpy.convolve(x, w, mode='valid'), max(n, m) - min(n, m) + 1
/// values. As in NumPy, the longer input slides over the shorter one.
pub fn convolve(_: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
    let [x, w] = check::inputs(item, ["x", "w"])?;
    let x = check::nonempty_vector(x, "x")?;
    let w = check::nonempty_vector(w, "w")?;
    let (long, short) = if x.len() >= w.len() { (x, w) } else { (w, x) };
    let taps: Vec<f64> = short.iter().rev().copied().collect();
    let mut out = vec![0.0; long.len() - taps.len() + 1];
    convolve_valid(long, &taps, &mut out);
    Ok(Tensor::vector(out))
}

/// Outputs per block: eight, in two four-lane sums kept in registers across the taps.
const BLOCK: usize = 8;

/// `out[j] = sum over i of long[j + i] * taps[i]`, each sum from -0.0 over i in order (as
/// `Iterator::sum` runs). Eight outputs at a time: their sums stay in registers while the taps
/// go by, so each tap costs two loads, two products and two sums for eight outputs.
fn convolve_valid(long: &[f64], taps: &[f64], out: &mut [f64]) {
    let m = taps.len();
    let (blocks, rest) = out.as_chunks_mut::<BLOCK>();
    for (b, block) in blocks.iter_mut().enumerate() {
        let window = &long[BLOCK * b..BLOCK * b + m + BLOCK - 1];
        let mut sums = (F64x4::splat(-0.0), F64x4::splat(-0.0));
        let add = |(lo, hi): (F64x4, F64x4), w: f64, x: &[f64]| {
            let w = F64x4::splat(w);
            let x: &[f64; BLOCK] = x[..BLOCK].try_into().expect("a block of values");
            let (x_lo, x_hi) = x.split_at(4);
            (
                lo + w * F64x4::load(x_lo.try_into().expect("four values")),
                hi + w * F64x4::load(x_hi.try_into().expect("four values")),
            )
        };
        // Four taps per loop iteration: the component checks its time limit (and spills the
        // sums around the check) once per iteration.
        let (quads, rest) = taps.as_chunks::<4>();
        for (q, w) in quads.iter().enumerate() {
            let x = &window[4 * q..4 * q + BLOCK + 3];
            sums = add(sums, w[0], x);
            sums = add(sums, w[1], &x[1..]);
            sums = add(sums, w[2], &x[2..]);
            sums = add(sums, w[3], &x[3..]);
        }
        for (i, &w) in rest.iter().enumerate() {
            sums = add(sums, w, &window[4 * quads.len() + i..]);
        }
        let (lo, hi) = sums;
        block[..4].copy_from_slice(&lo.to_array());
        block[4..].copy_from_slice(&hi.to_array());
    }
    let start = BLOCK * blocks.len();
    for (j, y) in rest.iter_mut().enumerate() {
        let window = &long[start + j..start + j + m];
        *y = taps
            .iter()
            .zip(window)
            .fold(-0.0, |sum, (w, x)| sum + w * x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::views;

    #[test]
    fn power_of_a_constant_is_dc_only() {
        let out = crate::run("fft_power", &[], &[vec![Tensor::vector(vec![1.0; 7])]]).remove(0);
        let out = out.unwrap();
        assert_eq!(out.data.len(), 4);
        assert!((out.data[0] - 49.0).abs() < 1e-12);
        assert!(out.data[1..].iter().all(|v| v.abs() < 1e-20));
    }

    #[test]
    fn convolve_valid_matches_numpy() {
        let x = Tensor::vector(vec![1.0, 2.0, 3.0, 4.0]);
        let w = Tensor::vector(vec![1.0, 0.0, -1.0]);
        // numpy.convolve([1,2,3,4], [1,0,-1], 'valid') == [2, 2]
        let out = convolve(Params(&[]), &views(&[x.clone(), w.clone()])).unwrap();
        assert_eq!(out.data, vec![2.0, 2.0]);
        // Swapped arguments give the same result.
        assert_eq!(
            convolve(Params(&[]), &views(&[w, x])).unwrap().data,
            vec![2.0, 2.0]
        );
    }

    #[test]
    fn blocks_sum_each_output_as_the_plain_loop_does() {
        for (n, m) in [
            (1, 1),
            (7, 1),
            (8, 1),
            (9, 3),
            (40, 16),
            (1000, 16),
            (33, 33),
            (70, 5),
        ] {
            let long: Vec<f64> = (0..n).map(|i| libm::sin(i as f64 * 0.7) * 3.0).collect();
            let taps: Vec<f64> = (0..m).map(|i| 1.0 / (i as f64 + 1.5)).collect();
            let mut out = vec![0.0; n - m + 1];
            convolve_valid(&long, &taps, &mut out);
            for (j, y) in out.iter().enumerate() {
                let mut sum = -0.0;
                for i in 0..m {
                    sum += long[j + i] * taps[i];
                }
                assert_eq!(y.to_bits(), sum.to_bits(), "n {n}, m {m}, output {j}");
            }
        }
    }

    #[test]
    fn empty_inputs_are_errors() {
        let e = Tensor::vector(vec![]);
        assert!(crate::run("fft_power", &[], &[vec![e.clone()]])[0].is_err());
        assert!(convolve(Params(&[]), &views(&[e, Tensor::vector(vec![1.0])])).is_err());
    }
}
