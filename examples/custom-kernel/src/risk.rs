//! The risk kernels: plain Rust functions of the call's parameters and one item's tensors.

use crunch_abi::{KernelError, Params, Tensor, TensorRef};

/// What `var` computes, as `crunch kernels` shows it.
#[cfg(not(feature = "v2"))]
pub const VAR_SUMMARY: &str =
    "[returns (n x a), weights (a)] with param confidence -> [historical VaR]";
/// What `var` computes, as `crunch kernels` shows it.
#[cfg(feature = "v2")]
pub const VAR_SUMMARY: &str =
    "[returns (n x a), weights (a)] with param confidence -> [historical VaR, expected shortfall]";

/// Historical value-at-risk of a portfolio: item `[returns (n x a), weights (a)]`; the loss not
/// exceeded with probability `confidence` (default 0.99) over the n scenarios (positive =
/// loss). Version 2 also returns the expected shortfall (mean loss beyond the VaR).
pub fn var(params: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
    let confidence = params.number_or("confidence", 0.99)?;
    let [returns, weights] = item else {
        return Err(invalid(format!(
            "expected 2 inputs (returns, weights), got {}",
            item.len()
        )));
    };
    let [n, a] = returns.shape[..] else {
        return Err(invalid(format!(
            "returns must be n x a, got shape {:?}",
            returns.shape
        )));
    };
    if weights.shape[..] != [a] || n == 0 {
        return Err(invalid(format!(
            "weights must have {a} values and returns at least one row; got {:?}, {n} rows",
            weights.shape
        )));
    }
    if !(0.0..1.0).contains(&confidence) {
        return Err(invalid(format!(
            "confidence must be in [0, 1), got {confidence}"
        )));
    }
    let mut losses: Vec<f64> = returns
        .data
        .chunks_exact(a as usize)
        .map(|row| {
            -row.iter()
                .zip(weights.data)
                .map(|(r, w)| r * w)
                .sum::<f64>()
        })
        .collect();
    losses.sort_by(f64::total_cmp);
    let index = ((confidence * n as f64).ceil() as usize).clamp(1, n as usize) - 1;
    let var = losses[index];
    if cfg!(feature = "v2") {
        let tail = &losses[index..];
        let shortfall = tail.iter().sum::<f64>() / tail.len() as f64;
        Ok(Tensor::vector(vec![var, shortfall]))
    } else {
        Ok(Tensor::vector(vec![var]))
    }
}

/// Moving-average crossover: item `[prices (n)]`; counts the times the `fast` (default 5)
/// moving average crosses the `slow` (default 20) one and reports the final signal (1 fast
/// above, -1 below, 0 unknown).
pub fn ma_crossover(params: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
    let fast = params.number_or("fast", 5.0)? as usize;
    let slow = params.number_or("slow", 20.0)? as usize;
    let [prices] = item else {
        return Err(invalid(format!(
            "expected 1 input (prices), got {}",
            item.len()
        )));
    };
    if fast == 0 || slow <= fast {
        return Err(invalid(format!(
            "need 0 < fast < slow, got fast {fast}, slow {slow}"
        )));
    }
    let prices = prices.data;
    let mean =
        |end: usize, len: usize| prices[end + 1 - len..=end].iter().sum::<f64>() / len as f64;
    let (mut crossings, mut last) = (0.0, 0.0);
    for end in slow.saturating_sub(1)..prices.len() {
        let signal = if mean(end, fast) > mean(end, slow) {
            1.0
        } else {
            -1.0
        };
        if last != 0.0 && signal != last {
            crossings += 1.0;
        }
        last = signal;
    }
    Ok(Tensor::vector(vec![crossings, last]))
}

fn invalid(message: String) -> KernelError {
    KernelError::InvalidInput(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: Vec<u32>, data: Vec<f64>) -> Tensor {
        Tensor::new(shape, data)
    }

    #[test]
    fn var_of_a_simple_portfolio() {
        // Ten scenarios of one asset with weight 1: losses 1..=10.
        let returns = t(vec![10, 1], (1..=10).map(|i| -(i as f64)).collect());
        let weights = t(vec![1], vec![1.0]);
        let confidence = [("confidence".to_string(), t(vec![], vec![0.9]))];
        let params = Params(&confidence);
        let out = var(params, &[returns.view(), weights.view()]).unwrap();
        assert_eq!(out.data[0], 9.0);
        let flat = t(vec![10], vec![0.0; 10]);
        assert!(var(params, &[flat.view(), weights.view()]).is_err());
    }

    #[test]
    fn crossover_counts_sign_changes() {
        let prices = t(
            vec![10],
            vec![1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0, 2.0, 3.0, 4.0],
        );
        let windows = [
            ("fast".to_string(), t(vec![], vec![1.0])),
            ("slow".to_string(), t(vec![], vec![3.0])),
        ];
        let out = ma_crossover(Params(&windows), &[prices.view()]).unwrap();
        assert_eq!(out.data, vec![2.0, 1.0]);
    }

    #[test]
    fn the_table_refuses_an_unknown_parameter() {
        let prices = t(vec![3], vec![1.0, 2.0, 3.0]);
        let typo = [("confidnce".to_string(), t(vec![], vec![0.9]))];
        let out = crunch_abi::run(crate::KERNELS, "var", &typo, &[vec![prices]]);
        assert!(matches!(&out[0], Err(KernelError::InvalidInput(m)) if m.contains("`confidnce`")));
    }
}
