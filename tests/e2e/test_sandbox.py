"""The lab's sandbox (docs/sandbox.md) against hostile submissions written here.

Each hostile program wraps the student-style implementation (tests/student) and first does its
mischief: read a secret of the grader's, write outside its scratch, kill what it sees, leave a
daemon, allocate past its memory limit, fork hundreds of processes, print without end, squat
the proxy's port. Each run is graded fail with a clear reason (or pass where the protocol part
is right), the secret appears in no output, nothing outside changes, nothing survives, and a
run going on at the same time stays correct. Then: gradings 8 at a time give the verdicts they
get one at a time; lab/grade works for a non-root user the test creates."""
import json
import os
import pathlib
import pwd
import shlex
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from hostile import (LAB, PY, ROOT, SECRET, STUDENT, everything, grade_forging_hand_in, hostile, limit_cases, play,
                     run_daemon, run_forker, run_hog, run_printer, run_squatter, secret_hunter, student_only,
                     with_bystander, writer)
from calclab_lab import goldens, runner, sandbox, scenarios  # noqa: E402  (hostile put lab/ on the path)
from test_lab import BROKEN, BROKEN_CASES, broken, have_c  # noqa: E402

MODE, WHY_NOT = sandbox.probe()
needs_namespaces = pytest.mark.skipif(MODE not in ("root", "rootless"),
                                      reason=f"no namespaces here ({MODE or 'none'}): {WHY_NOT}")


# ---------------------------------------------------------------- hostile submissions
@needs_namespaces
@student_only
def test_secret_of_the_grader_is_in_no_output(tmp_path, monkeypatch):
    grader = tmp_path / "grader"
    grader.mkdir()
    (grader / "secret.txt").write_text(SECRET)
    monkeypatch.setenv("CALCLAB_TEST_SECRET", SECRET)
    # the needle is made at run time: a literal, even split in two, would be folded into the
    # program's own compiled module (the sandbox compiles a hand-in's modules ahead)
    tmpl = hostile(tmp_path, "secret", secret_hunter(
        [grader / "secret.txt", ROOT / "captures" / "3.1.pcap", "/proc/1/environ"], ["/", tmp_path],
        """"-".join(["calclab", "grader", "secret", ""]).encode()"""))
    res = play("3.1", tmp_path, server=tmpl)
    out = res.procs["server"].output()
    assert "DENIED " + str(grader / "secret.txt") in out and "FOUND" not in out, out[-2000:]
    assert "DENIED " + str(ROOT / "captures" / "3.1.pcap") in out
    assert SECRET not in everything(res)
    assert res.passed, res.errors  # the protocol part is right


@needs_namespaces
@student_only
def test_writes_outside_scratch_change_nothing(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "grade.json").write_text('{"score": 0}')
    before_captures = {p.name: p.read_bytes() for p in (ROOT / "captures").glob("*.pcap")}
    targets = [out_dir / "grade.json", out_dir / "forged.json", ROOT / "captures" / "3.1.pcap",
               tmp_path / "run-3.1" / "server.log", tmp_path / "run-3.1" / "3.1.pcap",
               tmp_path / "sub-writer" / "server.py", tmp_path / "planted", pathlib.Path("/etc/calclab-planted")]
    tmpl = hostile(tmp_path, "writer", writer(targets), """
        with open("/tmp/scratch-ok", "w") as f:
            f.write("scratch is writable")
        print("SCRATCH", open("/tmp/scratch-ok").read(), os.getcwd(), flush=True)
    """)
    res = play("3.1", tmp_path, server=tmpl)
    out = res.procs["server"].output()
    assert "WROTE" not in out and out.count("REFUSED") == len(targets), out[-2000:]
    assert "SCRATCH scratch is writable /tmp" in out
    assert (out_dir / "grade.json").read_text() == '{"score": 0}' and sorted(os.listdir(out_dir)) == ["grade.json"]
    assert {p.name: p.read_bytes() for p in (ROOT / "captures").glob("*.pcap")} == before_captures
    assert not (tmp_path / "planted").exists() and not os.path.exists("/etc/calclab-planted")
    assert "calc_server.main()" in (tmp_path / "sub-writer" / "server.py").read_text()
    assert res.passed, res.errors


