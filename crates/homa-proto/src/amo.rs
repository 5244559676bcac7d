//! At-most-once: server incarnations, the client's statement of its oldest
//! unfinished RPC, and the server's exact record of the requests it ran.
//!
//! A request handed to a server application must never be handed to it (or
//! to a later process serving the same address) again, whatever the network
//! does (loss, duplication, reordering, delays, replays of captured packets)
//! and whatever the hosts do (server crash and restart, client crash and
//! restart). A client whose request may have run but gets no response must
//! learn so with a precise error, never by a silent second execution.
//! `docs/at-most-once.md` in the repository walks through every failure and
//! its outcome; this is the mechanism and the argument.
//!
//! # Incarnations (across server restarts)
//!
//! Every [`Endpoint`](crate::Endpoint) draws a random nonzero 40-bit
//! *incarnation* from its seed. Every packet the server side of an RPC sends
//! carries it (common header, see [`crate::wire::common`]); the client
//! remembers, per server socket, the incarnation it last learned
//! ([`Binding::incarnation`], 0 = none), and *binds* each new request to it:
//! every DATA packet of that request echoes that value ([`Rpc::echo`]), and
//! the binding changes only by the rule below.
//!
//! * A server creates an RPC only from DATA echoing its own incarnation.
//!   Anything else (0 from a client that has not heard from it, an older
//!   incarnation's value, a replayed capture) is refused: RPC_UNKNOWN with
//!   the server's incarnation and its uptime (the time since its first
//!   received datagram, rounded down). Nothing is run and no state is kept.
//! * A client whose request is refused by an incarnation it was not bound
//!   to decides:
//!   - bound to nothing (0): every copy of the request echoed 0, and every
//!     incarnation refuses 0, so it never ran: bind to the new incarnation
//!     and send it. A client therefore never sends DATA before it knows the
//!     incarnation: the first RPC to a server sends a zero-length RESEND as
//!     a probe, the refusal teaches the incarnation, and every RPC waiting
//!     for it starts. First contact costs one round trip per (client
//!     endpoint, server socket) pair and two control packets.
//!   - bound to an older incarnation `a` and refused by `b`: if `b`'s uptime
//!     exceeds the RPC's age (time since the client created it, measured at
//!     the refusal's arrival, so every copy of the request was sent after
//!     `b` started: both are local clock readings and no clocks need to
//!     agree; the margin covers rate differences of 0.1%), then no copy can
//!     have reached `a` (which stopped before `b` started), so it never ran:
//!     rebind to `b` and send it again. Otherwise it may have run in `a`: the
//!     RPC fails with [`RpcError::OutcomeUnknown`](crate::RpcError).
//!
//!   The only assumption is that one address serves one incarnation at a
//!   time (a new process binds the port after the old one is gone). Two
//!   incarnations draw the same 40-bit value with probability 2^-40.
//!
//! # Exact records (within one incarnation)
//!
//! The server keeps, per client socket, a [`DoneIds`]: the requests that
//! reached its application and whose RPC it has since freed. It never
//! guesses: an id is refused as old only if the client itself said so.
//! Every request DATA carries the client's *oldest unfinished id* to this
//! server ([`DataHeader::oldest_live`](crate::wire::DataHeader::oldest_live),
//! tracked cheaply by [`Binding::oldest_live`]): every id below it is
//! finished or abandoned at the client, so the server drops those from its
//! record and refuses them for good (a copy arriving later is stale). The
//! record holds only requests at or above the client's oldest unfinished
//! one, which is exact: an id in the set ran, an id above the floor and not
//! in the set did not.
//!
//! Memory is bounded without losing exactness: when a client's record holds
//! `done_ids_per_peer` entries (one RPC holds the floor back while many
//! later ones complete), new requests from it are answered BUSY (the client
//! waits and retries) except the one it names as its oldest, whose
//! completion moves the floor. Refusals by the other limits
//! (`max_rpcs_per_peer`, the peer table) are answered BUSY as well, never
//! silently dropped.
//!
//! A request for an id the record has (RPC_UNKNOWN after a RESEND for it)
//! is answered with status `Abandoned` (it ran; the response is gone), and
//! the client fails with [`RpcError::Abandoned`](crate::RpcError).
//!
//! A client that restarts at the same address draws ids far away (random
//! 63-bit start): its first statement is more than [`FLOOR_WINDOW`] from
//! the old floor, so the old run's ids collapse into one number (its
//! highest finished id) that keeps refusing them. Requests of the old run
//! still open at the server join that number when they finish, and a stale
//! packet of the old run (its statement belongs to an old run) does not
//! switch the record back. The last [`OLD_RUNS`] runs are kept; a client
//! that starts one more gets a renewed record instead of one forgotten
//! ([`DoneIds::renew`]): the server serves it as a new incarnation (copies
//! of every earlier run's requests echo the earlier value and are refused,
//! so forgetting the runs loses nothing). One number per run, and the
//! renewed incarnation, is what survives when an idle peer is collected
//! (`Endpoint` keeps a bounded table of them). Each covers only the [`FLOOR_WINDOW`] ids below
//! it, so a new run is refused by mistake only if its random start falls
//! within 2^32 ids below an old one (probability 2^-30).

