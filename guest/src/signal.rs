//! Signal processing: `fft_power` and `convolve`. Empty inputs are invalid-input errors, as in
//! NumPy.

use crate::check::{self, unreadable};
use crate::fft;
use crate::tensor::{KernelError, Params};
use crunch_abi::{BatchResults, Items, WireData};
use crunch_math::F64x2;

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
    let lengths = accepted.iter().map(|&(index, x)| (index, bins(x)));
    vector_results(count, lengths, spectra, failures)
}

/// A batch's results when each accepted item gives one vector: `lengths` says which item gives
/// how many values, in item order, and `values` holds them one vector after another; the other
/// items failed with `failures`.
fn vector_results(
    count: u32,
    lengths: impl Iterator<Item = (u32, usize)> + Clone,
    values: Vec<f64>,
    failures: Vec<(u32, KernelError)>,
) -> BatchResults<KernelError> {
    if failures.is_empty() {
        let outputs = WireData::vectors(lengths.map(|(_, len)| len), values);
        return BatchResults { outputs, failures };
    }
    let shapes: Vec<[u32; 1]> = lengths.clone().map(|(_, len)| [len as u32]).collect();
    let mut at = 0;
    let outputs = lengths.zip(&shapes).map(|((index, len), shape)| {
        let out = &values[at..at + len];
        at += len;
        (index, &shape[..], out)
    });
    BatchResults {
        outputs: crunch_abi::wire_outputs(count, outputs),
        failures,
    }
}

/// `convolve`: [x (n), w (m)] -> numpy.convolve(x, w, mode='valid'), max(n, m) - min(n, m) + 1
/// values, for every item of the batch. As in NumPy, the longer input slides over the shorter
/// one. The outputs are written straight into the batch's result values.
pub fn convolve(_: Params<'_>, items: Items<'_>) -> BatchResults<KernelError> {
    let count = items.remaining();
    let (accepted, failures) = crunch_abi::read_items(items, unreadable, |item| {
        let [x, w] = check::inputs(item, ["x", "w"])?;
        let x = check::nonempty_vector(x, "x")?;
        let w = check::nonempty_vector(w, "w")?;
        Ok(if x.len() >= w.len() { (x, w) } else { (w, x) })
    });
    let valid = |(long, short): (&[f64], &[f64])| long.len() - short.len() + 1;
    // Zeroed item by item just before they are written, while the item's outputs are in the
    // cache, rather than all at once up front.
    let mut values = Vec::with_capacity(accepted.iter().map(|&(_, pair)| valid(pair)).sum());
    let mut taps = Vec::new();
    for &(_, (long, short)) in &accepted {
        taps.clear();
        taps.extend(short.iter().rev());
        let at = values.len();
        values.resize(at + valid((long, short)), 0.0);
        convolve_valid(long, &taps, &mut values[at..]);
    }
    let lengths = accepted.iter().map(|&(index, pair)| (index, valid(pair)));
    vector_results(count, lengths, values, failures)
}

/// Outputs per block: twelve, in six two-lane sums kept in registers across the taps. Six
/// independent chains of additions rather than four: the component keeps the sums in memory
/// around its time-limit check, so each chain also waits for a store and a load per step.
const BLOCK: usize = 12;

/// Taps per loop iteration: the component checks its time limit once per iteration. Four, not
/// more: LLVM loads all of a step's values up front, and more than four taps' worth no longer
/// fit in the sixteen vector registers Cranelift allocates.
const TAPS_PER_STEP: usize = 4;

/// Values one step of taps reads for a block: an odd number (an even number of taps), so
/// that the last pair at an odd offset ends with the step.
const STEP_VALUES: usize = BLOCK + TAPS_PER_STEP - 1;
const _: () = assert!(STEP_VALUES % 2 == 1);

/// Pairs a step reads at even offsets (0, 2, ...), and at odd ones (1, 3, ...).
const STEP_PAIRS: usize = STEP_VALUES / 2;

/// `out[j] = sum over i of long[j + i] * taps[i]`, each sum from -0.0 over i in order (as
/// `Iterator::sum` runs), each step a fused multiply-add. Twelve outputs at a time: their sums
/// stay in registers while the taps go by, so each tap costs one load of the tap (made once per
/// item in both lanes) and six fused multiply-adds for twelve outputs. The windows of
/// neighbouring taps overlap: a step of four taps reads 14 distinct pairs of values, the seven
/// at even offsets by loads, six of those at odd offsets by one shuffle of two even neighbours
/// each (a load that straddles two loaded pairs costs Cranelift an address computation and a
/// load; natively all are loaded).
// Not inlined: compiled alone, its loop gets the registers to itself (inlined into the batch
// loop, Cranelift spilled more and the batch ran 4% slower).
#[inline(never)]
fn convolve_valid(long: &[f64], taps: &[f64], out: &mut [f64]) {
    let m = taps.len();
    let splats: Vec<F64x2> = taps.iter().map(|&w| F64x2::splat(w)).collect();
    let (blocks, rest) = out.as_chunks_mut::<BLOCK>();
    for (b, block) in blocks.iter_mut().enumerate() {
        let window = &long[BLOCK * b..BLOCK * b + m + BLOCK - 1];
        let mut sums = [F64x2::splat(-0.0); BLOCK / 2];
        let add = |sums: &mut [F64x2; BLOCK / 2], w: F64x2, x: &[f64]| {
            let x: &[f64; BLOCK] = x[..BLOCK].try_into().expect("a block of values");
            for (sum, pair) in sums.iter_mut().zip(x.as_chunks::<2>().0) {
                *sum = w.mul_add(F64x2::load(pair), *sum);
            }
        };
        let (steps, rest) = splats.as_chunks::<TAPS_PER_STEP>();
        let mut x = window;
        for w in steps {
            let step: &[f64; STEP_VALUES] = x.first_chunk().expect("a step of values");
            if cfg!(target_arch = "wasm32") {
                add_shuffled(&mut sums, w, step);
            } else {
                // x86 and NEON load an unaligned pair as cheaply as they shuffle (and SSE2's
                // shuffle overwrites an input, so it costs copies): every pair is loaded.
                for (i, &w) in w.iter().enumerate() {
                    add(&mut sums, w, &step[i..]);
                }
            }
            x = &x[TAPS_PER_STEP..];
        }
        for (i, &w) in rest.iter().enumerate() {
            add(&mut sums, w, &x[i..]);
        }
        for (y, sum) in block.as_chunks_mut::<2>().0.iter_mut().zip(sums) {
            sum.store(y);
        }
    }
    let start = BLOCK * blocks.len();
    for (j, y) in rest.iter_mut().enumerate() {
        let window = &long[start + j..start + j + m];
        *y = taps
            .iter()
            .zip(window)
            .fold(F64x2::splat(-0.0), |sum, (&w, &x)| {
                F64x2::splat(w).mul_add(F64x2::splat(x), sum)
            })
            .first();
    }
}

