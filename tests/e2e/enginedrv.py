"""What the engine tests (test_engine_vectors, test_engine_differential) share: the
engine_driver tool (tests/tools/engine_driver.c), one JSON row per input line, and a strict
comparison form."""
import json
import subprocess

from conftest import build_exe


def run_driver(lines, *args):
    """engine_driver's rows for the expression lines (args: e.g. "--no-steps")."""
    exe = build_exe("engine_driver")
    out = subprocess.run([str(exe), *args], input="".join(line + "\n" for line in lines),
                         capture_output=True, text=True, timeout=600, check=True)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == len(lines)
    return rows


def strict(x):
    """Makes 2 and 2.0 (and True) compare unequal, recursively."""
    if isinstance(x, bool):
        return ("bool", x)
    if isinstance(x, int):
        return ("int", x)
    if isinstance(x, float):
        return ("float", repr(x))
    if isinstance(x, dict):
        return {k: strict(v) for k, v in x.items()}
    if isinstance(x, list):
        return [strict(v) for v in x]
    return x
