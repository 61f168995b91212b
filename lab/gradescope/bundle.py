"""lab/gradescope-bundle: Gradescope's autograder.zip from this checkout.

The zip holds the checkout's git-tracked files (never build trees, outputs or other untracked
files), setup.sh and run_autograder at its root as Gradescope requires, and
lab/gradescope/config.json with the grading options given here, which run_autograder reads.
Entries are sorted and dated by the last commit, so one commit and one set of options always give
the same bytes."""
import argparse
import json
import os
import stat
import subprocess
import sys
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
LAB = os.path.dirname(HERE)
sys.path.insert(0, LAB)
from calclab_lab.gradebook import integration_points, parse_weights  # noqa: E402
from calclab_lab import scenarios as scenarios_mod  # noqa: E402
from calclab_lab.scenarios import SCENARIOS  # noqa: E402
from gradescope import results  # noqa: E402

ROOT = os.path.dirname(LAB)
CONFIG_ENTRY = "lab/gradescope/config.json"
SCENARIO_ENTRY = "lab/gradescope/scenarios"   # a course's own scenario files travel here
AT_ROOT = {"setup.sh": os.path.join(HERE, "setup.sh"), "run_autograder": os.path.join(HERE, "run_autograder")}


class BundleError(Exception):
    pass


def tracked_files(root=ROOT):
    """Paths (relative, '/'-separated) of the regular files git tracks in the checkout."""
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-z"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise BundleError(f"{root} is not a git checkout (git ls-files failed: {e})")
    files = []
    for raw in out.split(b"\0"):
        rel = raw.decode("utf-8", "surrogateescape")
        if rel and os.path.isfile(os.path.join(root, rel)) and not os.path.islink(os.path.join(root, rel)):
            files.append(rel)
    return sorted(files)


def commit_time(root=ROOT):
    try:
        out = subprocess.run(["git", "-C", root, "log", "-1", "--format=%ct"], capture_output=True,
                             check=True, text=True).stdout.strip()
        return max(int(out), 315532800)  # zip dates start in 1980
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 315532800


def _entry(name, mode, when):
    info = zipfile.ZipInfo(name, date_time=time.gmtime(when)[:6])
    info.create_system = 3  # unix: unzip restores the permission bits (executables stay executable)
    info.external_attr = (stat.S_IFREG | (mode & 0o777)) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def build(out, config, root=ROOT, extra=None):
    """Write the zip; return the number of entries.  `extra`: {entry name: bytes} (scenario files)."""
    when = commit_time(root)
    extra = extra or {}
    files = [f for f in tracked_files(root) if f not in AT_ROOT and f != CONFIG_ENTRY and f not in extra]
    tmp = out + ".tmp"
    with zipfile.ZipFile(tmp, "w") as z:
        for name, path in AT_ROOT.items():
            with open(path, "rb") as f:
                z.writestr(_entry(name, 0o755, when), f.read())
        for rel in files:
            path = os.path.join(root, rel)
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            with open(path, "rb") as f:
                z.writestr(_entry(rel, mode, when), f.read())
        for name in sorted(extra):
            z.writestr(_entry(name, 0o644, when), extra[name])
        z.writestr(_entry(CONFIG_ENTRY, 0o644, when), json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out)
    return len(files) + len(AT_ROOT) + 1 + len(extra)


def _names(text, known, what):
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise BundleError(f"unknown {what} {', '.join(bad) or repr(text)} (known: {', '.join(known)})")
    return names


def scenario_entries(text):
    """(the config's scenario list, {zip entry: bytes}): built-in names as they are; scenario files
    and folders' .toml files checked (read as lab/grade will) and carried in the zip under
    SCENARIO_ENTRY, named there by the entry's path in the bundle."""
    names, extra = [], {}
    for spec in (n.strip() for n in text.split(",")):
        if not spec:
            continue
        if spec in SCENARIOS:
            names.append(spec)
            continue
        if not os.path.exists(spec):
            raise BundleError(f"unknown scenario {spec!r}: not a built-in ({', '.join(SCENARIOS)}), file or folder")
        files = [spec] if os.path.isfile(spec) else sorted(os.path.join(spec, f) for f in os.listdir(spec)
                                                           if f.endswith(".toml"))
        if not files:
            raise BundleError(f"{spec}: no .toml scenario files")
        for f in files:
            try:
                scn = scenarios_mod.load(f)
            except scenarios_mod.ScenarioError as e:
                raise BundleError(str(e))
            entry = f"{SCENARIO_ENTRY}/{scn.name}.toml"
            with open(f, "rb") as fh:
                data = fh.read()
            if extra.get(entry, data) != data or scn.name in names:
                raise BundleError(f"two scenarios named {scn.name!r}")
            extra[entry] = data
            names.append(entry)
    if not names:
        raise BundleError(f"no scenarios in {text!r}")
    return names, extra


