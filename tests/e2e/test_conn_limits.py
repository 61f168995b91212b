"""calc-server's per-connection buffer caps, over loopback.

A client that pipelines requests without reading its answers must not grow the server: once
its unread answers reach --max-output-bytes the server stops answering it, once its unanswered
requests reach --max-input-bytes it stops reading it (the kernel's socket buffers then stop the
sender), and a connection never holds more than input + 2 x output + 65535 bytes of buffers
(calc/conn.h). Meanwhile other clients are served as usual."""
import socket
import struct
import time

from calcproc import recv_message, request_bytes
from test_programs import vector_by_name

MAX_IN = 262144
MAX_OUT = 262144
CAP = MAX_IN + 2 * MAX_OUT + 65535      # the documented bound of one connection's buffers
SLACK = 2 << 20                          # allocator arenas and the one memo entry
FLOOD = 100 * 1000 * 1000


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def flood_without_reading(port, req, pid):
    """Pipelines up to 100 MB of req on one connection that never reads, bounded in bytes and
    in time (the sender stalls once the target stops reading it). Returns the socket, the bytes
    sent and the target's peak RSS while it went on."""
    flood = socket.create_connection(("127.0.0.1", port))
    flood.setblocking(False)
    burst = req * 1000
    sent, last_progress, start, peak = 0, time.time(), time.time(), rss_bytes(pid)
    while sent < FLOOD and time.time() - last_progress < 2 and time.time() - start < 30:
        try:
            sent += flood.send(burst[sent % len(burst):])
            last_progress = time.time()
        except BlockingIOError:
            time.sleep(0.01)
        peak = max(peak, rss_bytes(pid))
    time.sleep(0.3)
    return flood, sent, max(peak, rss_bytes(pid))


def read_all_answers(sock):
    """Every message up to the peer's FIN, and the number of bytes left over."""
    sock.setblocking(True)
    sock.settimeout(10)
    got = bytearray()
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    answers, off = [], 0
    while off + 12 <= len(got):
        n = struct.unpack("!H", got[off + 4:off + 6])[0]
        answers.append(bytes(got[off:off + n]))
        off += n
    return answers, len(got) - off


def ask(port, req, timeout=10):
    """req on a new connection: the payload of its answer."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(req)
        return recv_message(s, timeout=timeout)[12:]


def answers_once_it_reads(flood, sent, req, want):
    """The flooder shuts its side and reads at last: every whole request it got through is
    answered with want, in order, and a partial last one gets one answer. Returns the answers."""
    flood.shutdown(socket.SHUT_WR)
    answers, left = read_all_answers(flood)
    whole = sent // len(req)
    assert len(answers) == whole + (1 if sent % len(req) else 0) and left == 0
    assert all(a[12:] == want for a in answers[:whole])
    return answers


def test_pipelining_100mb_without_reading_stays_within_the_cap(procs):
    server, port = procs.server("--max-input-bytes", str(MAX_IN), "--max-output-bytes", str(MAX_OUT))
    v = vector_by_name("seed-1")
    req = request_bytes(bytes.fromhex(v["request"]["payload"]))
    want = bytes.fromhex(v["steps"]["payload"])
    assert ask(port, req) == want   # warm up: memo entry, arenas
    base = rss_bytes(server.pid)
    flood, sent, peak = flood_without_reading(port, req, server.pid)

    # Another client is answered while the flooder's answers wait unread.
    t0 = time.time()
    assert ask(port, req, timeout=5) == want
    latency = time.time() - t0
    print(f"flooder sent {sent / 1e6:.1f} MB before the server stopped reading it; server RSS "
          f"{base / 2**20:.1f} -> peak {peak / 2**20:.1f} MiB (cap {CAP / 2**20:.2f} MiB per connection); "
          f"another client answered in {latency * 1000:.1f} ms")
    assert sent < FLOOD, "the server kept reading a client that does not read"
    assert peak - base <= CAP + SLACK

    # Once the flooder reads, every request it got through is answered, in order.
    answers = answers_once_it_reads(flood, sent, req, want)
    if sent % len(req):   # a partial last request gets the reference's "too short" 500
        assert b"Error while unpacking request" in answers[-1]
    flood.close()
    assert server.poll() is None


def test_proxy_hits_pipelined_without_reading_stay_within_the_cap(procs):
    """The same against calc-proxy answering cache hits: its client side is capped alike."""
    _, sport = procs.server()
    proxy, pport = procs.proxy(sport, "--max-input-bytes", str(MAX_IN), "--max-output-bytes", str(MAX_OUT))
    v = vector_by_name("seed-1")
    req = request_bytes(bytes.fromhex(v["request"]["payload"]))
    want = bytes.fromhex(v["steps"]["payload"])
    assert ask(pport, req) == want   # the miss that fills the cache
    base = rss_bytes(proxy.pid)
    flood, sent, peak = flood_without_reading(pport, req, proxy.pid)
    assert ask(pport, req, timeout=5) == want
    print(f"flooder sent {sent / 1e6:.1f} MB; proxy RSS {base / 2**20:.1f} -> peak {peak / 2**20:.1f} MiB")
    assert sent < FLOOD, "the proxy kept reading a client that does not read"
    assert peak - base <= CAP + SLACK
    answers_once_it_reads(flood, sent, req, want)
    flood.close()
    assert proxy.poll() is None
