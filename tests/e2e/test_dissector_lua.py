"""The dissector's payload decoder under a plain Lua: lab/wireshark/calc/*.lua as the build
assembles them (build/wireshark, calc/limits.lua generated from libcalc's headers), run by
Debian's lua5.2 (Wireshark 4.0's Lua) through tests/tools/lua_decode.lua, against the reference's
vectors in captures/vectors: each request's expression as the reference printed it, each answer
as its client printed it (result and steps, or the error), in both pickle flavours: by value, as
most CPythons write an enum member (Associativity(0)), and by name, as Debian 12's python3
(3.11.2) writes it (getattr(Associativity, 'LEFT')). The by-name vectors are taken from
captures/vectors where present and are always also made here from the by-value ones, with
tests/student's classes pickling enum members by name.

The answers of the protocol vectors are checked against Python's own unpickler, restricted to
exception classes (the reference's api module's are stood in for)."""
import builtins
import copy
import json
import pickle
import shutil
import subprocess

import pytest

from conftest import REPO, VECTORS, build_dir
import refvectors
from refvectors import load, student_calculator

LUA = shutil.which("lua5.2") or "lua5.2"
DRIVER = REPO / "tests" / "tools" / "lua_decode.lua"
MSG_DESER = "Received data could not be deserialized"
MSG_NOTEXPR = "Received data is not an Expression2"

pytestmark = pytest.mark.build_independent


