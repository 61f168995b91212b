"""The lab (lab/scenario, lab/grade, captures/) end to end.

- every scenario passes with the student-style Python implementation, and with ours (build/) in
  every mix of roles;
- deliberately broken implementations, written here, each fail with the named check;
- the Gradescope results.json has the published fields, the JUnit file parses, two gradings run
  in parallel without interfering;
- fresh runs of our programs verify against the committed golden captures with calc-sniff
  (this one fails, never skips, when calc-sniff or a golden is missing)."""
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(ROOT, "lab")
STUDENT = os.path.join(ROOT, "tests", "student")
BUILD = os.environ.get("CALCLAB_BUILD") or os.environ.get("CALC_BUILD_DIR") or os.path.join(ROOT, "build")
# ci/test runs tests/e2e once per build (release, sanitizers): what does not use build/ at all
# runs in the first pass only.
# They carry the build_independent marker; the sanitizer pass deselects them (-m).
student_only = pytest.mark.build_independent
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

sys.path.insert(0, LAB)
from calclab_lab import procs  # noqa: E402
from calclab_lab.scenarios import SCENARIOS  # noqa: E402
import student_faults  # noqa: E402

S_SERVER = f"{PY} {STUDENT}/calc_server.py -H {{host}} -p {{port}} --cache-control {{cache_control}}"
S_PROXY = f"{PY} {STUDENT}/calc_proxy.py -ph {{host}} -pp {{port}} -sh {{server_host}} -sp {{server_port}}"
S_CLIENT = f"{PY} {STUDENT}/calc_client.py -H {{host}} -p {{port}} --max-age {{max_age}} -- {{expr}}"
S_CLIENT_EXAMPLE = f"{PY} {STUDENT}/calc_client.py -H {{host}} -p {{port}} --example {{example}}"


def run(cmd, timeout=180):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def scenario(name, *extra):
    base = procs.free_port_pair()
    return run([PY, os.path.join(LAB, "scenario"), name, "--ports-base", str(base), "--quiet", *extra])


def grade(out, *extra, fmt="json"):
    r = run([PY, os.path.join(LAB, "grade"), "--out", str(out), "--format", fmt, "--no-sniff", *extra])
    return r


def checks_of(out):
    """grade.json's runs as played: (scenario, check) -> the check's items and verdict, and the file."""
    with open(os.path.join(out, "grade.json")) as f:
        g = json.load(f)
    return {(s["scenario"], c["name"]): c for s in g["scenarios"] for c in s["checks"]}, g


def points_of(g):
    """grade.json's entry, the grade: (scenario, role, check) -> the check's points for that role."""
    return {(s["scenario"], c["role"], c["name"]): c for s in g["entry"]["scenarios"] for c in s["checks"]}


def have_c():
    return all(os.access(os.path.join(BUILD, f"calc-{r}"), os.X_OK) for r in ("server", "proxy", "client"))


# ---------------------------------------------------------------- the student implementation
@student_only
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_passes_with_student_implementation(name):
    r = scenario(name, "--impl", "student", "--no-sniff")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert f"VERDICT {name}: PASS" in r.stdout


@student_only
def test_client_template_with_example_number(tmp_path):
    r = grade(tmp_path, "--impl", "student", "--scenarios", "3.1", "--client", S_CLIENT_EXAMPLE)
    assert r.returncode == 0, r.stdout[-3000:]


