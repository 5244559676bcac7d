//! One Homa per host: which host table a socket's endpoint joins
//! ([`HostSharing`]), the process-wide tables, and the host-wide table in
//! shared memory (`homa_sys::shm`).
//!
//! Every socket keeps its own [`homa_proto::Endpoint`] (and its own lock,
//! so several threads can drive several sockets at once); what makes them
//! one Homa is the *host table* (`homa_proto::host`) they join: one NIC
//! estimate for the pacer, one `max_incoming` budget, one ranking of the
//! messages to grant. The protocol's arithmetic on the table is
//! `homa_proto::host`'s; this module only chooses and opens the table.
//!
//! * [`HostSharing::Process`]: the sockets of this process share a table
//!   on the heap, created with the first socket.
//! * [`HostSharing::Host`]: every process of the user in this network
//!   namespace shares a table in `/dev/shm/homa-<uid>-<netns inode>-<netns cookie>`
//!   (created on demand by the first process, no daemon). A table that is
//!   not the user's, lets other users in, has the wrong size or holds
//!   garbage is refused with an error naming the file.
//! * [`HostSharing::Off`]: the socket schedules alone (the behaviour
//!   before host sharing).
//! * [`HostSharing::Auto`] (the default): the `HOMA_HOST_SHARING`
//!   environment variable (`off`, `process`, `host`) if set, else the
//!   process-wide table, else none when it is full (with a warning on
//!   standard error, once per process). Host-wide sharing is asked for,
//!   not assumed: on a small machine its re-checks cost CPU that a host
//!   running many Homa processes may not have (`docs/host-sharing.md`,
//!   "Rack"). A mode asked for explicitly (the variable or the
//!   configuration) fails the bind with [`Error::HostSharing`] instead of
//!   falling back.
//!
//! **Re-checks are event-driven.** A socket held back by the others
//! (`homa_proto::Endpoint::host_wait`) has no packet of its own coming to
//! wake it. Each table has one *waiter* thread per process
//! (`homa-host-<n>`), parked while no socket of the process is held back;
//! otherwise it sleeps on the table's generation word (a futex,
//! `homa_sys::futex`, shared between the processes of a host-wide table)
//! and, when a publisher moves the generation (only a change that covers
//! some held-back participant's published need does), pokes the held-back
//! sockets whose wait is over (`homa_proto::Host::wait_over`: their own
//! need was covered): a flag and their driver's eventfd (the waiter never
//! takes a socket's lock); the driver re-checks in its next turn. The
//! table counts the sleeping waiters, so an uncontended host never makes
//! the system call. A waiter whose process has exactly one waiting socket
//! on the table sleeps on that socket's slot word instead
//! (`homa_proto::Host::slot_sleep_begin`), so that the wake-ups of the
//! other participants do not wake it. The same waits cover a pacer that
//! yields to another participant's shorter message: it is poked when that
//! message leaves the table. The waiter sleeps at least [`crate::Config::host_recheck`]
//! between two wake-ups (a participant spinning the generation costs each
//! process at most one re-check round per period); the protocol's own host
//! timer (every `liveness / 4`, and when a participant lapses) is the
//! fallback.
//!
//! The table's parameters (`max_incoming`, `link_mbps`, `max_overcommit`)
//! come from the socket's protocol configuration and must agree among the
//! participants: process-wide, sockets with different values get
//! different tables; host-wide, a process whose values differ from the
//! table's is refused (or falls back under `Auto`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::Thread;
use std::time::Duration;

use homa_proto::host::{HeapMemory, HostError, HostMemory, HostParams};
use homa_sys::shm::{Segment, SegmentError};

use crate::engine::Shared;
use crate::Error;

/// Slots of a host table: most sockets (endpoints) that can join one.
pub const HOST_SLOTS: u32 = 64;

/// Default of [`crate::Config::host_recheck`]: the least time between two
/// wake-ups of a process's waiter.
pub const DEFAULT_RECHECK: Duration = Duration::from_micros(100);

/// Environment variable setting [`crate::Config::host_recheck`] (µs)
/// when the configuration leaves it unset.
pub const ENV_RECHECK: &str = "HOMA_HOST_RECHECK_US";