def decode(items):
    """Runs the decoder over items, ("request", payload) or ("response", status, payload):
    one dict per item (expression, error, result, etype, emsg, step: a list, cut, proto)."""
    lines = "".join(f"request {i[1].hex()}\n" if i[0] == "request" else f"response {i[1]} {i[2].hex()}\n"
                    for i in items)
    r = subprocess.run([LUA, str(DRIVER), str(build_dir() / "wireshark")], input=lines, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = []
    for line in r.stdout.split("\n")[:-1]:
        d = {"step": []}
        for field in filter(None, line.split("\t")):
            k, v = field.split("=", 1)
            v = bytes.fromhex(v).decode("utf-8", "surrogatepass")
            if k == "step":
                d["step"].append(v)
            else:
                d[k] = v
        out.append(d)
    assert len(out) == len(items)
    return out


def client_prints(d):
    """What the reference client prints for an answer, from the decoder's texts."""
    return refvectors.client_prints(d.get("result"), d.get("step"), d.get("emsg"))


def build(c, t):
    """A vector's tree (its "tree" field) as tests/student's objects."""
    if "num" in t:
        return c.Constant(t["num"])
    if "const" in t:
        return c.CONSTANTS[t["const"]]
    if "bin" in t:
        return c.BinaryExpr(build(c, t["l"]), c.BINARY_OPERATORS[t["bin"]], build(c, t["r"]))
    if "un" in t:
        return c.UnaryExpr(c.UNARY_OPERATORS[t["un"]], build(c, t["x"]))
    return c.FunctionCallExpr(c.FUNCTIONS[t["fn"]], *[build(c, a) for a in t["args"]])


def dumps_by_name(c, tree):
    """pickle.dumps(tree) with enum members written as CPython 3.11.2 writes them:
    builtins.getattr(calculator.Associativity, 'LEFT') instead of Associativity(0)."""
    by_value = c.Associativity.__reduce_ex__
    c.Associativity.__reduce_ex__ = lambda self, proto: (getattr, (self.__class__, self._name_))
    try:
        return pickle.dumps(tree)
    finally:
        c.Associativity.__reduce_ex__ = by_value


def dumps_by_value(c, tree):
    """pickle.dumps(tree) with enum members by value, Associativity(0), whatever this Python's own
    way is (tests/student's Associativity pickles as the running CPython pickles an Enum)."""
    saved = c.Associativity.__reduce_ex__
    c.Associativity.__reduce_ex__ = lambda self, proto: (self.__class__, (self._value_,))
    try:
        return pickle.dumps(tree)
    finally:
        c.Associativity.__reduce_ex__ = saved


def by_name_vectors():
    """The by-value expression vectors with their requests pickled by name (answers unchanged)."""
    c = student_calculator()
    out = []
    for v in load("legacy-expressions.jsonl"):
        tree = build(c, v["tree"])
        # the stand-in makes the reference's bytes, so the by-name ones are the reference's too
        assert dumps_by_value(c, tree).hex() == v["request"]["payload"], v["name"]
        v = copy.deepcopy(v)
        v["request"]["payload"] = dumps_by_name(c, tree).hex()
        out.append(v)
    return out


EXPRESSION_FILES = sorted(p.name for p in VECTORS.glob("legacy-expressions*.jsonl"))
PROTOCOL_FILES = sorted(p.name for p in VECTORS.glob("legacy-protocol*.jsonl"))


def check_expressions(vectors):
    items = []
    for v in vectors:
        items.append(("request", bytes.fromhex(v["request"]["payload"])))
        items += [("response", v[k]["status"], bytes.fromhex(v[k]["payload"])) for k in ("steps", "nosteps")]
    got = iter(decode(items))
    for v in vectors:
        rq = next(got)
        assert rq.get("expression") == v["text"] and rq["proto"] == "4", (v["name"], rq)
        for k in ("steps", "nosteps"):
            d = next(got)
            # the quirk vectors' answers make the reference client fail on what it received
            assert v["quirk"] or client_prints(d) == v[k]["client_prints"], (v["name"], k, d)


@pytest.mark.parametrize("name", EXPRESSION_FILES)
def test_expression_vectors(name):
    vectors = load(name)
    assert len(vectors) > 300
    check_expressions(vectors)


def test_expression_vectors_pickled_by_name():
    vectors = by_name_vectors()
    e1 = next(v for v in vectors if v["name"] == "seed-1")
    assert len(bytes.fromhex(e1["request"]["payload"])) + 12 == 706   # docs/protocol.md section 2.1: E1 is 706 B
    # every request with a binary operator names its associativity by getattr
    with_binop = [v for v in vectors if '"bin"' in json.dumps(v["tree"])]
    assert len(with_binop) > 200
    assert all(b"\x8c\x07getattr" in bytes.fromhex(v["request"]["payload"]) for v in with_binop)
    check_expressions(vectors)


def test_the_generated_limits_are_libcalcs():
    """calc/limits.lua is the build's, from the headers: a nesting of CALC_MAX_DEPTH levels is
    read, one more refused with libcalc's message."""
    limits = (build_dir() / "wireshark" / "calc" / "limits.lua").read_text()
    assert "Generated at build time" in limits and "MAX_DEPTH = 200, -- CALC_MAX_DEPTH" in limits
    c = student_calculator()
    trees = refvectors.at_the_depth_limit(c)
    ok, deep = decode([("request", pickle.dumps(t)) for t in trees])
    assert ok["expression"] == c.stringify(trees[0])
    assert deep == {"step": [], "error": "Expression too deeply nested (limit 200 levels)", "proto": "4"}
    # the arguments' limit has its own message, as libcalc's 400
    calls = [c.FunctionCallExpr(c.MAX, *[c.Constant(1)] * n) for n in (1000, 1001)]
    ok, wide = decode([("request", pickle.dumps(t)) for t in calls])
    assert ok.get("expression") == c.stringify(calls[0]), ok
    assert wide == {"step": [], "error": "Expression has too many arguments (limit 1000 per call)", "proto": "4"}


class Getattr:
    """Pickles as builtins.getattr(obj, name), whatever obj and name are."""

    def __init__(self, obj, name):
        self.obj, self.name = obj, name

    def __reduce__(self):
        return getattr, (self.obj, self.name)


def test_only_allowlisted_getattr_is_read():
    """A getattr is read only as an allowlisted enum member (getattr(Associativity, 'LEFT' or
    'RIGHT')) or rand's random.uniform: any other is refused on sight as libcalc refuses it
    (the reference's pickle.loads would run it), and a member in the wrong place is no
    expression."""
    c = student_calculator()

    def add_with(assoc):
        op = c.BinaryOperator("+", __import__("operator").add, assoc)
        return pickle.dumps(c.BinaryExpr(c.Constant(1), op, c.Constant(2)))

    cases = [
        (add_with(Getattr(c.Associativity, "LEFT")), {"expression": "1 + 2"}),
        (add_with(Getattr(c.Associativity, "RIGHT")), {"error": MSG_NOTEXPR}),     # + is LEFT
        (add_with(Getattr(c.Associativity, "MIDDLE")), {"error": MSG_DESER}),
        (add_with(Getattr(c.Constant, "LEFT")), {"error": MSG_DESER}),
        (add_with(Getattr(c.Associativity, "__class__")), {"error": MSG_DESER}),
        (pickle.dumps(c.Constant(Getattr(c.Associativity, "LEFT"))), {"error": MSG_NOTEXPR}),
        (pickle.dumps(Getattr(c.Associativity, "LEFT")), {"error": MSG_NOTEXPR}),
    ]
    got = decode([("request", p) for p, _ in cases])
    for (p, want), d in zip(cases, got):
        assert {k: d[k] for k in want} == want, (p, d)


class Oracle(pickle.Unpickler):
    """Python's unpickler for the reference's answers, taking only exception classes (and
    complex): builtins' own, and the reference's api module's stood in for."""

    def find_class(self, module, name):
        obj = getattr(builtins, name, None) if module == "builtins" else None
        if obj is complex or (isinstance(obj, type) and issubclass(obj, BaseException)):
            return obj
        if module == "api":
            return type(name, (Exception,), {})
        raise pickle.UnpicklingError(f"{module}.{name}")


@pytest.mark.parametrize("name", PROTOCOL_FILES)
def test_protocol_vectors(name):
    """Each message of the protocol vectors whose total length is right: a request decodes to
    an expression where the reference answered it, or to the reason the reference gave for
    refusing it; every answer's error as Python's str() prints it."""
    items, want = [], []
    for v in load(name):
        if v["response"] is None:     # the reference ran the payload and never answered
            items.append(("request", bytes.fromhex(v["request"])[12:]))
            want.append({"error": MSG_DESER})
            continue
        rs = bytes.fromhex(v["response"])
        status = int.from_bytes(rs[6:8], "big") & 0x3FF
        answer = Oracle(__import__("io").BytesIO(rs[12:])).load()
        items.append(("response", status, rs[12:]))
        want.append({"etype": type(answer).__name__, "emsg": str(answer)} if isinstance(answer, BaseException)
                    else {"result": str(answer[0])})
        rq = bytes.fromhex(v.get("request", ""))
        if len(rq) >= 12 and int.from_bytes(rq[4:6], "big") == len(rq):
            items.append(("request", rq[12:]))
            refused = isinstance(answer, (ValueError, TypeError)) and str(answer).startswith("Received data")
            want.append({"error": str(answer)} if refused else {"expression": "1 + 2"})
    got = decode(items)
    assert len([w for w in want if "expression" in w]) >= 3 and len([w for w in want if "error" in w]) >= 3
    for item, w, d in zip(items, want, got):
        assert {k: d.get(k) for k in w} == w, (name, item, d)
