//! `homa server --metrics-listen ADDR`: the server's counters in the
//! Prometheus text format, served over HTTP at `/metrics` (any path
//! answers the same) by a small [`tiny_http`] server on its own thread,
//! encoded by [`prometheus_client`].
//!
//! What is exported, per serving protocol:
//!
//! * `homa_server_requests_total`, `homa_server_bytes_in_total`,
//!   `homa_server_bytes_out_total`, `homa_server_replies_failed_total`
//!   with labels `protocol` and `thread` (a serving thread, Homa, or a
//!   port, TCP), and `homa_server_uptime_seconds`;
//! * for every Homa socket (label `socket`, its address): the datapath's
//!   counters as `homa_transport_<counter>_total`, the protocol's as
//!   `homa_proto_<counter>_total` (packets and bytes sent and received
//!   with a label `type`, the packet type), and the current state as
//!   gauges: `homa_socket_calls_outstanding`, `homa_socket_requests_queued`,
//!   `homa_socket_sends_waiting`, `homa_proto_client_rpcs`,
//!   `homa_proto_server_rpcs`, `homa_proto_peers`, `homa_proto_rx_bytes`,
//!   `homa_proto_tx_unsent_bytes`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;

/// Labels of one series.
type Labels = Vec<(String, String)>;

/// A gauge holding a float.
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Counter families by name, registered on first use.
struct Families {
    reg: Registry,
    counters: Vec<(String, Family<Labels, Counter>)>,
    gauges: Vec<(String, Family<Labels, FloatGauge>)>,
}

impl Families {
    fn new() -> Families {
        Families {
            reg: Registry::default(),
            counters: Vec::new(),
            gauges: Vec::new(),
        }
    }

    fn counter(&mut self, name: &str, help: &str, labels: Labels, v: u64) {
        family(&mut self.reg, &mut self.counters, name, help)
            .get_or_create(&labels)
            .inc_by(v);
    }

    fn gauge(&mut self, name: &str, help: &str, labels: Labels, v: f64) {
        family(&mut self.reg, &mut self.gauges, name, help)
            .get_or_create(&labels)
            .set(v);
    }
}

/// The family called `name` in `known`, registered in `reg` on first use.
fn family<M>(
    reg: &mut Registry,
    known: &mut Vec<(String, Family<Labels, M>)>,
    name: &str,
    help: &str,
) -> Family<Labels, M>
where
    M: Default,
    Family<Labels, M>: prometheus_client::registry::Metric + Clone,
{
    if let Some((_, f)) = known.iter().find(|(n, _)| n == name) {
        return f.clone();
    }
    let f = Family::<Labels, M>::default();
    reg.register(name, help, f.clone());
    known.push((name.to_string(), f.clone()));
    f
}

