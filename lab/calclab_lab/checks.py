"""A scenario run's named checks: calc-sniff's wire checks, and what only the lab sees.

Every wire check (connections, handshake, request-size, request-header, response-size,
segmentation, teardown, rst, upstream-connections, cache-hit-no-upstream, refused-answer, ordering) comes from
`calc-sniff verify --json` as it is.  The lab adds what only it can see: whether the answers on
the wire say what the reference's say (answer-result, read from calc-sniff's decoded messages),
what the clients printed for the answers they received (client-result, client-steps), the
answers to the bad requests it sends itself (malformed-answer), and the programs that would not
start or were stopped (programs).

Each check holds items (Item), one per thing looked at: passed, role, detail, conn, packets,
time; checks and items are frozen values; its score is its points times the share of items that pass (partial
credit)."""
from dataclasses import dataclass, replace

from . import oracle
from .gradebook import ROLES, UntypedItem
from .oracle import REFUSED_ERROR, REFUSED_TEXT
from .values import Fields

CLIENT_CONN_ROLES = ("client->server", "client->proxy")


def expected_prints(e):
    """What the reference client prints for exchange `e`'s answer (calc-client --local's lines)."""
    return [REFUSED_ERROR] if e.kind == "refused" else oracle.prints(e.expr, e.steps)

POINTS = {
    "connections": 1, "handshake": 1, "request-size": 1, "request-header": 1, "response-size": 1,
    "segmentation": 1, "teardown": 1, "rst": 1, "upstream-connections": 2, "cache-hit-no-upstream": 2, "ordering": 1,
    "refused-answer": 2, "answer-result": 2, "client-result": 2, "client-steps": 1, "malformed-answer": 2, "programs": 0,
}
ORDER = ["connections", "handshake", "request-size", "request-header", "response-size", "segmentation",
         "teardown", "rst", "upstream-connections", "cache-hit-no-upstream", "refused-answer", "ordering", "answer-result", "client-result",
         "client-steps", "malformed-answer", "programs"]


@dataclass(frozen=True)
class Item(Fields):
    """One thing a check looked at: whether it passed, the role whose behaviour it is about (set
    by whoever makes the item: calc-sniff verify, the lab's own checks; nothing downstream reads
    it from the detail), what it says, and where on the wire (connection, frames, time).  An item
    without one of the three roles cannot be made (gradebook.UntypedItem): nobody could be given
    or charged its points."""
    passed: bool
    role: str
    detail: str = ""
    conn: object = None
    packets: tuple = ()
    time: object = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise UntypedItem(f"an item without a role ({self.role!r}: {self.detail[:120]!r})")

    def to_dict(self):
        return {"passed": self.passed, "role": self.role, "detail": self.detail, "conn": self.conn,
                "packets": list(self.packets), "time": self.time}


def item(passed, role, detail, conn=None, packets=(), time=None):
    return Item(bool(passed), role, detail, conn, tuple(packets), time)


