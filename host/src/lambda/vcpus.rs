//! How many claim loops an invocation runs: one per vCPU the function can keep busy, or
//! `CRUNCH_CONCURRENCY`.

use crate::lambda::sizing::vcpus_for_memory;

/// The vCPUs this function can keep busy: the CPUs the process may run on (its affinity and
/// cgroup CPU quota, through `available_parallelism`), capped on Lambda by its memory size
/// (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`): Lambda gives one vCPU's worth of CPU time per
/// [`MB_PER_VCPU`](crate::lambda::sizing::MB_PER_VCPU) MB, up to 6 at 10,240 MB, whatever number of CPUs it shows.
pub fn vcpus() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let by_memory = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .ok()
        .and_then(|mb| mb.parse::<u64>().ok())
        .map(vcpus_for_memory);
    by_memory.map_or(cpus, |m| m.min(cpus))
}

/// `CRUNCH_CONCURRENCY` when set (a whole number above 0), else [`vcpus`].
pub fn concurrency_from_env() -> Result<usize, String> {
    match std::env::var("CRUNCH_CONCURRENCY") {
        Ok(v) => {
            v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("CRUNCH_CONCURRENCY must be a whole number above 0, got {v:?}")
            })
        }
        Err(_) => Ok(vcpus()),
    }
}
