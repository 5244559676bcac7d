//! Host-wide scheduling: one pacer estimate and one grant budget shared by
//! every endpoint of a host (`docs/host-sharing.md`).
//!
//! Linux Homa keeps one scheduler per network namespace. A user-space Homa
//! has one [`Endpoint`](crate::Endpoint) per process (or per socket), each
//! of which would otherwise pace at the full link rate, grant up to
//! `max_incoming` and rank only its own messages. This module owns the
//! *host table*: a fixed array of 64-bit atomic words that the endpoints of
//! a host share (a heap array within one process, a `/dev/shm` mapping
//! between processes: [`HostMemory`]), and all the arithmetic on it.
//!
//! * **Header**: magic, version, layout and parameters, checked by
//!   [`Host::open`]; a host-wide generation word, bumped when a publish
//!   covers what a participant held back by the others published as its
//!   need (the futex word a runtime's waiter sleeps on:
//!   [`Host::generation_word`]), a count of every release (any amount:
//!   the held-back participants' own timers look at it),
//!   with a count and a lease of the sleeping waiters so that a publisher
//!   wakes them only when someone sleeps; the host-wide NIC estimate
//!   (`link_idle`, host nanoseconds); the link time of the DATA the
//!   participants received per priority level (the host's one downlink,
//!   for the receivers' silence timers).
//! * **Slots**: one per joined endpoint: heartbeat (host time, which also
//!   claims the slot), owner (opaque, for operators), what it needs while
//!   held back and how often a publisher woke it, granted-but-not-
//!   received bytes, and its best candidates (bytes still to receive).
//!
//! Every value read from the table is validated or clamped: a participant
//! that writes garbage can make scheduling unfair, never panic, overflow,
//! loop without bound or stop another participant (FIFO grants and
//! unscheduled bytes never consult the table).
//!
//! Host time is an endpoint's [`Instant`] nanoseconds plus the
//! `clock_offset_ns` given to [`Endpoint::join_host`](crate::Endpoint::join_host),
//! wrapping.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::sync::Arc;

use crate::config::Config;
use crate::Instant;

/// The backing store of a host table: a fixed array of atomic words.
///
/// [`HeapMemory`] is the in-process store (tests, simulators, several
/// endpoints in one process); runtimes implement it over shared memory.
/// The words must start zeroed for [`Host::init`].
pub trait HostMemory: Send + Sync + 'static {
    /// The table's words (the length never changes).
    fn words(&self) -> &[AtomicU64];

    /// Wakes every thread sleeping until `generation` (the table's
    /// generation word, or a slot's wake word: one of
    /// [`HostMemory::words`]) changes: a runtime whose waiters sleep on it
    /// (a futex) implements this with the system call. Called only when
    /// the table's waiter count and lease ([`Host::wait_begin`]), or the
    /// slot's sleep mark ([`Host::slot_sleep_begin`]), say that someone
    /// sleeps. The default does nothing (drivers that poll, simulators).
    fn wake(&self, generation: &AtomicU64) {
        let _ = generation;
    }
}

/// A host table on the heap.
#[derive(Debug)]
pub struct HeapMemory(Box<[AtomicU64]>);

impl HeapMemory {
    /// `words` zeroed words.
    pub fn new(words: usize) -> HeapMemory {
        HeapMemory((0..words).map(|_| AtomicU64::new(0)).collect())
    }
}

impl HostMemory for HeapMemory {
    fn words(&self) -> &[AtomicU64] {
        &self.0
    }
}

/// The parameters of a host table. `max_incoming`, `link_mbps`,
/// `max_overcommit` and `liveness` are written into the header by
/// [`Host::init`] and must match in [`Host::open`]; `slots` and
/// `candidates_per_slot` give the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostParams {
    /// Most endpoints that can join (1..=[`MAX_SLOTS`]).
    pub slots: u32,
    /// The host's cap on granted-but-not-received bytes, over every
    /// endpoint.
    pub max_incoming: u32,
    /// The host's NIC rate in Mbit/s, for the shared pacer estimate; 0: no
    /// shared pacing.
    pub link_mbps: u32,
    /// Most incoming messages granted to at once on the host (1..=64).
    pub max_overcommit: u32,
    /// Candidates each slot publishes (1..=64; at least `max_overcommit`
    /// is best).
    pub candidates_per_slot: u32,
    /// A slot whose heartbeat is older than this is ignored and may be
    /// reclaimed (1 ms..=10 s). Also bounds how far ahead the shared NIC
    /// estimate may run before it is taken for garbage.
    pub liveness: Duration,
    /// How often an endpoint held back by the others re-reads the table on
    /// its own timer (per endpoint; not part of the header). A runtime
    /// that waits for the generation word instead
    /// ([`Endpoint::host_wait`](crate::Endpoint::host_wait),
    /// [`Endpoint::host_recheck`](crate::Endpoint::host_recheck)) sets it
    /// long: the timer is then only the fallback. Whatever its value, a
    /// held-back endpoint's timer also runs every `liveness / 4` (its
    /// heartbeat) and when a counted participant's heartbeat lapses.
    pub recheck: Duration,
    /// The driver runs a waiter that pokes the endpoints whose wait is
    /// over ([`Endpoint::host_wait`](crate::Endpoint::host_wait),
    /// [`Endpoint::host_recheck`](crate::Endpoint::host_recheck)); per
    /// endpoint, not part of the header. With a waiter, a pacer that yields
    /// the link to another participant's shorter message sleeps until that
    /// message leaves the table (its withdrawal pokes us) or a bounded
    /// fallback (`docs/host-sharing.md`, "Pacer"); without one (drivers that poll, like
    /// the simulator) it looks again each time the shared estimate drains
    /// to the backlog allowance.
    pub waiter: bool,
}

/// Most slots a host table may have.
pub const MAX_SLOTS: u32 = 4096;
/// Most candidates per slot.
pub const MAX_CANDIDATES: u32 = 64;

impl Default for HostParams {
    /// Parameters matching [`Config::default`], 64 slots, 20 ms liveness,
    /// 10 µs re-check.
    fn default() -> HostParams {
        HostParams::from_config(&Config::default(), 64)
    }
}

impl HostParams {
    /// Parameters for a host whose endpoints run `config`, with `slots`
    /// slots: its `max_incoming`, `link_mbps` and `max_overcommit`.
    pub fn from_config(config: &Config, slots: u32) -> HostParams {
        HostParams {
            slots,
            max_incoming: config.max_incoming,
            link_mbps: config.link_mbps,
            max_overcommit: config.max_overcommit,
            candidates_per_slot: config.max_overcommit,
            liveness: Duration::from_millis(20),
            recheck: Duration::from_micros(10),
            waiter: false,
        }
    }

    /// Words of a table with these parameters.
    pub const fn words(&self) -> usize {
        words_for(self.slots, self.candidates_per_slot)
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), HostError> {
        let bad = |m| Err(HostError::InvalidParams(m));
        if self.slots == 0 || self.slots > MAX_SLOTS {
            return bad("slots must be 1..=4096");
        }
        if self.candidates_per_slot == 0 || self.candidates_per_slot > MAX_CANDIDATES {
            return bad("candidates_per_slot must be 1..=64");
        }
        if self.max_overcommit == 0 || self.max_overcommit > MAX_CANDIDATES {
            return bad("max_overcommit must be 1..=64");
        }
        if self.max_incoming == 0 {
            return bad("max_incoming must be positive");
        }
        if self.liveness < Duration::from_millis(1) || self.liveness > Duration::from_secs(10) {
            return bad("liveness must be 1 ms..=10 s");
        }
        if self.recheck.is_zero() || self.recheck > self.liveness {
            return bad("recheck must be positive and at most liveness");
        }
        Ok(())
    }

    fn liveness_ns(&self) -> u64 {
        self.liveness.as_nanos() as u64
    }
}

/// Words of the header (the downlink counters fill its third cache line).
const HEADER: usize = H_DOWNLINK + crate::wire::MAX_PRIORITIES;
/// Words of a slot before its candidates.
const SLOT_HEADER: usize = 11;

/// Words of a table with `slots` slots of `candidates` candidates each.
pub const fn words_for(slots: u32, candidates: u32) -> usize {
    HEADER + slots as usize * (SLOT_HEADER + candidates as usize)
}

/// A wait token ([`Host::wait_over`]): the slot in the top bits, the low
/// 32 bits of the slot's wake word below.
const TOKEN_SHIFT: u32 = 48;

/// "HOMAHOST" in ASCII.
const MAGIC: u64 = u64::from_be_bytes(*b"HOMAHOST");
/// Layout version (6: the header keeps a bitmap of the claimed slots,
/// so the loops over the participants visit those only. 5: the header counts the link time of the DATA every
/// participant received, per level, so a receiver's silence timer sees the
/// host's downlink, not only its own packets. 4: a pacer yielding to another participant's shorter
/// message publishes it, and the withdrawal of that message wakes it: a
/// version-3 participant would never wake it. 3: held-back participants
/// publish what would release them, and publishers wake only those whose
/// need their change covers).
const VERSION: u64 = 6;

// Header words.
const H_MAGIC: usize = 0;
const H_VERSION: usize = 1;
const H_SLOTS: usize = 2;
const H_CANDIDATES: usize = 3;
const H_WORDS: usize = 4;
const H_MAX_INCOMING: usize = 5;
const H_LINK_MBPS: usize = 6;
const H_OVERCOMMIT: usize = 7;
const H_LIVENESS: usize = 8;
const H_GENERATION: usize = 9;
const H_LINK_IDLE: usize = 10;
/// Waiters sleeping on the generation word (a hint: see `H_WAKE_UNTIL`).
const H_WAITERS: usize = 11;
/// Host ns until which a waiter may sleep: a waiter that died asleep
/// leaves `H_WAITERS` too high, and its lease bounds how long publishers
/// keep paying a wake-up for nobody.
const H_WAKE_UNTIL: usize = 12;
/// Bumped (without a wake-up) by every change that can release someone:
/// what a held-back participant's own timer looks at, the fallback of the
/// published needs.
const H_RELEASES: usize = 13;
/// Words 14-15: the slots claimed (bit `s % 64` of word `H_OCCUPIED + s /
/// 64`), for the first [`OCCUPIED_SLOTS`]: a hint that spares the loops
/// over the participants the free slots (a table of more slots is scanned
/// whole). A claim sets its bit, a release clears it, and every heartbeat
/// sets it again if it went missing; a slot whose bit is clear is not
/// seen by the others, so garbage here can only make scheduling unfair.
const H_OCCUPIED: usize = 14;
/// Slots the occupancy bitmap covers.
const OCCUPIED_SLOTS: u32 = 128;
/// Words 16-23: link time (ns, wrapping) of the DATA the participants
/// received at each priority level (word `H_DOWNLINK + level`), added in
/// batches ([`Host::downlink_add`]): strict-priority switch ports serve the
/// higher levels of the host's one downlink first, whichever participant
/// those packets are for.
const H_DOWNLINK: usize = 16;