@needs_namespaces
@student_only
def test_killing_everything_it_sees_hurts_only_itself(tmp_path):
    tmpl = hostile(tmp_path, "killer", """
        import os, signal
        seen = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
        print("SEES", sorted(seen), flush=True)
        for pid in seen:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except OSError as e:
                    print("KILL", pid, e, flush=True)
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError as e:
            print("KILL -1", e, flush=True)
    """)
    res = with_bystander(tmp_path, lambda: play("3.2", tmp_path, server=tmpl))
    out = res.procs["server"].output()
    assert "SEES [1]" in out, out[-2000:]  # only bwrap's init of its own pid namespace
    assert res.passed, res.errors


@needs_namespaces
@student_only
def test_daemon_left_behind_does_not_survive_the_run(tmp_path):
    run_daemon(tmp_path, f"calclab_daemon_{os.getpid()}")


@needs_namespaces
@student_only
def test_memory_past_the_limit_is_a_clear_failure(tmp_path):
    res = run_hog(tmp_path)
    programs = [c for c in res.checks if c.name == "programs"]
    assert programs and {"passed": False, "role": "server", "detail": "server killed: memory limit 512 MiB"}.items() \
        <= [it for it in programs[0].failures() if "memory" in it["detail"]][0].items()


@needs_namespaces
@student_only
def test_hundreds_of_processes_stop_at_the_process_limit(tmp_path):
    run_forker(tmp_path, f"calclab_forker_{os.getpid()}")


@needs_namespaces
@student_only
def test_endless_output_is_cut_and_costs_the_grader_nothing(tmp_path):
    res = run_printer(tmp_path)
    kept = sum(len(l) + 1 for _, l in res.procs["server"].lines)
    assert kept < 256 * 1024 + 70000


@needs_namespaces
@student_only
@pytest.mark.parametrize("what,body,limits,reason", limit_cases("/tmp/big"))
def test_cpu_file_size_and_open_files_limits(tmp_path, what, body, limits, reason):
    res = play("3.1", tmp_path, server=hostile(tmp_path, what, body), limits=limits)
    assert not res.passed and reason in res.errors, res.errors


@needs_namespaces
@student_only
def test_a_run_past_its_wall_clock_is_stopped(tmp_path):
    tmpl = hostile(tmp_path, "sleeper", """
        import calc_server, time
        def handle(conn, addr):
            time.sleep(300)      # accepts, never answers
        calc_server.handle = handle
    """)
    t0 = time.time()
    res = play("3.1", tmp_path, server=tmpl, limits=sandbox.Limits(wall_seconds=3))
    assert time.time() - t0 < 9  # a client alone would wait 10 s
    # the program blamed for it: the one that kept the run waiting
    assert not res.passed and "server: scenario killed: wall-clock limit 3 s" in res.errors, res.errors


@needs_namespaces
@student_only
def test_squatting_the_proxy_port_affects_only_its_own_run(tmp_path):
    run_squatter(tmp_path)


@needs_namespaces
@student_only
def test_a_hand_in_cannot_change_its_own_grade(tmp_path):
    grade_forging_hand_in(tmp_path, tmp_path / "grades")


# ---------------------------------------------------------------- parallel gradings
def _verdict(res):
    return res.passed, sorted(c.name for c in res.checks if not c.passed), \
        sorted(e.split(":")[0] for e in res.errors)


