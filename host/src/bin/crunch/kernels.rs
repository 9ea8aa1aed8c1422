//! `crunch kernels`: what a pack provides.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use crunch::Limits;
use crunch::data::text;

use crate::pack_path::PackArgs;

/// Arguments of `crunch kernels`.
#[derive(Args, Debug)]
pub struct KernelsArgs {
    #[command(flatten)]
    pack: PackArgs,
}

pub fn main(args: KernelsArgs) -> Result<ExitCode> {
    let path = args.pack.resolve()?;
    let engine = crate::engine(Limits::default())?;
    let pack = crate::load_pack(&engine, &path)?;
    println!("pack    {}", path.display());
    println!("digest  {}", pack.digest());
    println!("size    {} bytes", pack.size());
    println!();
    // Names and summaries are the pack's own text: escaped and cut short.
    let listed: Vec<(String, String)> = pack
        .kernels()
        .iter()
        .map(|k| {
            (
                text::escaped(&k.name, 64),
                text::escaped(&k.summary, text::ECHO_CHARS),
            )
        })
        .collect();
    let width = listed.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, summary) in listed {
        println!("{name:width$}  {summary}");
    }
    Ok(ExitCode::SUCCESS)
}
