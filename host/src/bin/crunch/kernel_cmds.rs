//! `crunch kernel push|ls|tag|rm`: the kernel registry in Redis.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use crunch::Limits;
use crunch::data::text;
use crunch::queue::pack_registry;

use crate::redis_args::RedisArgs;

/// Arguments of `crunch kernel`.
#[derive(Args, Debug)]
pub struct KernelArgs {
    #[command(subcommand)]
    command: KernelCommand,
    #[command(flatten)]
    redis: RedisArgs,
}

#[derive(Subcommand, Debug)]
enum KernelCommand {
    /// Check a kernel pack component and store it, content-addressed by sha256, under NAME:TAG.
    ///
    /// Refused, with the reason, when the file is not WebAssembly, is a core module rather than
    /// a component, does not export crunch:kernel/kernels@0.2.x, imports anything beyond
    /// wasi:cli, wasi:io, wasi:clocks and wasi:random (no files, no sockets), is over the size
    /// limit, its `list-kernels` fails or takes over 5 s, or its kernel names are empty, given
    /// twice or hold control characters. Jobs submitted with `--pack NAME[:TAG]` pin the digest the tag points at.
    Push {
        /// The component (.wasm).
        file: PathBuf,
        /// Pack name, e.g. `risk`.
        #[arg(long)]
        name: String,
        /// Tag to point at it.
        #[arg(long, default_value = "latest")]
        tag: String,
        /// Largest accepted component, in bytes.
        #[arg(long, default_value_t = pack_registry::DEFAULT_MAX_SIZE)]
        max_size: usize,
    },
    /// List the registry's tags and the packs they point at.
    Ls,
    /// Point NAME:TAG at the pack REFERENCE (NAME[:TAG] or sha256:...) stands for.
    Tag {
        /// The pack: NAME[:TAG] or a digest.
        reference: String,
        /// The new NAME:TAG.
        new_tag: String,
    },
    /// Remove a tag, or with a digest a pack and its tags; refused while an unfinished job pins
    /// the pack.
    Rm {
        /// NAME[:TAG] or a digest.
        reference: String,
    },
}

/// Kernel names as the registry holds them (any client may write there), escaped.
fn show_names(names: &[String]) -> String {
    let names: Vec<String> = names.iter().map(|n| text::escaped(n, 64)).collect();
    text::escaped(&names.join(", "), text::ECHO_CHARS)
}

pub fn main(args: KernelArgs) -> Result<ExitCode> {
    let mut store = args.redis.connect()?;
    match args.command {
        KernelCommand::Push {
            file,
            name,
            tag,
            max_size,
        } => {
            let reference = format!("{name}:{tag}");
            let (name, tag) = pack_registry::parse_name(&reference)?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let engine = crate::engine(Limits {
                max_concurrent_batches: 2,
                ..Limits::default()
            })?;
            let checked = pack_registry::check(&engine, &bytes, max_size)
                .with_context(|| format!("refused to push {}", file.display()))?;
            pack_registry::push(&mut store, &bytes, &checked, &name, &tag)?;
            println!("{}", checked.digest);
            eprintln!(
                "pushed {} as {name}:{tag} ({} bytes; kernels: {})",
                file.display(),
                checked.size,
                show_names(&checked.kernels)
            );
        }
        KernelCommand::Ls => {
            println!("{:<24} {:<71} {:>9}  KERNELS", "TAG", "DIGEST", "BYTES");
            for entry in pack_registry::list(&mut store)? {
                println!(
                    "{:<24} {:<71} {:>9}  {}",
                    text::escaped(&entry.tag, 64),
                    text::escaped(&entry.digest, 71),
                    entry.size,
                    show_names(&entry.kernels)
                );
            }
        }
        KernelCommand::Tag { reference, new_tag } => {
            let digest = pack_registry::tag(&mut store, &reference, &new_tag)?;
            println!("{new_tag} -> {digest}");
        }
        KernelCommand::Rm { reference } => {
            println!("{}", pack_registry::remove(&mut store, &reference)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
