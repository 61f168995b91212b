"""Gradescope's results.json from one submission entry of lab/grade's grades.json.

Gradescope's published autograder specification has, at the top level, `score`, `execution_time`
(seconds), `output` (+ `output_format`), `visibility`, `stdout_visibility` and `tests[]`; each test
`name`, `score`, `max_score`, `status` (passed/failed), `output` (+ `output_format`), `visibility`.
Here each graded role (server, proxy, client) is one test worth that role's points, its output
listing every check of the role with each failed item's detail.  Checks chosen by visibility rules
are split off into a test of their own per role, shown to students only when that rule says."""
import fnmatch
import math

VISIBILITIES = ("visible", "after_due_date", "after_published", "hidden")  # from soonest to never
FORMATS = ("text", "html", "simple_format", "md", "ansi")
STATUSES = ("passed", "failed")
ROLES = ("server", "proxy", "client")
FAILED_ITEMS_SHOWN = 20      # per check in a test's output: enough to see the pattern
OUTPUT_LIMIT = 60000         # characters of the top-level report kept in one field
HIDE_DEFAULT = "after_due_date"
WHEN = {"after_due_date": "after the due date", "after_published": "once grades are published",
        "hidden": "to course staff only", "visible": "now"}


# ---------------------------------------------------------------- visibility rules
def parse_rule(text):
    """'PATTERN[=VISIBILITY]' -> (pattern, visibility).  PATTERN is a shell pattern matched against
    'SCENARIO/CHECK' when it has a '/', else against the scenario or the check name alone."""
    pattern, sep, vis = text.partition("=")
    vis = vis.strip() if sep else HIDE_DEFAULT
    pattern = pattern.strip()
    if not pattern:
        raise ValueError(f"empty pattern in {text!r}")
    if vis not in VISIBILITIES:
        raise ValueError(f"unknown visibility {vis!r} in {text!r} (one of {', '.join(VISIBILITIES)})")
    return pattern, vis


def visibility_of(scenario, check, rules, default):
    """The first rule matching this check decides; no rule: the default."""
    for pattern, vis in rules:
        if "/" in pattern:
            if fnmatch.fnmatchcase(f"{scenario}/{check}", pattern):
                return vis
        elif fnmatch.fnmatchcase(scenario, pattern) or fnmatch.fnmatchcase(check, pattern):
            return vis
    return default


# ---------------------------------------------------------------- grades.json -> tests
def check_role(check):
    """The role a check's points belong to: its own 'role', else the one role all its items name."""
    if check.get("role") in ROLES:
        return check["role"]
    roles = {it.get("role") for it in check.get("items", [])} & set(ROLES)
    return roles.pop() if len(roles) == 1 else None


def _num(x):
    return round(float(x), 1)  # points are tenths: sums of them rounded back, no float noise


def _check_lines(scenario, check, role, tag=""):
    mark = "ok  " if check.get("passed") else "FAIL"
    lines = [f"{mark} {scenario} {check.get('name', '?'):<24} {tag}{_num(check.get('score', 0)):g}/"
             f"{_num(check.get('max_score', 0)):g}"]
    failed = [it for it in check.get("items", []) if not it.get("passed", it.get("ok", False))
              and it.get("role", role) == role]
    for it in failed[:FAILED_ITEMS_SHOWN]:
        lines.append(f"       - {it.get('detail', '(no detail)')}")
    if len(failed) > FAILED_ITEMS_SHOWN:
        lines.append(f"       ... and {len(failed) - FAILED_ITEMS_SHOWN} more failed items")
    return lines


def role_groups(entry, rules=(), default="visible"):
    """{(role, visibility): [(scenario, check), ...]} for the roles the submission is graded on."""
    roles = [r for r in ROLES if r in (entry.get("roles") or {})]
    groups = {}
    for r in roles:
        groups[(r, default)] = []
    for scn in entry.get("scenarios") or []:
        for chk in scn.get("checks") or []:
            r = check_role(chk)
            if r in roles:
                vis = visibility_of(scn.get("scenario", "?"), chk.get("name", "?"), rules, default)
                groups.setdefault((r, vis), []).append((scn.get("scenario", "?"), chk))
    return groups


