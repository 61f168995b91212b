"""Grading a student's client as it is: it sends its own expression (the skeleton's client
hard-codes one), so a scenario is judged against what the requests it really sent must get.

After the run, calc-sniff's reading of the capture gives each request's expression; each client
run's requests are those on the connections it opened.  Where they differ from the scenario's,
the scenario is rewritten with them (the kinds follow the reference proxy's cache rule: a request
seen before is a hit, a new one a miss, or refused once the server is down) and the run's checks
are evaluated against that."""
import time

from . import checks as checks_mod
from . import sniff

CLIENT_CONN_ROLES = ("client->server", "client->proxy")


def client_requests(res):
    """Per client run: the connections it opened to the front and the expressions of the requests
    on them, from calc-sniff's --json records of the capture."""
    records = res.sniff_json or sniff.describe(res.pcap, res.ports)
    conns = sorted((r for r in records if r.get("type") == "conn" and r.get("role") in CLIENT_CONN_ROLES),
                   key=lambda r: r["ts_first"])
    msgs = {}
    for m in records:
        if m.get("type") == "msg" and m.get("kind") == "request":
            msgs.setdefault(m["conn"], []).append(m)
    out = []
    for rec in res.clients:
        t1 = rec.get("t1") or time.time()
        mine = [c for c in conns if rec["t0"] - 0.01 <= c["ts_first"] <= t1 + 0.01]
        exprs = []
        per_conn = []
        for c in mine:
            reqs = sorted(msgs.get(c["id"], []), key=lambda m: m.get("index", 0))
            per_conn.append(len(reqs))
            exprs += [m.get("expression") or "(unreadable request)" for m in reqs]
        out.append({"run": rec["index"] + 1, "connections": len(mine), "requests_per_connection": per_conn,
                    "expressions": exprs})
    return out


def adapt(res, **_):
    """The requests each client run sent (for the report); the checks stay the scenario's."""
    return client_requests(res)
