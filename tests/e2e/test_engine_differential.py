"""Differential test of the engine against Python 3.11 itself (docs/protocol.md section 3: any Python 3.11
is a valid oracle).

Seeded random expression trees (depth up to 6, every operator and function but rand, edge
operands: 0, 0.0, -0.0, huge ints, 1e308, subnormals, named constants, wrong argument counts)
are printed to infix text (fully bracketed, or with Python's minimal brackets), run through
engine_driver, and evaluated here by applying operator / math / builtins functions recursively
over the same tree (never eval() of text). On every expression the parsed tree, the result's
type and repr, or the exception's class and args must agree.

Where Python answers a complex (negative base to a fractional power) calclab answers a
documented ValueError; where an int would pass CALC_MAX_INT_BITS calclab answers an
OverflowError naming its limit. Both are asserted as such. rand is left out: its state is random.

Each expression is also evaluated with steps on: same answer, and the last step is str(result)
(or the steps limit's ValueError).
"""
import builtins
import math
import operator
import os
import random
import sys

import pytest

from enginedrv import run_driver, strict

SEED = int(os.environ.get("CALC_DIFF_SEED", "20261127"))
COUNT = int(os.environ.get("CALC_DIFF_N", "12000"))
MAX_INT_BITS = 100000  # limits.h CALC_MAX_INT_BITS

BINOPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
          "%": operator.mod, "**": operator.pow}
UNOPS = {"-": operator.neg, "+": operator.pos}
FUNCS = {"sin": math.sin, "cos": math.cos, "tan": math.tan, "sqrt": math.sqrt, "log": math.log,
         "max": builtins.max, "min": builtins.min, "pow": builtins.pow}
ARITY = {"sin": 1, "cos": 1, "tan": 1, "sqrt": 1, "log": (1, 2), "max": (1, 4), "min": (1, 4), "pow": (2, 3)}
NAMED = {"PI": math.pi, "TAU": math.tau, "E": math.e}

INTS = [0, 1, 2, 3, 4, 5, 7, 9, 10, 12, 16, 97, 100, 255, 256, 1000, 65535, 65536, 2**31, 2**32,
        2**53 + 1, 2**63, 2**64 + 1, 10**20, 10**22, 3**90, 10**50, 2**1000, 10**400]
FLOATS = [0.0, 0.1, 0.5, 1.0, 1.5, 2.5, 3.0, 10.0, 1e-07, 1e+16, 1e+22, 1e308, 1.7976931348623157e308,
          5e-324, 2.2250738585072014e-308, 123456.789, 0.30000000000000004, 9007199254740993.0, 4.5e15]


# calclab prints ints of any size it allows (limits.h); Python 3.11 would refuse str() past 4300
# digits by default, which is a property of the printing, not of the arithmetic compared here.
sys.set_int_max_str_digits(0)


class Complex(Exception):
    """Python produced a complex: calclab must raise its documented ValueError."""


class Limit(Exception):
    """An int past CALC_MAX_INT_BITS: calclab must raise OverflowError (calclab limit)."""


class Ambiguous(Exception):
    """Too close to the int limit to say whether calclab's estimate refuses it."""


def gen_leaf(rng):
    r = rng.random()
    if r < 0.45:
        return {"num": rng.choice(INTS) if rng.random() < 0.7 else rng.randrange(0, 10**rng.randrange(1, 30))}
    if r < 0.85:
        if rng.random() < 0.7:
            return {"num": rng.choice(FLOATS)}
        return {"num": float(repr(rng.uniform(0, 10) * 10 ** rng.randrange(-10, 10)))}
    return {"const": rng.choice(list(NAMED))}


def gen(rng, depth):
    if depth <= 0 or rng.random() < 0.25:
        return gen_leaf(rng)
    r = rng.random()
    if r < 0.5:
        return {"bin": rng.choice(list(BINOPS)), "l": gen(rng, depth - 1), "r": gen(rng, depth - 1)}
    if r < 0.65:
        return {"un": rng.choice(list(UNOPS)), "x": gen(rng, depth - 1)}
    fn = rng.choice(list(FUNCS))
    arity = ARITY[fn]
    lo, hi = (arity, arity) if isinstance(arity, int) else arity
    n = rng.randint(lo, hi) if rng.random() < 0.9 else rng.randint(0, 4)  # sometimes a wrong count
    return {"fn": fn, "args": [gen(rng, depth - 1) for _ in range(n)]}


PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "%": 2, "un": 3, "**": 4}


def prec(t):
    if "bin" in t:
        return PREC[t["bin"]]
    if "un" in t:
        return PREC["un"]
    return 9


def text_full(t):
    """Every operand bracketed."""
    if "num" in t:
        return repr(t["num"]) if isinstance(t["num"], float) else str(t["num"])
    if "const" in t:
        return t["const"]
    if "bin" in t:
        return f"({text_full(t['l'])} {t['bin']} {text_full(t['r'])})"
    if "un" in t:  # bracketed as a whole too: -(2) ** 2 would be -(2 ** 2)
        return f"({t['un']}({text_full(t['x'])}))"
    return f"{t['fn']}({', '.join(text_full(a) for a in t['args'])})"


def text_min(t, rng):
    """Python's minimal brackets (and random spacing), so the parser's precedence is exercised."""
    sp = lambda: rng.choice(["", " ", "  "])  # noqa: E731
    if "num" in t or "const" in t:
        return text_full(t)
    if "un" in t:
        x = text_min(t["x"], rng)
        if prec(t["x"]) < PREC["un"]:
            x = f"({x})"
        return f"{t['un']}{sp()}{x}"
    if "fn" in t:
        return f"{t['fn']}({(','+sp()).join(text_min(a, rng) for a in t['args'])})"
    p = PREC[t["bin"]]
    left, right = text_min(t["l"], rng), text_min(t["r"], rng)
    if t["bin"] == "**":
        if prec(t["l"]) <= p:
            left = f"({left})"
        if prec(t["r"]) < PREC["un"]:
            right = f"({right})"
    else:
        if prec(t["l"]) < p:
            left = f"({left})"
        if prec(t["r"]) <= p:
            right = f"({right})"
    return f"{left}{sp()}{t['bin']}{sp()}{right}"