@dataclass(frozen=True, init=False)
class Check:
    """A named check of a run: its points and its items, made once (a stage that changes what a
    check says makes a new one: with_items)."""
    name: str
    max_points: float
    items: tuple

    def __init__(self, name, points=None, items=()):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "max_points", POINTS.get(name, 1) if points is None else points)
        object.__setattr__(self, "items", tuple(items))

    def with_items(self, items):
        return Check(self.name, self.max_points, items)

    @property
    def passed(self):
        return bool(self.items) and all(it.passed for it in self.items)

    @property
    def score(self):
        """Its points times the share of its items that pass, to a tenth (halves up)."""
        if not self.items:
            return 0.0
        n, ok = len(self.items), sum(it.passed for it in self.items)
        return round((2 * round(self.max_points * 10) * ok + n) // (2 * n) / 10, 1)

    def failures(self):
        return [it for it in self.items if not it.passed]

    def to_dict(self):
        return {"name": self.name, "passed": self.passed, "score": self.score, "max_score": self.max_points,
                "items": [it.to_dict() for it in self.items]}


class CheckBuilder:
    """A check's items as one producer gathers them, made a Check once (done()); local to the
    function that makes the check."""

    def __init__(self, name, points=None):
        self.name, self.points, self.items = name, points, []

    def add(self, passed, role, detail, **where):
        self.items.append(item(passed, role, detail, **where))

    def done(self):
        return Check(self.name, self.points, self.items)


def from_sniff(check_records):
    """calc-sniff verify's check records as Checks."""
    return [Check(r["name"], items=[item(it.get("passed"), it.get("role"), it.get("detail", ""), it.get("conn"),
                                         it.get("packets") or (), it.get("time"))
                                    for it in r.get("items", [])])
            for r in check_records]


def note_close_first(checks, hold_ms):
    """A teardown item the server or proxy failed by sending the first FIN says that this is a
    race the grader provoked: every client side of a run waited `hold_ms` for the other side to
    close first (runner.CLOSE_WAIT_MS), so the program closes without waiting for its client's
    FIN, and would lose or win the race by chance against a client that closes at once."""
    note = (f" (its client waited {hold_ms} ms for it to close first: it closes without waiting "
            "for its client's FIN, a race it would win or lose by chance against a client that closes at once)")

    def noted(it):
        return replace(it, detail=it.detail + note) if not it.passed and it.role in ("server", "proxy") else it
    return [c.with_items([noted(it) for it in c.items]) if c.name == "teardown" else c for c in checks]


QUOTED_MAX = 64


def _quote(text):
    """A line a program printed or a text from the wire, quoted for a detail: control characters
    made visible, at most QUOTED_MAX characters of it (it comes from the programs under test)."""
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text[:QUOTED_MAX])
    return '"' + shown + ('..."' if len(text) > QUOTED_MAX else '"')


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
             "stdout": "\n".join(expected_prints(e)) + "\n"}
            for i, e in enumerate(exchanges)]


def client_connections(clients, conn_records):
    """Per client run, calc-sniff's records of the connections it opened to the front, in the
    order they began.  A connection is the run's that was alive when its SYN was captured (the
    lab stamps t0 before it starts a client and t1 once it saw it exit; capture stamps come from
    the same clock), so sequential runs never share one.  Among runs alive together (a
    scenario's clients at once) the one with the fewest so far takes it, of those the one that
    ended first (taken in the order of their SYNs, that gives as many runs a connection as can
    have one: the earliest-deadline rule); a connection outside every run (it cannot be, short
    of a clock step) goes to the nearest."""
    conns = sorted((r for r in conn_records if r.get("role") in CLIENT_CONN_ROLES), key=lambda r: r["ts_first"])
    mine = {id(r): [] for r in clients}
    for c in conns:
        ts = c["ts_first"]
        alive = [r for r in clients if r["t0"] <= ts <= (r.get("t1") or float("inf"))]
        if alive:
            pick = min(alive, key=lambda r: (len(mine[id(r)]), r.get("t1") or float("inf"), r["t0"]))
        elif clients:
            pick = min(clients, key=lambda r: min(abs(ts - r["t0"]), abs(ts - (r.get("t1") or r["t0"]))))
        else:
            continue
        mine[id(pick)].append(c)
    return [mine[id(r)] for r in clients]


def _messages(msg_records):
    """(conn, dir) -> that direction's decoded messages in order."""
    out = {}
    for m in msg_records:
        out.setdefault((m["conn"], m.get("dir")), []).append(m)
    for v in out.values():
        v.sort(key=lambda m: m.get("index", 0))
    return out


def _readable(m):
    """A decoded message with its text, or None (none on the wire, bytes missing, undecodable)."""
    return m if m is not None and m.get("result") is not None and not m.get("malformed") else None


def received_answers(clients, conn_records, msg_records):
    """Per client run, what reached it on the first connection it opened: {"connected": it opened
    one, "answer": calc-sniff's decoded record of the first response on it or None, "reset": the
    other side reset it (then the answer may never have reached the client's program)}."""
    msgs = _messages(msg_records)
    out = []
    for mine in client_connections(clients, conn_records):
        resp = msgs.get((mine[0]["id"], "resp"), []) if mine else []
        req = msgs.get((mine[0]["id"], "orig"), []) if mine else []
        out.append({"connected": bool(mine), "answer": _readable(resp[0] if resp else None),
                    "asked_steps": (req[0].get("header") or {}).get("steps", True) if req else True,
                    # Zeek's history: a lowercase letter is the responder's, r its RST
                    "reset": bool(mine) and "r" in mine[0].get("history", "")})
    return out


