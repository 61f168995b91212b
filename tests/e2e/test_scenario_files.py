"""Scenario files (docs/scenario-files.md) end to end: a course's own file played by calclab's
programs and by the student-style implementation, verified against the golden calclab makes
for it, graded; broken proxies fail on the checks that name the proxy; the built-ins' made
goldens verify against the recorded captures/*.pcap."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(ROOT, "lab")
STUDENT = os.path.join(ROOT, "tests", "student")
BUILD = os.environ.get("CALCLAB_BUILD") or os.environ.get("CALC_BUILD_DIR") or os.path.join(ROOT, "build")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

sys.path.insert(0, LAB)
from calclab_lab import procs  # noqa: E402
import student_faults  # noqa: E402

for _exe in ("calc-server", "calc-proxy", "calc-client", "calc-sniff"):
    if not os.access(os.path.join(BUILD, _exe), os.X_OK):
        pytest.fail(f"{_exe} is not built in {BUILD}: scenario files are played and judged with it", pytrace=False)

S_PROXY = "{py} {prog} -ph {{host}} -pp {{port}} -sh {{server_host}} -sp {{server_port}}"

# three clients at once asking an expression that is neither E1 nor E2 (cached by the first
# request: which of three uncached requests would hit is left to timing, and the lab refuses
# that), the server stopped, one more request
COURSE = """
    title = "a course's own: 2 ** 10 - 24 (miss), three at once (hits), server stopped, 7 % 3 (refused)"
    roles = ["server", "proxy"]

    [expressions]
    K = "2 ** 10 - 24"

    [[steps]]
    ask = "K"

    [[steps]]
    ask = "K"
    clients = 3

    [[steps]]
    stop = "server"

    [[steps]]
    ask = "7 % 3"
"""

BROKEN = {
    "proxy_never_caches_errors": """
        import calc_proxy, api
        class NoErrors(dict):
            def __setitem__(self, k, v):
                if api.Header.unpack(v).status == 200:   # an error answer is never stored
                    dict.__setitem__(self, k, v)
        calc_proxy.CACHE = NoErrors()
        calc_proxy.main()
    """,
    "proxy_key_ignores_steps": """
        import calc_proxy
        class PayloadOnly(dict):
            # the key is the payload alone: asked with and without steps, one entry
            def get(self, k, d=None):
                return dict.get(self, k[0], d)
            def __contains__(self, k):
                return dict.__contains__(self, k[0])
            def __getitem__(self, k):
                return dict.__getitem__(self, k[0])
            def __setitem__(self, k, v):
                dict.__setitem__(self, k[0], v)
        calc_proxy.CACHE = PayloadOnly()
        calc_proxy.main()
    """,
    "proxy_never_caches": student_faults.PROXY_NEVER_CACHES,
}


@pytest.fixture
def goldens(tmp_path, monkeypatch):
    """A golden cache of the test's own: every golden the test needs is made here, now."""
    d = tmp_path / "goldens"
    monkeypatch.setenv("CALCLAB_GOLDENS", str(d))
    return d


def run(cmd, timeout=300):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=dict(os.environ, CALCLAB_BUILD=BUILD))


def broken(tmp_path, name):
    return S_PROXY.format(py=PY, prog=student_faults.write(tmp_path, name, BROKEN[name]))


def course_file(tmp_path):
    p = tmp_path / "course" / "quiz.toml"
    p.parent.mkdir(exist_ok=True)
    p.write_text(textwrap.dedent(COURSE))
    return str(p)


def grade(out, *extra):
    r = run([PY, os.path.join(LAB, "grade"), "--out", str(out), "--format", "json", "--no-sniff", *extra])
    with open(os.path.join(out, "grade.json")) as f:
        g = json.load(f)
    return r, g


def failed_roles(check):
    return {it["role"] for it in check["items"] if not it["passed"]}


