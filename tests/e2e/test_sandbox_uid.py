"""The sandbox's fallback where no namespace can be made but the lab is root (docs/sandbox.md,
uid mode), forced with CALCLAB_ISOLATION=uid: the hostile submissions of test_sandbox.py again,
plus a daemon that keeps rewriting the grader's results file. Each program runs under a uid of
its own, so only file permissions and the kernel's checks between uids stand between it and the
grader: the grader's files sit in a folder open to everyone here, as on a machine whose admin
left them so, and are still neither read nor changed; nothing of a run is left once it is over."""
import os
import pathlib
import shutil
import stat
import subprocess
import tempfile
import time

import pytest

from hostile import (LAB, PY, ROOT, SECRET, assert_none_left, everything, grade_forging_hand_in, hostile,
                     limit_cases, play, run_daemon, run_forker, run_hog, run_printer, run_squatter, secret_hunter, student_only,
                     with_bystander, writer)
from calclab_lab import sandbox  # noqa: E402  (hostile put lab/ on the path)

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root"), student_only]


@pytest.fixture(scope="module", autouse=True)
def uid_mode():
    """Every run of this module in uid mode, as where namespaces are refused."""
    env = os.environ.get("CALCLAB_ISOLATION")
    os.environ["CALCLAB_ISOLATION"] = "uid"
    try:
        mode, why = sandbox.probe()
        assert mode == "uid", why
        yield
    finally:
        if env is None:
            os.environ.pop("CALCLAB_ISOLATION", None)
        else:
            os.environ["CALCLAB_ISOLATION"] = env


