"""Play one scenario: start the programs, capture, run the clients, stop everything (play: a
frozen Run of what happened), then judge it (judge: a frozen Judgement; RunResult holds both)."""
import dataclasses
import os
import shlex
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from . import checks as checks_mod
from . import course_pickle, interp, oracle, paths, procs, sandbox, sniff
from . import scenarios as scenarios_mod
from .gradebook import UntypedItem
from .scenarios import Client, Raw, Scenario, Sleep, Stop, protocol_vectors
from .values import Fields, freeze, thaw

HOST = "127.0.0.1"
# How long the client side of a connection to a program under test gives it to close first
# (docs/grades.md, "Races"): calclab's client and proxy by their options (--close-wait,
# --upstream-close-wait), a student's client or proxy (its upstream connections) by
# libcalc-close-wait.so, preloaded into every program that is not calclab's. A program that
# closes right after answering then sends the first FIN every time, not only when its client
# happens to run later than it; one that waits for the client's FIN, as the reference's server
# and proxy do, is judged as before and costs this much per connection. calclab's own server
# and proxy never close first: connections to them are not held
CLOSE_WAIT_MS = 100
# The longest the lab waits for a program to end its connections: between two exchanges (50 ms,
# plus two holds: a proxy that closes its upstream connection after its client's gives the
# server that long too, and the next action may stop the server), and after the last one
# before the capture stops
BETWEEN_EXCHANGES = 0.05 + 2 * CLOSE_WAIT_MS / 1000
AFTER_LAST = 0.5
PORT_FREED = 3.0   # seconds a port of the run before may take to close: its programs exiting after the stop
ENV = shutil.which("env") or "/usr/bin/env"

IMPLS = {
    "c": {
        "server": "{build}/calc-server -H {host} -p {port} --cache-control {cache_control}",
        "proxy": "{build}/calc-proxy -ph {host} -pp {port} -sh {server_host} -sp {server_port} --upstream-close-wait {close_wait}",
        "client": "{build}/calc-client -H {host} -p {port} --max-age {max_age} --close-wait {close_wait} {client_flags} -- {expr}",
    },
    "student": {
        "server": "{py} {student}/calc_server.py -H {host} -p {port} --cache-control {cache_control}",
        "proxy": "{py} {student}/calc_proxy.py -ph {host} -pp {port} -sh {server_host} -sp {server_port}",
        "client": "{py} {student}/calc_client.py -H {host} -p {port} --max-age {max_age} {client_flags} -- {expr}",
    },
}


class LabError(Exception):
    """The lab itself cannot run (exit 2), as opposed to a program under test failing."""


# calc-jail's own exit statuses: it could not set the program up (125), the program is not
# executable (126) or not found (127).  The program never ran: that is the lab's failure.
JAIL_FAILED, CANNOT_EXEC, NOT_FOUND = 125, 126, 127


@dataclass(frozen=True)
class Fault:
    """Something that went wrong with one program of a run, typed where it happens: `role` is the
    role it plays (server, proxy, client), `ours` whether calclab's program plays it (then the
    run is a lab error, never the student's), `kind` one of cannot-start, not-listening,
    exited-early, timed-out, limit, jail, and `text` what the reports say."""
    role: str
    kind: str
    ours: bool
    text: str

    @property
    def lab_error(self):
        """Calclab's side failed: its program did not start or died, or the sandbox could not
        start a program at all."""
        if self.kind == "jail":
            return True
        return self.ours and self.kind in ("cannot-start", "not-listening", "exited-early", "limit")


def ours_in(templates):
    """The roles whose template is one of calclab's own programs (build/ or tests/student), its
    client in either pickle flavour (with_flavour)."""
    known = list(IMPLS.values()) + [with_flavour(IMPLS["c"], interp.GETATTR)]
    return frozenset(r for r, t in templates.items() if any(impl.get(r) == t for impl in known))


