"""lab/grade on students' hand-ins: one submission (a folder or a .zip), and a class folder.

The hand-ins are built here from the student-style implementation (tests/student), renamed to
the skeleton's server.py / proxy.py / client.py, in the spellings students hand in."""
import json
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(ROOT, "lab")
STUDENT = os.path.join(ROOT, "tests", "student")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, LAB)
from calclab_lab import submission  # noqa: E402

# The skeleton's client hard-codes the expression it sends; these do the same with the
# student-style client's code.
CLIENT_E1 = """
import sys
import calc_client
sys.argv += ["--example", "1"]
sys.exit(calc_client.main())
"""


# An interactive menu client: which example to send is read from stdin until 'stop'.
CLIENT_MENU = """
import sys
import calc_client
host, port = sys.argv[sys.argv.index("-H") + 1], sys.argv[sys.argv.index("-p") + 1]
while True:
    choice = input("Example (1 or 2), or stop: ").strip()
    if choice == "stop":
        break
    sys.argv = [sys.argv[0], "-H", host, "-p", port, "--example", choice]
    calc_client.main()
"""

# A client that keeps one connection for both examples.
CLIENT_ONE_CONNECTION = """
import pickle, socket, sys
import api, calculator
host, port = sys.argv[sys.argv.index("-H") + 1], int(sys.argv[sys.argv.index("-p") + 1])
sock = socket.create_connection((host, port))
print(f"{{{host}:{port}}} Connection established")
for text in (calculator.E1, calculator.E2):
    req = api.pack_message(api.Header(True), pickle.dumps(calculator.parse(text)))
    print(f"{{{host}:{port}}} Sending request of length {len(req)} bytes")
    sock.sendall(req)
    data = api.recv_message(sock, first_wait=30)
    print(f"{{{host}:{port}}} Got response of length {len(data)} bytes")
    result, steps = api.loads(data[api.HEADER_LEN:])
    print(f"Result: {result}")
sock.close()
print(f"{{{host}:{port}}} Connection closed")
"""

# A client that prints another result than the answer it received (E1's sign dropped).
CLIENT_MISPRINTS = """
import builtins, sys
import calc_client
sys.argv += ["--example", "1"]
def misprint(*args, **kw):
    builtins.print(*(str(a).replace("Result: -", "Result: ") for a in args), **kw)
calc_client.print = misprint
sys.exit(calc_client.main())
"""

# A server whose results are wrong but of the reference's size (a float doubled, an int plus 1):
# only the decoded answer shows it, and the clients that print it faithfully are not at fault.
SERVER_WRONG_RESULT = """
import calc_server, calculator
right = calculator.calculate
def wrong(expr, steps):
    result, st = right(expr, steps)
    return (result * 2 if isinstance(result, float) else result + 1), st
calculator.calculate = wrong
calc_server.main()
"""

CLIENT_OWN_EXPRESSION = """
import sys
import calc_client
sys.argv += ["--", "(2 + 3) * 4 - 1"]
sys.exit(calc_client.main())
"""


def read(name):
    with open(os.path.join(STUDENT, name), "rb") as f:
        return f.read()


def make_handin(top, server=True, proxy=True, client=CLIENT_E1, crlf=False, upper=False):
    """A hand-in folder: the course's api.py and calculator.py next to the student's files."""
    os.makedirs(top, exist_ok=True)
    files = {"api.py": read("api.py"), "calculator.py": read("calculator.py")}
    if server:
        files["server.py"] = read("calc_server.py")
    if proxy:
        files["proxy.py"] = read("calc_proxy.py")
    if client:
        files["calc_client.py"] = read("calc_client.py")
        files["client.py"] = client.encode() if isinstance(client, str) else client
    for name, data in files.items():
        if crlf:
            data = data.replace(b"\n", b"\r\n")
        if upper and name in ("server.py", "proxy.py", "client.py"):
            name = name[0].upper() + name[1:]
        with open(os.path.join(top, name), "wb") as f:
            f.write(data)
    return top


def zip_folder(folder, zpath, prefix=""):
    with zipfile.ZipFile(zpath, "w") as z:
        for d, _, files in os.walk(folder):
            for n in files:
                p = os.path.join(d, n)
                z.write(p, os.path.join(prefix, os.path.relpath(p, folder)))
    return zpath


