-- calc/expr.lua: the request's object model and its printing. A recorded pickle graph
-- (calc/pickle.lua) is checked against the reference's classes (exact classes, attribute sets,
-- operator/function pairs, rand's random.Random state shape) and printed as the reference's
-- stringify() prints it, bracket quirk included. No Wireshark API: runs under a plain Lua 5.2 too.

-- Wireshark runs every .lua file under its plugin folder as a plugin of its own; this file is
-- a module for require (which passes its name), so it does nothing when run that way.
if not ... then return end

local limits = require("calc.limits")
local pickle = require("calc.pickle")
local pynum = require("calc.pynum")
local text = require("calc.text")

local M = {}

local MAX_DEPTH, MAX_NODES, MAX_ARGS = limits.MAX_DEPTH, limits.MAX_NODES, limits.MAX_ARGS
local MAX_NAMED_LEN, MT_N = limits.MAX_NAMED_LEN, limits.MT_N
local is_str, int_equals = pickle.is_str, pynum.int_equals
local put, outbuf, outstr = text.put, text.outbuf, text.outstr
-- Bytes of an expression printed with all its brackets: a 64 KiB payload prints to less than
-- 200 KiB (2.5 digits per int byte, 2 brackets per node), so this is never reached; the
-- printout is cut to text.TEXT_MAX only once its brackets are removed.
local BRACKETED_MAX = 1048576

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

-- Associativity(0) / Associativity(1), or getattr(Associativity, 'LEFT' / 'RIGHT') as some
-- CPythons write an enum member -> 0 / 1.
local function assoc_value(v)
  local member = pickle.enum_member(v)
  if member ~= nil then return is_global(v.args.items[1], "calculator.Associativity") and member or nil end
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
-- c.err: "notexpr", "depth", "size" or "args" (which limit: each has its own 400).
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
      if c.int_bytes > limits.MAX_TREE_INT_BYTES then c.err = "size"; return nil end
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
      if a[2].n > MAX_ARGS then c.err = "args"; return nil end
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

-- Pass 1: every node bracketed. Sets o.cut when a number was too long to print.
local function print_full(e, o)
  if e.kind == "const" then
    local s, cut = pynum.num_str(e.num)
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

-- Passes 2 and 3 of the reference's bracket removal (docs/protocol.md section 3.2), quirk included: for
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

-- The printout, cut to text.TEXT_MAX bytes at a character boundary, and whether it was shortened
-- (cut, or an int too long to print).
function M.text(e)
  local o = outbuf(BRACKETED_MAX)
  print_full(e, o)
  local s = remove_brackets(outstr(o))
  if #s <= text.TEXT_MAX and not o.cut then return s, o.numcut end
  local stop = math.min(#s, text.TEXT_MAX)
  while stop > 0 and stop < #s and s:byte(stop + 1) >= 0x80 and s:byte(stop + 1) < 0xc0 do
    stop = stop - 1
  end
  return s:sub(1, stop), true
end


-- The expression tree of the top value of a request's pickle, or nil and why: "notexpr" (not
-- an expression of the reference's shape), "depth" or "size" (past libcalc's limits).
function M.tree(top)
  local c = { nodes = 0, int_bytes = 0 }
  local tree = conv(c, top, 0)
  if tree then return tree end
  return nil, c.err
end

return M
