"""The scenarios of the report (scenarios.md) and the lab's extra ones, as data.

A scenario is a list of actions; every `client` action is one expected exchange on the wire:
  direct   client -> server
  miss     client -> proxy, exactly one upstream connection proxy -> server with the same bytes
  hit      client -> proxy, no upstream connection at all
  refused  client -> proxy, the proxy's SYN to the server answered by RST, 170-byte error answer
"""
import os
import sys

from . import paths

sys.path.insert(0, paths.STUDENT)
import calculator  # noqa: E402  (the student-style stand-in: our oracle for expected outputs)

EXAMPLES = {1: calculator.E1, 2: calculator.E2}
SIZES = {1: (687, 564), 2: (376, 60)}
REFUSED_ERROR = ("Got error: ('Internal proxy error', CalculatorServerError('Connection refused by server "
                 "and the request was not in the cache/it was stale'))")
REFUSED_LEN = 170


def expected_prints(example, steps=True):
    """What the client prints between its 'Got response' and 'Connection closed' lines."""
    result, st = calculator.calculate(calculator.parse(EXAMPLES[example]), steps)
    out = [f"Result: {result}"]
    if st:
        out.append("Steps:")
        out.append(f"{st[0]} = {st[1]}")
        out += [" " * len(st[0]) + f" = {s}" for s in st[2:]]
    return out


class Client:
    def __init__(self, example, kind, max_age=65535, count=1):
        self.example, self.kind, self.max_age, self.count = example, kind, max_age, count

    @property
    def front(self):
        return "server" if self.kind == "direct" else "proxy"

    @property
    def sizes(self):
        req, resp = SIZES[self.example]
        return req, (REFUSED_LEN if self.kind == "refused" else resp)


class Stop:
    def __init__(self, role):
        self.role = role


class Sleep:
    def __init__(self, seconds):
        self.seconds = seconds


class Raw:
    """The malformed scenario: the harness itself sends the reference's bad requests."""


class Scenario:
    def __init__(self, name, title, roles, actions, server_cache_control=65535, golden=True):
        self.name, self.title, self.roles, self.actions = name, title, roles, actions
        self.server_cache_control = server_cache_control
        self.golden = golden

    @property
    def exchanges(self):
        out = []
        for a in self.actions:
            if isinstance(a, Client):
                out += [a] * a.count
        return out

    @property
    def uses_proxy(self):
        return "proxy" in self.roles


SCENARIOS = {
    "3.1": Scenario("3.1", "direct: client -> server: E1, E1, E2", ["server"],
                    [Client(1, "direct"), Client(1, "direct"), Client(2, "direct")]),
    "3.2": Scenario("3.2", "proxy: E1 (miss), E1 (hit), E2 (miss)", ["server", "proxy"],
                    [Client(1, "miss"), Client(1, "hit"), Client(2, "miss")]),
    "3.3": Scenario("3.3", "server down after request 1: E1 (miss), E1 (hit), E2 (refused)",
                    ["server", "proxy"],
                    [Client(1, "miss"), Stop("server"), Client(1, "hit"), Client(2, "refused")]),
    "stale": Scenario("stale", "server max-age 2 s: E1 (miss), wait 3 s, E1 (stale: miss again)",
                      ["server", "proxy"], [Client(1, "miss"), Sleep(3.2), Client(1, "miss")],
                      server_cache_control=2),
    "reload": Scenario("reload", "E1 (miss), E1 with client max-age 0 (reload: miss again)",
                       ["server", "proxy"], [Client(1, "miss"), Client(1, "miss", max_age=0)]),
    "concurrent": Scenario("concurrent", "E1 (miss), then 6 clients at once asking E1 (all hits)",
                           ["server", "proxy"], [Client(1, "miss"), Client(1, "hit", count=6)]),
    "malformed": Scenario("malformed", "the reference's bad requests straight to the server",
                          ["server"], [Raw()], golden=False),
}

GRADABLE = ["3.1", "3.2", "3.3"]


def protocol_vectors():
    import json
    with open(os.path.join(paths.VECTORS, "legacy-protocol.jsonl")) as f:
        return [v for v in map(json.loads, f) if v["kind"] == "server" and v["response"]]
