"""Where things are: the checkout, its build directory, the golden captures and vectors."""
import os
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# absolute whatever the environment says: the programs run from other folders (a hand-in's, the
# sandbox's), where a relative build/ names nothing
BUILD = os.path.abspath(os.environ.get("CALCLAB_BUILD") or os.environ.get("CALC_BUILD_DIR")
                        or os.path.join(ROOT, "build"))
STUDENT = os.path.join(ROOT, "tests", "student")
CAPTURES = os.path.join(ROOT, "captures")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"


# The reference's recorded wire behaviour (request/response vectors) ships with the checkout
# next to the golden captures; $CALCLAB_VECTORS names another copy explicitly.
VECTORS = os.path.abspath(os.environ.get("CALCLAB_VECTORS") or os.path.join(CAPTURES, "vectors"))


def _built(name):
    p = os.path.join(BUILD, name)
    return p if os.access(p, os.X_OK) else None


def close_wait_lib():
    """libcalc-close-wait.so: preloaded into the programs under test (runner.CLOSE_WAIT_MS)."""
    p = os.path.join(BUILD, "libcalc-close-wait.so")
    return p if os.path.isfile(p) else None


def sniff():
    return _built("calc-sniff")


def jail():
    """calc-jail: how the sandbox enters a run's namespaces and drops privileges."""
    return _built("calc-jail")


def netns():
    """calc-netns: what makes and holds a run's network namespace."""
    return _built("calc-netns")


def tcpdump():
    return shutil.which("tcpdump") or ("/usr/bin/tcpdump" if os.path.exists("/usr/bin/tcpdump") else None)
