"""lab/grade on students' hand-ins: one submission (a folder or a .zip), and a class folder.

The hand-ins are built here from the student-style implementation (tests/student), renamed to
the skeleton's server.py / proxy.py / client.py, in the spellings students hand in."""
import json
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(ROOT, "lab")
STUDENT = os.path.join(ROOT, "tests", "student")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, LAB)
from calclab_lab import submission  # noqa: E402

# The skeleton's client hard-codes the expression it sends; these do the same with the
# student-style client's code.
CLIENT_E1 = """
import sys
import calc_client
sys.argv += ["--example", "1"]
sys.exit(calc_client.main())
"""


def read(name):
    with open(os.path.join(STUDENT, name), "rb") as f:
        return f.read()


def make_handin(top, server=True, proxy=True, client=CLIENT_E1, crlf=False, upper=False):
    """A hand-in folder: the course's api.py and calculator.py next to the student's files."""
    os.makedirs(top, exist_ok=True)
    files = {"api.py": read("api.py"), "calculator.py": read("calculator.py")}
    if server:
        files["server.py"] = read("calc_server.py")
    if proxy:
        files["proxy.py"] = read("calc_proxy.py")
    if client:
        files["calc_client.py"] = read("calc_client.py")
        files["client.py"] = client.encode() if isinstance(client, str) else client
    for name, data in files.items():
        if crlf:
            data = data.replace(b"\n", b"\r\n")
        if upper and name in ("server.py", "proxy.py", "client.py"):
            name = name[0].upper() + name[1:]
        with open(os.path.join(top, name), "wb") as f:
            f.write(data)
    return top


def zip_folder(folder, zpath, prefix=""):
    with zipfile.ZipFile(zpath, "w") as z:
        for d, _, files in os.walk(folder):
            for n in files:
                p = os.path.join(d, n)
                z.write(p, os.path.join(prefix, os.path.relpath(p, folder)))
    return zpath


def grade(*args, timeout=600):
    return subprocess.run([PY, os.path.join(LAB, "grade"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def grades(out):
    with open(os.path.join(out, "grades.json")) as f:
        return {e["id"]: e for e in json.load(f)["submissions"]}


def full_marks(e, role):
    v = e["roles"][role]
    return v["max_score"] > 0 and v["score"] == v["max_score"]


# ---------------------------------------------------------------- finding and copying role files
@pytest.mark.build_independent
def test_role_files_found_case_insensitive_nested_ignoring_ide_folders(tmp_path):
    top = tmp_path / "sub"
    make_handin(str(top / "CN_Ex2" / "src"), upper=True)
    for ide in (".idea", "__pycache__", "__MACOSX", "venv"):
        (top / ide).mkdir()
        (top / ide / "server.py").write_text("raise SystemExit('not this one')\n")
    found = submission.find_role_files(str(top))
    assert sorted(found) == ["client", "proxy", "server"]
    assert all(os.sep + os.path.join("CN_Ex2", "src") + os.sep in p for p in found.values()), found
    too_deep = tmp_path / "deep"
    make_handin(str(too_deep / "a" / "b" / "c" / "d"))
    assert submission.find_role_files(str(too_deep)) == {}


@pytest.mark.build_independent
def test_zip_extraction_refuses_traversal_and_links(tmp_path):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../../escaped.py", "x = 1\n")
        zf.writestr("/abs.py", "x = 1\n")
        zf.writestr("ok/server.py", "print('hi')\n")
        link = zipfile.ZipInfo("ok/link.py")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    sub = submission.Submission(str(z), str(tmp_path / "work"))
    assert sorted(sub.skipped) == ["../../escaped.py", "/abs.py", "ok/link.py"]
    assert not (tmp_path / "escaped.py").exists() and not (tmp_path / "work" / "escaped.py").exists()
    assert list(sub.files) == ["server"]


@pytest.mark.build_independent
def test_zip_bomb_is_refused(tmp_path):
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("server.py", b"#" * (submission.MAX_BYTES + 1))
    with pytest.raises(submission.SubmissionError, match="MiB"):
        submission.Submission(str(z), str(tmp_path / "work"))


@pytest.mark.build_independent
def test_syntax_of_a_newer_python_is_reported_not_run(tmp_path):
    top = make_handin(str(tmp_path / "s"))
    with open(os.path.join(top, "server.py"), "a") as f:
        f.write('\ntype Point = tuple[int, int]\nprint(f"{"nested"}")\n')   # Python 3.12 only
    sub = submission.Submission(top, str(tmp_path / "work"))
    assert "line" in sub.errors["server"] and "proxy" not in sub.errors


# ---------------------------------------------------------------- one submission
def test_one_handin_graded_per_role(tmp_path):
    """The student-style server and proxy, graded while calclab's client plays the client: full
    points on both roles, and the same grades.json shape as a class of one."""
    top = make_handin(str(tmp_path / "alice"))
    out = tmp_path / "out"
    r = grade(top, "--out", out, "--roles", "server,proxy")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    e = grades(out)["alice"]
    assert e["status"] == "graded"
    assert sorted(e["roles"]) == ["proxy", "server"]
    assert full_marks(e, "server") and full_marks(e, "proxy"), e["roles"]
    assert e["score"] == e["max_score"] == e["roles"]["server"]["max_score"] + e["roles"]["proxy"]["max_score"]
    assert {s["scenario"] for s in e["scenarios"]} == {"3.1", "3.2", "3.3"}
    assert all(c["role"] in ("server", "proxy") for s in e["scenarios"] for c in s["checks"])
    with open(out / "grades.csv") as f:
        head = f.readline().strip().split(",")
    assert head[:7] == ["submission", "score", "max_score", "server", "proxy", "client", "status"]
    for name in ("index.html", "feedback.txt", "3.2/3.2.pcap", "3.2/server.log", "3.2/proxy.log",
                 "3.2/client-1.txt"):
        assert (out / "alice" / name).exists(), name
    assert (out / "index.html").exists()


def test_zipped_nested_crlf_handin_runs(tmp_path):
    folder = make_handin(str(tmp_path / "src"), crlf=True, upper=True)
    z = zip_folder(folder, str(tmp_path / "bob.zip"), prefix="Assignment2/bob")
    out = tmp_path / "out"
    r = grade(z, "--out", out, "--roles", "server,proxy", "--scenarios", "3.2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    e = grades(out)["bob"]
    assert e["files"]["server"] == os.path.join("Assignment2", "bob", "Server.py")
    assert full_marks(e, "server") and full_marks(e, "proxy"), e["roles"]


def test_client_requests_are_reported(tmp_path):
    top = make_handin(str(tmp_path / "carol"))
    out = tmp_path / "out"
    grade(top, "--out", out, "--roles", "client", "--scenarios", "3.1")
    e = grades(out)["carol"]
    sent = e["scenarios"][0]["client_requests"]
    assert [len(r["expressions"]) for r in sent] == [1, 1, 1]
    assert all(r["expressions"][0].startswith("(sin(max(2") for r in sent)
