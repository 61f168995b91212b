-- calc/pynum.lua: numbers as CPython prints them: repr(float) (shortest round-trip digits),
-- str(int) of any size, complex parts; and ints as the pickle reader makes them. No Wireshark
-- API: runs under a plain Lua 5.2 too.

-- Wireshark runs every .lua file under its plugin folder as a plugin of its own; this file is
-- a module for require (which passes its name), so it does nothing when run that way.
if not ... then return end

local limits = require("calc.limits")

local M = {}

-- A double from 8 big-endian bytes (IEEE 754), built from its fields.
function M.be_double(s, i)
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
  return string.char(table.unpack(t)), e
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
function M.float_repr(x)
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
function M.bitlen(v)
  local n = 0
  while v >= 1 do
    v = math.floor(v / 2)
    n = n + 1
  end
  return n
end

function M.int_small(v)
  return { k = "int", v = v, bits = M.bitlen(math.abs(v)) }
end

-- An int from n little-endian two's complement bytes of s at i (LONG1/LONG4).
function M.int_from_le(s, i, n)
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
  local bits = #mag == 0 and 0 or (#mag - 1) * 8 + M.bitlen(mag[#mag])
  if bits <= 52 then
    local v = 0
    for j = #mag, 1, -1 do v = v * 256 + mag[j] end
    return M.int_small(neg and -v or v)
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
function M.int_str(z)
  if z.v then return string.format("%.0f", z.v) end
  if z.dec then return z.dec end
  if z.bits * 0.30103 > limits.MAX_PRINT_DIGITS + 1 then
    return nil, string.format("int of %d bits", z.bits)
  end
  z.dec = (z.neg and "-" or "") .. mag_decimal(z.mag)
  return z.dec
end

function M.int_equals(z, v) return z.v ~= nil and z.v == v end

-- str() of a number value: its text, and true when it is an int too long to print.
function M.num_str(z)
  if z.k == "float" then return M.float_repr(z.f) end
  local s, why = M.int_str(z)
  return s or ("<" .. why .. ">"), s == nil
end

-- A number value as a double (complex()'s arguments), nil when it is no number.
function M.num_as_double(v)
  if v.k == "float" then return v.f end
  if v.k == "int" then
    if v.v then return v.v end
    local s = M.int_str(v)
    return s and tonumber(s) or (v.neg and -math.huge or math.huge)
  end
  if v.k == "bool" then return v.b and 1 or 0 end
  return nil
end

return M