@pytest.fixture
def open_dir():
    """A folder of the grader's that every uid may enter and read (mode 0755)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="calclab-open-"))
    d.chmod(0o755)
    yield d
    subprocess.run(["rm", "-rf", str(d)])


def lab_children_left():
    """Processes (zombies included) of the uid mode's uids that are this process's children."""
    ps = subprocess.run(["ps", "-eo", "pid=,ppid=,uid=,stat="], capture_output=True, text=True).stdout
    return [l for l in ps.splitlines() if int(l.split()[1]) == os.getpid() and
            sandbox.UID_MODE_BASE <= int(l.split()[2]) < sandbox.UID_MODE_BASE + sandbox.UID_BLOCKS * sandbox.UIDS_PER_RUN]


def test_isolation_says_uid_and_what_is_open(tmp_path):
    res = play("3.1", tmp_path)
    assert res.passed, res.errors
    assert res.isolation.startswith("uid (no namespaces): one unprivileged uid per program")
    assert "every process of its uids killed and checked before the report" in res.isolation
    # the checkout is named when other uids can read it (permissions are all that protect it here)
    assert ("readable by the programs: " + str(ROOT) in res.isolation) == sandbox._open_to_others(str(ROOT))
    assert res.ports["proxy"] != 9998  # the host's network: free ports


def test_program_runs_as_its_own_uid_without_privileges(tmp_path):
    tmpl = hostile(tmp_path, "whoami", """
        import os
        st = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
        print("STATUS", st["Uid"].split(), st["Groups"].strip(), st["CapEff"].strip(), st["CapBnd"].strip(),
              st["NoNewPrivs"].strip(), flush=True)
        print("CWD", os.getcwd(), os.stat(".").st_uid, oct(os.stat("..").st_mode & 0o777), flush=True)
        print("FILE", __file__, os.stat(__file__).st_uid, flush=True)
    """)
    res = play("3.1", tmp_path, server=tmpl)
    out = res.procs["server"].output()
    line = next(l for l in out.splitlines() if l.startswith("STATUS"))
    uid = int(line.split("'")[1])
    assert uid >= sandbox.UID_MODE_BASE and line.count(f"'{uid}'") == 4, line
    assert line.endswith("']  0000000000000000 0000000000000000 1"), line   # no groups, no capabilities, no-new-privs
    cwd = next(l for l in out.splitlines() if l.startswith("CWD")).split()
    assert cwd[2] == str(uid) and cwd[3] == "0o700", cwd   # its scratch, in its own closed folder
    f = next(l for l in out.splitlines() if l.startswith("FILE")).split()
    assert not f[1].startswith(str(tmp_path)) and f[2] == str(uid)   # its private copy, not the hand-in
    assert res.passed, res.errors


def test_secret_of_the_grader_is_in_no_output(tmp_path, open_dir, monkeypatch):
    (open_dir / "secret-0600.txt").write_text(SECRET)
    (open_dir / "secret-0600.txt").chmod(0o600)
    private = open_dir / "private"
    private.mkdir(mode=0o700)
    (private / "secret.txt").write_text(SECRET)
    (private / "secret.txt").chmod(0o644)
    monkeypatch.setenv("CALCLAB_TEST_SECRET", SECRET)
    work = open_dir / "out"
    # the secret itself, made at run time (its reversed literal is in the program's own copy,
    # which it may read); the folders it walks are the whole machine's, other checkouts included
    tmpl = hostile(tmp_path, "secret", secret_hunter(
        [open_dir / "secret-0600.txt", private / "secret.txt", work / "run-3.1" / "server.log", "/proc/1/environ",
         "/etc/shadow"],
        ["/tmp", "/run", "/var/tmp", "/dev/shm", "/root", open_dir], f"{SECRET[::-1]!r}[::-1].encode()",
        more='["/proc/%d/environ" % os.getppid()]'))
    res = play("3.1", work, server=tmpl)
    out = res.procs["server"].output()
    assert out.count("DENIED") == 6 and "READ" not in out and "FOUND" not in out, out[-3000:]
    assert SECRET not in everything(res)
    assert stat.S_IMODE((work / "run-3.1").stat().st_mode) & 0o007 == 0   # the run's outputs: closed
    assert res.passed, res.errors


def test_writes_outside_its_folder_change_nothing(tmp_path, open_dir):
    results = open_dir / "results"
    results.mkdir(mode=0o755)
    (results / "results.json").write_text('{"score": 0}')
    targets = [results / "results.json", results / "forged.json", ROOT / "captures" / "3.1.pcap",
               tmp_path / "run-3.1" / "server.log", tmp_path / "sub-writer" / "server.py", open_dir / "planted",
               pathlib.Path("/etc/calclab-planted"), ROOT / "lab" / "calclab_lab" / "planted.py"]
    tmpl = hostile(tmp_path, "writer", writer(targets), """
        with open("scratch-ok", "w") as f:
            f.write("scratch is writable")
        print("SCRATCH", open("scratch-ok").read(), os.getcwd() == os.environ["HOME"] == os.environ["TMPDIR"], flush=True)
    """)
    before = (ROOT / "captures" / "3.1.pcap").read_bytes()
    res = play("3.1", tmp_path, server=tmpl)
    out = res.procs["server"].output()
    assert "WROTE" not in out and out.count("REFUSED") == len(targets), out[-2000:]
    assert "SCRATCH scratch is writable True" in out
    assert (results / "results.json").read_text() == '{"score": 0}' and sorted(os.listdir(results)) == ["results.json"]
    assert (ROOT / "captures" / "3.1.pcap").read_bytes() == before
    assert not (open_dir / "planted").exists() and not os.path.exists("/etc/calclab-planted")
    assert "calc_server.main()" in (tmp_path / "sub-writer" / "server.py").read_text()
    assert res.passed, res.errors


def test_killing_everything_it_can_hurts_only_itself(tmp_path):
    tmpl = hostile(tmp_path, "killer", """
        import os, signal
        seen = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
        denied = 0
        for pid in seen:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except PermissionError:
                    denied += 1
                except OSError:
                    pass
        os.kill(-1, signal.SIGKILL)   # every process it may signal but itself: its own
        print("SEES", len(seen), "DENIED", denied, flush=True)
    """)
    res = with_bystander(tmp_path, lambda: play("3.2", tmp_path, server=tmpl))
    words = res.procs["server"].output().split()
    assert int(words[words.index("SEES") + 1]) > 10 and int(words[words.index("DENIED") + 1]) > 10, words
    assert res.passed, res.errors


def test_daemon_left_behind_does_not_survive_the_run(tmp_path):
    run_daemon(tmp_path, f"calclab_uid_daemon_{os.getpid()}")
    assert lab_children_left() == []   # its orphans' zombies were reaped, not left to count


def test_daemon_rewriting_the_results_file_changes_nothing(tmp_path, open_dir):
    """The attack seen unconfined: a daemon that rewrites the results file while the grader runs
    and after; here it is refused every time and is gone before the run's result exists."""
    marker = f"calclab_uid_forger_{os.getpid()}"
    results = open_dir / "results.json"
    results.write_text('{"score": 0}')
    loop = f"""
import os, time
for _ in range(30000):
    try:
        with open({str(results)!r}, "w") as f:
            f.write('{{"score": 1000}}')
    except OSError:
        pass
    try:
        os.replace("forged.json", {str(results)!r})
    except OSError:
        pass
    time.sleep(0.01)
"""
    tmpl = hostile(tmp_path, "forger", f"""
        import os, sys
        open("forged.json", "w").write('{{"score": 1000}}')
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv(sys.executable, [sys.executable, "-X", {marker!r}, "-c", {loop!r}])
            os._exit(0)
    """)
    res = play("3.1", tmp_path, server=tmpl)
    assert res.passed, res.errors
    assert results.read_text() == '{"score": 0}'
    time.sleep(0.5)
    assert results.read_text() == '{"score": 0}'
    assert_none_left(marker)
    assert lab_children_left() == []


