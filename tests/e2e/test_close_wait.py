"""The grader's holds on the client side of a connection (docs/grades.md, "Races"): calc-client
--close-wait, calc-proxy --upstream-close-wait and libcalc-close-wait.so give the other side a
while to close first, so that a server that closes right after its answer sends the first FIN
every time, while one that waits for its client's FIN, as the reference's does, still gets it.

The servers here are threads of the test: one closes as soon as it has answered, the other
waits for its client's FIN; each says which FIN came first as it saw it."""
import os
import socket
import subprocess
import sys
import threading
import time

from conftest import REPO, build_dir
from calcproc import exe, free_port

sys.path.insert(0, str(REPO / "tests" / "student"))
import api  # noqa: E402
import calc_server  # noqa: E402

HOLD_MS = 2000       # long enough that no scheduling delay of the test's server reaches it
FAST = 1.5           # seconds: a run that ended on the server's FIN, not on the hold


class Server:
    """Answers each connection with the reference's answer; `closes_first`: closes right after,
    else waits for the client's FIN first.  `fin_seen[i]`: connection i's client had sent its
    FIN when the server closed."""

    def __init__(self, closes_first):
        self.closes_first = closes_first
        self._fin_seen = []
        self._recorded = threading.Condition()
        self._accepted = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._recorded:
                self._accepted += 1
            data = api.recv_message(conn)
            if data:
                conn.sendall(calc_server.process(data))
            if self.closes_first:
                conn.setblocking(False)
                try:
                    seen = conn.recv(1) == b""
                except BlockingIOError:
                    seen = False
            else:
                conn.settimeout(30)
                seen = conn.recv(1) == b""
            conn.close()
            with self._recorded:
                self._fin_seen.append(seen)
                self._recorded.notify_all()

    @property
    def fin_seen(self):
        """What the server saw so far, once its thread has recorded every connection accepted:
        the client can exit before the server's thread has read its FIN."""
        with self._recorded:
            self._recorded.wait_for(lambda: self._pending() == 0, timeout=10)
            return list(self._fin_seen)

    def _pending(self):
        return self._accepted - len(self._fin_seen)

    def close(self):
        self.sock.close()


def timed(args, **kw):
    t0 = time.monotonic()
    r = subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)
    return r, time.monotonic() - t0


def test_calc_client_close_wait():
    for closes_first in (False, True):
        srv = Server(closes_first)
        try:
            r, took = timed([exe("calc-client"), "-p", str(srv.port), "--close-wait", str(HOLD_MS), "1 + 2"])
            assert r.returncode == 0 and "Result: 3" in r.stdout, r.stdout + r.stderr
            if closes_first:
                assert took < FAST and srv.fin_seen == [False], (took, srv.fin_seen)  # the server's FIN ended the wait
            else:
                assert took >= HOLD_MS / 1000 and srv.fin_seen == [True], (took, srv.fin_seen)
            # without the option, the reference client's behaviour: it closes at once
            r, took = timed([exe("calc-client"), "-p", str(srv.port), "1 + 2"])
            assert r.returncode == 0 and took < FAST
        finally:
            srv.close()
    r = subprocess.run([exe("calc-client"), "--close-wait", "-1", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and "--close-wait" in r.stderr


def test_calc_proxy_upstream_close_wait(procs):  # noqa: F811
    for closes_first in (False, True):
        srv = Server(closes_first)
        try:
            _, pport = procs.proxy(srv.port, "--upstream-close-wait", str(HOLD_MS))
            r, took = timed([exe("calc-client"), "-p", str(pport), "1 + 2"])
            assert r.returncode == 0 and "Result: 3" in r.stdout, r.stdout + r.stderr
            if closes_first:
                assert took < FAST and srv.fin_seen == [False], (took, srv.fin_seen)
            else:
                # the proxy's FIN first, after the hold; the answer only then
                assert took >= HOLD_MS / 1000 and srv.fin_seen == [True], (took, srv.fin_seen)
            # the hit: no upstream connection, nothing to hold
            r, took = timed([exe("calc-client"), "-p", str(pport), "1 + 2"])
            assert r.returncode == 0 and "Result: 3" in r.stdout and took < FAST
        finally:
            srv.close()


CLIENT = """
import socket, sys, time
how = sys.argv[2]
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
c.sendall(bytes.fromhex(sys.argv[3]))
got = b""
while len(got) < 12 or len(got) < int.from_bytes(got[4:6], "big"):
    got += c.recv(65536)
t = time.monotonic()
if how == "shutdown":
    c.shutdown(socket.SHUT_WR)
c.close()
print(time.monotonic() - t)
"""


def test_preloaded_close_wait_holds_connections_to_the_listed_ports():
    lib = build_dir() / "libcalc-close-wait.so"
    assert lib.exists(), f"{lib} is not built"
    req = api.pack_message(api.Header(True), __import__("pickle").dumps(__import__("calculator").parse("1 + 2")))
    for closes_first in (False, True):
        for how in ("close", "shutdown"):
            srv = Server(closes_first)
            try:
                for ports, held in ((f"{srv.port}", True), (f"{free_port()},{free_port()}", False)):
                    env = dict(os.environ, LD_PRELOAD=str(lib), CALCLAB_CLOSE_WAIT=f"{HOLD_MS}:{ports}")
                    r = subprocess.run([sys.executable, "-c", CLIENT, str(srv.port), how, req.hex()], env=env,
                                       capture_output=True, text=True, timeout=60)
                    assert r.returncode == 0, r.stderr
                    took = float(r.stdout)
                    if held and not closes_first:
                        assert took >= HOLD_MS / 1000 and srv.fin_seen[-1], (how, took, srv.fin_seen)
                    else:
                        assert took < FAST, (how, ports, took)
                        if held:
                            assert not srv.fin_seen[-1], (how, srv.fin_seen)   # the server's FIN came first
            finally:
                srv.close()