def config_from(a, extra=None):
    """The config.json of the bundle; a course's scenario files go into `extra` (a dict)."""
    if a.capture_points < 0:
        raise BundleError("--capture-points is 0 or more")
    rules = []
    for r in a.hide:
        try:
            results.parse_rule(r)
        except ValueError as e:
            raise BundleError(f"--hide: {e}")
        rules.append(r)
    try:
        weights = parse_weights(a.role_weights) if a.role_weights else None
    except ValueError as e:
        raise BundleError(f"--role-weights: {e}")
    try:
        integration = integration_points(a.integration) if a.integration is not None else None
    except ValueError as e:
        raise BundleError(f"--integration: {e}")
    return {"roles": _names(a.roles, results.ROLES, "role(s)") if a.roles else None,
            "role_weights": ",".join(f"{r}={p:g}" for r, p in weights.items()) if weights else None,
            "scenarios": _scenarios(a.scenarios, extra) if a.scenarios else None,
            "client_stdin": a.client_stdin,
            "visibility": a.visibility, "hide": rules, "stdout_visibility": a.stdout_visibility,
            "time_limit": a.time_limit, "allow_unconfined": a.allow_unconfined} | ({"capture_points": a.capture_points} if a.capture_points else {}) \
        | ({"python": a.python} if a.python else {}) \
        | ({"integration": integration} if integration is not None else {})


def _scenarios(text, extra):
    names, files = scenario_entries(text)
    if extra is not None:
        extra.update(files)
    return names


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="lab/gradescope-bundle",
        description="Build Gradescope's autograder.zip from this checkout: calclab's git-tracked sources, "
                    "setup.sh (installs with apt and builds once) and run_autograder (grades "
                    "/autograder/submission with lab/grade and writes results/results.json).")
    ap.add_argument("--out", default="autograder.zip", help="the zip to write (default autograder.zip)")
    ap.add_argument("--roles", help="comma-separated roles graded from the submission (server,proxy,client; "
                                    "default: every role file found); calclab's programs play the others")
    ap.add_argument("--role-weights", metavar="ROLE=POINTS,...",
                    help="the points each role is worth, as lab/grade --role-weights (e.g. server=40,proxy=40,client=20)")
    ap.add_argument("--integration", nargs="?", type=float, const=0.0, default=None, metavar="POINTS",
                    help="also play each scenario with all the submission's programs at once (the report's set-up), "
                         "as lab/grade --integration: a test of its own worth POINTS (default 0: feedback only), "
                         "added to the score; each role's points still come from runs of its own")
    ap.add_argument("--scenarios", help="comma-separated built-in scenarios, scenario files or folders of them "
                                        "(the files travel in the zip; default: lab/grade's, 3.1,3.2,3.3)")
    ap.add_argument("--capture-points", type=float, default=0.0, metavar="P",
                    help="what a hand-in's own capture of each scenario is worth, as lab/grade --capture-points "
                         "(default 0: feedback only)")
    ap.add_argument("--client-stdin", metavar="TEXT",
                    help="standard input of the student's client, as lab/grade --client-stdin (e.g. '{example}\\nstop\\n')")
    ap.add_argument("--visibility", choices=results.VISIBILITIES, default="visible",
                    help="when students see the tests (Gradescope's assignment-level visibility; default visible)")
    ap.add_argument("--hide", action="append", default=[], metavar="PATTERN[=VISIBILITY]",
                    help="give the checks matching PATTERN ('SCENARIO/CHECK', or a scenario or check name; "
                         "shell wildcards) a test of their own per role with VISIBILITY (default after_due_date); "
                         "repeatable, the first match wins")
    ap.add_argument("--stdout-visibility", choices=results.VISIBILITIES, default="hidden",
                    help="when students see run_autograder's stdout (lab/grade's log; default hidden)")
    ap.add_argument("--python", metavar="PATH",
                    help="the Python that runs the students' programs on Gradescope, as lab/grade --python "
                         "(default: the grading machine's python3); judged against what the reference sends under it")
    ap.add_argument("--time-limit", type=float, default=480.0,
                    help="seconds lab/grade may take per submission before results say it was stopped "
                         "(keep it below the assignment's autograder timeout, so the result says why; default 480)")
    ap.add_argument("--allow-unconfined", action="store_true",
                    help="grade even where nothing can confine the students' programs (no namespaces and "
                         "not root); by default such a submission is not graded (docs/sandbox.md)")
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    try:
        extra = {}
        cfg = config_from(a, extra)
        n = build(os.path.abspath(a.out), cfg, extra=extra)
    except (BundleError, OSError) as e:
        print(f"lab/gradescope-bundle: {e}", file=sys.stderr)
        return 2
    size = os.path.getsize(a.out)
    print(f"lab/gradescope-bundle: {a.out}: {n} entries, {size / 1024:.0f} KiB; roles {','.join(cfg['roles'] or ['all found'])}, "
          f"scenarios {','.join(cfg['scenarios'] or ['default'])}, visibility {cfg['visibility']}"
          + (f", hidden: {' '.join(cfg['hide'])}" if cfg["hide"] else "")
          + (f", integration {cfg['integration']:g} points" if cfg.get("integration") is not None else ""))
    return 0
