"""Whether the course's own code would take a request's payload, decided without executing
anything.

calclab's decoder (libcalc) refuses some requests that the course's server would load and answer:
trees over calclab's limits (include/calc/limits.h: nested deeper than 200, more than 1000
arguments, more than 20000 nodes, integers over 100000 bits, constants' names over 64 bytes) and
pickle encodings it does not implement (protocol 5's or protocol 0's opcodes it has no need of).
Such a request is no fault of the student's client: the lab cannot judge it, so the run is a lab
error.  A request the course's code refuses too stays the client's fault.

"The course's code" is the course's client pickling its objects (docs/protocol.md section 2.1)
with CPython's pickle.dumps at any protocol, and its server loading them: the payload must be one
well-formed pickle, ending with STOP and nothing after it; every global it names must be one of the
protocol's (the table libcalc's decoder allows: the calculator module's classes, the operators'
and functions' globals, random.Random, builtins.getattr, and copyreg._reconstructor with
builtins.object for protocols 0 and 1); the graph it builds must be an expression of the
reference's object model (each class with exactly its attributes, operators and functions the
reference's singletons, builtins.getattr only of an Associativity member or of the random
generator's uniform).  What is not checked is what the course's code does not limit: depth up to
MAX_DEPTH, node count up to MAX_NODES (shared subtrees expanded), argument count, integer size,
name length, and any opcode CPython's unpickler reads for these objects.

Nothing is imported, looked up or called: pickletools.genops reads the opcodes, and a small
stack machine of inert values stands for what the unpickler would build."""
import dataclasses
import io
import pickletools

# The protocol's largest payload (docs/protocol.md section 1): no message carries more.
MAX_PAYLOAD = 65523
# Nesting the course's code itself writes, evaluates and prints, with Python's recursion limit of
# 1000 (measured with tests/student's calculator): CPython 3.11's pickler writes operator chains up
# to 331 deep and function-call chains up to 200 (3.12: 498 and 300), and the course's recursive
# evaluator fails past 992 and 331.  Deeper trees no course client writes unless told to recurse
# deeper, and the course's server may fail on them too (a RecursionError): they stay the sender's.
MAX_DEPTH = 300
# Nodes once shared subtrees are expanded (the course evaluates a shared subtree once per use):
# a 65523-byte payload holds about 5500 nodes without sharing, so past this bound the tree is a
# bomb of shared subtrees, not an expression anybody's parser made.
MAX_NODES = 100_000
# Memo slots: CPython's pickler numbers them from 0, one per object written.
MAX_MEMO = 1 << 20
# Python's own limit on digits of an int read from text (sys.get_int_max_str_digits' default),
# which protocol 0's INT and LONG meet in CPython >= 3.11.
MAX_TEXT_DIGITS = 4300


@dataclasses.dataclass(frozen=True)
class Verdict:
    """accepted: the course's code would load this payload as an expression; why: what decided
    it (for a refusal, what the course's code would refuse)."""
    accepted: bool
    why: str


class _Refused(Exception):
    pass


# ---- the protocol's globals (libcalc's allowlist, src/lib/pickle_vm.c) ----
NODE_CLASSES = ("Constant", "NamedConstant", "BinaryExpr", "UnaryExpr", "FunctionCallExpr")
PART_CLASSES = ("BinaryOperator", "UnaryOperator", "Function")
GLOBALS = frozenset(
    [("calculator", c) for c in NODE_CLASSES + PART_CLASSES + ("Associativity",)]
    + [("_operator", f) for f in ("add", "sub", "mul", "truediv", "mod", "pow", "neg", "pos")]
    + [("math", f) for f in ("sin", "cos", "tan", "sqrt", "log")]
    + [("builtins", f) for f in ("max", "min", "pow", "getattr", "object")]
    + [("random", "Random"), ("copyreg", "_reconstructor")])
ASSOCIATIVITY = {"LEFT": 0, "RIGHT": 1}
BINARY = {"+": ("add", 0), "-": ("sub", 0), "*": ("mul", 0), "/": ("truediv", 0), "%": ("mod", 0),
          "**": ("pow", 1)}
