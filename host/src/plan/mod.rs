//! `crunch plan` and `crunch submit --batch-size auto`: size and price a job before it runs.
//! [`sample`] measures a stratified sample of the real items through the real pack,
//! [`sizing`] is the one batch-size policy (also behind `crunch run`), [`model`] predicts
//! each deployment's run, [`price`] holds Lambda's price table and the bill, and [`probe`]
//! times the Redis a local job would use.

pub mod model;
pub mod price;
pub mod probe;
pub mod sample;
pub mod sizing;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use model::{Assumptions, Estimate, JobLimits, LambdaTarget};
use price::PriceTable;
use sample::Sample;

/// The deployments to model.
#[derive(Clone, Debug)]
pub struct Deployments {
    /// Claim loops on this machine, one estimate each.
    pub local_loops: Vec<usize>,
    /// Cores of this machine.
    pub cores: usize,
    /// Lambda memory sizes, MB.
    pub lambda_memory_mb: Vec<u64>,
    /// Lambda architectures, each with its speed ratio (how many times longer a batch takes on
    /// one of its vCPUs than on one core here).
    pub archs: Vec<(String, f64)>,
    /// Concurrency quota.
    pub concurrency: u64,
    /// The wall time the job should take, seconds.
    pub deadline_s: f64,
    /// Seconds it took to compile the pack here.
    pub compile_s: f64,
}

/// A job's plan: what was measured and each deployment's prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobPlan {
    /// The kernel.
    pub kernel: String,
    /// The sample's measurements.
    pub sample: Sample,
    /// Seconds it took to compile the pack here.
    pub compile_s: f64,
    /// The job's limits.
    pub limits: JobLimits,
    /// What the model assumes.
    pub assumptions: Assumptions,
    /// The price table's region and date.
    pub prices: PriceTable,
    /// One per deployment.
    pub estimates: Vec<Estimate>,
    /// Notes on reading the figures.
    pub notes: Vec<String>,
}

/// Models `sample` on every deployment.
pub fn plan(
    kernel: &str,
    sample: &Sample,
    deployments: &Deployments,
    limits: &JobLimits,
    prices: &PriceTable,
    assumptions: Assumptions,
) -> Result<JobPlan> {
    let mut estimates: Vec<Estimate> = deployments
        .local_loops
        .iter()
        .map(|&loops| model::local(sample, loops, deployments.cores, limits, &assumptions))
        .collect();
    for (arch, speed_ratio) in &deployments.archs {
        for &memory_mb in &deployments.lambda_memory_mb {
            let target = LambdaTarget {
                memory_mb,
                arch: arch.clone(),
                speed_ratio: *speed_ratio,
                concurrency: deployments.concurrency,
                deadline_s: deployments.deadline_s,
                compile_s: deployments.compile_s,
            };
            estimates.push(model::lambda(
                sample,
                &target,
                limits,
                prices,
                &assumptions,
            )?);
        }
    }
    let mut notes = vec![
        format!(
            "measured on {} of {} items on this machine; Lambda figures assume one Lambda vCPU takes {} the time of one core here (--speed-ratio; measure yours with one invocation)",
            sample.sampled,
            sample.items,
            deployments
                .archs
                .iter()
                .map(|(a, r)| format!("{r}x on {a}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "prices: {} ({}, taken {})",
            prices.source, prices.region, prices.taken
        ),
    ];
    if sample.failed > 0 {
        notes.push(format!(
            "{} of the {} sampled items failed: the job will have failures",
            sample.failed, sample.sampled
        ));
    }
    Ok(JobPlan {
        kernel: kernel.to_string(),
        sample: sample.clone(),
        compile_s: deployments.compile_s,
        limits: *limits,
        assumptions,
        prices: prices.clone(),
        estimates,
        notes,
    })
}

/// What a job's spec records of the plan `crunch submit --batch-size auto` followed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpecPlan {
    /// The sample's measurements.
    pub sample: Sample,
    /// The deployment the batch size was chosen for, and its prediction.
    pub estimate: Estimate,
}

impl SpecPlan {
    /// The Lambda invocations to start for this plan: its fan-out, from 1 to `most`.
    pub fn invocations(&self, most: u32) -> u32 {
        self.estimate.workers.clamp(1, u64::from(most)) as u32
    }
}

/// Where the batches of an automatically sized job will run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SubmitVenue {
    /// Workers on this machine, one claim loop per core, sharing it with the Redis measured.
    ThisMachine,
    /// Lambda invocations of this memory size (arm64), at most `concurrency` at once.
    Lambda {
        /// Memory size, MB.
        memory_mb: u64,
        /// The most invocations at once.
        concurrency: u64,
    },
}

/// The plan a job submitted with an automatic batch size follows (`crunch submit --batch-size
/// auto`, Python's `Client.submit(batch_size="auto")`): a sample of `items` through `pack` for
/// about `budget`, then the model of `venue`; for this machine `store`'s Redis is timed.
pub fn for_submit(
    store: &mut crate::queue::store::Redis,
    pack: &crate::KernelPack,
    call: &crate::KernelCall<'_>,
    items: &[crate::Item],
    budget: std::time::Duration,
    venue: SubmitVenue,
) -> Result<SpecPlan> {
    let sample = sample::measure(pack, call, items, budget)?;
    let limits = JobLimits::of(items, call.batch_time, &crate::Limits::default());
    let estimate = match venue {
        SubmitVenue::ThisMachine => {
            let redis = probe::measure_for(store, &sample)?;
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            model::local(
                &sample,
                cores,
                cores,
                &limits,
                &Assumptions::with_local_redis(Some(redis)),
            )
        }
        SubmitVenue::Lambda {
            memory_mb,
            concurrency,
        } => {
            let target = LambdaTarget {
                memory_mb,
                arch: "arm64".into(),
                speed_ratio: 1.0,
                concurrency,
                deadline_s: 60.0,
                compile_s: 0.0,
            };
            model::lambda(
                &sample,
                &target,
                &limits,
                &PriceTable::built_in(),
                &Assumptions::default(),
            )?
        }
    };
    Ok(SpecPlan { sample, estimate })
}
