//! Makes and checks the data of `just demo`: random option contracts for `black_scholes`, then
//! implied-volatility inputs built from the prices `crunch run` computed, then a look at the
//! results (the recovered volatilities should equal the ones the prices were made with).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use crunch::Tensor;
use crunch::data::codec::{self, Format};

#[derive(Parser)]
#[command(about = "Data for the Crunch demo")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write COUNT random contracts [S, K, T, r, sigma, is_call].
    Contracts {
        #[arg(long)]
        count: usize,
        #[arg(long)]
        output: PathBuf,
    },
    /// Write [price, S, K, T, r, is_call] for the first COUNT priced contracts.
    ImpliedVolInputs {
        #[arg(long)]
        contracts: PathBuf,
        #[arg(long)]
        greeks: PathBuf,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        output: PathBuf,
    },
    /// Print a few priced contracts and how well implied_vol recovered every sigma.
    Show {
        #[arg(long)]
        contracts: PathBuf,
        #[arg(long)]
        greeks: PathBuf,
        #[arg(long)]
        implied_vols: PathBuf,
        #[arg(long, default_value_t = 5)]
        head: usize,
    },
}

/// splitmix64: a small, fixed, platform-independent generator, so the demo data never changes.
struct SplitMix(u64);

impl SplitMix {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }
}

fn vector(data: Vec<f64>) -> Vec<Tensor> {
    vec![Tensor {
        shape: vec![data.len() as u32],
        data,
    }]
}

fn values(results: &[crunch::ItemResult], i: usize) -> Result<&[f64]> {
    match &results[i] {
        Ok(t) => Ok(&t.data),
        Err(e) => bail!("item {i} failed: {e}"),
    }
}

fn main() -> Result<()> {
    match Args::parse().command {
        Command::Contracts { count, output } => {
            let mut rng = SplitMix(2026);
            let items: Vec<_> = (0..count)
                .map(|_| {
                    let s = rng.uniform(50.0, 150.0);
                    let k = s * rng.uniform(0.7, 1.3);
                    let t = rng.uniform(0.05, 2.0);
                    let r = rng.uniform(0.0, 0.05);
                    let sigma = rng.uniform(0.1, 0.6);
                    let call = if rng.next_f64() < 0.5 { 1.0 } else { 0.0 };
                    vector(vec![s, k, t, r, sigma, call])
                })
                .collect();
            codec::write_items(&output, Format::from_path(&output)?, &items)?;
        }
        Command::ImpliedVolInputs {
            contracts,
            greeks,
            count,
            output,
        } => {
            let contracts = codec::read_items(&contracts, Format::from_path(&contracts)?)?;
            let greeks = codec::read_results(&greeks, Format::from_path(&greeks)?)?;
            let items = (0..count.min(contracts.len()))
                .map(|i| {
                    let c = &contracts[i][0].data;
                    let price = values(&greeks, i)?[0];
                    Ok(vector(vec![price, c[0], c[1], c[2], c[3], c[5]]))
                })
                .collect::<Result<Vec<_>>>()?;
            codec::write_items(&output, Format::from_path(&output)?, &items)?;
        }
        Command::Show {
            contracts,
            greeks,
            implied_vols,
            head,
        } => {
            let contracts = codec::read_items(&contracts, Format::from_path(&contracts)?)?;
            let greeks = codec::read_results(&greeks, Format::from_path(&greeks)?)?;
            let vols = codec::read_results(&implied_vols, Format::from_path(&implied_vols)?)?;
            println!(
                "{:>8} {:>8} {:>6} {:>6} {:>7} {:>5} | {:>9} {:>7} {:>8} | {:>12}",
                "S", "K", "T", "r", "sigma", "type", "price", "delta", "vega", "implied vol"
            );
            for (i, contract) in contracts.iter().take(head.min(vols.len())).enumerate() {
                let c = &contract[0].data;
                let g = values(&greeks, i)?;
                let iv = values(&vols, i)?[0];
                let kind = if c[5] == 1.0 { "call" } else { "put" };
                println!(
                    "{:8.3} {:8.3} {:6.3} {:6.4} {:7.4} {kind:>5} | {:9.4} {:7.4} {:8.4} | {iv:12.10}",
                    c[0], c[1], c[2], c[3], c[4], g[0], g[1], g[3]
                );
            }
            // Where vega is tiny the price does not pin sigma down in f64 (any small sigma gives
            // the same price), so those items are counted apart rather than scored.
            let (mut worst, mut flat, mut failed) = (0.0f64, 0, 0);
            for (i, v) in vols.iter().enumerate() {
                match v {
                    Ok(t) if values(&greeks, i)?[3] < 1e-6 => flat += usize::from(t.data[0] >= 0.0),
                    Ok(t) => worst = worst.max((t.data[0] - contracts[i][0].data[4]).abs()),
                    Err(_) => failed += 1,
                }
            }
            println!(
                "implied_vol: {} of {} volatilities recovered, largest error {worst:.2e}; \
                 {flat} more with vega < 1e-6, where the price does not determine sigma",
                vols.len() - failed - flat,
                vols.len()
            );
            if failed > 0 {
                bail!("{failed} implied volatilities failed");
            }
        }
    }
    Ok(())
}
