//! How many claim loops an invocation runs: one per vCPU the function can keep busy, or
//! `CRUNCH_CONCURRENCY`.

/// Memory that buys one vCPU's worth of CPU time on Lambda.
pub const MB_PER_VCPU: u64 = 1769;

/// The vCPUs this function can keep busy: the CPUs the process may run on (its affinity and
/// cgroup CPU quota, through `available_parallelism`), capped on Lambda by its memory size
/// (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`): Lambda gives one vCPU's worth of CPU time per
/// [`MB_PER_VCPU`] MB, up to 6 at 10,240 MB, whatever number of CPUs it shows.
pub fn vcpus() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let by_memory = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .ok()
        .and_then(|mb| mb.parse::<u64>().ok())
        .map(vcpus_for_memory);
    by_memory.map_or(cpus, |m| m.min(cpus))
}

/// vCPUs' worth of CPU time Lambda gives a function of `mb` MB: one per 1,769 MB, rounded up.
pub fn vcpus_for_memory(mb: u64) -> usize {
    mb.div_ceil(MB_PER_VCPU).max(1) as usize
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_buys_vcpus_in_steps_of_1769_mb() {
        assert_eq!(vcpus_for_memory(128), 1);
        assert_eq!(vcpus_for_memory(1769), 1);
        assert_eq!(vcpus_for_memory(1770), 2);
        assert_eq!(vcpus_for_memory(3538), 2);
        assert_eq!(vcpus_for_memory(10240), 6);
    }
}
