//! Helpers shared by the loopback tests.
#![allow(dead_code)]

pub mod process;

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use homa_transport::{Config, Error, Socket};

/// Generous safety net: a call that needs longer has hung (no test relies
/// on it expiring).
pub const HANG: Duration = Duration::from_secs(60);

/// A message of `len` bytes whose content depends on `len` and `tag`, so a
/// response mixed up with another call's cannot pass a comparison.
pub fn pattern(len: usize, tag: u64) -> Vec<u8> {
    let mut x = tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ len as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An echo server on `addr` in its own thread; returns the socket (close it
/// to stop the thread) and the thread.
pub fn echo_server(addr: &str, mut config: Config) -> (Socket, JoinHandle<u64>) {
    config.server = Some(true);
    let sock = Socket::bind_with(addr, config).unwrap();
    let s = sock.clone();
    let h = std::thread::spawn(move || {
        let mut served = 0;
        loop {
            match s.recv_request() {
                Ok(r) => {
                    s.reply(r.peer, r.id, r.body).unwrap();
                    served += 1;
                }
                Err(Error::Closed) => return served,
                Err(e) => panic!("server: {e}"),
            }
        }
    });
    (sock, h)
}

/// Sends each size once and checks the echo byte for byte.
pub fn check_echo_sizes(client: &Socket, server: SocketAddr, sizes: &[usize]) {
    for (i, &len) in sizes.iter().enumerate() {
        let req = pattern(len, i as u64);
        let resp = client
            .call_timeout(server, req.clone(), HANG)
            .unwrap_or_else(|e| panic!("{len}-byte call failed: {e}"));
        assert_eq!(resp.len(), len, "length of {len}-byte echo");
        assert!(resp[..] == req[..], "{len}-byte echo differs");
    }
}

/// A socket on an ephemeral port of `addr` that accepts requests.
pub fn server_socket(addr: &str) -> Socket {
    let mut config = Config::default();
    config.server = Some(true);
    Socket::bind_with(addr, config).unwrap()
}

/// `config` with protocol timers far longer than any scheduling delay a
/// loaded test machine produces. For tests that put 1000 calls on one
/// socket at once: their first responses may come only after the 5 ms
/// resend timer, and the protocol's per-RPC RESENDs (no per-peer limit,
/// as in the kernel module) then flood the peer's socket buffer. Nothing
/// is lost on loopback otherwise, so the tests stay about what they claim.
pub fn patient(mut config: Config) -> Config {
    config.proto.resend_after = Duration::from_secs(5);
    config.proto.resend_interval = Duration::from_secs(5);
    config.proto.need_ack_after = Duration::from_secs(5);
    config.proto.timeout = Duration::from_secs(60);
    config.proto.done_id_lifetime = Duration::from_secs(120);
    config
}

/// A current-thread tokio runtime with I/O and timers.
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A free UDP port on `ip` with nothing bound to it (bound and released).
pub fn free_port(ip: &str) -> SocketAddr {
    let s = std::net::UdpSocket::bind((ip, 0)).unwrap();
    s.local_addr().unwrap()
}

/// A plain UDP socket that reports each datagram's TOS / traffic-class
/// byte (`IP_RECVTOS` / `IPV6_RECVTCLASS`), read through the runtime's own
/// receive path (`homa_sys::udp::recv_batch`).
pub struct TosReader {
    pub sock: std::net::UdpSocket,
    batch: homa_sys::udp::RecvBatch,
}

impl TosReader {
    pub fn bind(addr: SocketAddr) -> TosReader {
        use std::os::fd::AsFd;
        let sock = std::net::UdpSocket::bind(addr).unwrap();
        let v6 = sock.local_addr().unwrap().is_ipv6();
        homa_sys::udp::enable_recv_tos(sock.as_fd(), v6).unwrap();
        sock.set_nonblocking(true).unwrap();
        TosReader {
            sock,
            batch: homa_sys::udp::RecvBatch::new(1, 1 << 16),
        }
    }

    /// The next datagram (waiting up to [`HANG`]): bytes, source, TOS byte.
    pub fn recv(&mut self) -> (Vec<u8>, SocketAddr, u8) {
        use std::os::fd::AsFd;
        loop {
            let [r] = homa_sys::wait::poll([(self.sock.as_fd(), false)], Some(HANG)).unwrap();
            assert!(r.readable, "no datagram within {HANG:?}");
            match homa_sys::udp::recv_batch(self.sock.as_fd(), &mut self.batch, 1) {
                Ok(0) => continue,
                Ok(_) => {
                    let (meta, data) = self.batch.get(0);
                    return (
                        data.to_vec(),
                        meta.src.expect("an IP source"),
                        meta.tos.expect("TOS control message"),
                    );
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
    }
}

/// Two namespaces "a" and "b" in `lab`, linked by a veth pair with
/// addresses `10.<subnet>.0.1` (a) and `10.<subnet>.0.2` (b): the
/// namespaces' names and the two addresses.
pub fn two_hosts(lab: &mut homa_lab::Lab, subnet: u8) -> (String, String, String, String) {
    let a = lab.namespace("a").unwrap();
    let b = lab.namespace("b").unwrap();
    let (ca, sb) = (format!("10.{subnet}.0.1"), format!("10.{subnet}.0.2"));
    lab.link(&a, &format!("{ca}/24"), &b, &format!("{sb}/24"))
        .unwrap();
    (a, b, ca, sb)
}