# ---------------------------------------------------------------- broken implementations
BROKEN = {
    "proxy_never_caches": student_faults.PROXY_NEVER_CACHES,
    "server_closes_first": student_faults.closes_first("server", cork=True),
    "server_split_writes": """
        import socket, time, calc_server, api
        def handle(conn, addr):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                data = api.recv_message(conn)
                if not data:
                    break
                resp = calc_server.process(data)
                conn.sendall(resp[:12])   # header ...
                time.sleep(0.02)
                conn.sendall(resp[12:])   # ... and payload in two writes
            conn.close()
        calc_server.handle = handle
        calc_server.main()
    """,
    "proxy_resets": """
        import socket, struct, calc_proxy, api
        def handle(conn, addr):
            data = api.recv_message(conn)
            if data:
                conn.sendall(calc_proxy.process(data, f"{addr[0]}:{addr[1]}"))
                # the client's FIN first (it closes once it has the answer), then the reset: the
                # same order however the two processes are scheduled
                conn.settimeout(10)
                try:
                    conn.recv(1)
                except OSError:
                    pass
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()          # linger 0: RST instead of FIN
        calc_proxy.handle = handle
        calc_proxy.main()
    """,
    "server_resets": """
        import socket, struct, calc_server, api
        def handle(conn, addr):
            data = api.recv_message(conn)
            if data:
                conn.sendall(calc_server.process(data))
            api.recv_message(conn)    # the client's FIN ...
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()              # ... answered by RST instead of FIN
        calc_server.handle = handle
        calc_server.main()
    """,
    "proxy_closes_first": student_faults.closes_first("proxy", cork=True),
    "proxy_asks_server_on_hit": """
        import calc_proxy, api
        answer = calc_proxy.process
        def process(data, peer):
            h = api.Header.unpack(data)
            if (data[api.HEADER_LEN:h.length], h.steps) in calc_proxy.CACHE:
                calc_proxy.ask_server(data)   # contacts the server although the answer is cached
            return answer(data, peer)
        calc_proxy.process = process
        calc_proxy.main()
    """,
    "proxy_ignores_max_age": """
        import calc_proxy, api
        answer = calc_proxy.process
        def process(data, peer):
            if data[6] & 0x10:   # the cache flag: looked up and forwarded as if it asked max-age forever
                data = data[:8] + bytes([255, 255]) + data[10:]
            return answer(data, peer)
        calc_proxy.process = process
        calc_proxy.main()
    """,
}


def broken(tmp_path, name):
    return student_faults.write(tmp_path, name, BROKEN[name])


def sniff_verdict(run_dict):
    """calc-sniff verify --json of a graded run's capture against its golden: check name -> record."""
    sniff = os.path.join(BUILD, "calc-sniff")
    ports = run_dict["ports"]
    r = run([sniff, "verify", "--json", "--golden", run_dict["golden"], "-r", run_dict["pcap"],
             "-p", f"{ports['proxy']},{ports['server']}", "--server-port", str(ports["server"]),
             "--proxy-port", str(ports["proxy"]), "--golden-server-port", "9999", "--golden-proxy-port", "9998"])
    recs = [json.loads(l) for l in r.stdout.splitlines()]
    return {x["name"]: x for x in recs if x["type"] == "check"}, recs[-1]


def failed_roles(check):
    return {it["role"] for it in check["items"] if not it["passed"]}


BROKEN_CASES = [  # (BROKEN's name, the role it plays, the scenario, the check that catches it)
    ("proxy_never_caches", "proxy", "3.2", "cache-hit-no-upstream"),
    ("proxy_asks_server_on_hit", "proxy", "3.2", "cache-hit-no-upstream"),
    ("server_closes_first", "server", "3.1", "teardown"),
    ("proxy_closes_first", "proxy", "3.2", "teardown"),
    ("server_split_writes", "server", "3.1", "segmentation"),
    ("proxy_resets", "proxy", "3.2", "rst"),
    ("proxy_resets", "proxy", "3.3", "rst"),
    ("server_resets", "server", "3.1", "rst"),
    ("proxy_ignores_max_age", "proxy", "reload", "upstream-connections"),
]


@pytest.mark.parametrize("what,role,scn,check", BROKEN_CASES)
@student_only
def test_broken_implementation_fails_named_check(tmp_path, what, role, scn, check):
    prog = broken(tmp_path, what)
    tmpl = {"server": f"{PY} {prog} -H {{host}} -p {{port}}",
            "proxy": f"{PY} {prog} -ph {{host}} -pp {{port}} -sh {{server_host}} -sp {{server_port}}"}[role]
    out = tmp_path / "out"
    r = grade(out, "--impl", "student", "--scenarios", scn, f"--{role}", tmpl)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr
    checks, g = checks_of(out)
    assert not checks[(scn, check)]["passed"], checks[(scn, check)]
    # graded as a hand-in's role is: only the broken program's role, which loses points on it
    assert g["entry"]["roles"].keys() == {role} and g["score"] < g["max_score"] == {"server": 40, "proxy": 40}[role]
    scored = points_of(g)[(scn, role, check)]
    assert scored["score"] < scored["max_score"] or scored.get("penalty"), scored
    assert {r for (_, r, _) in points_of(g)} == {role}
    # the role at fault is the broken program's, on every failed item of every check
    for (_, name), c in checks.items():
        assert failed_roles(c) <= {role}, (name, c)
    # the named check is the one that catches it; the results still count for something
    assert checks[(scn, "client-result")]["passed"] or what == "proxy_resets"
    # calc-sniff verify on the same capture says the same: the same failed checks, the same role
    sniffed, verdict = sniff_verdict(g["scenarios"][0])
    assert verdict["verdict"] == "fail"
    assert failed_roles(sniffed[check]) == {role}
    lab_checks = ("client-", "answer-result", "programs")   # the lab's own, not calc-sniff's
    wire_failed = {n for (_, n), c in checks.items() if not c["passed"] and not n.startswith(lab_checks)}
    assert wire_failed == {n for n, c in sniffed.items() if not c["passed"]}


