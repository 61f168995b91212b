"""Helpers for end-to-end tests: start programs on free loopback ports, speak the wire format.

Every process is started in its own session and killed when the test ends (the `procs`
fixture), so no test leaves a server behind, whatever happens."""
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time

from conftest import REPO, VECTORS, build_dir

STUDENT = REPO / "tests" / "student"
PY = "/usr/bin/python3"


def pickle_flavour(python):
    """How `python` pickles an Enum member, so how the course's (and tests/student's) code sends
    its requests under it: 'getattr' (by name: CPython 3.11.2, Debian 12's python3) or 'value'."""
    probe = ("import enum, pickle\nclass P(enum.Enum):\n    A = 0\n"
             "print('getattr' if b'getattr' in pickle.dumps(P.A) else 'value')")
    return subprocess.run([python, "-I", "-c", probe], capture_output=True, text=True, timeout=30,
                          check=True).stdout.strip()


# calc-client --pickle-flavour for the bytes tests/student's client sends under PY
PY_FLAVOUR = pickle_flavour(PY) if os.access(PY, os.X_OK) else "value"


def exe(name):
    p = build_dir() / name
    assert p.exists(), f"{p} is not built: build the project first (ci/test does)"
    return str(p)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited early with {proc.returncode}: {proc.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listens on {port} after {timeout}s")


class Procs:
    """Starts programs and stops them all at the end."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.running = []

    def start(self, args, port=None, name="proc"):
        out = open(self.tmp / f"{name}-{len(self.running)}.log", "w+")
        p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        p.logfile = out
        self.running.append(p)
        if port is not None:
            wait_port(port, proc=p)
        return p

    def server(self, *extra, port=None, student=False):
        port = port or free_port()
        if student:
            args = [PY, str(STUDENT / "calc_server.py"), "-H", "127.0.0.1", "-p", str(port)]
        else:
            args = [exe("calc-server"), "-H", "127.0.0.1", "-p", str(port), *extra]
        return self.start(args, port, "server"), port

    def proxy(self, server_port, *extra, port=None, student=False):
        port = port or free_port()
        if student:
            args = [PY, str(STUDENT / "calc_proxy.py"), "-pp", str(port), "-sp", str(server_port)]
        else:
            args = [exe("calc-proxy"), "-pp", str(port), "-sp", str(server_port), *extra]
        return self.start(args, port, "proxy"), port

    def log(self, p):
        p.logfile.flush()
        p.logfile.seek(0)
        return p.logfile.read()

    def json_events(self, p, event=None):
        out = []
        for line in self.log(p).splitlines():
            if line.startswith("{"):
                rec = json.loads(line)
                if event is None or rec["event"] == event:
                    out.append(rec)
        return out

    def stop_all(self):
        for p in self.running:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)
            p.logfile.close()


def client(port, expr, *extra, student=False, timeout=20):
    if student:
        args = [PY, str(STUDENT / "calc_client.py"), "-H", "127.0.0.1", "-p", str(port), *extra, "--", expr]
    else:
        args = [exe("calc-client"), "-H", "127.0.0.1", "-p", str(port), *extra, "--", expr]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def client_body(out, port):
    """What the client printed between the length lines and `Connection closed`, prefix removed."""
    lines = out.splitlines(keepends=True)
    keep = [l for l in lines if not (l.startswith("{127.0.0.1:") and ("Connection" in l or "length" in l))]
    return "".join(keep).replace(f"{{127.0.0.1:{port}}} ", "")


def header(length, steps=True, cache=True, cc=65535, request=True, status=0, t=None):
    flags = (cache << 12) | (steps << 11) | (request << 10) | status
    return struct.pack("!LHHHxx", int(time.time()) if t is None else t, length, flags, cc if cache else 0)


def request_bytes(payload, **kw):
    return header(12 + len(payload), **kw) + payload


def recv_message(sock, timeout=10):
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < 12 or len(buf) < struct.unpack("!H", buf[4:6])[0]:
        d = sock.recv(65536)
        if not d:
            break
        buf += d
    return buf


def recv_messages(sock, count, timeout=10):
    """Reads exactly `count` whole messages (several may arrive in one segment)."""
    sock.settimeout(timeout)
    buf, out = b"", []
    while len(out) < count:
        while len(buf) >= 12 and len(buf) >= struct.unpack("!H", buf[4:6])[0]:
            n = struct.unpack("!H", buf[4:6])[0]
            out.append(buf[:n])
            buf = buf[n:]
        if len(out) >= count:
            break
        d = sock.recv(65536)
        if not d:
            break
        buf += d
    return out


def exchange(port, data, half_close=False, timeout=10):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        return recv_message(s, timeout)


def serve_once_each(answers):
    """A stand-in server: for each connection in turn, read one request and send the next
    prepared answer (bytes), then close. Returns (port, thread)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    port = ls.getsockname()[1]

    def run():
        with ls:
            for answer in answers:
                c, _ = ls.accept()
                with c:
                    recv_message(c)
                    c.sendall(answer)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return port, t


def load_vectors(name="legacy-expressions.jsonl", quirks=False):
    vs = [json.loads(l) for l in open(VECTORS / name)]
    return [v for v in vs if quirks or not v.get("quirk")]
