//! The ideal reference: every host downlink as a work-conserving queue fed
//! directly by the messages addressed to it (an output-queued switch with
//! unlimited internal speed-up, the bound pFabric-style schedulers aim
//! for). It sees exactly the run's arrivals, so it separates what any
//! scheduler loses to the workload (a heavy-tailed workload needs tens of
//! milliseconds to build up its steady backlog, during which even a perfect
//! network carries less than the offered load) from what the protocol
//! loses (a downlink idle while a message for it waits elsewhere).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use slab::Slab;

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
///
/// It runs alongside the simulation ([`Greedy::advance_to`]), so it keeps
/// only the messages not yet finished (its backlog), never the whole run's
/// arrivals.
/// A message for the matching reference: (time, arrival order, sender,
/// receiver, bytes).
type Arrival = (Ps, u64, u32, u32, u64);

#[derive(Debug, Clone)]
pub(crate) struct Greedy {
    enabled: bool,
    slot: Ps,
    slot_bytes: u64,
    start: Ps,
    end: Ps,
    /// Arrivals not yet admitted, earliest first.
    pending: BinaryHeap<Reverse<Arrival>>,
    order: u64,
    /// Messages admitted and unfinished: (sender, receiver).
    msgs: Slab<(u32, u32)>,
    /// The same in SRPT order: (remaining bytes, arrival order, key).
    active: BTreeSet<(u64, u64, usize)>,
    /// Start of the next slot to serve.
    t: Ps,
    /// Per host: the slot number in which `cap_*` was last set, and the
    /// bytes left in it.
    cap_s: Vec<(u64, u64)>,
    cap_r: Vec<(u64, u64)>,
    backlog: u64,
    window: f64,
    samples: Vec<f64>,
}

impl Greedy {
    /// The reference for `hosts` hosts on links of `link_bps`, in slots of
    /// `slot_bytes` (a full packet on the wire), counting bytes delivered
    /// in `[start, end)`. Disabled, it costs nothing and reports nothing.
    pub fn new(
        enabled: bool,
        hosts: u32,
        link_bps: u64,
        slot_bytes: u64,
        start: Ps,
        end: Ps,
    ) -> Greedy {
        Greedy {
            enabled,
            slot: (slot_bytes * 8 * 1_000_000_000_000 / link_bps).max(1),
            slot_bytes,
            start,
            end,
            pending: BinaryHeap::new(),
            order: 0,
            msgs: Slab::new(),
            active: BTreeSet::new(),
            t: 0,
            cap_s: vec![(u64::MAX, 0); hosts as usize],
            cap_r: vec![(u64::MAX, 0); hosts as usize],
            backlog: 0,
            window: 0.0,
            samples: Vec::new(),
        }
    }

    /// A message of `bytes` (on the wire) from `src` to `dst` created at `t`.
    pub fn arrive(&mut self, t: Ps, src: u32, dst: u32, bytes: u64) {
        if !self.enabled {
            return;
        }
        self.order += 1;
        self.pending.push(Reverse((t, self.order, src, dst, bytes)));
    }

    /// Serves every slot that starts at or before `until`.
    pub fn advance_to(&mut self, until: Ps) {
        if !self.enabled {
            return;
        }
        while self.t <= until {
            if self.active.is_empty() {
                // Idle: jump to the slot of the next arrival.
                match self.pending.peek() {
                    Some(Reverse(a)) if a.0 > self.t => {
                        let next = a.0.div_ceil(self.slot) * self.slot;
                        if next > until {
                            self.t = next;
                            return;
                        }
                        self.t = next;
                    }
                    Some(_) => {}
                    None => {
                        self.t = (until / self.slot + 1) * self.slot;
                        return;
                    }
                }
            }
            while let Some(Reverse(a)) = self.pending.peek() {
                if a.0 > self.t {
                    break;
                }
                let (_, order, src, dst, bytes) = self.pending.pop().expect("peeked").0;
                let key = self.msgs.insert((src, dst));
                self.active.insert((bytes, order, key));
                self.backlog += bytes;
            }
            self.serve_slot();
            self.t += self.slot;
        }
    }

    fn serve_slot(&mut self) {
        let n = self.cap_s.len();
        let slot_no = self.t / self.slot;
        let (mut free_s, mut free_r) = (n, n);
        let mut done: Vec<(u64, u64, usize, u64)> = Vec::new();
        for &(rem, order, key) in self.active.iter() {
            if free_s == 0 || free_r == 0 {
                break;
            }
            let (s, r) = self.msgs[key];
            let (s, r) = (s as usize, r as usize);
            for c in [&mut self.cap_s[s], &mut self.cap_r[r]] {
                if c.0 != slot_no {
                    *c = (slot_no, self.slot_bytes);
                }
            }
            let amount = rem.min(self.cap_s[s].1).min(self.cap_r[r].1);
            if amount == 0 {
                continue;
            }
            self.cap_s[s].1 -= amount;
            self.cap_r[r].1 -= amount;
            free_s -= usize::from(self.cap_s[s].1 == 0);
            free_r -= usize::from(self.cap_r[r].1 == 0);
            done.push((rem, order, key, amount));
        }
        let in_window = self.t >= self.start && self.t < self.end;
        for (rem, order, key, amount) in done {
            self.active.remove(&(rem, order, key));
            self.backlog -= amount;
            if in_window {
                self.window += amount as f64;
            }
            if rem > amount {
                self.active.insert((rem - amount, order, key));
            } else {
                self.msgs.remove(key);
            }
        }
    }

    /// Records the unfinished bytes now (after [`Greedy::advance_to`]).
    pub fn sample_backlog(&mut self) {
        self.samples.push(if self.enabled {
            self.backlog as f64
        } else {
            f64::NAN
        });
    }

    /// Bytes delivered in the window so far.
    pub fn window_bytes(&self) -> f64 {
        self.window
    }

    /// The backlog samples, in order.
    pub fn backlog_samples(&self) -> Vec<f64> {
        self.samples.clone()
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod greedy_tests {
    use super::*;

    #[test]
    fn greedy__srpt_order_and_one_message_per_link_per_slot() {
        // 100-byte slots of 100 ps (8 Tbit/s).
        let mut g = Greedy::new(true, 4, 8_000_000_000_000, 100, 0, 250);
        g.arrive(0, 0, 1, 300); // A: blocked in slot 0 by B (same sender)
        g.arrive(0, 0, 2, 100); // B: shortest, goes first
        g.arrive(0, 3, 1, 100); // C: takes receiver 1 in slot 0
        g.advance_to(150);
        g.sample_backlog();
        g.advance_to(1000);
        g.sample_backlog();
        // Slot 0: B and C (200 bytes); slots 1-3: A. The window holds the
        // slots starting at 0, 100 and 200.
        assert_eq!(g.window_bytes(), 400.0);
        assert_eq!(g.backlog_samples(), vec![200.0, 0.0]);
        assert!(g.msgs.is_empty() && g.pending.is_empty());
    }
}
