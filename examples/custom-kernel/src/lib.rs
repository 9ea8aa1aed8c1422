//! An example kernel pack for a domain of one's own (risk): historical value-at-risk of a
//! portfolio and a moving-average crossover signal. Plain Rust, unit-tested natively; the WIT
//! adapter at the bottom is all it takes to make it a Crunch pack. Built with `--features v2`,
//! `var` also returns the expected shortfall: the second version used by the hot-swap test.

mod risk;

pub use risk::{VAR_SUMMARY, ma_crossover, var};

#[cfg(target_arch = "wasm32")]
mod component {
    // The export glue that wit-bindgen generates uses `unsafe` attributes.
    #![allow(unsafe_code)]

    mod bindings {
        wit_bindgen::generate!({ path: "../../wit", world: "kernel-pack" });
    }

    use bindings::crunch::kernel::types::{BatchResults, KernelError, KernelInfo, Packed, Tensor};
    use bindings::exports::crunch::kernel::kernels::Guest;

    struct RiskPack;

    impl Guest for RiskPack {
        fn list_kernels() -> Vec<KernelInfo> {
            let info = |name: &str, summary: &str| KernelInfo {
                name: name.into(),
                summary: summary.into(),
            };
            vec![
                info("var", crate::VAR_SUMMARY),
                info(
                    "ma_crossover",
                    "[prices (n)] with params fast, slow -> [crossovers, last signal (1 long, -1 short)]",
                ),
            ]
        }

        fn run(kernel: String, params: Vec<(String, Tensor)>, items: Packed) -> BatchResults {
            let param = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, t)| t.data.first().copied())
            };
            let items = crunch_abi::Items::new(items.count, &items.shapes, &items.data);
            let results = crunch_abi::run_each(
                items,
                |e| KernelError::InvalidInput(e.to_string()),
                |tensors| {
                    let tensors: Vec<(Vec<u32>, Vec<f64>)> = tensors
                        .iter()
                        .map(|t| (t.shape.to_vec(), t.data.to_vec()))
                        .collect();
                    let out = match kernel.as_str() {
                        "var" => crate::var(&tensors, param("confidence").unwrap_or(0.99)),
                        "ma_crossover" => crate::ma_crossover(
                            &tensors,
                            param("fast").unwrap_or(5.0),
                            param("slow").unwrap_or(20.0),
                        ),
                        other => {
                            return Err(KernelError::UnknownKernel(format!(
                                "no kernel `{other}` in the risk pack"
                            )));
                        }
                    };
                    out.map(|data| (vec![data.len() as u32], data))
                        .map_err(KernelError::InvalidInput)
                },
            );
            crunch_abi::wit_batch_results!(results, bindings::crunch::kernel::types)
        }
    }

    bindings::export!(RiskPack with_types_in bindings);
}
