"""The Wireshark dissector lab/wireshark/calc.lua, cross-checked against calc-sniff.

The dissector is the plugin the build assembles in build/wireshark (calc.lua, its modules and
the limits generated from libcalc's headers), as lab/wireshark/install copies it.

tshark with the dissector and `calc-sniff --json` must find the same messages in the same
captures: sizes, header fields, expressions, results and errors, message by message. The
captures: every golden capture, a live run of our programs on free loopback ports (captured by
calc-sniff), two goldens converted to DLT_NULL (the report's Windows captures), crafted
captures with messages split over several segments and several messages in one segment (the
framing fuzz corpus replayed in its chunk sizes, plus hand-made cases), the reference's own
exchanges (captures/vectors, also checked against the reference's printed expressions and
client output, steps included), and the pickle decoder's fuzz corpus wrapped into requests and
responses: hostile payloads that must give no Lua error and, where calc-sniff decodes them,
the same text.

tshark prints `-T json --no-duplicate-keys`, not `-T fields`: with several messages in one
segment, -T fields joins each field's values across the frame, and a message without an
expression would shift the others' texts; JSON keeps one object per message. The tshark runs
are batched in one module fixture, two at a time (tshark takes about a second to start)."""
import concurrent.futures
import datetime
import decimal
import json
import os
import pickle
import random
import re
import shutil
import struct
import subprocess
import sys
import time

import pytest

from calcproc import Procs, client, exe, free_port
from conftest import REPO, VECTORS, build_dir
import refvectors
from refvectors import student_calculator

sys.path.insert(0, str(REPO / "lab"))
from calclab_lab.pcapio import checksum  # noqa: E402  (the lab's own; its rewrites make checksums too)

LUA = build_dir() / "wireshark" / "calc.lua"
CAPTURES = REPO / "captures"
FUZZ = REPO / "fuzz" / "corpus"
# Debian's tshark package (ci/deps installs it); a missing tshark fails the tests.
TSHARK = shutil.which("tshark") or "tshark"
MSG_DESER = "Received data could not be deserialized"
# calc-sniff keeps at most 4096 bytes of decoded text per message (docs/sniff.md, Limits).
SNIFF_TEXT_MAX = 4096


# ---- crafting captures: a stdlib pcap writer (Ethernet or DLT_NULL, IPv4, TCP)

DLT_NULL, DLT_EN10MB = 0, 1
LO = bytes([127, 0, 0, 1])
SYN, FIN, PSH_ACK, ACK, SYN_ACK, FIN_ACK, RST_ACK, FIN_PSH_ACK = 0x02, 0x01, 0x18, 0x10, 0x12, 0x11, 0x14, 0x19
# IPv4's 16-bit total length leaves 65495 bytes of TCP payload per segment.
MAX_SEGMENT = 65495


class Pcap:
    """Packets of TCP connections on loopback, written as a pcap file of one link type."""

    def __init__(self, linktype=DLT_EN10MB):
        self.linktype = linktype
        self.records = []
        self.t = 1_700_000_000.0

    def packet(self, sport, dport, seq, ack, flags, data=b""):
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags,
                          65483, 0, 0) + data
        pseudo = LO + LO + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, LO, LO)
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
        link = struct.pack("<I", 2) if self.linktype == DLT_NULL else b"\0" * 12 + b"\x08\x00"
        self.t += 0.0001
        self.records.append((self.t, link + ip + tcp))

    def write(self, path):
        with open(path, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, self.linktype))
            for t, frame in self.records:
                sec, usec = int(t), int(round((t - int(t)) * 1e6))
                f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)


class Conn:
    """One TCP connection: handshake (or none: a capture begun later), data in chosen segment
    sizes either way, FIN teardown."""

    def __init__(self, cap, cport, sport, handshake=True):
        self.cap, self.ports = cap, {"c": (cport, sport), "s": (sport, cport)}
        self.seq = {"c": 1000, "s": 5000}
        if handshake:
            cap.packet(cport, sport, 999, 0, SYN)
            cap.packet(sport, cport, 4999, 1000, SYN_ACK)
            cap.packet(cport, sport, 1000, 5000, ACK)

    def send(self, side, data, sizes=None):
        """Sends data from side "c" or "s" in segments of the given sizes (cycled), else whole."""
        other = "s" if side == "c" else "c"
        i, k = 0, 0
        while i < len(data):
            n = sizes[k % len(sizes)] if sizes else len(data)
            n = min(n, MAX_SEGMENT, len(data) - i)
            self.cap.packet(*self.ports[side], self.seq[side], self.seq[other], PSH_ACK, data[i:i + n])
            self.seq[side] += n
            i, k = i + n, k + 1

    def close(self, first="c"):
        """FIN teardown, side first first."""
        a, b = first, "s" if first == "c" else "c"
        self.cap.packet(*self.ports[a], self.seq[a], self.seq[b], FIN_ACK)
        self.cap.packet(*self.ports[b], self.seq[b], self.seq[a] + 1, FIN_ACK)
        self.cap.packet(*self.ports[a], self.seq[a] + 1, self.seq[b] + 1, ACK)

    def reset(self, side):
        self.cap.packet(*self.ports[side], self.seq[side], self.seq["s" if side == "c" else "c"], RST_ACK)

    def send_fin(self, side, data):
        """data and the side's FIN in one segment."""
        other = "s" if side == "c" else "c"
        self.cap.packet(*self.ports[side], self.seq[side], self.seq[other], FIN_PSH_ACK, data)
        self.seq[side] += len(data) + 1

    def skip(self, side, n):
        """n bytes of the side's stream that the capture never saw."""
        self.seq[side] += n


def message(payload, request=True, status=200, cache=True, steps=True, cc=65535, t=0x638F6089, total=None):
    flags = (cache << 12) | (steps << 11) | (request << 10) | (0 if request else status)
    return struct.pack("!IHHHH", t, 12 + len(payload) if total is None else total, flags, cc, 0) + payload


def read_pcap(path):
    """A classic little-endian pcap file: its header's fields and its records (sec, usec, wire
    length, frame)."""
    data = path.read_bytes()
    header = struct.unpack("<IHHiIII", data[:24])
    assert header[0] == 0xA1B2C3D4
    records, off = [], 24
    while off < len(data):
        sec, usec, caplen, wirelen = struct.unpack("<IIII", data[off:off + 16])
        records.append((sec, usec, wirelen, data[off + 16:off + 16 + caplen]))
        off += 16 + caplen
    return header, records


def write_pcap(path, header, records):
    path.write_bytes(b"".join([struct.pack("<IHHiIII", *header)] +
                              [struct.pack("<IIII", sec, usec, len(frame), wirelen) + frame
                               for sec, usec, wirelen, frame in records]))


def golden_payloads():
    """The messages of captures/3.3.pcap, in capture order: each is one segment's data."""
    out = []
    for _, _, _, frame in read_pcap(CAPTURES / "3.3.pcap")[1]:
        payload = frame[14 + 20 + (frame[14 + 20 + 12] >> 4) * 4:]
        if len(payload) >= 12:
            out.append(payload)
    return out


def to_dlt_null(src, dst):
    """Rewrites an Ethernet IPv4 capture as DLT_NULL (BSD loopback, as Windows' Npcap writes)."""
    header, records = read_pcap(src)
    assert header[6] == DLT_EN10MB and all(frame[12:14] == b"\x08\x00" for _, _, _, frame in records)
    write_pcap(dst, header[:6] + (DLT_NULL,),
               [(sec, usec, wirelen - 10, struct.pack("<I", 2) + frame[14:]) for sec, usec, wirelen, frame in records])


