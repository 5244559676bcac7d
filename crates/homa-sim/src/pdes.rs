//! What a rack-parallel simulation of the same run could gain: an estimate
//! measured on the run's own events (`RunParams::pdes_estimate`).
//!
//! The model is a conservative, synchronous parallel discrete-event
//! simulation with one logical process (LP) per rack: its hosts' endpoints
//! and NICs, its ToR, and every aggregation switch's port down to it (an
//! aggregation switch shares nothing between its ports but a buffer
//! statistic, so each rack can own the ports that feed it). The only events
//! one LP schedules for another are packets on the ToR-to-aggregation
//! links: the source rack's uplink delivers them to the destination rack's
//! aggregation port, at least the link's latency (switch delay plus
//! propagation) after they are scheduled. That latency is the lookahead:
//! time is cut into windows of one lookahead, and within a window every LP
//! can process its events without hearing from the others; a barrier ends
//! each window. (Aggregation switches as LPs of their own would carry a
//! quarter of all inter-rack packets each and bound the speed-up.)
//!
//! The estimator counts every event of the sequential run in its LP and
//! window. With LPs dealt round robin over `N` cores, a window costs its
//! busiest core's events, so the run costs the sum over windows of that
//! maximum: the events on the critical path. The ratio of all events to it
//! is the speed-up on `N` cores before barrier and communication costs; the
//! report also counts the windows (one barrier each) and the events that
//! cross LPs (one message each). It only observes: results are the same
//! with or without it.

use crate::fabric::{Fabric, Node, Port, PortKind};
use crate::time::Ps;

/// Core counts the estimate is computed for.
pub const CORES: [u32; 7] = [1, 2, 4, 8, 16, 32, 64];

/// The kinds of events counted (see [`Pdes::kinds`]).
pub const KINDS: [&str; 6] = [
    "switch arrivals",
    "host arrivals",
    "switch ports freeing",
    "NIC ports freeing",
    "timers",
    "application",
];

/// The estimate's state and counters (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Pdes {
    /// Window length: the lookahead.
    window: Ps,
    /// LPs: one per rack.
    lps: usize,
    /// The window being counted.
    current: u64,
    /// Events of each LP in the current window.
    counts: Vec<u64>,
    /// Per entry of [`CORES`]: summed over windows, the busiest core's
    /// events.
    critical: [u64; CORES.len()],
    /// Windows with at least one event.
    windows: u64,
    /// Events counted.
    events: u64,
    /// Events scheduled by one LP for another (packets on ToR-aggregation
    /// links).
    crossing: u64,
    /// Events by kind ([`KINDS`]).
    kinds: [u64; KINDS.len()],
}

/// The estimate, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct PdesReport {
    /// The lookahead (window length), µs.
    pub window_us: f64,
    /// Logical processes: one per rack.
    pub lps: usize,
    /// Events counted (every event of the run but the simulator's own
    /// sampling).
    pub events: u64,
    /// Windows with at least one event (one barrier each).
    pub windows: u64,
    /// Events whose packet crossed from one LP to another.
    pub crossing: u64,
    /// `(cores, speed-up before barrier and communication costs)`.
    pub speedup: Vec<(u32, f64)>,
    /// `(kind, events)`, as [`KINDS`].
    pub kinds: Vec<(&'static str, u64)>,
}

impl Pdes {
    /// An estimator for `fabric` with windows of `window` (at least 1 ps).
    pub(crate) fn new(fabric: &Fabric, window: Ps) -> Pdes {
        let lps = fabric.racks() as usize;
        Pdes {
            window: window.max(1),
            lps,
            current: 0,
            counts: vec![0; lps],
            critical: [0; CORES.len()],
            windows: 0,
            events: 0,
            crossing: 0,
            kinds: [0; KINDS.len()],
        }
    }

    /// The LP of host `h`.
    pub(crate) fn host_lp(fabric: &Fabric, h: u32) -> usize {
        fabric.rack(h) as usize
    }

