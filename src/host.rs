//! What the machine running taskbench has to give a run, read from the OS: the memory the checks before a
//! run (Python harnesses, publishers) measure a scenario against, and the descriptors the process keeps for
//! itself.

/// Descriptors the process needs besides its publishers' and a sink's connections (stdio, the runtime, a
/// sink's listener, the files a run writes): what the preflight check counts and a sink leaves free.
pub const BASE_DESCRIPTORS: u64 = 64;

/// MemAvailable from /proc/meminfo, in bytes (`None` where there is no such file): the memory a case's
/// harnesses (here) and publishers (`run::preflight`) may take without the machine swapping.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}
