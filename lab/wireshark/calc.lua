-- calc.lua: a Wireshark dissector (Wireshark 4.0, Lua 5.2) for calclab's calculator protocol,
-- the wire format of the course's Python reference. Install and use: lab/wireshark/README.md.
--
-- Every message is a 12-byte header and a CPython pickle:
--
--    0                   1                   2                   3
--    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
--   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
--   |                  time stamp (unix seconds)                    |
--   +-------------------------------+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
--   |   total length (12 + payload) |R R R C S T|      status       |
--   +-------------------------------+-------------------------------+
--   |   cache control (65535: ever) |      padding (sent as 0)      |
--   +-------------------------------+-------------------------------+
--   |  payload: pickle of an expression tree (request), of (result, |
--   |  steps) or of an exception (response) ...                     |
--
-- C cache, S steps, T 1 = request; status 200/400/500 in responses.
--
-- This file is the dissection: fields, framing, the Info column, requests paired with their
-- answers, ports. The payload is decoded by the modules in calc/, beside it, which use no
-- Wireshark API (tests run them under a plain Lua): calc/pickle.lua reads the pickle the way
-- libcalc does (an opcode table that only RECORDS globals, calls and object builds: nothing is
-- imported, looked up or called), calc/expr.lua checks a request against the reference's
-- object model and prints it as its stringify() does, calc/pyobj.lua and calc/pynum.lua print
-- responses as Python's str/repr, calc/payload.lua puts them together, and calc/limits.lua
-- holds libcalc's limits, generated from its headers by the build (build/wireshark is the
-- plugin). What the payload decoder cannot decode is marked with an expert info; it never
-- raises a Lua error on wire data.

-- The modules are found beside this script, wherever it was installed or loaded from.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = here .. "?.lua;" .. package.path

-- calc/limits.lua is made by the build: the source tree's calc.lua has none beside it.
local have_limits, limits = pcall(require, "calc.limits")
if not have_limits then
  error("calc.lua: no calc/limits.lua in " .. here .. ": load the dissector the build assembles " ..
        "(build/wireshark/calc.lua), or install it with lab/wireshark/install", 0)
end
local payload = require("calc.payload")

local calc = Proto("calc", "Calculator protocol (calclab)")

-- ---------------------------------------------------------------- fields and expert infos

local STATUS_NAMES = { [0] = "none (request)", [200] = "OK", [400] = "client error", [500] = "server error" }
local RESPONSE_STATUSES = { [200] = true, [400] = true, [500] = true }

local f = {
  time = ProtoField.absolute_time("calc.time", "Time stamp", base.UTC),
  length = ProtoField.uint16("calc.length", "Total length", base.DEC),
  flags = ProtoField.uint16("calc.flags", "Flags", base.HEX),
  reserved = ProtoField.uint16("calc.flags.reserved", "Reserved", base.HEX, nil, 0xe000),
  cache = ProtoField.bool("calc.flags.cache", "Cache", 16, nil, 0x1000),
  steps_flag = ProtoField.bool("calc.flags.steps", "Steps", 16, nil, 0x0800),
  request = ProtoField.bool("calc.flags.request", "Request", 16, nil, 0x0400),
  status = ProtoField.uint16("calc.status", "Status", base.DEC, STATUS_NAMES, 0x03ff),
  cache_control = ProtoField.uint16("calc.cache_control", "Cache control (s)", base.DEC,
                                    { [65535] = "forever" }),
  padding = ProtoField.uint16("calc.padding", "Padding", base.HEX),
  payload_length = ProtoField.uint16("calc.payload_length", "Payload length", base.DEC),
  pickle_protocol = ProtoField.uint8("calc.pickle.protocol", "Pickle protocol", base.DEC),
  expression = ProtoField.string("calc.expression", "Expression"),
  result = ProtoField.string("calc.result", "Result"),
  steps = ProtoField.string("calc.steps", "Step"),
  steps_count = ProtoField.uint32("calc.steps.count", "Steps", base.DEC),
  error_type = ProtoField.string("calc.error.type", "Error type"),
  error_message = ProtoField.string("calc.error.message", "Error message"),
  response_in = ProtoField.framenum("calc.response_in", "Response in frame", base.NONE, frametype.RESPONSE),
  request_in = ProtoField.framenum("calc.request_in", "Request in frame", base.NONE, frametype.REQUEST),
  response_time = ProtoField.relative_time("calc.response_time", "Time since request"),
  missing = ProtoField.uint32("calc.missing", "Bytes never sent", base.DEC),
  sender_port = ProtoField.uint16("calc.sender_port", "Sent from port", base.DEC),
}
calc.fields = { f.time, f.length, f.flags, f.reserved, f.cache, f.steps_flag, f.request, f.status,
                f.cache_control, f.padding, f.payload_length, f.pickle_protocol, f.expression,
                f.result, f.steps, f.steps_count, f.error_type, f.error_message, f.response_in, f.request_in,
                f.response_time, f.missing, f.sender_port }

