"""Capture files as the lab needs them, in plain Python: read pcap and pcapng (any of the link
types students' machines write: BSD loopback DLT_NULL (Npcap on Windows, macOS), Ethernet,
Linux cooked SLL and SLL2, raw IP), find the calculator's server and proxy ports from the
capture's own connections, and rewrite a capture (other ports, another link type, pcapng).

Only what carries IPv4/IPv6 TCP is kept on a rewrite; TCP checksums are recomputed there."""
import dataclasses
import struct

NULL, EN10MB, RAW, LOOP, LINUX_SLL, LINUX_SLL2 = 0, 1, 101, 108, 113, 276
IPV4_LT, IPV6_LT = 228, 229
LINK_NAMES = {NULL: "null", EN10MB: "ethernet", RAW: "raw", LOOP: "loop", LINUX_SLL: "sll", LINUX_SLL2: "sll2"}


class PcapError(Exception):
    pass


@dataclasses.dataclass
class Packet:
    ts: float            # seconds
    link: int            # link type
    data: bytes          # the frame as captured
    orig_len: int


def read(path):
    """The packets of a pcap or pcapng file, in file order."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 4:
        raise PcapError(f"{path}: not a capture file (too short)")
    magic = blob[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        return _read_pcapng(blob, path)
    for endian in "<>":
        m = struct.unpack(endian + "I", magic)[0]
        if m in (0xA1B2C3D4, 0xA1B23C4D):
            return _read_pcap(blob, endian, 1e-6 if m == 0xA1B2C3D4 else 1e-9, path)
    raise PcapError(f"{path}: not a pcap or pcapng file")


def _read_pcap(blob, e, unit, path):
    if len(blob) < 24:
        raise PcapError(f"{path}: truncated pcap header")
    link = struct.unpack(e + "I", blob[20:24])[0] & 0xFFFF
    out, off = [], 24
    while off + 16 <= len(blob):
        sec, frac, incl, orig = struct.unpack(e + "IIII", blob[off:off + 16])
        data = blob[off + 16:off + 16 + incl]
        if len(data) < incl:
            break  # a capture cut short: what is there is kept
        out.append(Packet(sec + frac * unit, link, data, orig))
        off += 16 + incl
    return out


def _read_pcapng(blob, path):
    out, off, e, ifaces = [], 0, "<", []
    while off + 12 <= len(blob):
        btype = struct.unpack(e + "I", blob[off:off + 4])[0]
        if btype == 0x0A0D0D0A:
            bom = blob[off + 8:off + 12]
            e = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            ifaces = []
        blen = struct.unpack(e + "I", blob[off + 4:off + 8])[0]
        if blen < 12 or off + blen > len(blob):
            break
        body = blob[off + 8:off + blen - 4]
        if btype == 1:  # interface description: link type, and its time stamp resolution option
            link = struct.unpack(e + "H", body[:2])[0]
            unit, o = 1e-6, 8
            while o + 4 <= len(body):
                code, olen = struct.unpack(e + "HH", body[o:o + 4])
                if code == 0:
                    break
                if code == 9 and olen >= 1:
                    r = body[o + 4]
                    unit = 2.0 ** -(r & 0x7F) if r & 0x80 else 10.0 ** -r
                o += 4 + (olen + 3) // 4 * 4
            ifaces.append((link, unit))
        elif btype == 6:  # enhanced packet
            iface, hi, lo, incl, orig = struct.unpack(e + "IIIII", body[:20])
            link, unit = ifaces[iface] if iface < len(ifaces) else (EN10MB, 1e-6)
            out.append(Packet(((hi << 32) | lo) * unit, link, body[20:20 + incl], orig))
        elif btype == 3:  # simple packet: interface 0
            orig = struct.unpack(e + "I", body[:4])[0]
            link, _ = ifaces[0] if ifaces else (EN10MB, 1e-6)
            out.append(Packet(0.0, link, body[4:4 + min(orig, len(body) - 4)], orig))
        off += blen
    if not out and not ifaces:
        raise PcapError(f"{path}: no interface or packet in the pcapng file")
    return out


def ip_of(p):
    """(IP version, the IP packet) of a frame, or None when it carries no IP."""
    d, lt = p.data, p.link
    if lt == EN10MB:
        off, et = 12, None
        while off + 2 <= len(d):
            et = struct.unpack("!H", d[off:off + 2])[0]
            if et in (0x8100, 0x88A8):
                off += 4
                continue
            break
        ip = d[off + 2:]
        return {0x0800: (4, ip), 0x86DD: (6, ip)}.get(et)
    if lt in (NULL, LOOP):
        if len(d) < 4:
            return None
        fam = struct.unpack("!I" if lt == LOOP else "<I", d[:4])[0]
        if fam > 0xFFFF:  # written in the other byte order than this reader's guess
            fam = struct.unpack(">I" if lt == NULL else "<I", d[:4])[0]
        return (4, d[4:]) if fam == 2 else (6, d[4:]) if fam in (10, 24, 28, 30) else None
    if lt == LINUX_SLL:
        et = struct.unpack("!H", d[14:16])[0]
        return {0x0800: (4, d[16:]), 0x86DD: (6, d[16:])}.get(et)
    if lt == LINUX_SLL2:
        et = struct.unpack("!H", d[0:2])[0]
        return {0x0800: (4, d[20:]), 0x86DD: (6, d[20:])}.get(et)
    if lt in (RAW, IPV4_LT, IPV6_LT, 12, 14):
        v = d[0] >> 4 if d else 0
        return (v, d) if v in (4, 6) else None
    return None


@dataclasses.dataclass
class Segment:
    ts: float
    src: tuple     # (address bytes, port)
    dst: tuple
    flags: int
    payload: bytes


SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08


def tcp_of(p):
    got = ip_of(p)
    if got is None:
        return None
    v, ip = got
    if v == 4:
        if len(ip) < 20 or ip[9] != 6:
            return None
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0] or len(ip)
        src, dst, seg = ip[12:16], ip[16:20], ip[ihl:total]
    else:
        if len(ip) < 40 or ip[6] != 6:
            return None
        src, dst, seg = ip[8:24], ip[24:40], ip[40:40 + struct.unpack("!H", ip[4:6])[0]]
    if len(seg) < 20:
        return None
    sp, dp = struct.unpack("!HH", seg[:4])
    doff = (seg[12] >> 4) * 4
    return Segment(p.ts, (src, sp), (dst, dp), seg[13], seg[doff:])


def find_ports(packets):
    """{"server": port, "proxy": port or None} of the calculator's programs in a capture, found from
    its own connections: the listening ports are those SYNs go to whose first request looks like
    the calculator's (a 12-byte header whose total length and request bit fit); the proxy's port
    is the one whose connections hold connections to the other one (its upstream connections).
    None when the capture shows no calculator connection."""
    conns = {}   # (client addr/port, server addr/port) -> [t0, t1, first payload]
    for p in packets:
        s = tcp_of(p)
        if s is None:
            continue
        if s.flags & SYN and not s.flags & ACK:
            conns.setdefault((s.src, s.dst), [s.ts, s.ts, b""])
        for k in ((s.src, s.dst), (s.dst, s.src)):
            if k in conns:
                c = conns[k]
                c[1] = max(c[1], s.ts)
                if k == (s.src, s.dst) and s.payload and len(c[2]) < 12:
                    c[2] += s.payload
    score = {}
    for (cli, srv), (_, _, first) in conns.items():
        ok = len(first) >= 12 and struct.unpack("!H", first[4:6])[0] >= 12 and first[6] & 0x04
        score.setdefault(srv[1], [0, 0])
        score[srv[1]][0 if ok else 1] += 1
    # a port with calculator requests; a refused SYN (3.3's upstream) carries none but is the
    # server's when the proxy's connections enclose it
    calc = [pt for pt, (good, _) in score.items() if good]
    if not calc:
        return None
    spans = {pt: [(t0, t1) for (c, s), (t0, t1, _) in conns.items() if s[1] == pt] for pt in score}

    def encloses(a, b):
        return sum(1 for (u0, u1) in spans[b] if any(t0 <= u0 and u1 <= t1 + 1e-3 for t0, t1 in spans[a]))
    best = None
    for a in calc:
        for b in score:
            if a != b:
                n = encloses(a, b)
                if n and (best is None or n > best[0]):
                    best = (n, a, b)
    if best:
        return {"proxy": best[1], "server": best[2]}
    return {"server": max(calc, key=lambda pt: score[pt][0]), "proxy": None}


# ---------------------------------------------------------------- writing

def checksum(data):
    """The Internet checksum (RFC 1071) of `data`: the one's complement of the one's-complement
    sum of its 16-bit words, an odd last byte padded with a zero."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _retcp(v, ip, ports):
    """The IP packet with its TCP ports mapped by `ports` and checksums made again."""
    if v == 4:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0] or len(ip)
        head, seg = bytearray(ip[:ihl]), bytearray(ip[ihl:total])
    else:
        head, seg = bytearray(ip[:40]), bytearray(ip[40:40 + struct.unpack("!H", ip[4:6])[0]])
    sp, dp = struct.unpack("!HH", seg[:4])
    seg[0:4] = struct.pack("!HH", ports.get(sp, sp), ports.get(dp, dp))
    seg[16:18] = b"\0\0"
    if v == 4:
        pseudo = bytes(head[12:20]) + struct.pack("!BBH", 0, 6, len(seg))
    else:
        pseudo = bytes(head[8:40]) + struct.pack("!IxxxB", len(seg), 6)
    seg[16:18] = struct.pack("!H", checksum(pseudo + bytes(seg)))
    return v, bytes(head) + bytes(seg)


