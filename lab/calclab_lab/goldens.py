"""Goldens made, not recorded: a scenario's golden capture is calclab's own programs (byte-exact
drop-ins for the reference) playing it, kept while the scenario and the programs are unchanged.

golden_for(scenario) plays it once with build/'s calc-server, calc-proxy and calc-client and
keeps the capture under the golden cache (CALCLAB_GOLDENS, else $XDG_CACHE_HOME/calclab/goldens,
else ~/.cache/calclab/goldens), named for what decides its bytes: the scenario's steps (not its
file's name or comments), the three programs' executables, and the pickle flavour of the
interpreter that runs students' programs (calc-client --pickle-flavour: 'value', CPython's
default, or 'getattr', as CPython 3.11.2 writes enum members).  The capture is rewritten to the
goldens' ports 9998/9999 (a run without its own network namespace plays on free ports), so a
made golden is verified like a recorded one.  A play that does not pass the lab's own checks of
it is never kept (LabError).  Concurrent graders make it once: a file lock per golden."""
import fcntl
import functools
import hashlib
import os
import shutil
import tempfile

from . import paths, pcapio, runner, sniff

PROGRAMS = ("calc-server", "calc-proxy", "calc-client")


def cache_dir():
    d = os.environ.get("CALCLAB_GOLDENS")
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "calclab", "goldens")
    return os.path.abspath(d)


@functools.lru_cache(maxsize=64)
def _digest_of(path, mtime_ns, size):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_digest(path):
    st = os.stat(path)
    return _digest_of(path, st.st_mtime_ns, st.st_size)


def programs_digest():
    """The executables that play a golden, hashed (a rebuild that changes them makes new goldens)."""
    h = hashlib.sha256()
    for p in PROGRAMS:
        exe = os.path.join(paths.BUILD, p)
        if not os.access(exe, os.X_OK):
            raise runner.LabError(f"{exe} is not built: calclab makes the scenario's golden with its own programs")
        h.update(p.encode() + b"\0" + _file_digest(exe).encode())
    return h.hexdigest()


def key(scenario, flavour=None):
    return hashlib.sha256(f"{scenario.digest}\0{programs_digest()}\0{flavour or 'default'}".encode()).hexdigest()[:20]


FLAVOURS = ("value", "getattr")


def recorded(scenario, golden_dir=None, flavour=None):
    """A recorded golden for the scenario: NAME.pcap in golden_dir (given), or in captures/ for a
    built-in one (recorded in the value flavour); None otherwise."""
    if golden_dir and os.path.abspath(golden_dir) != os.path.abspath(paths.CAPTURES):
        p = os.path.join(golden_dir, f"{scenario.name}.pcap")
        return p if os.path.exists(p) else None
    if scenario.builtin and flavour in (None, "value"):
        p = os.path.join(paths.CAPTURES, f"{scenario.name}.pcap")
        return p if os.path.exists(p) else None
    return None


def golden_path(scenario, golden_dir=None, flavour=None):
    """The golden a run of `scenario` is judged against: a recorded one where there is one (see
    recorded), else the made one.  None for a scenario without a golden (malformed)."""
    if not scenario.golden:
        return None
    return recorded(scenario, golden_dir, flavour) or golden_for(scenario, flavour)


def golden_for(scenario, flavour=None, timeout=15.0):
    """The made golden of `scenario` in pickle `flavour` (default value): its path in the golden
    cache, played now when not there."""
    if flavour not in (None,) + FLAVOURS:
        raise runner.LabError(f"unknown pickle flavour {flavour!r} (known: {', '.join(FLAVOURS)})")
    flavour = None if flavour == "value" else flavour
    d = cache_dir()
    try:
        os.makedirs(d, exist_ok=True)
    except OSError:  # a home without a writable cache (a grading container): the machine's temp
        d = os.path.join(tempfile.gettempdir(), f"calclab-goldens-{os.getuid()}")
        os.makedirs(d, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in scenario.name)
    path = os.path.join(d, f"{safe}-{key(scenario, flavour)}.pcap")
    if os.path.exists(path):
        return path
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(path):
            _make(scenario, path, timeout, flavour)
    return path


def _make(scenario, path, timeout, flavour=None):
    work = tempfile.mkdtemp(prefix="calclab-golden-")
    templates = runner.templates_for("c", flavour=flavour or "value")
    try:
        res = runner.play(scenario, templates, workdir=work, timeout=timeout, golden=None, capture_only=True)
        res = runner.judge(res, None)
        # every exchange's own client connection, to the proxy or (a direct request) the server
        conns = [c for c in res.records("conn") if c.get("role") in ("client->proxy", "client->server")]
        if not res.lab_passed or len(conns) != len(scenario.exchanges):
            why = "; ".join([f"{c.name}: {c.failures()[0]['detail']}" for c in res.checks if not c.passed][:3]
                            + res.errors[:3]) or f"{len(conns)} client connections for {len(scenario.exchanges)} requests"
            raise runner.LabError(f"calclab's own play of scenario {scenario.name} does not pass its checks, "
                                  f"so it cannot be its golden: {why}")
        tmp = path + ".tmp"
        if res.ports != sniff.DEFAULT_PORTS:
            pcapio.rewrite(res.pcap, tmp, ports={res.ports[r]: p for r, p in sniff.DEFAULT_PORTS.items()})
        else:
            shutil.copyfile(res.pcap, tmp)
        check = sniff.verify(tmp, tmp)
        if check["status"] != "pass":
            raise runner.LabError(f"the made golden of {scenario.name} does not verify against itself: "
                                  f"{check.get('reason') or check['status']}")
        os.replace(tmp, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
