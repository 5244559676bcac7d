//! The priority of every packet reaches the wire in its TOS / traffic-class
//! byte, whichever way the runtime sets it (a socket option it changes only
//! when the level changes, or a control message), for IPv4, IPv6 and
//! IPv4-mapped destinations of a dual-stack socket.
#![allow(non_snake_case)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::HANG;
use homa_proto::wire::{Body, PacketType, Repr, ResendHeader};
use homa_transport::Socket;

/// A plain UDP socket that reports each datagram's TOS byte.
struct RawPeer {
    reader: std::cell::RefCell<common::TosReader>,
    sock: UdpSocket,
}

impl RawPeer {
    fn bind(addr: &str) -> RawPeer {
        let reader = common::TosReader::bind(addr.parse().unwrap());
        let sock = reader.sock.try_clone().unwrap();
        RawPeer {
            reader: std::cell::RefCell::new(reader),
            sock,
        }
    }

    /// The next datagram: its Homa packet type, source and TOS byte.
    fn recv(&self) -> (PacketType, SocketAddr, u8) {
        let (buf, src, tos) = self.reader.borrow_mut().recv();
        let (repr, _) = Repr::parse_with_payload(&buf).unwrap();
        (repr.body.packet_type(), src, tos)
    }

    /// Sends a RESEND for an RPC `client` does not know: it answers with
    /// RPC_UNKNOWN, a control packet.
    fn provoke_rpc_unknown(&self, client: SocketAddr) {
        let repr = Repr {
            sport: self.sock.local_addr().unwrap().port(),
            dport: client.port(),
            sender_id: 12_345,
            body: Body::Resend(ResendHeader {
                offset: 0,
                length: 100,
                priority: Some(7),
            }),
        };
        self.sock.send_to(&repr.to_vec(), client).unwrap();
    }
}

/// Default levels: a short request's DATA at 6 (a peer that sent no
/// CUTOFFS yet), control packets at 7; `level << 5` on the wire.
const DATA_TOS: u8 = 6 << 5;
const CONTROL_TOS: u8 = 7 << 5;

fn check(client_bind: &str, peer_bind: &str, peer_dest: &str) {
    let peer = RawPeer::bind(peer_bind);
    let client = Socket::bind(client_bind).unwrap();
    let port = peer.sock.local_addr().unwrap().port();
    let dest = SocketAddr::new(peer_dest.parse().unwrap(), port);
    let client_addr = SocketAddr::new(dest.ip(), client.local_addr().port());
    // DATA, then a control packet, then DATA again: the level changes
    // twice, so a setting kept on the socket must follow it.
    let mut first = client
        .start_call_timeout(dest, vec![1u8; 100], HANG)
        .unwrap();
    let (ty, src, tos) = peer.recv();
    assert_eq!((ty, tos), (PacketType::Data, DATA_TOS), "{client_bind}");
    assert_eq!(src.port(), client_addr.port());
    peer.provoke_rpc_unknown(client_addr);
    // Waiting drives the client socket, which answers the RESEND.
    assert!(first.wait_timeout(Duration::from_millis(1)).is_none());
    let (ty, _, tos) = peer.recv();
    assert_eq!(
        (ty, tos),
        (PacketType::RpcUnknown, CONTROL_TOS),
        "{client_bind}"
    );
    let _second = client
        .start_call_timeout(dest, vec![2u8; 100], HANG)
        .unwrap();
    let (ty, _, tos) = peer.recv();
    assert_eq!((ty, tos), (PacketType::Data, DATA_TOS), "{client_bind}");
    assert!(client.stats().transport.tos_changes >= 3);
}

#[test]
fn tos__follows_each_packets_level_ipv4() {
    check("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1");
}

#[test]
fn tos__follows_each_packets_level_ipv6() {
    check("[::1]:0", "[::1]:0", "::1");
}

#[test]
fn tos__follows_each_packets_level_ipv4_mapped_on_dual_stack() {
    check("[::]:0", "127.0.0.1:0", "127.0.0.1");
}