@student_only
@pytest.mark.parametrize("scen", ["3.1", "3.2"])
def test_client_without_steps_fails_steps_check(tmp_path, scen):
    tmpl = S_CLIENT.replace(" -- ", " --no-steps -- ")
    out = tmp_path / "out"
    r = grade(out, "--impl", "student", "--scenarios", scen, "--client", tmpl)
    assert r.returncode == 1
    checks, g = checks_of(out)
    assert not checks[(scen, "client-steps")]["passed"]
    assert not checks[(scen, "request-header")]["passed"]
    assert not checks[(scen, "response-size")]["passed"]
    assert checks[(scen, "client-result")]["passed"]
    assert checks[(scen, "request-size")]["passed"]  # same payload, only the S flag differs
    # the client asked for another answer: every failed item is the client's
    for (_, name), c in checks.items():
        assert failed_roles(c) <= {"client"}, (name, c)
    sniffed, _ = sniff_verdict(g["scenarios"][0])
    assert failed_roles(sniffed["response-size"]) == {"client"}
    # calc-sniff agrees, upstream included: the proxy forwarded the client's request as the
    # reference proxy does, and the server answered what it was asked
    for name, c in sniffed.items():
        assert failed_roles(c) <= {"client"}, (name, c)


@student_only
@pytest.mark.parametrize("proxy", ["student", "proxy_ignores_max_age"])
def test_client_asking_max_age_0(tmp_path, proxy):
    """A client that asks every request with max-age 0 in scenario 3.2: the reference proxy never
    answers such a request from its cache, so a proxy forwarding the second E1 is not at fault
    (the client is, its requests are not the golden's); a proxy serving it from its cache is."""
    args = ["--client", S_CLIENT.replace("--max-age {max_age}", "--max-age 0")]
    if proxy != "student":
        args += ["--proxy", f"{PY} {broken(tmp_path, proxy)} -ph {{host}} -pp {{port}} -sh {{server_host}} "
                            "-sp {server_port}"]
    out = tmp_path / "out"
    r = grade(out, "--impl", "student", "--scenarios", "3.2", *args)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr
    checks, g = checks_of(out)
    assert checks[("3.2", "client-result")]["passed"]
    # the client's requests are not the golden's; the broken proxy also forwards them rewritten
    assert failed_roles(checks[("3.2", "request-header")]) == ({"client"} if proxy == "student" else
                                                               {"client", "proxy"})
    sniffed, _ = sniff_verdict(g["scenarios"][0])
    hit = sniffed["cache-hit-no-upstream"]
    if proxy == "student":
        assert failed_roles(hit) == {"client"}
        assert "the reference forwards a request with max-age 0 on one upstream connection, as here" in \
            next(it["detail"] for it in hit["items"] if not it["passed"])
        for (_, name), c in checks.items():
            assert failed_roles(c) <= {"client"}, (name, c)
    else:
        assert failed_roles(hit) == {"proxy"}
        assert failed_roles(checks[("3.2", "cache-hit-no-upstream")]) == {"proxy"}
    for name, c in sniffed.items():
        assert failed_roles(c) <= ({"client"} if proxy == "student" else {"client", "proxy"}), (name, c)


# What no report may contain: Python's reprs of tuples, lists, dicts or objects, and tracebacks.
PYTHON_REPR = re.compile(r"\(\s*'[^']*',|\[\s*'[^']*',|\{'[^']*':|Traceback \(most recent|object at 0x|<class '|"
                         r"\b(?:None|True|False)\)|dict_\w+\(")


