#!/usr/bin/env python3
"""Generates wire.json: byte-exact Homa packet vectors.

The bytes are built here from the offset tables of the kernel module
(homa_wire.h; docs/protocol.md, "Wire format"), with Python's
struct module, independently of the Rust encoder. The Rust test
(tests/wire_vectors.rs) checks that `Repr::emit` reproduces every "emit"
vector and that `Repr::parse` reproduces the fields of every vector.

Run: python3 gen_wire.py > wire.json
"""
import json
import struct

TYPES = {
    "DATA": 0x10, "GRANT": 0x11, "RESEND": 0x12, "RPC_UNKNOWN": 0x13, "BUSY": 0x14,
    "CUTOFFS": 0x15, "FREEZE": 0x16, "NEED_ACK": 0x17, "ACK": 0x18,
}


def common(sport, dport, ptype, sender_id, sequence=0, doff=0x50, incarnation=0,
           urgent=0xB97D):
    """28-byte common header (full build markers: flags 0x06, urgent 0xB97D).

    homa-rs keeps a 40-bit incarnation in the bytes the kernel leaves unused:
    its high 24 bits in ack[3] (8..11), its low 16 bits in window (14..16);
    an RPC_UNKNOWN carries its status in urgent instead of the marker."""
    b = bytearray(28)
    struct.pack_into(">H", b, 0, sport)        # sport
    struct.pack_into(">H", b, 2, dport)        # dport
    struct.pack_into(">I", b, 4, sequence)     # sequence
    hi = (incarnation >> 16) & 0xFFFFFF
    b[8:11] = hi.to_bytes(3, "big")            # ack[3]: incarnation, high bits
    b[11] = TYPES[ptype]                       # type
    b[12] = doff                               # doff
    b[13] = 0x06                               # flags
    struct.pack_into(">H", b, 14, incarnation & 0xFFFF)  # window: incarnation, low bits
    # 16..18 checksum = 0
    struct.pack_into(">H", b, 18, urgent)      # urgent
    struct.pack_into(">Q", b, 20, sender_id)   # sender_id
    return b


def data(f, seg_offset=None, sequence=None):
    off = f["offset"]
    b = common(f["sport"], f["dport"], "DATA", f["sender_id"],
               sequence=off if sequence is None else sequence, doff=0xE0,
               incarnation=f.get("incarnation", 0))
    b += bytearray(28)
    struct.pack_into(">I", b, 28, f["message_length"])
    struct.pack_into(">I", b, 32, f["incoming"])
    struct.pack_into(">Q", b, 36, f["ack_client_id"])
    struct.pack_into(">H", b, 44, f["ack_server_port"])
    struct.pack_into(">H", b, 46, f["cutoff_version"])
    b[48] = 1 if f["retransmit"] else 0
    # 49..52: the kernel's pad; homa-rs: oldest_live (24 bits)
    b[49:52] = f.get("oldest_live", 0).to_bytes(3, "big")
    struct.pack_into(">I", b, 52, off if seg_offset is None else seg_offset)
    assert len(b) == 56
    return b + bytes.fromhex(f["payload"])


def grant(f):
    b = common(f["sport"], f["dport"], "GRANT", f["sender_id"],
               incarnation=f.get("incarnation", 0)) + bytearray(5)
    struct.pack_into(">I", b, 28, f["offset"])
    b[32] = f["priority"]
    assert len(b) == 33
    return b


def resend(f):
    n = 37 if f["priority"] is not None else 36
    b = common(f["sport"], f["dport"], "RESEND", f["sender_id"]) + bytearray(n - 28)
    struct.pack_into(">I", b, 28, f["offset"])
    struct.pack_into(">I", b, 32, f["length"])
    if f["priority"] is not None:
        b[36] = f["priority"]
    return b


def bare(ptype, f):
    return common(f["sport"], f["dport"], ptype, f["sender_id"],
                  incarnation=f.get("incarnation", 0), urgent=f.get("status", 0xB97D))


def cutoffs(f):
    b = common(f["sport"], f["dport"], "CUTOFFS", f["sender_id"]) + bytearray(34)
    for i, c in enumerate(f["cutoffs"]):
        struct.pack_into(">I", b, 28 + 4 * i, c)
    struct.pack_into(">H", b, 60, f["version"])
    assert len(b) == 62
    return b


