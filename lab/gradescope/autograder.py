"""Gradescope's run_autograder: grade $ROOT/submission with lab/grade and write
$ROOT/results/results.json (ROOT is /autograder, or $CALCLAB_AUTOGRADER_ROOT for a trial run).

Whatever happens, a valid results.json is written: when grading itself fails (lab/grade crashed,
timed out, wrote nothing usable, or this script broke), it has score 0 and says why.

The students' programs never reach it: ROOT is closed to other uids before grading (they run
from private copies: docs/sandbox.md), results.json is written only once every process they
started is gone (grading.grade), from a folder of root's own, and only with a score within the
class's maximum: a grade from elsewhere than lab/grade's own reckoning is refused."""
import json
import math
import os
import shutil
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gradescope import grading, results  # noqa: E402

ROOT_ENV = "CALCLAB_AUTOGRADER_ROOT"
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.json")
DEFAULTS = {"roles": None, "role_weights": None, "scenarios": None, "client_stdin": None, "visibility": "visible", "hide": [],
            "stdout_visibility": "hidden", "time_limit": 480, "capture_points": 0,
            "allow_unconfined": False, "python": None, "integration": None}


def load_config(path=CONFIG):
    """The options lab/gradescope-bundle was given (written into the bundle); defaults without it."""
    cfg = dict(DEFAULTS)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            cfg.update(json.load(f))
    cfg["rules"] = [results.parse_rule(r) for r in cfg["hide"]]
    # a course's scenario files travel in the bundle: their entries are paths in it
    source = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if cfg["scenarios"]:
        cfg["scenarios"] = [os.path.join(source, s) if "/" in s else s for s in cfg["scenarios"]]
    return cfg


def close_to_others(root):
    """ROOT (source, submission, results, lab/grade's output) closed to every uid but root's:
    where the programs run under uids of their own, permissions are what keeps them out."""
    if os.geteuid() == 0:
        os.chmod(root, stat.S_IMODE(os.stat(root).st_mode) & ~0o077)


def out_of_range(entry, cfg):
    """What makes a grade impossible for this class ([] when none): a score outside 0..the
    class's maximum (from its point tables, made from the goldens, not from anything a program
    could touch), a role's points outside 0..its maximum, points that do not add up."""
    from calclab_lab import classgrade, gradebook
    if str(entry.get("status", "")).startswith("lab error: "):
        return []   # no points at all (scores null): results.from_entry says why
    weights = gradebook.parse_weights(cfg["role_weights"]) if cfg["role_weights"] else None
    tenths = classgrade.class_maxima(cfg["scenarios"], cfg["roles"], None, weights)
    if not tenths:
        return ["the class's maximum cannot be made here (calc-sniff missing?)"]
    maxima = {r: gradebook.points(t) for r, t in tenths.items()}
    out = []

    def num(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    # a hand-in's own captures (--capture-points) add their worth, each at most the configured one
    each = float(cfg.get("capture_points") or 0)
    caps = (entry.get("captures") or []) if each else []   # without points they are feedback only
    if not isinstance(caps, list) or not all(isinstance(c, dict) and num(c.get("score")) and num(c.get("max_score"))
                                             and 0 <= c["score"] <= c["max_score"] <= each for c in caps):
        return out + [f"captures outside 0..{each:g} each"]
    # --integration adds a section worth exactly the configured points (null: no section)
    integ_top = cfg.get("integration")
    integ = entry.get("integration")
    if integ_top is None and integ is not None:
        return out + ["an integration section the class does not have"]
    if integ_top is not None:
        top = float(integ_top)
        if not isinstance(integ, dict) or not num(integ.get("score")) or not num(integ.get("max_score")) \
                or abs(integ["max_score"] - top) > 0.05 or not 0 <= integ["score"] <= top + 0.05:
            return out + [f"integration section outside 0..{top:g}"]
    integ_score = integ["score"] if integ_top is not None else 0
    total = sum(maxima.values()) + sum(c["max_score"] for c in caps) + float(integ_top or 0)
    score, max_score = entry.get("score"), entry.get("max_score")
    if not num(max_score) or abs(max_score - total) > 0.05:
        out.append(f"maximum {max_score!r} is not the class's {total:g}")
    if not num(score) or not 0 <= score <= total + 0.05:
        out.append(f"score {score!r} is outside 0..{total:g}")
    roles = entry.get("roles") or {}
    if not isinstance(roles, dict):
        return out + ["roles is not an object"]
    for role, r in roles.items():
        s = r.get("score") if isinstance(r, dict) else None
        if role not in maxima or not num(s) or not 0 <= s <= maxima[role] + 0.05:
            out.append(f"{role}'s score {s!r} is outside 0..{maxima.get(role, 0):g}")
    if roles and num(score) and all(isinstance(r, dict) and num(r.get("score")) for r in roles.values()) \
            and abs(sum(r["score"] for r in roles.values()) + sum(c["score"] for c in caps) + integ_score - score) > 0.05:
        out.append(f"the roles' points do not add up to the score {score!r}")
    return out


def grade_to_results(root, t0):
    cfg = load_config()
    out_dir = os.path.join(root, "calclab-out")
    shutil.rmtree(out_dir, ignore_errors=True)
    g = grading.grade(os.path.join(root, "submission"), out_dir, cfg["roles"], cfg["scenarios"],
                      cfg["client_stdin"], float(cfg["time_limit"]), cfg["role_weights"],
                      capture_points=float(cfg["capture_points"] or 0),
                      allow_unconfined=bool(cfg["allow_unconfined"]), python=cfg["python"],
                      integration=cfg["integration"])
    sys.stdout.write(g.log)
    bad = out_of_range(g.entry, cfg)
    if bad:
        return results.failure("the grade is impossible for this class, so it is not given: " + "; ".join(bad[:5]),
                               time.time() - t0)
    res = results.from_entry(g.entry, time.time() - t0, g.feedback, cfg["rules"], cfg["visibility"],
                             cfg["stdout_visibility"])
    bad = results.problems(res)
    if bad:
        return results.failure("the autograder built a results.json Gradescope would refuse: " + "; ".join(bad[:5]),
                               time.time() - t0)
    return res


def main():
    t0 = time.time()
    root = os.environ.get(ROOT_ENV) or "/autograder"
    results_dir = os.path.join(root, "results")
    os.makedirs(results_dir, exist_ok=True)
    try:
        close_to_others(root)
        res = grade_to_results(root, t0)
    except grading.GradingFailed as e:
        res = results.failure(str(e), time.time() - t0)
    except Exception as e:  # this script's own bug must still leave the student a reason
        res = results.failure(f"internal error of the autograder: {e!r}", time.time() - t0)
    results.write(os.path.join(results_dir, "results.json"), res)
    print(f"run_autograder: score {res['score']:g}; "
          + "; ".join(f"{t['name']} {t['score']:g}/{t.get('max_score', 0):g}" for t in res["tests"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
