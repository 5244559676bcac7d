//! The event queue: a priority queue of timestamped events, earliest first,
//! ties broken by insertion order so that a run is a pure function of its
//! inputs. Entries pack `(time, sequence)` into one `u128` key so that a
//! comparison is a single integer compare.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::time::Ps;

struct Entry<E> {
    key: u128,
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

/// Events of type `E`, earliest first, FIFO among equal times.
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules `event` at `time`.
    pub fn push(&mut self, time: Ps, event: E) {
        self.seq += 1;
        let key = (u128::from(time) << 64) | u128::from(self.seq);
        self.heap.push(Entry { key, event });
    }

    /// Removes and returns the earliest event.
    pub fn pop(&mut self) -> Option<(Ps, E)> {
        self.heap.pop().map(|e| ((e.key >> 64) as u64, e.event))
    }

    /// Time of the earliest event.
    pub fn peek_time(&self) -> Option<Ps> {
        self.heap.peek().map(|e| (e.key >> 64) as u64)
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True if nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn pop__earliest_first_fifo_on_ties() {
        let mut q = EventQueue::new();
        q.push(5, 'a');
        q.push(1, 'b');
        q.push(5, 'c');
        q.push(3, 'd');
        q.push(1, 'e');
        let order: Vec<(Ps, char)> = core::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            order,
            vec![(1, 'b'), (1, 'e'), (3, 'd'), (5, 'a'), (5, 'c')]
        );
        assert!(q.is_empty());
    }
}
