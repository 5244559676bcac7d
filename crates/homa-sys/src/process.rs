//! What the network labs and the benchmarks ask of the kernel about
//! processes and threads: the effective user, killing a process, entering
//! a network namespace (this thread, or a child before it runs), CPU
//! affinity, the CPU time of finished children, and the allocator's trim
//! thresholds.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

use nix::sched::{CloneFlags, CpuSet};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// True if the process runs as root (effective user 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Sends SIGKILL to process `pid`.
pub fn kill(pid: i32) -> io::Result<()> {
    nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    Ok(())
}

/// Sends SIGTERM to process `pid` (asks it to exit).
pub fn terminate(pid: i32) -> io::Result<()> {
    nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM)?;
    Ok(())
}

/// Moves the calling thread into the network namespace `ns` (a namespace
/// file such as `/var/run/netns/<name>`): sockets it creates from now on
/// live there.
pub fn enter_netns(ns: &File) -> io::Result<()> {
    nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)?;
    Ok(())
}

/// Makes `cmd`'s child enter the network namespace `ns` before it runs
/// its program (so its pid is the program's, and killing it kills the
/// program) and, if `die_with_parent`, receive SIGKILL when the thread that
/// spawned it dies (`PR_SET_PDEATHSIG`). `ns` stays open as long as `cmd`
/// exists (and is close-on-exec).
pub fn command_in_netns(cmd: &mut Command, ns: File, die_with_parent: bool) {
    let hook = move || -> io::Result<()> {
        nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)?;
        if die_with_parent {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
        }
        Ok(())
    };
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the hook only calls setns and prctl,
    // which are async-signal-safe, and allocates nothing (the namespace
    // file was opened before the fork).
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Makes `cmd`'s child run at nice value `nice` (`setpriority` before its
/// program runs); 0 leaves it alone.
pub fn nice_on_exec(cmd: &mut Command, nice: i32) {
    if nice == 0 {
        return;
    }
    let hook = move || -> io::Result<()> {
        // SAFETY: setpriority has no memory preconditions.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the hook only calls setpriority, which
    // is async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Fixes glibc's allocator thresholds: blocks from `mmap_threshold` bytes
/// up are `mmap`ed, and the heap is trimmed only above `trim_threshold`
/// free bytes. With the default dynamic thresholds, a process receiving
/// megabyte messages returns freed buffers to the kernel and faults them
/// back in for the next message. Call it before other threads start.
/// False if glibc refused a value.
pub fn tune_malloc(mmap_threshold: i32, trim_threshold: i32) -> bool {
    // SAFETY: mallopt only adjusts allocator parameters (no memory is
    // passed); the caller calls it before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, mmap_threshold) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, trim_threshold) == 1
    }
}

/// CPUs the calling thread may run on (`sched_getaffinity`); `[0]` if the
/// kernel will not say.
pub fn allowed_cpus() -> Vec<usize> {
    match nix::sched::sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => vec![0],
    }
}

/// Pins the calling thread (and threads it creates later) to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cpu {cpu} out of range"),
        )
    })?;
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set)?;
    Ok(())
}

/// User plus system CPU time of the process's finished children
/// (`getrusage(RUSAGE_CHILDREN)`).
pub fn children_cpu_time() -> io::Result<Duration> {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    let d = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Ok(d(u.user_time()) + d(u.system_time()))
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn pin_current_thread__runs_only_there() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        let last = *cpus.last().unwrap();
        std::thread::spawn(move || {
            pin_current_thread(last).unwrap();
            assert_eq!(allowed_cpus(), vec![last]);
        })
        .join()
        .unwrap();
        assert!(pin_current_thread(1 << 20).is_err());
    }

    #[test]
    fn nice_on_exec__the_child_runs_at_that_nice_value() {
        let mut cmd = Command::new("nice");
        nice_on_exec(&mut cmd, 7);
        let out = cmd.output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");
    }

    #[test]
    fn children_cpu_time__counts_a_finished_child() {
        let before = children_cpu_time().unwrap();
        Command::new("true").status().unwrap();
        assert!(children_cpu_time().unwrap() >= before);
    }
}
