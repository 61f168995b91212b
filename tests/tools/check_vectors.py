#!/usr/bin/env python3
"""Black-box conformance of calc-server and calc-client against the reference's vectors.

Server side: the server answers each vector's exact request (steps on and off) with the
reference's response, byte for byte but for the time stamp.
Client side: a stand-in server answers with the vector's stored response; the client, given
the vector's infix input, must send the reference's request byte for byte (header flags and
cache-control included) and print what the reference client printed.

Usage: tests/tools/check_vectors.py [VECTORS.jsonl] [--side server|client|both] [--limit N]
       [--server PATH] [--client PATH] [--pickle-flavour value|getattr]
VECTORS defaults to the checkout's captures/vectors/legacy-expressions.jsonl; the programs to
$CALC_BUILD_DIR (else build/)'s calc-server and calc-client. --pickle-flavour is passed to the
client: getattr for the vectors made under CPython 3.11.2 (legacy-*-py3.11.2.jsonl), whose
requests pickle enum members by name. The last line printed is the
summary; exit 0 only when every check matched."""
import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))
from calcproc import VECTORS, client_body, free_port, header, recv_message, wait_port  # noqa: E402
from conftest import build_dir  # noqa: E402


def expected_response(exp):
    """The reference's response without its 4-byte time stamp."""
    flags = (exp["cache"] << 12) | (exp["show_steps"] << 11) | exp["status"]
    return (exp["len"].to_bytes(2, "big") + flags.to_bytes(2, "big") +
            exp["cache_control"].to_bytes(2, "big") + b"\0\0" + bytes.fromhex(exp["payload"]))


def check_server(server, vectors, bad):
    port = free_port()
    srv = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ok = total = 0
    try:
        wait_port(port, proc=srv)
        for v in vectors:
            payload = bytes.fromhex(v["request"]["payload"])
            for steps in (True, False):
                want = expected_response(v["steps" if steps else "nosteps"])
                total += 1
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                        s.sendall(header(12 + len(payload), steps=steps) + payload)
                        got = recv_message(s, timeout=5)
                except OSError as e:
                    got = f"<{e}>".encode()
                if got[4:] == want:
                    ok += 1
                else:
                    bad.append(f"server {v['name']} steps={steps}: {len(got)} bytes, the reference "
                               f"answers {len(want) + 4}; first difference at byte "
                               f"{first_difference(got[4:], want) + 4}")
    finally:
        srv.terminate()
        srv.wait(timeout=5)
    return ok, total


def first_difference(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def answer_one(listener, answer, seen):
    """Stand-in server: accept one connection, keep its request, answer, wait for the close."""
    try:
        listener.settimeout(5)
        c, _ = listener.accept()
        with c:
            seen["request"] = recv_message(c, timeout=5)
            c.sendall(answer)
            c.recv(1)
    except OSError as e:
        seen["error"] = str(e)


def check_client(client, vectors, bad, flavour="value"):
    ok = 0
    for v in vectors:
        exp = v["steps"]
        answer = int(time.time()).to_bytes(4, "big") + expected_response(exp)
        with socket.socket() as ls:
            ls.bind(("127.0.0.1", 0))
            ls.listen(1)
            port = ls.getsockname()[1]
            seen = {}
            t = threading.Thread(target=answer_one, args=(ls, answer, seen))
            t.start()
            try:
                r = subprocess.run([client, "-H", "127.0.0.1", "-p", str(port), "--pickle-flavour", flavour,
                                    "--", v["input"]],
                                   capture_output=True, text=True, timeout=10)
                out = r.stdout
            except subprocess.TimeoutExpired:
                out = "<no exit within 10 s>"
            t.join()
        req = seen.get("request", b"")
        why = []
        if req[12:].hex() != v["request"]["payload"] or len(req) != v["request"]["len"]:
            why.append(f"sent {len(req)} bytes, the reference sends {v['request']['len']}")
        if len(req) < 12 or req[6:8] != b"\x1c\x00" or req[8:10] != b"\xff\xff":
            why.append("request header flags/cache-control differ from steps+cache, 65535")
        body = client_body(out, port)
        if body != exp["client_prints"]:
            why.append(f"prints {body[-80:]!r}, the reference prints {exp['client_prints'][-80:]!r}")
        if why:
            bad.append(f"client {v['name']} ({v['input'][:40]}): " + "; ".join(why))
        else:
            ok += 1
    return ok, len(vectors)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("vectors", nargs="?", default=str(VECTORS / "legacy-expressions.jsonl"))
    ap.add_argument("--side", choices=("server", "client", "both"), default="both")
    ap.add_argument("--limit", type=int, default=0, help="check only the first N vectors")
    ap.add_argument("--show", type=int, default=3, help="differences printed (default 3)")
    ap.add_argument("--server", default=str(build_dir() / "calc-server"))
    ap.add_argument("--client", default=str(build_dir() / "calc-client"))
    ap.add_argument("--pickle-flavour", choices=("value", "getattr"), default="value",
                    help="how the client pickles enum members (getattr: as CPython 3.11.2 does)")
    a = ap.parse_args(argv)
    try:
        with open(a.vectors) as f:
            vectors = [v for v in map(json.loads, f) if not v.get("quirk")]
    except (OSError, ValueError) as e:
        print(f"check_vectors: cannot read {a.vectors}: {e}", file=sys.stderr)
        return 2
    if a.limit:
        vectors = vectors[:a.limit]
    bad, ok, total = [], 0, 0
    for side, run, prog in (("server", check_server, a.server), ("client", check_client, a.client)):
        if a.side in (side, "both"):
            if not os.access(prog, os.X_OK):
                print(f"check_vectors: {prog} is not built", file=sys.stderr)
                return 2
            o, t = run(prog, vectors, bad) if side == "server" else run(prog, vectors, bad, a.pickle_flavour)
            ok, total = ok + o, total + t
    for b in bad[:a.show]:
        print(b)
    print(f"{ok}/{total} vector checks match ({os.path.basename(a.vectors)}, side={a.side})")
    return 0 if total and ok == total else 1


if __name__ == "__main__":
    sys.exit(main())