def role_tests(entry, rules=(), default="visible"):
    """Gradescope tests: per role one test (default visibility) plus one per other visibility its
    rules give.  The default test carries the role's points from grades.json less the split-off
    ones, so the tests always add up to lab/grade's score."""
    status = entry.get("status", "graded")
    roles = entry.get("roles") or {}
    groups = role_groups(entry, rules, default)
    tests = []
    for r in ROLES:
        if r not in roles:
            continue
        split = [(vis, checks) for (role, vis), checks in groups.items() if role == r and vis != default]
        split.sort(key=lambda g: VISIBILITIES.index(g[0]))
        main_score = _num(roles[r].get("score", 0))
        main_max = _num(roles[r].get("max_score", 0))
        parts = []
        for vis, checks in split:
            s = _num(sum(float(c.get("score", 0)) for _, c in checks))
            m = _num(sum(float(c.get("max_score", 0)) for _, c in checks))
            main_score, main_max = _num(main_score - s), _num(main_max - m)
            parts.append((f"{r}: further checks (shown {WHEN[vis]})", vis, s, m, checks))
        parts.insert(0, (r, default, main_score, main_max, groups[(r, default)]))
        for name, vis, s, m, checks in parts:
            lines = []
            if status != "graded":
                lines.append(f"not graded: {status}")
            for scn, chk in checks:
                lines += _check_lines(scn, chk, r)
            ok = status == "graded" and all(c.get("passed") for _, c in checks) and s >= m
            tests.append({"name": name, "score": s, "max_score": m, "status": "passed" if ok else "failed",
                          "output": "\n".join(lines) or "(no checks)", "output_format": "text",
                          "visibility": vis})
    if not tests:  # nothing gradable found: one test says why, worth what lab/grade says it is worth
        tests.append({"name": "submission", "score": _num(entry.get("score", 0)),
                      "max_score": _num(entry.get("max_score", 0)), "status": "failed",
                      "output": f"not graded: {status}", "output_format": "text", "visibility": "visible"})
    return tests


def integration_tests(entry, rules=(), default="visible"):
    """The entry's integration section (lab/grade --integration: every program the student's at
    once, the report's set-up) as one test worth its points (0/0 when feedback only), so the
    tests add up to the score, which counts them.  It names checks of every role, so it is
    shown when the strictest rule over them says (never leaking a hidden check)."""
    integ = entry.get("integration")
    if not isinstance(integ, dict):
        return []
    status = entry.get("status", "graded")
    lines = [] if status == "graded" else [f"not graded: {status}"]
    vis, ok = default, status == "graded"
    for scn in integ.get("scenarios") or []:
        name = scn.get("scenario", "?")
        for chk in scn.get("checks") or []:
            role = check_role(chk)
            lines += _check_lines(name, chk, role, f"{role or '?':<7}")
            ok = ok and bool(chk.get("passed"))
            v = visibility_of(name, chk.get("name", "?"), rules, default)
            vis = max(vis, v, key=VISIBILITIES.index)
    s, m = _num(integ.get("score", 0)), _num(integ.get("max_score", 0))
    return [{"name": "integration: all the programs at once" + ("" if m else " (feedback only)"),
             "score": s, "max_score": m, "status": "passed" if ok and s >= m else "failed",
             "output": "\n".join(lines) or "(no checks)", "output_format": "text", "visibility": vis}]


# ---------------------------------------------------------------- the whole results.json
MD_SPECIAL = set("\\`*_[]<>|~&")


def md_text(text):
    """Text (a status or detail quoting a student's program, say) shown as itself in Markdown:
    on one line, with every character Markdown or HTML would act on escaped."""
    return "".join("\\" + ch if ch in MD_SPECIAL else ch for ch in " ".join(str(text).splitlines()))


def fenced(text):
    """A Markdown code block holding text as it is (the fence is longer than any run of backticks in it)."""
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text.rstrip()}\n{fence}"


def bounded(report):
    """The text report cut to what one field of a platform's page should hold."""
    report = report.strip()
    if len(report) > OUTPUT_LIMIT:
        report = report[:OUTPUT_LIMIT] + "\n... (cut: the whole report is in the feedback page)"
    return report


def isolation_line(entry):
    """What confined the programs, as the grader recorded it, said plainly."""
    seen = []
    for scn in [entry] + list(entry.get("scenarios") or []):
        iso = scn.get("isolation")
        if iso and iso not in seen:
            seen.append(iso if isinstance(iso, str) else str(iso))
    return "isolation: " + ("; ".join(seen) if seen else "none (the grader recorded no sandbox)")


def capture_tests(entry, default="visible"):
    """The hand-in's own captures as one test when the course gives them points (lab/grade
    --capture-points): the tests then add up to the score, which counts them."""
    caps = [c for c in entry.get("captures") or [] if c.get("max_score")]
    if not caps:
        return []
    from calclab_lab import handin_captures
    score, top = sum(c["score"] for c in caps), sum(c["max_score"] for c in caps)
    text = "\n".join(handin_captures.text([dict(c, timeline="") for c in caps])[2:])
    return [{"name": "captures (the Wireshark part)", "score": _num(score), "max_score": _num(top),
             "status": "passed" if score >= top else "failed", "output": text, "output_format": "text",
             "visibility": default}]


def python_line(entry):
    """The interpreter that ran the programs, as the grader asked it (grades.json's python)."""
    py = entry.get("python") or {}
    if not py.get("version"):
        return None
    how = "by name (getattr)" if py.get("pickle_flavour") == "getattr" else "by value"
    return f"python: {py.get('implementation', 'Python')} {py['version']} ({py.get('path', '?')}; enum members pickled {how})"