@student_only
def test_reports_have_no_python_reprs(tmp_path):
    prog = broken(tmp_path, "proxy_closes_first")
    tmpl = f"{PY} {prog} -ph {{host}} -pp {{port}} -sh {{server_host}} -sp {{server_port}}"
    for fmt, name in (("text", "grade.txt"), ("json", "grade.json"), ("junit", "junit.xml"),
                      ("gradescope", "results.json")):
        out = tmp_path / fmt
        r = grade(out, "--impl", "student", "--scenarios", "3.2", "--proxy", tmpl, "--html", str(out / "run.html"),
                  fmt=fmt)
        assert r.returncode == 1, r.stdout[-2000:] + r.stderr
        for text in ((out / name).read_text(), r.stdout, r.stderr, (out / "run.html").read_text()):
            bad = PYTHON_REPR.search(text)
            assert bad is None, f"{fmt}: {text[max(0, bad.start() - 200):bad.end() + 200]}"


@student_only
def test_hung_client_fails_its_checks_not_the_grader(tmp_path):
    out = tmp_path / "out"
    r = grade(out, "--impl", "student", "--scenarios", "3.1", "--timeout", "2",
              "--client", f"{PY} -c 'import time; time.sleep(60)' {{expr}}")
    assert r.returncode == 1, r.stderr
    checks, g = checks_of(out)
    assert not checks[("3.1", "client-result")]["passed"]
    assert g["scenarios"][0]["errors"]


def test_unknown_scenario_is_a_grader_error(tmp_path):
    assert grade(tmp_path, "--scenarios", "9.9").returncode == 2


# ---------------------------------------------------------------- output formats, isolation
@student_only
def test_gradescope_results_schema(tmp_path):
    """Template mode's results.json is made from the same entry as a hand-in's: one test per role
    graded (all three for calclab's own programs), 100 points 40/40/20 for the reference."""
    r = grade(tmp_path, "--impl", "student", fmt="gradescope")
    assert r.returncode == 0, r.stdout[-3000:]
    with open(tmp_path / "results.json") as f:
        res = json.load(f)
    from gradescope import results
    assert results.problems(res) == []
    assert isinstance(res["score"], (int, float)) and isinstance(res["execution_time"], (int, float))
    t = {x["name"]: x for x in res["tests"]}
    assert {k: (v["score"], v["max_score"], v["status"]) for k, v in t.items()} == \
        {"server": (40, 40, "passed"), "proxy": (40, 40, "passed"), "client": (20, 20, "passed")}
    assert "ok   3.2 cache-hit-no-upstream" in t["proxy"]["output"] and "ok   3.3 refused-answer" in t["server"]["output"]
    assert res["score"] == sum(x["score"] for x in res["tests"]) == 100
    assert "isolation: " in res["output"] and "python: " in res["output"]


def test_template_grading_scores_as_a_hand_in(tmp_path):
    """One model: a template run of the reference and the same programs handed in get the same
    points, per role and per check; --role-weights applies to templates too."""
    sys.path.insert(0, LAB)
    from calclab_lab import classgrade, gradebook
    r = grade(tmp_path / "t", "--impl", "student", "--scenarios", "3.1,3.2", "--proxy", S_PROXY,
              "--role-weights", "proxy=30")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    _, g = checks_of(tmp_path / "t")
    e = g["entry"]
    assert e["status"] == "graded" and e["roles"] == {"proxy": {"score": 30.0, "max_score": 30.0}}
    assert (g["score"], g["max_score"]) == (30, 30) and "score 30/30 (proxy 30/30)" in r.stdout
    tables = classgrade.point_tables(["3.1", "3.2"], ["proxy"], weights={"proxy": 30})
    assert {(s["scenario"], c["name"]): gradebook.tenths(c["max_score"]) for s in e["scenarios"]
            for c in s["checks"]} == {(scn, name): t for scn, table in tables.items() for (name, _), t in table.items()}
    def points(x):   # every score, max_score and penalty in the entry
        if isinstance(x, dict):
            return [v for k, v in x.items() if k in ("score", "max_score", "penalty")] + \
                [p for k, v in x.items() for p in points(v)]
        return [p for v in x for p in points(v)] if isinstance(x, list) else []
    found = points(e)
    assert found and all(round(v, 1) == v and len(repr(float(v)).split(".")[1]) == 1 for v in found), found
    # the runs as played carry verdicts and items, never points of another model
    assert all("score" not in c and "max_score" not in c for s in g["scenarios"] for c in s["checks"])
    for fmt, name in (("text", "grade.txt"), ("junit", "junit.xml")):
        r = grade(tmp_path / fmt, "--impl", "student", "--scenarios", "3.1,3.2", "--proxy", S_PROXY,
                  "--role-weights", "proxy=30", fmt=fmt)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        text = (tmp_path / fmt / name).read_text()
        assert re.search(r"\d\.\d{2,}/|/\d+\.\d{2,}", text) is None, fmt   # points: at most one decimal
    text = (tmp_path / "text" / "grade.txt").read_text()
    assert "points: 30/30 (proxy 30/30)" in text and "-- run judging your proxy; calclab's programs play" in text
    assert 'classname="calclab.scenario_3_2.proxy" name="cache-hit-no-upstream"' in \
        (tmp_path / "junit" / "junit.xml").read_text()


