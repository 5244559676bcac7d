//! Sleeping and time: an eventfd ([`Event`]) another thread signals to
//! wake a sleeper, a timerfd ([`Timer`]) armed at a deadline with
//! nanosecond resolution, [`poll`] (`ppoll`) over a few descriptors, and
//! the monotonic clock ([`monotonic_nanos`]) and seeds ([`random_u64`]).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

/// A non-blocking eventfd: a counter another thread bumps to wake a thread
/// waiting for it in [`poll`].
#[derive(Debug)]
pub struct Event(EventFd);

impl Event {
    /// A fresh event, not signalled.
    pub fn new() -> io::Result<Event> {
        Ok(Event(EventFd::from_flags(
            EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
        )?))
    }

    /// Makes the event readable (wakes its waiter). A saturated counter
    /// still leaves it readable, which is all that matters.
    pub fn signal(&self) {
        let _ = self.0.write(1);
    }

    /// Resets the event after a wake-up.
    pub fn reset(&self) {
        let _ = self.0.read();
    }
}

impl AsFd for Event {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A non-blocking `CLOCK_MONOTONIC` timerfd: readable once armed and due.
#[derive(Debug)]
pub struct Timer(TimerFd);

impl Timer {
    /// A disarmed timer.
    pub fn new() -> io::Result<Timer> {
        Ok(Timer(TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?))
    }

    /// Arms the timer to fire once after `after` (`None` disarms it). A
    /// zero delay fires after 1 ns (a zero value would disarm).
    pub fn arm(&self, after: Option<Duration>) -> io::Result<()> {
        match after {
            Some(d) => {
                let d = d.max(Duration::from_nanos(1));
                self.0.set(
                    Expiration::OneShot(TimeSpec::from_duration(d)),
                    TimerSetTimeFlags::empty(),
                )?;
            }
            None => self.0.unset()?,
        }
        Ok(())
    }

    /// Resets a fired timer (reads its expiration count), so it is no
    /// longer readable. True if it had fired.
    pub fn reset(&self) -> bool {
        self.0.wait().is_ok()
    }
}

impl AsFd for Timer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Readiness [`poll`] reported for one descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    /// Readable (or hung up).
    pub readable: bool,
    /// Writable (only reported when asked for).
    pub writable: bool,
    /// An error is pending (`POLLERR`: e.g. the socket's error queue).
    pub error: bool,
}

/// Waits until one of `fds` (descriptor, want-write) is ready or `timeout`
/// passes (`None`: forever), with nanosecond resolution (`ppoll`). An
/// interrupted wait returns as if nothing were ready.
pub fn poll<const N: usize>(
    fds: [(BorrowedFd<'_>, bool); N],
    timeout: Option<Duration>,
) -> io::Result<[Ready; N]> {
    let mut pfds = fds.map(|(fd, write)| {
        let mut events = PollFlags::POLLIN;
        if write {
            events |= PollFlags::POLLOUT;
        }
        PollFd::new(fd, events)
    });
    match nix::poll::ppoll(&mut pfds, timeout.map(TimeSpec::from_duration), None) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return Ok([Ready::default(); N]),
        Err(e) => return Err(e.into()),
    }
    Ok(pfds.map(|p| {
        let r = p.revents().unwrap_or(PollFlags::empty());
        Ready {
            readable: r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP),
            writable: r.contains(PollFlags::POLLOUT),
            error: r.contains(PollFlags::POLLERR),
        }
    }))
}

/// Waits until `fd` is writable or `timeout` passes: true if writable.
pub fn writable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let mut p = [PollFd::new(fd, PollFlags::POLLOUT)];
    match nix::poll::ppoll(&mut p, timeout.map(TimeSpec::from_duration), None) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(p[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLOUT)))
}

/// `CLOCK_MONOTONIC` in nanoseconds: the vDSO's clock through `rustix`,
/// whose call is inlined and cannot fail (the runtime reads the clock on
/// every busy-poll iteration; `nix`'s wrapper cost a visible share of it).
#[inline]
pub fn monotonic_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}

/// Eight random bytes from the kernel (`/dev/urandom`), e.g. a seed.
/// Falls back to the clock if the device cannot be read.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
    {
        Ok(()) => u64::from_ne_bytes(b),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn timer_arm__fires_and_disarms() {
        let t = Timer::new().unwrap();
        t.arm(Some(Duration::ZERO)).unwrap();
        // Fires after 1 ns; wait without a time limit so timing cannot decide.
        let [r] = poll([(t.as_fd(), false)], None).unwrap();
        assert!(r.readable);
        t.reset();
        t.arm(None).unwrap();
        let [r] = poll([(t.as_fd(), false)], Some(Duration::ZERO)).unwrap();
        assert!(!r.readable);
    }

    #[test]
    fn event__signal_wakes_and_reset_clears() {
        let e = Event::new().unwrap();
        let [r] = poll([(e.as_fd(), false)], Some(Duration::ZERO)).unwrap();
        assert!(!r.readable);
        e.signal();
        e.signal();
        let [r] = poll([(e.as_fd(), false)], None).unwrap();
        assert!(r.readable);
        e.reset();
        let [r] = poll([(e.as_fd(), false)], Some(Duration::ZERO)).unwrap();
        assert!(!r.readable);
    }

    #[test]
    fn monotonic_nanos__does_not_go_back() {
        let a = monotonic_nanos();
        let b = monotonic_nanos();
        assert!(a > 0 && b >= a);
    }
}
