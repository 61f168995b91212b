#!/usr/bin/env python3
"""The Docker trial of docs/platforms.md, repeated: Gradescope's way of running an autograder.

A Debian 12 image made with `debootstrap --variant=minbase bookworm` (no Python, no compiler),
the Gradescope bundle of this checkout unpacked in /autograder/source and its setup.sh run there
(apt, one build), then run_autograder for each hand-in below, as root in a container run as Docker
runs one by default: Docker's default seccomp profile and capabilities, not privileged. There
the lab cannot make namespaces, so it grades in uid mode (docs/sandbox.md); what must hold:

  good      the student-style hand-in: full marks, `isolation: uid (no namespaces)`
  broken    its proxy never caches: below full marks, the cache check named
  forger    a daemon rewrites results.json to 1000 and the grader's source, 100 times a second:
            full marks all the same, results.json unchanged 2 s after run_autograder, source intact
  secret    reads a root-only 0600 file and the bundle's config: neither reaches results or logs
  killer    kill(-1) and kills every pid it sees: graded as the good one
  forks     forks 300 processes: the process limit (64) named, none left
and after every hand-in: no process of the lab's uids left in the container.

    tests/docker/gradescope_trial.py [--image TAG] [--keep]
    tests/docker/gradescope_trial.py --local

--local plays the same hand-ins and checks on this machine instead, in a folder laid out as
/autograder (CALCLAB_AUTOGRADER_ROOT), run_autograder run as root holding only Docker's default
capabilities (setpriv --bounding-set): no image, no engine, not Docker's seccomp profile.

Exit status: 0 all held, 1 something did not (said), 77 skipped: no Docker engine reachable, or
no debootstrap to make the image (the reason is printed)."""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "lab"))
SKIP = 77
AG = pathlib.PurePosixPath("/autograder")
UID_MODE_BASE = 2_000_000_000   # lab/calclab_lab/sandbox.py
SECRET = "calclab-trial-secret-" + os.urandom(8).hex()


def sh(*argv, check=True, timeout=3600, **kw):
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))[:200]}: exit {r.returncode}: {(r.stderr or r.stdout)[-2000:]}")
    return r


def why_skip():
    """Why the trial cannot run here, or None."""
    if not shutil.which("docker"):
        return "no docker client (Debian: apt-get install docker.io)"
    r = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0 or not r.stdout.strip():
        first = (r.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"no Docker engine reachable ({first})"
    if not shutil.which("debootstrap"):
        return "debootstrap not installed, which makes the minbase bookworm image (apt-get install debootstrap)"
    if os.geteuid() != 0:
        return "debootstrap needs root"
    return None


def image(tag, work):
    if sh("docker", "image", "inspect", tag, check=False).returncode == 0:
        return tag
    rootfs = work / "rootfs"
    print(f"trial: debootstrap --variant=minbase bookworm {rootfs} (minutes)", flush=True)
    sh("debootstrap", "--variant=minbase", "bookworm", rootfs, "http://deb.debian.org/debian")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    sh("docker", "import", "-", tag, stdin=tar.stdout)
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)
    return tag


def unpack(zip_path, dest):
    """As Gradescope unzips: files with their modes (zipfile alone drops the executable bits)."""
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            z.extract(info, dest)
            mode = info.external_attr >> 16
            if mode:
                os.chmod(dest / info.filename, mode & 0o777)


# the capabilities Docker gives a container without --cap-add or --privileged
DOCKER_CAPS = ("-all,+chown,+dac_override,+fowner,+fsetid,+kill,+setgid,+setuid,+setpcap,+net_bind_service,"
               "+net_raw,+sys_chroot,+mknod,+audit_write,+setfcap")


