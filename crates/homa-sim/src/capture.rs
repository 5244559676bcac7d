//! Packet captures ([`SimConfig::capture`](crate::SimConfig::capture),
//! `--capture`): the Homa packets that selected hosts send and receive,
//! written as a pcap file through `homa-pcap`, the format the runtime's
//! captures use (link type raw IP, real IPv4 and UDP headers, the Homa
//! packet as payload), ready for Wireshark or tshark with
//! `tools/wireshark/homa.lua`.
//!
//! * **Where**: at the captured host's NIC, once per direction. A packet
//!   is recorded as *sent* when the host's NIC starts serialising it onto
//!   the host's uplink, and as *received* when it is handed to the host's
//!   endpoint (its last bit arrived over the downlink). A packet between
//!   two captured hosts appears twice, once at each end. Packets the
//!   simulation ends with still queued in a NIC were never sent and are
//!   not recorded; a packet a switch dropped appears only as sent.
//! * **Addresses** are the ones the endpoints use: host `h` is IPv4
//!   `10.0.0.1 + h` (host 0 is 10.0.0.1, host 255 is 10.0.1.0, ...; its
//!   rack is `h / hosts_per_rack`). UDP ports are the Homa ports (every
//!   host uses [`PORT`](crate::sim::PORT)).
//! * **TOS**: the byte the endpoint asked for with the packet
//!   (`homa_proto::Transmit::tos`, the priority level `<< 5` through the
//!   configured priority map), as the runtime sets it. Switches do not
//!   rewrite it.
//! * **Timestamps** are simulated time since the start of the run (so the
//!   first packets are dated 1970-01-01 00:00:00 UTC), in nanoseconds
//!   (pcap's nanosecond format), rounded down. Records are in time order;
//!   the same configuration and seed give a byte-identical file.
//! * **Bounded**: at most [`CaptureParams::limit`] records are written;
//!   later packets are only counted ([`CaptureStats::beyond_limit`]).
//!   Records go through a 64 KiB buffer straight to the file, so memory
//!   stays constant.
//!
//! The simulator only observes: it records the bytes the endpoints emitted
//! and received, and the capture changes nothing in the run. Without a
//! capture the cost is one `Option` check per packet sent and received by a
//! host.

use std::fs::File;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::time::Duration;

use homa_pcap::PcapWriter;

use crate::config::CaptureParams;
use crate::fabric::Packet;
use crate::sim::host_addr;
use crate::time::{Ps, PS_PER_NS};
use crate::SimError;

/// Longest record kept whole (packets are at most one MTU; GSO batches
/// are split into packets before they reach the NIC).
const SNAPLEN: u32 = 65_535;

/// What a capture wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Records written to the file.
    pub written: u64,
    /// Packets of the captured hosts not written because the limit was
    /// reached.
    pub beyond_limit: u64,
}

/// An open capture file (see the [module docs](self)).
pub(crate) struct Capture {
    writer: Option<PcapWriter<BufWriter<File>>>,
    /// Indexed by host: captured or not.
    selected: Vec<bool>,
    limit: u64,
    stats: CaptureStats,
    /// The first write error, with the file name.
    error: Option<String>,
    path: String,
    /// A packet with its payload, when it carries none (see `Packet::tail`).
    packet: Vec<u8>,
}

impl core::fmt::Debug for Capture {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Capture")
            .field("path", &self.path)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Capture {
    /// Creates (truncates) the file for a network of `hosts` hosts.
    pub(crate) fn create(p: &CaptureParams, hosts: u32) -> Result<Capture, SimError> {
        let path = p.path.display().to_string();
        let fail = |e: std::io::Error| SimError::Capture(format!("{path}: {e}"));
        let file = BufWriter::with_capacity(1 << 16, File::create(&p.path).map_err(fail)?);
        let writer = PcapWriter::new_nanos(file, SNAPLEN).map_err(fail)?;
        let mut selected = vec![false; hosts as usize];
        for &h in &p.hosts {
            if let Some(s) = selected.get_mut(h as usize) {
                *s = true;
            }
        }
        Ok(Capture {
            writer: Some(writer),
            selected,
            limit: p.limit,
            stats: CaptureStats::default(),
            error: None,
            path,
            packet: Vec::new(),
        })
    }

    /// Host `pkt.src`'s NIC starts sending `pkt` at `now`.
    pub(crate) fn sent(&mut self, now: Ps, pkt: &Packet) {
        if self.selected[pkt.src as usize] {
            self.write(now, pkt);
        }
    }

    /// `pkt` is handed to host `pkt.dst`'s endpoint at `now`.
    pub(crate) fn received(&mut self, now: Ps, pkt: &Packet) {
        if self.selected[pkt.dst as usize] {
            self.write(now, pkt);
        }
    }

    fn write(&mut self, now: Ps, pkt: &Packet) {
        if self.stats.written >= self.limit {
            self.stats.beyond_limit += 1;
            return;
        }
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let src = SocketAddr::new(host_addr(pkt.src).ip(), pkt.sport);
        let dst = SocketAddr::new(host_addr(pkt.dst).ip(), pkt.dport);
        let time = Duration::from_nanos(now / PS_PER_NS);
        // The payload a packet stands for but does not carry is zeros.
        let bytes = if pkt.tail == 0 {
            pkt.header()
        } else {
            self.packet.clear();
            self.packet.extend_from_slice(pkt.header());
            self.packet
                .resize(pkt.header().len() + pkt.tail as usize, 0);
            &self.packet[..]
        };
        match w.write_udp(time, src, dst, pkt.tos, bytes) {
            Ok(()) => self.stats.written += 1,
            Err(e) => {
                self.error = Some(format!("{}: {e}", self.path));
                self.writer = None;
            }
        }
    }

    /// Flushes the file; the first error of the whole capture, if any.
    pub(crate) fn finish(&mut self) -> Result<(), SimError> {
        if let Some(w) = self.writer.take() {
            if let Err(e) = w.into_inner() {
                self.error.get_or_insert(format!("{}: {e}", self.path));
            }
        }
        match &self.error {
            Some(e) => Err(SimError::Capture(e.clone())),
            None => Ok(()),
        }
    }

    /// Records written and not written so far.
    pub(crate) fn stats(&self) -> CaptureStats {
        self.stats
    }
}
