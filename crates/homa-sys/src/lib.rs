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
//!   on every call (which doubled the instructions of a small round trip),
//!   and its `recvmsg` converts every `EAGAIN` of a busy-polling thread
//!   through a large match (Homa's P50 rose by 2 µs in `homa compare`);
//! * [`process::command_in_netns`] and [`process::nice_on_exec`]: `std`'s
//!   `CommandExt::pre_exec` is an `unsafe fn` (the hook runs between fork
//!   and exec; these only call async-signal-safe functions);
//! * [`process::tune_malloc`]: `mallopt`, which no crate wraps.
//!
//! Outside this crate: `homa-transport` registers descriptors with tokio's
//! reactor (`AsyncFd::register_with_interest`, `unsafe` by tokio's API).
//! The other crates forbid `unsafe` code, except `homa-cli`'s load
//! generator, rack and allocator tuning, which can move to
//! [`wait::Timer`], [`udp::TosOption`], [`udp::set_gso_segment`],
//! [`process::nice_on_exec`], [`process::children_cpu_time`] and
//! [`process::tune_malloc`].

#![warn(missing_docs)]

pub mod process;
pub mod udp;
pub mod wait;
