-- calc/pyobj.lua: a response's Python objects, printed as CPython's str() and repr() print
-- them: the recorded pickle graph made a tree (memo sharing copied, bounded as libcalc bounds
-- it), exceptions (the OSError family's errno subclasses included), complex, str and bytes
-- escapes. No Wireshark API: runs under a plain Lua 5.2 too.

-- Wireshark runs every .lua file under its plugin folder as a plugin of its own; this file is
-- a module for require (which passes its name), so it does nothing when run that way.
if not ... then return end

local limits = require("calc.limits")
local pynum = require("calc.pynum")
local text = require("calc.text")

local M = {}

local MAX_PYOBJS, MAX_PYBYTES, MAX_PYDEPTH = limits.MAX_PYOBJS, limits.MAX_PYBYTES, limits.MAX_PYDEPTH
local put, outbuf, outstr = text.put, text.outbuf, text.outstr
local float_repr, num_str, num_as_double = pynum.float_repr, pynum.num_str, pynum.num_as_double
local utf8_next = text.utf8_next

-- A converted response object: like the machine's values but a tree (memo sharing copied),
-- exceptions as { k = "exc", module, name, items }, complex as { k = "complex", re, im }.
-- Bounded as libcalc bounds it: objects, bytes copied, depth.
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

-- str(v): its text, cut to text.TEXT_MAX bytes, and whether it was cut.
function M.str(v)
  local o = outbuf()
  py_str(v, o)
  return outstr(o), o.cut
end

-- The object tree of the top value of a response's pickle, or nil and why.
function M.convert(top)
  local c = { count = 0, bytes = 0 }
  local o = py_conv(c, top, 0)
  if o then return o end
  return nil, c.why or "?"
end

return M
