-- calc/text.lua: texts with a byte cap, UTF-8 as CPython reads and writes it, and calc-sniff's
-- note abbreviation. No Wireshark API: runs under a plain Lua 5.2 too (tests/e2e/test_dissector_lua.py).

-- Wireshark runs every .lua file under its plugin folder as a plugin of its own; this file is
-- a module for require (which passes its name), so it does nothing when run that way.
if not ... then return end

local M = {}

-- Bytes of one decoded text shown; longer ones are cut and marked (calc.text_cut).
M.TEXT_MAX = 65536
-- calc-sniff's note abbreviation: 47 bytes and its NUL (sniff_framer.c's ab[48]).
M.NOTE_MAX = 48

-- Pieces of one text, with its byte count; writes past limit (default TEXT_MAX) are dropped
-- and remembered.
function M.outbuf(limit)
  return { n = 0, len = 0, cut = false, limit = limit or M.TEXT_MAX }
end

function M.put(o, s)
  if o.cut then return end
  if o.len + #s > o.limit then
    o.cut = true
    return
  end
  o.n = o.n + 1
  o[o.n] = s
  o.len = o.len + #s
end

function M.outstr(o)
  return table.concat(o, "", 1, o.n)
end

-- UTF-8 as CPython decodes a pickled str ('surrogatepass': encoded surrogates allowed).
function M.utf8_ok(s)
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

-- The UTF-8 bytes of one code point.
function M.utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xc0 + math.floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then
    return string.char(0xe0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return string.char(0xf0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
                     0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

-- One UTF-8 code point of s at i (validated when unpickled): code point, next index.
function M.utf8_next(s, i)
  local ch = s:byte(i)
  local k = ch < 0x80 and 0 or (ch >= 0xc0 and ch < 0xe0) and 1 or (ch >= 0xe0 and ch < 0xf0) and 2 or 3
  local cp = k == 0 and ch or k == 1 and ch % 0x20 or k == 2 and ch % 0x10 or ch % 0x08
  for j = 1, k do
    local b2 = s:byte(i + j)
    if b2 then cp = cp * 64 + b2 % 64 end
  end
  return cp, i + k + 1
end

-- calc-sniff's note abbreviation: at most 47 bytes, control bytes as \xNN, "..." when cut.
function M.abbrev(s)
  local out, o = {}, 0
  for i = 1, #s do
    local ch = s:byte(i)
    local esc = ch < 0x20 or ch == 0x7f
    local piece = esc and string.format("\\x%02x", ch) or string.char(ch)
    if o + #piece + 4 > M.NOTE_MAX then
      out[#out + 1] = "..."
      return table.concat(out)
    end
    out[#out + 1] = piece
    o = o + #piece
  end
  return table.concat(out)
end

return M
