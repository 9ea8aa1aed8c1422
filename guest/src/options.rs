//! European options under Black-Scholes (no dividends): prices, greeks and implied volatility.
//!
//! Items are fixed records. `is_call` must be exactly 1 (call) or 0 (put). A NaN anywhere in
//! the record gives NaN outputs, as NumPy arithmetic would; a non-positive S, K, T or sigma (or a
//! price with no volatility in [1e-6, 5] that reproduces it) is a per-item domain error. A price
//! within rounding of the price at either end of that range gives that end (for example 1e-6
//! for an option priced at its discounted intrinsic value), as SciPy's `brentq` does.

use crate::check::{domain, invalid, unreadable};
use crate::tensor::{KernelError, Params, TensorRef};
use crunch_abi::{BatchResults, Items};
use crunch_math::{F64x2, F64x4, Real};

/// The bracket in which `implied_vol` searches, as the reference (`brentq` on [1e-6, 5]).
const SIGMA_RANGE: (f64, f64) = (1e-6, 5.0);

/// The fields of a `black_scholes` item.
const BLACK_SCHOLES_FIELDS: &str = "S, K, T, r, sigma, is_call";
/// The fields of an `implied_vol` item.
const IMPLIED_VOL_FIELDS: &str = "price, S, K, T, r, is_call";

/// One option contract.
#[derive(Clone, Copy, Debug)]
struct Contract {
    s: f64,
    k: f64,
    t: f64,
    r: f64,
    call: bool,
}

/// What a record holds.
enum Record<T> {
    /// A contract to compute.
    Valid(T),
    /// A NaN somewhere: every output is NaN, as NumPy arithmetic would give.
    Nan,
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

    /// The contract and volatility of a `black_scholes` record.
    fn with_sigma(v: &[f64; 6]) -> Result<Record<(Self, f64)>, KernelError> {
        if v.iter().any(|x| x.is_nan()) {
            return Ok(Record::Nan);
        }
        let contract = Self::parse(v[0], v[1], v[2], v[3], v[5])?;
        let sigma = v[4];
        if sigma <= 0.0 || !sigma.is_finite() {
            return Err(domain(format!(
                "sigma must be positive and finite, got {sigma}"
            )));
        }
        Ok(Record::Valid((contract, sigma)))
    }

    /// The contract in both lanes, as the lane functions take it.
    fn lanes(&self) -> Lanes<F64x2> {
        let flag = F64x2::splat(f64::from(u8::from(self.call)));
        Lanes {
            s: F64x2::splat(self.s),
            k: F64x2::splat(self.k),
            t: F64x2::splat(self.t),
            r: F64x2::splat(self.r),
            call: Real::eq(flag, F64x2::splat(1.0)),
        }
    }

    /// The option price at volatility `sigma`, its vega, and the scale of the price's rounding
    /// error (the sum of the magnitudes of the two terms it is the difference of).
    fn price_vega(&self, sigma: f64) -> (f64, f64, f64) {
        let (price, vega, scale) = self.lanes().price_vega(F64x2::splat(sigma));
        (price.first(), vega.first(), scale.first())
    }
}

/// Contracts, one per lane.
#[derive(Clone, Copy)]
struct Lanes<V: Real> {
    s: V,
    k: V,
    t: V,
    r: V,
    call: V::Mask,
}

/// What the formulas share for a volatility: the normal CDF at ±d1 and ±d2, the density at d1,
/// the discounted strike and sqrt(T).
struct Terms<V> {
    n1: V,
    n1_neg: V,
    n2: V,
    n2_neg: V,
    density: V,
    discounted_k: V,
    sqrt_t: V,
}

