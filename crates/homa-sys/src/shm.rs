//! A shared-memory segment of `AtomicU64` words that every process of a
//! user on a host (one network namespace) maps: a file under `/dev/shm`
//! created on demand, checked before it is trusted, mapped `MAP_SHARED`.
//!
//! What the words mean is not this module's business (the host table's
//! layout and its validation are `homa_proto::host`'s); this module only
//! guarantees that the mapping is a private, correctly sized file of the
//! calling user:
//!
//! * created with `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600 (or 0660 and
//!   the configured group), so exactly one process creates it and zero-fills
//!   it to its size (`ftruncate`), and a symbolic link planted under the
//!   name is never followed;
//! * opened otherwise, then checked with `fstat` on the open descriptor: a
//!   regular file, owned by the calling user, no access for others (nor for
//!   the group unless a group was configured), and exactly the expected
//!   size. A file of size 0 is one whose creator has not sized it yet
//!   ([`SegmentError::NotSized`]: retry for a moment).
//!
//! The name [`default_path`] gives is `homa-<uid>-<netns inode>-<netns
//! cookie>`: the network namespace tells the hosts of an emulated rack
//! apart even though they share one `/dev/shm`, the uid keeps users apart,
//! and the cookie (never reused, unlike the inode) keeps a table left
//! behind by a dead namespace from being taken for a new namespace's.
//!
//! Limitation: a process of the same user can still `ftruncate` the file
//! shorter, after which touching the mapping raises `SIGBUS` in every
//! process that maps it. Only the table's contents are defended (by its
//! reader, `homa_proto::host`), not the file's size against its own user.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

/// Where host tables live unless configured otherwise.
pub const DEFAULT_DIR: &str = "/dev/shm";

/// Why a segment could not be used.
#[derive(Debug)]
pub enum SegmentError {
    /// A system call failed.
    Io {
        /// The segment.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error.
        error: io::Error,
    },
    /// The file is not a regular file.
    NotRegular {
        /// The segment.
        path: PathBuf,
    },
    /// The file belongs to another user.
    Owner {
        /// The segment.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The calling user.
        uid: u32,
    },
    /// The file is readable or writable by users it should not be.
    Permissions {
        /// The segment.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The group it must belong to, if one was configured.
        group: Option<u32>,
        /// Its group.
        gid: u32,
    },
    /// The file has another size than the table needs.
    Size {
        /// The segment.
        path: PathBuf,
        /// Its size.
        found: u64,
        /// The size needed.
        expected: u64,
    },
    /// The file exists but its creator has not sized it yet (size 0).
    NotSized {
        /// The segment.
        path: PathBuf,
    },
}

impl std::fmt::Display for SegmentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SegmentError::Io { path, what, error } => {
                write!(f, "host table {}: {what}: {error}", path.display())
            }
            SegmentError::NotRegular { path } => write!(
                f,
                "host table {}: not a regular file; refusing it (remove it if no Homa process uses it)",
                path.display()
            ),
            SegmentError::Owner { path, owner, uid } => write!(
                f,
                "host table {}: owned by uid {owner}, not by this user (uid {uid}); refusing it",
                path.display()
            ),
            SegmentError::Permissions {
                path,
                mode,
                group,
                gid,
            } => match group {
                None => write!(
                    f,
                    "host table {}: mode {mode:04o} lets other users in (must be 0600); refusing it",
                    path.display()
                ),
                Some(g) => write!(
                    f,
                    "host table {}: mode {mode:04o}, group {gid} (must be at most 0660, group {g}); refusing it",
                    path.display()
                ),
            },
            SegmentError::Size {
                path,
                found,
                expected,
            } => write!(
                f,
                "host table {}: {found} bytes, expected {expected} (another version of Homa, or \
                 not a host table); refusing it (remove it if no Homa process uses it)",
                path.display()
            ),
            SegmentError::NotSized { path } => write!(
                f,
                "host table {}: empty (its creator has not sized it; a creator that died leaves it \
                 so: remove it if no Homa process uses it)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for SegmentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SegmentError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// The host table's default file for the calling user in the calling
/// thread's network namespace: `<dir>/homa-<uid>-<netns inode>-<netns
/// cookie>` (`homa-<uid>-<netns inode>` where the kernel has no cookie).
///
/// The inode of a namespace that no longer exists is given to later ones;
/// the cookie (`SO_NETNS_COOKIE`, Linux 5.14) never is, so a table left
/// behind by a dead namespace (an emulated rack's host, a test's) is never
/// mistaken for the table of a new one.
pub fn default_path(dir: &Path) -> io::Result<PathBuf> {
    let ns = std::fs::metadata("/proc/thread-self/ns/net")
        .or_else(|_| std::fs::metadata("/proc/self/ns/net"))?;
    Ok(dir.join(match netns_cookie() {
        Some(c) => format!("homa-{}-{}-{c}", uid(), ns.ino()),
        None => format!("homa-{}-{}", uid(), ns.ino()),
    }))
}

/// The calling thread's network namespace cookie (`SO_NETNS_COOKIE` of a
/// fresh socket), if the kernel has it.
pub fn netns_cookie() -> Option<u64> {
    // SO_NETNS_COOKIE in the generic socket option numbering (which these
    // architectures use); libc does not export it on every target.
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    ))]
    const SO_NETNS_COOKIE: libc::c_int = 71;
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    )))]
    return None;
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    ))]
    {
        use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
        use std::os::fd::AsRawFd;
        let fd = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .ok()?;
        let mut cookie: u64 = 0;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        // SAFETY: the option value is a u64 the kernel writes at most `len`
        // bytes of; both pointers are valid for the call.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_NETNS_COOKIE,
                (&mut cookie as *mut u64).cast(),
                &mut len,
            )
        };
        (r == 0 && len as usize == std::mem::size_of::<u64>()).then_some(cookie)
    }
}

