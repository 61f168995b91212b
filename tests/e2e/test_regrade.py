"""A regrade never moves a student's score (docs/grades.md, "Races"): the same class graded five
times, three at the default jobs, once with --jobs 1, once interrupted and --resume'd, gives the
same grades.json but where on the wire things were (times and frame numbers).

The class holds programs whose wire behaviour used to depend on scheduling: a server and a proxy
that close their side right after answering (plain student code, no TCP_CORK to fix the order:
their FIN races their client's), and a proxy that connects upstream as soon as its client
connects and keeps that connection for the client's whole session (its SYN races its client's
request), next to reference-like hand-ins. Servers and proxies are graded, calclab's client
plays the client."""
import glob
import json
import os
import re
import signal
import subprocess
import time

from student_faults import closes_first
from test_class import LAB, PY, ROOT, grades, make_handin, read

# plain student code: no TCP_CORK fixes the order of their FIN and their client's
CLOSES_FIRST = {role: closes_first(role, cork=False) for role in ("server", "proxy")}

EARLY_UPSTREAM_PROXY = """
import socket, threading, calc_proxy, api
mine = threading.local()
def ask_server(data):
    # the connection opened when the client connected, kept for its whole session
    if mine.up is None:
        raise ConnectionRefusedError()
    mine.up.sendall(data)
    resp = api.recv_message(mine.up)
    if len(resp) < api.HEADER_LEN:
        raise api.CalculatorServerError("The server closed the connection without a complete response")
    return resp
calc_proxy.ask_server = ask_server
def handle(conn, addr):
    peer = f"{addr[0]}:{addr[1]}"
    try:
        mine.up = socket.create_connection(calc_proxy.SERVER, timeout=10)
    except OSError:
        mine.up = None
    try:
        while True:
            data = api.recv_message(conn)
            if not data:
                break
            conn.sendall(calc_proxy.process(data, peer))
    finally:
        conn.close()
        if mine.up is not None:
            mine.up.close()
calc_proxy.handle = handle
calc_proxy.main()
"""


def build_regrade_class(top):
    os.makedirs(top)
    make_handin(os.path.join(top, "plain"))
    make_handin(os.path.join(top, "nested", "Assignment2"), upper=True)
    for role, code in CLOSES_FIRST.items():
        d = make_handin(os.path.join(top, f"{role}_closes_first"))
        with open(os.path.join(d, f"calc_{role}.py"), "wb") as f:
            f.write(read(f"calc_{role}.py"))
        with open(os.path.join(d, f"{role}.py"), "w") as f:
            f.write(code)
    d = make_handin(os.path.join(top, "proxy_connects_early"))
    with open(os.path.join(d, "calc_proxy.py"), "wb") as f:
        f.write(read("calc_proxy.py"))
    with open(os.path.join(d, "proxy.py"), "w") as f:
        f.write(EARLY_UPSTREAM_PROXY)