UNARY = {"-": "neg", "+": "pos"}
FUNCTIONS = {"sin": ("math", "sin"), "cos": ("math", "cos"), "tan": ("math", "tan"), "sqrt": ("math", "sqrt"),
             "log": ("math", "log"), "max": ("builtins", "max"), "min": ("builtins", "min"),
             "pow": ("builtins", "pow"), "rand": None}
ATTRS = {"Constant": ("value",), "NamedConstant": ("name", "value"),
         "BinaryExpr": ("left_operand", "operator", "right_operand"), "UnaryExpr": ("operator", "operand"),
         "FunctionCallExpr": ("function", "args"), "BinaryOperator": ("symbol", "function", "associativity"),
         "UnaryOperator": ("symbol", "function"), "Function": ("name", "function")}
# Python 2 module names CPython's unpickler maps for protocols 0-2 (fix_imports), for these globals.
PY2_MODULES = {"__builtin__": "builtins", "exceptions": "builtins", "copy_reg": "copyreg"}


# ---- inert values: what the unpickler would build, never built ----
class _Val:
    pass


@dataclasses.dataclass(eq=False)
class Prim(_Val):
    """An int, float, bool, str, bytes or None."""
    value: object


@dataclasses.dataclass(eq=False)
class Glob(_Val):
    module: str
    name: str


@dataclasses.dataclass(eq=False)
class Seq(_Val):
    kind: str           # tuple, list, set, frozenset
    items: list


@dataclasses.dataclass(eq=False)
class Dct(_Val):
    items: dict         # str key -> value (other keys kept as (key, value) in others)
    others: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(eq=False)
class Obj(_Val):
    """An instance of a calculator class (object.__new__(cls)), its state once BUILD set it."""
    cls: str
    state: object = None


@dataclasses.dataclass(eq=False)
class Member(_Val):
    """calculator.Associativity's member (by value or by name)."""
    name: str


@dataclasses.dataclass(eq=False)
class Rng(_Val):
    """random.Random(), its state once BUILD set it."""
    state: object = None


@dataclasses.dataclass(eq=False)
class Uniform(_Val):
    """getattr(a random.Random, 'uniform')."""
    rng: Rng


def _str(v):
    return isinstance(v, Prim) and type(v.value) is str


def _int(v):
    return isinstance(v, Prim) and type(v.value) is int


def _hashable(v, depth=0):
    if depth > 64:
        return False
    if isinstance(v, Seq):
        return v.kind in ("tuple", "frozenset") and all(_hashable(x, depth + 1) for x in v.items)
    return not isinstance(v, Dct)


def _global(module, name, proto):
    if proto < 3:
        module = PY2_MODULES.get(module, module)
    if (module, name) not in GLOBALS:
        raise _Refused(f"it names the global {module}.{name}, which the course's code never loads")
    return Glob(module, name)


def _call(f, args):
    """REDUCE: f(*args), for the calls the course's objects are pickled with."""
    if not isinstance(f, Glob) or not (isinstance(args, Seq) and args.kind == "tuple"):
        raise _Refused("REDUCE of something that is no global with a tuple of arguments")
    a = args.items
    g = (f.module, f.name)
    if g == ("calculator", "Associativity"):
        if len(a) == 1 and _int(a[0]) and a[0].value in (0, 1):
            return Member("LEFT" if a[0].value == 0 else "RIGHT")
        raise _Refused("calculator.Associativity called with no member's value")
    if g == ("builtins", "getattr"):
        if len(a) == 2 and isinstance(a[0], Glob) and (a[0].module, a[0].name) == ("calculator", "Associativity"):
            if _str(a[1]) and a[1].value in ASSOCIATIVITY:
                return Member(a[1].value)
            raise _Refused("getattr of calculator.Associativity's non-member "
                           f"{a[1].value if isinstance(a[1], Prim) else type(a[1]).__name__.lower()!r}")
        if len(a) == 2 and isinstance(a[0], Rng) and _str(a[1]) and a[1].value == "uniform":
            return Uniform(a[0])
        raise _Refused("getattr of something that is neither an Associativity member nor random's uniform")
    if g == ("random", "Random"):
        if a:
            raise _Refused("random.Random called with arguments")
        return Rng()
    if g == ("copyreg", "_reconstructor"):
        if (len(a) == 3 and isinstance(a[0], Glob) and a[0].module == "calculator"
                and a[0].name in NODE_CLASSES + PART_CLASSES and isinstance(a[1], Glob)
                and (a[1].module, a[1].name) == ("builtins", "object") and isinstance(a[2], Prim)
                and a[2].value is None):
            return Obj(a[0].name)
        raise _Refused("copyreg._reconstructor of something other than a calculator class")
    raise _Refused(f"it calls {f.module}.{f.name}, which the course's objects are never pickled with")