def test_memory_past_the_limit_is_a_clear_failure(tmp_path):
    run_hog(tmp_path)


def test_hundreds_of_processes_stop_at_the_process_limit(tmp_path):
    """RLIMIT_NPROC binds a uid that is not root: 64 processes, not 300."""
    run_forker(tmp_path, f"calclab_uid_forker_{os.getpid()}")
    assert lab_children_left() == []


def test_endless_output_is_cut(tmp_path):
    run_printer(tmp_path)


@pytest.mark.parametrize("what,body,limits,reason", limit_cases("big"))
def test_cpu_file_size_and_open_files_limits(tmp_path, what, body, limits, reason):
    res = play("3.1", tmp_path, server=hostile(tmp_path, what, body), limits=limits)
    assert not res.passed and reason in res.errors, res.errors


def test_squatting_the_proxy_port_affects_only_its_own_run(tmp_path):
    run_squatter(tmp_path)


def test_a_hand_in_cannot_change_its_own_grade(tmp_path, open_dir):
    out = open_dir / "grades"
    out.mkdir(mode=0o755)
    entry = grade_forging_hand_in(tmp_path, out)
    assert entry["scenarios"][0]["isolation"].startswith("uid (no namespaces)")


def test_the_probe_plays_the_runs_set_up(monkeypatch):
    """A set-up every run would fail in is never claimed: a bwrap option the kernel refuses
    (as a container that forbids mounting /proc refuses --proc) makes the probe refuse the
    namespaces, and root falls back to the uid switch, saying why."""
    monkeypatch.delenv("CALCLAB_ISOLATION")
    real = sandbox.Sandbox._bwrap
    monkeypatch.setattr(sandbox.Sandbox, "_bwrap",
                        lambda self, argv: real(self, argv)[:-1] + ["--bind", "/nonexistent-calclab", "/mnt", "--"])
    mode, why = sandbox._try_modes()
    assert mode == "uid", why
    assert "cannot create namespaces" in why and "nonexistent-calclab" in why, why


def test_a_grader_under_another_root_holds_its_blocks_here_too():
    """A chroot shares the host's processes but has a /run, so a lock folder, of its own: a block
    a grader there holds is held for the graders here too (each would kill the other's programs
    by uid), and free again once that grader is gone.  Its other root is a mount namespace with a
    tmpfs on /run: the same processes and network, another lock folder."""
    if not shutil.which("unshare"):
        pytest.skip("no unshare (util-linux) to give a grader a /run of its own")
    tried = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs calclab-run /run"], capture_output=True, text=True, timeout=30)
    if tried.returncode != 0:   # Docker's default capabilities, say: no CAP_SYS_ADMIN
        pytest.skip(f"no mount namespace with a /run of its own here: {tried.stderr.strip()}")
    code = (f"import sys; sys.path.insert(0, {str(LAB)!r}); from calclab_lab import sandbox; "
            "block = sandbox.UidBlock.acquire(); print(block.index, flush=True); sys.stdin.read()")
    other = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                              'mount -t tmpfs calclab-run /run && exec "$0" -c "$1"', PY, code],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = other.stdout.readline()
        assert line.strip().isdigit(), f"the other grader took no block (exit {other.poll()})"
        i = int(line)
        assert sandbox._lock_block(sandbox._lock_dir(), i) is None
    finally:
        other.stdin.close()
        other.wait(timeout=30)
    lock = sandbox._lock_block(sandbox._lock_dir(), i)
    assert lock is not None
    lock.release()


def test_a_program_squatting_a_blocks_name_holds_nothing():
    """The runs' programs share the host's network here and could bind the blocks' socket names
    first; a name not held by root does not keep a grader from the block (its lock file does)."""
    i = 7
    squat = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(b'\\0' + sys.argv[1].encode()); "
             "s.listen(); print(flush=True); sys.stdin.read()")
    name = sandbox._block_name(i)[1:].decode()
    p = subprocess.Popen(["setpriv", "--reuid", str(sandbox.NOBODY), "--regid", str(sandbox.NOBODY), "--clear-groups",
                          PY, "-c", squat, name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "\n"
        assert sandbox._holder_uid(sandbox._block_name(i)) == sandbox.NOBODY
        lock = sandbox._lock_block(sandbox._lock_dir(), i)
        assert lock is not None and lock.sock is None
        lock.release()
    finally:
        p.stdin.close()
        p.wait(timeout=30)