@student_only
def test_junit_parses(tmp_path):
    prog = broken(tmp_path, "server_closes_first")
    r = grade(tmp_path, "--impl", "student", "--scenarios", "3.1,3.2", "--server",
              f"{PY} {prog} -H {{host}} -p {{port}}", fmt="junit")
    assert r.returncode == 1
    root = ET.parse(tmp_path / "junit.xml").getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["scenario 3.1", "scenario 3.2"]
    cases = root.findall(".//testcase")
    assert len(cases) == int(root.get("tests"))
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert len(failed) == int(root.get("failures")) and "teardown" in failed


@student_only
def test_two_gradings_in_parallel(tmp_path):
    cmds = [[PY, os.path.join(LAB, "grade"), "--impl", "student", "--scenarios", "3.2,3.3", "--no-sniff",
             "--format", "json", "--out", str(tmp_path / f"g{i}")] for i in (1, 2)]
    ps = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT) for c in cmds]
    outs = [p.communicate(timeout=240)[0] for p in ps]
    for p, o in zip(ps, outs):
        assert p.returncode == 0, o[-3000:]
    for i in (1, 2):
        _, g = checks_of(tmp_path / f"g{i}")
        assert g["score"] == g["max_score"]
    runs = [checks_of(tmp_path / f"g{i}")[1]["scenarios"][0] for i in (1, 2)]
    if all(r["isolation"].startswith("netns") for r in runs):
        # each run has a network namespace of its own: both use the goldens' ports
        assert [r["ports"]["proxy"] for r in runs] == [9998, 9998]
    else:
        assert runs[0]["ports"]["proxy"] != runs[1]["ports"]["proxy"]


@student_only
def test_html_sequence_diagram(tmp_path):
    page = tmp_path / "run.html"
    r = scenario("3.2", "--impl", "student", "--no-sniff", "--html", str(page))
    assert r.returncode == 0
    doc = page.read_text()
    assert "<svg" in doc and "<script" not in doc and "http" not in doc.replace("http://www.w3.org/2000/svg", "")
    root = ET.fromstring(doc[doc.index("<svg"):doc.index("</svg>") + 6])
    arrows = [e for e in root.iter() if e.get("class") == "arrow"]
    psh = [(a.get("data-from"), a.get("data-to"), a.get("data-len")) for a in arrows if "PSH" in a.get("data-flags")]
    # E1 as the course's code sends it under PY: 706 bytes where it pickles enum members by name
    # (CPython 3.11.2, Debian 12's python3), 687 elsewhere
    from calclab_lab import interp
    e1 = "706" if interp.probe(PY).flavour == interp.GETATTR else "687"
    assert ("client 1", "proxy", e1) in psh and ("proxy", "server", e1) in psh
    assert ("client 2", "proxy", e1) in psh and ("proxy", "client 2", "564") in psh
    assert ("server", "proxy", "60") in psh
    # the cache hit: nothing goes to the server between client 2's request and its answer
    assert len([p for p in psh if p[1] == "server"]) == 2
    assert "cache hit, no upstream" in doc


# ---------------------------------------------------------------- our programs, interop, goldens
MIXES = [("c", "c", "c"), ("student", "c", "c"), ("c", "student", "c"), ("c", "c", "student"),
         ("student", "student", "c"), ("c", "student", "student"), ("student", "c", "student")]


@pytest.mark.parametrize("mix", MIXES, ids=lambda m: "server-%s_proxy-%s_client-%s" % m)
@pytest.mark.parametrize("name", ["3.1", "3.2", "3.3"])
def test_interop_mixes(name, mix):
    assert have_c(), f"our programs are not built in {BUILD}"
    s, p, c = mix
    args = []
    if s == "student":
        args += ["--server", S_SERVER]
    if p == "student":
        args += ["--proxy", S_PROXY]
    if c == "student":
        args += ["--client", S_CLIENT]
    r = scenario(name, "--impl", "c", "--no-sniff", *args)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-1000:]