/// The host parameters of a socket with `config`: the protocol's re-check
/// timer is only the fallback (the waiter re-checks on changes), so it
/// runs with the heartbeat, every quarter of `liveness`; and the waiter
/// pokes a pacer that yields to another participant's message when that
/// message leaves the table.
fn params_for(config: &crate::Config) -> HostParams {
    let mut p = HostParams::from_config(&config.proto, HOST_SLOTS);
    p.recheck = p.liveness / 4;
    p.waiter = true;
    p
}

/// The least time between two wake-ups of the waiter
/// ([`crate::Config::host_recheck`], else `HOMA_HOST_RECHECK_US`, else
/// [`DEFAULT_RECHECK`]; at most 10 ms).
fn min_recheck(config: &crate::Config) -> Duration {
    config
        .host_recheck
        .or_else(|| {
            std::env::var(ENV_RECHECK)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_micros)
        })
        .unwrap_or(DEFAULT_RECHECK)
        .min(Duration::from_millis(10))
}

/// How long a process waits for another process's fresh table to be
/// initialised (sized, header written) before it gives up.
const INIT_WAIT: Duration = Duration::from_secs(1);

/// Environment variable that chooses the sharing mode under
/// [`HostSharing::Auto`]: `off`, `process`, `host` (or `auto`).
pub const ENV_SHARING: &str = "HOMA_HOST_SHARING";

/// Environment variable naming the directory of host-wide tables
/// (default `/dev/shm`), unless [`crate::Config::host_dir`] is set.
pub const ENV_DIR: &str = "HOMA_HOST_DIR";

/// Which host table a socket's endpoint joins (see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum HostSharing {
    /// `HOMA_HOST_SHARING` if set, else process-wide.
    #[default]
    Auto,
    /// No table: the socket paces, grants and ranks alone.
    Off,
    /// One table for the sockets of this process.
    Process,
    /// One table for every process of this user in this network namespace
    /// (shared memory under `/dev/shm`).
    Host,
}

impl std::str::FromStr for HostSharing {
    type Err = String;
    fn from_str(s: &str) -> Result<HostSharing, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(HostSharing::Auto),
            "off" | "none" => Ok(HostSharing::Off),
            "process" => Ok(HostSharing::Process),
            "host" => Ok(HostSharing::Host),
            other => Err(format!(
                "unknown host sharing mode {other:?} (expected off, process, host or auto)"
            )),
        }
    }
}

/// The table a socket joined: what to give the endpoint, and what to
/// report.
#[derive(Debug, Clone)]
pub(crate) struct Joining {
    pub(crate) table: homa_proto::Host,
    pub(crate) mode: HostSharing,
    pub(crate) path: Option<PathBuf>,
}

/// The shared-memory segment as the protocol's table memory.
struct ShmMemory(Segment);

impl HostMemory for ShmMemory {
    fn words(&self) -> &[AtomicU64] {
        self.0.words()
    }
}

/// Table memory (the heap's or a segment's) whose waiters sleep on its
/// generation word: a futex, shared when the memory is.
struct Futexed<M>(M);

impl<M: HostMemory> HostMemory for Futexed<M> {
    fn words(&self) -> &[AtomicU64] {
        self.0.words()
    }
    fn wake(&self, generation: &AtomicU64) {
        homa_sys::futex::wake_all(generation);
    }
}

/// `Shared::host_wait` of a socket that waits for nothing.
pub(crate) const NOT_WAITING: u64 = u64::MAX;

/// The waiter of one table in this process: the sockets that joined it
/// (held back or not), and the thread that re-checks the held-back ones
/// when the table's generation moves.
pub(crate) struct Waiter {
    table: homa_proto::Host,
    sockets: Mutex<Vec<Weak<Shared>>>,
    thread: Thread,
    /// The least time between two wake-ups.
    min_gap: Duration,
    /// Wake-ups of the thread (futex returns and unparks), and sockets
    /// re-checked.
    pub(crate) wakes: AtomicU64,
    pub(crate) rechecks: AtomicU64,
    /// The wait token whose slot word the thread sleeps on (the only
    /// socket of ours that waits), or `NOT_WAITING`.
    sleeping_on: AtomicU64,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter").finish_non_exhaustive()
    }
}

