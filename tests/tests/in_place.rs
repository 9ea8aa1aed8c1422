//! `crunch run`'s way of running an input, writing each batch's results over its part of the
//! input where they fit, gives exactly the results of running it batch by batch, whether every
//! batch fits, some do, or none.

use crunch::data::codec::{self, Format};
use crunch::data::wire;
use crunch::{Engine, KernelCall, KernelPack, Limits, Tensor};
use crunch_tests::paths;

fn vector(data: Vec<f64>) -> Vec<Tensor> {
    vec![Tensor {
        shape: vec![data.len() as u32],
        data,
    }]
}

/// Both ways on the same items, `batch_size` items a batch; the in-place run's results, after
/// checking they equal the other's item by item.
fn both_ways(kernel: &str, items: &[Vec<Tensor>], batch_size: usize) -> Vec<wire::Results> {
    let engine = Engine::new(Limits::default()).expect("engine");
    let pack = KernelPack::load(&engine, &paths::component("crunch_kernels")).expect("pack");
    let call = KernelCall {
        kernel,
        params: &[],
        batch_time: Limits::default().batch_time,
    };
    let input = || {
        let bytes = codec::encode_items(items);
        codec::read_input_from(&bytes[..], Format::Binary, None).expect("items read back")
    };
    let outcomes = crunch::run_batches(&pack, &call, &input(), batch_size, 2, |_| {}).expect("run");
    let by_batch: Vec<wire::Results> = outcomes.into_iter().map(|o| o.results).collect();
    let (in_place, errors) =
        crunch::run_batches_in_place(&pack, &call, input(), batch_size, 2, |_| {}).expect("run");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(wire::count(&in_place), items.len());
    let expected: Vec<_> = wire::each(&by_batch).collect();
    let got: Vec<_> = wire::each(&in_place).collect();
    assert_eq!(got, expected);
    in_place
}

fn contract(i: usize) -> Vec<f64> {
    let i = i as f64;
    vec![
        80.0 + i,
        100.0,
        0.25 + 0.01 * i,
        0.03,
        0.2,
        (i % 2.0 == 0.0) as u8 as f64,
    ]
}

#[test]
fn results_that_fit_every_batch_are_one_array() {
    let items: Vec<_> = (0..50).map(|i| vector(contract(i))).collect();
    let results = both_ways("black_scholes", &items, 7);
    assert_eq!(results.len(), 1, "one array over the input");
    let cdf: Vec<_> = (0..9)
        .map(|i| vector((0..4).map(|j| (i * 4 + j) as f64 * 0.1 - 2.0).collect()))
        .collect();
    assert_eq!(both_ways("norm_cdf", &cdf, 2).len(), 1);
}

#[test]
fn batches_that_do_not_fit_keep_their_own_results() {
    // A failed item: its batch keeps its results, the others are taken back out of the input.
    let mut items: Vec<_> = (0..50).map(|i| vector(contract(i))).collect();
    items[17][0].data[4] = -1.0;
    let results = both_ways("black_scholes", &items, 7);
    assert_eq!(results.len(), 8, "one per batch");
    assert_eq!(results.iter().map(|r| r.failed()).sum::<usize>(), 1);

    // Each batch fits, but with vectors of another length than the others.
    let uneven: Vec<_> = [3, 3, 5, 5, 3]
        .iter()
        .map(|&n| vector((0..n).map(|j| j as f64 * 0.3).collect()))
        .collect();
    assert_eq!(both_ways("norm_cdf", &uneven, 2).len(), 3);

    // Outputs of another size than the inputs: kept as the pack returned them.
    let samples: Vec<_> = (0..6)
        .map(|i| vector((0..10).map(|j| ((i * 10 + j) % 7) as f64).collect()))
        .collect();
    assert_eq!(both_ways("describe", &samples, 4).len(), 2);
}
