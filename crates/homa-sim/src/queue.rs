//! The event queue: timestamped events, earliest first, ties broken by
//! insertion order so that a run is a pure function of its inputs.
//!
//! Almost every event of a network simulation is scheduled a few
//! microseconds ahead (serialisation, switch and host delays), so the queue
//! is a calendar (timing wheel) rather than a heap: `2^9` slots of
//! `2^14` ps (16.4 ns), about 8.4 µs of horizon: every packet's next hop
//! falls in it, and the slots in use stay in cache (a 67 µs wheel was 10%
//! slower on W4, its slot buffers spread over megabytes). Pushing into a future
//! slot is an append; when the clock reaches a slot its events are sorted
//! once by `(time, sequence)`. Events pushed into the slot being processed
//! go to a small heap, and events beyond the horizon (millisecond timers,
//! sparse arrivals) wait in an overflow heap until the wheel reaches them.
//! Slots keep their capacity, so the wheel's memory is about the number of
//! events scheduled within one horizon; a short horizon keeps it in cache.
//! A bitmap of non-empty slots makes skipping empty time cheap.
//!
//! Keys pack `(time, sequence)` into one `u64`: the time in picoseconds in
//! the top 44 bits (up to 17.5 s, [`MAX_TIME`]) and the low 20 bits of the
//! insertion sequence below, so ordering is a single integer comparison
//! and entries are 24 bytes (a `u128` key made them 32 and slowed the
//! sorts). Events at the same picosecond come out in insertion order unless
//! a million other events were pushed between them; either way the order
//! is a pure function of the pushes, so runs stay deterministic.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::time::Ps;

const SLOT_BITS: u32 = 14;
const SEQ_BITS: u32 = 20;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// Latest time the queue orders (2^44 ps, about 17.6 s); later times are
/// treated as this.
pub const MAX_TIME: Ps = (1 << (64 - SEQ_BITS)) - 1;
const WHEEL_BITS: u32 = 9;
const WHEEL: u64 = 1 << WHEEL_BITS;
const MASK: u64 = WHEEL - 1;

struct Entry<E> {
    key: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap, we want the earliest.
        other.key.cmp(&self.key)
    }
}

fn slot_of(key: u64) -> u64 {
    key >> (SEQ_BITS + SLOT_BITS)
}

fn time_of(key: u64) -> Ps {
    key >> SEQ_BITS
}

/// Events of type `E`, earliest first, FIFO among equal times (see the
/// [module docs](self)).
pub struct EventQueue<E> {
    seq: u64,
    /// Absolute number of the slot being processed.
    base: u64,
    /// Future slots `(base, base + WHEEL)`, indexed by slot number mod
    /// `WHEEL`; each unsorted.
    slots: Vec<Vec<(u64, E)>>,
    /// Bit `i`: slot `i` is non-empty.
    occupied: Vec<u64>,
    /// Events in `slots`.
    in_wheel: usize,
    /// The current slot's events, sorted by decreasing key (pop from the
    /// end).
    cur: Vec<(u64, E)>,
    /// Events pushed into the current slot after it was opened.
    cur_heap: BinaryHeap<Entry<E>>,
    /// Events at or beyond `base + WHEEL`.
    overflow: BinaryHeap<Entry<E>>,
    len: usize,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            seq: 0,
            base: 0,
            slots: (0..WHEEL).map(|_| Vec::new()).collect(),
            occupied: vec![0; (WHEEL / 64) as usize],
            in_wheel: 0,
            cur: Vec::new(),
            cur_heap: BinaryHeap::new(),
            overflow: BinaryHeap::new(),
            len: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// An empty queue whose clock starts at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules `event` at `time`. Times before the last popped event's
    /// slot are treated as that slot (they are still ordered by time).
    pub fn push(&mut self, time: Ps, event: E) {
        self.seq += 1;
        let key = (time.min(MAX_TIME) << SEQ_BITS) | (self.seq & SEQ_MASK);
        self.len += 1;
        self.insert(key, event);
    }