@pytest.mark.parametrize("impl", ["c", "student"])
def test_a_course_file_is_played_verified_and_graded(tmp_path, goldens, impl):
    f = course_file(tmp_path)
    r = run([PY, os.path.join(LAB, "scenario"), f, "--impl", impl, "--no-sniff", "--quiet",
             "--ports-base", str(procs.free_port_pair())])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "VERDICT quiz: PASS" in r.stdout
    made = [p for p in os.listdir(goldens) if p.endswith(".pcap")]
    assert len(made) == 1 and made[0].startswith("quiz-")
    assert f"verified by calc-sniff against {goldens / made[0]}: pass" in r.stdout
    r, g = grade(tmp_path / "out", "--impl", impl, "--scenarios", f)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    (s,) = g["scenarios"]
    assert s["scenario"] == "quiz" and s["passed"]
    # the kinds and printouts follow from the rules: a miss, three hits, refused
    assert [c["kind"] for c in s["clients"]] == ["miss", "hit", "hit", "hit", "refused"]
    assert all("Result: 1000\n" in c["stdout"] for c in s["clients"][:4])
    assert "Got error: ('Internal proxy error'" in s["clients"][4]["stdout"]
    assert {c["name"] for c in s["checks"]} >= {"cache-hit-no-upstream", "refused-answer", "client-result"}
    # the goldens are made once (grading also reads the by-value one, its point table's, whatever
    # the students' Python): a second grading reuses them
    once = sorted(os.listdir(goldens))
    assert set(made) <= set(once) and len([p for p in once if p.endswith(".pcap")]) <= 2
    grade(tmp_path / "out2", "--impl", impl, "--scenarios", f)
    assert sorted(os.listdir(goldens)) == once


def test_a_wrong_proxy_fails_the_course_file_on_the_proxys_check(tmp_path, goldens):
    f = course_file(tmp_path)
    r, g = grade(tmp_path / "out", "--impl", "student", "--scenarios", f,
                 "--proxy", broken(tmp_path, "proxy_never_caches"))
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr
    checks = {c["name"]: c for c in g["scenarios"][0]["checks"]}
    assert not checks["cache-hit-no-upstream"]["passed"]
    assert failed_roles(checks["cache-hit-no-upstream"]) == {"proxy"}
    for c in checks.values():
        assert failed_roles(c) <= {"proxy"}, c


@pytest.mark.parametrize("name", ["errors", "no-steps"])
def test_errors_and_no_steps_pass_on_our_programs(tmp_path, goldens, name):
    r, g = grade(tmp_path / "out", "--scenarios", name)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    (s,) = g["scenarios"]
    assert s["passed"] and all(c["passed"] for c in s["checks"])
    if name == "errors":
        kinds = [c["kind"] for c in s["clients"]]
        assert kinds == ["miss", "miss", "hit", "hit"]
        assert "Got error: division by zero" in s["clients"][2]["stdout"]


@pytest.mark.parametrize("name,proxy", [("errors", "proxy_never_caches_errors"),
                                        ("no-steps", "proxy_key_ignores_steps")])
def test_errors_and_no_steps_fail_a_broken_proxy_as_the_proxys(tmp_path, goldens, name, proxy):
    r, g = grade(tmp_path / "out", "--impl", "c", "--scenarios", name, "--proxy", broken(tmp_path, proxy))
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr
    checks = {c["name"]: c for c in g["scenarios"][0]["checks"]}
    failed = {n for n, c in checks.items() if not c["passed"]}
    assert failed & {"cache-hit-no-upstream", "upstream-connections"}, failed
    for c in checks.values():
        assert failed_roles(c) <= {"proxy"}, c


def test_the_builtins_made_goldens_verify_against_the_recorded_captures(goldens):
    from calclab_lab import goldens as goldens_mod, scenarios, sniff
    for name in ("3.1", "3.2", "3.3", "stale", "reload", "concurrent"):
        made = goldens_mod.golden_for(scenarios.builtin(name))
        assert str(goldens) in made
        for capture, golden in ((made, os.path.join(ROOT, "captures", f"{name}.pcap")),
                                (os.path.join(ROOT, "captures", f"{name}.pcap"), made)):
            v = sniff.verify(capture, golden)
            assert v["status"] == "pass", (name, capture, v.get("reason"),
                                           [c for c in v["checks"] if not c["passed"]])