def _reference_answer(e):
    """The text calc-sniff decodes the reference's answer to exchange `e` to."""
    return REFUSED_TEXT if e.kind == "refused" else oracle.answer_text(e.expr, e.steps)


def _answer_text(m):
    return f"{m['size']}-byte answer {_quote(m['result'])}"


def answer_checks(exchanges, clients, conn_records, msg_records):
    """answer-result: each answer on the wire says what the reference's says, read from calc-sniff's
    decoded messages.  Upstream, the server's answer is the reference's; on the client's
    connection, the front program's: a server's the reference's, a proxy's what the server last
    answered it to the same request in this run (forwarded or cached: relaying the server's
    wrong answer is no fault of the proxy), else the reference's.  Only requests that are the
    exchange's own are judged (another request has another answer)."""
    check = CheckBuilder("answer-result")
    msgs = _messages(msg_records)

    def first(conn, direction):
        got = msgs.get((conn, direction))
        return got[0] if got else None

    upstream, served = {}, []
    for c in conn_records:
        if c.get("role") == "proxy->server" and c.get("upstream_of"):
            if c["upstream_of"].get("request", 1) == 1:   # the connection's first request is judged
                upstream.setdefault(c["upstream_of"]["conn"], []).append(c)
            req, resp = first(c["id"], "orig"), _readable(first(c["id"], "resp"))
            if req is not None and resp is not None:
                served.append((resp["ts_last"], req.get("expression"), resp["result"]))
    served.sort(key=lambda x: x[0])
    for i, (e, mine) in enumerate(zip(exchanges, client_connections(clients, conn_records))):
        if not mine:
            continue
        conn = mine[0]["id"]
        expr = oracle.canonical(e.expr)
        req = first(conn, "orig")
        if req is None or req.get("expression") != expr:
            continue
        want = _reference_answer(e)
        tag = f"client {i + 1} (request {i + 1}, {e.kind}, {e.describe()})"
        for up in upstream.get(conn, []):
            got = _readable(first(up["id"], "resp"))
            if got is not None:
                ok = got["result"] == want
                check.add(ok, "server", f"{tag}: upstream connection #{up['id']}: the server's {_answer_text(got)}"
                          + (", as the reference's" if ok else f"; the reference's says {_quote(want)}"),
                          conn=up["id"], packets=[got["first_packet"]])
        got = _readable(first(conn, "resp"))
        if got is None:
            continue  # no answer: response-size says so
        said = [r for ts, x, r in served if x == expr and ts <= got["ts_first"]] if e.front == "proxy" else []
        if said:
            ok = got["result"] == said[-1]
            detail = f"the proxy's {_answer_text(got)}" + (
                ", what the server answered to this request" if ok else
                f"; the server answered this request {_quote(said[-1])}")
        else:
            ok = got["result"] == want
            detail = f"the {e.front}'s {_answer_text(got)}" + (
                ", as the reference's" if ok else f"; the reference's says {_quote(want)}")
        check.add(ok, e.front, f"{tag}: {detail}", conn=conn, packets=[got["first_packet"]])
    return [check.done()] if check.items else []


