"""Differential test of libcalc's numbers against Python 3.11 itself (docs/protocol.md section 3).

A seeded generator builds >= 50,000 operations (binary operators, unary operators and the
calculator's functions) over interesting operands: zeros of both signs, small and huge ints,
2**53 +- 1, values near 2**1024, subnormals, infinities, nan, negatives. Each one is run
through the test-only driver `num_driver` (tests/tools/num_driver.c) and evaluated here with
this interpreter's own operators, math module and builtins; type, repr and exception class and
message must agree on every single operation.

calclab deviates from Python in two documented places, which the oracle models:
  * ints over CALC_MAX_INT_BITS bits are refused (OverflowError, calclab limit), and
    pow(a, b, m) with bits(b) * bits(m) over CALC_MAX_POWMOD_WORK is refused;
  * a negative float to a fractional power (a complex in Python) is a ValueError.
"""
import math
import operator
import os
import random
import struct
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("CALC_BUILD_DIR", os.path.join(REPO, "build"))
DRIVER = os.path.join(BUILD, "num_driver")

MAX_BITS = 100000                 # calc/limits.h CALC_MAX_INT_BITS
POWMOD_WORK = 1 << 27             # calc/num.h CALC_MAX_POWMOD_WORK
LIMIT_MSG = "integer result too large (over %d bits): calclab limit" % MAX_BITS
POWMOD_MSG = ("pow() exponent and modulus too large (over %d bit-products): calclab limit"
              % POWMOD_WORK)
COMPLEX_MSG = "complex result (negative number to a fractional power) is not supported"
N_RANDOM = 50000


class CalcLimit(Exception):
    """The oracle's stand-in for calclab's own refusals."""

    def __init__(self, cls, msg):
        super().__init__(msg)
        self.cls = cls


def limit_int(v):
    if isinstance(v, int) and v.bit_length() > MAX_BITS:
        raise CalcLimit("OverflowError", LIMIT_MSG)
    return v


def op_pow(a, b):
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) >= 2:
        if b * (abs(a).bit_length() - 1) + 1 > MAX_BITS:
            raise CalcLimit("OverflowError", LIMIT_MSG)
    return limit_int(a ** b)


BINOPS = {
    "+": lambda a, b: limit_int(a + b),
    "-": lambda a, b: limit_int(a - b),
    "*": lambda a, b: limit_int(a * b),
    "/": operator.truediv,
    "%": lambda a, b: limit_int(a % b),
    "**": op_pow,
}
UNOPS = {"-": operator.neg, "+": operator.pos}


def fn_pow(*args):
    if len(args) == 2:
        return op_pow(*args)
    if len(args) == 3 and all(isinstance(x, int) for x in args):
        a, b, m = args
        if m != 0 and abs(m) != 1:
            if max(1, abs(b).bit_length()) * max(1, abs(m).bit_length()) > POWMOD_WORK:
                raise CalcLimit("OverflowError", POWMOD_MSG)
    return pow(*args)


class Oracle:
    def __init__(self):
        self.rng = random.Random(0)

    def seed(self, n):
        self.rng = random.Random(n)

    def rand(self, *args):
        if len(args) == 2:
            limit_int(args[1] - args[0])
        return self.rng.uniform(*args)

    def call(self, name, args):
        if name in ("sin", "cos", "tan", "sqrt", "log"):
            return getattr(math, name)(*args)
        if name == "max":
            return max(*args)
        if name == "min":
            return min(*args)
        if name == "pow":
            return fn_pow(*args)
        if name == "rand":
            return self.rand(*args)
        raise AssertionError(name)


def expect(fn):
    try:
        r = fn()
    except CalcLimit as e:
        return "exc %s %s" % (e.cls, e)
    except OverflowError as e:
        if str(e) == "complex exponentiation":  # Python overflowed computing the complex
            return "exc ValueError " + COMPLEX_MSG
        return "exc %s %s" % (type(e).__name__, e)
    except Exception as e:  # noqa: BLE001 - every Python exception is a valid expectation
        return "exc %s %s" % (type(e).__name__, e)
    if r == "ok" and isinstance(r, str):  # a seed line
        return r
    if isinstance(r, complex):
        return "exc ValueError " + COMPLEX_MSG
    if isinstance(r, bool) or not isinstance(r, (int, float)):
        raise AssertionError("unexpected result type %r" % (r,))
    return "%s %s" % ("float" if isinstance(r, float) else "int", repr(r))


def enc(v):
    if isinstance(v, float):
        return "f:" + v.hex()
    return "i:%d" % v


# ---- operands ------------------------------------------------------------------------------