def grade(*args, timeout=600):
    return subprocess.run([PY, os.path.join(LAB, "grade"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def grades(out):
    with open(os.path.join(out, "grades.json")) as f:
        return {e["id"]: e for e in json.load(f)["submissions"]}


def full_marks(e, role):
    v = e["roles"][role]
    return v["max_score"] > 0 and v["score"] == v["max_score"]


# ---------------------------------------------------------------- finding and copying role files
@pytest.mark.build_independent
def test_role_files_found_case_insensitive_nested_ignoring_ide_folders(tmp_path):
    top = tmp_path / "sub"
    make_handin(str(top / "CN_Ex2" / "src"), upper=True)
    for ide in (".idea", "__pycache__", "__MACOSX", "venv"):
        (top / ide).mkdir()
        (top / ide / "server.py").write_text("raise SystemExit('not this one')\n")
    found = submission.find_role_files(str(top))
    assert sorted(found) == ["client", "proxy", "server"]
    assert all(os.sep + os.path.join("CN_Ex2", "src") + os.sep in p for p in found.values()), found
    too_deep = tmp_path / "deep"
    make_handin(str(too_deep / "a" / "b" / "c" / "d"))
    assert submission.find_role_files(str(too_deep)) == {}


@pytest.mark.build_independent
def test_zip_extraction_refuses_traversal_and_links(tmp_path):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../../escaped.py", "x = 1\n")
        zf.writestr("/abs.py", "x = 1\n")
        zf.writestr("ok/server.py", "print('hi')\n")
        link = zipfile.ZipInfo("ok/link.py")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    sub = submission.Submission(str(z), str(tmp_path / "work"))
    assert sorted(sub.skipped) == ["../../escaped.py", "/abs.py", "ok/link.py"]
    assert not (tmp_path / "escaped.py").exists() and not (tmp_path / "work" / "escaped.py").exists()
    assert list(sub.files) == ["server"]


@pytest.mark.build_independent
def test_zip_bomb_is_refused(tmp_path):
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("server.py", b"#" * (submission.MAX_BYTES + 1))
    with pytest.raises(submission.SubmissionError, match="MiB"):
        submission.Submission(str(z), str(tmp_path / "work"))


@pytest.mark.build_independent
def test_syntax_of_a_newer_python_is_reported_not_run(tmp_path):
    top = make_handin(str(tmp_path / "s"))
    with open(os.path.join(top, "server.py"), "a") as f:
        f.write('\ntype Point = tuple[int, int]\nprint(f"{"nested"}")\n')   # Python 3.12 only
    sub = submission.Submission(top, str(tmp_path / "work"))
    assert "line" in sub.errors["server"] and "proxy" not in sub.errors


# ---------------------------------------------------------------- one submission
def test_one_handin_graded_per_role(tmp_path):
    """The student-style server and proxy, graded while calclab's client plays the client: full
    points on both roles, and the same grades.json shape as a class of one."""
    top = make_handin(str(tmp_path / "alice"))
    out = tmp_path / "out"
    r = grade(top, "--out", out, "--roles", "server,proxy")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    e = grades(out)["alice"]
    assert e["status"] == "graded"
    assert sorted(e["roles"]) == ["proxy", "server"]
    assert full_marks(e, "server") and full_marks(e, "proxy"), e["roles"]
    assert e["score"] == e["max_score"] == e["roles"]["server"]["max_score"] + e["roles"]["proxy"]["max_score"]
    assert {s["scenario"] for s in e["scenarios"]} == {"3.1", "3.2", "3.3"}
    assert all(c["role"] in ("server", "proxy") for s in e["scenarios"] for c in s["checks"])
    with open(out / "grades.csv") as f:
        head = f.readline().strip().split(",")
    assert head[:7] == ["submission", "score", "max_score", "server", "proxy", "client", "status"]
    # each role in runs of its own: the scenario's folder holds one run per graded role
    for name in ("index.html", "feedback.txt", "3.2/server/3.2.pcap", "3.2/server/server.log",
                 "3.2/proxy/proxy.log", "3.2/proxy/3.2.pcap", "3.2/server/client-1.txt"):
        assert (out / "alice" / name).exists(), name
    assert (out / "index.html").exists()


def test_ungradeable_handin_carries_the_maximum(tmp_path):
    """A hand-in that cannot be graded scores 0 of the maximum a graded one has, not 0/0; a
    hand-in without client.py scores 0 for its client, of the client's maximum."""
    out = tmp_path / "out"
    good = make_handin(str(tmp_path / "good"))
    r = grade(good, "--out", out, "--scenarios", "3.1", "--roles", "server,client")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    top = grades(out)["good"]
    assert top["score"] == top["max_score"] > 0
    os.makedirs(tmp_path / "empty")
    bad = make_handin(str(tmp_path / "bad"))
    with open(os.path.join(bad, "server.py"), "a") as f:
        f.write("\ndef broken(:\n")
    r = grade(tmp_path / "empty", "--out", out, "--scenarios", "3.1", "--roles", "server,client")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    e = grades(out)["empty"]
    assert e["status"].startswith("no role files") and e["score"] == 0
    assert maxima(e) == maxima(top)
    assert f"points: 0/{top['max_score']:g} (server 0/" in r.stdout, r.stdout
    # a server that does not compile costs the server only: the client is graded
    r = grade(tmp_path / "bad", "--out", out, "--scenarios", "3.1", "--roles", "server,client")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    e = grades(out)["bad"]
    assert e["status"] == "graded" and maxima(e) == maxima(top)
    assert e["roles"]["server"]["score"] == 0 and e["roles"]["server"]["problem"].startswith("syntax error")
    assert full_marks(e, "client")
    # a hand-in none of whose graded roles can run is not graded, zero of the same maximum
    r = grade(tmp_path / "bad", "--out", out, "--scenarios", "3.1", "--roles", "server")
    e = grades(out)["bad"]
    assert e["status"].startswith("syntax error") and e["score"] == 0, e["status"]
    serverless = make_handin(str(tmp_path / "serverless"), server=False)
    r = grade(serverless, "--out", out, "--scenarios", "3.1", "--roles", "server,client")
    e = grades(out)["serverless"]
    assert e["status"] == "graded" and maxima(e) == maxima(top)
    assert e["roles"]["server"]["score"] == 0 and full_marks(e, "client"), e["roles"]
    assert "no server.py handed in" in r.stdout


def test_zipped_nested_crlf_handin_runs(tmp_path):
    folder = make_handin(str(tmp_path / "src"), crlf=True, upper=True)
    z = zip_folder(folder, str(tmp_path / "bob.zip"), prefix="Assignment2/bob")
    out = tmp_path / "out"
    r = grade(z, "--out", out, "--roles", "server,proxy", "--scenarios", "3.2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    e = grades(out)["bob"]
    assert e["files"]["server"] == os.path.join("Assignment2", "bob", "Server.py")
    assert full_marks(e, "server") and full_marks(e, "proxy"), e["roles"]


def test_client_requests_are_reported(tmp_path):
    top = make_handin(str(tmp_path / "carol"))
    out = tmp_path / "out"
    grade(top, "--out", out, "--roles", "client", "--scenarios", "3.1")
    e = grades(out)["carol"]
    sent = e["scenarios"][0]["client_requests"]
    assert [len(r["expressions"]) for r in sent] == [1, 1, 1]
    assert all(r["expressions"][0].startswith("(sin(max(2") for r in sent)


def test_hard_coded_client_is_graded_on_what_it_sends(tmp_path):
    """A client sending its own expression three times: 3.2 and 3.3 become miss, hit, hit (a request
    seen before is a hit), judged against calclab's replay of the same requests: full marks."""
    top = make_handin(str(tmp_path / "dave"), client=CLIENT_OWN_EXPRESSION)
    out = tmp_path / "out"
    r = grade(top, "--out", out, "--roles", "client")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    e = grades(out)["dave"]
    assert full_marks(e, "client"), e["roles"]
    by = {s["scenario"]: s for s in e["scenarios"]}
    assert "(miss)" in by["3.3"]["adapted"] and "(refused)" not in by["3.3"]["adapted"]
    assert by["3.3"]["adapted"].count("(hit)") == 2
    assert all(x == ["((2 + 3) * 4) - 1"] for s in by.values() for x in
               [r["expressions"] for r in s["client_requests"]])
    assert by["3.2"]["calc_sniff"] == "pass" and by["3.2"]["golden"].startswith(".replays")



# ---------------------------------------------------------------- a class
def broken_program(name):
    """A broken implementation of tests/e2e/test_lab.py as the hand-in's role file."""
    import textwrap
    from test_lab import BROKEN
    return textwrap.dedent(BROKEN[name]).encode()


BROKEN_ROLES = {"proxy_never_caches": ("proxy", "cache-hit-no-upstream"),
                "server_closes_first": ("server", "teardown"),
                "server_split_writes": ("server", "segmentation"),
                "proxy_resets": ("proxy", "rst")}


def build_class(top):
    """The class folder and what each hand-in must get: id -> (status start, roles with full
    marks, {role: failing check} for roles that lose points)."""
    os.makedirs(top)
    want = {}
    full = ("server", "proxy", "client")
    make_handin(os.path.join(top, "plain"))
    want["plain"] = ("graded", full, {})
    make_handin(os.path.join(top, "nested", "Assignment2", "src"), upper=True)
    want["nested"] = ("graded", full, {})
    make_handin(os.path.join(top, "crlf"), crlf=True)
    want["crlf"] = ("graded", full, {})
    zip_folder(make_handin(os.path.join(str(top) + "-tmp", "z")), os.path.join(top, "zipped.zip"), prefix="zipped")
    want["zipped"] = ("graded", full, {})
    port9997 = make_handin(os.path.join(top, "port9997"))
    for f in ("server.py", "proxy.py", "calc_client.py"):
        p = os.path.join(port9997, f)
        with open(p) as fh:
            text = fh.read()
        with open(p, "w") as fh:
            fh.write(text.replace("default=9999", "default=api.SERVER_PORT"))
    with open(os.path.join(port9997, "api.py"), "a") as fh:
        fh.write("\nSERVER_PORT = 9997\n")
    want["port9997"] = ("graded", full, {})
    for name, (role, check) in BROKEN_ROLES.items():
        d = make_handin(os.path.join(top, name))
        with open(os.path.join(d, f"calc_{role}.py"), "wb") as f:
            f.write(read(f"calc_{role}.py"))
        with open(os.path.join(d, f"{role}.py"), "wb") as f:
            f.write(broken_program(name))
        # only the broken program loses points: the others were given its wrong answers
        want[name] = ("graded", tuple(r for r in full if r != role), {role: check})
    # the never-caching proxy with the menu client, which sends the scenario's own E1, E1, E2: in
    # 3.3 it faithfully prints the refused answer the proxy gave for request 2, its client is right
    d = make_handin(os.path.join(top, "proxy_never_caches-menu"), client=CLIENT_MENU)
    with open(os.path.join(d, "calc_proxy.py"), "wb") as f:
        f.write(read("calc_proxy.py"))
    with open(os.path.join(d, "proxy.py"), "wb") as f:
        f.write(broken_program("proxy_never_caches"))
    want["proxy_never_caches-menu"] = ("graded", ("server", "client"), {"proxy": "answer-result"})
    d = make_handin(os.path.join(top, "server_wrong_result"))
    with open(os.path.join(d, "calc_server.py"), "wb") as f:
        f.write(read("calc_server.py"))
    with open(os.path.join(d, "server.py"), "w") as f:
        f.write(SERVER_WRONG_RESULT)
    want["server_wrong_result"] = ("graded", ("proxy", "client"), {"server": "answer-result"})
    make_handin(os.path.join(top, "client_misprints"), client=CLIENT_MISPRINTS)
    want["client_misprints"] = ("graded", ("server", "proxy"), {"client": "client-result"})
    make_handin(os.path.join(top, "menu"), client=CLIENT_MENU)
    want["menu"] = ("graded", full, {})
    make_handin(os.path.join(top, "own-expression"), client=CLIENT_OWN_EXPRESSION)
    want["own-expression"] = ("graded", full, {})
    make_handin(os.path.join(top, "one-connection"), client=CLIENT_ONE_CONNECTION)
    want["one-connection"] = ("graded", ("server", "proxy"), {"client": "client-one-connection-per-request"})
    bad = make_handin(os.path.join(top, "syntax-error"))
    with open(os.path.join(bad, "proxy.py"), "a") as f:
        f.write("\ndef broken(:\n    pass\n")
    # a file that does not compile, a program that does not start: that role only scores 0
    want["syntax-error"] = ("graded", ("server", "client"), {"proxy": "syntax error"})
    crash = make_handin(os.path.join(top, "crash-at-start"))
    with open(os.path.join(crash, "server.py"), "r+") as f:
        text = f.read()
        f.seek(0)
        f.write("import numpy_is_not_installed_here\n" + text)
    want["crash-at-start"] = ("graded", ("proxy", "client"), {"server": "does not start"})
    os.makedirs(os.path.join(top, "empty"))
    want["empty"] = ("no role files", (), {})
    return want


def maxima(e):
    return e["max_score"], {r: v["max_score"] for r, v in e["roles"].items()}


def check_class(out, want):
    got = grades(out)
    assert sorted(got) == sorted(want)
    # one maximum for the class, per role too: the E1-only clients ('plain') and the menu client
    # that sends the scenario's own requests ('menu') meet other checks in 3.3 (only the menu's
    # E2 is refused), the ungradeable rows were never run; all carry the same maxima
    tops = {sid: maxima(e) for sid, e in got.items()}
    assert tops["plain"][0] > 0 and sorted(tops["plain"][1]) == ["client", "proxy", "server"]
    assert all(m == tops["plain"] for m in tops.values()), tops
    in_33 = {sid: next(s for s in got[sid]["scenarios"] if s["scenario"] == "3.3") for sid in ("plain", "menu")}
    assert in_33["menu"]["adapted"] is None and "(refused)" not in in_33["plain"]["adapted"]
    problems = []
    for sid, (status, full, losing) in want.items():
        e = got[sid]
        if not e["status"].startswith(status):
            problems.append(f"{sid}: status {e['status']!r}, expected {status!r}")
            continue
        if status != "graded":
            if e["score"] != 0 or any(v["score"] for v in e["roles"].values()):
                problems.append(f"{sid}: {e['score']} points while not graded")
            continue
        for role in full:
            if not full_marks(e, role):
                problems.append(f"{sid}: {role} {e['roles'][role]}, expected full marks")
        for role, check in losing.items():
            v = e["roles"][role]
            if v.get("problem"):
                if v["score"] != 0 or check not in v["problem"]:
                    problems.append(f"{sid}: {role} {v}, expected 0 points for {check!r}")
                continue
            failed = {c["name"] for s in e["scenarios"] for c in s["checks"] if c["role"] == role and not c["passed"]}
            if not v["score"] < v["max_score"] or check not in failed:
                problems.append(f"{sid}: {role} {v}, failed {sorted(failed)}, expected {check} to fail")
    assert not problems, "\n".join(problems)
    return got


def test_class_grades_every_handin_with_its_per_role_points(tmp_path):
    klass = tmp_path / "class"
    want = build_class(str(klass))
    out = tmp_path / "out"
    r = grade("--class", klass, "--out", out, "--client-stdin", r"{example}\nstop\n")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stderr.count("\n") >= len(want), "a plain progress line per submission when not on a terminal"
    got = check_class(out, want)
    # the proxy's refused answer to the hit of 3.3 is the proxy's fault (its own run)
    scn33 = next(s for s in got["proxy_never_caches-menu"]["scenarios"] if s["scenario"] == "3.3")
    by = {(c["role"], c["name"]): c for c in scn33["checks"]}
    assert by[("client", "client-result")]["passed"] and not by[("proxy", "answer-result")]["passed"]
    assert got["syntax-error"]["roles"]["proxy"]["problem"].startswith("syntax error (Python")
    one = next(s for s in got["one-connection"]["scenarios"] if s["scenario"] == "3.1")
    assert [x["requests_per_connection"] for x in one["client_requests"]] == [[2], [2], [2]]
    with open(out / "grades.csv") as f:
        rows = f.read().splitlines()
    assert len(rows) == len(want) + 1
    for sid in want:
        assert (out / sid / "index.html").exists() and (out / sid / "feedback.txt").exists()

    # the same class one at a time: the same verdicts
    out1 = tmp_path / "out1"
    r = grade("--class", klass, "--out", out1, "--jobs", "1", "--client-stdin", r"{example}\nstop\n")
    assert r.returncode == 0, r.stderr[-3000:]
    from calclab_lab import gradebook
    with open(out / "grades.json") as a, open(out1 / "grades.json") as b:
        va = gradebook.verdicts(json.load(a)["submissions"])
        vb = gradebook.verdicts(json.load(b)["submissions"])
    assert va == vb

    # --resume grades only what is missing
    import shutil
    shutil.rmtree(out1 / "menu")
    r = grade("--class", klass, "--out", out1, "--resume", "--client-stdin", r"{example}\nstop\n")
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [l for l in r.stderr.splitlines() if l.startswith("[")]
    assert len(lines) == 1 and "menu:" in lines[0], r.stderr
    with open(out1 / "grades.json") as b:
        assert gradebook.verdicts(json.load(b)["submissions"]) == va


def test_class_index_renders_in_headless_chromium(tmp_path):
    """OUT/index.html is one self-contained page: Chromium draws its score distribution and its
    rows link to each student's page."""
    import shutil
    from test_lab import _png_pixels
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is not installed (ci/deps installs it)"
    klass = tmp_path / "class"
    make_handin(str(klass / "alice"))
    make_handin(str(klass / "bob"), server=False, proxy=False)
    os.makedirs(klass / "empty")
    out = tmp_path / "out"
    r = grade("--class", klass, "--out", out, "--scenarios", "3.1")
    assert r.returncode == 0, r.stderr[-3000:]
    page = out / "index.html"
    doc = page.read_text()
    assert not any(x in doc for x in ("<script", "<link", "src=", "url(", "@import")), "not self-contained"
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    import re
    links = re.findall(r'<tr class="student[^"]*"><td><a href="([^"]+)">([^<]+)</a>', dom)
    assert sorted(n for _, n in links) == ["alice", "bob", "empty"], dom[:2000]
    for href, _ in links:
        assert (out / href).exists(), href
    assert 'class="nfail"' in dom and 'id="distribution"' in dom
    bins = [int(x) for x in re.findall(r'class="bin" data-count="(\d+)"', dom)]
    assert sum(bins) == 3
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--force-device-scale-factor=1", "--window-size=900,900", f"--screenshot={shot}",
                    page.as_uri()], capture_output=True, timeout=120)
    w, h, rows, bpp = _png_pixels(str(shot))
    bar = (0x4a, 0x7f, 0xc1)
    painted = sum(1 for y in range(h) for x in range(0, w, 4)
                  if all(abs(rows[y][x * bpp + k] - bar[k]) < 30 for k in range(3)))
    assert painted > 100, "the score distribution's bars are not drawn"


@pytest.mark.build_independent
def test_progress_bar_on_a_terminal_plain_lines_otherwise():
    import io
    from calclab_lab.cli import _Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True
    e = {"id": "alice", "score": 3, "max_score": 4, "status": "graded"}
    tty, plain = Tty(), io.StringIO()
    for stream in (tty, plain):
        p = _Progress(stream)
        p(0, 2, None)
        p(1, 2, e)
        p(2, 2, dict(e, id="bob"))
    frames = tty.getvalue().split("\r")[1:]
    assert len(frames) == 3 and "1/2" in frames[1] and "elapsed" in frames[1] and "eta" in frames[1]
    assert frames[2].endswith("\n") and "2/2" in frames[2]
    assert plain.getvalue().splitlines() == [l for l in plain.getvalue().splitlines() if l.startswith("[")]
    assert [l.split()[1] for l in plain.getvalue().splitlines()] == ["alice:", "bob:"]


def test_role_weights_rescale_every_roles_points(tmp_path):
    """By default a hand-in is worth 100 points, server 40, proxy 40, client 20; --role-weights
    makes each role's maximum the course's weight for it, every check's points whole or half
    points adding up to it, and every score of the role (checks, penalties, totals) about the
    same share of it as with the default; no number in any output has more than one decimal."""
    klass = tmp_path / "class"
    make_handin(str(klass / "plain"))
    for name in ("proxy_never_caches", "server_closes_first"):   # a lost check, a penalty
        role = BROKEN_ROLES[name][0]
        d = make_handin(str(klass / name))
        with open(os.path.join(d, f"calc_{role}.py"), "wb") as f:
            f.write(read(f"calc_{role}.py"))
        with open(os.path.join(d, f"{role}.py"), "wb") as f:
            f.write(broken_program(name))
    make_handin(str(klass / "no-server"), server=False)
    weights = {"server": 50, "proxy": 30, "client": 20}
    out_w, out = tmp_path / "weighted", tmp_path / "default"
    for o, extra in ((out_w, ["--role-weights", ",".join(f"{r}={p}" for r, p in weights.items())]), (out, [])):
        r = grade("--class", klass, "--out", o, *extra)
        assert r.returncode == 0, r.stderr[-3000:]
    got, base = grades(out_w), grades(out)
    for sid, e in base.items():
        assert {r: v["max_score"] for r, v in e["roles"].items()} == {"server": 40, "proxy": 40, "client": 20}
        assert e["max_score"] == 100, sid
    for sid, e in got.items():
        assert {r: v["max_score"] for r, v in e["roles"].items()} == weights and e["max_score"] == 100, sid
        for role, v in e["roles"].items():
            share = base[sid]["roles"][role]["score"] / base[sid]["roles"][role]["max_score"]
            assert v["score"] == pytest.approx(weights[role] * share, abs=1.5), (sid, role)
    assert got["plain"]["score"] == 100 and base["plain"]["score"] == 100
    assert got["proxy_never_caches"]["roles"]["proxy"]["score"] < 30
    assert base["server_closes_first"]["roles"]["server"]["score"] < 40
    assert got["no-server"]["roles"]["server"]["score"] == 0
    # every check's table points are whole or half points, adding up to the role's weight
    for e in base.values():
        for s in e["scenarios"]:
            for c in s["checks"]:
                assert (c["max_score"] * 2) % 1 == 0, c
                assert c["score"] == round(c["score"], 1)
    pen = [c for s in base["server_closes_first"]["scenarios"] for c in s["checks"] if c.get("penalty")]
    assert pen and all(c["penalty_reason"].startswith("-1: ") for c in pen), pen
    assert "(penalty -1: " in (out / "server_closes_first" / "feedback.txt").read_text()
    for o in (out, out_w):
        _no_long_decimals(o)
    # a bad weight is a usage error, said plainly
    r = grade("--class", klass, "--out", tmp_path / "bad", "--role-weights", "server=40,teacher=60")
    assert r.returncode == 2 and "--role-weights: expected ROLE=POINTS" in r.stderr


POINT_KEYS = ("score", "max_score", "penalty", "duration")


def _no_long_decimals(out):
    """No points (nor durations) with more than one decimal in grades.json, grades.csv, the class
    page and every feedback file."""
    import re
    with open(out / "grades.json") as f:
        doc = json.load(f)

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k in POINT_KEYS and isinstance(v, float):
                    assert round(v, 1) == v and len(repr(v).split(".")[1]) <= 1, (k, v)
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(doc)
    long = re.compile(r"\b\d+\.\d{2,}/|/\d+\.\d{2,}\b")
    for p in [out / "grades.csv", out / "index.html"] + list(out.glob("*/feedback.txt")) + list(out.glob("*/index.html")):
        text = p.read_text()
        if p.name == "grades.csv":
            for cell in text.replace("\n", ",").split(","):
                assert not re.fullmatch(r"-?\d+\.\d{2,}", cell), (p, cell)
        else:
            bad = long.search(text)
            assert bad is None, (p, text[max(0, bad.start() - 80):bad.end() + 80])


def test_each_role_judged_on_its_own_integration_shows_the_rest(tmp_path):
    """A hand-in whose proxy never caches and whose client is the course's: the client gets full
    marks (judged against calclab's proxy and server), the proxy loses its cache checks, and with
    --integration (worth 0 by default) the run of all the student's programs at once shows the
    proxy's failure in a section of its own without changing the points; an interactive client
    that dies on its empty stdin costs the client only."""
    top = make_handin(str(tmp_path / "eve"), client=CLIENT_MENU)
    with open(os.path.join(top, "calc_proxy.py"), "wb") as f:
        f.write(read("calc_proxy.py"))
    with open(os.path.join(top, "proxy.py"), "wb") as f:
        f.write(broken_program("proxy_never_caches"))
    out = tmp_path / "out"
    r = grade(top, "--out", out, "--client-stdin", r"{example}\nstop\n", "--integration")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    e = grades(out)["eve"]
    assert e["max_score"] == 100 and {r: v["max_score"] for r, v in e["roles"].items()} == \
        {"server": 40, "proxy": 40, "client": 20}
    assert full_marks(e, "client") and full_marks(e, "server"), e["roles"]
    assert e["roles"]["proxy"]["score"] < 40
    integ = e["integration"]
    assert (integ["score"], integ["max_score"]) == (0, 0)
    failed = {(s["scenario"], c["role"], c["name"]) for s in integ["scenarios"] for c in s["checks"] if not c["passed"]}
    assert ("3.2", "proxy", "cache-hit-no-upstream") in failed, failed
    # in the all-student run the client faithfully prints the refused answer the proxy gave
    i33 = {(c["role"], c["name"]): c for s in integ["scenarios"] if s["scenario"] == "3.3" for c in s["checks"]}
    assert i33[("client", "client-result")]["passed"] and not i33[("proxy", "answer-result")]["passed"]
    assert any("Got error" in it["detail"] for it in i33[("client", "client-result")]["items"])
    text = (out / "eve" / "feedback.txt").read_text()
    assert "==== integration: all your programs at once, 0/0 points (feedback only)" in text
    # with points for it, the maximum grows by them and the broken proxy costs some
    r = grade(top, "--out", tmp_path / "out10", "--client-stdin", r"{example}\nstop\n", "--integration", "10")
    e10 = grades(tmp_path / "out10")["eve"]
    assert e10["max_score"] == 110 and e10["integration"]["max_score"] == 10 and e10["integration"]["score"] < 10
    # the same hand-in with an interactive client and no stdin: only the client loses
    r = grade(top, "--out", tmp_path / "nostdin", "--scenarios", "3.1,3.2")
    e = grades(tmp_path / "nostdin")["eve"]
    assert e["status"] == "graded" and full_marks(e, "server"), e["status"]
    assert e["roles"]["client"]["score"] == 0 and "does not start" in e["roles"]["client"]["problem"]
    assert e["roles"]["proxy"]["score"] > 0


# ---------------------------------------------------------------- calclab's own failures
def _build_with_broken_server(top):
    """A build folder whose calc-server cannot start (the other tools are the real ones)."""
    build = os.environ.get("CALC_BUILD_DIR") or os.path.join(ROOT, "build")
    os.makedirs(top)
    for tool in ("calc-sniff", "calc-jail", "calc-netns", "calc-proxy", "calc-client", "libcalc-close-wait.so"):
        os.symlink(os.path.join(os.path.abspath(build), tool), os.path.join(top, tool))
    with open(os.path.join(top, "calc-server"), "w") as f:
        f.write("#!/bin/sh\necho 'calc-server: cannot listen: Address already in use' >&2\nexit 1\n")
    os.chmod(os.path.join(top, "calc-server"), 0o755)
    return top


def test_lab_error_is_never_points(tmp_path):
    """calclab's own server unable to start: the hand-in (its client graded against our server)
    is a lab error, with no points given or taken, and lab/grade exits 2; a class retries it
    once and lists it as left."""
    top = make_handin(str(tmp_path / "alice"))
    env = dict(os.environ, CALCLAB_BUILD=_build_with_broken_server(str(tmp_path / "build")))
    out = tmp_path / "out"
    r = subprocess.run([PY, os.path.join(LAB, "grade"), top, "--out", out, "--roles", "client", "--scenarios", "3.1"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert r.returncode == 2, r.stdout[-3000:] + r.stderr[-3000:]
    e = grades(out)["alice"]
    assert e["status"].startswith("lab error: calclab's server: not listening"), e["status"]
    assert e["score"] is None and e["roles"]["client"]["score"] is None and e["roles"]["client"]["max_score"] > 0
    assert "lab error" in r.stderr and "alice" in r.stderr
    with open(out / "grades.csv") as f:
        row = f.read().splitlines()[1].split(",")
    assert row[0] == "alice" and row[1] == "" and row[6].startswith("lab error")
    assert "no points given or taken" in (out / "alice" / "feedback.txt").read_text()
    # a class: retried once (two lines for alice), still a lab error, listed, exit 2
    klass = tmp_path / "class"
    make_handin(str(klass / "alice"))
    r = subprocess.run([PY, os.path.join(LAB, "grade"), "--class", klass, "--out", tmp_path / "cout", "--roles",
                        "client", "--scenarios", "3.1"], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert r.returncode == 2 and r.stderr.count("alice: no points lab error") == 2, r.stderr[-3000:]
    assert "1 submission(s) not graded because of a lab error" in r.stderr


def test_relative_build_path_is_made_absolute(tmp_path):
    """CALCLAB_BUILD=build (relative to where lab/grade runs): calclab's programs still start in
    the sandbox, so the course's client against them gets full marks."""
    build = os.environ.get("CALC_BUILD_DIR") or os.path.join(ROOT, "build")
    top = make_handin(str(tmp_path / "alice"))
    out = tmp_path / "out"
    r = subprocess.run([PY, os.path.join(LAB, "grade"), top, "--out", out, "--roles", "client", "--scenarios", "3.2"],
                       capture_output=True, text=True, timeout=600, cwd=os.path.dirname(os.path.abspath(build)),
                       env=dict(os.environ, CALCLAB_BUILD=os.path.basename(os.path.abspath(build))))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert full_marks(grades(out)["alice"], "client")


# ---------------------------------------------------------------- a class on several machines
def _without_times(path):
    """grades.json with what depends on when it ran left out: durations, packet times."""
    import re

    def walk(x):
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items() if k not in ("duration", "time")}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, str):
            return re.sub(r"\b\d+\.\d+ s\b", "T s", x)
        return x
    with open(path) as f:
        return walk(json.load(f))


def test_three_shards_merged_are_one_run(tmp_path):
    """--shard K/N grades every N-th hand-in from the K-th; --merge of the three shards' OUT
    folders gives the gradebook one machine gives: grades.csv and index.html byte for byte,
    grades.json but times; every hand-in's feedback folder is there."""
    klass = tmp_path / "class"
    make_handin(str(klass / "a-plain"))
    make_handin(str(klass / "b-no-server"), server=False)
    os.makedirs(klass / "c-empty")
    d = make_handin(str(klass / "d-closes-first"))
    with open(os.path.join(d, "calc_server.py"), "wb") as f:
        f.write(read("calc_server.py"))
    with open(os.path.join(d, "server.py"), "wb") as f:
        f.write(broken_program("server_closes_first"))
    zip_folder(make_handin(str(tmp_path / "tmp" / "e")), str(klass / "e-zipped.zip"), prefix="e")
    args = ["--scenarios", "3.1", "--roles", "server,client"]
    one = tmp_path / "one"
    r = grade("--class", klass, "--out", one, *args)
    assert r.returncode == 0, r.stderr[-3000:]
    shards = [tmp_path / f"shard{k}" for k in (1, 2, 3)]
    for k, o in enumerate(shards, 1):
        r = grade("--class", klass, "--out", o, "--shard", f"{k}/3", *args)
        assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(grades(shards[0])) == ["a-plain", "d-closes-first"]
    assert sorted(grades(shards[1])) == ["b-no-server", "e-zipped"] and sorted(grades(shards[2])) == ["c-empty"]
    merged = tmp_path / "merged"
    r = grade("--merge", *shards, "--out", merged)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("grades.csv", "index.html"):
        assert (merged / name).read_bytes() == (one / name).read_bytes(), name
    assert _without_times(merged / "grades.json") == _without_times(one / "grades.json")
    for sid in grades(one):
        assert (merged / sid / "feedback.txt").exists() and (merged / sid / "entry.json").exists()
    # a shard missing, or given twice, is said plainly
    r = grade("--merge", shards[0], shards[1], "--out", tmp_path / "bad")
    assert r.returncode == 2 and "shard(s) 3/3 missing" in r.stderr
    r = grade("--merge", shards[0], shards[0], shards[2], "--out", tmp_path / "bad")
    assert r.returncode == 2 and "given twice" in r.stderr


def test_the_same_points_confined_or_not_on_any_port_pair(tmp_path):
    """A hand-in gets the same points in every check whether its programs are confined (their own
    network namespace, the goldens' 9998/9999) or not (isolation none, as on a platform's bare
    container), on any port pair."""
    hands = {"plain": make_handin(str(tmp_path / "plain"))}
    for name in ("server_closes_first", "proxy_never_caches"):
        role = BROKEN_ROLES[name][0]
        d = make_handin(str(tmp_path / name))
        with open(os.path.join(d, f"calc_{role}.py"), "wb") as f:
            f.write(read(f"calc_{role}.py"))
        with open(os.path.join(d, f"{role}.py"), "wb") as f:
            f.write(broken_program(name))
        hands[name] = d

    def points(e):
        return e["score"], {r: v["score"] for r, v in e["roles"].items()}, sorted(
            (s["scenario"], c["role"], c["name"], c["score"], tuple(it["passed"] for it in c["items"]))
            for s in e["scenarios"] for c in s["checks"])
    for name, top in hands.items():
        got = []
        for how, extra, env in (("confined", [], {}),
                                # below the graders' shared block (20000-32000): unconfined, the
                                # capture would see another grader's runs on the same ports
                                ("none-17312", ["--ports-base", "17312", "--allow-unconfined"], {"CALCLAB_ISOLATION": "none"}),
                                ("none-18642", ["--ports-base", "18642", "--allow-unconfined"], {"CALCLAB_ISOLATION": "none"})):
            out = tmp_path / f"{name}-{how}"
            r = subprocess.run([PY, os.path.join(LAB, "grade"), top, "--out", out, *extra], capture_output=True,
                               text=True, timeout=600, cwd=ROOT, env=dict(os.environ, **env))
            assert r.returncode in (0, 1), r.stdout[-2000:] + r.stderr[-2000:]
            e = grades(out)[name]
            iso = {s["isolation"].split(":")[0] for s in e["scenarios"]}
            assert iso == ({"none"} if env else iso - {"none"}), (how, iso)
            got.append(points(e))
        assert got[0] == got[1] == got[2], (name, got)