    /// Takes the sequence number the next [`push`](Self::push) would have
    /// used, without pushing: an event that may or may not be needed later
    /// keeps its place among simultaneous events
    /// ([`push_reserved`](Self::push_reserved)), so skipping it changes
    /// nothing else's order.
    pub fn reserve(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Schedules `event` at `time` with a sequence number from
    /// [`reserve`](Self::reserve): it comes out exactly where a push at the
    /// moment of the reservation would have.
    pub fn push_reserved(&mut self, time: Ps, seq: u64, event: E) {
        let key = (time.min(MAX_TIME) << SEQ_BITS) | (seq & SEQ_MASK);
        self.len += 1;
        self.insert(key, event);
    }

    fn insert(&mut self, key: u64, event: E) {
        let slot = slot_of(key);
        if slot <= self.base {
            self.cur_heap.push(Entry { key, event });
        } else if slot < self.base + WHEEL {
            let i = (slot & MASK) as usize;
            self.slots[i].push((key, event));
            self.occupied[i / 64] |= 1 << (i % 64);
            self.in_wheel += 1;
        } else {
            self.overflow.push(Entry { key, event });
        }
    }

    /// Removes and returns the earliest event.
    pub fn pop(&mut self) -> Option<(Ps, E)> {
        loop {
            let from_cur = match (self.cur.last(), self.cur_heap.peek()) {
                (Some(c), Some(h)) => Some(c.0 < h.key),
                (Some(_), None) => Some(true),
                (None, Some(_)) => Some(false),
                (None, None) => None,
            };
            match from_cur {
                Some(true) => {
                    let (key, event) = self.cur.pop().expect("checked");
                    self.len -= 1;
                    return Some((time_of(key), event));
                }
                Some(false) => {
                    let e = self.cur_heap.pop().expect("checked");
                    self.len -= 1;
                    return Some((time_of(e.key), e.event));
                }
                None => {
                    if !self.advance() {
                        return None;
                    }
                }
            }
        }
    }

    /// Moves to the next non-empty slot. Returns false if nothing is left.
    fn advance(&mut self) -> bool {
        let next = if self.in_wheel > 0 {
            self.next_occupied()
        } else if let Some(top) = self.overflow.peek() {
            slot_of(top.key)
        } else {
            return false;
        };
        self.base = next;
        // The horizon moved: bring overflow events within it into the
        // wheel (or into the current slot).
        while let Some(top) = self.overflow.peek() {
            if slot_of(top.key) >= self.base + WHEEL {
                break;
            }
            let e = self.overflow.pop().expect("peeked");
            self.insert(e.key, e.event);
        }
        let i = (self.base & MASK) as usize;
        if self.occupied[i / 64] & (1 << (i % 64)) != 0 {
            self.occupied[i / 64] &= !(1 << (i % 64));
            debug_assert!(self.cur.is_empty());
            // Swap so the slot keeps the (empty) current buffer's capacity.
            core::mem::swap(&mut self.cur, &mut self.slots[i]);
            self.in_wheel -= self.cur.len();
            self.cur.sort_unstable_by_key(|e| core::cmp::Reverse(e.0));
        }
        true
    }

    /// Absolute number of the first non-empty slot after `base` (the wheel
    /// must hold something).
    fn next_occupied(&self) -> u64 {
        let start = ((self.base + 1) & MASK) as usize;
        let words = self.occupied.len();
        let (w0, b0) = (start / 64, start % 64);
        let first = self.occupied[w0] & (!0u64 << b0);
        let found = if first != 0 {
            w0 * 64 + first.trailing_zeros() as usize
        } else {
            let mut w = (w0 + 1) % words;
            loop {
                if self.occupied[w] != 0 {
                    break w * 64 + self.occupied[w].trailing_zeros() as usize;
                }
                w = (w + 1) % words;
            }
        };
        let offset = (found as u64).wrapping_sub(start as u64) & MASK;
        self.base + 1 + offset
    }

    /// The event the next [`pop`](Self::pop) returns, if it is already
    /// known without moving to another slot (a hint: events pushed before
    /// that pop may come first).
    #[inline]
    pub fn peek_next(&self) -> Option<&E> {
        match (self.cur.last(), self.cur_heap.peek()) {
            (Some(c), Some(h)) if h.key < c.0 => Some(&h.event),
            (Some(c), _) => Some(&c.1),
            (None, Some(h)) => Some(&h.event),
            (None, None) => None,
        }
    }

    /// Time of the earliest event.
    pub fn peek_time(&mut self) -> Option<Ps> {
        loop {
            let c = self.cur.last().map(|c| c.0);
            let h = self.cur_heap.peek().map(|h| h.key);
            match (c, h) {
                (None, None) => {
                    if !self.advance() {
                        return None;
                    }
                }
                (a, b) => {
                    let k = a.into_iter().chain(b).min().expect("one is set");
                    return Some(time_of(k));
                }
            }
        }
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;
    use std::cmp::Reverse;

    #[test]
    fn pop__earliest_first_fifo_on_ties() {
        let mut q = EventQueue::new();
        q.push(5, 'a');
        q.push(1, 'b');
        q.push(5, 'c');
        q.push(3, 'd');
        q.push(1, 'e');
        assert_eq!(q.len(), 5);
        let order: Vec<(Ps, char)> = core::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            order,
            vec![(1, 'b'), (1, 'e'), (3, 'd'), (5, 'a'), (5, 'c')]
        );
        assert!(q.is_empty());
        assert_eq!(q.peek_time(), None);
    }

    #[test]
    fn pop__far_future_and_wraparound() {
        let mut q = EventQueue::new();
        let horizon = WHEEL << SLOT_BITS;
        q.push(3 * horizon + 7, 3);
        q.push(horizon - 1, 1);
        q.push(horizon + 1, 2);
        q.push(10 * horizon, 4);
        assert_eq!(q.peek_time(), Some(horizon - 1));
        assert_eq!(q.pop(), Some((horizon - 1, 1)));
        // Pushing "now" while in a late slot still comes out first.
        q.push(horizon - 1, 9);
        assert_eq!(q.pop(), Some((horizon - 1, 9)));
        assert_eq!(q.pop(), Some((horizon + 1, 2)));
        assert_eq!(q.pop(), Some((3 * horizon + 7, 3)));
        assert_eq!(q.pop(), Some((10 * horizon, 4)));
        assert_eq!(q.pop(), None);
    }

    /// A reserved event pushed later comes out where a push at the moment
    /// of the reservation would have: after the events pushed before the
    /// reservation at the same time, before those pushed after it.
    #[test]
    fn push_reserved__keeps_the_place_of_the_reservation() {
        let mut q = EventQueue::new();
        q.push(10, 'a');
        let seq = q.reserve();
        q.push(10, 'c');
        q.push(5, 'x');
        assert_eq!(q.pop(), Some((5, 'x')));
        q.push_reserved(10, seq, 'b');
        let order: Vec<(Ps, char)> = core::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, vec![(10, 'a'), (10, 'b'), (10, 'c')]);
    }

