"""calc-sniff's output, two builds compared byte for byte: every capture the tests use, every mode.

usage: sniff_same_output.py BEFORE AFTER [--keep DIR]

BEFORE and AFTER are calc-sniff executables (say, one built from the commit before a refactor and
one from the working tree). Each is run on every capture below in every mode: the timeline,
--summary, --stats, --json, --json --packets, --trace, and `verify` against each golden capture
(captures/*.pcap) as text, --json and --trace. Their stdout, stderr and exit status must be the
same bytes; the differences are listed and the exit status is 1. --keep DIR keeps the captures
and AFTER's outputs there (they are megabytes: nothing of them belongs in git).

The captures: the goldens (captures/*.pcap); what the tests make of them (two goldens as
DLT_NULL, 3.3 cut to a short snaplen, as tests/e2e/test_wireshark.py does); the files
tests/e2e/test_sniff_files.py reads (many records across the read blocks, native, swapped,
nanosecond, pcapng and cut short); the benchmark's captures (tests/bench/craft_capture.py); and
one made here to reach every note the timeline prints: reordering, retransmissions, overlaps,
gaps, a hole inside a header, a snaplen cut, SYN retries, port reuse, a refusal, resets, a
connection picked up midstream, a sequence number out of the window, more out-of-order segments
than are buffered, a message in more than eight segments, a too-short total length, non-TCP
and undecodable frames, and a proxy answering from upstream, from its cache, after a refused
upstream connection and after an upstream connection it opened before the request."""
import argparse
import json
import pathlib
import shutil
import struct
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lab"))
from calclab_lab import pcapio  # noqa: E402
CAPTURES = REPO / "captures"
VECTORS = REPO / "captures" / "vectors" / "legacy-expressions.jsonl"
LO = bytes([127, 0, 0, 1])
ETH = b"\0" * 12 + b"\x08\x00"
S, F, R, P, A = 0x02, 0x01, 0x04, 0x08, 0x10


def read_pcap(path):
    """A classic little-endian microsecond pcap file: its header's fields and its records (sec,
    usec, wire length, frame), read by the lab's reader."""
    header = struct.unpack("<IHHiIII", path.read_bytes()[:24])
    recs = []
    for p in pcapio.read(path):
        sec = int(p.ts)
        recs.append((sec, round((p.ts - sec) * 1e6), p.orig_len, p.data))
    return header, recs


def write_pcap(path, header, recs):
    path.write_bytes(b"".join([struct.pack("<IHHiIII", *header)] +
                              [struct.pack("<IIII", s, u, len(fr), w) + fr for s, u, w, fr in recs]))


def to_dlt_null(src, dst):
    header, recs = read_pcap(src)
    write_pcap(dst, header[:6] + (0,), [(s, u, w - 10, struct.pack("<I", 2) + fr[14:]) for s, u, w, fr in recs])


def snaplen_cut(src, dst, snaplen):
    header, recs = read_pcap(src)
    write_pcap(dst, header[:5] + (snaplen, header[6]), [(s, u, w, fr[:snaplen]) for s, u, w, fr in recs])


