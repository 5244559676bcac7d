//! A capture of a real Homa exchange, decoded by tshark with the project's
//! Lua dissector: packet types and fields must be what the endpoints sent.
//! Needs tshark: ignored by default, run by CI (`--ignored`), failing when
//! tshark is missing.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use homa_pcap::{tshark, PcapWriter};
use homa_proto::testnet::{Limits, Network, Verdict};
use homa_proto::{Config, Event};

#[test]
#[ignore = "needs tshark"]
fn tshark_decodes_a_captured_exchange() {
    assert!(tshark::available(), "this test needs tshark");
    // A 100 KB request (unscheduled part, then grants) and a 2 KB response.
    let config = Config::default();
    let mut net = Network::new(7);
    net.add_host(config.clone());
    net.add_host(config);
    net.endpoint(1).open_socket(100).unwrap();
    let cport = net.endpoint(0).open_socket(0).unwrap();
    let server = net.addr(1, 100);
    let path = std::env::temp_dir().join(format!("homa-tshark-{}.pcap", std::process::id()));
    let writer = Rc::new(RefCell::new(
        PcapWriter::new(std::fs::File::create(&path).unwrap(), 65535).unwrap(),
    ));
    let w2 = writer.clone();
    let clock = Rc::new(RefCell::new(Duration::ZERO));
    let c2 = clock.clone();
    net.set_filter(move |d, _| {
        let t = *c2.borrow();
        w2.borrow_mut()
            .write_udp(t, d.src, d.dst, d.priority << 5, &d.data)
            .unwrap();
        Verdict::Deliver
    });
    let now = net.now();
    let id = net
        .endpoint(0)
        .send_request(now, cport, server, Bytes::from(vec![0xAB; 100_000]))
        .unwrap();
    net.run_until(
        Limits::default(),
        |net, h, ev| {
            if let Event::Request { port, peer, id, .. } = ev {
                let now = net.now();
                net.endpoint(h)
                    .send_response(now, port, peer, id, Bytes::from(vec![0xCD; 2000]))
                    .unwrap();
            }
        },
        |net| {
            *clock.borrow_mut() = Duration::from_nanos(net.now().as_nanos());
            net.rpcs_alive() == 0
        },
    )
    .unwrap();
    let records = writer.borrow().records();
    drop(writer);
    drop(net);
    let rows = tshark::fields(
        &path,
        Some("homa"),
        &[
            "homa.type_name",
            "homa.sender_id",
            "homa.data.message_length",
            "homa.data.offset",
            "homa.data.payload_length",
            "homa.grant.offset",
            "ip.dsfield",
        ],
    );
    if std::env::var_os("HOMA_KEEP_PCAP").is_none() {
        let _ = std::fs::remove_file(&path);
    } else {
        eprintln!("capture kept at {}", path.display());
    }
    let rows = rows.unwrap();
    assert_eq!(
        rows.len() as u64,
        records,
        "every captured packet decodes as Homa"
    );
    let of = |t: &str| rows.iter().filter(|r| r[0] == t).count();
    // The request's DATA (client id), the response's DATA (id | 1).
    let req: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r[0] == "DATA" && r[1] == id.to_string())
        .collect();
    let resp: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r[0] == "DATA" && r[1] == (id | 1).to_string())
        .collect();
    assert_eq!(req.len(), 100_000usize.div_ceil(1416));
    assert!(req.iter().all(|r| r[2] == "100000"));
    let bytes: u64 = req.iter().map(|r| r[4].parse::<u64>().unwrap()).sum();
    assert_eq!(bytes, 100_000, "payload lengths add up to the message");
    assert_eq!(req[0][3], "0", "first packet at offset 0");
    assert_eq!(resp.len(), 2);
    assert!(of("GRANT") >= 1, "the request needed grants");
    let last_grant: u64 = rows
        .iter()
        .filter(|r| r[0] == "GRANT")
        .map(|r| r[5].parse::<u64>().unwrap())
        .max()
        .unwrap();
    assert_eq!(last_grant, 100_000, "granted up to the end");
    assert_eq!(of("CUTOFFS"), 2, "each side's first DATA carried version 0");
    assert!(of("ACK") + of("NEED_ACK") >= 1);
    // Control packets travel at the top level: precedence 7 in the DSCP.
    for r in rows.iter().filter(|r| r[0] == "GRANT" || r[0] == "CUTOFFS") {
        assert_eq!(r[6], "0xe0", "{r:?}");
    }
}
