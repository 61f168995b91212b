"""A request calclab cannot decode but the course's code accepts is calclab's failure: the hand-in
whose client sends it is a lab error (no points given or taken, exit 2); a request the course's
code refuses too stays the client's fault.

The hand-ins' clients are the course's (tests/student's calc_client.py), made to send another
tree: one nested 250 deep (calclab's decoder stops at 200; tests/student's server answers it,
(250, []), without steps: with them its answer would not fit a message), and one pickling
os.system (the course's server refuses it, and calclab's runs nothing)."""
import os
import pickle
import socket
import subprocess
import sys

from calcproc import STUDENT
from test_class import PY, grade, grades, make_handin

CLIENT_DEEP = """
import sys
import calc_client, calculator
def deep(text):
    e = calculator.Constant(1)
    for _ in range(249):
        e = calculator.BinaryExpr(e, calculator.ADD, calculator.Constant(1))
    return e
calculator.parse = deep
sys.argv += ["--no-steps", "--example", "1"]
sys.exit(calc_client.main())
"""

CLIENT_OS_SYSTEM = """
import os, sys
import calc_client, calculator
class Evil:
    def __reduce__(self):
        return (os.system, ("echo the client ran this on the server",))
calculator.parse = lambda text: Evil()
sys.argv += ["--example", "1"]
sys.exit(calc_client.main())
"""


def test_the_course_s_server_answers_the_deep_request(tmp_path):
    """The premise: tests/student's server (the course's code) answers the deep client's request
    normally, and refuses the os.system one."""
    port = 19000 + os.getpid() % 900
    srv = subprocess.Popen([PY, str(STUDENT / "calc_server.py"), "-p", str(port)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        assert srv.stdout.readline().startswith("Listening")
        sys.path.insert(0, str(STUDENT))
        try:
            import api
            import calculator
        finally:
            sys.path.pop(0)

        def ask(payload):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(api.pack_message(api.Header(True, steps=False), payload))
                data = api.recv_message(s, first_wait=30)
            h = api.Header.unpack(data)
            return h.status, api.loads(data[api.HEADER_LEN:h.length])
        e = calculator.Constant(1)
        for _ in range(249):
            e = calculator.BinaryExpr(e, calculator.ADD, calculator.Constant(1))
        assert ask(pickle.dumps(e)) == (200, (250, []))
        status, exc = ask(b"\x80\x04\x95\x1b\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x8c\x06system\x93\x8c\x02id\x85R.")
        assert status == 400 and "could not be deserialized" in str(exc)
    finally:
        srv.kill()
        srv.wait()


def test_a_request_only_calclab_refuses_is_a_lab_error(tmp_path):
    top = make_handin(str(tmp_path / "deep"), server=False, proxy=False, client=CLIENT_DEEP)
    out = tmp_path / "out"
    r = grade(top, "--out", out, "--roles", "client", "--scenarios", "3.1")
    assert r.returncode == 2, r.stdout[-3000:] + r.stderr[-3000:]
    e = grades(out)["deep"]
    assert e["status"].startswith("lab error: calclab cannot decode a request the course's code accepts: "
                                  "Expression too deeply nested (limit 200 levels)"), e["status"]
    assert "nested 249 deep" in e["status"]
    assert e["score"] is None and e["roles"]["client"]["score"] is None and e["roles"]["client"]["max_score"] > 0
    assert "no points given or taken" in (out / "deep" / "feedback.txt").read_text()


def test_a_request_the_course_refuses_too_stays_the_client_s(tmp_path):
    top = make_handin(str(tmp_path / "evil"), server=False, proxy=False, client=CLIENT_OS_SYSTEM)
    out = tmp_path / "out"
    r = grade(top, "--out", out, "--roles", "client", "--scenarios", "3.1")
    assert r.returncode != 2, r.stdout[-3000:] + r.stderr[-3000:]
    e = grades(out)["evil"]
    assert e["status"] == "graded", e["status"]
    client = e["roles"]["client"]
    assert 0 <= client["score"] < client["max_score"], client
