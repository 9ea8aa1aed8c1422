//! The risk kernels as plain functions of (shape, data) pairs.

/// What `var` computes, as `crunch kernels` shows it.
#[cfg(not(feature = "v2"))]
pub const VAR_SUMMARY: &str =
    "[returns (n x a), weights (a)] with param confidence -> [historical VaR]";
/// What `var` computes, as `crunch kernels` shows it.
#[cfg(feature = "v2")]
pub const VAR_SUMMARY: &str =
    "[returns (n x a), weights (a)] with param confidence -> [historical VaR, expected shortfall]";

/// Historical value-at-risk of a portfolio: item `[returns (n x a), weights (a)]`; the loss not
/// exceeded with probability `confidence` over the n scenarios (positive = loss). Version 2
/// also returns the expected shortfall (mean loss beyond the VaR).
pub fn var(item: &[(Vec<u32>, Vec<f64>)], confidence: f64) -> Result<Vec<f64>, String> {
    let [(r_shape, returns), (w_shape, weights)] = item else {
        return Err(format!(
            "expected 2 inputs (returns, weights), got {}",
            item.len()
        ));
    };
    let [n, a] = r_shape[..] else {
        return Err(format!("returns must be n x a, got shape {r_shape:?}"));
    };
    if w_shape[..] != [a] || n == 0 {
        return Err(format!(
            "weights must have {a} values and returns at least one row; got {w_shape:?}, {n} rows"
        ));
    }
    if !(0.0..1.0).contains(&confidence) {
        return Err(format!("confidence must be in [0, 1), got {confidence}"));
    }
    let mut losses: Vec<f64> = returns
        .chunks_exact(a as usize)
        .map(|row| -row.iter().zip(weights).map(|(r, w)| r * w).sum::<f64>())
        .collect();
    losses.sort_by(f64::total_cmp);
    let index = ((confidence * n as f64).ceil() as usize).clamp(1, n as usize) - 1;
    let var = losses[index];
    if cfg!(feature = "v2") {
        let tail = &losses[index..];
        let shortfall = tail.iter().sum::<f64>() / tail.len() as f64;
        Ok(vec![var, shortfall])
    } else {
        Ok(vec![var])
    }
}

/// Moving-average crossover: item `[prices (n)]`; counts the times the `fast` moving average
/// crosses the `slow` one and reports the final signal (1 fast above, -1 below, 0 unknown).
pub fn ma_crossover(
    item: &[(Vec<u32>, Vec<f64>)],
    fast: f64,
    slow: f64,
) -> Result<Vec<f64>, String> {
    let [(_, prices)] = item else {
        return Err(format!("expected 1 input (prices), got {}", item.len()));
    };
    let (fast, slow) = (fast as usize, slow as usize);
    if fast == 0 || slow <= fast {
        return Err(format!(
            "need 0 < fast < slow, got fast {fast}, slow {slow}"
        ));
    }
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
    Ok(vec![crossings, last])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_of_a_simple_portfolio() {
        // Ten scenarios of one asset with weight 1: losses 1..=10.
        let returns: Vec<f64> = (1..=10).map(|i| -(i as f64)).collect();
        let out = var(&[(vec![10, 1], returns), (vec![1], vec![1.0])], 0.9).unwrap();
        assert_eq!(out[0], 9.0);
        assert!(var(&[(vec![10], vec![0.0; 10]), (vec![1], vec![1.0])], 0.9).is_err());
    }

    #[test]
    fn crossover_counts_sign_changes() {
        let prices = [1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0, 2.0, 3.0, 4.0];
        let out = ma_crossover(&[(vec![10], prices.to_vec())], 1.0, 3.0).unwrap();
        assert_eq!(out, vec![2.0, 1.0]);
    }
}
