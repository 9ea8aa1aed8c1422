//! Signal processing: `fft_power` and `convolve`. Empty inputs are invalid-input errors, as in
//! NumPy.

use crate::check::{self, unreadable};
use crate::fft;
use crate::tensor::{KernelError, Params};
use crunch_abi::{BatchResults, Items, ItemsMut, WireData};
use crunch_math::F64x2;
use std::ops::Range;

/// `fft_power`: [x (n)] -> |rfft(x)|^2, n/2 + 1 values, for every item of the batch: two items
/// of the same length at a time, one per lane (an item without a partner of its length runs in
/// both lanes).
pub fn fft_power(_: Params<'_>, items: Items<'_>) -> BatchResults<KernelError> {
    let count = items.remaining();
    let (accepted, failures) = read_signals(items);
    let mut spectra = vec![0.0; accepted.iter().map(|(_, x)| bins(x.len())).sum()];
    let (mut scratch, mut spare, mut at) = (fft::Scratch::default(), Vec::new(), 0);
    for (i, partner) in lane_pairs(accepted.iter().map(|(_, x)| x.len())) {
        let a = accepted[i].1;
        let b = partner.map_or(a, |j| accepted[j].1);
        let transformed = fft::transform(a, b, &mut scratch);
        at += write_spectra(
            &transformed,
            &scratch,
            &mut spectra[at..],
            partner,
            &mut spare,
        );
    }
    let lengths = accepted.iter().map(|&(index, x)| (index, bins(x.len())));
    vector_results(count, lengths, spectra, failures)
}

/// [`fft_power`] given lists it may write over: when every item is good, the spectra are
/// written over the values, one after another from the start, and the same values go back.
/// A spectrum is no longer than its signal, and a pair's spectra are written only once both
/// signals are transformed, so they land over values already read. With a bad item among
/// them, as [`fft_power`].
pub fn fft_power_in_place(params: Params<'_>, items: ItemsMut<'_>) -> BatchResults<KernelError> {
    let (accepted, failures) = read_signals(items.items());
    if !failures.is_empty() {
        return fft_power(params, items.items());
    }
    let places: Vec<Range<usize>> = accepted
        .iter()
        .map(|(_, x)| items.offset_of(x)..items.offset_of(x) + x.len())
        .collect();
    let values = items.into_data();
    let (mut scratch, mut spare, mut out) = (fft::Scratch::default(), Vec::new(), 0);
    for (i, partner) in lane_pairs(places.iter().map(Range::len)) {
        let a = &values[places[i].clone()];
        let b = partner.map_or(a, |j| &values[places[j].clone()]);
        let transformed = fft::transform(a, b, &mut scratch);
        out += write_spectra(
            &transformed,
            &scratch,
            &mut values[out..],
            partner,
            &mut spare,
        );
    }
    values.truncate(out);
    let lengths = places.iter().map(|x| bins(x.len()));
    BatchResults {
        outputs: WireData::vectors(lengths, core::mem::take(values)),
        failures: Vec::new(),
    }
}

/// Items accepted with their signal, by index.
type Signals<'a> = Vec<(u32, &'a [f64])>;

/// Each item's signal (a vector, not empty), or why the item is refused.
fn read_signals(items: Items<'_>) -> (Signals<'_>, Vec<(u32, KernelError)>) {
    crunch_abi::read_items(items, unreadable, |item| {
        let [x] = check::inputs(item, ["x"])?;
        check::nonempty_vector(x, "x")
    })
}

/// The bins of a power spectrum of `n` values.
fn bins(n: usize) -> usize {
    n / 2 + 1
}

/// The order the FFT takes signals of these lengths in: each with the next if it is as long
/// (the two share the transform's lanes), else alone.
fn lane_pairs(
    lengths: impl Iterator<Item = usize>,
) -> impl Iterator<Item = (usize, Option<usize>)> {
    let mut lengths = lengths.enumerate().peekable();
    core::iter::from_fn(move || {
        let (i, n) = lengths.next()?;
        Some(match lengths.peek() {
            Some(&(j, m)) if m == n => {
                lengths.next();
                (i, Some(j))
            }
            _ => (i, None),
        })
    })
}

