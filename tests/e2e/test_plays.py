"""lab/grade --plays N: a scenario played N times is judged as one (lab/calclab_lab/plays.py),
without processes: judged plays are made of checks here."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "lab"))
from calclab_lab import checks, plays  # noqa: E402


def teardown(*verdicts, role="server"):
    return checks.Check("teardown", items=[
        checks.item(ok, role, f"connection {i + 1}: " + ("as in the reference" if ok else "the server sent the first FIN"))
        for i, ok in enumerate(verdicts)])


def handshake(n):
    return checks.Check("handshake", items=[checks.item(True, "server", f"connection {i + 1}: 3-way handshake seen")
                                            for i in range(n)])


def merged(plays_):
    """plays.merge_checks of the plays' checks, which must be left as they were."""
    before = [list(p) for p in plays_]
    got = plays.merge_checks(plays_)
    assert [list(p) for p in plays_] == before
    return got


@pytest.mark.build_independent
def test_an_item_failing_in_any_play_fails_and_is_listed_as_a_race():
    runs = [[handshake(3), teardown(True, True, True)],
            [handshake(3), teardown(True, False, True)],
            [handshake(3), teardown(True, False, True)]]
    got, races = merged(runs)
    by = {c.name: c for c in got}
    assert [it.passed for it in by["teardown"].items] == [True, False, True]
    assert by["teardown"].items[1].detail == ("connection 2: the server sent the first FIN "
                                              "(seen in 2 of 3 plays: 2, 3; packets of play 2)")
    assert by["handshake"].passed
    assert races == [{"check": "teardown", "role": "server", "failed_in": [2, 3], "plays": 3,
                      "detail": by["teardown"].items[1].detail}]


@pytest.mark.build_independent
def test_the_same_verdict_in_every_play_is_no_race():
    got, races = merged([[teardown(True, False)], [teardown(True, False)]])
    assert races == []
    assert got[0].items[1].detail == "connection 2: the server sent the first FIN"


@pytest.mark.build_independent
def test_plays_with_other_numbers_of_items_keep_the_worst():
    got, races = merged([[teardown(True, True)], [teardown(True, True, False)], [teardown(True, True)]])
    assert [it.passed for it in got[0].items] == [True, True, False]
    assert len(races) == 1 and races[0]["failed_in"] == [2] and races[0]["role"] == "server"
    assert "the 3 plays had 2 (0 failed), 3 (1 failed), 2 (0 failed) items; play 2's are kept" in races[0]["detail"]
