"""Named checks of a scenario run: what the capture and the client outputs must show.

Each check holds items (one per connection, exchange or line looked at); its score is its points
times the share of items that pass (partial credit).  The names are calc-sniff's where they mean
the same thing (handshake, request-size, response-size, segmentation, teardown, rst,
upstream-connections, cache-hit-no-upstream, refused-answer, ordering)."""
from .scenarios import REFUSED_ERROR, expected_prints

POINTS = {
    "connections": 1, "handshake": 1, "request-size": 1, "response-size": 1, "segmentation": 1,
    "teardown": 1, "rst": 1, "upstream-connections": 2, "cache-hit-no-upstream": 2, "ordering": 1,
    "refused-answer": 2, "client-result": 2, "client-steps": 1, "malformed-answer": 2,
}


class Check:
    def __init__(self, name, points=None):
        self.name = name
        self.max_points = POINTS.get(name, 1) if points is None else points
        self.items = []

    def add(self, ok, detail):
        self.items.append((bool(ok), detail))

    @property
    def passed(self):
        return bool(self.items) and all(ok for ok, _ in self.items)

    @property
    def score(self):
        if not self.items:
            return 0.0
        return round(self.max_points * sum(ok for ok, _ in self.items) / len(self.items), 3)

    def failures(self):
        return [d for ok, d in self.items if not ok]

    def to_dict(self):
        return {"name": self.name, "passed": self.passed, "score": self.score, "max_score": self.max_points,
                "items": [{"ok": ok, "detail": d} for ok, d in self.items]}


def _first_data_t(conn, side):
    d = conn.data(side)
    return d[0].t if d else None