def snaplen_cut(src, dst, snaplen):
    """The capture as a capture with that snaplen would have kept it."""
    header, records = read_pcap(src)
    write_pcap(dst, header[:5] + (snaplen, header[6]),
               [(sec, usec, wirelen, frame[:snaplen]) for sec, usec, wirelen, frame in records])


def craft_segments(path, proxy_port=9998, server_port=9999):
    """Split and merged messages: hand-made cases, then every stream of the framing fuzz corpus
    replayed in the chunk sizes its first byte gives (fuzz/fuzz_frame.c)."""
    cap = Pcap()
    msgs = golden_payloads()
    req = next(m for m in msgs if m[6] & 0x04)         # the T bit: a request
    resp = next(m for m in msgs if not m[6] & 0x04)
    port = 40000
    c = Conn(cap, port, server_port)      # one request in 6 segments (its header split too), answer in 2
    c.send("c", req, [5, 300])
    c.send("s", resp, [400])
    c.close()
    c = Conn(cap, port + 1, server_port)  # 2.5 requests in one segment, then the rest; 3 answers in one
    c.send("c", req + req + req, [2 * len(req) + 100])
    c.send("s", resp * 3)
    c.close()
    c = Conn(cap, port + 2, proxy_port)   # a good message, then a total length below 12: framing stops
    c.send("c", req + message(b"", total=5) + req)
    c.close()
    c = Conn(cap, port + 3, server_port)  # header-only messages: an empty request, an empty 400 answer
    c.send("c", message(b""))
    c.send("s", message(b"", request=False, status=400))
    c.close()
    for i, f in enumerate(sorted((FUZZ / "fuzz_frame").iterdir())):
        data = f.read_bytes()
        if len(data) < 2:
            continue
        c = Conn(cap, port + 10 + i, server_port)
        c.send("c", data[1:], [data[0] % 37 + 1])
        c.close()
    cap.write(path)


def craft_cut_short(path):
    """Messages their stream's end cut short: a proxy that forwards only the 12-byte header
    upstream, then closes (the server closes too; the proxy answers its client); a request
    reset (RST) after its second segment; an answer whose last segment carries the server's
    FIN; headers cut inside by a FIN (5 bytes: no total length) and by the server's RST (8
    bytes: length and kind known); a request answered after its sender's FIN cut it (the
    reference answers a short request); and one whose bytes went missing before the FIN (a
    gap: bytes missing, not cut short, in both decoders). Returns the expected Info of each
    cut-short message, in frame order."""
    cap = Pcap()
    msgs = golden_payloads()
    req = next(m for m in msgs if m[6] & 0x04)
    resp = next(m for m in msgs if not m[6] & 0x04)
    c = Conn(cap, 42000, 9998)
    c.send("c", req)
    up = Conn(cap, 42001, 9999)
    up.send("c", req[:12])
    up.close()
    c.send("s", resp)
    c.close()
    c = Conn(cap, 42002, 9999)
    c.send("c", req[:300], [100, 200])
    c.reset("c")
    c = Conn(cap, 42003, 9999)
    c.send("c", req)
    c.send("s", resp[:400])
    c.send_fin("s", resp[400:500])
    c.close("c")
    c = Conn(cap, 42004, 9999)
    c.send("c", req[:5])
    c.close()
    c = Conn(cap, 42005, 9999)
    c.send("c", req[:8])
    c.reset("s")
    c = Conn(cap, 42006, 9998)
    c.send("c", req[:200])
    c.send_fin("c", b"")
    c.send("s", resp)
    c.close("s")
    c = Conn(cap, 42007, 9999)
    c.send("c", req[:100])
    c.skip("c", 50)
    c.close()
    cap.write(path)
    n = len(req)
    return [f"Request {n} B cut short by FIN: {n - 12} B missing",
            f"Request {n} B in 2 segments cut short by RST: {n - 300} B missing",
            f"Response {len(resp)} B in 2 segments cut short by FIN: {len(resp) - 500} B missing",
            "Malformed message: cut short by FIN after 5 B",
            f"Request {n} B cut short by RST: {n - 8} B missing",
            f"Request {n} B cut short by FIN: {n - 200} B missing"]


# The reference's expression vectors in both pickle flavours: enum members by value (most
# CPythons) and by name, getattr(Associativity, 'LEFT'), as Debian 12's python3 (3.11.2) writes them.
FLAVOURS = {"vectors": "legacy-expressions.jsonl", "vectors-py3.11.2": "legacy-expressions-py3.11.2.jsonl"}


def reference_vectors(name="vectors"):
    return refvectors.load(FLAVOURS[name])


def craft_vectors(path, name="vectors"):
    """The reference's own exchanges (captures/vectors): each request, then its answer with
    steps and its answer without, on one connection."""
    cap = Pcap()
    c = Conn(cap, 43000, 9999)
    for v in reference_vectors(name):
        c.send("c", message(bytes.fromhex(v["request"]["payload"])))
        for k in ("steps", "nosteps"):
            a = v[k]
            c.send("s", message(bytes.fromhex(a["payload"]), request=False, status=a["status"], cache=a["cache"],
                                steps=a["show_steps"], cc=a["cache_control"]))
    c.close()
    cap.write(path)


def extreme_requests():
    """(tree, pickle) of requests at libcalc's limits: nesting of 200 levels (accepted) and
    201 (refused), a 1024-leaf tree printed to more than calc-sniff's 4096 bytes, numbers that
    print in every float notation, big ints, and the bracket quirk."""
    c = student_calculator()
    out = refvectors.at_the_depth_limit(c)
    leaves = [c.Constant(i * 7919) for i in range(1024)]
    while len(leaves) > 1:
        leaves = [c.BinaryExpr(leaves[i], (c.ADD, c.MUL, c.POW, c.MOD)[i % 4], leaves[i + 1])
                  for i in range(0, len(leaves), 2)]
    out.append(leaves[0])
    nums = [1e16, 1e15, 1e-5, 1e-4, 0.1, -0.0, 5e-324, 1.7976931348623157e308, float("inf"),
            float("nan"), 2.0 ** 0.5, 123456789012345.6, 10 ** 4000, -(2 ** 5000), 2 ** 70, -(2 ** 53)]
    out.append(c.FunctionCallExpr(c.MAX, *[c.Constant(x) for x in nums], c.PI, c.TAU, c.E))
    out.append(c.parse("-(-(1 + 2) * -(( - 4)))"))
    out.append(c.parse("2 ** 3 ** -(4 - +5) % sqrt(log(9, 3)) / (((7)))"))
    return [(e, pickle.dumps(e)) for e in out]


def extreme_responses():
    """Responses at the printers' corners: a result text past calc-sniff's 4096 bytes, complex
    results, the OSError family, KeyError, nested errors, control and non-ASCII characters,
    nesting of 200 levels (accepted) and 201 (refused)."""
    deep = {}
    for depth in (199, 200):
        x = []
        for _ in range(depth):
            x = [x]
        deep[depth] = x
    objs = [([(10 ** 4299 + i) * (-1) ** i for i in range(12)], []), (1 + 2j, []), (complex(0, -0.0), ["x"]),
            (complex(-0.0, float("nan")), []), ConnectionRefusedError(111, "Connection refused"),
            OSError(2, "No such file", "/x", None, "/y"), KeyError("k'ey"), ValueError(),
            ZeroDivisionError("a", 1, None, True, b"\x00'\"", {"k": (1,)}),
            ("a\x01b\u2028c\U0001f600 '\"\\", ["step 1", "2"]), deep[199], deep[200]]
    return [pickle.dumps(o) for o in objs] + [pickle.dumps((x, [])) for x in random_float_lists()]


