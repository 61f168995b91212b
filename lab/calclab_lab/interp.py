"""The Python that runs students' programs: its version and how it pickles enum members.

CPython 3.9-3.10 and 3.11.7+ pickle an Enum member by value (Associativity(0)); CPython 3.11.2,
Debian 12's own python3, and other early 3.11 releases by name (getattr(Associativity, 'LEFT')).
The course's expression objects carry such members, so a student's client (and the reference's)
sends other bytes under each: E1 is 687 bytes by value, 706 by name.  The lab judges a run
against what the reference sends under the interpreter that runs the students' programs, so it
asks that interpreter, once per process: it runs it, pickles a probe enum member and looks at
what came out.  Nothing is guessed from the version number.

probe(path) says what the interpreter at `path` is; the one of a grading's runs ({py} in the
command templates, the hand-ins' programs, the syntax check) is its settings.Lab's, which the
entry point makes from --python; current() is the system's python3 (paths.PY), the default."""
import dataclasses
import functools
import json
import os
import subprocess

from . import paths

BY_VALUE, GETATTR = "value", "getattr"

# Run by the interpreter asked, isolated (-I -S: no site, no user paths, no PYTHON* variables).
_PROBE = r"""
import enum, json, pickle, platform, sys
class Probe(enum.Enum):
    MEMBER = 7
data = pickle.dumps(Probe.MEMBER, protocol=4)
print(json.dumps({"version": platform.python_version(), "implementation": platform.python_implementation(),
                  "by_name": b"getattr" in data, "by_value": b"K\x07\x85" in data,
                  "prefix": sys.base_prefix, "exec_prefix": sys.base_exec_prefix,
                  "executable": sys.executable}))
"""


class InterpreterError(Exception):
    """The path is not a Python 3 the lab can ask (missing, not executable, not Python)."""


@dataclasses.dataclass(frozen=True)
class Interpreter:
    path: str             # as given (what the templates' {py} stands for)
    version: str          # platform.python_version(), e.g. "3.11.2"
    implementation: str   # "CPython"
    flavour: str          # BY_VALUE or GETATTR: how it pickles an enum member
    prefixes: tuple       # where its standard library lives (a sandbox must show them)

    def describe(self):
        how = "enum members pickled by name, getattr(Associativity, 'LEFT')" if self.flavour == GETATTR \
            else "enum members pickled by value, Associativity(0)"
        return f"{self.implementation} {self.version} ({self.path}; {how})"

    def to_dict(self):
        return {"path": self.path, "version": self.version, "implementation": self.implementation,
                "pickle_flavour": self.flavour}


def probe(path):
    """Ask the interpreter at `path` (a file or a name on PATH) what it is (InterpreterError when
    it cannot be asked)."""
    exe = path if os.sep in path else (_which(path) or path)
    try:
        st = os.stat(exe)
    except OSError as e:
        raise InterpreterError(f"{path}: {e.strerror or e}")
    return _asked(os.path.realpath(exe), st.st_mtime_ns, path)


@functools.lru_cache(maxsize=64)
def _asked(exe, mtime_ns, path):
    """What the executable `exe`, as it was at `mtime_ns`, says it is: a function of that file
    alone, so asked once per process (an interpreter replaced in place has another time and is
    asked again).  Failures raise and are not cached."""
    try:
        r = subprocess.run([exe, "-I", "-S", "-c", _PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InterpreterError(f"{path}: cannot run it: {e}")
    try:
        got = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        why = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise InterpreterError(f"{path}: not a Python 3 the lab can use: {why[:200]}")
    if got["by_name"] == got["by_value"]:
        raise InterpreterError(f"{path}: pickles an enum member neither by value nor by name as CPython does")
    prefixes = tuple(dict.fromkeys(os.path.realpath(p) for p in (got["prefix"], got["exec_prefix"]) if p))
    return Interpreter(path, got["version"], got["implementation"], GETATTR if got["by_name"] else BY_VALUE,
                       prefixes)


def _which(name):
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK) and not os.path.isdir(p):
            return p
    return None


def current():
    """The system's python3 (paths.PY): the interpreter of the runs whose settings.Lab says no
    other."""
    return probe(paths.PY)


def current_flavour():
    return current().flavour
