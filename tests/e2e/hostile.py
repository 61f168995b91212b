"""Hostile submissions and the runs that judge them, shared by the sandbox's tests at each of its
levels: test_sandbox.py (namespaces) and test_sandbox_uid.py (a uid per program, no namespaces).

Each program wraps the student-style implementation (tests/student) and first does its mischief.
What every level must give is asserted here; each level's test adds what only it promises (a
level's own outputs, its zombies, its messages)."""
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAB = ROOT / "lab"
STUDENT = ROOT / "tests" / "student"
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
sys.path.insert(0, str(LAB))
from calclab_lab import classgrade, runner, sandbox  # noqa: E402

student_only = pytest.mark.build_independent
SECRET = "calclab-grader-secret-" + hashlib.sha256(os.urandom(16)).hexdigest()[:16]
SERVER_ARGS = "-H {host} -p {port} --cache-control {cache_control}"


def hostile(tmp_path, name, *bodies):
    """A server that runs `bodies` first (each dedented on its own), then the student-style
    server; in a folder of its own."""
    d = tmp_path / f"sub-{name}"
    d.mkdir(mode=0o755)
    prog = d / "server.py"
    prog.write_text(f"import sys\nsys.path.insert(0, {str(STUDENT)!r})\n" +
                    "".join(textwrap.dedent(b) for b in bodies) + "\nimport calc_server\ncalc_server.main()\n")
    return f"{PY} {prog} {SERVER_ARGS}"


def play(name, tmp_path, server=None, proxy=None, limits=None, tag="run"):
    work = tmp_path / f"{tag}-{name}"
    t = runner.templates_for("student", server=server, proxy=proxy)
    return runner.play(name, t, workdir=str(work), timeout=10, use_sniff=False, limits=limits)


def everything(res):
    """All the run's output and reports, as the grader keeps them: its record, each server's and
    proxy's log and each client's printout."""
    return (json.dumps(res.to_dict()) + "".join(log.output() for log in res.procs.values())
            + "".join(c.stdout or "" for c in res.clients))


def with_bystander(tmp_path, fn):
    """Run fn() while an ordinary 3.2 run goes on; returns fn's result and asserts the bystander's
    run passed."""
    out = {}
    th = threading.Thread(target=lambda: out.update(res=play("3.2", tmp_path, tag="bystander")))
    th.start()
    try:
        got = fn()
    finally:
        th.join(120)
    assert out["res"].passed, everything(out["res"])[-3000:]
    return got


def assert_none_left(marker):
    """No process whose command line has `marker` is left once the run is over."""
    time.sleep(0.5)
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    assert [l for l in ps.splitlines() if marker in l and "ps -eo" not in l] == []


# ---------------------------------------------------------------- programs
def secret_hunter(paths, tops, needle, more="[]"):
    """Reads each of `paths` and of the paths the Python expression `more` makes at run time
    (READ or DENIED), prints its environment, then walks `tops` for files holding the bytes the
    Python expression `needle` makes (FOUND); "/" is walked without usr, proc, sys and dev."""
    return f"""
        import os
        for path in {[str(p) for p in paths]!r} + {more}:
            try:
                print("READ", path, open(path, "rb").read()[:200], flush=True)
            except OSError as e:
                print("DENIED", path, e, flush=True)
        print("ENV", dict(os.environ), flush=True)
        needle = {needle}
        for top in {[str(t) for t in tops]!r}:
            for d, dirs, files in os.walk(top):
                if d == "/":
                    dirs[:] = [x for x in dirs if x not in ("usr", "proc", "sys", "dev")]
                for f in files:
                    try:
                        if needle in open(os.path.join(d, f), "rb").read(1 << 20):
                            print("FOUND", os.path.join(d, f), flush=True)
                    except OSError:
                        pass
                if d.count("/") > 6:
                    dirs[:] = []
    """


def writer(targets, content='{"score": 100}', make_dirs=False):
    """Writes `content` into each of `targets` (WROTE or REFUSED), making their folders first
    with `make_dirs`."""
    mkdirs = "\n                os.makedirs(os.path.dirname(path), exist_ok=True)" if make_dirs else ""
    return f"""
        import os
        for path in {[str(t) for t in targets]!r}:
            try:{mkdirs}
                with open(path, "w") as f:
                    f.write({content!r})
                print("WROTE", path, flush=True)
            except OSError as e:
                print("REFUSED", path, e, flush=True)
    """


