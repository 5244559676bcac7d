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
        let (ty, src, tos, _) = self.recv_repr();
        (ty, src, tos)
    }

    /// The next packet that is not a RESEND: a client whose probe answer
    /// was late (a loaded machine) asks again, and a client still waiting
    /// for its first call's response asks the server to resend it; both are
    /// correct, and every such RESEND must still carry the control level.
    fn recv_after_probes(&self) -> (PacketType, SocketAddr, u8) {
        loop {
            let (ty, src, tos) = self.recv();
            if ty != PacketType::Resend {
                return (ty, src, tos);
            }
            assert_eq!(tos, CONTROL_TOS, "a repeated probe");
        }
    }

    /// [`RawPeer::recv`], with the RPC id the packet names.
    fn recv_repr(&self) -> (PacketType, SocketAddr, u8, u64) {
        let (buf, src, tos) = self.reader.borrow_mut().recv();
        let (repr, _) = Repr::parse_with_payload(&buf).unwrap();
        (repr.body.packet_type(), src, tos, repr.sender_id)
    }

    /// Answers the client's first packet to a new server, a probe for the
    /// server's incarnation (at-most-once), as a server does: RPC_UNKNOWN
    /// with an incarnation and an uptime.
    fn answer_probe(&self, client: SocketAddr, sender_id: u64) {
        use homa_proto::wire::{RpcUnknownHeader, UnknownStatus};
        let repr = Repr {
            sport: self.sock.local_addr().unwrap().port(),
            dport: client.port(),
            sender_id: sender_id | 1,
            incarnation: 0x77,
            body: Body::RpcUnknown(RpcUnknownHeader {
                status: UnknownStatus::Uptime(Duration::from_secs(3600)),
            }),
        };
        self.sock.send_to(&repr.to_vec(), client).unwrap();
    }

    /// Sends a RESEND for an RPC `client` does not know: it answers with
    /// RPC_UNKNOWN, a control packet.
    fn provoke_rpc_unknown(&self, client: SocketAddr) {
        let repr = Repr {
            sport: self.sock.local_addr().unwrap().port(),
            dport: client.port(),
            sender_id: 12_345,
            incarnation: 0,
            body: Body::Resend(ResendHeader {
                offset: 0,
                length: 100,
                priority: Some(7),
            }),
        };
        self.sock.send_to(&repr.to_vec(), client).unwrap();
    }
}

/// Default levels: a 1000-byte request's DATA at 6 (a peer that sent no
/// CUTOFFS yet: the sender's own default cutoffs put 201..=2800 bytes at
/// level 6), control packets at 7; `level << 5` on the wire.
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
        .start_call_timeout(dest, vec![1u8; 1000], HANG)
        .unwrap();
    // A first call to a server asks for its incarnation (a control packet)
    // before any DATA.
    let (ty, src, tos, id) = peer.recv_repr();
    assert_eq!(
        (ty, tos),
        (PacketType::Resend, CONTROL_TOS),
        "{client_bind}"
    );
    peer.answer_probe(client_addr, id);
    assert!(first.wait_timeout(Duration::from_millis(1)).is_none());
    let (ty, src2, tos) = peer.recv_after_probes();
    assert_eq!((ty, tos), (PacketType::Data, DATA_TOS), "{client_bind}");
    assert_eq!(src.port(), client_addr.port());
    assert_eq!(src2, src);
    peer.provoke_rpc_unknown(client_addr);
    // Waiting drives the client socket, which answers the RESEND.
    assert!(first.wait_timeout(Duration::from_millis(1)).is_none());
    let (ty, _, tos) = peer.recv_after_probes();
    assert_eq!(
        (ty, tos),
        (PacketType::RpcUnknown, CONTROL_TOS),
        "{client_bind}"
    );
    let _second = client
        .start_call_timeout(dest, vec![2u8; 1000], HANG)
        .unwrap();
    let (ty, _, tos) = peer.recv_after_probes();
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
