//! The pack's table of kernels and the batch entry point that the component exports.

use crate::check::unreadable;
use crate::tensor::{KernelError, Params, Tensor, TensorRef};
use crate::{interp, linalg, normal, options, signal, stats};
use crunch_abi::{BatchResults, Items, Packed};

/// One kernel: its name, what it computes, the parameters it accepts, and its code.
#[derive(Clone, Copy)]
pub struct KernelSpec {
    /// The name callers use, e.g. `black_scholes`.
    pub name: &'static str,
    /// One line: inputs, output and the NumPy/SciPy call it matches.
    pub summary: &'static str,
    /// The parameter names the kernel accepts; any other name is an error.
    pub params: &'static [&'static str],
    /// The kernel's code.
    pub compute: Compute,
}

/// How a kernel computes: one item per call, or the whole packed batch in one call.
#[derive(Clone, Copy)]
pub enum Compute {
    /// Computes one item from its input tensors.
    Item(fn(Params<'_>, &[TensorRef<'_>]) -> Result<Tensor, KernelError>),
    /// Computes every item of a packed batch: one output per item that succeeds, and the
    /// failures (see [`crunch_abi::map_elementwise`] and [`crunch_abi::map_records`]).
    Batch(fn(Params<'_>, Items<'_>) -> BatchResults<KernelError>),
}

/// Every kernel of the standard pack, in the order `list` reports them.
pub const KERNELS: &[KernelSpec] = &[
    KernelSpec {
        name: "describe",
        summary: "[x (n)] -> [nobs, min, max, mean, variance (ddof=1), skewness, kurtosis (Fisher)], as scipy.stats.describe",
        params: &[],
        compute: Compute::Item(stats::describe),
    },
    KernelSpec {
        name: "percentile",
        summary: "[x (n)] with param q (percentages in [0, 100]) -> percentiles of x, shaped like q, as numpy.percentile (linear)",
        params: &["q"],
        compute: Compute::Item(stats::percentile),
    },
    KernelSpec {
        name: "norm_cdf",
        summary: "[x (any shape)] -> standard normal CDF elementwise, as scipy.stats.norm.cdf",
        params: &[],
        compute: Compute::Batch(normal::cdf_batch),
    },
    KernelSpec {
        name: "norm_ppf",
        summary: "[p (any shape)] -> standard normal quantile elementwise, as scipy.stats.norm.ppf",
        params: &[],
        compute: Compute::Batch(normal::ppf_batch),
    },
    KernelSpec {
        name: "black_scholes",
        summary: "[S, K, T, r, sigma, is_call] -> [price, delta, gamma, vega, theta (per year), rho], European, no dividends",
        params: &[],
        compute: Compute::Batch(options::black_scholes),
    },
    KernelSpec {
        name: "implied_vol",
        summary: "[price, S, K, T, r, is_call] -> [sigma], Black-Scholes implied volatility in [1e-6, 5]",
        params: &[],
        compute: Compute::Batch(options::implied_vol),
    },
    KernelSpec {
        name: "ols",
        summary: "[X (n x p), y (n)] -> least-squares coefficients (p), as numpy.linalg.lstsq for full-rank X",
        params: &[],
        compute: Compute::Item(linalg::ols),
    },
    KernelSpec {
        name: "fft_power",
        summary: "[x (n)] -> power spectrum |rfft(x)|^2 (n/2 + 1), any length",
        params: &[],
        compute: Compute::Batch(signal::fft_power),
    },
    KernelSpec {
        name: "cubic_spline",
        summary: "[x (n), y (n), xq (m)] -> natural cubic spline through (x, y) evaluated at xq, as scipy CubicSpline(bc_type='natural')",
        params: &[],
        compute: Compute::Item(interp::cubic_spline),
    },
    KernelSpec {
        name: "matmul",
        summary: "[A (m x k), B (k x n)] -> A @ B (m x n)",
        params: &[],
        compute: Compute::Item(linalg::matmul),
    },
    KernelSpec {
        name: "convolve",
        summary: "[x (n), w (m)] -> numpy.convolve(x, w, mode='valid')",
        params: &[],
        compute: Compute::Item(signal::convolve),
    },
    KernelSpec {
        name: "corrcoef",
        summary: "[X (n x p)] -> Pearson correlation of the columns (p x p), as numpy.corrcoef(X, rowvar=False)",
        params: &[],
        compute: Compute::Item(stats::corrcoef),
    },
];

