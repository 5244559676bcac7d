//! Output commit over real sockets: `plug`, `release_one` and `release_all`
//! on both APIs. Held messages never reach the wire (the DATA counters
//! prove it without waiting for anything), released epochs go out in
//! order, and after `release_all` sends are no longer held.
#![allow(non_snake_case)]

mod common;

use common::{echo_server, pattern, HANG};
use homa_proto::wire::PacketType;
use homa_transport::{AsyncSocket, Config, Error, Socket};

/// DATA packets a socket put on the wire, retransmissions excluded.
fn data_sent(m: &homa_transport::Metrics) -> u64 {
    let s = &m.proto.stats;
    s.sent.packets_of(PacketType::Data) - s.data_retransmitted
}

#[test]
fn output_commit__client_requests_leave_only_with_their_epoch() {
    let (server, h) = echo_server("127.0.0.1:0", Config::default());
    let dest = server.local_addr();
    let client = Socket::bind("127.0.0.1:0").unwrap();
    assert_eq!(client.release_one().unwrap(), 0, "nothing is held yet");

    client.plug().unwrap();
    let a = client.start_call(dest, pattern(100, 1)).unwrap();
    let a2 = client.start_call(dest, pattern(200, 2)).unwrap();
    client.plug().unwrap();
    let mut b = client.start_call(dest, pattern(100, 3)).unwrap();
    assert_eq!(
        data_sent(&client.metrics()),
        0,
        "held requests left the socket"
    );

    // The first epoch (two requests) goes; the second stays held.
    assert_eq!(client.release_one().unwrap(), 2);
    assert_eq!(
        client.release_one().unwrap(),
        0,
        "the open epoch is not closed"
    );
    assert_eq!(&a.wait().unwrap()[..], &pattern(100, 1)[..]);
    assert_eq!(&a2.wait().unwrap()[..], &pattern(200, 2)[..]);
    assert!(!b.is_done());
    assert_eq!(data_sent(&client.metrics()), 2);

    // release_all lets the rest go and stops holding.
    assert_eq!(client.release_all().unwrap(), 1);
    assert_eq!(
        &b.wait_timeout(HANG).unwrap().unwrap()[..],
        &pattern(100, 3)[..]
    );
    let r = client.call_timeout(dest, pattern(50, 4), HANG).unwrap();
    assert_eq!(&r[..], &pattern(50, 4)[..]);
    assert_eq!(client.release_all().unwrap(), 0);

    server.close();
    assert_eq!(h.join().unwrap(), 4);
    client.close();
    assert!(matches!(client.plug(), Err(Error::Closed)));
}

#[test]
fn output_commit__server_response_is_invisible_until_released() {
    let mut config = Config::default();
    config.server = Some(true);
    let server = Socket::bind_with("127.0.0.1:0", config).unwrap();
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let mut call = client
        .start_call(server.local_addr(), pattern(1000, 7))
        .unwrap();
    let req = server.recv_request_timeout(HANG).unwrap().expect("request");
    server.plug().unwrap();
    server.reply(req.peer, req.id, req.body.clone()).unwrap();
    assert_eq!(
        data_sent(&server.metrics()),
        0,
        "a held response left the socket"
    );
    assert!(!call.is_done());
    assert_eq!(server.release_all().unwrap(), 1);
    assert_eq!(data_sent(&server.metrics()), 1);
    assert_eq!(
        &call.wait_timeout(HANG).unwrap().unwrap()[..],
        &pattern(1000, 7)[..]
    );
}

#[test]
fn output_commit__tokio_plug_and_release() {
    let (server, h) = echo_server("127.0.0.1:0", Config::default());
    let dest = server.local_addr();
    let rt = common::current_thread();
    rt.block_on(async {
        let client = AsyncSocket::bind("127.0.0.1:0").unwrap();
        client.plug().unwrap();
        let call = client.start_call(dest, pattern(100, 1)).await.unwrap();
        assert_eq!(data_sent(&client.metrics()), 0);
        assert_eq!(client.release_all().unwrap(), 1);
        let r = tokio::time::timeout(HANG, call).await.unwrap().unwrap();
        assert_eq!(&r[..], &pattern(100, 1)[..]);
    });
    server.close();
    assert_eq!(h.join().unwrap(), 1);
}