def expand(template, **vals):
    """A command template's argv.  {client_flags} is a token of its own that stands for zero or
    more options (the request's --no-steps, --no-cache)."""
    base = {"build": paths.BUILD, "student": paths.STUDENT, "py": paths.PY, "host": HOST,
            "cache_control": 65535, "max_age": 65535, "close_wait": CLOSE_WAIT_MS}
    base.update(vals)
    flags = list(base.pop("client_flags", ()))
    try:
        out = []
        for tok in shlex.split(template):
            if tok == "{client_flags}":
                out += flags
            else:
                out.append(tok.format_map(base))
        return out
    except (KeyError, IndexError, ValueError) as e:
        raise LabError(f"bad command template {template!r}: unknown or malformed placeholder {e}")


def templates_for(impl="c", server=None, proxy=None, client=None, flavour=None):
    """The command templates of a play: `impl`'s programs in the roles no template is given for.
    `flavour` (interp.BY_VALUE or GETATTR): how calclab's own client pickles its requests, as the
    reference client does under the students' interpreter; None: by value when only calclab's
    programs play, else as the interpreter in use (interp.current) pickles."""
    t = _chosen(impl, server, proxy, client)
    return with_flavour(t, flavour or flavour_for(impl, server, proxy, client))


def _chosen(impl, server, proxy, client):
    t = dict(IMPLS[impl])
    for role, v in (("server", server), ("proxy", proxy), ("client", client)):
        if v:
            t[role] = v
    return t


def flavour_for(impl="c", server=None, proxy=None, client=None, lab=None):
    """The flavour a play of these programs is judged in (templates_for's default): by value
    when only calclab's programs play (no Python in play), else as `lab`'s Python (default the
    system's python3, interp.current) pickles."""
    if _chosen(impl, server, proxy, client) == IMPLS["c"]:
        return interp.BY_VALUE
    return lab.flavour if lab is not None else interp.current_flavour()


def with_flavour(templates, flavour):
    """`templates` with calclab's client sending its requests in `flavour` (calc-client
    --pickle-flavour); another client's template is left as it is."""
    t = dict(templates)
    base = IMPLS["c"]["client"]
    if flavour == interp.GETATTR and t.get("client") == base:
        t["client"] = base.replace(" -- {expr}", " --pickle-flavour getattr -- {expr}")
    return t


@dataclass(frozen=True)
class ClientRun(Fields):
    """One client program's run: the exchange it played, its command line, what it printed (and
    when: `lines`), its exit status (None: killed or never started, then `error` says why), and
    the clock around it (t0 before it started, t1 once it was seen to exit)."""
    index: int
    exchange: object
    kind: str
    argv: tuple
    stdout: str
    rc: object
    t0: float
    t1: float
    lines: tuple = ()
    error: str = None

    def to_dict(self):
        """What the reports show of it (the exchange and the timed lines are shown elsewhere)."""
        out = {"index": self.index, "kind": self.kind, "argv": list(self.argv), "stdout": self.stdout,
               "rc": self.rc, "t0": self.t0}
        if self.error is not None:
            out["error"] = self.error
        out["t1"] = self.t1
        return out


@dataclass(frozen=True)
class Log:
    """What a server or proxy of the run printed, line by line with times, and how it ended."""
    role: str
    argv: tuple
    lines: tuple
    returncode: object

    def output(self):
        return "".join(l + "\n" for _, l in self.lines)


@dataclass(frozen=True)
class Run:
    """What happened when a scenario was played (runner.play): made once the run is over, never
    changed.  `faults` are the programs' troubles, typed; `errors` what the reports say of the
    run's troubles (the faults' texts, a capture that lost packets); `lab_errors` calclab's own
    failures (play raises LabError on them, so a Run handed on has none)."""
    scenario: Scenario
    ports: Mapping
    isolation: str
    limits: Mapping
    pcap: str
    clients: tuple           # ClientRun, in the scenario's order
    procs: Mapping           # role -> Log of the run's servers and proxies
    events: tuple            # (t, who, text) for the timeline
    faults: tuple            # Fault
    errors: tuple
    lab_errors: tuple
    expired: bool            # the run's wall-clock limit struck
    duration: float
    golden: str = None       # the golden the run is to be verified against (None: no golden)
    raw: tuple = None        # the malformed scenario's own bad requests: (name, ok, detail)
    ours: frozenset = frozenset()   # the roles calclab's programs played

    @property
    def name(self):
        return self.scenario.name

    def student_faults(self):
        return [f for f in self.faults if not f.ours and not f.lab_error]


