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
    fn children_cpu_time__counts_a_finished_child() {
        let before = children_cpu_time().unwrap();
        Command::new("true").status().unwrap();
        assert!(children_cpu_time().unwrap() >= before);
    }
}
