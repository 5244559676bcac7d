//! What the network labs and the benchmarks ask of the kernel about
//! processes and threads: the effective user, killing a process, entering
//! a network namespace (this thread, or a child before it runs), CPU
//! affinity, CPU time (of the calling thread, of the process, of finished
//! children; [`CpuMeter`] for CPU per operation), and the allocator's trim
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

/// CPU time as the kernel accounts it (`getrusage`): user and system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct CpuTime {
    /// Time spent in user space.
    pub user: Duration,
    /// Time spent in the kernel on the caller's behalf (system calls,
    /// and the softirq work the kernel charges to the running thread).
    pub system: Duration,
}

impl CpuTime {
    /// User plus system.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    /// What was spent between `earlier` and `self` (zero, not negative,
    /// if the kernel's user/system split moved backwards).
    pub fn since(&self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    /// Nanoseconds of CPU (user plus system) per operation, for `ops`
    /// operations; 0 if there were none.
    pub fn nanos_per(&self, ops: u64) -> f64 {
        if ops == 0 {
            0.0
        } else {
            self.total().as_nanos() as f64 / ops as f64
        }
    }
}

fn rusage(who: nix::sys::resource::UsageWho) -> io::Result<CpuTime> {
    let u = nix::sys::resource::getrusage(who)?;
    let d = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Ok(CpuTime {
        user: d(u.user_time()),
        system: d(u.system_time()),
    })
}

/// CPU time of the calling thread (`getrusage(RUSAGE_THREAD)`).
pub fn thread_cpu_time() -> io::Result<CpuTime> {
    rusage(nix::sys::resource::UsageWho::RUSAGE_THREAD)
}

/// CPU time of the whole process, every thread, living or ended
/// (`getrusage(RUSAGE_SELF)`).
pub fn process_cpu_time() -> io::Result<CpuTime> {
    rusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
}

/// User plus system CPU time of the process's finished children
/// (`getrusage(RUSAGE_CHILDREN)`).
pub fn children_cpu_time() -> io::Result<Duration> {
    Ok(rusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)?.total())
}

/// Measures the CPU time of the process (or of one thread) from its
/// creation: what `homa client` and `homa server` divide by the RPCs they
/// completed to print CPU per RPC.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    thread: bool,
    start: CpuTime,
}

impl CpuMeter {
    /// Starts measuring the whole process (all its threads).
    pub fn process() -> io::Result<CpuMeter> {
        Ok(CpuMeter {
            thread: false,
            start: process_cpu_time()?,
        })
    }

    /// Starts measuring the calling thread only; [`CpuMeter::elapsed`]
    /// must be called on the same thread.
    pub fn thread() -> io::Result<CpuMeter> {
        Ok(CpuMeter {
            thread: true,
            start: thread_cpu_time()?,
        })
    }

    /// CPU time spent since the meter started.
    pub fn elapsed(&self) -> io::Result<CpuTime> {
        let now = if self.thread {
            thread_cpu_time()?
        } else {
            process_cpu_time()?
        };
        Ok(now.since(self.start))
    }

    /// Microseconds of CPU per operation since the meter started, for
    /// `ops` operations (0 if there were none).
    pub fn micros_per(&self, ops: u64) -> io::Result<f64> {
        Ok(self.elapsed()?.nanos_per(ops) / 1e3)
    }
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

    /// Burns `d` of this thread's CPU time in user space (however long
    /// that takes on a busy machine).
    fn burn(d: Duration) -> u64 {
        let start = thread_cpu_time().unwrap().total();
        let mut x = 1u64;
        while thread_cpu_time().unwrap().total() < start + d {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        x
    }

    #[test]
    fn thread_cpu_time__counts_only_this_thread() {
        let meter = CpuMeter::thread().unwrap();
        let process = CpuMeter::process().unwrap();
        // Another thread burns 100 ms of CPU; this one waits for it.
        std::thread::spawn(|| burn(Duration::from_millis(100)))
            .join()
            .unwrap();
        let mine = meter.elapsed().unwrap().total();
        let all = process.elapsed().unwrap().total();
        assert!(
            mine < Duration::from_millis(50),
            "this thread used {mine:?}"
        );
        assert!(
            all >= Duration::from_millis(100),
            "the process used {all:?}"
        );
        // Now this thread burns.
        burn(Duration::from_millis(100));
        let mine = meter.elapsed().unwrap();
        assert!(mine.total() >= Duration::from_millis(100), "{mine:?}");
        assert!(mine.user > mine.system, "{mine:?}");
    }

    #[test]
    fn cpu_time__since_and_per_operation() {
        let a = CpuTime {
            user: Duration::from_millis(3),
            system: Duration::from_millis(5),
        };
        let b = CpuTime {
            user: Duration::from_millis(7),
            system: Duration::from_millis(4),
        };
        let d = b.since(a);
        assert_eq!(d.user, Duration::from_millis(4));
        assert_eq!(d.system, Duration::ZERO, "never negative");
        assert_eq!(d.nanos_per(4), 1e6);
        assert_eq!(d.nanos_per(0), 0.0);
    }
}
