"""Confinement of one scenario run (docs/sandbox.md).

Each run gets a network namespace of its own, made and kept alive by calc-netns (in a user
namespace of its own when the lab is not root; netns_holder.py is the lab's end of it), so the
report's ports 9998/9999 are used as the goldens are and nothing outside is reachable.  The lab's capture
enters it with calc-jail (trusted, keeps its privileges there); every program under test enters
it with calc-jail and then runs under bubblewrap: its own pid namespace (it dies with bwrap,
daemons included), a read-only view of the system with only its own submission exposed, a
fresh size-limited tmpfs as scratch (/tmp, its cwd), and, inside, calc-jail again for a
non-root uid without capabilities and the rlimits (memory, CPU, processes, open files, file
size).

Where no namespace can be made but the lab is root (a container's default seccomp profile), the
runs use free ports on the host's network and each program runs under an unprivileged uid of
its own from a block of 16 the run holds (calc-jail --uid: no groups, no capabilities,
no-new-privs, the rlimits, which bind a uid that is not root), from a private copy of its
files and a scratch folder it owns, in a folder closed to every other uid; when the run ends,
every process of its uids is killed and the kill checked (calc-jail --kill-uid) before anything
is reported: `isolation: uid (no namespaces): ...`.  Where neither works, programs are not run
(Unconfined) unless the caller allows unconfined runs (--allow-unconfined,
CALCLAB_ALLOW_UNCONFINED=1): `isolation: none: ...`.  CALCLAB_ISOLATION=uid or none forces a
fallback."""
import ctypes
import errno
import fcntl
import functools
import os
import random
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading

from . import interp, paths, settings, sniff, stage
from .netns_holder import NetnsHolder

# a run in a namespace of its own uses the ports the goldens were recorded on
GOLDEN_PORTS = sniff.DEFAULT_PORTS
# Each program of a root run gets its own uid from this range: RLIMIT_NPROC counts per uid, so
# a program that forks until its limit leaves every other program's count untouched.
UID_BASE = 1_000_000
UIDS_PER_RUN = 16
NOBODY = 65534
# Without namespaces the uids are real ones of the host, shared with every other grader there: a
# run holds one of these blocks of UIDS_PER_RUN (a locked file in a root-only folder and a socket
# name, _lock_block), so no two runs, in this process or another, share a uid. Far above the
# ranges of /etc/subuid and of the namespace mode's uids above, so killing a block's uids kills
# nothing else.
UID_MODE_BASE = 2_000_000_000
UID_BLOCKS = 4096
UID_LOCK_DIRS = ("/run/calclab-uids", "/var/tmp/calclab-uids", "/tmp/calclab-uids")
# the world-writable folders a uid-mode program can leave files in; emptied of its files at the end
SHARED_SCRATCH = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
PR_SET_CHILD_SUBREAPER = 36
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# what a program sees of /etc: copies of these, one mount (bubblewrap reads the mount table
# again for every bind, so eight binds cost more than the copies)
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/hosts", "/etc/nsswitch.conf", "/etc/protocols",
                "/etc/services", "/etc/localtime", "/etc/passwd", "/etc/group")
# where calc-jail is inside the sandbox, for the steps after bubblewrap
INNER_JAIL = "/run/calc-jail"


def interpreter_dirs(prefixes):
    """The folders of an interpreter installed under `prefixes` (interp.Interpreter.prefixes) that
    lie outside SYSTEM_DIRS (lab/grade --python /opt/python3.12/bin/python3): shown read-only as
    they are, like the system, never copied."""
    out = []
    for p in prefixes:
        p = os.path.realpath(p)
        if p != "/" and not _under_system(p) and p not in out:
            out.append(p)
    return tuple(out)


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


class Unconfined(Exception):
    """Programs would run unconfined here and the caller did not allow it."""


class ConfinementError(Exception):
    """A run's programs could not be ended for certain (processes of its uids survived)."""


ALLOW_ENV = settings.ALLOW_ENV


def unconfined_allowed():
    return settings.unconfined_by_environment()


def refusal(lab=None):
    """Why programs cannot be run here ('cannot confine ...'), or None when they can: confined,
    or unconfined with the caller's leave (`lab`'s, default the environment's)."""
    mode, reason = probe()
    if mode is None and not (lab.allow_unconfined if lab is not None else unconfined_allowed()):
        return f"cannot confine the programs here: {reason}; --allow-unconfined runs them unconfined"
    return None