-- Expert infos: key, filter name, summary, group, severity.
local ex, expert_list = {}, {}
for _, e in ipairs({
  { "undecodable", "calc.undecodable", "Payload could not be decoded", expert.group.MALFORMED, expert.severity.WARN },
  { "bad_length", "calc.bad_length", "Total length below the 12-byte header", expert.group.MALFORMED,
    expert.severity.ERROR },
  { "unframed", "calc.unframed", "Stream no longer framed", expert.group.MALFORMED, expert.severity.WARN },
  { "reserved", "calc.reserved_bits", "Reserved flag bits set", expert.group.PROTOCOL, expert.severity.WARN },
  { "bytes_missing", "calc.bytes_missing", "Message not all in the capture", expert.group.MALFORMED,
    expert.severity.WARN },
  { "text_cut", "calc.text_cut", "Text shortened", expert.group.UNDECODED, expert.severity.NOTE },
  { "error_answer", "calc.error_answer", "Error answer", expert.group.RESPONSE_CODE, expert.severity.NOTE },
  { "bad_status", "calc.bad_status", "Status outside the protocol", expert.group.PROTOCOL, expert.severity.WARN },
  { "no_request", "calc.no_request", "Response without a request", expert.group.SEQUENCE, expert.severity.WARN },
  { "cut_short", "calc.cut_short", "Message cut short by the end of its stream", expert.group.MALFORMED,
    expert.severity.WARN },
}) do
  ex[e[1]] = ProtoExpert.new(e[2], e[3], e[4], e[5])
  expert_list[#expert_list + 1] = ex[e[1]]
end
calc.experts = expert_list

calc.prefs.ports = Pref.range("TCP ports", "9998,9999",
                              "TCP ports decoded as the calculator protocol (proxy 9998, server 9999)", 65535)

-- ---------------------------------------------------------------- the dissector

local HEADER_SIZE = limits.HEADER_SIZE

local abbrev = require("calc.text").abbrev

-- Directions whose framing broke: "stream/port" -> { frame = number, why = text }. Later bytes
-- of that direction cannot be framed again (the header has no resync marker).
local unframed_since = {}
local tcp_stream = Field.new("tcp.stream")

-- The TCP connection: TCP's stream index, or where a pass builds no tree (tshark -2's first
-- pass without a filter: fields are then not extracted) its two ends, lower one first.
local function connection_key(pinfo)
  local st = tcp_stream()
  if st then return tostring(st.value) end
  local a, b = tostring(pinfo.src) .. ":" .. pinfo.src_port, tostring(pinfo.dst) .. ":" .. pinfo.dst_port
  return a < b and a .. "-" .. b or b .. "-" .. a
end

local function direction_key(pinfo)
  return connection_key(pinfo) .. "/" .. tostring(pinfo.src_port)
end

-- ---- segments per message, for the Info column's "in K segments" (as calc-sniff notes it)
--
-- TCP hands the dissector a message only once it is whole, and Lua sees neither the segments
-- it was made of nor the segments in between. So a TCP tap frames every direction's bytes on
-- its own (header, total length, payload), segment by segment after each frame's dissection:
-- when a message completes in frame F, the tap's state from the frames before F says how many
-- segments the message already had. The count is kept per frame for later re-dissections.
local f_srcport, f_seq, f_len, f_hdr_len = Field.new("tcp.srcport"), Field.new("tcp.seq"), Field.new("tcp.len"),
                                           Field.new("tcp.hdr_len")
