"""The sandbox's own tools: calc-netns, which makes and holds a run's network namespace, and
calc-jail, the step into it and out of root (its limits, the uid and capabilities a program
is left with, the namespaces it enters), and their errors."""
import dataclasses
import os
import socket
import shutil
import subprocess
import sys
import time

import pytest

from conftest import build_exe

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lab"))
from calclab_lab import interp, sandbox, settings, stage  # noqa: E402
from calclab_lab.sandbox import _become_subreaper, _reap_orphans  # noqa: E402

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another uid needs root")


def jail(*args, **kw):
    return subprocess.run([str(build_exe("calc-jail")), *args], capture_output=True, text=True, timeout=30, **kw)


def status(text):
    """/proc/self/status fields as a dict."""
    return dict(l.split(":\t", 1) for l in text.splitlines() if ":\t" in l)


def test_limits_are_set_soft_and_hard():
    r = jail("--limit", "nofile=37", "--limit", "cpu=7", "--limit", "fsize=1048576", "--limit", "core=0", "--",
             sys.executable, "-c",
             "import resource as r; print(*[r.getrlimit(x) for x in "
             "(r.RLIMIT_NOFILE, r.RLIMIT_CPU, r.RLIMIT_FSIZE, r.RLIMIT_CORE)])")
    assert r.returncode == 0, r.stderr
    # the CPU limit's hard value is one second above: SIGXCPU first, SIGKILL only if ignored
    assert r.stdout.split() == ["(37,", "37)", "(7,", "8)", "(1048576,", "1048576)", "(0,", "0)"]


@as_root
def test_uid_change_leaves_no_groups_and_no_capabilities():
    r = jail("--uid", "1000123", "--", "cat", "/proc/self/status")
    assert r.returncode == 0, r.stderr
    st = status(r.stdout)
    assert st["Uid"].split() == ["1000123"] * 4 and st["Gid"].split() == ["1000123"] * 4
    assert st["Groups"].strip() == ""
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(st[cap], 16) == 0, cap
    assert st["NoNewPrivs"].strip() == "1"   # a setuid-root program gives nothing back


def _of_uid(uid):
    """Processes of `uid` that are not zombies (the kill's own measure)."""
    ps = subprocess.run(["ps", "-eo", "uid=,stat="], capture_output=True, text=True).stdout
    return [l for l in ps.splitlines() if int(l.split()[0]) == uid and not l.split()[1].startswith("Z")]


@as_root
def test_kill_uid_kills_every_process_of_the_uid_and_checks():
    uid = 2_000_999_001
    # daemons in sessions of their own, a process that ignores SIGTERM, and a fork loop still going
    prog = ("import os, signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "for i in range(20):\n"
            "    if os.fork() == 0:\n"
            "        os.setsid()\n"
            "        os.dup2(os.open(os.devnull, os.O_WRONLY), 1); os.dup2(1, 2)\n"
            "        while True:\n"
            "            try:\n"
            "                if os.fork() == 0: time.sleep(0.05); os._exit(0)\n"
            "                os.wait()\n"
            "            except OSError: time.sleep(0.01)\n"
            "print('started', flush=True)\n")
    _become_subreaper()   # the daemons' zombies are ours to reap, not left to the machine's pid 1
    r = jail("--uid", str(uid), "--limit", "nproc=1000", "--", sys.executable, "-c", prog)
    assert r.returncode == 0 and "started" in r.stdout, r.stderr
    assert len(_of_uid(uid)) >= 20
    other = subprocess.Popen(["sleep", "30"])   # root's: untouched
    try:
        t0 = time.time()
        k = jail("--kill-uid", str(uid), "--kill-uid", str(uid + 1))
        assert k.returncode == 0, k.stderr
        assert time.time() - t0 < 5
        assert _of_uid(uid) == [] and other.poll() is None
    finally:
        jail("--kill-uid", str(uid))
        _reap_orphans({uid})
        other.kill()
        other.wait()