/// Runs `kernel` on every item, one result per item in order: the form native callers and
/// tests use.
///
/// An unknown kernel or parameter fails every item with the same error; a malformed tensor or a
/// kernel error fails only its item.
pub fn run(
    kernel: &str,
    params: &[(String, Tensor)],
    items: &[Vec<Tensor>],
) -> Vec<Result<Tensor, KernelError>> {
    let spec = match prepare(kernel, params) {
        Ok(spec) => spec,
        Err(e) => return vec![Err(e); items.len()],
    };
    // Items whose tensors do not match their shapes fail here; the rest run packed, as a
    // batch does.
    let mut packed = Packed::default();
    let mut results: Vec<Option<Result<Tensor, KernelError>>> = Vec::with_capacity(items.len());
    for item in items {
        match packed.push(item.iter().map(Tensor::view)) {
            Ok(()) => results.push(None),
            Err(e) => results.push(Some(Err(unreadable(e)))),
        }
    }
    let out = run_spec(spec, params, packed.items());
    let mut failures = out.failures.into_iter().peekable();
    let mut outputs = out.outputs.items();
    let mut tensors = Vec::new();
    for (index, slot) in results.iter_mut().filter(|r| r.is_none()).enumerate() {
        let read = outputs.next_into(&mut tensors);
        *slot = Some(match failures.next_if(|(i, _)| *i as usize == index) {
            Some((_, e)) => Err(e),
            None => match (read, tensors.as_slice()) {
                (Some(Ok(())), [t]) => Ok(Tensor::new(t.shape.to_vec(), t.data.to_vec())),
                _ => Err(KernelError::InvalidInput(format!(
                    "kernel `{kernel}` gave no output for item {index}"
                ))),
            },
        });
    }
    results.into_iter().flatten().collect()
}

/// Runs `kernel` on every item of a packed batch (the component's entry point), reading the
/// inputs in place. Failures are as for [`run`]; items that cannot be read fail alone. An
/// empty batch refused as a whole (unknown kernel or parameter) answers with one failure at
/// index 0, so that a host can refuse a job before sending any work.
pub fn run_packed(
    kernel: &str,
    params: &[(String, Tensor)],
    items: Items<'_>,
) -> BatchResults<KernelError> {
    match prepare(kernel, params) {
        Ok(spec) => run_spec(spec, params, items),
        // An empty batch asks whether the call itself is taken (see wit/kernel.wit).
        Err(e) if items.remaining() == 0 => BatchResults {
            outputs: Packed::default(),
            failures: vec![(0, e)],
        },
        Err(e) => crunch_abi::run_each(items, unreadable, |_| Err(e.clone())),
    }
}

/// Runs a known kernel, with checked parameters, on a packed batch.
fn run_spec(
    spec: &KernelSpec,
    params: &[(String, Tensor)],
    items: Items<'_>,
) -> BatchResults<KernelError> {
    match spec.compute {
        Compute::Item(compute) => crunch_abi::run_each(items, unreadable, |tensors| {
            compute(Params(params), tensors).map(|t| (t.shape, t.data))
        }),
        Compute::Batch(compute) => compute(Params(params), items),
    }
}

