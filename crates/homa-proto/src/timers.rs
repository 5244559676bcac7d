//! The endpoint's deadlines in one table: each kind of timer has one slot,
//! named by [`Timer`], and the driver's [`Endpoint::poll_timeout`] is the
//! earliest armed slot. Which mechanism arms which slot, and what runs when
//! it expires, is in [`Timer`]'s variants; the table itself only stores
//! and compares instants.
//!
//! [`Endpoint::poll_timeout`]: crate::Endpoint::poll_timeout

use crate::Instant;

/// The kinds of deadline an endpoint keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The periodic pass over every RPC (silence, RESEND, probes,
    /// timeouts, NEED_ACK): armed while RPCs exist.
    Tick,
    /// The earliest hole in an incoming message due for a fast RESEND.
    Gaps,
    /// Collection of idle peers: armed while peers exist.
    PeerGc,
    /// The pacer holds data until the NIC backlog drains to this point.
    Pacer,
    /// The next FIFO grant: armed while messages need grants (it may stay
    /// set for a moment after the last one leaves; see
    /// [`TimerTable::next_timeout`]).
    FifoGrant,
    /// The host table (`host` module): heartbeat, and re-checks while the
    /// other participants hold this endpoint's grants back. Armed only
    /// while the endpoint has joined a host table.
    Host,
}

impl Timer {
    const COUNT: usize = 6;
}

/// One deadline per [`Timer`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TimerTable {
    at: [Option<Instant>; Timer::COUNT],
}

impl TimerTable {
    /// Arms (or moves) `timer` to `at`.
    #[inline]
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer as usize] = Some(at);
    }

    /// Arms `timer` at `at` if it is not armed.
    #[inline]
    pub(crate) fn set_if_unset(&mut self, timer: Timer, at: Instant) {
        let slot = &mut self.at[timer as usize];
        if slot.is_none() {
            *slot = Some(at);
        }
    }

    /// Arms `timer` at `at`, or keeps it if it is armed earlier.
    #[inline]
    pub(crate) fn set_earliest(&mut self, timer: Timer, at: Instant) {
        let slot = &mut self.at[timer as usize];
        *slot = Some(slot.map_or(at, |t| t.min(at)));
    }

    /// Arms `timer` at `at`, or disarms it for `None`.
    #[inline]
    pub(crate) fn set_opt(&mut self, timer: Timer, at: Option<Instant>) {
        self.at[timer as usize] = at;
    }

    /// Disarms `timer`.
    #[inline]
    pub(crate) fn stop(&mut self, timer: Timer) {
        self.at[timer as usize] = None;
    }

    /// When `timer` expires, if it is armed.
    #[inline]
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer as usize]
    }

    /// True if `timer` is armed.
    #[inline]
    pub(crate) fn is_set(&self, timer: Timer) -> bool {
        self.at[timer as usize].is_some()
    }

    /// True if `timer` is armed and due at `now`.
    #[inline]
    pub(crate) fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.at[timer as usize].is_some_and(|t| now >= t)
    }

    /// The earliest armed deadline, leaving out the FIFO grant unless
    /// `fifo_live` (messages still need grants).
    #[inline]
    pub(crate) fn next_timeout(&self, fifo_live: bool) -> Option<Instant> {
        // Written out rather than as a loop or an iterator chain: drivers
        // call this after every input, and those did not optimise as well.
        #[inline(always)]
        fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        let a = &self.at;
        let t = earlier(a[Timer::Tick as usize], a[Timer::Gaps as usize]);
        let t = earlier(t, a[Timer::PeerGc as usize]);
        let t = earlier(t, a[Timer::Pacer as usize]);
        let t = earlier(t, a[Timer::Host as usize]);
        if fifo_live {
            earlier(t, a[Timer::FifoGrant as usize])
        } else {
            t
        }
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    fn at(us: u64) -> Instant {
        Instant::from_nanos(us * 1000)
    }

    #[test]
    fn next_timeout__earliest_armed() {
        let mut t = TimerTable::default();
        assert_eq!(t.next_timeout(true), None);
        t.set(Timer::Tick, at(1000));
        t.set(Timer::PeerGc, at(300));
        t.set(Timer::Pacer, at(700));
        assert_eq!(t.next_timeout(true), Some(at(300)));
        t.stop(Timer::PeerGc);
        assert_eq!(t.next_timeout(true), Some(at(700)));
    }

    #[test]
    fn next_timeout__fifo_only_while_live() {
        let mut t = TimerTable::default();
        t.set(Timer::Tick, at(1000));
        t.set(Timer::FifoGrant, at(10));
        assert_eq!(t.next_timeout(true), Some(at(10)));
        assert_eq!(t.next_timeout(false), Some(at(1000)));
    }

    #[test]
    fn set_if_unset__keeps_an_armed_timer() {
        let mut t = TimerTable::default();
        t.set_if_unset(Timer::Tick, at(5));
        t.set_if_unset(Timer::Tick, at(9));
        assert_eq!(t.get(Timer::Tick), Some(at(5)));
    }

    #[test]
    fn set_earliest__only_moves_earlier() {
        let mut t = TimerTable::default();
        t.set_earliest(Timer::Gaps, at(50));
        t.set_earliest(Timer::Gaps, at(80));
        assert_eq!(t.get(Timer::Gaps), Some(at(50)));
        t.set_earliest(Timer::Gaps, at(20));
        assert_eq!(t.get(Timer::Gaps), Some(at(20)));
    }

    #[test]
    fn is_expired__at_and_after_the_deadline() {
        let mut t = TimerTable::default();
        assert!(!t.is_expired(Timer::Pacer, at(100)));
        t.set(Timer::Pacer, at(100));
        assert!(!t.is_expired(Timer::Pacer, at(99)));
        assert!(t.is_expired(Timer::Pacer, at(100)));
        assert!(t.is_expired(Timer::Pacer, at(101)));
        assert!(t.is_set(Timer::Pacer));
        t.set_opt(Timer::Pacer, None);
        assert!(!t.is_set(Timer::Pacer));
    }
}