# each probe plays one program through the whole set-up the runs use; it runs `sh`, which must
# read its exposed copy (a bind or a private copy), write in its scratch folder and not be root
PROBE_SCRIPT = 'test -r "$1" && cd && : > probe && test "$(id -u)" != 0'


def probe(forced=None):
    """(mode, reason): mode 'root' or 'rootless' when a namespace with bwrap inside can be made
    here, 'uid' when not but the lab is root, else None; reason says why namespaces (and the
    uid switch) are not used.  `forced`: the level asked for, as CALCLAB_ISOLATION says it ('',
    'uid' or 'none'; default: the environment's).  Tried once per process and level: the
    machine does not change under a grading, and a probe plays a program through the whole
    set-up (the lock keeps concurrent first callers from playing it twice)."""
    if forced is None:
        forced = os.environ.get("CALCLAB_ISOLATION", "")
    with _PROBE_LOCK:
        return _probe_once(forced)


def _try_modes(forced=""):
    """probe's answer found now, never remembered (the probe's tests)."""
    if forced == "none":
        return None, "disabled by CALCLAB_ISOLATION=none"
    if forced not in ("", "uid"):
        return None, f"CALCLAB_ISOLATION={forced!r} is none of uid, none"
    if forced == "uid":
        why_ns = "namespaces not tried (CALCLAB_ISOLATION=uid)"
    else:
        mode, why_ns = _try_namespaces()
        if mode is not None:
            return mode, ""
    mode, why_uid = _try_uid()
    return (mode, why_ns) if mode is not None else (None, f"{why_ns}; {why_uid}")


_probe_once = functools.lru_cache(maxsize=None)(_try_modes)
_PROBE_LOCK = threading.Lock()


def _try_namespaces():
    if not shutil.which("bwrap"):
        return None, "bwrap not installed (bubblewrap)"
    unbuilt = [t for t, p in (("calc-netns", paths.netns()), ("calc-jail", paths.jail())) if p is None]
    if unbuilt:
        return None, f"{' and '.join(unbuilt)} not built in {paths.BUILD}"
    mode = "root" if os.geteuid() == 0 else "rootless"
    return _try_mode(mode, "cannot create namespaces")


def _try_uid():
    if os.geteuid() != 0:
        return None, "not root, so no switch to another uid either"
    if paths.jail() is None:
        return None, f"calc-jail not built in {paths.BUILD}"
    return _try_mode("uid", "cannot switch to another uid")


def _try_mode(mode, failing):
    """Play one program through a run's whole set-up in `mode` (its namespaces, /proc, binds or
    private copies, scratch, uid, limits): a mode the runs would fail in is never claimed."""
    try:
        with Sandbox(mode=mode) as box:
            argv, env, cwd = box.program(["/bin/sh", "-c", PROBE_SCRIPT, "sh",
                                          os.path.join(paths.STUDENT, "calc_server.py")])
            r = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired, ConfinementError) as e:
        return None, f"{failing} ({mode}): {e}"
    if r.returncode != 0:
        return None, f"{failing} ({mode}): {(r.stderr.strip() or f'exit {r.returncode}')[:200]}"
    return mode, ""


def _enter(holder):
    """calc-jail's way into the holder's namespaces (the user one first, when there is one)."""
    user = ["--user-ns", holder.ns("user")] if holder.rootless else []
    return [paths.jail()] + user + ["--net-ns", holder.ns("net"), "--"]


@functools.lru_cache(maxsize=None)
def _notice(text):
    """Tell the person running the lab, once per process, that its runs are less confined than
    namespaces would make them.  The cache is what remembers it was said: a notice belongs to
    the process (its stderr), like the verdict of the probe it follows from."""
    print(f"calclab: {text}", file=sys.stderr, flush=True)


def _others_may_run(path):
    """Whether a uid that is neither owner nor group of anything may execute `path` where it
    lies: the file and every folder above it executable (searchable) by others."""
    try:
        path = os.path.realpath(path)
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        for d in _ancestors(path):
            if not os.stat(d).st_mode & stat.S_IXOTH:
                return False
    except OSError:
        return False
    return os.stat("/").st_mode & stat.S_IXOTH != 0