/// One step of taps into a block's sums, as `add` for each tap does, with the pairs at odd
/// offsets shuffled from the loaded pairs at even offsets on either side (but the last, which
/// has no right neighbour in the step, and is loaded).
#[inline(always)]
fn add_shuffled(
    sums: &mut [F64x2; BLOCK / 2],
    taps: &[F64x2; TAPS_PER_STEP],
    step: &[f64; STEP_VALUES],
) {
    let even: [F64x2; STEP_PAIRS] =
        core::array::from_fn(|j| F64x2::load(&step.as_chunks::<2>().0[j]));
    let odd: [F64x2; STEP_PAIRS] = core::array::from_fn(|j| match even.get(j + 1) {
        Some(&next) => even[j].middle(next),
        None => F64x2::load(step[2 * j + 1..][..2].try_into().expect("two values")),
    });
    for (i, &w) in taps.iter().enumerate() {
        let pairs = if i % 2 == 0 { &even } else { &odd };
        for (k, sum) in sums.iter_mut().enumerate() {
            *sum = w.mul_add(pairs[i / 2 + k], *sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

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
        // numpy.convolve([1,2,3,4], [1,0,-1], 'valid') == [2, 2]; swapped arguments give the
        // same result.
        let out = crate::run("convolve", &[], &[vec![x.clone(), w.clone()], vec![w, x]]);
        for y in out {
            assert_eq!(y.unwrap().data, vec![2.0, 2.0]);
        }
    }

    #[test]
    fn a_bad_item_fails_alone_and_the_others_keep_their_outputs() {
        let v = |n: usize| Tensor::vector((0..n).map(|i| i as f64).collect());
        let items = [
            vec![v(20), v(3)],
            vec![v(0), v(3)],
            vec![v(2), v(9)],
            vec![v(5)],
            vec![v(13), v(13)],
        ];
        let out = crate::run("convolve", &[], &items);
        let alone: Vec<_> = items
            .iter()
            .map(|item| crate::run("convolve", &[], std::slice::from_ref(item)).remove(0))
            .collect();
        let lengths: Vec<_> = out
            .iter()
            .map(|y| y.as_ref().map(|t| t.data.len()))
            .collect();
        assert!(matches!(
            lengths[..],
            [Ok(18), Err(_), Ok(8), Err(_), Ok(1)]
        ));
        for (batch, single) in out.iter().zip(&alone) {
            assert_eq!(batch.as_ref().ok(), single.as_ref().ok());
        }
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
                    sum = long[j + i].mul_add(taps[i], sum);
                }
                assert_eq!(y.to_bits(), sum.to_bits(), "n {n}, m {m}, output {j}");
            }
        }
    }

    #[test]
    fn shuffled_pairs_give_the_sums_of_loaded_ones() {
        // The component's step (odd pairs shuffled) against the native one (all loaded).
        let step: [f64; STEP_VALUES] =
            core::array::from_fn(|i| libm::sin(i as f64 * 1.3) * 7.0 + 0.1);
        let taps: [F64x2; TAPS_PER_STEP] =
            core::array::from_fn(|i| F64x2::splat(1.0 / (i as f64 + 0.7)));
        let start: [F64x2; BLOCK / 2] = core::array::from_fn(|k| F64x2::splat(k as f64 - 2.5));
        let mut shuffled = start;
        add_shuffled(&mut shuffled, &taps, &step);
        let mut loaded = start;
        for (i, &w) in taps.iter().enumerate() {
            for (k, sum) in loaded.iter_mut().enumerate() {
                let pair = &step[i + 2 * k..][..2];
                *sum = w.mul_add(F64x2::load(pair.try_into().unwrap()), *sum);
            }
        }
        let bits = |sums: [F64x2; BLOCK / 2]| sums.map(|s| s.to_array().map(f64::to_bits));
        assert_eq!(bits(shuffled), bits(loaded));
    }

    #[test]
    fn empty_inputs_are_errors() {
        let e = Tensor::vector(vec![]);
        assert!(crate::run("fft_power", &[], &[vec![e.clone()]])[0].is_err());
        assert!(crate::run("convolve", &[], &[vec![e, Tensor::vector(vec![1.0])]])[0].is_err());
    }
}
