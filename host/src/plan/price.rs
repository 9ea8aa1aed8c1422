//! Lambda's price table (`host/data/lambda-prices.json`, or a file like it) and the bill of a
//! set of invocations: a request charge per invocation plus GB-seconds of duration billed per
//! millisecond.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The table the build carries: us-east-1, with the date it was taken.
pub const BUILT_IN: &str = include_str!("../../data/lambda-prices.json");

/// Lambda's prices for one region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriceTable {
    /// Where the prices come from.
    pub source: String,
    /// The region they are for.
    pub region: String,
    /// When they were taken.
    pub taken: String,
    /// Which prices these are (tier, kind).
    #[serde(default)]
    pub note: String,
    /// US dollars per million requests.
    pub request_usd_per_million: f64,
    /// US dollars per GB-second of duration, by architecture (`arm64`, `x86_64`).
    pub gb_second_usd: BTreeMap<String, f64>,
}

/// What a set of invocations costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bill {
    /// Milliseconds billed per invocation (its duration rounded up to the millisecond).
    pub billed_ms_per_invocation: u64,
    /// GB-seconds over all invocations.
    pub gb_seconds: f64,
    /// The request charge.
    pub request_usd: f64,
    /// The duration charge.
    pub duration_usd: f64,
    /// Both.
    pub total_usd: f64,
}

impl PriceTable {
    /// The built-in table.
    pub fn built_in() -> Self {
        Self::parse(BUILT_IN).expect("the built-in price table is valid")
    }

    /// A table from JSON text of the built-in table's form.
    pub fn parse(text: &str) -> Result<Self> {
        let table: Self = serde_json::from_str(text).context("reading a Lambda price table")?;
        table.check()?;
        Ok(table)
    }

    /// A table from a file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the price table {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Overrides one price: `request=USD` (per million requests) or `ARCH=USD` (per
    /// GB-second).
    pub fn set(&mut self, assignment: &str) -> Result<()> {
        let Some((key, value)) = assignment.split_once('=') else {
            bail!("--price takes KEY=USD (request, arm64 or x86_64), got `{assignment}`");
        };
        let usd: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .with_context(|| format!("--price {key}: `{value}` is not a price in USD"))?;
        match key.trim() {
            "request" => self.request_usd_per_million = usd,
            arch @ ("arm64" | "x86_64") => {
                self.gb_second_usd.insert(arch.to_string(), usd);
            }
            other => bail!("--price: unknown key `{other}` (request, arm64 or x86_64)"),
        }
        Ok(())
    }

    /// The price of a GB-second on `arch`.
    pub fn gb_second(&self, arch: &str) -> Result<f64> {
        self.gb_second_usd
            .get(arch)
            .copied()
            .with_context(|| format!("the price table has no GB-second price for `{arch}`"))
    }

    fn check(&self) -> Result<()> {
        let prices = self
            .gb_second_usd
            .values()
            .chain([&self.request_usd_per_million]);
        for price in prices {
            if !price.is_finite() || *price < 0.0 {
                bail!("a price in the table is not a non-negative number: {price}");
            }
        }
        Ok(())
    }

    /// The bill of `invocations` invocations of `memory_mb` MB on `arch`, each running
    /// `seconds` (billed by the millisecond, rounded up).
    pub fn bill(&self, arch: &str, memory_mb: u64, invocations: u64, seconds: f64) -> Result<Bill> {
        let billed_ms = (seconds * 1e3).ceil().max(1.0) as u64;
        let gb_seconds = invocations as f64 * memory_mb as f64 / 1024.0 * billed_ms as f64 / 1e3;
        let request_usd = invocations as f64 * self.request_usd_per_million / 1e6;
        let duration_usd = gb_seconds * self.gb_second(arch)?;
        Ok(Bill {
            billed_ms_per_invocation: billed_ms,
            gb_seconds,
            request_usd,
            duration_usd,
            total_usd: request_usd + duration_usd,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-9)
    }

    #[test]
    fn the_bill_matches_hand_computed_values() {
        let table = PriceTable::built_in();
        // 10 invocations of 1,769 MB on arm64, 12.3456 s each: billed 12,346 ms each.
        // GB-s = 10 * 1769/1024 * 12.346 = 213.28197265625, duration = GB-s * 0.0000133334,
        // requests = 10 * 0.20 / 1e6.
        let bill = table.bill("arm64", 1769, 10, 12.3456).unwrap();
        assert_eq!(bill.billed_ms_per_invocation, 12_346);
        let gb_s = 10.0 * 1769.0 / 1024.0 * 12.346;
        assert!(close(bill.gb_seconds, gb_s), "{}", bill.gb_seconds);
        assert!(close(bill.gb_seconds, 213.281_972_656_25));
        assert!(close(bill.request_usd, 0.000_002));
        assert!(close(bill.duration_usd, 0.002_843_773_854_214_844));
        assert!(close(bill.total_usd, 0.002_845_773_854_214_844));
        // 1 ms granularity: 0.2 ms is billed as 1 ms; 100 invocations of 10,240 MB on x86_64.
        let bill = table.bill("x86_64", 10_240, 100, 0.0002).unwrap();
        assert_eq!(bill.billed_ms_per_invocation, 1);
        assert!(close(bill.gb_seconds, 100.0 * 10.0 * 0.001));
        assert!(close(bill.duration_usd, 1.0 * 0.000_016_666_7));
        assert!(close(bill.request_usd, 0.000_02));
    }

    #[test]
    fn prices_can_be_overridden() {
        let mut table = PriceTable::built_in();
        table.set("arm64=0.00001").unwrap();
        table.set("request=0.25").unwrap();
        let bill = table.bill("arm64", 1024, 4, 1.0).unwrap();
        assert!(close(bill.duration_usd, 4.0 * 0.00001));
        assert!(close(bill.request_usd, 4.0 * 0.25 / 1e6));
        assert!(table.set("gpu=1").is_err());
        assert!(table.set("arm64=-1").is_err());
        assert!(table.bill("riscv", 128, 1, 1.0).is_err());
        assert!(PriceTable::parse("{}").is_err());
    }
}
