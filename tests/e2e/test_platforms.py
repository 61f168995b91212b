"""calclab on grading platforms: Gradescope's autograder bundle and GitHub Classroom's grading step.

- the converter from a grades.json entry to results.json, on a hand-written entry that follows
  lab/grade's documented schema (input of these unit tests only): the published fields and
  types, points per role adding up to the score, failed items' details, visibility rules that
  split checks off without leaking their details;
- lab/gradescope-bundle: git-tracked files only, setup.sh and run_autograder at the root,
  executables kept executable, the same bytes for the same commit and options;
- run_autograder writes a valid results.json with score 0 and the reason when grading fails;
- a simulated Gradescope run: /autograder laid out in a temporary root (CALCLAB_AUTOGRADER_ROOT),
  setup.sh run, run_autograder on a student-style hand-in and on one with a broken proxy: valid
  results.json with lab/grade's score and points per role, the broken one lower with the failed
  check named; lab/classroom/grade-repo gives the same scores and names the same failed checks."""
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(ROOT, "lab")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

sys.path.insert(0, LAB)
from gradescope import results  # noqa: E402

# Nothing here uses the build under test: the simulated platform builds its own copy.
pytestmark = pytest.mark.build_independent


# ---------------------------------------------------------------- a hand-written grades.json entry
def _item(ok, role, detail, conn=1):
    return {"passed": ok, "role": role, "detail": detail, "conn": conn, "packets": [], "time": None}


def _check(name, role, score, max_score, items):
    return {"name": name, "role": role, "score": score, "max_score": max_score,
            "passed": score == max_score, "items": items}


TEARDOWN_DETAIL = "conn 1: the server sent the first FIN; the reference's client closes first"
CACHE_DETAIL = "request 2 (E1 again): the proxy opened upstream connection 2; the reference answers from its cache"
RST_DETAIL = "conn 3: the proxy reset the connection (RST); the reference closes with FIN"


def sample_entry():
    scenarios = [
        {"scenario": "3.1", "passed": False, "isolation": "netns (private lo), uid 65534", "checks": [
            _check("handshake", "server", 1, 1, [_item(True, "server", "conn 1: SYN, SYN/ACK, ACK")]),
            _check("teardown", "server", 0.5, 1, [_item(True, "server", "conn 2: client FIN first", 2),
                                                  _item(False, "server", TEARDOWN_DETAIL)]),
            # the client is calclab's here: its checks carry no student points
            _check("client-result", "client", 2, 2, [_item(True, "client", "E1 printed as the reference")]),
        ]},
        {"scenario": "3.2", "passed": False, "isolation": "netns (private lo), uid 65534", "checks": [
            _check("cache-hit-no-upstream", "proxy", 0, 2, [_item(False, "proxy", CACHE_DETAIL, 2)]),
            _check("upstream-connections", "proxy", 2, 2, [_item(True, "proxy", "2 upstream connections")]),
            _check("rst", "proxy", 0, 1, [_item(False, "proxy", RST_DETAIL, 3)]),
            _check("response-size", "server", 1, 1, [_item(True, "server", "172 bytes as the reference")]),
        ]},
        {"scenario": "3.3", "passed": True, "isolation": "netns (private lo), uid 65534", "checks": [
            _check("refused-answer", "proxy", 2, 2, [_item(True, "proxy", "170-byte refused answer")]),
            _check("ordering", "server", 1, 1, [_item(True, "server", "answers in request order")]),
        ]},
    ]
    roles = {}
    for s in scenarios:
        for c in s["checks"]:
            if c["role"] in ("server", "proxy"):
                r = roles.setdefault(c["role"], {"score": 0, "max_score": 0})
                r["score"] += c["score"]
                r["max_score"] += c["max_score"]
    return {"id": "alice", "score": sum(r["score"] for r in roles.values()),
            "max_score": sum(r["max_score"] for r in roles.values()), "roles": roles, "status": "graded",
            "scenarios": scenarios}


FEEDBACK = ("scenario 3.1\n      ms  client        server        wire\n"
            "     0.0                                client 1 -> server [SYN]\n")


def by_name(res):
    return {t["name"]: t for t in res["tests"]}


def test_results_follow_the_published_fields_and_types():
    e = sample_entry()
    res = results.from_entry(e, 12.3, FEEDBACK)
    assert results.problems(res) == []
    assert json.loads(json.dumps(res)) == res
    assert res["score"] == e["score"] == 7.5 and res["execution_time"] == 13
    t = by_name(res)
    assert list(t) == ["server", "proxy"]          # graded roles only, calclab's client has no test
    assert (t["server"]["score"], t["server"]["max_score"]) == (3.5, 4)
    assert (t["proxy"]["score"], t["proxy"]["max_score"]) == (4, 7)
    assert all(x["status"] == "failed" and x["visibility"] == "visible" for x in t.values())
    assert TEARDOWN_DETAIL in t["server"]["output"] and "conn 2: client FIN first" not in t["server"]["output"]
    assert CACHE_DETAIL in t["proxy"]["output"] and RST_DETAIL in t["proxy"]["output"]
    assert "FAIL 3.2 cache-hit-no-upstream" in t["proxy"]["output"]
    assert "ok   3.3 refused-answer" in t["proxy"]["output"]
    assert sum(x["score"] for x in res["tests"]) == res["score"]
    # the top level: the totals, the isolation said plainly, the text diagrams as a code block
    assert "7.5/11" in res["output"] and "isolation: netns (private lo), uid 65534" in res["output"]
    assert res["output_format"] == "md" and "```\n" + FEEDBACK.strip() + "\n```" in res["output"]


