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
-- GSO datagrams: homa-rs hands the kernel up to 64 DATA packets of one
-- message as one UDP GSO send. Where nothing segments it (loopback, or a
-- capture of the sender before segmentation) the capture holds a single
-- UDP datagram with the packets back to back, each a full 56-byte DATA
-- header and its payload, all `size` bytes long except the last (which is
-- no longer). `size` (the kernel's gso_size) is in no header, so the
-- dissector takes the smallest size > 56 for which every segment whose
-- header the capture holds (at 0, size, 2 * size, ...) fits what homa-rs
-- builds (one header, copied with only the offset changed):
--   * it repeats the first header's bytes 0..3 (ports) and 8..51 (type,
--     flags, urgent, sender id, incarnation, message length, incoming, ack,
--     cutoff version, retransmit, oldest_live);
--   * its sequence and seg.offset agree (or seg.offset is 0xFFFFFFFF), and
--     offset + payload length <= message length;
--   * unless the packets are retransmissions (a batch of them may take
--     packets from separate resend ranges), its offset is the previous
--     segment's plus size - 56;
--   * the last segment has a payload (more than 56 bytes).
-- With no such size the datagram is one packet (ordinary DATA packets are
-- unchanged). Each segment shows as a Homa DATA tree of its own, with
-- homa.gso.index, homa.gso.count and homa.gso.size. A capture cut (snapshot
-- length) before the second segment's header cannot show where segments
-- start: such a datagram shows as one packet, marked as cut.
--
-- homa.data.payload_length is the length on the wire (from the UDP
-- length); when the capture kept less (a snapshot length), the packet has
-- homa.data.truncated and an expert note.
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
f.truncated = ProtoField.bool("homa.data.truncated", "Payload cut by the capture")
-- GSO datagrams (several DATA packets in one UDP datagram)
f.gso_index = ProtoField.uint16("homa.gso.index", "GSO segment")
f.gso_count = ProtoField.uint16("homa.gso.count", "GSO segments in the datagram")
f.gso_size = ProtoField.uint32("homa.gso.size", "GSO segment size")
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

local e_truncated = ProtoExpert.new("homa.data.truncated.expert",
    "Payload cut by the capture", expert.group.UNDECODED, expert.severity.NOTE)
homa.experts = { e_truncated }

local function looks_like_homa(buf)
    local len = buf:len()
    if len < 28 then return false end
    local ty = buf(11, 1):uint()
    local min = MIN_LEN[ty]
    if min == nil or len < min then return false end
    return buf(13, 1):uint() == 0x06 and (buf(18, 2):uint() == 0xB97D or ty == 0x13)
end

-- The data offset of the DATA header at `at`: seg.offset, or sequence if
-- seg.offset is 0xFFFFFFFF.
local function data_offset(buf, at)
    local seg = buf(at + 52, 4):uint()
    if seg == 0xFFFFFFFF then return buf(at + 4, 4):uint() end
    return seg
end

local function u32(raw, at) -- big-endian, 0-based `at` in a Lua string
    local a, b, c, d = raw:byte(at + 1, at + 4)
    return ((a * 256 + b) * 256 + c) * 256 + d
end

local function raw_offset(raw, at)
    local seg = u32(raw, at + 52)
    if seg == 0xFFFFFFFF then return u32(raw, at + 4), true end
    return seg, seg == u32(raw, at + 4)
end

-- True if a GSO datagram of `rep` bytes (of which `raw` was captured) cut
-- every `size` bytes has the segments homa-rs builds (see GSO above).
local function gso_fits(raw, rep, size)
    local cap = #raw
    local count = math.ceil(rep / size)
    local last = rep - (count - 1) * size
    if count < 2 or last <= 56 then return false end
    local ports, common = raw:sub(1, 4), raw:sub(9, 52)
    local mlen = u32(raw, 28)
    local retx = raw:byte(49) ~= 0
    local prev = nil
    for k = 0, count - 1 do
        local at = k * size
        if at + 56 > cap then break end
        if raw:sub(at + 1, at + 4) ~= ports or raw:sub(at + 9, at + 52) ~= common then
            return false
        end
        local off, agree = raw_offset(raw, at)
        local payload = (k < count - 1) and size - 56 or last - 56
        if not agree or off + payload > mlen then return false end
        if prev ~= nil and not retx and off ~= prev + size - 56 then return false end
        prev = off
    end
    return true