def from_entry(entry, execution_time, feedback="", rules=(), default="visible", stdout_visibility="hidden"):
    """results.json for one graded (or ungradable) submission entry of grades.json."""
    if str(entry.get("status", "")).startswith("lab error: "):
        # calclab's own failure: no points given or taken, the reason shown (regrade it)
        return failure(entry["status"], execution_time)
    tests = role_tests(entry, rules, default) + integration_tests(entry, rules, default) + capture_tests(entry, default)
    shown = [t for t in tests if t["visibility"] == "visible"]
    later = [t for t in tests if t["visibility"] != "visible"]
    lines = []
    if not later:
        lines.append(f"- calclab grade: **{_num(entry.get('score', 0)):g}/{_num(entry.get('max_score', 0)):g}** points")
    if shown:
        lines.append("- " + ", ".join(f"{md_text(t['name'])} {t['score']:g}/{t['max_score']:g}" for t in shown))
    if later:
        whens = sorted({t["visibility"] for t in later}, key=VISIBILITIES.index)
        lines.append("- more checks are graded; their results are shown " + " or ".join(WHEN[w] for w in whens))
    lines.append(f"- status: {md_text(entry.get('status', 'graded'))}")
    lines.append(f"- {md_text(isolation_line(entry))}")
    if python_line(entry):
        lines.append(f"- {md_text(python_line(entry))}")
    verdicts = [f"{s.get('scenario')} {'PASS' if s.get('passed') else 'FAIL'}" for s in entry.get("scenarios") or []]
    if verdicts and not later:  # a scenario's verdict would tell a hidden check's result
        lines.append("- scenarios: " + ", ".join(verdicts))
    report = bounded(feedback)
    if report and later:
        # the report names every check's result: it is shown when the last hidden test is
        strictest = max((t["visibility"] for t in later), key=VISIBILITIES.index)
        tests.append({"name": "report: sequence diagrams and every check", "score": 0, "max_score": 0,
                      "status": "passed", "output": report, "output_format": "text", "visibility": strictest})
    elif report:
        lines.append("")
        lines.append(fenced(report))
    return {"score": _num(entry.get("score", 0)), "execution_time": int(math.ceil(max(0.0, execution_time))),
            "output": "\n".join(lines), "output_format": "md", "visibility": default,
            "stdout_visibility": stdout_visibility, "tests": tests}


def write(path, res):
    """The one place a results.json is written (lab/grade --format gradescope, run_autograder):
    whole or not at all, from a folder only its owner may enter, made next to `path` so the
    rename stays on one file system: no reader sees half a file, nobody else can swap it in
    between.  0644: Gradescope's harness reads it as another user."""
    import json
    import os
    import shutil
    import tempfile
    private = tempfile.mkdtemp(prefix=".calclab-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        tmp = os.path.join(private, "results.json")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def failure(reason, execution_time):
    """results.json when grading itself failed: score 0 and the reason, visible to the student."""
    text = f"calclab could not grade this submission: {reason}"
    return {"score": 0, "execution_time": int(math.ceil(max(0.0, execution_time))), "output": text,
            "output_format": "text", "visibility": "visible", "stdout_visibility": "hidden",
            "tests": [{"name": "grading", "score": 0, "max_score": 0, "status": "failed", "output": text,
                       "output_format": "text", "visibility": "visible"}]}


# ---------------------------------------------------------------- the published fields and types
_NUM = (int, float)
TOP_FIELDS = {"score": _NUM, "execution_time": _NUM, "output": str, "output_format": FORMATS,
              "test_output_format": FORMATS, "test_name_format": FORMATS, "visibility": VISIBILITIES,
              "stdout_visibility": VISIBILITIES, "extra_data": dict, "tests": list, "leaderboard": list}
TEST_FIELDS = {"score": _NUM, "max_score": _NUM, "status": STATUSES, "name": str, "name_format": FORMATS,
               "number": str, "output": str, "output_format": FORMATS, "tags": list, "visibility": VISIBILITIES,
               "extra_data": dict}


def _field_problems(where, obj, fields):
    out = []
    for k, v in obj.items():
        want = fields.get(k)
        if want is None:
            out.append(f"{where}: unknown field {k!r}")
        elif isinstance(want, tuple) and want and isinstance(want[0], str):
            if v not in want:
                out.append(f"{where}.{k}: {v!r} is not one of {', '.join(want)}")
        elif isinstance(v, bool) or not isinstance(v, want):
            out.append(f"{where}.{k}: {type(v).__name__} where the specification has "
                       f"{'a number' if want is _NUM else want.__name__}")
        elif want is _NUM and not math.isfinite(v):
            out.append(f"{where}.{k}: {v!r} is not a finite number")
    return out


def problems(results):
    """What in a results.json departs from Gradescope's published fields and types ([] when none)."""
    if not isinstance(results, dict):
        return ["results.json is not a JSON object"]
    out = _field_problems("results", results, TOP_FIELDS)
    tests = results.get("tests")
    if "score" not in results and not (isinstance(tests, list) and tests and
                                       all(isinstance(t, dict) and "score" in t for t in tests)):
        out.append("results: no top-level score and not every test has one")
    for i, t in enumerate(tests if isinstance(tests, list) else []):
        if not isinstance(t, dict):
            out.append(f"tests[{i}]: not an object")
            continue
        out += _field_problems(f"tests[{i}]", t, TEST_FIELDS)
        if isinstance(t.get("tags"), list) and not all(isinstance(x, str) for x in t["tags"]):
            out.append(f"tests[{i}].tags: not a list of strings")
    return out
