//! The pack's table of kernels and the batch entry point that the component exports.

use crate::tensor::{KernelError, Params, Tensor};
use crate::{interp, linalg, normal, options, signal, stats};

/// One kernel: its name, what it computes, the parameters it accepts, and its code.
#[derive(Clone, Copy)]
pub struct KernelSpec {
    /// The name callers use, e.g. `black_scholes`.
    pub name: &'static str,
    /// One line: inputs, output and the NumPy/SciPy call it matches.
    pub summary: &'static str,
    /// The parameter names the kernel accepts; any other name is an error.
    pub params: &'static [&'static str],
    /// Computes one item.
    pub compute: fn(Params<'_>, &[Tensor]) -> Result<Tensor, KernelError>,
}

/// Every kernel of the standard pack, in the order `list` reports them.
pub const KERNELS: &[KernelSpec] = &[
    KernelSpec {
        name: "describe",
        summary: "[x (n)] -> [nobs, min, max, mean, variance (ddof=1), skewness, kurtosis (Fisher)], as scipy.stats.describe",
        params: &[],
        compute: stats::describe,
    },
    KernelSpec {
        name: "percentile",
        summary: "[x (n)] with param q (percentages in [0, 100]) -> percentiles of x, shaped like q, as numpy.percentile (linear)",
        params: &["q"],
        compute: stats::percentile,
    },
    KernelSpec {
        name: "norm_cdf",
        summary: "[x (any shape)] -> standard normal CDF elementwise, as scipy.stats.norm.cdf",
        params: &[],
        compute: normal::cdf_kernel,
    },
    KernelSpec {
        name: "norm_ppf",
        summary: "[p (any shape)] -> standard normal quantile elementwise, as scipy.stats.norm.ppf",
        params: &[],
        compute: normal::ppf_kernel,
    },
    KernelSpec {
        name: "black_scholes",
        summary: "[S, K, T, r, sigma, is_call] -> [price, delta, gamma, vega, theta (per year), rho], European, no dividends",
        params: &[],
        compute: options::black_scholes,
    },
    KernelSpec {
        name: "implied_vol",
        summary: "[price, S, K, T, r, is_call] -> [sigma], Black-Scholes implied volatility in [1e-6, 5]",
        params: &[],
        compute: options::implied_vol,
    },
    KernelSpec {
        name: "ols",
        summary: "[X (n x p), y (n)] -> least-squares coefficients (p), as numpy.linalg.lstsq for full-rank X",
        params: &[],
        compute: linalg::ols,
    },
    KernelSpec {
        name: "fft_power",
        summary: "[x (n)] -> power spectrum |rfft(x)|^2 (n/2 + 1), any length",
        params: &[],
        compute: signal::fft_power,
    },
    KernelSpec {
        name: "cubic_spline",
        summary: "[x (n), y (n), xq (m)] -> natural cubic spline through (x, y) evaluated at xq, as scipy CubicSpline(bc_type='natural')",
        params: &[],
        compute: interp::cubic_spline,
    },
    KernelSpec {
        name: "matmul",
        summary: "[A (m x k), B (k x n)] -> A @ B (m x n)",
        params: &[],
        compute: linalg::matmul,
    },
    KernelSpec {
        name: "convolve",
        summary: "[x (n), w (m)] -> numpy.convolve(x, w, mode='valid')",
        params: &[],
        compute: signal::convolve,
    },
    KernelSpec {
        name: "corrcoef",
        summary: "[X (n x p)] -> Pearson correlation of the columns (p x p), as numpy.corrcoef(X, rowvar=False)",
        params: &[],
        compute: stats::corrcoef,
    },
];

/// Runs `kernel` on every item, one result per item in order.
///
/// An unknown kernel or parameter fails every item with the same error; a malformed tensor or a
/// kernel error fails only its item.
pub fn run(
    kernel: &str,
    params: &[(String, Tensor)],
    items: &[Vec<Tensor>],
) -> Vec<Result<Tensor, KernelError>> {
    match prepare(kernel, params) {
        Ok(spec) => items
            .iter()
            .map(|item| run_item(spec, Params(params), item))
            .collect(),
        Err(e) => vec![Err(e); items.len()],
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

fn run_item(spec: &KernelSpec, params: Params<'_>, item: &[Tensor]) -> Result<Tensor, KernelError> {
    for (i, t) in item.iter().enumerate() {
        t.validate()
            .map_err(|e| KernelError::InvalidInput(format!("input {i}: {}", message(&e))))?;
    }
    (spec.compute)(params, item)
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
