"""The lab's model of the reference proxy's cache (adapt.cache_kinds), which decides what an
adapted scenario expects of each request a student's client really sent (protocol.md section 5)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "lab"))
from calclab_lab.adapt import cache_kinds  # noqa: E402
from calclab_lab.scenarios import SCENARIOS, Client, Scenario, Sleep, Stop  # noqa: E402

pytestmark = pytest.mark.build_independent


def proxy_scenario(*actions, cache_control=65535):
    return Scenario("t", "test", ["server", "proxy"], list(actions), server_cache_control=cache_control)


@pytest.mark.parametrize("name,keys,kinds", [
    ("3.1", [1, 1, 2], ["direct", "direct", "direct"]),
    ("3.2", [1, 1, 2], ["miss", "hit", "miss"]),
    ("3.2", [1, 1, 1], ["miss", "hit", "hit"]),          # a client that hard-codes E1
    ("3.2", [2, 2, 2], ["miss", "hit", "hit"]),
    ("3.3", [1, 1, 2], ["miss", "hit", "refused"]),
    ("3.3", [1, 1, 1], ["miss", "hit", "hit"]),          # never meets the refused case
    ("3.3", [2, 1, 2], ["miss", "refused", "hit"]),
    ("reload", [1, 1], ["miss", "miss"]),
    ("stale", [1, 1], ["miss", "miss"]),
])
def test_kinds_of_the_report_scenarios(name, keys, kinds):
    assert cache_kinds(SCENARIOS[name], keys) == kinds


def test_an_answer_to_max_age_0_is_not_stored():
    # the client's time remaining is 0 - age: the reference forwards and does not store
    scn = proxy_scenario(Client(1, "miss", max_age=0), Client(1, "miss"), Client(1, "hit"))
    assert cache_kinds(scn, [1, 1, 1]) == ["miss", "miss", "hit"]


def test_a_reload_leaves_the_stored_answer_in_place():
    scn = proxy_scenario(Client(1, "miss"), Client(1, "miss", max_age=0), Client(1, "hit"))
    assert cache_kinds(scn, [1, 1, 1]) == ["miss", "miss", "hit"]


def test_a_wait_past_the_servers_cache_control_empties_the_cache():
    scn = proxy_scenario(Client(1, "miss"), Sleep(3.2), Client(1, "miss"), Stop("server"), Client(1, "hit"),
                         cache_control=2)
    assert cache_kinds(scn, [1, 1, 1]) == ["miss", "miss", "hit"]
