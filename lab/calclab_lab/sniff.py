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


DEFAULT_PORTS = {"proxy": 9998, "server": 9999}


def _golden_for(golden, ports, tmpdir):
    """The golden as calc-sniff must see it for a run on `ports` (goldens are made on 9998/9999)."""
    if ports == DEFAULT_PORTS:
        return golden
    from . import pcap
    out = os.path.join(tmpdir, "golden-retargeted.pcap")
    pcap.retarget(golden, out, {DEFAULT_PORTS["proxy"]: ports["proxy"], DEFAULT_PORTS["server"]: ports["server"]})
    return out


class Capture:
    """Live capture of one run into `path`.  With calc-sniff built: `calc-sniff verify --golden G
    -i lo --duration .. --ready-file R -w path` (or plain `calc-sniff -i lo -w path` without a
    golden), stopped by SIGINT after the scenario, which makes it verify and exit; the scenario
    starts only once R exists (calc-sniff writes it when the filtered capture is active).  Without
    calc-sniff: tcpdump, and the verdict is 'unavailable'."""

    def __init__(self, path, ports, iface="lo", golden=None, use_sniff=True):
        self.path = path
        self.ports = {"proxy": ports[0], "server": ports[1]} if isinstance(ports, (list, tuple)) else dict(ports)
        self.iface = iface
        self.golden = golden if golden and os.path.exists(golden) else None
        self.golden_missing = bool(golden) and not self.golden
        self.use_sniff = use_sniff and paths.sniff() is not None
        self.proc = None
        self.tool = "calc-sniff" if self.use_sniff else "tcpdump"
        self.result = None
        self.drops = 0

    def _fail(self, msg):
        from .runner import LabError
        if self.proc is not None:
            self.proc.stop()
        raise LabError(msg)

    def start(self, timeout=10.0):
        if os.path.exists(self.path):
            os.unlink(self.path)
        plist = f"{self.ports['proxy']},{self.ports['server']}"
        if self.use_sniff:
            ready = self.path + ".ready"
            if os.path.exists(ready):
                os.unlink(ready)
            common = ["-i", self.iface, "--duration", "900", "--ready-file", ready, "-w", self.path, "-p", plist,
                      "--server-port", str(self.ports["server"]), "--proxy-port", str(self.ports["proxy"])]
            if self.golden:
                g = _golden_for(self.golden, self.ports, os.path.dirname(self.path))
                argv = [paths.sniff(), "verify", "--golden", g] + common
            else:
                argv = [paths.sniff(), "--summary"] + common
            self.proc = procs.Proc("capture", argv, self.path + ".log")
            done = lambda: os.path.exists(ready)  # noqa: E731
        else:
            tcpdump = paths.tcpdump()
            if not tcpdump:
                self._fail("neither calc-sniff nor tcpdump is available (build, or run ci/deps)")
            filt = "tcp and (" + " or ".join(f"port {p}" for p in self.ports.values()) + ")"
            self.proc = procs.Proc("capture", [tcpdump, "-i", self.iface, "--immediate-mode", "-U", "-n", "-s", "0",
                                               "-B", "16384", "-w", self.path, filt], self.path + ".log")
            # tcpdump writes the file header and its banner once the capture is active
            done = lambda: (os.path.exists(self.path) and os.path.getsize(self.path) >= 24  # noqa: E731
                            and any("listening on" in l for _, l in self.proc.lines))
        end = time.time() + timeout
        while time.time() < end:
            if not self.proc.alive():
                self._fail(f"{self.tool} failed: {self.proc.output().strip()}")
            if done():
                time.sleep(0.1)
                return
            time.sleep(0.02)
        self._fail(f"{self.tool} did not start capturing within {timeout}s")

    def stop(self):
        if self.proc is None:
            return
        time.sleep(0.2)
        try:
            os.killpg(self.proc.pid, 2)  # SIGINT: stop capturing, flush, (verify), exit
        except ProcessLookupError:
            pass
        rc = self.proc.wait(60)
        if rc is None:
            self.proc.stop()
        lines = [l for _, l in self.proc.lines]
        self.drops = sum(int(m.group(1)) for l in lines for m in [re.search(r"(\d+) (?:packets )?dropped by kernel", l)] if m)
        if self.use_sniff and self.golden:
            self.result = _verdict(rc, lines)
        self.proc = None

    def verify(self, golden):
        if self.result is not None:
            return self.result
        if self.golden_missing or not os.path.exists(golden):
            return {"status": "missing-golden", "lines": [f"no golden capture {golden}"], "checks": []}
        return verify(self.path, golden, self.ports)


def _verdict(rc, lines):
    status = {0: "pass", 1: "fail", 2: "usage", 3: "inconclusive"}.get(rc, f"exit {rc}")
    failed = sorted({n for l in lines for n in CHECK_NAMES if re.search(rf"\b{re.escape(n)}\b", l)}) \
        if status == "fail" else []
    return {"status": status, "lines": lines, "checks": failed}


def verify(capture, golden, ports=None):
    """calc-sniff's verdict on a capture file: dict(status=pass|fail|inconclusive|usage|unavailable|missing-golden,
    lines=[...], checks=[names of failed checks])."""
    tool = paths.sniff()
    if not tool:
        return {"status": "unavailable", "lines": ["calc-sniff is not built: verification unavailable"], "checks": []}
    if not os.path.exists(golden):
        return {"status": "missing-golden", "lines": [f"no golden capture {golden}"], "checks": []}
    try:
        ports = ports or DEFAULT_PORTS
        g = _golden_for(golden, ports, os.path.dirname(os.path.abspath(capture)))
        r = subprocess.run([tool, "verify", "--golden", g, "-r", capture, "-p", f"{ports['proxy']},{ports['server']}",
                            "--server-port", str(ports["server"]), "--proxy-port", str(ports["proxy"])],
                           capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return {"status": "inconclusive", "lines": ["calc-sniff verify timed out"], "checks": []}
    return _verdict(r.returncode, (r.stdout + r.stderr).splitlines())


def describe(capture, ports):
    """calc-sniff's reading of a capture (--json: one record per connection and per message), or []."""
    tool = paths.sniff()
    if not tool or not os.path.exists(capture):
        return []
    try:
        r = subprocess.run([tool, "-r", capture, "--json", "-p", f"{ports['proxy']},{ports['server']}",
                            "--server-port", str(ports["server"]), "--proxy-port", str(ports["proxy"])],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    import json
    out = []
    for line in r.stdout.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
