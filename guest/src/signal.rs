//! Signal processing: `fft_power` and `convolve`. Empty inputs are invalid-input errors, as in
//! NumPy.

use crate::axpy::axpy;
use crate::check::{self, unreadable};
use crate::fft;
use crate::tensor::{KernelError, Params, Tensor, TensorRef};
use crunch_abi::{BatchResults, Items, Packed};

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
        let outputs = Packed::vectors(accepted.iter().map(|(_, x)| bins(x)), spectra);
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
        outputs: crunch_abi::pack_outputs(count, outputs),
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
    let m = short.len();
    // out[j] = sum over i of long[j + i] * short[m - 1 - i], summed in order of i. The loop over
    // i is outermost so that the inner loop is elementwise over j and vectorises; each output's
    // sum still runs over i in order (from -0.0, as `Iterator::sum` starts).
    let mut out = vec![-0.0; long.len() - m + 1];
    let n = out.len();
    for (i, &w) in short.iter().rev().enumerate() {
        axpy(&mut out, w, &long[i..i + n]);
    }
    Ok(Tensor::vector(out))
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
    fn empty_inputs_are_errors() {
        let e = Tensor::vector(vec![]);
        assert!(crate::run("fft_power", &[], &[vec![e.clone()]])[0].is_err());
        assert!(convolve(Params(&[]), &views(&[e, Tensor::vector(vec![1.0])])).is_err());
    }
}
