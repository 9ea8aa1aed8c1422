//! The standard pack's table of kernels, which the component exports (`export_pack!` in
//! lib.rs), and the same calls for native callers and tests.

use crate::tensor::{KernelError, Tensor};
use crate::{interp, linalg, normal, options, signal, stats};
use crunch_abi::{BatchResults, Compute, Items, Kernel};

/// Every kernel of the standard pack, in the order `list` reports them.
pub const KERNELS: &[Kernel] = &[
    Kernel {
        name: "describe",
        summary: "[x (n)] -> [nobs, min, max, mean, variance (ddof=1), skewness, kurtosis (Fisher)], as scipy.stats.describe",
        params: &[],
        compute: Compute::Item(stats::describe),
    },
    Kernel {
        name: "percentile",
        summary: "[x (n)] with param q (percentages in [0, 100]) -> percentiles of x, shaped like q, as numpy.percentile (linear)",
        params: &["q"],
        compute: Compute::Item(stats::percentile),
    },
    Kernel {
        name: "norm_cdf",
        summary: "[x (any shape)] -> standard normal CDF elementwise, as scipy.stats.norm.cdf",
        params: &[],
        compute: Compute::BatchInPlace(normal::cdf_batch),
    },
    Kernel {
        name: "norm_ppf",
        summary: "[p (any shape)] -> standard normal quantile elementwise, as scipy.stats.norm.ppf",
        params: &[],
        compute: Compute::BatchInPlace(normal::ppf_batch),
    },
    Kernel {
        name: "black_scholes",
        summary: "[S, K, T, r, sigma, is_call] -> [price, delta, gamma, vega, theta (per year), rho], European, no dividends",
        params: &[],
        compute: Compute::BatchInPlace(options::black_scholes),
    },
    Kernel {
        name: "implied_vol",
        summary: "[price, S, K, T, r, is_call] -> [sigma], Black-Scholes implied volatility in [1e-6, 5]",
        params: &[],
        compute: Compute::Batch(options::implied_vol),
    },
    Kernel {
        name: "ols",
        summary: "[X (n x p), y (n)] -> least-squares coefficients (p), as numpy.linalg.lstsq for full-rank X",
        params: &[],
        compute: Compute::Item(linalg::ols),
    },
    Kernel {
        name: "fft_power",
        summary: "[x (n)] -> power spectrum |rfft(x)|^2 (n/2 + 1), any length",
        params: &[],
        compute: Compute::BatchInPlace(signal::fft_power_in_place),
    },
    Kernel {
        name: "cubic_spline",
        summary: "[x (n), y (n), xq (m)] -> natural cubic spline through (x, y) evaluated at xq, as scipy CubicSpline(bc_type='natural')",
        params: &[],
        compute: Compute::Item(interp::cubic_spline),
    },
    Kernel {
        name: "matmul",
        summary: "[A (m x k), B (k x n)] -> A @ B (m x n)",
        params: &[],
        compute: Compute::Item(linalg::matmul),
    },
    Kernel {
        name: "convolve",
        summary: "[x (n), w (m)] -> numpy.convolve(x, w, mode='valid')",
        params: &[],
        compute: Compute::BatchInPlace(signal::convolve_in_place),
    },
    Kernel {
        name: "corrcoef",
        summary: "[X (n x p)] -> Pearson correlation of the columns (p x p), as numpy.corrcoef(X, rowvar=False)",
        params: &[],
        compute: Compute::Item(stats::corrcoef),
    },
];

/// Runs `kernel` on every item, one result per item in order: the form native callers and
/// tests use (see [`crunch_abi::run`]).
pub fn run(
    kernel: &str,
    params: &[(String, Tensor)],
    items: &[Vec<Tensor>],
) -> Vec<Result<Tensor, KernelError>> {
    crunch_abi::run(KERNELS, kernel, params, items)
}

/// Runs `kernel` on every item of a batch in the wire layout, reading the inputs in place: what the
/// component's `run` does (see [`crunch_abi::run_wire`]).
pub fn run_wire(
    kernel: &str,
    params: &[(String, Tensor)],
    items: Items<'_>,
) -> BatchResults<KernelError> {
    crunch_abi::run_wire(KERNELS, kernel, params, items)
}

#[cfg(test)]
mod tests {
    use super::*;

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
