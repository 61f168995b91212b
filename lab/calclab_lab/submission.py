"""A student's hand-in as the grader sees it: a private copy of the folder (or of the .zip,
extracted safely), the role files found in it, and the command line each role runs with.

Students complete server.py, proxy.py and client.py from the course skeleton, next to its api.py
and calculator.py, sometimes one or two folders down, in any case, with Windows line endings and
IDE folders around them.  Their programs take the skeleton's flags: the server `-H HOST -p PORT`,
the proxy `-ph -pp -sh -sp`, the client `-H HOST -p PORT` (the expression is the client's own).
Ports are always passed: some copies of api.py default the server to 9997."""
import json
import os
import shlex
import shutil
import stat
import subprocess
import zipfile

from . import paths

ROLES = ("server", "proxy", "client")
ROLE_FILES = {role: f"{role}.py" for role in ROLES}
MAX_DEPTH = 3                    # folders below the submission's top where role files are looked for
IGNORED_DIRS = {".idea", ".vscode", "__pycache__", "__macosx", ".git", ".svn", ".hg", "venv", ".venv",
                "env", ".env", "node_modules", ".pytest_cache", ".mypy_cache", ".ipynb_checkpoints"}
MAX_FILES = 2000                 # a hand-in is a handful of .py files; anything beyond this is refused
MAX_BYTES = 50 * 1024 * 1024     # in all, after extraction
MAX_FILE_BYTES = 20 * 1024 * 1024

ENV = shutil.which("env") or "/usr/bin/env"
LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch.py")

STUDENT_TEMPLATES = {
    "server": "{py} {file} -H {host} -p {port}",
    "proxy": "{py} {file} -ph {host} -pp {port} -sh {server_host} -sp {server_port}",
    "client": "{py} {file} -H {host} -p {port}",
}


class SubmissionError(Exception):
    """The hand-in cannot be graded at all (unreadable zip, too big, unsafe paths); the message
    becomes the submission's status."""


def submission_id(path):
    """The entry's name as the gradebook shows it: the folder's name, or the zip's without .zip."""
    name = os.path.basename(os.path.normpath(path))
    return name[:-4] if name.lower().endswith(".zip") and os.path.isfile(path) else name


def _ignored(dirname):
    return dirname.lower() in IGNORED_DIRS or dirname.startswith(".")


def _copy_tree(src, dst):
    """Copy regular files and folders only (no symlinks: a link could point anywhere on the
    grader's machine), leaving out IDE and cache folders, within the count and size caps."""
    count = total = 0
    for d, dirs, files in os.walk(src):
        dirs[:] = sorted(x for x in dirs if not _ignored(x) and not os.path.islink(os.path.join(d, x)))
        rel = os.path.relpath(d, src)
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        for name in sorted(files):
            p = os.path.join(d, name)
            st = os.lstat(p)
            if not stat.S_ISREG(st.st_mode):
                continue
            count += 1
            total += st.st_size
            if count > MAX_FILES:
                raise SubmissionError(f"more than {MAX_FILES} files")
            if total > MAX_BYTES or st.st_size > MAX_FILE_BYTES:
                raise SubmissionError(f"more than {MAX_BYTES // (1024 * 1024)} MiB of files")
            shutil.copyfile(p, os.path.join(dst, rel, name))


def _safe_member_path(name):
    """The relative path a zip member may be written to, or None for one that must be skipped
    (absolute, drive letter, '..' anywhere: a path traversal)."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    if any(_ignored(p) for p in parts[:-1]):
        return ""
    return os.path.join(*parts)


def _extract_zip(path, dst):
    """Extract regular files only, each read through a size cap (the sizes a zip declares are not
    trusted), refusing traversal; symlink members are skipped."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise SubmissionError(f"unreadable zip: {e}")
    count = total = 0
    skipped = []
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                skipped.append(info.filename)
                continue
            rel = _safe_member_path(info.filename)
            if rel is None:
                skipped.append(info.filename)
                continue
            if rel == "":
                continue
            count += 1
            if count > MAX_FILES:
                raise SubmissionError(f"zip has more than {MAX_FILES} files")
            out = os.path.join(dst, rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            try:
                with zf.open(info) as src, open(out, "wb") as f:
                    while True:
                        chunk = src.read(65536)
                        if not chunk:
                            break
                        total += len(chunk)
                        if total > MAX_BYTES:
                            raise SubmissionError(f"zip expands to more than {MAX_BYTES // (1024 * 1024)} MiB")
                        f.write(chunk)
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError) as e:
                raise SubmissionError(f"unreadable zip member {info.filename!r}: {e}")
    return skipped


