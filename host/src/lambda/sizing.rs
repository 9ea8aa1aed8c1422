//! How Lambda's memory size buys CPU: facts the bootstrap (its claim loops) and `crunch plan`
//! (its model of a job on Lambda) both use.

/// Memory that buys one vCPU's worth of CPU time on Lambda.
pub const MB_PER_VCPU: u64 = 1769;

/// The most vCPUs a function gets (at the 10,240 MB maximum).
pub const MAX_VCPUS: u64 = 6;

/// vCPUs' worth of CPU time Lambda gives a function of `mb` MB: one per 1,769 MB, rounded up,
/// at most 6.
pub fn vcpus_for_memory(mb: u64) -> usize {
    mb.div_ceil(MB_PER_VCPU).clamp(1, MAX_VCPUS) as usize
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
        assert_eq!(vcpus_for_memory(20000), 6);
    }
}
