"""What a confined program may read of the grader's files: copies (docs/sandbox.md).

A Stage holds, in one temporary folder, the copies that sandbox.Sandbox binds read-only into a
program's view: each exposed path (a submission folder, an executable) copied so that the
program's unprivileged uid can read it whatever the grader's permissions, and a folder of the
few /etc files a program needs.  Each is made once per Stage.  A run has a Stage of its own,
unless its caller hands it one (runner.play(staged=)): the runs of one hand-in share theirs
(classgrade: `with Stage() as staged`), so the hand-in is copied once.

Python modules of a copied folder are compiled into its __pycache__ with hash-checked pycs, so
that each of the hand-in's dozen program starts loads them instead of compiling them again
(the copies are read-only to the programs, which could never cache them themselves).  A pyc
is used only while its source's hash matches, so it is always the code the report shows; the
hand-in's own __pycache__ folders are never copied."""
import os
import py_compile
import shutil
import tempfile
import threading

# A submission is copied for its programs; more than this is refused.
MAX_STAGED_BYTES = 256 * 1024 * 1024
# Compiling ahead is an optimisation: past these, modules are left for Python to compile
COMPILE_MAX_FILES = 200
COMPILE_MAX_BYTES = 512 * 1024


class StageError(OSError):
    """A path cannot be offered to a program (too big, unreadable): the run cannot start it."""


class Stage:
    def __init__(self):
        self._dir = None
        self._copies = {}   # exposed path -> its copy
        self._lock = threading.Lock()  # a scenario's clients at once stage from several threads

    def _root(self):
        if self._dir is None:
            # root's alone: a confined program sees a copy through its bind or its own private copy
            # (uid mode), never this folder, which other runs' programs must not reach either
            self._dir = tempfile.mkdtemp(prefix="calclab-stage-")
        return self._dir

    def copy(self, path):
        """A copy of `path` the program's uid can read: files 0644 (0755 when executable),
        folders 0755, symbolic links kept as links (their targets stay outside)."""
        with self._lock:
            if path not in self._copies:
                dest = os.path.join(self._root(), str(len(self._copies)))
                try:
                    _copy(path, dest)
                except (OSError, shutil.Error) as e:
                    shutil.rmtree(dest, ignore_errors=True)
                    raise StageError(f"cannot copy {path} for the sandbox: {_reason(e)}") from None
                self._copies[path] = dest
            return self._copies[path]

    def system_files(self, files):
        """A folder with copies of `files` (absolute paths; links kept as links, missing ones
        left out), to be the program's /etc."""
        with self._lock:
            etc = os.path.join(self._root(), "etc")
            if not os.path.isdir(etc):
                os.mkdir(etc)
                os.chmod(etc, 0o755)
                for f in files:
                    dest = os.path.join(etc, os.path.basename(f))
                    if os.path.islink(f):
                        os.symlink(os.readlink(f), dest)
                    elif os.path.isfile(f):
                        shutil.copyfile(f, dest)
                        os.chmod(dest, 0o644)
            return etc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    def remove(self):
        with self._lock:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
                self._copies.clear()


def _copy(path, dest):
    if not os.path.isdir(path):
        shutil.copyfile(path, dest)
        os.chmod(dest, os.stat(path).st_mode)
        _share(dest)
        return
    total = sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(path) for f in fs)
    if total > MAX_STAGED_BYTES:
        raise OSError(f"{total} bytes, more than the {MAX_STAGED_BYTES} a submission may hold")
    shutil.copytree(path, dest, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    _compile_modules(dest)
    for d, _, files in os.walk(dest):
        os.chmod(d, 0o755)
        for f in files:
            _share(os.path.join(d, f))


def _compile_modules(top):
    """Hash-checked pycs for the folder's modules, as far as they compile (a module that does not
    is left to fail in the program, as it would anyway)."""
    n = 0
    for d, _, files in os.walk(top):
        for f in files:
            src = os.path.join(d, f)
            if not f.endswith(".py") or os.path.islink(src) or os.path.getsize(src) > COMPILE_MAX_BYTES:
                continue
            n += 1
            if n > COMPILE_MAX_FILES:
                return
            try:
                py_compile.compile(src, doraise=True, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
            except (py_compile.PyCompileError, OSError, ValueError, RecursionError, MemoryError):
                pass


def _share(path):
    if not os.path.islink(path):
        os.chmod(path, 0o755 if os.stat(path).st_mode & 0o111 else 0o644)


def _reason(e):
    if isinstance(e, shutil.Error) and e.args and isinstance(e.args[0], list) and e.args[0]:
        src, _, why = e.args[0][0]
        return f"{src}: {why}"
    return e.strerror or str(e) if isinstance(e, OSError) else str(e)
