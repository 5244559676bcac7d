//! Fuzzing harnesses shared by the cargo-fuzz targets (`fuzz/`) and the
//! property tests of the normal suite, so both exercise the same code.
//!
//! Not part of the supported API.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::time::Duration;

use bytes::Bytes;

use crate::wire::{
    AckEntry, AckHeader, Body, CutoffsHeader, DataHeader, GrantHeader, Packet, Repr, ResendHeader,
    RpcUnknownHeader, UnknownStatus,
};
use crate::{Config, Endpoint, Event, Instant};

/// Parses arbitrary bytes as a packet; when parsing succeeds, re-emitting
/// and re-parsing must give the same header. Panics on a violation.
pub fn wire_roundtrip(data: &[u8]) {
    let Ok((repr, payload)) = Repr::parse_with_payload(data) else {
        return;
    };
    let mut again = repr.to_vec();
    again.extend_from_slice(payload);
    let (repr2, payload2) = Repr::parse_with_payload(&again).expect("emitted packet parses");
    assert_eq!(repr, repr2);
    assert_eq!(payload, payload2);
    // The view agrees with the parsed header.
    let p = Packet::new_checked(data).expect("parsed, so long enough");
    assert_eq!(p.sender_id(), repr.sender_id);
}

/// Limits small enough that a fuzzer reaches them.
pub fn fuzz_config() -> Config {
    Config {
        max_message_length: 1 << 20,
        max_rx_bytes: 4 << 20,
        max_rx_bytes_per_peer: 1 << 20,
        max_unscheduled: 64 << 10,
        max_rpcs_per_peer: 32,
        max_peers: 8,
        max_gaps: 16,
        max_control_queue: 256,
        ..Config::default()
    }
}

/// A cursor over fuzzer input.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.byte()?,
            self.byte()?,
            self.byte()?,
            self.byte()?,
        ]))
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }
}

const SERVER_PORT: u16 = 100;

/// The incarnation the harness's fake servers claim.
const FAKE_SERVER_INCARNATION: u64 = 0x12_3456;

fn peer(sel: u8) -> SocketAddr {
    let port = [100u16, 0x8000, 0x8001, 7][(sel >> 4) as usize % 4];
    let ip = match sel % 4 {
        0 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        1 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)),
        2 => IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
        _ => IpAddr::V4(Ipv4Addr::new(10, 0, 0, (sel >> 2) % 64)),
    };
    SocketAddr::new(ip, port)
}

