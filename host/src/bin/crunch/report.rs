//! `crunch report`: a job's figures as a self-contained HTML page, or JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use crunch::report;

use crate::redis_args::RedisArgs;

/// Arguments of `crunch report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The job id.
    job: String,
    /// Where to write the HTML page (one file: inline SVG and CSS, nothing fetched).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Print the figures as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    redis: RedisArgs,
}

pub fn main(args: ReportArgs) -> Result<ExitCode> {
    if args.output.is_none() && !args.json {
        bail!("say where the report goes: --output report.html, --json, or both");
    }
    let mut store = args.redis.connect()?;
    let figures = report::gather(&mut store, &args.job)?;
    if let Some(path) = &args.output {
        std::fs::write(path, report::html::page(&figures))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report of job {} written to {}", args.job, path.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    }
    Ok(ExitCode::SUCCESS)
}
