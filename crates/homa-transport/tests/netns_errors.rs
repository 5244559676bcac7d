//! Unreachable destinations fail calls with their own error, in network
//! namespaces (needs root and `ip`): a destination with no route (the
//! kernel refuses the send), a router answering ICMP net unreachable, and
//! one answering ICMP host unreachable. Before, each call waited for the
//! protocol's timeout and reported `PeerTimeout`.
#![allow(non_snake_case)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use homa_lab::Lab;
use homa_transport::{Error, Socket};

/// Far beyond the protocol's 1 s timeout: the error must come from the
/// route, not from silence.
const DEADLINE: Duration = Duration::from_secs(10);

fn lab(prefix: &str) -> Lab {
    Lab::new(prefix).expect("this test needs root and the ip tool")
}

/// Calls `dest` from a socket in namespace `ns`; the error and how long
/// it took.
fn call_from(lab: &Lab, ns: &str, bind: &str, dest: &str) -> (Error, Duration) {
    let (bind, dest): (SocketAddr, SocketAddr) = (bind.parse().unwrap(), dest.parse().unwrap());
    lab.in_namespace(ns, move || {
        let s = Socket::bind(bind).unwrap();
        let t0 = Instant::now();
        let e = s
            .call_timeout(dest, &b"hello"[..], DEADLINE)
            .expect_err("nothing can answer");
        (e, t0.elapsed())
    })
    .unwrap()
    .join()
    .unwrap()
}

#[test]
#[ignore = "needs root and ip"]
fn no_route__call_fails_with_network_unreachable() {
    let mut lab = lab("hn-noroute");
    // A namespace with only loopback: no route to anything else.
    let a = lab.namespace("a").unwrap();
    let (e, took) = call_from(&lab, &a, "0.0.0.0:0", "10.99.0.1:4000");
    eprintln!("no route: {e} after {took:?}");
    assert!(matches!(e, Error::NetworkUnreachable), "{e:?}");
}

#[test]
#[ignore = "needs root and ip"]
fn icmp_unreachable__net_and_host_errors_from_a_router() {
    let mut lab = lab("hn-icmp");
    let a = lab.namespace("a").unwrap();
    let r = lab.namespace("r").unwrap();
    lab.link(&a, "10.83.0.1/24", &r, "10.83.0.2/24").unwrap();
    lab.ip(&a, &["route", "add", "default", "via", "10.83.0.2"])
        .unwrap();
    lab.sysctl(&r, "net.ipv4.ip_forward", "1").unwrap();
    // The router has no route to 10.84/16 (ICMP net unreachable) and an
    // unreachable route for 10.85/16 (ICMP host unreachable).
    lab.ip(&r, &["route", "add", "unreachable", "10.85.0.0/16"])
        .unwrap();
    let (e, took) = call_from(&lab, &a, "10.83.0.1:0", "10.84.0.9:4000");
    eprintln!("icmp net unreachable: {e} after {took:?}");
    assert!(matches!(e, Error::NetworkUnreachable), "{e:?}");
    let (e, took) = call_from(&lab, &a, "10.83.0.1:0", "10.85.0.9:4000");
    eprintln!("icmp host unreachable: {e} after {took:?}");
    assert!(matches!(e, Error::HostUnreachable), "{e:?}");
}