/// The calling process's real user id.
pub fn uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// A mapped segment of `AtomicU64` words (unmapped when dropped).
#[derive(Debug)]
pub struct Segment {
    ptr: NonNull<AtomicU64>,
    words: usize,
    path: PathBuf,
    created: bool,
}

// SAFETY: the mapping is plain shared memory accessed only through
// `AtomicU64`s, which are `Sync`; nothing in it is tied to a thread.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

impl Segment {
    /// Opens the segment at `path` if it exists and passes the checks
    /// (module documentation), or creates it with `words` zeroed words.
    /// `group`: share with this group (mode 0660) instead of the user
    /// alone (0600).
    ///
    /// [`Segment::created`] tells the caller whether it created the file
    /// (and must write the table's header) or found it.
    pub fn open_or_create(
        path: &Path,
        words: usize,
        group: Option<u32>,
    ) -> Result<Segment, SegmentError> {
        let bytes = (words as u64) * 8;
        let io_err = |what: &'static str| {
            let path = path.to_path_buf();
            move |error: io::Error| SegmentError::Io { path, what, error }
        };
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        let flags = libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let created = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(flags)
            .open(path);
        let (file, created) = match created {
            Ok(f) => {
                // The umask may have taken bits away; the group needs its.
                if let Some(g) = group {
                    std::os::unix::fs::fchown(&f, None, Some(g)).map_err(io_err("fchown"))?;
                }
                f.set_permissions(Permissions::from_mode(mode))
                    .map_err(io_err("fchmod"))?;
                f.set_len(bytes).map_err(io_err("ftruncate"))?;
                (f, true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(flags)
                    .open(path)
                    .map_err(io_err("open"))?;
                check(&f, path, bytes, group)?;
                (f, false)
            }
            Err(e) => return Err(io_err("create")(e)),
        };
        let ptr = map(&file, bytes).map_err(io_err("mmap"))?;
        Ok(Segment {
            ptr,
            words,
            path: path.to_path_buf(),
            created,
        })
    }