@dataclass(frozen=True)
class Judgement:
    """What judging a Run found (runner.judge): the scenario it was judged against (adapt's may
    be the one the student's client really asked), calc-sniff's verdict against `golden` and its
    records of the run's capture and of the golden, the checks (calc-sniff's and the lab's,
    every item's role set by the check that made it) and what else the judging said (`errors`)."""
    scenario: Scenario
    golden: str
    sniff: Mapping           # calc-sniff verify's verdict, None without a golden
    records: tuple           # calc-sniff's records of the run's capture (pkt, conn, msg, summary)
    golden_records: tuple
    checks: tuple            # checks.Check
    errors: tuple = ()


@dataclass(frozen=True)
class RunResult:
    """A played run and, once judged, its judgement: what the outputs read (report, feedback,
    classgrade), by the names the one mutable result of before had.  Stages that add to it
    (judge, adapt, plays.merge) return a new RunResult."""
    run: Run
    judgement: Judgement = None

    # what was played
    name = property(lambda self: self.run.name)
    ports = property(lambda self: self.run.ports)
    isolation = property(lambda self: self.run.isolation)
    limits = property(lambda self: self.run.limits)
    pcap = property(lambda self: self.run.pcap)
    clients = property(lambda self: self.run.clients)
    procs = property(lambda self: self.run.procs)
    events = property(lambda self: self.run.events)
    faults = property(lambda self: self.run.faults)
    lab_errors = property(lambda self: self.run.lab_errors)
    expired = property(lambda self: self.run.expired)
    duration = property(lambda self: self.run.duration)
    raw = property(lambda self: self.run.raw)

    def student_faults(self):
        return self.run.student_faults()

    # what judging it found
    @property
    def scenario(self):
        return self.judgement.scenario if self.judgement else self.run.scenario

    @property
    def golden(self):
        j = self.judgement
        return j.golden if j is not None and j.golden is not None else self.run.golden

    @property
    def sniff(self):
        return self.judgement.sniff if self.judgement else None

    @property
    def sniff_json(self):
        return self.judgement.records if self.judgement else ()

    @property
    def golden_json(self):
        return self.judgement.golden_records if self.judgement else ()

    @property
    def checks(self):
        return self.judgement.checks if self.judgement else ()

    @property
    def errors(self):
        return self.run.errors + (self.judgement.errors if self.judgement else ())

    @property
    def lab_passed(self):
        return bool(self.checks) and all(c.passed for c in self.checks) and not self.errors

    @property
    def passed(self):
        """One verdict: every check passes, and calc-sniff judged the capture (pass)."""
        return self.lab_passed and (self.sniff is None or self.sniff["status"] == "pass")

    def records(self, kind):
        return [r for r in self.sniff_json if r.get("type") == kind]

    def with_judgement(self, **changes):
        """This run with its judgement changed (`changes`: Judgement's fields): a new value."""
        return RunResult(self.run, dataclasses.replace(self.judgement, **changes))

    def to_dict(self):
        return {
            "scenario": self.name, "title": self.scenario.title, "passed": self.passed,
            "ports": dict(self.ports), "isolation": self.isolation, "limits": thaw(self.limits), "pcap": self.pcap,
            "golden": self.golden,
            "calc_sniff": None if self.sniff is None else
            {"status": self.sniff["status"], "reason": self.sniff.get("reason")},
            "errors": list(self.errors), "duration": round(self.duration, 1),
            "checks": [c.to_dict() for c in self.checks],
            "clients": [c.to_dict() for c in self.clients],
            "logs": {role: [l for _, l in p.lines] for role, p in self.procs.items()},
            "connections": thaw(self.records("conn")),
        }


