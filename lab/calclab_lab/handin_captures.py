"""Students' own captures: the Wireshark part of the assignment.

A hand-in may hold capture files of the scenarios made on the student's own machine (Windows with
Npcap's loopback adapter: DLT_NULL, pcapng, random client ports; Linux: Ethernet on lo or cooked
SLL/SLL2 from 'any'; macOS: DLT_NULL).  Each is named for its scenario (3.2.pcapng, 3.1.pcap) or
mapped with lab/grade --captures SCENARIO=FILE.  The grader verifies each against the scenario's
golden with calc-sniff: the server and proxy ports are found from the capture's own connections
(pcapio.find_ports) unless given (--capture-ports PROXY,SERVER), and the result says whether the
capture is a complete capture of the scenario, what differs, and shows calc-sniff's annotated
timeline.  Its points are the course's choice (--capture-points, default 0: feedback only)."""
import os
import re
import subprocess
import tempfile

from . import pcapio, sniff

SUFFIXES = (".pcap", ".pcapng", ".cap")
MAX_DEPTH = 3
UNUSED_PORT = 9   # the proxy port calc-sniff is given for a capture of a scenario without a proxy


def _norm(name):
    """A file's name as students write a scenario's: 3.2, 3_2, Scenario 3.2, scenario-3-2."""
    out = re.sub(r"[-_ ]+", ".", name.strip().lower())
    return out.removeprefix("scenario").lstrip(".")


def find(top, names, mapping=None):
    """{scenario name: the capture file's path} in the hand-in folder `top`: files named for one of
    `names` (any case, '_', '-' or ' ' for '.', a leading 'scenario' left out; a few folders
    down), or as `mapping` (scenario -> path relative to top)."""
    found = {}
    for d, dirs, files in os.walk(top):
        depth = os.path.relpath(d, top).count(os.sep) + (d != top)
        dirs[:] = sorted(x for x in dirs if not x.startswith(".") and x != "__MACOSX") if depth < MAX_DEPTH else []
        for f in sorted(files):
            stem, ext = os.path.splitext(f)
            if ext.lower() in SUFFIXES:
                for n in names:
                    if _norm(stem) == _norm(n) and n not in found:
                        found[n] = os.path.join(d, f)
    for n, rel in (mapping or {}).items():
        p = os.path.normpath(os.path.join(top, rel))
        if os.path.commonpath([os.path.abspath(p), os.path.abspath(top)]) != os.path.abspath(top):
            continue  # a path out of the hand-in is not the student's
        found[n] = p
    return found


def _sniff(argv, timeout=120):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise sniff.SniffError(str(e))


def judge(path, scenario, golden, rel=None, ports=None, points=0.0):
    """The verdict on one student capture of `scenario` (a dict for grades.json): status
    complete / incomplete / unreadable, the ports used and how they were found, calc-sniff's
    failed items (what differs), its timeline of the capture, and the points."""
    out = {"scenario": scenario.name, "file": rel or os.path.basename(path), "status": None, "complete": False,
           "ports": None, "ports_from": None, "link": None, "differences": [], "timeline": "",
           "score": 0.0, "max_score": float(points)}
    try:
        pk = pcapio.read(path)
    except (OSError, pcapio.PcapError) as e:
        out.update(status="unreadable", reason=str(e))
        return out
    out["link"] = pcapio.LINK_NAMES.get(pk[0].link, str(pk[0].link)) if pk else None
    if ports:
        out["ports"], out["ports_from"] = dict(ports), "given"
    else:
        got = pcapio.find_ports(pk)
        if got is None:
            out.update(status="unreadable", reason="no connection carrying calculator requests in the capture")
            return out
        if scenario.uses_proxy and not got.get("proxy"):
            # no connection nested in another: the proxy's port is the one the clients used
            got = {"proxy": got["server"], "server": UNUSED_PORT}
        out["ports"], out["ports_from"] = {"proxy": got.get("proxy") or UNUSED_PORT, "server": got["server"]}, \
            "found in the capture's connections"
    work = tempfile.mkdtemp(prefix="calclab-cap-")
    try:
        capture = path
        # calc-sniff reads pcap and pcapng itself; a file libpcap refuses (several interfaces of
        # other link types in one pcapng) is read again as its TCP packets only
        probe = _sniff([sniff._tool(), "-r", capture, "--stats"] + sniff._port_args(out["ports"]))
        if probe.returncode != 0:
            capture = os.path.join(work, "tcp.pcap")
            pcapio.rewrite(path, capture, link=pcapio.EN10MB)
        v = sniff.verify(capture, golden, out["ports"])
        tl = _sniff([sniff._tool(), "-r", capture] + sniff._port_args(out["ports"]))
        out["timeline"] = tl.stdout if tl.returncode == 0 else tl.stderr.strip()
    finally:
        for f in os.listdir(work):
            os.unlink(os.path.join(work, f))
        os.rmdir(work)
    items = [it for c in v["checks"] for it in c.get("items", [])]
    out["differences"] = [f"{c['name']}: {it.get('detail', '')}" for c in v["checks"] for it in c.get("items", [])
                          if not it.get("passed")]
    out["complete"] = v["status"] == "pass"
    out["status"] = {"pass": "complete", "fail": "incomplete"}.get(v["status"], v["status"])
    if v.get("reason"):
        out["reason"] = v["reason"]
    if items and points:
        # half points, as every other check's: a person reads them
        out["score"] = round(2 * points * sum(bool(it.get("passed")) for it in items) / len(items)) / 2 \
            if v["status"] in ("pass", "fail") else 0.0
    return out


def text(caps):
    """The feedback's section on the student's captures."""
    if not caps:
        return []
    lines = ["", "== your captures (the Wireshark part)"]
    for c in caps:
        pts = f", {c['score']:g}/{c['max_score']:g} points" if c["max_score"] else " (feedback only)"
        lines.append(f"   {c['file']}: scenario {c['scenario']}: {c['status']}{pts}")
        if c.get("ports"):
            lines.append(f"      link type {c.get('link')}; server port {c['ports']['server']}"
                         + (f", proxy port {c['ports']['proxy']}" if c['ports'].get('proxy') != UNUSED_PORT else "")
                         + f" ({c['ports_from']})")
        if c.get("reason"):
            lines.append(f"      {c['reason']}")
        if c["complete"]:
            lines.append("      a complete capture of the scenario: every connection, message and teardown is there")
        for d in c["differences"]:
            lines.append(f"      - {d}")
        if c.get("timeline"):
            lines.append("")
            lines += ["      " + l for l in c["timeline"].rstrip().splitlines()]
    return lines
