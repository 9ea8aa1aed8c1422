//! Beyond the golden vectors: the component and the native build give the same bits on a sweep
//! of edge and random inputs for the kernels built on the vector math and the whole-batch
//! loops (region boundaries of the normal CDF and quantile, subnormals, infinities, NaN, bad
//! records mixed with good ones, odd lengths for the FFT, sizes off the matmul and convolve
//! blocks, signed zeros and NaN for the extremes). The pack's code is also checked for relaxed
//! SIMD whose results an engine may choose (only the fused multiply-add, which the host makes
//! deterministic, may appear).

use std::collections::BTreeSet;
use std::time::Duration;

use crunch::{Engine, KernelCall, KernelPack, Limits, Tensor};
use crunch_tests::paths;

/// A small deterministic generator (xorshift64*), so the sweep needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

fn vector(data: Vec<f64>) -> Tensor {
    Tensor {
        shape: vec![data.len() as u32],
        data,
    }
}

/// The items as the natively built kernels take them.
fn native(items: &[Vec<Tensor>]) -> Vec<Vec<crunch_kernels::Tensor>> {
    items
        .iter()
        .map(|item| {
            item.iter()
                .map(|t| crunch_kernels::Tensor::new(t.shape.clone(), t.data.clone()))
                .collect()
        })
        .collect()
}

/// The sweep: (kernel, items).
fn cases() -> Vec<(&'static str, Vec<Vec<Tensor>>)> {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let specials = [
        0.0,
        -0.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        5e-324,
        -5e-324,
        f64::MIN_POSITIVE,
        1e300,
        -1e300,
    ];
    let mut xs: Vec<f64> = specials.to_vec();
    for boundary in [0.674_489_75, 5.656_854_249_492_38, 38.4, 40.0, 8.3] {
        for d in [-1e-12, 0.0, 1e-12] {
            xs.extend([boundary + d, -(boundary + d)]);
        }
    }
    xs.extend((0..4000).map(|_| rng.range(-40.0, 40.0)));
    let mut ps: Vec<f64> = specials.to_vec();
    ps.extend([1.0, 0.075, 0.925, 0.5, 1.0 - 1e-16, 1e-310, 1.5, -0.25]);
    ps.extend((0..2000).map(|_| rng.next()));
    ps.extend((0..2000).map(|_| 2f64.powf(-rng.range(1.0, 1074.0))));
    let cdf_items: Vec<Vec<Tensor>> = xs.chunks(37).map(|c| vec![vector(c.to_vec())]).collect();
    let ppf_items: Vec<Vec<Tensor>> = ps.chunks(41).map(|c| vec![vector(c.to_vec())]).collect();

    let mut contracts = Vec::new();
    for i in 0..3001 {
        let mut c = vec![
            rng.range(1.0, 300.0),
            rng.range(1.0, 300.0),
            rng.range(0.001, 5.0),
            rng.range(-0.05, 0.2),
            rng.range(0.001, 3.0),
            f64::from(u8::from(rng.next() < 0.5)),
        ];
        match i % 97 {
            0 => c[0] = -1.0,
            1 => c[4] = f64::NAN,
            2 => c[5] = 2.0,
            3 => c.truncate(5),
            _ => {}
        }
        contracts.push(vec![vector(c)]);
    }
    // Prices for implied_vol from the contracts' own greeks run natively.
    let native_items = native(&contracts);
    let prices = crunch_kernels::run("black_scholes", &[], &native_items);
    let implied: Vec<Vec<Tensor>> = contracts
        .iter()
        .zip(&prices)
        .filter_map(|(c, p)| {
            let price = p.as_ref().ok()?.data[0];
            let c = &c[0].data;
            Some(vec![vector(vec![price, c[0], c[1], c[2], c[3], c[5]])])
        })
        .collect();

    let mut fft = Vec::new();
    for n in (1..70).chain([96, 97, 100, 128, 1000, 1024, 1024, 4096]) {
        fft.push(vec![vector((0..n).map(|_| rng.range(-1.0, 1.0)).collect())]);
    }
    let mut matmul = Vec::new();
    for (m, k, n) in [
        (1, 1, 1),
        (5, 7, 6),
        (4, 4, 4),
        (9, 13, 3),
        (16, 16, 16),
        (3, 0, 2),
    ] {
        let a: Vec<f64> = (0..m * k).map(|_| rng.range(-1.0, 1.0)).collect();
        let b: Vec<f64> = (0..k * n).map(|_| rng.range(-1.0, 1.0)).collect();
        matmul.push(vec![
            Tensor {
                shape: vec![m, k],
                data: a,
            },
            Tensor {
                shape: vec![k, n],
                data: b,
            },
        ]);
    }
    // Extremes and clamps (describe's min and max, corrcoef's clamp to [-1, 1]) on signed
    // zeros, NaN and infinities, where IEEE min/max and a comparison with a select differ.
    let mut describe = Vec::new();
    let mut corrcoef = Vec::new();
    for n in [1, 2, 3, 7, 64, 100, 1000] {
        for special in specials.into_iter().chain([1.0, -1.0]) {
            let mut data: Vec<f64> = (0..n)
                .map(|i| {
                    if i % 3 == 0 {
                        -0.0
                    } else {
                        rng.range(-1.0, 1.0)
                    }
                })
                .collect();
            data[n / 2] = special;
            describe.push(vec![vector(data.clone())]);
            if n >= 2 && n % 2 == 0 {
                corrcoef.push(vec![Tensor {
                    shape: vec![(n / 2) as u32, 2],
                    data,
                }]);
            }
        }
    }
    describe.push(vec![vector([0.0, -0.0, 0.0, -0.0].repeat(40))]);
    // Convolutions of sizes around its blocks of outputs and steps of taps, the longer input
    // first or second, written over the batch's lists in the component (and a special value in
    // each signal).
    let mut convolve = Vec::new();
    for (k, (n, m)) in [
        (1, 1),
        (11, 1),
        (12, 1),
        (13, 4),
        (25, 5),
        (3, 40),
        (100, 16),
        (31, 31),
    ]
    .into_iter()
    .enumerate()
    {
        let mut signal: Vec<f64> = (0..n).map(|_| rng.range(-2.0, 2.0)).collect();
        signal[n / 2] = specials[k % specials.len()];
        let taps: Vec<f64> = (0..m).map(|_| rng.range(-1.0, 1.0)).collect();
        convolve.push(vec![vector(signal), vector(taps)]);
    }
    vec![
        ("describe", describe),
        ("corrcoef", corrcoef),
        ("norm_cdf", cdf_items),
        ("norm_ppf", ppf_items),
        ("black_scholes", contracts),
        ("implied_vol", implied),
        ("fft_power", fft),
        ("matmul", matmul),
        ("convolve", convolve),
    ]
}