class _Playing:
    """What play() gathers while the run goes on (the programs, the clients' records, the
    faults), local to one play and frozen into a Run when it is over."""

    def __init__(self, scenario, ours):
        self.scenario = scenario
        self.ours = ours           # the roles calclab's programs play in this run
        self.clients = []          # ClientRun
        self.procs = {}            # role -> procs.Proc
        self.events = []
        self.ports = {}
        self.pcap = None
        self.golden = None
        self.errors = []
        self.isolation = None
        self.limits = {}
        self.started = []          # every Proc of this run, servers and clients, in start order
        self.expired = False
        self.faults = []
        self.held = frozenset()    # the ports of the server and proxy under test (CLOSE_WAIT_MS)
        self.lab_errors = []
        self.raw = None
        self.duration = 0.0

    def fault(self, role, kind, text, rc=None):
        """Record what went wrong with a program (`role` may be 'client3'): a calc-jail exit status
        says the program never ran at all."""
        role = role.rstrip("0123456789")
        if rc in (JAIL_FAILED, CANNOT_EXEC, NOT_FOUND) and (rc == JAIL_FAILED or role in self.ours):
            kind = "jail"
        f = Fault(role, kind, role in self.ours, text)
        self.faults.append(f)
        self.errors.append(text)
        if f.lab_error:
            self.lab_errors.append(f"calclab's {text}" if f.ours else text)
        return f

    def frozen(self):
        procs_ = {role: Log(role, tuple(p.argv), tuple(p.lines), p.p.returncode) for role, p in self.procs.items()}
        return Run(self.scenario, MappingProxyType(dict(self.ports)), self.isolation, freeze(self.limits), self.pcap,
                   tuple(self.clients), MappingProxyType(procs_), tuple(self.events), tuple(self.faults),
                   tuple(self.errors), tuple(self.lab_errors), self.expired, self.duration, self.golden,
                   None if self.raw is None else tuple(self.raw), frozenset(self.ours))


def _start_program(res, box, role, argv, log_path=None):
    """Start one program under test confined by the run's sandbox; None when it cannot start."""
    if res.expired:
        res.fault(role, "timed-out", f"{role}: not started: the run's wall-clock limit struck")
        return None
    try:
        # calclab's own programs run confined too, but without the student's bwrap (Sandbox.ours)
        wrapped, env, cwd = box.ours(argv) if _ours(argv) else box.program(_close_wait(argv, res.held))
        p = procs.Proc(role, wrapped, log_path, env=env, cwd=cwd, max_output=box.limits.output_kib * 1024)
    except OSError as e:
        res.fault(role, "cannot-start", f"{role}: cannot start: {e}")
        return None
    p.argv = argv  # the reports show the program's own command line
    res.started.append(p)
    return p


def _ours(argv):
    return bool(argv) and argv[0].startswith(os.path.join(paths.BUILD, "calc-"))


def _close_wait(argv, held):
    """argv with libcalc-close-wait.so preloaded when the program is not one of calclab's (they
    hold their closes themselves): its connections to the `held` ports (the server and proxy
    under test) wait up to CLOSE_WAIT_MS for the other side's FIN before closing."""
    if _ours(argv) or not held:
        return argv
    lib = paths.close_wait_lib()
    if lib is None:
        raise LabError(f"{os.path.join(paths.BUILD, 'libcalc-close-wait.so')} is missing: build calclab again")
    return [ENV, f"LD_PRELOAD={lib}", f"CALCLAB_CLOSE_WAIT={CLOSE_WAIT_MS}:{','.join(map(str, sorted(held)))}"] + argv


def _hold(res, role, ports):
    """The close wait of a connection to `role`'s program: CLOSE_WAIT_MS for a program under test."""
    return CLOSE_WAIT_MS if ports[role] in res.held else 0


