//! The call bookkeeping of a socket: client calls until the application
//! takes their results (with their deadlines), delivered requests until
//! the application takes them, and who waits for what. It knows nothing
//! of the socket or the protocol: the engine tells it what completed and
//! asks it what is due; threads and tasks to wake are collected in
//! [`Calls::wake_list`] and woken once the state's lock is released.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::task::Waker;
use std::thread::Thread;

use bytes::Bytes;
use homa_proto::Instant;
use rustc_hash::FxHashMap;

use crate::Error;

/// A request delivered to a server socket, waiting for its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The server's id for the RPC; pass it to `reply`.
    pub id: u64,
    /// The client's address; pass it to `reply`.
    pub peer: SocketAddr,
    /// The request message.
    pub body: Bytes,
}

/// A request as [`crate::Socket::recv_request_message`] delivers it: its
/// body as it was received, possibly a chain of receive buffers (no
/// copy). [`Request`] is the same with the body made contiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMessage {
    /// The server's id for the RPC; pass it to `reply`.
    pub id: u64,
    /// The client's address; pass it to `reply`.
    pub peer: SocketAddr,
    /// The request message.
    pub message: crate::Message,
}

impl From<RequestMessage> for Request {
    /// Makes the body contiguous (a copy if it is a chain).
    #[inline]
    fn from(r: RequestMessage) -> Request {
        Request {
            id: r.id,
            peer: r.peer,
            body: r.message.into_bytes(),
        }
    }
}

/// A thread or task to wake when something it waits for happens.
#[derive(Debug)]
pub(crate) enum Waiter {
    Thread(Thread),
    Task(Waker),
}

impl Waiter {
    pub(crate) fn wake(self) {
        match self {
            Waiter::Thread(t) => t.unpark(),
            Waiter::Task(w) => w.wake(),
        }
    }

    fn same(&self, other: &Waiter) -> bool {
        match (self, other) {
            (Waiter::Thread(a), Waiter::Thread(b)) => a.id() == b.id(),
            (Waiter::Task(a), Waiter::Task(b)) => a.will_wake(b),
            _ => false,
        }
    }
}

/// An outstanding client call.
#[derive(Debug)]
struct Call {
    result: Option<Result<Bytes, Error>>,
    waiter: Option<Waiter>,
    deadline: Option<Instant>,
}

/// The socket's calls, requests and waiters: see the module
/// documentation.
#[derive(Default)]
pub(crate) struct Calls {
    /// Client calls by RPC id (the socket's own sequential ids: a fast
    /// non-cryptographic hash is enough).
    calls: FxHashMap<u64, Call>,
    deadlines: Deadlines,
    requests: VecDeque<RequestMessage>,
    request_waiters: Vec<Waiter>,
    /// Bumped at every room-under-the-send-cap event.
    writable_seq: u64,
    write_waiters: Vec<Waiter>,
    /// Tasks to wake at a deadline (see [`Calls::wake_at`]).
    wake_at: Vec<(Instant, Waker)>,
    /// Waiters to wake once the lock is released.
    pub(crate) wake_list: Vec<Waiter>,
}

impl Calls {
    /// Records a started call (RPC `id`) that fails at `deadline`, if
    /// any.
    #[inline]
    pub(crate) fn start(&mut self, id: u64, deadline: Option<Instant>) {
        self.calls.insert(
            id,
            Call {
                result: None,
                waiter: None,
                deadline,
            },
        );
        if let Some(d) = deadline {
            self.deadlines.push(d, id);
        }
    }

    /// Calls started and not yet taken.
    #[inline]
    pub(crate) fn outstanding(&self) -> usize {
        self.calls.len()
    }

    /// The ids of every call.
    pub(crate) fn ids(&self) -> Vec<u64> {
        self.calls.keys().copied().collect()
    }

    /// True if call `id` exists and has no result yet.
    #[inline]
    pub(crate) fn is_pending(&self, id: u64) -> bool {
        self.calls.get(&id).is_some_and(|c| c.result.is_none())
    }

    /// True if call `id` has a result (or is unknown).
    #[inline]
    pub(crate) fn is_done(&self, id: u64) -> bool {
        self.calls.get(&id).is_none_or(|c| c.result.is_some())
    }

    /// True if call `id` has no result and its deadline is `now` or
    /// earlier.
    #[inline]
    pub(crate) fn is_expired(&self, id: u64, now: Instant) -> bool {
        self.calls
            .get(&id)
            .is_some_and(|c| c.result.is_none() && c.deadline.is_some_and(|d| d <= now))
    }