def evaluate(scn, conns, ports, clients, raw_results=None):
    """conns: pcap.Conn list of this run; ports: dict role->port; clients: list of dicts
    (exchange, stdout, rc) in exchange order.  Returns the list of Checks."""
    checks = {}

    def ck(name):
        if name not in checks:
            checks[name] = Check(name)
        return checks[name]

    exchanges = scn.exchanges
    front = ports["proxy"] if scn.uses_proxy else ports["server"]
    client_conns = sorted([c for c in conns if c.server_port == front], key=lambda c: c.start)
    upstream = sorted([c for c in conns if scn.uses_proxy and c.server_port == ports["server"]],
                      key=lambda c: c.start)

    if raw_results is not None:  # malformed: the harness is the client
        ck("connections").add(len(client_conns) == len(raw_results),
                              f"{len(client_conns)} connections to the server for {len(raw_results)} bad requests")
        for c in client_conns:
            ck("handshake").add(c.handshake_ok, f"handshake {c.a[1]} -> {c.b[1]}")
        for name, ok, detail in raw_results:
            ck("malformed-answer").add(ok, f"{name}: {detail}")
        return list(checks.values())

    ck("connections").add(len(client_conns) == len(exchanges),
                          f"{len(client_conns)} client connections to port {front}, expected {len(exchanges)}")
    if scn.uses_proxy:
        # refused attempts are counted per exchange below (SYN retries vary between systems)
        want_up = sum(e.kind == "miss" for e in exchanges)
        est = [u for u in upstream if not u.refused]
        ck("upstream-connections").add(len(est) == want_up,
                                       f"{len(est)} upstream connections to port {ports['server']} in all, "
                                       f"expected {want_up}")
        if not any(e.kind == "refused" for e in exchanges):
            ref = [u for u in upstream if u.refused]
            ck("upstream-connections").add(not ref, f"{len(ref)} refused upstream attempts, expected none")
    claimed = set()
    for i, e in enumerate(exchanges):
        tag = f"request {i + 1} ({e.kind}, E{e.example})"
        req, resp = e.sizes
        c = client_conns[i] if i < len(client_conns) else None
        if c is None:
            for n in ("handshake", "request-size", "response-size", "teardown"):
                ck(n).add(False, f"{tag}: no connection in the capture")
        else:
            ck("handshake").add(c.handshake_ok, f"{tag}: handshake {'complete' if c.handshake_ok else 'incomplete'}")
            rq, rs = [s.plen for s in c.data("a")], [s.plen for s in c.data("b")]
            ck("request-size").add(sum(rq) == req, f"{tag}: request {sum(rq)} bytes, expected {req}")
            ck("response-size").add(sum(rs) == resp, f"{tag}: response {sum(rs)} bytes, expected {resp}")
            ck("segmentation").add(len(rq) == 1 and len(rs) == 1,
                                   f"{tag}: request in {len(rq)} segment(s) {rq}, response in {len(rs)} segment(s) {rs}")
            lead = c.fin_leader
            ck("teardown").add(lead == "a", f"{tag}: teardown led by "
                               + {"a": "the client (FIN first)", "b": "the other side (its FIN first)",
                                  None: "nobody (no FIN)"}[lead])
            ck("rst").add(not c.rst_by, f"{tag}: " + (f"RST sent by {'client' if c.rst_by[0] == 'a' else 'the other side'}"
                                                     if c.rst_by else "no RST"))
        if scn.uses_proxy:
            if c is not None:
                t0 = c.start
                t1 = _first_data_t(c, "b") or c.end
                mine = [u for u in upstream if t0 <= u.start <= t1 and id(u) not in claimed]
            else:
                mine = []
            if e.kind == "hit":
                ck("cache-hit-no-upstream").add(not mine, f"{tag}: {len(mine)} upstream connection(s) during a cache hit")
            elif e.kind == "miss":
                ck("upstream-connections").add(len(mine) == 1, f"{tag}: {len(mine)} upstream connection(s), expected 1")
                for u in mine[:1]:
                    claimed.add(id(u))
                    urq, urs = [s.plen for s in u.data("a")], [s.plen for s in u.data("b")]
                    ck("handshake").add(u.handshake_ok, f"{tag}: upstream handshake")
                    ck("request-size").add(sum(urq) == req, f"{tag}: upstream request {sum(urq)} bytes, expected {req}")
                    ck("response-size").add(sum(urs) == resp, f"{tag}: upstream response {sum(urs)} bytes, expected {resp}")
                    ck("segmentation").add(len(urq) == 1 and len(urs) == 1,
                                           f"{tag}: upstream request in {len(urq)} segment(s), response in {len(urs)}")
                    ck("teardown").add(u.fin_leader == "a", f"{tag}: upstream teardown led by "
                                       + ("the proxy" if u.fin_leader == "a" else "the server" if u.fin_leader else "nobody"))
                    ck("rst").add(not u.rst_by, f"{tag}: upstream " + ("RST seen" if u.rst_by else "no RST"))
                    if c is not None:
                        fin = u.first("a", 0x01)
                        ans = _first_data_t(c, "b")
                        got = _first_data_t(u, "b")
                        ok = fin is not None and ans is not None and got is not None and got <= ans and fin.t <= ans
                        ck("ordering").add(ok, f"{tag}: upstream response, then the proxy's upstream FIN, then the answer"
                                           + ("" if ok else " - order violated or incomplete"))
            elif e.kind == "refused":
                refused = [u for u in mine if u.refused]
                established = [u for u in mine if not u.refused]
                for u in mine:
                    claimed.add(id(u))
                ok = bool(refused) and not established and c is not None and sum(s.plen for s in c.data("b")) == resp
                ck("refused-answer").add(ok, f"{tag}: {len(refused)} refused SYN(s) to the server, "
                                         f"{len(established)} established, answer "
                                         f"{sum(s.plen for s in c.data('b')) if c else 0} bytes (expected {resp})")

    # what the client printed
    for i, (e, cl) in enumerate(zip(exchanges, clients)):
        tag = f"request {i + 1} ({e.kind}, E{e.example})"
        lines = [l for l in cl["stdout"].splitlines()]
        body = [l for l in lines if not (l.startswith("{") and (l.endswith(("} Connection established", "} Connection closed"))
                                                               or "} Sending request of length " in l
                                                               or "} Got response of length " in l))]
        body = [l.split("} ", 1)[1] if l.startswith("{") and "} " in l else l for l in body]
        if e.kind == "refused":
            ck("client-result").add(REFUSED_ERROR in body, f"{tag}: client printed "
                                    f"{body[0] if body else '(nothing)'!r}" + ("" if REFUSED_ERROR in body else
                                                                             f", expected {REFUSED_ERROR!r}"))
            continue
        want = expected_prints(e.example)
        got_result = next((l for l in body if l.startswith("Result:")), None)
        ck("client-result").add(got_result == want[0], f"{tag}: client printed {got_result!r}, expected {want[0]!r}")
        got_steps = body[body.index("Steps:"):] if "Steps:" in body else []
        ck("client-steps").add(got_steps == want[1:], f"{tag}: " + ("steps as expected" if got_steps == want[1:] else
                               f"steps differ: got {len(got_steps)} lines, expected {len(want) - 1}"
                               + (f"; first difference {next((g for g, w in zip(got_steps, want[1:]) if g != w), '')!r}"
                                  if got_steps else "")))
    order = ["connections", "handshake", "request-size", "response-size", "segmentation", "teardown", "rst",
             "upstream-connections", "cache-hit-no-upstream", "ordering", "refused-answer", "client-result",
             "client-steps"]
    return [checks[n] for n in order if n in checks] + [v for k, v in checks.items() if k not in order]


def shape(scn, conns, ports):
    """A run's capture reduced to what must not vary between runs (for comparing with a golden)."""
    front = ports["proxy"] if scn.uses_proxy else ports["server"]
    out = []
    for c in sorted(conns, key=lambda c: c.start):
        role = "client" if c.server_port == front else "upstream"
        out.append((role, c.refused, c.handshake_ok, tuple(s.plen for s in c.data("a")),
                    tuple(s.plen for s in c.data("b")), c.fin_leader, bool(c.rst_by) and not c.refused))
    return out