@needs_namespaces
def test_eight_at_a_time_give_the_verdicts_of_one_at_a_time(tmp_path):
    jobs = [("student", n, {}) for n in ("3.1", "3.2", "3.3")]
    if have_c():
        jobs += [("c", n, {}) for n in ("3.1", "3.2", "3.3")]
    for what, role, scn, _check in BROKEN_CASES:
        prog = broken(tmp_path, what)
        tmpl = {"server": f"{PY} {prog} -H {{host}} -p {{port}}",
                "proxy": f"{PY} {prog} -ph {{host}} -pp {{port}} -sh {{server_host}} -sp {{server_port}}"}[role]
        jobs.append(("student", scn, {role: tmpl}))
    assert len(jobs) >= 8 and {c[0] for c in BROKEN_CASES} == set(BROKEN)

    def grade(i, job, tag):
        impl, scn, roles = job
        t = runner.templates_for(impl, **roles)
        # the golden of the flavour the play is judged in: the recorded one by value, else made
        # (the student-style programs run by a Python that pickles enum members by name)
        flavour = runner.flavour_for(impl, **roles)
        golden = str(ROOT / "captures" / f"{scn}.pcap") if flavour == "value" else \
            goldens.golden_path(scenarios.builtin(scn), flavour=flavour)
        res = runner.play(scn, t, workdir=str(tmp_path / f"{tag}-{i}"), timeout=10, use_sniff=have_c(),
                          golden=golden)
        return _verdict(res)

    t0 = time.time()
    alone = [grade(i, j, "alone") for i, j in enumerate(jobs)]
    t_alone = time.time() - t0
    assert sum(v[0] for v in alone) == len(jobs) - len(BROKEN_CASES), alone
    for rep in range(3):
        t0 = time.time()
        with ThreadPoolExecutor(8) as ex:
            together = list(ex.map(lambda ij: grade(ij[0], ij[1], f"par{rep}"), enumerate(jobs)))
        print(f"{len(jobs)} gradings: one at a time {t_alone:.1f} s, 8 at a time {time.time() - t0:.1f} s")
        assert together == alone


