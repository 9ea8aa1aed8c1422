//! One deterministic workload per standard kernel: realistic inputs, sized so that one batch
//! holds a few milliseconds of compute.

use crunch::{Item, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A kernel, its parameters and one batch of items.
pub struct Workload {
    /// The kernel's name in the standard pack.
    pub kernel: &'static str,
    /// Named parameters.
    pub params: Vec<(String, Tensor)>,
    /// The items, all of one shape.
    pub items: Vec<Item>,
}

impl Workload {
    /// The parameters as the native kernels take them.
    pub fn native_params(&self) -> Vec<(String, crunch_kernels::Tensor)> {
        self.params
            .iter()
            .map(|(name, t)| (name.clone(), to_native(t)))
            .collect()
    }
}

fn to_native(t: &Tensor) -> crunch_kernels::Tensor {
    crunch_kernels::Tensor::new(t.shape.clone(), t.data.clone())
}

fn tensor(shape: &[u32], data: Vec<f64>) -> Tensor {
    Tensor {
        shape: shape.to_vec(),
        data,
    }
}

fn uniform(rng: &mut StdRng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Roughly normal values (sum of uniforms), so moments and percentiles are not trivial.
fn normalish(rng: &mut StdRng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| (0..4).map(|_| rng.random_range(-1.0..1.0)).sum::<f64>())
        .collect()
}

fn items(count: usize, rng: &mut StdRng, mut make: impl FnMut(&mut StdRng) -> Item) -> Vec<Item> {
    (0..count).map(|_| make(rng)).collect()
}

/// An option contract [S, K, T, r, sigma, is_call].
pub fn contract(rng: &mut StdRng) -> [f64; 6] {
    [
        rng.random_range(50.0..150.0),
        rng.random_range(60.0..140.0),
        rng.random_range(0.05..2.0),
        rng.random_range(0.0..0.05),
        rng.random_range(0.05..0.8),
        f64::from(rng.random_bool(0.5)),
    ]
}

/// The twelve workloads, in the pack's kernel order.
pub fn workloads() -> Vec<Workload> {
    let mut rng = StdRng::seed_from_u64(20_261_127);
    let r = &mut rng;
    let plain = |kernel, items| Workload {
        kernel,
        params: Vec::new(),
        items,
    };
    vec![
        plain(
            "describe",
            items(200, r, |r| vec![tensor(&[1000], normalish(r, 1000))]),
        ),
        Workload {
            kernel: "percentile",
            params: vec![("q".into(), tensor(&[5], vec![5.0, 25.0, 50.0, 75.0, 95.0]))],
            items: items(200, r, |r| vec![tensor(&[1000], normalish(r, 1000))]),
        },
        plain(
            "norm_cdf",
            items(1000, r, |r| {
                vec![tensor(&[100], uniform(r, 100, -5.0, 5.0))]
            }),
        ),
        plain(
            "norm_ppf",
            items(1000, r, |r| {
                vec![tensor(&[100], uniform(r, 100, 1e-9, 1.0))]
            }),
        ),
        plain(
            "black_scholes",
            items(10_000, r, |r| vec![tensor(&[6], contract(r).to_vec())]),
        ),
        plain("implied_vol", implied_vol_items(2000, r)),
        plain("ols", items(200, r, ols_item)),
        plain(
            "fft_power",
            items(200, r, |r| vec![tensor(&[1024], normalish(r, 1024))]),
        ),
        plain("cubic_spline", items(200, r, spline_item)),
        plain(
            "matmul",
            items(50, r, |r| {
                vec![
                    tensor(&[64, 64], uniform(r, 64 * 64, -1.0, 1.0)),
                    tensor(&[64, 64], uniform(r, 64 * 64, -1.0, 1.0)),
                ]
            }),
        ),
        plain(
            "convolve",
            items(200, r, |r| {
                vec![
                    tensor(&[1000], normalish(r, 1000)),
                    tensor(&[16], uniform(r, 16, 0.0, 1.0)),
                ]
            }),
        ),
        plain(
            "corrcoef",
            items(200, r, |r| vec![tensor(&[250, 10], normalish(r, 2500))]),
        ),
    ]
}

/// Market prices made by pricing random contracts, so every item has a solution.
fn implied_vol_items(count: usize, rng: &mut StdRng) -> Vec<Item> {
    let contracts: Vec<[f64; 6]> = (0..count).map(|_| contract(rng)).collect();
    let priced = crunch_kernels::run(
        "black_scholes",
        &[],
        &contracts
            .iter()
            .map(|c| vec![crunch_kernels::Tensor::vector(c.to_vec())])
            .collect::<Vec<_>>(),
    );
    contracts
        .iter()
        .zip(priced)
        .map(|([s, k, t, r, _, is_call], out)| {
            let price = out.expect("black_scholes prices a valid contract").data[0];
            vec![tensor(&[6], vec![price, *s, *k, *t, *r, *is_call])]
        })
        .collect()
}

/// Regression data y = X b + noise with n = 200 observations and p = 5 regressors.
fn ols_item(rng: &mut StdRng) -> Item {
    let (n, p) = (200, 5);
    let x = uniform(rng, n * p, -1.0, 1.0);
    let beta = uniform(rng, p, -2.0, 2.0);
    let noise = normalish(rng, n);
    let y = (0..n)
        .map(|i| (0..p).map(|j| x[i * p + j] * beta[j]).sum::<f64>() + 0.1 * noise[i])
        .collect();
    vec![tensor(&[200, 5], x), tensor(&[200], y)]
}

/// 50 increasing knots, values at them, and 200 query points inside the knots' range.
fn spline_item(rng: &mut StdRng) -> Item {
    let mut x = Vec::with_capacity(50);
    let mut at = 0.0;
    for _ in 0..50 {
        at += rng.random_range(0.1..1.0);
        x.push(at);
    }
    let y = normalish(rng, 50);
    let xq = uniform(rng, 200, x[0], x[49]);
    vec![tensor(&[50], x), tensor(&[50], y), tensor(&[200], xq)]
}
