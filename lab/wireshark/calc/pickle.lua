-- calc/pickle.lua: the pickle reader. Like libcalc's decoder, a pickle machine driven by an
-- opcode table that only RECORDS globals, calls and object builds: nothing is imported, looked
-- up or called, every length and count is checked against the remaining bytes and libcalc's
-- limits (calc/limits.lua, generated from its headers), and requests accept only the
-- calculator's globals. No Wireshark API: runs under a plain Lua 5.2 too.
--
-- Values: { k = "none" | "bool" (b) | "int" (see calc/pynum.lua) | "float" (f) | "str" | "bytes"
-- (s) | "tuple" | "list" | "dict" (items, n; a dict's keys and values alternate) | "global"
-- (module, name, full) | "obj" (cls, args: cls.__new__(cls, *args)) | "call" (cls, args: a
-- recorded REDUCE) }, the last two with state and has_state once BUILD set them.

-- Wireshark runs every .lua file under its plugin folder as a plugin of its own; this file is
-- a module for require (which passes its name), so it does nothing when run that way.
if not ... then return end

local limits = require("calc.limits")
local pynum = require("calc.pynum")
local text = require("calc.text")

local M = {}

local MAX_VALUES = limits.MAX_VALUES
local MAX_STACK = limits.MAX_STACK
local MAX_MEMO = limits.MAX_MEMO
local MAX_DICT_ITEMS = limits.MAX_DICT_ITEMS
local MAX_HASH_DEPTH = limits.MAX_HASH_DEPTH
local MAX_HASH_VALUES = limits.MAX_HASH_VALUES
local MAX_GLOBAL_NAME = limits.MAX_GLOBAL_NAME
local MAX_TEXT_DIGITS = limits.MAX_TEXT_DIGITS
local MAX_INT_BITS = limits.MAX_INT_BITS
local int_small, int_from_le = pynum.int_small, pynum.int_from_le
local utf8_ok, utf8_char = text.utf8_ok, text.utf8_char

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
-- The enum members a request may name. Some CPythons (3.11.2, Debian 12's python3) pickle an
-- enum member as builtins.getattr(TheEnumClass, 'NAME') where the others write
-- TheEnumClass(value); only these (class, name) pairs are taken in that form.
M.ENUM_MEMBERS = { ["calculator.Associativity"] = { LEFT = 0, RIGHT = 1 } }

-- The member's value when v is getattr(<allowlisted enum>, '<member>') recorded by REDUCE
-- (without state), else nil.
function M.enum_member(v)
  if v == nil or v.k ~= "call" or v.has_state or v.cls.full ~= "builtins.getattr" or v.args.n ~= 2 then return nil end
  local cls, name = v.args.items[1], v.args.items[2]
  local members = cls.k == "global" and M.ENUM_MEMBERS[cls.full]
  if not members or not M.is_str(name) then return nil end
  return members[name.s]
end

-- The two getattr calls a request may hold, checked when REDUCE records them: an allowlisted
-- enum member by name, and random.uniform bound to a random.Random made by REDUCE (its state is
-- checked with the expression). The reference's pickle.loads would run any other getattr, so,
-- like a refused global, it is refused on sight.
local function getattr_allowed(call)
  if M.enum_member(call) ~= nil then return true end
  local args = call.args
  return args.n == 2 and args.items[1].k == "call" and args.items[1].cls.full == "random.Random" and
         M.is_str(args.items[2]) and args.items[2].s == "uniform"
end

-- A refusal inside the machine: error() with this table, caught by pcall in M.run.
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

local function take_bytes(vm, n, kind)
  need(vm, n)
  local s = vm.s:sub(vm.pos, vm.pos + n - 1)
  if kind == "str" and not utf8_ok(s) then refuse() end
  vm.pos = vm.pos + n
  return val(vm, { k = kind, s = s })
end

function M.is_str(v) return v ~= nil and v.k == "str" and not v.s:find("\0", 1, true) end

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
  if not M.is_str(module) or not M.is_str(name) then refuse() end
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
  local call = val(vm, { k = "call", cls = fn, args = args })
  if vm.request and fn.full == "builtins.getattr" and not getattr_allowed(call) then refuse() end
  push(vm, call)
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
  local x = pynum.be_double(vm.s, vm.pos)
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

-- Runs the machine over s, a request's payload (request true) or a response's. Returns the
-- top value, nil and the pickle's protocol; or nil and the reason: "empty", "deser" (refused),
-- or "internal: ..." (a fault of the machine itself, shown rather than raised).
function M.run(s, request)
  if #s == 0 then return nil, "empty" end
  if #s > limits.MAX_PAYLOAD then return nil, "deser" end
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

return M
