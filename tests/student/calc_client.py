#!/usr/bin/env python3
"""Student-style calculator client, written from docs/protocol.md section 4.
Usage: calc_client.py [-H HOST] [-p PORT] [--no-steps] [--no-cache] [--max-age N]
                      [--example N | [--] EXPRESSION]"""
import argparse
import os
import pickle
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import api  # noqa: E402
import calculator  # noqa: E402


def main():
    sys.stdout.reconfigure(line_buffering=True)  # each line leaves when printed, even into a pipe
    ap = argparse.ArgumentParser()
    ap.add_argument("-H", "--host", default="127.0.0.1")
    ap.add_argument("-p", "--port", type=int, default=9999)
    ap.add_argument("--no-steps", action="store_true")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--max-age", type=int, default=65535)
    ap.add_argument("--example", type=int, choices=sorted(calculator.EXAMPLES))
    ap.add_argument("expression", nargs="?")
    a = ap.parse_args()
    text = calculator.EXAMPLES[a.example] if a.example else a.expression
    if text is None:
        ap.error("an EXPRESSION or --example N is required")
    try:
        expr = calculator.parse(text)
    except calculator.ParseError as e:
        print(f"cannot parse {text!r}: {e}", file=sys.stderr)
        return 2
    payload = pickle.dumps(expr)
    cache = not a.no_cache
    h = api.Header(True, cache=cache, steps=not a.no_steps, cache_control=a.max_age if cache else 0)
    request = api.pack_message(h, payload)
    prefix = f"{{{a.host}:{a.port}}}"
    try:
        sock = socket.create_connection((a.host, a.port), timeout=30)
    except OSError as e:
        print(f"cannot connect to {a.host}:{a.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    rc = 0
    try:
        print(f"{prefix} Connection established", flush=True)
        print(f"{prefix} Sending request of length {len(request)} bytes", flush=True)
        sock.sendall(request)
        data = api.recv_message(sock, first_wait=30)
        print(f"{prefix} Got response of length {len(data)} bytes", flush=True)
        rh = api.Header.unpack(data)
        obj = api.loads(data[api.HEADER_LEN:rh.length])
        if rh.status == api.STATUS_OK:
            result, steps = obj
            print(f"Result: {result}")
            if steps:
                print("Steps:")
                print(f"{steps[0]} = {steps[1]}")
                pad = " " * len(steps[0])
                for s in steps[2:]:
                    print(f"{pad} = {s}")
        else:
            print(f"{prefix} Got error: {obj}")
            rc = 1
    except Exception as e:
        print(f"{prefix} Unexpected error: {e}")
        rc = 2
    finally:
        sock.close()
        print(f"{prefix} Connection closed", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