def _arm_wall_clock(res, box):
    """A timer that stops every program of the run when the run exceeds its wall-clock limit."""
    def expire():
        res.expired = True
        for role in sorted({r for r in res.procs} | {"client"}):
            if role not in res.ours:
                res.fault(role, "timed-out", f"{role}: scenario killed: wall-clock limit {box.limits.wall_seconds} s")
                break
        procs.stop_all(res.started)
    t = threading.Timer(box.limits.wall_seconds, expire)
    t.daemon = True
    t.start()
    return t


def _last_words(p):
    """The last line an exited program printed: output() waits for the reader thread to have read
    all it wrote (read straight after the exit, a crash's traceback may not have been yet)."""
    return [l for l in p.output().splitlines() if l.strip()][-1:]


def _not_listening(res, role, p, ports, timeout):
    rc = p.p.poll()
    last = _last_words(p) if rc is not None else []
    res.fault(role, "not-listening", f"{role}: not listening on {ports[role]} within {timeout}s"
              + (f" (exited {rc}: {last[0][:200]})" if rc is not None and last else ""), rc=rc)


def _note_early_exits(res, scn):
    """A server or proxy that is gone before the lab stops it (and was not to be stopped) is an
    error of the run, with its last words: 'proxy: exited (1) before the end: OSError: ...'."""
    stopped = {a.role for a in scn.actions if isinstance(a, Stop)}
    for role, p in res.procs.items():
        if any(f.role == role and f.kind == "not-listening" for f in res.faults):
            continue  # said already
        if role not in stopped and not p.alive():
            last = _last_words(p) or ["no output"]
            res.fault(role, "exited-early", f"{role}: exited ({p.p.returncode}) before the end of the scenario: "
                      f"{last[0][:200]}", rc=p.p.returncode)


def _record_limits(res, box):
    """Each program that ended on one of its limits is an error of the run ('server killed:
    memory limit 512 MiB'), which the verdict makes a failing item of the programs check."""
    for p in res.started:
        why = box.limit_hit(p.role.rstrip("0123456789"), p.p.returncode, "".join(l + "\n" for _, l in p.lines),
                            p.capped)
        if why and why not in res.errors:
            res.fault(p.role, "limit", why)


def _run_client(res, box, i, exchange, template, ports, timeout, host=HOST):
    port = ports[exchange.front]
    argv = expand(template, py=box.lab.python.path, port=port, expr=exchange.expr, example=exchange.example,
                  max_age=exchange.max_age if exchange.cache else 0, client_flags=exchange.flags,
                  server_host=host, server_port=ports["server"], close_wait=_hold(res, exchange.front, ports))
    t0 = time.time()
    p = _start_program(res, box, f"client{i + 1}", argv)
    if p is None:
        return ClientRun(i, exchange, exchange.kind, tuple(argv), "", None, t0, time.time(),
                         error=f"client {i + 1} did not start")
    rc = p.wait(timeout)
    rec = ClientRun(i, exchange, exchange.kind, tuple(argv), p.output(), rc, t0, time.time(), tuple(p.lines))
    if rc is None:
        res.fault("client", "timed-out", f"client {i + 1}: timed out after {timeout}s (killed)")
    elif rc in (JAIL_FAILED, CANNOT_EXEC, NOT_FOUND):
        last = [l for _, l in p.lines if l.strip()][-1:] or ["no output"]
        res.fault("client", "cannot-start", f"client {i + 1}: exited ({rc}): {last[0][:200]}", rc=rc)
    return rec


def _raw_malformed(box, port, timeout=5.0):
    out = []
    for v in protocol_vectors():
        req = bytes.fromhex(v["request"])
        got = b""
        try:
            with box.connect(HOST, port, timeout) as s:
                s.sendall(req)
                if len(req) < 12:
                    s.shutdown(socket.SHUT_WR)
                s.settimeout(timeout)
                while len(got) < 12 or len(got) < struct.unpack("!H", got[4:6])[0]:
                    d = s.recv(65536)
                    if not d:
                        break
                    got += d
        except OSError as e:
            out.append((v["name"], False, f"no answer ({e})"))
            continue
        want = bytes.fromhex(v["response"])
        ok = got[4:] == want[4:]
        out.append((v["name"], ok, f"{len(got)}-byte answer" + ("" if ok else f", expected the reference's {len(want)} bytes")))
    return out