def find_role_files(top):
    """role -> path of its file under `top`: names compared case-insensitively, at most MAX_DEPTH
    folders down, the shallowest (then alphabetically first) when there are several."""
    found = {}
    for d, dirs, files in os.walk(top):
        depth = 0 if d == top else os.path.relpath(d, top).count(os.sep) + 1
        dirs[:] = sorted(x for x in dirs if not _ignored(x)) if depth < MAX_DEPTH else []
        for name in sorted(files):
            for role, want in ROLE_FILES.items():
                if name.lower() == want:
                    found.setdefault(role, []).append((depth, os.path.join(d, name)))
    return {role: sorted(c)[0][1] for role, c in found.items()}


def normalize_line_endings(path):
    """Windows line endings (and a UTF-8 BOM) in the grader's private copy of a Python file become
    plain newlines, so that a shebang or a here-string does not carry a stray CR."""
    with open(path, "rb") as f:
        data = f.read()
    fixed = data.replace(b"\r\n", b"\n")
    if fixed != data:
        with open(path, "wb") as f:
            f.write(fixed)


_COMPILE = ("import json, sys\n"
            "out = {}\n"
            "for p in sys.argv[1:]:\n"
            "    try:\n"
            "        compile(open(p, 'rb').read(), p, 'exec')\n"
            "    except SyntaxError as e:\n"
            "        out[p] = f'line {e.lineno}: {e.msg}'\n"
            "    except (ValueError, OSError) as e:\n"
            "        out[p] = str(e)\n"
            "print(json.dumps(out))\n")


def syntax_errors(files, python=None):
    """path -> 'line N: message' for each file the grader's Python cannot compile (compiling runs
    none of the student's code).  The students' interpreter does the compiling, as it will run them."""
    if not files:
        return {}
    r = subprocess.run([python or paths.PY, "-I", "-S", "-c", _COMPILE, *files], capture_output=True, text=True,
                       timeout=60)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {f: f"could not be compiled: {r.stderr.strip()[-200:]}" for f in files}


def _literal(text):
    """`text` as one word of a command template: quoted, its braces doubled (not placeholders)."""
    return shlex.quote(text).replace("{", "{{").replace("}", "}}")


class Submission:
    """A private, normalized copy of one hand-in under `workdir`/src; its role files compiled by
    `python` (default paths.PY) to find syntax errors."""

    def __init__(self, path, workdir, python=None):
        self.path = os.path.abspath(path)
        self.id = submission_id(path)
        self.src = os.path.join(workdir, "src")
        self.skipped = []          # zip members left out (unsafe paths, links)
        if os.path.exists(self.src):
            shutil.rmtree(self.src)
        os.makedirs(self.src)
        if os.path.isdir(self.path):
            _copy_tree(self.path, self.src)
        elif os.path.isfile(self.path) and self.path.lower().endswith(".zip"):
            self.skipped = _extract_zip(self.path, self.src)
        else:
            raise SubmissionError("neither a folder nor a .zip")
        for d, _, files in os.walk(self.src):
            for name in files:
                if name.lower().endswith(".py"):
                    normalize_line_endings(os.path.join(d, name))
        self.files = find_role_files(self.src)
        self.errors = {}
        bad = syntax_errors(sorted(self.files.values()), python)
        for role, p in self.files.items():
            if p in bad:
                self.errors[role] = bad[p]

    def rel(self, role):
        return os.path.relpath(self.files[role], self.src)

    def template(self, role, stdin_text=None):
        """The role's command template: the skeleton's flags, run from the file's own folder (where
        its api.py and calculator.py are), the client fed `stdin_text` when given."""
        f = self.files[role]
        tmpl = STUDENT_TEMPLATES[role].replace("{file}", _literal(os.path.basename(f)))
        folder = _literal(os.path.dirname(f))
        if role == "client" and stdin_text is not None:
            return f"{{py}} -I -S {_literal(LAUNCHER)} --cwd {folder} --stdin {shlex.quote(stdin_text)} -- {tmpl}"
        # coreutils' env changes the folder and execs: a millisecond where launch.py takes ten
        return f"{ENV} -C {folder} {tmpl}"
