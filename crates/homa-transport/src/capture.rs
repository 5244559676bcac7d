//! Opt-in packet captures ([`Config::capture`](crate::Config::capture)):
//! every datagram the socket sends and receives, written as a pcap file
//! through `homa-pcap` (link type raw IP, real IPv4/IPv6 and UDP headers
//! with the TOS / traffic-class byte, the Homa packet as payload), ready
//! for Wireshark or tshark with `tools/wireshark/homa.lua`.
//!
//! * Addresses are the real ones: the peer's as the kernel reported or was
//!   given it (IPv4-mapped addresses as IPv4), and the local one as bound,
//!   or, for a socket bound to a wildcard address, the destination address
//!   of each received datagram (`IP_PKTINFO` / `IPV6_RECVPKTINFO`, asked
//!   for only while capturing) and the source address the kernel's routing
//!   picks for each destination (looked up once per destination address).
//! * GSO sends and GRO batches are written as the individual packets that
//!   travel on the wire; only what the kernel accepted is written.
//! * Sent packets carry the TOS byte the runtime asked for; received ones
//!   the byte the kernel reported (0 if it did not).
//! * Records are buffered (64 KiB); the file is complete once the socket
//!   is closed (or dropped). A write error stops the capture (counted in
//!   [`TransportStats::capture_errors`](crate::TransportStats)); the socket
//!   carries on.
//!
//! Capturing costs a copy and a buffered write per packet, under the
//! socket's lock.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use homa_pcap::PcapWriter;

use crate::stats::TransportStats;

/// The longest record kept whole (a GRO batch is split into its packets,
/// so no record exceeds one datagram).
const SNAPLEN: u32 = 1 << 18;

/// Most destination addresses whose route source is remembered.
const MAX_SOURCES: usize = 4096;

/// An open capture file and what it needs to name addresses.
pub(crate) struct Capture {
    writer: Option<PcapWriter<BufWriter<File>>>,
    /// The socket's bound address (the IP may be unspecified).
    local: SocketAddr,
    /// Source address the kernel picks per destination address, for a
    /// socket bound to a wildcard address (at most `MAX_SOURCES`).
    sources: HashMap<IpAddr, IpAddr>,
}

impl Capture {
    /// Creates (truncates) the file at `path` for a socket bound to `local`.
    pub(crate) fn create(path: &Path, local: SocketAddr) -> io::Result<Capture> {
        let file = BufWriter::with_capacity(1 << 16, File::create(path)?);
        Ok(Capture {
            writer: Some(PcapWriter::new(file, SNAPLEN)?),
            local,
            sources: HashMap::new(),
        })
    }

    /// True if the local address of received datagrams must come from the
    /// kernel (`IP_PKTINFO`): the socket is bound to a wildcard address.
    pub(crate) fn needs_pktinfo(&self) -> bool {
        self.local.ip().is_unspecified()
    }

    /// Records packets sent to `dest` (normalized): the transmit `data`,
    /// cut into `segment`-byte packets when it is a GSO batch, of which
    /// packets `sent` (a range of indexes) left.
    pub(crate) fn sent(
        &mut self,
        stats: &mut TransportStats,
        dest: SocketAddr,
        tos: u8,
        (data, segment): (&[u8], Option<usize>),
        sent: std::ops::Range<usize>,
    ) {
        if self.writer.is_none() {
            return;
        }
        let src = SocketAddr::new(self.source_for(dest.ip()), self.local.port());
        for (i, packet) in packets(data, segment).enumerate() {
            if sent.contains(&i) {
                self.write(stats, src, dest, tos, packet);
            }
        }
    }

    /// Records packets received from `src` (normalized) at local address
    /// `dst_ip` (from `IP_PKTINFO`, if reported).
    pub(crate) fn received(
        &mut self,
        stats: &mut TransportStats,
        src: SocketAddr,
        dst_ip: Option<IpAddr>,
        tos: Option<u8>,
        data: &[u8],
        segment: Option<usize>,
    ) {
        if self.writer.is_none() {
            return;
        }
        let ip = dst_ip
            .map(|ip| ip.to_canonical())
            .filter(|ip| ip.is_ipv4() == src.is_ipv4())
            .unwrap_or_else(|| self.local_ip_for(src.ip()));
        let dst = SocketAddr::new(ip, self.local.port());
        for packet in packets(data, segment) {
            self.write(stats, src, dst, tos.unwrap_or(0), packet);
        }
    }

    /// Writes the buffered records to the file and ends the capture (the
    /// socket is closing).
    pub(crate) fn finish(&mut self, stats: &mut TransportStats) {
        if let Some(w) = self.writer.take() {
            if w.into_inner().is_err() {
                stats.capture_errors += 1;
            }
        }
    }

    fn write(
        &mut self,
        stats: &mut TransportStats,
        src: SocketAddr,
        dst: SocketAddr,
        tos: u8,
        packet: &[u8],
    ) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        match w.write_udp(time, src, dst, tos, packet) {
            Ok(()) => stats.packets_captured += 1,
            Err(_) => {
                stats.capture_errors += 1;
                self.writer = None;
            }
        }
    }

    /// The local address packets to `dest` leave from.
    fn source_for(&mut self, dest: IpAddr) -> IpAddr {
        if !self.local.ip().is_unspecified() && self.local.ip().is_ipv4() == dest.is_ipv4() {
            return self.local.ip();
        }
        if let Some(&ip) = self.sources.get(&dest) {
            return ip;
        }
        if self.sources.len() >= MAX_SOURCES {
            // Peers choose their addresses: start over rather than grow.
            self.sources.clear();
        }
        let ip = route_source(dest).unwrap_or_else(|| unspecified(dest));
        self.sources.insert(dest, ip);
        ip
    }

    /// The local address of a datagram from `peer` when the kernel did not
    /// report it.
    fn local_ip_for(&mut self, peer: IpAddr) -> IpAddr {
        self.source_for(peer)
    }
}

/// The packets of a transmit or a receive: `data` cut into `segment`-byte
/// pieces (the last may be shorter), or whole.
fn packets(data: &[u8], segment: Option<usize>) -> std::slice::Chunks<'_, u8> {
    let seg = segment.filter(|&s| s > 0).unwrap_or(data.len().max(1));
    data.chunks(seg)
}

fn unspecified(like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// The source address the kernel's routing picks for `dest`: what a UDP
/// socket connected to it is bound to (no packet is sent).
fn route_source(dest: IpAddr) -> Option<IpAddr> {
    let probe = UdpSocket::bind(SocketAddr::new(unspecified(dest), 0)).ok()?;
    probe.connect(SocketAddr::new(dest, 9)).ok()?;
    Some(probe.local_addr().ok()?.ip())
}