def frame(v, ip, link):
    """An IP packet framed for `link`."""
    if link == EN10MB:
        return b"\0" * 12 + struct.pack("!H", 0x0800 if v == 4 else 0x86DD) + ip
    if link == NULL:
        return struct.pack("<I", 2 if v == 4 else 24) + ip
    if link == LOOP:
        return struct.pack("!I", 2 if v == 4 else 24) + ip
    if link == LINUX_SLL:
        return struct.pack("!HHH8sH", 0, 772, 6, b"\0" * 8, 0x0800 if v == 4 else 0x86DD) + ip
    if link == LINUX_SLL2:
        return struct.pack("!HHIHBB8s", 0x0800 if v == 4 else 0x86DD, 0, 1, 772, 0, 6, b"\0" * 8) + ip
    if link == RAW:
        return ip
    raise PcapError(f"cannot write link type {link}")


def write_pcap(path, packets, link):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, link))
        for p in packets:
            sec = int(p.ts)
            f.write(struct.pack("<IIII", sec, int(round((p.ts - sec) * 1e6)) % 1000000, len(p.data), len(p.data)))
            f.write(p.data)


def _block(btype, body):
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def write_pcapng(path, packets, link):
    with open(path, "wb") as f:
        f.write(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        f.write(_block(1, struct.pack("<HHI", link, 0, 262144) + struct.pack("<HH", 0, 0)))
        for p in packets:
            t = int(round(p.ts * 1e6))
            f.write(_block(6, struct.pack("<IIIII", 0, t >> 32, t & 0xFFFFFFFF, len(p.data), len(p.data)) + p.data))


def rewrite(src, dst, ports=None, link=None, fmt=None, keep=None):
    """Write `src`'s TCP packets to `dst`: ports mapped by `ports` ({old: new}), framed for `link`
    (default: as they are), as pcap or pcapng (`fmt`, default by dst's suffix); `keep(segment)`
    may drop packets."""
    pk = read(src)
    out = []
    for p in pk:
        got = ip_of(p)
        if got is None or tcp_of(p) is None:
            continue
        if keep is not None and not keep(tcp_of(p)):
            continue
        v, ip = _retcp(*got, ports or {})
        lt = p.link if link is None else link
        out.append(Packet(p.ts, lt, frame(v, ip, lt), 0))
    lt = link if link is not None else (pk[0].link if pk else EN10MB)
    if (fmt or ("pcapng" if dst.endswith(".pcapng") else "pcap")) == "pcapng":
        write_pcapng(dst, out, lt)
    else:
        write_pcap(dst, out, lt)
    return len(out)
