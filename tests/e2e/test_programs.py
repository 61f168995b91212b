"""End-to-end tests of calc-server, calc-proxy and calc-client over loopback."""
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import REPO
from calcproc import (PY_FLAVOUR, VECTORS, client, client_body, exchange, free_port, load_vectors, recv_message,
                      recv_messages, request_bytes, exe)

E1 = "(sin(max(2, 3 * 4, 5, 6 * ((7 * 8) / 9), 10 / 11)) / 12) * 13"
E2 = "max(2, 3) + 3"


def vector_by_name(name):
    return next(v for v in load_vectors(quirks=True) if v["name"] == name)


# The reference's vectors as CPython 3.9-3.10/3.11.7+ pickle them (enum members by value) and
# as 3.11.2, Debian 12's python3, does (by name: getattr(Associativity, 'LEFT')).
FLAVOURS = {"by-value": ("legacy-expressions.jsonl", "legacy-protocol.jsonl"),
            "getattr": ("legacy-expressions-py3.11.2.jsonl", "legacy-protocol-py3.11.2.jsonl")}


def check_vectors_tool(vectors, side, *extra):
    tool = str(REPO / "tests" / "tools" / "check_vectors.py")
    r = subprocess.run(["/usr/bin/python3", tool, str(VECTORS / vectors), "--side", side,
                        "--server", exe("calc-server"), "--client", exe("calc-client"), *extra],
                       capture_output=True, text=True, timeout=600)
    last = r.stdout.strip().splitlines()[-1]
    got, total = last.split()[0].split("/")
    assert r.returncode == 0 and got == total, r.stdout[-3000:]
    return int(got)


def test_check_vectors_tool_both_sides():
    """The black-box conformance tool: 700/700 server side, 350/350 client side."""
    assert check_vectors_tool("legacy-expressions.jsonl", "server") == 700
    assert check_vectors_tool("legacy-expressions.jsonl", "client") == 350