#[test]
fn component_and_native_give_the_same_bits_on_an_edge_sweep() -> anyhow::Result<()> {
    let engine = Engine::new(Limits::default())?;
    let pack = KernelPack::load(&engine, &paths::component("crunch_kernels"))?;
    let mut compared = 0;
    for (kernel, items) in cases() {
        let call = KernelCall {
            kernel,
            params: &[],
            batch_time: Duration::from_secs(60),
        };
        let outcome = crunch::run_batch(&pack, &call, 0, &items);
        assert!(outcome.error.is_none(), "{kernel}: {:?}", outcome.error);
        let native_items = native(&items);
        let native = crunch_kernels::run(kernel, &[], &native_items);
        for (i, (wasm, native)) in outcome.results.iter().zip(&native).enumerate() {
            match (wasm, native) {
                (Ok(w), Ok(n)) => {
                    assert_eq!(w.shape, &n.shape[..], "{kernel} item {i}");
                    for (j, (a, b)) in w.data.iter().zip(&n.data).enumerate() {
                        assert!(
                            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                            "{kernel} item {i} value {j}: wasm {a:e}, native {b:e}"
                        );
                    }
                    compared += w.data.len();
                }
                (Err(w), Err(n)) => assert!(
                    n.to_string().ends_with(w.message()),
                    "{kernel} item {i}: wasm {w}, native {n}"
                ),
                (w, n) => panic!("{kernel} item {i}: wasm {w:?}, native {n:?}"),
            }
        }
    }
    assert!(compared > 20_000, "compared only {compared} values");
    println!("{compared} values bit-identical between the component and the native build");
    Ok(())
}

/// Relaxed SIMD instructions let the engine pick among several results; the pack may use only
/// the fused multiply-add, which the host's engine computes deterministically (one rounding on
/// every CPU). Others would be a compiler's choice the host does not pin down: LLVM, for one,
/// turns `f64x2.pmin` into `f64x2.relaxed_min` when relaxed SIMD is enabled, which a
/// deterministic engine computes as IEEE `min` (NaN and signed zeros then differ from the
/// native build's).
#[test]
fn the_pack_uses_no_relaxed_simd_but_the_fused_multiply_add() -> anyhow::Result<()> {
    let (fused, others) = relaxed_instructions("crunch_kernels")?;
    assert!(
        others.is_empty(),
        "relaxed SIMD beyond the fused multiply-add: {others:?}"
    );
    assert!(
        fused > 100,
        "only {fused} fused multiply-adds: built without relaxed SIMD?"
    );
    // The example pack that pack authors start from is built the same way.
    let (_, others) = relaxed_instructions("crunch_example_risk")?;
    assert!(others.is_empty(), "the example pack: {others:?}");
    Ok(())
}

/// How many `f64x2.relaxed_madd` the component `name` holds, and which other relaxed SIMD
/// instructions.
fn relaxed_instructions(name: &str) -> anyhow::Result<(usize, BTreeSet<String>)> {
    let bytes = std::fs::read(paths::component(name))?;
    let mut fused = 0;
    let mut others = BTreeSet::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::CodeSectionEntry(body) = payload? {
            let mut reader = body.get_operators_reader()?;
            while !reader.eof() {
                let name = format!("{:?}", reader.read()?);
                let name = name.split([' ', '{', '(']).next().unwrap_or_default();
                if name == "F64x2RelaxedMadd" {
                    fused += 1;
                } else if name.contains("Relaxed") {
                    others.insert(name.to_string());
                }
            }
        }
    }
    Ok((fused, others))
}