@pytest.mark.parametrize("args,message", [
    (["--kill-uid", "0"], "--kill-uid: expected a uid from 1000"),
    (["--kill-uid", "999"], "--kill-uid: expected a uid from 1000"),
    (["--kill-uid", "x"], "--kill-uid: expected a uid from 1000"),
    (["--kill-uid", "2000000000", "--", "true"], "--kill-uid goes alone"),
    (["--kill-uid", "2000000000", "--uid", "5"], "--kill-uid goes alone"),
])
def test_kill_uid_errors(args, message):
    r = jail(*args)
    assert r.returncode == 125 and message in r.stderr, r.stderr


def test_enters_the_network_namespace_of_another_process():
    holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "30"] if os.geteuid() == 0 else
                              ["unshare", "--user", "--map-root-user", "--net", "--", "sleep", "30"])
    try:
        ns = f"/proc/{holder.pid}/ns"
        for _ in range(100):  # unshare execs sleep once the namespace is made
            if os.path.exists(ns) and os.readlink(f"{ns}/net") != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.02)
        user = [] if os.geteuid() == 0 else ["--user-ns", f"{ns}/user"]
        r = jail(*user, "--net-ns", f"{ns}/net", "--", "readlink", "/proc/self/ns/net")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == os.readlink(f"{ns}/net") != os.readlink("/proc/self/ns/net")
    finally:
        holder.kill()
        holder.wait()


def test_changes_directory(tmp_path):
    r = jail("--chdir", str(tmp_path), "--", "pwd")
    assert (r.returncode, r.stdout.strip()) == (0, str(tmp_path))


def test_options_after_the_program_are_the_programs():
    r = jail("--", "echo", "--uid", "0", "--limit")
    assert (r.returncode, r.stdout) == (0, "--uid 0 --limit\n")


@pytest.mark.parametrize("args,message", [
    (["--limit", "nofile=many", "--", "true"], "expected RESOURCE=NUMBER"),
    (["--limit", "nofile=-1", "--", "true"], "expected RESOURCE=NUMBER"),
    (["--limit", "stack=1", "--", "true"], "unknown resource"),
    (["--uid", "0", "--", "true"], "--uid: expected a uid"),
    (["--uid", "4294967295", "--", "true"], "--uid: expected a uid"),
    (["--net-ns", "/nonexistent/ns", "--", "true"], "cannot open /nonexistent/ns"),
    (["--net-ns", "/etc/hostname", "--", "true"], "cannot enter /etc/hostname"),
    (["--chdir", "/nonexistent", "--", "true"], "cannot change directory to /nonexistent"),
    ([], "no program given"),
    (["--bogus"], "usage: calc-jail"),
])
def test_setup_errors_exit_125_with_a_message(args, message):
    r = jail(*args)
    assert r.returncode == 125 and message in r.stderr, r.stderr


def test_program_not_found_and_not_executable_exit_as_env_does(tmp_path):
    r = jail("--", str(tmp_path / "missing"))
    assert r.returncode == 127 and "cannot run" in r.stderr
    (tmp_path / "plain").write_text("not a program\n")
    r = jail("--", str(tmp_path / "plain"))
    assert r.returncode == 126 and "Permission denied" in r.stderr


def test_help_goes_to_stdout():
    r = jail("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: calc-jail")


# ---------------------------------------------------------------- calc-netns
def start_netns(*opts):
    mine, theirs = socket.socketpair()
    p = subprocess.Popen([str(build_exe("calc-netns")), *opts, str(theirs.fileno())], pass_fds=[theirs.fileno()],
                         stderr=subprocess.PIPE)
    theirs.close()
    mine.settimeout(10)
    ready = mine.recv(16)
    if ready != b"ready\n":
        err = p.communicate(timeout=10)[1].decode(errors="replace")
        if "cannot make a user namespace" in err:  # a chroot, or user namespaces switched off
            pytest.skip(f"the kernel refuses a user namespace here: {err.strip()}")
        pytest.fail(f"calc-netns did not start: {err}")
    return p, mine