def client_checks(exchanges, clients, received=None):
    """client-result and client-steps: each client printed what the reference client prints for
    the answer it received (`received`: per run what received_answers says reached it; without
    the list, the reference's answers).  What the answer itself says is answer-result's
    business: a client that faithfully prints a wrong answer is not at fault, one that prints
    something else than it received is, and so is one that never connected."""
    result, steps = CheckBuilder("client-result"), CheckBuilder("client-steps")
    for i, (e, cl) in enumerate(zip(exchanges, clients)):
        tag = f"client {i + 1} (request {i + 1}, {e.kind}, {e.describe()})"
        body = _printed(cl["stdout"])
        exit_note = "" if cl.get("rc") in (0, 1) else \
            " (it was killed: no exit)" if cl.get("rc") is None else f" (exit status {cl['rc']})"
        reference = expected_prints(e)
        got = next((l for l in body if l.startswith(("Result:", "Got error:"))), None)
        printed = _quote(got) if got else "no result line"
        if received is not None and not received[i]["connected"]:
            result.add(False, "client", f"{tag}: it opened no connection; it printed {printed}{exit_note}")
            continue
        m = received and received[i]["answer"]
        if received is None:
            want, given = reference, "the reference's answer"
        elif m is None or received[i]["reset"]:
            # no answer, or one the other side's RST may have thrown away before the client read
            # it: printing no result is right, printing the answer on the wire too
            invented = [l for l in body if l.startswith("Result:") and (m is None or l != f"Result: {m['result']}")]
            why = "no answer reached it on the wire" if m is None else \
                f"the {e.front} reset the connection after its {_answer_text(m)}"
            result.add(not invented, "client", f"{tag}: {why}; it printed " +
                       (printed if not invented else f"{_quote(invented[0])}, a result it was never given"))
            continue
        else:
            given = f"the {_answer_text(m)} it received"
            if m["header"]["status"] != 200:
                want = ["Got error: " + m["result"].split(": ", 1)[-1]]
            elif e.kind != "refused" and f"Result: {m['result']}" == reference[0]:
                # the reference's answer, steps and all; an answer without the steps the client
                # asked for (a proxy's fault) leaves it only the result line to print
                stripped = received[i].get("asked_steps", True) and not m["header"].get("steps", True)
                want = reference[:1] if stripped else reference
            else:
                want = [f"Result: {m['result']}"]   # its steps cannot be read from the capture
        ok = want[0] in body
        result.add(ok, "client", f"{tag}: printed {printed}{'' if ok else exit_note} "
                   f"for {given}" + ("" if ok else f"; the reference client prints {_quote(want[0])}"))
        if len(want) == 1:
            continue  # an error carries no steps; another answer's steps are not in the capture
        got_steps = body[body.index("Steps:"):] if "Steps:" in body else []
        if got_steps == want[1:]:
            steps.add(True, "client", f"{tag}: the {len(want) - 1} lines of steps, as the reference prints them")
        else:
            first = next((k for k, (g, w) in enumerate(zip(got_steps, want[1:])) if g != w), None)
            diff = (f"; first difference at line {first + 1}: {_quote(got_steps[first])} where the reference prints "
                    f"{_quote(want[1 + first])}") if first is not None else ""
            steps.add(False, "client", f"{tag}: {len(got_steps)} lines of steps printed, the reference prints "
                      f"{len(want) - 1}{diff}")
    return [c.done() for c in (result, steps) if c.items]


def malformed_checks(raw_results, conn_records):
    """The malformed scenario has no golden: the lab is the client.  Its own bad requests must get
    the reference's answers; calc-sniff's records show one accepted connection per request."""
    answers = CheckBuilder("malformed-answer")
    for name, ok, detail in raw_results:
        answers.add(ok, "server", f"{name}: {detail}")
    conns = [c for c in conn_records if c.get("role") == "client->server"]
    connections = CheckBuilder("connections")
    connections.add(len(conns) == len(raw_results), "server",
                    f"{len(conns)} connections to the server for the lab's {len(raw_results)} bad requests"
                    + ("" if len(conns) == len(raw_results) else "; one per request expected"))
    handshake = CheckBuilder("handshake")
    for c in conns:
        handshake.add(c.get("handshake"), "server", f"connection #{c['id']}: 3-way handshake "
                      + ("seen" if c.get("handshake") else "not seen (the server did not accept it)"),
                      conn=c["id"], packets=[c["first_packet"]] if c.get("first_packet") else ())
    return [connections.done(), handshake.done(), answers.done()]


def program_checks(faults):
    """The student's programs that would not start, hung or were stopped (runner.Fault, each with
    the role it plays): one failing item each."""
    if not faults:
        return []
    return [Check("programs", items=[item(False, f.role, f.text) for f in faults])]


def ordered(checks):
    """One list per scenario in the report's order (each name once)."""
    by_name = {}
    for c in checks:
        if c.name in by_name:
            by_name[c.name] = by_name[c.name].with_items(by_name[c.name].items + c.items)
        else:
            by_name[c.name] = c
    return [by_name[n] for n in ORDER if n in by_name] + [c for n, c in by_name.items() if n not in ORDER]
