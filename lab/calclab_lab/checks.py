"""A scenario run's named checks: calc-sniff's wire checks, and what only the lab sees.

Every wire check (connections, handshake, request-size, request-header, response-size,
segmentation, teardown, rst, upstream-connections, cache-hit-no-upstream, refused-answer, ordering) comes from
`calc-sniff verify --json` as it is.  The lab adds what only it can see: what the clients
printed (client-result, client-steps), the answers to the bad requests it sends itself
(malformed-answer), and the programs that would not start or were stopped (programs).

Each check holds items, one per thing looked at: {"passed", "role", "detail", "conn",
"packets", "time"}; its score is its points times the share of items that pass (partial
credit)."""
from .scenarios import REFUSED_ERROR, expected_prints

POINTS = {
    "connections": 1, "handshake": 1, "request-size": 1, "request-header": 1, "response-size": 1,
    "segmentation": 1, "teardown": 1, "rst": 1, "upstream-connections": 2, "cache-hit-no-upstream": 2, "ordering": 1,
    "refused-answer": 2, "client-result": 2, "client-steps": 1, "malformed-answer": 2, "programs": 0,
}
ORDER = ["connections", "handshake", "request-size", "request-header", "response-size", "segmentation",
         "teardown", "rst", "upstream-connections", "cache-hit-no-upstream", "refused-answer", "ordering", "client-result",
         "client-steps", "malformed-answer", "programs"]


def item(passed, role, detail, conn=None, packets=(), time=None):
    return {"passed": bool(passed), "role": role, "detail": detail, "conn": conn, "packets": list(packets),
            "time": time}


class Check:
    def __init__(self, name, points=None, items=None):
        self.name = name
        self.max_points = POINTS.get(name, 1) if points is None else points
        self.items = list(items or [])

    def add(self, passed, role, detail, **where):
        self.items.append(item(passed, role, detail, **where))

    @property
    def passed(self):
        return bool(self.items) and all(it["passed"] for it in self.items)

    @property
    def score(self):
        if not self.items:
            return 0.0
        return round(self.max_points * sum(it["passed"] for it in self.items) / len(self.items), 3)

    def failures(self):
        return [it for it in self.items if not it["passed"]]

    def to_dict(self):
        return {"name": self.name, "passed": self.passed, "score": self.score, "max_score": self.max_points,
                "items": [dict(it) for it in self.items]}


def from_sniff(check_records):
    """calc-sniff verify's check records as Checks."""
    return [Check(r["name"], items=[item(it.get("passed"), it.get("role"), it.get("detail", ""), it.get("conn"),
                                         it.get("packets") or (), it.get("time"))
                                    for it in r.get("items", [])])
            for r in check_records]


def _quote(text):
    """A line a program printed, quoted for a detail (control characters made visible)."""
    return '"' + "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text) + '"'


def _printed(stdout):
    """What a client printed, without the reference client's connection log lines."""
    body = []
    for l in stdout.splitlines():
        if l.startswith("{") and (l.endswith(("} Connection established", "} Connection closed"))
                                  or "} Sending request of length " in l or "} Got response of length " in l):
            continue
        body.append(l.split("} ", 1)[1] if l.startswith("{") and "} " in l else l)
    return body


def reference_clients(exchanges):
    """Client records of the reference client playing `exchanges`: what it prints for each."""
    return [{"index": i, "rc": 0,
             "stdout": "\n".join([REFUSED_ERROR] if e.kind == "refused" else expected_prints(e.example)) + "\n"}
            for i, e in enumerate(exchanges)]


def client_checks(exchanges, clients):
    """client-result and client-steps: each client printed what the reference client prints."""
    result, steps = Check("client-result"), Check("client-steps")
    for i, (e, cl) in enumerate(zip(exchanges, clients)):
        tag = f"client {i + 1} (request {i + 1}, {e.kind}, E{e.example})"
        body = _printed(cl["stdout"])
        exit_note = "" if cl.get("rc") in (0, 1) else \
            " (it was killed: no exit)" if cl.get("rc") is None else f" (exit status {cl['rc']})"
        if e.kind == "refused":
            ok = REFUSED_ERROR in body
            result.add(ok, "client", f"{tag}: " + ("printed the reference's refused-connection error" if ok else
                       f"printed {_quote(body[0]) if body else 'nothing'}{exit_note}; the reference prints "
                       f"{_quote(REFUSED_ERROR)}"))
            continue
        want = expected_prints(e.example)
        got = next((l for l in body if l.startswith("Result:")), None)
        ok = got == want[0]
        result.add(ok, "client", f"{tag}: printed {_quote(got) if got else 'no result line'}" +
                   (", as the reference does" if ok else f"{exit_note}; the reference prints {_quote(want[0])}"))
        got_steps = body[body.index("Steps:"):] if "Steps:" in body else []
        if got_steps == want[1:]:
            steps.add(True, "client", f"{tag}: the {len(want) - 1} lines of steps, as the reference prints them")
        else:
            first = next((k for k, (g, w) in enumerate(zip(got_steps, want[1:])) if g != w), None)
            diff = (f"; first difference at line {first + 1}: {_quote(got_steps[first])} where the reference prints "
                    f"{_quote(want[1 + first])}") if first is not None else ""
            steps.add(False, "client", f"{tag}: {len(got_steps)} lines of steps printed, the reference prints "
                      f"{len(want) - 1}{diff}")
    return [c for c in (result, steps) if c.items]


def malformed_checks(raw_results, conn_records):
    """The malformed scenario has no golden: the lab is the client.  Its own bad requests must get
    the reference's answers; calc-sniff's records show one accepted connection per request."""
    answers = Check("malformed-answer")
    for name, ok, detail in raw_results:
        answers.add(ok, "server", f"{name}: {detail}")
    conns = [c for c in conn_records if c.get("role") == "client->server"]
    connections = Check("connections")
    connections.add(len(conns) == len(raw_results), "server",
                    f"{len(conns)} connections to the server for the lab's {len(raw_results)} bad requests"
                    + ("" if len(conns) == len(raw_results) else f"; one per request expected"))
    handshake = Check("handshake")
    for c in conns:
        handshake.add(c.get("handshake"), "server", f"connection #{c['id']}: 3-way handshake "
                      + ("seen" if c.get("handshake") else "not seen (the server did not accept it)"),
                      conn=c["id"], packets=[c["first_packet"]] if c.get("first_packet") else ())
    return [connections, handshake, answers]


def program_checks(errors):
    """The programs that would not start, hung or were stopped: one failing item each."""
    if not errors:
        return []
    c = Check("programs")
    for e in errors:
        who = e.split(":", 1)[0].split()[0] if ":" in e else ""
        c.add(False, who if who in ("client", "proxy", "server") else "client", e)
    return [c]


def ordered(checks):
    """One list per scenario in the report's order (each name once)."""
    by_name = {}
    for c in checks:
        if c.name in by_name:
            by_name[c.name].items += c.items
        else:
            by_name[c.name] = c
    return [by_name[n] for n in ORDER if n in by_name] + [c for n, c in by_name.items() if n not in ORDER]