def _open_sandbox(res, scn, limits, expose, ports_base, lab, staged=None):
    """The run's sandbox and ports: 9998/9999 in its own namespace, else ports_base and the next
    one (free ones when None; ports_base may be a function giving them), which must be free.
    A run of calclab's programs alone (a golden, a replay) runs unconfined where nothing can
    confine it without the Lab's leave: nothing untrusted runs in it."""
    lib = paths.close_wait_lib()
    if set(scn.roles) | {"client"} <= set(res.ours):
        lab = dataclasses.replace(lab or sandbox.default_lab(), allow_unconfined=True)
    try:
        box = sandbox.Sandbox(limits, tuple(expose) + ((lib,) if lib else ()), lab=lab, staged=staged).open()
    except sandbox.Unconfined as e:
        raise LabError(f"not graded: {e}") from None
    except (OSError, sandbox.ConfinementError) as e:
        raise LabError(f"cannot set up the run's sandbox: {e}") from None
    res.isolation = box.isolation
    res.limits = box.limits.to_dict()
    res.ports = ports = box.ports(ports_base)
    for role in scn.roles:
        if not procs.wait_not_listening(ports[role], PORT_FREED, box.net_dir):
            box.close()
            raise LabError(f"port {ports[role]} ({role}) is already in use: pick another --ports-base")
    return box, ports


def scenario_of(spec):
    """A Scenario: itself, or the built-in / file it names; LabError when there is none."""
    if isinstance(spec, Scenario):
        return spec
    try:
        return scenarios_mod.resolve([spec])[0]
    except scenarios_mod.ScenarioError as e:
        raise LabError(str(e))


