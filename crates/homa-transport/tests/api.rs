//! The library's ergonomics (issue 16.6): host names where addresses go,
//! borrowed bodies, the same operation names in both APIs, `Config` by
//! builder, `Bytes` re-exported.
#![allow(non_snake_case)]

mod common;

use std::time::Duration;

use common::{echo_server, HANG};
use homa_transport::{AsyncSocket, Bytes, Config, Error, IntoMessage, Socket};

#[test]
fn host_names__bind_and_call_by_name() {
    let (server, h) = echo_server("127.0.0.1:0", Config::default());
    let port = server.local_addr().port();
    let client = Socket::bind("localhost:0").unwrap();
    assert!(client.local_addr().ip().is_loopback());
    let r = client.call_timeout(("localhost", port), "by name", HANG);
    assert_eq!(&r.unwrap()[..], b"by name");
    let r = client.call_timeout(format!("127.0.0.1:{port}"), "by string", HANG);
    assert_eq!(&r.unwrap()[..], b"by string");
    assert!(matches!(
        client.call("no-such-host.invalid:9", "x"),
        Err(Error::Io(_))
    ));
    server.close();
    assert_eq!(h.join().unwrap(), 2);
}

#[test]
fn bodies__borrowed_data_is_copied_and_owned_data_moved() {
    let (server, h) = echo_server("127.0.0.1:0", Config::default());
    let dest = server.local_addr();
    let client = Socket::bind("127.0.0.1:0").unwrap();
    // A body that lives on this stack frame only: no 'static needed.
    let local: Vec<u8> = (0..200u8).collect();
    let r = client.call_timeout(dest, &local[..], HANG).unwrap();
    assert_eq!(&r[..], &local[..]);
    let r = client.call_timeout(dest, &local, HANG).unwrap();
    assert_eq!(&r[..], &local[..]);
    let r = client.call_timeout(dest, b"array", HANG).unwrap();
    assert_eq!(&r[..], b"array");
    let r: Bytes = client.call_timeout(dest, local, HANG).unwrap();
    assert_eq!(r.len(), 200);
    assert_eq!(&String::from("s").into_message()[..], b"s");
    server.close();
    assert_eq!(h.join().unwrap(), 4);
}

#[test]
fn config__builder_from_default() {
    let config = Config::default()
        .with_busy_poll(Duration::ZERO)
        .with_server(true)
        .with_proto(|p| p.timeout = Duration::from_millis(700));
    assert_eq!(config.proto.timeout, Duration::from_millis(700));
    assert_eq!(config.busy_poll, Duration::ZERO);
    let s = Socket::bind_with("127.0.0.1:0", config).unwrap();
    // A port-0 socket that accepts requests (server: Some(true)).
    assert!(s.try_recv_request().unwrap().is_none());
}

/// Room for two 50 kB messages under the send cap, not three.
fn capped() -> Config {
    let mut c = Config::default();
    c.proto.max_tx_bytes_per_socket = 120_000;
    c
}

#[test]
fn names__try_start_call_never_waits_in_either_api() {
    let silent = common::server_socket("127.0.0.1:0");
    let dest = silent.local_addr();
    let client = Socket::bind_with("127.0.0.1:0", capped()).unwrap();
    let _a = client.start_call(dest, vec![1u8; 50_000]).unwrap();
    let _b = client.start_call(dest, vec![2u8; 50_000]).unwrap();
    assert!(matches!(
        client.try_start_call(dest, vec![3u8; 50_000]),
        Err(Error::WouldBlock)
    ));
    assert!(matches!(
        client.try_start_call_timeout(dest, vec![3u8; 50_000], HANG),
        Err(Error::WouldBlock)
    ));
    common::current_thread().block_on(async {
        let client = AsyncSocket::bind_with("127.0.0.1:0", capped()).unwrap();
        let _a = client.start_call(dest, vec![1u8; 50_000]).await.unwrap();
        let _b = client.start_call(dest, vec![2u8; 50_000]).await.unwrap();
        assert!(matches!(
            client.try_start_call(dest, vec![3u8; 50_000]),
            Err(Error::WouldBlock)
        ));
        // The waiting form waits, here until its deadline.
        let r = client
            .start_call_timeout(dest, vec![3u8; 50_000], Duration::from_millis(50))
            .await;
        assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
    });
}

#[test]
#[allow(deprecated)]
fn names__async_send_request_is_an_alias_of_start_call() {
    let (server, h) = echo_server("127.0.0.1:0", Config::default());
    let dest = server.local_addr();
    common::current_thread().block_on(async {
        let client = AsyncSocket::bind("127.0.0.1:0").unwrap();
        let call = client.send_request(dest, "old name").await.unwrap();
        assert_eq!(&call.await.unwrap()[..], b"old name");
    });
    server.close();
    assert_eq!(h.join().unwrap(), 1);
}

#[test]
fn async_recv_request_timeout__returns_none_without_a_tokio_timer() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = Config::default().with_server(true);
        let server = AsyncSocket::bind_with("127.0.0.1:0", config).unwrap();
        let t0 = std::time::Instant::now();
        let r = server
            .recv_request_timeout(Duration::from_millis(30))
            .await
            .unwrap();
        assert!(r.is_none());
        assert!(t0.elapsed() >= Duration::from_millis(30));
        assert!(server.try_recv_request().unwrap().is_none());
        // A request that arrives is returned by both forms.
        let client = AsyncSocket::bind("127.0.0.1:0").unwrap();
        let _call = client.start_call(server.local_addr(), "q").await.unwrap();
        let req = server.recv_request_timeout(HANG).await.unwrap().unwrap();
        assert_eq!(&req.body[..], b"q");
    });
}
