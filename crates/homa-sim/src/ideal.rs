//! The ideal reference: every host downlink as a work-conserving queue fed
//! directly by the messages addressed to it (an output-queued switch with
//! unlimited internal speed-up, the bound pFabric-style schedulers aim
//! for). It sees exactly the run's arrivals, so it separates what any
//! scheduler loses to the workload (a heavy-tailed workload needs tens of
//! milliseconds to build up its steady backlog, during which even a perfect
//! network carries less than the offered load) from what the protocol
//! loses (a downlink idle while a message for it waits elsewhere).

use crate::time::Ps;

/// Work-conserving queues, one per host downlink.
#[derive(Debug, Clone)]
pub(crate) struct Ideal {
    /// Bytes per picosecond.
    rate: f64,
    /// Unfinished bytes per host, as of `last`.
    backlog: Vec<f64>,
    last: Vec<Ps>,
    /// Measurement window.
    start: Ps,
    end: Ps,
    /// Bytes sent in the window, all hosts.
    pub window_bytes: f64,
}

impl Ideal {
    pub fn new(hosts: u32, link_bps: u64, start: Ps, end: Ps) -> Ideal {
        Ideal {
            rate: link_bps as f64 / 8.0 / 1e12,
            backlog: vec![0.0; hosts as usize],
            last: vec![0; hosts as usize],
            start,
            end,
            window_bytes: 0.0,
        }
    }

    /// Drains host `h`'s queue up to time `t`.
    fn advance(&mut self, h: usize, t: Ps) {
        let last = self.last[h];
        if t <= last {
            return;
        }
        let busy = ((t - last) as f64).min(self.backlog[h] / self.rate);
        let (a, b) = (last as f64, last as f64 + busy);
        let overlap = (b.min(self.end as f64) - a.max(self.start as f64)).max(0.0);
        self.window_bytes += overlap * self.rate;
        self.backlog[h] = (self.backlog[h] - busy * self.rate).max(0.0);
        self.last[h] = t;
    }

    /// `bytes` (on the wire) for host `h` arrive at `t`.
    pub fn arrive(&mut self, h: u32, t: Ps, bytes: u64) {
        let h = h as usize;
        self.advance(h, t);
        self.backlog[h] += bytes as f64;
    }

    /// Total unfinished bytes at `t` (no arrival may precede it later).
    pub fn backlog_at(&mut self, t: Ps) -> f64 {
        for h in 0..self.backlog.len() {
            self.advance(h, t);
        }
        self.backlog.iter().sum()
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn ideal__drains_at_link_rate_and_counts_the_window() {
        // One byte per ps (8 Tbit/s) keeps the numbers simple.
        let mut q = Ideal::new(2, 8_000_000_000_000, 100, 200);
        q.arrive(0, 50, 100); // busy 50..150: 50 bytes in the window
        assert_eq!(q.backlog_at(100), 50.0);
        q.arrive(1, 190, 100); // busy 190..290: 10 in the window
        assert_eq!(q.backlog_at(400), 0.0);
        assert_eq!(q.window_bytes, 60.0);
    }
}

/// A second, stricter reference: global SRPT with a greedy maximal
/// matching of senders to receivers, as a fluid over slots of one
/// full-size packet time (every message needs its sender's uplink *and* its
/// receiver's downlink; no latency, perfect knowledge, no windows). It
/// shows what the matching constraint alone costs; a distributed protocol
/// can approach it but hardly beat it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Greedy {
    /// (creation time, sender, receiver, wire bytes), in creation order.
    arrivals: Vec<(Ps, u32, u32, u64)>,
}

impl Greedy {
    pub fn arrive(&mut self, t: Ps, src: u32, dst: u32, bytes: u64) {
        self.arrivals.push((t, src, dst, bytes));
    }

    /// Runs the reference: returns the bytes delivered in `[start, end)`
    /// and the unfinished bytes at each of `probes` (sorted times).
    pub fn run(
        &self,
        hosts: u32,
        link_bps: u64,
        slot_bytes: u64,
        start: Ps,
        end: Ps,
        probes: &[Ps],
    ) -> (f64, Vec<f64>) {
        use std::collections::BTreeSet;
        let slot = slot_bytes * 8 * 1_000_000_000_000 / link_bps;
        let mut arrivals = self.arrivals.clone();
        arrivals.sort_by_key(|a| a.0);
        let mut remaining: Vec<u64> = Vec::with_capacity(arrivals.len());
        let mut active: BTreeSet<(u64, usize)> = BTreeSet::new();
        let mut next = 0;
        let mut window = 0.0;
        let mut backlog = 0u64;
        let mut out = Vec::with_capacity(probes.len());
        let mut probe = 0;
        let n = hosts as usize;
        let mut cap_s = vec![0u64; n];
        let mut cap_r = vec![0u64; n];
        let mut t: Ps = 0;
        let last_arrival = arrivals.last().map_or(0, |a| a.0);
        loop {
            while probe < probes.len() && probes[probe] <= t {
                out.push(backlog as f64);
                probe += 1;
            }
            while next < arrivals.len() && arrivals[next].0 <= t {
                remaining.push(arrivals[next].3);
                backlog += arrivals[next].3;
                active.insert((arrivals[next].3, next));
                next += 1;
            }
            if t > last_arrival && active.is_empty() && probe >= probes.len() {
                break;
            }
            cap_s.iter_mut().for_each(|c| *c = slot_bytes);
            cap_r.iter_mut().for_each(|c| *c = slot_bytes);
            let (mut free_s, mut free_r) = (n, n);
            let mut done: Vec<(u64, usize, u64)> = Vec::new();
            for &(rem, i) in active.iter() {
                if free_s == 0 || free_r == 0 {
                    break;
                }
                let (_, s, r, _) = arrivals[i];
                let (s, r) = (s as usize, r as usize);
                let amount = rem.min(cap_s[s]).min(cap_r[r]);
                if amount == 0 {
                    continue;
                }
                cap_s[s] -= amount;
                cap_r[r] -= amount;
                free_s -= usize::from(cap_s[s] == 0);
                free_r -= usize::from(cap_r[r] == 0);
                done.push((rem, i, amount));
            }
            let in_window = t >= start && t < end;
            for (rem, i, amount) in done {
                active.remove(&(rem, i));
                remaining[i] = rem - amount;
                backlog -= amount;
                if in_window {
                    window += amount as f64;
                }
                if remaining[i] > 0 {
                    active.insert((remaining[i], i));
                }
            }
            t += slot;
        }
        (window, out)
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod greedy_tests {
    use super::*;

    #[test]
    fn greedy__srpt_order_and_one_message_per_link_per_slot() {
        // 100-byte slots of 100 ps (8 Tbit/s).
        let mut g = Greedy::default();
        g.arrive(0, 0, 1, 300); // A: blocked in slot 0 by B (same sender)
        g.arrive(0, 0, 2, 100); // B: shortest, goes first
        g.arrive(0, 3, 1, 100); // C: takes receiver 1 in slot 0
        let (window, backlog) = g.run(4, 8_000_000_000_000, 100, 0, 250, &[150, 1000]);
        // Slot 0: B and C (200 bytes); slots 1-3: A. The window holds the
        // slots starting at 0, 100 and 200.
        assert_eq!(window, 400.0);
        assert_eq!(backlog, vec![200.0, 0.0]);
    }
}
