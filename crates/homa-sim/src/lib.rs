//! # homa-sim
//!
//! A deterministic discrete-event datacenter simulator that drives the real
//! Homa protocol code: every host runs a [`homa_proto::Endpoint`], the same
//! state machine the UDP runtime runs, and the simulator only moves bytes
//! and time between them: NICs, links, switches with strict-priority queues,
//! and applications that generate the paper's workloads.
//!
//! It reproduces the setup of the Homa SIGCOMM 2018 simulations (defaults of
//! [`SimConfig`]: 144 hosts in 9 racks, 10/40 Gbit/s links, 4 aggregation
//! switches with packet spraying, 0.25 µs switches, 0.5 µs host delays,
//! workloads W1–W5 at a Poisson load) and reports slowdown by message size,
//! the tail of the shortest messages, utilisation and switch buffer
//! occupancy ([`Results`]), as a table, CSV or SVG plot ([`report`]).
//!
//! The same configuration and seed always give the same results, byte for
//! byte: there is no wall clock, no OS randomness and no iteration over
//! unordered containers on the simulated path.
//!
//! What it does not do: no protocol logic (grants, priorities, pacing,
//! retransmission are all `homa-proto`'s), no TCP, no link failures, no
//! host CPU model beyond fixed delays.
//!
//! ```
//! use core::time::Duration;
//! use homa_sim::{SimConfig, Simulator};
//!
//! let mut cfg = SimConfig::default();
//! cfg.topology.racks = 2;
//! cfg.topology.hosts_per_rack = 4;
//! cfg.traffic.load = 0.5;
//! cfg.traffic.workload = "w2".parse().unwrap();
//! cfg.run.duration = Duration::from_micros(200);
//! cfg.run.warmup = Duration::from_micros(20);
//! let results = Simulator::new(&cfg).unwrap().run(|_| {}).unwrap();
//! assert!(results.messages.completed > 0);
//! assert!(results.conservation.balanced());
//! ```
//!
//! Modules: [`config`] (what to simulate), [`sim`] (hosts, applications,
//! event loop), `fabric` (internal: ports, switches, routing), [`capture`]
//! (pcap files of chosen hosts' packets),
//! [`analytic`] (unloaded times), [`paper`] (the paper's load and slowdown
//! definitions), `ideal` (internal: the reference
//! schedules results are compared with), [`results`] (statistics), [`report`]
//! (table, CSV), [`svg`] (plots), [`queue`] (the event queue), [`time`].

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod analytic;
pub mod capture;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
mod fabric;
mod ideal;
pub mod paper;
pub mod pdes;
pub mod queue;
pub mod report;
pub mod results;
pub mod sim;
pub mod svg;
pub mod time;

pub use capture::CaptureStats;
pub use config::{
    CaptureParams, Cutoffs, HostParams, LoadModel, Mode, NicMode, Profile, ProtoParams, RunParams,
    SimConfig, Slowdown, Topology, Traffic,
};
pub use results::Results;
pub use sim::{run, EventCounts, Progress, Simulator};

/// Errors setting up or running a simulation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The configuration is inconsistent.
    #[error("invalid simulation configuration: {0}")]
    Config(&'static str),
    /// homa-proto rejected the endpoint configuration.
    #[error(transparent)]
    Endpoint(homa_proto::config::ConfigError),
    /// homa-proto refused a command while setting up.
    #[error(transparent)]
    Proto(homa_proto::Error),
    /// The workload could not be built.
    #[error(transparent)]
    Workload(homa_workload::Error),
    /// The packet capture file could not be created or written.
    #[error("packet capture {0}")]
    Capture(String),
    /// A simulator runs once.
    #[error("this simulator has already run")]
    AlreadyRan,
}

impl From<SimError> for std::io::Error {
    fn from(e: SimError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}
