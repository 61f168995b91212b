"""Entry points of lab/scenario, lab/grade and lab/demo."""
import argparse
import os
import subprocess
import sys
import time

from . import adapt, classgrade, goldens, gradebook, interp, paths, procs, report, runner, sandbox, settings, sniff
from . import scenarios as scenarios_mod
from .scenarios import GRADABLE, SCENARIOS

TEMPLATE_HELP = ("command templates with {host} {port} {server_host} {server_port} {expr} {example} "
                 "(and {max_age} {cache_control} for the extra scenarios); a role left out uses ours")


def _add_common(ap):
    ap.add_argument("--server", help="server command template")
    ap.add_argument("--proxy", help="proxy command template")
    ap.add_argument("--client", help="client command template")
    ap.add_argument("--impl", choices=sorted(runner.IMPLS), default=os.environ.get("CALCLAB_IMPL", "c"),
                    help="whose programs fill the roles not given by a template: c (build/, default) or "
                         "student (tests/student, the Python implementation)")
    ap.add_argument("--ports-base", type=int, default=None,
                    help="proxy port; the server listens on the next one (default 9998 for scenario, free ports for grade)")
    ap.add_argument("--timeout", type=float, default=15.0, help="seconds per program (start, each client)")
    ap.add_argument("--html", metavar="FILE", help="write the sequence diagram of the run")
    ap.add_argument("--workdir", help="where captures and logs go (default: a new temporary directory)")
    ap.add_argument("--allow-unconfined", action="store_true",
                    help="where nothing can confine the programs (no namespaces, not root), run them "
                         "unconfined instead of refusing (docs/sandbox.md)")
    _add_python(ap)
    sandbox.Limits.add_arguments(ap)


def _add_python(ap):
    ap.add_argument("--python", metavar="PATH", default=paths.PY,
                    help="the Python that runs the students' programs ({py} in the templates, the hand-ins; "
                         f"default {paths.PY}). Runs are judged against what the reference sends under it: "
                         "CPython 3.11.2 (Debian 12's python3) pickles enum members by name, other versions by "
                         "value, and the goldens and calclab's client follow")


def _lab(prog, a, *grader_paths):
    """The grading's set-up (settings.Lab), made once here and handed down: --python, the
    grader's own folders and --allow-unconfined; None after printing why --python cannot be
    used."""
    allow = getattr(a, "allow_unconfined", False)
    try:
        return settings.Lab.create(a.python, grader_paths, True if allow else None)
    except interp.InterpreterError as e:
        print(f"{prog}: --python {e}", file=sys.stderr)
        return None


def _refused(lab, prog):
    """'status: not graded: cannot confine ...' when programs may not run here; None when they may."""
    why = sandbox.refusal(lab)
    if why:
        print(f"status: not graded: {why}")
        print(f"{prog}: not graded: {why}", file=sys.stderr)
    return why


def _absolute(a, *names):
    """Paths from options made absolute before anything uses them: programs and tools run from
    other folders (a hand-in's, the sandbox's)."""
    for n in names:
        v = getattr(a, n, None)
        if v:
            setattr(a, n, os.path.abspath(v))


def _check_programs(templates, roles):
    """Our own programs must exist when a role uses them."""
    missing = []
    for role in roles:
        t = templates[role]
        if "{build}" in t:
            exe = os.path.join(paths.BUILD, f"calc-{role}")
            if not os.access(exe, os.X_OK):
                missing.append(exe)
    return missing


