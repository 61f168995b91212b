"""Confinement of one scenario run (docs/sandbox.md).

Each run gets a network namespace of its own, made and kept alive by calc-netns (in a user
namespace of its own when the lab is not root; netns_holder.py is the lab's end of it), so the
report's ports 9998/9999 are used as the goldens are and nothing outside is reachable.  The lab's capture
enters it with calc-jail (trusted, keeps its privileges there); every program under test enters
it with calc-jail and then runs under bubblewrap: its own pid namespace (it dies with bwrap,
daemons included), a read-only view of the system with only its own submission exposed, a
fresh size-limited tmpfs as scratch (/tmp, its cwd), and, inside, calc-jail again for a
non-root uid without capabilities and the rlimits (memory, CPU, processes, open files, file
size).  Where no namespace can be made the run says `isolation: none` (stderr and reports) and
uses free ports as before."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading

from . import paths, stage
from .netns_holder import NetnsHolder

GOLDEN_PORTS = {"proxy": 9998, "server": 9999}
# Each program of a root run gets its own uid from this range: RLIMIT_NPROC counts per uid, so
# a program that forks until its limit leaves every other program's count untouched.
UID_BASE = 1_000_000
UIDS_PER_RUN = 16
NOBODY = 65534
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# what a program sees of /etc: copies of these, one mount (bubblewrap reads the mount table
# again for every bind, so eight binds cost more than the copies)
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/hosts", "/etc/nsswitch.conf", "/etc/protocols",
                "/etc/services", "/etc/localtime", "/etc/passwd", "/etc/group")
# where calc-jail is inside the sandbox, for the steps after bubblewrap
INNER_JAIL = "/run/calc-jail"


class Limits:
    """Per-program limits (the run's programs need tens of MiB and well under a second of CPU)."""
    FIELDS = (  # name, default, unit shown in reasons, help
        ("memory_mib", 512, "MiB", "address space per program"),
        ("cpu_seconds", 10, "s", "CPU time per program"),
        ("processes", 64, "", "processes and threads per program"),
        ("open_files", 256, "", "open files per program"),
        ("file_size_mib", 64, "MiB", "largest file a program may write; also the size of its scratch /tmp"),
        ("output_kib", 1024, "KiB", "output kept per program: one that prints more is killed"),
        ("wall_seconds", 120, "s", "wall-clock time per scenario run"),
    )

    def __init__(self, **values):
        for name, default, _, _ in self.FIELDS:
            setattr(self, name, values.pop(name, default))
        if values:
            raise TypeError(f"unknown limits {sorted(values)}")

    @classmethod
    def add_arguments(cls, ap):
        g = ap.add_argument_group("sandbox limits (docs/sandbox.md)")
        for name, default, unit, text in cls.FIELDS:
            g.add_argument("--limit-" + name.replace("_", "-"), dest="limit_" + name, type=int, default=default,
                           metavar=unit or "N", help=f"{text} (default {default}{' ' + unit if unit else ''})")

    @classmethod
    def from_args(cls, a):
        return cls(**{name: getattr(a, "limit_" + name) for name, *_ in cls.FIELDS if hasattr(a, "limit_" + name)})

    def to_dict(self):
        return {name: getattr(self, name) for name, *_ in self.FIELDS}

    def jail_argv(self, address_space=True):
        """calc-jail's limit options (the CPU one's hard limit is a second above, so SIGXCPU comes
        first); without the address-space limit for sanitizer builds, whose shadow memory
        reserves terabytes of address space up front."""
        mib = 1024 * 1024
        limits = ([f"as={self.memory_mib * mib}"] if address_space else []) + [
            f"cpu={self.cpu_seconds}", f"nproc={self.processes}", f"nofile={self.open_files}",
            f"fsize={self.file_size_mib * mib}", "core=0"]
        return [a for lim in limits for a in ("--limit", lim)]


_probed = None
_probe_lock = threading.Lock()
_warned = False


def _probe():
    """(mode, reason): mode 'root' or 'rootless' when a namespace with bwrap inside can be made
    here, else None and why not.  Tried once per process."""
    global _probed
    with _probe_lock:
        if _probed is None:
            _probed = _try_namespaces()
        return _probed


def _try_namespaces():
    if os.environ.get("CALCLAB_ISOLATION") == "none":
        return None, "disabled by CALCLAB_ISOLATION=none"
    if not shutil.which("bwrap"):
        return None, "bwrap not installed (bubblewrap)"
    unbuilt = [t for t, p in (("calc-netns", paths.netns()), ("calc-jail", paths.jail())) if p is None]
    if unbuilt:
        return None, f"{' and '.join(unbuilt)} not built in {paths.BUILD}"
    mode = "root" if os.geteuid() == 0 else "rootless"
    try:
        holder = NetnsHolder(rootless=mode == "rootless").start()
    except OSError as e:
        return None, f"cannot create namespaces ({mode}): {e}"
    argv = _enter(holder) + ["bwrap", "--unshare-pid", "--die-with-parent", "--ro-bind", "/", "/"] + \
        (["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)] if mode == "rootless" else []) + ["true"]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"cannot create namespaces: {e}"
    finally:
        holder.stop()
    if r.returncode != 0:
        return None, f"cannot create namespaces ({mode}): {(r.stderr.strip() or f'exit {r.returncode}')[:200]}"
    return mode, ""


def _enter(holder):
    """calc-jail's way into the holder's namespaces (the user one first, when there is one)."""
    user = ["--user-ns", holder.ns("user")] if holder.rootless else []
    return [paths.jail()] + user + ["--net-ns", holder.ns("net"), "--"]


def _warn_once(text):
    global _warned
    if not _warned:
        _warned = True
        print(f"calclab: {text}", file=sys.stderr, flush=True)


class Sandbox:
    """One run's namespace and the argv prefixes that put programs into it.  Use as a context
    manager; after close() the namespace is gone."""

    def __init__(self, limits=None, expose=()):
        self.limits = limits or Limits()
        self.expose = [os.path.abspath(p) for p in expose]
        self.mode, self.reason = _probe()
        self.holder = None     # netns_holder.NetnsHolder of the run's namespace
        self._next_uid = 0
        self._stage, self._own_stage = stage.current()

    # ------------------------------------------------------------- the namespace
    def open(self):
        if self.mode is not None:
            try:
                self._start_holder()
            except OSError as e:
                self.mode, self.reason = None, f"cannot create the run's network namespace: {e}"
        if self.mode is None:
            _warn_once(f"isolation: none ({self.reason}); runs use free port pairs and share the host's network")
        return self

    def _start_holder(self):
        self.holder = NetnsHolder(rootless=self.mode == "rootless").start()

    def _stop_holder(self):
        if self.holder is not None:
            self.holder.stop()
            self.holder = None

    def close(self):
        self._stop_holder()
        if self._own_stage:
            self._stage.remove()

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    @property
    def isolated(self):
        return self.mode is not None and self.holder is not None

    @property
    def isolation(self):
        """What confines the run, for the reports: 'netns, pid ns, ...' or 'none: why'."""
        if not self.isolated:
            return f"none: {self.reason}; rlimits"
        uid = "uid 1000000+ (one per program)" if self.mode == "root" else f"uid {NOBODY} in a user namespace"
        return (f"netns ({self.mode}), pid ns, read-only fs with only the submission, "
                f"scratch tmpfs /tmp, {uid}, rlimits")

    def ports(self, free_base=None):
        """The run's ports: the goldens' 9998/9999 when isolated, else a free pair: free_base, or
        what it returns when it is a function (called only then: finding a free pair reads the
        host's TCP tables), or any."""
        if self.isolated:
            return dict(GOLDEN_PORTS)
        from . import procs
        base = (free_base() if callable(free_base) else free_base) or procs.free_port_pair()
        return {"proxy": base, "server": base + 1}

    @property
    def net_dir(self):
        """/proc/PID/net of the run's namespace, where procs.listening reads the TCP tables."""
        return f"/proc/{self.holder.pid}/net" if self.isolated else "/proc/net"

    def connect(self, host, port, timeout):
        """A TCP connection from the lab into the run's namespace."""
        if not self.isolated:
            return socket.create_connection((host, port), timeout=timeout)
        s = self.holder.tcp_socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        s.settimeout(timeout)
        try:
            s.connect((host, port))
        except OSError:
            s.close()
            raise
        return s

    def _enter(self):
        return _enter(self.holder)

    # ------------------------------------------------------------- programs
    def trusted(self, argv):
        """argv of one of the lab's own tools (the capture) run inside the namespace."""
        return self._enter() + list(argv) if self.isolated else list(argv)

    def program(self, argv):
        """(argv, env, cwd) that run a program under test confined and limited."""
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONUNBUFFERED": "1"}
        limits = self.limits.jail_argv(address_space=not any(_sanitized(w) for w in argv))
        if not self.isolated:
            return [paths.jail()] + limits + ["--"] + list(argv), dict(os.environ, **env), None
        env.update(HOME="/tmp", TMPDIR="/tmp")
        return self._enter() + self._bwrap(argv) + [INNER_JAIL] + limits + self._uid() + ["--"] + list(argv), env, None

    def _bwrap(self, argv):
        out = ["bwrap", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
               "--die-with-parent", "--hostname", "calclab"]
        if self.mode == "rootless":
            out += ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY), "--cap-drop", "ALL"]
        for d in SYSTEM_DIRS:
            if os.path.islink(d):
                out += ["--symlink", os.readlink(d), d]
            elif os.path.isdir(d):
                out += ["--ro-bind", d, d]
        out += ["--ro-bind", self._stage.system_files(SYSTEM_FILES), "/etc", "--ro-bind", paths.jail(), INNER_JAIL,
                "--proc", "/proc", "--dev", "/dev",
                "--perms", "1777", "--size", str(self.limits.file_size_mib * 1024 * 1024), "--tmpfs", "/tmp"]
        made = set()
        for p in self._exposed(argv):
            # the folders leading to it are made world-traversable whatever the lab's umask
            for parent in _ancestors(p):
                if parent not in made:
                    made.add(parent)
                    out += ["--perms", "0755", "--dir", parent]
            out += ["--ro-bind", self._stage.copy(p), p]
        return out + ["--remount-ro", "/", "--chdir", "/tmp", "--"]

    def _exposed(self, argv):
        """What of the machine a program sees beyond the system: the folder of each script named
        on its command line (its submission), each executable named there by itself, the
        student-style implementation (public course code) and what the caller exposes."""
        seen = []
        for word in list(argv) + [paths.STUDENT] + self.expose:
            if not word.startswith("/") or not os.path.exists(word) or _under_system(word):
                continue
            p = os.path.realpath(word)
            if os.path.isfile(p) and not _is_elf(p):
                p = os.path.dirname(p)
            if p not in seen:
                seen.append(p)
        return seen

    def _uid(self):
        """As root, each program gets an unprivileged uid of its own, without groups or
        capabilities (in rootless runs bwrap's user namespace already maps it to nobody)."""
        if self.mode != "root":
            return []
        uid = UID_BASE + self.holder.pid * UIDS_PER_RUN + self._next_uid % UIDS_PER_RUN
        self._next_uid += 1
        return ["--uid", str(uid)]

    # ------------------------------------------------------------- verdict on a program's end
    def limit_hit(self, role, rc, output, capped=False):
        """'ROLE killed: ... limit ...' when the program ended on one of its limits, else None."""
        lim = self.limits
        if capped:
            return f"{role} killed: output limit {lim.output_kib} KiB"
        if rc is not None and rc in (128 + signal.SIGXCPU, -signal.SIGXCPU):
            return f"{role} killed: CPU time limit {lim.cpu_seconds} s"
        if rc is not None and rc in (128 + signal.SIGXFSZ, -signal.SIGXFSZ):
            return f"{role} killed: file size limit {lim.file_size_mib} MiB"
        tail = output[-4000:]
        if rc not in (None, 0) or "Traceback" in tail:
            if any(m in tail for m in ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")):
                return f"{role} killed: memory limit {lim.memory_mib} MiB"
            if any(m in tail for m in ("can't start new thread", "fork: retry", "Resource temporarily unavailable")):
                return f"{role} killed: process limit {lim.processes}"
            if "Too many open files" in tail:
                return f"{role} killed: open files limit {lim.open_files}"
            if "File too large" in tail:
                return f"{role} killed: file size limit {lim.file_size_mib} MiB"
        return None


def _under_system(path):
    return any(path == d or path.startswith(d + "/") for d in SYSTEM_DIRS + ("/etc", "/proc", "/dev"))


def _ancestors(path):
    """'/a/b/c' -> ['/a', '/a/b']"""
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[:i + 1]) for i in range(len(parts))]


_sanitized_cache = {}


def _sanitized(path):
    """Whether `path` is an executable built with a sanitizer (its runtime's init symbol)."""
    if not path.startswith("/") or not _is_elf(path):
        return False
    key = (path, os.stat(path).st_mtime_ns)
    if key not in _sanitized_cache:
        with open(path, "rb") as f:
            data = f.read()
        _sanitized_cache[key] = any(m in data for m in (b"__asan_init", b"__tsan_init", b"__msan_init"))
    return _sanitized_cache[key]


def _is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False
