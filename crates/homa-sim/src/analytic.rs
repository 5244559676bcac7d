//! Completion times on an unloaded network, computed analytically: the
//! denominator of every slowdown.
//!
//! A one-way message of `n` packets from host `s` to host `d` on an empty
//! network takes:
//!
//! ```text
//! host_delay                       application hands the message to the endpoint
//! + ser_host(p1) + nic_delay + link_delay     first packet leaves the NIC
//! + per intermediate hop: switch_delay + ser_fabric(p1) + link_delay
//!                                  (ToR -> aggregation -> ToR for another rack)
//! + switch_delay                   last switch has the first packet
//! + sum over packets ser_host(p_i) + link_delay   the downlink sends them all
//! + host_delay                     endpoint hands the message to the application
//! ```
//!
//! The destination's downlink is the bottleneck (fabric links are at least
//! as fast as host links, which the configuration enforces): once the first
//! packet reaches the last switch, the downlink is busy until the last byte
//! is through, because the sender emits packets back to back at the same
//! rate. A short last packet that catches up waits for its predecessor but
//! does not change when the downlink finishes.
//!
//! With packet spraying a short last packet can take another aggregation
//! switch, overtake its predecessor and reach the downlink first; the
//! message then completes up to one short-packet time *earlier* than the
//! formula says (seen for 1417-byte messages: 1416 + 1 bytes).
//!
//! The formula assumes the sender never waits for a grant, i.e. that the
//! unscheduled bytes cover the round trip; the unloaded tests check it
//! against the simulator for sizes below and above that. It is the same
//! quantity HomaSimulation computes as its ideal latency (which includes two
//! host turnaround times and one NIC think time). An RPC's unloaded time is
//! the sum of its request's and its response's.
//!
//! `p_i` are the DATA packets: `seg` message bytes each (the last one
//! shorter) plus the 56-byte DATA header plus [`WIRE_OVERHEAD`] on the wire.

use crate::config::{SimConfig, WIRE_OVERHEAD};
use crate::time::{ps, ser_ps, Ps};
use homa_proto::wire::DataHeader;

/// Unloaded completion times for one configuration.
#[derive(Debug, Clone)]
pub struct Unloaded {
    seg: u32,
    host_bps: u64,
    fabric_bps: u64,
    link: Ps,
    switch: Ps,
    nic: Ps,
    host: Ps,
}

impl Unloaded {
    /// The model of `cfg`'s topology, hosts and MTU.
    pub fn new(cfg: &SimConfig) -> Unloaded {
        let t = &cfg.topology;
        Unloaded {
            seg: cfg.proto.seg_size(),
            host_bps: t.host_link_bps,
            fabric_bps: t.fabric_link_bps,
            link: ps(t.link_delay),
            switch: ps(t.switch_delay),
            nic: ps(cfg.host.nic_delay),
            host: ps(cfg.host.host_delay),
        }
    }

    /// Bytes on the wire of a DATA packet carrying `payload` message bytes.
    pub fn wire_bytes(payload: u32) -> u32 {
        payload + DataHeader::LEN as u32 + WIRE_OVERHEAD
    }

    /// Bytes on the wire of all DATA packets of a message of `size` bytes
    /// with `seg` message bytes per packet.
    pub fn message_wire_bytes(size: u32, seg: u32) -> u64 {
        let packets = u64::from(size.div_ceil(seg).max(1));
        u64::from(size) + packets * u64::from(DataHeader::LEN as u32 + WIRE_OVERHEAD)
    }

    /// Message bytes per DATA packet.
    pub fn seg(&self) -> u32 {
        self.seg
    }

    /// Time for a one-way message of `size` bytes between hosts in
    /// different racks (`inter_rack`) or the same rack.
    pub fn one_way(&self, size: u32, inter_rack: bool) -> Ps {
        let seg = self.seg;
        let full = size / seg;
        let rest = size % seg;
        let first = size.min(seg);
        let ser_host = |b: u32| ser_ps(Self::wire_bytes(b), self.host_bps);
        let mut all = u64::from(full) * ser_host(seg);
        if rest > 0 || full == 0 {
            all += ser_host(rest);
        }
        let mut t = self.host + ser_host(first) + self.nic + self.link;
        if inter_rack {
            t += 2 * (self.switch + ser_ps(Self::wire_bytes(first), self.fabric_bps) + self.link);
        }
        t + self.switch + all + self.link + self.host
    }

    /// Time for an RPC: request there, response back.
    pub fn rpc(&self, request: u32, response: u32, inter_rack: bool) -> Ps {
        self.one_way(request, inter_rack) + self.one_way(response, inter_rack)
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn one_way__paper_topology_by_hand() {
        let u = Unloaded::new(&SimConfig::default());
        assert_eq!(u.seg(), 1416);
        // 100 bytes, same rack: 0.5 + 0.1808 (226 B at 10G) + 0.5 + 0.25
        // + 0.1808 + 0.5 µs.
        assert_eq!(
            u.one_way(100, false),
            500_000 + 180_800 + 500_000 + 250_000 + 180_800 + 500_000
        );
        // Other rack: two more switches, each 0.25 + 0.0452 (226 B at 40G).
        assert_eq!(
            u.one_way(100, true) - u.one_way(100, false),
            2 * (250_000 + 45_200)
        );
        // 3000 bytes = 1416 + 1416 + 168: 1542, 1542, 294 wire bytes.
        let ser = |b: u64| b * 800;
        assert_eq!(
            u.one_way(3000, false),
            500_000 + ser(1542) + 500_000 + 250_000 + ser(1542 + 1542 + 294) + 500_000
        );
        assert_eq!(Unloaded::message_wire_bytes(3000, 1416), 3000 + 3 * 126);
        assert_eq!(
            u.rpc(100, 3000, false),
            u.one_way(100, false) + u.one_way(3000, false)
        );
    }
}