def _newobj(cls, args):
    if not (isinstance(cls, Glob) and cls.module == "calculator" and cls.name in NODE_CLASSES + PART_CLASSES):
        raise _Refused("NEWOBJ of something other than a calculator class")
    if not (isinstance(args, Seq) and args.kind == "tuple" and not args.items):
        raise _Refused(f"NEWOBJ of calculator.{cls.name} with arguments")
    return Obj(cls.name)


def _build(obj, state):
    if isinstance(obj, Obj) and obj.state is None and isinstance(state, Dct):
        obj.state = state
    elif isinstance(obj, Rng) and obj.state is None and isinstance(state, Seq) and state.kind == "tuple":
        obj.state = state
    else:
        raise _Refused("BUILD of a state the course's objects never have")


def _load(data):
    """The value STOP returns, from an inert run of the opcodes; _Refused when the course's
    unpickler would refuse them (or reach something not of its objects)."""
    stack, marks, memo = [], [], {}
    proto = 0
    end = None

    def pop():
        if len(stack) <= (marks[-1] if marks else 0):
            raise _Refused("the pickle pops more than its stack holds")
        return stack.pop()

    def pop_mark():
        if not marks:
            raise _Refused("the pickle closes a MARK it never opened")
        k = marks.pop()
        items = stack[k:]
        del stack[k:]
        return items

    def top():
        if len(stack) <= (marks[-1] if marks else 0):
            raise _Refused("the pickle reads an empty stack")
        return stack[-1]

    def list_on_top(op):
        lst = top()
        if not (isinstance(lst, Seq) and lst.kind == "list"):
            raise _Refused(f"{op} to something that is no list")
        return lst

    def put(i):
        if not 0 <= i < MAX_MEMO:
            raise _Refused(f"memo slot {i} (CPython's pickler numbers them from 0)")
        memo[i] = top()

    def get(i):
        if i not in memo:
            raise _Refused(f"the pickle fetches memo slot {i}, never stored")
        stack.append(memo[i])

    def setitems(d, kvs):
        if not isinstance(d, Dct) or len(kvs) % 2:
            raise _Refused("SETITEM(S) on something that is no dict")
        for k, v in zip(kvs[::2], kvs[1::2]):
            if not _hashable(k):
                raise _Refused("a dict key that is not hashable")
            if _str(k):
                d.items[k.value] = v
            else:
                d.others.append((k, v))

    try:
        for op, arg, pos in pickletools.genops(io.BytesIO(data)):
            n = op.name
            if n == "PROTO":
                proto = arg
            elif n == "FRAME":
                if arg > len(data) - pos - 9:
                    raise _Refused("a FRAME longer than the bytes after it")
            elif n == "STOP":
                v = pop()
                end = pos + 1
                break
            elif n == "MARK":
                marks.append(len(stack))
            elif n == "POP":
                if len(stack) > (marks[-1] if marks else 0):
                    stack.pop()
                else:
                    pop_mark()
            elif n == "POP_MARK":
                pop_mark()
            elif n == "DUP":
                stack.append(top())
            elif n in ("INT", "LONG"):
                if isinstance(arg, int) and not isinstance(arg, bool) and len(str(abs(arg))) > MAX_TEXT_DIGITS:
                    raise _Refused(f"an integer of more than {MAX_TEXT_DIGITS} digits in text")
                stack.append(Prim(arg))
            elif n in ("BININT", "BININT1", "BININT2", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
                       "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
                       "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"):
                stack.append(Prim(arg))
            elif n in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
                # Python 2 str: pickle.loads decodes it as ASCII (its default encoding)
                raw = arg.encode("latin-1") if isinstance(arg, str) else arg
                try:
                    stack.append(Prim(raw.decode("ascii")))
                except UnicodeDecodeError:
                    raise _Refused("a Python 2 string that is not ASCII") from None
            elif n == "NONE":
                stack.append(Prim(None))
            elif n in ("NEWTRUE", "NEWFALSE"):
                stack.append(Prim(n == "NEWTRUE"))
            elif n == "EMPTY_TUPLE":
                stack.append(Seq("tuple", []))
            elif n in ("TUPLE1", "TUPLE2", "TUPLE3"):
                k = int(n[-1])
                stack.append(Seq("tuple", [pop() for _ in range(k)][::-1]))
            elif n == "TUPLE":
                stack.append(Seq("tuple", pop_mark()))
            elif n == "EMPTY_LIST":
                stack.append(Seq("list", []))
            elif n == "LIST":
                stack.append(Seq("list", pop_mark()))
            elif n == "APPEND":
                v = pop()
                list_on_top(n).items.append(v)
            elif n == "APPENDS":
                items = pop_mark()
                list_on_top(n).items.extend(items)
            elif n == "EMPTY_DICT":
                stack.append(Dct({}))
            elif n == "DICT":
                d = Dct({})
                setitems(d, pop_mark())
                stack.append(d)
            elif n == "SETITEM":
                v = pop()
                k = pop()
                setitems(top(), [k, v])
            elif n == "SETITEMS":
                kvs = pop_mark()
                setitems(top(), kvs)
            elif n == "EMPTY_SET":
                stack.append(Seq("set", []))
            elif n == "ADDITEMS":
                items = pop_mark()
                s = top()
                if not (isinstance(s, Seq) and s.kind == "set") or not all(map(_hashable, items)):
                    raise _Refused("ADDITEMS to something that is no set")
                s.items.extend(items)
            elif n == "FROZENSET":
                items = pop_mark()
                if not all(map(_hashable, items)):
                    raise _Refused("a frozenset of unhashable items")
                stack.append(Seq("frozenset", items))
            elif n in ("PUT", "BINPUT", "LONG_BINPUT"):
                put(arg)
            elif n == "MEMOIZE":
                put(len(memo))
            elif n in ("GET", "BINGET", "LONG_BINGET"):
                get(arg)
            elif n == "GLOBAL":
                module, _, name = arg.partition(" ")
                stack.append(_global(module, name, proto))
            elif n == "STACK_GLOBAL":
                name = pop()
                module = pop()
                if not (_str(module) and _str(name)):
                    raise _Refused("STACK_GLOBAL of names that are not str")
                stack.append(_global(module.value, name.value, proto))
            elif n == "REDUCE":
                args = pop()
                f = pop()
                stack.append(_call(f, args))
            elif n == "NEWOBJ":
                args = pop()
                cls = pop()
                stack.append(_newobj(cls, args))
            elif n == "NEWOBJ_EX":
                kwargs = pop()
                args = pop()
                cls = pop()
                if not (isinstance(kwargs, Dct) and not kwargs.items and not kwargs.others):
                    raise _Refused("NEWOBJ_EX with keyword arguments")
                stack.append(_newobj(cls, args))
            elif n == "BUILD":
                state = pop()
                _build(top(), state)
            else:  # INST, OBJ, PERSID, BINPERSID, EXT1/2/4, NEXT_BUFFER, READONLY_BUFFER
                raise _Refused(f"opcode {n}, which pickling the course's objects never writes "
                               "(and the course's unpickler cannot resolve)")
    except _Refused:
        raise
    except (ValueError, TypeError, UnicodeDecodeError, EOFError) as e:
        raise _Refused(f"no well-formed pickle ({e})") from None
    if end is None:
        raise _Refused("no well-formed pickle (no STOP)")
    if end != len(data):
        raise _Refused(f"{len(data) - end} bytes after the pickle's STOP")
    return v


