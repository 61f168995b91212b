"""Capturing a run and having calc-sniff verify it.

The capture file is written by tcpdump (`-i lo -U -w FILE`, filtered on the run's two ports so
that parallel runs on other ports do not mix in).  When build/calc-sniff exists it verifies the
capture against the golden (`calc-sniff verify --golden G -r CAPTURE`: exit 0 pass, 1 fail,
2 usage, 3 inconclusive; failure lines name the check).  Without calc-sniff the verdict is
'unavailable' and only the lab's own checks (checks.py) speak."""
import os
import re
import subprocess
import time

from . import paths, procs

CHECK_NAMES = ["handshake", "request-size", "response-size", "segmentation", "teardown", "rst",
               "upstream-connections", "cache-hit-no-upstream", "refused-answer", "ordering"]


class Capture:
    def __init__(self, path, ports, iface="lo", golden=None, use_sniff=True):
        self.path = path
        self.ports = ports
        self.iface = iface
        self.golden = golden
        self.use_sniff = use_sniff
        self.proc = None
        self.tool = "tcpdump"

    def start(self, timeout=10.0):
        tcpdump = paths.tcpdump()
        if not tcpdump:
            from .runner import LabError
            raise LabError("tcpdump is not installed (run ci/deps)")
        filt = "tcp and (" + " or ".join(f"port {p}" for p in self.ports) + ")"
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.proc = procs.Proc("capture", [tcpdump, "-i", self.iface, "--immediate-mode", "-U", "-n", "-s", "0", "-w", self.path, filt])
        end = time.time() + timeout
        # tcpdump writes the file header once the capture is active; wait for it and its banner
        while time.time() < end:
            if not self.proc.alive():
                from .runner import LabError
                raise LabError(f"tcpdump failed: {self.proc.output().strip()}")
            if os.path.exists(self.path) and os.path.getsize(self.path) >= 24 and \
                    any("listening on" in l for _, l in self.proc.lines):
                time.sleep(0.2)
                return
            time.sleep(0.05)
        from .runner import LabError
        raise LabError("tcpdump did not start capturing")

    def stop(self):
        if self.proc is None:
            return
        time.sleep(0.2)
        try:
            os.killpg(self.proc.pid, 2)  # SIGINT: tcpdump flushes and exits
        except ProcessLookupError:
            pass
        if self.proc.wait(5) is None:
            self.proc.stop()
        self.proc = None

    def verify(self, golden):
        return verify(self.path, golden)


def verify(capture, golden):
    """calc-sniff's verdict on a capture file: dict(status=pass|fail|inconclusive|usage|unavailable|missing-golden,
    lines=[...], checks=[names of failed checks])."""
    tool = paths.sniff()
    if not tool:
        return {"status": "unavailable", "lines": ["calc-sniff is not built: verification unavailable"], "checks": []}
    if not os.path.exists(golden):
        return {"status": "missing-golden", "lines": [f"no golden capture {golden}"], "checks": []}
    try:
        r = subprocess.run([tool, "verify", "--golden", golden, "-r", capture], capture_output=True, text=True,
                           timeout=60)
    except subprocess.TimeoutExpired:
        return {"status": "inconclusive", "lines": ["calc-sniff verify timed out"], "checks": []}
    lines = (r.stdout + r.stderr).splitlines()
    status = {0: "pass", 1: "fail", 2: "usage", 3: "inconclusive"}.get(r.returncode, f"exit {r.returncode}")
    failed = sorted({n for l in lines for n in CHECK_NAMES if re.search(rf"\b{re.escape(n)}\b", l)}) \
        if status == "fail" else []
    return {"status": status, "lines": lines, "checks": failed}
