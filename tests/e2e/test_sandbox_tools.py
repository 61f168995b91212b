"""calc-jail, the sandbox's step into a run's namespaces and out of root: its limits, the uid
and capabilities a program is left with, the namespaces it enters, and its errors."""
import os
import subprocess
import sys
import time

import pytest

from conftest import build_exe

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