    /// Random pushes (never before the last popped time, as in a
    /// simulation) interleaved with pops match a reference heap exactly.
    #[test]
    fn pop__matches_reference_heap() {
        let mut rng = homa_workload::Rng::new(9);
        let mut q = EventQueue::new();
        let mut reference = BinaryHeap::new();
        let mut seq = 0u64;
        let mut now = 0u64;
        for round in 0..200_000u64 {
            if rng.below(3) > 0 || reference.is_empty() {
                let delay = match rng.below(10) {
                    0 => 0,
                    1..=6 => rng.below(5_000_000),
                    7 | 8 => rng.below(1 << 30),
                    _ => rng.below(1 << 40),
                };
                seq += 1;
                q.push(now + delay, round);
                reference.push(Reverse((now + delay, seq, round)));
            } else {
                let Reverse((t, _, r)) = reference.pop().unwrap();
                // The hint, when there is one, is the next event.
                if let Some(&next) = q.peek_next() {
                    assert_eq!(next, r);
                }
                assert_eq!(q.pop(), Some((t, r)));
                now = t;
            }
            assert_eq!(q.len(), reference.len());
        }
        while let Some(Reverse((t, _, r))) = reference.pop() {
            assert_eq!(q.pop(), Some((t, r)));
        }
        assert!(q.pop().is_none());
    }
}
