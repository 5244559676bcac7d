//! # homa-pcap
//!
//! Writes Homa-over-UDP traffic as pcap files that Wireshark and tshark
//! open directly: link type "raw IP" (101), each record a real IPv4 or IPv6
//! header carrying the packet's TOS / traffic-class byte (the Homa priority
//! in its top three bits), a UDP header with a correct checksum, and the
//! Homa packet. The runtime (opt-in) and the simulator both write through
//! this crate; `tools/wireshark/homa.lua` dissects the Homa part.
//!
//! This crate does not capture anything itself: callers hand it the
//! datagrams they send and receive. [`tshark`] decodes a capture with the
//! shipped dissector (what the capture tests of every crate use).

#![warn(missing_docs)]
#![warn(unreachable_pub)]

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// pcap link type for raw IPv4/IPv6 packets.
pub const LINKTYPE_RAW: u32 = 101;

/// Writes a pcap stream.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
    records: u64,
    /// Timestamps in nanoseconds (else microseconds).
    nanos: bool,
}

impl<W: Write> PcapWriter<W> {
    /// Starts a pcap stream (microsecond timestamps) on `out`. Packets
    /// longer than `snaplen` bytes are truncated in the file (their original
    /// length is kept in the record header).
    pub fn new(out: W, snaplen: u32) -> io::Result<PcapWriter<W>> {
        PcapWriter::start(out, snaplen, false)
    }

    /// Like [`new`](Self::new), with nanosecond timestamps (the pcap magic
    /// `0xa1b23c4d`, which Wireshark and tshark read): for the simulator,
    /// whose packets on a 10 Gbit/s link are about a microsecond apart.
    pub fn new_nanos(out: W, snaplen: u32) -> io::Result<PcapWriter<W>> {
        PcapWriter::start(out, snaplen, true)
    }