def test_full_marks_pass_and_missing_isolation_is_said():
    e = sample_entry()
    for s in e["scenarios"]:
        del s["isolation"]
        for c in s["checks"]:
            c["score"], c["passed"] = c["max_score"], True
            for it in c["items"]:
                it["passed"] = True
    for r in e["roles"].values():
        r["score"] = r["max_score"]
    e["score"] = e["max_score"]
    res = results.from_entry(e, 1, "")
    assert results.problems(res) == []
    assert all(t["status"] == "passed" for t in res["tests"]) and res["score"] == 11
    assert "isolation: none (the grader recorded no sandbox)" in res["output"]


def test_visibility_rules_split_checks_off_per_role_without_leaking_them():
    e = sample_entry()
    rules = [results.parse_rule("3.2/rst=after_published"), results.parse_rule("3.2")]
    res = results.from_entry(e, 5, FEEDBACK, rules)
    assert results.problems(res) == []
    t = by_name(res)
    assert set(t) == {"server", "proxy", "server: further checks (shown after the due date)",
                      "proxy: further checks (shown after the due date)",
                      "proxy: further checks (shown once grades are published)",
                      "report: sequence diagrams and every check"}
    later = t["proxy: further checks (shown after the due date)"]
    assert later["visibility"] == "after_due_date" and (later["score"], later["max_score"]) == (2, 4)
    assert CACHE_DETAIL in later["output"]
    pub = t["proxy: further checks (shown once grades are published)"]
    assert pub["visibility"] == "after_published" and RST_DETAIL in pub["output"] and pub["max_score"] == 1
    assert (t["proxy"]["score"], t["proxy"]["max_score"]) == (2, 2)
    assert CACHE_DETAIL not in t["proxy"]["output"] and RST_DETAIL not in t["proxy"]["output"]
    assert t["server"]["visibility"] == "visible" and TEARDOWN_DETAIL in t["server"]["output"]
    # the points still add up to lab/grade's score; the visible summary names no hidden result
    assert sum(x["score"] for x in res["tests"]) == res["score"] == e["score"]
    assert CACHE_DETAIL not in res["output"] and FEEDBACK.strip() not in res["output"]
    assert "7.5/11" not in res["output"] and "after the due date" in res["output"]
    rep = t["report: sequence diagrams and every check"]
    assert rep["visibility"] == "after_published" and rep["max_score"] == 0 and FEEDBACK.strip() in rep["output"]


def test_assignment_level_visibility_and_rule_syntax():
    res = results.from_entry(sample_entry(), 1, FEEDBACK, [results.parse_rule("handshake=visible")],
                             default="after_due_date")
    assert results.problems(res) == [] and res["visibility"] == "after_due_date"
    t = by_name(res)
    assert t["server"]["visibility"] == "after_due_date"
    assert t["server: further checks (shown now)"]["visibility"] == "visible"
    assert results.parse_rule("*/client-*") == ("*/client-*", "after_due_date")
    for bad in ("=hidden", "3.1=soon"):
        with pytest.raises(ValueError):
            results.parse_rule(bad)


def test_ungradable_submissions_get_a_valid_zero():
    e = {"id": "bob", "score": 0, "max_score": 0, "roles": {}, "status": "no role files found", "scenarios": []}
    res = results.from_entry(e, 0.2, "")
    assert results.problems(res) == [] and res["score"] == 0
    assert [(t["name"], t["status"]) for t in res["tests"]] == [("submission", "failed")]
    assert "no role files found" in res["tests"][0]["output"]
    e = {"id": "carol", "score": 0, "max_score": 10, "roles": {"server": {"score": 0, "max_score": 10}},
         "status": "server.py: SyntaxError at line 3", "scenarios": []}
    res = results.from_entry(e, 0.2, "")
    assert results.problems(res) == []
    assert res["tests"][0]["status"] == "failed" and "SyntaxError" in res["tests"][0]["output"]
    # a status quoting a student's program is shown as text, never as Markdown or HTML
    e = dict(e, status="server.py does not start: <img src=x onerror=alert(1)> **`boom`**\nsecond line")
    res = results.from_entry(e, 0.2, "")
    assert "- status: server.py does not start: \\<img src=x onerror=alert(1)\\> \\*\\*\\`boom\\`\\*\\* second line" \
        in res["output"].splitlines()
    res = results.failure("lab/grade exited with status 2", 3.2)
    assert results.problems(res) == [] and res["score"] == 0 and "status 2" in res["output"]


