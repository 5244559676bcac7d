//! # homa-sys
//!
//! Every Linux system call of homa-rs, wrapped once as a safe function,
//! built on the maintained `nix` crate (which covers each call and control
//! message Homa needs, unlike `rustix`'s ancillary-data support and
//! `quinn-udp`, which overwrites the DSCP bits with ECN).
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
//!   kernel: effective user, signals, network namespaces, CPU affinity.
//!
//! What is specific to Homa stays with its owners: which TOS byte a packet
//! gets and when the socket option changes (`homa-transport`'s sticky TOS),
//! when GSO is abandoned, how a GRO batch is cut into packets.
//!
//! ## Unsafe code
//!
//! One site, in [`process::command_in_netns`]: `std`'s
//! `CommandExt::pre_exec`, an `unsafe fn` because the hook runs between
//! `fork` and `exec`. The hook only calls `setns` and `prctl`, which are
//! async-signal-safe. Nothing else in homa-rs uses `unsafe` (the other
//! crates forbid it), except `homa-cli` sites listed in its own docs.

#![warn(missing_docs)]

pub mod process;
pub mod udp;
pub mod wait;