use core::net::SocketAddr;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::rpc::RpcRef;
use crate::Instant;

#[cfg(doc)]
use crate::rpc::Rpc;

/// How far below a floor ids are still covered by it.
pub(crate) const FLOOR_WINDOW: u64 = 1 << 32;

/// True if `a` lies within [`FLOOR_WINDOW`] ids below `b` (wrapping).
fn below(a: u64, b: u64) -> bool {
    a != b && b.wrapping_sub(a) < FLOOR_WINDOW
}

/// True if `a` and `b` lie within [`FLOOR_WINDOW`] ids of each other: ids of
/// one client run.
fn near(a: u64, b: u64) -> bool {
    a.wrapping_sub(b) < FLOOR_WINDOW || b.wrapping_sub(a) < FLOOR_WINDOW
}

/// What a server's record says about a request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Never ran (as far as this incarnation knows).
    New,
    /// Ran: its application received it, and the RPC has been freed.
    Ran,
    /// The client said it is finished (or it belongs to an earlier client
    /// run, or to a collected peer): a stale copy.
    Finished,
}

/// Earlier client runs remembered per client socket (each one number). A
/// record that would need one more is renewed instead ([`DoneIds::renew`]):
/// none is ever forgotten while the client's requests can still match it.
const OLD_RUNS: usize = 4;

/// Requests of one client socket that ran (see the module docs). Ids are
/// the server's (odd) local ids.
#[derive(Debug, Clone)]
pub(crate) struct DoneIds {
    /// The client's oldest unfinished id as it last stated it: every id
    /// within [`FLOOR_WINDOW`] below is finished. 0: nothing stated yet.
    floor: u64,
    /// Requests that ran, at or above `floor` (all of them while `floor`
    /// is 0), in increasing order counted from `floor` (wrapping: see
    /// [`DoneIds::key`]). (A sorted deque rather than a tree: ids
    /// mostly finish in order, so inserting appends and the client's
    /// statements pop from the front, without an allocation per request.)
    ran: VecDeque<u64>,
    /// Earlier runs of the client (earlier client incarnations at this
    /// address, or this peer before it was collected), newest last: for
    /// each, its highest finished id; it and the ids within
    /// [`FLOOR_WINDOW`] below are finished. At most [`OLD_RUNS`] (one more
    /// in a record kept for a collected peer).
    old_runs: Vec<u64>,
    /// The incarnation this record is exact for, as the client's requests
    /// must echo it: 0 for the endpoint's own, another after the record was
    /// renewed ([`DoneIds::renew`]).
    incarnation: u64,
    /// When it was renewed: the uptime this client's refusals report counts
    /// from here.
    renewed_at: Option<Instant>,
}

/// What survives of a collected peer's record (see [`DoneIds::retire`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Kept {
    /// One number per client run.
    runs: Vec<u64>,
    /// [`DoneIds::incarnation`] and when it started.
    incarnation: u64,
    renewed_at: Option<Instant>,
}

impl DoneIds {
    /// A record that knows only the numbers of earlier runs (what
    /// [`DoneIds::retire`] kept; empty for a client never seen).
    #[cfg(test)]
    pub(crate) fn with_old_runs(old_runs: Vec<u64>) -> DoneIds {
        DoneIds::from_kept(Kept {
            runs: old_runs,
            ..Kept::default()
        })
    }

    /// The record a returning peer starts with: what its collection kept.
    pub(crate) fn from_kept(kept: Kept) -> DoneIds {
        DoneIds {
            floor: 0,
            ran: VecDeque::new(),
            old_runs: kept.runs,
            incarnation: kept.incarnation,
            renewed_at: kept.renewed_at,
        }
    }

    /// Starts the record again, empty, for requests echoing `incarnation`
    /// from `now` on: what a record does instead of forgetting an earlier
    /// client run when it holds [`OLD_RUNS`] of them. Requests bound to
    /// the earlier value and not open at the server are refused from now
    /// on (as after a server restart, for this client alone), so none of
    /// the runs dropped here can run again: a copy of one of their
    /// requests, however late (or replayed), echoes the earlier value.
    pub(crate) fn renew(&mut self, incarnation: u64, now: Instant) {
        self.floor = 0;
        self.ran.clear();
        self.old_runs.clear();
        self.incarnation = incarnation;
        self.renewed_at = Some(now);
    }

