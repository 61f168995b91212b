#!/usr/bin/env python3
"""Student-style calculator server (threaded, pickle), written from docs/protocol.md.
Usage: calc_server.py [-H HOST] [-p PORT] [--cache-control N]"""
import argparse
import os
import pickle
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import api  # noqa: E402
import calculator  # noqa: E402

CACHE_CONTROL = 65535


def log(msg):
    print(msg, flush=True)


def make_response(status, payload_obj, steps=False):
    payload = pickle.dumps(payload_obj)
    h = api.Header(False, cache=True, steps=steps, cache_control=CACHE_CONTROL, status=status)
    return api.pack_message(h, payload)


def process(data):
    try:
        header = api.Header.unpack(data)
    except api.CalculatorClientError as e:
        return make_response(500, api.CalculatorClientError(f"Error while unpacking request: {e}"))
    if header.reserved:
        log(f"Warning: reserved bits set in the header ({header.reserved})")
    if not header.is_request:
        return make_response(400, TypeError("Received a response instead of a request"))
    payload = data[api.HEADER_LEN:header.length]
    if not payload:
        return make_response(400, ValueError("Received data is not an Expression2"))
    try:
        expr = api.loads(payload)
    except Exception:
        return make_response(400, ValueError("Received data could not be deserialized"))
    if not isinstance(expr, calculator.Expression):
        return make_response(400, ValueError("Received data is not an Expression2"))
    try:
        result, steps = calculator.calculate(expr, header.steps)
    except Exception as e:  # the evaluation's own exception goes back to the client
        return make_response(400, e)
    return make_response(200, (result, steps), steps=bool(steps))


def handle(conn, addr):
    peer = f"{addr[0]}:{addr[1]}"
    try:
        while True:
            data = api.recv_message(conn)
            if not data:
                break
            log(f"{{{peer}}} Got request of length {len(data)} bytes")
            resp = process(data)
            log(f"{{{peer}}} Sending response of length {len(resp)} bytes")
            conn.sendall(resp)
            log(f"{{{peer}}} Connection closed")
            if len(data) < api.HEADER_LEN:
                break
    except OSError as e:
        log(f"{{{peer}}} Error: {e}")
    finally:
        conn.close()


def main():
    global CACHE_CONTROL
    ap = argparse.ArgumentParser()
    ap.add_argument("-H", "--host", default="127.0.0.1")
    ap.add_argument("-p", "--port", type=int, default=9999)
    ap.add_argument("--cache-control", type=int, default=65535)
    a = ap.parse_args()
    CACHE_CONTROL = a.cache_control
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((a.host, a.port))
    srv.listen(500)
    log(f"Listening on {a.host}:{a.port}")
    try:
        while True:
            conn, addr = srv.accept()
            log(f"Connection established with {addr[0]}:{addr[1]}")
            threading.Thread(target=handle, args=(conn, addr), daemon=True).start()
    except KeyboardInterrupt:
        pass
    finally:
        srv.close()


if __name__ == "__main__":
    main()