class Local:
    """The container's part played here: /autograder is a folder of this machine, run_autograder
    runs with Docker's default capabilities only."""

    def __init__(self, work):
        self.name = "local"
        self.root = work / "autograder"
        self.secret = str(work / "calclab-secret")

    def _path(self, arg):
        return str(arg).replace(str(AG), str(self.root))

    def exec(self, *argv, check=True, timeout=3600):
        argv = [self._path(a) for a in argv]
        env = {k: v for k, v in os.environ.items() if k not in ("CALC_BUILD_DIR", "CALCLAB_BUILD", "CALCLAB_ISOLATION",
                                                                "CALCLAB_ALLOW_UNCONFINED")}
        env["CALCLAB_AUTOGRADER_ROOT"] = str(self.root)
        if argv[0].endswith("/run_autograder"):
            argv = ["setpriv", "--bounding-set", DOCKER_CAPS, "--inh-caps", "-all", "--"] + argv
        return sh(*argv, check=check, timeout=timeout, env=env)

    def put(self, src, dest):
        shutil.copytree(src, self._path(dest), symlinks=True, dirs_exist_ok=True)

    def read(self, path):
        with open(self._path(path)) as f:
            return f.read()

    def remove(self):
        pass

    def left(self):
        """Processes of the lab's uids whose block no live run holds: this machine's other
        gradings (other engineers' tests) hold theirs and are none of the trial's."""
        import fcntl
        from calclab_lab import sandbox
        n = 0
        for pid in os.listdir("/proc"):
            try:
                st = open(f"/proc/{pid}/status").read()
            except OSError:
                continue
            uid = int(st.split("Uid:")[1].split()[0])
            if uid < UID_MODE_BASE or "State:\tZ" in st:
                continue
            lock = os.path.join(sandbox._lock_dir(), str((uid - UID_MODE_BASE) // sandbox.UIDS_PER_RUN))
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                n += 1
            except BlockingIOError:
                pass
            finally:
                os.close(fd)
        return n


class Container:
    secret = "/root/calclab-secret"

    def __init__(self, tag):
        # Docker's defaults: its seccomp profile, its capability set, not privileged
        self.name = f"calclab-trial-{os.getpid()}"
        sh("docker", "run", "-d", "--name", self.name, tag, "sleep", "infinity")

    def exec(self, *argv, check=True, timeout=3600):
        return sh("docker", "exec", self.name, *argv, check=check, timeout=timeout)

    def put(self, src, dest):
        sh("docker", "cp", f"{src}/.", f"{self.name}:{dest}")

    def read(self, path):
        return self.exec("cat", path).stdout

    def left(self):
        return int(self.exec("python3", "-c", LEFT).stdout.strip())

    def remove(self):
        sh("docker", "rm", "-f", self.name, check=False)


LEFT = (f"import os\nn = 0\nfor p in os.listdir('/proc'):\n    try:\n        st = open(f'/proc/{{p}}/status').read()\n"
        f"    except OSError:\n        continue\n    uid = int(st.split('Uid:')[1].split()[0])\n"
        f"    n += uid >= {UID_MODE_BASE} and 'State:\\tZ' not in st\nprint(n)\n")


def hand_ins(work, secret):
    """name -> a hand-in folder."""
    from test_platforms import forging_handin, handin
    out = {"good": handin(work / "good"), "broken": handin(work / "broken", broken=True),
           "forger": forging_handin(work / "forger", pathlib.Path(AG), "calclab_trial_forger")}
    for name, body in (
            ("secret", f"""
                for path in ["{secret}", "{AG}/source/lab/gradescope/config.json", "{AG}/results"]:
                    try:
                        print("READ", path, open(path).read()[:300], flush=True)
                    except OSError as e:
                        print("DENIED", path, e, flush=True)
             """),
            ("killer", """
                import os, signal
                for p in os.listdir("/proc"):
                    if p.isdigit() and int(p) != os.getpid():
                        try:
                            os.kill(int(p), signal.SIGKILL)
                        except OSError:
                            pass
                try:
                    os.kill(-1, signal.SIGKILL)
                except OSError:
                    pass
             """),
            ("forks", """
                import os
                for i in range(300):
                    if os.fork() == 0:
                        os.execv("/usr/bin/python3", ["python3", "-c", "import time; time.sleep(300)"])
             """)):
        d = handin(work / name)
        server = pathlib.Path(d) / "server.py"
        server.write_text(textwrap.dedent(body) + "\n" + server.read_text())
        out[name] = d
    return out


def trial(tag, work, keep, local=False):
    zip_path = work / "autograder.zip"
    sh(sys.executable, ROOT / "lab" / "gradescope-bundle", "--out", zip_path)
    src = work / "source"
    unpack(zip_path, src)
    c = Local(work) if local else Container(image(tag, work))
    failures = []
    try:
        c.exec("mkdir", "-p", f"{AG}/source", f"{AG}/submission", f"{AG}/results")
        c.put(src, f"{AG}/source")
        c.exec("cp", f"{AG}/source/run_autograder", f"{AG}/run_autograder")
        t0 = time.time()
        c.exec("bash", f"{AG}/source/setup.sh", timeout=3600)
        print(f"trial: setup.sh {time.time() - t0:.0f} s", flush=True)
        c.exec("sh", "-c", f"echo {SECRET} > {c.secret} && chmod 600 {c.secret}")
        source_sum = c.exec("sha256sum", f"{AG}/source/lab/grade").stdout
        full = None
        for name, folder in hand_ins(work, c.secret).items():
            c.exec("sh", "-c", f"rm -rf {AG}/submission && mkdir {AG}/submission")
            c.put(folder, f"{AG}/submission")
            t0 = time.time()
            run = c.exec(f"{AG}/run_autograder", timeout=900)
            took = time.time() - t0
            res = json.loads(c.read(f"{AG}/results/results.json"))
            top = sum(t.get("max_score", 0) for t in res["tests"])
            time.sleep(2)
            again = json.loads(c.read(f"{AG}/results/results.json"))
            left = c.left()
            logs = run.stdout + json.dumps(res) + c.exec("sh", "-c", f"cat {AG}/calclab-out/*/*/*.log", check=False).stdout
            said = [line for line in res["output"].splitlines() if "isolation" in line][:1]
            print(f"trial: {name:<7} {res['score']:g}/{top:g} in {took:.0f} s, {left} left, {said}", flush=True)
            bad = []
            if again != res:
                bad.append("results.json changed after run_autograder")
            if left:
                bad.append(f"{left} processes of the lab's uids left")
            if not 0 <= res["score"] <= top:
                bad.append(f"score {res['score']} outside 0..{top}")
            if "uid (no namespaces)" not in res["output"]:
                bad.append("not graded in uid mode")
            if name == "good":
                full = top
                if res["score"] != top:
                    bad.append("the good hand-in lost points")
            elif name in ("forger", "killer", "secret") and res["score"] != full:
                bad.append(f"{res['score']:g} where the good hand-in got {full:g}")
            elif name == "broken" and not res["score"] < full:
                bad.append("the broken proxy got full marks")
            elif name == "forks" and "process limit 64" not in json.dumps(res):
                bad.append("the process limit is not named")
            if SECRET in logs or '"role_weights"' in logs.replace(run.stdout, ""):
                bad.append("the secret or the bundle's config reached the results or logs")
            if c.exec("sha256sum", f"{AG}/source/lab/grade").stdout != source_sum:
                bad.append("the grader's source changed")
            failures += [f"{name}: {b}" for b in bad]
    finally:
        if keep:
            print(f"trial: container {c.name} kept")
        else:
            c.remove()
    return failures


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default="calclab-trial:bookworm-minbase",
                    help="the image (made with debootstrap when it does not exist)")
    ap.add_argument("--keep", action="store_true", help="leave the container for a look")
    ap.add_argument("--local", action="store_true",
                    help="play the hand-ins here, as root with Docker's default capabilities, not in a container")
    a = ap.parse_args(argv)
    why = None if a.local else why_skip()
    if a.local and (os.geteuid() != 0 or not shutil.which("setpriv")):
        why = "--local needs root and setpriv (util-linux)"
    if why:
        print(f"trial: skipped: {why}")
        return SKIP
    work = pathlib.Path(tempfile.mkdtemp(prefix="calclab-trial-"))
    if a.local:
        work.chmod(0o755)   # what protects the secret and /autograder is their own modes, as in the container
    try:
        failures = trial(a.image, work, a.keep, a.local)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for f in failures:
        print(f"trial: FAILED: {f}")
    print("trial: " + ("every case held" if not failures else f"{len(failures)} failure(s)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