def _attrs(o, cls):
    """o's attribute values as the reference's class cls has them, or _Refused."""
    if not (isinstance(o, Obj) and o.cls == cls):
        raise _Refused(f"a {_what(o)} where the reference has a {cls}")
    if o.state is None or o.state.others or set(o.state.items) != set(ATTRS[cls]):
        have = sorted(o.state.items) if o.state is not None else []
        raise _Refused(f"a {cls} with attributes {have}, not the reference's {list(ATTRS[cls])}")
    return [o.state.items[a] for a in ATTRS[cls]]


def _what(v):
    if isinstance(v, Obj):
        return f"calculator.{v.cls}"
    if isinstance(v, Prim):
        return type(v.value).__name__
    return type(v).__name__.lower()


def _is_global(v, module, name):
    return isinstance(v, Glob) and (v.module, v.name) == (module, name)


def _check_rng(r, seen):
    """r is the one generator every rand of the request shares (the reference's RAND is one
    object), with the state random.Random.setstate() takes; checked once (seen)."""
    if seen:
        if seen[0] is not r:
            raise _Refused("two rand functions with different generators (the reference's is one object)")
        return
    st = r.state
    if not (isinstance(st, Seq) and st.kind == "tuple" and len(st.items) == 3):
        raise _Refused("a random.Random without the state Random.getstate() gives")
    ver, mt, gauss = st.items
    if not (_int(ver) and ver.value == 3 and isinstance(mt, Seq) and mt.kind == "tuple" and len(mt.items) == 625
            and all(_int(x) and 0 <= x.value <= 0xFFFFFFFF for x in mt.items) and mt.items[-1].value <= 624
            and isinstance(gauss, Prim) and (gauss.value is None or type(gauss.value) is float)):
        raise _Refused("a random.Random whose state Random.setstate() refuses")
    seen[:] = [r]