def test_problems_name_what_departs_from_the_specification():
    good = results.from_entry(sample_entry(), 1, FEEDBACK)
    cases = [({"score": True}, "bool"), ({"visibility": "later"}, "visibility"), ({"scores": 1}, "unknown"),
             ({"execution_time": "5"}, "execution_time"), ({"output_format": "pdf"}, "output_format")]
    for change, word in cases:
        bad = dict(good, **change)
        assert any(word in p for p in results.problems(bad)), change
    bad = dict(good, tests=[dict(good["tests"][0], status="ok", max_score=None)])
    assert len(results.problems(bad)) == 2
    nosc = {k: v for k, v in good.items() if k != "score"}
    nosc["tests"] = [{k: v for k, v in t.items() if k != "score"} for t in good["tests"]]
    assert any("no top-level score" in p for p in results.problems(nosc))
    assert results.problems([]) == ["results.json is not a JSON object"]


def integration_entry():
    """sample_entry graded with --integration 5: all the student's programs at once, its proxy
    failing the cache check there too."""
    e = sample_entry()
    integ = {"score": 3.0, "max_score": 5.0, "scenarios": [
        {"scenario": "3.2", "passed": False, "checks": [
            _check("cache-hit-no-upstream", "proxy", 0, 1, [_item(False, "proxy", CACHE_DETAIL, 2)]),
            _check("response-size", "server", 1, 1, [_item(True, "server", "172 bytes as the reference")])]},
        {"scenario": "3.3", "passed": True, "checks": [
            _check("refused-answer", "proxy", 2, 2, [_item(True, "proxy", "170-byte refused answer")])]}]}
    return dict(e, integration=integ, score=e["score"] + 3.0, max_score=e["max_score"] + 5.0)


def test_integration_is_a_test_of_its_own_and_the_tests_add_up():
    e = integration_entry()
    res = results.from_entry(e, 2, FEEDBACK)
    assert results.problems(res) == []
    t = by_name(res)
    integ = t["integration: all the programs at once"]
    assert (integ["score"], integ["max_score"], integ["status"]) == (3, 5, "failed")
    assert "FAIL 3.2 cache-hit-no-upstream    proxy  0/1" in integ["output"] and CACHE_DETAIL in integ["output"]
    assert "ok   3.3 refused-answer" in integ["output"]
    assert sum(x["score"] for x in res["tests"]) == res["score"] == 10.5
    assert sum(x["max_score"] for x in res["tests"]) == e["max_score"] == 16
    # a rule hiding a check also hides the integration test that names it
    res = results.from_entry(e, 2, FEEDBACK, [results.parse_rule("cache-hit-no-upstream")])
    assert by_name(res)["integration: all the programs at once"]["visibility"] == "after_due_date"
    assert CACHE_DETAIL not in res["output"]
    # feedback only: worth 0/0, still shown
    e0 = dict(sample_entry(), integration=dict(e["integration"], score=0.0, max_score=0.0))
    t = by_name(results.from_entry(e0, 2, ""))["integration: all the programs at once (feedback only)"]
    assert (t["score"], t["max_score"]) == (0, 0) and CACHE_DETAIL in t["output"]


def test_results_json_is_written_whole_readable_and_alone(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"score": 1000}')
    res = results.from_entry(sample_entry(), 1, FEEDBACK)
    results.write(str(path), res)
    assert json.loads(path.read_text()) == res
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(tmp_path) == ["results.json"]   # no temporary file or folder left