def random_float_lists():
    """Doubles from random bit patterns (subnormals, huge, tiny, negative; no NaN, whose repr
    hides its bits), 100 per list: the dissector's repr(float) against Python's."""
    rng = random.Random(15)
    lists = []
    for _ in range(20):
        xs = []
        while len(xs) < 100:
            x = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64) >> rng.choice((0, 0, 1, 8, 12))))[0]
            if x == x:
                xs.append(x)
        lists.append(xs)
    return lists


class RunsACommand:
    """Pickles as a call of command(arg): a real unpickler would run it."""

    def __init__(self, command, arg):
        self.command, self.arg = command, arg

    def __reduce__(self):
        return self.command, (self.arg,)


def would_execute(marker):
    """Pickles that make CPython's unpickler create `marker` (os.system, eval, exec), protocol
    0 and 4: the dissector must refuse or merely record them."""
    cmd = f"touch {marker}"
    py = f"__import__('os').system({cmd!r})"
    out = [f"cos\nsystem\n(S'{cmd}'\ntR.".encode()]
    for fn, arg in ((os.system, cmd), (eval, py), (exec, py)):
        for proto in (0, 4):
            out.append(pickle.dumps(RunsACommand(fn, arg), protocol=proto))
    return out


def craft_hostile(path, marker):
    """Every payload of the pickle decoder's fuzz corpus, the extreme requests and responses
    and the would-be-executing pickles, each as a request on one connection and as a 200
    response on another (payloads too big for one message are cut to fit). Returns the
    number of payloads."""
    cap = Pcap()
    payloads = [f.read_bytes()[:65535 - 12] for f in sorted((FUZZ / "fuzz_unpickle").iterdir())]
    payloads += [p for _, p in extreme_requests()] + extreme_responses() + would_execute(marker)
    c = Conn(cap, 41000, 9999)
    for p in payloads:
        c.send("c", message(p))
    c.close()
    c = Conn(cap, 41001, 9999)
    for p in payloads:
        c.send("s", message(p, request=False))
    c.close()
    cap.write(path)
    return len(payloads)


