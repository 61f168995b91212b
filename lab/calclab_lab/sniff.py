"""Capturing a run, and calc-sniff's reading and verdict of the capture.

calc-sniff is the lab's only analyser.  During a run `calc-sniff -i lo -w FILE` (or tcpdump
when asked) captures the run's two ports; afterwards
  - `calc-sniff -r FILE --json --packets` gives the records the timeline and the sequence
    diagram are drawn from (one per segment, connection and message), and
  - `calc-sniff verify --json --golden G -r FILE` gives the verdict: one record per named check
    with its items (passed, role, detail, conn, packets, time) and a verdict record
(docs/sniff.md).  Goldens are recorded on 9998/9999; a run on other ports tells calc-sniff both."""
import functools
import json
import os
import re
import subprocess
import time

from . import paths, procs

# the ports the golden captures were recorded on (the report's), calc-sniff's own defaults
DEFAULT_PORTS = {"proxy": 9998, "server": 9999}


class SniffError(Exception):
    """calc-sniff is missing or could not read a capture."""


def _tool():
    tool = paths.sniff()
    if not tool:
        raise SniffError(f"calc-sniff is not built in {paths.BUILD}: the lab's verdict comes from it "
                         "(build first: cmake -S . -B build && cmake --build build)")
    return tool


def _port_args(ports):
    return ["-p", f"{ports['proxy']},{ports['server']}",
            "--server-port", str(ports["server"]), "--proxy-port", str(ports["proxy"])]


def _json_lines(text):
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def records(capture, ports=None):
    """calc-sniff's reading of a capture: its pkt, conn, msg and summary records."""
    ports = ports or DEFAULT_PORTS
    try:
        r = subprocess.run([_tool(), "-r", capture, "--json", "--packets"] + _port_args(ports),
                           capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SniffError(f"calc-sniff could not read {capture}: {e}")
    if r.returncode != 0:
        raise SniffError(r.stderr.strip() or f"calc-sniff -r {capture}: exit {r.returncode}")
    return _json_lines(r.stdout)


def describe(capture, ports):
    """The capture's records, or [] when calc-sniff cannot read it.  Remembered per file version
    (a golden is described for every run judged against it)."""
    try:
        st = os.stat(capture)
    except OSError:
        return []
    try:
        return _described(os.path.abspath(capture), st.st_mtime_ns, st.st_size, tuple(sorted(ports.items())))
    except SniffError:
        return []


@functools.lru_cache(maxsize=256)
def _described(capture, mtime_ns, size, ports):
    """calc-sniff's records of `capture` as it was at (mtime_ns, size): a function of the file's
    version, so read once per process (a failure raises and is not kept)."""
    return records(capture, dict(ports))


def verify(capture, golden, ports=None, golden_ports=None):
    """calc-sniff's verdict on a capture: {"status": pass|fail|inconclusive|usage|missing-golden,
    "reason": text or None, "checks": [check records: name, passed, items]}.  The golden was
    recorded on golden_ports (default 9998/9999)."""
    ports = ports or DEFAULT_PORTS
    golden_ports = golden_ports or DEFAULT_PORTS
    if not os.path.exists(golden):
        return {"status": "missing-golden", "reason": f"no golden capture {golden}", "checks": []}
    argv = [_tool(), "verify", "--json", "--golden", golden, "-r", capture] + _port_args(ports) + \
        ["--golden-server-port", str(golden_ports["server"]), "--golden-proxy-port", str(golden_ports["proxy"])]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"status": "inconclusive", "reason": f"calc-sniff verify did not finish: {e}", "checks": []}
    recs = _json_lines(r.stdout)
    # the verdict record says the status; without one calc-sniff refused its arguments or could
    # not read a capture (its last line on stderr says why)
    verdict = next((x for x in recs if x.get("type") == "verdict"), {"verdict": "usage"})
    status = verdict["verdict"]
    reason = verdict.get("reason") or (r.stderr.strip().splitlines() or [None])[-1] if status != "pass" else None
    return {"status": status, "reason": reason, "checks": [x for x in recs if x.get("type") == "check"]}


