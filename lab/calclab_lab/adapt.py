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
import dataclasses
import fcntl
import json
import os
import tempfile
import threading
from dataclasses import dataclass

from . import checks as checks_mod
from . import interp, oracle, procs, runner
from .scenarios import REPORT_EXPRESSIONS, Client, ScenarioError, kinds
from .values import freeze


@dataclass(frozen=True)
class Adapted:
    """What adapt() found: the run judged on the requests its client really sent (`result`, a new
    runner.RunResult), what each client run sent (`runs`, frozen: client_requests), and the
    rewritten exchanges (`adapted`, None when the scenario's own were judged)."""
    result: object
    runs: tuple
    adapted: str = None


def client_requests(clients, records):
    """Per client run (`clients`, the run's ClientRuns): the connections it opened to the front
    and the expressions of the requests on them, from calc-sniff's --json `records` of the
    capture."""
    msgs = {}
    for m in records:
        if m.get("type") == "msg" and m.get("kind") == "request":
            msgs.setdefault(m["conn"], []).append(m)
    conns = [r for r in records if r.get("type") == "conn"]
    out = []
    for rec, mine in zip(clients, checks_mod.client_connections(clients, conns)):
        exprs = []
        per_conn = []
        flags = None
        for c in mine:
            reqs = sorted(msgs.get(c["id"], []), key=lambda m: m.get("index", 0))
            per_conn.append(len(reqs))
            exprs += [m.get("expression") or "(unreadable request)" for m in reqs]
            h = reqs[0].get("header") if reqs and flags is None else None
            if h:
                # the first request's flags as the reference reads them (no cache flag: max-age 0)
                flags = [bool(h.get("steps")), bool(h.get("cache")), int(h.get("cache_control", 0)) if h.get("cache") else 0]
        out.append({"run": rec["index"] + 1, "connections": len(mine), "requests_per_connection": per_conn,
                    "expressions": exprs, "flags": flags, "conns": [c["id"] for c in mine]})
    return out


REUSE_CHECK = "client-one-connection-per-request"
REFERENCE_FLAGS = (True, True, 65535)   # what the reference client asks: steps, cache, max-age forever

def _canonical(text):
    """The expression as the server prints it, or None when it does not parse or evaluate to a
    known answer (such a request cannot stand for an exchange: its expected answer is unknown)."""
    try:
        a = oracle.answer(text, True)
    except oracle.OracleError:
        return None
    return a["expression"] if a.get("deterministic", True) else None


def example_key(text):
    """The key of an expression a client sent: the expression as the server prints it (E1 and
    the other expressions of a scenario are known by theirs), None when it cannot stand for one."""
    return _canonical(text)


def label(exchange):
    return exchange.label


def _label(canon):
    """E1 or E2 for the report's expressions, else the expression in quotes."""
    for name, text in REPORT_EXPRESSIONS:
        if oracle.canonical(text) == canon:
            return name
    return f"'{canon}'"


def _key(a, key):
    """A request key: (expression as the server prints it, steps, cache, max-age); a bare
    expression keeps exchange `a`'s flags."""
    if isinstance(key, str):
        return (key, a.steps, a.cache, a.max_age if a.cache else 0)
    return tuple(key)


def _with_requests(scn, keys):
    """`scn`'s steps with its clients asking `keys` (request keys, or bare expressions that keep
    the steps' flags; counts and targets kept)."""
    out, i = [], 0
    for a in scn.actions:
        if isinstance(a, Client):
            expr, steps, cache, max_age = _key(a, keys[i])
            same = oracle.canonical(a.expr) == expr
            out.append(dataclasses.replace(a, expr=a.expr if same else expr, label=a.label if same else _label(expr),
                                           steps=steps, cache=cache,
                                           max_age=max_age if cache else a.max_age))
            i += a.count
        else:
            out.append(a)
    return out


class _Step:
    """A Client as scenarios.kinds reads a step."""
    def __init__(self, a):
        self.expr, self.steps, self.cache, self.max_age, self.count = a.expr, a.steps, a.cache, a.max_age, a.count
        self.to = a.front if a.kind != "refused" else "proxy"


