//! `Endpoint::handle_datagram_batch_at_level` (a GRO batch in one call)
//! against the same datagrams handed over one by one: two pairs of
//! endpoints with the same seeds run in lockstep, one pair receiving every
//! transmit as a batch, the other packet by packet, over links that lose,
//! duplicate and reorder the same segments. Every transmit, event and
//! counter of the two pairs must be identical.
#![allow(non_snake_case)]

use std::net::SocketAddr;

use bytes::Bytes;
use homa_proto::fuzzing::silence_marks;
use homa_proto::{Config, Endpoint, Event, Instant, Rng};

/// One side: the batch endpoint and its per-packet twin.
struct Twin {
    batch: Endpoint,
    single: Endpoint,
    addr: SocketAddr,
}

impl Twin {
    fn new(config: &Config, seed: u64, addr: SocketAddr, server: bool) -> Twin {
        let open = || {
            let mut ep = Endpoint::new(config.clone(), seed).unwrap();
            ep.open_socket(addr.port()).unwrap();
            ep.set_server(addr.port(), server).unwrap();
            ep
        };
        Twin {
            batch: open(),
            single: open(),
            addr,
        }
    }

    /// Both endpoints' next transmits, which must be identical: the
    /// segments (as sent) and the segment size.
    fn transmits(&mut self, now: Instant) -> Vec<(SocketAddr, Vec<u8>, usize)> {
        let mut out = Vec::new();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        loop {
            let ta = self.batch.poll_transmit(now, &mut a);
            let tb = self.single.poll_transmit(now, &mut b);
            assert_eq!(ta, tb, "transmits differ");
            assert!(a == b, "transmitted bytes differ");
            let Some(t) = ta else { break };
            out.push((t.destination, a.clone(), t.segment_size.unwrap_or(a.len())));
        }
        out
    }

    /// Delivers one transmit, mangled by `mangle`, to both endpoints.
    fn receive(&mut self, now: Instant, from: SocketAddr, segments: &[Vec<u8>], seg: usize) {
        let batch: Vec<u8> = segments.concat();
        self.batch
            .handle_datagram_batch_at_level(now, from, Some(3), &batch, seg);
        for s in segments {
            self.single.handle_datagram_at_level(now, from, Some(3), s);
        }
        // Before any grant pass: the grant accounting and the round-trip
        // samples agree too.
        assert_eq!(self.batch.metrics(), self.single.metrics(), "state differs");
        let incoming = |ep: &Endpoint| {
            let mut v: Vec<_> = ep
                .incoming_messages()
                .map(|m| (m.id, m.received, m.granted))
                .collect();
            v.sort_unstable();
            v
        };
        assert_eq!(incoming(&self.batch), incoming(&self.single));
        // The silence marks too (a run takes its mark once, at its end, or
        // before a dropped packet of it).
        assert_eq!(
            silence_marks(&self.batch),
            silence_marks(&self.single),
            "silence marks differ"
        );
    }

    fn events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(e) = self.batch.poll_event() {
            assert_eq!(Some(&e), self.single.poll_event().as_ref(), "events differ");
            out.push(e);
        }
        assert!(self.single.poll_event().is_none(), "events differ");
        out
    }

    fn check(&mut self, now: Instant) {
        self.batch.handle_timeout(now);
        self.single.handle_timeout(now);
        assert_eq!(self.batch.stats(), self.single.stats(), "counters differ");
        assert_eq!(self.batch.poll_timeout(), self.single.poll_timeout());
    }
}

