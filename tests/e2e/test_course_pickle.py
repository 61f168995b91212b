"""lab/calclab_lab/course_pickle: whether the course's own code would take a request payload,
decided without executing anything.  Pure function: no process, no build."""
import json
import os
import pickle
import sys

import pytest

from conftest import REPO, VECTORS
import refvectors

sys.path.insert(0, str(REPO / "lab"))
from calclab_lab import course_pickle  # noqa: E402

pytestmark = pytest.mark.build_independent


@pytest.fixture(scope="module")
def calc():
    """tests/student's calculator module: its objects pickle as the course's do."""
    return refvectors.student_calculator()


def dumps(tree, protocol=None):
    """pickle.dumps with room to recurse: CPython 3.11's pickler itself stops at operator chains
    331 deep (function calls 200), and the trees here go past them."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(20000)
    try:
        return pickle.dumps(tree, protocol=protocol)
    finally:
        sys.setrecursionlimit(old)


def nested(calc, depth, kind="binary"):
    e = calc.Constant(1)
    for _ in range(depth - 1):
        if kind == "binary":
            e = calc.BinaryExpr(e, calc.ADD, calc.Constant(1))
        elif kind == "unary":
            e = calc.UnaryExpr(calc.NEG, e)
        else:
            e = calc.FunctionCallExpr(calc.SIN, e)
    return e


@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
def test_deeper_than_calclab_is_the_course_s(calc, proto):
    """A tree nested 250 deep (calclab's limit is 200), pickled by Python at every protocol,
    is one the course's code takes."""
    for kind in ("binary", "unary", "function"):
        v = course_pickle.judge(dumps(nested(calc, 250, kind), protocol=proto))
        assert v.accepted, (kind, v.why)
        assert "nested 249 deep" in v.why


def test_over_calclab_s_other_limits(calc):
    """More arguments than calclab takes (1000), a long constant name, a huge integer, and a
    subtree shared 30000 times (expanded past calclab's 20000 nodes): all the course's."""
    cases = {
        "args": calc.FunctionCallExpr(calc.MAX, *[calc.Constant(k) for k in range(1001)]),
        "name": calc.NamedConstant("X" * 100, 1.5),
        "int": calc.Constant(2 ** 200_000),
        "shared": calc.FunctionCallExpr(calc.MAX, *[calc.BinaryExpr(calc.Constant(1), calc.ADD, calc.Constant(2))] * 10000),
    }
    for name, tree in cases.items():
        v = course_pickle.judge(pickle.dumps(tree))
        assert v.accepted, (name, v.why)
    assert "1001 arguments in its largest call" in course_pickle.judge(pickle.dumps(cases["args"])).why
    assert "30001 nodes" in course_pickle.judge(pickle.dumps(cases["shared"])).why


def test_every_reference_request_is_taken(vectors_dir):
    """Every request of the reference's vectors (both pickle flavours: enum members by value
    and by name), rand's generator included."""
    n = 0
    for name in ("legacy-expressions.jsonl", "legacy-expressions-py3.11.2.jsonl"):
        for line in open(vectors_dir / name):
            vec = json.loads(line)
            payload = bytes.fromhex(vec["request"]["payload"])
            v = course_pickle.judge(payload)
            assert v.accepted, (name, vec["name"], v.why)
            n += 1
    assert n == 704


def test_rand_and_both_enum_flavours(calc):
    """rand's generator (getattr of a random.Random's uniform) at every protocol; the enum
    members by name and by value are in the vectors above."""
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        v = course_pickle.judge(pickle.dumps(calc.parse("rand(1, 2) + rand(3, 4) ** 2"), protocol=proto))
        assert v.accepted, (proto, v.why)


def reference_payload(vector_name):
    for line in open(VECTORS / "legacy-protocol.jsonl"):
        vec = json.loads(line)
        if vec["name"] == vector_name:
            return bytes.fromhex(vec["request"])[12:]
    raise KeyError(vector_name)


def test_globals_outside_the_protocol_are_refused(tmp_path, calc):
    """os.system, subprocess.Popen, eval: the course's code refuses them (the reference's
    vector malicious-pickle among them); judging one runs nothing."""
    marker = tmp_path / "ran"
    payloads = {
        "posix.system": reference_payload("malicious-pickle"),
        "os.system": b"\x80\x04cos\nsystem\n(V touch " + str(marker).encode() + b"\ntR.",
        "subprocess.Popen": b"\x80\x04\x8c\nsubprocess\x8c\x05Popen\x93\x8c\x02ls\x85R.",
        "builtins.eval": b"\x80\x02c__builtin__\neval\nX\x05\x00\x00\x001 + 1\x85R.",
        "getattr of os": b"\x80\x04cbuiltins\ngetattr\ncos\nsystem\nX\x04\x00\x00\x00name\x86R.",
    }
    payloads["posix.system by pickle"] = pickle.dumps(os.system)
    for name, p in payloads.items():
        v = course_pickle.judge(p)
        assert not v.accepted, name
        assert "global" in v.why, (name, v.why)
    assert not marker.exists()
    assert "os.system" in course_pickle.judge(payloads["os.system"]).why


def test_getattr_only_of_a_member():
    """builtins.getattr of calculator.Associativity: its members only."""
    for name in (b"LEFT", b"RIGHT"):
        p = b"\x80\x04" + b"\x8c\x08builtins\x8c\x07getattr\x93\x8c\ncalculator\x8c\rAssociativity\x93\x8c" \
            + bytes([len(name)]) + name + b"\x86R."
        # a member alone is no expression, but the getattr is not what refuses it
        assert "getattr" not in course_pickle.judge(p).why
    for name in (b"CENTER", b"__class__", b"_value2member_map_"):
        p = b"\x80\x04" + b"\x8c\x08builtins\x8c\x07getattr\x93\x8c\ncalculator\x8c\rAssociativity\x93\x8c" \
            + bytes([len(name)]) + name + b"\x86R."
        v = course_pickle.judge(p)
        assert not v.accepted and "non-member" in v.why, (name, v.why)


def test_damaged_pickles_are_refused(calc):
    good = pickle.dumps(nested(calc, 5))
    assert course_pickle.judge(good).accepted
    cases = {
        "truncated": good[:-7],
        "no STOP": good[:-1],
        "trailing garbage": good + b"garbage",
        "trailing STOP": good + b".",
        "empty": b"",
        "not a pickle": b"hello",
        "reference's garbage-payload": reference_payload("garbage-payload"),
        "reference's not-an-expression": reference_payload("not-an-expression"),
        "too long": good + b"\0" * 65523,
        "a Constant of a str": pickle.dumps(calc.Constant("1")),
        "a Constant of a bool": pickle.dumps(calc.Constant(True)),
        "an operator of another's function": pickle.dumps(
            calc.BinaryExpr(calc.Constant(1), calc.BinaryOperator("+", __import__("operator").mul,
                                                                  calc.Associativity.LEFT), calc.Constant(2))),
        "a missing attribute": pickle.dumps(calc.Constant(1)).replace(b"value", b"valuX"),
        "too deep for the course": dumps(nested(calc, 400)),
    }
    for name, p in cases.items():
        v = course_pickle.judge(p)
        assert not v.accepted, name
        assert v.why, name
    assert "after the pickle's STOP" in course_pickle.judge(cases["trailing garbage"]).why
    assert "nested more than 300" in course_pickle.judge(cases["too deep for the course"]).why


def test_an_expression_that_contains_itself(calc):
    """A node made its own operand through the memo (the course's evaluator would recurse
    forever): refused, and judging it ends."""
    e = calc.UnaryExpr(calc.NEG, None)
    e.operand = e
    v = course_pickle.judge(pickle.dumps(e))
    assert not v.accepted and "contains itself" in v.why


def test_hex_from_calc_sniff(calc):
    p = pickle.dumps(nested(calc, 250))
    assert course_pickle.judge_hex(p.hex()).accepted
    assert not course_pickle.judge_hex("zz").accepted
    assert not course_pickle.judge_hex(None).accepted


def test_any_bytes_get_a_verdict(calc, vectors_dir):
    """Mutated and cut reference requests (bytes flipped, inserted, dropped): always a Verdict,
    never an exception; some still taken, most refused."""
    import random
    rng = random.Random(21)
    seeds = [bytes.fromhex(json.loads(line)["request"]["payload"])
             for line in list(open(vectors_dir / "legacy-expressions-py3.11.2.jsonl"))[:40]]
    seeds.append(dumps(nested(calc, 250)))
    verdicts = []
    for _ in range(3000):
        p = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 4)):
            k = rng.randrange(len(p))
            what = rng.randrange(3)
            if what == 0:
                p[k] = rng.randrange(256)
            elif what == 1:
                p.insert(k, rng.randrange(256))
            else:
                del p[k:k + rng.randrange(1, 9)]
        v = course_pickle.judge(bytes(p))
        assert isinstance(v, course_pickle.Verdict) and v.why
        verdicts.append(v.accepted)
    assert 0 < sum(verdicts) < len(verdicts) / 2