/// Drives one endpoint with a program decoded from `data`: raw datagrams
/// (alone or as GRO batches),
/// structured packets aimed at live RPCs, time jumps, application actions
/// and socket churn. After every step it checks that memory, peers and
/// output stay within the configured bounds. Panics on a violation.
pub fn endpoint_program(data: &[u8]) {
    let config = fuzz_config();
    let mut ep = Endpoint::new(config.clone(), 42).expect("valid");
    ep.open_socket(SERVER_PORT).expect("server port");
    let cport = ep.open_socket(0).expect("client port");
    let mut now = Instant::from_micros(1);
    let mut ids: Vec<(u64, SocketAddr)> = Vec::new();
    let mut app_peers = std::collections::BTreeSet::new();
    let mut requests: Vec<(u16, SocketAddr, u64)> = Vec::new();
    let mut buf = Vec::new();
    let mut input = Input { data };
    while let Some(op) = input.byte() {
        let op = match op % 16 {
            0 | 1 => 0,
            2..=7 => 1,
            8 | 9 => 2,
            10 | 11 => 3,
            12 | 13 => 4,
            14 => 5,
            _ => 6 + (op >> 7),
        };
        match op {
            0 => {
                // A raw datagram from a chosen source.
                let Some(sel) = input.byte() else { break };
                let len = input.byte().unwrap_or(0) as usize;
                let bytes = input.take(len).to_vec();
                let level = input.byte().map(|l| l % 9).filter(|&l| l < 8);
                match input.byte() {
                    // The same bytes as a GRO batch cut at a chosen size.
                    Some(seg) if seg & 0x80 != 0 => {
                        let segment = (seg & 0x7F) as usize + 1;
                        ep.handle_datagram_batch_at_level(now, peer(sel), level, &bytes, segment);
                    }
                    _ => ep.handle_datagram_at_level(now, peer(sel), level, &bytes),
                }
            }
            1 => {
                // A structured packet, valid and then possibly corrupted.
                let own = ep.incarnation();
                let Some((bytes, to_rpc)) = structured(&mut input, &ids, own) else {
                    break;
                };
                let Some(sel) = input.byte() else { break };
                let mut bytes = bytes;
                // Packets about one of our RPCs come from its peer; others
                // from a chosen source, with a consistent source port.
                let src = to_rpc.unwrap_or(peer(sel));
                bytes[0..2].copy_from_slice(&src.port().to_be_bytes());
                if let Some(flip) = input.byte() {
                    if flip & 1 == 1 && !bytes.is_empty() {
                        let at = input.byte().unwrap_or(0) as usize % bytes.len();
                        bytes[at] ^= input.byte().unwrap_or(0xFF);
                    }
                }
                let level = Some(sel % 8);
                if sel & 0x40 != 0 && !bytes.is_empty() {
                    // As a GRO batch: the packet two or three times back
                    // to back (a run of one message), perhaps with a
                    // truncated last copy.
                    let copies = 2 + (sel >> 7) as usize;
                    let mut batch = bytes.repeat(copies);
                    if sel & 0x20 != 0 {
                        batch.truncate(batch.len() - bytes.len() / 2);
                    }
                    ep.handle_datagram_batch_at_level(now, src, level, &batch, bytes.len());
                } else {
                    ep.handle_datagram_at_level(now, src, level, &bytes);
                }
            }
            2 => {
                let step = input.byte().unwrap_or(1) as u64;
                now += Duration::from_micros(step * step * 10);
                ep.handle_timeout(now);
                if let Some(t) = ep.poll_timeout() {
                    assert!(t > now, "deadline {t:?} not after handle_timeout({now:?})");
                }
            }
            3 => {
                // Answer a delivered request.
                if let Some((port, peer, id)) = requests.pop() {
                    let len = input.u16().unwrap_or(1) as usize % 5000 + 1;
                    let _ = ep.send_response(now, port, peer, id, Bytes::from(vec![7u8; len]));
                }
            }
            4 => {
                let sel = input.byte().unwrap_or(0);
                let len = input.u32().unwrap_or(1) as usize % 200_000 + 1;
                app_peers.insert(peer(sel));
                if let Ok(id) = ep.send_request(now, cport, peer(sel), Bytes::from(vec![1u8; len]))
                {
                    ids.push((id, peer(sel)));
                }
            }
            5 => {
                if let Some(&(id, _)) =
                    ids.get(input.byte().unwrap_or(0) as usize % ids.len().max(1))
                {
                    let _ = ep.abort(cport, id);
                }
            }
            6 => {
                let dest = peer(input.byte().unwrap_or(0));
                ep.handle_unreachable(now, dest, crate::Unreachable::Port);
            }
            _ => {
                // Close and reopen the server socket.
                let _ = ep.close_socket(SERVER_PORT);
                requests.retain(|r| r.0 != SERVER_PORT);
                ep.open_socket(SERVER_PORT).expect("reopen");
            }
        }
        // Drain outputs; a bounded number of transmits per step.
        // `transmit_idle` may say no spuriously but never yes wrongly.
        let idle = ep.transmit_idle(now);
        let mut n = 0;
        while ep.poll_transmit(now, &mut buf).is_some() {
            assert!(n > 0 || !idle, "transmit_idle said nothing was ready");
            n += 1;
            assert!(n < 100_000, "poll_transmit does not terminate");
        }
        while let Some(ev) = ep.poll_event() {
            if let Event::Request { port, peer, id, .. } = ev {
                requests.push((port, peer, id));
            }
        }
        assert!(ep.rx_bytes() <= config.max_rx_bytes, "receive memory bound");
        // The network can make us keep at most `max_peers` peers; the
        // application may add the destinations it chooses.
        assert!(
            ep.peer_count() <= config.max_peers + app_peers.len(),
            "peer bound: {} peers",
            ep.peer_count()
        );
        if let Some(t) = ep.poll_timeout() {
            assert!(
                t >= now || t + Duration::from_secs(1) > now,
                "deadline in the past"
            );
        }
    }
    if std::env::var_os("HOMA_FUZZ_DEBUG").is_some() {
        let st = ep.stats();
        eprintln!(
            "ops-done: rpcs {} delivered {} responses {} grants {} resends {} bad {} stale {} unknown {}",
            ep.rpc_count(),
            st.requests_delivered,
            st.responses_delivered,
            st.grants,
            st.resends_silence + st.resends_fast,
            st.bad_data + st.malformed,
            st.stale_requests,
            st.unknown_rpc
        );
    }
    // The application answers what it still holds; then everything
    // completes or times out, and every byte of state is reclaimed.
    for (port, peer, id) in requests.drain(..) {
        let _ = ep.send_response(now, port, peer, id, Bytes::from_static(b"bye"));
    }
    // Drive time as a runtime would: to the engine's next deadline (the
    // pacer wakes every few microseconds while it has data), at most 50 ms
    // at a time. Fixed 50 ms steps would starve the pacer, which sends only
    // its backlog allowance per wake-up.
    let end = now + Duration::from_secs(120);
    let (mut outputs, mut steps) = (0u64, 0u64);
    while ep.rpc_count() > 0 && now < end {
        let step = Duration::from_millis(50);
        let next = ep.poll_timeout().map_or(now + step, |t| t.min(now + step));
        now = next.max(now + Duration::from_micros(1));
        ep.handle_timeout(now);
        while ep.poll_transmit(now, &mut buf).is_some() {
            outputs += 1;
            assert!(outputs < 10_000_000, "output does not stop");
        }
        while ep.poll_event().is_some() {}
        steps += 1;
        assert!(steps < 2_000_000, "deadlines do not stop");
    }
    assert_eq!(ep.rpc_count(), 0, "every rpc ends");
    assert_eq!(ep.rx_bytes(), 0, "receive buffers reclaimed");
    assert_eq!(ep.rx_used(SERVER_PORT), 0, "socket memory reclaimed");
    assert_eq!(ep.tx_bytes(cport), 0, "send cap reclaimed");
}

