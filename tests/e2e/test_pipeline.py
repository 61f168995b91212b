"""The grader's pipeline hands on values that do not change (lab/calclab_lab/runner.py, adapt.py,
plays.py, checks.py): a played Run, its Judgement, the checks and their items are frozen; judging,
adapting and merging plays make new values and leave their inputs as they were; and the modules of
the pipeline keep no mutable state of their own (a grading's ports, replays and point tables are
objects it owns).  Without processes: runs are made of values here (the adapt test asks the lab's
oracle, calc-client --local, what the reference prints)."""
import dataclasses
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "lab"))
from calclab_lab import adapt, checks, classgrade, oracle, plays, runner, scenarios  # noqa: E402
from calclab_lab.values import freeze  # noqa: E402


def played(scn, clients=(), raw=None, errors=(), faults=()):
    """A RunResult as runner.play returns it with capture_only: the Run alone."""
    return runner.RunResult(runner.Run(
        scn, freeze({"proxy": 9998, "server": 9999}), "none", freeze({}), "/nonexistent/run.pcap", tuple(clients),
        freeze({}), (), tuple(faults), tuple(errors), (), False, 1.0, golden=None, raw=raw))


def malformed(*verdicts, errors=()):
    """The malformed scenario's run, judged: the lab's bad requests got answers as `verdicts` say."""
    raw = tuple((f"bad request {i + 1}", ok, "an answer") for i, ok in enumerate(verdicts))
    records = freeze([{"type": "conn", "id": i + 1, "role": "client->server", "handshake": True, "first_packet": 1}
                      for i in range(len(verdicts))])
    return runner.judge(played(scenarios.builtin("malformed"), raw=raw, errors=errors), None, records=records)


