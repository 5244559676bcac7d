//! The SIGCOMM 2018 paper's definitions, as its simulator (HomaSimulation)
//! computes them, for like-for-like comparisons: how load is counted and
//! the unloaded time a slowdown divides by. Both count bytes with the
//! paper's own packet format, not homa-proto's:
//!
//! * a 1500-byte IP packet is a 1538-byte frame on the wire (Ethernet
//!   header 14, CRC 4, preamble 8, inter-packet gap 12), and no frame is
//!   shorter than 84 bytes (a 46-byte minimum payload);
//! * an unscheduled DATA packet has a 30-byte Homa header and carries up to
//!   1442 message bytes (96 bytes of overhead on the wire), a scheduled one
//!   a 16-byte header and 1456 bytes (82 bytes), a GRANT fills a minimum
//!   frame (84 bytes);
//! * RTTbytes is 10 000 bytes on the wire: 9 328 message bytes sent
//!   unscheduled (six full packets and 676 bytes).
//!
//! **Load** (the configuration's `realLoadFactor`): the wire bytes of a
//! message's DATA packets plus one GRANT per scheduled packet, the rule of
//! the simulator's load calibration script (`adjustLoadFac.py`), which
//! produced the message rates of its experiments (for W4 the application
//! load is 0.898 of the nominal one). [`wire_bytes`] is that rule.
//!
//! **Unloaded time** (`idealMsgEndToEndDelay`, [`unloaded`]): the message's
//! bytes as frames *without any transport header* (1472 message bytes per
//! 1538-byte frame, a last partial frame of `bytes + 66`, at least 84)
//! serialised once at the host link rate, plus the store-and-forward
//! serialisation of the first frame at every switch on the path and their
//! fixed delays, plus two host turnaround times and one NIC think time.
//! Reproduced as written, including one quirk: for a message within one
//! rack the formula assigns the switch's serialisation delay where it meant
//! to add it (`=+`), so the ToR's fixed delay (0.25 µs) is left out of
//! same-rack denominators. The paper's slowdowns were computed this way.

use crate::time::{ser_ps, Ps};

/// A full frame on the wire: a 1500-byte IP packet and 38 bytes of
/// Ethernet framing.
pub const FULL_FRAME: u32 = 1538;
/// The smallest frame on the wire (64 bytes, preamble and gap).
pub const MIN_FRAME: u32 = 84;
/// Message bytes in an unscheduled DATA packet.
pub const UNSCHED_DATA: u32 = 1442;
/// Message bytes in a scheduled DATA packet.
pub const SCHED_DATA: u32 = 1456;
/// A GRANT on the wire.
pub const GRANT: u32 = 84;
/// Message bytes sent unscheduled: 10 000 bytes (RTTbytes) on the wire.
pub const UNSCHED_BYTES: u32 = 9328;
/// Message bytes per frame in the unloaded-time formula (no transport
/// header: 1500 less IP and UDP).
pub const FRAME_DATA: u32 = 1472;
/// Frame bytes around those message bytes: IP 20, UDP 8, Ethernet 14, CRC
/// 4, preamble 8, gap 12.
pub const FRAME_OVERHEAD: u32 = 66;

/// Wire bytes of `bytes` message bytes cut into packets of `per_packet`
/// with `overhead` bytes each on the wire, and the number of packets.
fn packets(bytes: u32, per_packet: u32, overhead: u32) -> (u64, u64) {
    let full = u64::from(bytes / per_packet);
    let rest = bytes % per_packet;
    let wire = full * u64::from(FULL_FRAME)
        + if rest > 0 {
            u64::from(rest + overhead)
        } else {
            0
        };
    (wire, full + u64::from(rest > 0))
}

/// What a message of `size` bytes counts in the paper's load: its DATA
/// packets (unscheduled, then scheduled) and a GRANT per scheduled packet.
pub fn wire_bytes(size: u32) -> u64 {
    let unsched = size.min(UNSCHED_BYTES);
    let (u, _) = packets(unsched, UNSCHED_DATA, FULL_FRAME - UNSCHED_DATA);
    let (s, sched_packets) = packets(size - unsched, SCHED_DATA, FULL_FRAME - SCHED_DATA);
    u + s + sched_packets * u64::from(GRANT)
}

