//! Clear errors for careless use, over loopback: a socket that accepts no
//! requests says so at once instead of waiting forever.
#![allow(non_snake_case)]

mod common;

use std::time::Duration;

use homa_transport::{AsyncSocket, Config, Error, Socket};

#[test]
fn port_zero_socket__recv_request_fails_at_once_with_client_only() {
    let s = Socket::bind("127.0.0.1:0").unwrap();
    // Without the check each of these waited: forever, 10 s, or returned
    // "nothing yet".
    assert!(matches!(s.recv_request(), Err(Error::ClientOnly)));
    assert!(matches!(
        s.recv_request_timeout(Duration::from_secs(10)),
        Err(Error::ClientOnly)
    ));
    assert!(matches!(s.try_recv_request(), Err(Error::ClientOnly)));
    let msg = Error::ClientOnly.to_string();
    assert!(
        msg.contains("port 0") && msg.contains("Config::server"),
        "{msg}"
    );
}

#[test]
fn client_only_config__refuses_requests_on_a_fixed_port_too() {
    let port = common::free_port("127.0.0.1");
    let mut config = Config::default();
    config.server = Some(false);
    let s = Socket::bind_with(port, config).unwrap();
    assert!(matches!(s.try_recv_request(), Err(Error::ClientOnly)));
}

#[test]
fn port_zero_socket__async_recv_request_fails_at_once() {
    common::current_thread().block_on(async {
        let s = AsyncSocket::bind("127.0.0.1:0").unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), s.recv_request())
            .await
            .expect("recv_request returned at once");
        assert!(matches!(r, Err(Error::ClientOnly)));
    });
}

#[test]
fn port_zero_socket__with_server_config_still_serves() {
    let (server, h) = common::echo_server("127.0.0.1:0", Config::default());
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let r = client.call_timeout(server.local_addr(), &b"ping"[..], common::HANG);
    assert_eq!(&r.unwrap()[..], b"ping");
    server.close();
    assert_eq!(h.join().unwrap(), 1);
}

/// A call to port 0, which no socket can have, fails at once as an invalid
/// argument (it used to be sent and end with `PeerTimeout` a second later).
#[test]
fn call_to_port_zero__fails_at_once_as_invalid_input() {
    let s = Socket::bind("127.0.0.1:0").unwrap();
    let t = std::time::Instant::now();
    let r = s.call_timeout("127.0.0.1:0", &b"x"[..], Duration::from_secs(5));
    match r {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_millis(500));
    assert_eq!(s.metrics().proto.stats.requests_started, 0);
}

/// A socket bound to an IPv6 address cannot reach IPv4 destinations: the
/// call says so at once (it failed as `NetworkUnreachable`, the kernel's
/// answer to the send). The wildcard socket reaches them (IPv4-mapped).
#[test]
fn ipv6_socket__ipv4_destination_is_an_address_family_error() {
    let Ok(s) = Socket::bind("[::1]:0") else {
        panic!("IPv6 loopback unavailable: not checked");
    };
    let r = s.call_timeout("127.0.0.1:9", &b"x"[..], Duration::from_secs(5));
    assert!(matches!(r, Err(Error::AddressFamily)), "{r:?}");
    let wild = Socket::bind("[::]:0").unwrap();
    let r = wild.call_timeout("127.0.0.1:9", &b"x"[..], Duration::from_secs(5));
    assert!(matches!(r, Err(Error::PortUnreachable)), "{r:?}");
}