# ---------------------------------------------------------------- rootless
def _test_user():
    name = "calclab-sbx"
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
        return pwd.getpwnam(name)


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a test user needs root")
def test_lab_grade_works_for_a_non_root_user():
    if not shutil.which("useradd"):
        pytest.skip("no useradd on this system")
    user = _test_user()
    as_user = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
    probe = subprocess.run(as_user + ["unshare", "--user", "--map-root-user", "--net", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"the kernel refuses unprivileged user namespaces: {probe.stderr.strip()}")
    readable = subprocess.run(as_user + ["test", "-r", str(LAB / "calclab_lab" / "runner.py")])
    assert readable.returncode == 0, f"{ROOT} is not readable by other users"
    out = pathlib.Path(tempfile.mkdtemp(prefix="calclab-rootless-"))
    try:
        os.chown(out, user.pw_uid, user.pw_gid)
        impl = ["--impl", "c"] if have_c() else ["--impl", "student", "--no-sniff"]
        r = subprocess.run(as_user + [PY, str(LAB / "grade"), *impl, "--out", str(out / "g"), "--format", "json"],
                           capture_output=True, text=True, timeout=300, cwd="/",
                           env={"PATH": "/usr/bin:/bin", "HOME": str(out),
                                "CALC_BUILD_DIR": os.environ.get("CALC_BUILD_DIR", str(ROOT / "build"))})
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
        g = json.loads((out / "g" / "grade.json").read_text())
        assert g["score"] == g["max_score"]
        for s in g["scenarios"]:
            assert s["isolation"].startswith("netns (rootless)"), s["isolation"]
            assert s["ports"] == {"proxy": 9998, "server": 9999}
            if have_c():
                assert s["calc_sniff"]["status"] == "pass"  # live capture in the namespace, no sudo
    finally:
        shutil.rmtree(out, ignore_errors=True)


# ---------------------------------------------------------------- fallback
def test_a_namespace_that_cannot_mount_proc_is_not_claimed(tmp_path):
    """As in a container that allows user namespaces but masks part of /proc (Docker binds
    /dev/null over some of its files): bwrap cannot mount a fresh /proc there. The probe plays
    the runs' whole set-up, so it refuses the rootless sandbox instead of claiming it and failing
    every run, and lab/grade, not root, refuses to grade."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("unshare"):
        pytest.skip("needs root, useradd and unshare to make a user and a mount namespace")
    user = _test_user()
    as_user = f"setpriv --reuid={user.pw_uid} --regid={user.pw_gid} --clear-groups --"
    env = {"PATH": "/usr/bin:/bin", "HOME": "/", "CALC_BUILD_DIR": os.environ.get("CALC_BUILD_DIR", str(ROOT / "build"))}

    def masked(cmd):
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               # another proc mount fully visible in the namespace (a chroot's
                               # bind of /proc, say) would let the kernel allow a fresh /proc
                               # after all: only the masked one is left
                               "awk '$3 == \"proc\" && $2 != \"/proc\" {print $2}' /proc/self/mounts"
                               " | sort -r | while read -r m; do umount -l \"$m\"; done; "
                               f"mount --bind /dev/null /proc/uptime && exec {as_user} {cmd}"],
                              capture_output=True, text=True, timeout=120, env=env, cwd="/")
    bare = masked("bwrap --unshare-user --unshare-pid --ro-bind / / true")
    if bare.returncode != 0:
        pytest.skip(f"the kernel refuses unprivileged user namespaces: {bare.stderr.strip()}")
    code = f"import json, sys; sys.path.insert(0, {str(LAB)!r}); from calclab_lab import sandbox; " \
           "print(json.dumps(sandbox.probe()))"
    r = masked(f"{PY} -c {shlex.quote(code)}")
    assert r.returncode == 0, r.stderr
    mode, why = json.loads(r.stdout)
    assert mode is None and why.startswith("cannot create namespaces (rootless): bwrap: Can't mount proc"), why
    assert why.endswith("not root, so no switch to another uid either")
    g = masked(f"{PY} {LAB / 'grade'} --impl student --scenarios 3.1 --no-sniff --out {tmp_path / 'g'}")
    assert g.returncode == 2 and g.stdout.startswith("status: not graded: cannot confine the programs here: "
                                                     "cannot create namespaces (rootless): bwrap: Can't mount proc"), \
        g.stdout + g.stderr


@student_only
def test_without_any_confinement_the_lab_refuses_unless_allowed(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CALCLAB_ALLOW_UNCONFINED"}
    env["CALCLAB_ISOLATION"] = "none"
    grade = [PY, str(LAB / "grade"), "--impl", "student", "--scenarios", "3.1", "--no-sniff", "--format", "json"]
    r = subprocess.run(grade + ["--out", str(tmp_path / "refused")], capture_output=True, text=True, timeout=120,
                       env=env, cwd=ROOT)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr
    assert r.stdout.startswith("status: not graded: cannot confine the programs here: disabled by "
                               "CALCLAB_ISOLATION=none; --allow-unconfined runs them unconfined"), r.stdout
    assert not (tmp_path / "refused" / "grade.json").exists()
    # a hand-in: its grades.json says so, with the class's maximum, for the platforms to show
    hand_in = tmp_path / "bob"
    hand_in.mkdir()
    shutil.copy(STUDENT / "calc_server.py", hand_in / "server.py")
    r = subprocess.run([PY, str(LAB / "grade"), str(hand_in), "--out", str(tmp_path / "h")], capture_output=True,
                       text=True, timeout=120, env=env, cwd=ROOT)
    assert r.returncode == 2 and "status: not graded: cannot confine" in r.stdout, r.stdout + r.stderr
    e = json.loads((tmp_path / "h" / "grades.json").read_text())["submissions"][0]
    assert e["status"].startswith("not graded: cannot confine") and e["score"] == 0 < e["max_score"], e
    # allowed, the hand-in is graded, unconfined
    for f in ("api.py", "calculator.py"):
        shutil.copy(STUDENT / f, hand_in / f)
    r = subprocess.run([PY, str(LAB / "grade"), str(hand_in), "--out", str(tmp_path / "h2"), "--scenarios", "3.1", "--roles", "server",
                        "--allow-unconfined"], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    e = json.loads((tmp_path / "h2" / "grades.json").read_text())["submissions"][0]
    assert r.returncode == 0 and e["status"] == "graded" and e["score"] == e["max_score"], r.stdout + r.stderr
    assert e["scenarios"][0]["isolation"].startswith("none: disabled by CALCLAB_ISOLATION=none")
    # allowed: graded, and every report says the programs ran unconfined
    r = subprocess.run(grade + ["--out", str(tmp_path / "g"), "--allow-unconfined"], capture_output=True, text=True,
                       timeout=120, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert "isolation: none (disabled by CALCLAB_ISOLATION=none)" in r.stderr and "UNCONFINED" in r.stderr
    s = json.loads((tmp_path / "g" / "grade.json").read_text())["scenarios"][0]
    assert s["isolation"] == "none: disabled by CALCLAB_ISOLATION=none; rlimits only, the programs run unconfined"
    assert s["ports"]["proxy"] != 9998