/// The waiters of this process, one per table.
fn waiters() -> &'static Mutex<Vec<Arc<Waiter>>> {
    static W: OnceLock<Mutex<Vec<Arc<Waiter>>>> = OnceLock::new();
    W.get_or_init(Mutex::default)
}

/// The waiter of `table` (its thread started on first use).
fn waiter_for(table: &homa_proto::Host, min_gap: Duration) -> std::io::Result<Arc<Waiter>> {
    let mut all = waiters().lock().unwrap_or_else(|p| p.into_inner());
    let same = |w: &&Arc<Waiter>| std::ptr::eq(w.table.generation_word(), table.generation_word());
    if let Some(w) = all.iter().find(same) {
        return Ok(w.clone());
    }
    let (tx, rx) = std::sync::mpsc::channel::<Arc<Waiter>>();
    let h = std::thread::Builder::new()
        .name(format!("homa-host-{}", all.len()))
        .spawn(move || {
            if let Ok(w) = rx.recv() {
                w.run();
            }
        })?;
    let w = Arc::new(Waiter {
        table: table.clone(),
        sockets: Mutex::default(),
        thread: h.thread().clone(),
        min_gap,
        wakes: AtomicU64::new(0),
        rechecks: AtomicU64::new(0),
        sleeping_on: AtomicU64::new(NOT_WAITING),
    });
    let _ = tx.send(w.clone());
    all.push(w.clone());
    Ok(w)
}

/// Registers a socket that joined a table with the table's waiter (once
/// the socket is shared).
pub(crate) fn register(shared: &Arc<Shared>) -> Result<(), Error> {
    let Some(j) = shared.host_joining() else {
        return Ok(());
    };
    let w = waiter_for(&j.table, min_recheck(&shared.config))?;
    let mut s = w.sockets.lock().unwrap_or_else(|p| p.into_inner());
    s.retain(|x| x.strong_count() > 0);
    s.push(Arc::downgrade(shared));
    drop(s);
    shared.set_waiter(w);
    Ok(())
}

impl Waiter {
    /// The table.
    pub(crate) fn table(&self) -> &homa_proto::Host {
        &self.table
    }

    /// A socket of ours started waiting for `token` (a publisher to cover
    /// its need, or its better message to leave): wake the thread if it is
    /// parked (a thread asleep on the generation word wakes at the next
    /// move anyway), or if it sleeps on another socket's slot (it must
    /// sleep on the generation now).
    pub(crate) fn note_waiting(&self, token: u64) {
        self.thread.unpark();
        let on = self.sleeping_on.load(Ordering::SeqCst);
        let t = &self.table;
        if on != NOT_WAITING && t.token_slot(on) != t.token_slot(token) {
            self.table.slot_kick(on, homa_sys::wait::monotonic_nanos());
        }
    }

    /// A socket of ours published a wait that was already over (its need
    /// was covered while it published it, twice in a row): move the
    /// generation, so that no waiter sleeps through it.
    pub(crate) fn nudge(&self) {
        self.table.nudge(homa_sys::wait::monotonic_nanos());
    }

