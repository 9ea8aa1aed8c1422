//! `crunch kernels`: what a pack provides.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use crunch::{Engine, KernelPack, Limits};

use crate::pack_path::PackArgs;

/// Arguments of `crunch kernels`.
#[derive(Args, Debug)]
pub struct KernelsArgs {
    #[command(flatten)]
    pack: PackArgs,
}

pub fn main(args: KernelsArgs) -> Result<ExitCode> {
    let path = args.pack.resolve()?;
    let engine = Engine::new(Limits::default())?;
    let pack = KernelPack::load(&engine, &path)?;
    println!("pack    {}", path.display());
    println!("digest  {}", pack.digest());
    println!("size    {} bytes", pack.size());
    println!();
    let width = pack
        .kernels()
        .iter()
        .map(|k| k.name.len())
        .max()
        .unwrap_or(0);
    for kernel in pack.kernels() {
        println!("{:width$}  {}", kernel.name, kernel.summary);
    }
    Ok(ExitCode::SUCCESS)
}
