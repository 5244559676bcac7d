-- Wireshark / tshark dissector for Homa carried over UDP (homa-rs).
--
-- Layouts follow the Linux module's homa_wire.h (big-endian): a 28-byte
-- common header, then a type-specific part (DATA 56 bytes + payload,
-- GRANT 33, RESEND 37 or 36, RPC_UNKNOWN/BUSY/FREEZE/NEED_ACK 28,
-- CUTOFFS 62, ACK 80).
--
-- Homa over UDP has no fixed port, so this is a heuristic UDP dissector:
-- a datagram is Homa if its type byte is 0x10..0x18, it is long enough for
-- that type, and the common header carries the marks every homa-rs (and
-- full kernel build) packet has: flags 0x06 and urgent 0xB97D (except
-- RPC_UNKNOWN from homa-rs, which carries its status in urgent). "Decode
-- As... HOMA" works for any UDP port as well.
--
-- homa-rs fields in bytes the kernel leaves unused (zero there):
--   incarnation (40 bits): ack[3] bytes 8..10 (high) and window 14..15
--     (low); the sender's own in packets from a server-side RPC (odd
--     sender_id), the server's as the client knows it otherwise;
--   RPC_UNKNOWN status (urgent, 18..19): 0xB97D none, 0xFFFF not a server,
--     0xFFFE abandoned (the request ran), 0xFFFD forgotten, 0xFFF0..0xFFFC
--     reserved, else the server's uptime as mantissa (low 11 bits) << exponent
--     (high 5 bits) microseconds;
--   DATA oldest_live (24 bits, the pad at 49..51): the client's oldest
--     unfinished RPC to this server is sender_id - 2 * (oldest_live - 1);
--     0 states nothing.
-- Unknown values decode as numbers and are otherwise ignored.
--
-- Use:  wireshark -X lua_script:tools/wireshark/homa.lua capture.pcap
--       tshark -X lua_script:tools/wireshark/homa.lua -r capture.pcap -Y homa

local homa = Proto("homa", "Homa transport (over UDP)")

local TYPES = {
    [0x10] = "DATA", [0x11] = "GRANT", [0x12] = "RESEND",
    [0x13] = "RPC_UNKNOWN", [0x14] = "BUSY", [0x15] = "CUTOFFS",
    [0x16] = "FREEZE", [0x17] = "NEED_ACK", [0x18] = "ACK",
}
local MIN_LEN = {
    [0x10] = 56, [0x11] = 33, [0x12] = 36, [0x13] = 28, [0x14] = 28,
    [0x15] = 62, [0x16] = 28, [0x17] = 28, [0x18] = 80,
}

local f = homa.fields
f.sport = ProtoField.uint16("homa.sport", "Source port")
f.dport = ProtoField.uint16("homa.dport", "Destination port")
f.sequence = ProtoField.uint32("homa.sequence", "Sequence")
f.type = ProtoField.uint8("homa.type", "Type", base.HEX, TYPES)
f.type_name = ProtoField.string("homa.type_name", "Type name")
f.doff = ProtoField.uint8("homa.doff", "Data offset", base.HEX)
f.flags = ProtoField.uint8("homa.flags", "Flags", base.HEX)
f.checksum = ProtoField.uint16("homa.checksum", "Checksum", base.HEX)
f.urgent = ProtoField.uint16("homa.urgent", "Urgent", base.HEX)
f.sender_id = ProtoField.uint64("homa.sender_id", "Sender RPC id")
f.incarnation = ProtoField.uint64("homa.incarnation", "Incarnation", base.HEX)
f.client = ProtoField.bool("homa.from_client", "Sent by the client")
-- DATA
f.message_length = ProtoField.uint32("homa.data.message_length", "Message length")
f.incoming = ProtoField.uint32("homa.data.incoming", "Incoming")
f.ack_client_id = ProtoField.uint64("homa.data.ack_client_id", "Ack client id")
f.ack_server_port = ProtoField.uint16("homa.data.ack_server_port", "Ack server port")
f.cutoff_version = ProtoField.uint16("homa.data.cutoff_version", "Cutoff version")
f.retransmit = ProtoField.uint8("homa.data.retransmit", "Retransmit")
f.seg_offset = ProtoField.uint32("homa.data.seg_offset", "Segment offset field", base.HEX)
f.oldest_live = ProtoField.uint32("homa.data.oldest_live", "Oldest live (ids back + 1)")
f.offset = ProtoField.uint32("homa.data.offset", "Offset")
f.payload_len = ProtoField.uint32("homa.data.payload_length", "Payload length")
f.payload = ProtoField.bytes("homa.data.payload", "Payload")
-- RPC_UNKNOWN
f.unknown_status = ProtoField.string("homa.rpc_unknown.status", "Status")
f.unknown_uptime = ProtoField.uint64("homa.rpc_unknown.uptime_us", "Server uptime (us)")
-- GRANT
f.grant_offset = ProtoField.uint32("homa.grant.offset", "Granted offset")
f.grant_priority = ProtoField.uint8("homa.grant.priority", "Priority")
-- RESEND
f.resend_offset = ProtoField.uint32("homa.resend.offset", "Offset")
f.resend_length = ProtoField.uint32("homa.resend.length", "Length")
f.resend_priority = ProtoField.uint8("homa.resend.priority", "Priority")
-- CUTOFFS
f.cutoff = ProtoField.uint32("homa.cutoffs.cutoff", "Cutoff")
f.cutoffs_version = ProtoField.uint16("homa.cutoffs.version", "Version")
-- ACK
f.num_acks = ProtoField.uint16("homa.ack.num_acks", "Number of acks")
f.ack_entry_id = ProtoField.uint64("homa.ack.client_id", "Acked client id")
f.ack_entry_port = ProtoField.uint16("homa.ack.server_port", "Acked server port")