/// Builds a well-formed packet from fuzzer input, aimed at the RPC ids in
/// play (responses to our requests, or requests from peers).
fn structured(
    input: &mut Input<'_>,
    ids: &[(u64, SocketAddr)],
    own: u64,
) -> Option<(Vec<u8>, Option<SocketAddr>)> {
    let kind = input.byte()? % 12;
    let id_sel = input.byte()?;
    // Mostly a value that gets past the incarnation checks: ours for
    // requests, the fake servers' for packets about our requests.
    let incarnation = match input.byte()? % 8 {
        0 => 0,
        1 => own ^ 1,
        2 => FAKE_SERVER_INCARNATION + 1,
        _ if id_sel & 0x80 != 0 => FAKE_SERVER_INCARNATION,
        _ => own,
    };
    let (sender_id, dport, to_rpc) = match ids.get(id_sel as usize % (ids.len() + 1)) {
        // The server's side of one of our requests.
        Some(&(id, dest)) if id_sel & 0x80 != 0 => (id | 1, 0x8000, Some(dest)),
        // A request from a peer.
        _ => (2 * (id_sel as u64 % 16) + 2, SERVER_PORT, None),
    };
    let body = match kind.saturating_sub(3) {
        0 => {
            // Mostly small messages on a 1000-byte packet grid, so that
            // a few packets complete one; sometimes anything.
            let class = input.byte()?;
            let len = match class % 4 {
                0 => class as u32 % 100 + 1,
                1 => input.u16()? as u32 % 3000 + 1,
                2 => input.u16()? as u32 % 50_000 + 1,
                _ => input.u32()? % (2 << 20) + 1,
            };
            let offset = if class & 0x40 == 0 {
                (input.byte()? as u32 % 64 * 1000).min(len - 1) / 1000 * 1000
            } else {
                input.u32()? % len
            };
            let incoming = if class & 0x80 == 0 { len } else { input.u32()? };
            let payload = if class & 0x20 == 0 {
                (len - offset).min(1000)
            } else {
                (input.u16()? as u32 % 1500).min(len - offset)
            };
            let h = DataHeader {
                message_length: len,
                incoming,
                ack: AckEntry {
                    client_id: input.byte()? as u64 * 2,
                    server_port: SERVER_PORT,
                },
                cutoff_version: input.byte()? as u16,
                retransmit: input.byte()? & 1 == 1,
                offset,
                oldest_live: input.byte()? as u32,
            };
            let mut v = Repr {
                sport: 0,
                dport,
                sender_id,
                incarnation,
                body: Body::Data(h),
            }
            .to_vec();
            v.extend(input.take(payload as usize));
            v.resize(56 + payload as usize, 0);
            return Some((v, to_rpc));
        }
        1 => Body::Grant(GrantHeader {
            offset: input.u32()?,
            priority: input.byte()?,
        }),
        2 => Body::Resend(ResendHeader {
            offset: input.u32()?,
            length: if input.byte()? & 1 == 0 {
                ResendHeader::ALL
            } else {
                input.u32()?
            },
            priority: Some(input.byte()?),
        }),
        3 => Body::RpcUnknown(RpcUnknownHeader {
            status: UnknownStatus::decode(input.u16()?),
        }),
        4 => Body::Busy,
        5 => {
            let mut cutoffs = [0u32; 8];
            for c in cutoffs.iter_mut() {
                *c = input.u32()?;
            }
            Body::Cutoffs(CutoffsHeader {
                cutoffs,
                version: input.u16()?,
            })
        }
        6 => Body::Freeze,
        7 => Body::NeedAck,
        _ => {
            let n = input.byte()? as usize % 6;
            let acks: Vec<AckEntry> = (0..n)
                .map(|i| AckEntry {
                    client_id: 2 * i as u64 + 2,
                    server_port: SERVER_PORT,
                })
                .collect();
            Body::Ack(AckHeader::new(&acks))
        }
    };
    let v = Repr {
        sport: 0,
        dport,
        sender_id,
        incarnation,
        body,
    }
    .to_vec();
    Some((v, to_rpc))
}

