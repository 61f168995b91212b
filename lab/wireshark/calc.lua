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
-- The payload is decoded the way libcalc decodes it: a pickle machine driven by an opcode table
-- that only RECORDS globals, calls and object builds (nothing is imported, looked up or
-- called), then a check of the recorded graph against the reference's object model. What it
-- cannot decode is marked with an expert info; it never raises a Lua error on wire data.
-- Texts are printed as calclab prints them (calc-sniff's JSON and notes): expressions as the
-- reference's stringify() with its bracket quirk, numbers and strings as Python's str/repr.

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
}
calc.fields = { f.time, f.length, f.flags, f.reserved, f.cache, f.steps_flag, f.request, f.status,
                f.cache_control, f.padding, f.payload_length, f.pickle_protocol, f.expression,
                f.result, f.steps, f.steps_count, f.error_type, f.error_message, f.response_in, f.request_in,
                f.response_time }

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
}) do
  ex[e[1]] = ProtoExpert.new(e[2], e[3], e[4], e[5])
  expert_list[#expert_list + 1] = ex[e[1]]
end
calc.experts = expert_list

calc.prefs.ports = Pref.range("TCP ports", "9998,9999",
                              "TCP ports decoded as the calculator protocol (proxy 9998, server 9999)", 65535)

-- ---------------------------------------------------------------- limits (libcalc's)

local HEADER_SIZE = 12
local MAX_VALUES = 131072      -- values one pickle may make
local MAX_STACK = 65536        -- stack entries, marks
local MAX_MEMO = 65536         -- memo index
local MAX_DICT_ITEMS = 1024    -- pairs in one dict
local MAX_HASH_DEPTH = 64      -- nesting of a tuple used as a dict key
local MAX_HASH_VALUES = 4096   -- values one dict key's hashability check may visit
local MAX_GLOBAL_NAME = 256    -- bytes of a global's module or name
local MAX_TEXT_DIGITS = 4300   -- digits of a text INT/LONG (CPython's own limit)
local MAX_INT_BITS = 100000    -- bits of any int
local MAX_DEPTH = 200          -- expression nesting
local MAX_NODES = 20000        -- expression nodes
local MAX_ARGS = 1000          -- arguments of one function call
local MAX_NAMED_LEN = 64       -- bytes of a NamedConstant's name
local MT_N = 624               -- Mersenne Twister state words
local MAX_PYOBJS = 200000      -- response objects made (memo sharing is expanded)
local MAX_PYBYTES = 16 * 1048576
local MAX_PYDEPTH = 200
local MAX_PRINT_DIGITS = 4300  -- ints printed in full up to CPython's str() limit
local TEXT_MAX = 65536         -- bytes of one decoded text shown
-- Bytes of an expression printed with all its brackets: a 64 KiB payload prints to less than
-- 200 KiB (2.5 digits per int byte, 2 brackets per node), so this is never reached; the
-- printout is cut to TEXT_MAX only once its brackets are removed.
local BRACKETED_MAX = 1048576
local NOTE_MAX = 48            -- calc-sniff's note abbreviation (47 bytes and NUL)

local MSG_DESER = "Received data could not be deserialized"
local MSG_NOTEXPR = "Received data is not an Expression2"

-- ---------------------------------------------------------------- text output with a cap

-- Pieces of one text, with its byte count; writes past limit (default TEXT_MAX) are dropped
-- and remembered.
local function outbuf(limit)
  return { n = 0, len = 0, cut = false, limit = limit or TEXT_MAX }
end

local function put(o, s)
  if o.cut then return end
  if o.len + #s > o.limit then
    o.cut = true
    return
  end
  o.n = o.n + 1
  o[o.n] = s
  o.len = o.len + #s
end

local function outstr(o)
  return table.concat(o, "", 1, o.n)
end

-- ---------------------------------------------------------------- numbers as Python prints them

-- A double from 8 big-endian bytes (IEEE 754), built from its fields.
local function be_double(s, i)
  local b1, b2, b3, b4, b5, b6, b7, b8 = s:byte(i, i + 7)
  local sign = b1 >= 128 and -1 or 1
  local e = (b1 % 128) * 16 + math.floor(b2 / 16)
  local m = (b2 % 16) * 2 ^ 48 + b3 * 2 ^ 40 + b4 * 2 ^ 32 + b5 * 2 ^ 24 + b6 * 2 ^ 16 + b7 * 2 ^ 8 + b8
  if e == 0x7ff then
    if m == 0 then return sign * math.huge end
    return 0 / 0
  end
  if e == 0 then return sign * math.ldexp(m, -1074) end
  return sign * math.ldexp(m + 2 ^ 52, e - 1075)
end

-- Digits and decimal exponent of "%.Ne" output: "1.25e+03" -> "125", 3.
local function parse_e(s)
  local a, b, e = s:match("^(%d)%.?(%d*)e([-+]%d+)$")
  return a .. b, tonumber(e)
end

-- digits (a string of n digits) plus delta (+1/-1) in its last place; nil when it would
-- change the digit count downwards (a neighbour that is not n digits long).
local function step_digits(d, e, delta)
  local t = { d:byte(1, -1) }
  local i = #t
  while i >= 1 do
    local v = t[i] - 48 + delta
    if v >= 0 and v <= 9 then
      t[i] = v + 48
      break
    end
    t[i] = delta > 0 and 48 or 57
    i = i - 1
  end
  if i == 0 then
    if delta < 0 then return nil end
    table.insert(t, 1, 49)
    table.remove(t)
    e = e + 1
  end
  if t[1] == 48 then return nil end
  return string.char(unpack(t)), e
end

local function reads_back(d, e, x)
  return tonumber(d:sub(1, 1) .. "." .. d:sub(2) .. "e" .. e) == x
end

local DBL_MIN = 2.2250738585072014e-308

-- The shortest digits that read back as x > 0 (Python's repr). For a normal double the
-- 15-digit rounding stripped of trailing zeros when it reads back (15-digit decimals are
-- spaced wider than the interval that reads back as x, so at most one of 15 or fewer digits
-- does), else the nearest 16-digit decimal or one of its neighbours, else the 17 digits.
-- Subnormals have fewer significant bits: their lengths are tried one by one.
local function shortest_digits(x)
  if x < DBL_MIN then
    for p = 1, 17 do
      local d, e = parse_e(string.format("%." .. (p - 1) .. "e", x))
      if reads_back(d, e, x) then return d, e end
    end
  end
  local d, e = parse_e(string.format("%.14e", x))
  if reads_back(d, e, x) then return d, e end
  d, e = parse_e(string.format("%.15e", x))
  if reads_back(d, e, x) then return d, e end
  for _, delta in ipairs({ -1, 1 }) do
    local d1, e1 = step_digits(d, e, delta)
    if d1 and reads_back(d1, e1, x) then return d1, e1 end
  end
  return parse_e(string.format("%.16e", x))
end

-- repr(float): fixed notation for exponents -4..15, else d.ddde+XX; ".0" on whole numbers.
local function float_repr(x)
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" end
  if x == -math.huge then return "-inf" end
  local sign = ""
  if x < 0 or (x == 0 and 1 / x < 0) then
    sign = "-"
    x = -x
  end
  if x == 0 then return sign .. "0.0" end
  local d, e = shortest_digits(x)
  d = d:gsub("0+$", "")
  if d == "" then d = "0" end
  if e >= -4 and e < 16 then
    if e < 0 then return sign .. "0." .. string.rep("0", -e - 1) .. d end
    local intlen = e + 1
    if #d > intlen then return sign .. d:sub(1, intlen) .. "." .. d:sub(intlen + 1) end
    return sign .. d .. string.rep("0", intlen - #d) .. ".0"
  end
  local m = d:sub(1, 1)
  if #d > 1 then m = m .. "." .. d:sub(2) end
  return string.format("%s%se%s%02d", sign, m, e < 0 and "-" or "+", math.abs(e))
end

-- Ints: small ones (|v| < 2^53) are Lua numbers in .v; others keep their magnitude as
-- little-endian bytes (.mag, a table) with .neg, or their decimal text (.dec).
local function bitlen(v)
  local n = 0
  while v >= 1 do
    v = math.floor(v / 2)
    n = n + 1
  end
  return n
end

local function int_small(v)
  return { k = "int", v = v, bits = bitlen(math.abs(v)) }
end

-- An int from n little-endian two's complement bytes of s at i (LONG1/LONG4).
local function int_from_le(s, i, n)
  local mag = { s:byte(i, i + n - 1) }
  local neg = n > 0 and mag[n] >= 128
  if neg then
    -- magnitude of a negative value: invert and add one
    local carry = 1
    for j = 1, n do
      local v = 255 - mag[j] + carry
      mag[j] = v % 256
      carry = math.floor(v / 256)
    end
  end
  while #mag > 0 and mag[#mag] == 0 do mag[#mag] = nil end
  local bits = #mag == 0 and 0 or (#mag - 1) * 8 + bitlen(mag[#mag])
  if bits <= 52 then
    local v = 0
    for j = #mag, 1, -1 do v = v * 256 + mag[j] end
    return int_small(neg and -v or v)
  end
  return { k = "int", mag = mag, neg = neg, bits = bits }
end

-- Decimal text of a magnitude (little-endian bytes): base 10^7 limbs, fed three bytes at a
-- time (a limb times 2^24 plus a carry stays below 2^53, exact in a double).
local function mag_decimal(mag)
  local limbs, nl = { 0 }, 1
  local j = #mag
  while j >= 1 do
    local chunk, mult = 0, 1
    for _ = 1, 3 do
      if j >= 1 then
        chunk, mult, j = chunk * 256 + mag[j], mult * 256, j - 1
      end
    end
    local carry = chunk
    for i = 1, nl do
      local v = limbs[i] * mult + carry
      local r = v % 1e7
      limbs[i] = r
      carry = (v - r) / 1e7
    end
    while carry > 0 do
      local r = carry % 1e7
      nl = nl + 1
      limbs[nl] = r
      carry = (carry - r) / 1e7
    end
  end
  local parts = { string.format("%.0f", limbs[nl]) }
  for i = nl - 1, 1, -1 do parts[#parts + 1] = string.format("%07.0f", limbs[i]) end
  return table.concat(parts)
end

-- str(int), or nil and a reason when it is longer than CPython's str() would print.
local function int_str(z)
  if z.v then return string.format("%.0f", z.v) end
  if z.dec then return z.dec end
  if z.bits * 0.30103 > MAX_PRINT_DIGITS + 1 then
    return nil, string.format("int of %d bits", z.bits)
  end
  z.dec = (z.neg and "-" or "") .. mag_decimal(z.mag)
  return z.dec
end

local function int_equals(z, v) return z.v ~= nil and z.v == v end

-- ---------------------------------------------------------------- the pickle machine

-- Globals libcalc knows; in requests every other global is refused on sight.
local KNOWN_GLOBALS = {}
for _, g in ipairs({
  "calculator.Constant", "calculator.NamedConstant", "calculator.BinaryExpr", "calculator.UnaryExpr",
  "calculator.FunctionCallExpr", "calculator.BinaryOperator", "calculator.UnaryOperator",
  "calculator.Function", "calculator.Associativity", "_operator.add", "_operator.sub",
  "_operator.mul", "_operator.truediv", "_operator.mod", "_operator.pow", "_operator.neg",
  "_operator.pos", "math.sin", "math.cos", "math.tan", "math.sqrt", "math.log", "builtins.max",
  "builtins.min", "builtins.pow", "random.Random", "builtins.getattr", "copyreg._reconstructor",
  "builtins.object" }) do
  KNOWN_GLOBALS[g] = true
end
-- Classes a request may instantiate (NEWOBJ, copyreg._reconstructor).
local EXPR_CLASSES = {
  ["calculator.Constant"] = true, ["calculator.NamedConstant"] = true, ["calculator.BinaryExpr"] = true,
  ["calculator.UnaryExpr"] = true, ["calculator.FunctionCallExpr"] = true,
  ["calculator.BinaryOperator"] = true, ["calculator.UnaryOperator"] = true, ["calculator.Function"] = true,
}
-- Callables a request may REDUCE (recorded, never called): checked against their shapes later.
local REQUEST_CALLS = { ["calculator.Associativity"] = true, ["random.Random"] = true, ["builtins.getattr"] = true }

-- A refusal inside the machine: error() with this table, caught by pcall in run_pickle.
local REFUSED = {}
local function refuse() error(REFUSED, 0) end

local function vm_new(s, request)
  return { s = s, pos = 1, request = request, stack = {}, sp = 0, marks = {}, nmarks = 0,
           memo = {}, memo_len = 0, nvals = 0, proto = 0 }
end

local function need(vm, n)
  if n > #vm.s - vm.pos + 1 then refuse() end
end

local function rd_le(vm, n)
  need(vm, n)
  local v = 0
  for i = vm.pos + n - 1, vm.pos, -1 do v = v * 256 + vm.s:byte(i) end
  vm.pos = vm.pos + n
  return v
end

local function val(vm, t)
  vm.nvals = vm.nvals + 1
  if vm.nvals > MAX_VALUES then refuse() end
  return t
end

local function push(vm, v)
  if vm.sp + 1 > MAX_STACK then refuse() end
  vm.sp = vm.sp + 1
  vm.stack[vm.sp] = v
end

-- The innermost MARK is a fence: like CPython, a pop never crosses it.
local function fence(vm) return vm.nmarks > 0 and vm.marks[vm.nmarks] or 0 end

local function pop(vm)
  if vm.sp <= fence(vm) then refuse() end
  local v = vm.stack[vm.sp]
  vm.stack[vm.sp] = nil
  vm.sp = vm.sp - 1
  return v
end

local function top(vm)
  if vm.sp <= fence(vm) then refuse() end
  return vm.stack[vm.sp]
end

local function pop_mark(vm)
  if vm.nmarks == 0 then refuse() end
  local k = vm.marks[vm.nmarks]
  vm.marks[vm.nmarks] = nil
  vm.nmarks = vm.nmarks - 1
  return k
end

local function truncate(vm, k)
  for i = vm.sp, k + 1, -1 do vm.stack[i] = nil end
  vm.sp = k
end

local function add_item(c, x)
  c.n = c.n + 1
  if c.n > 2 * MAX_VALUES then refuse() end
  c.items[c.n] = x
end

-- UTF-8 as CPython decodes a pickled str ('surrogatepass': encoded surrogates allowed).
local function utf8_ok(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local k, cp
    if c < 0x80 then
      k = 0
    elseif c >= 0xc0 and c < 0xe0 then
      k, cp = 1, c % 0x20
    elseif c >= 0xe0 and c < 0xf0 then
      k, cp = 2, c % 0x10
    elseif c >= 0xf0 and c < 0xf8 then
      k, cp = 3, c % 0x08
    else
      return false
    end
    if k > 0 then
      if k > n - i then return false end
      for j = 1, k do
        local b = s:byte(i + j)
        if b < 0x80 or b >= 0xc0 then return false end
        cp = cp * 64 + b % 64
      end
      if (k == 1 and cp < 0x80) or (k == 2 and cp < 0x800) or (k == 3 and (cp < 0x10000 or cp > 0x10ffff)) then
        return false
      end
    end
    i = i + k + 1
  end
  return true
end

local function take_bytes(vm, n, kind)
  need(vm, n)
  local s = vm.s:sub(vm.pos, vm.pos + n - 1)
  if kind == "str" and not utf8_ok(s) then refuse() end
  vm.pos = vm.pos + n
  return val(vm, { k = kind, s = s })
end

local function is_str(v) return v ~= nil and v.k == "str" and not v.s:find("\0", 1, true) end

-- A dict key must be hashable: no list or dict inside. Memo sharing makes a tuple a DAG whose
-- paths multiply (40 levels of t = (t, t, t) are 3^40 paths), so the walk is bounded by the
-- values it visits as well as by depth; a key past either bound is refused.
local function hashable(v, depth, budget)
  if v.k == "list" or v.k == "dict" or depth > MAX_HASH_DEPTH or budget.left == 0 then return false end
  budget.left = budget.left - 1
  if v.k == "tuple" then
    for i = 1, v.n do
      if not hashable(v.items[i], depth + 1, budget) then return false end
    end
  end
  return true
end

-- d[k] = v; a str key already present is replaced, as a dict would. d.index: str key ->
-- its item position, so a dict of many keys costs no scan per key.
local function dict_set(d, k, v)
  if not hashable(k, 0, { left = MAX_HASH_VALUES }) or d.n / 2 >= MAX_DICT_ITEMS then refuse() end
  if k.k == "str" then
    d.index = d.index or {}
    local at = d.index[k.s]
    if at then
      d.items[at + 1] = v
      return
    end
    d.index[k.s] = d.n + 1
  end
  add_item(d, k)
  add_item(d, v)
end

local function memo_put(vm, idx, v)
  if idx >= MAX_MEMO then refuse() end
  if vm.memo[idx] == nil then vm.memo_len = vm.memo_len + 1 end
  vm.memo[idx] = v
end

local function memo_get(vm, idx)
  local v = vm.memo[idx]
  if v == nil then refuse() end
  return v
end

local function new_container(vm, kind) return val(vm, { k = kind, items = {}, n = 0 }) end

-- A global (STACK_GLOBAL, GLOBAL): recorded as a name, never imported.
local function push_global(vm, module, name)
  if #module > MAX_GLOBAL_NAME or #name > MAX_GLOBAL_NAME then refuse() end
  local full = module .. "." .. name
  if vm.request and not KNOWN_GLOBALS[full] then refuse() end
  push(vm, val(vm, { k = "global", module = module, name = name, full = full }))
end

-- ---- protocols 0-3: text arguments, GLOBAL, copyreg._reconstructor

-- The text up to the next newline, at most max bytes.
local function rd_line(vm, max)
  local stop = math.min(#vm.s, vm.pos + max)
  local nl = vm.s:find("\n", vm.pos, true)
  if not nl or nl > stop then refuse() end
  local line = vm.s:sub(vm.pos, nl - 1)
  vm.pos = nl + 1
  return line
end

-- A decimal integer as repr(int) writes it: optional sign, then only 0s or no leading 0.
local function text_int(vm, line)
  local sign, digits = line:match("^([-+]?)(%d+)$")
  if not digits or #digits > MAX_TEXT_DIGITS then refuse() end
  if digits:match("^0") and not digits:match("^0+$") then refuse() end
  if digits:match("^0+$") then return val(vm, int_small(0)) end
  if #digits <= 15 then return val(vm, int_small(tonumber(line:gsub("^%+", ""), 10))) end
  local bits = math.floor((#digits - 1) * 3.3219280948873623) + 1
  return val(vm, { k = "int", dec = (sign == "-" and "-" or "") .. digits, bits = bits })
end

-- FLOAT: what CPython's float parser reads whole: decimal, inf, infinity, nan; no hex, no
-- spaces; overflow refused (CPython raises OverflowError).
local function text_float(vm, line)
  if #line == 0 or #line >= 64 or line:find("[^0-9.+eEinfatyINFATY-]") then refuse() end
  local sign, word = line:match("^([-+]?)(%a+)$")
  if word then
    word = word:lower()
    local x
    if word == "inf" or word == "infinity" then x = math.huge elseif word == "nan" then x = 0 / 0 else refuse() end
    return val(vm, { k = "float", f = sign == "-" and -x or x })
  end
  if not (line:match("^[-+]?%d+%.?%d*$") or line:match("^[-+]?%d*%.%d+$") or
          line:match("^[-+]?%d+%.?%d*[eE][-+]?%d+$") or line:match("^[-+]?%d*%.%d+[eE][-+]?%d+$")) then
    refuse()
  end
  local x = tonumber(line)
  if x == nil or x == math.huge or x == -math.huge then refuse() end
  return val(vm, { k = "float", f = x })
end

local function utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xc0 + math.floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then
    return string.char(0xe0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return string.char(0xf0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
                     0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

-- UNICODE: the 'raw-unicode-escape' codec: bytes are code points 0-255, an odd run of
-- backslashes before u/U ends in an escape of exactly 4/8 hex digits (up to U+10FFFF).
local function text_unicode(vm, line)
  local out, i, n = {}, 1, #line
  while i <= n do
    local c = line:byte(i)
    if c ~= 92 then
      out[#out + 1] = utf8_char(c)
      i = i + 1
    else
      local run = 0
      while i + run <= n and line:byte(i + run) == 92 do run = run + 1 end
      local nxt = line:sub(i + run, i + run)
      local esc = run % 2 == 1 and (nxt == "u" or nxt == "U")
      out[#out + 1] = string.rep("\\", esc and run - 1 or run)
      i = i + run
      if esc then
        local digits = nxt == "u" and 4 or 8
        local hex = line:sub(i + 1, i + digits)
        if #hex < digits or hex:find("[^0-9a-fA-F]") then refuse() end
        local cp = tonumber(hex, 16)
        if cp > 0x10ffff then refuse() end
        out[#out + 1] = utf8_char(cp)
        i = i + 1 + digits
      end
    end
  end
  return val(vm, { k = "str", s = table.concat(out) })
end

local function text_index(line)
  if #line == 0 or #line > 10 or line:find("%D") then refuse() end
  return tonumber(line)
end

-- Python 2 module names CPython maps for protocols 0-2 (fix_imports).
local function py3_module(m, proto)
  if proto >= 3 then return m end
  if m == "__builtin__" or m == "exceptions" then return "builtins" end
  if m == "copy_reg" then return "copyreg" end
  return m
end

-- copyreg._reconstructor(cls, object, None): protocols 0 and 1's object.__new__(cls).
local function is_reconstruct(fn, args)
  return fn.full == "copyreg._reconstructor" and args.n == 3 and args.items[1].k == "global" and
         args.items[2].k == "global" and args.items[2].full == "builtins.object" and args.items[3].k == "none"
end

local function from_mark(vm, kind)
  local k = pop_mark(vm)
  local v = new_container(vm, kind)
  for i = k + 1, vm.sp do add_item(v, vm.stack[i]) end
  truncate(vm, k)
  return v
end

local function tuple_n(vm, n)
  if vm.sp < fence(vm) + n then refuse() end
  local v = new_container(vm, "tuple")
  for i = vm.sp - n + 1, vm.sp do add_item(v, vm.stack[i]) end
  truncate(vm, vm.sp - n)
  push(vm, v)
end

local function load_int(vm, n)
  local u = rd_le(vm, n)
  if n == 4 and u >= 2 ^ 31 then u = u - 2 ^ 32 end
  push(vm, val(vm, int_small(u)))
end

local function load_long(vm, n)
  if n > MAX_INT_BITS / 8 + 1 then refuse() end
  need(vm, n)
  local z = int_from_le(vm.s, vm.pos, n)
  if z.bits > MAX_INT_BITS then refuse() end
  vm.pos = vm.pos + n
  push(vm, val(vm, z))
end

-- The opcode table: each entry names the modes that allow it (rq: requests, rs: responses)
-- and its handler. Opcodes not in the table (INST, OBJ, PERSID, EXT*, NEWOBJ_EX, ...) are refused.
local OPS = {}
local function op(code, rq, rs, fn) OPS[code] = { rq = rq, rs = rs, fn = fn } end
local function b(c) return string.byte(c) end

op(0x80, true, true, function(vm) -- PROTO
  local u = rd_le(vm, 1)
  if u > 5 then refuse() end
  vm.proto = u
end)
op(0x95, true, true, function(vm) -- FRAME: must be wholly present
  local u = rd_le(vm, 8)
  if u > #vm.s - vm.pos + 1 then refuse() end
end)
op(0x8c, true, true, function(vm) push(vm, take_bytes(vm, rd_le(vm, 1), "str")) end)   -- SHORT_BINUNICODE
op(b"X", true, true, function(vm) push(vm, take_bytes(vm, rd_le(vm, 4), "str")) end)   -- BINUNICODE
op(b"C", false, true, function(vm) push(vm, take_bytes(vm, rd_le(vm, 1), "bytes")) end) -- SHORT_BINBYTES
op(b"B", false, true, function(vm) push(vm, take_bytes(vm, rd_le(vm, 4), "bytes")) end) -- BINBYTES
op(0x94, true, true, function(vm) memo_put(vm, vm.memo_len, top(vm)) end)               -- MEMOIZE
op(b"q", true, true, function(vm) local i = rd_le(vm, 1); memo_put(vm, i, top(vm)) end) -- BINPUT
op(b"r", true, true, function(vm) local i = rd_le(vm, 4); memo_put(vm, i, top(vm)) end) -- LONG_BINPUT
op(b"h", true, true, function(vm) push(vm, memo_get(vm, rd_le(vm, 1))) end)             -- BINGET
op(b"j", true, true, function(vm) push(vm, memo_get(vm, rd_le(vm, 4))) end)             -- LONG_BINGET
op(0x93, true, true, function(vm) -- STACK_GLOBAL
  local name, module = pop(vm), pop(vm)
  if not is_str(module) or not is_str(name) then refuse() end
  push_global(vm, module.s, name.s)
end)
op(b"c", true, true, function(vm) -- GLOBAL "module\nname\n"
  local m, n = rd_line(vm, MAX_GLOBAL_NAME), rd_line(vm, MAX_GLOBAL_NAME)
  if m:find("\0", 1, true) or n:find("\0", 1, true) or not utf8_ok(m) or not utf8_ok(n) then refuse() end
  push_global(vm, py3_module(m, vm.proto), n)
end)
op(b")", true, true, function(vm) push(vm, new_container(vm, "tuple")) end)  -- EMPTY_TUPLE
op(0x85, true, true, function(vm) tuple_n(vm, 1) end)                        -- TUPLE1
op(0x86, true, true, function(vm) tuple_n(vm, 2) end)                        -- TUPLE2
op(0x87, true, true, function(vm) tuple_n(vm, 3) end)                        -- TUPLE3
op(b"(", true, true, function(vm) -- MARK
  if vm.nmarks + 1 > MAX_STACK then refuse() end
  vm.nmarks = vm.nmarks + 1
  vm.marks[vm.nmarks] = vm.sp
end)
op(b"t", true, true, function(vm) push(vm, from_mark(vm, "tuple")) end)       -- TUPLE
op(b"l", true, true, function(vm) push(vm, from_mark(vm, "list")) end)        -- LIST
op(b"1", false, true, function(vm) truncate(vm, pop_mark(vm)) end)            -- POP_MARK
op(b"0", false, true, function(vm) -- POP
  if vm.sp > fence(vm) then truncate(vm, vm.sp - 1) else pop_mark(vm) end
end)
op(0x81, true, true, function(vm) -- NEWOBJ: cls.__new__(cls, *args), only recorded
  local args, cls = pop(vm), pop(vm)
  if cls.k ~= "global" or args.k ~= "tuple" then refuse() end
  if vm.request and (not EXPR_CLASSES[cls.full] or args.n > 0) then refuse() end
  push(vm, val(vm, { k = "obj", cls = cls, args = args }))
end)
op(b"R", true, true, function(vm) -- REDUCE: callable(*args), only recorded, NEVER called
  local args, fn = pop(vm), pop(vm)
  if fn.k ~= "global" or args.k ~= "tuple" then refuse() end
  if is_reconstruct(fn, args) then
    local cls = args.items[1]
    if vm.request and not EXPR_CLASSES[cls.full] then refuse() end
    local none = new_container(vm, "tuple")
    push(vm, val(vm, { k = "obj", cls = cls, args = none }))
    return
  end
  if vm.request and not REQUEST_CALLS[fn.full] then refuse() end
  push(vm, val(vm, { k = "call", cls = fn, args = args }))
end)
op(b"b", true, true, function(vm) -- BUILD: the state is recorded
  local state = pop(vm)
  local o = top(vm)
  if (o.k ~= "obj" and o.k ~= "call") or o.has_state then refuse() end
  if vm.request then
    if o.k == "obj" and state.k ~= "dict" then refuse() end
    if o.k == "call" and (o.cls.full ~= "random.Random" or state.k ~= "tuple") then refuse() end
  end
  o.state = state
  o.has_state = true
end)
op(b"}", true, true, function(vm) push(vm, new_container(vm, "dict")) end)    -- EMPTY_DICT
op(b"s", true, true, function(vm) -- SETITEM
  local v, k = pop(vm), pop(vm)
  local d = top(vm)
  if d.k ~= "dict" then refuse() end
  dict_set(d, k, v)
end)
op(b"u", true, true, function(vm) -- SETITEMS
  local k = pop_mark(vm)
  if k <= fence(vm) then refuse() end
  local d = vm.stack[k]
  if d.k ~= "dict" or (vm.sp - k) % 2 ~= 0 then refuse() end
  for i = k + 1, vm.sp, 2 do dict_set(d, vm.stack[i], vm.stack[i + 1]) end
  truncate(vm, k)
end)
op(b"d", true, true, function(vm) -- DICT
  local k = pop_mark(vm)
  if (vm.sp - k) % 2 ~= 0 then refuse() end
  local d = new_container(vm, "dict")
  for i = k + 1, vm.sp, 2 do dict_set(d, vm.stack[i], vm.stack[i + 1]) end
  truncate(vm, k)
  push(vm, d)
end)
op(b"]", true, true, function(vm) push(vm, new_container(vm, "list")) end)    -- EMPTY_LIST
op(b"a", true, true, function(vm) -- APPEND
  local x = pop(vm)
  local l = top(vm)
  if l.k ~= "list" then refuse() end
  add_item(l, x)
end)
op(b"e", true, true, function(vm) -- APPENDS
  local k = pop_mark(vm)
  if k <= fence(vm) then refuse() end
  local l = vm.stack[k]
  if l.k ~= "list" then refuse() end
  for i = k + 1, vm.sp do add_item(l, vm.stack[i]) end
  truncate(vm, k)
end)
op(b"K", true, true, function(vm) load_int(vm, 1) end)                        -- BININT1
op(b"M", true, true, function(vm) load_int(vm, 2) end)                        -- BININT2
op(b"J", true, true, function(vm) load_int(vm, 4) end)                        -- BININT
op(0x8a, true, true, function(vm) load_long(vm, rd_le(vm, 1)) end)            -- LONG1
op(0x8b, true, true, function(vm) -- LONG4
  local n = rd_le(vm, 4)
  if n >= 2 ^ 31 then refuse() end
  load_long(vm, n)
end)
op(b"G", true, true, function(vm) -- BINFLOAT
  need(vm, 8)
  local x = be_double(vm.s, vm.pos)
  vm.pos = vm.pos + 8
  push(vm, val(vm, { k = "float", f = x }))
end)
op(0x88, true, true, function(vm) push(vm, val(vm, { k = "bool", b = true })) end)   -- NEWTRUE
op(0x89, true, true, function(vm) push(vm, val(vm, { k = "bool", b = false })) end)  -- NEWFALSE
op(b"N", true, true, function(vm) push(vm, val(vm, { k = "none" })) end)              -- NONE
op(b"I", true, true, function(vm) -- INT (also True/False as 01/00)
  local line = rd_line(vm, MAX_TEXT_DIGITS + 2)
  if line == "01" or line == "00" then
    push(vm, val(vm, { k = "bool", b = line == "01" }))
  else
    push(vm, text_int(vm, line))
  end
end)
op(b"L", true, true, function(vm) push(vm, text_int(vm, (rd_line(vm, MAX_TEXT_DIGITS + 2):gsub("L$", "")))) end)
op(b"F", true, true, function(vm) push(vm, text_float(vm, rd_line(vm, MAX_TEXT_DIGITS + 2))) end)
op(b"V", true, true, function(vm) push(vm, text_unicode(vm, rd_line(vm, #vm.s))) end)
op(b"p", true, true, function(vm) memo_put(vm, text_index(rd_line(vm, MAX_TEXT_DIGITS + 2)), top(vm)) end)
op(b"g", true, true, function(vm) push(vm, memo_get(vm, text_index(rd_line(vm, MAX_TEXT_DIGITS + 2)))) end)
op(b".", true, true, function(vm) vm.result = pop(vm) end)                    -- STOP

-- Runs the machine over s. Returns the top value, or nil and the reason.
local function run_pickle(s, request)
  if #s == 0 then return nil, "empty" end
  if #s > 65535 - HEADER_SIZE then return nil, "deser" end
  local vm = vm_new(s, request)
  local ok, err = pcall(function()
    while vm.result == nil do
      need(vm, 1)
      local code = vm.s:byte(vm.pos)
      vm.pos = vm.pos + 1
      local entry = OPS[code]
      if not entry or not (request and entry.rq or (not request and entry.rs)) then refuse() end
      entry.fn(vm)
    end
  end)
  if ok then return vm.result, nil, vm.proto end
  if err ~= REFUSED then return nil, "internal: " .. tostring(err) end
  return nil, "deser"
end

-- ---------------------------------------------------------------- the request's object model

local BINOPS = {
  { sym = "+", fn = "_operator.add" }, { sym = "-", fn = "_operator.sub" }, { sym = "*", fn = "_operator.mul" },
  { sym = "/", fn = "_operator.truediv" }, { sym = "%", fn = "_operator.mod" },
  { sym = "**", fn = "_operator.pow", right = true },
}
local UNOPS = { { sym = "-", fn = "_operator.neg" }, { sym = "+", fn = "_operator.pos" } }
local FUNCS = {
  sin = "math.sin", cos = "math.cos", tan = "math.tan", sqrt = "math.sqrt", log = "math.log",
  max = "builtins.max", min = "builtins.min", pow = "builtins.pow", rand = false, -- rand: a bound method
}

local function is_global(v, full) return v ~= nil and v.k == "global" and v.full == full end

-- The attributes of o, an instance of cls with exactly the attribute set names (any order).
local function attrs(o, cls, names)
  if o == nil or o.k ~= "obj" or o.cls.full ~= cls or not o.has_state then return nil end
  local d = o.state
  if d.k ~= "dict" or d.n ~= 2 * #names then return nil end
  local out = {}
  for i = 1, d.n, 2 do
    local key = d.items[i]
    if not is_str(key) then return nil end
    local j
    for x = 1, #names do
      if names[x] == key.s then j = x end
    end
    if not j or out[j] then return nil end
    out[j] = d.items[i + 1]
  end
  return out
end

-- Associativity(0) / Associativity(1) -> 0 / 1.
local function assoc_value(v)
  if v == nil or v.k ~= "call" or not is_global(v.cls, "calculator.Associativity") or v.has_state or v.args.n ~= 1 then
    return nil
  end
  local x = v.args.items[1]
  if x.k ~= "int" then return nil end
  if int_equals(x, 0) then return 0 end
  if int_equals(x, 1) then return 1 end
  return nil
end

local function binop_of(o)
  local a = attrs(o, "calculator.BinaryOperator", { "symbol", "function", "associativity" })
  if not a then return nil end
  for _, bop in ipairs(BINOPS) do
    local assoc = bop.right and 1 or 0
    if is_str(a[1]) and a[1].s == bop.sym and is_global(a[2], bop.fn) and assoc_value(a[3]) == assoc then
      return bop.sym
    end
  end
  return nil
end

local function unop_of(o)
  local a = attrs(o, "calculator.UnaryOperator", { "symbol", "function" })
  if not a then return nil end
  for _, uop in ipairs(UNOPS) do
    if is_str(a[1]) and a[1].s == uop.sym and is_global(a[2], uop.fn) then return uop.sym end
  end
  return nil
end

-- builtins.getattr(random.Random() with state (3, (625 ints), None|float), 'uniform'); all
-- rand functions of one request share that one random.Random.
local function rand_ok(c, m)
  if m == nil or m.k ~= "call" or not is_global(m.cls, "builtins.getattr") or m.has_state then return false end
  if m.args.n ~= 2 or not (is_str(m.args.items[2]) and m.args.items[2].s == "uniform") then return false end
  local r = m.args.items[1]
  if r.k ~= "call" or not is_global(r.cls, "random.Random") or r.args.n > 0 or not r.has_state then return false end
  if c.rng then return c.rng == r end
  local st = r.state
  if st.k ~= "tuple" or st.n ~= 3 then return false end
  local ver, mt, g = st.items[1], st.items[2], st.items[3]
  if ver.k ~= "int" or not int_equals(ver, 3) then return false end
  if mt.k ~= "tuple" or mt.n ~= MT_N + 1 then return false end
  if g.k ~= "none" and g.k ~= "float" then return false end
  for i = 1, MT_N + 1 do
    local x = mt.items[i]
    if x.k ~= "int" or x.v == nil or x.v < 0 or x.v > 0xffffffff or (i == MT_N + 1 and x.v > MT_N) then
      return false
    end
  end
  c.rng = r
  return true
end

local function fn_of(c, o)
  local a = attrs(o, "calculator.Function", { "name", "function" })
  if not a or not is_str(a[1]) then return nil end
  local want = FUNCS[a[1].s]
  if want == nil then return nil end
  if want == false then return rand_ok(c, a[2]) and a[1].s or nil end
  return is_global(a[2], want) and a[1].s or nil
end

-- The expression tree of a recorded graph: { kind = "const"|"named"|"bin"|"un"|"call", ... }.
-- c.err: "notexpr", "depth" or "size".
local function conv(c, o, depth)
  if c.err then return nil end
  if depth > MAX_DEPTH then c.err = "depth"; return nil end
  c.nodes = c.nodes + 1
  if c.nodes > MAX_NODES then c.err = "size"; return nil end
  if o == nil or o.k ~= "obj" then c.err = "notexpr"; return nil end
  local cls = o.cls.full
  if cls == "calculator.Constant" then
    local a = attrs(o, cls, { "value" })
    if a and a[1].k == "float" then return { kind = "const", num = a[1] } end
    if a and a[1].k == "int" then
      c.int_bytes = c.int_bytes + math.ceil(a[1].bits / 64) * 8
      if c.int_bytes > 65535 - HEADER_SIZE then c.err = "size"; return nil end
      return { kind = "const", num = a[1] }
    end
  elseif cls == "calculator.NamedConstant" then
    local a = attrs(o, cls, { "name", "value" })
    if a and is_str(a[1]) and #a[1].s <= MAX_NAMED_LEN and a[2].k == "float" then
      return { kind = "named", name = a[1].s }
    end
  elseif cls == "calculator.BinaryExpr" then
    local a = attrs(o, cls, { "left_operand", "operator", "right_operand" })
    local sym = a and binop_of(a[2])
    if sym then
      local l = conv(c, a[1], depth + 1)
      local r = l and conv(c, a[3], depth + 1)
      if r then return { kind = "bin", op = sym, l = l, r = r } end
      return nil
    end
  elseif cls == "calculator.UnaryExpr" then
    local a = attrs(o, cls, { "operator", "operand" })
    local sym = a and unop_of(a[1])
    if sym then
      local x = conv(c, a[2], depth + 1)
      if x then return { kind = "un", op = sym, x = x } end
      return nil
    end
  elseif cls == "calculator.FunctionCallExpr" then
    local a = attrs(o, cls, { "function", "args" })
    local name = a and fn_of(c, a[1])
    if name and a[2].k == "list" then
      if a[2].n > MAX_ARGS then c.err = "size"; return nil end
      local args = {}
      for i = 1, a[2].n do
        args[i] = conv(c, a[2].items[i], depth + 1)
        if not args[i] then return nil end
      end
      return { kind = "call", name = name, args = args }
    end
  end
  if not c.err then c.err = "notexpr" end
  return nil
end

-- ---------------------------------------------------------------- printing an expression

local function num_str(z)
  if z.k == "float" then return float_repr(z.f) end
  local s, why = int_str(z)
  return s or ("<" .. why .. ">"), s == nil
end

-- Pass 1: every node bracketed. Sets o.cut when a number was too long to print.
local function print_full(e, o)
  if e.kind == "const" then
    local s, cut = num_str(e.num)
    if cut then o.numcut = true end
    put(o, s)
  elseif e.kind == "named" then
    put(o, e.name)
  elseif e.kind == "bin" then
    put(o, "(")
    print_full(e.l, o)
    put(o, " " .. e.op .. " ")
    print_full(e.r, o)
    put(o, ")")
  elseif e.kind == "un" then
    put(o, e.op .. "(")
    print_full(e.x, o)
    put(o, ")")
  else
    put(o, e.name .. "(")
    for i, arg in ipairs(e.args) do
      if i > 1 then put(o, ", ") end
      print_full(arg, o)
    end
    put(o, ")")
  end
end

-- Passes 2 and 3 of the reference's bracket removal (protocol.md 3.2), quirk included: for
-- each bracket pair (l, r) in the order the closing brackets occur, when l+1 opens a pair
-- closing at r-1, the characters at positions l and r-1 OF THE CURRENT STRING go, l and r
-- being indices into the ORIGINAL string; then the outer pair goes when position 0 opened a
-- pair whose original close equals the current length - 1. "Position k of the current
-- string" comes from a Fenwick tree over the surviving characters (0-based positions).
local function remove_brackets(s)
  local n = #s
  local match, order, stack = {}, {}, {}
  for i = 0, n - 1 do
    local ch = s:byte(i + 1)
    if ch == 40 then
      stack[#stack + 1] = i
    elseif ch == 41 and #stack > 0 then
      local l = stack[#stack]
      stack[#stack] = nil
      match[l] = i
      order[#order + 1] = l
    end
  end
  -- Fenwick tree (1-based) over n slots, all alive, built in linear time.
  local function lowbit(i) return bit32.band(i, -i) end
  local tree = {}
  for i = 1, n do tree[i] = 0 end
  for i = 1, n do
    tree[i] = tree[i] + 1
    local parent = i + lowbit(i)
    if parent <= n then tree[parent] = tree[parent] + tree[i] end
  end
  local function remove_at(i)
    local j = i + 1
    while j <= n do
      tree[j] = tree[j] - 1
      j = j + lowbit(j)
    end
  end
  local top_step = 1
  while top_step * 2 <= n do top_step = top_step * 2 end
  local function kth(k) -- original index of the k-th (0-based) surviving character
    local pos, rem, st = 0, k + 1, top_step
    while st >= 1 do
      if pos + st <= n and tree[pos + st] < rem then
        pos = pos + st
        rem = rem - tree[pos]
      end
      st = st / 2
    end
    return pos
  end
  local alive = {}
  local cur = n
  for _, l in ipairs(order) do
    local r = match[l]
    if match[l + 1] ~= nil and match[l + 1] == r - 1 then
      local a = l < cur and kth(l) or nil
      local bpos = r - 1 < cur and kth(r - 1) or nil
      if a then alive[a] = false; remove_at(a); cur = cur - 1 end
      if bpos then alive[bpos] = false; remove_at(bpos); cur = cur - 1 end
    end
  end
  local first, last
  if n > 0 and match[0] ~= nil and cur > 0 and match[0] == cur - 1 then
    first, last = kth(0), kth(cur - 1)
  end
  local out, run_start = {}, nil
  for i = 0, n do
    local keep = i < n and alive[i] ~= false and i ~= first and i ~= last
    if keep and not run_start then run_start = i end
    if not keep and run_start then
      out[#out + 1] = s:sub(run_start + 1, i)
      run_start = nil
    end
  end
  return table.concat(out)
end

-- The printout, cut to TEXT_MAX bytes at a character boundary, and whether it was shortened
-- (cut, or an int too long to print).
local function expr_text(e)
  local o = outbuf(BRACKETED_MAX)
  print_full(e, o)
  local text = remove_brackets(outstr(o))
  if #text <= TEXT_MAX and not o.cut then return text, o.numcut end
  local stop = math.min(#text, TEXT_MAX)
  while stop > 0 and stop < #text and text:byte(stop + 1) >= 0x80 and text:byte(stop + 1) < 0xc0 do
    stop = stop - 1
  end
  return text:sub(1, stop), true
end

-- ---------------------------------------------------------------- responses: Python objects

-- A converted response object: like the machine's values but a tree (memo sharing copied),
-- exceptions as { k = "exc", module, name, items }, complex as { k = "complex", re, im }.
-- Bounded as libcalc bounds it: objects, bytes copied, depth.
local function num_as_double(v)
  if v.k == "float" then return v.f end
  if v.k == "int" then
    if v.v then return v.v end
    local s = int_str(v)
    return s and tonumber(s) or (v.neg and -math.huge or math.huge)
  end
  if v.k == "bool" then return v.b and 1 or 0 end
  return nil
end

local py_conv

-- o (nil when it could not be made) gets the converted items of container v.
local function conv_items(c, o, v, depth)
  if not o then return nil end
  for i = 1, v.n do
    local x = py_conv(c, v.items[i], depth + 1)
    if not x then return nil end
    o.items[i] = x
    o.n = i
  end
  return o
end

py_conv = function(c, v, depth)
  if depth > MAX_PYDEPTH then c.why = "response object nested too deeply"; return nil end
  local function new(t)
    c.count = c.count + 1
    if c.count > MAX_PYOBJS then c.why = "response object too large"; return nil end
    return t
  end
  local function budget(n)
    c.bytes = c.bytes + n
    if c.bytes > MAX_PYBYTES then c.why = "response object too large"; return false end
    return true
  end
  local k = v.k
  if k == "none" or k == "bool" or k == "float" then return new(v) end
  if k == "int" then
    if not budget(math.ceil(v.bits / 64) * 8) then return nil end
    return new(v)
  end
  if k == "str" or k == "bytes" then
    if not budget(#v.s) then return nil end
    return new(v)
  end
  if k == "tuple" or k == "list" or k == "dict" then
    return conv_items(c, new({ k = k, items = {}, n = 0 }), v, depth)
  end
  if k == "call" or k == "obj" then
    local g = v.cls
    if k == "call" and g.full == "builtins.complex" then
      local re, im = 0, 0
      if v.args.n >= 1 then re = num_as_double(v.args.items[1]) end
      if v.args.n == 2 then im = num_as_double(v.args.items[2]) end
      if re == nil or im == nil or v.args.n > 2 then c.why = "unexpected arguments to complex"; return nil end
      return new({ k = "complex", re = re, im = im })
    end
    return conv_items(c, new({ k = "exc", module = g.module, name = g.name, items = {}, n = 0 }), v.args, depth)
  end
  if k == "global" then c.why = "a bare global in a response"; return nil end
  c.why = "unexpected object"
  return nil
end

-- One UTF-8 code point of s at i (validated when unpickled): code point, next index.
local function utf8_next(s, i)
  local ch = s:byte(i)
  local k = ch < 0x80 and 0 or (ch >= 0xc0 and ch < 0xe0) and 1 or (ch >= 0xe0 and ch < 0xf0) and 2 or 3
  local cp = k == 0 and ch or k == 1 and ch % 0x20 or k == 2 and ch % 0x10 or ch % 0x08
  for j = 1, k do
    local b2 = s:byte(i + j)
    if b2 then cp = cp * 64 + b2 % 64 end
  end
  return cp, i + k + 1
end

-- str.isprintable() for one code point, as far as it matters here (libcalc's table).
local function py_printable(cp)
  if cp < 0x20 or (cp >= 0x7f and cp <= 0xa0) or cp == 0xad then return false end
  if (cp >= 0x2000 and cp <= 0x200f) or (cp >= 0x2028 and cp <= 0x202f) or (cp >= 0x205f and cp <= 0x206f) then
    return false
  end
  if cp == 0x1680 or cp == 0x3000 or cp == 0xfeff or (cp >= 0xd800 and cp <= 0xf8ff) then return false end
  if (cp >= 0xfff9 and cp <= 0xfffb) or cp > 0x10ffff or cp >= 0xf0000 then return false end
  return true
end

local function quote_for(s)
  if s:find("'", 1, true) and not s:find('"', 1, true) then return '"' end
  return "'"
end

local function repr_str(s, o)
  local q = quote_for(s)
  put(o, q)
  local i = 1
  while i <= #s do
    local start = i
    local cp
    cp, i = utf8_next(s, i)
    if cp == q:byte() or cp == 92 then put(o, "\\" .. string.char(cp))
    elseif cp == 9 then put(o, "\\t")
    elseif cp == 10 then put(o, "\\n")
    elseif cp == 13 then put(o, "\\r")
    elseif py_printable(cp) then put(o, s:sub(start, i - 1))
    elseif cp < 0x100 then put(o, string.format("\\x%02x", cp))
    elseif cp < 0x10000 then put(o, string.format("\\u%04x", cp))
    else put(o, string.format("\\U%08x", cp)) end
  end
  put(o, q)
end

local function repr_bytes(s, o)
  local q = quote_for(s)
  put(o, "b" .. q)
  for i = 1, #s do
    local ch = s:byte(i)
    if ch == q:byte() or ch == 92 then put(o, "\\" .. string.char(ch))
    elseif ch == 9 then put(o, "\\t")
    elseif ch == 10 then put(o, "\\n")
    elseif ch == 13 then put(o, "\\r")
    elseif ch < 0x20 or ch >= 0x7f then put(o, string.format("\\x%02x", ch))
    else put(o, string.char(ch)) end
  end
  put(o, q)
end

-- repr(float) inside complex(): without the forced ".0".
local function complex_part(x) return (float_repr(x):gsub("%.0$", "")) end

local function repr_complex(v, o)
  local re, im = v.re, v.im
  if re == 0 and 1 / re > 0 then
    put(o, complex_part(im) .. "j")
    return
  end
  put(o, "(" .. complex_part(re))
  local im_neg = im < 0 or (im == 0 and 1 / im < 0)
  if im ~= im then
    put(o, "+nan")
  else
    if not im_neg then put(o, "+") end
    put(o, complex_part(im))
  end
  put(o, "j)")
end

-- The OSError family: OSError(errno, strerror) shows as the subclass its errno names.
local OSERROR_NAMES = {}
for _, n in ipairs({ "OSError", "IOError", "EnvironmentError", "BlockingIOError", "ChildProcessError",
  "ConnectionError", "BrokenPipeError", "ConnectionAbortedError", "ConnectionRefusedError",
  "ConnectionResetError", "FileExistsError", "FileNotFoundError", "InterruptedError",
  "IsADirectoryError", "NotADirectoryError", "PermissionError", "ProcessLookupError", "TimeoutError" }) do
  OSERROR_NAMES[n] = true
end
-- Linux errno values, as CPython maps them to OSError subclasses.
local ERRNO_NAMES = {
  [11] = "BlockingIOError", [114] = "BlockingIOError", [115] = "BlockingIOError", [32] = "BrokenPipeError",
  [108] = "BrokenPipeError", [10] = "ChildProcessError", [103] = "ConnectionAbortedError",
  [111] = "ConnectionRefusedError", [104] = "ConnectionResetError", [17] = "FileExistsError",
  [2] = "FileNotFoundError", [21] = "IsADirectoryError", [20] = "NotADirectoryError", [4] = "InterruptedError",
  [13] = "PermissionError", [1] = "PermissionError", [3] = "ProcessLookupError", [110] = "TimeoutError",
}

local function is_builtin_oserror(v) return v.module == "builtins" and OSERROR_NAMES[v.name] == true end

local function exc_type_name(v)
  local name = v.name:match("([^.]*)$")
  if v.module == "builtins" and (name == "OSError" or name == "IOError" or name == "EnvironmentError") then
    local first = v.items[1]
    if v.n >= 2 and v.n <= 5 and first.k == "int" and first.v and math.abs(first.v) < 2 ^ 31 then
      return ERRNO_NAMES[first.v] or "OSError"
    end
    return "OSError"
  end
  return name
end

local py_repr

local function repr_seq(items, n, open, close, is_tuple, o)
  put(o, open)
  for i = 1, n do
    if i > 1 then put(o, ", ") end
    py_repr(items[i], o)
  end
  if is_tuple and n == 1 then put(o, ",") end
  put(o, close)
end

py_repr = function(v, o)
  local k = v.k
  if k == "none" then put(o, "None")
  elseif k == "bool" then put(o, v.b and "True" or "False")
  elseif k == "int" or k == "float" then put(o, (num_str(v)))
  elseif k == "complex" then repr_complex(v, o)
  elseif k == "str" then repr_str(v.s, o)
  elseif k == "bytes" then repr_bytes(v.s, o)
  elseif k == "tuple" then repr_seq(v.items, v.n, "(", ")", true, o)
  elseif k == "list" then repr_seq(v.items, v.n, "[", "]", false, o)
  elseif k == "dict" then
    put(o, "{")
    for i = 1, v.n - 1, 2 do
      if i > 1 then put(o, ", ") end
      py_repr(v.items[i], o)
      put(o, ": ")
      py_repr(v.items[i + 1], o)
    end
    put(o, "}")
  elseif k == "exc" then
    -- BaseException.__repr__: Name(repr(arg)) for one arg, else Name + repr(args)
    put(o, exc_type_name(v))
    if v.n == 1 then
      put(o, "(")
      py_repr(v.items[1], o)
      put(o, ")")
    else
      local n = v.n
      -- OSError(errno, strerror, filename, ...) keeps only the first two in its args
      if is_builtin_oserror(v) and n >= 3 and n <= 5 then n = 2 end
      repr_seq(v.items, n, "(", ")", true, o)
    end
  end
end

local function py_str(v, o)
  if v.k == "str" then put(o, v.s); return end
  if v.k ~= "exc" then py_repr(v, o); return end
  if is_builtin_oserror(v) and v.n >= 2 and v.n <= 5 then
    -- OSError.__str__: [Errno N] strerror, then ': filename' and ' -> filename2'
    put(o, "[Errno ")
    py_str(v.items[1], o)
    put(o, "] ")
    py_str(v.items[2], o)
    if v.n >= 3 and v.items[3].k ~= "none" then
      put(o, ": ")
      py_repr(v.items[3], o)
      if v.n >= 5 and v.items[5].k ~= "none" then
        put(o, " -> ")
        py_repr(v.items[5], o)
      end
    end
    return
  end
  -- BaseException.__str__: '' / str(arg) / str(args); KeyError shows repr(arg)
  if v.n == 0 then return end
  if v.n == 1 then
    if v.module == "builtins" and v.name == "KeyError" then py_repr(v.items[1], o) else py_str(v.items[1], o) end
    return
  end
  repr_seq(v.items, v.n, "(", ")", true, o)
end

local function text_of(fn, v)
  local o = outbuf()
  fn(v, o)
  return outstr(o), o.cut
end

-- ---------------------------------------------------------------- decoding a payload

-- A request payload: { expression = text } or { error = reason }.
local function decode_request(s)
  local top_v, why, proto = run_pickle(s, true)
  if not top_v then
    if why == "empty" then return { error = MSG_NOTEXPR } end
    if why ~= "deser" then return { error = why } end
    return { error = MSG_DESER }
  end
  local c = { nodes = 0, int_bytes = 0 }
  local tree = conv(c, top_v, 0)
  if not tree then
    if c.err == "depth" then return { error = "Expression too deeply nested (limit 200 levels)", proto = proto } end
    if c.err == "size" then return { error = "Expression too large (limit 20000 nodes)", proto = proto } end
    return { error = MSG_NOTEXPR, proto = proto }
  end
  local text, cut = expr_text(tree)
  return { expression = text, cut = cut, proto = proto }
end

-- A response payload: { result, steps } (a result tuple), { etype, emsg } (an exception),
-- { result } (anything else), or { error = reason }.
local function decode_response(s, status)
  local top_v, why, proto = run_pickle(s, false)
  if not top_v then
    if why == "empty" then return { error = "empty response payload" } end
    if why ~= "deser" then return { error = why } end
    return { error = "response payload could not be deserialized" }
  end
  local c = { count = 0, bytes = 0 }
  local o = py_conv(c, top_v, 0)
  if not o then return { error = "response payload could not be decoded: " .. (c.why or "?"), proto = proto } end
  local r, d = o, { proto = proto }
  if status == 200 and o.k == "tuple" and o.n >= 1 then
    r = o.items[1]
    local steps = o.items[2]
    if o.n == 2 and steps.k == "list" then
      d.steps = {}
      for i = 1, steps.n do d.steps[i] = text_of(py_str, steps.items[i]) end
    end
  end
  if r.k == "exc" then
    d.etype = r.name
    d.emsg, d.cut = text_of(py_str, r)
  else
    d.result, d.cut = text_of(py_str, r)
  end
  return d
end

-- ---------------------------------------------------------------- the dissector

-- calc-sniff's note abbreviation: at most 47 bytes, control bytes as \xNN, "..." when cut.
local function abbrev(s)
  local out, o = {}, 0
  for i = 1, #s do
    local ch = s:byte(i)
    local esc = ch < 0x20 or ch == 0x7f
    local piece = esc and string.format("\\x%02x", ch) or string.char(ch)
    if o + #piece + 4 > NOTE_MAX then
      out[#out + 1] = "..."
      return table.concat(out)
    end
    out[#out + 1] = piece
    o = o + #piece
  end
  return table.concat(out)
end

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

-- Feeds one segment's bytes (data, starting at sequence number seq) to the direction's framer.
local function count_segment(key, seq, data)
  local st = framing[key]
  if st == false then return end
  if st == nil then
    st = { expect = seq, have = 0, header = "", segs = 0 }
    framing[key] = st
  end
  if seq + #data <= st.expect then return end              -- a retransmission
  if seq > st.expect then framing[key] = false; return end -- a gap: message boundaries are lost
  data = data:sub(st.expect - seq + 1)
  st.expect = st.expect + #data
  if st.have > 0 then st.segs = st.segs + 1 end
  local i = 1
  while i <= #data do
    if st.have == 0 then st.segs, st.header = 1, "" end
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
      if st.total < HEADER_SIZE then framing[key] = false; return end
    end
    if st.have >= HEADER_SIZE and st.have == st.total then st.have = 0 end
  end
end

local function tap_segment(pinfo, tvb)
  tap_frame = pinfo.number
  local port, seq, len, hdr_len = f_srcport(), f_seq(), f_len(), f_hdr_len()
  if not (port and seq and len and hdr_len) or port.offset + hdr_len.value + len.value > tvb:len() then return end
  count_segment(direction_key(pinfo), seq.value, tvb:raw(port.offset + hdr_len.value, len.value))
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

local function pair_message(pinfo, index, is_request)
  local id = message_id(pinfo, index)
  if pinfo.visited then return pairs_of[id] end
  -- the queue of the requests this message's sender sent, or of those it was sent
  local dir = connection_key(pinfo) .. "/" .. tostring(is_request and pinfo.src_port or pinfo.dst_port)
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
  local d = decode_request(body)
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
  local d = decode_response(body, status)
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
                               " in the capture here" .. why .. ": without its total length this direction cannot be framed")
  end
end

local frame_messages = 0  -- messages dissected so far in the frame being dissected

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
      missing_bytes_note(tree, have, size)
      info = "Malformed " .. kind:lower() .. ": header cut after " .. have .. " B"
    else
      tree:add(f.payload_length, tvb(4, 2), size - HEADER_SIZE):set_generated()
      local nseg = message_segments(pinfo, first)
      info = kind .. " " .. size .. " B" .. (nseg > 1 and " in " .. nseg .. " segments" or "")
      if have < size then
        missing_bytes_note(tree, have, size)
        info = info .. (not is_request and status ~= 200 and ": status " .. status .. " (bytes missing)" or
                        " (bytes missing)")
      else
        local body = tvb:raw(HEADER_SIZE, size - HEADER_SIZE)
        local range = size > HEADER_SIZE and tvb(HEADER_SIZE, size - HEADER_SIZE) or tvb(4, 2)
        info = info .. ": " .. (is_request and show_request(tree, range, body) or show_response(tree, range, body, status))
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
  local why = nil
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
  local ports = {}
  for port = 0, 65535 do
    if decodes_as_calc(port) then ports[#ports + 1] = port end
  end
  start_segment_tap(ports)
end

apply_ports_pref()
tcp_port:add_for_decode_as(calc)
