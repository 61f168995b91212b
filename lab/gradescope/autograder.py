"""Gradescope's run_autograder: grade $ROOT/submission with lab/grade and write
$ROOT/results/results.json (ROOT is /autograder, or $CALCLAB_AUTOGRADER_ROOT for a trial run).

Whatever happens, a valid results.json is written: when grading itself fails (lab/grade crashed,
timed out, wrote nothing usable, or this script broke), it has score 0 and says why."""
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gradescope import grading, results  # noqa: E402

ROOT_ENV = "CALCLAB_AUTOGRADER_ROOT"
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.json")
DEFAULTS = {"roles": None, "role_weights": None, "scenarios": None, "client_stdin": None, "visibility": "visible", "hide": [],
            "stdout_visibility": "hidden", "time_limit": 480, "capture_points": 0}


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


def write_results(path, res):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=2)
    os.replace(tmp, path)


def grade_to_results(root, t0):
    cfg = load_config()
    out_dir = os.path.join(root, "calclab-out")
    shutil.rmtree(out_dir, ignore_errors=True)
    g = grading.grade(os.path.join(root, "submission"), out_dir, cfg["roles"], cfg["scenarios"],
                      cfg["client_stdin"], float(cfg["time_limit"]), cfg["role_weights"],
                      capture_points=float(cfg["capture_points"] or 0))
    sys.stdout.write(g.log)
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
        res = grade_to_results(root, t0)
    except grading.GradingFailed as e:
        res = results.failure(str(e), time.time() - t0)
    except Exception as e:  # this script's own bug must still leave the student a reason
        res = results.failure(f"internal error of the autograder: {e!r}", time.time() - t0)
    write_results(os.path.join(results_dir, "results.json"), res)
    print(f"run_autograder: score {res['score']:g}; "
          + "; ".join(f"{t['name']} {t['score']:g}/{t.get('max_score', 0):g}" for t in res["tests"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