    /// The incarnation the record is exact for (0: the endpoint's own) and
    /// since when.
    pub(crate) fn incarnation(&self) -> (u64, Option<Instant>) {
        (self.incarnation, self.renewed_at)
    }

    /// True if a request that echoed `echo` belongs to this record (the
    /// endpoint's own incarnation is `own`).
    pub(crate) fn serves(&self, echo: u64, own: u64) -> bool {
        echo == if self.incarnation == 0 {
            own
        } else {
            self.incarnation
        }
    }

    /// A record that knows only that everything up to `old_run` (within
    /// the window) is finished; 0 for a client never seen.
    #[cfg(test)]
    pub(crate) fn with_old_run(old_run: u64) -> DoneIds {
        DoneIds::with_old_runs(if old_run != 0 {
            vec![old_run]
        } else {
            Vec::new()
        })
    }

    /// Where `id` sorts in `ran`: its distance above the floor, so ids
    /// order as the client issued them even across the wrap of the u64
    /// range (every id held is at or above the floor and within
    /// [`FLOOR_WINDOW`] of it; before any statement the floor is 0 and
    /// this is the plain order).
    fn key(&self, id: u64) -> u64 {
        id.wrapping_sub(self.floor)
    }

    /// Position of `id` in `ran` (as `binary_search`).
    fn find(&self, id: u64) -> Result<usize, usize> {
        let key = self.key(id);
        self.ran.binary_search_by_key(&key, |&r| self.key(r))
    }

    /// The earlier run `id` belongs to, if any.
    fn old_run_of(&self, id: u64) -> Option<usize> {
        self.old_runs.iter().position(|&r| near(id, r))
    }

    /// What the record says about request `id`.
    pub(crate) fn seen(&self, id: u64) -> Seen {
        if self.floor != 0 && below(id, self.floor) {
            Seen::Finished
        } else if self.find(id).is_ok() {
            Seen::Ran
        } else if Self::runs_cover(&self.old_runs, id) {
            Seen::Finished
        } else {
            Seen::New
        }
    }

    /// True if one of the earlier runs' numbers covers `id`.
    pub(crate) fn runs_cover(runs: &[u64], id: u64) -> bool {
        runs.iter().any(|&r| id == r || below(id, r))
    }

    /// True if request `id` must not run again.
    #[inline(always)]
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.seen(id) != Seen::New
    }

    /// Applies the client's statement that `oldest` (a local id) is its
    /// oldest unfinished request: forgets everything below it. A statement
    /// far from the current floor starts a new client run, unless it
    /// belongs to an earlier run (a stale packet of a client that has since
    /// restarted: ignored). False, changing nothing, if the new run needs a
    /// place the record does not have ([`OLD_RUNS`]): the caller renews
    /// the record ([`DoneIds::renew`]) and claims again.
    #[inline(always)]
    pub(crate) fn claim(&mut self, oldest: u64) -> bool {
        if oldest == self.floor {
            return true;
        }
        // Where the record stands: its floor, or (before any statement)
        // the highest id that ran.
        let reference = match (self.floor, self.ran.back()) {
            (0, None) => {
                if self.old_run_of(oldest).is_none() {
                    if self.old_runs.len() > OLD_RUNS {
                        // A record kept for a collected peer holds one
                        // more run than a live one: a new run renews it
                        // (else every collection and return added one).
                        return false;
                    }
                    self.floor = oldest;
                }
                return true;
            }
            (0, Some(&max)) => {
                if near(oldest, max) {
                    // The first statement: what ran below it is finished,
                    // the rest is ordered from the new floor (once per
                    // client run, at most `done_ids_per_peer` ids).
                    self.floor = oldest;
                    self.ran.retain(|&id| !below(id, oldest));
                    let floor = self.floor;
                    self.ran
                        .make_contiguous()
                        .sort_unstable_by_key(|&id| id.wrapping_sub(floor));
                    return true;
                }
                max
            }
            (floor, _) => floor,
        };
        if !near(oldest, reference) {
            if self.old_run_of(oldest).is_some() {
                return true;
            }
            // The client restarted with new ids. Its old ones collapse
            // into one number.
            let last = self.highest_finished();
            if !self.remember_run(last) {
                return false;
            }
            self.floor = oldest;
            self.ran.clear();
            return true;
        }
        if self.floor != 0 && below(oldest, self.floor) {
            // An older statement, reordered: keep ours.
            return true;
        }
        self.floor = oldest;
        // The front holds the ids nearest above the old floor: those now
        // below the new one leave, and the rest keep their order.
        while self.ran.front().is_some_and(|&id| below(id, oldest)) {
            self.ran.pop_front();
        }
        true
    }

    /// Keeps `last` as the highest finished id of an earlier run; false,
    /// changing nothing, if that needs a place beyond [`OLD_RUNS`].
    fn remember_run(&mut self, last: u64) -> bool {
        if last == 0 {
            return true;
        }
        match self.old_run_of(last) {
            Some(i) => {
                let r = &mut self.old_runs[i];
                if below(*r, last) {
                    *r = last;
                }
            }
            None => {
                if self.old_runs.len() >= OLD_RUNS {
                    return false;
                }
                self.old_runs.push(last);
            }
        }
        true
    }

    /// The highest id known finished of the current run (0: none).
    fn highest_finished(&self) -> u64 {
        match self.ran.back() {
            Some(&max) => max,
            None if self.floor != 0 => self.floor.wrapping_sub(2),
            None => 0,
        }
    }

    /// Records that request `id` ran and its RPC was freed. False if it
    /// could not be kept (an earlier run's request and no place for its
    /// run): the caller renews the record.
    pub(crate) fn insert(&mut self, id: u64) -> bool {
        if self.floor != 0 && below(id, self.floor) {
            return true;
        }
        if self.floor != 0 && !near(id, self.floor) || self.old_run_of(id).is_some() {
            // A request of an earlier run that was still open when the new
            // run began: it joins that run's number (kept with the current
            // run's ids, a later statement would drop it).
            return self.remember_run(id);
        }
        match self.ran.back() {
            None => self.ran.push_back(id),
            Some(&last) if self.key(last) < self.key(id) => self.ran.push_back(id),
            Some(_) => {
                if let Err(at) = self.find(id) {
                    self.ran.insert(at, id);
                }
            }
        }
        true
    }

    /// Number of ids held individually.
    pub(crate) fn len(&self) -> usize {
        self.ran.len()
    }

    /// What survives the peer's collection: one number per run (the
    /// current one's and the earlier ones', one more than [`OLD_RUNS`] if
    /// need be), each covering its run, and the incarnation the record is
    /// for; nothing if nothing ran and the record was never renewed.
    pub(crate) fn retire(mut self) -> Kept {
        let last = self.highest_finished();
        if !self.remember_run(last) {
            self.old_runs.push(last);
        }
        Kept {
            runs: self.old_runs,
            incarnation: self.incarnation,
            renewed_at: self.renewed_at,
        }
    }
}

