//! `crunch submit`: write a job (spec, input batches, queue) to Redis and print its id.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use crunch::lambda::fanout::{self, Fanout, FanoutTarget};
use crunch::plan::{SpecPlan, SubmitVenue};
use crunch::queue::jobs::{self, SubmitOptions};
use crunch::queue::pack_registry;
use crunch::queue::store::Redis;
use crunch::{KernelPack, Limits};

use crate::pack_path::PackArgs;
use crate::redis_args::RedisArgs;
use crate::work_args::{WorkArgs, seconds};

/// Arguments of `crunch submit`.
#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    work: WorkArgs,
    /// Items per batch, or `auto`: a sample of the items runs through the pack first (see
    /// `crunch plan`) and the model sizes the batches for this machine's cores, or with
    /// --lambda for the invocations it starts; the spec records the plan followed.
    #[arg(long, default_value = "auto", value_name = "N|auto")]
    batch_size: String,
    /// Seconds the sample of `--batch-size auto` may take.
    #[arg(long, default_value_t = 0.5, value_name = "SECONDS")]
    sample_time: f64,
    /// The Lambda function's memory size, MB, which `--batch-size auto` plans for.
    #[arg(long, default_value_t = 1769, requires = "lambda", value_name = "MB",
          value_parser = clap::value_parser!(u64).range(128..=10_240))]
    lambda_memory: u64,
    /// Seconds every key of the job lives in Redis: 60 to a year.
    #[arg(long, default_value_t = 86_400, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(60..=31_536_000))]
    ttl: u64,
    /// Deliveries after which a failing batch goes to the dead-letter stream.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    max_deliveries: u64,
    /// Seconds a claim may stay idle before another worker takes it over (at most a week).
    /// Default: twice the time limit plus 10.
    #[arg(long, value_name = "SECONDS")]
    lease: Option<f64>,
    /// After submitting, start workers as asynchronous invocations of this Lambda function.
    #[arg(long, value_name = "FUNCTION")]
    lambda: Option<String>,
    /// Invocations to start. Default: with `--batch-size auto` the plan's fan-out, else one per
    /// batch; at most --max-concurrency either way.
    #[arg(long, requires = "lambda", value_parser = clap::value_parser!(u32).range(1..))]
    workers: Option<u32>,
    /// The most invocations to start by default (keep it within the function's reserved
    /// concurrency).
    #[arg(long, default_value_t = 10, requires = "lambda")]
    max_concurrency: u32,
    /// Lambda API endpoint, e.g. a local emulator's http://127.0.0.1:9000.
    #[arg(long, env = "CRUNCH_LAMBDA_ENDPOINT", value_name = "URL")]
    lambda_endpoint: Option<String>,
    #[command(flatten)]
    pack: PackArgs,
    #[command(flatten)]
    redis: RedisArgs,
}

pub fn main(args: SubmitArgs) -> Result<ExitCode> {
    let batch_size = match args.batch_size.as_str() {
        "auto" => None,
        n => match n.parse::<usize>() {
            Ok(n) if n > 0 => Some(n),
            _ => bail!("--batch-size must be a positive number or `auto`, got `{n}`"),
        },
    };
    let time_limit = args.work.time_limit()?;
    let lease = args.lease.map(|s| seconds("--lease", s)).transpose()?;
    let engine = crate::engine(Limits {
        max_concurrent_batches: 2,
        ..Limits::default()
    })?;
    let mut store = args.redis.connect()?;
    // A registry reference (NAME[:TAG] or a digest) pins the digest it resolves to now; a file
    // pins its own digest, and workers read the file.
    let (pack, pack_path, pack_name) = match args.pack.registry_reference() {
        Some(reference) => {
            let digest = pack_registry::resolve(&mut store, &reference)?;
            let bytes = pack_registry::fetch(&mut store, &digest)?;
            let pack = KernelPack::from_bytes(&engine, &bytes)?;
            (pack, String::new(), reference)
        }
        None => {
            let path = args.pack.resolve()?;
            let pack = crate::load_pack(&engine, &path)?;
            let absolute = std::path::absolute(&path)
                .with_context(|| format!("resolving {}", path.display()))?;
            let name = path.display().to_string();
            (pack, absolute.display().to_string(), name)
        }
    };
    args.work.check_against(&pack, &pack_name)?;
    let items = args.work.read_items()?;
    // The AWS configuration is checked before the job is written: nothing is left queued for
    // invocations that could never start.
    let fanout = args
        .lambda
        .as_ref()
        .map(|function| {
            Fanout::connect(&FanoutTarget {
                function: function.clone(),
                endpoint: args.lambda_endpoint.clone(),
            })
        })
        .transpose()?;
    let options = SubmitOptions {
        kernel: args.work.kernel.clone(),
        params: args.work.params.clone(),
        pack_path,
        batch_size,
        ttl: Duration::from_secs(args.ttl),
        max_deliveries: args.max_deliveries,
        batch_time: time_limit,
        lease,
    };
    let plan = match batch_size {
        Some(_) => None,
        None => Some(auto_plan(&args, &mut store, &pack, &items, time_limit)?),
    };
    let spec = jobs::submit_planned(&mut store, &pack, &items, &options, plan.as_ref())?;
    eprintln!(
        "submitted {} items in {} batches of up to {} to {} ({} {})",
        spec.item_count,
        spec.batch_count,
        spec.batch_size,
        store.url(),
        spec.kernel,
        spec.pack_digest
    );
    println!("{}", spec.job);
    let (Some(fanout), Some(function)) = (fanout, args.lambda) else {
        return Ok(ExitCode::SUCCESS);
    };
    let workers = args.workers.unwrap_or_else(|| match &plan {
        Some(plan) => plan.invocations(args.max_concurrency),
        None => fanout::default_workers(spec.batch_count, args.max_concurrency),
    });
    let report = fanout.invoke_workers(&spec.job, workers)?;
    eprintln!(
        "started {} of {workers} invocations of {function} ({} retries after throttling)",
        report.invoked, report.retries
    );
    if report.failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for failure in &report.failed {
        eprintln!("error: {failure}");
    }
    eprintln!(
        "the job is queued and loses nothing: run `crunch worker --job {}` or invoke {function} with {{\"job\": \"{}\"}}",
        spec.job, spec.job
    );
    Ok(ExitCode::from(3))
}

/// The plan `--batch-size auto` follows: a sample through the pack, then the model of this
/// machine's cores (with `store`'s Redis measured), or of the Lambda invocations `--lambda`
/// starts.
fn auto_plan(
    args: &SubmitArgs,
    store: &mut Redis,
    pack: &KernelPack,
    items: &[crunch::Item],
    time_limit: Duration,
) -> Result<SpecPlan> {
    let budget = seconds("--sample-time", args.sample_time)?;
    let venue = match &args.lambda {
        None => SubmitVenue::ThisMachine,
        Some(_) => SubmitVenue::Lambda {
            memory_mb: args.lambda_memory,
            concurrency: u64::from(args.max_concurrency),
        },
    };
    let call = args.work.call(time_limit);
    crunch::plan::for_submit(store, pack, &call, items, budget, venue).with_context(|| {
        format!(
            "sampling {} through kernel {}",
            args.work.input.display(),
            args.work.kernel
        )
    })
}