def limit_cases(big):
    """(what, body, limits, reason) of the CPU time, file size and open files limits; the file
    grown is `big`."""
    return [
        ("spinner", "while True:\n    pass\n", sandbox.Limits(cpu_seconds=1), "server killed: CPU time limit 1 s"),
        ("filler", f"with open({big!r}, 'wb') as f:\n    while True:\n        f.write(bytes(1 << 20))\n",
         sandbox.Limits(file_size_mib=8), "server killed: file size limit 8 MiB"),
        ("opener", "fds = [open('/dev/null') for _ in range(1000)]\n", sandbox.Limits(open_files=32),
         "server killed: open files limit 32"),
    ]


# ---------------------------------------------------------------- runs
def run_daemon(tmp_path, marker):
    """A daemon left behind (two forks, a session of its own) under `marker`: the run passes and
    the daemon does not survive it."""
    tmpl = hostile(tmp_path, "daemon", f"""
        import os, subprocess, sys
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                subprocess.Popen([sys.executable, "-X", {marker!r}, "-c", "import time; time.sleep(300)"],
                                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            os._exit(0)
    """)
    res = play("3.1", tmp_path, server=tmpl)
    assert res.passed, res.errors
    assert_none_left(marker)
    return res


def run_hog(tmp_path):
    """Memory past the limit, a run going on beside it: a clear failure."""
    tmpl = hostile(tmp_path, "hog", """
        hog = []
        while True:
            hog.append(bytearray(64 << 20))
    """)
    res = with_bystander(tmp_path, lambda: play("3.1", tmp_path, server=tmpl))
    assert not res.passed
    assert "server killed: memory limit 512 MiB" in res.errors, res.errors
    return res


def run_forker(tmp_path, marker):
    """300 processes under `marker`, a run going on beside it: stopped at 64, none left."""
    tmpl = hostile(tmp_path, "forker", f"""
        import os, time
        for i in range(300):
            if os.fork() == 0:
                os.execv("/usr/bin/python3", ["python3", "-X", {marker!r}, "-c", "import time; time.sleep(300)"])
    """)
    res = with_bystander(tmp_path, lambda: play("3.1", tmp_path, server=tmpl))
    assert not res.passed
    assert "server killed: process limit 64" in res.errors, res.errors
    assert_none_left(marker)
    return res


def run_printer(tmp_path):
    """Output without end, a run going on beside it: cut at 256 KiB, soon, the log kept small."""
    tmpl = hostile(tmp_path, "printer", """
        import sys
        line = "spam " * 200 + "\\n"
        while True:
            sys.stdout.write(line)
    """)
    t0 = time.time()
    res = with_bystander(tmp_path, lambda: play("3.1", tmp_path, server=tmpl, limits=sandbox.Limits(output_kib=256)))
    assert time.time() - t0 < 60
    assert not res.passed
    assert "server killed: output limit 256 KiB" in res.errors, res.errors
    assert os.path.getsize(tmp_path / "run-3.1" / "server.log") < 256 * 1024 + 70000
    return res


def run_squatter(tmp_path):
    """A server that binds the proxy's port before the proxy starts (the port below its own: the
    lab gives the proxy that one at every level): a lab error of its own run, which the run beside
    it never sees."""
    tmpl = hostile(tmp_path, "squatter", """
        import socket, sys
        port = int(sys.argv[sys.argv.index("-p") + 1]) - 1   # the proxy's, before the proxy starts
        squat = socket.socket()
        squat.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squat.bind(("127.0.0.1", port))
        squat.listen()
        print("SQUATTING", port, flush=True)
    """)
    # the proxy that cannot bind is calclab's: a lab error of the squatter's run (no points given
    # or taken), which the run beside it never sees
    def squatted():
        with pytest.raises(runner.LabError, match="calclab's proxy: exited .*Address already in use"):
            play("3.2", tmp_path, server=tmpl)
    with_bystander(tmp_path, squatted)


def grade_forging_hand_in(tmp_path, out):
    """A hand-in whose server writes a forged entry (1000 points) into the class's grades in `out`,
    graded as a class's hand-in is: full marks, its own, and the forgery nowhere. Returns the
    entry."""
    hand_in = tmp_path / "alice"
    hand_in.mkdir()
    for f in ("api.py", "calculator.py"):
        shutil.copy(STUDENT / f, hand_in / f)
    forged = json.dumps({"id": "alice", "score": 1000, "status": "graded"})
    targets = [out / "grades.json", out / "alice" / "entry.json", out / "forged.json"]
    (hand_in / "server.py").write_text(textwrap.dedent(writer(targets, forged, make_dirs=True)) +
                                       (STUDENT / "calc_server.py").read_text())
    entry = classgrade.grade_submission(str(hand_in), str(out), roles=["server"], scenarios=["3.1"])
    assert entry["status"] == "graded" and entry["score"] == entry["max_score"] > 0, entry
    assert not (out / "forged.json").exists()
    assert not any(forged in p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
    return entry
