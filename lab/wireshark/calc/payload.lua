-- calc/payload.lua: a message's payload decoded to the texts the dissector shows, as libcalc
-- decodes it and calc-sniff prints it: a request's expression, a response's result and steps
-- or its exception, or why the payload cannot be decoded (libcalc's own messages). No
-- Wireshark API: runs under a plain Lua 5.2 too (tests/e2e/test_dissector_lua.py).

-- Wireshark runs every .lua file under its plugin folder as a plugin of its own; this file is
-- a module for require (which passes its name), so it does nothing when run that way.
if not ... then return end

local limits = require("calc.limits")
local pickle = require("calc.pickle")
local expr = require("calc.expr")
local pyobj = require("calc.pyobj")

local M = {}

M.MSG_DESER = "Received data could not be deserialized"
M.MSG_NOTEXPR = "Received data is not an Expression2"
local MSG_DEPTH = string.format("Expression too deeply nested (limit %d levels)", limits.MAX_DEPTH)
local MSG_SIZE = string.format("Expression too large (limit %d nodes)", limits.MAX_NODES)
local MSG_ARGS = string.format("Expression has too many arguments (limit %d per call)", limits.MAX_ARGS)

-- A request payload: { expression = text, cut = shortened, proto = pickle protocol } or
-- { error = reason, proto = pickle protocol when the pickle itself was read }.
function M.request(s)
  local top, why, proto = pickle.run(s, true)
  if not top then
    if why == "empty" then return { error = M.MSG_NOTEXPR } end
    if why ~= "deser" then return { error = why } end
    return { error = M.MSG_DESER }
  end
  local tree, err = expr.tree(top)
  if not tree then
    if err == "depth" then return { error = MSG_DEPTH, proto = proto } end
    if err == "size" then return { error = MSG_SIZE, proto = proto } end
    if err == "args" then return { error = MSG_ARGS, proto = proto } end
    return { error = M.MSG_NOTEXPR, proto = proto }
  end
  local text, cut = expr.text(tree)
  return { expression = text, cut = cut, proto = proto }
end

-- A response payload with the header's status: { result, steps } (a 200's result tuple),
-- { etype, emsg } (an exception), { result } (anything else), or { error = reason }; each
-- with cut (the text shortened) and proto.
function M.response(s, status)
  local top, why, proto = pickle.run(s, false)
  if not top then
    if why == "empty" then return { error = "empty response payload" } end
    if why ~= "deser" then return { error = why } end
    return { error = "response payload could not be deserialized" }
  end
  local o, cwhy = pyobj.convert(top)
  if not o then return { error = "response payload could not be decoded: " .. cwhy, proto = proto } end
  local r, d = o, { proto = proto }
  if status == 200 and o.k == "tuple" and o.n >= 1 then
    r = o.items[1]
    local steps = o.items[2]
    if o.n == 2 and steps.k == "list" then
      d.steps = {}
      for i = 1, steps.n do d.steps[i] = pyobj.str(steps.items[i]) end
    end
  end
  if r.k == "exc" then
    d.etype = r.name
    d.emsg, d.cut = pyobj.str(r)
  else
    d.result, d.cut = pyobj.str(r)
  end
  return d
end

return M
