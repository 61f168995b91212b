"""Interop: our programs mixed with the student-style Python ones (tests/student) in every
combination for scenarios 3.1-3.3 give the same client output as the all-Python run."""
import itertools
import os
import signal

import pytest

from calcproc import PY_FLAVOUR, client

E1 = "(sin(max(2, 3 * 4, 5, 6 * ((7 * 8) / 9), 10 / 11)) / 12) * 13"
E2 = "max(2, 3) + 3"


def normalise(out, port):
    return out.replace(f"{{127.0.0.1:{port}}}", "{HOST}")


def play(procs, scenario, py_server, py_proxy, py_client):
    server, sport = procs.server(student=py_server)
    target = sport
    if scenario != "3.1":
        _, target = procs.proxy(sport, student=py_proxy)
    outs = []
    for i, expr in enumerate((E1, E1, E2)):
        if scenario == "3.3" and i == 1:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
        # calclab's client sends what the student-style one sends under PY (its flavour)
        r = client(target, expr, *([] if py_client else ["--pickle-flavour", PY_FLAVOUR]), student=py_client)
        outs.append((r.returncode, normalise(r.stdout, target)))
    return outs


COMBOS = {
    "3.1": [(s, False, c) for s, c in itertools.product((False, True), repeat=2)],
    "3.2": list(itertools.product((False, True), repeat=3)),
    "3.3": list(itertools.product((False, True), repeat=3)),
}


@pytest.mark.parametrize("scenario", ["3.1", "3.2", "3.3"])
def test_every_combination_matches_all_python(procs, scenario):
    reference = play(procs, scenario, True, True, True)
    assert reference[0][0] == 0 and "Result: -0.38748277824137206" in reference[0][1]
    if scenario == "3.3":
        assert "Connection refused by server" in reference[2][1]
    for combo in COMBOS[scenario]:
        if combo == (True, True, True):
            continue
        got = play(procs, scenario, *combo)
        who = dict(zip(("python_server", "python_proxy", "python_client"), combo))
        assert [o for _, o in got] == [o for _, o in reference], who