/// Writes the spectrum of a transformed signal, and of its partner if it has one, to the front
/// of `out` (a lone signal's second lane goes to `spare`); returns the values written.
fn write_spectra(
    transformed: &fft::Transformed,
    scratch: &fft::Scratch,
    out: &mut [f64],
    partner: Option<usize>,
    spare: &mut Vec<f64>,
) -> usize {
    let bins = bins(transformed.length());
    let (out_a, rest) = out.split_at_mut(bins);
    if partner.is_some() {
        transformed.write_power(scratch, out_a, &mut rest[..bins]);
        2 * bins
    } else {
        spare.resize(bins, 0.0);
        transformed.write_power(scratch, out_a, spare);
        bins
    }
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
    let (accepted, failures) = read_pairs(items);
    let accepted: Vec<_> = accepted
        .into_iter()
        .map(|(index, (x, w))| (index, longer_first(x, w, |v| v.len())))
        .collect();
    // Zeroed item by item just before they are written, while the item's outputs are in the
    // cache, rather than all at once up front.
    let mut values = Vec::with_capacity(accepted.iter().map(|&(_, (l, s))| valid(l, s)).sum());
    let mut taps = Vec::new();
    for &(_, (long, short)) in &accepted {
        taps.clear();
        taps.extend(short.iter().rev());
        let at = values.len();
        values.resize(at + valid(long, short), 0.0);
        convolve_valid(long, &taps, &mut values[at..]);
    }
    let lengths = accepted.iter().map(|&(index, (l, s))| (index, valid(l, s)));
    vector_results(count, lengths, values, failures)
}

/// [`convolve`] given lists it may write over: when every item is good, each item's output is
/// written over the values where its inputs lay, one output after another from the start, and
/// the same values go back. An output is shorter than its inputs, so it lands at or before the
/// values it is computed from, and a block's outputs are stored only after the block has read
/// them. With a bad item among them, as [`convolve`].
pub fn convolve_in_place(params: Params<'_>, items: ItemsMut<'_>) -> BatchResults<KernelError> {
    let (accepted, failures) = read_pairs(items.items());
    if !failures.is_empty() {
        return convolve(params, items.items());
    }
    // Where each item's longer and shorter input lie among the values.
    let places: Vec<_> = accepted
        .iter()
        .map(|&(_, (x, w))| {
            let (x_at, w_at) = (items.offset_of(x), items.offset_of(w));
            longer_first((x_at, x.len()), (w_at, w.len()), |&(_, len)| len)
        })
        .collect();
    let values = items.into_data();
    let (mut out, mut taps, mut lengths) = (0, Vec::new(), Vec::with_capacity(places.len()));
    for ((long, n), (short, m)) in places {
        taps.clear();
        taps.extend(values[short..short + m].iter().rev());
        convolve_valid_in_place(values, long..long + n, &taps, out);
        out += n - m + 1;
        lengths.push(n - m + 1);
    }
    values.truncate(out);
    BatchResults {
        outputs: WireData::vectors(lengths, core::mem::take(values)),
        failures: Vec::new(),
    }
}

/// Items accepted with their two inputs, by index.
type Pairs<'a> = Vec<(u32, (&'a [f64], &'a [f64]))>;

/// Each item's two inputs, x and w (vectors, not empty), or why the item is refused.
fn read_pairs(items: Items<'_>) -> (Pairs<'_>, Vec<(u32, KernelError)>) {
    crunch_abi::read_items(items, unreadable, |item| {
        let [x, w] = check::inputs(item, ["x", "w"])?;
        Ok((
            check::nonempty_vector(x, "x")?,
            check::nonempty_vector(w, "w")?,
        ))
    })
}

/// The longer of two inputs (x first if they are as long) first: it slides over the shorter
/// one.
fn longer_first<T>(x: T, w: T, len: impl Fn(&T) -> usize) -> (T, T) {
    if len(&x) >= len(&w) { (x, w) } else { (w, x) }
}

/// Outputs of the longer input sliding over the shorter.
fn valid(long: &[f64], short: &[f64]) -> usize {
    long.len() - short.len() + 1
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
    let splats: Vec<F64x2> = taps.iter().map(|&w| F64x2::splat(w)).collect();
    let (blocks, rest) = out.as_chunks_mut::<BLOCK>();
    for (b, block) in blocks.iter_mut().enumerate() {
        store_block(block, block_sums(&long[BLOCK * b..], &splats));
    }
    let start = BLOCK * blocks.len();
    for (j, y) in rest.iter_mut().enumerate() {
        *y = one_output(&long[start + j..], taps);
    }
}

