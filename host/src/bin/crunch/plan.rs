//! `crunch plan`: sample the job's items through the pack, then model and price it on this
//! machine and on Lambda; a table on the terminal or `--json`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use crunch::plan::model::{Assumptions, JobLimits};
use crunch::plan::price::PriceTable;
use crunch::plan::probe;
use crunch::plan::sample::{self, Sample};
use crunch::plan::{self, Deployments, JobPlan};
use crunch::queue::store::Redis;
use crunch::{Item, KernelPack, Limits};

use crate::pack_path::PackArgs;
use crate::work_args::{WorkArgs, seconds};

/// Arguments of `crunch plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    work: WorkArgs,
    /// Claim loops on this machine to model (e.g. `crunch worker --threads N`, or N workers of
    /// one thread each). Default: 1 and the number of cores.
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    workers: Vec<usize>,
    /// Lambda memory sizes to model, MB (128 to 10240; 1,769 MB buys one vCPU).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1769,3538,10240",
        value_name = "MB,..."
    )]
    lambda_memory: Vec<u64>,
    /// Lambda architectures to model.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "arm64,x86_64",
        value_name = "ARCH,..."
    )]
    arch: Vec<String>,
    /// How many times longer a batch takes on one Lambda vCPU than on one core here: R for
    /// every architecture, or ARCH=R (repeat or comma-separate). Measure it with one
    /// invocation; default 1.
    #[arg(long, value_delimiter = ',', value_name = "R|ARCH=R")]
    speed_ratio: Vec<String>,
    /// The concurrency quota: the most invocations at once.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: u64,
    /// Seconds the job should take on Lambda: the plan fans out to the fewest invocations that
    /// meet it.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    deadline: f64,
    /// A price table in the form of host/data/lambda-prices.json instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
    /// Overrides one price: request=USD per million requests, or ARCH=USD per GB-second.
    #[arg(long, value_name = "KEY=USD")]
    price: Vec<String>,
    /// Items per batch instead of the model's choice.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: Option<u32>,
    /// Memory one batch's instance may use, in MiB.
    #[arg(long, default_value_t = 1024, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    memory_limit: u64,
    /// Seconds the sample may take.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    sample_time: f64,
    /// The Redis local workers would use: its round trip and cost per byte are measured (on a
    /// key that expires within a minute) instead of assumed.
    #[arg(long, env = "CRUNCH_REDIS", value_name = "URL")]
    redis: Option<String>,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    pack: PackArgs,
}