fn l(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// The text exposition of every server in `servers`.
pub(crate) fn render(servers: &[Arc<crate::server::Shared>]) -> String {
    let mut f = Families::new();
    for s in servers {
        let proto = s.protocol_name().to_string();
        f.gauge(
            "homa_server_uptime_seconds",
            "Seconds since the server started",
            l(&[("protocol", proto.clone())]),
            s.uptime_secs(),
        );
        for (i, c) in s.thread_counters().into_iter().enumerate() {
            let labels = l(&[("protocol", proto.clone()), ("thread", i.to_string())]);
            let counters = [
                ("homa_server_requests", "Requests answered", c.0),
                ("homa_server_bytes_in", "Request bytes received", c.1),
                ("homa_server_bytes_out", "Response bytes sent", c.2),
                (
                    "homa_server_replies_failed",
                    "Replies that could not be sent",
                    c.3,
                ),
            ];
            for (name, help, v) in counters {
                f.counter(name, help, labels.clone(), v);
            }
        }
        for m in s.socket_metrics() {
            let sock = l(&[("socket", m.local_addr.to_string())]);
            if let Ok(Value::Object(t)) = serde_json::to_value(m.transport) {
                for (k, v) in t {
                    if let Some(v) = v.as_u64() {
                        f.counter(
                            &format!("homa_transport_{k}"),
                            "Datapath counter (see homa_transport::TransportStats)",
                            sock.clone(),
                            v,
                        );
                    }
                }
            }
            proto_counters(&mut f, &sock, &m.proto.stats);
            let gauges = [
                (
                    "homa_socket_calls_outstanding",
                    "Client calls outstanding",
                    m.calls_outstanding as f64,
                ),
                (
                    "homa_socket_requests_queued",
                    "Requests received, not yet taken by the application",
                    m.requests_queued as f64,
                ),
                (
                    "homa_socket_sends_waiting",
                    "Sends waiting for room under the send cap",
                    m.sends_waiting as f64,
                ),
                (
                    "homa_proto_client_rpcs",
                    "Client RPCs alive",
                    m.proto.client_rpcs as f64,
                ),
                (
                    "homa_proto_server_rpcs",
                    "Server RPCs alive",
                    m.proto.server_rpcs as f64,
                ),
                ("homa_proto_peers", "Peers known", m.proto.peers as f64),
                (
                    "homa_proto_rx_bytes",
                    "Bytes of received messages held",
                    m.proto.rx_bytes as f64,
                ),
                (
                    "homa_proto_tx_unsent_bytes",
                    "Bytes of outgoing messages not yet sent",
                    m.proto.tx_unsent as f64,
                ),
            ];
            for (name, help, v) in gauges {
                f.gauge(name, help, sock.clone(), v);
            }
            if let Some(h) = &m.host {
                let host = [
                    (
                        "homa_host_participants",
                        "Live participants of the socket's host table (sockets holding a share)",
                        f64::from(h.view.participants),
                    ),
                    (
                        "homa_host_incoming_bytes",
                        "Granted-but-not-received bytes over the host table",
                        h.view.host_incoming as f64,
                    ),
                    (
                        "homa_host_own_incoming_bytes",
                        "This socket's share of the host's granted-but-not-received bytes",
                        h.view.own_incoming as f64,
                    ),
                    (
                        "homa_host_link_backlog_ns",
                        "Transmit time queued in the host's shared NIC estimate",
                        h.view.link_backlog_ns as f64,
                    ),
                ];
                for (name, help, v) in host {
                    f.gauge(name, help, sock.clone(), v);
                }
            }
        }
    }
    let mut out = String::new();
    if encode(&mut out, &f.reg).is_err() {
        out = "# encoding failed\n".into();
    }
    out
}

/// The protocol's counters: scalar ones as they are, packets and bytes
/// per packet type with a `type` label (size histograms are left to JSON).
fn proto_counters(f: &mut Families, sock: &Labels, st: &homa_proto::Stats) {
    let Ok(Value::Object(map)) = serde_json::to_value(st) else {
        return;
    };
    for (k, v) in &map {
        if let Some(n) = v.as_u64() {
            f.counter(
                &format!("homa_proto_{k}"),
                "Protocol counter (see homa_proto::Stats)",
                sock.clone(),
                n,
            );
        }
    }
    for (dir, per) in [("sent", &st.sent), ("received", &st.received)] {
        for t in homa_proto::wire::PacketType::ALL {
            let mut labels = sock.clone();
            labels.push(("type".into(), format!("{t:?}").to_uppercase()));
            f.counter(
                &format!("homa_proto_packets_{dir}"),
                "Packets by type",
                labels.clone(),
                per.packets[t.index()],
            );
            f.counter(
                &format!("homa_proto_bytes_{dir}"),
                "Homa header and payload bytes by packet type",
                labels,
                per.bytes[t.index()],
            );
        }
    }
}

/// Serves `text()` at `addr` on a thread of its own; returns the address
/// bound (port 0 picks one).
pub(crate) fn spawn(
    addr: SocketAddr,
    text: impl Fn() -> String + Send + 'static,
) -> Result<SocketAddr> {
    let server =
        tiny_http::Server::http(addr).map_err(|e| anyhow!("--metrics-listen {addr}: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| anyhow!("--metrics-listen {addr}: not an IP address"))?;
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            let ctype = tiny_http::Header::from_bytes(
                &b"Content-Type"[..],
                &b"text/plain; version=0.0.4; charset=utf-8"[..],
            )
            .ok();
            for req in server.incoming_requests() {
                let mut resp = tiny_http::Response::from_string(text());
                if let Some(h) = ctype.clone() {
                    resp = resp.with_header(h);
                }
                // A client that went away is its own problem.
                let _ = req.respond(resp);
            }
        })?;
    Ok(bound)
}
