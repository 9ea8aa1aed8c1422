//! The arguments `run` and `submit` share: which kernel, its parameters, the input items and
//! the time limit of a batch; and the checks that refuse work before any is done.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use crunch::data::codec::{self, Format};
use crunch::data::text;
use crunch::data::wire;
use crunch::sandbox::engine::EPOCH_TICK;
use crunch::{Item, KernelCall, KernelPack, Tensor};

/// The longest time limit or lease accepted: a week.
const MAX_SECONDS: f64 = 7.0 * 86_400.0;

/// What to compute, on which items.
#[derive(Args, Debug)]
pub struct WorkArgs {
    /// Kernel to run (see `crunch kernels`).
    #[arg(long, short)]
    pub kernel: String,
    /// Kernel parameter NAME=VALUE, once per name: VALUE is a number (a scalar), a list `a,b,c`
    /// (`a,` for a list of one value), or a JSON list, nested for more dimensions
    /// (`[[5, 50], [90, 95]]`). The pack is asked first whether the kernel takes them.
    #[arg(long = "param", short, value_name = "NAME=VALUE", value_parser = crate::params::parse)]
    pub params: Vec<(String, Tensor)>,
    /// Input items: .json, .npy (one row per item) or .crb (Crunch binary).
    #[arg(long, short)]
    pub input: PathBuf,
    /// Input format, when the extension does not tell.
    #[arg(long, value_name = "json|npy|crb")]
    pub input_format: Option<Format>,
    /// Seconds one batch may run before it is interrupted and fails. Counted in ticks of 10 ms
    /// (a batch stops within one tick of its limit), so at least 0.01; at most a week.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    time_limit: f64,
}

impl WorkArgs {
    /// The kernel call these arguments name, with `batch_time` as a batch's time limit.
    pub fn call(&self, batch_time: Duration) -> KernelCall<'_> {
        KernelCall {
            kernel: &self.kernel,
            params: &self.params,
            batch_time,
        }
    }

    /// Reads every input item.
    pub fn read_items(&self) -> Result<Vec<Item>> {
        codec::read_items(&self.input, self.input_format()?)
    }

    /// Reads every input item in the wire layout (see [`codec::read_input`]).
    pub fn read_input(&self) -> Result<wire::Input> {
        codec::read_input(&self.input, self.input_format()?)
    }

    fn input_format(&self) -> Result<Format> {
        Format::resolve(self.input_format, &self.input, "--input-format")
    }

    /// `--time-limit`, checked.
    pub fn time_limit(&self) -> Result<Duration> {
        seconds("--time-limit", self.time_limit)
    }

    /// Refuses the work before any is done: a kernel the pack lacks, a parameter given twice,
    /// or parameters the pack says the kernel does not take.
    pub fn check_against(&self, pack: &KernelPack, pack_name: &str) -> Result<()> {
        if !pack.has_kernel(&self.kernel) {
            let names: Vec<String> = pack
                .kernels()
                .iter()
                .map(|k| text::escaped(&k.name, 64))
                .collect();
            bail!(
                "pack {pack_name} has no kernel `{}` (it has: {})",
                text::escaped(&self.kernel, 64),
                names.join(", ")
            );
        }
        crate::params::refuse_repeats(&self.params)?;
        pack.check_call(&self.kernel, &self.params)
    }
}

/// A number of seconds given as option `name`: positive, finite, at least one tick of the
/// host's clock for limits (10 ms) and at most a week.
pub fn seconds(name: &str, value: f64) -> Result<Duration> {
    if value <= 0.0 || !value.is_finite() {
        bail!("{name} must be a positive number of seconds, got {value}");
    }
    if value > MAX_SECONDS {
        bail!("{name} must be at most {MAX_SECONDS} seconds (a week), got {value}");
    }
    let duration = Duration::from_secs_f64(value);
    if duration < EPOCH_TICK {
        bail!(
            "{name} must be at least {} seconds, got {value}: time limits are counted in ticks of {} ms",
            EPOCH_TICK.as_secs_f64(),
            EPOCH_TICK.as_millis()
        );
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_bounded() {
        assert_eq!(seconds("--x", 1.5).unwrap(), Duration::from_millis(1500));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300, 0.001] {
            assert!(seconds("--x", bad).is_err(), "{bad}");
        }
        assert!(
            seconds("--x", 0.001)
                .unwrap_err()
                .to_string()
                .contains("ticks of 10 ms")
        );
    }
}
