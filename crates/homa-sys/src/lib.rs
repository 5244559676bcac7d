//! # homa-sys
//!
//! Every Linux system call of homa-rs, wrapped once as a safe function,
//! built on the maintained `nix` crate (which covers each call and control
//! message Homa needs, unlike `rustix`'s ancillary-data support and
//! `quinn-udp`, which overwrites the DSCP bits with ECN) and, for the
//! clock read on every busy-poll iteration, `rustix` (inlined, infallible).
//!
//! * [`udp`]: the datagram socket the way Homa uses it: buffer sizes,
//!   the TOS / traffic-class policy (a socket option, or a control message
//!   per send), GSO sends (`UDP_SEGMENT`) with the fallback to one datagram
//!   per packet, GRO receives (`UDP_GRO`) in `recvmsg`/`recvmmsg` batches,
//!   the error queue (`IP_RECVERR`). The runtime (`homa-transport`) and the
//!   baselines of `homa compare` use the same functions, so the floor
//!   measures the same code.
//! * [`wait`]: `eventfd`, `timerfd` and `ppoll`, the monotonic clock and
//!   random seeds.
//! * [`futex`]: sleeping until a word of (possibly shared) memory
//!   changes, and waking the sleepers: the host table's waiter.
//! * [`shm`]: the host table's shared-memory segment under `/dev/shm`
//!   (created on demand, owner, permissions and size checked, mapped
//!   shared).
//! * [`netif`]: the interfaces that are up, their addresses and MTUs
//!   (how the runtime sizes its packets from the path).
//! * [`process`]: what the network labs and the benchmarks ask of the
//!   kernel: effective user, signals, network namespaces, CPU affinity,
//!   CPU time (per thread, per process, of children).
//!
//! What is specific to Homa stays with its owners: which TOS byte a packet
//! gets and when the socket option changes (`homa-transport`'s sticky TOS),
//! when GSO is abandoned, how a GRO batch is cut into packets.
//!
//! ## Unsafe code
//!
//! `unsafe` remains where no maintained crate offers a safe call, each
//! site with its justification:
//!
//! * [`udp`]'s receive hot path, `recvmsg`/`recvmmsg` with headers kept
//!   across calls and the parsing of their control messages
//!   (`udp/mmsg.rs`): nix's `recvmmsg` must allocate and zero its headers
//!   on every call, and its `recvmsg` converts every `EAGAIN` of a
//!   busy-polling thread through a large match (the repository's
//!   `docs/performance.md` has what each cost);
//! * [`udp`]'s sends with control messages (TOS, `UDP_SEGMENT`) and the
//!   GSO fallback's `sendmmsg` (`udp/mmsg.rs`): nix's `sendmsg` allocates
//!   its control buffer on every call and its `sendmmsg` its headers,
//!   addresses and slices (14 allocations for a 100-packet fallback send
//!   and two sends with control messages); here they live on the stack;
//! * [`process::command_in_netns`] and [`process::nice_on_exec`]: `std`'s
//!   `CommandExt::pre_exec` is an `unsafe fn` (the hook runs between fork
//!   and exec; these only call async-signal-safe functions);
//! * [`process::tune_malloc`]: `mallopt`, which no crate wraps;
//! * [`netif`]: the `SIOCGIFMTU` ioctl (nix wraps `getifaddrs` but not
//!   this request; rustix neither);
//! * [`futex`]: the futex word is the low half of a 64-bit atomic word
//!   (one pointer cast; only the kernel reads it as 32 bits);
//! * [`shm`]: `mmap`/`munmap` of the host table (rustix's are `unsafe`:
//!   the mapping is handed out as `&[AtomicU64]`, sized and aligned by
//!   construction).
//!
//! Outside this crate: `homa-transport` and `homa-cli`'s load generator
//! register descriptors with tokio's reactor
//! (`AsyncFd::register_with_interest`, `unsafe` by tokio's API); `homa-capi`
//! is the C boundary itself (raw pointers from C, each entry point checks
//! them); two tests (`homa-transport/tests/allocations.rs` and this crate's
//! own) count allocations with a `GlobalAlloc` wrapper. The other crates
//! forbid `unsafe` code.

#![warn(missing_docs)]

pub mod futex;
pub mod netif;
pub mod process;
pub mod shm;
pub mod udp;
pub mod wait;

/// Test support: a global allocator that counts the allocations of each
/// thread, so a test can check that a call allocates nothing.
#[cfg(test)]
pub(crate) mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Counting;

    thread_local! {
        static COUNT: Cell<u64> = const { Cell::new(0) };
    }

    fn note() {
        // (Never fails: the counter has no destructor.)
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }

    // SAFETY: every call is forwarded unchanged to the system allocator.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note();
            // SAFETY: forwarded unchanged.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded unchanged.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
            note();
            // SAFETY: forwarded unchanged.
            unsafe { System.realloc(ptr, layout, size) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// Allocations the calling thread made while running `f`.
    pub(crate) fn during(f: impl FnOnce()) -> u64 {
        let before = COUNT.with(Cell::get);
        f();
        COUNT.with(Cell::get) - before
    }
}