/// What a client knows about a peer as a server (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct Binding {
    /// The peer's incarnation as last learned; 0 = never heard.
    incarnation: u64,
    /// When we last sent it a probe to learn the incarnation.
    probed: Option<Instant>,
    /// Client RPCs waiting for the incarnation.
    unbound: Vec<RpcRef>,
    /// Ids of our client RPCs to this peer, oldest first; finished ones
    /// leave lazily (from the front, or when the queue grows).
    live: VecDeque<u64>,
    /// The peer answered one of our requests BUSY (it may refuse requests
    /// while its record of finished ids is full): when our oldest RPC to
    /// it ends, the next is worth a look (`Endpoint::forget_rpc`).
    said_busy: bool,
}

impl Binding {
    /// The peer's incarnation as last learned; 0 = never heard.
    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Takes `inc` as the peer's incarnation without a probe (the driver
    /// says so: `Endpoint::assume_incarnation`).
    pub(crate) fn assume(&mut self, inc: u64) {
        self.incarnation = inc;
    }

    /// We learned that the peer serves as incarnation `inc`: returns the
    /// client RPCs that waited for it (to bind and start), or `None` if we
    /// knew it already.
    pub(crate) fn learn(&mut self, inc: u64) -> Option<Vec<RpcRef>> {
        if self.incarnation == inc {
            return None;
        }
        self.incarnation = inc;
        self.probed = None;
        Some(core::mem::take(&mut self.unbound))
    }

    /// A new client RPC waits for the peer's incarnation.
    pub(crate) fn wait_for_incarnation(&mut self, rpc: RpcRef) {
        self.unbound.push(rpc);
    }

    /// A client RPC that waited for the incarnation is gone.
    pub(crate) fn forget_waiting(&mut self, rpc: RpcRef) {
        self.unbound.retain(|&r| r != rpc);
    }

    /// True if an incarnation probe may go at `now`: always when `again`
    /// (an RPC's own silence timer asks), else at most one per `every`.
    /// Records the probe when it may.
    pub(crate) fn probe(&mut self, now: Instant, every: Duration, again: bool) -> bool {
        if !again
            && self
                .probed
                .is_some_and(|t| now.saturating_duration_since(t) < every)
        {
            return false;
        }
        self.probed = Some(now);
        true
    }

    /// The peer answered one of our requests BUSY.
    pub(crate) fn note_busy(&mut self) {
        self.said_busy = true;
    }