class Sandbox:
    """One run's namespace and the argv prefixes that put programs into it.  Use as a context
    manager; after close() the namespace is gone."""

    def __init__(self, limits=None, expose=(), mode=None, lab=None, staged=None):
        """`lab`: the grading's settings.Lab (default: default_lab()): the installation of its
        Python is shown to the programs read-only, its grader's folders are watched.  `staged`:
        the stage.Stage of the copies its programs read, the caller's (a hand-in's runs share
        one); default: one of its own, removed by close().  A `mode` given
        is the probe's: it tries that set-up (and runs no Python)."""
        self.limits = limits or Limits()
        self.expose = [os.path.abspath(p) for p in expose]
        self._probing = mode is not None
        self.mode, self.reason = (mode, "") if self._probing else probe()
        self.lab = lab if lab is not None or self._probing else default_lab()
        self.interpreter_dirs = interpreter_dirs(self.lab.python.prefixes) if self.lab is not None else ()
        self.holder = None     # netns_holder.NetnsHolder of the run's namespace
        self._next_uid = 0
        self._stage, self._own_stage = (staged, False) if staged is not None else (stage.Stage(), True)
        self._block = None     # uid mode: the UidBlock the run holds
        self._private = None   # uid mode: the run's folder of the programs' own folders
        self._uids = {}        # uid mode: uid -> {exposed path: its private copy}

    # ------------------------------------------------------------- the namespace
    def open(self):
        if self.mode in ("root", "rootless"):
            try:
                self._start_holder()
            except OSError as e:
                if self._probing:
                    raise
                self.mode, self.reason = None, f"cannot create the run's network namespace: {e}"
        elif self.mode == "uid":
            _become_subreaper()
            self._block = UidBlock.acquire()
            self._private = _private_dir()
            if not self._probing:
                _notice(f"isolation: uid (no namespaces: {self.reason}); each program runs under a uid of "
                        "its own, runs use free port pairs and share the host's network")
        if self.mode is None:
            if not self.lab.allow_unconfined:
                self.close()
                raise Unconfined(refusal(self.lab) or f"cannot confine the programs here ({self.reason})")
            _notice(f"isolation: none ({self.reason}); runs use free port pairs and share the host's network; "
                    "the programs run UNCONFINED (--allow-unconfined)")
        return self

    def _start_holder(self):
        self.holder = NetnsHolder(rootless=self.mode == "rootless").start()

    def _stop_holder(self):
        if self.holder is not None:
            self.holder.stop()
            self.holder = None

    def close(self):
        """The run's end: its namespace goes; in uid mode every process of its uids is killed and
        the kill checked (ConfinementError when some survive), then their files go."""
        self._stop_holder()
        try:
            if self._uids:
                self._end_uid_programs()
        finally:
            if self._private is not None:
                shutil.rmtree(self._private, ignore_errors=True)
                self._private = None
            if self._block is not None:
                self._block.release()
                self._block = None
            if self._own_stage:
                self._stage.remove()

    def _end_uid_programs(self):
        uids = sorted(self._uids)
        self._uids = {}
        why = kill_uids(uids)
        _reap_orphans(set(uids))
        _remove_files_of(set(uids))
        if why:
            raise ConfinementError(f"the run's programs could not all be killed: {why}")

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    @property
    def isolated(self):
        """In a network namespace of its own (the goldens' ports, nothing of the host's network)."""
        return self.mode in ("root", "rootless") and self.holder is not None

    @property
    def isolation(self):
        """What confines the run, for the reports: 'netns, pid ns, ...', 'uid (no namespaces): ...'
        or 'none: why'."""
        if self.mode == "uid":
            open_ = open_to_others(self.lab.grader_paths)
            return ("uid (no namespaces): one unprivileged uid per program "
                    f"({UID_MODE_BASE}+, no groups, no capabilities, no-new-privs), a private copy of its "
                    "files and a scratch folder it owns, rlimits (processes included), every process of its "
                    "uids killed and checked before the report; the host's network shared (free ports)"
                    + (f"; readable by the programs: {', '.join(open_)}" if open_ else "")
                    + f" [namespaces: {self.reason}]")
        if not self.isolated:
            return f"none: {self.reason}; rlimits only, the programs run unconfined"
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
        if self.mode == "uid":
            return self._uid_program(argv, env, limits)
        if not self.isolated:
            return [paths.jail()] + limits + ["--"] + list(argv), dict(os.environ, **env), None
        env.update(HOME="/tmp", TMPDIR="/tmp")
        return self._enter() + self._bwrap(argv) + [INNER_JAIL] + limits + self._uid() + ["--"] + list(argv), env, None

    def ours(self, argv):
        """(argv, env, cwd) that run one of calclab's own programs (build/calc-server, calc-proxy,
        calc-client) in the run: as root, one calc-jail exec into the run's network namespace
        with the limits, an unprivileged uid of its own and death with the lab, without
        bubblewrap's mount and pid namespaces (its read-only root, its /tmp): they are the
        course's code, trusted as the capture is (which reads the same bytes as root), and bwrap
        with the second calc-jail is ~5 ms of CPU a program, two-thirds of a hand-in's programs
        being calclab's. Elsewhere (rootless, uid, none), and where the program's own uid could
        not run the executable where it lies (a checkout closed to others, as the Gradescope
        bundle's /autograder is: bwrap binds a copy), as program()."""
        if self.mode != "root" or not self.isolated or not _others_may_run(argv[0]):
            return self.program(argv)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        limits = self.limits.jail_argv(address_space=not any(_sanitized(w) for w in argv))
        # --die-with-parent: gone with the lab however it ends, as bwrap's programs are
        return ([paths.jail(), "--net-ns", self.holder.ns("net"), "--chdir", "/", "--die-with-parent"] + limits
                + self._uid() + ["--"] + list(argv), env, None)

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
        for d in self.interpreter_dirs:
            for parent in _ancestors(d):
                if parent not in made:
                    made.add(parent)
                    out += ["--perms", "0755", "--dir", parent]
            out += ["--ro-bind", d, d]
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
            if not word.startswith("/") or not os.path.exists(word) or _under_system(word, self.interpreter_dirs):
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

    def _uid_program(self, argv, env, limits):
        """uid mode: the program runs as the next uid of the run's block, in its own folder
        (0700, its own) holding its scratch folder (its cwd, HOME and TMPDIR) and private copies
        of what it may read, named on its command line in place of the originals."""
        uid = self._block.first + self._next_uid % UIDS_PER_RUN
        self._next_uid += 1
        copies = self._uids.setdefault(uid, {})
        home = os.path.join(self._private, str(uid))
        scratch = os.path.join(home, "tmp")
        if not os.path.isdir(home):
            os.mkdir(home, 0o700)
            os.mkdir(scratch, 0o700)
            os.chown(scratch, uid, uid)
        for p in self._exposed(argv):
            if p not in copies:
                copies[p] = _private_copy(self._stage.copy(p), os.path.join(home, str(len(copies))), uid)
        os.chown(home, uid, uid)
        env.update(HOME=scratch, TMPDIR=scratch)
        words = [_mapped(w, copies) for w in argv]
        return [paths.jail()] + limits + ["--chdir", scratch, "--uid", str(uid), "--"] + words, env, None

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