end

-- The segment size of a GSO datagram of DATA segments, or nil if `buf` is
-- a single packet.
local function gso_segment_size(buf)
    local cap, rep = buf:len(), buf:reported_len()
    if cap < 2 * 56 + 1 or buf(11, 1):uint() ~= 0x10 then return nil end
    local raw = buf:raw(0, cap)
    local common = raw:sub(9, 52)
    -- The second segment's header starts at `size` > 56: its common
    -- fields (bytes 8..51) at size + 8, 1-based size + 9.
    local from = 56 + 1 + 9
    while true do
        local p = raw:find(common, from, true)
        if p == nil then return nil end
        local size = p - 9
        if size + 56 > cap then return nil end
        if gso_fits(raw, rep, size) then return size end
        from = p + 1
    end
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

-- One Homa packet: `buf` holds its captured bytes, `rep` is its length on
-- the wire (more than buf:len() when the capture cut it). With `gso` =
-- {index, count, size}, the packet is segment `index` of a GSO datagram.
-- Returns the Info text.
local function dissect_one(buf, rep, pinfo, root, gso)
    local len = buf:len()
    local ty = buf(11, 1):uint()
    local name = TYPES[ty] or string.format("0x%02x", ty)
    local label = "Homa " .. name
    if gso then label = string.format("%s (GSO segment %d of %d)", label, gso[1], gso[2]) end
    local tree = root:add(homa, buf(), label)
    if gso then
        tree:add(f.gso_index, gso[1])
        tree:add(f.gso_count, gso[2])
        tree:add(f.gso_size, gso[3])
    end
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
        local off = data_offset(buf, 0)
        tree:add(f.message_length, buf(28, 4))
        tree:add(f.incoming, buf(32, 4))
        tree:add(f.ack_client_id, buf(36, 8))
        tree:add(f.ack_server_port, buf(44, 2))
        tree:add(f.cutoff_version, buf(46, 2))
        tree:add(f.retransmit, buf(48, 1))
        tree:add(f.oldest_live, buf(49, 3))
        tree:add(f.seg_offset, buf(52, 4))
        tree:add(f.offset, off)
        -- The length on the wire, not what the capture kept.
        tree:add(f.payload_len, rep - 56)
        if len > 56 then tree:add(f.payload, buf(56)) end
        if len < rep then
            tree:add(f.truncated, true)
            tree:add_proto_expert_info(e_truncated, string.format(
                "Payload cut by the capture: %d of %d bytes captured", len - 56, rep - 56))
        end
        info = info .. string.format(" len=%d off=%d bytes=%d", buf(28, 4):uint(), off, rep - 56)
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
    return info
end

local function dissect(buf, pinfo, root)
    local len = buf:len()
    if len < 28 then return 0 end
    pinfo.cols.protocol = "HOMA"
    local rep = buf:reported_len()
    local size = gso_segment_size(buf)
    if size == nil then
        pinfo.cols.info = dissect_one(buf, rep, pinfo, root, nil)
        return len
    end
    -- A GSO datagram: each segment as a packet of its own.
    local count = math.ceil(rep / size)
    local first, first_off, last_off, bytes, missing = nil, nil, nil, 0, 0
    for k = 0, count - 1 do
        local at = k * size
        local seg_rep = math.min(size, rep - at)
        if at + 56 <= len then
            local info = dissect_one(buf(at, math.min(seg_rep, len - at)):tvb(), seg_rep,
                pinfo, root, { k + 1, count, size })
            first = first or info
            last_off = data_offset(buf, at)
            first_off = first_off or last_off
        else
            missing = missing + 1
        end
        bytes = bytes + seg_rep - 56
    end
    if missing > 0 then
        root:add(homa, string.format(
            "Homa DATA: %d more GSO segment(s), headers not captured", missing))
    end
    local info = string.format("%s [GSO: %d segments of %d bytes, off=%d..%d, %d bytes",
        first, count, size, first_off, last_off, bytes)
    if missing > 0 then info = info .. string.format(", %d headers not captured", missing) end
    pinfo.cols.info = info .. "]"
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
