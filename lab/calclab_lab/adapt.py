"""Grading a student's client as it is: it sends its own expression (the skeleton's client
hard-codes one), so a scenario is judged against what the requests it really sent must get.

After the run, calc-sniff's reading of the capture gives each request's expression; each client
run's requests are those on the connections it opened.  Where they differ from the scenario's,
the scenario is rewritten with them (the kinds follow the reference proxy's cache rule: a request
seen before is a hit, a new one a miss, or refused once the server is down), the rewritten
scenario is played by calclab's own programs (byte-exact drop-ins for the reference) into a fresh
capture, and the student's run is judged against that: calc-sniff verifies it with that capture
as the golden, the lab's client checks expect the printouts of those expressions.

A client run that opens several connections or sends several requests on one connection is
reported by the check client-one-connection-per-request; its first request stands for the run."""
import fcntl
import hashlib
import json
import os
import tempfile
import threading

from . import checks as checks_mod
from . import procs, runner
from .scenarios import EXAMPLES, SCENARIOS, Client, Scenario, Sleep, Stop, calculator


def client_requests(res):
    """Per client run: the connections it opened to the front and the expressions of the requests
    on them, from calc-sniff's --json records of the capture."""
    msgs = {}
    for m in res.records("msg"):
        if m.get("kind") == "request":
            msgs.setdefault(m["conn"], []).append(m)
    out = []
    for rec, mine in zip(res.clients, checks_mod.client_connections(res.clients, res.records("conn"))):
        exprs = []
        per_conn = []
        for c in mine:
            reqs = sorted(msgs.get(c["id"], []), key=lambda m: m.get("index", 0))
            per_conn.append(len(reqs))
            exprs += [m.get("expression") or "(unreadable request)" for m in reqs]
        out.append({"run": rec["index"] + 1, "connections": len(mine), "requests_per_connection": per_conn,
                    "expressions": exprs, "conns": [c["id"] for c in mine]})
    return out


REUSE_CHECK = "client-one-connection-per-request"

_keys_lock = threading.Lock()


def _canonical(text):
    """The expression as calculator.py prints it, or None when it does not parse or evaluate (such
    a request cannot stand for an exchange: its expected answer is unknown)."""
    try:
        tree = calculator.parse(text)
        calculator.calculate(tree, True)
        return str(tree)
    except Exception:
        return None


def example_key(text):
    """The EXAMPLES key of an expression a client sent: 1 or 2 for the report's examples, else the
    expression itself (registered once per process, so that the scenario machinery can use it)."""
    canon = _canonical(text)
    if canon is None:
        return None
    with _keys_lock:
        for k, v in list(EXAMPLES.items()):
            if _canonical(v) == canon:
                return k
        EXAMPLES[canon] = canon
        return canon


def label(key):
    """How the report names an exchange's expression: E1, E2, or the expression in quotes."""
    return f"E{key}" if isinstance(key, int) else f"'{key}'"


def cache_kinds(scn, keys):
    """The exchange kinds the reference gives to requests `keys` played in `scn`'s actions: direct
    without a proxy; through it a request seen (and cached) before is a hit unless the client asks
    max-age 0, a new one a miss while the server runs and refused once it is stopped.  An answer
    to a max-age 0 request is not stored (the client's time remaining is 0, protocol.md section
    5), so it leaves the cache as it was."""
    kinds, seen, server_up, i = [], set(), True, 0
    for a in scn.actions:
        if isinstance(a, Stop) and a.role == "server":
            server_up = False
        elif isinstance(a, Sleep) and a.seconds > scn.server_cache_control:
            seen.clear()
        elif isinstance(a, Client):
            for k in keys[i:i + a.count]:
                if not scn.uses_proxy:
                    kinds.append("direct")
                elif k in seen and a.max_age != 0:
                    kinds.append("hit")
                elif server_up:
                    kinds.append("miss")
                    if a.max_age != 0:
                        seen.add(k)
                else:
                    kinds.append("refused")
            i += a.count
    return kinds


def adapted_scenario(scn, keys):
    """`scn` with its clients sending `keys`, registered in SCENARIOS under a name of its own."""
    kinds = cache_kinds(scn, keys)
    digest = hashlib.sha1(repr((scn.name, keys)).encode()).hexdigest()[:10]
    name = f"{scn.name}~{digest}"
    if name in SCENARIOS:
        return SCENARIOS[name]
    actions, i = [], 0
    for a in scn.actions:
        if isinstance(a, Client):
            if a.count == 1:
                actions.append(Client(keys[i], kinds[i], max_age=a.max_age))
            else:
                actions.append(Client(keys[i], kinds[i], max_age=a.max_age, count=a.count))
                # the clients started at once ask the same expression (checked by the caller)
            i += a.count
        else:
            actions.append(a)
    title = f"{scn.title}, as the client sent it: " + ", ".join(f"{label(k)} ({kd})" for k, kd in zip(keys, kinds))
    out = Scenario(name, title, scn.roles, actions, server_cache_control=scn.server_cache_control, golden=False)
    with _keys_lock:
        SCENARIOS.setdefault(name, out)
    return SCENARIOS[name]


_replays = {}
_replays_lock = threading.Lock()


