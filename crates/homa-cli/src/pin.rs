//! CPU pinning (`sched_setaffinity`) so client and server of a measurement
//! each own one core, the same for every transport.

use anyhow::{bail, Result};

/// CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pins the calling thread (and threads it creates later) to `cpu`.
pub fn pin_current_thread(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET stays inside it for
    // cpu < CPU_SETSIZE (checked).
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            bail!("cpu {cpu} out of range");
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "sched_setaffinity({cpu}): {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// The client and server CPUs: the given ones, else the first two allowed
/// (both the same when only one is allowed).
pub fn choose(client: Option<usize>, server: Option<usize>) -> (usize, usize) {
    let cpus = allowed_cpus();
    let first = cpus.first().copied().unwrap_or(0);
    let second = cpus.get(1).copied().unwrap_or(first);
    (client.unwrap_or(first), server.unwrap_or(second))
}

/// The 1-minute load average, if readable.
pub fn load_average() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().next()?.parse().ok()
}