def run_grade(klass, out, *extra):
    r = subprocess.run([PY, os.path.join(LAB, "grade"), "--class", klass, "--out", out, "--roles", "server,proxy",
                        *map(str, extra)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def interrupted_then_resumed(klass, out):
    """Graded one at a time and interrupted (SIGINT, as a ^C) once the first hand-in is done,
    then --resume'd at the default jobs."""
    p = subprocess.Popen([PY, os.path.join(LAB, "grade"), "--class", klass, "--out", out, "--roles",
                          "server,proxy", "--jobs", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         cwd=ROOT, start_new_session=True)
    try:
        deadline = time.time() + 300
        done = []
        while not done and time.time() < deadline and p.poll() is None:
            time.sleep(0.05)
            done = [d for d in os.listdir(out) if os.path.exists(os.path.join(out, d, "entry.json"))] \
                if os.path.isdir(out) else []
        os.killpg(p.pid, signal.SIGINT)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    done = [d for d in os.listdir(out) if os.path.exists(os.path.join(out, d, "entry.json"))]
    assert 1 <= len(done) < len(os.listdir(klass)), done
    assert not os.path.exists(os.path.join(out, "grades.json"))
    run_grade(klass, out, "--resume")


def where_free(x):
    """grades.json without where on the wire things were: durations, times and frame numbers."""
    if isinstance(x, dict):
        return {k: where_free(v) for k, v in x.items() if k not in ("duration", "time", "packets")}
    if isinstance(x, list):
        return [where_free(v) for v in x]
    if isinstance(x, str):
        return re.sub(r"\(packets? [0-9, ]+ at \d+\.\d+ s\)", "(packets P at T s)", x)
    return x


def failed(e, role, check):
    return [(s["scenario"], it) for s in e["scenarios"] for c in s["checks"] if c["name"] == check
            for it in c["items"] if not it["passed"] and it["role"] == role]


def full_marks(e, role):
    v = e["roles"][role]
    return v["max_score"] > 0 and v["score"] == v["max_score"]


def test_five_gradings_of_a_racy_class_give_the_same_grades(tmp_path):
    klass = str(tmp_path / "class")
    build_regrade_class(klass)
    outs = [str(tmp_path / f"out{i}") for i in range(1, 6)]
    for out in outs[:3]:
        run_grade(klass, out)
    run_grade(klass, outs[3], "--jobs", "1")
    interrupted_then_resumed(klass, outs[4])
    graded = []
    for out in outs:
        with open(os.path.join(out, "grades.json")) as f:
            graded.append(where_free(json.load(f)))
    for i, g in enumerate(graded[1:], 2):
        assert g == graded[0], f"grading {i} differs from grading 1"
    for out in outs:
        got = grades(out)
        for sid in ("plain", "nested"):
            assert got[sid]["score"] == got[sid]["max_score"], (out, sid, got[sid]["roles"])
        # the close-first programs lose their teardown points, named as theirs, in every scenario
        # they close in: the server on its clients' connections (3.1) and its proxy's (3.2, 3.3)
        e = got["server_closes_first"]
        lost = failed(e, "server", "teardown")
        assert {s for s, _ in lost} == {"3.1", "3.2", "3.3"}, lost
        assert all("the server sent the first FIN" in it["detail"] for _, it in lost)
        assert e["roles"]["server"]["score"] < e["roles"]["server"]["max_score"] and full_marks(e, "proxy")
        e = got["proxy_closes_first"]
        lost = failed(e, "proxy", "teardown")
        assert {s for s, _ in lost} == {"3.2", "3.3"} and len(lost) == 6, lost   # its 3 clients' connections each
        assert all("the proxy sent the first FIN" in it["detail"] for _, it in lost)
        assert e["roles"]["proxy"]["score"] < e["roles"]["proxy"]["max_score"] and full_marks(e, "server")
        # the early proxy: the hit's unused upstream connection, answering before closing upstream
        e = got["proxy_connects_early"]
        assert {s for s, _ in failed(e, "proxy", "cache-hit-no-upstream")} == {"3.2", "3.3"}
        assert failed(e, "proxy", "ordering") and not failed(e, "proxy", "teardown")
        assert full_marks(e, "server")


def test_plays_agree_with_the_provoked_race(tmp_path):
    """--plays 3: the close-first server fails its teardown items in every play (no race left to
    find: the hold provokes it), each play has its folder, and grades.json says so."""
    klass = str(tmp_path / "class")
    build_regrade_class(klass)
    out = str(tmp_path / "out")
    r = subprocess.run([PY, os.path.join(LAB, "grade"), os.path.join(klass, "server_closes_first"), "--out", out,
                        "--roles", "server", "--scenarios", "3.1", "--plays", "3"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    e = grades(out)["server_closes_first"]
    (scn,) = e["scenarios"]
    assert scn["races"] == []
    lost = failed(e, "server", "teardown")
    assert len(lost) == 3 and not any("seen in" in it["detail"] for _, it in lost), lost
    for k in (2, 3):   # in the run's folder (each role's runs have their own)
        assert glob.glob(os.path.join(out, "server_closes_first", "3.1", "**", f"play-{k}", "3.1.pcap"),
                         recursive=True), k
    r = subprocess.run([PY, os.path.join(LAB, "grade"), os.path.join(klass, "plain"), "--out", out, "--plays", "0"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "--plays takes 1 to 20" in r.stderr