def ask_socket(ctl, family=b"tcp4"):
    ctl.sendall(family)
    tag, fds, _, _ = socket.recv_fds(ctl, 16, 1)
    assert tag == b"s" and len(fds) == 1
    return socket.socket(fileno=fds[0])


@pytest.mark.parametrize("opts", [[], ["--map-root-user"]])
def test_netns_holds_a_namespace_with_lo_up_and_hands_out_its_sockets(opts):
    p, ctl = start_netns(*opts)
    try:
        net = f"/proc/{p.pid}/ns/net"
        assert os.readlink(net) != os.readlink("/proc/self/ns/net")
        interfaces = [l.split(":")[0].strip() for l in open(f"/proc/{p.pid}/net/dev").read().splitlines()[2:]]
        assert interfaces == ["lo"]
        with ask_socket(ctl) as srv, ask_socket(ctl) as cli:
            srv.bind(("127.0.0.1", 9999))   # the report's port: free in the namespace, whatever the host runs
            srv.listen()
            cli.settimeout(5)
            cli.connect(("127.0.0.1", 9999))  # lo is up
            assert ":270F" in open(f"/proc/{p.pid}/net/tcp").read()
        with ask_socket(ctl, b"tcp6") as s6:
            assert s6.family == socket.AF_INET6
    finally:
        ctl.close()
        assert p.wait(timeout=10) == 0   # it ends when the lab closes its end


@pytest.mark.skipif(not os.path.exists("/proc/sys/net/ipv4/tcp_child_ehash_entries"),
                    reason="this kernel has no per-namespace TCP tables (Linux 6.1+)")
def test_netns_tcp_tables_are_the_namespaces_own():
    p, ctl = start_netns()
    try:
        r = jail("--net-ns", f"/proc/{p.pid}/ns/net", "--", "cat", "/proc/sys/net/ipv4/tcp_ehash_entries")
        # positive: a table of its own; the host's shared table shows as negative
        assert r.stdout.strip() == "1024", r.stderr
    finally:
        ctl.close()
        p.wait(timeout=10)


