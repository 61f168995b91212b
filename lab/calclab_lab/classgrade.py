"""Grading hand-ins: one submission (a folder or a .zip) on the report's scenarios, or a whole
class folder of them, several at once.

grade_submission() is the unit: it copies the hand-in, finds its role files, plays each scenario
with the student's programs in the graded roles and calclab's in the others, adapts the scenario
to what the student's client really sent, and writes the student's feedback folder.  It returns
the submission's entry of grades.json (gradebook.py); grade_class() runs it over a folder in
worker processes (each play stops every program it started, so plays never share a process)."""
from dataclasses import dataclass
import json
import multiprocessing
from multiprocessing.connection import wait
import os
import random
import shutil
import tempfile
import time

from . import adapt, feedback, goldens, gradebook, handin_captures, interp, paths, plays as plays_mod, procs, runner, \
    sandbox, settings, sniff, stage
from . import checks as checks_mod
from . import scenarios as scenarios_mod
from .scenarios import GRADABLE, Raw, protocol_vectors
from .submission import ROLES, Submission, SubmissionError, submission_id
from .values import freeze, thaw

PORT_LO, PORT_HI = 20000, 32000       # below the kernel's ephemeral range: no client socket takes them
PORTS_PER_WORKER = 400


def feedback_dirname(sub_id):
    """A folder name for the student's feedback: the id with anything but [A-Za-z0-9._-] replaced,
    no leading dot, none of OUT's own file names."""
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in sub_id).lstrip(".")
    # the class's own files live next to the feedback folders
    return "_" + safe if not safe or safe in ("index.html", "grades.json", "grades.csv") else safe