    /// The thread: pokes the held-back sockets whose wait is over (a
    /// publisher covered their need), then sleeps until the generation
    /// moves (counted in the table, so that publishers wake it), or parks
    /// while no socket waits.
    fn run(&self) {
        let lease = Duration::from_millis(20);
        // When we last went to sleep: the next sleep starts no sooner than
        // `min_gap` after it (wake-ups further apart cost no extra sleep).
        let mut slept_at = std::time::Instant::now();
        let mut live: Vec<Arc<Shared>> = Vec::new();
        loop {
            let g = self.table.generation();
            let mut waiting = false;
            // The sockets still waiting after the pokes (not over): with
            // exactly one, we sleep on its slot's word, so that the other
            // participants' wake-ups do not wake us.
            let (mut pending, mut only) = (0usize, NOT_WAITING);
            {
                let mut s = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
                s.retain(|x| x.strong_count() > 0);
                live.extend(s.iter().filter_map(Weak::upgrade));
            }
            for sh in &live {
                let w = sh.host_wait.load(Ordering::SeqCst);
                if w == NOT_WAITING {
                    continue;
                }
                if self.table.wait_over(w) {
                    if !sh.host_poke_pending() {
                        self.rechecks.fetch_add(1, Ordering::Relaxed);
                        sh.host_poke();
                    }
                    pending += 2;
                } else {
                    pending += 1;
                    only = w;
                }
                waiting = true;
            }
            live.clear();
            // Bound the wake-up rate: a participant spinning the generation
            // gets one round per `min_gap` from us, not one per bump (not
            // counted meanwhile: publishers do not wake us).
            let gap = self.min_gap.saturating_sub(slept_at.elapsed());
            if !gap.is_zero() {
                std::thread::sleep(gap);
            }
            slept_at = std::time::Instant::now();
            if !waiting {
                // Nobody held back: not counted, publishers never wake us.
                std::thread::park_timeout(Duration::from_secs(1));
            } else if pending == 1 {
                // One socket waits: sleep on its slot's word (marked, so
                // that a publisher waking that slot makes the call). A
                // socket that starts waiting meanwhile kicks us
                // (`note_waiting`): announce the slot first, then look
                // again (both sequentially consistent).
                self.sleeping_on.store(only, Ordering::SeqCst);
                let again = {
                    let s = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
                    s.iter().filter_map(Weak::upgrade).all(|sh| {
                        let w = sh.host_wait.load(Ordering::SeqCst);
                        w == NOT_WAITING || w == only
                    })
                };
                let now = homa_sys::wait::monotonic_nanos();
                if again {
                    if let Some(sl) =
                        self.table
                            .slot_sleep_begin(only, now, lease.as_nanos() as u64)
                    {
                        let _ = homa_sys::futex::wait_while(sl.word, sl.value, Some(lease));
                        self.table.slot_sleep_end(only, sl.mark);
                    }
                }
                self.sleeping_on.store(NOT_WAITING, Ordering::SeqCst);
            } else {
                // Sleep only while the generation is still `g`: a publisher
                // that covers a need counts the wake-up in the socket's slot
                // before it moves the generation, so every wait that ended
                // before `g` was read has been poked above (its pass then
                // waits again, or nudges the generation if it raced).
                let now = homa_sys::wait::monotonic_nanos();
                self.table.wait_begin(now, lease.as_nanos() as u64);
                let word = self.table.generation_word();
                let _ = homa_sys::futex::wait_while(word, g, Some(lease));
                self.table.wait_end();
            }
            self.wakes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Process-wide tables, by parameters.
fn process_tables() -> &'static Mutex<Vec<(HostParams, homa_proto::Host)>> {
    static T: OnceLock<Mutex<Vec<(HostParams, homa_proto::Host)>>> = OnceLock::new();
    T.get_or_init(Mutex::default)
}

/// Host-wide tables this process has mapped, by file.
fn shm_tables() -> &'static Mutex<HashMap<PathBuf, homa_proto::Host>> {
    static T: OnceLock<Mutex<HashMap<PathBuf, homa_proto::Host>>> = OnceLock::new();
    T.get_or_init(Mutex::default)
}

/// The process-wide table for `params` (created on first use).
pub(crate) fn process_table(params: &HostParams) -> homa_proto::Host {
    let mut t = process_tables().lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, h)) = t.iter().find(|(p, _)| p == params) {
        return h.clone();
    }
    let mem = Arc::new(Futexed(HeapMemory::new(params.words())));
    let h = homa_proto::Host::init(mem, params).expect("host parameters within range");
    t.push((params.clone(), h.clone()));
    h
}

/// The host-wide table file for this user and network namespace under
/// `dir` (`None`: `HOMA_HOST_DIR`, else `/dev/shm`).
pub fn host_table_path(dir: Option<&Path>) -> std::io::Result<PathBuf> {
    let env = std::env::var_os(ENV_DIR).map(PathBuf::from);
    let dir = dir
        .map(Path::to_path_buf)
        .or(env)
        .unwrap_or_else(|| PathBuf::from(homa_sys::shm::DEFAULT_DIR));
    homa_sys::shm::default_path(&dir)
}

