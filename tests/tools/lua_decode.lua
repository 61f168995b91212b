-- tests/tools/lua_decode.lua PLUGIN_DIR: the dissector's payload decoder (calc/payload.lua, as the
-- build assembles it in PLUGIN_DIR, generated limits included) under a plain Lua, for
-- tests/e2e/test_dissector_lua.py. Each input line is "request HEX" or "response STATUS HEX"
-- (a payload); each output line is what the decoder made of it, as tab-separated NAME=HEX
-- fields (expression, error, result, etype, emsg, step (one per step), cut, proto).
local dir = assert(arg[1], "usage: lua5.2 lua_decode.lua PLUGIN_DIR")
package.path = dir .. "/?.lua;" .. package.path
local payload = require("calc.payload")

local function unhex(h)
  return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end))
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

for line in io.lines() do
  local kind, rest = line:match("^(%a+) (.*)$")
  local d
  if kind == "request" then
    d = payload.request(unhex(rest))
  else
    local status, h = rest:match("^(%d+) (%x*)$")
    d = payload.response(unhex(h), tonumber(status))
  end
  local out = {}
  for _, k in ipairs({ "expression", "error", "result", "etype", "emsg" }) do
    if d[k] then out[#out + 1] = k .. "=" .. hex(d[k]) end
  end
  for _, step in ipairs(d.steps or {}) do out[#out + 1] = "step=" .. hex(step) end
  if d.cut then out[#out + 1] = "cut=" .. hex("1") end
  if d.proto then out[#out + 1] = "proto=" .. hex(tostring(d.proto)) end
  io.write(table.concat(out, "\t"), "\n")
end