    /// Stores a call's result (the first one wins) and schedules its
    /// waiter. True if the call had no result before.
    #[inline(always)]
    pub(crate) fn complete(&mut self, id: u64, result: Result<Bytes, Error>) -> bool {
        let Some(c) = self.calls.get_mut(&id) else {
            return false;
        };
        if c.result.is_some() {
            return false;
        }
        c.result = Some(result);
        if let Some(d) = c.deadline.take() {
            self.deadlines.cancel(d, id);
        }
        if let Some(w) = c.waiter.take() {
            self.wake_list.push(w);
        }
        true
    }

    /// Takes a completed call's result, freeing its slot.
    #[inline]
    pub(crate) fn take_result(&mut self, id: u64) -> Option<Result<Bytes, Error>> {
        match self.calls.entry(id) {
            Entry::Occupied(e) if e.get().result.is_some() => e.remove().result,
            _ => None,
        }
    }

    /// Registers who to wake when call `id` completes.
    #[inline]
    pub(crate) fn set_waiter(&mut self, id: u64, w: Waiter) {
        if let Some(c) = self.calls.get_mut(&id) {
            c.waiter = Some(w);
        }
    }

    /// Forgets call `id` (its handle was dropped). True if it had no
    /// result yet (its RPC must be aborted).
    #[inline]
    pub(crate) fn forget(&mut self, id: u64) -> bool {
        match self.calls.remove(&id) {
            Some(c) => {
                if let Some(d) = c.deadline {
                    self.deadlines.cancel(d, id);
                }
                c.result.is_none()
            }
            None => false,
        }
    }

    /// Takes a pending call whose deadline is `now` or earlier, if any:
    /// its id (the caller aborts its RPC and completes it).
    #[inline]
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<u64> {
        while let Some(id) = self.deadlines.pop_due(now, &self.calls) {
            if let Some(c) = self.calls.get_mut(&id) {
                c.deadline = None;
                if c.result.is_none() {
                    return Some(id);
                }
            }
        }
        None
    }

    /// The earliest call deadline or task wake-up.
    #[inline]
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        let call = self.deadlines.first(&self.calls);
        let task = self.wake_at.iter().map(|&(t, _)| t).min();
        match (call, task) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves the tasks whose wake-up time has come to the wake list.
    #[inline]
    pub(crate) fn wake_due(&mut self, now: Instant) {
        if !self.wake_at.is_empty() && self.wake_at.iter().any(|&(t, _)| t <= now) {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.wake_at)
                .into_iter()
                .partition(|&(t, _)| t <= now);
            self.wake_at = later;
            self.wake_list
                .extend(due.into_iter().map(|(_, w)| Waiter::Task(w)));
        }
    }

    /// Has the driver wake task `w` at `at` (once; a later registration of
    /// the same task replaces it): the deadline of a task waiting for
    /// something that is not a call (room under the send cap), kept by the
    /// runtime like call deadlines rather than by tokio's timer.
    pub(crate) fn wake_at(&mut self, at: Instant, w: &Waker) {
        match self.wake_at.iter_mut().find(|(_, x)| x.will_wake(w)) {
            Some(e) => e.0 = at,
            None => self.wake_at.push((at, w.clone())),
        }
    }

    /// Withdraws a [`Calls::wake_at`] registration.
    pub(crate) fn cancel_wake_at(&mut self, w: &Waker) {
        self.wake_at.retain(|(_, x)| !x.will_wake(w));
    }

    // ----- requests --------------------------------------------------------

    /// Queues a delivered request and wakes one waiter; false (nothing
    /// queued) if `limit` requests already wait.
    #[inline(always)]
    pub(crate) fn queue_request(&mut self, r: RequestMessage, limit: usize) -> bool {
        if self.requests.len() >= limit {
            return false;
        }
        self.requests.push_back(r);
        if let Some(w) = self.request_waiters.pop() {
            self.wake_list.push(w);
        }
        true
    }

    /// Delivered requests waiting for the application.
    #[inline]
    pub(crate) fn requests_queued(&self) -> usize {
        self.requests.len()
    }

    /// Takes the oldest delivered request.
    #[inline]
    pub(crate) fn take_request(&mut self) -> Option<RequestMessage> {
        self.requests.pop_front()
    }

    /// Registers a thread or task waiting for a request (once).
    pub(crate) fn add_request_waiter(&mut self, w: Waiter) {
        if !self.request_waiters.iter().any(|x| x.same(&w)) {
            self.request_waiters.push(w);
        }
    }

    /// Withdraws the registration of a thread or task that stopped waiting
    /// for a request (it got one, timed out, or its future was dropped).
    /// Each request wakes one registered waiter, so a registration left
    /// behind would take the wake-up of one still waiting; and if this one
    /// was woken for a request it did not take, the next waiter is woken
    /// in its place.
    pub(crate) fn remove_request_waiter(&mut self, w: &Waiter) {
        self.request_waiters.retain(|x| !x.same(w));
        if !self.requests.is_empty() {
            if let Some(next) = self.request_waiters.pop() {
                self.wake_list.push(next);
            }
        }
    }

    // ----- room under the send cap -----------------------------------------

    /// Room appeared under the send cap: every waiting sender wakes.
    pub(crate) fn writable(&mut self) {
        self.writable_seq += 1;
        let waiters = std::mem::take(&mut self.write_waiters);
        self.wake_list.extend(waiters);
    }

    /// Bumped at every [`Calls::writable`].
    #[inline]
    pub(crate) fn writable_seq(&self) -> u64 {
        self.writable_seq
    }

    /// Registers a thread or task waiting for room under the send cap.
    pub(crate) fn add_write_waiter(&mut self, w: Waiter) {
        if !self.write_waiters.iter().any(|x| x.same(&w)) {
            self.write_waiters.push(w);
        }
    }

    /// The socket closed: every pending call fails with `error()`, every
    /// waiter wakes, deadlines are forgotten.
    pub(crate) fn close(&mut self, error: impl Fn() -> Error) {
        for id in self.ids() {
            self.complete(id, Err(error()));
        }
        self.deadlines = Deadlines::default();
        let waiters = std::mem::take(&mut self.request_waiters);
        self.wake_list.extend(waiters);
        let waiters = std::mem::take(&mut self.write_waiters);
        self.wake_list.extend(waiters);
        let tasks = std::mem::take(&mut self.wake_at);
        self.wake_list
            .extend(tasks.into_iter().map(|(_, w)| Waiter::Task(w)));
    }
}