impl<V: Real> Lanes<V> {
    #[inline(always)]
    fn terms(&self, sigma: V) -> Terms<V> {
        let sqrt_t = self.t.sqrt();
        let vol = sigma * sqrt_t;
        let drift = (self.r + V::splat(0.5) * sigma * sigma) * self.t;
        let d1 = (crunch_math::log(self.s / self.k) + drift) / vol;
        let d2 = d1 - vol;
        let discounted_k = self.k * crunch_math::exp(-(self.r * self.t));
        let (n1, n1_neg, density) = crunch_math::cdf_both_pdf(d1);
        let (n2, n2_neg) = crunch_math::cdf_both(d2);
        Terms {
            n1,
            n1_neg,
            n2,
            n2_neg,
            density,
            discounted_k,
            sqrt_t,
        }
    }

    /// The price, and the two terms it is the difference of (spot and strike legs).
    #[inline(always)]
    fn price(&self, x: &Terms<V>) -> (V, V, V) {
        let spot_leg = V::select(self.call, self.s * x.n1, self.s * x.n1_neg);
        let strike_leg = V::select(self.call, x.discounted_k * x.n2, x.discounted_k * x.n2_neg);
        let price = V::select(self.call, spot_leg - strike_leg, strike_leg - spot_leg);
        (price, spot_leg, strike_leg)
    }

    /// Price, vega and the rounding scale of the price.
    #[inline(always)]
    fn price_vega(&self, sigma: V) -> (V, V, V) {
        let x = self.terms(sigma);
        let (price, spot_leg, strike_leg) = self.price(&x);
        (price, self.s * x.density * x.sqrt_t, spot_leg + strike_leg)
    }

    /// [price, delta, gamma, vega, theta (per year), rho].
    #[inline(always)]
    fn greeks(&self, sigma: V) -> [V; 6] {
        let x = self.terms(sigma);
        let (price, _, _) = self.price(&x);
        let gamma = x.density / (self.s * sigma * x.sqrt_t);
        let vega = self.s * x.density * x.sqrt_t;
        let decay = -(self.s * x.density * sigma) / (V::splat(2.0) * x.sqrt_t);
        let rate = self.r * x.discounted_k;
        let call = self.call;
        [
            price,
            V::select(call, x.n1, -x.n1_neg),
            gamma,
            vega,
            V::select(call, decay - rate * x.n2, decay + rate * x.n2_neg),
            V::select(
                call,
                self.t * x.discounted_k * x.n2,
                -(self.t * x.discounted_k * x.n2_neg),
            ),
        ]
    }
}

/// The error for an item that is not one record of `len` values.
fn not_a_record(fields: &'static str, len: usize) -> impl Fn(&[TensorRef<'_>]) -> KernelError {
    move |item| match item {
        [t] => invalid(format!(
            "expected a 1-D tensor of {len} values [{fields}], got shape {:?}",
            t.shape
        )),
        _ => invalid(format!(
            "expected one input tensor [{fields}], got {}",
            item.len()
        )),
    }
}

/// `black_scholes`: [S, K, T, r, sigma, is_call] -> [price, delta, gamma, vega, theta, rho],
/// four contracts at a time (the last ones padded with a copy of the last).
pub fn black_scholes(_: Params<'_>, items: Items<'_>) -> BatchResults<KernelError> {
    crunch_abi::map_records(
        items,
        6,
        6,
        unreadable,
        not_a_record(BLACK_SCHOLES_FIELDS, 6),
        |records, outputs, fail| {
            let (records, _) = records.as_chunks::<6>();
            let (outputs, _) = outputs.as_chunks_mut::<6>();
            let mut at = 0;
            for (group, out) in records.chunks(4).zip(outputs.chunks_mut(4)) {
                let last = group[group.len() - 1];
                let r: [&[f64; 6]; 4] = core::array::from_fn(|i| group.get(i).unwrap_or(&last));
                let field = |f: usize| F64x4::load(&[r[0][f], r[1][f], r[2][f], r[3][f]]);
                let lanes = Lanes {
                    s: field(0),
                    k: field(1),
                    t: field(2),
                    r: field(3),
                    call: Real::eq(field(5), F64x4::splat(1.0)),
                };
                let greeks = lanes.greeks(field(4)).map(F64x4::to_array);
                for (lane, (record, out)) in group.iter().zip(out.iter_mut()).enumerate() {
                    match Contract::with_sigma(record) {
                        Ok(Record::Valid(_)) => *out = greeks.map(|g| g[lane]),
                        Ok(Record::Nan) => *out = [f64::NAN; 6],
                        Err(e) => fail(at + lane, e),
                    }
                }
                at += group.len();
            }
        },
    )
}