# A run's kernel capture buffer: one scenario is a few dozen segments, but a program may flood
# its connection, so 4 MiB (what a second of a flood at loopback speed fills partly); calc-sniff's
# 64 MiB default costs ~20 ms of CPU per capture just to zero the ring.
CAPTURE_BUFFER_KIB = 4096


class Capture:
    """Live capture of one run into `path`: `calc-sniff --stats -i lo -w path` on the run's two
    ports (or tcpdump with use_sniff False, or when calc-sniff is not built), stopped by SIGINT
    after the scenario.  The scenario starts only once the capture is active (calc-sniff's
    --ready-file; tcpdump's banner and file header).  `drops`: packets the kernel dropped."""

    def __init__(self, path, ports, iface="lo", use_sniff=True, wrap=list, **_):
        self.path = path
        self.wrap = wrap  # puts the capture into the run's network namespace (sandbox.Sandbox.trusted)
        self.ports = {"proxy": ports[0], "server": ports[1]} if isinstance(ports, (list, tuple)) else dict(ports)
        self.iface = iface
        self.use_sniff = use_sniff and paths.sniff() is not None
        self.proc = None
        self.tool = "calc-sniff" if self.use_sniff else "tcpdump"
        self.drops = 0

    def _fail(self, msg):
        from .runner import LabError
        if self.proc is not None:
            self.proc.stop()
        raise LabError(msg)

    def start(self, timeout=10.0):
        if os.path.exists(self.path):
            os.unlink(self.path)
        if self.use_sniff:
            ready = self.path + ".ready"
            if os.path.exists(ready):
                os.unlink(ready)
            argv = [paths.sniff(), "--stats", "-i", self.iface, "--duration", "900", "--ready-file", ready,
                    "-B", str(CAPTURE_BUFFER_KIB), "-w", self.path] + _port_args(self.ports)
            self.proc = procs.Proc("capture", self.wrap(argv), self.path + ".log")
            done = lambda: os.path.exists(ready)  # noqa: E731
        else:
            tcpdump = paths.tcpdump()
            if not tcpdump:
                self._fail("neither calc-sniff nor tcpdump is available (build, or run ci/deps)")
            filt = "tcp and (" + " or ".join(f"port {p}" for p in self.ports.values()) + ")"
            self.proc = procs.Proc("capture", self.wrap([tcpdump, "-i", self.iface, "--immediate-mode", "-U", "-n",
                                                         "-s", "0", "-B", "16384", "-w", self.path, filt]),
                                   self.path + ".log")
            # tcpdump writes the file header and its banner once the capture is active
            done = lambda: (os.path.exists(self.path) and os.path.getsize(self.path) >= 24  # noqa: E731
                            and any("listening on" in l for _, l in self.proc.lines))
        end = time.time() + timeout
        while time.time() < end:
            if not self.proc.alive():
                self._fail(f"{self.tool} failed: {self.proc.output().strip()}")
            if done():
                if not self.use_sniff:
                    time.sleep(0.1)  # tcpdump's banner is no promise that its filter is set yet
                return
            time.sleep(procs.POLL)
        self._fail(f"{self.tool} did not start capturing within {timeout}s")

    def stop(self):
        """Stop capturing; the caller waits for the run's connections to be over first.  calc-sniff
        reads on for one block timeout after the signal, so it keeps every packet sent before it;
        tcpdump stops reading at the signal, so it is given time to read what it was sent."""
        if self.proc is None:
            return
        if not self.use_sniff:
            time.sleep(0.2)
        try:
            os.killpg(self.proc.pid, 2)  # SIGINT: stop capturing, flush, exit
        except ProcessLookupError:
            pass
        if self.proc.wait(60) is None:
            self.proc.stop()
        lines = [l for _, l in self.proc.lines]
        self.drops = sum(int(m.group(1)) for l in lines for m in [re.search(r"(\d+) (?:packets )?dropped by kernel", l)] if m)
        self.proc = None
