//! The standard pack, run as a wasm component by the host, passes every golden case, and its
//! outputs are bit-identical to the same kernels built natively (so the native build passes
//! them too).

use std::time::Duration;

use crunch::{Engine, KernelCall, KernelPack, Limits, Tensor};
use crunch_tests::{golden, paths};

fn to_native(t: &golden::GoldenTensor) -> crunch_kernels::Tensor {
    crunch_kernels::Tensor {
        shape: t.shape.clone(),
        data: t.data.clone(),
    }
}

/// Bitwise equality, except that any NaN equals any NaN (wasm does not fix NaN payloads).
fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

#[test]
fn component_matches_golden_and_native_bit_for_bit() -> anyhow::Result<()> {
    let engine = Engine::new(Limits::default())?;
    let pack = KernelPack::load(&engine, &paths::component("crunch_kernels"))?;
    let (mut checked, mut identical) = (0usize, 0usize);
    let mut failures = Vec::new();
    for file in golden::load_all()? {
        assert!(pack.has_kernel(&file.kernel), "pack lacks {}", file.kernel);
        for (c, case) in file.cases.iter().enumerate() {
            let golden_params = case.params()?;
            let params: Vec<(String, Tensor)> = golden_params
                .iter()
                .map(|(n, t)| (n.clone(), t.to_host()))
                .collect();
            let native_params: Vec<(String, crunch_kernels::Tensor)> = golden_params
                .iter()
                .map(|(n, t)| (n.clone(), to_native(t)))
                .collect();
            let items: Vec<Vec<Tensor>> = case
                .items
                .iter()
                .map(golden::GoldenItem::host_inputs)
                .collect();
            let native_items: Vec<Vec<crunch_kernels::Tensor>> = case
                .items
                .iter()
                .map(|it| it.inputs.iter().map(to_native).collect())
                .collect();

            let call = KernelCall {
                kernel: &file.kernel,
                params: &params,
                batch_time: Duration::from_secs(60),
            };
            let outcome = crunch::run_batch(&pack, &call, c, &items);
            assert!(
                outcome.error.is_none(),
                "{} case {c}: {:?}",
                file.kernel,
                outcome.error
            );
            let native = crunch_kernels::run(&file.kernel, &native_params, &native_items);

            for (i, ((wasm, native), item)) in outcome
                .results
                .iter()
                .zip(&native)
                .zip(&case.items)
                .enumerate()
            {
                checked += 1;
                let place = format!("{} case {c} item {i}", file.kernel);
                match (wasm, native) {
                    (Ok(w), Ok(n)) => {
                        if w.shape == n.shape && same_bits(w.data, &n.data) {
                            identical += 1;
                        } else {
                            failures.push(format!("{place}: wasm and native outputs differ"));
                        }
                        if let Err(e) =
                            golden::compare(w.shape, w.data, &item.expected, case.rtol, case.atol)
                        {
                            failures.push(format!("{place}: {e}"));
                        }
                    }
                    (w, n) => failures.push(format!("{place}: wasm {w:?}, native {n:?}")),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems in {checked} items:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        identical, checked,
        "every golden output must be bit-identical"
    );
    assert!(
        checked >= 700,
        "expected the full golden set, checked only {checked}"
    );
    println!(
        "{checked} golden items within tolerance through the component; {identical} bit-identical to native"
    );
    Ok(())
}