/// Call deadlines, earliest first: a binary heap whose entries are removed
/// lazily. An entry `(t, id)` is live while call `id` exists with deadline
/// `t`; completing a call decrements the live count and pops its entry
/// only if it is the earliest (the common case of calls completing in the
/// order they started), and stale entries are dropped when they reach the
/// top or when they outnumber live ones. Nothing is due while the earliest
/// entry, live or stale, is later than now, so the per-turn check costs a
/// peek, not a call lookup.
#[derive(Default)]
struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    live: usize,
}

impl Deadlines {
    fn push(&mut self, at: Instant, id: u64) {
        self.heap.push(Reverse((at, id)));
        self.live += 1;
    }

    /// Call `id`, whose deadline was `at`, completed or was forgotten.
    #[inline]
    fn cancel(&mut self, at: Instant, id: u64) {
        self.live = self.live.saturating_sub(1);
        if self.heap.peek() == Some(&Reverse((at, id))) {
            self.heap.pop();
        }
    }

    /// Drops the stale entries once they outnumber the live ones (and
    /// there are enough of them to be worth a pass).
    #[inline]
    fn compact(&mut self, calls: &FxHashMap<u64, Call>) {
        if self.heap.len() > 64 && self.heap.len() > 4 * self.live {
            self.heap
                .retain(|&Reverse((t, id))| Self::is_live(calls, t, id));
        }
    }

    fn is_live(calls: &FxHashMap<u64, Call>, at: Instant, id: u64) -> bool {
        calls.get(&id).is_some_and(|c| c.deadline == Some(at))
    }

    /// The earliest live deadline (dropping stale entries on the way).
    fn first(&mut self, calls: &FxHashMap<u64, Call>) -> Option<Instant> {
        self.compact(calls);
        while let Some(&Reverse((t, id))) = self.heap.peek() {
            if Self::is_live(calls, t, id) {
                return Some(t);
            }
            self.heap.pop();
        }
        None
    }

