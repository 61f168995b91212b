#!/usr/bin/env python3
"""Student-style caching proxy (threaded), written from docs/protocol.md sections 5 and 6.
Usage: calc_proxy.py [-ph HOST] [-pp PORT] [-sh HOST] [-sp PORT]"""
import argparse
import os
import pickle
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import api  # noqa: E402

SERVER = ("127.0.0.1", 9999)
CACHE = {}
CACHE_LOCK = threading.Lock()
INF = float("inf")


def log(msg):
    print(msg, flush=True)


def remaining(cc, age):
    return INF if cc == 65535 else cc - age


def error_response(inner):
    err = api.CalculatorServerError("Internal proxy error", inner)
    h = api.Header(False, cache=False, steps=False, cache_control=0, status=500)
    return api.pack_message(h, pickle.dumps(err))


def ask_server(data):
    with socket.create_connection(SERVER, timeout=10) as up:
        up.sendall(data)
        resp = api.recv_message(up)
    # leaving the with-block closed the upstream connection: only now answer the client
    if len(resp) < api.HEADER_LEN:
        raise api.CalculatorServerError("The server closed the connection without a complete response")
    return resp


def process(data, peer):
    try:
        h = api.Header.unpack(data)
    except api.CalculatorClientError as e:
        return error_response(e)
    payload = data[api.HEADER_LEN:h.length]
    key = (payload, h.steps)
    now = int(time.time())
    with CACHE_LOCK:
        cached = CACHE.get(key) if h.cache_control != 0 else None
    if cached is not None:
        rh = api.Header.unpack(cached)
        age = now - rh.time_stamp
        srv_rem, cli_rem = remaining(rh.cache_control, age), remaining(h.cache_control, age)
        if srv_rem > 0 and cli_rem > 0:
            log(f"{{{peer}}} Cache hit ,server time remaining: {srv_rem:.2f}, client time remaining: {cli_rem:.2f}")
            return cached
        stale = True
    else:
        stale = False
    forward = api.pack_message(api.Header(True, h.cache, h.steps, h.cache_control, 0), payload)
    try:
        resp = ask_server(forward)
    except ConnectionRefusedError:
        log(f"{{{peer}}} Unexpected server error: Connection refused by server and the request was not in the cache/it was stale")
        return error_response(api.CalculatorServerError(
            "Connection refused by server and the request was not in the cache/it was stale"))
    except Exception as e:
        log(f"{{{peer}}} Unexpected server error: {e}")
        return error_response(api.CalculatorServerError(f"Upstream failure: {e}"))
    rh = api.Header.unpack(resp)
    age = now - rh.time_stamp
    srv_rem, cli_rem = remaining(rh.cache_control, age), remaining(h.cache_control, age)
    if h.cache and rh.cache and srv_rem > 0 and cli_rem > 0:
        with CACHE_LOCK:
            CACHE[key] = resp
        what = "Cache miss, stale response" if stale else "Cache miss, response cached"
    else:
        what = "Cache miss, stale response" if stale else "Cache miss, response not cached"
    log(f"{{{peer}}} {what} ,server time remaining: {srv_rem:.2f}, client time remaining: {cli_rem:.2f}")
    return resp


def handle(conn, addr):
    peer = f"{addr[0]}:{addr[1]}"
    try:
        while True:
            data = api.recv_message(conn)
            if not data:
                break
            log(f"{{{peer}}} Got request of length {len(data)} bytes")
            resp = process(data, peer)
            log(f"{{{peer}}} Sending response of length {len(resp)} bytes")
            conn.sendall(resp)
    except OSError as e:
        log(f"{{{peer}}} Error: {e}")
    finally:
        conn.close()
        log(f"{{{peer}}} Connection closed")


def main():
    global SERVER
    ap = argparse.ArgumentParser()
    ap.add_argument("-ph", "--proxy_host", default="127.0.0.1")
    ap.add_argument("-pp", "--proxy_port", type=int, default=9998)
    ap.add_argument("-sh", "--server_host", default="127.0.0.1")
    ap.add_argument("-sp", "--server_port", type=int, default=9999)
    a = ap.parse_args()
    SERVER = (a.server_host, a.server_port)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((a.proxy_host, a.proxy_port))
    srv.listen(500)
    log(f"Listening on {a.proxy_host}:{a.proxy_port}")
    try:
        while True:
            conn, addr = srv.accept()
            log(f"{{{addr[0]}:{addr[1]}}} Connection established")
            threading.Thread(target=handle, args=(conn, addr), daemon=True).start()
    except KeyboardInterrupt:
        pass
    finally:
        srv.close()


if __name__ == "__main__":
    main()