def cache_kinds(scn, keys):
    """The exchange kinds the reference gives to requests `keys` played in `scn`'s steps
    (scenarios.kinds: the same rules a scenario file's exchanges follow)."""
    steps = [_Step(a) if isinstance(a, Client) else a for a in _with_requests(scn, keys)]
    out = []
    for a, k in zip(steps, kinds(scn.roles, scn.server_cache_control, steps)):
        if isinstance(a, _Step):
            out += [k] * a.count
    return out


def adapted_scenario(scn, keys):
    """`scn` with its clients sending `keys` (a Scenario of its own, named for what it plays)."""
    ks = cache_kinds(scn, keys)
    actions, i = [], 0
    for a in _with_requests(scn, keys):
        if isinstance(a, Client):
            actions.append(dataclasses.replace(a, kind=ks[i]))
            i += a.count
        else:
            actions.append(a)
    out = dataclasses.replace(scn, actions=tuple(actions), golden=False, builtin=False)
    title = f"{scn.title}, as the client sent it: " + ", ".join(f"{e.label} ({e.kind})" for e in out.exchanges)
    return dataclasses.replace(out, name=f"{scn.name}~{out.digest[:10]}", title=title)


class Replays:
    """The replays one grading has played, owned by whoever grades (a class's worker keeps one for
    all its hand-ins): each adapted scenario is played once by it and, with a `replay_dir`, once
    for all the processes sharing that folder."""

    def __init__(self):
        self._done = {}
        self._lock = threading.Lock()

    def replay(self, adapted, timeout, ports_base, use_sniff, replay_dir=None, flavour=None):
        """Play `adapted` with calclab's programs, once for this Replays and, with `replay_dir`,
        once for all the processes sharing it (a class's workers: the first one plays it under a
        file lock, the others read its result).  Its client pickles in `flavour` ('value', the
        default, or 'getattr'), as the reference's does under the students' Python.  Returns
        (capture, its ports) to judge a student's run against, or None when the replay does not
        pass the lab's own checks of it (the clients' printouts): then nothing can be concluded
        from it."""
        flavour = flavour or interp.BY_VALUE
        name = adapted.name if flavour == interp.BY_VALUE else f"{adapted.name}~{flavour}"
        with self._lock:
            if name in self._done:
                return self._done[name]
        out = _replay(adapted, timeout, ports_base, use_sniff, replay_dir, flavour, name)
        if out is not None:  # a failed replay is the lab's failure, tried again by the next run
            with self._lock:
                self._done[name] = out
        return out