/// Path parameters of the unloaded-time formula.
#[derive(Debug, Clone, Copy)]
pub struct Path {
    /// Host link rate, bits per second.
    pub host_bps: u64,
    /// Fabric link rate, bits per second.
    pub fabric_bps: u64,
    /// Fixed switch delay.
    pub switch: Ps,
    /// Link propagation delay (edge and fabric alike here).
    pub link: Ps,
    /// Two host turnaround times and one NIC think time.
    pub hosts: Ps,
}

/// HomaSimulation's unloaded time of a `size`-byte message (see the
/// [module docs](self)).
pub fn unloaded(path: &Path, size: u32, inter_rack: bool) -> Ps {
    let full = size / FRAME_DATA;
    let rest = size % FRAME_DATA;
    let last = if rest == 0 {
        if full == 0 {
            MIN_FRAME
        } else {
            0
        }
    } else {
        (rest + FRAME_OVERHEAD).max(MIN_FRAME)
    };
    let total = u64::from(full) * u64::from(FULL_FRAME) + u64::from(last);
    let first = if full > 0 { FULL_FRAME } else { last };
    let message = (u128::from(total) * 8 * u128::from(crate::time::PS_PER_SEC))
        .div_ceil(u128::from(path.host_bps)) as Ps;
    let edge = ser_ps(first, path.host_bps);
    let fabric = ser_ps(first, path.fabric_bps);
    let switches = if inter_rack {
        3 * path.switch + 2 * fabric + edge + 4 * path.link
    } else {
        // `totalSwitchDelay =+ edgeSwitchSerialDelay`: the fixed delay
        // assigned away (see the module docs).
        edge + 2 * path.link
    };
    message + switches + path.hosts
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn wire_bytes__the_papers_packets_and_grants() {
        // One byte: one unscheduled packet, 1 + 96.
        assert_eq!(wire_bytes(1), 97);
        // 1442 bytes: one full frame.
        assert_eq!(wire_bytes(1442), 1538);
        // RTTbytes of message: six full frames and 676 + 96 = 10 000 bytes.
        assert_eq!(wire_bytes(9328), 10_000);
        // 10 000 bytes: 9 328 unscheduled, then 672 scheduled (672 + 82)
        // and its grant (84).
        assert_eq!(wire_bytes(10_000), 10_000 + 672 + 82 + 84);
        // 9 328 + 2 x 1456: two full scheduled frames and two grants.
        assert_eq!(wire_bytes(9328 + 2912), 10_000 + 2 * 1538 + 2 * 84);
    }

    #[test]
    fn unloaded__by_hand() {
        let p = Path {
            host_bps: 10_000_000_000,
            fabric_bps: 40_000_000_000,
            switch: 250_000,
            link: 0,
            hosts: 1_500_000,
        };
        // 100 bytes: one frame of 166 bytes (132.8 ns at 10G, 33.2 at 40G).
        // Same rack: the message once, the ToR's serialisation, no fixed
        // delay; other rack: three switches and two fabric serialisations.
        assert_eq!(unloaded(&p, 100, false), 132_800 + 132_800 + 1_500_000);
        assert_eq!(
            unloaded(&p, 100, true),
            132_800 + 3 * 250_000 + 2 * 33_200 + 132_800 + 1_500_000
        );
        // 10 bytes pad to a minimum frame of 84 bytes (67.2 ns).
        assert_eq!(unloaded(&p, 10, false), 2 * 67_200 + 1_500_000);
        // 3000 bytes: 1472 + 1472 + 56: two full frames and 122 bytes; the
        // first frame is full.
        assert_eq!(
            unloaded(&p, 3000, false),
            (2 * 1538 + 122) * 800 + 1538 * 800 + 1_500_000
        );
        // 29 MB: no overflow; 19 701 full frames and 128 + 66 bytes.
        let big = 29_000_000u32;
        assert_eq!(
            unloaded(&p, big, false),
            (19_701 * 1538 + 194) * 800 + 1538 * 800 + 1_500_000
        );
    }
}