# ---------------------------------------------------------------- uid mode
class UidBlock:
    """UIDS_PER_RUN uids held by one run: an flock on a file of a root-only folder, released when
    the run ends or its process dies.  Processes a dead grader left under the block's uids are
    killed when the block is taken again."""

    def __init__(self, index, lock):
        self.index, self.lock = index, lock
        self.first = UID_MODE_BASE + index * UIDS_PER_RUN

    @classmethod
    def acquire(cls):
        folder = _lock_dir()
        start = random.randrange(UID_BLOCKS)
        for k in range(UID_BLOCKS):
            i = (start + k) % UID_BLOCKS
            lock = _lock_block(folder, i)
            if lock is None:
                continue
            block = cls(i, lock)
            why = kill_uids(block.uids())
            if why:
                block.release()
                raise ConfinementError(f"processes a previous run left under uids {block.first}+ survive: {why}")
            if _has_zombies(set(block.uids())):
                # a dead grader's zombies, which no one here can reap (their parent is pid 1):
                # they count against their uid's process limit, so the block is not used
                block.release()
                continue
            return block
        raise OSError(f"all {UID_BLOCKS} blocks of uids are in use")

    def uids(self):
        return list(range(self.first, self.first + UIDS_PER_RUN))

    def release(self):
        self.lock.release()


def _lock_dir():
    """A folder only root can enter, for the blocks' lock files (made once, checked every time:
    a program of an earlier run could have made one of these names in a world-writable folder)."""
    for d in UID_LOCK_DIRS:
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
        except OSError:
            continue
        st = os.lstat(d)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and st.st_mode & 0o077 == 0:
            return d
    raise OSError(f"no root-only folder for the uid locks ({', '.join(UID_LOCK_DIRS)})")