def ack(f, num_acks=None):
    b = common(f["sport"], f["dport"], "ACK", f["sender_id"]) + bytearray(52)
    acks = f["acks"]
    struct.pack_into(">H", b, 28, len(acks) if num_acks is None else num_acks)
    for i, a in enumerate(acks):
        struct.pack_into(">QH", b, 30 + 10 * i, a["client_id"], a["server_port"])
    assert len(b) == 80
    return b


cases = []


def add(name, ptype, fields, raw, direction="both", note=None):
    c = {"name": name, "type": ptype, "direction": direction, "fields": fields,
         "hex": bytes(raw).hex()}
    if note:
        c["note"] = note
    cases.append(c)


def ids(sport, dport, sender_id):
    return {"sport": sport, "dport": dport, "sender_id": sender_id}


# DATA
f = dict(ids(0x8001, 99, 2), message_length=100, incoming=100, ack_client_id=0,
         ack_server_port=0, cutoff_version=0, retransmit=False, offset=0,
         payload="68656c6c6f")
add("data_minimal", "DATA", f, data(f))
f = dict(ids(0xABCD, 0x1234, 0x0123456789ABCDEF), message_length=0x0A0B0C0D,
         incoming=0x00112233, ack_client_id=0xFEDCBA9876543210, ack_server_port=0x7FFE,
         cutoff_version=0xBEEF, retransmit=True, offset=0x01020304,
         payload="00ff10ee")
add("data_every_field", "DATA", f, data(f))
f = dict(ids(4000, 0x8123, 0x1001), message_length=5000, incoming=4096, ack_client_id=0,
         ack_server_port=0, cutoff_version=3, retransmit=False, offset=2848, payload="aa")
add("data_offset_from_sequence", "DATA", f, data(f, seg_offset=0xFFFFFFFF, sequence=2848),
    direction="parse", note="seg.offset 0xFFFFFFFF: the offset comes from sequence")
f = dict(ids(4000, 0x8123, 0x1001), message_length=5000, incoming=4096, ack_client_id=0,
         ack_server_port=0, cutoff_version=3, retransmit=False, offset=1424, payload="aa")
add("data_seg_offset_wins", "DATA", f, data(f, sequence=7),
    direction="parse", note="GSO segment: sequence is stale, seg.offset is right")

# GRANT
f = dict(ids(99, 0x8001, 3), offset=40000, priority=0)
add("grant_simple", "GRANT", f, grant(f))
f = dict(ids(0xF00D, 0x0BAD, 0x8877665544332211), offset=0xDEADBEEF, priority=7)
add("grant_every_field", "GRANT", f, grant(f))

# RESEND
f = dict(ids(0x8001, 99, 2), offset=0, length=0xFFFFFFFF, priority=7)
add("resend_all", "RESEND", f, resend(f))
f = dict(ids(0x1111, 0x2222, 0x3333444455556666), offset=0x00ABCDEF, length=0x01020304,
         priority=5)
add("resend_every_field", "RESEND", f, resend(f))
f = dict(ids(0x1111, 0x2222, 0x77), offset=1424, length=2848, priority=None)
add("resend_upstream_36_bytes", "RESEND", f, resend(f),
    note="stripped upstream build: no priority byte")

# homa-rs fields in the kernel's unused bytes
f = dict(ids(0x8001, 99, 0x10), message_length=3000, incoming=3000, ack_client_id=0,
         ack_server_port=0, cutoff_version=2, retransmit=False, offset=1424,
         payload="0102", incarnation=0xABCDEF1234, oldest_live=0x0A0B0C)
add("data_incarnation_and_oldest_live", "DATA", f, data(f),
    note="request DATA: echoed incarnation in ack[3]+window, oldest_live in pad")
f = dict(ids(99, 0x8001, 0x11), offset=20000, priority=3, incarnation=0xFFFFFFFFFF)
add("grant_incarnation_all_ones", "GRANT", f, grant(f))
# RPC_UNKNOWN status in urgent: an uptime (11-bit mantissa << 5-bit exponent,
# microseconds), or a reason.
for name, status in [("uptime_0", 0x0000), ("uptime_1ms", 1000),
                     ("uptime_large", (20 << 11) | 1500), ("not_server", 0xFFFF),
                     ("abandoned", 0xFFFE), ("forgotten", 0xFFFD), ("reserved", 0xFFF3)]:
    f = dict(ids(99, 0x8001, 0x21), incarnation=0x0102030405, status=status)
    add("rpc_unknown_" + name, "RPC_UNKNOWN", f, bare("RPC_UNKNOWN", f))

