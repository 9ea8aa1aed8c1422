//! European options under Black-Scholes (no dividends): prices, greeks and implied volatility.
//!
//! Items are fixed records. `is_call` must be exactly 1 (call) or 0 (put). A NaN anywhere in
//! the record gives NaN outputs, as NumPy arithmetic would; a non-positive S, K, T or sigma (or a
//! price with no volatility in [1e-6, 5] that reproduces it) is a per-item domain error. A price
//! within rounding of the price at either end of that range gives that end (for example 1e-6
//! for an option priced at its discounted intrinsic value), as SciPy's `brentq` does.

use crate::check::{domain, invalid, unreadable};
use crate::tensor::{KernelError, Params, TensorRef};
use crunch_abi::{BatchResults, Items, ItemsMut};
use crunch_math::{F64x2, F64x4, Mask4, Real};

/// The bracket in which `implied_vol` searches, as the reference (`brentq` on [1e-6, 5]).
const SIGMA_RANGE: (f64, f64) = (1e-6, 5.0);

/// The fields of a `black_scholes` item.
const BLACK_SCHOLES_FIELDS: &str = "S, K, T, r, sigma, is_call";
/// The fields of an `implied_vol` item.
const IMPLIED_VOL_FIELDS: &str = "price, S, K, T, r, is_call";

/// One option contract's checked S and T (the rest is checked, then read in lanes).
#[derive(Clone, Copy, Debug)]
struct Contract {
    s: f64,
    t: f64,
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
        if is_call != 1.0 && is_call != 0.0 {
            return Err(invalid(format!("is_call must be 1 or 0, got {is_call}")));
        }
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
        Ok(Self { s, t })
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
}

/// Contracts, one per lane, with what their prices share at every volatility.
#[derive(Clone, Copy)]
struct Lanes<V: Real> {
    s: V,
    t: V,
    r: V,
    call: V::Mask,
    /// log(S / K).
    log_moneyness: V,
    /// K exp(-r T).
    discounted_k: V,
    /// S / (K exp(-r T)): exp(-d2²/2) = exp(-d1²/2) times this, at every volatility.
    forward_moneyness: V,
    /// sqrt(T).
    sqrt_t: V,
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
    fn new(s: V, k: V, t: V, r: V, call: V::Mask) -> Self {
        let discounted_k = k * crunch_math::exp(-(r * t));
        Self {
            s,
            t,
            r,
            call,
            log_moneyness: crunch_math::log(s / k),
            discounted_k,
            forward_moneyness: s / discounted_k,
            sqrt_t: t.sqrt(),
        }
    }