def scenario_main(argv=None):
    ap = argparse.ArgumentParser(prog="lab/scenario", description="Play a scenario of the report, capture it, "
                                 "verify the capture and show the programs' logs side by side. " + TEMPLATE_HELP)
    ap.add_argument("name", help=f"a built-in scenario ({', '.join(SCENARIOS)}) or a scenario file "
                    "(docs/scenario-files.md)")
    _add_common(ap)
    ap.add_argument("--capture-only", action="store_true", help="capture, do not verify")
    ap.add_argument("--golden", help="golden capture (default captures/NAME.pcap)")
    ap.add_argument("--no-sniff", action="store_true",
                    help="capture with tcpdump instead of calc-sniff (calc-sniff still judges the capture)")
    ap.add_argument("--quiet", action="store_true", help="no timeline")
    ap.add_argument("--check-capture", metavar="FILE",
                    help="play nothing: judge FILE, a capture of the scenario made elsewhere (a student's own, any "
                         "link type, pcap or pcapng) against its golden, as lab/grade judges a hand-in's captures")
    ap.add_argument("--capture-ports", metavar="PROXY,SERVER",
                    help="with --check-capture: the capture's ports (default: found from its connections)")
    a = ap.parse_args(argv)
    procs.install_signal_handlers()
    _absolute(a, "golden", "workdir", "html")
    if a.check_capture:
        return _check_capture(a)
    lab = _lab("lab/scenario", a)
    if lab is None or _refused(lab, "lab/scenario"):
        return 2
    flavour = runner.flavour_for(a.impl, a.server, a.proxy, a.client, lab=lab)
    t = runner.templates_for(a.impl, a.server, a.proxy, a.client, flavour=flavour)
    try:
        scn = scenarios_mod.resolve([a.name])[0]
    except scenarios_mod.ScenarioError as e:
        print(f"lab/scenario: {e}", file=sys.stderr)
        return 2
    missing = _check_programs(t, list(scn.roles) + ["client"])
    if missing:
        print(f"lab/scenario: not built: {', '.join(missing)} (build first, or use --impl student)", file=sys.stderr)
        return 2
    try:
        golden = None if a.capture_only else a.golden or goldens.golden_path(scn, flavour=flavour)
        res = runner.play(scn, t, ports_base=a.ports_base or 9998, workdir=a.workdir, timeout=a.timeout,
                          golden=golden, use_sniff=not a.no_sniff,
                          capture_only=a.capture_only, verbose=lambda m: print(f"[lab] {m}", flush=True),
                          limits=sandbox.Limits.from_args(a), lab=lab)
    except runner.LabError as e:
        print(f"lab/scenario: {e}", file=sys.stderr)
        return 2
    finally:
        procs.stop_all()
    if not a.quiet:
        print()
        print(report.timeline(res))
        print()
    if a.html:
        report.write_html(a.html, [res], title=f"calclab scenario {a.name}")
        print(f"[lab] sequence diagram: {a.html}")
    if a.capture_only:
        print(f"[lab] capture written: {res.pcap}")
        return 0 if not res.errors else 1
    print(report.summary_text(res))
    return 0 if res.passed else 1


def _check_capture(a):
    """lab/scenario NAME --check-capture FILE: 0 a complete capture of the scenario, 1 not, 2 unreadable."""
    from . import handin_captures
    try:
        scn = scenarios_mod.resolve([a.name])[0]
        ports = None
        if a.capture_ports:
            px, sv = (int(x) for x in a.capture_ports.split(","))
            ports = {"proxy": px, "server": sv}
        got = handin_captures.judge(a.check_capture, scn, a.golden or goldens.golden_path(scn), rel=a.check_capture,
                                    ports=ports)
    except ValueError:
        print("lab/scenario: --capture-ports takes PROXY,SERVER", file=sys.stderr)
        return 2
    except (scenarios_mod.ScenarioError, runner.LabError, sniff.SniffError) as e:
        print(f"lab/scenario: {e}", file=sys.stderr)
        return 2
    if a.quiet:
        got = dict(got, timeline="")
    print("\n".join(handin_captures.text([got])[1:]))
    return 0 if got["complete"] else 1 if got["status"] == "incomplete" else 2