# Whether the last oracle run met an int of more than 4300 digits: with steps on, calclab (like
# the reference on CPython 3.11) must then refuse to print it (int_max_str_digits).
LONG_INT = 10 ** 4300
long_int_seen = [False]


def check_int(v, estimate_bits=None):
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= LONG_INT:
        long_int_seen[0] = True
    if isinstance(v, int):
        bits = v.bit_length()
        if bits > MAX_INT_BITS + 64:
            raise Limit()
        if bits > MAX_INT_BITS - 64:
            raise Ambiguous()
    return v


def int_pow_guard(a, b):
    """Refuse to compute huge int powers here too (and know what calclab must say)."""
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        if b > 2 * MAX_INT_BITS:
            raise Limit()
        est = b * math.log2(abs(a))
        if est > MAX_INT_BITS * 1.01:
            raise Limit()
        if est > MAX_INT_BITS * 0.99:
            raise Ambiguous()


def oracle(t):
    if "num" in t:
        return t["num"]
    if "const" in t:
        return NAMED[t["const"]]
    if "bin" in t:
        a, b = oracle(t["l"]), oracle(t["r"])
        if t["bin"] == "**":
            int_pow_guard(a, b)
        try:
            v = BINOPS[t["bin"]](a, b)
        except OverflowError as e:
            # A negative base to a fractional power goes through complex pow, which may overflow.
            if e.args == ("complex exponentiation",):
                raise Complex() from e
            raise
    elif "un" in t:
        v = UNOPS[t["un"]](oracle(t["x"]))
    else:
        args = [oracle(a) for a in t["args"]]
        if t["fn"] == "pow" and len(args) == 2:
            int_pow_guard(*args)
        try:
            v = FUNCS[t["fn"]](*args)
        except OverflowError as e:
            if e.args == ("complex exponentiation",):
                raise Complex() from e
            raise
    return check_result(v)


def check_result(v):
    if isinstance(v, complex):
        raise Complex()
    return check_int(v)


def expect(t):
    try:
        v = oracle(t)
    except (Complex, Limit, Ambiguous) as e:
        return {"special": type(e).__name__}
    except Exception as e:  # noqa: BLE001 - Python's own exception is the expected answer
        return {"exc_type": type(e).__name__, "exc_args": list(e.args)}
    return {"result_type": type(v).__name__, "result": repr(v) if isinstance(v, float) else str(v)}


@pytest.fixture(scope="module")
def cases():
    rng = random.Random(SEED)
    trees = [gen(rng, rng.randint(0, 6)) for _ in range(COUNT)]
    texts = [text_full(t) if rng.random() < 0.5 else text_min(t, rng) for t in trees]
    return trees, texts, run_driver(texts, "--no-steps"), run_driver(texts)


def test_differential(cases):
    trees, texts, rows, step_rows = cases
    failures = []
    counts = {"compared": 0, "complex": 0, "limit": 0, "ambiguous": 0}
    for tree, text, row, srow in zip(trees, texts, rows, step_rows):
        if "parse_error" in row or strict(row["tree"]) != strict(tree):
            failures.append((text, "tree", row.get("parse_error") or row["tree"]))
            continue
        long_int_seen[0] = False
        want = expect(tree)
        long_seen = long_int_seen[0]
        got = ({"exc_type": row["exc_type"], "exc_args": row["exc_args"]} if "exc_type" in row
               else {"result_type": row["result_type"], "result": row["result"]})
        special = want.get("special")
        if special == "Complex":
            counts["complex"] += 1
            ok = got.get("exc_type") == "ValueError" and "complex" in got["exc_args"][0]
        elif special == "Limit":
            counts["limit"] += 1
            ok = got.get("exc_type") == "OverflowError" and "calclab limit" in str(got.get("exc_args"))
        elif special == "Ambiguous":
            counts["ambiguous"] += 1
            ok = True
        else:
            counts["compared"] += 1
            ok = got == want
        if not ok:
            failures.append((text, want, got))
            continue
        # With steps: the same answer, the result as the last step (or the steps limit), except
        # that an int over 4300 digits cannot be printed (CPython 3.11's int_max_str_digits).
        if srow.get("exc_type") == "ValueError" and "Exceeds the limit (4300 digits)" in srow["exc_args"][0]:
            counts["long_int"] = counts.get("long_int", 0) + 1
            if not long_seen:
                failures.append((text, "steps-mode: digit limit without a long int", row, srow))
        elif "exc_type" in row:
            if srow.get("exc_type") != row["exc_type"]:
                failures.append((text, "steps-mode", row, srow))
        elif "exc_type" in srow:
            if not (srow["exc_type"] == "ValueError" and "steps too large" in srow["exc_args"][0]):
                failures.append((text, "steps-mode", row, srow))
        elif srow["result"] != row["result"] or (srow["steps"] and srow["steps"][-1] != row["result"]):
            failures.append((text, "steps-mode", row, srow))
        elif ("num" in tree or "const" in tree) != (srow["steps"] == []):
            failures.append((text, "steps-mode: leaf has no steps, others do", srow["steps"]))
    print(f"\ndifferential: {len(trees)} expressions, {counts}, {len(failures)} failures")
    assert not failures, "\n".join(repr(f)[:600] for f in failures[:20])
    assert counts["compared"] >= 10000 or COUNT < 10000