class PortBlock:
    """A grading process's own block of (proxy, server) port pairs, so that the workers of a class
    never race for the same pair: block `index` (mod the blocks there are), or a random one, so
    that independent graders (other courses' runs, tests) rarely meet in the same block.  Called,
    it gives the next free pair of the block, from a random start."""

    def __init__(self, index=None):
        blocks = (PORT_HI - PORT_LO) // PORTS_PER_WORKER
        rng = random.Random(os.getpid() ^ time.time_ns())
        self.first = PORT_LO + (rng.randrange(blocks) if index is None else index % blocks) * PORTS_PER_WORKER
        self._next = rng.randrange(0, PORTS_PER_WORKER, 2)

    def __call__(self):
        for _ in range(PORTS_PER_WORKER // 2):
            base = self.first + self._next
            self._next = (self._next + 2) % PORTS_PER_WORKER
            if not procs.listening(base) and not procs.listening(base + 1):
                try:
                    return procs.free_port_pair(lo=base, hi=base + 1)
                except RuntimeError:
                    continue
        return procs.free_port_pair(lo=PORT_LO, hi=PORT_HI)


class PointTables:
    """The class's point tables (point_tables), each made once for the grading that owns this:
    every hand-in of a class gets the same."""

    def __init__(self):
        self._raw = {}

    def __call__(self, scenarios, wanted, golden_dir=None, weights=None):
        scenarios = scenario_list(scenarios)
        key = (tuple((s.name, s.digest) for s in scenarios), tuple(wanted), golden_dir)
        if key not in self._raw:
            self._raw[key] = {s.name: gradebook.point_table(_reference_checks(s, golden_dir, "client" in wanted),
                                                            wanted)
                              for s in scenarios}
        return gradebook.weighted_tables(self._raw[key], weights)


class Grading:
    """What one grading process keeps from one hand-in to the next, owned by whoever grades (a
    class's worker, grade_submission alone): its set-up (settings.Lab: the students' Python,
    the grader's folders), its port block, the replays it played (adapt.Replays) and the
    class's point tables."""

    def __init__(self, lab, ports=None, tables=None):
        self.lab = lab
        self.ports = ports or PortBlock()
        self.replays = adapt.Replays()
        self.tables = tables or PointTables()


def lab_for(python=None, *grader_paths):
    """The Lab a grading made without one uses: `python` (default: the interpreter in use) and the
    grader's folders noted so far plus `grader_paths`; LabError when `python` cannot be asked."""
    base = sandbox.default_lab()
    try:
        py = interp.probe(python) if python else base.python
    except interp.InterpreterError as e:
        raise runner.LabError(f"--python {e}")
    return settings.Lab(py, settings.folders(base.grader_paths + grader_paths))


def _last_line(text):
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    return lines[-1][:200] if lines else "no output"


def _start_failures(runs, graded):
    """role -> why its program never got going, when it did not in any scenario: a server or proxy
    that never listened (runner.Fault of kind not-listening or cannot-start), a client that never
    connected and exited with an error every time."""
    out = {}
    for role in ("server", "proxy"):
        if role not in graded:
            continue
        mine = [r.res for r in runs if role in r.judged]
        if mine and all(any(f.role == role and not f.ours and f.kind in ("not-listening", "cannot-start")
                            for f in r.faults) for r in mine):
            p = mine[0].procs.get(role)
            out[role] = _last_line(p.output()) if p else "cannot start"
    mine = [r.res for r in runs if "client" in r.judged]
    if "client" in graded and mine:
        runs = mine
        quiet = True
        for r in runs:
            if any(c.get("role") in ("client->proxy", "client->server") for c in r.records("conn")) \
                    or any(c.rc in (0, None) for c in r.clients):
                quiet = False
        if quiet:
            out["client"] = _last_line(runs[0].clients[0].stdout) if runs[0].clients else "no client run"
    return out


LAB_ERROR = "lab error: "


def grade_submission(path, out_dir, roles=None, scenarios=None, client_stdin=None, timeout=15.0,
                     use_sniff=True, golden_dir=None, ports_base=None, limits=None, weights=None,
                     integration=None, plays=1, captures=None, capture_ports=None, capture_points=0.0, python=None,
                     grading=None, lab=None):
    """Grade one hand-in; its feedback goes to out_dir/<id>/.  `roles`: which of the submission's
    roles are graded (default: every role file found); the others are played by calclab's programs.
    `client_stdin`: text fed to the student's client, with the templates' placeholders
    ({example} {expr} ...).  `limits`: the programs' sandbox.Limits (default: its defaults).
    `weights`: role -> the points the course gives it (default gradebook.DEFAULT_WEIGHTS).
    Each graded role is judged in runs of its own, calclab's programs playing the other roles,
    so its points never depend on the other roles' bugs.  `integration`: None, or the points
    (0: feedback only) of the runs with all the student's programs at once, the report's own
    set-up, shown in the entry's "integration" section.
    `plays`: each run is played that many times and judged as one (plays.merge).
    `python`: the interpreter that runs the hand-in's programs (default: the one in use,
    interp.current) when no `grading` says; the goldens, replays and calclab's own client
    follow how it pickles.
    `grading`: the Grading of the process (a class's worker's), else one of its own.
    Returns the submission's grades.json entry."""
    grading = grading or Grading(lab or lab_for(python, path))
    lab = grading.lab
    sub_id = submission_id(path)
    fdir = os.path.join(out_dir, feedback_dirname(sub_id))
    if os.path.exists(fdir):
        shutil.rmtree(fdir)
    os.makedirs(fdir)
    scenarios = scenario_list(scenarios)
    wanted = list(roles or ROLES)
    tables = grading.tables(scenarios, wanted, golden_dir, weights)
    maxima = gradebook.role_maxima(tables.values())
    if integration is not None:
        integration_tables = grading.tables(scenarios, wanted, golden_dir,
                                             gradebook.integration_weights(maxima, integration))
        integration_max = gradebook.tenths(integration)
    work = tempfile.mkdtemp(prefix="calclab-sub-")
    t0 = time.time()
    runs = []

    def finish(e, sub=None):
        """The entry with the hand-in's own captures judged (whatever became of its programs: a
        course may grade the Wireshark part alone), or, without a hand-in to read, with their
        maximum, so every row of a class has the same."""
        if sub is not None:
            _add_captures(e, sub, scenarios, golden_dir, captures, capture_ports, capture_points)
        elif capture_points:
            e["max_score"] = round(e["max_score"] + capture_points * sum(s.golden for s in scenarios), 1)
        return _finish(fdir, e, runs, lab)

    def row(status, sub=None, **kw):
        """An entry that was not graded: zero points of the class's maximum, integration's too."""
        if integration is not None:
            kw["integration"] = gradebook.integration([], integration_max, status)
        return finish(gradebook.entry(sub_id, status, maxima=maxima, **kw), sub)

    try:
        try:
            sub = Submission(path, work, python=lab.python.path)
        except (SubmissionError, OSError) as e:
            return row(f"not graded: {e}")
        files = {r: sub.rel(r) for r in sub.files}
        if not sub.files:
            return row("no role files (server.py, proxy.py, client.py) found", sub)
        graded = [r for r in ROLES if r in sub.files and r in wanted]
        if not graded:
            return row(f"none of {', '.join(f'{r}.py' for r in wanted)} found", sub, files=files)
        # a file that does not compile costs its role only: the others are graded
        problems = {r: f"syntax error (Python {lab.python.version}): {sub.rel(r)} {sub.errors[r]}"
                    for r in graded if r in sub.errors}
        runnable = [r for r in graded if r not in problems]
        scn_entries, integ_entries = [], []
        try:
            with stage.Stage() as staged:  # the hand-in is copied (and its modules compiled) once for its runs
                for scn in scenarios:
                    # each role on its own: calclab's programs play the others
                    parts = []
                    for role in [r for r in runnable if r == "client" or r in scn.roles]:
                        templates = runner.templates_for("c", flavour=lab.flavour)
                        templates[role] = sub.template(role, client_stdin)
                        run = _play(grading, scn, templates, (role,), os.path.join(fdir, scn.name, role), out_dir,
                                    timeout, use_sniff, golden_dir, ports_base, limits, plays, staged=staged)
                        runs.append(run)
                        parts.append(_role_part(run, out_dir, tables[scn.name]))
                    scn_entries.append(_scenario_entry(scn.name, parts))
                    if integration is not None and runnable:
                        # the report's own set-up: every role the student's at once
                        templates = runner.templates_for("c", flavour=lab.flavour)
                        for r in runnable:
                            templates[r] = sub.template(r, client_stdin)
                        run = _play(grading, scn, templates, tuple(runnable),
                                    os.path.join(fdir, "integration", scn.name), out_dir, timeout, use_sniff,
                                    golden_dir, ports_base, limits, plays, integration=True, staged=staged)
                        runs.append(run)
                        integ_entries.append(_scenario_entry(scn.name, [_role_part(
                            run, out_dir, integration_tables[scn.name])]))
        except (runner.LabError, gradebook.UntypedItem) as e:
            return row(LAB_ERROR + str(e), files=files)
        for r, why in _start_failures([x for x in runs if not x.integration], runnable).items():
            problems[r] = f"{files[r]} does not start: {why}"
        status = "graded" if len(problems) < len(graded) else "; ".join(problems[r] for r in graded)
        extra = {}
        if integration is not None:
            extra["integration"] = gradebook.integration(integ_entries, integration_max, status)
        e = gradebook.entry(sub_id, status, scn_entries, maxima=maxima, files=files, problems=problems,
                            duration=round(time.time() - t0, 1), **extra)
        return finish(e, sub)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _add_captures(e, sub, scenarios, golden_dir, mapping, ports, points):
    """The student's own captures (handin_captures), verified against the goldens, into entry `e`:
    "captures", and with `points` > 0 each graded scenario's capture worth that many (a missing
    one 0 of them)."""
    from . import scenarios as scenarios_mod
    graded = {s.name: s for s in scenarios}
    names = list(graded) + [n for n in scenarios_mod.BUILTIN_NAMES if n not in graded]
    found = handin_captures.find(sub.src, names, mapping)
    caps = []
    for name, path in found.items():
        scn = graded.get(name) or scenarios_mod.builtin(name)
        if not scn.golden:
            continue
        worth = points if name in graded else 0.0
        rel = os.path.relpath(path, sub.src)
        try:
            caps.append(handin_captures.judge(path, scn, goldens.golden_path(scn, golden_dir),
                                              rel=rel, ports=ports, points=worth))
        except (runner.LabError, sniff.SniffError) as ex:   # calclab's fault: said, no points taken
            caps.append({"scenario": name, "file": rel, "status": f"lab error: {ex}", "complete": False,
                         "differences": [], "timeline": "", "score": 0.0, "max_score": 0.0})
    if points:
        for name, scn in graded.items():
            if scn.golden and name not in found:
                caps.append({"scenario": name, "file": None, "status": "not handed in", "complete": False,
                             "differences": [], "timeline": "", "score": 0.0, "max_score": float(points)})
        e["score"] = round(e["score"] + sum(c["score"] for c in caps), 1)
        e["max_score"] = round(e["max_score"] + sum(c["max_score"] for c in caps), 1)
    if caps:
        e["captures"] = caps


@dataclass(frozen=True)
class RoleRun:
    """A run judged on some of the hand-in's roles (one, or all at once for --integration): the
    judged run, the roles it judges, what the student's client sent (adapt.Adapted) and, with
    --plays, what differed between the plays.  Made once, never changed."""
    res: object              # runner.RunResult
    judged: tuple
    sent: object = None      # adapt.Adapted (its runs and adapted exchanges) when the client is judged
    races: tuple = None      # frozen: what plays.merge found, one mapping per race
    integration: bool = False

    @property
    def name(self):
        return self.res.name


def _play(grading, scn, templates, judged, workdir, out_dir, timeout, use_sniff, golden_dir, ports_base, limits,
          plays=1, integration=False, staged=None):
    """One RoleRun of `scn` with `templates`, judged on the roles `judged`: a graded client's run
    is judged once, by adapt, on the requests it really sent.  With `plays` > 1 it is played that
    many times and judged as one (plays.merge).  The golden, the replays and calclab's client
    are in the pickle flavour of the students' Python; ports and replays are `grading`'s; the
    copies the programs read come from `staged`, the hand-in's stage.Stage."""
    flavour = grading.lab.flavour
    played, sent = [], None
    for k in range(plays):
        res = runner.play(scn, templates, ports_base=ports_base or grading.ports,
                          workdir=workdir if k == 0 else os.path.join(workdir, f"play-{k + 1}"), timeout=timeout,
                          golden=goldens.golden_path(scn, golden_dir, flavour), use_sniff=use_sniff, limits=limits,
                          capture_only="client" in judged, lab=grading.lab, staged=staged)
        if "client" in judged:
            got = adapt.adapt(res, timeout=timeout, use_sniff=use_sniff, ports_base=grading.ports,
                              replay_dir=os.path.join(out_dir, ".replays"), flavour=flavour, replays=grading.replays)
            res = got.result
            sent = sent or got
        played.append(res)
    races = None
    if plays > 1:
        merged, races = plays_mod.merge(played)
        played[0] = merged
        races = freeze(races)
    return RoleRun(played[0], tuple(judged), sent, races, integration)


def scenario_list(specs):
    """Scenario objects from names, files, folders or Scenarios (default: the report's 3.1-3.3)."""
    try:
        return scenarios_mod.resolve(list(specs or GRADABLE))
    except scenarios_mod.ScenarioError as e:
        raise runner.LabError(str(e))


def point_tables(scenarios, wanted, golden_dir=None, weights=None, tables=None):
    """scenario -> its point table for the wanted roles ({(check, role): tenths}), the same for
    every hand-in of the class: each check's share is read from a fully correct play of the
    scenario (calc-sniff's verdict of its golden against itself, the reference client's
    printouts and, when the client is wanted, one request per connection; gradebook.point_table),
    then each role's shares over the scenarios are turned into half points adding up to its
    weight (`weights`, role -> points; default gradebook.DEFAULT_WEIGHTS).  Made once per process.
    Read from the by-value goldens whatever the students' Python: a pickle flavour changes the
    requests' sizes, not which checks and items a correct play has, so every interpreter gets
    the same tables (and a by-name golden that cannot be made is a hand-in's lab error, not the
    class's).  `tables`: the grading's PointTables that keeps them (default: made for this call)."""
    return (tables or PointTables())(scenarios, wanted, golden_dir, weights)


def _reference_checks(scn, golden_dir, client):
    """The checks (as dicts) of a fully correct play of scenario `scn`, every item passing."""
    name = scn.name
    found = []
    if scn.golden:
        golden = goldens.golden_path(scn, golden_dir)
        try:
            v = sniff.verify(golden, golden)
        except sniff.SniffError as e:
            raise runner.LabError(str(e))
        if v["status"] != "pass":
            raise runner.LabError(f"calc-sniff does not pass the golden {golden} against itself: "
                                  f"{v.get('reason') or v['status']}")
        found += checks_mod.from_sniff(v["checks"])
        # the reference's answers, each on its own client connection: the golden's clients ran
        # one after the other, each for as long as its connection's first packet
        recs = sniff.describe(golden, sniff.DEFAULT_PORTS)
        conns = [r for r in recs if r.get("type") == "conn"]
        runs = sorted(r["ts_first"] for r in conns if r.get("role") in checks_mod.CLIENT_CONN_ROLES)
        found += checks_mod.answer_checks(scn.exchanges, [{"t0": t, "t1": t} for t in runs], conns,
                                          [r for r in recs if r.get("type") == "msg"])
    if any(isinstance(a, Raw) for a in scn.actions):
        n = len(protocol_vectors())
        found += checks_mod.malformed_checks([(f"bad request {i + 1}", True, "") for i in range(n)],
                                             [{"role": "client->server", "id": i + 1, "handshake": True}
                                              for i in range(n)])
    else:
        found += checks_mod.client_checks(scn.exchanges, checks_mod.reference_clients(scn.exchanges))
    if client and scn.exchanges:  # a scenario of the lab's own bad requests has no client runs
        found.append(adapt._reuse_check([{"run": i + 1, "connections": 1, "requests_per_connection": [1],
                                          "conns": [None]} for i in range(len(scn.exchanges))]))
    failed = [c.name for c in found if not c.passed]
    if failed:
        raise runner.LabError(f"the reference's play of {name} fails the lab's own checks {failed}")
    return [c.to_dict() for c in found]


def class_maxima(scenarios, roles, golden_dir=None, weights=None, tables=None):
    """role -> the class's maximum (what an ungradeable row carries), {} when the lab cannot
    tell (calc-sniff missing).  `tables`: the grading's PointTables, if it has one."""
    try:
        return gradebook.role_maxima(point_tables(scenarios, list(roles or ROLES),
                                                  golden_dir, weights, tables).values())
    except runner.LabError:
        return {}


def _shown_path(path, out_dir):
    """A golden as grades.json names it: a replay relative to OUT, a file of the checkout
    relative to it, whichever machine or OUT graded the hand-in."""
    if not path:
        return None
    path = os.path.abspath(path)
    for top in (os.path.abspath(out_dir), paths.ROOT):
        if path.startswith(top + os.sep):
            return os.path.relpath(path, top)
    return path


def _role_part(run, out_dir, table):
    """What one RoleRun says about the role(s) it judged: their checks, points and untested checks."""
    res, judged, sent = run.res, list(run.judged), run.sent
    d = res.to_dict()
    deviant = {c for r in (sent.runs if sent else ()) if tuple(r["requests_per_connection"]) != (1,)
               for c in r["conns"]}
    deviant |= {c["id"] for c in res.records("conn") if (c.get("upstream_of") or {}).get("conn") in deviant}
    checks, roles, untested = gradebook.role_checks(d["checks"], judged, table, deviant)
    out = {"judged": judged, "checks": checks, "roles": roles, "untested": untested, "errors": list(res.errors),
           "isolation": res.isolation, "calc_sniff": (res.sniff or {}).get("status"),
           "golden": _shown_path(res.golden, out_dir)}
    if sent is not None:
        out["client_requests"] = thaw(sent.runs)
        out["adapted"] = sent.adapted
    if run.races is not None:   # --plays: what differed between the plays of the scenario
        out["races"] = [thaw(r) for r in run.races if r["role"] is None or set(r["role"].split(",")) & set(judged)]
    return out


def _scenario_entry(name, parts):
    """A scenario of grades.json from the runs that judged its roles (one per role, or the
    integration run that judged them all)."""
    checks = [c for p in parts for c in p["checks"]]
    out = {"scenario": name, "passed": bool(checks) and all(c["passed"] for c in checks),
           "roles": {r: v for p in parts for r, v in p["roles"].items()},
           "untested": [u for p in parts for u in p["untested"]], "checks": checks,
           "errors": [e for p in parts for e in p["errors"]],
           "isolation": parts[0]["isolation"] if parts else None,
           "calc_sniff": next((p["calc_sniff"] for p in parts if p["calc_sniff"] != "pass"),
                              parts[0]["calc_sniff"] if parts else None),
           "golden": next((p["golden"] for p in parts if p.get("adapted")), parts[0]["golden"] if parts else None),
           "runs": [{"judged": p["judged"], "calc_sniff": p["calc_sniff"], "golden": p["golden"]} for p in parts]}
    if any("races" in p for p in parts):
        out["races"] = [r for p in parts for r in p.get("races", [])]
    client = next((p for p in parts if "client_requests" in p), None)
    if client is not None:
        out["client_requests"] = client["client_requests"]
        out["adapted"] = client["adapted"]
    return out


def _finish(fdir, e, runs, lab):
    # the interpreter that ran the programs, as it said itself: its version and how it pickles
    e.setdefault("python", lab.python.to_dict())
    feedback.write(fdir, e, runs)
    with open(os.path.join(fdir, "entry.json"), "w") as f:
        json.dump(e, f, indent=1)
    return e


# ---------------------------------------------------------------- a class
def class_entries(class_dir):
    """The hand-ins of a class folder: every folder and every .zip, by name."""
    out = []
    for name in sorted(os.listdir(class_dir)):
        p = os.path.join(class_dir, name)
        if name.startswith(".") or os.path.islink(p):
            continue
        if os.path.isdir(p) or (os.path.isfile(p) and name.lower().endswith(".zip")):
            out.append(p)
    return out


def default_jobs():
    """A hand-in costs ~1 CPU-s over ~3 s of wall time one at a time (eight runs: program starts,
    waits for ports and connections), so four per core keep the cores busy without slowing any
    program enough to change a verdict (tests/bench/class_bench.py compares with --jobs 1:
    3.0-3.3x faster at 8 jobs on 2 cores, identical verdicts)."""
    return max(1, min(12, 4 * (os.cpu_count() or 1)))


def _grade_one(path, out_dir, kw, grading):
    try:
        return grade_submission(path, out_dir, grading=grading, **kw)
    except runner.LabError as e:
        return gradebook.entry(submission_id(path), LAB_ERROR + str(e), maxima=_maxima(kw, grading))
    finally:
        procs.stop_all()


def _maxima(kw, grading):
    return class_maxima(kw.get("scenarios"), kw.get("roles"), kw.get("golden_dir"), kw.get("weights"),
                        grading.tables)


def _grader_error(path, why, kw, grading):
    """The row of a hand-in the grader itself broke on (an exception of calclab's, a worker that died)."""
    return gradebook.entry(submission_id(path), f"not graded: grader error {why}", maxima=_maxima(kw, grading))


def _worker(slot, first_block, lab, tables, tasks, out):
    """A class's worker process: grades the hand-ins it takes from `tasks` ((path, out_dir, kw),
    until None) with a Grading of its own (the class's Lab, port block first_block + slot, its
    replays, the class's point tables made before the fork), sending (path, None) on its pipe `out` when it
    starts one and (path, entry) when it is done.  A pipe's send is written before it returns
    (a Queue's goes through a thread a dying process may not have run), so the parent knows
    which hand-in a worker was grading when it died."""
    procs.install_signal_handlers()
    grading = Grading(lab, PortBlock(first_block + slot), tables)
    for path, out_dir, kw in iter(tasks.get, None):
        out.send((path, None))
        try:
            entry = _grade_one(path, out_dir, kw, grading)
        except Exception as ex:  # the grader broke on this hand-in: it gets a row saying so
            entry = _grader_error(path, repr(ex), kw, grading)
        out.send((path, entry))
    out.close()


def _grade_in_workers(todo, out_dir, kw, jobs, grading, done):
    """Grade `todo` in `jobs` worker processes (forked: they share what this process made), each
    with its own Grading; `done(path, entry)` as each finishes.  A hand-in whose worker died
    under it gets a grader error row; the others go on in the workers left."""
    mp = multiprocessing.get_context("fork")
    tasks = mp.Queue()
    for p in todo:
        tasks.put((p, out_dir, kw))
    n = min(jobs, len(todo))
    for _ in range(n):
        tasks.put(None)
    first = random.randrange(1 << 16)
    workers, live = [], {}
    for k in range(n):
        recv, send = mp.Pipe(duplex=False)
        w = mp.Process(target=_worker, args=(k, first, grading.lab, grading.tables, tasks, send), daemon=True)
        w.start()
        send.close()   # the worker's alone: its end closes when the worker ends
        workers.append(w)
        live[recv] = k
    busy, left = {}, set(todo)
    try:
        while live and left:
            for conn in wait(list(live)):
                k = live[conn]
                try:
                    path, entry = conn.recv()
                except EOFError:   # the worker has ended, and all it sent has been read
                    del live[conn]
                    conn.close()
                    path = busy.pop(k, None)
                    if path is not None:   # it died grading this one
                        workers[k].join(5)
                        left.discard(path)
                        done(path, _grader_error(path, f"(its worker process ended with {workers[k].exitcode})",
                                                 kw, grading))
                    continue
                if entry is None:
                    busy[k] = path
                elif path in left:
                    busy.pop(k, None)
                    left.discard(path)
                    done(path, entry)
        for path in [p for p in todo if p in left]:   # every worker ended: nobody is left to grade them
            left.discard(path)
            done(path, _grader_error(path, "(every worker process ended)", kw, grading))
    finally:
        if left:   # leaving early (a signal, an error): the workers stop now, their programs with them
            for w in workers:
                if w.exitcode is None:
                    w.terminate()
        for w in workers:
            w.join(5)
            if w.exitcode is None:
                w.terminate()
                w.join(5)
        for conn in live:
            conn.close()


def load_done(out_dir, path):
    """The entry of a submission graded by an earlier run into out_dir, or None."""
    p = os.path.join(out_dir, feedback_dirname(submission_id(path)), "entry.json")
    try:
        with open(p) as f:
            e = json.load(f)
        return e if e.get("id") == submission_id(path) else None
    except (OSError, ValueError):
        return None


def shard_of(subs, shard):
    """The K-th of N deterministic slices of a class's hand-ins (`shard` = (K, N), K from 1): every
    N-th one in class order from the K-th, so each slice has hand-ins from all over the class."""
    k, n = shard
    return [p for i, p in enumerate(subs) if i % n == k - 1]


def parse_shard(text):
    """'K/N' -> (K, N); ValueError saying what is wrong."""
    k, sep, n = text.partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        k = n = 0
    if not sep or not 1 <= k <= n:
        raise ValueError(f"expected K/N with 1 <= K <= N, got {text!r}")
    return k, n


SHARD_FILE = "shard.json"


def grade_class(class_dir, out_dir, jobs=None, resume=False, progress=None, shard=None, **kw):
    """Grade every hand-in of class_dir into out_dir; returns the entries in class order.
    `progress(done, total, entry)` is called as each one finishes.  `shard` (K, N): grade only
    the K-th of N slices (shard_of), and say so in out_dir/shard.json for merge()."""
    os.makedirs(out_dir, exist_ok=True)
    subs = class_entries(class_dir)
    if shard:
        whole = [submission_id(p) for p in subs]
        subs = shard_of(subs, shard)
        with open(os.path.join(out_dir, SHARD_FILE), "w") as f:
            json.dump({"shard": list(shard), "class": whole, "ids": [submission_id(p) for p in subs]}, f, indent=1)
    ids = [submission_id(p) for p in subs]
    dirs = [feedback_dirname(i) for i in ids]
    dup = sorted({i for i, d in zip(ids, dirs) if ids.count(i) > 1 or dirs.count(d) > 1})
    if dup:
        raise runner.LabError(f"several entries share an id or feedback folder: {', '.join(dup)} "
                              "(a folder and a zip of one name? names differing only in punctuation?)")
    results = {}
    todo = []
    for p in subs:
        e = load_done(out_dir, p) if resume else None
        if e is not None:
            results[p] = e
        else:
            todo.append(p)
    total = len(subs)
    # the point tables are made once here, before the workers fork, and raise if the goldens fail
    grading = Grading(kw.get("lab") or lab_for(kw.get("python"), class_dir))
    kw["scenarios"] = scenario_list(kw.get("scenarios"))
    grading.tables(kw["scenarios"], list(kw.get("roles") or ROLES), kw.get("golden_dir"), kw.get("weights"))
    if progress:
        progress(len(results), total, None)

    def done(p, entry):
        results[p] = entry
        if progress:
            progress(len(results), total, entry)
    jobs = jobs or default_jobs()
    if jobs == 1 or len(todo) <= 1:
        for p in todo:
            done(p, _grade_one(p, out_dir, kw, grading))
    else:
        _grade_in_workers(todo, out_dir, kw, jobs, grading, done)
    # a lab error is calclab's failure, never the student's: each is graded once more, one at a
    # time (a loaded machine or a busy port may have caused it); what is left stays a lab error
    again = [p for p in todo if results[p]["status"].startswith(LAB_ERROR)]
    for p in again:
        results[p] = _grade_one(p, out_dir, kw, grading)
        if progress:
            progress(total, total, results[p])
    entries = [results[p] for p in subs]
    write_outputs(out_dir, entries)
    return entries


class MergeError(Exception):
    pass


def merge(shard_dirs, out_dir):
    """The class's gradebook from the OUT folders of its N shards (grade_class with shard=(K, N)):
    every shard once, all of one class; each hand-in's feedback folder and the shared replays
    copied into out_dir, grades.json, grades.csv and index.html written as one machine grading
    the whole class writes them.  Returns the entries in class order."""
    seen, entries, klass = {}, {}, None
    for d in shard_dirs:
        try:
            with open(os.path.join(d, SHARD_FILE)) as f:
                info = json.load(f)
            with open(os.path.join(d, "grades.json")) as f:
                got = json.load(f)["submissions"]
        except (OSError, ValueError, KeyError) as e:
            raise MergeError(f"{d}: not the output of lab/grade --class --shard ({e})")
        k, n = info["shard"]
        if klass is None:
            klass, count = info["class"], n
        if info["class"] != klass or n != count:
            raise MergeError(f"{d}: shard {k}/{n} of another class or another number of shards")
        if k in seen:
            raise MergeError(f"{d}: shard {k}/{n} given twice (also {seen[k]})")
        seen[k] = d
        for e in got:
            entries[e["id"]] = (e, d)
    missing = sorted(set(range(1, count + 1)) - set(seen)) if klass is not None else []
    if klass is None or missing:
        raise MergeError(f"shard(s) {', '.join(f'{k}/{count}' for k in missing) or 'all'} missing")
    lost = [i for i in klass if i not in entries]
    if lost:
        raise MergeError(f"hand-in(s) {', '.join(lost)} in no shard's grades.json")
    os.makedirs(out_dir, exist_ok=True)
    for i in klass:
        e, d = entries[i]
        src, dst = os.path.join(d, feedback_dirname(i)), os.path.join(out_dir, feedback_dirname(i))
        if os.path.abspath(src) != os.path.abspath(dst) and os.path.isdir(src):
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, symlinks=True)
    for d in shard_dirs:  # the replays the hand-ins' goldens name (.replays/...), once each
        src = os.path.join(d, ".replays")
        if os.path.isdir(src) and os.path.abspath(src) != os.path.abspath(os.path.join(out_dir, ".replays")):
            shutil.copytree(src, os.path.join(out_dir, ".replays"), symlinks=True, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.lock"))
    merged = [entries[i][0] for i in klass]
    write_outputs(out_dir, merged)
    return merged


def lab_errors(entries):
    """The entries whose grading calclab itself could not do."""
    return [e for e in entries if e["status"].startswith(LAB_ERROR)]


def write_outputs(out_dir, entries):
    from . import classindex
    gradebook.write_json(os.path.join(out_dir, "grades.json"), entries)
    gradebook.write_csv(os.path.join(out_dir, "grades.csv"), entries)
    classindex.write(os.path.join(out_dir, "index.html"), entries,
                     {e["id"]: feedback_dirname(e["id"]) for e in entries})