def grade_main(argv=None):
    ap = argparse.ArgumentParser(prog="lab/grade", description="Grade an implementation on the report's "
                                 "scenarios with named checks and partial credit: a student's hand-in "
                                 "(SUBMISSION, a folder or .zip), a class folder of them (--class), or "
                                 "programs given by command templates. " + TEMPLATE_HELP)
    ap.add_argument("submission", nargs="?", metavar="SUBMISSION",
                    help="a hand-in folder or .zip with server.py, proxy.py, client.py (any case, a few levels down)")
    ap.add_argument("--class", dest="class_dir", metavar="DIR", help="grade every folder and .zip in DIR")
    ap.add_argument("--roles", help="which of a hand-in's roles are graded (comma-separated, default all found); "
                                    "calclab's programs play the others")
    ap.add_argument("--role-weights", metavar="ROLE=POINTS,...",
                    help="the points each role graded is worth over the scenarios, in whole or half points "
                         "(default server=40,proxy=40,client=20); with templates the roles graded are those they give "
                         "that are not calclab's own programs (all of them when none is given)")
    ap.add_argument("--integration", nargs="?", type=float, const=0.0, default=None, metavar="POINTS",
                    help="with SUBMISSION or --class: also play each scenario with all the hand-in's programs at "
                         "once (the report's set-up), shown in a section of its own, worth POINTS in whole or half "
                         "points (default 0: feedback only); each role's points always come from runs of its own")
    ap.add_argument("--jobs", type=int, default=None,
                    help=f"hand-ins graded at once with --class (default {classgrade.default_jobs()} here)")
    ap.add_argument("--resume", action="store_true", help="with --class: grade only what OUT does not have yet")
    ap.add_argument("--shard", metavar="K/N", help="with --class: grade only the K-th of N deterministic slices of the "
                                                   "class (every N-th hand-in from the K-th), for lab/grade --merge")
    ap.add_argument("--merge", nargs="+", metavar="OUT", help="build the class's gradebook in --out from the OUT "
                                                               "folders of its N --shard runs")
    ap.add_argument("--captures", metavar="SCENARIO=FILE,...",
                    help="with SUBMISSION or --class: the hand-in's own capture files of scenarios (paths in the "
                         "hand-in); files named for a scenario (3.2.pcapng) are found without it")
    ap.add_argument("--capture-ports", metavar="PROXY,SERVER",
                    help="the ports in the students' captures (default: found from each capture's connections)")
    ap.add_argument("--capture-points", type=float, default=0.0, metavar="P",
                    help="what a complete capture of each graded scenario is worth (default 0: feedback only)")
    ap.add_argument("--client-stdin", metavar="TEXT", help="standard input of a hand-in's client, with the "
                    "templates' placeholders and \\n for a newline, e.g. '{example}\\nstop\\n'")
    ap.add_argument("--scenarios", default=",".join(GRADABLE),
                    help="comma-separated built-in names, scenario files (.toml, docs/scenario-files.md) or "
                         "folders of them (default 3.1,3.2,3.3)")
    ap.add_argument("--plays", type=int, default=1, metavar="N",
                    help="with SUBMISSION or --class: play each scenario N times; an item failing in any play "
                         "fails, and the report lists the items whose verdict differed (default 1)")
    _add_common(ap)
    ap.add_argument("--format", choices=["text", "json", "junit", "gradescope"], default="text")
    ap.add_argument("--out", default="grade-out", help="output directory")
    ap.add_argument("--golden-dir", default=paths.CAPTURES, help="where NAME.pcap goldens are (calc-sniff verify)")
    ap.add_argument("--no-sniff", action="store_true",
                    help="capture with tcpdump instead of calc-sniff (calc-sniff still judges the capture)")
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    procs.install_signal_handlers()
    _absolute(a, "submission", "class_dir", "out", "golden_dir", "workdir", "html")
    a.merge = [os.path.abspath(p) for p in a.merge] if a.merge else None
    lab = _lab("lab/grade", a, a.submission, a.class_dir)
    if lab is None:
        return 2
    try:
        names = scenarios_mod.resolve(a.scenarios)
    except scenarios_mod.ScenarioError as e:
        print(f"lab/grade: {e}", file=sys.stderr)
        return 2
    if a.merge:
        return _merge(a)
    if a.shard and not a.class_dir:
        print("lab/grade: --shard goes with --class", file=sys.stderr)
        return 2
    if a.submission or a.class_dir:
        return _grade_handins(a, names, lab)
    if _refused(lab, "lab/grade"):
        return 2
    if a.integration is not None:
        print("lab/grade: --integration goes with SUBMISSION or --class (the templates' programs already play "
              "together)", file=sys.stderr)
        return 2
    try:
        weights = gradebook.parse_weights(a.role_weights) if a.role_weights else None
    except ValueError as e:
        print(f"lab/grade: --role-weights: {e}", file=sys.stderr)
        return 2
    flavour = runner.flavour_for(a.impl, a.server, a.proxy, a.client, lab=lab)
    t = runner.templates_for(a.impl, a.server, a.proxy, a.client, flavour=flavour)
    missing = _check_programs(t, sorted({r for n in names for r in n.roles} | {"client"}))
    if missing:
        print(f"lab/grade: reference programs not built: {', '.join(missing)}", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    sandbox.keep_private(a.out)
    t0 = time.time()
    results = []
    try:
        under_test = _under_test(a)
        tables = classgrade.point_tables(names, under_test, a.golden_dir, weights)
        runs = []
        for n in names:
            base = a.ports_base or procs.free_port_pair()
            wd = os.path.join(a.workdir, n.name) if a.workdir else None
            client = "client" in under_test
            res = runner.play(n, t, ports_base=base, workdir=wd, timeout=a.timeout,
                              golden=goldens.golden_path(n, a.golden_dir, flavour), use_sniff=not a.no_sniff,
                              limits=sandbox.Limits.from_args(a), capture_only=client, lab=lab)
            # a client under test is judged as a hand-in's is: on the requests it sent (adapt)
            sent = adapt.adapt(res, timeout=a.timeout, use_sniff=not a.no_sniff, ports_base=procs.free_port_pair,
                               replay_dir=os.path.join(a.out, ".replays"), flavour=flavour) if client else None
            res = sent.result if sent else res   # adapt's judged run (it leaves its input as it was)
            results.append(res)
            runs.append(classgrade.RoleRun(res, tuple(under_test), sent))
        entry = _score_templates(runs, under_test, tables, {r: t[r] for r in under_test}, a.out, time.time() - t0,
                                 lab)
    except (runner.LabError, gradebook.UntypedItem) as e:
        print(f"lab/grade: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # the grader itself broke
        print(f"lab/grade: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    finally:
        procs.stop_all()
    path = report.write_grade(a.out, a.format, entry, runs, time.time() - t0)
    if a.html:
        report.write_grade_html(a.html, entry, runs)
    for res, s in zip(results, entry["scenarios"]):
        print(report.summary_text(res, s))
    print(f"score {report.points_text(entry)}; {a.format} written to {path}")
    return 0 if report.full_marks(entry) else 1


def _under_test(a):
    """The roles a template grading judges: those the templates give that are not calclab's own
    programs (runner.ours_in); with none (calclab's programs alone), every role, so a template
    run of the reference gets what the same programs handed in get."""
    given = {r: v for r, v in (("server", a.server), ("proxy", a.proxy), ("client", a.client)) if v}
    ours = runner.ours_in(given)
    return [r for r in gradebook.ROLES if r in given and r not in ours] or list(gradebook.ROLES)


def _score_templates(runs, under_test, tables, templates, out_dir, duration, lab):
    """The template runs (classgrade.RoleRun) scored as hand-ins are (gradebook's model: the
    class's point tables, role weights, half points, penalties): the gradebook entry every
    output is made from."""
    maxima = gradebook.role_maxima(tables.values())
    scenarios = [classgrade._scenario_entry(run.name, [classgrade._role_part(run, out_dir, tables[run.name])])
                 for run in runs]
    problems = {r: f"{templates[r]} does not start: {why}"
                for r, why in classgrade._start_failures(runs, under_test).items()}
    status = "graded" if len(problems) < len(under_test) else "; ".join(problems[r] for r in under_test)
    e = gradebook.entry("templates", status, scenarios, maxima=maxima, files=templates, problems=problems,
                        duration=round(duration, 1), python=lab.python.to_dict())
    return e


def _unescape(text):
    """The backslash escapes a shell user types for --client-stdin: \\n, \\t and \\\\."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


class _Progress:
    """done/total, elapsed and an estimate on one redrawn line on a terminal; a plain line per
    finished hand-in otherwise (logs, CI)."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.tty, self.t0 = stream, stream.isatty(), time.time()

    def __call__(self, done, total, entry):
        el = time.time() - self.t0
        if self.tty:
            eta = el / done * (total - done) if done else 0
            bar = "#" * int(30 * done / max(total, 1))
            self.stream.write(f"\r[{bar:<30}] {done}/{total} elapsed {el:5.0f}s eta {eta:5.0f}s")
            if done == total:
                self.stream.write("\n")
        elif entry is not None:
            pts = "no points" if entry["score"] is None else f"{entry['score']:g}/{entry['max_score']:g}"
            self.stream.write(f"[{done}/{total}] {entry['id']}: {pts} {entry['status']} ({el:.0f}s)\n")
        self.stream.flush()


def _merge(a):
    """lab/grade --merge OUT1 ... --out OUT: one gradebook from the shards' outputs."""
    if a.submission or a.class_dir:
        print("lab/grade: --merge takes the shards' OUT folders, not SUBMISSION or --class", file=sys.stderr)
        return 2
    try:
        entries = classgrade.merge(a.merge, a.out)
    except (classgrade.MergeError, OSError) as e:
        print(f"lab/grade: --merge: {e}", file=sys.stderr)
        return 2
    print(f"{len(entries)} submission(s) from {len(a.merge)} shard(s); grades.json, grades.csv and index.html in {a.out}")
    left = classgrade.lab_errors(entries)
    for e in left:
        print(f"  {e['id']}: {e['status']}", file=sys.stderr)
    return 2 if left else 0


def _grade_handins(a, names, lab):
    """lab/grade SUBMISSION / --class DIR: grades.json, grades.csv, index.html and a feedback folder
    per hand-in under --out."""
    roles = [r.strip() for r in a.roles.split(",") if r.strip()] if a.roles else None
    if roles and any(r not in ("server", "proxy", "client") for r in roles):
        print(f"lab/grade: --roles takes server, proxy, client (got {a.roles})", file=sys.stderr)
        return 2
    if a.submission and a.class_dir:
        print("lab/grade: give SUBMISSION or --class DIR, not both", file=sys.stderr)
        return 2
    missing = _check_programs(runner.templates_for("c"), ["server", "proxy", "client"])
    if missing:
        print(f"lab/grade: calclab's programs are not built: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        weights = gradebook.parse_weights(a.role_weights) if a.role_weights else None
    except ValueError as e:
        print(f"lab/grade: --role-weights: {e}", file=sys.stderr)
        return 2
    try:
        if a.integration is not None:
            a.integration = gradebook.integration_points(a.integration)
    except ValueError as e:
        print(f"lab/grade: --integration: {e}", file=sys.stderr)
        return 2
    try:
        caps = dict(x.split("=", 1) for x in a.captures.split(",") if x.strip()) if a.captures else None
        cports = [int(x) for x in a.capture_ports.split(",")] if a.capture_ports else None
        if cports is not None and (len(cports) != 2 or not all(0 < p < 65536 for p in cports)):
            raise ValueError("two ports, the proxy's and the server's")
        if a.capture_points < 0:
            raise ValueError("--capture-points is 0 or more")
    except ValueError as e:
        print(f"lab/grade: --captures/--capture-ports/--capture-points: {e}", file=sys.stderr)
        return 2
    if not 1 <= a.plays <= 20:
        print(f"lab/grade: --plays takes 1 to 20 (got {a.plays})", file=sys.stderr)
        return 2
    why = _refused(lab, "lab/grade")
    if why:
        if a.submission:  # the platforms show the hand-in's status and the class's maximum
            os.makedirs(a.out, exist_ok=True)
            sub_id = classgrade.submission_id(a.submission)
            classgrade.write_outputs(a.out, [gradebook.entry(sub_id, f"not graded: {why}", maxima=classgrade.class_maxima(
                names, roles, a.golden_dir, weights))])
        return 2
    kw = dict(lab=lab, roles=roles, scenarios=names, captures=caps, capture_points=a.capture_points,
              capture_ports={"proxy": cports[0], "server": cports[1]} if cports else None,
              timeout=a.timeout, use_sniff=not a.no_sniff, golden_dir=a.golden_dir,
              limits=sandbox.Limits.from_args(a), weights=weights, plays=a.plays, integration=a.integration,
              client_stdin=_unescape(a.client_stdin) if a.client_stdin is not None else None)
    try:
        if a.class_dir:
            if not os.path.isdir(a.class_dir):
                print(f"lab/grade: {a.class_dir}: not a folder", file=sys.stderr)
                return 2
            os.makedirs(a.out, exist_ok=True)
            sandbox.keep_private(a.out)
            try:
                shard = classgrade.parse_shard(a.shard) if a.shard else None
            except ValueError as e:
                print(f"lab/grade: --shard: {e}", file=sys.stderr)
                return 2
            jobs = a.jobs
            if jobs is None and sandbox.probe()[0] == "uid":
                # without namespaces the runs share the host's network: one hand-in's programs
                # could reach another's ports, so hand-ins go one at a time unless --jobs says
                jobs = 1
                print("lab/grade: isolation: uid (no namespaces): hand-ins graded one at a time (their programs "
                      "would share the network); --jobs N to run several at once", file=sys.stderr)
            entries = classgrade.grade_class(a.class_dir, a.out, jobs=jobs, resume=a.resume,
                                             progress=_Progress(), shard=shard, **kw)
        else:
            if not os.path.exists(a.submission):
                print(f"lab/grade: {a.submission}: no such folder or zip", file=sys.stderr)
                return 2
            os.makedirs(a.out, exist_ok=True)
            sandbox.keep_private(a.out)
            entries = [classgrade.grade_submission(a.submission, a.out, ports_base=a.ports_base, **kw)]
            classgrade.write_outputs(a.out, entries)
    except runner.LabError as e:
        print(f"lab/grade: {e}", file=sys.stderr)
        return 2
    finally:
        procs.stop_all()
    for e in entries if a.submission else []:
        print(open(os.path.join(a.out, classgrade.feedback_dirname(e["id"]), "feedback.txt")).read().split("\n\n")[0])
    print(f"{len(entries)} submission(s) graded; grades.json, grades.csv and index.html in {a.out}")
    left = classgrade.lab_errors(entries)
    if left:
        # calclab's own failures: no points given or taken; grade them again once it is fixed
        print(f"lab/grade: {len(left)} submission(s) not graded because of a lab error (no points given or taken):",
              file=sys.stderr)
        for e in left:
            print(f"  {e['id']}: {e['status']}", file=sys.stderr)
        return 2
    return 0 if all(e["status"] == "graded" and e["score"] == e["max_score"] for e in entries) or a.class_dir else 1


def _stale(build_dir):
    exe = os.path.join(build_dir, "calc-server")
    if not os.path.exists(exe):
        return True
    t = os.path.getmtime(exe)
    for top in ("src", "include", "CMakeLists.txt"):
        p = os.path.join(paths.ROOT, top)
        if os.path.isfile(p):
            if os.path.getmtime(p) > t:
                return True
            continue
        for d, _, files in os.walk(p):
            if any(os.path.getmtime(os.path.join(d, f)) > t for f in files):
                return True
    return False


def build_if_needed():
    needed = [os.path.join(paths.BUILD, f"calc-{r}") for r in ("server", "proxy", "client")]
    if all(os.access(x, os.X_OK) for x in needed) and not _stale(paths.BUILD):
        return True
    print("[demo] building (ci/deps, cmake) ...", flush=True)
    steps = [["sh", os.path.join(paths.ROOT, "ci", "deps")]]
    if not os.path.exists(os.path.join(paths.BUILD, "CMakeCache.txt")):
        steps.append(["cmake", "-S", paths.ROOT, "-B", paths.BUILD, "-DCMAKE_BUILD_TYPE=Release"])
    # an existing tree keeps its configuration (build type, sanitizers): only brought up to date
    steps.append(["cmake", "--build", paths.BUILD, "-j2"])
    for cmd in steps:
        r = subprocess.run(cmd, cwd=paths.ROOT)
        if r.returncode != 0:
            print(f"[demo] build step failed: {' '.join(cmd)}", file=sys.stderr)
            return False
    return all(os.access(x, os.X_OK) for x in needed)


def demo_main(argv=None):
    ap = argparse.ArgumentParser(prog="lab/demo", description="Build if needed, then play scenario 3.2 "
                                 "(E1 miss, E1 cache hit, E2 miss) with our programs while verifying the capture.")
    ap.add_argument("--impl", choices=sorted(runner.IMPLS), default=os.environ.get("CALCLAB_IMPL", "c"),
                    help="student: use the Python implementation (tests/student) instead of build/")
    ap.add_argument("--ports-base", type=int, default=9998)
    ap.add_argument("--html", metavar="FILE")
    _add_python(ap)
    a = ap.parse_args(argv)
    procs.install_signal_handlers()
    if a.impl == "c" and not build_if_needed():
        return 2
    lab = _lab("lab/demo", a)
    if lab is None:
        return 2
    flavour = runner.flavour_for(a.impl, lab=lab)
    t = runner.templates_for(a.impl, flavour=flavour)
    try:
        scn = runner.scenario_of("3.2")
        res = runner.play(scn, t, ports_base=a.ports_base, golden=goldens.golden_path(scn, flavour=flavour),
                          verbose=lambda m: print(f"[demo] {m}", flush=True), lab=lab)
    except runner.LabError as e:
        print(f"lab/demo: {e}", file=sys.stderr)
        return 2
    finally:
        procs.stop_all()
    for c in res.clients:
        print(f"\n--- client {c['index'] + 1}: {c['exchange'].describe()} ({c['kind']}) ---")
        print(c["stdout"].rstrip())
    for role in ("proxy", "server"):
        if role in res.procs:
            print(f"\n--- {role} log ---")
            print(res.procs[role].output().rstrip())
    hits = [c for c in res.checks if c.name == "cache-hit-no-upstream"]
    print()
    if hits:
        print("cache hit: " + ("request 2 answered from the proxy's cache, no connection to the server"
                               if hits[0].passed else "NOT SEEN: " + "; ".join(it["detail"] for it in hits[0].failures())))
    if a.html:
        report.write_html(a.html, [res], title="calclab demo: scenario 3.2")
        print(f"sequence diagram: {a.html}")
    print(report.summary_text(res))
    return 0 if res.passed else 1
