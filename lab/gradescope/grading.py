"""Grade one submission with lab/grade (the class-grading logic) under a time limit, and read back
its entry of grades.json and its text report.  Shared by Gradescope's run_autograder and the GitHub
Classroom script, so both grade exactly as `lab/grade SUBMISSION --out DIR` does."""
import json
import os
import signal
import subprocess
import time

from calclab_lab import sandbox
from calclab_lab.classgrade import feedback_dirname

LAB = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
STDERR_TAIL = 2000


class GradingFailed(Exception):
    """lab/grade produced no usable grade: the message is the reason to show."""


class Graded:
    def __init__(self, entry, out_dir, elapsed, feedback, log):
        self.entry = entry            # the submission's entry of grades.json
        self.out_dir = out_dir        # lab/grade's --out: grades.json, grades.csv, <id>/
        self.elapsed = elapsed        # seconds
        self.feedback = feedback      # the text report (sequence diagrams, checks), "" if none
        self.log = log                # lab/grade's own stdout+stderr

    @property
    def feedback_dir(self):
        return os.path.join(self.out_dir, feedback_dirname(str(self.entry.get("id", ""))))


def grade_command(submission, out_dir, roles=None, scenarios=None, client_stdin=None, role_weights=None,
                  capture_points=0, allow_unconfined=False, python=None, integration=None):
    cmd = [PY, os.path.join(LAB, "grade"), submission, "--out", out_dir]
    if python:  # the students' interpreter; lab/grade's default is the system's python3
        cmd += ["--python", python]
    if allow_unconfined:
        cmd += ["--allow-unconfined"]
    if roles:
        cmd += ["--roles", ",".join(roles)]
    if role_weights:
        cmd += ["--role-weights", role_weights]
    if scenarios:
        cmd += ["--scenarios", ",".join(scenarios)]
    if client_stdin is not None:
        cmd += ["--client-stdin", client_stdin]
    if capture_points:   # what a hand-in's own capture of each scenario is worth (default feedback only)
        cmd += ["--capture-points", f"{capture_points:g}"]
    if integration is not None:   # also all the programs at once, worth that many points (0: feedback only)
        cmd += ["--integration", f"{float(integration):g}"]
    return cmd


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _sweep():
    """Nothing the programs started may outlive lab/grade: its runs kill their own, this kills
    what a lab/grade stopped at its time limit left (uid mode; namespaced programs die with
    their sandbox)."""
    if os.geteuid() == 0:
        why = sandbox.sweep()
        if why:
            raise GradingFailed(f"processes of the graded programs survive: {why}")


def grade(submission, out_dir, roles=None, scenarios=None, client_stdin=None, time_limit=600.0, role_weights=None,
          capture_points=0, allow_unconfined=False, python=None, integration=None):
    """Run lab/grade; return Graded, or raise GradingFailed with the reason.  Every process the
    programs started is gone when it returns or raises."""
    try:
        return _grade(submission, out_dir, roles, scenarios, client_stdin, time_limit, role_weights, capture_points,
                      allow_unconfined, python, integration)
    finally:
        _sweep()


def _grade(submission, out_dir, roles, scenarios, client_stdin, time_limit, role_weights, capture_points,
           allow_unconfined, python=None, integration=None):
    t0 = time.time()
    cmd = grade_command(submission, out_dir, roles, scenarios, client_stdin, role_weights, capture_points,
                        allow_unconfined, python, integration)
    os.makedirs(out_dir, exist_ok=True)
    log_path = os.path.join(out_dir, "lab-grade.log")
    with open(log_path, "w+b") as log:
        try:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        except OSError as e:
            raise GradingFailed(f"cannot start lab/grade: {e}")
        try:
            rc = p.wait(timeout=time_limit)
        except subprocess.TimeoutExpired:
            # its programs are in its session: stop them all, then say so
            _signal_group(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(p.pid, signal.SIGKILL)
                p.wait()
            raise GradingFailed(f"grading took longer than its limit of {time_limit:g} s and was stopped")
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    elapsed = time.time() - t0
    path = os.path.join(out_dir, "grades.json")
    try:
        with open(path, encoding="utf-8") as f:
            grades = json.load(f)
        entry = grades["submissions"][0]
        if not isinstance(entry, dict):
            raise TypeError("submission entry is not an object")
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        tail = text[-STDERR_TAIL:].strip()
        raise GradingFailed(f"lab/grade exited with status {rc} and left no usable grades.json ({e})"
                            + (f"; its last output:\n{tail}" if tail else ""))
    g = Graded(entry, out_dir, elapsed, "", text)
    fpath = os.path.join(g.feedback_dir, "feedback.txt")
    if os.path.isfile(fpath):
        with open(fpath, encoding="utf-8", errors="replace") as f:
            g.feedback = f.read()
    return g
