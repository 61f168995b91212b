#!/usr/bin/python3
"""Benchmark: calc-server and calc-proxy (cache hits) against the trivial baseline, in one run.

usage: tests/bench/bench.py [BUILD_DIR] [--seconds S] [--conns N] [--json]
       BUILD_DIR defaults to $CALC_BUILD_DIR, else build/ at the repo root.

Starts, on free loopback ports: calc-baseline, calc-server (one loop), calc-server --threads 2,
calc-server --memo-bytes 0 (every answer computed; shown, not judged),
and calc-proxy in front of the one-loop server (warmed with one E1 request so that every
measured request is a cache hit). For each mode (one request per connection, keep-alive) it
runs calc-bench with N connections and the report's E1 request against each target, in the
order baseline, server, server x2, no memo, proxy, baseline: the baseline runs twice per mode and the
ratios use the mean of its two runs, which halves the effect of load drift on this shared
machine. Every response is checked (status 200, 564 bytes). Prints a table with requests/s,
p50/p99/p99.9 latency (us) and the ratio to the baseline, then one summary line with the three
key ratios against the 0.8x target. The table also gives the measured process's CPU time per
request (user+sys from /proc), a figure the other load on this machine disturbs much less than
requests/s. Everything started is stopped at the end, also on errors and Ctrl-C. Exit 0 when all three key ratios reach the target and no response was bad, 1
otherwise, 2 on setup errors.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

TARGET = 0.8
E1_RESPONSE = 564
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

procs = []


def stop_all():
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.time() + 3
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    procs.clear()


def on_signal(signum, frame):
    stop_all()
    sys.exit(130)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, name, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: {name} exited with {proc.returncode} at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench: {name} does not listen on port {port} after {timeout} s")


def start(name, argv, port):
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    wait_port(port, p, name)
    return p


def cpu_seconds(pid):
    """User + system CPU time of a process (all threads) from /proc, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def bench(build, port, conns, seconds, keep, n=None, pid=None):
    cpu0 = cpu_seconds(pid) if pid else None
    argv = [os.path.join(build, "calc-bench"), "-p", str(port), "-c", str(conns),
            "-d", str(seconds), "--check-size", str(E1_RESPONSE), "--json"]
    if keep:
        argv.append("-k")
    if n:
        argv += ["-n", str(n)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    if not r.stdout.strip():
        raise SystemExit(f"bench: calc-bench failed: {r.stderr.strip()}")
    out = json.loads(r.stdout)
    cpu1 = cpu_seconds(pid) if pid else None
    # the measured process's CPU per answered request: independent of the other load on the
    # machine, unlike requests/s (clock-tick resolution, 10 ms: fine over a few seconds)
    out["cpu_us_per_req"] = (round((cpu1 - cpu0) * 1e6 / out["requests"], 1)
                             if cpu0 is not None and cpu1 is not None and out["requests"] else None)
    return out


def main():
    args = sys.argv[1:]
    build = os.environ.get("CALC_BUILD_DIR", os.path.join(ROOT, "build"))
    seconds, conns, as_json = 3.0, 16, False
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-h", "--help"):
            print(__doc__.strip())
            return 0
        if a == "--seconds" and i + 1 < len(args):
            seconds = float(args[i + 1]); i += 2; continue
        if a == "--conns" and i + 1 < len(args):
            conns = int(args[i + 1]); i += 2; continue
        if a == "--json":
            as_json = True; i += 1; continue
        if a.startswith("-"):
            print(f"bench: unknown option {a}", file=sys.stderr)
            return 2
        build = a
        i += 1
    if not 0 < seconds <= 30:
        print("bench: --seconds must be in (0, 30]", file=sys.stderr)
        return 2
    for prog in ("calc-bench", "calc-baseline", "calc-server", "calc-proxy"):
        if not os.access(os.path.join(build, prog), os.X_OK):
            print(f"bench: {build}/{prog} missing: build it first "
                  f"(cmake --build {build} --target {prog})", file=sys.stderr)
            return 2

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        pb, ps, ps2, pp, pn = free_port(), free_port(), free_port(), free_port(), free_port()
        xb = start("calc-baseline", [os.path.join(build, "calc-baseline"), "-p", str(pb)], pb)
        xs = start("calc-server", [os.path.join(build, "calc-server"), "-p", str(ps), "-q"], ps)
        xs2 = start("calc-server --threads 2",
                    [os.path.join(build, "calc-server"), "-p", str(ps2), "-q", "--threads", "2"],
                    ps2)
        # Shown, not judged: the server with its answer memo off computes every answer.
        xn = start("calc-server --memo-bytes 0",
                   [os.path.join(build, "calc-server"), "-p", str(pn), "-q", "--memo-bytes", "0"], pn)
        xp = start("calc-proxy", [os.path.join(build, "calc-proxy"), "-pp", str(pp), "-sp",
                                  str(ps), "-q"], pp)
        warm = bench(build, pp, 1, 5, False, n=1)   # the E1 answer is now in the proxy's cache
        if warm["requests"] != 1 or warm["errors"]:
            raise SystemExit(f"bench: warming the proxy failed: {warm}")

        targets = [("baseline", pb, xb), ("server", ps, xs), ("server x2", ps2, xs2),
                   ("no memo", pn, xn), ("proxy hits", pp, xp), ("baseline", pb, xb)]
        results = {}   # (mode, name) -> list of runs
        for keep in (False, True):
            mode = "keep-alive" if keep else "per-connection"
            for name, port, proc in targets:
                results.setdefault((mode, name), []).append(
                    bench(build, port, conns, seconds, keep, pid=proc.pid))
    finally:
        stop_all()

    rows, ratios, bad = [], {}, 0
    for mode in ("per-connection", "keep-alive"):
        base_runs = results[(mode, "baseline")]
        base = sum(r["rps"] for r in base_runs) / len(base_runs)
        for name in ("baseline", "server", "server x2", "no memo", "proxy hits"):
            for r in results[(mode, name)]:
                bad += r["errors"]
                ratio = r["rps"] / base if base else 0.0
                ratios.setdefault((mode, name), []).append(ratio)
                rows.append((mode, name, r, ratio))

    def ratio(mode, name):
        v = ratios[(mode, name)]
        return sum(v) / len(v)

    key = [("server, one request per connection", ratio("per-connection", "server")),
           ("server, keep-alive", ratio("keep-alive", "server")),
           ("proxy cache hits", ratio("per-connection", "proxy hits"))]
    ok = all(v >= TARGET for _, v in key) and not bad

    if as_json:
        print(json.dumps({"conns": conns, "seconds": seconds,
                          "runs": [dict(r, mode=m, target=n, ratio=round(x, 3))
                                   for m, n, r, x in rows],
                          "key_ratios": {k: round(v, 3) for k, v in key},
                          "target": TARGET, "ok": ok}))
    else:
        print(f"calc-bench, {conns} connections, E1 request (687 B -> 564 B), {seconds:g} s per run,"
              f" {os.cpu_count()} CPUs")
        print(f"{'mode':<15} {'target':<11} {'req/s':>9} {'p50 us':>8} {'p99 us':>8} "
              f"{'p99.9 us':>9} {'errors':>6} {'ratio':>6} {'cpu us/req':>10}")
        for m, n, r, x in rows:
            cpu = r.get("cpu_us_per_req")
            print(f"{m:<15} {n:<11} {r['rps']:>9.0f} {r['p50_us']:>8} {r['p99_us']:>8} "
                  f"{r['p999_us']:>9} {r['errors']:>6} {x:>5.2f}x "
                  f"{'-' if cpu is None else f'{cpu:.1f}':>10}")
        print("ratios are to the mean of the two baseline runs of the same mode; "
              "proxy hits: proxy -> server, E1 cached;\n"
              "no memo: calc-server --memo-bytes 0, every answer computed (shown, not judged);\n"
              "cpu us/req: CPU time of the measured process per answered request (user+sys, "
              "from /proc; less sensitive to other load than req/s)")
        summary = ", ".join(f"{k} {v:.2f}x" for k, v in key)
        print(f"SUMMARY: {summary} (target {TARGET}x): {'PASS' if ok else 'FAIL'}"
              + (f", {bad} bad responses" if bad else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