// Slot words: heartbeat, owner, incoming bytes, candidate count, the
// shortest paced outgoing message and its stamp, then the candidates.
/// Heartbeat, host ns (0: free). Claimed and renewed by compare-exchange.
const S_BEAT: usize = 0;
const S_OWNER: usize = 1;
const S_INCOMING: usize = 2;
const S_COUNT: usize = 3;
/// The slot's shortest paced outgoing message: bytes left + 1 (0: none).
const S_TX: usize = 4;
/// When `S_TX` was written (host ns).
const S_TX_AT: usize = 5;
/// A held-back participant's need: the free host budget
/// (`max_incoming` minus the host's incoming bytes) it needs to grant the
/// rest of its next window (0: none).
const S_NEED_BYTES: usize = 6;
/// A held-back participant's need: bytes left + 1 of its best message cut
/// from the host's top (0: none). A candidate better than it that leaves
/// a publisher's top releases it.
const S_NEED_RANK: usize = 7;
/// Wake-ups of the participant: a publisher whose change covered one of
/// its needs consumed them (set them to 0) and counted a grant wake-up;
/// one whose withdrawal released its yielding pacer consumed `S_YIELD`
/// and counted a yield wake-up. Low 32 bits: every wake-up (what a wait
/// token compares, and the futex value a waiter sleeping on this slot
/// waits on); high 32 bits: the grant wake-ups alone.
const S_WOKEN: usize = 8;
/// A pacer yielding the link to a shorter paced message of another slot:
/// its own shortest paced message, bytes left + 1 (0: not yielding). The
/// publisher whose withdrawal (or worse message) leaves no better message
/// than it consumes it (sets it to 0) and counts a yield wake-up.
const S_YIELD: usize = 9;
/// Host ns until which a runtime's waiter sleeps on this slot's `S_WOKEN`
/// (0: none): a publisher that counts a wake-up of the slot then wakes it
/// (the system call only then).
const S_SLEEP: usize = 10;
/// `S_WOKEN` increments: a grant wake-up, a yield wake-up. (After 2^32
/// wake-ups, or at once if garbage left the low half at its maximum, the
/// low half carries into the high one: one spurious grant pass.)
const GRANT_WAKE: u64 = 1 | 1 << 32;
const YIELD_WAKE: u64 = 1;

/// The slots [`Host::occupied`] visits, in increasing order.
enum Occupied {
    /// Every slot (a table larger than the bitmap).
    All(core::ops::Range<u32>),
    /// The bitmap's set bits not visited yet.
    Bits(u128),
}

impl Iterator for Occupied {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        match self {
            Occupied::All(r) => r.next(),
            Occupied::Bits(0) => None,
            Occupied::Bits(b) => {
                let s = b.trailing_zeros();
                *b &= *b - 1;
                Some(s)
            }
        }
    }
}

/// Why a host table cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostError {
    /// The table's magic word is not written yet (its creator is still
    /// initialising it, or it is all zeroes).
    NotReady,
    /// The table is not a Homa host table of this version.
    Foreign {
        /// The magic word found.
        magic: u64,
        /// The version word found.
        version: u64,
    },
    /// The table's size or layout differs from the one expected.
    Layout {
        /// What was expected (slots, candidates, words).
        expected: (u32, u32, usize),
        /// What the table or its memory holds.
        found: (u64, u64, u64),
    },
    /// The table was created with different host parameters.
    Params {
        /// Which parameter differs.
        name: &'static str,
        /// The value expected.
        expected: u64,
        /// The value in the table.
        found: u64,
    },
    /// Every slot is taken by a live participant.
    Full {
        /// Slots in the table.
        slots: u32,
    },
    /// The parameters are out of range.
    InvalidParams(&'static str),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::NotReady => write!(
                f,
                "host table not initialised yet (magic word is zero): its creator may still be writing it"
            ),
            HostError::Foreign { magic, version } => write!(
                f,
                "not a Homa host table of version {VERSION} (magic {magic:#018x}, version {version}): refusing to use it"
            ),
            HostError::Layout { expected, found } => write!(
                f,
                "host table layout mismatch: expected {} slots x {} candidates ({} words), found {} slots x {} candidates ({} words)",
                expected.0, expected.1, expected.2, found.0, found.1, found.2
            ),
            HostError::Params { name, expected, found } => write!(
                f,
                "host table was created with {name} = {found}, this process uses {expected}: every process of a host must use the same value"
            ),
            HostError::Full { slots } => {
                write!(f, "host table full: all {slots} slots are held by live endpoints")
            }
            HostError::InvalidParams(m) => write!(f, "invalid host parameters: {m}"),
        }
    }
}

impl std::error::Error for HostError {}

/// A host table: the shared state of every endpoint of a host. Cheap to
/// clone (an `Arc`).
#[derive(Clone)]
pub struct Host {
    mem: Arc<dyn HostMemory>,
    params: HostParams,
}

/// A runtime's waiter asleep on one slot's wake word
/// ([`Host::slot_sleep_begin`]).
#[derive(Debug)]
pub struct SlotSleep<'a> {
    /// The word to sleep on (a futex on its low 32 bits).
    pub word: &'a AtomicU64,
    /// Sleep only while the word still holds this.
    pub value: u64,
    /// The mark written for the sleep: hand it to [`Host::slot_sleep_end`].
    pub mark: u64,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// A paced message another slot published (`S_TX`): its bytes left, its
/// slot, and when it was published (host ns). The same entry, unchanged,
/// means no progress of its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxEntry {
    pub(crate) left: u32,
    pub(crate) slot: u32,
    pub(crate) at: u64,
}

/// One candidate of another participant, for the host-wide ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Foreign {
    pub(crate) remaining: u32,
    pub(crate) slot: u32,
}

/// What a grant pass learns from the other live participants.
#[derive(Debug)]
pub(crate) struct Others {
    /// Their granted-but-not-received bytes (each clamped to
    /// `[0, max_incoming]`), summed.
    pub(crate) incoming: u64,
    /// Live participants other than us.
    pub(crate) live: u32,
    /// Their best candidates, best first, at most `max_overcommit`.
    pub(crate) best: Vec<Foreign>,
    /// The oldest heartbeat among them (host ns; `u64::MAX` if none): when
    /// it lapses, the shares change without a publish.
    pub(crate) oldest_beat: u64,
}

impl Default for Others {
    fn default() -> Others {
        Others {
            incoming: 0,
            live: 0,
            best: Vec::new(),
            oldest_beat: u64::MAX,
        }
    }
}

impl Host {
    /// Writes a fresh table into `mem`, which must be zeroed and exactly
    /// [`HostParams::words`] long. The magic word is written last (with
    /// Release), so [`Host::open`] never sees a half-written header.
    pub fn init(mem: Arc<dyn HostMemory>, params: &HostParams) -> Result<Host, HostError> {
        params.validate()?;
        let w = mem.words();
        check_len(w.len(), params)?;
        if w[H_MAGIC].load(Ordering::Acquire) != 0 {
            // Already initialised (or foreign): open it instead.
            return Host::open(mem, params);
        }
        for x in &w[1..] {
            x.store(0, Ordering::Relaxed);
        }
        w[H_VERSION].store(VERSION, Ordering::Relaxed);
        w[H_SLOTS].store(params.slots as u64, Ordering::Relaxed);
        w[H_CANDIDATES].store(params.candidates_per_slot as u64, Ordering::Relaxed);
        w[H_WORDS].store(params.words() as u64, Ordering::Relaxed);
        w[H_MAX_INCOMING].store(params.max_incoming as u64, Ordering::Relaxed);
        w[H_LINK_MBPS].store(params.link_mbps as u64, Ordering::Relaxed);
        w[H_OVERCOMMIT].store(params.max_overcommit as u64, Ordering::Relaxed);
        w[H_LIVENESS].store(params.liveness_ns(), Ordering::Relaxed);
        w[H_MAGIC].store(MAGIC, Ordering::Release);
        Ok(Host {
            mem,
            params: params.clone(),
        })
    }

    /// Validates an existing table: magic, version, layout, and the
    /// parameters every participant must agree on.
    pub fn open(mem: Arc<dyn HostMemory>, params: &HostParams) -> Result<Host, HostError> {
        params.validate()?;
        let w = mem.words();
        check_len(w.len(), params)?;
        let magic = w[H_MAGIC].load(Ordering::Acquire);
        let version = w[H_VERSION].load(Ordering::Relaxed);
        if magic == 0 {
            return Err(HostError::NotReady);
        }
        if magic != MAGIC || version != VERSION {
            return Err(HostError::Foreign { magic, version });
        }
        let (slots, cands, words) = (
            w[H_SLOTS].load(Ordering::Relaxed),
            w[H_CANDIDATES].load(Ordering::Relaxed),
            w[H_WORDS].load(Ordering::Relaxed),
        );
        if slots != params.slots as u64
            || cands != params.candidates_per_slot as u64
            || words != params.words() as u64
            || w.len() != params.words()
        {
            return Err(layout_err(params, slots, cands, words.min(w.len() as u64)));
        }
        let checks = [
            ("max_incoming", params.max_incoming as u64, H_MAX_INCOMING),
            ("link_mbps", params.link_mbps as u64, H_LINK_MBPS),
            ("max_overcommit", params.max_overcommit as u64, H_OVERCOMMIT),
            ("liveness (ns)", params.liveness_ns(), H_LIVENESS),
        ];
        for (name, expected, at) in checks {
            let found = w[at].load(Ordering::Relaxed);
            if found != expected {
                return Err(HostError::Params {
                    name,
                    expected,
                    found,
                });
            }
        }
        Ok(Host {
            mem,
            params: params.clone(),
        })
    }

    /// A table on the heap, for endpoints of one process (or a simulator).
    ///
    /// # Panics
    ///
    /// If `params` are out of range ([`HostParams::validate`]).
    pub fn in_process(params: &HostParams) -> Host {
        let words = if params.validate().is_ok() {
            params.words()
        } else {
            0
        };
        Host::init(Arc::new(HeapMemory::new(words)), params)
            .expect("in_process: host parameters out of range")
    }

    /// The table's parameters.
    pub fn params(&self) -> &HostParams {
        &self.params
    }

    /// The generation: bumped when a publisher woke a held-back
    /// participant whose published need its change covered, when a
    /// participant left, and by [`Host::nudge`]; not by every publish nor
    /// by every release. The waiters sleep on it; which participants were
    /// woken, [`Host::wait_over`] says.
    pub fn generation(&self) -> u64 {
        self.w()[H_GENERATION].load(Ordering::SeqCst)
    }

    /// The generation word itself, for a runtime's waiter to sleep on (a
    /// futex on its low 32 bits) between [`Host::wait_begin`] and
    /// [`Host::wait_end`].
    pub fn generation_word(&self) -> &AtomicU64 {
        &self.w()[H_GENERATION]
    }

    /// A waiter is about to sleep until the generation changes, for at most
    /// `for_ns` from host time `now_host`: counts it and extends the lease
    /// during which publishers wake sleepers ([`HostMemory::wake`]).
    /// Returns the generation to sleep on; sleep only if the word still
    /// holds it, and call [`Host::wait_end`] after. (Every step is
    /// sequentially consistent: a publish either sees the waiter counted or
    /// happened before the generation returned here.)
    pub fn wait_begin(&self, now_host: u64, for_ns: u64) -> u64 {
        let w = self.w();
        w[H_WAITERS].fetch_add(1, Ordering::SeqCst);
        w[H_WAKE_UNTIL].fetch_max(now_host.saturating_add(for_ns), Ordering::SeqCst);
        w[H_GENERATION].load(Ordering::SeqCst)
    }

    /// Moves the generation (and wakes the sleeping waiters) without a
    /// change of the table: for a runtime whose held-back endpoint's wait
    /// was over before its waiter could see it, so that no waiter keeps
    /// sleeping through it. `now_host`: host time.
    pub fn nudge(&self, now_host: u64) {
        self.bump(now_host);
    }

    /// True once the wait that [`Endpoint::host_wait`](crate::Endpoint::host_wait)
    /// returned `token` for is over: a publisher's change covered what the
    /// held-back endpoint needs (or it left, or the endpoint found itself
    /// covered while publishing its need). A runtime's waiter, woken by a
    /// move of the generation, pokes only the endpoints whose wait is over.
    pub fn wait_over(&self, token: u64) -> bool {
        self.token_slot(token)
            .is_some_and(|s| self.woken(s) as u32 != token as u32)
    }

    /// The slot a wait token names, if the table has it.
    pub fn token_slot(&self, token: u64) -> Option<u32> {
        let s = (token >> TOKEN_SHIFT) as u32;
        (s < self.params.slots).then_some(s)
    }