def sniffed(payload, role="client->server", dir="orig", error="limit",
            why="undecodable request: Expression too deeply nested (limit 200 levels)"):
    """calc-sniff's --json records of one connection carrying one refused request."""
    return [{"type": "conn", "id": 1, "role": role},
            {"type": "msg", "conn": 1, "dir": dir, "index": 1, "kind": "request", "malformed": True,
             "error": error, "payload": payload.hex(), "expression": why}]


def test_which_refusals_are_calclab_s(calc):
    """calclab_faults: a student's client's (or proxy's) request calclab refused and the course
    takes is a lab error saying why; the same from calclab's own program, one the course refuses
    too, one without its payload, and a server's message are nobody's lab error."""
    deep = dumps(nested(calc, 250))
    got = course_pickle.calclab_faults(sniffed(deep), ours=frozenset({"server", "proxy"}))
    assert got == ["calclab cannot decode a request the course's code accepts: Expression too deeply nested "
                   "(limit 200 levels) (the client's request on connection 1: an expression of 499 nodes, "
                   "nested 249 deep)"]
    assert course_pickle.calclab_faults(sniffed(deep, role="client->proxy"), ours={"server"})
    assert "the proxy's request" in course_pickle.calclab_faults(sniffed(deep, role="proxy->server"), {"client"})[0]
    assert course_pickle.calclab_faults(sniffed(deep), ours={"client"}) == []
    assert course_pickle.calclab_faults(sniffed(deep, role="proxy->server"), ours={"proxy"}) == []
    assert course_pickle.calclab_faults(sniffed(deep, dir="resp"), ours=set()) == []
    bad = reference_payload("malicious-pickle")
    assert course_pickle.calclab_faults(sniffed(bad, error="invalid"), ours={"server"}) == []
    recs = sniffed(deep)
    del recs[1]["payload"]
    assert course_pickle.calclab_faults(recs, ours={"server"}) == []
    twice = sniffed(deep) + [dict(sniffed(deep)[1], index=2)]
    assert len(course_pickle.calclab_faults(twice, ours={"server"})) == 1