pub fn main(args: PlanArgs) -> Result<ExitCode> {
    let sample_time = seconds("--sample-time", args.sample_time)?;
    let deadline = seconds("--deadline", args.deadline)?.as_secs_f64();
    let mut prices = match &args.prices {
        Some(path) => PriceTable::load(path)?,
        None => PriceTable::built_in(),
    };
    for assignment in &args.price {
        prices.set(assignment)?;
    }
    for &mb in &args.lambda_memory {
        if !(128..=10_240).contains(&mb) {
            bail!("--lambda-memory: {mb} MB is outside Lambda's 128 to 10240 MB");
        }
    }
    let archs = speed_ratios(&args.arch, &args.speed_ratio)?;
    for (arch, _) in &archs {
        prices.gb_second(arch)?;
    }
    let memory_bytes =
        usize::try_from(args.memory_limit.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let engine = crate::engine(Limits {
        memory_bytes,
        max_concurrent_batches: 2,
        ..Limits::default()
    })?;
    let pack_path = args.pack.resolve()?;
    let compile_start = Instant::now();
    let pack = KernelPack::load(&engine, &pack_path)?;
    let compile_s = compile_start.elapsed().as_secs_f64();
    args.work
        .check_against(&pack, &pack_path.display().to_string())?;
    let items = args.work.read_items()?;
    let time_limit = args.work.time_limit()?;
    let sample = measure(&pack, &args.work, &items, time_limit, sample_time)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let deployments = Deployments {
        local_loops: if args.workers.is_empty() {
            let mut loops = vec![1, cores];
            loops.dedup();
            loops
        } else {
            args.workers.clone()
        },
        cores,
        lambda_memory_mb: args.lambda_memory.clone(),
        archs,
        concurrency: args.concurrency,
        deadline_s: deadline,
        compile_s,
    };
    let limits = JobLimits {
        batch_size: args.batch_size.map(|b| b as usize),
        ..JobLimits::of(&items, time_limit, &engine.limits())
    };
    let redis = match &args.redis {
        Some(url) => {
            let mut store = Redis::connect(url)?;
            Some((
                probe::measure_for(&mut store, &sample)?,
                store.url().to_string(),
            ))
        }
        None => None,
    };
    let assumptions = Assumptions::with_local_redis(redis.as_ref().map(|r| r.0));
    let mut plan = plan::plan(
        &args.work.kernel,
        &sample,
        &deployments,
        &limits,
        &prices,
        assumptions,
    )?;
    plan.notes.push(match &redis {
        Some((cost, url)) => format!(
            "local figures use Redis at {url} as measured: {:.0} us a round trip, {:.2} ns a byte read, {:.2} ns a byte written",
            cost.round_trip_s * 1e6,
            cost.read_byte_s * 1e9,
            cost.write_byte_s * 1e9
        ),
        None => "local figures assume Redis on this machine (give --redis to measure it)".into(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", table(&plan));
    }
    Ok(ExitCode::SUCCESS)
}

/// Samples `items` of the work through `pack` for about `budget`.
pub fn measure(
    pack: &KernelPack,
    work: &WorkArgs,
    items: &[Item],
    batch_time: Duration,
    budget: Duration,
) -> Result<Sample> {
    sample::measure(pack, &work.call(batch_time), items, budget).with_context(|| {
        format!(
            "sampling {} through kernel {}",
            work.input.display(),
            work.kernel
        )
    })
}

/// Each architecture with its speed ratio: `R` sets every one, `ARCH=R` one.
fn speed_ratios(archs: &[String], given: &[String]) -> Result<Vec<(String, f64)>> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for arch in archs {
        if arch != "arm64" && arch != "x86_64" {
            bail!("--arch: `{arch}` is not arm64 or x86_64");
        }
        if !out.iter().any(|(a, _)| a == arch) {
            out.push((arch.clone(), 1.0));
        }
    }
    for g in given {
        let (arch, value) = match g.split_once('=') {
            Some((a, v)) => (Some(a.trim()), v),
            None => (None, g.as_str()),
        };
        let ratio: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r > 0.0)
            .with_context(|| format!("--speed-ratio: `{g}` is not a positive number"))?;
        match arch {
            None => out.iter_mut().for_each(|(_, r)| *r = ratio),
            Some(arch) => match out.iter_mut().find(|(a, _)| a == arch) {
                Some((_, r)) => *r = ratio,
                None => bail!("--speed-ratio {g}: `{arch}` is not among --arch"),
            },
        }
    }
    Ok(out)
}

/// The plan as a table for a terminal.
pub fn table(plan: &JobPlan) -> String {
    use std::fmt::Write;
    let s = &plan.sample;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan for {}: {} items; measured on a stratified sample of {} ({} runs)",
        plan.kernel, s.items, s.sampled, s.runs
    );
    let _ = writeln!(
        out,
        "  kernel {:.3} us/item, {:.0} us fixed per batch; encode/decode {:.3} us/item; {:.0} B in, {:.0} B out per item; pack compiled in {:.2} s\n",
        s.item_s * 1e6,
        s.batch_s * 1e6,
        s.codec_item_s * 1e6,
        s.input_bytes,
        s.output_bytes,
        plan.compile_s
    );
    let _ = writeln!(
        out,
        "{:<22} {:>13} {:>10} {:>8} {:>9} {:>9} {:>10} {:>11} {:>8}",
        "DEPLOYMENT",
        "WORKERS",
        "BATCH",
        "BATCHES",
        "BATCH MS",
        "WALL S",
        "GB-S",
        "COST USD",
        "KERNELS"
    );
    for e in &plan.estimates {
        let (gb_s, usd) = match &e.bill {
            Some(b) => (
                format!("{:.1}", b.gb_seconds),
                format!("{:.4}", b.total_usd),
            ),
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "{:<22} {:>13} {:>10} {:>8} {:>9.1} {:>9.2} {:>10} {:>11} {:>7.0}%",
            e.deployment,
            format!("{} x {}", e.workers, e.loops_per_worker),
            e.batch_size,
            e.batches,
            e.batch_s * 1e3,
            e.wall_s,
            gb_s,
            usd,
            e.kernel_share * 100.0
        );
    }
    let warned: Vec<_> = plan
        .estimates
        .iter()
        .filter(|e| !e.warnings.is_empty())
        .collect();
    if !warned.is_empty() {
        let _ = writeln!(out, "\nwarnings:");
        for e in warned {
            for w in &e.warnings {
                let _ = writeln!(out, "  {}: {w}", e.deployment);
            }
        }
    }
    let _ = writeln!(out, "\nnotes:");
    for note in &plan.notes {
        let _ = writeln!(out, "  {note}");
    }
    out
}
