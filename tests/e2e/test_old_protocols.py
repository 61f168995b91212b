"""Pickle protocols 0-3. The reference unpickles with pickle.loads, which takes every protocol,
so a student's client or server may send pickle.dumps(x, protocol=0..3) (text opcodes, GLOBAL,
copyreg._reconstructor, BINPUT). calc-server must answer such a request exactly as it answers
the reference's protocol-4 request, and calc-client must print such an answer exactly as the
protocol-4 one. The objects are made by the student-style Python implementation (tests/student),
which reproduces the reference's protocol-4 bytes."""
import pickle
import struct
import sys

import pytest

from calcproc import REPO, client, client_body, exchange, load_vectors, request_bytes, serve_once_each

sys.path.insert(0, str(REPO / "tests" / "student"))
import api  # noqa: E402  (the student's safe unpickler and message helpers)

PROTOCOLS = (0, 1, 2, 3)


# The same requests as CPython 3.11.2 pickles them (enum members by name): what pickle.dumps of
# the stand-in's objects gives when this interpreter is such a CPython.
BY_NAME = {v["request"]["payload"]: w["request"]["payload"]
           for v, w in zip(load_vectors(quirks=True), load_vectors("legacy-expressions-py3.11.2.jsonl", quirks=True))}


def repickle(payload_hex, protocol):
    """The payload's objects pickled again with `protocol`, by this interpreter (so enum members
    by value or by name, as it pickles them)."""
    obj = api.loads(bytes.fromhex(payload_hex))
    # the objects are faithful: protocol 4 gives the reference's bytes under this Python
    assert pickle.dumps(obj, protocol=4).hex() in (payload_hex, BY_NAME.get(payload_hex))
    return pickle.dumps(obj, protocol=protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_answers_old_protocol_requests_like_protocol_4(procs, protocol):
    _, port = procs.server()
    bad = []
    vectors = load_vectors()
    for v in vectors:
        payload = repickle(v["request"]["payload"], protocol)
        got = exchange(port, request_bytes(payload))
        if got[12:].hex() != v["steps"]["payload"]:
            bad.append((v["name"], v["input"][:60], got[12:80]))
    print(f"protocol {protocol}: {len(vectors) - len(bad)}/{len(vectors)} vectors answered as protocol 4")
    assert not bad, bad[:5]


def answer(payload, status=200, steps=True):
    flags = (1 << 12) | (steps << 11) | status
    return struct.pack("!LHHHxx", 0, 12 + len(payload), flags, 65535) + payload


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_client_prints_old_protocol_answers_like_protocol_4(protocol):
    vectors = load_vectors()[::7]  # every seventh vector: ints, floats, big ints, errors
    answers = []
    for v in vectors:
        s = v["steps"]
        answers.append(answer(repickle(s["payload"], protocol), s["status"], s["show_steps"]))
    port, t = serve_once_each(answers)
    bad = []
    for v in vectors:
        r = client(port, v["input"])
        if client_body(r.stdout, port) != v["steps"]["client_prints"]:
            bad.append((v["name"], r.stdout[-300:]))
    t.join(timeout=10)
    assert not bad, bad[:3]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_client_prints_old_protocol_errors(protocol):
    """Error answers (exception objects, and the proxy's refused-upstream 500 with an exception
    inside a tuple) pickled with an old protocol print as the protocol-4 ones do."""
    import json
    from calcproc import VECTORS
    vs = [json.loads(l) for l in open(VECTORS / "legacy-protocol.jsonl")]
    answers = [bytes.fromhex(v["response"]) for v in vs if v["response"]]
    def output(port):  # the client's output but the port and the response length (which differ)
        out = client(port, "1 + 1").stdout.replace(f"127.0.0.1:{port}", "server")
        return [line for line in out.splitlines() if "Got response of length" not in line]
    port4, t4 = serve_once_each(answers)
    want = [output(port4) for _ in answers]
    t4.join(timeout=10)
    old = []
    for a in answers:
        p = repickle(a[12:].hex(), protocol)
        old.append(a[:4] + struct.pack("!H", 12 + len(p)) + a[6:12] + p)  # the same header, new length
    port, t = serve_once_each(old)
    got = [output(port) for _ in answers]
    t.join(timeout=10)
    assert got == want
    assert any("Internal proxy error" in line for w in want for line in w), want[-1]
