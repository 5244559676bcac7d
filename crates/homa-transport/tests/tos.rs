//! The priority of every packet reaches the wire in its TOS / traffic-class
//! byte, whichever way the runtime sets it (a socket option it changes only
//! when the level changes, or a control message), for IPv4, IPv6 and
//! IPv4-mapped destinations of a dual-stack socket.
#![allow(non_snake_case)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::HANG;
use homa_proto::wire::{Body, PacketType, Repr, ResendHeader};
use homa_transport::Socket;

/// A plain UDP socket that reports each datagram's TOS byte.
struct RawPeer {
    sock: UdpSocket,
}

impl RawPeer {
    fn bind(addr: &str) -> RawPeer {
        let sock = UdpSocket::bind(addr).unwrap();
        let fd = sock.as_raw_fd();
        let (level, name) = if sock.local_addr().unwrap().is_ipv6() {
            (libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS)
        } else {
            (libc::IPPROTO_IP, libc::IP_RECVTOS)
        };
        let one: libc::c_int = 1;
        // SAFETY: a valid int option on a live socket.
        let r =
            unsafe { libc::setsockopt(fd, level, name, (&one as *const libc::c_int).cast(), 4) };
        assert_eq!(r, 0);
        sock.set_read_timeout(Some(HANG)).unwrap();
        RawPeer { sock }
    }

    /// The next datagram: its Homa packet type, source and TOS byte.
    fn recv(&self) -> (PacketType, SocketAddr, u8) {
        let (ty, src, tos, _) = self.recv_repr();
        (ty, src, tos)
    }

    /// [`RawPeer::recv`], with the RPC id the packet names.
    fn recv_repr(&self) -> (PacketType, SocketAddr, u8, u64) {
        let mut buf = [0u8; 2048];
        #[repr(C, align(8))]
        struct Ctrl([u8; 128]);
        let mut ctrl = Ctrl([0; 128]);
        // SAFETY: plain data.
        let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: plain data.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
        hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = ctrl.0.as_mut_ptr().cast();
        hdr.msg_controllen = ctrl.0.len();
        // SAFETY: every pointer in hdr refers to a live local buffer.
        let n = unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut hdr, 0) };
        assert!(n > 0, "{}", std::io::Error::last_os_error());
        let mut tos = None;
        // SAFETY: the kernel wrote msg_controllen bytes of cmsgs.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&hdr);
            while !c.is_null() {
                let data = libc::CMSG_DATA(c);
                match ((*c).cmsg_level, (*c).cmsg_type) {
                    (libc::IPPROTO_IP, libc::IP_TOS) => tos = Some(*data),
                    (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => {
                        tos = Some(std::ptr::read_unaligned(data.cast::<libc::c_int>()) as u8)
                    }
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(&hdr, c);
            }
        }
        let (repr, _) = Repr::parse_with_payload(&buf[..n as usize]).unwrap();
        let src = match name.ss_family as libc::c_int {
            libc::AF_INET => {
                // SAFETY: the family says sockaddr_in.
                let a: libc::sockaddr_in =
                    unsafe { std::ptr::read((&name as *const libc::sockaddr_storage).cast()) };
                SocketAddr::new(
                    std::net::Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()).into(),
                    u16::from_be(a.sin_port),
                )
            }
            _ => {
                // SAFETY: the family says sockaddr_in6.
                let a: libc::sockaddr_in6 =
                    unsafe { std::ptr::read((&name as *const libc::sockaddr_storage).cast()) };
                SocketAddr::new(
                    std::net::Ipv6Addr::from(a.sin6_addr.s6_addr).into(),
                    u16::from_be(a.sin6_port),
                )
            }
        };
        (
            repr.body.packet_type(),
            src,
            tos.expect("TOS control message"),
            repr.sender_id,
        )
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
    let client = Socket::bind(client_bind.parse().unwrap()).unwrap();
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
    let (ty, src2, tos) = peer.recv();
    assert_eq!((ty, tos), (PacketType::Data, DATA_TOS), "{client_bind}");
    assert_eq!(src.port(), client_addr.port());
    assert_eq!(src2, src);
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
        .start_call_timeout(dest, vec![2u8; 1000], HANG)
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
