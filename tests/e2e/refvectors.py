"""The reference's recorded exchanges as the dissector's tests read them: test_dissector_lua
runs the dissector's Lua modules under plain Lua, test_wireshark runs them in tshark, and both
compare with the same vectors files, the same rebuilt trees and the same client printout."""
import json
import sys

from conftest import REPO, VECTORS


def load(name):
    """The records of the vectors file `name` (JSON Lines) in captures/vectors ($CALC_VECTORS)."""
    with open(VECTORS / name) as f:
        return [json.loads(line) for line in f]


def student_calculator():
    """tests/student's calculator module: the reference's classes, singletons and stringify()."""
    sys.path.insert(0, str(REPO / "tests" / "student"))
    try:
        import calculator
    finally:
        sys.path.pop(0)
    return calculator


def at_the_depth_limit(c):
    """Two trees of `c` (student_calculator()) at libcalc's nesting limit, 200 levels: 200
    unary minuses deep (taken) and 201 (refused as too deeply nested)."""
    trees = []
    for depth in (200, 201):
        e = c.Constant(1)
        for _ in range(depth):
            e = c.UnaryExpr(c.NEG, e)
        trees.append(e)
    return trees


def client_prints(result=None, steps=(), error=None):
    """What the reference client prints for an answer (docs/protocol.md section 4): the error
    when there is one, else the result and its steps."""
    if error is not None:
        return f"Got error: {error}\n"
    out = f"Result: {result}\n"
    if steps:
        out += f"Steps:\n{steps[0]} = {steps[1]}\n" + "".join(f'{" " * len(steps[0])} = {x}\n' for x in steps[2:])
    return out