    /// Takes the earliest live deadline if it is due: the call's id.
    #[inline]
    fn pop_due(&mut self, now: Instant, calls: &FxHashMap<u64, Call>) -> Option<u64> {
        match self.heap.peek() {
            Some(&Reverse((t, _))) if t <= now => {}
            _ => {
                // The earliest entry is later than now: so is every live
                // deadline.
                self.compact(calls);
                return None;
            }
        }
        let t = self.first(calls)?;
        if t > now {
            return None;
        }
        let Reverse((_, id)) = self.heap.pop()?;
        self.live = self.live.saturating_sub(1);
        Some(id)
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    fn at(us: u64) -> Instant {
        Instant::from_micros(us)
    }

    fn dest() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    #[test]
    fn pop_expired__skips_completed_calls_and_pops_in_order() {
        let mut c = Calls::default();
        for (id, t) in [(2, 30), (4, 10), (6, 20)] {
            c.start(id, Some(at(t)));
        }
        // Call 4 completes: its deadline is stale and skipped.
        assert!(c.complete(4, Ok(Bytes::new())));
        assert_eq!(c.next_deadline(), Some(at(20)));
        assert_eq!(c.pop_expired(at(15)), None);
        assert_eq!(c.pop_expired(at(25)), Some(6));
        assert_eq!(c.pop_expired(at(25)), None);
        assert_eq!(c.pop_expired(at(30)), Some(2));
        assert_eq!(c.next_deadline(), None);
        assert_eq!(c.deadlines.live, 0);
    }

    #[test]
    fn deadlines__stale_entries_do_not_accumulate() {
        let mut c = Calls::default();
        c.start(0, Some(at(1)));
        for id in 1..10_000u64 {
            // Calls that complete before their (later) deadline.
            c.start(id, Some(at(1000 + id)));
            c.complete(id, Ok(Bytes::new()));
            c.take_result(id);
            assert_eq!(c.next_deadline(), Some(at(1)));
        }
        assert!(c.deadlines.heap.len() <= 64, "{}", c.deadlines.heap.len());
    }

    #[test]
    fn deadlines__in_order_completions_leave_no_entry_and_stale_ones_are_bounded_by_turns() {
        let mut c = Calls::default();
        // Calls completing in order: each pops its own entry.
        for id in 0..1000u64 {
            c.start(id, Some(at(1000 + id)));
            assert_eq!(c.pop_expired(at(0)), None);
            c.complete(id, Ok(Bytes::new()));
            c.take_result(id);
            assert_eq!(c.deadlines.heap.len(), 0, "call {id}");
        }
        // An earlier deadline stays live: the later ones go stale under it
        // and the per-turn check alone keeps them bounded.
        c.start(1, Some(at(1)));
        for id in 2..10_000u64 {
            c.start(id, Some(at(1000 + id)));
            c.complete(id, Ok(Bytes::new()));
            c.take_result(id);
            assert_eq!(c.pop_expired(at(0)), None);
            assert!(c.deadlines.heap.len() <= 65, "{}", c.deadlines.heap.len());
        }
        assert_eq!(c.pop_expired(at(1)), Some(1));
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn complete__first_result_wins_and_wakes_the_waiter_once() {
        let mut c = Calls::default();
        c.start(8, None);
        c.set_waiter(8, Waiter::Thread(std::thread::current()));
        assert!(c.complete(8, Err(Error::Aborted)));
        assert!(!c.complete(8, Ok(Bytes::from_static(b"late"))));
        assert_eq!(c.wake_list.len(), 1);
        assert!(c.is_done(8));
        assert!(matches!(c.take_result(8), Some(Err(Error::Aborted))));
        assert!(c.take_result(8).is_none());
        assert!(c.is_done(8), "an unknown call counts as done");
    }

    #[test]
    fn is_expired__only_pending_calls_past_their_deadline() {
        let mut c = Calls::default();
        c.start(2, Some(at(10)));
        c.start(4, None);
        assert!(!c.is_expired(2, at(9)));
        assert!(c.is_expired(2, at(10)));
        assert!(!c.is_expired(4, at(1_000_000)));
        c.complete(2, Ok(Bytes::new()));
        assert!(!c.is_expired(2, at(10)));
    }

    #[test]
    fn queue_request__respects_the_limit_and_wakes_one_waiter() {
        let mut c = Calls::default();
        let me = std::thread::current();
        c.add_request_waiter(Waiter::Thread(me.clone()));
        c.add_request_waiter(Waiter::Thread(me));
        let r = |id| RequestMessage {
            id,
            peer: dest(),
            message: crate::Message::default(),
        };
        assert!(c.queue_request(r(1), 1));
        assert!(!c.queue_request(r(3), 1));
        assert_eq!(c.wake_list.len(), 1, "registered once, woken once");
        assert_eq!(c.take_request().map(|r| r.id), Some(1));
        assert_eq!(c.requests_queued(), 0);
    }

    #[test]
    fn close__fails_pending_calls_and_wakes_everyone() {
        let mut c = Calls::default();
        c.start(2, Some(at(5)));
        c.start(4, None);
        c.complete(4, Ok(Bytes::from_static(b"done")));
        c.add_write_waiter(Waiter::Thread(std::thread::current()));
        c.close(|| Error::Closed);
        assert!(matches!(c.take_result(2), Some(Err(Error::Closed))));
        assert!(
            matches!(c.take_result(4), Some(Ok(_))),
            "results already in stay"
        );
        assert_eq!(c.next_deadline(), None);
        assert_eq!(c.wake_list.len(), 1);
    }
}