class Cap:
    """Frames of a crafted capture: Ethernet, IPv4 on loopback, TCP, microsecond time stamps."""

    def __init__(self):
        self.recs, self.t = [], 1_700_000_000_000_000

    def raw(self, frame, wirelen=None):
        self.t += 100
        self.recs.append((self.t // 1_000_000, self.t % 1_000_000, wirelen or len(frame), frame))

    def seg(self, sp, dp, seq, ack, fl, data=b"", cut=None):
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(data), 0, 0x4000, 64, 6, 0, LO, LO)
        tcp = struct.pack(">HHIIBBHHH", sp, dp, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, fl, 65483, 0, 0)
        fr = ETH + ip + tcp + data
        self.raw(fr if cut is None else fr[:54 + cut], len(fr))

    def write(self, path):
        write_pcap(path, (0xA1B2C3D4, 2, 4, 0, 0, 262144, 1), self.recs)


class Conn:
    def __init__(self, cap, cport, sport, isn=(1000, 5000), handshake=True):
        self.cap, self.cp, self.sp = cap, cport, sport
        self.n = [isn[0], isn[1]]
        if handshake:
            self.syn()
            cap.seg(sport, cport, self.n[1], self.n[0] + 1, S | A)
            self.n = [self.n[0] + 1, self.n[1] + 1]
            cap.seg(cport, sport, self.n[0], self.n[1], A)
        else:
            self.n = [self.n[0] + 1, self.n[1] + 1]

    def syn(self):
        self.cap.seg(self.cp, self.sp, self.n[0], 0, S)

    def ends(self, side):
        return (self.cp, self.sp) if side == 0 else (self.sp, self.cp)

    def at(self, side, off, data, fl=P | A, cut=None):
        """data at stream offset off of side (sequence numbers not advanced)."""
        self.cap.seg(*self.ends(side), self.n[side] + off, self.n[1 - side], fl, data, cut)

    def send(self, side, data, sizes=None, cut=None):
        i = 0
        while i < len(data) or not data:
            k = len(data) - i if not sizes else min(sizes[0], len(data) - i)
            sizes = sizes[1:] + sizes[:1] if sizes else None
            self.at(side, 0, data[i:i + k], cut=cut)
            self.n[side] += k
            i += k
            if not data:
                break

    def fin(self, side=0, both=True):
        self.at(side, 0, b"", F | A)
        self.n[side] += 1
        if both:
            self.at(1 - side, 0, b"", F | A)
            self.n[1 - side] += 1
            self.at(side, 0, b"", A)

    def rst(self, side):
        self.at(side, 0, b"", R | A)


def msg(payload, request=True, status=200, total=None):
    flags = (1 << 12) | (1 << 11) | ((1 << 10) if request else status)
    return struct.pack(">IHHHH", 0x638F6089, 12 + len(payload) if total is None else total, flags, 65535, 0) + payload


def craft_oddities(path):
    v = [json.loads(line) for line in open(VECTORS)][:3]
    q = [msg(bytes.fromhex(x["request"]["payload"])) for x in v]
    a = [msg(bytes.fromhex(x["steps"]["payload"]), False, x["steps"]["status"]) for x in v]
    err = next((msg(bytes.fromhex(x["steps"]["payload"]), False, x["steps"]["status"])
                for x in map(json.loads, open(VECTORS)) if x["steps"]["status"] != 200), a[0])
    cap = Cap()
    cap.raw(b"\xff" * 12 + b"\x08\x06" + b"\0" * 28)          # ARP: no segment
    cap.raw(ETH + b"\x45\x00")                                 # IPv4 header cut short: undecodable
    # reordered, retransmitted and overlapping request; a status-400 answer; the server's FIN first
    c = Conn(cap, 40001, 9999)
    r = q[0]
    c.at(0, 200, r[200:])
    c.at(0, 100, r[100:200])
    c.at(0, 100, r[100:200])                                   # retransmission (out of order)
    c.at(0, 0, r[:100])
    c.at(0, 0, r[:50])                                         # retransmission
    c.at(0, 150, r[150:250])                                   # wholly behind: retransmission
    c.n[0] += len(r)
    c.at(0, -10, b"x" * 10 + q[1][:20])                        # overlap: 10 bytes again
    c.n[0] += 20
    c.send(0, q[1][20:])
    c.send(1, a[0], [5, 7, 3, 11, 2, 9, 4, 6, 8, 13, 10000])  # eleven segments
    c.send(1, err)
    c.fin(1)
    # SYN retry, then reset by the client
    c = Conn(cap, 40002, 9999, handshake=False)
    c.n = [2000, 6000]
    c.syn()
    c.syn()
    cap.seg(9999, 40002, 6000, 2001, S | A)
    c.n = [2001, 6001]
    c.at(0, 0, b"", A)
    c.send(0, q[2])
    c.rst(0)
    # refused
    c = Conn(cap, 40003, 9999, handshake=False)
    c.n = [3000, 0]
    c.syn()
    cap.seg(9999, 40003, 0, 3001, R | A)
    # picked up midstream on the proxy port, a sequence number far out of the window
    c = Conn(cap, 40004, 9998, handshake=False)
    c.send(0, q[0])
    c.at(0, 1 << 30, b"zz")
    c.send(1, a[0])
    c.fin(0)
    # port reuse: the same 4-tuple, another ISN
    for isn in (7000, 90000):
        c = Conn(cap, 40005, 9999, isn=(isn, isn + 5))
        c.send(0, q[1])
        c.send(1, a[1])
        c.fin(0)
    # a gap in the request (never filled): reported at the end; then a FIN beyond the bytes seen
    c = Conn(cap, 40006, 9999)
    c.at(0, 0, q[0][:30])
    c.at(0, 60, q[0][60:])
    c.n[0] += len(q[0])
    c.at(1, 40, b"", F | A)
    c.fin(0, both=False)
    # a snaplen cut inside a payload, then a hole inside the next header
    c = Conn(cap, 40007, 9999)
    c.send(0, q[1], cut=40)
    c.at(0, 4, q[2][4:])
    c.n[0] += len(q[2])
    c.fin(0)
    # a total length under 12: framing stops
    c = Conn(cap, 40008, 9999)
    c.send(0, msg(b"", total=5) + q[0])
    c.fin(0)
    # more out-of-order segments than are buffered (the earliest hole becomes a gap)
    c = Conn(cap, 40009, 9999)
    big = msg(b"\x80" * 2000)
    for i in range(300, 1, -1):
        c.at(0, i * 6, big[i * 6:i * 6 + 6])
    c.n[0] += len(big)
    c.fin(0)
    # the proxy: forwarded upstream, answered from its cache, answered after a refused upstream
    d = Conn(cap, 40010, 9998)
    for k, how in enumerate(("upstream", "cache", "refused")):
        d.send(0, q[k])
        if how == "upstream":
            u = Conn(cap, 40020, 9999)
            u.send(0, q[k])
            u.send(1, a[k])
            u.fin(0)
        elif how == "refused":
            u = Conn(cap, 40021, 9999, handshake=False)
            u.n = [4000, 0]
            u.syn()
            cap.seg(9999, 40021, 0, 4001, R | A)
        d.send(1, a[k] if how != "refused" else err)
    d.fin(1)
    # a proxy that connects upstream as soon as its client connects, before the request
    d = Conn(cap, 40012, 9998)
    u = Conn(cap, 40022, 9999)
    d.send(0, q[1])
    u.send(0, q[1])
    u.send(1, a[1])
    u.fin(0)
    d.send(1, a[1])
    d.fin(0)
    # sequence numbers wrapping at 2^32
    c = Conn(cap, 40011, 9999, isn=(0xFFFFFF00, 0xFFFFFFF0))
    c.send(0, q[0], [100, 100, 1000])
    c.send(1, a[0])
    c.fin(0)
    cap.write(path)


def captures(tmp):
    """(name, path) of every capture compared."""
    out = [(p.stem, p) for p in sorted(CAPTURES.glob("*.pcap"))]
    for name in ("3.2", "3.3"):
        to_dlt_null(CAPTURES / f"{name}.pcap", tmp / f"{name}-dlt-null.pcap")
        out.append((f"{name}-dlt-null", tmp / f"{name}-dlt-null.pcap"))
    for snap in (14 + 20 + 32 + 14, 14 + 20 + 32 + 8, 14 + 20 + 32 + 4):
        snaplen_cut(CAPTURES / "3.3.pcap", tmp / f"3.3-snaplen{snap}.pcap", snap)
        out.append((f"3.3-snaplen{snap}", tmp / f"3.3-snaplen{snap}.pcap"))
    craft_oddities(tmp / "oddities.pcap")
    out.append(("oddities", tmp / "oddities.pcap"))
    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    import test_sniff_files as tsf
    recs = tsf.records()
    files = {"files-native": tsf.pcap_bytes(recs), "files-swapped": tsf.pcap_bytes(recs, ">"),
             "files-nano": tsf.pcap_bytes(recs, nano=True), "files-pcapng": tsf.pcapng_bytes(recs)}
    native = files["files-native"]
    files["files-cut"] = native[:len(native) // 2 + 7]
    for name, data in files.items():
        (tmp / f"{name}.pcap").write_bytes(data)
        out.append((name, tmp / f"{name}.pcap"))
    for kind, n in (("3.2", 50), ("one", 300), ("one-fin-server", 50)):
        p = tmp / f"bench-{kind}.pcap"
        subprocess.run([sys.executable, str(REPO / "tests" / "bench" / "craft_capture.py"), str(p), str(VECTORS),
                        kind, str(n)], check=True, capture_output=True)
        out.append((f"bench-{kind}", p))
    return out


def modes(goldens):
    out = [("timeline", []), ("summary", ["--summary"]), ("stats", ["--stats"]), ("json", ["--json"]),
           ("packets", ["--json", "--packets"]), ("trace", ["--trace"])]
    for g in goldens:
        for name, extra in (("text", []), ("json", ["--json"]), ("trace", ["--trace"])):
            out.append((f"verify-{name}-{g.stem}", ["verify", "--golden", str(g), *extra]))
    return out


def run(exe, argv, path):
    if argv and argv[0] == "verify":
        args = [exe, *argv, "-r", str(path)]
    else:
        args = [exe, "-r", str(path), *argv]
    r = subprocess.run(args, capture_output=True, timeout=300)
    return r.stdout, r.stderr, r.returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--keep", type=pathlib.Path)
    a = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="sniff-same-"))
    try:
        caps = captures(tmp)
        ms = modes(sorted(CAPTURES.glob("*.pcap")))
        diffs, runs, nbytes = [], 0, 0
        for cname, path in caps:
            for mname, argv in ms:
                b, x = run(a.before, argv, path), run(a.after, argv, path)
                runs += 1
                nbytes += len(x[0]) + len(x[1])
                if b != x:
                    what = [k for k, i in (("stdout", 0), ("stderr", 1), ("exit status", 2)) if b[i] != x[i]]
                    diffs.append(f"{cname} {mname}: {', '.join(what)} differ")
                if a.keep:
                    a.keep.mkdir(parents=True, exist_ok=True)
                    (a.keep / f"{cname}.{mname}.out").write_bytes(x[0])
                    (a.keep / f"{cname}.{mname}.err").write_bytes(x[1] + f"exit {x[2]}\n".encode())
        if a.keep:
            for cname, path in caps:
                if path.parent == tmp:
                    shutil.copy(path, a.keep / path.name)
        for d in diffs:
            print("DIFF", d)
        print(f"{len(caps)} captures x {len(ms)} modes = {runs} runs, {nbytes} bytes of output: "
              f"{runs - len(diffs)} identical, {len(diffs)} differ")
        return 1 if diffs else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