@pytest.mark.parametrize("args", [[], ["x"], ["-1"], ["99999"], ["--map-root-user"], ["--bogus", "3"], ["1000"]])
def test_netns_usage_errors_exit_2(args):
    r = subprocess.run([str(build_exe("calc-netns")), *args], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "usage: calc-netns" in r.stderr


def test_a_sandbox_shows_its_own_labs_python():
    """The installation a sandbox shows its programs is its Lab's Python's, whatever else the
    process graded with: two Labs in one process, each sandbox binds only its own (the system's
    python3 needs no bind, it is under /usr)."""
    def lab(prefix):
        return settings.Lab(interp.Interpreter(f"{prefix}/bin/python3", "3.12.1", "CPython", interp.BY_VALUE,
                                               (prefix, "/usr")))
    a = sandbox.Sandbox(mode="root", lab=lab("/opt/calclab-py-a"))
    b = sandbox.Sandbox(mode="root", lab=lab("/opt/calclab-py-b"))
    try:
        binds = {box: {argv[i + 1] for i, w in enumerate(argv) if w == "--ro-bind"}
                 for box in (a, b) for argv in [box._bwrap(["/bin/true"])]}
    finally:
        a.close()
        b.close()
    assert "/opt/calclab-py-a" in binds[a] and "/opt/calclab-py-b" not in binds[a]
    assert "/opt/calclab-py-b" in binds[b] and "/opt/calclab-py-a" not in binds[b]
    assert sandbox.interpreter_dirs(("/usr", "/usr/lib/python3.11", "/opt/py/../py2")) == ("/opt/py2",)


def test_a_lab_is_made_once_and_says_what_it_cannot_use():
    lab = settings.Lab.create(None, grader_paths=("class", None, "class"))
    assert lab.python.path == interp.current().path and lab.flavour == lab.python.flavour
    assert lab.grader_paths == (settings.paths.ROOT, os.path.abspath("class"))
    with pytest.raises(interp.InterpreterError, match="not a Python 3"):
        settings.Lab.create("/bin/true")


def test_sandboxes_given_one_stage_share_its_copies(tmp_path):
    """The copies a program reads come from the Stage its sandbox is given (a hand-in's runs
    share one, copied once), which the sandbox's end leaves to its owner."""
    (tmp_path / "handin").mkdir()
    (tmp_path / "handin" / "server.py").write_text("print('hi')\n")
    st = stage.Stage()
    try:
        boxes = [sandbox.Sandbox(mode="root", staged=st) for _ in range(2)]
        copies = {box._stage.copy(str(tmp_path / "handin")) for box in boxes}
        for box in boxes:
            box.close()
        assert len(copies) == 1 and os.path.isfile(os.path.join(copies.pop(), "server.py"))
    finally:
        st.remove()


def test_a_labs_leave_to_run_unconfined_is_its_own(monkeypatch):
    """Where nothing confines the programs, a sandbox runs them only with its Lab's leave,
    whatever the environment says to sandboxes made without a Lab."""
    monkeypatch.setenv("CALCLAB_ISOLATION", "none")
    monkeypatch.setenv(settings.ALLOW_ENV, "1")
    lab = settings.Lab.create(allow_unconfined=False)
    assert settings.Lab.create().allow_unconfined
    with pytest.raises(sandbox.Unconfined, match="cannot confine the programs here: disabled by CALCLAB_ISOLATION"):
        sandbox.Sandbox(lab=lab).open()
    assert sandbox.refusal(lab).startswith("cannot confine the programs here")
    allowed = dataclasses.replace(lab, allow_unconfined=True)
    assert sandbox.refusal(allowed) is None
    with sandbox.Sandbox(lab=allowed) as box:
        assert box.mode is None and box.isolation.startswith("none: disabled by CALCLAB_ISOLATION=none")


def test_a_run_takes_its_copies_from_the_stage_it_is_given(tmp_path):
    """runner.play(staged=): the run's programs read their copies from the caller's Stage, which
    the run leaves for the caller's next runs."""
    from calclab_lab import paths, runner
    st = stage.Stage()
    try:
        res = runner.play("3.1", runner.templates_for("student"), workdir=str(tmp_path / "run"), timeout=10,
                          use_sniff=False, staged=st)
        assert res.passed, res.errors
        copy = st._copies[os.path.realpath(paths.STUDENT)]   # made by the run, kept
        assert os.path.isfile(os.path.join(copy, "calc_server.py"))
    finally:
        st.remove()


def test_calclabs_own_programs_need_no_leave_to_run_unconfined(tmp_path, monkeypatch):
    """Where nothing confines, a run of calclab's programs alone (how goldens and replays are
    made) runs without the Lab's leave, since nothing untrusted runs in it; a run with another
    program in it is refused."""
    from calclab_lab import paths, runner
    monkeypatch.setenv("CALCLAB_ISOLATION", "none")
    monkeypatch.delenv(settings.ALLOW_ENV, raising=False)
    lab = settings.Lab.create(allow_unconfined=False)
    res = runner.play("3.1", runner.templates_for("c"), workdir=str(tmp_path / "ours"), timeout=10, use_sniff=False,
                      lab=lab)
    assert res.passed and res.run.isolation.startswith("none: disabled by CALCLAB_ISOLATION=none"), res.errors
    server = tmp_path / "theirs" / "calc_server.py"
    server.parent.mkdir()
    server.write_bytes(open(os.path.join(paths.STUDENT, "calc_server.py"), "rb").read())
    t = runner.templates_for("c", server=f"{{py}} {server} -H {{host}} -p {{port}}")
    with pytest.raises(runner.LabError, match="not graded: cannot confine the programs here"):
        runner.play("3.1", t, workdir=str(tmp_path / "run"), timeout=10, use_sniff=False, lab=lab)


@as_root
def test_calclabs_own_programs_run_in_the_namespace_under_a_uid_without_bwrap():
    """Sandbox.ours: as root, one calc-jail exec puts calclab's program into the run's network
    namespace, with the limits and an unprivileged uid of its own; no bubblewrap."""
    with sandbox.Sandbox() as box:
        if box.mode != "root" or not box.isolated:
            pytest.skip(f"no root namespace level here ({box.isolation})")
        argv, env, cwd = box.ours([sys.executable, "-c", "import os, resource; print(os.getuid(), "
                                   "resource.getrlimit(resource.RLIMIT_NPROC)[0]); print(open('/proc/net/dev').read())"])
        assert "bwrap" not in argv and argv[0] == str(build_exe("calc-jail"))
        r = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    first, *devs = r.stdout.splitlines()
    uid, nproc = map(int, first.split())
    assert uid >= sandbox.UID_BASE and nproc == box.limits.processes
    assert [l.split(":")[0].strip() for l in devs[2:] if l.strip()] == ["lo"]   # the run's namespace alone


@as_root
def test_calclabs_program_in_a_closed_checkout_runs_as_a_students_does(tmp_path):
    """A checkout closed to others (the Gradescope bundle's /autograder is 0700): the program's
    own uid could not run calclab's executable where it lies, so it runs as a student's does,
    bwrap binding a copy; it still answers."""
    closed = tmp_path / "closed"
    (closed / "build").mkdir(parents=True)
    exe = closed / "build" / "calc-client"
    shutil.copy(build_exe("calc-client"), exe)
    with sandbox.Sandbox(expose=(str(exe),)) as box:
        if box.mode != "root" or not box.isolated:
            pytest.skip(f"no root namespace level here ({box.isolation})")
        closed.chmod(0o700)
        try:
            argv, env, cwd = box.ours([str(exe), "--local", "1 + 2"])
            assert "bwrap" in argv
            r = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=30)
        finally:
            closed.chmod(0o755)
        assert r.returncode == 0 and "Result: 3" in r.stdout, r.stdout + r.stderr