def test_check_vectors_tool_getattr_flavour():
    """calc-server answers every request pickled as CPython 3.11.2 pickles it as the reference
    does (700/700); calc-client --pickle-flavour getattr sends the reference's 3.11.2 request
    bytes and prints what it prints (350/350), and by value it sends the other file's bytes
    (so only the 124 requests without an operator match)."""
    assert check_vectors_tool("legacy-expressions-py3.11.2.jsonl", "server") == 700
    assert check_vectors_tool("legacy-expressions-py3.11.2.jsonl", "client", "--pickle-flavour", "getattr") == 350
    tool = str(REPO / "tests" / "tools" / "check_vectors.py")
    r = subprocess.run(["/usr/bin/python3", tool, str(VECTORS / "legacy-expressions-py3.11.2.jsonl"), "--side",
                        "client", "--client", exe("calc-client")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and r.stdout.strip().splitlines()[-1].startswith("124/350 "), r.stdout[-500:]


def test_client_pickle_flavour_option(procs):
    """--pickle-flavour: E1 is 687 bytes by value, 706 by getattr (E2 376/395), the same answer
    printed; a bad value is a usage error; --help documents it."""
    _, sport = procs.server()
    outs = {}
    for flavour, e1, e2 in (("value", 687, 376), ("getattr", 706, 395)):
        for expr, size in ((E1, e1), (E2, e2)):
            r = client(sport, expr, "--pickle-flavour", flavour)
            assert r.returncode == 0, r.stderr
            assert f"Sending request of length {size} bytes" in r.stdout
            outs.setdefault(expr, set()).add(client_body(r.stdout, sport))
    assert all(len(bodies) == 1 for bodies in outs.values())
    assert "Sending request of length 687 bytes" in client(sport, E1).stdout   # by value by default
    r = subprocess.run([exe("calc-client"), "--pickle-flavour", "name", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and "--pickle-flavour takes value or getattr, not 'name'" in r.stderr
    help_text = subprocess.run([exe("calc-client"), "--help"], capture_output=True, text=True).stdout
    assert "--pickle-flavour value|getattr" in help_text and "3.11.2" in help_text


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_every_vector_request_through_proxy_byte_exact(procs, flavour):
    """Each vector's own request bytes sent through calc-proxy to calc-server: the reference's
    answer, byte for byte but the time stamp, in both flavours (the proxy forwards the bytes it
    got; the server decodes either)."""
    _, sport = procs.server()
    _, pport = procs.proxy(sport)
    bad = []
    for v in load_vectors(FLAVOURS[flavour][0]):
        got = exchange(pport, request_bytes(bytes.fromhex(v["request"]["payload"])))
        exp = v["steps"]
        if got[12:].hex() != exp["payload"] or len(got) != exp["len"] or (got[6] >> 3) & 1 != exp["show_steps"]:
            bad.append((v["name"], len(got), exp["len"]))
    assert not bad, bad[:5]


def test_every_vector_through_proxy(procs):
    _, sport = procs.server()
    _, pport = procs.proxy(sport)
    bad = []
    for v in load_vectors():
        r = client(pport, v["input"])
        if client_body(r.stdout, pport) != v["steps"]["client_prints"]:
            bad.append((v["name"], r.stdout[-200:]))
    assert not bad, bad[:5]


def test_e1_output_and_exit_codes(procs):
    _, sport = procs.server()
    r = client(sport, E1)
    assert r.returncode == 0
    assert "Result: -0.38748277824137206\n" in r.stdout
    assert f"{{127.0.0.1:{sport}}} Sending request of length 687 bytes" in r.stdout
    assert f"{{127.0.0.1:{sport}}} Got response of length 564 bytes" in r.stdout
    r = client(sport, "1 / 0")
    assert r.returncode == 1 and "Got error: division by zero" in r.stdout
    r = client(sport, "1 +")
    assert r.returncode == 2 and "unexpected end" in r.stderr
    closed = free_port()
    r = client(closed, "1 + 1")
    assert r.returncode == 2
    assert f"cannot connect to 127.0.0.1:{closed}: Connection refused" in r.stderr


def test_client_json(procs):
    _, sport = procs.server()
    import json
    out = json.loads(client(sport, E2, "--json").stdout)
    assert out["status"] == 200 and out["result"] == "6" and out["steps"] == ["max(2, 3) + 3", "3 + 3", "6"]


def test_client_local_prints_what_it_prints_for_the_servers_answer(procs):
    """--local (the lab's oracle): no connection, the request answered by calc-server's own rules;
    every line is the one the client prints for a live server's answer, the address prefix aside."""
    _, sport = procs.server()
    import json
    for v in load_vectors()[:120]:
        for extra in ([], ["--no-steps"]):
            live = client(sport, v["input"], *extra)
            here = subprocess.run([exe("calc-client"), "--local", *extra, "--", v["input"]], capture_output=True,
                                  text=True, timeout=20)
            assert here.returncode == live.returncode, v["name"]
            assert here.stdout.replace("{local}", f"{{127.0.0.1:{sport}}}") == live.stdout, v["name"]
    out = json.loads(subprocess.run([exe("calc-client"), "--local", "--json", "--", "(1+2)*rand(1, 2)"],
                                    capture_output=True, text=True, timeout=20).stdout)
    assert out["expression"] == "(1 + 2) * rand(1, 2)" and out["deterministic"] is False
    assert json.loads(subprocess.run([exe("calc-client"), "--local", "--json", "--", "1/0"], capture_output=True,
                                     text=True, timeout=20).stdout)["error_type"] == "ZeroDivisionError"


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_protocol_vectors_against_server(procs, flavour):
    _, sport = procs.server()
    for line in open(VECTORS / FLAVOURS[flavour][1]):
        import json
        v = json.loads(line)
        if v["kind"] != "server":
            continue
        got = exchange(sport, bytes.fromhex(v["request"]), half_close=True)
        if v["response"] is None:  # malicious pickle: a 400 and nothing executed
            assert struct.unpack("!H", got[6:8])[0] & 0x3ff == 400, v["name"]
            assert not os.path.exists("/tmp/pwned")
            continue
        want = bytes.fromhex(v["response"])
        assert got[4:] == want[4:], v["name"]


def test_refused_upstream_is_the_reference_170_bytes(procs):
    dead = free_port()
    _, pport = procs.proxy(dead)
    v = vector_by_name("seed-2")
    got = exchange(pport, request_bytes(bytes.fromhex(v["request"]["payload"])))
    ref = next(__import__("json").loads(l) for l in open(VECTORS / "legacy-protocol.jsonl") if "upstream-refused" in l)
    want = bytes.fromhex(ref["response"])
    assert len(got) == 170 and got[4:] == want[4:]
    r = client(pport, E2)
    assert r.returncode == 1
    assert ("Got error: ('Internal proxy error', CalculatorServerError('Connection refused by server and the "
            "request was not in the cache/it was stale'))") in r.stdout


def cache_outcomes(procs, proxy):
    return [e["outcome"] for e in procs.json_events(proxy, "cache")]


def test_cache_hit_miss_and_reload(procs):
    server, sport = procs.server("--log-format", "json")
    proxy, pport = procs.proxy(sport, "--log-format", "json")
    assert client(pport, E1).returncode == 0
    assert client(pport, E1).returncode == 0
    assert client(pport, E2).returncode == 0
    assert client(pport, E1, "--max-age", "0").returncode == 0      # reload
    assert client(pport, E1, "--no-steps").returncode == 0          # another key (S flag)
    time.sleep(0.2)
    assert cache_outcomes(procs, proxy) == ["miss_cached", "hit", "miss_cached", "miss_not_cached", "miss_cached"]
    assert len(procs.json_events(server, "request")) == 4           # the hit never reached the server
    # The proxy closed each upstream connection before answering its client.
    events = [e["event"] for e in procs.json_events(proxy)]
    first_miss = events.index("upstream_closed")
    assert events.index("response") > first_miss


def test_stale_by_server_max_age(procs):
    # Ages are whole seconds: max-age 2 survives the next request even across a second boundary.
    _, sport = procs.server("--cache-control", "2")
    proxy, pport = procs.proxy(sport, "--log-format", "json")
    client(pport, E2)
    client(pport, E2)
    time.sleep(3.1)
    client(pport, E2)
    time.sleep(0.2)
    assert cache_outcomes(procs, proxy) == ["miss_cached", "hit", "stale", "miss_cached"]


def test_stale_by_client_max_age(procs):
    _, sport = procs.server()
    proxy, pport = procs.proxy(sport, "--log-format", "json")
    client(pport, E2)
    client(pport, E2, "--max-age", "2")
    time.sleep(3.1)
    client(pport, E2, "--max-age", "2")
    time.sleep(0.2)
    assert cache_outcomes(procs, proxy)[:3] == ["miss_cached", "hit", "stale"]


def test_server_no_cache_is_never_stored(procs):
    _, sport = procs.server("--no-cache")
    proxy, pport = procs.proxy(sport, "--log-format", "json")
    client(pport, E2)
    client(pport, E2)
    time.sleep(0.2)
    assert cache_outcomes(procs, proxy) == ["miss_not_cached", "miss_not_cached"]


def test_lru_eviction_at_byte_bound(procs):
    _, sport = procs.server()
    # Room for two of these entries (about 250 + 44 bytes + bookkeeping each), not three.
    proxy, pport = procs.proxy(sport, "--log-format", "json", "--cache-max-bytes", "900")
    for expr in ("1 + 1", "2 + 2", "1 + 1", "3 + 3", "2 + 2", "3 + 3", "1 + 1"):
        client(pport, expr)
    time.sleep(0.2)
    # 3 + 3 evicts 2 + 2 (least recently used after the hit on 1 + 1); 2 + 2 then evicts
    # 1 + 1; 3 + 3 is still there.
    assert cache_outcomes(procs, proxy) == ["miss_cached", "miss_cached", "hit", "miss_cached",
                                            "miss_cached", "hit", "miss_cached"]


def test_server_killed_mid_request(procs):
    # A server that accepts, reads the request and dies without answering.
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(5)
    sport = ls.getsockname()[1]

    def die():
        c, _ = ls.accept()
        c.recv(65536)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # RST: the server process "crashed"
    t = threading.Thread(target=die)
    t.start()
    _, pport = procs.proxy(sport)
    r = client(pport, E2)
    t.join()
    ls.close()
    assert r.returncode == 1
    assert "Internal proxy error" in r.stdout and "reset by server" in r.stdout
    # A calc-server killed with SIGKILL while a client waits on it: the client reports it (exit 2).
    server, sport = procs.server()
    holder = socket.create_connection(("127.0.0.1", sport))
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()
    holder.close()
    r = client(sport, E2)
    assert r.returncode == 2 and "cannot connect" in r.stderr


def test_upstream_timeout_and_garbage(procs):
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(5)
    sport = ls.getsockname()[1]
    conns = []

    def serve():
        c, _ = ls.accept()       # first: never answers (timeout)
        conns.append(c)
        c, _ = ls.accept()       # second: answers garbage with a bad total length
        c.recv(65536)
        c.sendall(b"\0\0\0\0\0\x03garbage!")
        conns.append(c)
    t = threading.Thread(target=serve)
    t.start()
    _, pport = procs.proxy(sport, "--upstream-timeout", "1")
    start = time.time()
    r = client(pport, E2)
    assert time.time() - start < 5
    assert r.returncode == 1 and "No response from server within 1 s" in r.stdout
    r = client(pport, E1)
    assert r.returncode == 1 and "Invalid response from server" in r.stdout
    t.join()
    for c in conns:
        c.close()
    ls.close()


def test_concurrent_clients(procs):
    """200 concurrent clients x 50 requests each, every answer checked byte for byte."""
    _, sport = procs.server()
    vs = [v for v in load_vectors() if v["steps"]["status"] == 200][:20]
    errors = []

    def run(i):
        v = vs[i % len(vs)]
        req = request_bytes(bytes.fromhex(v["request"]["payload"]))
        want = bytes.fromhex(v["steps"]["payload"])
        try:
            for _ in range(50):
                got = exchange(sport, req, timeout=30)
                if got[12:] != want:
                    errors.append((i, v["name"]))
                    return
        except OSError as e:
            errors.append((i, repr(e)))
    threads = [threading.Thread(target=run, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]


def test_keepalive_pipelined_and_split(procs):
    _, sport = procs.server()
    v = vector_by_name("seed-1")
    req = request_bytes(bytes.fromhex(v["request"]["payload"]))
    want = bytes.fromhex(v["steps"]["payload"])
    with socket.create_connection(("127.0.0.1", sport)) as s:
        s.sendall(req * 3)                      # three requests in one segment
        got = recv_messages(s, 3)
        assert [m[12:] for m in got] == [want] * 3
        for i in range(0, len(req), 100):       # one request split over many segments
            s.sendall(req[i:i + 100])
            time.sleep(0.001)
        assert recv_message(s)[12:] == want


def test_bad_inputs(procs):
    server, sport = procs.server("--idle-timeout", "1", "--max-connections", "20", "--log-format", "json")
    # Half a header, then a stall: answered with the reference's "too short" error and closed.
    with socket.create_connection(("127.0.0.1", sport)) as s:
        s.sendall(b"\x00\x01\x02\x03\x04")
        got = recv_message(s, timeout=5)
        assert b"The data is too short (5 bytes) to be a valid header" in got
        assert s.recv(10) == b""
    # Connects and never sends: closed after the idle timeout, no answer.
    with socket.create_connection(("127.0.0.1", sport)) as s:
        s.settimeout(5)
        assert s.recv(10) == b""
    # Flood past --max-connections: the extra connections are closed, the others still served.
    flood = [socket.create_connection(("127.0.0.1", sport)) for _ in range(30)]
    time.sleep(0.3)
    v = vector_by_name("seed-2")
    req = request_bytes(bytes.fromhex(v["request"]["payload"]))
    served = refused = 0
    for s in flood:
        try:
            s.sendall(req)
            got = recv_message(s, timeout=5)
            if got:
                served += 1
            else:
                refused += 1
        except OSError:
            refused += 1
        s.close()
    assert served == 20 and refused == 10
    # A client that disconnects mid-response (RST) does not disturb the server.
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", sport))
        s.sendall(req)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    time.sleep(0.5)  # let the server see the resets free their slots under --max-connections 20
    assert exchange(sport, req)[12:] == bytes.fromhex(v["steps"]["payload"])
    assert server.poll() is None


def test_sigterm_finishes_in_flight_and_exits_zero(procs):
    server, sport = procs.server()
    v = vector_by_name("seed-1")
    req = request_bytes(bytes.fromhex(v["request"]["payload"]))
    s = socket.create_connection(("127.0.0.1", sport))
    s.sendall(req[:100])
    time.sleep(0.1)
    os.kill(server.pid, signal.SIGTERM)
    time.sleep(0.1)
    s.sendall(req[100:])
    assert recv_message(s)[12:] == bytes.fromhex(v["steps"]["payload"])
    s.close()
    assert server.wait(timeout=10) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", sport), timeout=1)


def test_ten_thousand_concurrent_connections(procs):
    """10,000 connections open at once, every one answered correctly."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 10000 + 200
    assert hard >= need, f"this machine allows only {hard} open files"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    server, sport = procs.server("-q")
    v = vector_by_name("seed-2")
    req = request_bytes(bytes.fromhex(v["request"]["payload"]))
    want = bytes.fromhex(v["steps"]["payload"])
    socks = []
    try:
        for _ in range(10000):
            socks.append(socket.create_connection(("127.0.0.1", sport), timeout=30))
        for s in socks:
            s.sendall(req)
        bad = sum(1 for s in socks if recv_message(s, timeout=30)[12:] != want)
        assert bad == 0
        assert server.poll() is None
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_client_result_int_over_4300_digits_fails_like_the_reference():
    """With steps off the server sends a huge int result as it is (steps on, it refuses one,
    as the reference server does); the reference client's print(f"Result: {result}") then
    raises CPython 3.11's int-to-str ValueError. calc-client prints what the student-style
    Python client prints: 4300 digits are a result, 4301 an unexpected error (exit 2)."""
    import pickle
    from calcproc import serve_once_each

    def answer(n):
        p = pickle.dumps((n, []))
        return struct.pack("!LHHHxx", 0, 12 + len(p), (1 << 12) | 200, 65535) + p

    for n, rc in ((10 ** 4300 - 1, 0), (10 ** 4300, 2), (-(10 ** 5000), 2)):
        outs = []
        for student in (False, True):
            port, t = serve_once_each([answer(n)])
            # calclab's client asked to pickle as PY does, so both send the same request
            r = client(port, "1 + 1", "--no-steps", *([] if student else ["--pickle-flavour", PY_FLAVOUR]),
                       student=student)
            t.join(timeout=10)
            outs.append((r.returncode, r.stdout.replace(f"127.0.0.1:{port}", "server")))
        assert outs[0] == outs[1], (n if n < 10 else "big", outs[0][1][-300:], outs[1][1][-300:])
        assert outs[0][0] == rc
    assert "Unexpected error: Exceeds the limit (4300 digits) for integer string conversion" in outs[0][1]
