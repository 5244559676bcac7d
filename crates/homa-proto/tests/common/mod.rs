//! Helpers shared by the scenario tests: deterministic message contents, an
//! echo-style server application, and a client workload that keeps a bounded
//! number of RPCs outstanding and checks every response byte for byte.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::Bytes;
use homa_proto::testnet::{Limits, Network};
use homa_proto::{Config, Event, Instant, Rng, RpcError};

/// The server port every test host listens on.
pub const SERVER_PORT: u16 = 100;

/// Deterministic message bytes: a function of `tag` and position.
pub fn pattern(tag: u64, len: usize) -> Bytes {
    let mut rng = Rng::new(tag);
    let mut v = vec![0u8; len];
    for chunk in v.chunks_mut(8) {
        let x = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&x[..chunk.len()]);
    }
    Bytes::from(v)
}

/// The response the test servers send for a request: every byte XOR 0x5A.
pub fn response_for(request: &[u8]) -> Bytes {
    Bytes::from(request.iter().map(|b| b ^ 0x5A).collect::<Vec<u8>>())
}

/// One RPC a client is to issue.
#[derive(Debug, Clone)]
pub struct Planned {
    pub client: usize,
    pub server: usize,
    pub len: usize,
    pub tag: u64,
}

/// Outcome bookkeeping for a workload.
#[derive(Debug, Default)]
pub struct Outcome {
    pub completed: usize,
    /// (id, error, time the RPC was issued, time it failed)
    pub failed: Vec<(u64, RpcError, Instant, Instant)>,
    /// Latest completion time.
    pub last_completion: Instant,
    /// Requests delivered to server applications, per (server host, client
    /// address, id): must never exceed 1.
    pub served: HashMap<(usize, SocketAddr, u64), u32>,
    pub bytes: u64,
}

/// Runs `plan` on `net`: every host has a server socket on [`SERVER_PORT`]
/// and one client socket; each client keeps at most `window` RPCs
/// outstanding. Servers answer with [`response_for`]. Returns the outcome;
/// panics on any byte mismatch.
pub fn run_workload(net: &mut Network, plan: &[Planned], window: usize, limits: Limits) -> Outcome {
    let hosts = net.host_count();
    let mut client_ports = Vec::new();
    for h in 0..hosts {
        let ep = net.endpoint(h);
        if ep.open_socket(SERVER_PORT).is_err() {
            // Already open from an earlier phase.
        }
        client_ports.push(ep.open_socket(0).unwrap());
    }
    // Per client: queue of planned RPCs, outstanding map id -> expected.
    let mut queues: Vec<std::collections::VecDeque<Planned>> = vec![Default::default(); hosts];
    for p in plan {
        queues[p.client].push_back(p.clone());
    }
    let mut outstanding: Vec<HashMap<u64, (Bytes, Instant)>> = vec![HashMap::new(); hosts];
    let mut outcome = Outcome::default();

    let issue = |net: &mut Network,
                 h: usize,
                 queues: &mut Vec<std::collections::VecDeque<Planned>>,
                 outstanding: &mut Vec<HashMap<u64, (Bytes, Instant)>>| {
        while outstanding[h].len() < window {
            let Some(p) = queues[h].pop_front() else {
                break;
            };
            let req = pattern(p.tag, p.len);
            let dest = net.addr(p.server, SERVER_PORT);
            let now = net.now();
            let id = net
                .endpoint(h)
                .send_request(now, client_ports[h], dest, req.clone())
                .unwrap();
            outstanding[h].insert(id, (response_for(&req), now));
        }
    };
    for h in 0..hosts {
        issue(net, h, &mut queues, &mut outstanding);
    }
    net.run(limits, |net, h, ev| match ev {
        Event::Request {
            port,
            peer,
            id,
            data,
            ..
        } => {
            *outcome.served.entry((h, peer, id)).or_insert(0) += 1;
            let now = net.now();
            net.endpoint(h)
                .send_response(now, port, peer, id, response_for(&data))
                .unwrap();
        }
        Event::Response { id, data, .. } => {
            let (expected, _) = outstanding[h]
                .remove(&id)
                .expect("response for a known rpc");
            outcome.last_completion = net.now();
            assert_eq!(data.len(), expected.len(), "response length for rpc {id}");
            assert!(data == expected, "response bytes differ for rpc {id}");
            outcome.completed += 1;
            outcome.bytes += data.len() as u64;
            issue(net, h, &mut queues, &mut outstanding);
        }
        Event::Failed { id, error, .. } => {
            let (_, start) = outstanding[h].remove(&id).expect("failure for a known rpc");
            outcome.failed.push((id, error, start, net.now()));
            issue(net, h, &mut queues, &mut outstanding);
        }
        other => panic!("unexpected event {other:?}"),
    })
    .expect("network must not stall");
    for (h, o) in outstanding.iter().enumerate() {
        assert!(
            o.is_empty(),
            "host {h} still has {} rpcs outstanding",
            o.len()
        );
    }
    outcome
}

