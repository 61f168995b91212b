#!/usr/bin/python3
"""Benchmark: lab/grade --class on a class of student-style hand-ins, --jobs 1 and the default,
in one run.

usage: tests/bench/class_bench.py [--students N] [--scenarios 3.1,3.2,3.3] [--keep DIR]

Builds a class of N (default 50) hand-ins from tests/student (server.py, proxy.py and a
client.py that hard-codes E1, as the skeleton's does; every fifth one zipped, every seventh with
CRLF line endings), grades it with --jobs 1 and with the default, and prints submissions per
minute for each, their ratio, the CPU time a hand-in costs (everything lab/grade starts,
confined programs included: cpu_meter.py), whether the default reaches 100 submissions per
minute, and whether both runs gave identical verdicts (gradebook.verdicts). Exit 0 when the verdicts are
identical, 1 otherwise, 2 on setup errors."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STUDENT = os.path.join(ROOT, "tests", "student")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
sys.path.insert(0, os.path.join(ROOT, "lab"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from calclab_lab import classgrade, gradebook  # noqa: E402
from cpu_meter import CpuMeter  # noqa: E402

CLIENT_E1 = "import sys\nimport calc_client\nsys.argv += ['--example', '1']\nsys.exit(calc_client.main())\n"
TARGET = 100.0


def build_class(top, n):
    names = {"api.py": "api.py", "calculator.py": "calculator.py", "calc_client.py": "calc_client.py",
             "server.py": "calc_server.py", "proxy.py": "calc_proxy.py"}
    for i in range(n):
        sid = f"student{i + 1:03d}"
        d = os.path.join(top, sid) if i % 5 else os.path.join(top, ".zipping", sid)
        os.makedirs(d)
        files = {dst: open(os.path.join(STUDENT, src), "rb").read() for dst, src in names.items()}
        files["client.py"] = CLIENT_E1.encode()
        for name, data in files.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data.replace(b"\n", b"\r\n") if i % 7 == 3 else data)
        if i % 5 == 0:
            with zipfile.ZipFile(os.path.join(top, f"{sid}.zip"), "w") as z:
                for name in files:
                    z.write(os.path.join(d, name), os.path.join(sid, name))
    shutil.rmtree(os.path.join(top, ".zipping"), ignore_errors=True)


def run(meter, klass, out, scenarios, jobs=None):
    cmd = [PY, os.path.join(ROOT, "lab", "grade"), "--class", klass, "--out", out, "--scenarios", scenarios]
    if jobs:
        cmd += ["--jobs", str(jobs)]
    t0, c0 = time.time(), meter.seconds()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt, cpu = time.time() - t0, meter.seconds() - c0
    if r.returncode != 0:
        print(r.stderr[-3000:], file=sys.stderr)
        raise SystemExit(2)
    with open(os.path.join(out, "grades.json")) as f:
        entries = json.load(f)["submissions"]
    return dt, cpu, entries


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--students", type=int, default=50)
    ap.add_argument("--scenarios", default="3.1,3.2,3.3")
    ap.add_argument("--keep", help="keep the class and the outputs in this folder")
    a = ap.parse_args()
    top = a.keep or tempfile.mkdtemp(prefix="calclab-class-bench-")
    klass = os.path.join(top, "class")
    if os.path.exists(klass):
        shutil.rmtree(klass)
    build_class(klass, a.students)
    try:
        dflt = classgrade.default_jobs()
        with CpuMeter() as meter:
            t_def, c_def, e_def = run(meter, klass, os.path.join(top, "out-default"), a.scenarios)
            t_one, c_one, e_one = run(meter, klass, os.path.join(top, "out-jobs1"), a.scenarios, jobs=1)
        rate_one, rate_def = a.students / t_one * 60, a.students / t_def * 60
        same = gradebook.verdicts(e_one) == gradebook.verdicts(e_def)
        graded = sum(e["status"] == "graded" for e in e_def)
        full = sum(e["score"] == e["max_score"] > 0 for e in e_def)
        n = a.students
        print(f"class of {n} hand-ins, scenarios {a.scenarios}, {os.cpu_count()} CPUs, CPU by {meter.kind}")
        print(f"--jobs 1      : {t_one:7.1f} s  {rate_one:6.1f} submissions/minute  {c_one / n:5.2f} CPU-s a hand-in")
        print(f"--jobs {dflt:<2} (default): {t_def:7.1f} s  {rate_def:6.1f} submissions/minute  {c_def / n:5.2f} CPU-s a hand-in"
              f"  ({rate_def / rate_one:.2f}x --jobs 1)")
        print(f"target {TARGET:g}/minute: {'met' if rate_def >= TARGET else 'NOT met'}; "
              f"{graded}/{a.students} graded, {full} with full marks; verdicts "
              + ("identical" if same else "DIFFER") + " between --jobs 1 and the default")
        return 0 if same else 1
    finally:
        if not a.keep:
            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