@pytest.mark.parametrize("name", ["malformed", "stale", "reload", "concurrent"])
def test_extra_scenarios_with_our_programs(name):
    assert have_c(), f"our programs are not built in {BUILD}"
    r = scenario(name, "--no-sniff")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-1000:]


RECORDED = ["3.1", "3.2", "3.3", "stale", "reload", "concurrent"]   # captures/NAME.pcap


@pytest.mark.parametrize("name", RECORDED)
def test_fresh_run_verifies_against_committed_golden(name):
    golden = os.path.join(ROOT, "captures", f"{name}.pcap")
    assert os.path.exists(golden), f"no golden capture {golden}: run captures/regenerate"
    sniff = os.path.join(BUILD, "calc-sniff")
    assert os.access(sniff, os.X_OK), "calc-sniff is not built: the goldens cannot be verified"
    assert have_c(), f"our programs are not built in {BUILD}"
    r = scenario(name)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-1000:]
    assert f"verified by calc-sniff against {golden}: pass" in r.stdout


@student_only
def test_interrupted_run_leaves_no_program_behind(tmp_path):
    import signal
    import time
    # a marker on the programs' command lines (python ignores unknown -X options) finds them
    # whichever network namespace and ports the run uses
    marker = f"calclab_interrupted_{os.getpid()}"
    server = S_SERVER.replace(f"{PY} ", f"{PY} -X {marker} ", 1)
    proxy = S_PROXY.replace(f"{PY} ", f"{PY} -X {marker} ", 1)

    def running():
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        return [l for l in ps.splitlines() if marker in l and "ps -eo" not in l and l.startswith(PY)]
    p = subprocess.Popen([PY, os.path.join(LAB, "scenario"), "stale", "--impl", "student", "--no-sniff",
                          "--server", server, "--proxy", proxy, "--ports-base", str(procs.free_port_pair())],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    # generous: on a loaded 2-core machine a sandboxed start can take seconds; the loop ends as soon
    # as both programs are up
    end = time.time() + 60
    while time.time() < end and len(running()) < 2 and p.poll() is None:
        time.sleep(0.05)
    if len(running()) < 2:
        p.kill()
        out = p.communicate(timeout=30)[0]
        raise AssertionError(f"the scenario never started its programs (exit {p.returncode}):\n{out[-3000:]}")
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=30)
    assert p.returncode != 0
    time.sleep(0.3)
    assert not running(), "a program survived the interrupted run"


def _png_pixels(path):
    """Minimal PNG reader (8-bit RGB/RGBA, not interlaced): returns (width, height, rows of bytes, bpp)."""
    import struct
    import zlib
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack("!I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, inter = struct.unpack("!IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and inter == 0
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(h):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, rows, bpp


@student_only
def test_sequence_diagram_renders_in_headless_chromium(tmp_path):
    import shutil
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is not installed (ci/deps installs it)"
    page = tmp_path / "run.html"
    r = scenario("3.2", "--impl", "student", "--no-sniff", "--html", str(page))
    assert r.returncode == 0
    doc = page.read_text()
    svg = doc[doc.index("<svg"):doc.index("</svg>") + 6]
    root = ET.fromstring(svg)
    w, h, rows, bpp = _screenshot(tmp_path, svg, chromium)
    arrows = [e for e in root.iter() if e.get("class") == "arrow" and "PSH" in e.get("data-flags")]
    assert len(arrows) == 10  # 3 requests and 3 answers to the clients, 2 upstream requests and 2 answers
    for a in arrows:
        x1, x2, y = float(a.get("x1")), float(a.get("x2")), int(float(a.get("y1")))
        xm = int((x1 + x2) / 2)
        want = tuple(int(a.get("stroke")[k:k + 2], 16) for k in (1, 3, 5))
        near = [rows[yy][xx * bpp:xx * bpp + 3] for yy in range(y - 1, y + 2) for xx in range(xm - 3, xm + 4)
                if 0 <= yy < h and 0 <= xx < w]
        assert any(all(abs(p[k] - want[k]) < 40 for k in range(3)) for p in near), \
            f"arrow {a.get('data-from')} -> {a.get('data-to')} not drawn at ({xm}, {y})"


def _screenshot(tmp_path, svg, chromium):
    """svg rendered alone by headless Chromium: (width, height, rows, bytes per pixel)."""
    root = ET.fromstring(svg)
    W, H = int(root.get("width")), int(root.get("height"))
    bare = tmp_path / "svg.html"
    bare.write_text(f'<!DOCTYPE html><html><body style="margin:0;background:#fff">{svg}</body></html>')
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--force-device-scale-factor=1", f"--window-size={W},{H}", f"--screenshot={shot}",
                    bare.as_uri()], capture_output=True, timeout=120)
    assert shot.exists(), "chromium wrote no screenshot"
    return _png_pixels(str(shot))