    /// The words.
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is `words` × 8 bytes, page-aligned (so
        // aligned for `AtomicU64`), readable and writable, and lives until
        // `self` is dropped; other processes change it only through atomic
        // operations on the same words (`AtomicU64` allows that).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.words) }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if this call created the file (it is zeroed: write the header).
    pub fn created(&self) -> bool {
        self.created
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this length and no
        // reference into it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.words * 8) };
    }
}

/// The checks on a segment another process created (module docs).
fn check(f: &File, path: &Path, bytes: u64, group: Option<u32>) -> Result<(), SegmentError> {
    let m = f.metadata().map_err(|error| SegmentError::Io {
        path: path.to_path_buf(),
        what: "fstat",
        error,
    })?;
    let path = path.to_path_buf();
    if !m.file_type().is_file() {
        return Err(SegmentError::NotRegular { path });
    }
    let me = uid();
    if m.uid() != me {
        return Err(SegmentError::Owner {
            path,
            owner: m.uid(),
            uid: me,
        });
    }
    let mode = m.mode() & 0o7777;
    let allowed = match group {
        None => mode & 0o077 == 0,
        Some(g) => mode & 0o007 == 0 && m.gid() == g,
    };
    if !allowed || mode & 0o7000 != 0 {
        return Err(SegmentError::Permissions {
            path,
            mode,
            group,
            gid: m.gid(),
        });
    }
    match m.len() {
        0 => Err(SegmentError::NotSized { path }),
        n if n != bytes => Err(SegmentError::Size {
            path,
            found: n,
            expected: bytes,
        }),
        _ => Ok(()),
    }
}

/// Maps `bytes` of `f` shared, readable and writable.
fn map(f: &File, bytes: u64) -> io::Result<NonNull<AtomicU64>> {
    let len = usize::try_from(bytes)
        .ok()
        .filter(|&l| l > 0)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    use rustix::mm::{MapFlags, ProtFlags};
    // SAFETY: a fresh mapping at an address the kernel picks, of a file
    // whose size was checked to be `len`; nothing else is affected.
    let p = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            f.as_fd(),
            0,
        )
    }?;
    NonNull::new(p.cast()).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("homa-sys-shm-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn create_then_open__same_words_mode_0600() {
        let d = dir("basic");
        let p = d.join("seg");
        let a = Segment::open_or_create(&p, 16, None).unwrap();
        assert!(a.created());
        let mode = std::fs::metadata(&p).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 128);
        let b = Segment::open_or_create(&p, 16, None).unwrap();
        assert!(!b.created());
        a.words()[3].store(77, Ordering::Release);
        assert_eq!(b.words()[3].load(Ordering::Acquire), 77);
        assert_eq!(b.words().len(), 16);
        drop((a, b));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn wrong_size_empty_and_open_permissions__refused() {
        let d = dir("refused");
        let p = d.join("seg");
        std::fs::write(&p, vec![0xa5u8; 100]).unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o600)).unwrap();
        let e = Segment::open_or_create(&p, 16, None).unwrap_err();
        assert!(
            matches!(
                e,
                SegmentError::Size {
                    found: 100,
                    expected: 128,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("refusing"), "{e}");

        std::fs::write(&p, b"").unwrap();
        let e = Segment::open_or_create(&p, 16, None).unwrap_err();
        assert!(matches!(e, SegmentError::NotSized { .. }), "{e}");

        std::fs::write(&p, vec![0u8; 128]).unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o644)).unwrap();
        let e = Segment::open_or_create(&p, 16, None).unwrap_err();
        assert!(
            matches!(e, SegmentError::Permissions { mode: 0o644, .. }),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn symlink_and_directory__refused() {
        let d = dir("links");
        let target = d.join("target");
        std::fs::write(&target, vec![0u8; 128]).unwrap();
        std::fs::set_permissions(&target, Permissions::from_mode(0o600)).unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        // O_NOFOLLOW: the link is never opened through.
        assert!(Segment::open_or_create(&link, 16, None).is_err());
        let sub = d.join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(Segment::open_or_create(&sub, 16, None).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn group_segment__mode_0660() {
        let d = dir("group");
        let p = d.join("seg");
        let gid = nix::unistd::getgid().as_raw();
        let a = Segment::open_or_create(&p, 4, Some(gid)).unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.mode() & 0o777, 0o660);
        assert_eq!(m.gid(), gid);
        // A user-only opener refuses a group-readable table.
        let e = Segment::open_or_create(&p, 4, None).unwrap_err();
        assert!(matches!(e, SegmentError::Permissions { .. }), "{e}");
        drop(a);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    #[ignore = "needs root (chowns the file to another user)"]
    fn foreign_owner__refused() {
        let d = dir("owner");
        let p = d.join("seg");
        std::fs::write(&p, vec![0u8; 128]).unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
        let e = Segment::open_or_create(&p, 16, None).unwrap_err();
        assert!(matches!(e, SegmentError::Owner { owner: 65534, .. }), "{e}");
        assert!(e.to_string().contains("not by this user"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn default_path__names_user_and_namespace() {
        let p = default_path(Path::new(DEFAULT_DIR)).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let ino = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert!(name.starts_with(&format!("homa-{}-{ino}", uid())), "{name}");
        // This kernel has namespace cookies (5.14+): they are in the name.
        let c = netns_cookie().expect("SO_NETNS_COOKIE");
        assert!(c > 0);
        assert_eq!(netns_cookie(), Some(c), "one namespace, one cookie");
        assert_eq!(name, format!("homa-{}-{ino}-{c}", uid()));
    }
}