/// Finds the kernel and checks the parameters once for the whole batch.
fn prepare(kernel: &str, params: &[(String, Tensor)]) -> Result<&'static KernelSpec, KernelError> {
    let spec = KERNELS.iter().find(|k| k.name == kernel).ok_or_else(|| {
        let known: Vec<_> = KERNELS.iter().map(|k| k.name).collect();
        KernelError::UnknownKernel(format!(
            "no kernel `{kernel}` in this pack (it has: {})",
            known.join(", ")
        ))
    })?;
    for (name, value) in params {
        if !spec.params.contains(&name.as_str()) {
            return Err(KernelError::InvalidInput(format!(
                "kernel `{kernel}` takes no parameter `{name}` (it takes: {})",
                if spec.params.is_empty() {
                    "none".to_string()
                } else {
                    spec.params.join(", ")
                }
            )));
        }
        value.validate().map_err(|e| {
            KernelError::InvalidInput(format!("parameter `{name}`: {}", message(&e)))
        })?;
    }
    Ok(spec)
}

fn message(e: &KernelError) -> &str {
    match e {
        KernelError::InvalidInput(m) | KernelError::Domain(m) | KernelError::UnknownKernel(m) => m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kernel_fails_every_item() {
        let out = run("nope", &[], &[vec![], vec![]]);
        assert_eq!(out.len(), 2);
        assert!(matches!(&out[0], Err(KernelError::UnknownKernel(m)) if m.contains("nope")));
    }

    #[test]
    fn unknown_parameter_is_named() {
        let p = vec![("qq".to_string(), Tensor::vector(vec![1.0]))];
        let out = run("percentile", &p, &[vec![Tensor::vector(vec![1.0])]]);
        assert!(matches!(&out[0], Err(KernelError::InvalidInput(m)) if m.contains("`qq`")));
    }

    #[test]
    fn an_empty_batch_says_whether_the_call_is_taken() {
        let empty = Packed::default();
        let p = vec![("qq".to_string(), Tensor::vector(vec![1.0]))];
        let refused = run_packed("percentile", &p, empty.items());
        assert_eq!(refused.outputs.count, 0);
        assert!(
            matches!(&refused.failures[..], [(0, KernelError::InvalidInput(m))] if m.contains("`qq`"))
        );
        let q = vec![("q".to_string(), Tensor::vector(vec![50.0]))];
        assert!(
            run_packed("percentile", &q, empty.items())
                .failures
                .is_empty()
        );
        assert!(matches!(
            &run_packed("nope", &[], empty.items()).failures[..],
            [(0, KernelError::UnknownKernel(_))]
        ));
    }

    #[test]
    fn inconsistent_tensor_fails_only_its_item() {
        let bad = Tensor {
            shape: vec![3],
            data: vec![1.0],
        };
        let good = Tensor::vector(vec![0.0]);
        let out = run("norm_cdf", &[], &[vec![bad], vec![good]]);
        assert!(matches!(&out[0], Err(KernelError::InvalidInput(m)) if m.contains("input 0")));
        assert_eq!(out[1], Ok(Tensor::vector(vec![0.5])));
    }

    #[test]
    fn packed_and_owned_runs_agree() {
        let items = vec![
            vec![Tensor::vector(vec![0.0, 1.0])],
            vec![],
            vec![Tensor::new(vec![], vec![-1.0])],
        ];
        let mut packed = Packed::default();
        for item in &items {
            packed.push(item.iter().map(Tensor::view)).unwrap();
        }
        let out = run_packed("norm_cdf", &[], packed.items());
        let owned = run("norm_cdf", &[], &items);
        let mut read = out.outputs.items();
        let mut tensors = Vec::new();
        for (i, expected) in owned.iter().enumerate() {
            read.next_into(&mut tensors).unwrap().unwrap();
            match expected {
                Ok(t) => assert_eq!(tensors, vec![t.view()]),
                Err(e) => {
                    assert!(tensors.is_empty());
                    assert!(out.failures.contains(&(i as u32, e.clone())));
                }
            }
        }
        assert_eq!(out.failures.len(), 1);
    }

    #[test]
    fn names_are_unique() {
        for (i, k) in KERNELS.iter().enumerate() {
            assert!(
                KERNELS[i + 1..].iter().all(|o| o.name != k.name),
                "{}",
                k.name
            );
        }
    }
}