/// [`convolve_valid`] with the longer input at `long` among `values` and the outputs written
/// from `out` on, which is not after `long.start`: each block's outputs are stored after the
/// block has read its values, over values no later block reads.
#[inline(never)]
fn convolve_valid_in_place(values: &mut [f64], long: Range<usize>, taps: &[f64], out: usize) {
    debug_assert!(out <= long.start);
    let splats: Vec<F64x2> = taps.iter().map(|&w| F64x2::splat(w)).collect();
    let outputs = long.len() - taps.len() + 1;
    let blocks = outputs / BLOCK;
    for b in 0..blocks {
        let sums = block_sums(&values[long.start + BLOCK * b..long.end], &splats);
        let block = values[out + BLOCK * b..]
            .first_chunk_mut()
            .expect("a block");
        store_block(block, sums);
    }
    for j in BLOCK * blocks..outputs {
        values[out + j] = one_output(&values[long.start + j..long.end], taps);
    }
}

/// The sums of a block of outputs, from the values from its first on (at least the block and
/// the taps less one of them).
#[inline(always)]
fn block_sums(long: &[f64], splats: &[F64x2]) -> [F64x2; BLOCK / 2] {
    let window = &long[..BLOCK + splats.len() - 1];
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
    sums
}

/// Stores a block's sums as its outputs.
#[inline(always)]
fn store_block(block: &mut [f64; BLOCK], sums: [F64x2; BLOCK / 2]) {
    for (y, sum) in block.as_chunks_mut::<2>().0.iter_mut().zip(sums) {
        sum.store(y);
    }
}

/// One output past the last whole block, from the values from its first on.
fn one_output(long: &[f64], taps: &[f64]) -> f64 {
    taps.iter()
        .zip(long)
        .fold(F64x2::splat(-0.0), |sum, (&w, &x)| {
            F64x2::splat(w).mul_add(F64x2::splat(x), sum)
        })
        .first()
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

    type Copying = fn(Params<'_>, Items<'_>) -> BatchResults<KernelError>;
    type OverInputs = fn(Params<'_>, ItemsMut<'_>) -> BatchResults<KernelError>;

    /// Runs `items` through a kernel's copying form and its form that writes over its inputs,
    /// checks they give the same bits, and returns the values.
    fn both_forms(items: &[Vec<Tensor>], copying: Copying, over: OverInputs) -> Vec<f64> {
        let mut wire = WireData::with_capacity(items.len(), 0);
        for item in items {
            wire.push(item.iter().map(Tensor::view)).unwrap();
        }
        let copied = copying(Params(&[]), wire.items());
        let (mut shapes, mut data) = (wire.shapes.clone(), wire.data.clone());
        let written = over(
            Params(&[]),
            ItemsMut::new(wire.count, &mut shapes, &mut data),
        );
        assert!(copied.failures.is_empty() && written.failures.is_empty());
        assert_eq!(written.outputs.shapes, copied.outputs.shapes);
        let bits = |d: &[f64]| d.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&written.outputs.data), bits(&copied.outputs.data));
        written.outputs.data
    }

    fn signal(len: usize, k: usize, f: f64) -> Tensor {
        Tensor::vector((0..len).map(|i| libm::sin((i + k) as f64 * f)).collect())
    }

    #[test]
    fn convolutions_written_over_the_inputs_are_those_of_the_copy() {
        // Items of many sizes, some with the longer input second: over the lists, each output
        // lands at or before the values it still reads.
        let sizes = [
            (1000, 16),
            (5, 17),
            (1, 1),
            (13, 12),
            (40, 1),
            (12, 37),
            (100, 3),
            (24, 24),
        ];
        let items: Vec<Vec<Tensor>> = sizes
            .iter()
            .enumerate()
            .map(|(k, &(n, m))| vec![signal(n, k, 0.7), signal(m, k, 1.9)])
            .collect();
        let values = both_forms(&items, convolve, convolve_in_place);
        let total: usize = sizes.iter().map(|&(n, m)| n.max(m) - n.min(m) + 1).sum();
        assert_eq!(values.len(), total);
    }

    #[test]
    fn spectra_written_over_the_inputs_are_those_of_the_copy() {
        // Pairs and lone signals, even and odd lengths, the shortest.
        let lengths = [1024, 1024, 7, 1, 1, 2, 64, 64, 64, 31, 31, 1000];
        let items: Vec<Vec<Tensor>> = lengths
            .iter()
            .enumerate()
            .map(|(k, &n)| vec![signal(n, k, 0.37)])
            .collect();
        let values = both_forms(&items, fft_power, fft_power_in_place);
        assert_eq!(
            values.len(),
            lengths.iter().map(|&n| n / 2 + 1).sum::<usize>()
        );
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
