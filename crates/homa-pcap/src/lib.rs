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
    /// the same family.
    pub fn write_udp(
        &mut self,
        time: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        tos: u8,
        payload: &[u8],
    ) -> io::Result<()> {
        let packet = ip_udp_packet(src, dst, tos, payload)?;
        let caplen = (packet.len() as u32).min(self.snaplen);
        self.out.write_all(&(time.as_secs() as u32).to_le_bytes())?;
        let fraction = if self.nanos {
            time.subsec_nanos()
        } else {
            time.subsec_micros()
        };
        self.out.write_all(&fraction.to_le_bytes())?;
        self.out.write_all(&caplen.to_le_bytes())?;
        self.out.write_all(&(packet.len() as u32).to_le_bytes())?;
        self.out.write_all(&packet[..caplen as usize])?;
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

/// Builds an IP packet holding one UDP datagram.
pub fn ip_udp_packet(
    src: SocketAddr,
    dst: SocketAddr,
    tos: u8,
    payload: &[u8],
) -> io::Result<Vec<u8>> {
    let udp_len = 8 + payload.len();
    if udp_len > u16::MAX as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "datagram too long",
        ));
    }
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut out;
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = 20 + udp_len;
            if total > u16::MAX as usize {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "packet too long",
                ));
            }
            out = Vec::with_capacity(total);
            out.extend_from_slice(&[0x45, tos]);
            out.extend_from_slice(&(total as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0, 0x40, 0]); // id 0, DF
            out.extend_from_slice(&[64, 17, 0, 0]); // ttl, UDP, checksum
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            let c = checksum(&[&out[..20]]);
            out[10..12].copy_from_slice(&c.to_be_bytes());
            let mut pseudo = Vec::with_capacity(12);
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, 17]);
            pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
            set_udp_checksum(&mut udp, &pseudo);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out = Vec::with_capacity(40 + udp_len);
            let tc = tos as u32;
            let first = (6u32 << 28) | (tc << 20);
            out.extend_from_slice(&first.to_be_bytes());
            out.extend_from_slice(&(udp_len as u16).to_be_bytes());
            out.extend_from_slice(&[17, 64]); // next header UDP, hop limit
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            let mut pseudo = Vec::with_capacity(40);
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&(udp_len as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 17]);
            set_udp_checksum(&mut udp, &pseudo);
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "source and destination families differ",
            ))
        }
    }
    out.extend_from_slice(&udp);
    Ok(out)
}

fn set_udp_checksum(udp: &mut [u8], pseudo: &[u8]) {
    let mut c = checksum(&[pseudo, udp]);
    if c == 0 {
        c = 0xffff;
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
}

/// The Internet checksum over the concatenation of `parts` (each part
/// padded to an even length only at the very end).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in part.iter() {
            match odd.take() {
                Some(hi) => sum += u16::from_be_bytes([hi, b]) as u32,
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u16::from_be_bytes([hi, 0]) as u32;
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