# ---------------------------------------------------------------- the bundle
def bundle(path, *options):
    r = subprocess.run([PY, os.path.join(LAB, "gradescope-bundle"), "--out", str(path), *options],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    return path


def tracked():
    out = subprocess.run(["git", "-C", ROOT, "ls-files", "-z"], capture_output=True, check=True).stdout
    return {p.decode() for p in out.split(b"\0") if p and os.path.isfile(os.path.join(ROOT, p.decode()))}


def test_bundle_holds_the_tracked_sources_and_gradescopes_two_scripts(tmp_path):
    z = bundle(tmp_path / "a.zip", "--roles", "server,proxy", "--scenarios", "3.1,3.2",
               "--hide", "3.2=after_published", "--visibility", "visible")
    with zipfile.ZipFile(z) as f:
        names = f.namelist()
        infos = {i.filename: i for i in f.infolist()}
        cfg = json.loads(f.read("lab/gradescope/config.json"))
        root_setup = f.read("setup.sh")
    assert names[:2] == ["setup.sh", "run_autograder"]
    assert set(names) == tracked() | {"setup.sh", "run_autograder", "lab/gradescope/config.json"}
    assert not [n for n in names if n.startswith(("build", "grade-out")) or "__pycache__" in n]
    for exe in ("setup.sh", "run_autograder", "lab/grade", "ci/deps", "lab/gradescope/install-grader"):
        assert (infos[exe].external_attr >> 16) & stat.S_IXUSR, exe
    assert not (infos["README.md"].external_attr >> 16) & stat.S_IXUSR
    assert b"lab/gradescope/install-grader" in root_setup
    assert cfg == {"roles": ["server", "proxy"], "role_weights": None, "scenarios": ["3.1", "3.2"], "client_stdin": None,
                   "visibility": "visible",
                   "hide": ["3.2=after_published"], "stdout_visibility": "hidden", "time_limit": 480.0,
                   "allow_unconfined": False}
    again = bundle(tmp_path / "b.zip", "--roles", "server,proxy", "--scenarios", "3.1,3.2",
                   "--hide", "3.2=after_published", "--visibility", "visible")
    assert z.read_bytes() == again.read_bytes()


def test_role_weights_reach_lab_grade_from_the_bundle(tmp_path):
    z = bundle(tmp_path / "w.zip", "--role-weights", "client=20, server=40,proxy=40")
    with zipfile.ZipFile(z) as f:
        cfg = json.loads(f.read("lab/gradescope/config.json"))
    assert cfg["role_weights"] == "client=20,server=40,proxy=40"
    from gradescope import grading
    cmd = grading.grade_command("sub", "out", role_weights=cfg["role_weights"])
    assert cmd[cmd.index("--role-weights") + 1] == "client=20,server=40,proxy=40"


def test_integration_reaches_lab_grade_from_the_bundle(tmp_path):
    z = bundle(tmp_path / "i.zip", "--integration", "7.5")
    with zipfile.ZipFile(z) as f:
        cfg = json.loads(f.read("lab/gradescope/config.json"))
    assert cfg["integration"] == 7.5
    z = bundle(tmp_path / "i0.zip", "--integration")
    with zipfile.ZipFile(z) as f:
        assert json.loads(f.read("lab/gradescope/config.json"))["integration"] == 0
    from gradescope import grading
    cmd = grading.grade_command("sub", "out", integration=7.5)
    assert cmd[cmd.index("--integration") + 1] == "7.5"
    assert "--integration" not in grading.grade_command("sub", "out")
    for bad in ("-1", "2.3", "many"):
        r = subprocess.run([PY, os.path.join(LAB, "gradescope-bundle"), "--out", str(tmp_path / "x.zip"),
                            "--integration", bad], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert r.returncode == 2 and "lab/gradescope-bundle:" in r.stderr or "invalid float" in r.stderr, bad
        assert not (tmp_path / "x.zip").exists()


def test_bundle_refuses_unknown_options(tmp_path):
    for opts in (["--roles", "browser"], ["--scenarios", "9.9"], ["--hide", "3.1=soon"],
                 ["--role-weights", "server=40,teacher=60"], ["--role-weights", "server=-1"]):
        r = subprocess.run([PY, os.path.join(LAB, "gradescope-bundle"), "--out", str(tmp_path / "x.zip"), *opts],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert r.returncode == 2 and "lab/gradescope-bundle:" in r.stderr, opts
        assert not (tmp_path / "x.zip").exists()


# ---------------------------------------------------------------- Gradescope's /autograder, simulated
def gradescope_root(tmp_path, zip_path):
    """/autograder as Gradescope lays it out: source/ (the zip unpacked), run_autograder copied out of
    it, submission/ and results/."""
    root = tmp_path / "autograder"
    (root / "source").mkdir(parents=True)
    subprocess.run(["unzip", "-q", str(zip_path), "-d", str(root / "source")], check=True)
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    (root / "submission").mkdir()
    (root / "results").mkdir()
    return root


def platform_env(root):
    env = {k: v for k, v in os.environ.items() if k not in ("CALC_BUILD_DIR", "CALCLAB_BUILD")}
    env["CALCLAB_AUTOGRADER_ROOT"] = str(root)
    return env


def run_autograder(root, timeout=900, prefix=(), **env):
    r = subprocess.run([*prefix, str(root / "run_autograder")], cwd=root, env=dict(platform_env(root), **env),
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(root / "results" / "results.json") as f:
        res = json.load(f)
    assert results.problems(res) == [], res
    return res, r


def test_grading_that_cannot_run_still_gives_a_valid_zero(tmp_path):
    root = gradescope_root(tmp_path, bundle(tmp_path / "a.zip"))
    (root / "submission").rmdir()   # lab/grade then has nothing to grade and says so
    res, _ = run_autograder(root, timeout=120)
    assert res["score"] == 0 and res["tests"][0]["status"] == "failed"
    assert "could not grade" in res["output"] and "lab/grade exited with status" in res["output"]
    # Python itself broken: the shell part still leaves a valid result
    os.remove(root / "source" / "lab" / "gradescope" / "autograder.py")
    res, _ = run_autograder(root, timeout=60)
    assert res["score"] == 0 and "before writing results" in res["output"]


# ---------------------------------------------------------------- a whole platform run on real hand-ins
STUDENT = os.path.join(ROOT, "tests", "student")


def _student(name):
    with open(os.path.join(STUDENT, name)) as f:
        return f.read()


def _edit(text, old, new):
    assert old in text, old
    return text.replace(old, new)


def handin(folder, broken=False):
    """A student-style hand-in: the skeleton's server.py, proxy.py and client.py (the client
    hard-codes E1, as the skeleton's does) next to the course's api.py and calculator.py.
    Broken: its proxy never stores an answer, so the repeated request goes upstream again."""
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    proxy = _student("calc_proxy.py")
    if broken:
        proxy = _edit(proxy, "            CACHE[key] = resp\n", "            CACHE.pop(key, None)\n")
    client = _edit(_student("calc_client.py"), "else a.expression\n",
                   "else (a.expression or calculator.EXAMPLES[1])\n")
    files = {"server.py": _student("calc_server.py"), "proxy.py": proxy, "client.py": client,
             "api.py": _student("api.py"), "calculator.py": _student("calculator.py")}
    for name, text in files.items():
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)
    return folder


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """/autograder after Gradescope built the image: the bundle unpacked, setup.sh run (its apt step
    is ci/deps --grading, instant where the packages are present, as on this machine)."""
    tmp = tmp_path_factory.mktemp("gradescope")
    root = gradescope_root(tmp, bundle(tmp / "autograder.zip"))
    r = subprocess.run(["bash", str(root / "source" / "setup.sh")], cwd=root / "source", env=platform_env(root),
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    for prog in ("calc-server", "calc-proxy", "calc-client", "calc-sniff"):
        assert os.access(root / "source" / "build" / prog, os.X_OK), prog
    return root


def grade_directly(sub, out):
    r = subprocess.run([PY, os.path.join(LAB, "grade"), str(sub), "--out", str(out)], capture_output=True,
                       text=True, timeout=900, cwd=ROOT)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    with open(out / "grades.json") as f:
        return json.load(f)["submissions"][0]


def grade_repo(repo, out, summary):
    r = subprocess.run([PY, os.path.join(LAB, "classroom", "grade-repo"), str(repo), "--out", str(out),
                        "--summary", str(summary)], capture_output=True, text=True, timeout=900, cwd=ROOT,
                       env={k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"})
    with open(out / "grades.json") as f:
        return r, json.load(f)["submissions"][0], summary.read_text()


def differing_checks(a, b):
    """The checks two gradings of the same hand-in scored differently: what a mismatch is about."""
    def table(e):
        return {(s["scenario"], c["role"], c["name"]): (c["score"], [it["detail"] for it in c["items"]
                                                                    if not it["passed"]])
                for s in e["scenarios"] for c in s["checks"]}
    ta, tb = table(a), table(b)
    return {k: (ta.get(k), tb.get(k)) for k in sorted(set(ta) | set(tb)) if (ta.get(k) or [None])[0] != (tb.get(k) or [None])[0]}


def platform_run(root, tmp_path, name, broken):
    """One hand-in graded three ways: Gradescope's run_autograder, lab/grade itself, grade-repo."""
    handin(root / "submission", broken)
    res, run = run_autograder(root)
    assert "run_autograder: score" in run.stdout
    direct = grade_directly(handin(tmp_path / name, broken), tmp_path / f"{name}-out")
    assert direct["status"] == "graded", direct["status"]
    r, e, summary = grade_repo(handin(tmp_path / f"{name}-repo", broken), tmp_path / f"{name}-feedback",
                               tmp_path / f"{name}-summary.md")
    assert os.path.isfile(tmp_path / f"{name}-feedback" / f"{name}-repo" / "index.html")
    return res, direct, (r, e, summary)


def test_gradescope_and_classroom_grade_handins_as_lab_grade_does(platform, tmp_path):
    results_of = {}
    for name, broken in (("student", False), ("broken", True)):
        res, direct, (r, e, summary) = platform_run(platform, tmp_path, name, broken)
        results_of[name] = res
        # Gradescope: lab/grade's score, and its points per role as tests
        with open(platform / "calclab-out" / "grades.json") as f:
            graded_there = json.load(f)["submissions"][0]
        assert res["score"] == pytest.approx(direct["score"]), (name, differing_checks(graded_there, direct))
        t = by_name(res)
        assert set(t) == {"server", "proxy", "client"}
        for role, test in t.items():
            assert (test["score"], test["max_score"]) == pytest.approx(
                (direct["roles"][role]["score"], direct["roles"][role]["max_score"])), (name, role)
            assert test["status"] == ("passed" if test["score"] == test["max_score"] else "failed")
        assert sum(x["max_score"] for x in res["tests"]) == pytest.approx(direct["max_score"])
        # what confined the programs, as lab/grade recorded it for each scenario, said plainly
        isolation = [s["isolation"] for s in graded_there["scenarios"]]
        assert isolation and all(isolation)
        assert results.md_text(f"isolation: {isolation[0]}") in res["output"]
        assert all(results.md_text(i) in res["output"] for i in isolation)
        assert "== scenario 3.1" in res["output"]
        # GitHub Classroom: the same score, the job fails below full marks
        assert e["score"] == pytest.approx(res["score"]), (name, differing_checks(e, graded_there))
        assert f"## calclab: {e['score']:g}/{e['max_score']:g} points" in summary
        assert r.returncode == (0 if e["score"] == e["max_score"] else 1), r.stdout + r.stderr
        for test in res["tests"]:
            for line in test["output"].splitlines():
                if line.startswith("FAIL "):   # every failed check Gradescope shows, the summary names too
                    scn, check = line.split()[1:3]
                    assert f"**{scn} {check}** ({test['name']})" in summary, (name, line)
    good, bad = results_of["student"], results_of["broken"]
    assert bad["score"] < good["score"]
    # the broken proxy loses the cache check, named with what was seen
    proxy = by_name(bad)["proxy"]
    assert proxy["status"] == "failed" and "FAIL 3.2 cache-hit-no-upstream" in proxy["output"]
    assert "FAIL 3.2 cache-hit-no-upstream" not in by_name(good)["proxy"]["output"]
    assert proxy["score"] < by_name(good)["proxy"]["score"]


def test_gradescope_and_classroom_grade_the_integration_section(platform, tmp_path):
    """--integration and --role-weights through both platforms on a hand-in whose proxy never
    caches: each role's points come from runs of its own (the client and server at full marks,
    worth their weights), the integration section shows the proxy's failure with every program
    the student's, worth its points."""
    root = platform
    cfg_path = root / "source" / "lab" / "gradescope" / "config.json"
    saved = cfg_path.read_text()
    weights = "server=50,proxy=30,client=20"
    try:
        cfg_path.write_text(json.dumps(dict(json.loads(saved), integration=10, role_weights=weights)))
        handin(root / "submission", broken=True)
        res, _ = run_autograder(root)
    finally:
        cfg_path.write_text(saved)
    t = by_name(res)
    integ = t["integration: all the programs at once"]
    assert integ["max_score"] == 10 and integ["score"] < 10 and integ["status"] == "failed", integ
    assert "FAIL 3.2 cache-hit-no-upstream" in integ["output"]
    assert (t["client"]["score"], t["server"]["score"]) == (t["client"]["max_score"], t["server"]["max_score"])
    assert {r: t[r]["max_score"] for r in ("server", "proxy", "client")} == {"server": 50, "proxy": 30, "client": 20}
    assert res["score"] == pytest.approx(sum(x["score"] for x in res["tests"]))
    assert sum(x["max_score"] for x in res["tests"]) == 110
    # GitHub Classroom: the same option, the same section, in the job summary
    summary = tmp_path / "summary.md"
    r = subprocess.run([PY, os.path.join(LAB, "classroom", "grade-repo"), str(handin(tmp_path / "repo", True)),
                        "--out", str(tmp_path / "fb"), "--summary", str(summary), "--integration", "10",
                        "--role-weights", weights],
                       capture_output=True, text=True, timeout=900, cwd=ROOT,
                       env={k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"})
    assert r.returncode == 1, r.stdout + r.stderr
    with open(tmp_path / "fb" / "grades.json") as f:
        e = json.load(f)["submissions"][0]
    assert e["integration"]["max_score"] == 10 and e["max_score"] == 110
    assert {r: v["max_score"] for r, v in e["roles"].items()} == {"server": 50, "proxy": 30, "client": 20}
    assert e["integration"]["score"] == integ["score"] and e["score"] == pytest.approx(res["score"])
    text = summary.read_text()
    assert f"| integration: all the programs at once | {integ['score']:g}/10 | failed |" in text
    assert "**3.2 cache-hit-no-upstream** (integration: proxy)" in text
    bad = subprocess.run([PY, os.path.join(LAB, "classroom", "grade-repo"), str(tmp_path / "repo"), "--out",
                          str(tmp_path / "x"), "--integration", "0.3"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--integration" in bad.stderr


def test_classroom_workflow_only_calls_the_tested_scripts():
    """calclab.yml: each `run:` is one call of a script of this checkout tested here; the artifact is
    the folder grade-repo writes."""
    with open(os.path.join(LAB, "classroom", "calclab.yml")) as f:
        lines = f.read().splitlines()
    runs = [l.split("run:", 1)[1].strip() for l in lines if l.strip().startswith("run:")]
    assert runs == ["calclab/lab/gradescope/install-grader",
                    "sudo --preserve-env=GITHUB_STEP_SUMMARY,GITHUB_ACTIONS /usr/bin/python3 "
                    "calclab/lab/classroom/grade-repo submission --out calclab-feedback"]
    for script in ("lab/gradescope/install-grader", "lab/classroom/grade-repo"):
        assert os.access(os.path.join(ROOT, script), os.X_OK), script
    paths = [l.split(":", 1)[1].strip() for l in lines if l.strip().startswith("path:")]
    assert paths == ["submission", "calclab", "calclab-feedback"]
    uses = [l.split("uses:", 1)[1].strip() for l in lines if "uses:" in l]
    assert uses == ["actions/checkout@v4", "actions/checkout@v4", "actions/upload-artifact@v4"]
    assert any(l.strip() == "if: always()" for l in lines)   # the feedback is uploaded when the job fails too


def _processes_under(path):
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if str(path) in cmd:
            found.append(f"{pid}: {cmd}")
    return found


@pytest.mark.parametrize("isolation", ["", "uid"])
def test_grading_past_its_time_limit_is_stopped_and_said(platform, isolation):
    """Stopped lab/grade or not, nothing it started is left: namespaced programs die with their
    sandbox, uid-mode ones are killed by uid (their runs' ends never came)."""
    if isolation == "uid" and os.geteuid() != 0:
        pytest.skip("switching to another uid needs root")
    root = platform
    cfg_path = root / "source" / "lab" / "gradescope" / "config.json"
    saved = cfg_path.read_text()
    try:
        cfg = json.loads(saved)
        cfg["time_limit"] = 2
        cfg_path.write_text(json.dumps(cfg))
        # a server that never listens: the lab waits for it far past 2 s (a correct hand-in is
        # graded in less than that); it names itself, for it runs from a copy elsewhere in uid mode
        marker = f"calclab_hang_{os.getpid()}_{isolation}"
        hang = handin(root / "submission")
        with open(os.path.join(hang, "server.py"), "w") as f:
            f.write(f"import os, sys\nos.execv(sys.executable, [sys.executable, '-X', {marker!r}, '-c', "
                    "'import time; time.sleep(600)'])\n")
        res, _ = run_autograder(root, timeout=120, CALCLAB_ISOLATION=isolation)
    finally:
        cfg_path.write_text(saved)
    assert res["score"] == 0 and "longer than its limit of 2 s and was stopped" in res["output"]
    # lab/grade and the programs it started are gone
    assert _processes_under(root) == [] and _processes_under(marker) == []


# ---------------------------------------------------------------- confinement on the platform
def test_a_grade_outside_the_class_range_is_refused():
    from gradescope import autograder
    cfg = dict(autograder.DEFAULTS, roles=["server"], scenarios=["3.1"])
    from calclab_lab import classgrade, gradebook
    top = gradebook.points(sum(classgrade.class_maxima(["3.1"], ["server"]).values()))
    good = {"score": top / 2, "max_score": top, "roles": {"server": {"score": top / 2, "max_score": top}}}
    assert autograder.out_of_range(good, cfg) == []
    forged = [dict(good, score=1000), dict(good, score=-1), dict(good, max_score=1000, score=1000),
              dict(good, score=float("nan")), dict(good, score=True),
              dict(good, roles={"server": {"score": top * 2}}), dict(good, roles={"teacher": {"score": 1}}),
              dict(good, score=top, roles={"server": {"score": top / 2}})]
    for e in forged:
        assert autograder.out_of_range(e, cfg), e
    # a hand-in's own captures add at most the configured points each
    caps = dict(cfg, capture_points=2)
    with_caps = dict(good, score=top / 2 + 1, max_score=top + 2,
                     captures=[{"scenario": "3.1", "score": 1.0, "max_score": 2.0}])
    assert autograder.out_of_range(with_caps, caps) == []
    assert autograder.out_of_range(dict(with_caps, captures=[{"score": 50.0, "max_score": 50.0}]), caps)
    assert autograder.out_of_range(with_caps, cfg)   # no capture points configured: no room for them
    # a lab error scores nothing (null): from_entry says why, no range to check
    assert autograder.out_of_range(dict(good, score=None, status="lab error: calc-sniff died"), cfg) == []
    # --integration: a section worth exactly the configured points, counted in the score
    integ = dict(cfg, integration=5.0)
    with_integ = dict(good, score=top / 2 + 2, max_score=top + 5,
                      integration={"score": 2.0, "max_score": 5.0, "scenarios": []})
    assert autograder.out_of_range(with_integ, integ) == []
    assert autograder.out_of_range(with_integ, cfg)      # a section the class does not have
    assert autograder.out_of_range(good, integ)          # the class's section missing
    assert autograder.out_of_range(dict(with_integ, integration={"score": 50.0, "max_score": 50.0}), integ)
    assert autograder.out_of_range(dict(with_integ, score=top / 2 + 5), integ)   # does not add up


def forging_handin(folder, root, marker):
    """A good hand-in whose server first leaves a daemon that keeps rewriting results.json to 1000
    points (as the file and by renaming its own over it), and tries the grader's source."""
    handin(folder)
    server = os.path.join(folder, "server.py")
    with open(server) as f:
        text = f.read()
    loop = textwrap.dedent(f"""
        import time
        for _ in range(100000):
            for path, text in (({str(root / "results" / "results.json")!r}, '{{"score": 1000, "tests": []}}'),
                               ({str(root / "source" / "lab" / "grade")!r}, "forged"),
                               ({str(root / "source" / "lab" / "planted")!r}, "planted")):
                try:
                    with open(path, "w") as fh:
                        fh.write(text)
                except OSError:
                    pass
            try:
                print(open({str(root / "source" / "lab" / "gradescope" / "config.json")!r}).read(), flush=True)
            except OSError:
                pass
            time.sleep(0.01)
    """)
    with open(server, "w") as f:
        f.write(textwrap.dedent(f"""
            import os, sys
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execv(sys.executable, [sys.executable, "-X", {marker!r}, "-c", {loop!r}])
                os._exit(0)
        """) + text)
    return folder


# Docker's default capability set (a container run without --cap-add or --privileged): root
# without CAP_SYS_ADMIN or CAP_NET_ADMIN cannot make the namespaces, as in Gradescope's containers
DOCKER_CAPS = ("-all,+chown,+dac_override,+fowner,+fsetid,+kill,+setgid,+setuid,+setpcap,+net_bind_service,"
               "+net_raw,+sys_chroot,+mknod,+audit_write,+setfcap")


@pytest.mark.parametrize("how", ["CALCLAB_ISOLATION=uid", "Docker's default capabilities"])
def test_gradescope_without_namespaces_grades_under_uids_and_nothing_forges(platform, how):
    """Without namespaces (forced, or root holding only Docker's default capabilities, where the
    probe finds it so itself): the forging daemon changes nothing, is gone before results.json
    is written, and the hand-in still gets full marks."""
    root = platform
    if os.geteuid() != 0:
        pytest.skip("switching to another uid needs root")
    if how.startswith("Docker") and not shutil.which("setpriv"):
        pytest.skip("no setpriv (util-linux) to run with Docker's capability set")
    marker = f"calclab_forger_{os.getpid()}"
    source_before = (root / "source" / "lab" / "grade").read_bytes()
    forging_handin(root / "submission", root, marker)
    if how.startswith("Docker"):
        res, run = run_autograder(root, prefix=["setpriv", "--bounding-set", DOCKER_CAPS, "--inh-caps", "-all", "--"])
        assert "calc-netns: cannot make a network namespace: Operation not permitted" in \
            res["output"].replace("\\", ""), res["output"][:2000]
    else:
        res, run = run_autograder(root, CALCLAB_ISOLATION="uid")
    assert results.problems(res) == []
    assert "uid (no namespaces)" in res["output"], res["output"][:2000]
    full = sum(t["max_score"] for t in res["tests"])
    assert res["score"] == pytest.approx(full) and full > 0, res["output"][:3000]
    time.sleep(1)
    with open(root / "results" / "results.json") as f:
        assert json.load(f) == res     # nothing rewrote it after run_autograder
    assert (root / "source" / "lab" / "grade").read_bytes() == source_before
    assert not (root / "source" / "lab" / "planted").exists()
    assert stat.S_IMODE(os.stat(root).st_mode) & 0o077 == 0
    assert _processes_under(marker) == [] and _processes_under(root) == []
    assert '"role_weights"' not in run.stdout   # the config it tried to read never reached the log


def test_gradescope_refuses_to_grade_unconfined(platform):
    root = platform
    handin(root / "submission")
    res, _ = run_autograder(root, timeout=300, CALCLAB_ISOLATION="none", CALCLAB_ALLOW_UNCONFINED="0")
    assert res["score"] == 0
    assert "not graded: cannot confine the programs here: disabled by CALCLAB_ISOLATION=none" in \
        res["output"].replace("\\", ""), res["output"][:2000]


def test_docker_trial_says_why_it_cannot_run():
    """tests/docker/gradescope_trial.py repeats the Docker trial where an engine runs (by hand: it
    makes an image with debootstrap and takes minutes); elsewhere it skips, saying why, exit 77."""
    engine = shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True,
                                                       timeout=60).returncode == 0
    if engine:
        pytest.skip("a Docker engine runs here: run tests/docker/gradescope_trial.py by hand (minutes, downloads)")
    r = subprocess.run([PY, os.path.join(ROOT, "tests", "docker", "gradescope_trial.py")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 77, r.stdout + r.stderr
    assert r.stdout.startswith("trial: skipped: no docker client") or \
        r.stdout.startswith("trial: skipped: no Docker engine reachable"), r.stdout