local function looks_like_homa(buf)
    local len = buf:len()
    if len < 28 then return false end
    local ty = buf(11, 1):uint()
    local min = MIN_LEN[ty]
    if min == nil or len < min then return false end
    return buf(13, 1):uint() == 0x06 and (buf(18, 2):uint() == 0xB97D or ty == 0x13)
end

-- The status an RPC_UNKNOWN carries in urgent, and the uptime if it is one.
local function unknown_status(code)
    if code == 0xB97D then return "none", nil end
    if code == 0xFFFF then return "not a server", nil end
    if code == 0xFFFE then return "abandoned", nil end
    if code == 0xFFFD then return "forgotten", nil end
    if code >= 0xFFF0 then return string.format("reserved 0x%04x", code), nil end
    local e = math.floor(code / 2048)
    local m = code % 2048
    return "uptime", m * (2 ^ e)
end

local function dissect(buf, pinfo, root)
    local len = buf:len()
    if len < 28 then return 0 end
    local ty = buf(11, 1):uint()
    local name = TYPES[ty] or string.format("0x%02x", ty)
    pinfo.cols.protocol = "HOMA"
    local tree = root:add(homa, buf(), "Homa " .. name)
    tree:add(f.sport, buf(0, 2))
    tree:add(f.dport, buf(2, 2))
    tree:add(f.sequence, buf(4, 4))
    tree:add(f.type, buf(11, 1))
    tree:add(f.type_name, name)
    tree:add(f.doff, buf(12, 1))
    tree:add(f.flags, buf(13, 1))
    tree:add(f.checksum, buf(16, 2))
    tree:add(f.urgent, buf(18, 2))
    local id = buf(20, 8):uint64()
    tree:add(f.sender_id, buf(20, 8))
    local inc = UInt64(buf(8, 3):uint() * 65536 + buf(14, 2):uint())
    tree:add(f.incarnation, inc)
    tree:add(f.client, (id % 2) == UInt64(0))
    local info = string.format("%s id=%s inc=%s", name, tostring(id), tostring(inc))

    if ty == 0x10 and len >= 56 then
        local seg = buf(52, 4):uint()
        local off = seg
        if seg == 0xFFFFFFFF then off = buf(4, 4):uint() end
        tree:add(f.message_length, buf(28, 4))
        tree:add(f.incoming, buf(32, 4))
        tree:add(f.ack_client_id, buf(36, 8))
        tree:add(f.ack_server_port, buf(44, 2))
        tree:add(f.cutoff_version, buf(46, 2))
        tree:add(f.retransmit, buf(48, 1))
        tree:add(f.oldest_live, buf(49, 3))
        tree:add(f.seg_offset, buf(52, 4))
        tree:add(f.offset, off)
        tree:add(f.payload_len, len - 56)
        if len > 56 then tree:add(f.payload, buf(56)) end
        info = info .. string.format(" len=%d off=%d bytes=%d", buf(28, 4):uint(), off, len - 56)
        if buf(48, 1):uint() ~= 0 then info = info .. " retx" end
    elseif ty == 0x11 and len >= 33 then
        tree:add(f.grant_offset, buf(28, 4))
        tree:add(f.grant_priority, buf(32, 1))
        info = info .. string.format(" offset=%d prio=%d", buf(28, 4):uint(), buf(32, 1):uint())
    elseif ty == 0x12 and len >= 36 then
        tree:add(f.resend_offset, buf(28, 4))
        tree:add(f.resend_length, buf(32, 4))
        if len >= 37 then tree:add(f.resend_priority, buf(36, 1)) end
        info = info .. string.format(" offset=%d length=%d", buf(28, 4):uint(), buf(32, 4):int())
    elseif ty == 0x13 then
        local status, uptime = unknown_status(buf(18, 2):uint())
        tree:add(f.unknown_status, status)
        if uptime then tree:add(f.unknown_uptime, UInt64(uptime)) end
        info = info .. " " .. status
        if uptime then info = info .. string.format(" %.0f us", uptime) end
    elseif ty == 0x15 and len >= 62 then
        for i = 0, 7 do
            tree:add(f.cutoff, buf(28 + 4 * i, 4)):prepend_text("[" .. i .. "] ")
        end
        tree:add(f.cutoffs_version, buf(60, 2))
        info = info .. string.format(" version=%d", buf(60, 2):uint())
    elseif ty == 0x18 and len >= 80 then
        local n = math.min(buf(28, 2):uint(), 5)
        tree:add(f.num_acks, buf(28, 2))
        for i = 0, n - 1 do
            local at = 30 + 10 * i
            tree:add(f.ack_entry_id, buf(at, 8))
            tree:add(f.ack_entry_port, buf(at + 8, 2))
        end
        info = info .. string.format(" acks=%d", n)
    end
    pinfo.cols.info = info
    return len
end

function homa.dissector(buf, pinfo, root)
    return dissect(buf, pinfo, root)
end

local function heuristic(buf, pinfo, root)
    if not looks_like_homa(buf) then return false end
    dissect(buf, pinfo, root)
    return true
end

homa:register_heuristic("udp", heuristic)
DissectorTable.get("udp.port"):add_for_decode_as(homa)