    fn start(mut out: W, snaplen: u32, nanos: bool) -> io::Result<PcapWriter<W>> {
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        out.write_all(&magic.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?; // version major
        out.write_all(&4u16.to_le_bytes())?; // version minor
        out.write_all(&0i32.to_le_bytes())?; // thiszone
        out.write_all(&0u32.to_le_bytes())?; // sigfigs
        out.write_all(&snaplen.to_le_bytes())?;
        out.write_all(&LINKTYPE_RAW.to_le_bytes())?;
        Ok(PcapWriter {
            out,
            snaplen,
            records: 0,
            nanos,
        })
    }

    /// Records one UDP datagram from `src` to `dst` carrying `payload`,
    /// with IP TOS / traffic class `tos`, at `time` (since any epoch, e.g.
    /// the Unix epoch or the start of a simulation). `src` and `dst` must be
    /// the same family. Allocates nothing: the headers are built on the
    /// stack and the payload is written from the caller's buffer.
    pub fn write_udp(
        &mut self,
        time: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        tos: u8,
        payload: &[u8],
    ) -> io::Result<()> {
        let (header, header_len) = ip_udp_header(src, dst, tos, payload)?;
        let len = header_len + payload.len();
        let caplen = (len as u32).min(self.snaplen) as usize;
        let mut record = [0u8; 16];
        record[..4].copy_from_slice(&(time.as_secs() as u32).to_le_bytes());
        let fraction = if self.nanos {
            time.subsec_nanos()
        } else {
            time.subsec_micros()
        };
        record[4..8].copy_from_slice(&fraction.to_le_bytes());
        record[8..12].copy_from_slice(&(caplen as u32).to_le_bytes());
        record[12..16].copy_from_slice(&(len as u32).to_le_bytes());
        self.out.write_all(&record)?;
        let kept = caplen.min(header_len);
        self.out.write_all(&header[..kept])?;
        self.out.write_all(&payload[..caplen - kept])?;
        self.records += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Longest IP and UDP header: IPv6 (40 bytes) plus UDP (8).
const MAX_HEADER: usize = 48;

/// Builds an IP packet holding one UDP datagram.
pub fn ip_udp_packet(
    src: SocketAddr,
    dst: SocketAddr,
    tos: u8,
    payload: &[u8],
) -> io::Result<Vec<u8>> {
    let (header, len) = ip_udp_header(src, dst, tos, payload)?;
    let mut out = Vec::with_capacity(len + payload.len());
    out.extend_from_slice(&header[..len]);
    out.extend_from_slice(payload);
    Ok(out)
}

/// The IP and UDP headers (checksums included) of a datagram carrying
/// `payload`: the header bytes and how many of them are used.
fn ip_udp_header(
    src: SocketAddr,
    dst: SocketAddr,
    tos: u8,
    payload: &[u8],
) -> io::Result<([u8; MAX_HEADER], usize)> {
    let too_long = || io::Error::new(io::ErrorKind::InvalidInput, "datagram too long");
    let udp_len = u16::try_from(8 + payload.len()).map_err(|_| too_long())?;
    let mut h = [0u8; MAX_HEADER];
    let ip_len = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = u16::try_from(20 + usize::from(udp_len))
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet too long"))?;
            h[0] = 0x45;
            h[1] = tos;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[4..8].copy_from_slice(&[0, 0, 0x40, 0]); // id 0, DF
            h[8..12].copy_from_slice(&[64, 17, 0, 0]); // ttl, UDP, checksum
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let c = checksum(&[&h[..20]]);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            20
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let first = (6u32 << 28) | (u32::from(tos) << 20);
            h[..4].copy_from_slice(&first.to_be_bytes());
            h[4..6].copy_from_slice(&udp_len.to_be_bytes());
            h[6..8].copy_from_slice(&[17, 64]); // next header UDP, hop limit
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            40
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "source and destination families differ",
            ))
        }
    };
    let (ip, udp) = h.split_at_mut(ip_len);
    udp[..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    // The pseudo-header: addresses, protocol and UDP length (the IPv6
    // form's 32-bit length and zero padding sum to the same value).
    let addrs = if ip_len == 20 {
        &ip[12..20]
    } else {
        &ip[8..40]
    };
    let mut c = checksum(&[addrs, &[0, 17], &udp_len.to_be_bytes(), &udp[..8], payload]);
    if c == 0 {
        c = 0xffff;
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    Ok((h, ip_len + 8))
}

/// The Internet checksum over the concatenation of `parts` (each part
/// padded to an even length only at the very end).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    let mut odd: Option<u8> = None;
    for &part in parts {
        let mut rest = part;
        if let (Some(hi), Some((&lo, tail))) = (odd, rest.split_first()) {
            sum += u64::from(u16::from_be_bytes([hi, lo]));
            odd = None;
            rest = tail;
        }
        let words = rest.chunks_exact(2);
        if let [last] = words.remainder() {
            odd = Some(*last);
        }
        sum += words
            .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
            .sum::<u64>();
    }
    if let Some(hi) = odd {
        sum += u64::from(u16::from_be_bytes([hi, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub mod tshark {
    //! Decoding captures with `tshark` and the Homa dissector shipped in
    //! `tools/wireshark/homa.lua`.

    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Path of the dissector in the repository.
    pub fn dissector() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/wireshark/homa.lua")
    }

    /// True if a working `tshark` is on the `PATH`.
    pub fn available() -> bool {
        Command::new("tshark")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Decodes `pcap` with the dissector, keeping the packets that match the
    /// display `filter` (all if `None`), and returns one row per packet with
    /// the values of `fields` (tshark `-e` names; empty when absent). Fields
    /// holding several values are joined with commas and so split into
    /// further columns. Errors carry tshark's message.
    pub fn fields(
        pcap: &Path,
        filter: Option<&str>,
        fields: &[&str],
    ) -> Result<Vec<Vec<String>>, String> {
        let mut cmd = Command::new("tshark");
        cmd.arg("-X")
            .arg(format!("lua_script:{}", dissector().display()))
            .arg("-r")
            .arg(pcap);
        if let Some(f) = filter {
            cmd.args(["-Y", f]);
        }
        cmd.args(["-T", "fields", "-E", "separator=,"]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let out = cmd.output().map_err(|e| format!("running tshark: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_known_ipv4_header() {
        // Example header from RFC 1071 style references: checksum field 0
        // gives 0xb861 for this header.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&[&h]), 0xb861);
    }

    #[test]
    fn checksum_does_not_depend_on_how_the_bytes_are_split() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        let whole = checksum(&[&bytes]);
        for cuts in [
            [0, 1, 2],
            [1, 2, 3],
            [3, 3, 1000],
            [7, 500, 501],
            [0, 0, 1001],
        ] {
            let parts = [
                &bytes[..cuts[0]],
                &bytes[cuts[0]..cuts[1]],
                &bytes[cuts[1]..cuts[2]],
                &bytes[cuts[2]..],
            ];
            assert_eq!(checksum(&parts), whole, "{cuts:?}");
        }
    }

    #[test]
    fn write_udp_records_the_packet_cut_at_snaplen() {
        let (src, dst) = ("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap());
        let payload: Vec<u8> = (0..100u8).collect();
        let packet = ip_udp_packet(src, dst, 0x20, &payload).unwrap();
        for snaplen in [10, 28, 30, 65535] {
            let mut w = PcapWriter::new(Vec::new(), snaplen).unwrap();
            w.write_udp(Duration::ZERO, src, dst, 0x20, &payload)
                .unwrap();
            let b = w.into_inner().unwrap();
            let kept = packet.len().min(snaplen as usize);
            assert_eq!(&b[32..36], &(kept as u32).to_le_bytes(), "caplen");
            assert_eq!(&b[36..40], &(packet.len() as u32).to_le_bytes());
            assert_eq!(&b[40..], &packet[..kept], "snaplen {snaplen}");
        }
    }

    #[test]
    fn ipv4_packet_verifies() {
        let p = ip_udp_packet(
            "10.0.0.1:40000".parse().unwrap(),
            "10.0.0.2:100".parse().unwrap(),
            7 << 5,
            b"hello",
        )
        .unwrap();
        assert_eq!(p.len(), 20 + 8 + 5);
        assert_eq!(p[1], 0xe0);
        assert_eq!(checksum(&[&p[..20]]), 0, "header checksum verifies");
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, 17, 0, 13]);
        assert_eq!(checksum(&[&pseudo, &p[20..]]), 0, "udp checksum verifies");
    }

    #[test]
    fn ipv6_packet_carries_traffic_class() {
        let p = ip_udp_packet(
            "[fd00::1]:40000".parse().unwrap(),
            "[fd00::2]:100".parse().unwrap(),
            3 << 5,
            b"x",
        )
        .unwrap();
        let first = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
        assert_eq!(first >> 28, 6);
        assert_eq!((first >> 20) & 0xff, 3 << 5);
        assert_eq!(p.len(), 40 + 9);
    }

    #[test]
    fn writer_header_and_records() {
        let mut w = PcapWriter::new(Vec::new(), 65535).unwrap();
        w.write_udp(
            Duration::from_micros(1_500_001),
            "10.0.0.1:1".parse().unwrap(),
            "10.0.0.2:2".parse().unwrap(),
            0,
            &[1, 2, 3],
        )
        .unwrap();
        assert_eq!(w.records(), 1);
        let b = w.into_inner().unwrap();
        assert_eq!(&b[..4], &0xa1b2c3d4u32.to_le_bytes());
        assert_eq!(&b[20..24], &LINKTYPE_RAW.to_le_bytes());
        assert_eq!(&b[24..28], &1u32.to_le_bytes(), "seconds");
        assert_eq!(&b[28..32], &500_001u32.to_le_bytes(), "micros");
        assert_eq!(b.len(), 24 + 16 + 20 + 8 + 3);
    }

    #[test]
    fn nanosecond_writer_keeps_nanoseconds() {
        let mut w = PcapWriter::new_nanos(Vec::new(), 65535).unwrap();
        w.write_udp(
            Duration::from_nanos(2_000_000_123),
            "10.0.0.1:1".parse().unwrap(),
            "10.0.0.2:2".parse().unwrap(),
            0,
            &[1],
        )
        .unwrap();
        let b = w.into_inner().unwrap();
        assert_eq!(&b[..4], &0xa1b23c4du32.to_le_bytes());
        assert_eq!(&b[24..28], &2u32.to_le_bytes(), "seconds");
        assert_eq!(&b[28..32], &123u32.to_le_bytes(), "nanoseconds");
    }
}