/// Limits of [`cluster_program`]'s endpoints: a short timeout so that a
/// fuzz input covers many timeouts, small messages.
pub fn cluster_config() -> Config {
    Config {
        timeout: Duration::from_millis(40),
        done_id_lifetime: Duration::from_millis(100),
        peer_idle: Duration::from_millis(200),
        max_message_length: 64 << 10,
        max_rx_bytes: 2 << 20,
        max_rx_bytes_per_peer: 1 << 20,
        socket_rx_budget: 1 << 20,
        max_rpcs_per_peer: 16,
        done_ids_per_peer: 32,
        ..Config::default()
    }
}

/// How long [`cluster_program`] gives every RPC to end once the network
/// behaves and the applications answer: the stated bound (a request that
/// waited for a restarted server, plus a timeout, plus a retry).
pub const CLUSTER_BOUND_TIMEOUTS: u32 = 12;

/// Two or three endpoints exchanging RPCs through a network that loses,
/// duplicates, delays and reorders packets and whose hosts crash and
/// restart, all decided by `data`. Checks what one endpoint alone cannot:
/// every response that completes is byte-exact; no request reaches a server
/// application twice, across server restarts too; once the network behaves
/// and the applications answer, every RPC ends within
/// [`CLUSTER_BOUND_TIMEOUTS`] timeouts and every endpoint empties; receive
/// memory, RPCs and peers stay bounded throughout. Panics on a violation.
pub fn cluster_program(data: &[u8]) {
    use std::cell::Cell;
    use std::collections::HashMap;
    use std::rc::Rc;

    use crate::testnet::{Network, Verdict};

    const PORT: u16 = 100;
    let config = cluster_config();
    let mut input = Input { data };
    let hosts = 2 + input.byte().unwrap_or(0) as usize % 2;
    let mut net = Network::new(7);
    for _ in 0..hosts {
        net.add_host(config.clone());
    }
    let mut cports = Vec::new();
    for h in 0..hosts {
        net.endpoint(h).open_socket(PORT).expect("server port");
        cports.push(net.endpoint(h).open_socket(0).expect("client port"));
    }
    // The network's behaviour: per mille of packets lost, duplicated,
    // delayed (up to `delay_max`), held back (released later, shuffled).
    let mode = Rc::new(Cell::new((0u32, 0u32, 0u32, 0u32, 0u64)));
    let m2 = mode.clone();
    net.set_filter(move |_, rng| {
        let (loss, dup, delay, hold, delay_max) = m2.get();
        let x = rng.below(1000) as u32;
        if x < loss {
            Verdict::Drop
        } else if x < loss + dup {
            Verdict::Duplicate
        } else if x < loss + dup + delay {
            Verdict::Delay(Duration::from_micros(rng.below(delay_max.max(1))))
        } else if x < loss + dup + delay + hold {
            Verdict::Hold
        } else {
            Verdict::Deliver
        }
    });
    // Client RPCs outstanding: (host, id) -> (expected response, issued at).
    let mut outstanding: HashMap<(usize, u64), (Vec<u8>, Instant)> = HashMap::new();
    // Requests handed to a server application, by (client address, client
    // id): at most once, whatever happens.
    let mut ran: HashMap<(SocketAddr, u64), u32> = HashMap::new();
    // Requests a server application holds: (port, client, server id, data).
    let mut held: Vec<Vec<(u16, SocketAddr, u64, Bytes)>> = vec![Vec::new(); hosts];
    let mut auto_answer = vec![true; hosts];
    let mut tag = 0u64;
    let handle_events = |net: &mut Network,
                         outstanding: &mut HashMap<(usize, u64), (Vec<u8>, Instant)>,
                         ran: &mut HashMap<(SocketAddr, u64), u32>,
                         held: &mut Vec<Vec<(u16, SocketAddr, u64, Bytes)>>,
                         auto_answer: &[bool]| {
        for h in 0..net.host_count() {
            for ev in net.take_events(h) {
                match ev {
                    Event::Request {
                        port,
                        peer,
                        id,
                        data,
                        ..
                    } => {
                        let n = ran.entry((peer, id ^ 1)).or_insert(0);
                        *n += 1;
                        if std::env::var_os("HOMA_FUZZ_DEBUG").is_some() {
                            eprintln!(
                                "{:?} host {h} runs {:#x} from {peer} ({} B)",
                                net.now(),
                                id ^ 1,
                                data.len()
                            );
                        }
                        assert_eq!(*n, 1, "request {:#x} from {peer} ran twice", id ^ 1);
                        if auto_answer[h] {
                            let now = net.now();
                            let resp = Bytes::from(respond_to(&data));
                            let _ = net.endpoint(h).send_response(now, port, peer, id, resp);
                        } else {
                            held[h].push((port, peer, id, data));
                        }
                    }
                    Event::Response { id, data, .. } => {
                        let (want, _) = outstanding
                            .remove(&(h, id))
                            .expect("a response for an rpc we issued");
                        assert!(data[..] == want[..], "response bytes differ");
                    }
                    Event::Failed { id, .. } => {
                        outstanding
                            .remove(&(h, id))
                            .expect("a failure for an rpc we issued");
                    }
                    Event::Writable { .. } => {}
                }
            }
        }
    };
    let check_bounds = |net: &mut Network| {
        for h in 0..net.host_count() {
            let ep = net.endpoint(h);
            assert!(ep.rx_bytes() <= config.max_rx_bytes, "receive memory bound");
            assert!(ep.peer_count() <= config.max_peers + 8, "peer bound");
            assert!(
                ep.rpc_count() <= 4 * config.max_rpcs_per_peer as usize * 8 + 256,
                "rpc bound: {}",
                ep.rpc_count()
            );
        }
    };
    let debug = std::env::var_os("HOMA_FUZZ_DEBUG").is_some();
    while let Some(op) = input.byte() {
        if debug {
            eprintln!("{:?} op {}", net.now(), op % 12);
        }
        match op % 12 {
            0..=3 => {
                // A request from one host to another's server.
                let c = input.byte().unwrap_or(0) as usize % hosts;
                let s = (c + 1 + input.byte().unwrap_or(0) as usize % (hosts - 1)) % hosts;
                let len = match input.byte().unwrap_or(0) % 4 {
                    0 => 1 + input.byte().unwrap_or(0) as usize,
                    1 => 1 + input.u16().unwrap_or(0) as usize % 3000,
                    _ => 1 + input.u16().unwrap_or(0) as usize % (60 << 10),
                };
                tag += 1;
                let req = tagged(tag, len);
                let dest = net.addr(s, PORT);
                let now = net.now();
                if let Ok(id) =
                    net.endpoint(c)
                        .send_request(now, cports[c], dest, Bytes::from(req.clone()))
                {
                    outstanding.insert((c, id), (respond_to(&req), now));
                }
            }
            4 | 5 => {
                let d = Duration::from_micros(1 + (input.byte().unwrap_or(0) as u64).pow(2) * 20);
                net.advance(d);
            }
            6 => {
                // A server application answers (or discards) what it holds.
                let h = input.byte().unwrap_or(0) as usize % hosts;
                let discard = input.byte().unwrap_or(0) % 4 == 0;
                if let Some((port, peer, id, data)) = held[h].pop() {
                    let now = net.now();
                    let ep = net.endpoint(h);
                    if discard {
                        let _ = ep.discard_request(port, peer, id);
                    } else {
                        let _ =
                            ep.send_response(now, port, peer, id, Bytes::from(respond_to(&data)));
                    }
                }
            }
            7 => {
                let h = input.byte().unwrap_or(0) as usize % hosts;
                auto_answer[h] = !auto_answer[h];
            }
            8 => {
                // A host crashes and restarts at once on the same ports: its
                // applications' state is gone with it.
                let h = input.byte().unwrap_or(0) as usize % hosts;
                if debug {
                    eprintln!("{:?} restart host {h}", net.now());
                }
                net.restart_host(h, config.clone());
                net.endpoint(h).open_socket(PORT).expect("server port");
                cports[h] = net.endpoint(h).open_socket(0).expect("client port");
                outstanding.retain(|k, _| k.0 != h);
                held[h].clear();
            }
            9 => net.release_held_shuffled(),
            10 => {
                let b = [
                    input.byte().unwrap_or(0),
                    input.byte().unwrap_or(0),
                    input.byte().unwrap_or(0),
                    input.byte().unwrap_or(0),
                ];
                let per_mille = |x: u8| (x as u32 % 8) * (x as u32 % 8) * 4;
                let delay_max = 1 + (input.byte().unwrap_or(0) as u64) * 400;
                mode.set((
                    per_mille(b[0]),
                    per_mille(b[1]),
                    per_mille(b[2]),
                    per_mille(b[3]) / 4,
                    delay_max,
                ));
            }
            _ => {
                let h = input.byte().unwrap_or(0) as usize % hosts;
                let d = Duration::from_micros(input.byte().unwrap_or(0) as u64 * 500);
                net.pause_host(h, d);
            }
        }
        handle_events(
            &mut net,
            &mut outstanding,
            &mut ran,
            &mut held,
            &auto_answer,
        );
        check_bounds(&mut net);
    }
    // The network behaves from now on, held packets arrive, and the
    // applications answer everything.
    mode.set((0, 0, 0, 0, 0));
    net.release_held_shuffled();
    auto_answer.iter_mut().for_each(|a| *a = true);
    let quiet = net.now();
    let bound = quiet + config.timeout * CLUSTER_BOUND_TIMEOUTS;
    let mut steps = 0u64;
    while net.now() < bound + config.peer_idle * 4 {
        for (h, list) in held.iter_mut().enumerate() {
            for (port, peer, id, data) in list.drain(..) {
                let now = net.now();
                let _ = net.endpoint(h).send_response(
                    now,
                    port,
                    peer,
                    id,
                    Bytes::from(respond_to(&data)),
                );
            }
        }
        handle_events(
            &mut net,
            &mut outstanding,
            &mut ran,
            &mut held,
            &auto_answer,
        );
        check_bounds(&mut net);
        if net.now() >= bound {
            assert!(
                outstanding.is_empty(),
                "{} rpcs still alive {:?} after the network healed: {:?}",
                outstanding.len(),
                config.timeout * CLUSTER_BOUND_TIMEOUTS,
                outstanding.values().map(|v| v.1).collect::<Vec<_>>()
            );
        }
        if outstanding.is_empty() && net.rpcs_alive() == 0 {
            break;
        }
        if !net.step() {
            net.advance(config.tick);
        }
        steps += 1;
        assert!(steps < 5_000_000, "the network does not quiet down");
    }
    assert!(outstanding.is_empty());
    assert_eq!(net.rpcs_alive(), 0, "every rpc ends, on every host");
    for h in 0..hosts {
        assert_eq!(net.endpoint(h).rx_bytes(), 0, "receive buffers reclaimed");
    }
}

/// Request bytes: a tag, then a pattern derived from it.
fn tagged(tag: u64, len: usize) -> Vec<u8> {
    let mut rng = crate::Rng::new(tag);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// The response a server sends for a request: every byte inverted, plus one
/// byte of the request's length (so sizes differ too).
fn respond_to(req: &[u8]) -> Vec<u8> {
    let mut v: Vec<u8> = req.iter().map(|b| !b).collect();
    v.push(req.len() as u8);
    v
}

/// Every RPC's silence mark (its id, the level it waits at and the link
/// time taken at that level or above when its last accepted DATA packet
/// arrived), sorted by id: for tests that compare two endpoints' state.
pub fn silence_marks(ep: &crate::Endpoint) -> Vec<(u64, u8, u64)> {
    let mut v: Vec<_> = ep
        .rpcs
        .iter()
        .map(|(_, r)| (r.id, r.quiet_mark.0, r.quiet_mark.1))
        .collect();
    v.sort_unstable();
    v
}
