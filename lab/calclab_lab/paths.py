"""Where things are: the checkout, its build directory, the shared spec and vectors."""
import os
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("CALCLAB_BUILD") or os.environ.get("CALC_BUILD_DIR") or os.path.join(ROOT, "build")
STUDENT = os.path.join(ROOT, "tests", "student")
CAPTURES = os.path.join(ROOT, "captures")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"


def _shared():
    env = os.environ.get("CALCLAB_SHARED")
    if env:
        return env
    for cand in (os.path.join(os.path.dirname(ROOT), "shared"), os.path.join(ROOT, "shared"), "/work/shared"):
        if os.path.isdir(os.path.join(cand, "vectors")):
            return cand
    return os.path.join(os.path.dirname(ROOT), "shared")


SHARED = _shared()


def sniff():
    p = os.path.join(BUILD, "calc-sniff")
    return p if os.access(p, os.X_OK) else None


def tcpdump():
    return shutil.which("tcpdump") or ("/usr/bin/tcpdump" if os.path.exists("/usr/bin/tcpdump") else None)
