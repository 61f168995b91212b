"""lab/grade --plays N: a scenario played N times is judged as one (lab/calclab_lab/plays.py),
without processes: judged plays are made of checks here."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "lab"))
from calclab_lab import checks, plays  # noqa: E402


class Play:
    def __init__(self, checks_, errors=()):
        self.checks = checks_
        self.errors = list(errors)


def teardown(*verdicts, role="server"):
    c = checks.Check("teardown")
    for i, ok in enumerate(verdicts):
        c.add(ok, role, f"connection {i + 1}: " + ("as in the reference" if ok else "the server sent the first FIN"))
    return c


def handshake(n):
    c = checks.Check("handshake")
    for i in range(n):
        c.add(True, "server", f"connection {i + 1}: 3-way handshake seen")
    return c


@pytest.mark.build_independent
def test_an_item_failing_in_any_play_fails_and_is_listed_as_a_race():
    runs = [Play([handshake(3), teardown(True, True, True)]),
            Play([handshake(3), teardown(True, False, True)], ["server: exited (1) before the end"]),
            Play([handshake(3), teardown(True, False, True)])]
    races = plays.merge(runs)
    merged = {c.name: c for c in runs[0].checks}
    assert [it["passed"] for it in merged["teardown"].items] == [True, False, True]
    assert merged["teardown"].items[1]["detail"] == ("connection 2: the server sent the first FIN "
                                                     "(seen in 2 of 3 plays: 2, 3; packets of play 2)")
    assert merged["handshake"].passed
    assert races == [{"check": "teardown", "role": "server", "failed_in": [2, 3], "plays": 3,
                      "detail": merged["teardown"].items[1]["detail"]}]
    assert runs[0].errors == ["server: exited (1) before the end"]


@pytest.mark.build_independent
def test_the_same_verdict_in_every_play_is_no_race():
    runs = [Play([teardown(True, False)]), Play([teardown(True, False)])]
    assert plays.merge(runs) == []
    assert runs[0].checks[0].items[1]["detail"] == "connection 2: the server sent the first FIN"


@pytest.mark.build_independent
def test_plays_with_other_numbers_of_items_keep_the_worst():
    runs = [Play([teardown(True, True)]), Play([teardown(True, True, False)]), Play([teardown(True, True)])]
    races = plays.merge(runs)
    assert [it["passed"] for it in runs[0].checks[0].items] == [True, True, False]
    assert len(races) == 1 and races[0]["failed_in"] == [2] and races[0]["role"] == "server"
    assert "the 3 plays had 2 (0 failed), 3 (1 failed), 2 (0 failed) items; play 2's are kept" in races[0]["detail"]
