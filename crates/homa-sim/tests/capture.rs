//! Packet captures from the simulator: the file is valid pcap with valid
//! IPv4/UDP headers around parseable Homa packets, it holds exactly what
//! the captured host's endpoint sent and received, it is deterministic,
//! bounded, changes nothing in the run, and tshark's Lua dissector reads
//! it (skipped, with a message, when tshark is not installed).

#![allow(non_snake_case)]

use core::time::Duration;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use homa_pcap::tshark;
use homa_proto::wire::{Body, PacketType, Repr};
use homa_sim::sim::{host_addr, PORT};
use homa_sim::{report, CaptureParams, SimConfig, SimError, Simulator};

/// A capture file in the temp directory, removed when dropped (kept with
/// `HOMA_KEEP_PCAP` set).
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!(
            "homa-sim-capture-{}-{name}.pcap",
            std::process::id()
        )))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if std::env::var_os("HOMA_KEEP_PCAP").is_none() {
            let _ = std::fs::remove_file(&self.0);
        } else {
            eprintln!("capture kept at {}", self.0.display());
        }
    }
}

/// One pcap record, decoded down to the Homa packet.
#[derive(Debug)]
struct Record {
    nanos: u64,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    tos: u8,
    homa: Vec<u8>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Internet checksum over `parts` (0 when a header with its checksum
/// verifies).
fn checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A minimal pcap reader: nanosecond format, raw IP link type, every
/// record a whole IPv4/UDP packet whose lengths and checksums verify.
fn read_pcap(bytes: &[u8]) -> Vec<Record> {
    assert!(bytes.len() >= 24, "no pcap header");
    assert_eq!(le32(bytes, 0), 0xa1b2_3c4d, "nanosecond pcap magic");
    assert_eq!(&bytes[4..8], &[2, 0, 4, 0], "version 2.4");
    assert_eq!(le32(bytes, 20), 101, "link type raw IP");
    let snaplen = le32(bytes, 16) as usize;
    let mut at = 24;
    let mut out = Vec::new();
    while at < bytes.len() {
        assert!(at + 16 <= bytes.len(), "truncated record header");
        let secs = u64::from(le32(bytes, at));
        let frac = u64::from(le32(bytes, at + 4));
        assert!(frac < 1_000_000_000);
        let caplen = le32(bytes, at + 8) as usize;
        let len = le32(bytes, at + 12) as usize;
        assert_eq!(caplen, len, "nothing truncated");
        assert!(caplen <= snaplen);
        at += 16;
        let p = &bytes[at..at + caplen];
        at += caplen;
        assert_eq!(p[0], 0x45, "IPv4, 20-byte header");
        assert_eq!(usize::from(be16(p, 2)), p.len(), "IP total length");
        assert_eq!(p[9], 17, "UDP");
        assert_eq!(checksum(&[&p[..20]]), 0, "IP header checksum");
        let udp = &p[20..];
        assert_eq!(usize::from(be16(udp, 4)), udp.len(), "UDP length");
        let mut pseudo = p[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        assert_eq!(checksum(&[&pseudo, udp]), 0, "UDP checksum");
        out.push(Record {
            nanos: secs * 1_000_000_000 + frac,
            src: Ipv4Addr::new(p[12], p[13], p[14], p[15]),
            dst: Ipv4Addr::new(p[16], p[17], p[18], p[19]),
            sport: be16(udp, 0),
            dport: be16(udp, 2),
            tos: p[1],
            homa: udp[8..].to_vec(),
        });
    }
    out
}

fn ip(h: u32) -> Ipv4Addr {
    match host_addr(h).ip() {
        std::net::IpAddr::V4(v4) => v4,
        v6 => panic!("{v6}"),
    }
}

/// 2 racks x 2 hosts, no Poisson traffic: host 0 sends 100 KB to host 1
/// (unscheduled part, then grants) and 1 byte to host 3 (across the
/// aggregation switch); host 2 sends 30 KB to host 0. RPC mode, so every
/// request is answered by a response of the same size.
fn few_messages(capture: &TempFile) -> (Simulator, SimConfig) {
    let mut cfg = SimConfig::default();
    cfg.topology.racks = 2;
    cfg.topology.hosts_per_rack = 2;
    cfg.topology.aggs = 1;
    cfg.traffic.load = 0.0;
    cfg.traffic.mode = homa_sim::Mode::Rpc;
    cfg.run.duration = Duration::ZERO;
    cfg.run.warmup = Duration::ZERO;
    cfg.run.drain = Duration::from_millis(10);
    cfg.capture = Some(CaptureParams::new(&capture.0));
    let mut sim = Simulator::new(&cfg).unwrap();
    sim.add_message(0, 0, 1, 100_000);
    sim.add_message(1_000_000, 0, 3, 1);
    sim.add_message(2_000_000, 2, 0, 30_000);
    (sim, cfg)
}

#[test]
fn capture__holds_exactly_what_host_0_sent_and_received() {
    let file = TempFile::new("exact");
    let (mut sim, _) = few_messages(&file);
    let r = sim.run(|_| {}).unwrap();
    assert_eq!(r.messages.completed, 3, "{}", report::table(&r));
    assert_eq!(r.protocol_counters.data_retransmitted, 0);
    let recs = read_pcap(&std::fs::read(&file.0).unwrap());
    let stats = sim.capture_stats().unwrap();
    assert_eq!(stats.written, recs.len() as u64);
    assert_eq!(stats.beyond_limit, 0);

    let me = ip(0);
    let hosts: Vec<Ipv4Addr> = (0..4).map(ip).collect();
    assert_eq!(me, Ipv4Addr::new(10, 0, 0, 1));
    let (mut sent, mut received) = ([0u64; 9], [0u64; 9]);
    let mut last = 0;
    let mut request_bytes = 0u64;
    for rec in &recs {
        assert!(rec.nanos >= last, "records in time order");
        last = rec.nanos;
        assert!(
            hosts.contains(&rec.src) && hosts.contains(&rec.dst),
            "{rec:?}"
        );
        assert_ne!(rec.src, rec.dst);
        assert_eq!((rec.sport, rec.dport), (PORT, PORT));
        // The Homa packet parses, its ports are the UDP ports.
        let (repr, payload) = Repr::parse_with_payload(&rec.homa)
            .unwrap_or_else(|e| panic!("{e:?}: {:02x?}", &rec.homa));
        assert_eq!((repr.sport, repr.dport), (rec.sport, rec.dport));
        let ty = PacketType::try_from(rec.homa[homa_proto::wire::common::field::TYPE]).unwrap();
        assert_eq!(ty, repr.body.packet_type());
        // TOS: a priority level in the top three bits, nothing else.
        assert_eq!(rec.tos & 0x1f, 0, "{rec:?}");
        if !matches!(ty, PacketType::Data) {
            assert_eq!(rec.tos, 7 << 5, "control packets at the top level");
        }
        if rec.src == me {
            sent[ty.index()] += 1;
        } else {
            assert_eq!(rec.dst, me, "only host 0's packets");
            received[ty.index()] += 1;
        }
        if let Body::Data(d) = repr.body {
            assert_eq!(
                payload.len(),
                rec.homa.len() - homa_proto::wire::DataHeader::LEN
            );
            if rec.src == me && rec.dst == ip(1) && repr.sender_id & 1 == 0 {
                assert_eq!(d.message_length, 100_000);
                request_bytes += payload.len() as u64;
            }
        }
    }
    // Exactly the endpoint's own counters, type by type (a pull-mode NIC
    // starts sending every packet the endpoint emits at once).
    let s = sim.endpoint(0).stats();
    assert_eq!(sent, s.sent.packets, "sent per type");
    assert_eq!(received, s.received.packets, "received per type");
    assert_eq!(request_bytes, 100_000, "every byte of the request, once");
    let of = |t: PacketType| sent[t.index()] + received[t.index()];
    assert!(
        of(PacketType::Grant) > 0,
        "the 100 KB request needed grants"
    );
    assert!(of(PacketType::Cutoffs) > 0);
    assert_eq!(
        recs.len() as u64,
        s.sent.total_packets() + s.received.total_packets()
    );
}

/// A loaded run on 2 racks x 4 hosts, W3 at 60%, with `capture`.
fn loaded_cfg(capture: Option<CaptureParams>, seed: u64) -> SimConfig {
    let mut cfg = SimConfig::default();
    cfg.topology.racks = 2;
    cfg.topology.hosts_per_rack = 4;
    cfg.topology.aggs = 2;
    cfg.traffic.workload = "w3".parse().unwrap();
    cfg.traffic.load = 0.6;
    cfg.run.duration = Duration::from_micros(300);
    cfg.run.warmup = Duration::from_micros(30);
    cfg.seed = seed;
    cfg.capture = capture;
    cfg
}

/// Runs [`loaded_cfg`]; the results as CSV.
fn loaded(capture: Option<CaptureParams>, seed: u64) -> String {
    report::csv(&homa_sim::run(&loaded_cfg(capture, seed)).unwrap())
}

fn params(file: &TempFile, limit: u64) -> CaptureParams {
    CaptureParams {
        path: file.0.clone(),
        hosts: vec![0, 5],
        limit,
    }
}

#[test]
fn capture__same_seed_byte_identical_and_results_unchanged() {
    let (a, b, c) = (
        TempFile::new("det-a"),
        TempFile::new("det-b"),
        TempFile::new("det-c"),
    );
    let csv_a = loaded(Some(params(&a, u64::MAX)), 1);
    let csv_b = loaded(Some(params(&b, u64::MAX)), 1);
    let csv_none = loaded(None, 1);
    let bytes_a = std::fs::read(&a.0).unwrap();
    let bytes_b = std::fs::read(&b.0).unwrap();
    let recs = read_pcap(&bytes_a);
    assert!(recs.len() > 500, "{} records", recs.len());
    assert!(bytes_a == bytes_b, "same seed, same capture");
    assert_eq!(csv_a, csv_b);
    assert_eq!(csv_a, csv_none, "capturing changes nothing in the run");
    // Both hosts appear, and nothing else does.
    let (h0, h5) = (ip(0), ip(5));
    for h in [h0, h5] {
        assert!(recs.iter().any(|r| r.src == h) && recs.iter().any(|r| r.dst == h));
    }
    assert!(recs
        .iter()
        .all(|r| [h0, h5].contains(&r.src) || [h0, h5].contains(&r.dst)));
    // Several priority levels in the TOS byte.
    let mut levels: Vec<u8> = recs.iter().map(|r| r.tos >> 5).collect();
    levels.sort_unstable();
    levels.dedup();
    assert!(levels.len() >= 3, "levels {levels:?}");
    loaded(Some(params(&c, u64::MAX)), 2);
    assert!(
        std::fs::read(&c.0).unwrap() != bytes_a,
        "another seed differs"
    );
}

#[test]
fn capture__limit_is_honoured_and_keeps_the_first_records() {
    let (full, cut) = (TempFile::new("full"), TempFile::new("cut"));
    let mut sim_full = Simulator::new(&loaded_cfg(Some(params(&full, u64::MAX)), 1)).unwrap();
    sim_full.run(|_| {}).unwrap();
    let mut sim_cut = Simulator::new(&loaded_cfg(Some(params(&cut, 50)), 1)).unwrap();
    sim_cut.run(|_| {}).unwrap();
    let total = sim_full.capture_stats().unwrap();
    assert_eq!(total.beyond_limit, 0);
    assert!(total.written > 50);
    let s = sim_cut.capture_stats().unwrap();
    assert_eq!(s.written, 50);
    assert_eq!(s.written + s.beyond_limit, total.written);
    let cut_bytes = std::fs::read(&cut.0).unwrap();
    assert_eq!(read_pcap(&cut_bytes).len(), 50);
    let full_bytes = std::fs::read(&full.0).unwrap();
    assert!(
        full_bytes.starts_with(&cut_bytes),
        "the limited capture is the start of the full one"
    );
}

#[test]
fn capture__bad_hosts_and_unwritable_files_are_errors() {
    let file = TempFile::new("bad");
    let mut p = params(&file, 10);
    p.hosts = vec![8];
    let cfg = loaded_cfg(Some(p.clone()), 1);
    assert_eq!(
        cfg.validate(),
        Err(SimError::Config("capture host out of range"))
    );
    p.hosts.clear();
    assert!(loaded_cfg(Some(p.clone()), 1).validate().is_err());
    p.hosts = vec![1];
    p.path = std::env::temp_dir().join("homa-sim-no-such-dir/x.pcap");
    match Simulator::new(&loaded_cfg(Some(p), 1)) {
        Err(SimError::Capture(msg)) => assert!(msg.contains("x.pcap"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn capture__cli_flags_select_hosts_and_limit() {
    let file = TempFile::new("cli");
    let out = Command::new(env!("CARGO_BIN_EXE_homa-sim"))
        .args([
            "--racks",
            "1",
            "--hosts-per-rack",
            "4",
            "-w",
            "w3",
            "-l",
            "0.5",
            "-d",
            "200us",
            "--no-progress",
            "--quiet",
            "--capture-hosts",
            "1,2",
            "--capture-limit",
            "100",
            "--capture",
        ])
        .arg(&file.0)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("capture: 100 packets of host(s) [1, 2] written to"),
        "{stderr}"
    );
    assert!(stderr.contains("beyond --capture-limit"), "{stderr}");
    let recs = read_pcap(&std::fs::read(&file.0).unwrap());
    assert_eq!(recs.len(), 100);
    let mine = [ip(1), ip(2)];
    assert!(recs
        .iter()
        .all(|r| mine.contains(&r.src) || mine.contains(&r.dst)));
    // A host outside the network is refused before anything runs.
    let bad = Command::new(env!("CARGO_BIN_EXE_homa-sim"))
        .args(["--racks", "1", "--hosts-per-rack", "4", "-d", "1us"])
        .args(["--capture-hosts", "4", "--capture"])
        .arg(&file.0)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("capture host out of range"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
#[ignore = "needs tshark"]
fn capture__tshark_decodes_it_with_the_lua_dissector() {
    assert!(tshark::available(), "this test needs tshark");
    let file = TempFile::new("tshark");
    let (mut sim, _) = few_messages(&file);
    sim.run(|_| {}).unwrap();
    let recs = read_pcap(&std::fs::read(&file.0).unwrap());
    let fields = [
        "homa.type_name",
        "ip.src",
        "ip.dst",
        "udp.srcport",
        "ip.dsfield",
        "frame.time_epoch",
    ];
    let rows = tshark::fields(&file.0, Some("homa"), &fields).unwrap();
    assert_eq!(rows.len(), recs.len(), "every record decodes as Homa");
    for (row, rec) in rows.iter().zip(&recs) {
        let ty = PacketType::try_from(rec.homa[homa_proto::wire::common::field::TYPE]).unwrap();
        assert_eq!(row[0], ty.name(), "{row:?}");
        assert_eq!(row[1], rec.src.to_string());
        assert_eq!(row[2], rec.dst.to_string());
        assert_eq!(row[3], PORT.to_string());
        assert_eq!(row[4], format!("0x{:02x}", rec.tos));
        // Simulated time, to the nanosecond.
        let want = format!(
            "{}.{:09}",
            rec.nanos / 1_000_000_000,
            rec.nanos % 1_000_000_000
        );
        assert_eq!(row[5], want);
    }
    for t in ["DATA", "GRANT", "CUTOFFS"] {
        assert!(rows.iter().any(|r| r[0] == t), "no {t} in {rows:?}");
    }
}