def _replay(adapted, timeout, ports_base, use_sniff, replay_dir, flavour, name):
    if replay_dir:
        os.makedirs(replay_dir, exist_ok=True)
        with open(os.path.join(replay_dir, name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            out = _shared_replay(adapted, timeout, ports_base, use_sniff, os.path.join(replay_dir, name), flavour)
    else:
        out = _play_replay(adapted, timeout, ports_base, use_sniff, tempfile.mkdtemp(prefix="calclab-replay-"),
                           flavour)
    return out


def _shared_replay(adapted, timeout, ports_base, use_sniff, wd, flavour):
    done = os.path.join(wd, "replay.json")
    try:
        with open(done) as f:
            got = json.load(f)
        if got["ok"]:
            return got["pcap"], got["ports"]
    except (OSError, ValueError, KeyError):
        pass
    out = _play_replay(adapted, timeout, ports_base, use_sniff, wd, flavour)
    if out is not None:
        with open(done, "w") as f:
            json.dump({"ok": True, "pcap": out[0], "ports": out[1]}, f)
    return out


def _play_replay(adapted, timeout, ports_base, use_sniff, wd, flavour):
    res = runner.play(adapted, runner.templates_for("c", flavour=flavour), ports_base=ports_base, workdir=wd,
                      timeout=timeout, golden=None, use_sniff=use_sniff)
    fronts = ("client->proxy", "client->server")   # a request may go straight to the server
    ok = res.lab_passed and len([c for c in res.records("conn") if c.get("role") in fronts]) == len(adapted.exchanges)
    return (res.pcap, dict(res.ports)) if ok else None


def _reuse_check(sent):
    ck = checks_mod.CheckBuilder(REUSE_CHECK, points=1)
    for run in sent:
        n, per = run["connections"], tuple(run["requests_per_connection"])
        ok = n == 1 and per == (1,)
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
    return ck.done()


def exchange_output(clients):
    """The client records (runner.ClientRun) with each run's output cut after its last 'Connection
    closed' line: what an interactive client prints after the exchange (its menu's next prompt)
    is not part of it.  New records; the run's are left as they are (the reports show them whole)."""
    out = []
    for rec in clients:
        lines = rec.stdout.splitlines(keepends=True)
        ends = [i for i, l in enumerate(lines) if l.rstrip().endswith("} Connection closed")]
        out.append(dataclasses.replace(rec, stdout="".join(lines[:ends[-1] + 1]) if ends else rec.stdout))
    return out


def adapt(res, timeout=15.0, use_sniff=True, ports_base=None, replay_dir=None, flavour=None, replays=None):
    """`res` (a RunResult of a run with the student's client) judged on the requests it sent:
    an Adapted, whose result is a new RunResult; `res` is left as it was.  `res` may be judged
    already or only captured (runner.play capture_only: it is judged once, here).
    `flavour`: how the reference client pickles under the students' Python (the replay's);
    `replays`: the grading's Replays (default: one of its own, for this call)."""
    replays = replays or Replays()
    records = runner.read_capture(res)
    sent = freeze(client_requests(res.clients, records))
    scn = res.scenario
    # a request is its expression and its flags.  Where the scenario asks other flags than the
    # reference client's (steps, cache, forever), the client is judged on the flags it sent: a
    # course's skeleton client cannot be told --no-steps (the proxy and server are judged on
    # those flags in runs of their own, with calclab's client); elsewhere other flags are the
    # client's fault, as they always were
    own = [_key(e, oracle.canonical(e.expr)) for e in scn.exchanges]
    keys = []
    for o, run in zip(own, sent):
        k = example_key(run["expressions"][0]) if run["expressions"] else None
        flags = tuple(run["flags"]) if run.get("flags") and o[1:] != REFERENCE_FLAGS else o[1:]
        keys.append(((o[0] if k is None else k),) + flags)
    grouped_ok, i = True, 0
    for a in scn.actions:
        if isinstance(a, Client):
            grouped_ok &= len(set(keys[i:i + a.count])) == 1
            i += a.count
    adapted, errors = None, []
    golden, golden_ports = res.golden, None
    if keys != own and grouped_ok and len(keys) == len(own) and scn.golden:
        try:
            new = adapted_scenario(scn, keys)
        except ScenarioError:
            new = None   # what the client asked leaves the reference's answers to chance
        got = None if new is None else replays.replay(new, timeout, ports_base or procs.free_port_pair, use_sniff,
                                                      replay_dir, flavour)
        if got is not None:
            scn = new
            golden, golden_ports = got
            adapted = ", ".join(f"request {n + 1}: {e.describe()} ({e.kind})" for n, e in enumerate(new.exchanges))
        elif new is None:
            errors.append("the scenario could not be adapted to the requests the client sent: their answers "
                          "are left to chance by the reference's rules")
        else:
            # calclab's own programs could not play what the client asked: the lab's failure
            raise runner.LabError("calclab's replay of the requests the client sent (" +
                                  ", ".join(e.describe() for e in new.exchanges) + ") did not pass its own checks")
    # judged on the clients' exchange output; the result shows their whole output
    judged = runner.judge(res, golden, golden_ports=golden_ports, scenario=scn,
                          clients=exchange_output(res.clients), records=records, errors=errors)
    judged = judged.with_judgement(checks=judged.checks + (_reuse_check(sent),))
    return Adapted(judged, sent, adapted)
