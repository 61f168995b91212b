"""Read a pcap file (stdlib only) and reduce it to TCP connections and their events.

This is the lab's own reading of a capture: it feeds the timeline, the sequence diagram and the
grader's partial-credit checks.  calc-sniff, when built, gives the authoritative verdict."""
import struct

LINKTYPES = {0: 4, 1: 14, 12: 0, 101: 0, 113: 16, 276: 20}  # link type -> bytes before the IP header


class Segment:
    __slots__ = ("t", "src", "sport", "dst", "dport", "flags", "seq", "ack", "plen")

    def __init__(self, t, src, sport, dst, dport, flags, seq, ack, plen):
        self.t, self.src, self.sport, self.dst, self.dport = t, src, sport, dst, dport
        self.flags, self.seq, self.ack, self.plen = flags, seq, ack, plen

    @property
    def names(self):
        out = []
        for bit, n in ((0x02, "SYN"), (0x10, "ACK"), (0x08, "PSH"), (0x01, "FIN"), (0x04, "RST")):
            if self.flags & bit:
                out.append(n)
        return out

    def to_dict(self):
        return {"t": self.t, "src": f"{self.src}:{self.sport}", "dst": f"{self.dst}:{self.dport}",
                "flags": self.names, "len": self.plen}


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap file (pcapng is not supported)")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    skip = LINKTYPES.get(linktype)
    if skip is None:
        raise ValueError(f"{path}: unsupported link type {linktype}")
    segs = []
    off = 24
    while off + 16 <= len(data):
        ts, tfrac, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        t = ts + tfrac / (1e9 if nano else 1e6)
        ip = pkt[skip:]
        if linktype == 1 and pkt[12:14] != b"\x08\x00":
            continue
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        tcp = ip[ihl:total]
        if len(tcp) < 20:
            continue
        sport, dport, seq, ack = struct.unpack("!HHII", tcp[:12])
        doff = (tcp[12] >> 4) * 4
        flags = tcp[13]
        src = ".".join(map(str, ip[12:16]))
        dst = ".".join(map(str, ip[16:20]))
        segs.append(Segment(t, src, sport, dst, dport, flags, seq, ack, max(0, len(tcp) - doff)))
    return segs


class Conn:
    """One TCP connection (or one refused attempt), seen from its initiator ('a') and acceptor ('b')."""

    def __init__(self, first):
        self.a = (first.src, first.sport)
        self.b = (first.dst, first.dport)
        self.segs = []
        self.start = first.t

    @property
    def server_port(self):
        return self.b[1]

    @property
    def client_port(self):
        return self.a[1]

    def side(self, s):
        return "a" if (s.src, s.sport) == self.a else "b"

    def data(self, side):
        return [s for s in self.segs if self.side(s) == side and s.plen > 0]

    def bytes(self, side):
        return sum(s.plen for s in self.data(side))

    def first(self, side, flag):
        for s in self.segs:
            if self.side(s) == side and s.flags & flag:
                return s
        return None

    @property
    def refused(self):
        return self.first("b", 0x02) is None and self.first("b", 0x04) is not None

    @property
    def handshake_ok(self):
        syn = self.first("a", 0x02)
        synack = next((s for s in self.segs if self.side(s) == "b" and s.flags & 0x12 == 0x12), None)
        if not syn or not synack:
            return False
        ack = next((s for s in self.segs if self.side(s) == "a" and s.t >= synack.t and s.flags & 0x10
                    and not s.flags & 0x02), None)
        return ack is not None

    @property
    def fin_leader(self):
        fa, fb = self.first("a", 0x01), self.first("b", 0x01)
        if fa and fb:
            return "a" if (fa.t, self.segs.index(fa)) <= (fb.t, self.segs.index(fb)) else "b"
        return "a" if fa else ("b" if fb else None)

    @property
    def rst_by(self):
        r = [self.side(s) for s in self.segs if s.flags & 0x04]
        return r

    @property
    def end(self):
        return self.segs[-1].t if self.segs else self.start

    def summary(self):
        return {
            "initiator": f"{self.a[0]}:{self.a[1]}", "acceptor": f"{self.b[0]}:{self.b[1]}",
            "refused": self.refused, "handshake": self.handshake_ok,
            "request_segments": [s.plen for s in self.data("a")],
            "response_segments": [s.plen for s in self.data("b")],
            "fin_leader": {"a": "initiator", "b": "acceptor", None: None}[self.fin_leader],
            "rst_by": ["initiator" if x == "a" else "acceptor" for x in self.rst_by],
            "start": self.start, "end": self.end,
        }


def connections(segs, ports=None):
    """Group segments into connections; a SYN without ACK starts a new one for its 4-tuple."""
    conns, open_ = [], {}
    for s in segs:
        if ports and s.sport not in ports and s.dport not in ports:
            continue
        key = frozenset([(s.src, s.sport), (s.dst, s.dport)])
        c = open_.get(key)
        if s.flags & 0x12 == 0x02 and (c is None or any(x.plen or x.flags & 0x05 for x in c.segs)):
            c = Conn(s)
            open_[key] = c
            conns.append(c)
        elif c is None:
            continue  # mid-stream segment of a connection that started before the capture
        c.segs.append(s)
    return conns


def retarget(src, dst, portmap):
    """Copy pcap `src` to `dst` with TCP ports renamed by portmap (e.g. the golden's 9998/9999 to
    the ports of a run), so that a run on other ports can be compared with the golden."""
    with open(src, "rb") as f:
        data = bytearray(f.read())
    magic = bytes(data[:4])
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    skip = LINKTYPES.get(linktype)
    if skip is None:
        raise ValueError(f"{src}: unsupported link type {linktype}")
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        ip = off + 16 + skip
        if ip + 20 <= len(data) and data[ip] >> 4 == 4 and data[ip + 9] == 6:
            tcp = ip + (data[ip] & 0x0F) * 4
            for k in (tcp, tcp + 2):
                p = struct.unpack("!H", data[k:k + 2])[0]
                if p in portmap:
                    data[k:k + 2] = struct.pack("!H", portmap[p])
                    if tcp + 18 <= len(data):  # RFC 1624 incremental checksum update
                        hc = struct.unpack("!H", data[tcp + 16:tcp + 18])[0]
                        c = (~hc & 0xFFFF) + (~p & 0xFFFF) + portmap[p]
                        c = (c & 0xFFFF) + (c >> 16)
                        c = (c & 0xFFFF) + (c >> 16)
                        data[tcp + 16:tcp + 18] = struct.pack("!H", ~c & 0xFFFF)
        off += 16 + incl
    with open(dst, "wb") as f:
        f.write(bytes(data))