/// Maps (creating if needed) the host-wide table at `path` and checks it.
pub(crate) fn shm_table(
    path: &Path,
    params: &HostParams,
    group: Option<u32>,
) -> Result<homa_proto::Host, String> {
    let mut t = shm_tables().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = t.get(path) {
        // (`recheck` and `waiter` are the process's own: the first
        // socket's apply.)
        let same = HostParams {
            recheck: params.recheck,
            waiter: params.waiter,
            ..h.params().clone()
        };
        if &same == params {
            return Ok(h.clone());
        }
        return Err(format!(
            "host table {}: already mapped by this process with other parameters ({:?})",
            path.display(),
            h.params()
        ));
    }
    let give_up = std::time::Instant::now() + INIT_WAIT;
    let h = loop {
        let seg = match Segment::open_or_create(path, params.words(), group) {
            Ok(s) => s,
            Err(SegmentError::NotSized { .. }) if std::time::Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        let created = seg.created();
        let mem: Arc<dyn HostMemory> = Arc::new(Futexed(ShmMemory(seg)));
        let r = if created {
            homa_proto::Host::init(mem, params)
        } else {
            homa_proto::Host::open(mem, params)
        };
        match r {
            Ok(h) => break h,
            Err(HostError::NotReady) if std::time::Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(HostError::NotReady) => {
                return Err(format!(
                    "host table {}: {} for {} ms (its creator died while writing it? remove the \
                     file if no Homa process uses it)",
                    path.display(),
                    HostError::NotReady,
                    INIT_WAIT.as_millis()
                ))
            }
            Err(e) => {
                return Err(format!(
                    "host table {}: {e} (remove the file if no Homa process uses it)",
                    path.display()
                ))
            }
        }
    };
    t.insert(path.to_path_buf(), h.clone());
    Ok(h)
}

/// The mode `configured` resolves to, and whether it was asked for
/// explicitly (then a failure fails the bind).
fn resolve(configured: HostSharing) -> Result<(HostSharing, bool), Error> {
    if configured != HostSharing::Auto {
        return Ok((configured, true));
    }
    match std::env::var(ENV_SHARING) {
        Ok(v) => {
            let m: HostSharing = v
                .parse()
                .map_err(|e: String| Error::HostSharing(format!("{ENV_SHARING}: {e}")))?;
            Ok((m, m != HostSharing::Auto))
        }
        Err(_) => Ok((HostSharing::Auto, false)),
    }
}

/// Prints `msg` on standard error the first time only.
fn warn_once(msg: &str) {
    static WARNED: OnceLock<()> = OnceLock::new();
    if WARNED.set(()).is_ok() {
        eprintln!(
            "homa: warning: {msg}; falling back to process-wide sharing (or none if that \
             table is full too); set {ENV_SHARING}=host to make this an error"
        );
    }
}

/// Makes `ep` (a socket's endpoint with `config`, whose clock started at
/// `CLOCK_MONOTONIC` `epoch`) join its host table; returns the table
/// joined, `None` with sharing off.
pub(crate) fn join(
    ep: &mut homa_proto::Endpoint,
    config: &crate::Config,
    epoch: u64,
) -> Result<Option<Joining>, Error> {
    let Some((j, explicit)) = table_for(config)? else {
        return Ok(None);
    };
    let owner = u64::from(std::process::id());
    let now = homa_proto::Instant::ZERO;
    let e = match ep.join_host(now, &j.table, owner, epoch) {
        Ok(()) => return Ok(Some(j)),
        Err(e) => format!("joining the {} table: {e}", j.describe()),
    };
    if explicit {
        return Err(Error::HostSharing(e));
    }
    // `Auto`: the next best table, else alone.
    warn_once(&e);
    if j.mode == HostSharing::Host {
        let params = params_for(config);
        let p = Joining {
            table: process_table(&params),
            mode: HostSharing::Process,
            path: None,
        };
        if ep.join_host(now, &p.table, owner, epoch).is_ok() {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

impl Joining {
    fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("host-wide ({})", p.display()),
            None => "process-wide".to_string(),
        }
    }
}

/// The table a socket with `config` joins, or `None` (sharing off), and
/// whether its mode was asked for explicitly.
fn table_for(config: &crate::Config) -> Result<Option<(Joining, bool)>, Error> {
    let (mode, explicit) = resolve(config.host_sharing)?;
    let params = params_for(config);
    let process = || Joining {
        table: process_table(&params),
        mode: HostSharing::Process,
        path: None,
    };
    match mode {
        HostSharing::Off => Ok(None),
        HostSharing::Process => Ok(Some((process(), explicit))),
        HostSharing::Auto => Ok(Some((process(), false))),
        HostSharing::Host => {
            let opened = host_table_path(config.host_dir.as_deref())
                .map_err(|e| format!("host table: cannot name it: {e}"))
                .and_then(|path| shm_table(&path, &params, config.host_group).map(|t| (t, path)));
            match opened {
                Ok((table, path)) => Ok(Some((
                    Joining {
                        table,
                        mode: HostSharing::Host,
                        path: Some(path),
                    },
                    explicit,
                ))),
                // Host-wide sharing is only ever asked for: no fallback.
                Err(e) => Err(Error::HostSharing(e)),
            }
        }
    }
}

/// A socket's view of its host table, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct HostMetrics {
    /// `process` or `host`.
    pub mode: HostSharing,
    /// The shared-memory file of a host-wide table.
    pub path: Option<PathBuf>,
    /// The table's figures as this socket sees them (slot, participants,
    /// the host's and this socket's granted-but-not-received bytes, the
    /// shared NIC backlog, reclaims and limited passes); flattened in JSON.
    #[serde(flatten)]
    pub view: homa_proto::HostView,
    /// Wake-ups of this process's waiter for the table (shared by the
    /// process's sockets on the table).
    pub waiter_wakes: u64,
    /// Re-checks of held-back sockets the waiter made (all sockets of the
    /// process on the table).
    pub waiter_rechecks: u64,
}

impl HostMetrics {
    pub(crate) fn new(
        j: &Joining,
        v: homa_proto::HostView,
        w: Option<&Arc<Waiter>>,
    ) -> HostMetrics {
        HostMetrics {
            mode: j.mode,
            path: j.path.clone(),
            view: v,
            waiter_wakes: w.map_or(0, |w| w.wakes.load(Ordering::Relaxed)),
            waiter_rechecks: w.map_or(0, |w| w.rechecks.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn parse__modes_and_refusal() {
        assert_eq!("off".parse::<HostSharing>(), Ok(HostSharing::Off));
        assert_eq!("Process".parse::<HostSharing>(), Ok(HostSharing::Process));
        assert_eq!(" host ".parse::<HostSharing>(), Ok(HostSharing::Host));
        assert_eq!("auto".parse::<HostSharing>(), Ok(HostSharing::Auto));
        assert!("hots".parse::<HostSharing>().unwrap_err().contains("hots"));
    }

    #[test]
    fn process_table__one_per_parameters() {
        let p = HostParams::from_config(&homa_proto::Config::default(), HOST_SLOTS);
        let a = process_table(&p);
        let b = process_table(&p);
        assert_eq!(a.generation(), b.generation());
        // The same table: a publish through one is seen through the other
        // (both handles read one generation word).
        let mut q = p.clone();
        q.max_incoming += 1;
        let c = process_table(&q);
        assert_eq!(c.params().max_incoming, p.max_incoming + 1);
    }

    #[test]
    fn shm_table__garbage_file_refused_with_its_name() {
        let dir = std::env::temp_dir().join(format!("homa-host-garbage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("table");
        let p = HostParams::from_config(&homa_proto::Config::default(), HOST_SLOTS);
        let garbage: Vec<u8> = (0..p.words() * 8).map(|i| (i * 7 + 3) as u8).collect();
        std::fs::write(&path, garbage).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = shm_table(&path, &p, None).unwrap_err();
        assert!(e.contains("not a Homa host table"), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shm_table__created_then_reused_by_this_process() {
        let dir = std::env::temp_dir().join(format!("homa-host-reuse-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("table");
        let p = HostParams::from_config(&homa_proto::Config::default(), HOST_SLOTS);
        let a = shm_table(&path, &p, None).unwrap();
        let b = shm_table(&path, &p, None).unwrap();
        assert_eq!(a.generation(), b.generation());
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
        assert_eq!(m.len(), p.words() as u64 * 8);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
