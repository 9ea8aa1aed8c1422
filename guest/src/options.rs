//! European options under Black-Scholes (no dividends): prices, greeks and implied volatility.
//!
//! Items are fixed records. `is_call` must be exactly 1 (call) or 0 (put). A NaN anywhere in
//! the record gives NaN outputs, as NumPy arithmetic would; a non-positive S, K, T or sigma (or a
//! price with no volatility in [1e-6, 5] that reproduces it) is a per-item domain error. A price
//! within rounding of the price at either end of that range gives that end (for example 1e-6
//! for an option priced at its discounted intrinsic value), as SciPy's `brentq` does.

use crate::check::{self, domain, invalid};
use crate::normal::{cdf, pdf};
use crate::tensor::{KernelError, Params, Tensor, TensorRef};

/// The bracket in which `implied_vol` searches, as the reference (`brentq` on [1e-6, 5]).
const SIGMA_RANGE: (f64, f64) = (1e-6, 5.0);

/// One option contract with a volatility.
#[derive(Clone, Copy, Debug)]
struct Contract {
    s: f64,
    k: f64,
    t: f64,
    r: f64,
    call: bool,
}

impl Contract {
    /// Reads S, K, T, r and the call flag, checking the domain.
    fn parse(s: f64, k: f64, t: f64, r: f64, is_call: f64) -> Result<Self, KernelError> {
        let call = match is_call {
            1.0 => true,
            0.0 => false,
            other => return Err(invalid(format!("is_call must be 1 or 0, got {other}"))),
        };
        for (name, v) in [("S", s), ("K", k), ("T", t)] {
            if v <= 0.0 || !v.is_finite() {
                return Err(domain(format!(
                    "{name} must be positive and finite, got {v}"
                )));
            }
        }
        if !r.is_finite() {
            return Err(domain(format!("r must be finite, got {r}")));
        }
        Ok(Self { s, k, t, r, call })
    }

    /// d1, d2, the discounted strike and sqrt(T) for volatility `sigma`.
    fn terms(&self, sigma: f64) -> (f64, f64, f64, f64) {
        let sqrt_t = self.t.sqrt();
        let vol = sigma * sqrt_t;
        let d1 = (libm::log(self.s / self.k) + (self.r + 0.5 * sigma * sigma) * self.t) / vol;
        let d2 = d1 - vol;
        let discounted_k = self.k * libm::exp(-self.r * self.t);
        (d1, d2, discounted_k, sqrt_t)
    }

    /// The option price and its vega.
    fn price_vega(&self, sigma: f64) -> (f64, f64) {
        let (d1, d2, dk, sqrt_t) = self.terms(sigma);
        let price = if self.call {
            self.s * cdf(d1) - dk * cdf(d2)
        } else {
            dk * cdf(-d2) - self.s * cdf(-d1)
        };
        (price, self.s * pdf(d1) * sqrt_t)
    }

    /// [price, delta, gamma, vega, theta (per year), rho].
    fn greeks(&self, sigma: f64) -> [f64; 6] {
        let (d1, d2, dk, sqrt_t) = self.terms(sigma);
        let density = pdf(d1);
        let gamma = density / (self.s * sigma * sqrt_t);
        let vega = self.s * density * sqrt_t;
        let decay = -self.s * density * sigma / (2.0 * sqrt_t);
        if self.call {
            let n2 = cdf(d2);
            [
                self.s * cdf(d1) - dk * n2,
                cdf(d1),
                gamma,
                vega,
                decay - self.r * dk * n2,
                self.t * dk * n2,
            ]
        } else {
            let n2 = cdf(-d2);
            [
                dk * n2 - self.s * cdf(-d1),
                -cdf(-d1),
                gamma,
                vega,
                decay + self.r * dk * n2,
                -self.t * dk * n2,
            ]
        }
    }
}

/// `black_scholes`: [S, K, T, r, sigma, is_call] -> [price, delta, gamma, vega, theta, rho].
pub fn black_scholes(_: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
    let v = check::record(item, "S, K, T, r, sigma, is_call", 6)?;
    if v.iter().any(|x| x.is_nan()) {
        return Ok(Tensor::vector(vec![f64::NAN; 6]));
    }
    let contract = Contract::parse(v[0], v[1], v[2], v[3], v[5])?;
    let sigma = v[4];
    if sigma <= 0.0 || !sigma.is_finite() {
        return Err(domain(format!(
            "sigma must be positive and finite, got {sigma}"
        )));
    }
    Ok(Tensor::vector(contract.greeks(sigma).to_vec()))
}

