"""The lab's model of the reference proxy's cache (scenarios.kinds, adapt.cache_kinds), which
decides what a scenario file's exchanges and an adapted scenario expect of each request
(docs/protocol.md section 5).  The expressions' keys come from calclab's calc-client (--local)."""
import os
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "lab"))
from calclab_lab import oracle  # noqa: E402
from calclab_lab.adapt import cache_kinds  # noqa: E402
from calclab_lab.scenarios import SCENARIOS, ScenarioError, parse  # noqa: E402

BUILD = os.environ.get("CALCLAB_BUILD") or os.environ.get("CALC_BUILD_DIR") or os.path.join(ROOT, "build")
if not os.access(os.path.join(BUILD, "calc-client"), os.X_OK):
    pytest.fail(f"calc-client is not built in {BUILD}: the lab's oracle", pytrace=False)

E = {1: oracle.canonical(SCENARIOS["3.2"].exchanges[0].expr),
     2: oracle.canonical(SCENARIOS["3.2"].exchanges[2].expr)}


def kinds_of(text):
    return [e.kind for e in parse(textwrap.dedent(text), "t").exchanges]


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
    assert cache_kinds(SCENARIOS[name], [E[k] for k in keys]) == kinds


def test_builtins_kinds_follow_from_the_rules():
    got = {n: [e.kind for e in s.exchanges] for n, s in SCENARIOS.items()}
    assert got == {"3.1": ["direct"] * 3, "3.2": ["miss", "hit", "miss"], "3.3": ["miss", "hit", "refused"],
                   "stale": ["miss", "miss"], "reload": ["miss", "miss"], "concurrent": ["miss"] + ["hit"] * 6,
                   "errors": ["miss", "miss", "hit", "hit"], "no-steps": ["miss", "miss", "hit", "hit"],
                   "malformed": []}


def test_an_answer_to_max_age_0_is_not_stored():
    # the client's time remaining is 0 - age: the reference forwards and does not store
    assert kinds_of("""
        [[steps]]
        ask = "E1"
        max-age = 0
        [[steps]]
        ask = "E1"
        [[steps]]
        ask = "E1"
    """) == ["miss", "miss", "hit"]


def test_a_reload_leaves_the_stored_answer_in_place():
    assert kinds_of("""
        [[steps]]
        ask = "E1"
        [[steps]]
        ask = "E1"
        max-age = 0
        [[steps]]
        ask = "E1"
    """) == ["miss", "miss", "hit"]


def test_a_wait_past_the_servers_cache_control_empties_the_cache():
    assert kinds_of("""
        server-cache-control = 2
        [[steps]]
        ask = "E1"
        [[steps]]
        pause = 3.2
        [[steps]]
        ask = "E1"
        [[steps]]
        stop = "server"
        [[steps]]
        ask = "E1"
    """) == ["miss", "miss", "hit"]


def test_the_key_is_the_payload_with_the_steps_flag_and_errors_are_cached():
    # "2*3" and "2 * 3" are one payload; without steps it is another key; 1/0's 400 is stored
    assert kinds_of("""
        [[steps]]
        ask = "2*3"
        [[steps]]
        ask = "2 * 3"
        [[steps]]
        ask = "2 * 3"
        steps = false
        [[steps]]
        ask = "1/0"
        [[steps]]
        stop = "server"
        [[steps]]
        ask = "1 / 0"
        [[steps]]
        ask = "2 * 3"
        cache = false
    """) == ["miss", "hit", "miss", "miss", "hit", "refused"]


def test_a_server_that_forbids_caching_makes_every_request_a_miss():
    assert kinds_of("""
        server-cache-control = 0
        [[steps]]
        ask = "E2"
        [[steps]]
        ask = "E2"
        clients = 3
    """) == ["miss"] * 4


@pytest.mark.parametrize("text,why", [
    ('[[steps]]\nask = "E1"\nclients = 3\n', "depends on timing"),            # racy: who hits?
    ('server-cache-control = 2\n[[steps]]\nask = "E1"\n[[steps]]\npause = 1.5\n[[steps]]\nask = "E1"\n',
     "depends on timing"),                                                   # age 1 or 2 of 2
    ('[[steps]]\nask = "E1"\nkind = "hit"\n', "follows from the reference's rules"),
    ('[[steps]]\nask = "rand(1, 2)"\n', "uses rand"),
    ('[[steps]]\nask = "1 +"\n', "does not take the expression"),
    ('roles = ["server"]\n[[steps]]\nstop = "server"\n[[steps]]\nask = "E1"\n', "stopped"),
    ('[[steps]]\nask = "E1"\ncolour = 3\n', "unknown key"),
    ('[[steps]]\npause = 1\nask = "E1"\n', "exactly one of"),
    ('roles = ["proxy"]\n[[steps]]\nask = "E1"\n', "needs a server"),
    ('[[steps]]\nask = "E1"\nmax-age = -1\n', "max-age"),
    ('title = 3\n[[steps]]\nask = "E1"\n', "title"),
    ('[[steps\n', "not TOML"),
])
def test_files_the_rules_cannot_play_are_refused_with_the_reason(text, why):
    with pytest.raises(ScenarioError) as e:
        parse(text, "t", source="t.toml")
    assert why in str(e.value) and str(e.value).startswith("t.toml")


def test_the_examples_in_the_docs_are_scenarios_the_rules_accept():
    text = open(os.path.join(ROOT, "docs", "scenario-files.md")).read()
    blocks = [b.split("```", 1)[0] for b in text.split("```toml\n")[1:]]
    assert len(blocks) >= 4
    got = [[e.kind for e in parse(b, f"example{n}").exchanges] for n, b in enumerate(blocks)]
    assert got[0] == ["miss", "hit", "refused"]              # E1, the server stopped, E1, E3
    assert ["miss", "hit", "hit", "hit", "refused"] in got
    assert ["miss", "miss"] in got                            # the stale one