def test_die_with_parent_kills_the_program_when_its_starter_ends(tmp_path):
    """calc-jail --die-with-parent: the program is killed once the process that started calc-jail
    is gone (what bwrap's option gives the students' programs); without it the program lives on."""
    pids = {}
    for opt in ("--die-with-parent", None):
        pidfile = tmp_path / f"pid{bool(opt)}"
        # the starter ends once calc-jail has exec'd the program (its death signal is set by then)
        starter = ("import subprocess, sys, time; p = subprocess.Popen(sys.argv[1:]); end = time.time() + 10\n"
                   "while open(f'/proc/{p.pid}/comm').read().strip() != 'sleep' and time.time() < end:\n"
                   "    time.sleep(0.01)\n"
                   f"open({str(pidfile)!r}, 'w').write(str(p.pid))")
        argv = [str(build_exe("calc-jail"))] + ([opt] if opt else []) + ["--", "sleep", "30"]
        subprocess.run([sys.executable, "-c", starter] + argv, timeout=30, check=True)
        pids[opt] = int(pidfile.read_text())
    try:
        end = time.time() + 5
        while time.time() < end and os.path.exists(f"/proc/{pids['--die-with-parent']}/cmdline") \
                and open(f"/proc/{pids['--die-with-parent']}/cmdline").read():
            time.sleep(0.02)
        assert not os.path.exists(f"/proc/{pids['--die-with-parent']}/cmdline") \
            or not open(f"/proc/{pids['--die-with-parent']}/cmdline").read()
        assert open(f"/proc/{pids[None]}/cmdline").read().startswith("sleep")
    finally:
        for pid in pids.values():
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


def test_die_with_parent_goes_with_a_program_only():
    r = jail("--die-with-parent", "--kill-uid", "2000000000")
    assert r.returncode == 125 and "--kill-uid goes alone" in r.stderr