@student_only
def test_failing_packet_marked_in_headless_chromium(tmp_path):
    import shutil
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is not installed (ci/deps installs it)"
    prog = broken(tmp_path, "proxy_resets")
    page = tmp_path / "run.html"
    r = scenario("3.2", "--impl", "student", "--html", str(page),
                 "--proxy", f"{PY} {prog} -ph {{host}} -pp {{port}} -sh {{server_host}} -sp {{server_port}}")
    assert r.returncode == 1, r.stdout[-3000:]
    doc = page.read_text()
    svgs = [doc[m.start():doc.index("</svg>", m.start()) + 6] for m in re.finditer("<svg", doc)]
    assert len(svgs) == 2, "the run's diagram and the golden's, side by side"
    run_svg, golden_svg = (ET.fromstring(x) for x in svgs)
    assert "golden" in golden_svg.get("class") and not [e for e in golden_svg.iter() if e.get("class") == "fail-mark"]
    marks = [e for e in run_svg.iter() if e.get("class") == "fail-mark"]
    failed = [e for e in run_svg.iter() if e.get("class") == "arrow fail"]
    assert marks and {m.get("data-no") for m in marks} == {a.get("data-no") for a in failed}
    # the marked packets are the proxy's RSTs, each saying which check failed
    for a in failed:
        assert "RST" in a.get("data-flags") and a.get("data-from") == "proxy", a.attrib
        assert "FAIL rst: " in a.find("{http://www.w3.org/2000/svg}title").text
    w, h, rows, bpp = _screenshot(tmp_path, svgs[0], chromium)
    for m in marks:
        x, y = int(float(m.get("x"))), int(float(m.get("y")))
        edge = [rows[yy][xx * bpp:xx * bpp + 3] for yy in range(y - 1, y + 2) for xx in range(x + 4, x + 40)
                if 0 <= yy < h and 0 <= xx < w]
        assert any(p[0] > 200 and p[1] < 90 and p[2] < 90 for p in edge), f"packet {m.get('data-no')} not marked"


def test_golden_read_by_calc_sniff():
    from calclab_lab import sniff
    golden = os.path.join(ROOT, "captures", "3.2.pcap")
    assert os.path.exists(golden), "no golden capture: run captures/regenerate"
    recs = sniff.records(golden)
    conns = [r for r in recs if r["type"] == "conn"]
    assert [c["role"] for c in conns].count("client->proxy") == 3 and len(conns) == 5
    sizes = [(m["conn"], m["kind"], m["size"]) for m in recs if m["type"] == "msg"]
    clients = [c["id"] for c in conns if c["role"] == "client->proxy"]
    assert [s for c, k, s in sizes if c in clients and k == "request"] == [687, 687, 376]
    assert [s for c, k, s in sizes if c in clients and k == "response"] == [564, 564, 60]
    pkts = [r for r in recs if r["type"] == "pkt"]
    assert [p["no"] for p in pkts] == list(range(1, len(pkts) + 1))


@pytest.mark.parametrize("impl", ["student", "c"])
def test_demo_ends_with_a_passing_verdict_and_shows_the_cache_hit(impl):
    if impl == "c":
        assert have_c(), f"our programs are not built in {BUILD}"
    base = procs.free_port_pair()
    r = run([os.path.join(LAB, "demo"), "--impl", impl, "--ports-base", str(base)], timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    out = r.stdout
    assert "cache hit: request 2 answered from the proxy's cache, no connection to the server" in out
    assert "Cache hit ,server time remaining: inf, client time remaining: inf" in out
    assert out.count("Result: -0.38748277824137206") == 2 and "Result: 6" in out
    assert out.rstrip().splitlines()[-1] == "VERDICT 3.2: PASS"