class BlockLock:
    """What holds a uid block: the flock of its file in the lock folder and, where the name was
    free, its abstract socket (_claim_name).  Both go with the process if it dies."""

    def __init__(self, fd, sock):
        self.fd, self.sock = fd, sock

    def release(self):
        if self.sock is not None:
            self.sock.close()
        os.close(self.fd)


def _lock_block(folder, i):
    """The locks of uid block i, held (a BlockLock), or None when another grader holds it."""
    fd = os.open(os.path.join(folder, str(i)), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    sock = _claim_name(i)
    if sock is False:
        os.close(fd)
        return None
    return BlockLock(fd, sock)


# The lock folder is its root's own: a chroot has a /run of its own but shares the host's
# processes, so a grader in a chroot and one on the host could take the same block under two
# lock folders, and each kill the other's programs by uid.  A block is therefore also held by an
# abstract unix socket name: those belong to the network namespace, which a chroot shares with
# the host, not to the mount root, and go with their process like a flock.  (A container has
# its own pid namespace, where kill by uid cannot reach the host's programs anyway.)
def _block_name(i):
    return f"\0calclab-uid-block-{UID_MODE_BASE + i * UIDS_PER_RUN}".encode()


def _claim_name(i):
    """Block i's socket name bound and listening (held), False when another grader holds it,
    None when it is not the lab's to hold: a program of a run shares the host's network at the
    uid level and could squat the names to stall other gradings, so a name not held by root is
    ignored (the flock alone then holds the block), as is a kernel refusing the socket."""
    name = _block_name(i)
    for _ in range(2):  # a second try when the holder went between the bind and the question
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            s.bind(name)
            s.listen(socket.SOMAXCONN)   # so that the others can ask whose it is
            return s
        except OSError as e:
            s.close()
            if e.errno != errno.EADDRINUSE:
                return None
        uid = _holder_uid(name)
        if uid is not None:
            return False if uid == 0 else None
    return None


def _holder_uid(name):
    """The uid that listens on the abstract socket `name` (SO_PEERCRED of a connection to it),
    or None when none does or it cannot be told (not listening, gone, its queue full)."""
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
    try:
        c.connect(name)
        return struct.unpack("iII", c.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("iII")))[1]
    except OSError:
        return None
    finally:
        c.close()


def _private_dir():
    """The run's folder of its programs' folders: others may pass through it to their own folder
    (0711), not list it."""
    import tempfile
    d = tempfile.mkdtemp(prefix="calclab-uid-")
    os.chmod(d, 0o711)
    return d


def _private_copy(master, dest, uid):
    """A copy of a staged path owned by `uid` (symbolic links kept as links)."""
    if os.path.isdir(master):
        shutil.copytree(master, dest, symlinks=True)
        for d, dirs, files in os.walk(dest):
            for name in [d] + [os.path.join(d, x) for x in dirs + files]:
                os.lchown(name, uid, uid)
    else:
        shutil.copy2(master, dest)
        os.chown(dest, uid, uid)
    return dest


def _mapped(word, copies):
    """A command-line word naming an exposed path (or something in it) names its private copy."""
    if not word.startswith("/") or not os.path.exists(word):
        return word
    real = os.path.realpath(word)
    for orig, copy in copies.items():
        if real == orig or real.startswith(orig + "/"):
            return copy + real[len(orig):]
    return word


def kill_uids(uids):
    """Kill every process of `uids` and check that none is left (calc-jail --kill-uid); None when
    done, else why not."""
    if not uids:
        return None
    jail = paths.jail()
    if jail is None:  # a grader without calclab's build (its tools not found) cannot kill by uid
        return f"calc-jail not built in {paths.BUILD}: cannot kill the processes of uids {uids[0]}-{uids[-1]}"
    argv = [jail] + [a for u in uids for a in ("--kill-uid", str(u))]
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return None if r.returncode == 0 else (r.stderr.strip() or f"calc-jail exited {r.returncode}")[:500]