/// `implied_vol`: [price, S, K, T, r, is_call] -> [sigma] with sigma in [1e-6, 5].
///
/// Safeguarded Newton: Newton steps on the price, falling back to bisection of the bracket
/// whenever a step would leave it, to full double precision.
pub fn implied_vol(_: Params<'_>, items: Items<'_>) -> BatchResults<KernelError> {
    crunch_abi::map_records(
        items,
        6,
        1,
        unreadable,
        not_a_record(IMPLIED_VOL_FIELDS, 6),
        |records, outputs, fail| {
            let (records, _) = records.as_chunks::<6>();
            for (i, (v, out)) in records.iter().zip(outputs.iter_mut()).enumerate() {
                if v.iter().any(|x| x.is_nan()) {
                    *out = f64::NAN;
                    continue;
                }
                match Contract::parse(v[1], v[2], v[3], v[4], v[5])
                    .and_then(|contract| solve_sigma(&contract, v[0]))
                {
                    Ok(sigma) => *out = sigma,
                    Err(e) => fail(i, e),
                }
            }
        },
    )
}

fn solve_sigma(contract: &Contract, target: f64) -> Result<f64, KernelError> {
    let (mut lo, mut hi) = SIGMA_RANGE;
    let (p_lo, _, scale_lo) = contract.price_vega(lo);
    let (p_hi, _, scale_hi) = contract.price_vega(hi);
    // Prices within rounding noise of an end of the bracket (e.g. at intrinsic value, where
    // vega vanishes and a whole range of sigma reproduces the price) resolve to that end. The
    // noise is that of the price's own arithmetic: relative to the terms it is the difference
    // of, so a tiny out-of-the-money price still determines sigma.
    let noise = |scale: f64| 8.0 * f64::EPSILON * scale;
    let (noise_lo, noise_hi) = (noise(scale_lo), noise(scale_hi));
    if target < p_lo - noise_lo || target > p_hi + noise_hi {
        return Err(domain(format!(
            "price {target} is outside the prices reachable with sigma in [{lo}, {hi}] ({p_lo} to {p_hi})"
        )));
    }
    if target <= p_lo + noise_lo {
        return Ok(lo);
    }
    if target >= p_hi - noise_hi {
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
        let (price, vega, _) = contract.price_vega(sigma);
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
    use crate::registry::run;
    use crate::tensor::{KernelError, Tensor};

    fn one(kernel: &str, v: &[f64]) -> Result<Tensor, KernelError> {
        run(kernel, &[], &[vec![Tensor::vector(v.to_vec())]]).remove(0)
    }

    #[test]
    fn put_call_parity() {
        let (s, k, t, r, sig) = (100.0, 95.0, 0.5, 0.03, 0.25);
        let c = one("black_scholes", &[s, k, t, r, sig, 1.0]).unwrap();
        let p = one("black_scholes", &[s, k, t, r, sig, 0.0]).unwrap();
        let parity = s - k * libm::exp(-r * t);
        assert!((c.data[0] - p.data[0] - parity).abs() < 1e-12);
        assert!((c.data[1] - p.data[1] - 1.0).abs() < 1e-15);
    }

    #[test]
    fn a_pair_computes_as_each_contract_alone() {
        let contracts = [
            [100.0, 95.0, 0.5, 0.03, 0.25, 1.0],
            [80.0, 120.0, 2.0, 0.01, 0.6, 0.0],
            [150.0, 60.0, 0.05, 0.0, 0.05, 1.0],
        ];
        let items: Vec<Vec<Tensor>> = contracts
            .iter()
            .map(|c| vec![Tensor::vector(c.to_vec())])
            .collect();
        let together = run("black_scholes", &[], &items);
        for (c, out) in contracts.iter().zip(together) {
            let alone = one("black_scholes", c).unwrap();
            let bits = |t: &Tensor| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&out.unwrap()), bits(&alone));
        }
    }

    #[test]
    fn implied_vol_round_trips() {
        for &(sig, call) in &[(0.05, 1.0), (0.3, 0.0), (1.7, 1.0)] {
            let g = one("black_scholes", &[100.0, 120.0, 1.0, 0.01, sig, call]).unwrap();
            let iv = one("implied_vol", &[g.data[0], 100.0, 120.0, 1.0, 0.01, call]).unwrap();
            assert!((iv.data[0] - sig).abs() < 1e-9, "{sig}: {}", iv.data[0]);
        }
    }

    #[test]
    fn a_tiny_out_of_the_money_price_still_determines_sigma() {
        // A deep out-of-the-money put: mpmath (50 digits) gives sigma = 0.07527288985612975, as
        // brentq on [1e-6, 5] does.
        let (s, k, t, r) = (228.127, 167.459, 0.2191, 0.04513);
        let iv = one("implied_vol", &[5.035e-20, s, k, t, r, 0.0])
            .unwrap()
            .data[0];
        assert!((iv / 0.075_272_889_856_129_75 - 1.0).abs() < 1e-9, "{iv}");
        let price = one("black_scholes", &[s, k, t, r, iv, 0.0]).unwrap().data[0];
        assert!((price / 5.035e-20 - 1.0).abs() < 1e-9, "{price:e}");
        // At intrinsic value (vega vanishes) the price still resolves to the bracket's end.
        let at_intrinsic = 100.0 - 50.0 * libm::exp(-0.01);
        let iv = one("implied_vol", &[at_intrinsic, 100.0, 50.0, 1.0, 0.01, 1.0]).unwrap();
        assert_eq!(iv.data[0], 1e-6);
    }

    #[test]
    fn bad_records_are_errors_of_their_item_alone() {
        let short = one("black_scholes", &[1.0, 2.0]);
        assert!(matches!(short, Err(KernelError::InvalidInput(m)) if m.contains("6 values")));
        let flag = one("black_scholes", &[100.0, 100.0, 1.0, 0.0, 0.2, 2.0]);
        assert!(matches!(flag, Err(KernelError::InvalidInput(m)) if m.contains("is_call")));
        let neg = one("black_scholes", &[-1.0, 100.0, 1.0, 0.0, 0.2, 1.0]);
        assert!(matches!(neg, Err(KernelError::Domain(m)) if m.contains("S must")));
        let cheap = one("implied_vol", &[0.0, 100.0, 50.0, 1.0, 0.0, 1.0]);
        assert!(matches!(cheap, Err(KernelError::Domain(m)) if m.contains("outside")));
        let nan = one("black_scholes", &[f64::NAN, 100.0, 1.0, 0.0, 0.2, 1.0]).unwrap();
        assert!(nan.data.iter().all(|x| x.is_nan()));
        let good = [100.0, 100.0, 1.0, 0.0, 0.2, 1.0];
        let items: Vec<Vec<Tensor>> = [&good[..], &[-1.0, 100.0, 1.0, 0.0, 0.2, 1.0], &good]
            .iter()
            .map(|v| vec![Tensor::vector(v.to_vec())])
            .collect();
        let out = run("black_scholes", &[], &items);
        assert!(out[0].is_ok() && out[1].is_err() && out[0] == out[2]);
    }
}
