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
//! The table's parameters (`max_incoming`, `link_mbps`, `max_overcommit`)
//! come from the socket's protocol configuration and must agree among the
//! participants: process-wide, sockets with different values get
//! different tables; host-wide, a process whose values differ from the
//! table's is refused (or falls back under `Auto`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use homa_proto::host::{HostError, HostMemory, HostParams};
use homa_sys::shm::{Segment, SegmentError};

use crate::Error;

/// Slots of a host table: most sockets (endpoints) that can join one.
pub const HOST_SLOTS: u32 = 64;

/// Default of [`crate::Config::host_recheck`].
pub const DEFAULT_RECHECK: Duration = Duration::from_micros(500);

/// Environment variable setting [`crate::Config::host_recheck`] (µs)
/// when the configuration leaves it unset.
pub const ENV_RECHECK: &str = "HOMA_HOST_RECHECK_US";

/// The host parameters of a socket with `config`.
fn params_for(config: &crate::Config) -> HostParams {
    let mut p = HostParams::from_config(&config.proto, HOST_SLOTS);
    let recheck = config.host_recheck.or_else(|| {
        std::env::var(ENV_RECHECK)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_micros)
    });
    // Within the protocol's range (positive, at most `liveness`).
    p.recheck = recheck
        .unwrap_or(DEFAULT_RECHECK)
        .clamp(Duration::from_micros(1), p.liveness);
    p
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
    fn words(&self) -> &[std::sync::atomic::AtomicU64] {
        self.0.words()
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
    let h = homa_proto::Host::in_process(params);
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
        // (`recheck` is the process's own: the first socket's applies.)
        let same = HostParams {
            recheck: params.recheck,
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
        let mem: Arc<dyn HostMemory> = Arc::new(ShmMemory(seg));
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
}

impl HostMetrics {
    pub(crate) fn new(j: &Joining, v: homa_proto::HostView) -> HostMetrics {
        HostMetrics {
            mode: j.mode,
            path: j.path.clone(),
            view: v,
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