    /// The LP of a packet to host `dst` arriving at node `n`: a host's or a
    /// ToR's rack, or at an aggregation switch the destination's rack.
    pub(crate) fn arrival_lp(fabric: &Fabric, n: Node, dst: u32) -> usize {
        match n {
            Node::Host(h) => Self::host_lp(fabric, h),
            Node::Switch(s) if s < fabric.racks() => s as usize,
            Node::Switch(_) => Self::host_lp(fabric, dst),
        }
    }

    /// The LP of a port: its host's or ToR's rack, or for an aggregation
    /// switch's port the rack it leads to.
    pub(crate) fn port_lp(fabric: &Fabric, p: &Port) -> usize {
        match (p.kind, p.to) {
            (PortKind::Nic, _) => Self::host_lp(fabric, p.host),
            (PortKind::AggDown, Node::Switch(r)) => r as usize,
            _ => p.switch as usize,
        }
    }

    /// Counts an event of `kind` (index into [`KINDS`]) at `now` in `lp`;
    /// `crossing`: it is a packet that came from another LP.
    pub(crate) fn count(&mut self, now: Ps, lp: usize, kind: usize, crossing: bool) {
        let w = now / self.window;
        if w != self.current {
            self.flush();
            self.current = w;
        }
        self.counts[lp] += 1;
        self.events += 1;
        self.kinds[kind] += 1;
        self.crossing += u64::from(crossing);
    }

    /// Closes the current window.
    fn flush(&mut self) {
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            return;
        }
        self.windows += 1;
        for (i, &n) in CORES.iter().enumerate() {
            let n = n as usize;
            let busiest = if n >= self.lps {
                self.counts.iter().copied().max().unwrap_or(0)
            } else {
                // LP l runs on core l mod n: racks first, then the
                // aggregation switches continue the rotation.
                (0..n)
                    .map(|c| self.counts.iter().skip(c).step_by(n).sum::<u64>())
                    .max()
                    .unwrap_or(0)
            };
            self.critical[i] += busiest;
        }
        self.counts.iter_mut().for_each(|c| *c = 0);
    }

    /// The estimate so far (closes the current window).
    pub(crate) fn report(&mut self) -> PdesReport {
        self.flush();
        PdesReport {
            window_us: self.window as f64 / 1e6,
            lps: self.lps,
            events: self.events,
            windows: self.windows,
            crossing: self.crossing,
            speedup: CORES
                .iter()
                .zip(self.critical)
                .map(|(&n, c)| (n, self.events as f64 / c.max(1) as f64))
                .collect(),
            kinds: KINDS.iter().copied().zip(self.kinds).collect(),
        }
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;
    use crate::config::Topology;

    fn fabric(racks: u32) -> Fabric {
        let t = Topology {
            racks,
            hosts_per_rack: 2,
            ..Topology::default()
        };
        Fabric::new(&t, 0, 0, true, 1)
    }

    #[test]
    fn count__critical_path_is_the_busiest_core_per_window() {
        let f = fabric(3);
        let mut p = Pdes::new(&f, 100);
        assert_eq!(p.lps, 3);
        // Window 0: rack 0 has 3 events, rack 1 one.
        for _ in 0..3 {
            p.count(10, 0, 0, false);
        }
        p.count(20, 1, 1, true);
        // Window 2: one event each in racks 1 and 2.
        p.count(250, 1, 2, false);
        p.count(260, 2, 3, true);
        let r = p.report();
        assert_eq!(r.events, 6);
        assert_eq!(r.windows, 2);
        assert_eq!(r.crossing, 2);
        let speedup: std::collections::BTreeMap<u32, f64> = r.speedup.iter().copied().collect();
        // One core: everything is on the critical path.
        assert_eq!(speedup[&1], 1.0);
        // Two cores: racks 0 and 2 share core 0; window 0 costs 3,
        // window 2 costs 1.
        assert_eq!(speedup[&2], 6.0 / 4.0);
        // Enough cores for every LP: window 0 costs 3, window 2 costs 1.
        assert_eq!(speedup[&64], 6.0 / 4.0);
        assert_eq!(r.kinds[0], ("switch arrivals", 3));
    }
}