    /// Our oldest RPC to this peer, `id`, ended: the next oldest if the
    /// peer ever said BUSY (it may be one the peer refused), given which
    /// ids are alive and how many RPCs we have with it.
    pub(crate) fn next_after_oldest(
        &mut self,
        id: u64,
        alive: impl Fn(u64) -> bool,
        rpcs: u32,
    ) -> Option<u64> {
        if !self.finished(id) || !self.said_busy || rpcs == 0 {
            return None;
        }
        self.oldest_live(u64::MAX, alive, rpcs)
    }

    /// Remembers a new client RPC to this peer.
    #[inline]
    pub(crate) fn push_live(&mut self, id: u64) {
        self.live.push_back(id);
    }

    /// Client RPC `id` to this peer ended: if it was the oldest, it leaves
    /// the queue now (the common case costs no lookup later). True if it
    /// was the oldest.
    pub(crate) fn finished(&mut self, id: u64) -> bool {
        let oldest = self.live.front() == Some(&id);
        if oldest {
            self.live.pop_front();
        }
        oldest
    }

    /// Our oldest unfinished RPC to this peer, asked while sending RPC
    /// `sending` (which is alive), given which ids are still alive and how
    /// many RPCs we have with the peer (to keep the queue proportional to
    /// them).
    #[inline(always)]
    pub(crate) fn oldest_live(
        &mut self,
        sending: u64,
        alive: impl Fn(u64) -> bool,
        rpcs: u32,
    ) -> Option<u64> {
        if self.live.front() == Some(&sending) {
            return Some(sending);
        }
        while let Some(&id) = self.live.front() {
            if alive(id) {
                break;
            }
            self.live.pop_front();
        }
        if self.live.len() > 2 * rpcs as usize + 64 {
            // One old RPC holds the front while many later ones finished.
            self.live.retain(|&id| alive(id));
        }
        self.live.front().copied()
    }
}

/// The at-most-once records of collected peers: one number per client run
/// (what [`DoneIds::retire`] keeps), for at most `max` peers, the oldest
/// collected forgotten first.
#[derive(Debug)]
pub(crate) struct Retired {
    max: usize,
    /// Each kept record, with the number of its collection.
    runs: HashMap<SocketAddr, (Kept, u64), ahash::RandomState>,
    /// Collections in order, by number (entries of peers that came back,
    /// or were collected again later, are stale and skipped).
    order: VecDeque<(SocketAddr, u64)>,
    /// Number of the next collection.
    next: u64,
}

impl Retired {
    /// An empty table for at most `max` peers.
    pub(crate) fn new(max: usize, hasher: ahash::RandomState) -> Retired {
        Retired {
            max,
            runs: HashMap::with_hasher(hasher),
            order: VecDeque::new(),
            next: 0,
        }
    }

    /// Keeps what survives of a collected peer's record.
    pub(crate) fn keep(&mut self, addr: SocketAddr, record: DoneIds) {
        let runs = record.retire();
        if runs.runs.is_empty() && runs.incarnation == 0 {
            return;
        }
        let n = self.next;
        self.next += 1;
        self.runs.insert(addr, (runs, n));
        self.order.push_back((addr, n));
        while self.runs.len() > self.max {
            match self.order.pop_front() {
                Some((old, n)) => {
                    if self.runs.get(&old).is_some_and(|e| e.1 == n) {
                        self.runs.remove(&old);
                    }
                }
                None => break,
            }
        }
        if self.order.len() > 2 * self.max {
            // Drop the stale entries: one is left per kept record.
            let runs = &self.runs;
            self.order
                .retain(|(a, n)| runs.get(a).is_some_and(|e| e.1 == *n));
        }
    }

    /// The record a returning peer starts with (empty if none was kept).
    pub(crate) fn take(&mut self, addr: SocketAddr) -> DoneIds {
        DoneIds::from_kept(self.runs.remove(&addr).map(|e| e.0).unwrap_or_default())
    }

    /// What the kept record says about request `id` from `addr`.
    pub(crate) fn seen(&self, addr: SocketAddr, id: u64) -> Seen {
        match self.runs.get(&addr) {
            Some((k, _)) if DoneIds::runs_cover(&k.runs, id) => Seen::Finished,
            _ => Seen::New,
        }
    }

    /// The incarnation the kept record of `addr` is for (0: the endpoint's
    /// own, also when nothing is kept) and since when.
    pub(crate) fn incarnation(&self, addr: SocketAddr) -> (u64, Option<Instant>) {
        self.runs
            .get(&addr)
            .map_or((0, None), |(k, _)| (k.incarnation, k.renewed_at))
    }

    /// Number of peers whose record is kept.
    pub(crate) fn len(&self) -> usize {
        self.runs.len()
    }
}

