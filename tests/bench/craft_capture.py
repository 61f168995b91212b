"""Crafted captures for tests/bench/sniff_bench.sh (nothing stored: made at each run).

usage: craft_capture.py OUT VECTORS 3.2 ROUNDS    ROUNDS x scenario 3.2 (E1 miss, E1 hit, E2 miss)
       craft_capture.py OUT VECTORS one N         N short connections, one E1 request each, answered
                                                  by a canned server (10 segments per connection)
       craft_capture.py OUT VECTORS one-fin-server N   the same, but the server sends the first FIN:
                                                  verified against `one N`, every connection differs

Real payloads from the vectors (legacy-expressions.jsonl), Linux-loopback style: EN10MB,
3-way handshake, one ACK per data segment, 3-segment teardown led by the client, fresh ports."""
import json
import struct
import sys

S, A, P, F = 2, 16, 8, 1
ETH = b"\0" * 12 + b"\x08\x00"
LO = bytes([127, 0, 0, 1])


def messages(vectors):
    v = {}
    for line in open(vectors):
        d = json.loads(line)
        if d["name"] in ("seed-1", "seed-2"):
            v[d["name"]] = d

    def msg(h, flags):
        p = bytes.fromhex(h)
        return struct.pack(">IHHHH", 0x638f6089, 12 + len(p), flags, 65535, 0) + p
    return {e: (msg(v[n]["request"]["payload"], 0x1c00), msg(v[n]["steps"]["payload"], 0x18c8))
            for e, n in ((1, "seed-1"), (2, "seed-2"))}


class Writer:
    def __init__(self, path):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 262144, 1))
        self.t = 1670340000 * 1000000
        self.n = 0
        self.port = 20000

    def seg(self, sp, dp, seq, ack, fl, data=b""):
        self.t += 7
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(data), 0, 0x4000, 64, 6, 0, LO, LO)
        tcp = struct.pack(">HHIIBBHHH", sp, dp, seq & 0xffffffff, ack & 0xffffffff, 0x50, fl, 65483, 0, 0)
        fr = ETH + ip + tcp + data
        self.f.write(struct.pack("<IIII", self.t // 1000000, self.t % 1000000, len(fr), len(fr)) + fr)
        self.n += 1

    def next_port(self):
        self.port = 20000 + (self.port - 20000 + 1) % 40000
        return self.port


class Conn:
    def __init__(self, w, sport, k):
        self.w, self.cp, self.sp = w, w.next_port(), sport
        self.n = [(k * 2654435761) & 0xffffffff, (k * 40503 + 7) & 0xffffffff]

    def handshake(self):
        self.w.seg(self.cp, self.sp, self.n[0], 0, S)
        self.w.seg(self.sp, self.cp, self.n[1], self.n[0] + 1, S | A)
        self.n = [self.n[0] + 1, self.n[1] + 1]
        self.w.seg(self.cp, self.sp, self.n[0], self.n[1], A)

    def send(self, side, data):
        a, b = (self.cp, self.sp) if side == 0 else (self.sp, self.cp)
        self.w.seg(a, b, self.n[side], self.n[1 - side], P | A, data)
        self.n[side] += len(data)
        self.w.seg(b, a, self.n[1 - side], self.n[side], A)

    def fin(self, side=0):
        a, b = (self.cp, self.sp) if side == 0 else (self.sp, self.cp)
        self.w.seg(a, b, self.n[side], self.n[1 - side], F | A)
        self.n[side] += 1
        self.w.seg(b, a, self.n[1 - side], self.n[side], F | A)
        self.n[1 - side] += 1
        self.w.seg(a, b, self.n[side], self.n[1 - side], A)


def main():
    out, vectors, kind, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    e = messages(vectors)
    w = Writer(out)
    k = 0
    if kind == "3.2":
        for _ in range(count):
            for ex, hit in ((1, False), (1, True), (2, False)):
                k += 1
                d = Conn(w, 9998, k)
                d.handshake()
                d.send(0, e[ex][0])
                if not hit:
                    k += 1
                    u = Conn(w, 9999, k)
                    u.handshake()
                    u.send(0, e[ex][0])
                    u.send(1, e[ex][1])
                    u.fin()
                d.send(1, e[ex][1])
                d.fin()
        what = f"{count} rounds of scenario 3.2"
    elif kind in ("one", "one-fin-server"):
        for k in range(1, count + 1):
            c = Conn(w, 9999, k)
            c.handshake()
            c.send(0, e[1][0])
            c.send(1, e[1][1])
            c.fin(0 if kind == "one" else 1)
        what = f"{count} one-request connections" + (", the server closing first" if kind != "one" else "")
    else:
        sys.exit(f"craft_capture: unknown kind {kind!r} (3.2, one or one-fin-server)")
    w.f.close()
    print(f"crafted {w.n} packets ({what})", file=sys.stderr)


if __name__ == "__main__":
    main()