/// The segments of a transmit after the link: full segments may be lost,
/// duplicated or swapped (the short last one stays last, as in a GRO
/// batch).
fn mangle(rng: &mut Rng, buf: &[u8], seg: usize, faults: bool) -> Vec<Vec<u8>> {
    let mut segs: Vec<Vec<u8>> = buf.chunks(seg).map(<[u8]>::to_vec).collect();
    if !faults || segs.len() < 3 {
        return segs;
    }
    let last = if segs.last().unwrap().len() < seg {
        segs.pop()
    } else {
        None
    };
    let n = segs.len();
    match rng.next_u64() % 8 {
        0 => {
            segs.remove((rng.next_u64() % n as u64) as usize);
        }
        1 => {
            let i = (rng.next_u64() % n as u64) as usize;
            let d = segs[i].clone();
            segs.insert(i, d);
        }
        2 => {
            let i = (rng.next_u64() % n as u64) as usize;
            let j = (rng.next_u64() % n as u64) as usize;
            segs.swap(i, j);
        }
        _ => {}
    }
    segs.extend(last);
    segs
}

fn lockstep(faults: bool, seed: u64) {
    // Grants needed beyond 60 kB (fixed unscheduled bytes), so runs end
    // with grant updates that the grant scheduler acts on.
    let config = Config {
        unsched_from_rtt: false,
        unsched_bytes: 60_000,
        // A tight incoming budget: grants follow the scheduler's
        // accounting of what arrived closely.
        max_incoming: 150_000,
        ..Config::default()
    };
    let a_addr: SocketAddr = "10.0.0.1:4000".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:5000".parse().unwrap();
    let mut a = Twin::new(&config, 11, a_addr, false);
    let mut b = Twin::new(&config, 22, b_addr, true);
    let mut rng = Rng::new(seed);
    let sizes = [100usize, 3_000, 60_000, 300_000, 1_000_000];
    let mut now = Instant::from_nanos(1_000);
    let mut ids = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        let data: Bytes = (0..len).map(|x| (x * 31 + i) as u8).collect();
        let x = a
            .batch
            .send_request(now, a_addr.port(), b_addr, data.clone())
            .unwrap();
        let y = a
            .single
            .send_request(now, a_addr.port(), b_addr, data)
            .unwrap();
        assert_eq!(x, y);
        ids.push(x);
    }
    let mut responses = 0;
    let mut batches = 0;
    for _ in 0..200_000 {
        now = Instant::from_nanos(now.as_nanos() + 2_000);
        for (from, to) in [(0, 1), (1, 0)] {
            let (src, dst) = if from == 0 {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            let src_addr = src.addr;
            for (dest, buf, seg) in src.transmits(now) {
                assert_eq!(dest, dst.addr);
                let segs = mangle(&mut rng, &buf, seg, faults);
                batches += usize::from(segs.len() > 1);
                dst.receive(now, src_addr, &segs, seg);
            }
            let _ = to;
        }
        for e in b.events() {
            if let Event::Request {
                port,
                peer,
                id,
                data,
                ..
            } = e
            {
                let reply = data.slice(..data.len().min(2_000_000));
                b.batch
                    .send_response(now, port, peer, id, reply.clone())
                    .unwrap();
                b.single.send_response(now, port, peer, id, reply).unwrap();
            }
        }
        for e in a.events() {
            match e {
                Event::Response { id, data, .. } => {
                    let i = ids.iter().position(|&x| x == id).unwrap();
                    assert_eq!(data.len(), sizes[i]);
                    assert!(data
                        .iter()
                        .enumerate()
                        .all(|(x, &v)| v == (x * 31 + i) as u8));
                    responses += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        a.check(now);
        b.check(now);
        if responses == sizes.len() {
            break;
        }
    }
    assert_eq!(responses, sizes.len(), "every RPC completes");
    assert!(batches > 50, "GRO batches were exercised: {batches}");
    let grants = a.batch.stats().grants + b.batch.stats().grants;
    assert!(grants > 20, "grants were exercised: {grants}");
}

#[test]
fn batch__same_as_one_by_one_on_a_clean_link() {
    lockstep(false, 1);
}

#[test]
fn batch__same_as_one_by_one_with_loss_duplicates_and_reordering() {
    for seed in 1..=4 {
        lockstep(true, seed);
    }
}