local framing = {}             -- direction key -> { expect, have, total, header, segs } or false (lost)
local first_msg_segments = {}  -- "frame/direction" -> segments of the first message completing there
local tap_frame = 0            -- the last frame the tap read since it started (or was reset)

-- Feeds one segment's bytes (data, starting at sequence number seq, in frame number frame) to
-- a direction's framer state st (nil: none yet). Returns the state, or false once the
-- direction's message boundaries are lost.
local function feed(st, seq, data, frame)
  if st == false then return false end
  if st == nil then st = { expect = seq, have = 0, header = "", segs = 0 } end
  if seq + #data <= st.expect then return st end   -- a retransmission
  if seq > st.expect then return false end         -- a gap: message boundaries are lost
  data = data:sub(st.expect - seq + 1)
  st.expect = st.expect + #data
  if st.have > 0 then st.segs = st.segs + 1 end
  local i = 1
  while i <= #data do
    if st.have == 0 then st.segs, st.header, st.start_frame = 1, "", frame end
    local take
    if st.have < HEADER_SIZE then
      take = math.min(HEADER_SIZE - st.have, #data - i + 1)
      st.header = st.header .. data:sub(i, i + take - 1)
    else
      take = math.min(st.total - st.have, #data - i + 1)
    end
    st.have, i = st.have + take, i + take
    if st.have == HEADER_SIZE then
      st.total = st.header:byte(5) * 256 + st.header:byte(6)
      if st.total < HEADER_SIZE then return false end
    end
    if st.have >= HEADER_SIZE and st.have == st.total then st.have = 0 end
  end
  return st
end

-- The segment's TCP payload, its sequence number and length, where the frame holds it whole.
local function segment_data(tvb)
  local port, seq, len, hdr_len = f_srcport(), f_seq(), f_len(), f_hdr_len()
  if not (port and seq and len and hdr_len) or port.offset + hdr_len.value + len.value > tvb:len() then return nil end
  return tvb:raw(port.offset + hdr_len.value, len.value), seq.value
end

local function tap_segment(pinfo, tvb)
  tap_frame = pinfo.number
  local data, seq = segment_data(tvb)
  if not data then return end
  local key = direction_key(pinfo)
  framing[key] = feed(framing[key], seq, data, pinfo.number)
end

-- The tap sees only the segments of the ports that decode as calc (the preference's and those
-- Decode As gave it): on all TCP traffic it cost about 15 us a packet (20,600 packets of other
-- traffic, tshark CPU: 0.15 s alone, 0.7-0.8 s with the dissector and an unfiltered tap,
-- 0.4-0.5 s with the port filter).
local segment_tap = nil

-- A display filter set of ports, consecutive ones as a range: {5000, 9998..9999}.
local function port_set(ports)
  local pieces, i = {}, 1
  while i <= #ports do
    local j = i
    while j < #ports and ports[j + 1] == ports[j] + 1 do j = j + 1 end
    pieces[#pieces + 1] = i == j and tostring(ports[i]) or ports[i] .. ".." .. ports[j]
    i = j + 1
  end
  return "{" .. table.concat(pieces, ", ") .. "}"
end

local function start_segment_tap(ports)
  if segment_tap then segment_tap:remove() end
  segment_tap = nil
  if #ports == 0 then return end
  segment_tap = Listener.new("tcp", "tcp.len > 0 && tcp.port in " .. port_set(ports))
  segment_tap.packet = tap_segment
  -- before Wireshark feeds the taps every packet again (a statistics window's retap)
  segment_tap.reset = function()
    framing = {}
    tap_frame = 0
  end
end

-- Segments of a message completing in this frame: only the frame's first message of a
-- direction can have started earlier; its count is what the tap saw before this frame, plus one.
-- The tap's state says so while it has read only frames before this one: on Wireshark's first
-- pass, a retap, or the second pass of tshark -2 (whose first pass runs no taps); a later
-- dissection of the frame (a click in the packet list) takes the count kept then.
local function message_segments(pinfo, first)
  if not first then return 1 end
  local key = pinfo.number .. "/" .. direction_key(pinfo)
  if tap_frame < pinfo.number then
    local st = framing[direction_key(pinfo)]
    first_msg_segments[key] = st and st.have > 0 and st.segs + 1 or 1
  end
  return first_msg_segments[key] or 1
end

-- ---- requests and their answers: a connection's responses come in the order of its requests
-- (the server answers each request in turn, the proxy answers its one request), so each
-- response answers the oldest request not yet answered that its receiver sent on the
-- connection. Pairs are made on the first pass and kept per message ("frame/index in frame")
-- for later re-dissections, where a request also learns its response's frame.
local unanswered = {}  -- direction key -> { first = i, last = j, [k] = request } (first > last: none)
local pairs_of = {}    -- message id -> { frame, clock, response } (a request), { request, delta } or false

local frame_time = Field.new("frame.time")

-- When this frame came: its time stamp as an NSTime (to the nanosecond, where pinfo.abs_ts, a
-- double, is about 0.1 us off), and pinfo.rel_ts for passes that build no tree.
local function frame_clock(pinfo)
  local t = frame_time()
  return { abs = t and t.value, rel = pinfo.rel_ts }
end

-- Time from clock a to clock b as an NSTime.
local function time_since(a, b)
  if a.abs and b.abs then return b.abs - a.abs end
  local d = b.rel - a.rel
  local secs = math.floor(d)
  return NSTime.new(secs, math.floor((d - secs) * 1e9 + 0.5))
end

local function message_id(pinfo, index) return pinfo.number .. "/" .. index end

-- sport, dport: the message's ports where they are not the frame's (a message cut short by
-- the other side's RST).
local function pair_message(pinfo, index, is_request, sport, dport)
  local id = message_id(pinfo, index)
  if pinfo.visited then return pairs_of[id] end
  -- the queue of the requests this message's sender sent, or of those it was sent
  sport, dport = sport or pinfo.src_port, dport or pinfo.dst_port
  local dir = connection_key(pinfo) .. "/" .. tostring(is_request and sport or dport)
  local q = unanswered[dir]
  if not q then
    q = { first = 1, last = 0 }
    unanswered[dir] = q
  end
  if is_request then
    local req = { frame = pinfo.number, clock = frame_clock(pinfo) }
    pairs_of[id] = req
    q.last = q.last + 1
    q[q.last] = req
    return req
  end
  if q.first > q.last then
    pairs_of[id] = false
    return false
  end
  local req = q[q.first]
  q[q.first], q.first = nil, q.first + 1
  req.response = pinfo.number
  pairs_of[id] = { request = req.frame, delta = time_since(req.clock, frame_clock(pinfo)) }
  return pairs_of[id]
end

local function show_pair(tree, pair, is_request)
  if is_request then
    if pair and pair.response then tree:add(f.response_in, pair.response):set_generated() end
    return
  end
  if not pair then
    tree:add_proto_expert_info(ex.no_request, "Response without a request before it on this connection (the " ..
                               "capture began after the request, or it answers none)")
    return
  end
  tree:add(f.request_in, pair.request):set_generated()
  tree:add(f.response_time, pair.delta):set_generated()
end

-- A segment's messages share its Info column, joined by "; ". TCP may call the dissector more
-- than once for one frame (a reassembled message, then the rest of the segment), so the first
-- message of a frame is recognised by the column: it no longer holds what we last wrote there.
local info_frame, info_text = nil, nil

local function first_in_frame(pinfo)
  return not (info_frame == pinfo.number and tostring(pinfo.cols.info) == info_text)
end

local function set_info(pinfo, text, first)
  if first then
    pinfo.cols.info:set(text)
  else
    pinfo.cols.info:append("; " .. text)
  end
  info_frame, info_text = pinfo.number, tostring(pinfo.cols.info)
end

local function add_text(tree, field, range, text, cut)
  local item = tree:add(field, range, text)
  if cut then item:add_proto_expert_info(ex.text_cut, "Text shortened to " .. #text .. " bytes") end
  return item
end

-- The request's payload in the tree; returns the Info text for it.
local function show_request(tree, range, body)
  local d = payload.request(body)
  if d.proto then tree:add(f.pickle_protocol, range, d.proto):set_generated() end
  if d.expression then
    add_text(tree, f.expression, range, d.expression, d.cut)
    return abbrev(d.expression)
  end
  tree:add_proto_expert_info(ex.undecodable, "Undecodable request: " .. d.error)
  return abbrev("undecodable request: " .. d.error)
end

-- The response's payload in the tree; returns the Info text for it.
local function show_response(tree, range, body, status)
  local d = payload.response(body, status)
  if d.proto then tree:add(f.pickle_protocol, range, d.proto):set_generated() end
  local text
  if d.error then
    tree:add_proto_expert_info(ex.undecodable, "Undecodable response: " .. d.error)
    text = "undecodable response: " .. d.error
  elseif d.etype then
    tree:add(f.error_type, range, d.etype)
    add_text(tree, f.error_message, range, d.emsg, d.cut)
    text = d.etype .. ": " .. d.emsg
  else
    add_text(tree, f.result, range, d.result, d.cut)
    text = d.result
  end
  if d.steps then
    local steps = tree:add(f.steps_count, range, #d.steps)
    steps:set_generated()
    for i, step in ipairs(d.steps) do steps:add(f.steps, range, step):set_text("Step " .. i .. ": " .. step) end
  end
  if status == 200 then return abbrev(text) end
  if status == 400 or status == 500 then
    tree:add_proto_expert_info(ex.error_answer, "Status " .. status .. ": " .. abbrev(text))
  end
  return "status " .. status .. " " .. abbrev(text)
end

-- The header fields whose bytes this frame holds: { offset, size, field }, in header order.
local HEADER_FIELDS = { { 0, 4, f.time }, { 4, 2, f.length }, { 6, 2, f.flags }, { 6, 2, f.status },
                        { 8, 2, f.cache_control }, { 10, 2, f.padding } }
local FLAG_BITS = { f.reserved, f.cache, f.steps_flag, f.request }

local function show_header(tree, tvb)
  local items = {}
  for _, h in ipairs(HEADER_FIELDS) do
    if tvb:len() < h[1] + h[2] then break end
    items[h[3]] = tree:add(h[3], tvb(h[1], h[2]))
  end
  if items[f.flags] then
    local flags = tvb(6, 2):uint()
    for _, bit in ipairs(FLAG_BITS) do items[f.flags]:add(bit, tvb(6, 2)) end
    if flags >= 0x2000 then items[f.flags]:add_proto_expert_info(ex.reserved) end
    local status, is_request = flags % 0x400, math.floor(flags / 0x400) % 2 == 1
    if is_request and status ~= 0 then
      items[f.status]:add_proto_expert_info(ex.bad_status, "Status " .. status .. " in a request (requests carry 0)")
    elseif not is_request and not RESPONSE_STATUSES[status] then
      items[f.status]:add_proto_expert_info(ex.bad_status, "Status " .. status .. " in a response (the " ..
                                            "reference answers 200, 400 or 500)")
    end
  end
  return items
end

-- Why a message is not all here. TCP hands over an incomplete message when a snaplen cut its
-- frame (truncated frames are not reassembled) or when its reassembly preference is off.
local function missing_bytes_note(tree, have, size)
  local why = " (a snaplen cut, or TCP's \"Allow subdissector to reassemble TCP streams\" is off)"
  if size then
    tree:add_proto_expert_info(ex.bytes_missing, "Only " .. have .. " of the message's " .. size ..
                               " bytes are in the capture here" .. why)
  else
    tree:add_proto_expert_info(ex.bytes_missing, (have == 0 and "None of the message's bytes are" or
                                                  "Only the message's first " .. have .. " bytes are") ..
                               " in the capture here" .. why ..
                               ": without its total length this direction cannot be framed")
  end
end

local frame_messages = 0  -- messages dissected so far in the frame being dissected
-- Direction key -> the last frame where a message was shown without all its bytes (a snaplen
-- cut, or TCP's reassembly off): such a message is not shown again when its stream ends.
local partial_shown = {}

-- One message as dissect_tcp_pdus hands it over: exactly its bytes, or the part of them this
-- frame holds.
local function dissect_message(tvb, pinfo, root)
  local first = first_in_frame(pinfo)
  frame_messages = first and 1 or frame_messages + 1
  pinfo.cols.protocol:set("CALC")
  local have = tvb:len()
  local tree = root:add(calc, tvb:range(0, have))
  local items = show_header(tree, tvb)
  local info
  if have < 8 then
    partial_shown[direction_key(pinfo)] = pinfo.number
    missing_bytes_note(tree, have, have >= 6 and tvb(4, 2):uint() or nil)
    info = "Malformed message: header cut after " .. have .. " B"
  else
    local size = tvb(4, 2):uint()
    local flags = tvb(6, 2):uint()
    local is_request = math.floor(flags / 0x400) % 2 == 1
    local kind = is_request and "Request" or "Response"
    local status = flags % 0x400
    if size < HEADER_SIZE then
      items[f.length]:add_proto_expert_info(ex.bad_length, "Total length " .. size .. " is below the 12-byte " ..
                                            "header: the rest of this direction cannot be framed")
      info = "Malformed " .. kind:lower() .. ": total length " .. size
    elseif have < HEADER_SIZE then
      partial_shown[direction_key(pinfo)] = pinfo.number
      missing_bytes_note(tree, have, size)
      info = "Malformed " .. kind:lower() .. ": header cut after " .. have .. " B"
    else
      tree:add(f.payload_length, tvb(4, 2), size - HEADER_SIZE):set_generated()
      local nseg = message_segments(pinfo, first)
      info = kind .. " " .. size .. " B" .. (nseg > 1 and " in " .. nseg .. " segments" or "")
      if have < size then
        partial_shown[direction_key(pinfo)] = pinfo.number
        missing_bytes_note(tree, have, size)
        info = info .. (not is_request and status ~= 200 and ": status " .. status .. " (bytes missing)" or
                        " (bytes missing)")
      else
        local body = tvb:raw(HEADER_SIZE, size - HEADER_SIZE)
        local range = size > HEADER_SIZE and tvb(HEADER_SIZE, size - HEADER_SIZE) or tvb(4, 2)
        info = info .. ": " .. (is_request and show_request(tree, range, body) or
                                show_response(tree, range, body, status))
      end
    end
    show_pair(tree, pair_message(pinfo, frame_messages, is_request), is_request)
  end
  tree:set_text("Calculator protocol: " .. info)
  set_info(pinfo, info, first)
  return have
end

-- The PDU length from the header's total length. Where the stream can no longer be framed
-- after this message (a total length below the header, or one this frame does not hold), the
-- message takes the rest of the segment and the direction is marked unframed from here on.
local function message_length(tvb, pinfo, offset)
  local why
  if tvb:len() - offset < 6 then
    why = "a message header cut before its total length"
  else
    local size = tvb(offset + 4, 2):uint()
    if size >= HEADER_SIZE then return size end
    why = "a total length below 12"
  end
  local key = direction_key(pinfo)
  unframed_since[key] = unframed_since[key] or { frame = pinfo.number, why = why }
  -- TCP takes a length below its minimum (the header's 12 bytes) for a broken packet
  return math.max(HEADER_SIZE, tvb:reported_length_remaining(offset))
end

function calc.dissector(tvb, pinfo, tree)
  local since = unframed_since[direction_key(pinfo)]
  if since and pinfo.number > since.frame then
    pinfo.cols.protocol:set("CALC")
    pinfo.cols.info:set("Unframed data: the stream's framing broke in frame " .. since.frame)
    local item = tree:add(calc, tvb:range(0, tvb:len()), "Calculator protocol, unframed data")
    item:add_proto_expert_info(ex.unframed, "In frame " .. since.frame .. ", " .. since.why ..
                               " broke the framing of this direction")
    return tvb:reported_len()
  end
  if tvb:len() == 0 then
    -- a snaplen cut the segment before the message beginning here (after the end of one TCP
    -- framed for us): its total length is lost, and dissect_tcp_pdus fails on no bytes at all
    message_length(tvb, pinfo, 0)
    dissect_message(tvb, pinfo, tree)
    return tvb:reported_len()
  end
  dissect_tcp_pdus(tvb, tree, HEADER_SIZE, message_length, dissect_message, true)
  return tvb:reported_len()
end

-- ---- messages cut short: a FIN ends its sender's direction, a RST both directions, and a
-- message begun there but not whole then never will be (a proxy that forwards only the
-- 12-byte header, then closes). TCP never hands such a message over, so a postdissector shows
-- it in the frame that ended it, as calc-sniff reports it: its header as far as it came, the
-- bytes it had and those that never came. It reads the segment tap's framing of the frames
-- before (on the pass where the tap is behind this frame) plus this segment's own bytes; what
-- it finds is kept per frame for later re-dissections.
local calc_end = Proto("calc_end", "Calculator protocol: messages cut short")
local f_fin, f_rst, f_dstport = Field.new("tcp.flags.fin"), Field.new("tcp.flags.reset"), Field.new("tcp.dstport")
local calc_ports = {}  -- port -> true for every port that decodes as calc (calc.init)
local cut_short = {}   -- frame number -> the messages that frame cut short
local ended = {}       -- direction key -> the frame of its FIN or of the connection's RST

-- The direction's partial message that this frame ends, or nil (also when an earlier frame
-- ended the direction: a retransmitted FIN, a RST after a FIN).
local function cut_message(key, port, st, by, frame)
  if ended[key] and ended[key] < frame then return nil end
  ended[key] = frame
  if not st or st.have == 0 or (partial_shown[key] or 0) >= st.start_frame then return nil end
  return { header = st.header, have = st.have, total = st.total, segs = st.segs, by = by, key = key, port = port }
end

local function find_cut_short(tvb, pinfo)
  local fin, rst = f_fin(), f_rst()
  local found = {}
  if not ((fin and fin.value) or (rst and rst.value)) then return found end
  local key = direction_key(pinfo)
  local st = framing[key]
  local data, seq = segment_data(tvb)
  if data and #data > 0 and st ~= false then
    -- this segment's bytes come before its FIN: the tap reads them only after this frame
    local copy = {}
    for k, v in pairs(st or {}) do copy[k] = v end
    st = feed(st and copy, seq, data, pinfo.number)
  end
  if fin and fin.value and not (rst and rst.value) then
    -- a FIN after a gap in the stream ends a message whose bytes are missing, not cut short
    if st and data and seq + #data == st.expect then
      found[#found + 1] = cut_message(key, pinfo.src_port, st, "FIN", pinfo.number)
    end
    ended[key] = ended[key] or pinfo.number
  else
    found[#found + 1] = cut_message(key, pinfo.src_port, st, "RST", pinfo.number)
    local other = connection_key(pinfo) .. "/" .. tostring(pinfo.dst_port)
    found[#found + 1] = cut_message(other, pinfo.dst_port, framing[other], "RST", pinfo.number)
  end
  return found
end

local function show_cut_short(root, pinfo, m)
  local first = first_in_frame(pinfo)
  frame_messages = first and 1 or frame_messages + 1
  pinfo.cols.protocol:set("CALC")
  local hdr = ByteArray.new(m.header, true):tvb("Message cut short")
  local tree = root:add(calc, hdr:range(0, #m.header))
  show_header(tree, hdr)
  -- a RST from either side cuts both directions: which one this message was sent in
  tree:add(f.sender_port, m.port):set_generated()
  local why = m.by == "FIN" and "its sender closed its side of the connection (FIN)" or
              "the connection was reset (RST)"
  local info
  if m.have < 8 then
    tree:add_proto_expert_info(ex.cut_short, "Cut short inside its header: " .. why .. " after the message's first " ..
                               m.have .. " bytes")
    info = "Malformed message: cut short by " .. m.by .. " after " .. m.have .. " B"
  else
    local flags = hdr(6, 2):uint()
    local is_request = math.floor(flags / 0x400) % 2 == 1
    local size = hdr(4, 2):uint()
    local missing = size - m.have
    local item = tree:add(f.missing, missing):set_generated()
    item:add_proto_expert_info(ex.cut_short, "Cut short: " .. why .. " after " .. m.have .. " of the message's " ..
                               size .. " bytes; " .. missing .. " never came")
    info = (is_request and "Request " or "Response ") .. size .. " B" ..
           (m.segs > 1 and " in " .. m.segs .. " segments" or "") .. " cut short by " .. m.by .. ": " ..
           missing .. " B missing"
    local other = m.port == pinfo.src_port and pinfo.dst_port or pinfo.src_port
    show_pair(tree, pair_message(pinfo, frame_messages, is_request, m.port, other), is_request)
  end
  tree:set_text("Calculator protocol: " .. info)
  set_info(pinfo, info, first)
end

function calc_end.dissector(tvb, pinfo, tree)
  local sport, dport = f_srcport(), f_dstport()
  if not (sport and dport and (calc_ports[sport.value] or calc_ports[dport.value])) then return end
  if tap_frame < pinfo.number then cut_short[pinfo.number] = find_cut_short(tvb, pinfo) end
  for _, m in ipairs(cut_short[pinfo.number] or {}) do show_cut_short(tree, pinfo, m) end
end

register_postdissector(calc_end)

-- Registration: the ports preference, and "Decode As" offers calc on any other TCP port.
local tcp_port = DissectorTable.get("tcp.port")
local calc_name = tostring(Dissector.get("calc"))  -- how the table names our dissector

-- Whether the table's entry for port is our dissector (a handle's only identity in Lua is its name).
local function decodes_as_calc(port)
  local d = tcp_port:get_dissector(port)
  return d ~= nil and tostring(d) == calc_name
end

-- The preference's ports as a set: "9998-9999,5000" -> { [5000] = true, [9998] = true, [9999] = true }.
local function pref_ports()
  local set = {}
  for piece in calc.prefs.ports:gmatch("[^,]+") do
    local lo, hi = piece:match("^%s*(%d+)%s*%-%s*(%d+)%s*$")
    if not lo then
      lo = piece:match("^%s*(%d+)%s*$")
      hi = lo
    end
    if lo then
      for port = tonumber(lo), tonumber(hi) do set[port] = true end
    end
  end
  return set
end

-- Ports the preference registered, each with the table's entry before it (false: none). A
-- change of the preference touches only these and the new ones, so the user's Decode As
-- entries on other ports, or on ports that stay, are kept; a port leaving the preference gets
-- back what it decoded as before, unless Decode As has since given it another dissector.
local own_ports = {}

local function apply_ports_pref()
  local wanted = pref_ports()
  for port, before in pairs(own_ports) do
    if not wanted[port] then
      if decodes_as_calc(port) then
        if before then tcp_port:add(port, before) else tcp_port:remove(port, calc) end
      end
      own_ports[port] = nil
    end
  end
  for port in pairs(wanted) do
    if own_ports[port] == nil then
      own_ports[port] = tcp_port:get_dissector(port) or false
      tcp_port:add(port, calc)
    end
  end
end

calc.prefs_changed = apply_ports_pref

-- Every (re)dissection starts here, after preference changes and Decode As took effect: the
-- segment tap is set up for every port that now decodes as calc, whichever way it came to
-- (Lua cannot list a table's entries, so every port is looked up: about 12 ms).
function calc.init()
  unframed_since = {}
  framing = {}
  first_msg_segments = {}
  tap_frame = 0
  unanswered = {}
  pairs_of = {}
  partial_shown = {}
  cut_short = {}
  ended = {}
  calc_ports = {}
  local ports = {}
  for port = 0, 65535 do
    if decodes_as_calc(port) then
      ports[#ports + 1] = port
      calc_ports[port] = true
    end
  end
  start_segment_tap(ports)
end

apply_ports_pref()
tcp_port:add_for_decode_as(calc)