def play(name, templates, ports_base=None, workdir=None, timeout=15.0, golden=None, use_sniff=True,
         capture_only=False, verbose=None, limits=None, expose=(), ours=None, lab=None, staged=None):
    """Run scenario `name`; returns a RunResult: the Run, judged (judge) unless `capture_only`.
    Nothing of it changes afterwards.  Raises LabError when the lab itself cannot run,
    its own programs included (`ours`: the roles calclab's programs play, by default those whose
    template is one of IMPLS').
    The run is confined by a sandbox.Sandbox with `limits` (sandbox.Limits); `expose` names extra
    paths its programs may read (a submission folder).  `lab`: the grading's settings.Lab (its
    Python is the templates' {py}; default sandbox.default_lab()).  `staged`: the stage.Stage
    the copies of `expose` come from, the caller's (a hand-in's runs share one, copied once)."""
    scn = scenario_of(name)
    name = scn.name
    res = _Playing(scn, frozenset(ours) if ours is not None else ours_in(templates))
    t_start = time.time()
    box, ports = _open_sandbox(res, scn, limits, expose, ports_base, lab, staged)
    res.held = frozenset(ports[r] for r in ("server", "proxy") if r in scn.roles and r not in res.ours)
    workdir = workdir or tempfile.mkdtemp(prefix=f"calclab-{name}-")
    os.makedirs(workdir, exist_ok=True)
    sandbox.keep_private(workdir)
    res.pcap = os.path.join(workdir, f"{name}.pcap")
    say = verbose or (lambda *_: None)
    say(f"isolation: {res.isolation}")
    cap = None
    wall = _arm_wall_clock(res, box)
    try:
        # 1. the programs, each in its own process group, each waited for on its port
        if "server" in scn.roles:
            argv = expand(templates["server"], py=box.lab.python.path, port=ports["server"],
                          cache_control=scn.server_cache_control, server_host=HOST, server_port=ports["server"])
            say(f"starting server: {shlex.join(argv)}")
            p = _start_program(res, box, "server", argv, os.path.join(workdir, "server.log"))
            if p is not None:
                res.procs["server"] = p
            if p is not None and not procs.wait_port(HOST, ports["server"], p, timeout, box.net_dir):
                _not_listening(res, "server", p, ports, timeout)
        if "proxy" in scn.roles:
            argv = expand(templates["proxy"], py=box.lab.python.path, port=ports["proxy"], server_host=HOST,
                          server_port=ports["server"], close_wait=_hold(res, "server", ports))
            say(f"starting proxy: {shlex.join(argv)}")
            p = _start_program(res, box, "proxy", argv, os.path.join(workdir, "proxy.log"))
            if p is not None:
                res.procs["proxy"] = p
            if p is not None and not procs.wait_port(HOST, ports["proxy"], p, timeout, box.net_dir):
                _not_listening(res, "proxy", p, ports, timeout)
        # 2. the capture
        run_ports = {ports[role] for role in ("proxy", "server")}
        cap = sniff.Capture(res.pcap, [ports["proxy"], ports["server"]], use_sniff=use_sniff, wrap=box.trusted)
        cap.start()
        say(f"capturing with {cap.tool} into {res.pcap}")
        # 3. the actions
        i = 0
        for a in scn.actions:
            if isinstance(a, Client):
                if a.count == 1:
                    say(f"client {i + 1}: {a.describe()} -> {a.front} ({a.kind})")
                    res.clients.append(_run_client(res, box, i, a, templates["client"], ports, timeout))
                else:
                    say(f"clients {i + 1}..{i + a.count}: {a.describe()} -> {a.front} ({a.kind}), all at once")
                    recs = [None] * a.count
                    ths = []
                    for k in range(a.count):
                        def go(k=k):
                            recs[k] = _run_client(res, box, i + k, a, templates["client"], ports, timeout)
                        ths.append(threading.Thread(target=go))
                    for th in ths:
                        th.start()
                    for th in ths:
                        th.join()
                    res.clients += recs
                i += a.count
                # the next exchange starts once this one's connections are over on the wire (as
                # long as a 50 ms pause used to give them at most)
                procs.wait_connections_over(run_ports, BETWEEN_EXCHANGES, box.net_dir)
            elif isinstance(a, Stop):
                say(f"stopping {a.role}")
                p = res.procs.get(a.role)
                if p is not None:
                    res.events.append((time.time(), "lab", f"stopping the {a.role}"))
                    p.stop()
                    procs.wait_port_closed(HOST, ports[a.role], net_dir=box.net_dir)
            elif isinstance(a, Sleep):
                say(f"waiting {a.seconds}s")
                res.events.append((time.time(), "lab", f"waiting {a.seconds}s"))
                time.sleep(a.seconds)
            elif isinstance(a, Raw):
                res.raw = _raw_malformed(box, ports["server"], timeout=min(timeout, 5.0))
        # the capture stops once the last connection's FIN and ACK are sent (calc-sniff drains
        # its buffer after that), or when a program keeps a connection open past AFTER_LAST
        procs.wait_connections_over(run_ports, AFTER_LAST, box.net_dir)
    finally:
        if cap is not None:
            cap.stop()
            if cap.drops:
                res.errors.append(f"the capture lost {cap.drops} packets (kernel drops): the run is inconclusive")
                res.lab_errors.append(f"the capture lost {cap.drops} packets (kernel drops)")
        _end_run(res, scn, box, wall)
    res.duration = time.time() - t_start
    _record_limits(res, box)
    res.golden = golden if scn.golden else None
    if res.lab_errors:
        raise LabError("; ".join(res.lab_errors))
    played = RunResult(res.frozen())
    # 4. analysis
    return played if capture_only else judge(played, played.golden)


def _end_run(res, scn, box, wall):
    """Stop this run's programs (not other runs'), then its namespace."""
    wall.cancel()
    if not res.expired:
        _note_early_exits(res, scn)
    for role in ("proxy", "server"):
        if role in res.procs:
            res.procs[role].stop()
    procs.stop_all(res.started)
    try:
        box.close()
    except sandbox.ConfinementError as e:  # nothing is judged or reported while they may run
        raise LabError(str(e)) from None