SPECIAL_INTS = [
    0, 1, -1, 2, -2, 3, -3, 5, 7, 10, -10, 16, 255, 256, 1000, 2**31 - 1, 2**31, -2**31,
    2**32, 2**52, 2**53 - 1, 2**53, 2**53 + 1, -(2**53 + 1), 2**53 + 3, 2**54 + 1, 2**54 + 2,
    2**54 + 3, 2**54 + 6, 2**63, 2**64 + 1, 10**15, 10**16, 10**17, 10**20, -10**20, 10**22,
    3**60, 2**1022, 2**1023, 2**1023 + 1, 2**1024 - 2**970, 2**1024 - 2**970 - 1,
    2**1024 - 2**971, 2**1024 - 2**971 + 1, 2**1024, -2**1024, 10**308, 10**309, 2**1074,
    2**1075 + 1, 2**5000 + 1, 7**3000, -(3**5000), 2**60000 - 1, 2**99999, 2**100000 - 1,
    -(2**99999 + 12345), (2**53 + 1) * 2**900, (2**53 + 1) * 2**970,
]
SPECIAL_FLOATS = [
    0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 0.1, -0.1, 2.5, -2.5, 3.0, -3.0, 1.5, 2.0, 10.0, 1e-06,
    1e-05, 0.0001, 1e16, 1e15, 9999999999999998.0, 5e-324, -5e-324, 1e-320,
    2.2250738585072014e-308, 2.225073858507201e-308, 1.7976931348623157e308,
    -1.7976931348623157e308, 8.98846567431158e307, 1e308, 1e300, 1e-300, 1e22, 1e23,
    float(2**53), float(2**53 - 1), float(2**63), math.pi, math.e, math.pi / 2, 1 / 3,
    709.782712893384, 710.0, -745.2, 1e-10, 123456789.0, 0.3, 2.0**-1022, 2.0**-1074 * 3,
    math.inf, -math.inf, math.nan, 4503599627370495.5, 4503599627370496.5, 0.9999999999999999,
    1.0000000000000002, 1e100, -1e100, 2.0**1023, 1e200, 1e-200,
]


def rand_int(r):
    k = r.random()
    if k < 0.35:
        return r.randint(-20, 20)
    if k < 0.6:
        return r.randint(-10**6, 10**6)
    if k < 0.8:
        v = r.getrandbits(r.choice([31, 53, 54, 55, 64, 100, 200, 1020, 1023, 1024, 1025, 1100]))
    elif k < 0.97:
        v = r.getrandbits(r.randint(1, 3000))
    else:
        v = r.getrandbits(r.randint(3000, MAX_BITS))
    return -v if r.random() < 0.4 else v


def rand_float(r):
    k = r.random()
    if k < 0.3:
        while True:  # any finite bit pattern
            (f,) = struct.unpack("<d", struct.pack("<Q", r.getrandbits(64)))
            if math.isfinite(f):
                return f
    if k < 0.55:
        return r.uniform(-100, 100)
    if k < 0.7:
        return float(r.randint(-1000, 1000)) / r.choice([1, 2, 4, 8, 10, 3])
    if k < 0.85:
        return r.choice([-1, 1]) * r.random() * 10.0 ** r.randint(-320, 308)
    return float(r.randint(-50, 50))


def operand(r):
    k = r.random()
    if k < 0.22:
        return r.choice(SPECIAL_INTS)
    if k < 0.5:
        return r.choice(SPECIAL_FLOATS)
    if k < 0.75:
        return rand_int(r)
    return rand_float(r)


def small_exponent(r):
    return r.choice([r.randint(-5, 12), r.randint(-400, 400), r.choice(SPECIAL_INTS),
                     r.choice([0.5, -0.5, 1.5, 2.0, -2.0, 3.0, 1 / 3, 1e-300, 1e300,
                               math.inf, -math.inf, math.nan, -0.0, 0.0])])


def gen_cases(seed=20261127, n=N_RANDOM):
    """(driver line, thunk computing the expectation) pairs, deterministic for a seed."""
    r = random.Random(seed)
    oracle = Oracle()
    cases = []
    fns1 = ["sin", "cos", "tan", "sqrt", "log"]
    while len(cases) < n:
        k = r.random()
        if k < 0.5:
            op = r.choice(list(BINOPS))
            a = operand(r)
            b = small_exponent(r) if op == "**" and r.random() < 0.7 else operand(r)
            cases.append(("bin %s %s %s" % (op, enc(a), enc(b)),
                          (lambda f, a, b: lambda: f(a, b))(BINOPS[op], a, b)))
        elif k < 0.55:
            op = r.choice(list(UNOPS))
            a = operand(r)
            cases.append(("un %s %s" % (op, enc(a)), (lambda f, a: lambda: f(a))(UNOPS[op], a)))
        else:
            name = r.choice(fns1 + ["log", "max", "min", "pow", "pow", "rand"])
            if name in fns1 and name != "log":
                argc = 1 if r.random() < 0.93 else r.choice([0, 2, 3])
            elif name == "log":
                argc = r.choice([1, 1, 2, 2, 2, 0, 3])
            elif name in ("max", "min"):
                argc = r.choice([0, 1, 2, 2, 3, 3, 4, 5])
            elif name == "pow":
                argc = r.choice([0, 1, 2, 2, 3, 3, 3, 3, 4])
            else:
                argc = r.choice([2, 2, 2, 2, 2, 0, 1, 3])
            args = [operand(r) for _ in range(argc)]
            if name == "pow" and argc == 3 and r.random() < 0.85:
                args = [rand_int(r) if r.random() < 0.7 else r.choice(SPECIAL_INTS),
                        r.choice([r.randint(-50, 200), rand_int(r), r.getrandbits(300)]),
                        r.choice([r.randint(-100, 100), rand_int(r), 0, 1, -1, 2**127 - 1])]
            if name == "rand" and r.random() < 0.2:
                s = r.getrandbits(32)
                cases.append(("seed %d" % s, (lambda s: lambda: (oracle.seed(s), "ok")[1])(s)))
            line = " ".join(["call", name] + [enc(a) for a in args])
            cases.append((line, (lambda name, args: lambda: oracle.call(name, args))(name, tuple(args))))
    return cases