def _node(o, rng_seen):
    """o's children (expressions), after checking o is an expression node of the reference's."""
    cls = o.cls if isinstance(o, Obj) else None
    if cls == "Constant":
        (value,) = _attrs(o, cls)
        if not (isinstance(value, Prim) and type(value.value) in (int, float)):
            raise _Refused(f"a Constant whose value is a {_what(value)}, not an int or a float")
        return []
    if cls == "NamedConstant":
        name, value = _attrs(o, cls)
        if not (_str(name) and isinstance(value, Prim) and type(value.value) is float):
            raise _Refused("a NamedConstant that is not a str name and a float value")
        return []
    if cls == "BinaryExpr":
        left, op, right = _attrs(o, cls)
        symbol, function, assoc = _attrs(op, "BinaryOperator")
        want = BINARY.get(symbol.value) if _str(symbol) else None
        if not (want and _is_global(function, "_operator", want[0]) and isinstance(assoc, Member)
                and ASSOCIATIVITY[assoc.name] == want[1]):
            raise _Refused("a BinaryOperator that is none of the reference's")
        return [left, right]
    if cls == "UnaryExpr":
        op, operand = _attrs(o, cls)
        symbol, function = _attrs(op, "UnaryOperator")
        want = UNARY.get(symbol.value) if _str(symbol) else None
        if not (want and _is_global(function, "_operator", want)):
            raise _Refused("a UnaryOperator that is none of the reference's")
        return [operand]
    if cls == "FunctionCallExpr":
        function, args = _attrs(o, cls)
        name, f = _attrs(function, "Function")
        if not (_str(name) and name.value in FUNCTIONS):
            raise _Refused("a Function that is none of the reference's")
        if name.value == "rand":
            if not isinstance(f, Uniform):
                raise _Refused("rand whose function is not random's uniform")
            _check_rng(f.rng, rng_seen)
        elif not _is_global(f, *FUNCTIONS[name.value]):
            raise _Refused(f"the Function {name.value} with another function")
        if not (isinstance(args, Seq) and args.kind == "list"):
            raise _Refused("a FunctionCallExpr whose args are not a list")
        return list(args.items)
    raise _Refused(f"a {_what(o)} where the reference has an expression")