def _become_subreaper():
    """Orphans of the programs (a daemon's first fork gone) become the lab's children, not those of
    the machine's pid 1, which in a container may never reap them: their zombies would count
    against their uid's process limit for good.  Setting the flag again is harmless (prctl
    only sets it), so every uid run asks."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _reap_orphans(uids):
    """Reap the zombies of `uids` that are the lab's own children (only those: the runs' other
    children belong to their subprocess.Popen objects)."""
    me = os.getpid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[0] != "Z" or int(fields[1]) != me:
                continue
            with open(f"/proc/{pid}/status") as f:
                uid = next(int(l.split()[1]) for l in f if l.startswith("Uid:"))
            if uid in uids:
                os.waitpid(int(pid), os.WNOHANG)
        except (OSError, ValueError, IndexError, StopIteration, ChildProcessError):
            continue


def _has_zombies(uids):
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    continue
            with open(f"/proc/{pid}/status") as f:
                if next(int(l.split()[1]) for l in f if l.startswith("Uid:")) in uids:
                    return True
        except (OSError, ValueError, IndexError, StopIteration):
            continue
    return False


def _remove_files_of(uids):
    """What the programs left in the world-writable folders (they write their scratch, but
    nothing stops /tmp)."""
    for top in SHARED_SCRATCH:
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for e in entries:
            try:
                if e.stat(follow_symlinks=False).st_uid not in uids:
                    continue
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path, ignore_errors=True)
                else:
                    os.unlink(e.path)
            except OSError:
                pass


def sweep():
    """Kill what a dead grader left: every process of a uid block no live run holds (the runs'
    own ends kill theirs; this is for a lab/grade that was itself killed, at a time limit say).
    Blocks held by live runs, this machine's other gradings, are left alone.  Returns why some
    survived, or None."""
    first, last = UID_MODE_BASE, UID_MODE_BASE + UID_BLOCKS * UIDS_PER_RUN
    blocks = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                uid = next(int(l.split()[1]) for l in f if l.startswith("Uid:"))
        except (OSError, ValueError, IndexError, StopIteration):
            continue
        if first <= uid < last:
            blocks.setdefault((uid - first) // UIDS_PER_RUN, set()).add(uid)
    if not blocks:
        return None
    folder = _lock_dir()
    problems = []
    for i, uids in sorted(blocks.items()):
        lock = _lock_block(folder, i)
        if lock is None:
            continue
        try:
            why = kill_uids(sorted(uids))
            _reap_orphans(uids)
            _remove_files_of(uids)
            if why:
                problems.append(why)
        finally:
            lock.release()
    return "; ".join(problems) or None


def keep_private(path):
    """In uid mode, an output folder of the grader is closed to other uids (the programs')."""
    if probe()[0] == "uid" and os.path.isdir(path):
        os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) & ~0o007)


def default_lab():
    """The Lab of a sandbox made without one (calclab's goldens and replays, a test's run): the
    system's python3, the checkout, and the environment's leave to run unconfined."""
    return settings.Lab(interp.current(), settings.folders([paths.ROOT]), unconfined_allowed())


def open_to_others(paths_):
    """Those of `paths_` another uid can read (every folder above it enterable by others, it
    readable by them), which in uid mode only permissions protect."""
    return [p for p in paths_ if _open_to_others(p)]


def _open_to_others(path):
    try:
        parts = os.path.realpath(path).strip("/").split("/")
        for i in range(len(parts)):
            if not os.stat("/" + "/".join(parts[:i])).st_mode & stat.S_IXOTH:
                return False
        return bool(os.stat(path).st_mode & stat.S_IROTH)
    except OSError:
        return False


def _under_system(path, interpreter=()):
    """Whether `path` is of the system every program sees anyway (or of the `interpreter` dirs
    a sandbox shows as they are)."""
    return any(path == d or path.startswith(d + "/")
               for d in SYSTEM_DIRS + ("/etc", "/proc", "/dev") + tuple(interpreter))


def _ancestors(path):
    """'/a/b/c' -> ['/a', '/a/b']"""
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[:i + 1]) for i in range(len(parts))]


def _sanitized(path):
    """Whether `path` is an executable built with a sanitizer (its runtime's init symbol)."""
    if not path.startswith("/") or not _is_elf(path):
        return False
    return _has_sanitizer(path, os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _has_sanitizer(path, mtime_ns):
    """What _sanitized says of `path` as it was at `mtime_ns`: a pure function of the file's
    contents, which the modification time names, so it is read once per build, not per run."""
    with open(path, "rb") as f:
        data = f.read()
    return any(m in data for m in (b"__asan_init", b"__tsan_init", b"__msan_init"))


def _is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False