    /// A runtime's waiter that waits for `token` alone (its process has no
    /// other held-back endpoint on this table) sleeps on the slot's own
    /// word instead of the generation, so that the wake-ups of the other
    /// participants do not wake it: marks the slot as slept on until
    /// `now_host + for_ns` and returns the word and the value to sleep on
    /// (sleep only while its low 32 bits hold it, then call
    /// [`Host::slot_sleep_end`] with the sleep's mark); `None` if the wait
    /// is already over (or the token names no slot). A publisher that
    /// counts a wake-up of the slot reads the mark after its count (both
    /// sequentially consistent): either it sees the mark and wakes the
    /// sleeper, or the sleeper sees the count.
    pub fn slot_sleep_begin(
        &self,
        token: u64,
        now_host: u64,
        for_ns: u64,
    ) -> Option<SlotSleep<'_>> {
        let s = self.token_slot(token)?;
        let mark = now_host.saturating_add(for_ns).max(1);
        self.word(s, S_SLEEP).store(mark, Ordering::SeqCst);
        let v = self.word(s, S_WOKEN).load(Ordering::SeqCst);
        if v as u32 != token as u32 {
            self.slot_sleep_end(token, mark);
            return None;
        }
        Some(SlotSleep {
            word: self.word(s, S_WOKEN),
            value: v,
            mark,
        })
    }

    /// The waiter of [`Host::slot_sleep_begin`]`(token, ..)` woke up:
    /// clears its mark, unless the slot lapsed meanwhile and its new owner's
    /// waiter marked it since (the mark is then not ours to clear).
    pub fn slot_sleep_end(&self, token: u64, mark: u64) {
        if let Some(s) = self.token_slot(token) {
            let _ = self.word(s, S_SLEEP).compare_exchange(
                mark,
                0,
                Ordering::SeqCst,
                Ordering::Relaxed,
            );
        }
    }

    /// Ends the wait of `token` for no reason of the table's (a runtime
    /// whose waiter sleeps on that slot must wake up to look at another
    /// endpoint): counts a wake-up of the slot (its endpoint sees its wait
    /// over, re-checks and finds nothing: harmless) and wakes the sleeper.
    /// (Should the slot have lapsed to another participant meanwhile, the
    /// kick is a spurious wake-up of that one, which its endpoint absorbs:
    /// see [`Endpoint::host_recheck`](crate::Endpoint::host_recheck).)
    pub fn slot_kick(&self, token: u64, now_host: u64) {
        if let Some(s) = self.token_slot(token) {
            self.word(s, S_WOKEN)
                .fetch_add(YIELD_WAKE, Ordering::SeqCst);
            self.wake_sleeper(s, now_host);
        }
    }

    /// Wakes the waiter sleeping on slot `s`'s word, if one is marked.
    fn wake_sleeper(&self, s: u32, now_host: u64) {
        if self.word(s, S_SLEEP).load(Ordering::SeqCst) >= now_host.max(1) {
            self.mem.wake(self.word(s, S_WOKEN));
        }
    }

    /// True once the grant wait that began with slot `s`'s wake word at
    /// `snapshot` ([`Host::woken`]) is over.
    fn grant_over(&self, s: u32, snapshot: u64) -> bool {
        s < self.params.slots && self.woken(s) >> 32 != snapshot >> 32
    }

    /// The yield wake-ups counted in a wake word (every wake-up less the
    /// grant wake-ups, modulo 2^32): what ends a pacer's yield, which a
    /// grant wake-up of the same slot must not.
    pub(crate) fn yield_wakes(woken: u64) -> u32 {
        (woken as u32).wrapping_sub((woken >> 32) as u32)
    }

    /// Slot `s`'s wake word (`S_WOKEN`) now.
    pub(crate) fn woken(&self, s: u32) -> u64 {
        self.word(s, S_WOKEN).load(Ordering::SeqCst)
    }

    /// The public wait token of slot `s` from the wake word's snapshots
    /// taken before the needs it waits on were published (the older one
    /// counts: a wake-up after it ends the wait).
    pub(crate) fn wait_token(s: u32, a: Option<u64>, b: Option<u64>) -> Option<u64> {
        let t = match (a, b) {
            (Some(a), Some(b)) => {
                if (b as u32).wrapping_sub(a as u32) as i32 >= 0 {
                    a
                } else {
                    b
                }
            }
            (a, b) => a.or(b)?,
        };
        Some((s as u64) << TOKEN_SHIFT | t & 0xFFFF_FFFF)
    }

    /// The changes so far that could release someone (any amount):
    /// a held-back participant's own timer passes again when it moved.
    fn releases(&self) -> u64 {
        self.w()[H_RELEASES].load(Ordering::SeqCst)
    }

    /// Consumes slot `s`'s published needs and counts a grant wake-up for
    /// it (waking a waiter that sleeps on the slot); false if another
    /// publisher consumed them first (or it had none).
    fn wake_slot(&self, s: u32, now_host: u64) -> bool {
        let b = self.word(s, S_NEED_BYTES).swap(0, Ordering::SeqCst);
        let r = self.word(s, S_NEED_RANK).swap(0, Ordering::SeqCst);
        if b == 0 && r == 0 {
            return false;
        }
        self.word(s, S_WOKEN)
            .fetch_add(GRANT_WAKE, Ordering::SeqCst);
        self.wake_sleeper(s, now_host);
        true
    }

    /// After slot `me` published a change that can release someone
    /// (`budget`: its incoming bytes fell; `ranks`: its candidates before
    /// and after, when one left its top or got worse): wakes every other
    /// live participant whose published need the change covers. A need for
    /// bytes is covered when the host's free budget (re-read now) reaches
    /// it; a need for rank when fewer of our top candidates rank better
    /// than its best cut message. Returns true (and moves the generation,
    /// waking the sleeping waiters) if anyone was woken.
    fn wake_covered(
        &self,
        me: u32,
        now_host: u64,
        budget: bool,
        ranks: Option<(&[u32], &[u32])>,
    ) -> bool {
        let max_in = self.params.max_incoming as u64;
        let top = self.params.max_overcommit as usize;
        let mut total = 0u64;
        let mut needy = false;
        for s in self.occupied() {
            if !self.slot_live(s, now_host) {
                continue;
            }
            total += self.word(s, S_INCOMING).load(Ordering::SeqCst).min(max_in);
            needy |= s != me
                && (self.word(s, S_NEED_BYTES).load(Ordering::SeqCst) != 0
                    || self.word(s, S_NEED_RANK).load(Ordering::SeqCst) != 0);
        }
        if !needy {
            return false;
        }
        let free = max_in.saturating_sub(total);
        let mut woke = false;
        for s in self.occupied() {
            if s == me || !self.slot_live(s, now_host) {
                continue;
            }
            let b = self.word(s, S_NEED_BYTES).load(Ordering::SeqCst);
            let r = self.word(s, S_NEED_RANK).load(Ordering::SeqCst);
            let by_budget = budget && b != 0 && free >= b;
            let by_rank = r != 0
                && ranks.is_some_and(|(old, new)| {
                    let key = ((r - 1).min(u32::MAX as u64) as u32, s);
                    let better = |l: &[u32]| {
                        l[..l.len().min(top)]
                            .iter()
                            .filter(|&&c| (c, me) < key)
                            .count()
                    };
                    better(old) > better(new)
                });
            if (by_budget || by_rank) && self.wake_slot(s, now_host) {
                woke = true;
            }
        }
        if woke {
            self.bump(now_host);
        }
        woke
    }

    /// The waiter of [`Host::wait_begin`] woke up.
    pub fn wait_end(&self) {
        let _ = self.w()[H_WAITERS].fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            Some(n.saturating_sub(1))
        });
    }

    /// Live participants at host time `now_host`.
    pub fn live_participants(&self, now_host: u64) -> u32 {
        self.occupied()
            .filter(|&s| self.slot_live(s, now_host))
            .count() as u32
    }

    /// The owner recorded in each live slot (diagnostics).
    pub fn owners(&self, now_host: u64) -> Vec<(u32, u64)> {
        self.occupied()
            .filter(|&s| self.slot_live(s, now_host))
            .map(|s| (s, self.word(s, S_OWNER).load(Ordering::Relaxed)))
            .collect()
    }

    /// Nanoseconds of transmit time the shared NIC estimate holds at
    /// `now_host` (0 if none, or if the estimate is implausible).
    pub fn link_backlog_ns(&self, now_host: u64) -> u64 {
        let idle = self.w()[H_LINK_IDLE].load(Ordering::Acquire);
        let b = idle.saturating_sub(now_host);
        if b > self.params.liveness_ns() {
            0
        } else {
            b
        }
    }

    #[inline]
    fn w(&self) -> &[AtomicU64] {
        self.mem.words()
    }

    fn stride(&self) -> usize {
        SLOT_HEADER + self.params.candidates_per_slot as usize
    }

    /// Word `i` of slot `s` (both in range by construction: the memory's
    /// length was checked against the layout).
    fn word(&self, s: u32, i: usize) -> &AtomicU64 {
        &self.w()[HEADER + s as usize * self.stride() + i]
    }

    /// A heartbeat `beat` is live at `now_host` if it is nonzero, at most
    /// `liveness` old and not further than `liveness` in the future.
    fn beat_live(&self, beat: u64, now_host: u64) -> bool {
        let l = self.params.liveness_ns();
        beat != 0 && now_host.saturating_sub(beat) <= l && beat.saturating_sub(now_host) <= l
    }

    /// Slot `s`'s heartbeat word.
    fn beat(&self, s: u32) -> u64 {
        self.word(s, S_BEAT).load(Ordering::Acquire)
    }

    fn slot_live(&self, s: u32, now_host: u64) -> bool {
        self.beat_live(self.word(s, S_BEAT).load(Ordering::Acquire), now_host)
    }

    /// The slots that may hold a participant: those whose occupancy bit
    /// is set (every slot if the table has more than the bitmap covers).
    /// Callers still check each slot's heartbeat.
    #[inline]
    fn occupied(&self) -> Occupied {
        let n = self.params.slots;
        if n > OCCUPIED_SLOTS {
            return Occupied::All(0..n);
        }
        let w = self.w();
        let bits = w[H_OCCUPIED].load(Ordering::Acquire) as u128
            | (w[H_OCCUPIED + 1].load(Ordering::Acquire) as u128) << 64;
        // Bits beyond the table's slots are garbage: ignored.
        let mask = if n == OCCUPIED_SLOTS {
            u128::MAX
        } else {
            (1u128 << n) - 1
        };
        Occupied::Bits(bits & mask)
    }

    /// The occupancy word and bit of slot `s`, if the bitmap covers it.
    fn occupancy_bit(&self, s: u32) -> Option<(&AtomicU64, u64)> {
        (self.params.slots <= OCCUPIED_SLOTS && s < OCCUPIED_SLOTS)
            .then(|| (&self.w()[H_OCCUPIED + (s / 64) as usize], 1u64 << (s % 64)))
    }

    /// Sets slot `s`'s occupancy bit if it is clear.
    fn mark_occupied(&self, s: u32) {
        if let Some((w, bit)) = self.occupancy_bit(s) {
            if w.load(Ordering::Relaxed) & bit == 0 {
                w.fetch_or(bit, Ordering::SeqCst);
            }
        }
    }

    /// Claims a free or dead slot: returns it and the heartbeat written.
    pub(crate) fn claim(
        &self,
        now_host: u64,
        owner: u64,
        start: u32,
    ) -> Result<(u32, u64), HostError> {
        let n = self.params.slots;
        let beat = now_host.max(1);
        for i in 0..n {
            let s = (start.wrapping_add(i)) % n;
            let w = self.word(s, S_BEAT);
            let old = w.load(Ordering::Acquire);
            if self.beat_live(old, now_host) {
                continue;
            }
            if w.compare_exchange(old, beat, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.word(s, S_OWNER).store(owner, Ordering::Relaxed);
                self.word(s, S_INCOMING).store(0, Ordering::Relaxed);
                self.word(s, S_TX).store(0, Ordering::Relaxed);
                self.word(s, S_YIELD).store(0, Ordering::SeqCst);
                self.word(s, S_SLEEP).store(0, Ordering::SeqCst);
                self.word(s, S_NEED_BYTES).store(0, Ordering::SeqCst);
                self.word(s, S_NEED_RANK).store(0, Ordering::SeqCst);
                self.word(s, S_COUNT).store(0, Ordering::Release);
                self.mark_occupied(s);
                return Ok((s, beat));
            }
        }
        Err(HostError::Full { slots: n })
    }

    /// Renews slot `s`'s heartbeat from `last` to `now_host`; false if the
    /// slot is no longer ours (someone else wrote it).
    pub(crate) fn renew(&self, s: u32, last: u64, now_host: u64) -> Option<u64> {
        let beat = now_host.max(1).max(last);
        if beat == last {
            let ours = self.word(s, S_BEAT).load(Ordering::Acquire) == last;
            if ours {
                self.mark_occupied(s);
            }
            return ours.then_some(last);
        }
        let renewed = self
            .word(s, S_BEAT)
            .compare_exchange(last, beat, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
            .map(|_| beat);
        if renewed.is_some() {
            // A release of the slot racing with our claim may have cleared
            // our bit.
            self.mark_occupied(s);
        }
        renewed
    }

    /// Frees slot `s` if it still holds our heartbeat `last` (at host time
    /// `now_host`). Its figures are left as they are: a free slot is never
    /// read, and [`Host::claim`] clears them for the next owner. (Clearing
    /// them here would wipe the figures of whoever took the slot while we
    /// were stalled.) Leaving releases our share: every held-back
    /// participant is woken.
    pub(crate) fn release(&self, s: u32, last: u64, now_host: u64) {
        if self
            .word(s, S_BEAT)
            .compare_exchange(last, 0, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            if let Some((w, bit)) = self.occupancy_bit(s) {
                w.fetch_and(!bit, Ordering::SeqCst);
            }
            // Everything we held is free: every held-back participant may
            // move (a rare event: wake them all).
            self.w()[H_RELEASES].fetch_add(1, Ordering::SeqCst);
            for o in self.occupied() {
                if o != s && self.slot_live(o, now_host) {
                    self.wake_slot(o, now_host);
                }
            }
            self.bump(now_host);
        }
    }

    /// Publishes slot `s`'s shortest paced outgoing message (`best`: bytes
    /// left + 1, 0 for none; it replaces `old`, what we published before)
    /// at host time `at`. A worse message than before (or none) wakes the
    /// pacers that yielded to ours and now have no better message to yield
    /// to ([`Host::yield_begin`]).
    pub(crate) fn publish_tx(&self, s: u32, old: u64, best: u64, at: u64) {
        self.word(s, S_TX_AT).store(at, Ordering::Relaxed);
        self.word(s, S_TX).store(best, Ordering::SeqCst);
        if old != 0 && (best == 0 || best > old) {
            self.wake_yielders(s, old, at);
        }
    }

    /// Withdraws what we published with [`Host::publish_tx`] in slot `s`
    /// (`published`; 0: nothing), unless the slot now holds something else
    /// (another endpoint took it while we were stalled: its entry stays).
    /// Wakes the pacers that yielded to it and now have nothing better to
    /// yield to.
    pub(crate) fn withdraw_tx(&self, s: u32, published: u64, now_host: u64) {
        if published != 0
            && self
                .word(s, S_TX)
                .compare_exchange(published, 0, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        {
            self.wake_yielders(s, published, now_host);
        }
    }

    /// Slot `me` replaced its paced message `old` (bytes left + 1) by a
    /// worse one or none: every live slot whose pacer yielded (`S_YIELD`)
    /// to a message no better than `old`, and that now finds no better
    /// message in the table, is woken (its yield consumed, its
    /// yield wake-up counted, the generation moved). Returns true if
    /// anyone was.
    fn wake_yielders(&self, me: u32, old: u64, now_host: u64) -> bool {
        let old = ((old - 1).min(u32::MAX as u64) as u32, me);
        let mut woke = false;
        for s in self.occupied() {
            if s == me {
                continue;
            }
            let y = self.word(s, S_YIELD).load(Ordering::SeqCst);
            if y == 0 || !self.slot_live(s, now_host) {
                continue;
            }
            let theirs = (y - 1).min(u32::MAX as u64) as u32;
            // Ours was better than theirs (so they may have yielded to
            // it), and nothing (ours now included) is better any more.
            if old < (theirs, s)
                && self.tx_best_better(s, now_host, theirs, None).is_none()
                && self.word(s, S_YIELD).swap(0, Ordering::SeqCst) != 0
            {
                self.word(s, S_WOKEN)
                    .fetch_add(YIELD_WAKE, Ordering::SeqCst);
                self.wake_sleeper(s, now_host);
                woke = true;
            }
        }
        if woke {
            self.bump(now_host);
        }
        woke
    }

    /// Slot `s`'s pacer yields to a shorter message of another slot; its
    /// own shortest is `mine` bytes left. Publishes it (so that the
    /// withdrawal of the better message wakes it) and returns the count of
    /// its yield wake-ups before (for its wait token). Check again that a
    /// better message is still there after this: a withdrawal before the
    /// publish did not see it.
    pub(crate) fn yield_begin(&self, s: u32, mine: u32) -> u64 {
        let c = self.woken(s);
        self.word(s, S_YIELD)
            .store(mine as u64 + 1, Ordering::SeqCst);
        c
    }

    /// Slot `s`'s pacer no longer yields (its shortest message was `mine`
    /// bytes left): clears its published yield, if no publisher consumed
    /// it first and the slot holds no one else's. True if it was there.
    pub(crate) fn yield_end(&self, s: u32, mine: u32) -> bool {
        self.word(s, S_YIELD)
            .compare_exchange(mine as u64 + 1, 0, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// True if another slot published, within `liveness`, a paced message
    /// with fewer bytes left than `mine` (ties: the lower slot).
    #[cfg(test)]
    pub(crate) fn tx_better(&self, me: u32, now_host: u64, mine: u32) -> bool {
        self.tx_best_better(me, now_host, mine, None).is_some()
    }

    /// The best of the messages other slots published, within `liveness`,
    /// that are better than `mine` (ties: the lower slot), not counting the
    /// entry `skip`; None if there is none.
    pub(crate) fn tx_best_better(
        &self,
        me: u32,
        now_host: u64,
        mine: u32,
        skip: Option<TxEntry>,
    ) -> Option<TxEntry> {
        let l = self.params.liveness_ns();
        let mine = (mine, me);
        let mut best: Option<TxEntry> = None;
        for s in self.occupied() {
            if s == me {
                continue;
            }
            let v = self.word(s, S_TX).load(Ordering::SeqCst);
            if v == 0 {
                continue;
            }
            let at = self.word(s, S_TX_AT).load(Ordering::Relaxed);
            if now_host.saturating_sub(at) > l || at.saturating_sub(now_host) > l {
                continue;
            }
            let left = (v - 1).min(u32::MAX as u64) as u32;
            let e = TxEntry { left, slot: s, at };
            if (left, s) < mine
                && skip != Some(e)
                && best.is_none_or(|b| (left, s) < (b.left, b.slot))
            {
                best = Some(e);
            }
        }
        best
    }

    /// Bumps the generation at host time `now_host` and wakes the sleeping
    /// waiters, if the waiter count and lease say there are any (a garbage
    /// count or lease only costs wake-ups for nobody; a zeroed one delays
    /// the sleepers to their own timers). Returns the generation before.
    fn bump(&self, now_host: u64) -> u64 {
        let w = self.w();
        let prev = w[H_GENERATION].fetch_add(1, Ordering::SeqCst);
        if w[H_WAITERS].load(Ordering::SeqCst) > 0
            && w[H_WAKE_UNTIL].load(Ordering::SeqCst) >= now_host
        {
            self.mem.wake(&w[H_GENERATION]);
        }
        prev
    }

    /// Reads the other live participants (every value clamped): their
    /// incoming bytes and their best `max_overcommit` candidates.
    pub(crate) fn others(&self, me: u32, now_host: u64, out: &mut Others) {
        out.incoming = 0;
        out.live = 0;
        out.best.clear();
        out.oldest_beat = u64::MAX;
        let max_in = self.params.max_incoming as u64;
        let top = self.params.max_overcommit as usize;
        let cap = self.params.candidates_per_slot as u64;
        for s in self.occupied() {
            if s == me {
                continue;
            }
            let beat = self.word(s, S_BEAT).load(Ordering::Acquire);
            if !self.beat_live(beat, now_host) {
                continue;
            }
            out.oldest_beat = out.oldest_beat.min(beat);
            out.live += 1;
            out.incoming += self.word(s, S_INCOMING).load(Ordering::SeqCst).min(max_in);
            let n = self.word(s, S_COUNT).load(Ordering::SeqCst).min(cap) as usize;
            for i in 0..n.min(top) {
                let r = self.word(s, SLOT_HEADER + i).load(Ordering::Relaxed);
                let c = Foreign {
                    remaining: r.min(u32::MAX as u64) as u32,
                    slot: s,
                };
                // Keep the best `top`, sorted (small: insertion).
                if out.best.len() == top && out.best.last().is_some_and(|w| *w <= c) {
                    continue;
                }
                let at = out.best.partition_point(|x| *x <= c);
                out.best.insert(at, c);
                out.best.truncate(top);
            }
        }
    }

    /// Adds the link time (ns per priority level) of DATA we received to
    /// the host's downlink counters.
    pub(crate) fn downlink_add(&self, nanos: &[u64; crate::wire::MAX_PRIORITIES]) {
        let w = &self.w()[H_DOWNLINK..HEADER];
        for (word, &n) in w.iter().zip(nanos) {
            if n != 0 {
                word.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Link time (ns, wrapping) of the DATA every participant received at
    /// `level` or above, as far as they added it.
    pub(crate) fn downlink_at_or_above(&self, level: u8) -> u64 {
        let from = H_DOWNLINK + (level as usize).min(crate::wire::MAX_PRIORITIES);
        self.w()[from..HEADER]
            .iter()
            .fold(0, |a, x| a.wrapping_add(x.load(Ordering::Relaxed)))
    }

    /// Adds `nanos` of transmit time to the shared NIC estimate at
    /// `now_host`. A value further than `liveness` ahead is garbage: it is
    /// replaced as if the NIC were idle.
    #[inline(always)]
    pub(crate) fn charge_link(&self, now_host: u64, nanos: u64) {
        let w = &self.w()[H_LINK_IDLE];
        let cap = self.params.liveness_ns();
        let mut cur = w.load(Ordering::Relaxed);
        // Bounded: give up (the estimate misses one charge) after a few
        // lost races rather than spin against a hostile writer.
        for _ in 0..16 {
            let base = if cur.saturating_sub(now_host) > cap {
                now_host
            } else {
                cur.max(now_host)
            };
            let new = base.saturating_add(nanos);
            match w.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(x) => cur = x,
            }
        }
    }
}

fn check_len(len: usize, params: &HostParams) -> Result<(), HostError> {
    if len != params.words() {
        return Err(layout_err(params, 0, 0, len as u64));
    }
    Ok(())
}

fn layout_err(p: &HostParams, slots: u64, cands: u64, words: u64) -> HostError {
    HostError::Layout {
        expected: (p.slots, p.candidates_per_slot, p.words()),
        found: (slots, cands, words),
    }
}

/// Host-wide figures as one endpoint sees them (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HostView {
    /// The endpoint's slot.
    pub slot: u32,
    /// Live participants, this endpoint included.
    pub participants: u32,
    /// Granted-but-not-received bytes over the host (ours plus the others'
    /// published figures).
    pub host_incoming: u64,
    /// This endpoint's granted-but-not-received bytes.
    pub own_incoming: u64,
    /// Transmit time queued in the shared NIC estimate, nanoseconds.
    pub link_backlog_ns: u64,
    /// Times this endpoint found its slot taken (it had stopped
    /// heartbeating for longer than `liveness`) and claimed another.
    pub reclaims: u64,
    /// Grant passes limited by the other participants (budget or rank).
    pub limited_passes: u64,
    /// Grant passes run alone because the others had held this endpoint
    /// back for longer than `liveness` (at most one per `liveness`).
    pub starved_passes: u64,
    /// Re-checks of the table while held back that found it changed,
    /// asked for by the runtime's waiter
    /// ([`Endpoint::host_recheck`](crate::Endpoint::host_recheck)).
    pub event_rechecks: u64,
    /// Re-checks of the table while held back that found it changed (or a
    /// participant lapsed, or the starvation bound passed), made by the
    /// endpoint's own host timer.
    pub timer_rechecks: u64,
    /// Transmit attempts (the pacer's wake-up, or any other turn of the
    /// driver) that found paced data already held still held while joined
    /// (the shared NIC estimate was still busy, or another participant had
    /// a shorter message): turns that sent no paced data.
    pub pacer_rewaits: u64,
    /// Of those, the times it yielded to another participant's shorter
    /// paced message.
    pub pacer_yields: u64,
    /// Of the re-waits, those that were the pacer's own wake-up (its timer
    /// fired and it still could not send): wake-ups for nothing, which a
    /// yielding pacer no longer has at every drain of the shared estimate.
    #[cfg_attr(feature = "serde", serde(default))]
    pub pacer_wakeups: u64,
    /// Wake-ups of the yielding pacer by the withdrawal of the message it
    /// yielded to ([`Endpoint::host_recheck`](crate::Endpoint::host_recheck)
    /// found its yield over).
    #[cfg_attr(feature = "serde", serde(default))]
    pub pacer_pokes: u64,
    /// Times the yielding pacer's fallback passed with the message it
    /// yielded to unchanged (its sender stalled or died): it stopped
    /// yielding to that message.
    #[cfg_attr(feature = "serde", serde(default))]
    pub pacer_stalls: u64,
}

/// An endpoint's membership in a host table.
#[derive(Debug)]
pub(crate) struct Joined {
    pub(crate) host: Host,
    pub(crate) slot: u32,
    pub(crate) owner: u64,
    pub(crate) offset: u64,
    /// The heartbeat we last wrote.
    pub(crate) beat: u64,
    /// The release count ([`Host::releases`]) at our last pass.
    pub(crate) seen_gen: u64,
    /// Our wake word when we last published our needs: our grant wait is
    /// over once its grant count moved.
    pub(crate) token: u64,
    /// Our best message cut from the host's top in this pass: its index
    /// among our active messages and its bytes left.
    pub(crate) cut_at: Option<(usize, u32)>,
    /// The needs we published (bytes, rank), to clear them.
    pub(crate) needs: (u64, u64),
    /// The last pass was limited by the others.
    pub(crate) limited: bool,
    pub(crate) others: Others,
    pub(crate) reclaims: u64,
    pub(crate) limited_passes: u64,
    /// The release count read at the start of the current pass.
    pub(crate) gen_before: u64,
    /// Since when every pass has been limited by the others.
    pub(crate) limited_since: Option<Instant>,
    /// Passes run alone because the others held us back for longer than
    /// `liveness`.
    pub(crate) starved_passes: u64,
    /// Re-checks that found a change: asked for by the runtime, and by our
    /// own timer.
    pub(crate) event_rechecks: u64,
    pub(crate) timer_rechecks: u64,
    /// What we last published, and this pass's candidates.
    pub(crate) published_incoming: u64,
    pub(crate) published_best: Vec<u32>,
    pub(crate) last_best: Vec<u32>,
}

impl Joined {
    /// A participant that just claimed `slot` (heartbeat `beat`) and has
    /// published nothing yet.
    fn new(host: Host, slot: u32, owner: u64, offset: u64, beat: u64) -> Joined {
        let seen_gen = host.releases();
        let token = host.woken(slot);
        Joined {
            host,
            slot,
            owner,
            offset,
            beat,
            seen_gen,
            token,
            cut_at: None,
            needs: (0, 0),
            gen_before: 0,
            limited: false,
            others: Others::default(),
            reclaims: 0,
            limited_passes: 0,
            limited_since: None,
            starved_passes: 0,
            event_rechecks: 0,
            timer_rechecks: 0,
            published_incoming: 0,
            published_best: Vec::new(),
            last_best: Vec::new(),
        }
    }

    #[inline]
    pub(crate) fn host_now(&self, now: Instant) -> u64 {
        now.as_nanos().wrapping_add(self.offset)
    }

    /// Keeps our slot: renews the heartbeat, or claims a slot again if ours
    /// was taken. False if no slot is available (we then act alone until
    /// the next attempt).
    pub(crate) fn keep_slot(&mut self, now: Instant) -> bool {
        let h = self.host_now(now);
        if let Some(b) = self.host.renew(self.slot, self.beat, h) {
            self.beat = b;
            return true;
        }
        match self.host.claim(h, self.owner, self.slot) {
            Ok((s, b)) => {
                self.slot = s;
                self.beat = b;
                self.reclaims += 1;
                // The new slot holds nothing of ours: the next pass
                // publishes even if our figures did not change.
                self.published_incoming = 0;
                self.last_best.clear();
                true
            }
            Err(_) => false,
        }
    }
}

/// The host-wide limits of one grant pass.
#[derive(Debug)]
pub(crate) struct PassLimits {
    /// Cap on this endpoint's granted-but-not-received bytes this pass.
    pub(crate) budget: i64,
    /// Host rank of each kept local active message.
    pub(crate) ranks: [u8; 8],
    /// Messages active on the host (ours and the others'), for levels and
    /// windows.
    pub(crate) n_host: usize,
    /// Local messages left out because others ranked better.
    pub(crate) cut: bool,
    /// The others' incoming bytes.
    pub(crate) others_incoming: u64,
}

impl Joined {
    /// Applies the host table to a pass whose local active set is `active`
    /// (best first, at most 8): drops the local messages that are not in
    /// the host's top `max_overcommit`, and returns the budget and ranks.
    /// `None` if we hold no slot (we then act alone).
    pub(crate) fn limits(
        &mut self,
        now: Instant,
        active: &mut Vec<crate::grant::scheduler::RankKey>,
        local_max_incoming: u32,
    ) -> Option<PassLimits> {
        if !self.keep_slot(now) {
            return None;
        }
        if self
            .limited_since
            .is_some_and(|t| now.saturating_duration_since(t) > self.host.params.liveness)
        {
            // Held back by the others for longer than `liveness`: one pass
            // alone (a participant that claims the whole host forever can
            // slow us down, not stop us; see docs/host-sharing.md).
            self.limited_since = None;
            self.starved_passes += 1;
            return None;
        }
        let h = self.host_now(now);
        self.gen_before = self.host.releases();
        self.host.others(self.slot, h, &mut self.others);
        self.published_best.clear();
        self.published_best
            .extend(active.iter().map(|k| k.remaining));
        let top = self.host.params.max_overcommit as usize;
        let mut ranks = [0u8; 8];
        let mut keep = active.len();
        for (i, k) in active.iter().enumerate() {
            let me = Foreign {
                remaining: k.remaining,
                slot: self.slot,
            };
            let better = self.others.best.iter().filter(|c| **c < me).count();
            let r = i + better;
            if r >= top || i >= ranks.len() {
                keep = i;
                self.cut_at = Some((i, k.remaining));
                break;
            }
            ranks[i] = r as u8;
        }
        let cut = keep < active.len();
        if !cut {
            self.cut_at = None;
        }
        active.truncate(keep);
        let n_host = (self.published_best.len() + self.others.best.len()).min(top);
        let cap = local_max_incoming.min(self.host.params.max_incoming) as i64;
        let budget = cap - self.others.incoming.min(i64::MAX as u64) as i64;
        Some(PassLimits {
            budget,
            ranks,
            n_host,
            cut,
            others_incoming: self.others.incoming,
        })
    }

    /// Ends a pass: publishes our incoming bytes and candidates if they
    /// changed; a change that can release someone ([`releases`], or
    /// incoming bytes that fell) counts as a release and wakes the
    /// held-back participants whose published need it covers. Held back
    /// (`limited`), publishes what would release us: `need_bytes` of free
    /// host budget (0 if the budget did not stop us), and the rank of our
    /// best message cut from the host's top. Returns when the host timer is
    /// due next.
    pub(crate) fn finish(
        &mut self,
        now: Instant,
        incoming: i64,
        limited: bool,
        need_bytes: u64,
    ) -> Option<Instant> {
        let incoming = incoming.max(0) as u64;
        let h = self.host_now(now);
        // Our slot may have been taken since the pass began (we stalled past
        // `liveness`): then publish nothing; the next pass claims another.
        let ours = self.host.beat(self.slot) == self.beat;
        self.seen_gen = self.gen_before;
        if ours && (incoming != self.published_incoming || self.published_best != self.last_best) {
            let top = self.host.params.max_overcommit as usize;
            let fell = incoming < self.published_incoming;
            let ranks = releases(&self.last_best, &self.published_best, top);
            self.host
                .publish(self.slot, incoming, self.published_best.iter().copied());
            if fell || ranks {
                let prev = self.host.w()[H_RELEASES].fetch_add(1, Ordering::SeqCst);
                // Our own release is not news to us; someone else's in
                // between is.
                if prev == self.gen_before {
                    self.seen_gen = prev.wrapping_add(1);
                }
                let lists = ranks.then_some((&self.last_best[..], &self.published_best[..]));
                self.host.wake_covered(self.slot, h, fell, lists);
            }
            self.published_incoming = incoming;
            core::mem::swap(&mut self.last_best, &mut self.published_best);
        }
        self.token = self.host.woken(self.slot);
        if ours && limited {
            let rank = self.cut_at.map_or(0, |(_, r)| r as u64 + 1);
            self.needs = (need_bytes, rank);
            self.host.publish_needs(self.slot, need_bytes, rank);
            // A release published since our pass read the table saw our
            // old needs (or none): look again now that ours are visible,
            // and wake ourselves if the table already covers them (every
            // step is sequentially consistent: either the publisher saw
            // our needs or we see its change).
            if self.covered(h, incoming) && self.host.wake_slot(self.slot, h) {
                self.needs = (0, 0);
            }
        } else if ours && self.needs != (0, 0) {
            self.needs = (0, 0);
            self.host.publish_needs(self.slot, 0, 0);
        }
        if limited {
            self.limited_passes += 1;
            self.limited_since.get_or_insert(now);
        } else {
            self.limited_since = None;
        }
        self.limited = limited;
        self.next_timer(now)
    }

    /// True if the table, read again now, covers the needs we published
    /// (our incoming bytes: `incoming`).
    fn covered(&mut self, now_host: u64, incoming: u64) -> bool {
        let (bytes, _) = self.needs;
        self.host.others(self.slot, now_host, &mut self.others);
        let max_in = self.host.params.max_incoming as u64;
        let host_incoming = incoming.min(max_in) + self.others.incoming;
        if bytes != 0 && max_in.saturating_sub(host_incoming) >= bytes {
            return true;
        }
        self.cut_at.is_some_and(|(i, r)| {
            let me = Foreign {
                remaining: r,
                slot: self.slot,
            };
            let better = self.others.best.iter().filter(|c| **c < me).count();
            i + better < self.host.params.max_overcommit as usize
        })
    }

    /// When the host timer is due. Held back: every `recheck` or
    /// `liveness / 4` (the heartbeat), whichever is sooner, and as soon as
    /// the oldest heartbeat we counted lapses or the starvation bound
    /// passes (both change our share without a publish). Otherwise a
    /// heartbeat every quarter of `liveness` while our slot holds a share
    /// (incoming bytes or candidates), else never (an idle slot may lapse:
    /// nothing of ours is lost, the next pass renews or reclaims it).
    pub(crate) fn next_timer(&self, now: Instant) -> Option<Instant> {
        let p = &self.host.params;
        if self.limited {
            let mut at = now + p.recheck.min(p.liveness / 4);
            if self.others.oldest_beat != u64::MAX {
                // Host time to ours; a lapse "in the past" (a beat from the
                // future, garbage) is due now.
                let lapse = self
                    .others
                    .oldest_beat
                    .saturating_add(p.liveness_ns() + 1)
                    .wrapping_sub(self.offset);
                let lapse = Instant::from_nanos(lapse).max(now);
                at = at.min(lapse);
            }
            if let Some(t) = self.limited_since {
                at = at.min((t + p.liveness + Duration::from_nanos(1)).max(now));
            }
            Some(at)
        } else if self.published_incoming > 0 || !self.last_best.is_empty() {
            Some(now + p.liveness / 4)
        } else {
            None
        }
    }

    /// True if we are held back and a pass would see something new: a
    /// publisher covered our need (our wait is over), something was
    /// released since our last pass, a participant we counted lapsed, or
    /// the starvation bound passed.
    fn recheck_due(&self, now: Instant) -> bool {
        if !self.limited {
            return false;
        }
        let p = &self.host.params;
        let lapsed = self.others.oldest_beat.saturating_add(p.liveness_ns()) < self.host_now(now);
        let starving = self
            .limited_since
            .is_some_and(|t| now.saturating_duration_since(t) > p.liveness);
        lapsed
            || starving
            || self.host.grant_over(self.slot, self.token)
            || self.host.releases() != self.seen_gen
    }

    /// A wake-up of our slot that was not a grant's (a yield's, a waiter's
    /// kick, or garbage) moves the wake word's low half, which our wait
    /// token compares: while our grant wait is not over, the token takes
    /// the new value, so that the wait does not keep reading as over (a
    /// runtime's waiter would poke us, and we would republish the same
    /// wait, at every look until our next pass). The high half is
    /// unchanged, so no grant wake-up is lost.
    fn absorb_other_wakes(&mut self) {
        if self.limited {
            let w = self.host.woken(self.slot);
            if w >> 32 == self.token >> 32 {
                self.token = w;
            }
        }
    }

    /// The host timer fired: renews the heartbeat; true if a pass should
    /// run (we claimed a new slot, or a re-check is due).
    pub(crate) fn on_timer(&mut self, now: Instant) -> bool {
        let reclaims = self.reclaims;
        self.keep_slot(now);
        if self.reclaims != reclaims {
            // A new slot: publish our share in it.
            return true;
        }
        let due = self.recheck_due(now);
        self.timer_rechecks += due as u64;
        due
    }
}

/// True if publishing `new` candidates (best first) instead of `old` can
/// release a message held back by the host ranking: the number of our
/// candidates among the host's top `top` that rank better than some
/// message falls, i.e. unless `new` keeps at least as many entries as
/// `old` (both cut to `top`) and each of them is at least as good. A new
/// or better candidate only ever holds others back further.
pub(crate) fn releases(old: &[u32], new: &[u32], top: usize) -> bool {
    let (old, new) = (&old[..old.len().min(top)], &new[..new.len().min(top)]);
    new.len() < old.len() || old.iter().zip(new).any(|(o, n)| n > o)
}

impl Host {
    /// Writes slot `s`'s incoming bytes and best candidates (no bump: the
    /// caller decides whether the change can release anyone).
    pub(crate) fn publish(&self, s: u32, incoming: u64, best: impl Iterator<Item = u32>) {
        let cap = self.params.candidates_per_slot as usize;
        let mut n = 0;
        for r in best.take(cap) {
            self.word(s, SLOT_HEADER + n)
                .store(r as u64, Ordering::Relaxed);
            n += 1;
        }
        self.word(s, S_INCOMING).store(incoming, Ordering::SeqCst);
        self.word(s, S_COUNT).store(n as u64, Ordering::SeqCst);
    }

    /// Publishes slot `s`'s needs (0: none; see `S_NEED_BYTES`,
    /// `S_NEED_RANK`), sequentially consistent with the publishers that
    /// read them.
    pub(crate) fn publish_needs(&self, s: u32, bytes: u64, rank: u64) {
        self.word(s, S_NEED_BYTES).store(bytes, Ordering::SeqCst);
        self.word(s, S_NEED_RANK).store(rank, Ordering::SeqCst);
    }
}

impl crate::Endpoint {
    /// Joins the host table `host`: from now on this endpoint paces against
    /// the host's shared NIC estimate, counts the other participants'
    /// granted-but-not-received bytes against the host's `max_incoming`,
    /// and grants only to its messages that rank within the host's top
    /// `max_overcommit`. `owner` is an opaque id recorded in the slot (a
    /// runtime passes its process id); `clock_offset_ns` converts this
    /// endpoint's [`Instant`]s to host time (`nanos + offset`, wrapping) so
    /// that every participant's timestamps compare.
    ///
    /// Fails with [`HostError::Full`] if no slot is free or dead, and with
    /// [`HostError::Params`] if the endpoint's `max_incoming` or
    /// `link_mbps` differs from the table's. Joining again leaves the
    /// previous table first.
    pub fn join_host(
        &mut self,
        now: Instant,
        host: &Host,
        owner: u64,
        clock_offset_ns: u64,
    ) -> Result<(), HostError> {
        let p = host.params();
        for (name, mine, theirs) in [
            ("max_incoming", self.config.max_incoming, p.max_incoming),
            ("link_mbps", self.config.link_mbps, p.link_mbps),
        ] {
            if mine != theirs {
                return Err(HostError::Params {
                    name,
                    expected: mine as u64,
                    found: theirs as u64,
                });
            }
        }
        self.leave_host();
        self.touch(now);
        let h = now.as_nanos().wrapping_add(clock_offset_ns);
        // Start the search at a slot derived from the owner, so that
        // participants joining at once rarely race for the same slot.
        let start = (owner % p.slots as u64) as u32;
        let (slot, beat) = host.claim(h, owner, start)?;
        let j = Joined::new(host.clone(), slot, owner, clock_offset_ns, beat);
        let next = j.next_timer(now);
        self.pacer.attach_host(host.clone(), clock_offset_ns, slot);
        self.host = Some(Box::new(j));
        self.timers.set_opt(crate::timers::Timer::Host, next);
        self.grants.request_pass();
        Ok(())
    }

    /// Leaves the host table (frees the slot); the endpoint schedules alone
    /// again. Nothing if it has not joined.
    pub fn leave_host(&mut self) {
        if let Some(j) = self.host.take() {
            // The pacer clears its entry before the slot can be claimed.
            self.pacer.detach_host();
            j.host.release(j.slot, j.beat, j.host_now(self.now));
            self.timers.stop(crate::timers::Timer::Host);
            self.grants.request_pass();
        }
    }

    /// Host-wide figures, if this endpoint has joined a host table.
    pub fn host_view(&self) -> Option<HostView> {
        let j = self.host.as_deref()?;
        let h = j.host_now(self.now);
        let mut others = Others::default();
        j.host.others(j.slot, h, &mut others);
        let own = self.grants.total_incoming().max(0) as u64;
        Some(HostView {
            slot: j.slot,
            participants: others.live + 1,
            host_incoming: own + others.incoming,
            own_incoming: own,
            link_backlog_ns: j.host.link_backlog_ns(h),
            reclaims: j.reclaims,
            limited_passes: j.limited_passes,
            starved_passes: j.starved_passes,
            event_rechecks: j.event_rechecks,
            timer_rechecks: j.timer_rechecks,
            pacer_rewaits: self.pacer.host_rewaits().0,
            pacer_yields: self.pacer.host_rewaits().1,
            pacer_wakeups: self.pacer.host_rewaits().2,
            pacer_pokes: self.pacer.host_rewaits().3,
            pacer_stalls: self.pacer.host_rewaits().4,
        })
    }

    /// What a held-back endpoint waits for: `Some(token)` while the other
    /// participants hold it back (its last grant pass was limited by their
    /// ranking or budget), meaning "call [`Endpoint::host_recheck`](crate::Endpoint::host_recheck) once
    /// [`Host::wait_over`]`(token)`": the endpoint published what would
    /// release it (free budget for the rest of its window, the rank of its
    /// best cut message), and a publisher whose change covers that wakes
    /// it (and moves the generation). `None` when nothing of the table
    /// concerns it (not joined, or not held back). A runtime sleeps on
    /// [`Host::generation_word`] (a futex) instead of polling, and pokes
    /// the endpoints whose wait is over; the endpoint's own host timer
    /// ([`HostParams::recheck`], the heartbeat, lapses and the starvation
    /// bound: it also passes again after any release) stays the fallback.
    ///
    /// The pacer waits the same way: while it yields the link to another
    /// participant's shorter message, the token is also over once that
    /// message left the table (its publisher woke us), and
    /// [`Endpoint::host_recheck`](crate::Endpoint::host_recheck) then lets
    /// the next [`Endpoint::poll_transmit`](crate::Endpoint::poll_transmit)
    /// send.
    #[inline]
    pub fn host_wait(&self) -> Option<u64> {
        let j = self.host.as_deref()?;
        let grant = j.limited.then_some(j.token);
        Host::wait_token(j.slot, grant, self.pacer.yield_count(j.slot))
    }

    /// The table may have changed (the runtime saw the generation move
    /// away from what [`Endpoint::host_wait`](crate::Endpoint::host_wait) returned): if the endpoint
    /// is held back and the table changed, a grant pass runs at the next
    /// [`Endpoint::poll_transmit`](crate::Endpoint::poll_transmit). True if one was asked for.
    pub fn host_recheck(&mut self, now: Instant) -> bool {
        self.touch(now);
        let Some(j) = self.host.as_deref_mut() else {
            return false;
        };
        let due = j.recheck_due(self.now);
        if due {
            j.event_rechecks += 1;
            self.grants.request_pass();
        } else {
            j.absorb_other_wakes();
        }
        // A yielding pacer whose better message left: the next transmit
        // attempt sends (or yields again to another one).
        let tx = self.pacer.yield_over(self.now);
        due || tx
    }

    /// The host timer: heartbeat, and a pass if the table changed while the
    /// others held us back.
    pub(crate) fn host_timer(&mut self, now: Instant) {
        let Some(j) = self.host.as_deref_mut() else {
            self.timers.stop(crate::timers::Timer::Host);
            return;
        };
        if j.on_timer(now) {
            self.grants.request_pass();
        }
        let (next, slot) = (j.next_timer(now), j.slot);
        self.timers.set_opt(crate::timers::Timer::Host, next);
        self.pacer.set_host_slot(now, slot);
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    fn table(slots: u32) -> (Arc<HeapMemory>, Host) {
        let p = HostParams::from_config(&Config::default(), slots);
        let mem = Arc::new(HeapMemory::new(p.words()));
        let host = Host::init(mem.clone(), &p).unwrap();
        (mem, host)
    }

    #[test]
    fn others__clamps_every_value_and_keeps_the_best_max_overcommit() {
        let (_, h) = table(4);
        let now = 5_000_000;
        let (s1, _) = h.claim(now, 1, 1).unwrap();
        let (s2, _) = h.claim(now, 2, 2).unwrap();
        // Slot s1 is hostile: huge incoming, huge count, huge candidates.
        h.word(s1, S_INCOMING).store(u64::MAX, Ordering::Relaxed);
        h.word(s1, S_COUNT).store(u64::MAX, Ordering::Relaxed);
        for i in 0..8 {
            h.word(s1, SLOT_HEADER + i)
                .store(u64::MAX - i as u64, Ordering::Relaxed);
        }
        h.publish(s2, 1000, [5, 7].into_iter());
        let mut o = Others::default();
        h.others(3, now, &mut o);
        assert_eq!(o.live, 2);
        assert_eq!(o.incoming, 400_000 + 1000);
        assert_eq!(o.best.len(), 8);
        assert_eq!(
            o.best[0],
            Foreign {
                remaining: 5,
                slot: s2
            }
        );
        assert!(o.best.windows(2).all(|w| w[0] <= w[1]));
        // Our own slot is not counted.
        h.others(s2, now, &mut o);
        assert_eq!(o.incoming, 400_000);
    }

    #[test]
    fn charge_link__a_garbage_estimate_counts_as_an_idle_link() {
        let (mem, h) = table(2);
        mem.words()[H_LINK_IDLE].store(u64::MAX, Ordering::Relaxed);
        assert_eq!(h.link_backlog_ns(1000), 0);
        h.charge_link(1000, 500);
        assert_eq!(h.link_backlog_ns(1000), 500);
        // Honest charges queue behind each other.
        h.charge_link(1100, 500);
        assert_eq!(h.link_backlog_ns(1100), 900);
    }

    #[test]
    fn tx_better__shorter_or_equal_in_a_lower_slot_and_fresh() {
        let (_, h) = table(3);
        let now = 10_000_000;
        // (Only claimed slots publish; the others are not looked at.)
        for s in 0..3 {
            h.claim(now, s as u64 + 1, s).unwrap();
        }
        h.publish_tx(0, 0, 5001, now);
        assert!(h.tx_better(1, now, 5001), "equal: the lower slot wins");
        assert!(!h.tx_better(0, now, 5000), "not against ourselves");
        h.publish_tx(2, 0, 4001, now);
        assert!(h.tx_better(0, now, 5000));
        assert!(!h.tx_better(0, now, 3000));
        // Stale entries (older than liveness) do not count.
        let later = now + 21_000_000;
        assert!(!h.tx_better(1, later, 9000));
    }

    #[test]
    fn yield__the_withdrawal_of_the_better_message_wakes_the_yielder_once() {
        let (_, h) = table(3);
        let now = 10_000_000;
        for s in 0..3 {
            h.claim(now, s as u64 + 1, s).unwrap();
        }
        // Slots 0 and 1 have shorter paced messages than slot 2's (9000
        // bytes left); slot 2 yields.
        h.publish_tx(0, 0, 3001, now);
        h.publish_tx(1, 0, 5001, now);
        let c = h.yield_begin(2, 9000);
        assert!(h.tx_better(2, now, 9000));
        let token = Host::wait_token(2, Some(c), None).unwrap();
        // Slot 0's message gets shorter: not a release.
        h.publish_tx(0, 3001, 2001, now);
        assert!(!h.wait_over(token));
        // Slot 0's leaves, but slot 1's is still better: still no wake-up.
        h.withdraw_tx(0, 2001, now);
        assert!(!h.wait_over(token));
        // Slot 1's is replaced by a longer one than ours: the yield is over,
        // once (the yield word was consumed).
        let g = h.generation();
        h.publish_tx(1, 5001, 20_001, now);
        assert!(h.wait_over(token));
        assert_eq!(h.generation(), g + 1, "the waiters' word moved");
        assert!(!h.yield_end(2, 9000), "consumed by the publisher");
        h.publish_tx(1, 20_001, 0, now);
        assert_eq!(h.generation(), g + 1, "nobody yields any more");
        // A withdrawal before the yield was published: the yielder's own
        // check after publishing it sees no better message.
        h.publish_tx(0, 0, 3001, now);
        h.withdraw_tx(0, 3001, now);
        h.yield_begin(2, 9000);
        assert!(!h.tx_better(2, now, 9000));
        assert!(h.yield_end(2, 9000));
    }

    /// The occupancy bitmap follows claims and releases, a heartbeat puts
    /// back a bit a racing release cleared, and the loops over the
    /// participants see the claimed slots only.
    #[test]
    fn occupied__follows_claims_releases_and_heartbeats() {
        let (_, h) = table(70);
        let now = 5_000_000;
        assert_eq!(h.occupied().count(), 0);
        let (a, beat_a) = h.claim(now, 1, 3).unwrap();
        let (b, beat_b) = h.claim(now, 2, 66).unwrap();
        assert_eq!((a, b), (3, 66));
        assert_eq!(h.occupied().collect::<Vec<_>>(), vec![3, 66]);
        assert_eq!(h.live_participants(now), 2);
        // A release racing with a claim cleared b's bit: b is not seen
        // until its next heartbeat sets it again.
        h.w()[H_OCCUPIED + 1].store(0, Ordering::SeqCst);
        assert_eq!(h.live_participants(now), 1);
        assert!(h.renew(b, beat_b, now + 1).is_some());
        assert_eq!(h.live_participants(now + 1), 2);
        h.release(a, beat_a, now + 1);
        assert_eq!(h.occupied().collect::<Vec<_>>(), vec![66]);
        assert_eq!(h.live_participants(now + 1), 1);
    }

    /// Garbage in the bitmap: bits beyond the table's slots are ignored,
    /// set bits of free slots are skipped by their heartbeat, and a hidden
    /// participant only goes unseen (unfair, not unsafe) until its next
    /// heartbeat.
    #[test]
    fn occupied__garbage_bits_are_harmless() {
        let (_, h) = table(4);
        let now = 5_000_000;
        let (a, beat_a) = h.claim(now, 1, 0).unwrap();
        h.publish(a, 1000, [5].into_iter());
        h.w()[H_OCCUPIED].store(u64::MAX, Ordering::SeqCst);
        h.w()[H_OCCUPIED + 1].store(u64::MAX, Ordering::SeqCst);
        assert_eq!(h.occupied().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        let mut o = Others::default();
        h.others(3, now, &mut o);
        assert_eq!((o.live, o.incoming), (1, 1000));
        h.w()[H_OCCUPIED].store(0, Ordering::SeqCst);
        h.others(3, now, &mut o);
        assert_eq!((o.live, o.incoming), (0, 0));
        assert!(h.renew(a, beat_a, now + 1).is_some());
        h.others(3, now + 1, &mut o);
        assert_eq!((o.live, o.incoming), (1, 1000));
    }

    /// A table larger than the bitmap is scanned whole.
    #[test]
    fn occupied__a_large_table_is_scanned_whole() {
        let (_, h) = table(OCCUPIED_SLOTS + 1);
        assert_eq!(h.occupied().count(), OCCUPIED_SLOTS as usize + 1);
        let now = 5_000_000;
        let (s, _) = h.claim(now, 1, OCCUPIED_SLOTS).unwrap();
        assert_eq!(s, OCCUPIED_SLOTS);
        assert_eq!(h.live_participants(now), 1);
    }

    #[test]
    fn claim__dead_or_free_slots_only_and_renew_detects_a_thief() {
        let (_, h) = table(2);
        let (a, beat_a) = h.claim(1_000, 1, 0).unwrap();
        let (b, _) = h.claim(1_000, 2, 0).unwrap();
        assert_ne!(a, b);
        assert_eq!(h.claim(2_000, 3, 0), Err(HostError::Full { slots: 2 }));
        // a stops heartbeating; after liveness its slot is taken.
        let late = 1_000 + 20_000_001;
        let (c, _) = h.claim(late, 3, a).unwrap();
        assert_eq!(c, a);
        assert_eq!(h.renew(a, beat_a, late), None, "a lost its slot");
    }

    #[test]
    fn finish__after_our_slot_was_taken_leaves_the_new_owner_alone() {
        let (_, h) = table(2);
        let (a, beat_a) = h.claim(1_000, 1, 0).unwrap();
        let mut j = Joined::new(h.clone(), a, 1, 0, beat_a);
        j.seen_gen = 0;
        j.published_best = vec![3];
        // Our pass began (the slot was ours), then we stalled past liveness
        // and b took the slot and published its share before we finished.
        let late = 1_000 + 20_000_001;
        let (b, _) = h.claim(late, 2, a).unwrap();
        assert_eq!(b, a);
        h.publish(b, 5_000, [7, 9].into_iter());
        j.finish(Instant::from_nanos(late), 80_000, false, 0);
        let mut o = Others::default();
        h.others(1 - b, late, &mut o);
        assert_eq!(o.incoming, 5_000, "we overwrote b's incoming bytes");
        assert_eq!(o.best.len(), 2, "we overwrote b's candidates");
        // Our next pass claims the other slot and publishes there, even
        // though our figures did not change.
        let later = late + 1_000;
        assert!(j.keep_slot(Instant::from_nanos(later)));
        assert_ne!(j.slot, b);
        j.published_best = vec![3];
        j.finish(Instant::from_nanos(later), 80_000, false, 0);
        h.others(b, later, &mut o);
        assert_eq!(o.incoming, 80_000, "our share is not in our new slot");
        assert_eq!(o.best.len(), 1);
    }

    #[test]
    fn keep_slot__a_reclaimed_slot_gets_our_unchanged_figures_again() {
        let (_, h) = table(2);
        let (a, beat_a) = h.claim(1_000, 1, 0).unwrap();
        let mut j = Joined::new(h.clone(), a, 1, 0, beat_a);
        j.seen_gen = 0;
        j.published_best = vec![3];
        j.finish(Instant::from_nanos(1_000), 80_000, false, 0);
        // We stall past liveness; b takes our slot.
        let late = 1_000 + 20_000_001;
        let (b, _) = h.claim(late, 2, a).unwrap();
        assert_eq!(b, a);
        // Our next pass: same figures as before, in a new slot.
        assert!(j.keep_slot(Instant::from_nanos(late)));
        assert_ne!(j.slot, b);
        j.published_best = vec![3];
        j.finish(Instant::from_nanos(late), 80_000, false, 0);
        let mut o = Others::default();
        h.others(b, late, &mut o);
        assert_eq!(o.incoming, 80_000, "our share is missing from our new slot");
        assert_eq!(
            o.best.len(),
            1,
            "our candidate is missing from our new slot"
        );
    }

    #[test]
    fn releases__only_a_candidate_that_leaves_or_gets_worse_within_the_top() {
        // Better, more or the same: nobody held back gains a rank.
        assert!(!releases(&[5, 9], &[5, 9], 8));
        assert!(!releases(&[5, 9], &[4, 9], 8));
        assert!(!releases(&[5, 9], &[5, 9, 12], 8));
        assert!(!releases(&[], &[3], 8));
        // Fewer, or one got worse: someone may move up.
        assert!(releases(&[5, 9], &[5], 8));
        assert!(releases(&[5, 9], &[6, 9], 8));
        assert!(releases(&[5], &[], 8));
        // Beyond the top nobody looks.
        assert!(!releases(&[1, 2, 3], &[1, 2], 2));
        assert!(releases(&[1, 2, 3], &[1, 3], 2));
    }

    /// A table whose memory counts the wake-ups it was asked for.
    #[derive(Default)]
    struct Counting(HeapMemory, std::sync::atomic::AtomicU64);
    impl HostMemory for Counting {
        fn words(&self) -> &[AtomicU64] {
            self.0.words()
        }
        fn wake(&self, _: &AtomicU64) {
            self.1.fetch_add(1, Ordering::Relaxed);
        }
    }
    impl Default for HeapMemory {
        fn default() -> HeapMemory {
            HeapMemory::new(HostParams::from_config(&Config::default(), 2).words())
        }
    }

    #[test]
    fn slot_sleep__only_a_wake_up_of_that_slot_wakes_its_sleeper() {
        let p = HostParams::from_config(&Config::default(), 2);
        let mem = Arc::new(Counting::default());
        let h = Host::init(mem.clone(), &p).unwrap();
        let now = 1_000_000;
        let (a, _) = h.claim(now, 1, 0).unwrap();
        let (b, _) = h.claim(now, 2, 1).unwrap();
        // Slot a yields to slot b's shorter message.
        h.publish_tx(b, 0, 101, now);
        let ca = h.yield_begin(a, 5_000);
        let token = Host::wait_token(a, Some(ca), None).unwrap();
        let sl = h.slot_sleep_begin(token, now, 1_000_000).unwrap();
        assert!(core::ptr::eq(sl.word, h.word(a, S_WOKEN)));
        assert_eq!(sl.value, ca);
        // A grant wake-up of slot b (its need covered) is not ours: no
        // system call for our sleeper.
        h.publish_needs(b, 1, 0);
        assert!(h.wake_slot(b, now));
        assert_eq!(mem.1.load(Ordering::Relaxed), 0);
        // b's message leaves: our yield is over, and our sleeper is woken
        // (once: the mark, not a generation sleeper).
        h.withdraw_tx(b, 101, now);
        assert!(h.wait_over(token));
        assert_eq!(mem.1.load(Ordering::Relaxed), 1);
        h.slot_sleep_end(token, sl.mark);
        // Not sleeping any more: a kick counts, but makes no call.
        h.slot_kick(token, now);
        assert_eq!(mem.1.load(Ordering::Relaxed), 1);
        // A wait already over is refused (nothing to sleep on).
        assert!(h.slot_sleep_begin(token, now, 1_000_000).is_none());
        assert_eq!(h.word(a, S_SLEEP).load(Ordering::Relaxed), 0);
    }

    #[test]
    fn slot_sleep__the_end_of_a_sleep_clears_only_its_own_mark() {
        let (_, h) = table(2);
        let now = 1_000_000;
        let (a, _) = h.claim(now, 1, 0).unwrap();
        let token = Host::wait_token(a, Some(h.woken(a)), None).unwrap();
        let sl = h.slot_sleep_begin(token, now, 1_000).unwrap();
        // The slot lapsed meanwhile and its new owner's waiter sleeps on it
        // (a later mark): our waiter's end of sleep leaves that mark.
        let theirs = h.slot_sleep_begin(token, now + 50_000, 1_000).unwrap();
        assert_ne!(sl.mark, theirs.mark);
        h.slot_sleep_end(token, sl.mark);
        assert_eq!(h.word(a, S_SLEEP).load(Ordering::Relaxed), theirs.mark);
        h.slot_sleep_end(token, theirs.mark);
        assert_eq!(h.word(a, S_SLEEP).load(Ordering::Relaxed), 0);
        // A token naming no slot of the table is refused.
        assert_eq!(h.token_slot(7 << TOKEN_SHIFT), None);
        assert!(h.slot_sleep_begin(7 << TOKEN_SHIFT, now, 1_000).is_none());
    }

    #[test]
    fn yield_wakes__a_grant_wake_up_is_not_a_yield_wake_up() {
        let (_, h) = table(2);
        let now = 1_000_000;
        let (a, _) = h.claim(now, 1, 0).unwrap();
        let before = h.woken(a);
        h.publish_needs(a, 1, 0);
        assert!(h.wake_slot(a, now));
        assert_ne!(
            h.woken(a) as u32,
            before as u32,
            "every wake-up moves the low half"
        );
        assert_eq!(Host::yield_wakes(h.woken(a)), Host::yield_wakes(before));
        h.slot_kick(Host::wait_token(a, Some(before), None).unwrap(), now);
        assert_eq!(
            Host::yield_wakes(h.woken(a)),
            Host::yield_wakes(before).wrapping_add(1)
        );
    }

    #[test]
    fn finish__counts_a_release_only_for_changes_that_can_release_someone() {
        let p = HostParams::from_config(&Config::default(), 2);
        let mem = Arc::new(Counting::default());
        let h = Host::init(mem.clone(), &p).unwrap();
        let (a, beat) = h.claim(1_000, 1, 0).unwrap();
        let mut j = Joined::new(h.clone(), a, 1, 0, beat);
        let pass = |j: &mut Joined, incoming: i64, best: &[u32]| {
            j.gen_before = h.releases();
            j.published_best = best.to_vec();
            let g = h.releases();
            j.finish(Instant::from_nanos(1_000), incoming, false, 0);
            h.releases() != g
        };
        assert!(
            !pass(&mut j, 50_000, &[9_000, 20_000]),
            "incoming rose, new candidates"
        );
        assert!(
            !pass(&mut j, 60_000, &[8_000, 20_000]),
            "incoming rose, a candidate got better"
        );
        assert!(!pass(&mut j, 60_000, &[8_000, 20_000]), "nothing changed");
        assert!(pass(&mut j, 58_600, &[8_000, 20_000]), "incoming fell");
        assert!(pass(&mut j, 58_600, &[20_000]), "a candidate left");
        assert!(!pass(&mut j, 58_600, &[20_000, 30_000]), "a candidate came");
        assert!(pass(&mut j, 0, &[]), "everything left");
        // Our own release is not news to us: no re-check of our own making,
        // and with nobody held back the generation never moved.
        assert_eq!(h.generation(), 0);
        j.limited = true;
        assert!(!j.recheck_due(Instant::from_nanos(1_000)));
        // Nobody sleeps: no wake-up asked for (no system call).
        assert_eq!(mem.1.load(Ordering::Relaxed), 0);
        // A waiter sleeps (lease until 1 ms + 5 µs): the next bump wakes it,
        // and someone else's bump is news to us.
        let g = h.wait_begin(1_000_000, 5_000);
        assert_eq!(g, h.generation());
        h.bump(1_004_000);
        assert_eq!(mem.1.load(Ordering::Relaxed), 1);
        assert!(
            !j.recheck_due(Instant::from_nanos(1_000)),
            "a wake-up for someone else"
        );
        h.w()[H_RELEASES].fetch_add(1, Ordering::SeqCst);
        assert!(
            j.recheck_due(Instant::from_nanos(1_000)),
            "someone's release"
        );
        // A waiter that died asleep costs wake-ups only until its lease ends.
        h.bump(1_006_000);
        assert_eq!(mem.1.load(Ordering::Relaxed), 1);
        h.wait_end();
        h.wait_begin(2_000_000, 1_000_000);
        h.wait_end();
        h.bump(2_500_000);
        assert_eq!(
            mem.1.load(Ordering::Relaxed),
            1,
            "nobody counted: no wake-up"
        );
    }

    #[test]
    fn next_timer__held_back_waits_for_heartbeat_lapse_or_starvation_not_recheck_polling() {
        let mut p = HostParams::from_config(&Config::default(), 2);
        p.recheck = p.liveness;
        let h = Host::in_process(&p);
        let (a, beat) = h.claim(1_000, 1, 0).unwrap();
        let mut j = Joined::new(h.clone(), a, 1, 0, beat);
        let now = Instant::from_nanos(30_000_000);
        j.published_best = vec![5];
        j.gen_before = h.generation();
        assert_eq!(j.finish(now, 1, false, 0), Some(now + p.liveness / 4));
        // Held back, the other's heartbeat fresh: the next look is our
        // heartbeat (5 ms), not a `recheck` poll.
        j.others.oldest_beat = 30_000_000;
        assert_eq!(j.finish(now, 1, true, 0), Some(now + p.liveness / 4));
        // The other's heartbeat 18 ms old: due when it lapses, in 2 ms.
        j.others.oldest_beat = 12_000_000;
        let lapse = Instant::from_nanos(30_000_000 + 2_000_000 + 1);
        assert_eq!(j.next_timer(now), Some(lapse));
        assert!(!j.recheck_due(now), "nothing new yet");
        assert!(j.recheck_due(lapse), "the other lapsed");
    }

    /// Three participants of one table at host time 1 ms: Q (not held
    /// back) and the held-back P and R.
    fn three(h: &Host) -> [Joined; 3] {
        [1, 2, 3].map(|o| {
            let (s, beat) = h.claim(1_000_000, o, o as u32).unwrap();
            Joined::new(h.clone(), s, o, 0, beat)
        })
    }

    /// `j`'s grant wait token.
    fn wait(j: &Joined) -> u64 {
        Host::wait_token(j.slot, Some(j.token), None).unwrap()
    }

    /// One pass of `j` at 1 ms publishing `incoming` and `best`.
    fn pass(j: &mut Joined, incoming: i64, best: &[u32], limited: bool, need: u64) {
        j.gen_before = j.host.releases();
        j.published_best = best.to_vec();
        j.finish(Instant::from_nanos(1_000_000), incoming, limited, need);
    }

    #[test]
    fn wake__a_release_wakes_only_the_held_back_participants_whose_need_it_covers() {
        let (_, h) = table(4);
        let [mut q, mut p, mut r] = three(&h);
        let now = Instant::from_nanos(1_000_000);
        pass(&mut q, 390_000, &[], false, 0);
        // P needs 50 kB of free budget, R 20 kB; 10 kB are free.
        pass(&mut p, 0, &[], true, 50_000);
        pass(&mut r, 0, &[], true, 20_000);
        let (tp, tr) = (wait(&p), wait(&r));
        assert!(!h.wait_over(tp) && !h.wait_over(tr));
        let g = h.generation();
        // 15 kB free: smaller than every need, nobody is woken.
        pass(&mut q, 385_000, &[], false, 0);
        assert_eq!(
            h.generation(),
            g,
            "a release no need is covered by moved the generation"
        );
        assert!(!h.wait_over(tp) && !h.wait_over(tr));
        // 25 kB free: R's need is covered, P's is not.
        pass(&mut q, 375_000, &[], false, 0);
        assert_eq!(h.generation(), g + 1);
        assert!(h.wait_over(tr), "R's need is covered");
        assert!(!h.wait_over(tp), "P's need is not");
        assert!(r.recheck_due(now));
        // R's need was consumed: a further release does not wake it again.
        pass(&mut q, 370_000, &[], false, 0);
        assert_eq!(h.generation(), g + 1);
        // P is not stranded: its own timer (the heartbeat, at most a
        // quarter of `liveness` away) sees that something was released.
        let t = p.next_timer(now).unwrap();
        assert!(t <= now + h.params().liveness / 4, "{t:?}");
        assert!(p.recheck_due(t));
        // And the release that covers its need wakes it.
        pass(&mut q, 340_000, &[], false, 0);
        assert!(h.wait_over(tp));
        assert_eq!(h.generation(), g + 2);
    }

    #[test]
    fn wake__a_need_published_after_the_covering_release_wakes_its_publisher_itself() {
        let (_, h) = table(4);
        let [mut q, mut p, _] = three(&h);
        pass(&mut q, 390_000, &[], false, 0);
        // P's pass read 10 kB free and needs 50 kB; before it publishes
        // its need, Q's release frees 100 kB (and sees no need to cover).
        let g = h.generation();
        pass(&mut q, 290_000, &[], false, 0);
        assert_eq!(h.generation(), g);
        pass(&mut p, 0, &[], true, 50_000);
        assert!(
            h.wait_over(wait(&p)),
            "P sleeps on a need the table already covers"
        );
        assert!(p.recheck_due(Instant::from_nanos(1_000_000)));
    }

    #[test]
    fn wake__only_a_better_candidate_that_leaves_a_publishers_top_wakes_a_cut_message() {
        let (_, h) = table(4);
        let [mut q, mut p, _] = three(&h);
        let top: Vec<u32> = (1..=8).map(|i| i * 100).collect();
        pass(&mut q, 0, &top, false, 0);
        // P's best message (5 000 bytes left) ranks below Q's eight.
        p.cut_at = Some((0, 5_000));
        pass(&mut p, 0, &[5_000], true, 0);
        assert!(!h.wait_over(wait(&p)));
        let g = h.generation();
        // Q's last candidate got worse but still ranks above P's: no wake.
        let mut worse = top.clone();
        worse[7] = 900;
        pass(&mut q, 0, &worse, false, 0);
        assert_eq!(h.generation(), g);
        assert!(!h.wait_over(wait(&p)));
        // One of Q's candidates left: P's message enters the top.
        pass(&mut q, 0, &worse[..7], false, 0);
        assert!(h.wait_over(wait(&p)));
        assert_eq!(h.generation(), g + 1);
    }

    #[test]
    fn release__by_an_owner_whose_slot_was_taken_leaves_the_new_owner_alone() {
        let (_, h) = table(2);
        let (a, beat_a) = h.claim(1_000, 1, 0).unwrap();
        // a stalls past liveness; b takes its slot and publishes its share.
        let late = 1_000 + 20_000_001;
        let (b, _) = h.claim(late, 2, a).unwrap();
        assert_eq!(b, a);
        h.publish(b, 5_000, [7, 9].into_iter());
        // a wakes up and leaves: b's slot, heartbeat and figures must stay.
        h.release(a, beat_a, late);
        let mut o = Others::default();
        h.others(1 - b, late, &mut o);
        assert_eq!(o.live, 1, "b is still live");
        assert_eq!(o.incoming, 5_000, "b's incoming bytes were wiped");
        assert_eq!(o.best.len(), 2, "b's candidates were wiped");
    }
}