/// Asserts that every endpoint is quiescent: no RPC, no receive buffer, no
/// queued output, and (after idle collection) no peer.
pub fn assert_quiescent(net: &mut Network) {
    for h in 0..net.host_count() {
        let ep = net.endpoint(h);
        assert_eq!(ep.rpc_count(), 0, "host {h}: rpcs left");
        assert_eq!(ep.rx_bytes(), 0, "host {h}: receive buffers left");
        assert!(ep.is_idle(), "host {h}: not idle");
        assert_eq!(ep.peer_count(), 0, "host {h}: peers left");
    }
}

/// A network of `n` hosts with the given config.
pub fn network(seed: u64, n: usize, config: &Config) -> Network {
    let mut net = Network::new(seed);
    for _ in 0..n {
        net.add_host(config.clone());
    }
    net
}

/// Two hosts with `config`: a server socket on host 1 at [`SERVER_PORT`]
/// and a client socket on host 0. Returns the network, the client's port
/// and the server's address.
pub fn client_and_server(seed: u64, config: &Config) -> (Network, u16, SocketAddr) {
    let mut net = network(seed, 2, config);
    net.endpoint(1).open_socket(SERVER_PORT).unwrap();
    let cport = net.endpoint(0).open_socket(0).unwrap();
    let server = net.addr(1, SERVER_PORT);
    (net, cport, server)
}

/// Sends a request from host `h`'s socket `port` to `dest` now; returns
/// its id.
pub fn request(net: &mut Network, h: usize, port: u16, dest: SocketAddr, data: Bytes) -> u64 {
    let now = net.now();
    net.endpoint(h).send_request(now, port, dest, data).unwrap()
}

/// Answers request `id` from `peer` on host `h`'s socket `port` now.
pub fn respond(net: &mut Network, h: usize, port: u16, peer: SocketAddr, id: u64, data: Bytes) {
    let now = net.now();
    net.endpoint(h)
        .send_response(now, port, peer, id, data)
        .unwrap();
}

/// For tests that drive a client endpoint by hand: answers the probes it
/// sends to servers whose incarnation it does not know yet (at-most-once,
/// see `docs/at-most-once.md`) as a server of incarnation `incarnation`,
/// up for an hour, would. Other packets it sends are dropped; call this
/// right after the first `send_request` to each server.
pub fn answer_probes(ep: &mut homa_proto::Endpoint, now: Instant, incarnation: u64) {
    use homa_proto::wire::{Body, Repr, RpcUnknownHeader, UnknownStatus};
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    while let Some(t) = ep.poll_transmit(now, &mut buf) {
        let (repr, _) = Repr::parse_with_payload(&buf[..t.size]).unwrap();
        if let Body::Resend(r) = repr.body {
            if r.length == 0 && repr.incarnation == 0 {
                let reply = Repr {
                    sport: repr.dport,
                    dport: repr.sport,
                    sender_id: repr.sender_id | 1,
                    incarnation,
                    body: Body::RpcUnknown(RpcUnknownHeader {
                        status: UnknownStatus::Uptime(std::time::Duration::from_secs(3600)),
                    }),
                };
                replies.push((t.destination, reply.to_vec()));
            }
        }
    }
    assert!(!replies.is_empty(), "no probe to answer");
    for (from, bytes) in replies {
        ep.handle_datagram(now, from, &bytes);
    }
}