EXPLICIT = [
    # int -> float rounding (half to even, not truncation) through mixed operations
    ("bin + i:%d f:0x0p+0" % (2**53 + 1), "float 9007199254740992.0"),
    ("bin + i:%d f:0x0p+0" % (2**53 + 3), "float 9007199254740996.0"),
    ("bin * i:%d f:0x1p+0" % (2**1024 - 2**970), "exc OverflowError int too large to convert to float"),
    ("bin / i:%d i:%d" % (2**2000, 3**1000), None),
    ("bin / i:%d i:1" % 2**1024, "exc OverflowError integer division result too large for a float"),
    ("bin / i:1 i:0", "exc ZeroDivisionError division by zero"),
    ("bin ** i:9 i:387420489", "exc OverflowError " + LIMIT_MSG),
    ("bin ** i:0 i:-1", "exc ZeroDivisionError 0.0 cannot be raised to a negative power"),
    ("bin ** f:0x1p+10 i:400", "exc OverflowError (34, 'Numerical result out of range')"),
    ("bin % f:0x1p+0 f:0x0p+0", "exc ZeroDivisionError float modulo"),
    ("bin % i:1 i:0", "exc ZeroDivisionError integer modulo by zero"),
    ("call max i:7", "exc TypeError 'int' object is not iterable"),
    ("call sin i:1 i:2", "exc TypeError math.sin() takes exactly one argument (2 given)"),
    ("call pow i:2 i:-1 i:4", "exc ValueError base is not invertible for the given modulus"),
]


@pytest.fixture(scope="module")
def driver():
    if not os.access(DRIVER, os.X_OK):
        pytest.fail("num_driver not built in %s (set CALC_BUILD_DIR)" % BUILD)
    return DRIVER


def run_driver(driver, lines):
    proc = subprocess.run([driver], input="\n".join(lines) + "\n", capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.split("\n")
    assert out[-1] == ""
    return out[:-1]


def test_oracle_is_python_311():
    assert sys.version_info[:2] == (3, 11), sys.version


def test_explicit_cases(driver):
    sys.set_int_max_str_digits(0)
    got = run_driver(driver, [line for line, _ in EXPLICIT])
    for (line, want), g in zip(EXPLICIT, got):
        if want is None:
            want = expect(lambda: eval(line.split()[2][2:]) / eval(line.split()[3][2:]))
        assert g == want, line[:200]


def test_differential(driver):
    sys.set_int_max_str_digits(0)
    cases = gen_cases()
    got = run_driver(driver, [line for line, _ in cases])
    assert len(got) == len(cases)
    mismatches = []
    for (line, thunk), g in zip(cases, got):
        want = expect(thunk)
        if g != want:
            mismatches.append((line[:160], want[:160], g[:160]))
    print("num differential: %d operations compared, %d mismatches" % (len(cases), len(mismatches)))
    assert not mismatches, "\n".join("%s\n  python: %s\n  calc:   %s" % m for m in mismatches[:25])


def repr_cases(n=120000, seed=20261127):
    """Doubles whose repr takes every path of calc_float_repr: any bit pattern, subnormals and
    powers of two (lopsided intervals), short decimals and their neighbours (15 digits or
    fewer), and values near the 16- and 17-digit boundaries."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = i % 6
        if k == 0:
            x = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        elif k == 1:
            x = math.ldexp(1.0, rng.randrange(-1074, 1024))
        elif k == 2:
            x = rng.randrange(1, 10 ** rng.randrange(1, 16)) / 10 ** rng.randrange(0, 30)
        elif k == 3:
            x = math.nextafter(rng.randrange(1, 10 ** 6) / 1000, rng.choice((0.0, math.inf)))
        elif k == 4:
            x = math.ldexp(rng.random(), rng.randrange(-1074, -1000))  # subnormal range
        else:
            x = rng.random() * 10 ** rng.randrange(-30, 30)
        if math.isnan(x) or math.isinf(x):
            continue
        out.append(x)
    return out


def test_float_repr_against_python(driver):
    """calc_float_repr's shortest digits (a 15-digit fast path, the 16/17-digit probes and the
    search for subnormals) give Python's repr(float), checked through unary plus."""
    xs = repr_cases()
    got = run_driver(driver, ["un + f:" + x.hex() for x in xs])
    bad = [(x.hex(), repr(x), g) for x, g in zip(xs, got) if g != "float " + repr(x)]
    print("float repr: %d values compared, %d mismatches" % (len(xs), len(bad)))
    assert not bad, bad[:20]