def replay(adapted, timeout, ports_base, use_sniff, replay_dir=None):
    """Play `adapted` with calclab's programs, once per process and, with `replay_dir`, once for
    all the processes sharing it (a class's workers: the first one plays it under a file lock,
    the others read its result).  Returns (capture, its ports) to judge a student's run against,
    or None when the replay does not pass the lab's own checks of it (the clients' printouts):
    then nothing can be concluded from it."""
    with _replays_lock:
        if adapted.name in _replays:
            return _replays[adapted.name]
    if replay_dir:
        os.makedirs(replay_dir, exist_ok=True)
        with open(os.path.join(replay_dir, adapted.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            out = _shared_replay(adapted, timeout, ports_base, use_sniff, os.path.join(replay_dir, adapted.name))
    else:
        out = _play_replay(adapted, timeout, ports_base, use_sniff, tempfile.mkdtemp(prefix="calclab-replay-"))
    with _replays_lock:
        _replays[adapted.name] = out
    return out


def _shared_replay(adapted, timeout, ports_base, use_sniff, wd):
    done = os.path.join(wd, "replay.json")
    try:
        with open(done) as f:
            got = json.load(f)
        return (got["pcap"], got["ports"]) if got["ok"] else None
    except (OSError, ValueError, KeyError):
        pass
    out = _play_replay(adapted, timeout, ports_base, use_sniff, wd)
    with open(done, "w") as f:
        json.dump({"ok": out is not None, "pcap": out and out[0], "ports": out and out[1]}, f)
    return out


def _play_replay(adapted, timeout, ports_base, use_sniff, wd):
    res = runner.play(adapted.name, runner.templates_for("c"), ports_base=ports_base, workdir=wd,
                      timeout=timeout, golden=None, use_sniff=use_sniff, capture_only=True)
    runner.judge(res, None)
    front = "client->proxy" if adapted.uses_proxy else "client->server"
    ok = res.lab_passed and len([c for c in res.records("conn") if c.get("role") == front]) == len(adapted.exchanges)
    return (res.pcap, dict(res.ports)) if ok else None


def _reuse_check(sent):
    ck = checks_mod.Check(REUSE_CHECK, points=1)
    for run in sent:
        n, per = run["connections"], run["requests_per_connection"]
        ok = n == 1 and per == [1]
        if ok:
            detail = f"client run {run['run']}: one request on one connection"
        elif n == 0:
            detail = f"client run {run['run']}: no connection"
        elif n == 1:
            detail = (f"client run {run['run']}: {per[0]} requests on one connection (reused), "
                      "the reference client opens one connection per request")
        else:
            detail = f"client run {run['run']}: {n} connections with {sum(per)} requests, expected one request on one"
        ck.add(ok, "client", detail, conn=run["conns"][0] if run["conns"] else None)
    return ck


def exchange_output(clients):
    """The client records with each run's output cut after its last 'Connection closed' line: what
    an interactive client prints after the exchange (its menu's next prompt) is not part of it."""
    out = []
    for rec in clients:
        lines = rec["stdout"].splitlines(keepends=True)
        ends = [i for i, l in enumerate(lines) if l.rstrip().endswith("} Connection closed")]
        out.append(dict(rec, stdout="".join(lines[:ends[-1] + 1]) if ends else rec["stdout"]))
    return out


def _rejudge(res, golden, golden_ports):
    """Judge `res` again (against `golden`) on the clients' exchange output."""
    shown = res.clients
    res.clients = exchange_output(shown)
    try:
        runner.judge(res, golden, golden_ports=golden_ports)
    finally:
        res.clients = shown


def adapt(res, timeout=15.0, use_sniff=True, ports_base=None, replay_dir=None):
    """Re-judge `res` (a run with the student's client) on the requests it sent.  Returns
    {"runs": what each client run sent, "adapted": the rewritten exchanges or None}.  `res` may
    be judged already or only captured (runner.play capture_only: it is judged once, here)."""
    runner.read_capture(res)
    sent = client_requests(res)
    scn = res.scenario
    own = [e.example for e in scn.exchanges]
    keys = []
    for e, run in zip(scn.exchanges, sent):
        k = example_key(run["expressions"][0]) if run["expressions"] else None
        keys.append(e.example if k is None else k)
    grouped_ok, i = True, 0
    for a in scn.actions:
        if isinstance(a, Client):
            grouped_ok &= len(set(keys[i:i + a.count])) == 1
            i += a.count
    adapted = None
    golden, golden_ports = res.golden, None
    if keys != own and grouped_ok and len(keys) == len(own) and scn.golden:
        new = adapted_scenario(scn, keys)
        got = replay(new, timeout, ports_base or procs.free_port_pair, use_sniff, replay_dir)
        if got is not None:
            res.scenario = new
            golden, golden_ports = got
            adapted = ", ".join(f"request {n + 1}: {label(k)} ({e.kind})" for n, (k, e) in enumerate(zip(keys, new.exchanges)))
        else:
            res.errors.append("the scenario could not be adapted to the requests the client sent: calclab's "
                              "replay of them did not pass its own checks")
    _rejudge(res, golden, golden_ports)
    res.checks.append(_reuse_check(sent))
    return {"runs": sent, "adapted": adapted}