def _tree(root):
    """Checks the graph under root is an expression tree of the reference's: every node, its
    depth (at most MAX_DEPTH), its expanded size (at most MAX_NODES) and no node its own
    descendant.  Iterative: a deep tree must not meet this process's recursion limit.  Returns
    (depth, nodes, largest argument count)."""
    rng_seen = []
    size = {}                    # id(node) -> nodes under it, expanded, once checked
    height = {}
    on_path = set()
    most_args = 0
    todo = [(root, 0, False)]
    while todo:
        o, depth, done = todo.pop()
        if done:
            on_path.discard(id(o))
            kids = _node(o, rng_seen)
            size[id(o)] = 1 + sum(size[id(k)] for k in kids)
            height[id(o)] = 1 + max((height[id(k)] for k in kids), default=0)
            if size[id(o)] > MAX_NODES:
                raise _Refused(f"the tree expands to more than {MAX_NODES} nodes (shared subtrees)")
            continue
        if id(o) in size:
            if depth + height[id(o)] > MAX_DEPTH + 1:
                raise _Refused(f"nested more than {MAX_DEPTH} deep, past what the course's evaluator recurses into")
            continue
        if id(o) in on_path:
            raise _Refused("an expression that contains itself")
        if depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} deep, past what the course's evaluator recurses into")
        kids = _node(o, rng_seen)
        if isinstance(o, Obj) and o.cls == "FunctionCallExpr":
            most_args = max(most_args, len(kids))
        on_path.add(id(o))
        todo.append((o, depth, True))
        todo.extend((k, depth + 1, False) for k in reversed(kids))
    return height[id(root)] - 1, size[id(root)], most_args


def judge(payload):
    """The course's code's verdict on a request payload (bytes): Verdict(True, what it is) when
    it would load it as an expression, Verdict(False, why not) when it would refuse it."""
    if not isinstance(payload, (bytes, bytearray)):
        return Verdict(False, "no bytes")
    if len(payload) > MAX_PAYLOAD:
        return Verdict(False, f"{len(payload)} bytes, more than a message carries ({MAX_PAYLOAD})")
    if not payload:
        return Verdict(False, "an empty payload")
    try:
        root = _load(bytes(payload))
        depth, nodes, args = _tree(root)
    except _Refused as e:
        return Verdict(False, str(e))
    calls = f", {args} arguments in its largest call" if args else ""
    return Verdict(True, f"an expression of {nodes} nodes, nested {depth} deep{calls}")


def judge_hex(text):
    """judge() of a payload calc-sniff wrote in hex (its JSON's "payload")."""
    try:
        return judge(bytes.fromhex(text))
    except (TypeError, ValueError):
        return Verdict(False, "no payload in hex")


# Who sends the requests on a connection of each calc-sniff role: its originator.
SENDERS = {"client->server": "client", "client->proxy": "client", "proxy->server": "proxy"}
LAB_ERROR = "calclab cannot decode a request the course's code accepts"


def calclab_faults(records, ours):
    """The requests of a run that calclab's decoder refused but the course's code accepts, as
    lab errors' texts: calc-sniff's records of the run's capture (its --json: conn and msg
    records, a refused payload in hex), `ours` the roles calclab's own programs played.  Only
    requests a student's program sent count (calclab's own never send what the course's code
    would refuse, and the lab's deliberately bad ones are not a run's to blame); a request the
    course's code refuses too stays the sender's fault (empty list)."""
    roles = {r.get("id"): r.get("role") for r in records if r.get("type") == "conn"}
    out, seen = [], set()
    for m in records:
        if (m.get("type") != "msg" or m.get("kind") != "request" or m.get("dir") != "orig"
                or not m.get("malformed") or m.get("payload") is None):
            continue
        sender = SENDERS.get(roles.get(m.get("conn")))
        if sender is None or sender in ours:
            continue
        verdict = judge_hex(m["payload"])
        if not verdict.accepted:
            continue
        why = (m.get("expression") or "").removeprefix("undecodable request: ") or m.get("error") or "refused"
        if (sender, why) in seen:
            continue
        seen.add((sender, why))
        out.append(f"{LAB_ERROR}: {why} (the {sender}'s request on connection {m.get('conn')}: {verdict.why})")
    return out
