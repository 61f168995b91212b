"""The grading policy on hand-made judged items: no program runs, no capture is read.

Point tables in half points adding up to each role's weight, a run's checks scored to a tenth,
penalties said as what they are, blame read from the items' typed roles only, lab errors worth
no points."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "lab"))
from calclab_lab import gradebook  # noqa: E402

pytestmark = pytest.mark.build_independent


def item(role, passed=True, conn=None, detail="seen"):
    return {"role": role, "passed": passed, "conn": conn, "detail": detail}


def check(name, *items, points=1):
    return {"name": name, "max_score": points, "items": list(items)}


def one_decimal(x):
    return isinstance(x, float) and round(x, 1) == x and repr(x) == repr(round(x, 1))


def test_allocate_is_half_points_adding_up_exactly():
    shares = {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    got = gradebook.allocate(400, shares)
    assert sum(got.values()) == 400 and all(v % 5 == 0 for v in got.values())
    assert sorted(got.values()) == [130, 135, 135]
    # a tiny share still gets half a point while there are half points enough
    got = gradebook.allocate(200, {"big": 1000.0, "tiny": 0.001})
    assert got == {"big": 195, "tiny": 5}
    # deterministic on ties: the first key first
    assert gradebook.allocate(15, {"x": 1, "y": 1}) == {"x": 10, "y": 5}
    assert gradebook.allocate(0, {"x": 1}) == {"x": 0}


def test_default_weights_are_40_40_20_in_half_points():
    raw = {"3.1": {("response-size", "server"): 1.0, ("teardown", "client"): 0.7, ("answer-result", "server"): 2.0},
           "3.2": {("cache-hit-no-upstream", "proxy"): 2.0, ("response-size", "proxy"): 0.6,
                   ("response-size", "server"): 0.4, ("client-result", "client"): 2.0}}
    tables = gradebook.weighted_tables(raw)
    maxima = gradebook.role_maxima(tables.values())
    assert maxima == {"server": 400, "proxy": 400, "client": 200}
    assert all(t % 5 == 0 and t > 0 for table in tables.values() for t in table.values())
    w = gradebook.weighted_tables(raw, {"client": 10.5})
    assert gradebook.role_maxima(w.values()) == {"server": 400, "proxy": 400, "client": 105}


def test_weights_are_whole_or_half_points():
    assert gradebook.parse_weights("server=40,proxy=37.5,client=22.5") == {"server": 40, "proxy": 37.5, "client": 22.5}
    for bad in ("server=33.3", "server=0", "teacher=1", "server=1,server=2", "server"):
        with pytest.raises(ValueError):
            gradebook.parse_weights(bad)


def test_partial_credit_to_a_tenth_and_the_role_total_exact():
    table = {("response-size", "server"): 100, ("segmentation", "server"): 50, ("answer-result", "server"): 50}
    checks = [check("response-size", item("server"), item("server", False), item("server", False)),
              check("segmentation", item("server"), item("client")),
              check("answer-result", item("server"))]
    out, roles, untested = gradebook.role_checks(checks, ["server"], table)
    by = {c["name"]: c for c in out}
    assert (by["response-size"]["score"], by["response-size"]["max_score"]) == (3.3, 10.0)   # 1/3 of 10
    assert roles == {"server": {"score": 13.3, "max_score": 20.0}} and untested == []
    for c in out:
        assert one_decimal(c["score"]) and one_decimal(c["max_score"])


def test_untested_check_passes_its_points_on():
    table = {("client-result", "client"): 100, ("refused-answer", "client"): 50}
    out, roles, untested = gradebook.role_checks([check("client-result", item("client"))], ["client"], table)
    assert roles["client"] == {"score": 15.0, "max_score": 15.0} and untested == ["client refused-answer"]
    assert out[0]["max_score"] == 15.0


def test_penalty_reads_as_what_it_is():
    table = {("answer-result", "server"): 100}
    checks = [check("answer-result", item("server")),
              check("teardown", item("server", False, detail="the server sent the first FIN"), item("client"))]
    out, roles, _ = gradebook.role_checks(checks, ["server"], table)
    tear = next(c for c in out if c["name"] == "teardown")
    assert (tear["score"], tear["max_score"], tear["penalty"]) == (0.0, 0.0, 1.0)
    assert tear["penalty_reason"] == "-1: the server sent the first FIN"
    assert roles["server"] == {"score": 9.0, "max_score": 10.0}


def test_blame_is_typed_never_read_from_text():
    checks = [check("handshake", {"passed": False, "detail": "upstream handshake led by the server"})]
    with pytest.raises(gradebook.UntypedItem):
        gradebook.role_checks(checks, ["server"], {("handshake", "server"): 10})
    # a teardown on a connection the proxy reset is the proxy's, by the items' conn ids
    checks = [check("rst", item("proxy", False, conn=3)), check("teardown", item("client", False, conn=3))]
    out, roles, _ = gradebook.role_checks(checks, ["proxy"], {("rst", "proxy"): 50, ("teardown", "proxy"): 50})
    assert {c["name"]: c["passed"] for c in out} == {"rst": False, "teardown": False}
    assert roles["proxy"]["score"] == 0.0


def test_entry_sums_tenths_and_a_lab_error_has_no_points():
    maxima = {"server": 400, "proxy": 400, "client": 200}
    scn = [{"roles": {"server": {"score": 0.1, "max_score": 10.0}, "client": {"score": 0.2, "max_score": 5.0}}}]
    e = gradebook.entry("alice", "graded", scn, maxima=maxima)
    assert e["score"] == 0.3 and repr(e["score"]) == "0.3" and e["max_score"] == 100.0
    lab = gradebook.entry("bob", "lab error: calclab's server: not listening", maxima=maxima)
    assert lab["score"] is None and all(v["score"] is None for v in lab["roles"].values())
    assert lab["max_score"] == 100.0 and gradebook.is_lab_error(lab)


def test_every_output_of_an_entry_has_at_most_one_decimal():
    """Gradescope's results.json and the template mode's check scores (JUnit, text, Gradescope) show
    points with at most one decimal, sums included."""
    sys.path.insert(0, os.path.join(ROOT, "lab"))
    from gradescope import results
    from calclab_lab import checks
    table = {("response-size", "server"): 35, ("segmentation", "server"): 35, ("answer-result", "server"): 30}
    made = [check("response-size", item("server"), item("server", False), item("server", False)),
            check("segmentation", *[item("server", k % 3 == 0) for k in range(7)]),
            check("answer-result", item("server"), item("server", False), item("server"))]
    out, roles, _ = gradebook.role_checks(made, ["server"], table)
    e = gradebook.entry("alice", "graded", [{"scenario": "3.1", "passed": False, "roles": roles, "checks": out}],
                        maxima={"server": 100})
    res = results.from_entry(e, 12.3)
    nums = [res["score"]] + [t[k] for t in res["tests"] for k in ("score", "max_score")]
    assert all(round(x, 1) == x and len(repr(float(x)).split(".")[1]) <= 1 for x in nums), nums
    c = checks.Check("teardown", points=1, items=[checks.item(k < 2, "client", "x") for k in range(3)])
    assert c.score == 0.7 and repr(c.score) == "0.7"


def test_template_outputs_are_made_from_the_entry():
    """lab/grade with templates writes JUnit, its text and its exit from the same entry as a
    hand-in's: a testcase per check and graded role, the penalty said, one decimal at most."""
    from calclab_lab import report
    table = {("answer-result", "server"): 35, ("response-size", "server"): 65}
    made = [check("answer-result", item("server"), item("server", False, detail="E2 answered 3"), item("server")),
            check("response-size", item("server"), item("proxy", False)),
            check("teardown", item("server", False, detail="the server sent the first FIN"), item("client"))]
    out, roles, _ = gradebook.role_checks(made, ["server"], table)
    e = gradebook.entry("templates", "graded", [{"scenario": "3.1", "passed": False, "roles": roles, "checks": out}],
                        maxima={"server": 100})
    assert report.points_text(e) == "7.8/10 (server 7.8/10)" and not report.full_marks(e)
    suites = report.junit(e, [], 1.5)
    cases = {(c.get("classname"), c.get("name")): c for c in suites.iter("testcase")}
    assert set(cases) == {("calclab.scenario_3_1.server", n) for n in ("answer-result", "response-size", "teardown")}
    assert suites.get("tests") == "3" and suites.get("failures") == "2"
    fail = cases[("calclab.scenario_3_1.server", "teardown")].find("failure")
    assert fail.get("message") == "3.1 teardown (server): 0/0 (penalty -1: the server sent the first FIN)"
    assert cases[("calclab.scenario_3_1.server", "answer-result")].find("failure").get("message") == \
        "3.1 answer-result (server): 2.3/3.5"
    full = dict(e, score=10.0, scenarios=[{"scenario": "3.1", "checks": [dict(c, passed=True) for c in out]}])
    assert report.full_marks(full)