@pytest.mark.build_independent
def test_a_judged_run_cannot_be_changed():
    res = malformed(True, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.judgement = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.run.errors = ()
    with pytest.raises(AttributeError):
        res.checks = []
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.checks[0].items[0].passed = False
    with pytest.raises(TypeError):
        res.records("conn")[0]["role"] = "proxy->server"   # calc-sniff's records are read-only
    assert isinstance(res.checks, tuple) and isinstance(res.errors, tuple) and isinstance(res.clients, tuple)
    assert [c.name for c in res.checks] == ["connections", "handshake", "malformed-answer"]
    assert not res.passed and res.to_dict()["checks"][2]["items"][1]["passed"] is False


@pytest.mark.build_independent
def test_judging_makes_a_new_result_and_leaves_the_played_run():
    run = played(scenarios.builtin("malformed"), raw=(("bad request 1", True, "ok"),))
    judged = runner.judge(run, None, records=())
    assert run.judgement is None and run.checks == ()
    assert judged.run is run.run and judged.checks
    # every item's role is the one its check set
    assert {it.role for c in judged.checks for it in c.items} == {"server"}


@pytest.mark.build_independent
def test_merging_plays_leaves_each_play_as_it_was():
    first, second = malformed(True, True), malformed(True, False, errors=("server: exited (1) before the end",))
    before = (first.checks, first.errors, second.checks, second.errors)
    merged, races = plays.merge([first, second])
    assert (first.checks, first.errors, second.checks, second.errors) == before
    assert merged is not first and merged.run is first.run
    assert merged.errors == ("server: exited (1) before the end",)
    assert [r["check"] for r in races] == ["malformed-answer"]


@pytest.mark.build_independent
def test_a_check_made_again_is_a_new_value():
    c = checks.Check("teardown", items=[checks.item(False, "server", "connection 1: the server sent the first FIN")])
    noted = checks.note_close_first([c], 100)
    assert c.items[0].detail == "connection 1: the server sent the first FIN"
    assert noted[0].items[0].detail.startswith(c.items[0].detail + " (its client waited 100 ms")
    both = checks.ordered([c, checks.Check("teardown", items=[checks.item(True, "server", "connection 2")])])
    assert len(both[0].items) == 2 and len(c.items) == 1


def test_adapt_returns_a_new_result_and_leaves_its_input():
    scn = scenarios.builtin("3.1")
    clients, records = [], []
    for i, e in enumerate(scn.exchanges):
        # an interactive client's output: its menu's next prompt after the exchange
        clients.append(runner.ClientRun(i, e, e.kind, ("client.py",), "{127.0.0.1:9999} Connection closed\n"
                                        "Example (1 or 2), or stop: ", 0, 10.0 * i, 10.0 * i + 5))
        records.append({"type": "conn", "id": i + 1, "role": "client->server", "ts_first": 10.0 * i + 1,
                        "history": "ShADadFf"})
        records.append({"type": "msg", "conn": i + 1, "dir": "orig", "kind": "request", "index": 0,
                        "expression": oracle.canonical(e.expr),
                        "header": {"steps": True, "cache": True, "cache_control": 65535}})
    run = runner.RunResult(played(scn, clients).run, runner.Judgement(scn, None, None, freeze(records), (), ()))
    got = adapt.adapt(run, replays=adapt.Replays())
    assert run.checks == () and run.clients == tuple(clients)   # the input is as it was
    assert got.result is not run and got.result.run is run.run and got.adapted is None
    assert got.result.clients[0].stdout.endswith("or stop: ")   # the reports show the whole output
    assert [c.name for c in got.result.checks][-1] == adapt.REUSE_CHECK
    assert [r["requests_per_connection"] for r in got.runs] == [(1,)] * len(clients)


@pytest.mark.build_independent
def test_a_port_block_is_the_graders_own():
    a, b = classgrade.PortBlock(0), classgrade.PortBlock(1)
    assert b.first - a.first == classgrade.PORTS_PER_WORKER
    got = [a() for _ in range(3)]
    assert all(a.first <= p < a.first + classgrade.PORTS_PER_WORKER for p in got)
    assert len(set(got)) == 3


@pytest.mark.build_independent
@pytest.mark.parametrize("module", [runner, adapt, plays, checks, classgrade])
def test_no_module_level_mutable_state(module):
    """Mutable values at module level are constants only (UPPER_CASE tables); anything a
    grading changes (ports, caches, locks) belongs to an object the grading owns."""
    import threading
    lock = type(threading.Lock())
    found = [name for name, v in vars(module).items() if not name.startswith("__") and not name.isupper()
             and isinstance(v, (dict, list, set, bytearray, lock))]
    assert found == []


def test_calclabs_client_is_known_in_either_pickle_flavour():
    """Under an interpreter that pickles enum members by name, calclab's client carries
    --pickle-flavour getattr: it is still calclab's, so its failures are lab errors."""
    from calclab_lab import interp
    for flavour in (interp.BY_VALUE, interp.GETATTR):
        t = runner.templates_for("c", server="python3 server.py {port}", flavour=flavour)
        assert runner.ours_in(t) == {"proxy", "client"}, (flavour, t)
    assert runner.ours_in(runner.templates_for("c", client="python3 client.py", flavour=interp.GETATTR)) \
        == {"server", "proxy"}


@pytest.mark.build_independent
def test_class_workers_own_their_grading_and_a_dead_one_costs_one_hand_in(tmp_path, monkeypatch):
    """grade_class's workers (forked: the stand-in for grade_submission below is theirs too) each
    grade with a Grading of their own (one port block per worker); a worker that dies costs only
    the hand-in it was grading, and an exception of the grader's is that hand-in's row."""
    from calclab_lab import gradebook
    klass, seen = tmp_path / "class", tmp_path / "seen"
    names = ["a", "b", "c", "dies", "d", "raises", "e", "f"]
    for n in names:
        os.makedirs(klass / n)
    os.makedirs(seen)

    def grade_submission(path, out_dir, grading=None, **kw):
        name = os.path.basename(path)
        if name == "dies":
            os._exit(3)
        if name == "raises":
            raise RuntimeError("boom")
        (seen / name).write_text(f"{os.getpid()} {grading.ports.first}")
        return gradebook.entry(name, "graded", maxima={})
    monkeypatch.setattr(classgrade, "grade_submission", grade_submission)
    monkeypatch.setattr(classgrade.PointTables, "__call__", lambda self, *a, **k: {})
    entries = classgrade.grade_class(str(klass), str(tmp_path / "out"), jobs=3)
    by = {e["id"]: e["status"] for e in entries}
    assert by.pop("dies") == "not graded: grader error (its worker process ended with 3)"
    assert by.pop("raises") == "not graded: grader error RuntimeError('boom')"
    assert by == {n: "graded" for n in names if n not in ("dies", "raises")}
    blocks = {}
    for n in by:
        pid, first = (seen / n).read_text().split()
        blocks.setdefault(pid, set()).add(first)
    assert all(len(b) == 1 for b in blocks.values())                  # a worker keeps its block
    assert len({b for v in blocks.values() for b in v}) == len(blocks)  # no two workers share one


@pytest.mark.build_independent
def test_an_item_is_someones():
    """Blame is set where an item is made: one without a role cannot be made, and judging a run
    whose calc-sniff verdict has one is calclab's failure (a lab error), never a guess."""
    from calclab_lab import gradebook
    with pytest.raises(gradebook.UntypedItem):
        checks.item(False, None, "connection 1: the first FIN")
    with pytest.raises(gradebook.UntypedItem):
        checks.from_sniff([{"name": "teardown", "items": [{"passed": True, "detail": "no role"}]}])
    assert checks.item(True, "proxy", "ok").role == "proxy"


@pytest.mark.build_independent
def test_a_role_run_with_races_is_written_as_plain_json(tmp_path):
    """What plays.merge found stays frozen in the RoleRun and is written out as plain JSON."""
    import json
    merged, races = plays.merge([malformed(True, True), malformed(True, False)])
    run = classgrade.RoleRun(merged, ("server",), None, freeze(races))
    table = {("connections", "server"): 10, ("handshake", "server"): 10, ("malformed-answer", "server"): 20}
    part = classgrade._role_part(run, str(tmp_path), table)
    assert json.loads(json.dumps(part))["races"] == [dict(races[0], failed_in=[2])]
    with pytest.raises(TypeError):
        run.races[0]["plays"] = 1