/// True if a request created `age` ago cannot have reached an incarnation
/// older than one that has been up for `uptime` (both local measurements,
/// taken when the refusal arrived); see the module docs.
pub(crate) fn started_after(uptime: Duration, age: Duration) -> bool {
    uptime > age + age / 1000
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn done_ids__exact_above_the_stated_floor() {
        let mut d = DoneIds::with_old_run(0);
        d.claim(101);
        d.insert(105);
        d.insert(103);
        assert_eq!(d.seen(101), Seen::New, "the oldest is still running");
        assert_eq!(d.seen(103), Seen::Ran);
        assert_eq!(d.seen(107), Seen::New);
        assert_eq!(d.seen(99), Seen::Finished, "the client said so");
        // The client's oldest finished: the floor moves, the set shrinks.
        d.claim(107);
        assert_eq!(d.len(), 0);
        assert_eq!(d.seen(103), Seen::Finished);
        assert_eq!(d.seen(107), Seen::New);
        // A reordered, older statement changes nothing.
        d.claim(101);
        assert_eq!(d.seen(103), Seen::Finished);
    }

    #[test]
    fn done_ids__ids_that_wrap_past_the_top_of_the_u64_range_stay_exact() {
        // A client whose ids cross u64::MAX (they wrap like every id
        // comparison here): the record must order them as the client
        // does, or a floor just below the wrap forgets requests that ran
        // just above it and lets them run twice.
        let mut d = DoneIds::with_old_run(0);
        d.claim(u64::MAX - 4);
        d.insert(u64::MAX - 2);
        d.insert(1);
        d.insert(u64::MAX);
        d.insert(3);
        assert_eq!(d.seen(u64::MAX - 4), Seen::New);
        assert_eq!(d.seen(1), Seen::Ran);
        assert_eq!(d.seen(u64::MAX), Seen::Ran);
        // The client's oldest unfinished is now u64::MAX: u64::MAX - 2
        // finished, and 1 and 3 (which ran after the wrap) are above it.
        d.claim(u64::MAX);
        assert_eq!(d.seen(u64::MAX - 2), Seen::Finished);
        assert_eq!(
            d.seen(1),
            Seen::Ran,
            "ran after the wrap: must stay refused"
        );
        assert_eq!(d.seen(3), Seen::Ran);
        assert_eq!(d.seen(5), Seen::New);
        assert_eq!(d.len(), 3);
        // The floor crosses the wrap too.
        d.claim(3);
        assert_eq!(d.seen(1), Seen::Finished);
        assert_eq!(d.seen(3), Seen::Ran);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn done_ids__a_first_statement_after_unstated_requests_orders_them_from_the_floor() {
        // Requests recorded before any statement (plain order), then a
        // floor just below the wrap: what ran above it stays refused, what
        // lies below it is finished.
        let mut d = DoneIds::with_old_run(0);
        for id in [1, 3, u64::MAX - 2, u64::MAX] {
            d.insert(id);
        }
        d.claim(u64::MAX);
        assert_eq!(d.seen(u64::MAX - 2), Seen::Finished);
        assert_eq!(d.seen(u64::MAX), Seen::Ran);
        assert_eq!(d.seen(1), Seen::Ran);
        assert_eq!(d.seen(3), Seen::Ran);
        d.insert(5);
        assert_eq!(d.seen(5), Seen::Ran);
        d.claim(5);
        assert_eq!(d.seen(3), Seen::Finished);
        assert_eq!(d.seen(5), Seen::Ran);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn done_ids__never_refuses_what_did_not_run() {
        // One request lost, thousands of later ones finish: the lost one is
        // still new however many ran (the issue 12.8 case).
        let mut d = DoneIds::with_old_run(0);
        d.claim(1001);
        for i in 1..10_000u64 {
            d.insert(1001 + 2 * i);
        }
        assert_eq!(d.seen(1001), Seen::New);
        assert_eq!(d.len(), 9_999);
    }

    #[test]
    fn done_ids__new_client_run_keeps_old_ids_refused() {
        let far = 1u64 << 60;
        let mut d = DoneIds::with_old_run(0);
        d.claim(far + 1);
        d.insert(far + 1);
        d.insert(far + 3);
        // The client restarted: ids from another region.
        d.claim(12_345);
        assert_eq!(d.seen(12_345), Seen::New);
        assert_eq!(d.seen(far + 3), Seen::Finished, "old run stays refused");
        assert_eq!(d.seen(far + 1), Seen::Finished);
        assert_eq!(d.seen(far + 5), Seen::New, "beyond the old run's last");
        // Collection keeps one number.
        let kept = d.retire();
        let back = DoneIds::from_kept(kept);
        assert_eq!(back.seen(12_343), Seen::Finished);
        assert_eq!(back.seen(far + 3), Seen::Finished, "both runs survive");
    }

    #[test]
    fn done_ids__a_run_beyond_the_kept_ones_asks_for_renewal_and_forgets_nothing() {
        let run = |k: u64| (k << 40) + 1;
        let mut d = DoneIds::with_old_run(0);
        for k in 1..=OLD_RUNS as u64 + 1 {
            assert!(d.claim(run(k)), "run {k}");
            assert!(d.insert(run(k)));
        }
        // One more run needs a fifth number: refused, nothing changed.
        assert!(!d.claim(run(9)));
        for k in 1..=OLD_RUNS as u64 + 1 {
            assert_ne!(d.seen(run(k)), Seen::New, "run {k} still covered");
        }
        assert_eq!(d.seen(run(9)), Seen::New);
        // Collection keeps every run (one more than OLD_RUNS) and the
        // incarnation.
        let back = DoneIds::from_kept(d.clone().retire());
        for k in 1..=OLD_RUNS as u64 + 1 {
            assert_eq!(
                back.seen(run(k)),
                Seen::Finished,
                "run {k} after collection"
            );
        }
        // Renewed: an empty record for requests echoing another value.
        let now = Instant::from_micros(5);
        d.renew(77, now);
        assert_eq!(d.incarnation(), (77, Some(now)));
        assert!(d.serves(77, 1) && !d.serves(1, 1));
        assert!(d.claim(run(9)));
        d.insert(run(9));
        let kept = d.retire();
        assert_eq!(DoneIds::from_kept(kept).incarnation(), (77, Some(now)));
    }

    #[test]
    fn done_ids__kept_runs_stay_bounded_over_collections_and_returns() {
        // A client restarted on one address after each idle period: its
        // peer returns (restored from what its collection kept) with a new
        // run and is collected again. Retiring keeps one run more than a
        // live record; the restored record asks for renewal at the next new
        // run instead of growing (an outside review: 100 runs kept after
        // 100 cycles).
        let mut kept = Kept::default();
        let mut renewals = 0;
        for k in 1..=100u64 {
            let mut d = DoneIds::from_kept(kept);
            let id = (k << 40) + 1;
            if !d.claim(id) {
                renewals += 1;
                d.renew(1000 + k, Instant::from_micros(k));
                assert!(d.claim(id));
            }
            assert!(d.insert(id));
            kept = d.retire();
            assert!(
                kept.runs.len() <= OLD_RUNS + 1,
                "cycle {k}: {}",
                kept.runs.len()
            );
        }
        assert!(renewals >= 100 / (OLD_RUNS + 2), "{renewals} renewals");
    }

    #[test]
    fn done_ids__old_run_request_freed_after_the_new_run_began_stays_refused() {
        // The old client's request ran; the client restarted (new ids far
        // away) while the server still held the RPC; the server frees it
        // later. A stale copy must not run again, whatever the new run
        // states.
        let far = 1u64 << 60;
        let mut d = DoneIds::with_old_run(0);
        d.claim(far + 1);
        d.claim(7_001);
        d.insert(far + 1);
        d.insert(7_003);
        d.claim(7_005);
        assert_eq!(d.seen(far + 1), Seen::Finished);
        assert_eq!(d.seen(7_003), Seen::Finished);
        assert_eq!(d.seen(7_005), Seen::New);
    }

    #[test]
    fn done_ids__ids_before_any_statement_are_kept() {
        let mut d = DoneIds::with_old_run(0);
        d.insert(201);
        d.insert(205);
        assert_eq!(d.seen(201), Seen::Ran);
        assert_eq!(d.seen(203), Seen::New);
        d.claim(203);
        assert_eq!(d.seen(201), Seen::Finished);
        assert_eq!(d.seen(205), Seen::Ran);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn binding__oldest_live_skips_finished_and_stays_bounded() {
        let mut b = Binding::default();
        let alive = std::cell::RefCell::new(std::collections::HashSet::new());
        for id in (2..2000u64).step_by(2) {
            b.push_live(id);
            alive.borrow_mut().insert(id);
        }
        // All but the first finish.
        for id in (4..2000u64).step_by(2) {
            alive.borrow_mut().remove(&id);
        }
        let is = |id| alive.borrow().contains(&id);
        assert_eq!(b.oldest_live(2, is, 1), Some(2));
        b.push_live(4000);
        alive.borrow_mut().insert(4000);
        let is = |id| alive.borrow().contains(&id);
        assert_eq!(b.oldest_live(4000, is, 2), Some(2));
        assert!(b.live.len() <= 68, "{}", b.live.len());
        alive.borrow_mut().remove(&2);
        b.finished(2);
        let is = |id| alive.borrow().contains(&id);
        assert_eq!(b.oldest_live(4000, is, 1), Some(4000));
        alive.borrow_mut().remove(&4000);
        let is = |id| alive.borrow().contains(&id);
        assert_eq!(b.oldest_live(6000, is, 0), None);
    }

    #[test]
    fn started_after__needs_uptime_beyond_age() {
        let ms = Duration::from_millis;
        assert!(started_after(ms(100), ms(50)));
        assert!(!started_after(ms(50), ms(50)));
        assert!(!started_after(ms(50), ms(100)));
        assert!(
            !started_after(ms(1000), Duration::from_micros(999_500)),
            "0.1% margin"
        );
    }

    fn addr(n: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], n))
    }

    fn rpc(seq: u64) -> RpcRef {
        RpcRef {
            seq,
            key: seq as usize,
        }
    }

    fn record_of_run(last: u64) -> DoneIds {
        let mut d = DoneIds::with_old_runs(Vec::new());
        d.insert(last);
        d
    }

    #[test]
    fn binding__learn_releases_waiting_rpcs_once() {
        let mut b = Binding::default();
        assert_eq!(b.incarnation(), 0);
        b.wait_for_incarnation(rpc(1));
        b.wait_for_incarnation(rpc(2));
        b.wait_for_incarnation(rpc(3));
        b.forget_waiting(rpc(2));
        assert_eq!(b.learn(77), Some(vec![rpc(1), rpc(3)]));
        assert_eq!(b.incarnation(), 77);
        assert_eq!(b.learn(77), None, "already known");
        assert_eq!(b.learn(78), Some(Vec::new()), "a restart: nothing waits");
    }

    #[test]
    fn binding__probe_at_most_once_per_interval_unless_asked_again() {
        let mut b = Binding::default();
        let every = Duration::from_millis(5);
        let t0 = Instant::from_nanos(1_000_000);
        assert!(b.probe(t0, every, false));
        assert!(!b.probe(t0 + Duration::from_millis(4), every, false));
        assert!(b.probe(t0 + Duration::from_millis(4), every, true));
        assert!(!b.probe(t0 + Duration::from_millis(8), every, false));
        assert!(b.probe(t0 + Duration::from_millis(9), every, false));
        // Learning the incarnation resets the probe clock.
        b.learn(5);
        assert!(b.probe(t0 + Duration::from_millis(10), every, false));
    }

    #[test]
    fn retired__keeps_runs_and_restores_them() {
        let mut r = Retired::new(10, ahash::RandomState::with_seeds(1, 2, 3, 4));
        r.keep(addr(1), record_of_run(101));
        assert_eq!(r.len(), 1);
        assert_eq!(r.seen(addr(1), 99), Seen::Finished);
        assert_eq!(r.seen(addr(1), 101), Seen::Finished);
        assert_eq!(r.seen(addr(1), 103), Seen::New);
        assert_eq!(r.seen(addr(2), 99), Seen::New);
        // The peer returns: its record starts with the run.
        let d = r.take(addr(1));
        assert_eq!(r.len(), 0);
        assert_eq!(d.seen(101), Seen::Finished);
        assert_eq!(d.seen(103), Seen::New);
    }

    #[test]
    fn retired__nothing_kept_for_a_peer_that_ran_nothing() {
        let mut r = Retired::new(10, ahash::RandomState::new());
        r.keep(addr(1), DoneIds::with_old_runs(Vec::new()));
        assert_eq!(r.len(), 0);
        assert_eq!(r.take(addr(1)).seen(1), Seen::New);
    }

    #[test]
    fn retired__bounded_oldest_forgotten_first() {
        let mut r = Retired::new(3, ahash::RandomState::new());
        for n in 1..=5 {
            r.keep(addr(n), record_of_run(11));
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.seen(addr(1), 11), Seen::New);
        assert_eq!(r.seen(addr(2), 11), Seen::New);
        assert_eq!(r.seen(addr(3), 11), Seen::Finished);
        assert_eq!(r.seen(addr(5), 11), Seen::Finished);
    }

    #[test]
    fn retired__returning_peers_do_not_grow_the_order_queue() {
        let mut r = Retired::new(2, ahash::RandomState::new());
        for _ in 0..100 {
            r.keep(addr(1), record_of_run(11));
            let _ = r.take(addr(1));
        }
        assert!(r.order.len() <= 2 * 2 + 1);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn retired__a_peer_collected_again_is_not_forgotten_as_the_oldest() {
        let mut r = Retired::new(2, ahash::RandomState::new());
        r.keep(addr(1), record_of_run(11));
        let again = r.take(addr(1));
        r.keep(addr(2), record_of_run(11));
        // Peer 1 is collected again, after peer 2.
        r.keep(addr(1), again);
        r.keep(addr(3), record_of_run(11));
        // Over the limit: peer 2 is the oldest collection.
        assert_eq!(r.len(), 2);
        assert_eq!(r.seen(addr(2), 11), Seen::New);
        assert_eq!(r.seen(addr(1), 11), Seen::Finished);
        assert_eq!(r.seen(addr(3), 11), Seen::Finished);
    }
}