def test_csv_columns_add_up_to_the_score(tmp_path):
    """grades.csv shows the integration section's and the captures' points beside the roles', so a
    row's parts add up to its score; a lab error has none."""
    import csv
    maxima = {"server": 400, "proxy": 400, "client": 200}
    scn = [{"scenario": "3.1", "checks": [], "roles": {"server": {"score": 35.5, "max_score": 40.0}}}]
    integ = gradebook.integration([{"roles": {"server": {"score": 2.5, "max_score": 5.0}}}], 100, "graded")
    a = gradebook.entry("alice", "graded", scn, maxima=maxima, integration=integ)
    a["captures"] = [{"scenario": "3.1", "score": 0.5, "max_score": 1.0}]
    a["score"], a["max_score"] = round(a["score"] + 0.5, 1), round(a["max_score"] + 1, 1)
    b = gradebook.entry("bob", "lab error: calc-sniff died", maxima=maxima,
                        integration=gradebook.integration([], 100, "lab error: calc-sniff died"))
    gradebook.write_csv(str(tmp_path / "g.csv"), [a, b])
    with open(tmp_path / "g.csv") as f:
        head, ra, rb = list(csv.reader(f))
    assert head == ["submission", "score", "max_score", "server", "proxy", "client", "status", "integration", "captures"]
    assert ra == ["alice", "38.5", "111", "35.5", "0", "0", "graded", "2.5", "0.5"]
    assert sum(float(x) for x in ra[3:6] + ra[7:9]) == float(ra[1])
    assert rb[1] == "" and rb[7:9] == ["", ""]