def live_capture(tmp, path):
    """Our server, proxy and client on free loopback ports, captured by calc-sniff: results,
    steps, 400 errors, a big int, rand's 4 KB request and the proxy's refused answer."""
    procs = Procs(tmp)
    try:
        _, sport = procs.server()
        _, pport = procs.proxy(sport)
        _, dead_pport = procs.proxy(free_port())
        ready = tmp / "ready"
        sniff = subprocess.Popen([exe("calc-sniff"), "-i", "lo", "-p", f"{sport},{pport},{dead_pport}",
                                  "--duration", "20", "--ready-file", str(ready), "-w", str(path), "--stats"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 10
        while not ready.exists():
            assert time.time() < deadline and sniff.poll() is None, "calc-sniff never became ready"
            time.sleep(0.02)
        for port, expr, extra in [(sport, "max(2, 3) + 3", ()), (pport, "1 / 0", ()),
                                  (pport, "(1 + 2) * 3 ** 2", ("--pickle-flavour", "getattr")),
                                  (sport, "2 - 3 % 4 / 5", ("--pickle-flavour", "getattr")),
                                  (pport, "2 ** 200 - 7 % 3", ()), (sport, "sqrt(-1)", ("--no-steps",)),
                                  (pport, "rand(1, 2) * 0", ()), (sport, "-(-(1 + 2) * -((-4)))", ()),
                                  (sport, "pi * 1e300 * 1e10 - tau / 3", ()), (dead_pport, "1 + 1", ())]:
            client(port, expr, *extra)
        time.sleep(0.2)
        sniff.send_signal(2)
        sniff.wait(timeout=15)
    finally:
        procs.stop_all()
    return [str(p) for p in (sport, pport, dead_pport)]


# ---- the two decoders

def run_tshark(path, *opts):
    """tshark with the dissector: per calculator message (PDU), its frame, stream, source port,
    header fields and texts. Fails on any Lua error."""
    r = subprocess.run([TSHARK, "-X", f"lua_script:{LUA}", *opts, "-r", str(path), "-T", "json",
                        "--no-duplicate-keys", "-J", "frame tcp calc"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    for out in (r.stdout, r.stderr):
        assert "Lua Error" not in out and "Lua: Error" not in out, out[:2000]
    msgs = []
    for pkt in json.loads(r.stdout):
        layers = pkt["_source"]["layers"]
        pdus = layers.get("calc")
        if pdus is None:
            continue
        for p in pdus if isinstance(pdus, list) else [pdus]:
            msgs.append({"frame": int(layers["frame"]["frame.number"]), "epoch": layers["frame"]["frame.time_epoch"],
                         "stream": int(layers["tcp"]["tcp.stream"]), "sport": int(layers["tcp"]["tcp.srcport"]),
                         "dport": int(layers["tcp"]["tcp.dstport"]),
                         **p})
    return msgs


def tshark_time(text):
    """calc.time as tshark prints an absolute UTC time ('Dec  6, 2022 15:32:25.000000000 UTC')."""
    text = re.sub(r"\s+", " ", re.sub(r"\.\d+ UTC$", "", text))
    dt = datetime.datetime.strptime(text, "%b %d, %Y %H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return int(dt.timestamp())


def experts(tree):
    """The calc expert infos anywhere in one PDU's JSON tree: {expert name: message}."""
    found = {}
    if isinstance(tree, list):
        for x in tree:
            found.update(experts(x))
    elif isinstance(tree, dict):
        for k, v in tree.items():
            if k.startswith("calc.") and "_ws.expert.message" in tree:
                found[k] = tree["_ws.expert.message"]
            found.update(experts(v))
    return found


def tshark_view(p):
    """One tshark PDU reduced to what calc-sniff's JSON says about a message."""
    fl = p.get("calc.flags_tree", {})
    ex = experts(p)
    had = None
    if "calc.cut_short" in ex:
        if "calc.missing" not in p:
            return {"cut": True, "had": int(re.search(r"first (\d+) bytes", ex["calc.cut_short"]).group(1))}
        had = int(p["calc.length"]) - int(p["calc.missing"])
        if had < 12:
            return {"cut": True, "had": had}
    if "calc.expression" in p:
        text = p["calc.expression"]
    elif "calc.result" in p:
        text = p["calc.result"]
    elif "calc.error.type" in p:
        text = f'{p["calc.error.type"]}: {p["calc.error.message"]}'
    elif "calc.undecodable" in ex:
        text = ex["calc.undecodable"].replace("Undecodable", "undecodable", 1)
    else:
        text = None
    return {"size": int(p["calc.length"]), "time": tshark_time(p["calc.time"]),
            "request": fl.get("calc.flags.request") == "1", "cache": fl.get("calc.flags.cache") == "1",
            "steps": fl.get("calc.flags.steps") == "1", "reserved": int(fl.get("calc.flags.reserved", "0"), 16),
            "status": int(p["calc.status"]), "cache_control": int(p["calc.cache_control"]), "text": text,
            "malformed": "calc.undecodable" in ex or "calc.bad_length" in ex, "cut": had is not None, "had": had}


def cut_short(m, conns):
    """Whether calc-sniff's message m was cut short by its stream's end: not whole, none of its
    bytes missing, and its direction ended by its sender's FIN or by a RST (Zeek's history
    letters: F/f a FIN from the originator/responder, R/r a RST)."""
    history = conns[m["conn"]]["history"]
    ended = ("F" if m["dir"] == "orig" else "f") in history or "R" in history or "r" in history
    return not m["complete"] and not m["bytes_missing"] and not m["malformed"] and ended


def run_sniff(path):
    r = subprocess.run([exe("calc-sniff"), "-r", str(path), "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    # JSON Lines: split at \n only (str.splitlines() also splits inside texts holding U+2028)
    recs = [json.loads(line) for line in r.stdout.split("\n") if line]
    conns = {c["id"]: c for c in recs if c["type"] == "conn"}
    msgs = [m for m in recs if m["type"] == "msg" and (m["complete"] or m["malformed"] or cut_short(m, conns))]
    for m in msgs:
        if cut_short(m, conns):
            # the last message of its direction: the direction's bytes less the whole ones before it
            m["had"] = conns[m["conn"]][m["dir"] + "_dir"]["bytes"] - sum(
                o["size"] for o in recs if o["type"] == "msg" and (o["conn"], o["dir"]) == (m["conn"], m["dir"])
                and o["index"] < m["index"])
    return {"conns": conns, "msgs": msgs}


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def sniff_view(m):
    """What calc-sniff says about a message: for one cut short, the bytes it had, and its header
    only where it came whole (calc-sniff shows a header cut inside as size 0)."""
    h = m["header"]
    text = m.get("expression", m.get("result"))
    had = m.get("had")
    if had is not None:
        if m["nsegments"] <= len(m["segments"]):
            assert had == sum(m["segments"])
        if had < 12:
            return {"cut": True, "had": had}
    return {"size": m["size"], "time": h["time"], "request": h["request"], "cache": h["cache"],
            "steps": h["steps"], "reserved": h["reserved"], "status": h["status"],
            "cache_control": h["cache_control"], "text": text, "malformed": m["malformed"],
            "cut": had is not None, "had": had}


def jobs(tmp):
    """(name, path, tshark options) of every capture the cross-check reads."""
    out = [(p.stem, p, ()) for p in sorted(CAPTURES.glob("*.pcap"))]
    for name in ("3.2", "3.3"):
        dst = tmp / f"{name}-dlt-null.pcap"
        to_dlt_null(CAPTURES / f"{name}.pcap", dst)
        out.append((f"{name}-dlt-null", dst, ()))
    # 14 bytes of each message kept: its header and the pickle's first two bytes
    snaplen_cut(CAPTURES / "3.3.pcap", tmp / "3.3-snaplen.pcap", 14 + 20 + 32 + 14)
    out.append(("3.3-snaplen", tmp / "3.3-snaplen.pcap", ()))
    craft_segments(tmp / "segments.pcap")
    out.append(("segments", tmp / "segments.pcap", ()))
    for name in FLAVOURS:
        craft_vectors(tmp / f"{name}.pcap", name)
        out.append((name, tmp / f"{name}.pcap", ()))
    craft_cut_short(tmp / "cut.pcap")
    out.append(("cut", tmp / "cut.pcap", ()))
    # the other test files' captures: calc-sniff's file-reading test (120 connections of large
    # split messages, undecodable payloads) and scenario 3.2 crafted from each vectors file
    import test_sniff_files
    (tmp / "sniff-files.pcap").write_bytes(test_sniff_files.pcap_bytes(test_sniff_files.records()))
    out.append(("sniff-files", tmp / "sniff-files.pcap", ()))
    for name, vectors in FLAVOURS.items():
        subprocess.run([sys.executable, str(REPO / "tests" / "bench" / "craft_capture.py"),
                        str(tmp / f"3.2-{name}.pcap"), str(VECTORS / vectors), "3.2", "2"], check=True, capture_output=True)
        out.append((f"3.2-{name}", tmp / f"3.2-{name}.pcap", ()))
    craft_hostile(tmp / "hostile.pcap", tmp / "EXECUTED")
    out.append(("hostile", tmp / "hostile.pcap", ()))
    ports = live_capture(tmp, tmp / "live.pcap")
    # The live run's ports: one through the dissector's port preference, the others by Decode As.
    out.append(("live", tmp / "live.pcap", ("-o", f"calc.ports:{ports[0]}", "-d", f"tcp.port=={ports[1]},calc",
                                           "-d", f"tcp.port=={ports[2]},calc")))
    return out


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wireshark")
    todo = jobs(tmp)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        ts = {name: pool.submit(run_tshark, path, *opts) for name, path, opts in todo}
        sn = {name: pool.submit(run_sniff, path) for name, path, _ in todo}
        return {name: (ts[name].result(), sn[name].result(), path) for name, path, _ in todo}


NAMES = [p.stem for p in sorted(CAPTURES.glob("*.pcap"))] + ["3.2-dlt-null", "3.3-dlt-null", "3.3-snaplen",
                                                              "segments", *FLAVOURS, "cut", "sniff-files",
                                                              *(f"3.2-{name}" for name in FLAVOURS), "hostile", "live"]


def texts_agree(ours, sniff):
    """calc-sniff keeps 4096 bytes of text at most, and an expression it cannot print whole is
    empty: where the dissector's text is that long, calc-sniff's must begin it."""
    if ours is not None and sniff is not None and len(ours.encode()) > SNIFF_TEXT_MAX - 64:
        return ours.startswith(sniff)
    return ours == sniff


def by_direction(msgs, conn, ports):
    """Messages grouped by direction, each group in order: {(the connection's port pair, its
    place among the connections with that pair, the sending port): [messages]}. conn(m) names
    m's connection, ports(m) its (source, destination) ports."""
    place, count, out = {}, {}, {}
    for m in msgs:
        src, dst = ports(m)
        if conn(m) not in place:
            pair = tuple(sorted((src, dst)))
            place[conn(m)] = (pair, count.get(pair, 0))
            count[pair] = count.get(pair, 0) + 1
        out.setdefault(place[conn(m)] + (src,), []).append(m)
    return out


def tshark_ports(m):
    """A PDU's (source, destination) ports: its frame's, or for a message cut short, where it
    was sent from (a RST from the other side may have ended it)."""
    if "calc.sender_port" in m:
        sender = int(m["calc.sender_port"])
        return (sender, m["dport"] if sender == m["sport"] else m["sport"])
    return m["sport"], m["dport"]


def sniff_ports(conns):
    def ports(m):
        c = conns[m["conn"]]
        orig, resp = port_of(c["orig"]), port_of(c["resp"])
        return (orig, resp) if m["dir"] == "orig" else (resp, orig)
    return ports


@pytest.mark.parametrize("name", NAMES)
def test_same_messages_as_calc_sniff(decoded, name):
    """Message for message, direction by direction (a message cut short shows in the frame that
    ended its stream, which may come after messages calc-sniff lists later)."""
    tshark_msgs, sniff, _ = decoded[name]
    smsgs = sniff["msgs"]
    assert len(tshark_msgs) == len(smsgs), f"{name}: tshark {len(tshark_msgs)} messages, calc-sniff {len(smsgs)}"
    assert smsgs, f"{name}: no messages"
    ours = by_direction(tshark_msgs, lambda m: m["stream"], tshark_ports)
    theirs = by_direction(smsgs, lambda m: m["conn"], sniff_ports(sniff["conns"]))
    assert ours.keys() == theirs.keys(), name
    for key, ts in ours.items():
        for i, (t, s) in enumerate(zip(ts, theirs[key])):
            tv, sv = tshark_view(t), sniff_view(s)
            where = f"{name} message {i + 1} of {key} (frame {t['frame']}, conn {s['conn']} {s['dir']} #{s['index']})"
            st, ss = tv.pop("text", None), sv.pop("text", None)
            assert tv == sv, where
            assert texts_agree(st, ss), f"{where}: tshark {st!r}\ncalc-sniff {ss!r}"
        assert len(ts) == len(theirs[key]), (name, key)


def test_cut_short_messages(decoded):
    """The crafted messages their stream's end cut short: each shown in the frame that ended it
    (calc.cut_short, the bytes that never came in calc.missing), as calc-sniff reports them
    (the cross-check above); the message whose bytes went missing before the FIN is not one;
    a request cut short and then answered is the answer's request."""
    tshark_msgs, sniff, path = decoded["cut"]
    cut = [m for m in tshark_msgs if "calc.cut_short" in experts(m)]
    infos = info_column(path, shown="calc.cut_short")
    assert list(infos.values()) == craft_cut_short(path.parent / "again.pcap")
    assert [m["frame"] for m in cut] == list(infos)
    assert sum(cut_short(m, sniff["conns"]) for m in sniff["msgs"]) == len(cut) == 6
    # answers: the whole one (frame 12), the one cut short (frame 27), and the one that answers
    # the request cut short (frame 48, the request shown in its FIN's frame 47)
    answered = run_tshark(path, "-Y", "calc.request_in")
    assert [(m["frame"], int(m["calc.request_in"])) for m in answered] == [(12, 4), (27, 25), (48, 47)]


def test_split_and_merged_segments_are_covered(decoded):
    """The crafted capture really holds messages in several segments and segments with several
    messages, and the message cut short by a bad total length is marked, not decoded."""
    tshark_msgs, sniff, _ = decoded["segments"]
    assert sum(m["nsegments"] > 1 for m in sniff["msgs"]) >= 50
    assert sum(m["shares_segment"] for m in sniff["msgs"]) >= 50
    frames = [m["frame"] for m in tshark_msgs]
    assert max(frames.count(f) for f in frames) >= 3
    bad = [m for m in tshark_msgs if "calc.bad_length" in experts(m)]
    assert bad and all(int(m["calc.length"]) < 12 for m in bad)


def test_hostile_payloads_decode_safely(decoded):
    """The fuzz corpus and the crafted payloads through the dissector: each is a message with a
    text or an expert info, and the pickles that would run a command ran nothing (the
    dissector records calls and never makes one)."""
    tshark_msgs, sniff, path = decoded["hostile"]
    marker = path.parent / "EXECUTED"
    n = craft_hostile(path.parent / "again.pcap", marker)
    assert len(tshark_msgs) == 2 * n
    assert not marker.exists()
    views = [tshark_view(m) for m in tshark_msgs]
    assert all(v["text"] is not None for v in views)
    undecodable = sum(v["malformed"] for v in views)
    assert 0 < undecodable < len(views)
    requests = [v["text"] for v in views if v["request"]]
    assert requests[-len(would_execute(marker)):] == ["undecodable request: " + MSG_DESER] * len(would_execute(marker))


def client_prints(p):
    """What the reference client prints for a response (docs/protocol.md section 4), from the dissector's
    fields: the result and its steps, or the error."""
    steps = p.get("calc.steps.count_tree", {}).get("calc.steps", [])
    return refvectors.client_prints(p.get("calc.result"), [steps] if isinstance(steps, str) else steps,
                                    p.get("calc.error.message"))


@pytest.mark.parametrize("name", FLAVOURS)
def test_reference_vectors(decoded, name):
    """Against the reference itself, in both pickle flavours: every vector's expression as it
    printed it, and its client's output (result, steps, errors) rebuilt from the dissector's
    fields. The two quirk vectors (a complex result, docs/protocol.md section 2.2) make the reference client
    fail on what it received, which no field shows: their answers are checked by calc-sniff only."""
    msgs = iter(decoded[name][0])
    for v in reference_vectors(name):
        assert next(msgs)["calc.expression"] == v["text"], v["name"]
        for k in ("steps", "nosteps"):
            answer = next(msgs)
            assert v.get("quirk") or client_prints(answer) == v[k]["client_prints"], (v["name"], k)


def test_extreme_requests_print_as_the_reference_does(decoded):
    """The crafted requests against the student implementation's stringify() (a third printer):
    200 levels of nesting (201 refused), the 4 KB+ printout, every float notation, big ints,
    the bracket quirk."""
    c = student_calculator()
    first = len(list((FUZZ / "fuzz_unpickle").iterdir()))
    texts = [v["text"] for v in map(tshark_view, decoded["hostile"][0]) if v["request"]]
    for i, (tree, _) in enumerate(extreme_requests()):
        want = c.stringify(tree) if i != 1 else "undecodable request: Expression too deeply nested (limit 200 levels)"
        assert texts[first + i] == want, f"extreme request {i}"


def test_floats_print_as_python_repr(decoded):
    """Python itself is the oracle for repr(float): 2000 doubles of every magnitude."""
    results = [v["text"] for v in map(tshark_view, decoded["hostile"][0]) if not v["request"]]
    floats = random_float_lists()
    assert results[-len(floats) - len(would_execute("M")):-len(would_execute("M"))] == [str(x) for x in floats]


# How calc-sniff's notes begin (docs/sniff.md): a piece of a "; "-joined note line that begins
# otherwise belongs to the text of the note before it.
NOTE_START = re.compile(r"(request|response) \d+ B|malformed (request|response)|3-way handshake|cache hit|"
                        r"answered after|upstream of|refused|SYN retry|port reused|FIN |RST |retransmission|"
                        r"overlap|out of order|gap of|snaplen cut|connection #|bytes missing")
MESSAGE_NOTE = re.compile(r"(request|response) \d+ B|malformed (request|response)")


def message_notes(timeline):
    """calc-sniff's timeline: {frame number: its message notes, in order}."""
    out = {}
    for line in timeline.split("\n"):
        m = re.match(r"\s*(\d+) .*? \| (.*)$", line)
        if not m:
            continue
        notes = []
        for piece in m.group(2).split("; "):
            if notes and not NOTE_START.match(piece):
                notes[-1] += "; " + piece
            else:
                notes.append(piece)
        kept = [n for n in notes if MESSAGE_NOTE.match(n)]
        if kept:
            out[int(m.group(1))] = kept
    return out


def info_column(path, *opts, shown="calc"):
    """tshark's Info column of every frame the display filter shows (by default every frame with
    calculator data): {frame number: Info}. Fails on any Lua error (the expert infos are read
    for it: an error in the dissector is one)."""
    r = subprocess.run([TSHARK, "-X", f"lua_script:{LUA}", *opts, "-r", str(path), "-Y", shown, "-T", "fields",
                        "-e", "frame.number", "-e", "_ws.expert.message", "-e", "_ws.col.Info"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Lua" not in r.stderr and "Lua Error" not in r.stdout, (r.stderr + r.stdout)[:2000]
    rows = [line.split("\t", 2) for line in r.stdout.split("\n") if line]
    return {int(frame): info for frame, _, info in rows}


@pytest.mark.parametrize("name", ["3.3", "3.3-snaplen", "segments", "hostile"])
def test_info_column_reads_like_calc_sniff_notes(decoded, name):
    """The Info column of every frame with messages: calc-sniff's notes for them, capitalised,
    "in K segments" included."""
    path = decoded[name][2]
    # calc-sniff writes no note for a message cut short (test_cut_short_messages checks them)
    infos = {k: "; ".join(p for p in v.split("; ") if " cut short by " not in p) for k, v in info_column(path).items()
             if not v.startswith("Unframed data")}
    infos = {k: v for k, v in infos.items() if v}
    sn = subprocess.run([exe("calc-sniff"), "-r", str(path)], capture_output=True, text=True, timeout=300).stdout
    want = {k: "; ".join(n[0].upper() + n[1:] for n in v) for k, v in message_notes(sn).items()}
    assert want and infos.keys() == want.keys()
    # where calc-sniff's text stopped at its limit (see texts_agree), its note begins the Info
    past_limit = {m["frame"] for m in decoded[name][0]
                  if len((tshark_view(m)["text"] or "").encode()) > SNIFF_TEXT_MAX - 64}
    for k, v in want.items():
        assert infos[k] == v or (k in past_limit and infos[k].startswith(v)), f"frame {k}: {infos[k]!r} {v!r}"


def test_live_run_has_results_errors_and_the_refusal(decoded):
    views = [tshark_view(m) for m in decoded["live"][0]]
    assert {v["status"] for v in views if not v["request"]} == {200, 400, 500}
    assert "ZeroDivisionError: division by zero" in [v["text"] for v in views]
    assert any(v["request"] and v["size"] > 4000 and v["text"].startswith("rand(") for v in views)
    # calc-client --pickle-flavour getattr: enum members by name, as Debian 12's python3 writes them
    assert {"(1 + 2) * (3 ** 2)", "2 - ((3 % 4) / 5)"} <= {v["text"] for v in views if v["request"]}


def test_install_puts_the_dissector_where_tshark_loads_it(tmp_path):
    """lab/wireshark/install into a fresh HOME: the build's plugin, modules included, where
    tshark then decodes a golden capture unasked (Wireshark also runs each module as a plugin
    of its own: that must be harmless)."""
    env = {**os.environ, "HOME": str(tmp_path)}
    r = subprocess.run([str(REPO / "lab" / "wireshark" / "install"), "--build", str(build_dir())], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    plugins = tmp_path / ".local" / "lib" / "wireshark" / "plugins"
    built = sorted(p.relative_to(LUA.parent) for p in LUA.parent.rglob("*.lua"))
    assert sorted(p.relative_to(plugins) for p in plugins.rglob("*.lua")) == built
    assert len(built) >= 5 and all((plugins / p).read_bytes() == (LUA.parent / p).read_bytes() for p in built)
    r = subprocess.run([TSHARK, "-r", str(CAPTURES / "3.1.pcap"), "-Y", "calc.result", "-T", "fields",
                        "-e", "calc.result"], env=env, capture_output=True, text=True, timeout=120)
    assert "Lua" not in r.stderr, r.stderr
    assert r.stdout.split() == ["-0.38748277824137206", "-0.38748277824137206", "6"]


def test_the_source_trees_calc_lua_says_where_the_dissector_is():
    """lab/wireshark/calc.lua alone lacks the limits the build generates: loading it says which
    file to load instead, rather than failing on a missing module."""
    r = subprocess.run([TSHARK, "-X", f"lua_script:{REPO / 'lab' / 'wireshark' / 'calc.lua'}", "-r",
                        str(CAPTURES / "3.1.pcap"), "-c", "1"], capture_output=True, text=True, timeout=120)
    assert "no calc/limits.lua in " in r.stderr and "build/wireshark/calc.lua" in r.stderr, r.stderr


# ---- the lab's runs: tests/student's programs graded by lab/grade, and its broken ones

def lab_runs():
    """(name, role, scenario, broken program) of the lab/grade runs cross-checked: scenarios
    3.1-3.3 as tests/student's programs play them, and each broken implementation that
    tests/e2e/test_lab grades (resets, early closes, split writes, a proxy that never caches or
    ignores max-age) in its scenario."""
    import test_lab
    out = [(f"lab-{scn}", None, scn, None) for scn in ("3.1", "3.2", "3.3")]
    seen = set()
    for what, role, scn, _ in test_lab.BROKEN_CASES:
        if (what, scn) not in seen:
            seen.add((what, scn))
            out.append((f"lab-{what}-{scn}", role, scn, what))
    out.append(("lab-proxy_forwards_header_only-3.2", "proxy", "3.2", "proxy_forwards_header_only"))
    return out


LAB_RUNS = lab_runs()
# A broken proxy of our own: it forwards only the request's 12-byte header upstream, then
# closes its side (FIN), and answers its client with whatever the server said to that.
HEADER_ONLY_PROXY = """
import socket
import sys
sys.path.insert(0, %r)
import api, calc_proxy
def ask_server(data):
    with socket.create_connection(calc_proxy.SERVER, timeout=10) as up:
        up.sendall(data[:api.HEADER_LEN])
        up.shutdown(socket.SHUT_WR)
        resp = api.recv_message(up)
    if len(resp) < api.HEADER_LEN:
        raise api.CalculatorServerError("The server closed the connection without a complete response")
    return resp
calc_proxy.ask_server = ask_server
calc_proxy.main()
""" % str(REPO / "tests" / "student")


def lab_capture(tmp, name, role, scn, what):
    """Grades one run (lab/grade --impl student) and returns a copy of its capture."""
    import test_lab
    d = tmp / name
    d.mkdir()
    extra = ()
    if what == "proxy_forwards_header_only":
        prog = d / "header_only.py"
        prog.write_text(HEADER_ONLY_PROXY)
    elif what:
        prog = test_lab.broken(d, what)
    if what:
        extra = (f"--{role}", {"server": f"{test_lab.PY} {prog} -H {{host}} -p {{port}}",
                               "proxy": f"{test_lab.PY} {prog} -ph {{host}} -pp {{port}} -sh {{server_host}} "
                                        "-sp {server_port}"}[role])
    test_lab.grade(d / "out", "--impl", "student", "--scenarios", scn, *extra)
    _, g = test_lab.checks_of(d / "out")
    shutil.copy(g["scenarios"][0]["pcap"], d / "run.pcap")
    return d / "run.pcap"


@pytest.fixture(scope="module")
def lab_decoded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        paths = {run[0]: pool.submit(lab_capture, tmp, *run) for run in LAB_RUNS}
        paths = {name: f.result() for name, f in paths.items()}
        ts = {name: pool.submit(run_tshark, path) for name, path in paths.items()}
        sn = {name: pool.submit(run_sniff, path) for name, path in paths.items()}
        return {name: (ts[name].result(), sn[name].result(), paths[name]) for name in paths}


@pytest.mark.build_independent
@pytest.mark.parametrize("name", [run[0] for run in LAB_RUNS])
def test_lab_runs_same_messages_as_calc_sniff(lab_decoded, name):
    """The captures of the lab's own runs, the broken implementations' included (a proxy or a
    server resetting mid-exchange, closing first, writing in pieces): the same messages as
    calc-sniff finds; the proxy that forwards only the header cuts each upstream request short."""
    test_same_messages_as_calc_sniff(lab_decoded, name)
    cut = [m for m in lab_decoded[name][0] if "calc.cut_short" in experts(m)]
    if name == "lab-proxy_forwards_header_only-3.2":
        assert cut and all(m["calc.missing"] != "0" and m["calc.flags_tree"]["calc.flags.request"] == "1"
                           for m in cut), cut


# ---- messages the capture does not hold whole

@pytest.mark.build_independent
def test_messages_not_all_in_the_capture(tmp_path):
    """Messages whose bytes are not all in the capture, each marked by a calc.bytes_missing
    expert info and an Info saying what is missing, never a Lua error: 3.3 cut by a snaplen
    inside each header (after 8 bytes: size and kind known; after 4: the total length lost, so
    the direction's framing stops), and split messages with TCP's reassembly turned off, where
    TCP still frames what follows a message whose total length is known."""
    for snaplen in (8, 4):
        snaplen_cut(CAPTURES / "3.3.pcap", tmp_path / f"cut{snaplen}.pcap", 14 + 20 + 32 + snaplen)
    cap = Pcap()
    msgs = golden_payloads()
    req = next(m for m in msgs if m[6] & 0x04)
    resp = next(m for m in msgs if not m[6] & 0x04)
    c = Conn(cap, 40000, 9999)
    c.send("c", req, [5, 300])              # frames 4-9: the header split, its length not in frame 4
    c.send("s", resp)                       # frame 10
    c.close()
    c = Conn(cap, 40001, 9999)
    c.send("c", req)                        # frame 17
    c.send("s", resp, [400])                # frames 18-19
    c.send("s", resp)                       # frame 20
    c.close()
    cap.write(tmp_path / "split.pcap")
    no_reassembly = ("-o", "tcp.desegment_tcp_streams:FALSE")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        runs = [pool.submit(info_column, CAPTURES / "3.3.pcap"),
                pool.submit(info_column, tmp_path / "cut8.pcap", shown="calc.bytes_missing"),
                pool.submit(info_column, tmp_path / "cut4.pcap"),
                pool.submit(info_column, tmp_path / "split.pcap", *no_reassembly),
                pool.submit(info_column, tmp_path / "split.pcap", *no_reassembly, shown="calc.bytes_missing")]
        whole, cut8, cut4, split, split_missing = (f.result() for f in runs)
    kinds = {k: v.split(" ", 1)[0].lower() for k, v in whole.items()}
    assert cut8 == {k: f"Malformed {kind}: header cut after 8 B" for k, kind in kinds.items()}
    assert cut4.keys() == whole.keys() and all(
        v == "Malformed message: header cut after 4 B" or v.startswith("Unframed data: ") for v in cut4.values())
    decoded = f"Response {len(resp)} B: -0.38748277824137206"
    assert split[4] == "Malformed message: header cut after 5 B"
    assert all(split[k].endswith("Unframed data: the stream's framing broke in frame 4") for k in range(5, 10))
    assert (split[10], split[17][:15], split[18], split[20]) == (decoded, f"Request {len(req)} B: ",
                                                                 f"Response {len(resp)} B (bytes missing)", decoded)
    assert 19 not in split
    assert split_missing.keys() == {4, 18}


# ---- header values outside the protocol

@pytest.mark.build_independent
def test_header_values_outside_the_protocol(tmp_path):
    """A status other than 0 in a request, or other than 200, 400 and 500 in a response, is a
    calc.bad_status warning (the Info still gives the status, as calc-sniff's note does);
    calc.error_answer marks 400 and 500 answers only; reserved flag bits are
    calc.reserved_bits."""
    msgs = golden_payloads()
    req = next(m for m in msgs if m[6] & 0x04)
    resp = next(m for m in msgs if not m[6] & 0x04)

    def flagged(m, flags):
        return m[:6] + struct.pack("!H", flags) + m[8:]

    cap = Pcap()
    c = Conn(cap, 40000, 9999)
    for m in (flagged(req, 0x1c00 | 200), flagged(resp, 0x1800), flagged(req, 0x3c00), flagged(resp, 0x1800 | 300),
              req, message(b"", request=False, status=400), req, flagged(resp, 0x1800 | 500)):
        c.send("c" if m[6] & 0x04 else "s", m)
    c.close()
    cap.write(tmp_path / "statuses.pcap")
    found = [(int(m["calc.status"]), sorted(k for k in experts(m) if k != "calc.undecodable"))
             for m in run_tshark(tmp_path / "statuses.pcap")]
    assert found == [
        (200, ["calc.bad_status"]), (0, ["calc.bad_status"]), (0, ["calc.reserved_bits"]),
        (300, ["calc.bad_status"]), (0, []), (400, ["calc.error_answer"]), (0, []), (500, ["calc.error_answer"])]
    infos = list(info_column(tmp_path / "statuses.pcap").values())
    assert infos[1].startswith("Response 564 B: status 0 (") and infos[3].startswith("Response 564 B: status 300 (")


# ---- requests and their responses

@pytest.mark.build_independent
def test_responses_point_at_their_requests(tmp_path):
    """In two passes (-2, as Wireshark's window re-dissects a packet it shows), on every
    connection each response names the oldest request its receiver sent that is not answered
    yet (calc.request_in) and
    the time since it (calc.response_time, the frames' time difference to the nanosecond), and
    that request names it (calc.response_in): 3.3 (proxies, a cache hit, the refusal), the
    split and merged capture (several requests and answers in one segment), and a crafted
    capture whose responses answer no request before them (the capture started after the
    request; a second answer to one request), marked calc.no_request."""
    craft_segments(tmp_path / "segments.pcap")
    cap = Pcap()
    msgs = golden_payloads()
    req = next(m for m in msgs if m[6] & 0x04)
    resp = next(m for m in msgs if not m[6] & 0x04)
    c = Conn(cap, 40100, 9999, handshake=False)   # picked up after the first request
    c.send("s", resp)
    c.send("c", req)
    c.send("s", resp)
    c = Conn(cap, 40101, 9999)
    c.send("c", req)
    c.send("s", resp + resp)
    c.close()
    cap.write(tmp_path / "unasked.pcap")
    paths = (CAPTURES / "3.3.pcap", tmp_path / "segments.pcap", tmp_path / "unasked.pcap")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        runs = [pool.submit(run_tshark, path, "-2") for path in paths]
        decoded = {path.stem: f.result() for path, f in zip(paths, runs)}
    unasked, answered = [], {}
    for name, found in decoded.items():
        waiting = {}        # (stream, port) -> the requests sent from that port, not yet answered
        for m in found:
            if int(m["calc.length"]) < 12 or "calc.bad_length" in experts(m):
                continue
            if m["calc.flags_tree"]["calc.flags.request"] == "1":
                waiting.setdefault((m["stream"], m["sport"]), []).append(m)
                continue
            q = waiting.get((m["stream"], m["dport"]))
            if not q:
                assert "calc.request_in" not in m and "calc.no_request" in experts(m), (name, m["frame"])
                unasked.append((name, m["frame"]))
                continue
            request = q.pop(0)
            assert (request.get("calc.response_in"), m.get("calc.request_in")) == (str(m["frame"]),
                                                                                  str(request["frame"]))
            elapsed = decimal.Decimal(m["epoch"]) - decimal.Decimal(request["epoch"])
            assert decimal.Decimal(m["calc.response_time"]) == elapsed, (name, request["frame"], m["frame"])
            assert "calc.no_request" not in experts(m)
            answered[name] = answered.get(name, 0) + 1
        assert all("calc.response_in" not in r for q in waiting.values() for r in q), name
    assert answered == {"3.3": 4, "segments": 5, "unasked": 2}
    # the midstream connection answers first, the other answers twice (in frame 8, which holds both)
    assert [u for u in unasked if u[0] == "unasked"] == [("unasked", 1), ("unasked", 8)]
    assert [m["frame"] for m in decoded["unasked"] if "calc.response_in" in m] == [2, 7]
    # the client side of the framing fuzz streams sends messages without the T bit too: none of
    # them answers that client's own requests
    assert len(unasked) > 100


@pytest.mark.build_independent
def test_cut_streams_raise_no_lua_error(tmp_path):
    """The split and merged capture cut by snaplens that end segments inside headers, inside
    payloads and right after a message (54 bytes of headers before the TCP payload), with and
    without TCP's reassembly: no Lua error, no exception, every message's Info as one of the
    dissector's."""
    craft_segments(tmp_path / "segments.pcap")
    runs = []
    for snaplen, opts in ((60, ()), (60, ("-o", "tcp.desegment_tcp_streams:FALSE")),
                          (72, ("-o", "tcp.desegment_tcp_streams:FALSE")), (90, ("-o", "tcp.desegment_tcp_streams:FALSE"))):
        snaplen_cut(tmp_path / "segments.pcap", tmp_path / f"cut{snaplen}.pcap", snaplen)
        runs.append((tmp_path / f"cut{snaplen}.pcap", opts))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        infos = [pool.submit(info_column, path, *opts) for path, opts in runs]
        infos = [f.result() for f in infos]
    # after TCP's own words, where it wrote some before handing the segment over
    ours = re.compile(r"(\[Continuation to #\d+\] )?((Request|Response) \d+ B|Malformed (message|request|response): )|"
                      r".*Unframed data: the stream's framing broke in frame \d+$")
    for (path, opts), found in zip(runs, infos):
        assert found and all(ours.match(v) for v in found.values()), (path.name, opts)
        assert "Malformed Packet" not in " ".join(found.values())


# ---- the ports: the preference, Decode As, and the user's Decode As entries

@pytest.mark.build_independent
def test_decode_as_ports_read_like_preference_ports(tmp_path):
    """The split and merged messages on ports neither the default nor anything else decodes:
    Decode As on them gives the Info ("in K segments" included) and the message trees the
    preference naming them gives, which are what the default ports give; in two passes too."""
    craft_segments(tmp_path / "default.pcap")
    craft_segments(tmp_path / "other.pcap", 7001, 7002)
    pref = ("-o", "calc.ports:7001-7002")
    decode_as = ("-d", "tcp.port==7001,calc", "-d", "tcp.port==7002,calc")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        infos = [pool.submit(info_column, tmp_path / "default.pcap"),
                 pool.submit(info_column, tmp_path / "other.pcap", *pref),
                 pool.submit(info_column, tmp_path / "other.pcap", *decode_as),
                 pool.submit(info_column, tmp_path / "other.pcap", "-2", *decode_as)]
        trees = [pool.submit(run_tshark, tmp_path / "default.pcap"),
                 pool.submit(run_tshark, tmp_path / "other.pcap", *decode_as)]
        want, by_pref, by_decode_as, two_passes = (f.result() for f in infos)
        default_trees, decode_as_trees = (f.result() for f in trees)
    assert sum(re.search(r" B in \d+ segments: ", v) is not None for v in want.values()) >= 50
    assert by_pref == want
    assert by_decode_as == want
    assert two_passes == want     # tshark -2: no taps on the first pass, the counts come on the second
    for m in default_trees + decode_as_trees:
        del m["sport"], m["dport"]
    assert decode_as_trees == default_trees


# A probe loaded after calc.lua: which dissector the TCP port table holds for each port asked,
# once dissection starts (Decode As and the preferences then apply).
PORT_PROBE = """
local tcp_port = DissectorTable.get("tcp.port")
local probe = Proto("portprobe", "port probe")
function probe.init()
  for _, port in ipairs({ %s }) do
    print("port " .. port .. " " .. tostring(tcp_port:get_dissector(port)))
  end
end
"""


def ports_capture(path, ports):
    """One connection to each port: a request in segments of 100 bytes and its answer."""
    cap = Pcap()
    msgs = golden_payloads()
    req = next(m for m in msgs if m[6] & 0x04)
    resp = next(m for m in msgs if not m[6] & 0x04)
    for i, port in enumerate(ports):
        c = Conn(cap, 45000 + i, port)
        c.send("c", req, [100])
        c.send("s", resp)
        c.close()
    cap.write(path)


# What the TCP port table holds for the ports the next test asks about, before calc.lua changes
# anything, with the profile's Decode As entries: 9998, a preference port, sent to Echo, and
# 7001 sent to calc.
PORTS_ASKED = (9998, 9999, 7001, 7002, 6000)
PORTS_BEFORE = {9998: "ECHO", 9999: "TPLINK-SMARTHOME", 7001: "CALC", 7002: "nil", 6000: "X11"}
REQUEST_SIZE = 687


@pytest.mark.build_independent
@pytest.mark.parametrize("ports, calc_on", [
    (None, {9999, 7001}),
    ("9998,9999,7002", {9999, 7001, 7002}),   # 9998 stays, and so does its Decode As to Echo
    ("9998", {7001}),                         # 9999 goes back to TP-Link's protocol
    ("6000", {7001, 6000}),                   # X11's port while the preference names it
])
def test_ports_preference_change_keeps_decode_as_entries(tmp_path, ports, calc_on):
    """A profile with Decode As entries, and a ports preference changed after they are read
    (-o): the change adds and removes its own ports only. The user's entries stay, a port the
    preference gives up gets back what it decoded as before, and the messages on the Decode As
    port read as on the preference's ("in 7 segments")."""
    profile = tmp_path / ".config" / "wireshark"
    profile.mkdir(parents=True)
    (profile / "decode_as_entries").write_text("decode_as_entry: tcp.port,9998,(none),ECHO\n"
                                               "decode_as_entry: tcp.port,7001,(none),CALC\n")
    probe = tmp_path / "probe.lua"
    probe.write_text(PORT_PROBE % ", ".join(map(str, PORTS_ASKED)))
    ports_capture(tmp_path / "ports.pcap", PORTS_ASKED)
    opts = ("-o", f"calc.ports:{ports}") if ports else ()
    r = subprocess.run([TSHARK, "-X", f"lua_script:{LUA}", "-X", f"lua_script:{probe}", *opts,
                        "-r", str(tmp_path / "ports.pcap"), "-T", "fields", "-e", "tcp.dstport", "-e", "tcp.len",
                        "-e", "_ws.col.Protocol", "-e", "_ws.col.Info"],
                       env={**os.environ, "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Lua" not in r.stderr, r.stderr
    table = {int(port): name for port, name in re.findall(r"^port (\d+) (.*)$", r.stdout, re.M)}
    assert table == {p: "CALC" if p in calc_on else PORTS_BEFORE[p] for p in PORTS_ASKED}
    # the segment completing each request (its last 87 bytes), by server port
    requests = {int(port): (proto, info) for port, length, proto, info in
                (line.split("\t") for line in r.stdout.split("\n") if line.count("\t") == 3)
                if length == str(REQUEST_SIZE % 100)}
    assert requests.keys() == set(PORTS_ASKED)
    for port in calc_on:
        assert requests[port][0] == "CALC" and requests[port][1].startswith(
            f"Request {REQUEST_SIZE} B in 7 segments: "), (port, requests[port])
    assert requests[9998][0] == "ECHO"