def read_capture(res):
    """calc-sniff's records of a run's capture, frozen: a judged run's own (judging again reuses
    them), else read from its capture."""
    if res.judgement is not None:
        return res.judgement.records
    try:
        return freeze(sniff.records(res.pcap, dict(res.ports)))
    except sniff.SniffError as e:
        raise LabError(str(e))


def judge(res, golden, golden_ports=None, scenario=None, clients=None, records=None, errors=()):
    """`res` (a RunResult, judged or only played) judged against `golden`: a new RunResult whose
    judgement says what calc-sniff and the lab's checks found; `res` is left as it was.
    `scenario`: the one to judge against (default res.scenario), `clients`: the clients' records
    the lab's checks read (default the run's), `records`: the capture's (default read_capture),
    `errors`: what the caller's own judging found, shown with the run's."""
    try:
        return RunResult(res.run, _judge(res.run, golden, golden_ports, scenario or res.scenario,
                                         res.clients if clients is None else tuple(clients),
                                         read_capture(res) if records is None else records, tuple(errors)))
    except oracle.OracleError as e:
        raise LabError(f"the lab's oracle (calc-client --local) cannot say what the reference prints: {e}")
    except UntypedItem as e:   # calc-sniff's or the lab's own check did not say whose an item is
        raise LabError(f"a check of the run: {e}")


def lab_side_errors(run, records, verdict):
    """Calclab's own failures that only judging the run shows, as texts (judge raises LabError on
    them: no points given or taken).  `records` are calc-sniff's reading of the run's capture,
    `verdict` its verdict against the golden (None without one).  The place for what calclab
    reads from the capture and must not blame on a program: a request calclab cannot decode that
    the course's code would accept is calclab's failure, never the student's "undecodable
    request".  calc-sniff's own verdicts on the capture are handled in _judge.  The malformed
    scenario's bad requests are the lab's own, nobody's to blame."""
    return [] if run.raw is not None else course_pickle.calclab_faults(records, run.ours)


def _judge(run, golden, golden_ports, scenario, clients, records, errors):
    """The run's Judgement: calc-sniff's reading of the capture (`records`: the timeline's and the
    sequence diagram's), its checks against the golden (recorded on golden_ports, default
    9998/9999), and the lab's own checks of what only it sees (the clients' outputs, the bad
    requests it sent, the programs' troubles)."""
    found, verdict, golden_records = [], None, ()
    if golden is not None:
        verdict = sniff.verify(run.pcap, golden, dict(run.ports), golden_ports=golden_ports)
        if verdict["status"] in ("usage", "missing-golden"):
            raise LabError(f"calc-sniff cannot verify the run: {verdict.get('reason')}")
        if verdict["status"] == "inconclusive":
            # the capture cannot tell (the kernel dropped packets, bytes missing): nobody's fault
            # but the lab's, and a new run may do
            raise LabError(f"calc-sniff: the capture is inconclusive: {verdict.get('reason')}")
        found += checks_mod.note_close_first(checks_mod.from_sniff(verdict["checks"]), CLOSE_WAIT_MS)
        golden_records = freeze(sniff.describe(golden, golden_ports or sniff.DEFAULT_PORTS))
    lab = lab_side_errors(run, records, verdict)
    if lab:
        raise LabError("; ".join(lab))
    conns, msgs = [r for r in records if r.get("type") == "conn"], [r for r in records if r.get("type") == "msg"]
    if run.raw is not None:
        found += checks_mod.malformed_checks(run.raw, conns)
    else:
        found += checks_mod.answer_checks(scenario.exchanges, clients, conns, msgs)
        found += checks_mod.client_checks(scenario.exchanges, clients,
                                          checks_mod.received_answers(clients, conns, msgs))
    found += checks_mod.program_checks(run.student_faults())
    return Judgement(scenario, golden, freeze(verdict), records, golden_records, tuple(checks_mod.ordered(found)),
                     errors)
