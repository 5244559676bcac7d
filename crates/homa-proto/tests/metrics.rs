//! Metrics: the counters of a scripted exchange are exactly what the
//! protocol must have done.
#![allow(non_snake_case)]

mod common;

use bytes::Bytes;
use common::*;
use homa_proto::stats::SizeBuckets;
use homa_proto::testnet::Limits;
use homa_proto::wire::PacketType::*;
use homa_proto::{Config, Event};

#[test]
fn metrics__scripted_exchange_counts_exactly() {
    let config = Config::default();
    let (mut net, cport, server) = client_and_server(31, &config);
    // A 100-byte request answered by a 3000-byte response (3 packets of at
    // most 1416 bytes, all unscheduled: no grants).
    request(&mut net, 0, cport, server, pattern(1, 100));
    net.run_until(
        Limits::default(),
        |net, h, ev| {
            if let Event::Request { port, peer, id, .. } = ev {
                respond(net, h, port, peer, id, pattern(2, 3000));
            }
        },
        |net| net.rpcs_alive() == 0,
    )
    .unwrap();
    let c = net.endpoint(0).metrics();
    let s = net.endpoint(1).metrics();
    // Client: 1 DATA out; the response's 3 DATA in. The server's CUTOFFS
    // (provoked by version 0 in our DATA) in, ours out for its DATA; the
    // server's NEED_ACK in, our ACK out.
    assert_eq!(c.stats.sent.packets_of(Data), 1);
    assert_eq!(c.stats.received.packets_of(Data), 3);
    assert_eq!(c.stats.received.packets_of(Cutoffs), 1);
    assert_eq!(c.stats.sent.packets_of(Cutoffs), 1);
    assert_eq!(c.stats.received.packets_of(NeedAck), 1);
    assert_eq!(c.stats.sent.packets_of(Ack), 1);
    assert_eq!(
        c.stats.sent.packets_of(Grant) + s.stats.sent.packets_of(Grant),
        0
    );
    assert_eq!(c.stats.sent.bytes[Data.index()], 56 + 100);
    assert_eq!(c.stats.received.bytes[Data.index()], 3 * 56 + 3000);
    // Mirror image on the server.
    assert_eq!(s.stats.received.packets_of(Data), 1);
    assert_eq!(s.stats.sent.packets_of(Data), 3);
    assert_eq!(s.stats.need_acks, 1);
    assert_eq!(s.stats.server_rpcs_acked, 1);
    // Message counts and sizes.
    assert_eq!(c.stats.requests_started, 1);
    assert_eq!(c.stats.responses_delivered, 1);
    assert_eq!(s.stats.requests_delivered, 1);
    assert_eq!(s.stats.responses_started, 1);
    assert_eq!(c.stats.tx_sizes.counts[SizeBuckets::bucket(100)], 1);
    assert_eq!(c.stats.rx_sizes.counts[SizeBuckets::bucket(3000)], 1);
    assert_eq!(c.stats.rx_sizes.total(), 1);
    assert_eq!(s.stats.rx_sizes.bytes[SizeBuckets::bucket(100)], 100);
    // Nothing went wrong, and nothing is left.
    for m in [&c, &s] {
        assert_eq!(m.stats.data_retransmitted, 0);
        assert_eq!(m.stats.timeouts, 0);
        assert_eq!(m.stats.malformed, 0);
        assert_eq!(m.client_rpcs + m.server_rpcs, 0);
        assert_eq!(m.rx_bytes, 0);
    }
    // No round trip measured: nothing was granted, and the response is no
    // round-trip answer (it waits for the server's application).
    assert!(c.min_rtt_nanos.is_none());
}

#[test]
fn size_buckets__powers_of_two() {
    assert_eq!(SizeBuckets::bucket(1), 0);
    assert_eq!(SizeBuckets::bucket(2), 1);
    assert_eq!(SizeBuckets::bucket(3), 2);
    assert_eq!(SizeBuckets::bucket(4), 2);
    assert_eq!(SizeBuckets::bucket(5), 3);
    assert_eq!(SizeBuckets::bucket(1 << 20), 20);
    assert_eq!(SizeBuckets::bucket((1 << 20) + 1), 21);
    assert_eq!(SizeBuckets::upper_bound(21), 1 << 21);
}

#[test]
fn metrics__throttled_time_counts_pacer_holds() {
    let config = Config {
        link_mbps: 1000,
        ..Config::default()
    };
    let (mut net, cport, server) = client_and_server(32, &config);
    request(&mut net, 0, cport, server, Bytes::from(vec![0u8; 100_000]));
    net.run(Limits::default(), |net, h, ev| {
        if let Event::Request { port, peer, id, .. } = ev {
            respond(net, h, port, peer, id, Bytes::from_static(b"k"));
        }
    })
    .unwrap();
    let m = net.endpoint(0).metrics();
    // 100 KB at 1 Gbit/s takes 0.8 ms; nearly all of it waiting for the
    // link, batch after batch.
    assert!(m.stats.throttled > 10);
    assert!(
        m.stats.throttled_nanos > 500_000,
        "{}",
        m.stats.throttled_nanos
    );
}
