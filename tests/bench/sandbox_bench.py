#!/usr/bin/python3
"""Benchmark: what the sandbox costs (docs/sandbox.md, "Cost"), in one run.

usage: tests/bench/sandbox_bench.py [--repeats N]

Prints, as the mean over N (default 20) repeats, wall time and CPU time (of everything started,
confined programs included: cpu_meter.py) of:
  - making and removing a run's network namespace (calc-netns started, ready, stopped);
  - `true` and `python3 -c pass` started bare and started confined the way a run starts a
    program under test (calc-jail into the namespace, bwrap, calc-jail's limits and uid);
and the confined/bare ratios. Exit 2 when namespaces cannot be made here."""
import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "lab"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from calclab_lab import paths, sandbox  # noqa: E402
from cpu_meter import CpuMeter  # noqa: E402


def measure(meter, fn, n):
    """(wall ms, cpu ms) per call of fn, over n calls."""
    t0, c0 = time.perf_counter(), meter.seconds()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1000, (meter.seconds() - c0) / n * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    n = max(1, a.repeats)
    box = sandbox.Sandbox().open()
    isolation = box.isolation
    if not box.isolated:
        print(f"no namespaces here: {isolation}", file=sys.stderr)
        return 2
    with CpuMeter() as meter:
        try:
            def namespace():
                sandbox.Sandbox().open().close()

            rows = [("namespace made and removed", measure(meter, namespace, n), None)]
            for argv in (["/usr/bin/true"], [paths.PY, "-c", "pass"]):
                bare = measure(meter, lambda: subprocess.run(argv, check=True), n)
                wrapped, env, cwd = box.program(argv)
                confined = measure(meter, lambda: subprocess.run(wrapped, env=env, cwd=cwd, check=True), n)
                name = " ".join(os.path.basename(w) for w in argv)
                rows += [(f"{name}: bare", bare, None), (f"{name}: confined", confined, bare)]
        finally:
            box.close()
    print(f"sandbox costs, mean of {n} ({os.cpu_count()} CPUs; CPU by {meter.kind}; {isolation})")
    for name, (wall, cpu), base in rows:
        ratio = f"  ({wall / base[0]:.2f}x wall, +{cpu - base[1]:.1f} ms CPU)" if base else ""
        print(f"  {name:<28} {wall:7.1f} ms wall {cpu:7.1f} ms CPU{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