# RPC_UNKNOWN, BUSY, FREEZE, NEED_ACK
for ptype, a, b in [
    ("RPC_UNKNOWN", ids(99, 0x8001, 3), ids(0xA1B2, 0xC3D4, 0x0102030405060708)),
    ("BUSY", ids(99, 0x8001, 5), ids(0xFFFF, 0x0001, 0xFFFFFFFFFFFFFFFF)),
    ("FREEZE", ids(0x8001, 0, 0), ids(0x1234, 0x5678, 0x9ABCDEF012345679)),
    ("NEED_ACK", ids(99, 0x8001, 7), ids(0x7FFF, 0xFFFE, 0x1122334455667789)),
]:
    add(ptype.lower() + "_simple", ptype, a, bare(ptype, a))
    add(ptype.lower() + "_every_field", ptype, b, bare(ptype, b))

# CUTOFFS
f = dict(ids(99, 0x8001, 0), cutoffs=[0, 0, 0, 0, 1000000, 15000, 2800, 200], version=1)
add("cutoffs_default", "CUTOFFS", f, cutoffs(f))
f = dict(ids(0x0102, 0x0304, 0x0506070809101112),
         cutoffs=[0x7FFFFFFF, 0x10203040, 0x50607080, 0x90A0B0C0, 0xD0E0F001, 65535, 1, 2],
         version=0xCAFE)
add("cutoffs_every_field", "CUTOFFS", f, cutoffs(f))

# ACK
f = dict(ids(0x8001, 99, 2), acks=[])
add("ack_none", "ACK", f, ack(f))
f = dict(ids(0x8765, 0x4321, 0x0A0B0C0D0E0F1012),
         acks=[{"client_id": 0x1000000000000002 * (i + 1), "server_port": 0x100 + i}
               for i in range(5)])
add("ack_every_field", "ACK", f, ack(f))
f = dict(ids(0x8001, 99, 4), acks=[{"client_id": 6, "server_port": 99},
                                   {"client_id": 8, "server_port": 99}])
add("ack_two", "ACK", f, ack(f))

# Rejected inputs: parse must fail (and not panic).
rej = [
    ("reject_empty", ""),
    ("reject_short_common", bytes(common(1, 2, "BUSY", 3))[:27].hex()),
    ("reject_type_below_range", (bytes(common(1, 2, "BUSY", 3))[:11] + b"\x0f" +
                                 bytes(common(1, 2, "BUSY", 3))[12:]).hex()),
    ("reject_type_above_range", (bytes(common(1, 2, "BUSY", 3))[:11] + b"\x19" +
                                 bytes(common(1, 2, "BUSY", 3))[12:]).hex()),
    ("reject_short_grant", bytes(grant(dict(ids(1, 2, 3), offset=1, priority=1)))[:32].hex()),
    ("reject_short_resend", bytes(resend(dict(ids(1, 2, 3), offset=1, length=1,
                                               priority=None)))[:35].hex()),
    ("reject_short_cutoffs", bytes(cutoffs(dict(ids(1, 2, 3), cutoffs=[0] * 8,
                                                version=1)))[:61].hex()),
    ("reject_short_ack", bytes(ack(dict(ids(1, 2, 3), acks=[])))[:79].hex()),
    ("reject_short_data", bytes(data(dict(ids(1, 2, 3), message_length=1, incoming=1,
                                          ack_client_id=0, ack_server_port=0,
                                          cutoff_version=0, retransmit=False, offset=0,
                                          payload="")))[:55].hex()),
    ("reject_data_past_message_end", bytes(data(dict(ids(1, 2, 3), message_length=4,
                                                     incoming=4, ack_client_id=0,
                                                     ack_server_port=0, cutoff_version=0,
                                                     retransmit=False, offset=2,
                                                     payload="010203"))).hex()),
]
for name, hx in rej:
    cases.append({"name": name, "direction": "reject", "hex": hx})

print(json.dumps({
    "source": "generated by gen_wire.py from the homa_wire.h offset tables",
    "cases": cases,
}, indent=1))
