//! The arguments `run` and `submit` share: which kernel, its parameters, and the input items.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use crunch::codec::{self, Format};
use crunch::{Item, Tensor};

/// What to compute, on which items.
#[derive(Args, Debug)]
pub struct WorkArgs {
    /// Kernel to run (see `crunch kernels`).
    #[arg(long, short)]
    pub kernel: String,
    /// Kernel parameter NAME=VALUE; VALUE is a number or a list `a,b,c`. Repeatable.
    #[arg(long = "param", short, value_name = "NAME=VALUE", value_parser = crate::params::parse)]
    pub params: Vec<(String, Tensor)>,
    /// Input items: .json, .npy (one row per item) or .crb (Crunch binary).
    #[arg(long, short)]
    pub input: PathBuf,
    /// Input format, when the extension does not tell.
    #[arg(long, value_name = "json|npy|crb")]
    pub input_format: Option<Format>,
}

impl WorkArgs {
    /// Reads every input item.
    pub fn read_items(&self) -> Result<Vec<Item>> {
        let format = match self.input_format {
            Some(f) => f,
            None => Format::from_path(&self.input)?,
        };
        codec::read_items(&self.input, format)
    }
}