/// `implied_vol`: [price, S, K, T, r, is_call] -> [sigma] with sigma in [1e-6, 5].
///
/// Safeguarded Newton: Newton steps on the price, falling back to bisection of the bracket
/// whenever a step would leave it, to full double precision.
pub fn implied_vol(_: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
    let v = check::record(item, "price, S, K, T, r, is_call", 6)?;
    if v.iter().any(|x| x.is_nan()) {
        return Ok(Tensor::vector(vec![f64::NAN]));
    }
    let target = v[0];
    let contract = Contract::parse(v[1], v[2], v[3], v[4], v[5])?;
    solve_sigma(&contract, target).map(|s| Tensor::vector(vec![s]))
}

fn solve_sigma(contract: &Contract, target: f64) -> Result<f64, KernelError> {
    let (mut lo, mut hi) = SIGMA_RANGE;
    let (p_lo, _) = contract.price_vega(lo);
    let (p_hi, _) = contract.price_vega(hi);
    // Prices within rounding noise of an end of the bracket (e.g. at intrinsic value, where
    // vega vanishes and a whole range of sigma reproduces the price) resolve to that end.
    let noise = 8.0 * f64::EPSILON * (contract.s + contract.k);
    if target < p_lo - noise || target > p_hi + noise {
        return Err(domain(format!(
            "price {target} is outside the prices reachable with sigma in [{lo}, {hi}] ({p_lo} to {p_hi})"
        )));
    }
    if target <= p_lo + noise {
        return Ok(lo);
    }
    if target >= p_hi - noise {
        return Ok(hi);
    }
    // Brenner-Subrahmanyam start, kept inside the bracket.
    let guess = (2.0 * core::f64::consts::PI / contract.t).sqrt() * target / contract.s;
    let mut sigma = if guess > lo && guess < hi {
        guess
    } else {
        0.5 * (lo + hi)
    };
    for _ in 0..200 {
        let (price, vega) = contract.price_vega(sigma);
        let diff = price - target;
        if diff == 0.0 {
            return Ok(sigma);
        }
        if diff < 0.0 {
            lo = sigma;
        } else {
            hi = sigma;
        }
        let newton = sigma - diff / vega;
        let next = if newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if (next - sigma).abs() <= 2.0 * f64::EPSILON * sigma || hi - lo <= 2.0 * f64::EPSILON * hi
        {
            return Ok(next);
        }
        sigma = next;
    }
    Ok(sigma)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::views;

    fn item(v: &[f64]) -> Vec<Tensor> {
        vec![Tensor::vector(v.to_vec())]
    }

    #[test]
    fn put_call_parity() {
        let (s, k, t, r, sig) = (100.0, 95.0, 0.5, 0.03, 0.25);
        let c = black_scholes(Params(&[]), &views(&item(&[s, k, t, r, sig, 1.0]))).unwrap();
        let p = black_scholes(Params(&[]), &views(&item(&[s, k, t, r, sig, 0.0]))).unwrap();
        let parity = s - k * libm::exp(-r * t);
        assert!((c.data[0] - p.data[0] - parity).abs() < 1e-12);
        assert!((c.data[1] - p.data[1] - 1.0).abs() < 1e-15);
    }

    #[test]
    fn implied_vol_round_trips() {
        for &(sig, call) in &[(0.05, 1.0), (0.3, 0.0), (1.7, 1.0)] {
            let g = black_scholes(
                Params(&[]),
                &views(&item(&[100.0, 120.0, 1.0, 0.01, sig, call])),
            )
            .unwrap();
            let iv = implied_vol(
                Params(&[]),
                &views(&item(&[g.data[0], 100.0, 120.0, 1.0, 0.01, call])),
            )
            .unwrap();
            assert!((iv.data[0] - sig).abs() < 1e-9, "{sig}: {}", iv.data[0]);
        }
    }

    #[test]
    fn bad_records_are_errors() {
        let short = black_scholes(Params(&[]), &views(&item(&[1.0, 2.0])));
        assert!(matches!(short, Err(KernelError::InvalidInput(_))));
        let flag = black_scholes(
            Params(&[]),
            &views(&item(&[100.0, 100.0, 1.0, 0.0, 0.2, 2.0])),
        );
        assert!(matches!(flag, Err(KernelError::InvalidInput(m)) if m.contains("is_call")));
        let neg = black_scholes(
            Params(&[]),
            &views(&item(&[-1.0, 100.0, 1.0, 0.0, 0.2, 1.0])),
        );
        assert!(matches!(neg, Err(KernelError::Domain(m)) if m.contains("S must")));
        let cheap = implied_vol(
            Params(&[]),
            &views(&item(&[0.0, 100.0, 50.0, 1.0, 0.0, 1.0])),
        );
        assert!(matches!(cheap, Err(KernelError::Domain(m)) if m.contains("outside")));
        let nan = black_scholes(
            Params(&[]),
            &views(&item(&[f64::NAN, 100.0, 1.0, 0.0, 0.2, 1.0])),
        )
        .unwrap();
        assert!(nan.data.iter().all(|x| x.is_nan()));
    }
}
