//! Completion times on an unloaded network, computed analytically: the
//! denominator of every slowdown.
//!
//! A one-way message of `n` packets from host `s` to host `d` on an empty
//! network takes:
//!
//! ```text
//! host_delay                       application hands the message to the endpoint
//! + tx_delay                       the first packet reaches the NIC
//! + ser_host(p1) + nic_delay + link_delay     first packet leaves the NIC
//! + per intermediate hop: switch_delay + ser_fabric(p1) + link_delay
//!                                  (ToR -> aggregation -> ToR for another rack)
//! + switch_delay                   last switch has the first packet
//! + sum over packets ser_host(p_i) + link_delay   the downlink sends them all
//! + rx_delay                       the last packet reaches the endpoint
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
//! shorter) plus the 56-byte DATA header, UDP, IP and Ethernet framing on
//! the wire (homa-proto's `Config::wire_bytes`).
//!
//! [`Unloaded::paper`] is the paper's formula instead ([`crate::paper`]).

use crate::config::{SimConfig, Slowdown};
use crate::paper;
use crate::time::{ps, ser_ps, Ps};
use homa_proto::wire::DataHeader;
use homa_proto::Config;

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
    tx: Ps,
    rx: Ps,
    paper: paper::Path,
    formula: Slowdown,
}

/// Wire bytes of a DATA packet beyond its payload over IPv4.
fn data_overhead() -> u32 {
    Config::default().wire_bytes(DataHeader::LEN, false) as u32
}

impl Unloaded {
    /// The model of `cfg`'s topology, hosts and MTU.
    pub fn new(cfg: &SimConfig) -> Unloaded {
        let t = &cfg.topology;
        let h = &cfg.host;
        Unloaded {
            seg: cfg.proto.seg_size(),
            host_bps: t.host_link_bps,
            fabric_bps: t.fabric_link_bps,
            link: ps(t.link_delay),
            switch: ps(t.switch_delay),
            nic: ps(h.nic_delay),
            host: ps(h.host_delay),
            tx: ps(h.tx_delay),
            rx: ps(h.rx_delay),
            paper: paper::Path {
                host_bps: t.host_link_bps,
                fabric_bps: t.fabric_link_bps,
                switch: ps(t.switch_delay),
                link: ps(t.link_delay),
                hosts: 2 * ps(h.host_delay) + ps(h.tx_delay) + ps(h.rx_delay) + ps(h.nic_delay),
            },
            formula: cfg.slowdown,
        }
    }

    /// Bytes on the wire of a DATA packet carrying `payload` message bytes.
    pub fn wire_bytes(payload: u32) -> u32 {
        payload + data_overhead()
    }

    /// The unloaded time of a one-way message under the configured
    /// formula, then under the other one.
    pub fn both(&self, size: u32, inter_rack: bool) -> (Ps, Ps) {
        let (a, p) = (self.one_way(size, inter_rack), self.paper(size, inter_rack));
        match self.formula {
            Slowdown::Analytic => (a, p),
            Slowdown::Paper => (p, a),
        }
    }

    /// The paper's unloaded time (HomaSimulation's formula, see
    /// [`crate::paper`]): no transport header, its frame sizes, its host
    /// overheads (`2 host_delay + tx_delay + rx_delay + nic_delay`).
    pub fn paper(&self, size: u32, inter_rack: bool) -> Ps {
        paper::unloaded(&self.paper, size, inter_rack)
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
        let mut t = self.host + self.tx + ser_host(first) + self.nic + self.link;
        if inter_rack {
            t += 2 * (self.switch + ser_ps(Self::wire_bytes(first), self.fabric_bps) + self.link);
        }
        t + self.switch + all + self.link + self.rx + self.host
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
        assert_eq!(
            u.rpc(100, 3000, false),
            u.one_way(100, false) + u.one_way(3000, false)
        );
        // Per-packet host delays replace the hand-offs one for one in the
        // unloaded time of a one-way message.
        let p = Unloaded::new(&SimConfig::paper(homa_workload::Workload::W4.into()));
        assert_eq!(p.one_way(100, true), u.one_way(100, true));
        assert_eq!(p.both(100, true).0, p.paper(100, true));
        assert_eq!(
            u.both(100, true),
            (u.one_way(100, true), u.paper(100, true))
        );
    }
}