def handin(folder):
    """tests/student's programs as a hand-in: server.py, proxy.py, client.py next to api.py and
    calculator.py; the client hard-codes E1, as the course's skeleton does."""
    folder.mkdir(parents=True)
    for dst, src in (("server.py", "calc_server.py"), ("proxy.py", "calc_proxy.py"), ("client.py", "calc_client.py"),
                     ("api.py", "api.py"), ("calculator.py", "calculator.py")):
        text = open(os.path.join(STUDENT, src)).read()
        if dst == "client.py":
            assert "else a.expression\n" in text
            text = text.replace("else a.expression\n", "else (a.expression or calculator.EXAMPLES[1])\n")
        (folder / dst).write_text(text)
    return folder


def test_a_course_file_travels_in_the_bundle_and_reaches_grade_repo(tmp_path, goldens):
    import zipfile
    f = course_file(tmp_path)
    z = tmp_path / "autograder.zip"
    r = run([PY, os.path.join(LAB, "gradescope-bundle"), "--out", str(z), "--scenarios", f"{f},3.2",
             "--capture-points", "2"])
    assert r.returncode == 0, r.stdout + r.stderr
    with zipfile.ZipFile(z) as zf:
        cfg = json.loads(zf.read("lab/gradescope/config.json"))
        assert zf.read("lab/gradescope/scenarios/quiz.toml") == open(f, "rb").read()
        zf.extractall(tmp_path / "source")
    assert cfg["scenarios"] == ["lab/gradescope/scenarios/quiz.toml", "3.2"]
    # the students' captures' points reach lab/grade
    assert cfg["capture_points"] == 2
    from gradescope import grading
    cmd = grading.grade_command("sub", "out", capture_points=cfg["capture_points"])
    assert cmd[cmd.index("--capture-points") + 1] == "2"
    # run_autograder reads the entries as paths in the unpacked bundle
    got = subprocess.run([PY, "-c", "import autograder; print(autograder.load_config()['scenarios'])"],
                         cwd=tmp_path / "source" / "lab" / "gradescope", capture_output=True, text=True, timeout=60)
    assert got.stdout.strip() == str([str(tmp_path / "source" / "lab" / "gradescope" / "scenarios" / "quiz.toml"),
                                      "3.2"]), got.stderr
    # a file that breaks the rules is refused when the bundle is made, saying why
    bad = tmp_path / "bad.toml"
    bad.write_text('[[steps]]\nask = "E1"\nclients = 2\n')
    r = run([PY, os.path.join(LAB, "gradescope-bundle"), "--out", str(tmp_path / "x.zip"), "--scenarios", str(bad)])
    assert r.returncode == 2 and "depends on timing" in r.stderr and not (tmp_path / "x.zip").exists()
    # Classroom's grade-repo: the file given relative to where it runs
    repo = handin(tmp_path / "repo")
    r = subprocess.run([PY, os.path.join(LAB, "classroom", "grade-repo"), str(repo), "--out", str(tmp_path / "fb"),
                        "--summary", str(tmp_path / "summary.md"), "--scenarios", "course/quiz.toml"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"} | {"CALCLAB_BUILD": BUILD})
    with open(tmp_path / "fb" / "grades.json") as fh:
        e = json.load(fh)["submissions"][0]
    assert [s["scenario"] for s in e["scenarios"]] == ["quiz"], e.get("status")
    # the skeleton's client asks E1 every time: judged on what it sent (the course's file adapted:
    # the request after the server stopped is then a hit), full marks
    assert e["status"] == "graded" and e["score"] == e["max_score"], (e["status"], r.stdout[-2000:])
    assert "(hit)" in e["scenarios"][0]["adapted"].rsplit("request 5:", 1)[1]


# ---------------------------------------------------------------- students' own captures
def record(tmp_path, name, *extra):
    """A capture of scenario `name` played by calclab's programs (lab/scenario --capture-only)."""
    wd = tmp_path / f"rec-{name}-{len(extra)}"
    r = run([PY, os.path.join(LAB, "scenario"), name, "--capture-only", "--quiet", "--workdir", str(wd),
             "--ports-base", str(procs.free_port_pair()), *extra])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    return str(wd / f"{name}.pcap")


def student_copy(src, dst, link, port_base):
    """`src` rewritten as a student's machine would have captured it: link type `link`, the
    clients' ports from 64031 (the report's), the proxy and server on port_base, port_base + 1."""
    from calclab_lab import pcapio
    pk = [s for s in map(pcapio.tcp_of, pcapio.read(src)) if s]
    listen = pcapio.find_ports(pcapio.read(src))
    mapping = {listen["server"]: port_base + 1}
    if listen.get("proxy"):
        mapping[listen["proxy"]] = port_base
    others = sorted({p for s in pk for p in (s.src[1], s.dst[1])} - set(mapping))
    mapping.update({p: 64031 + i for i, p in enumerate(others)})
    pcapio.rewrite(src, dst, ports=mapping, link=link)
    return dst


def test_students_captures_of_any_link_type_and_ports_are_judged_complete(tmp_path, goldens):
    assert shutil.which("tshark"), "tshark is not installed (ci/deps): the rewritten captures are checked against it"
    from calclab_lab import goldens as goldens_mod, handin_captures, pcapio, scenarios
    for name in ("3.1", "3.2", "3.3"):
        src = record(tmp_path, name)
        scn = scenarios.builtin(name)
        golden = goldens_mod.golden_path(scn)
        for link, suffix, base in ((pcapio.NULL, ".pcapng", 5000), (pcapio.EN10MB, ".pcap", 9998),
                                   (pcapio.LINUX_SLL2, ".pcapng", 41000)):
            cap = student_copy(src, str(tmp_path / f"{name}-{link}{suffix}"), link, base)
            got = handin_captures.judge(cap, scn, golden)
            assert got["status"] == "complete" and got["complete"], (name, link, got["differences"], got.get("reason"))
            assert got["ports"] == {"proxy": base if scn.uses_proxy else handin_captures.UNUSED_PORT,
                                    "server": base + 1}
            assert got["ports_from"].startswith("found") and got["link"] == pcapio.LINK_NAMES[link]
            assert "64031" in got["timeline"]   # calc-sniff's timeline of the student's own capture
            # what Wireshark itself makes of the file: every frame TCP over IP, checksums good
            r = subprocess.run(["tshark", "-r", cap, "-o", "tcp.check_checksum:TRUE", "-T", "fields",
                                "-e", "frame.protocols", "-e", "tcp.checksum.status"],
                               capture_output=True, text=True, timeout=120)
            rows = [l.split("\t") for l in r.stdout.splitlines()]
            assert rows and all(":ip:tcp" in p and st == "1" for p, st in rows), (cap, r.stdout[:500], r.stderr[-500:])


def windows_retries(src, dst):
    """`src` (a 3.3 capture) as Windows' Npcap loopback shows it: DLT_NULL, and the proxy's refused
    SYN to the server tried four times (each answered by RST, half a second apart), as the
    report's capture shows it."""
    from calclab_lab import pcapio
    pk = pcapio.read(src)
    listen = pcapio.find_ports(pk)
    out, shift = [], 0.0
    for n, p in enumerate(pk):
        got, seg = pcapio.ip_of(p), pcapio.tcp_of(p)
        if got is None or seg is None:
            continue
        frame = pcapio.frame(*got, pcapio.NULL)
        out.append(pcapio.Packet(p.ts + shift, pcapio.NULL, frame, len(frame)))
        if seg.flags & pcapio.RST and seg.src[1] == listen["server"]:
            syn = out[-2]
            for k in range(3):
                shift += 0.5
                out.append(pcapio.Packet(p.ts + shift, pcapio.NULL, syn.data, syn.orig_len))
                out.append(pcapio.Packet(p.ts + shift + 0.0001, pcapio.NULL, frame, len(frame)))
    pcapio.write_pcapng(dst, out, pcapio.NULL)
    return dst


def test_a_windows_capture_of_3_3_with_retried_syns_is_complete(tmp_path, goldens):
    from calclab_lab import goldens as goldens_mod, handin_captures, pcapio, scenarios
    scn = scenarios.builtin("3.3")
    cap = windows_retries(student_copy(record(tmp_path, "3.3"), str(tmp_path / "a.pcap"), pcapio.EN10MB, 9998),
                          str(tmp_path / "3.3.pcapng"))
    got = handin_captures.judge(cap, scn, goldens_mod.golden_path(scn))
    assert got["status"] == "complete", got["differences"]
    assert got["timeline"].count("[SYN]") >= 4 + 3


def test_a_capture_missing_the_hit_or_with_an_extra_upstream_connection_is_judged_so(tmp_path, goldens):
    from calclab_lab import goldens as goldens_mod, handin_captures, pcapio, scenarios
    scn = scenarios.builtin("3.2")
    golden = goldens_mod.golden_path(scn)
    src = record(tmp_path, "3.2")
    # the cache hit's connection left out: the second client connection to the proxy
    listen = pcapio.find_ports(pcapio.read(src))
    syns = [s for s in map(pcapio.tcp_of, pcapio.read(src))
            if s and s.flags & pcapio.SYN and not s.flags & pcapio.ACK and s.dst[1] == listen["proxy"]]
    hit_port = syns[1].src[1]
    cut = str(tmp_path / "3.2-no-hit.pcapng")
    pcapio.rewrite(src, cut, link=pcapio.NULL, keep=lambda s: hit_port not in (s.src[1], s.dst[1]))
    got = handin_captures.judge(cut, scn, golden)
    assert got["status"] == "incomplete" and not got["complete"]
    assert any(d.startswith("connections:") for d in got["differences"]), got["differences"]
    # a proxy that forwards the hit: one upstream connection more than the scenario has
    extra = record(tmp_path, "3.2", "--impl", "student", "--proxy",
                      broken(tmp_path, "proxy_never_caches"))
    got = handin_captures.judge(student_copy(extra, str(tmp_path / "3.2-extra.pcapng"), pcapio.NULL, 6000),
                                scn, golden)
    assert got["status"] == "incomplete"
    assert any(d.startswith(("upstream-connections:", "cache-hit-no-upstream:")) for d in got["differences"]), \
        got["differences"]


def test_a_handins_captures_are_graded_in_a_section_of_their_own(tmp_path, goldens):
    from calclab_lab import pcapio
    sub = handin(tmp_path / "sub")
    (sub / "wireshark").mkdir()
    src = record(tmp_path, "3.2")
    student_copy(src, str(sub / "wireshark" / "3.2.pcapng"), pcapio.NULL, 9998)
    src1 = record(tmp_path, "3.1")
    student_copy(src1, str(sub / "wireshark" / "direct.pcap"), pcapio.LINUX_SLL2, 7000)
    out = tmp_path / "out"
    r = run([PY, os.path.join(LAB, "grade"), str(sub), "--out", str(out), "--scenarios", "3.1,3.2",
             "--captures", "3.1=wireshark/direct.pcap", "--capture-points", "2"])
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr
    with open(out / "grades.json") as f:
        e = json.load(f)["submissions"][0]
    caps = {c["scenario"]: c for c in e["captures"]}
    assert caps["3.2"]["file"] == "wireshark/3.2.pcapng" and caps["3.2"]["status"] == "complete"
    assert caps["3.1"]["file"] == "wireshark/direct.pcap" and caps["3.1"]["status"] == "complete"
    assert (caps["3.1"]["score"], caps["3.1"]["max_score"]) == (2.0, 2.0)
    roles = sum(v["max_score"] for v in e["roles"].values())
    assert e["max_score"] == pytest.approx(roles + 4)
    # on Gradescope the captures are a test of their own, and the tests add up to the score
    from gradescope import results
    res = results.from_entry(e, 1.0, "")
    assert not results.problems(res), results.problems(res)
    (cap_test,) = [t for t in res["tests"] if t["name"].startswith("captures")]
    assert (cap_test["score"], cap_test["max_score"]) == (4, 4)
    assert sum(t["max_score"] for t in res["tests"]) == pytest.approx(e["max_score"])
    fb = (out / "sub" / "feedback.txt").read_text()
    assert "== your captures (the Wireshark part)" in fb
    assert "wireshark/3.2.pcapng: scenario 3.2: complete, 2/2 points" in fb
    # by default a capture is feedback only
    r = run([PY, os.path.join(LAB, "grade"), str(sub), "--out", str(tmp_path / "out0"), "--scenarios", "3.2"])
    with open(tmp_path / "out0" / "grades.json") as f:
        e0 = json.load(f)["submissions"][0]
    assert e0["captures"][0]["max_score"] == 0 and e0["max_score"] == pytest.approx(
        sum(v["max_score"] for v in e0["roles"].values()))
    assert "(feedback only)" in (tmp_path / "out0" / "sub" / "feedback.txt").read_text()


def test_a_golden_made_in_the_getattr_flavour_carries_the_debian_python_requests(goldens):
    """CPython 3.11.2 (Debian 12's python3) pickles the operators' enum members by name: the
    golden made in that flavour has its 706/395-byte requests, the value flavour 687/376, and
    a built-in's recorded golden (value) is not used for it."""
    from calclab_lab import goldens as goldens_mod, scenarios, sniff
    scn = scenarios.builtin("3.2")
    got = goldens_mod.golden_path(scn, flavour="getattr")
    assert str(goldens) in got
    assert goldens_mod.golden_path(scn, flavour="value").endswith(os.path.join("captures", "3.2.pcap"))
    sizes = [m["size"] for m in sniff.describe(got, sniff.DEFAULT_PORTS)
             if m.get("type") == "msg" and m.get("kind") == "request" and m.get("dir") == "orig"]
    assert sorted(set(sizes)) == [395, 706], sizes
    assert sniff.verify(got, got)["status"] == "pass"
    with pytest.raises(Exception) as e:
        goldens_mod.golden_for(scn, "pickle5")
    assert "unknown pickle flavour" in str(e.value)


def test_captures_are_found_by_the_names_students_give_them(tmp_path):
    from calclab_lab import handin_captures
    for rel in ("Scenario_3_1.pcapng", "wireshark/3.2.PCAP", "a/b/scenario-3-3.pcapng", "a/b/c/d/3.1.pcap",
                "stale.txt", "notes/no_steps.cap"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    got = {n: os.path.relpath(p, tmp_path) for n, p in
           handin_captures.find(str(tmp_path), ["3.1", "3.2", "3.3", "stale", "no-steps"],
                                {"stale": "a/b/c/d/3.1.pcap", "errors": "../outside.pcap"}).items()}
    assert got == {"3.1": "Scenario_3_1.pcapng", "3.2": os.path.join("wireshark", "3.2.PCAP"),
                   "3.3": os.path.join("a", "b", "scenario-3-3.pcapng"), "no-steps": os.path.join("notes", "no_steps.cap"),
                   "stale": os.path.join("a", "b", "c", "d", "3.1.pcap")}


def test_a_handin_of_captures_alone_has_them_judged_with_the_class_maximum(tmp_path, goldens):
    """The Wireshark part graded on its own: no programs handed in, the captures still judged;
    every row carries the same maximum."""
    from calclab_lab import pcapio
    cls = tmp_path / "class"
    only = cls / "only-captures"
    only.mkdir(parents=True)
    student_copy(record(tmp_path, "3.2"), str(only / "3.2.pcapng"), pcapio.NULL, 9998)
    handin(cls / "full")
    (cls / "broken.zip").write_bytes(b"not a zip")
    out = tmp_path / "out"
    r = run([PY, os.path.join(LAB, "grade"), "--class", str(cls), "--out", str(out), "--scenarios", "3.1,3.2",
             "--capture-points", "2", "--jobs", "1"])
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr
    with open(out / "grades.json") as f:
        rows = {e["id"]: e for e in json.load(f)["submissions"]}
    assert len({e["max_score"] for e in rows.values()}) == 1, {i: e["max_score"] for i, e in rows.items()}
    caps = {c["scenario"]: c for c in rows["only-captures"]["captures"]}
    assert caps["3.2"]["status"] == "complete" and caps["3.2"]["score"] == 2
    assert caps["3.1"]["status"] == "not handed in" and caps["3.1"]["score"] == 0
    assert rows["only-captures"]["score"] == 2
    assert rows["full"]["score"] == rows["full"]["max_score"] - 4   # its captures are not handed in


def test_lab_scenario_checks_a_capture_made_elsewhere(tmp_path, goldens):
    from calclab_lab import pcapio
    cap = str(tmp_path / "mine.pcapng")
    pcapio.rewrite(os.path.join(ROOT, "captures", "3.3.pcap"), cap, ports={9998: 4000, 9999: 4001}, link=pcapio.NULL)
    scenario = [PY, os.path.join(LAB, "scenario")]
    r = run(scenario + ["3.3", "--check-capture", cap])
    assert r.returncode == 0 and "scenario 3.3: complete" in r.stdout and "proxy port 4000" in r.stdout, r.stdout
    assert "127.0.0.1:4001" in r.stdout   # the timeline of the file itself
    r = run(scenario + ["3.2", "--check-capture", cap, "--quiet", "--capture-ports", "4000,4001"])
    assert r.returncode == 1 and "- refused-answer:" in r.stdout and "(given)" in r.stdout, r.stdout
    r = run(scenario + ["3.2", "--check-capture", os.path.join(ROOT, "README.md")])
    assert r.returncode == 2 and "not a pcap or pcapng file" in r.stdout


MAX_AGE = """
    # the client's max-age against the age of the proxy's entry, and a request straight to the server
    [[steps]]
    ask = "E2"
    [[steps]]
    pause = 3.2
    [[steps]]
    ask = "E2"
    max-age = 2          # the entry is 3 or 4 s old: too old for this client, a miss (stored again)
    [[steps]]
    ask = "E2"
    max-age = 30         # the new entry is fresh: a hit
    [[steps]]
    ask = "E2"
    to = "server"        # direct, past the proxy
    [[steps]]
    ask = "E2"
    cache = false        # never read nor stored: a miss
"""


@pytest.mark.parametrize("impl", ["c", "student"])
def test_a_clients_max_age_and_a_direct_request_play_as_the_model_says(tmp_path, goldens, impl):
    f = tmp_path / "maxage.toml"
    f.write_text(textwrap.dedent(MAX_AGE))
    from calclab_lab import scenarios
    assert [e.kind for e in scenarios.load(str(f)).exchanges] == ["miss", "miss", "hit", "direct", "miss"]
    r = run([PY, os.path.join(LAB, "scenario"), str(f), "--impl", impl, "--no-sniff", "--quiet",
             "--ports-base", str(procs.free_port_pair())])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "VERDICT maxage: PASS" in r.stdout


def test_a_skeleton_client_is_judged_on_the_flags_it_sent_only_where_it_cannot_be_told_others(tmp_path, goldens):
    """The course's client takes no --no-steps: in errors and no-steps it asks E1 with steps every
    time, and is judged on that (full marks, the proxy and server are judged on the scenario's
    flags in runs of their own); in 3.2, whose requests are the reference client's, a client that
    asks without steps is at fault as before."""
    sub = handin(tmp_path / "sub")
    r = run([PY, os.path.join(LAB, "grade"), str(sub), "--out", str(tmp_path / "out"), "--scenarios", "errors,no-steps"])
    with open(tmp_path / "out" / "grades.json") as f:
        e = json.load(f)["submissions"][0]
    assert r.returncode == 0 and e["score"] == e["max_score"], (r.stdout[-2000:], e["status"])
    adapted = {s["scenario"]: s.get("adapted") for s in e["scenarios"] if s.get("adapted")}
    assert adapted["no-steps"] == "request 1: E1 (miss), request 2: E1 (hit), request 3: E1 (hit), request 4: E1 (hit)"
    bad = handin(tmp_path / "bad")
    client = (bad / "client.py").read_text()
    (bad / "client.py").write_text(client.replace("steps=not a.no_steps", "steps=False"))
    r = run([PY, os.path.join(LAB, "grade"), str(bad), "--out", str(tmp_path / "out2"), "--scenarios", "3.2",
             "--roles", "client"])
    with open(tmp_path / "out2" / "grades.json") as f:
        e = json.load(f)["submissions"][0]
    failed = {c["name"] for s in e["scenarios"] for c in s["checks"] if not c["passed"] and c["role"] == "client"}
    assert e["roles"]["client"]["score"] < e["roles"]["client"]["max_score"] and "request-header" in failed, failed