    #[inline(always)]
    fn terms(&self, sigma: V) -> Terms<V> {
        let sqrt_t = self.sqrt_t;
        let vol = sigma * sqrt_t;
        let drift = (self.r + V::splat(0.5) * sigma * sigma) * self.t;
        let d1 = (self.log_moneyness + drift) / vol;
        let d2 = d1 - vol;
        let discounted_k = self.discounted_k;
        let (n1, n1_neg, e1) = crunch_math::cdf_both_exp(d1);
        // S φ(d1) = K exp(-rT) φ(d2) gives exp(-d2²/2) from exp(-d1²/2) with one product, as
        // accurate as computing it (both inherit the rounding of d1). Not in a lane where
        // exp(-d1²/2) is subnormal or 0 (d1 beyond ±37.5) or the ratio overflows: that lane
        // computes it from d2, so a lane's bits never depend on the other lanes.
        let e2 = e1 * self.forward_moneyness;
        let identity_holds =
            e1.ge(V::splat(f64::MIN_POSITIVE)) & self.forward_moneyness.lt(V::splat(f64::INFINITY));
        let e2 = if V::all(identity_holds) {
            e2
        } else {
            V::select(identity_holds, e2, crunch_math::exp_minus_half_square(d2))
        };
        let (n2, n2_neg) = crunch_math::cdf_both_given_exp(d2, e2);
        let density = e1 * V::splat(crunch_math::FRAC_1_SQRT_2PI);
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

/// Up to four records, one per lane; a short group is padded with copies of its last record.
fn padded(group: &[[f64; 6]]) -> [&[f64; 6]; 4] {
    let last = &group[group.len() - 1];
    core::array::from_fn(|i| group.get(i).unwrap_or(last))
}

/// The six fields of four records, one record per lane: `fields[f]` holds field `f` of each.
/// Three pair loads per record and two shuffles per pair of fields (a lane set from one value
/// is a move through an integer register and an insert in the component).
fn fields(records: &[&[f64; 6]; 4]) -> [F64x4; 6] {
    let pairs = records.map(|r| {
        let [a, b, c, d, e, f] = *r;
        [
            F64x2::load(&[a, b]),
            F64x2::load(&[c, d]),
            F64x2::load(&[e, f]),
        ]
    });
    let two = |a: &[F64x2], b: &[F64x2]| -> [F64x2; 6] {
        core::array::from_fn(|f| match f % 2 {
            0 => a[f / 2].zip_low(b[f / 2]),
            _ => a[f / 2].zip_high(b[f / 2]),
        })
    };
    let (low, high) = (two(&pairs[0], &pairs[1]), two(&pairs[2], &pairs[3]));
    core::array::from_fn(|f| F64x4(low[f], high[f]))
}

/// Writes the six values of each lane of `values` (one vector per value) to the record of that
/// lane: the inverse of [`fields`], with shuffles and pair stores.
fn store_fields(values: &[F64x4; 6], records: [&mut [f64; 6]; 4]) {
    for (lane, record) in records.into_iter().enumerate() {
        let half = |v: &F64x4| if lane < 2 { v.0 } else { v.1 };
        for (k, pair) in record.as_chunks_mut::<2>().0.iter_mut().enumerate() {
            let (a, b) = (half(&values[2 * k]), half(&values[2 * k + 1]));
            let zipped = if lane % 2 == 0 {
                a.zip_low(b)
            } else {
                a.zip_high(b)
            };
            zipped.store(pair);
        }
    }
}

/// The records' contracts in lanes: S, K, T and r from field `s_at` on, the call flag last.
fn lanes(records: &[&[f64; 6]; 4], s_at: usize) -> Lanes<F64x4> {
    let fields = fields(records);
    Lanes::new(
        fields[s_at],
        fields[s_at + 1],
        fields[s_at + 2],
        fields[s_at + 3],
        Real::eq(fields[5], F64x4::splat(1.0)),
    )
}

/// Where the `black_scholes` records in `fields` (S, K, T, r, sigma, is_call, one record per
/// lane) are valid with no NaN (what [`Contract::with_sigma`] reads as `Record::Valid`), in a
/// few lane-wise comparisons; the rest go through `with_sigma`, which finds their error (or,
/// for values so large that their sum overflows, finds them valid after all).
///
/// Finiteness is one comparison of the fields' sum: per field, `0 < x < inf` would become an
/// integer range check (LLVM merges the two comparisons), and wasm has no unsigned 64-bit lane
/// comparison, so the component would check each lane in integer registers.
fn plainly_valid(fields: &[F64x4; 6]) -> Mask4 {
    let c = F64x4::splat;
    let [s, k, t, r, sigma, flag] = *fields;
    let sum = s + k + t + r.abs() + sigma;
    s.gt(c(0.0))
        & k.gt(c(0.0))
        & t.gt(c(0.0))
        & sigma.gt(c(0.0))
        & sum.lt(c(f64::INFINITY))
        & (flag.eq(c(1.0)) | flag.eq(c(0.0)))
}

/// Each lane of `mask`.
fn lane_flags(mask: Mask4) -> [bool; 4] {
    [
        mask.0.lane(0),
        mask.0.lane(1),
        mask.1.lane(0),
        mask.1.lane(1),
    ]
}

/// `black_scholes`: [S, K, T, r, sigma, is_call] -> [price, delta, gamma, vega, theta, rho],
/// four contracts at a time (the last ones padded with a copy of the last), each contract's
/// greeks written over it.
pub fn black_scholes(_: Params<'_>, items: ItemsMut<'_>) -> BatchResults<KernelError> {
    crunch_abi::map_records_in_place(
        items,
        6,
        unreadable,
        not_a_record(BLACK_SCHOLES_FIELDS, 6),
        |records, fail| {
            let (records, _) = records.as_chunks_mut::<6>();
            let mut at = 0;
            for group in records.chunks_mut(4) {
                let fields = fields(&padded(group));
                let [s, k, t, r, sigma, flag] = fields;
                let call = Real::eq(flag, F64x4::splat(1.0));
                let greeks = Lanes::new(s, k, t, r, call).greeks(sigma);
                let valid = plainly_valid(&fields);
                if let (true, [o0, o1, o2, o3]) = (F64x4::all(valid), &mut *group) {
                    // The common case, four valid contracts: fixed lanes, no branch per lane.
                    store_fields(&greeks, [o0, o1, o2, o3]);
                    at += 4;
                    continue;
                }
                let greeks = greeks.map(F64x4::to_array);
                let valid = lane_flags(valid);
                for (lane, record) in group.iter_mut().enumerate() {
                    if valid[lane] {
                        *record = greeks.map(|g| g[lane]);
                        continue;
                    }
                    match Contract::with_sigma(record) {
                        Ok(Record::Valid(_)) => *record = greeks.map(|g| g[lane]),
                        Ok(Record::Nan) => *record = [f64::NAN; 6],
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
/// whenever a step would leave it, to full double precision. The bracket's prices are computed
/// four contracts at a time; the contracts left to iterate then share four lanes, each lane
/// taking the next contract as soon as its own converges (see [`solve`]).
pub fn implied_vol(_: Params<'_>, items: Items<'_>) -> BatchResults<KernelError> {
    crunch_abi::map_records(
        items,
        6,
        1,
        unreadable,
        not_a_record(IMPLIED_VOL_FIELDS, 6),
        |records, outputs, fail| {
            let (records, _) = records.as_chunks::<6>();
            let mut searches = Vec::new();
            let mut at = 0;
            for (group, out) in records.chunks(4).zip(outputs.chunks_mut(4)) {
                for (lane, start) in start_group(group).into_iter().enumerate().take(group.len()) {
                    match start {
                        Start::Done(Ok(sigma)) => out[lane] = sigma,
                        Start::Done(Err(e)) => fail(at + lane, e),
                        Start::From(search) => searches.push((at + lane, search)),
                    }
                }
                at += group.len();
            }
            solve(&searches, outputs);
        },
    )
}

/// What one `implied_vol` record needs.
enum Start<T> {
    /// Known without iterating: NaN, an end of the bracket, or an error.
    Done(Result<f64, KernelError>),
    /// A Newton search (from its first sigma, or as a whole [`Search`]).
    From(T),
}

/// One contract's Newton search: what its price shares at every volatility (as [`Lanes`]
/// holds it, one lane's worth), the price to reach and the first sigma.
#[derive(Clone, Copy)]
struct Search {
    target: f64,
    sigma: f64,
    s: f64,
    t: f64,
    r: f64,
    call: f64,
    log_moneyness: f64,
    discounted_k: f64,
    forward_moneyness: f64,
    sqrt_t: f64,
}

/// Up to four records (the last padded with a copy of the last): the bracket's prices in one
/// pass, then each record's start.
fn start_group(group: &[[f64; 6]]) -> [Start<Search>; 4] {
    let records = padded(group);
    let lanes = lanes(&records, 1);
    let (lo, hi) = SIGMA_RANGE;
    let (p_lo, _, scale_lo) = lanes.price_vega(F64x4::splat(lo));
    let (p_hi, _, scale_hi) = lanes.price_vega(F64x4::splat(hi));
    let (p_lo, scale_lo) = (p_lo.to_array(), scale_lo.to_array());
    let (p_hi, scale_hi) = (p_hi.to_array(), scale_hi.to_array());
    let [s, t, r] = [lanes.s, lanes.t, lanes.r].map(F64x4::to_array);
    let [log_moneyness, discounted_k, forward_moneyness, sqrt_t] = [
        lanes.log_moneyness,
        lanes.discounted_k,
        lanes.forward_moneyness,
        lanes.sqrt_t,
    ]
    .map(F64x4::to_array);
    core::array::from_fn(|i| {
        let v = records[i];
        if v.iter().any(|x| x.is_nan()) {
            return Start::Done(Ok(f64::NAN));
        }
        let contract = match Contract::parse(v[1], v[2], v[3], v[4], v[5]) {
            Ok(contract) => contract,
            Err(e) => return Start::Done(Err(e)),
        };
        let bracketed = bracket(
            &contract,
            v[0],
            (p_lo[i], scale_lo[i]),
            (p_hi[i], scale_hi[i]),
        );
        match bracketed {
            Start::From(sigma) => Start::From(Search {
                target: v[0],
                sigma,
                s: s[i],
                t: t[i],
                r: r[i],
                call: v[5],
                log_moneyness: log_moneyness[i],
                discounted_k: discounted_k[i],
                forward_moneyness: forward_moneyness[i],
                sqrt_t: sqrt_t[i],
            }),
            Start::Done(done) => Start::Done(done),
        }
    })
}

/// Where `target` lies against the bracket's prices: outside it (an error), within rounding
/// of an end (that end), or inside (Newton's start).
///
/// "Within rounding" is the noise of the price's own arithmetic: relative to the terms it is
/// the difference of, so a tiny out-of-the-money price still determines sigma, while a price
/// at intrinsic value (vega vanishes, a whole range of sigma reproduces it) gives the end.
fn bracket(
    contract: &Contract,
    target: f64,
    (p_lo, scale_lo): (f64, f64),
    (p_hi, scale_hi): (f64, f64),
) -> Start<f64> {
    let (lo, hi) = SIGMA_RANGE;
    let noise = |scale: f64| 8.0 * f64::EPSILON * scale;
    let (noise_lo, noise_hi) = (noise(scale_lo), noise(scale_hi));
    if target < p_lo - noise_lo || target > p_hi + noise_hi {
        return Start::Done(Err(domain(format!(
            "price {target} is outside the prices reachable with sigma in [{lo}, {hi}] ({p_lo} to {p_hi})"
        ))));
    }
    if target <= p_lo + noise_lo {
        return Start::Done(Ok(lo));
    }
    if target >= p_hi - noise_hi {
        return Start::Done(Ok(hi));
    }
    // Brenner-Subrahmanyam start, kept inside the bracket.
    let guess = (2.0 * core::f64::consts::PI / contract.t).sqrt() * target / contract.s;
    Start::From(if guess > lo && guess < hi {
        guess
    } else {
        0.5 * (lo + hi)
    })
}

/// Newton steps a search takes at most; one still running after them gives its last sigma.
const MAX_STEPS: u32 = 200;

/// A search in progress in one lane of [`solve`].
#[derive(Clone, Copy)]
struct Running {
    /// Where its result goes in the outputs.
    at: usize,
    steps: u32,
}

/// Runs every search (`(output index, search)`) to its sigma, written to `outputs`.
///
/// Safeguarded Newton on the price, four searches at a time, one per lane: Newton steps,
/// falling back to bisection of the bracket whenever a step would leave it, to full double
/// precision. A lane whose search ends takes the next search at once, so the lanes stay busy
/// while a slow search (one that bisects) runs on: a lane costs each search's own steps, not
/// the slowest of a fixed group's. Each lane computes exactly what its search would alone.
fn solve(searches: &[(usize, Search)], outputs: &mut [f64]) {
    let mut queue = searches.iter();
    let mut running: [Option<Running>; 4] = [None; 4];
    let mut lane_search = [Search {
        target: 0.0,
        sigma: 0.5,
        s: 1.0,
        t: 1.0,
        r: 0.0,
        call: 1.0,
        log_moneyness: 0.0,
        discounted_k: 1.0,
        forward_moneyness: 1.0,
        sqrt_t: 1.0,
    }; 4];
    let (mut lo, mut hi, mut sigma) = ([0.0; 4], [0.0; 4], [0.0; 4]);
    let mut lanes = search_lanes(&lane_search);
    let mut target = F64x4::splat(0.0);
    loop {
        let mut refilled = false;
        for (lane, slot) in running.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let Some(&(at, search)) = queue.next() else {
                break;
            };
            *slot = Some(Running { at, steps: 0 });
            lane_search[lane] = search;
            (lo[lane], hi[lane], sigma[lane]) = (SIGMA_RANGE.0, SIGMA_RANGE.1, search.sigma);
            refilled = true;
        }
        if running.iter().all(Option::is_none) {
            return;
        }
        if refilled {
            lanes = search_lanes(&lane_search);
            target = F64x4::from_array(lane_search.map(|s| s.target));
        }
        let step = newton_step(
            &lanes,
            target,
            F64x4::from_array(lo),
            F64x4::from_array(hi),
            F64x4::from_array(sigma),
        );
        let next = step.next.to_array();
        for (lane, slot) in running.iter_mut().enumerate() {
            let Some(search) = slot else {
                continue;
            };
            search.steps += 1;
            let result = if step.exact[lane] {
                Some(sigma[lane])
            } else if step.converged[lane] || search.steps == MAX_STEPS {
                Some(next[lane])
            } else {
                None
            };
            if let Some(result) = result {
                outputs[search.at] = result;
                *slot = None;
            }
        }
        (lo, hi, sigma) = (step.lo.to_array(), step.hi.to_array(), next);
    }
}

/// The lanes of four searches.
fn search_lanes(searches: &[Search; 4]) -> Lanes<F64x4> {
    let field = |f: fn(&Search) -> f64| F64x4::from_array(searches.map(|s| f(&s)));
    Lanes {
        s: field(|s| s.s),
        t: field(|s| s.t),
        r: field(|s| s.r),
        call: Real::eq(field(|s| s.call), F64x4::splat(1.0)),
        log_moneyness: field(|s| s.log_moneyness),
        discounted_k: field(|s| s.discounted_k),
        forward_moneyness: field(|s| s.forward_moneyness),
        sqrt_t: field(|s| s.sqrt_t),
    }
}

/// One safeguarded Newton step in each lane.
struct Step {
    /// The bracket after the step.
    lo: F64x4,
    hi: F64x4,
    /// The next sigma.
    next: F64x4,
    /// Where the price at sigma is the target exactly (the search ends at sigma).
    exact: [bool; 4],
    /// Where the step converged (the search ends at `next`).
    converged: [bool; 4],
}

/// One safeguarded Newton step from `sigma` in the bracket [`lo`, `hi`]: a Newton step on the
/// price, or bisection of the bracket where the step would leave it.
#[inline(always)]
fn newton_step(lanes: &Lanes<F64x4>, target: F64x4, lo: F64x4, hi: F64x4, sigma: F64x4) -> Step {
    let c = F64x4::splat;
    let (price, vega, _) = lanes.price_vega(sigma);
    let diff = price - target;
    let exact = Real::eq(diff, c(0.0));
    let below = diff.lt(c(0.0));
    let lo = F64x4::select(below, sigma, lo);
    let hi = F64x4::select(below, hi, sigma);
    let newton = sigma - diff / vega;
    let inside = newton.gt(lo) & newton.lt(hi);
    let next = F64x4::select(inside, newton, c(0.5) * (lo + hi));
    let eps2 = c(2.0 * f64::EPSILON);
    let converged = (next - sigma).abs().le(eps2 * sigma) | (hi - lo).le(eps2 * hi);
    Step {
        lo,
        hi,
        next,
        exact: lane_flags(exact),
        converged: lane_flags(converged),
    }
}

#[cfg(test)]
mod tests {
    use super::{Contract, Record, lane_flags, plainly_valid};
    use crate::table::run;
    use crate::tensor::{KernelError, Tensor};
    use crunch_math::{F64x4, Real};

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
            // exp(-d2²/2) from exp(-d1²/2) here, while the lane before (d1 = 82, where
            // exp(-d1²/2) is 0) computes it from d2 in the same group.
            [80.0, 110.0, 0.25, 0.01, 0.2, 1.0],
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
    fn the_quick_check_accepts_exactly_the_valid_records_of_moderate_size() {
        let values = [-1.0, -0.0, 0.0, 5e-324, 1.0, f64::INFINITY, f64::NAN];
        let mut checked = 0;
        for s in values {
            for k in values {
                for t in values {
                    for r in values {
                        for sigma in values {
                            for flag in [0.0, 1.0, 2.0, -0.0, f64::NAN] {
                                let v = [s, k, t, r, sigma, flag];
                                let valid =
                                    matches!(Contract::with_sigma(&v), Ok(Record::Valid(_)));
                                let quick = plainly_valid(&v.map(F64x4::splat));
                                assert_eq!(lane_flags(quick), [valid; 4], "{v:?}");
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 7usize.pow(5) * 5);
        // Valid, but too large for the quick check: the slow way finds it valid.
        let huge = [f64::MAX, f64::MAX, 1.0, 0.0, 0.2, 1.0];
        assert!(!lane_flags(plainly_valid(&huge.map(F64x4::splat)))[0]);
        assert!(matches!(Contract::with_sigma(&huge), Ok(Record::Valid(_))));
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
