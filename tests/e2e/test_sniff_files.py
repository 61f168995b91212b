"""calc-sniff reading capture files: every way a file is read gives the same analysis, and
damaged files get a clear message and exit 2, never a crash or a hang.

A native-order microsecond pcap file is read by calc-sniff itself, in blocks a reader thread
reads ahead, with records cut by block boundaries carried over; standard input, byte-swapped
nanosecond and pcapng files are read by libpcap. The captures here are crafted so that many records
(up to 64 KiB each) straddle the 256 KiB blocks, and the two paths are compared on them."""
import json
import pickle
import random
import struct
import subprocess
import sys

import pytest

from calcproc import exe
from conftest import REPO, build_dir

LO = bytes([127, 0, 0, 1])
ETH = b"\0" * 12 + b"\x08\x00"


def frame(sport, dport, seq, ack, flags, data=b""):
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(data), 0, 0x4000, 64, 6, 0, LO, LO)
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags,
                      65483, 0, 0)
    return ETH + ip + tcp + data


def message(payload_len, rng, request=True):
    """A calculator message: a real header, then payload bytes (not a valid pickle: flagged
    malformed, which both read paths must report alike)."""
    flags = 0x1C00 if request else 0x18C8
    return struct.pack(">IHHHH", 0x638F6089, 12 + payload_len, flags, 65535, 0) + rng.randbytes(payload_len)


def records(seed=7, conns=120):
    """(ts_usec, frame) of conns client->server connections with large, split messages."""
    rng = random.Random(seed)
    t = 1_670_340_000_000_000
    out = []
    for k in range(conns):
        cp, isn_c, isn_s = 20000 + k, rng.getrandbits(32), rng.getrandbits(32)
        n = [isn_c + 1, isn_s + 1]

        def seg(side, flags, data=b""):
            nonlocal t
            t += rng.randrange(1, 900)
            a, b = (cp, 9999) if side == 0 else (9999, cp)
            out.append((t, frame(a, b, n[side], n[1 - side], flags, data)))
            n[side] += len(data)

        out.append((t, frame(cp, 9999, isn_c, 0, 0x02)))
        out.append((t + 1, frame(9999, cp, isn_s, isn_c + 1, 0x12)))
        out.append((t + 2, frame(cp, 9999, isn_c + 1, isn_s + 1, 0x10)))
        for side, size in ((0, rng.randrange(0, 60000)), (1, rng.randrange(0, 65000))):
            m = message(size, rng, request=side == 0)
            while m:  # segments of up to 64 KiB, as on lo
                cut = rng.randrange(1, 65483)
                seg(side, 0x18, m[:cut])
                m = m[cut:]
                seg(1 - side, 0x10)
        seg(0, 0x11)
        n[0] += 1
        seg(1, 0x11)
        n[1] += 1
        seg(0, 0x10)
    return out


def pcap_bytes(recs, endian="<", nano=False, snaplen=262144):
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    b = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, 1)]
    for ts, fr in recs:
        sub = ts % 1_000_000 * (1000 if nano else 1)
        b.append(struct.pack(endian + "IIII", ts // 1_000_000, sub, len(fr), len(fr)) + fr)
    return b"".join(b)


def pcapng_bytes(recs, snaplen=262144):
    """The same records as a pcapng file: section header, one Ethernet interface with
    microsecond time stamps (the default), one enhanced packet block per record."""
    def block(btype, body):
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)
    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           block(0x00000001, struct.pack("<HHI", 1, 0, snaplen))]
    for ts, fr in recs:
        out.append(block(0x00000006, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(fr),
                                                 len(fr)) + fr))
    return b"".join(out)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    recs = records()
    files = {"native": pcap_bytes(recs), "swapped": pcap_bytes(recs, ">"),
             "nano": pcap_bytes(recs, nano=True), "pcapng": pcapng_bytes(recs)}
    paths = {}
    for name, data in files.items():
        paths[name] = d / f"{name}.pcap"
        paths[name].write_bytes(data)
    assert len(files["native"]) > 8 * 256 * 1024, "the capture must span many read blocks"
    return d, paths, recs


def sniff(*args, stdin=None):
    return subprocess.run([exe("calc-sniff"), *map(str, args)], input=stdin, capture_output=True,
                          timeout=120)


@pytest.mark.parametrize("mode", [[], ["--json"], ["--trace"], ["--summary"]])
def test_every_read_path_gives_the_same_analysis(capture, mode):
    _, paths, recs = capture
    direct = sniff("-r", paths["native"], *mode)
    assert direct.returncode == 0, direct.stderr
    assert direct.stdout
    piped = sniff("-r", "-", *mode, stdin=paths["native"].read_bytes())
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == direct.stdout
    for other in ("swapped", "nano", "pcapng"):
        r = sniff("-r", paths[other], *mode)
        assert r.returncode == 0, r.stderr
        assert r.stdout == direct.stdout, other


def test_every_record_passes_through_intact(capture, tmp_path):
    """-w writes each record read: for a native file the copy is the file itself, so no record
    cut by a block boundary lost or gained a byte."""
    _, paths, recs = capture
    copy = tmp_path / "copy.pcap"
    r = sniff("-r", paths["native"], "--summary", "-w", copy)
    assert r.returncode == 0, r.stderr
    assert copy.read_bytes() == paths["native"].read_bytes()


def whole_records_before(data, cut):
    """Records wholly inside data[:cut]."""
    at, n = 24, 0
    while at + 16 <= cut:
        caplen = struct.unpack_from("<I", data, at + 8)[0]
        if at + 16 + caplen > cut:
            break
        at += 16 + caplen
        n += 1
    return n


def test_truncated_files_report_where_they_end(capture, tmp_path):
    _, paths, _ = capture
    data = paths["native"].read_bytes()
    rng = random.Random(3)
    cuts = [30, 24 + 8, 256 * 1024, 256 * 1024 + 5, len(data) - 1, len(data) - 20]
    cuts += [rng.randrange(24, len(data)) for _ in range(12)]
    for cut in cuts:
        f = tmp_path / "cut.pcap"
        f.write_bytes(data[:cut])
        r = sniff("-r", f, "--summary")
        n = whole_records_before(data, cut)
        err = r.stderr.decode()
        # a cut exactly after a record is a shorter, valid file
        if whole_records_end(data, n) == cut:
            assert r.returncode == 0, (cut, err)
            continue
        assert r.returncode == 2, (cut, err)
        assert f"corrupt or truncated capture after {n} packets" in err, (cut, err)
        piped = sniff("-r", "-", "--summary", stdin=data[:cut])
        assert piped.returncode == 2 and piped.stderr.decode().replace("-:", f"{f}:") == err, cut


def whole_records_end(data, n):
    at = 24
    for _ in range(n):
        at += 16 + struct.unpack_from("<I", data, at + 8)[0]
    return at


def test_corrupt_record_is_reported_by_number(capture, tmp_path):
    """A record claiming more bytes than the snapshot length, deep in the file."""
    _, paths, recs = capture
    data = bytearray(paths["native"].read_bytes())
    for k in (0, 1, len(recs) // 2, len(recs) - 1):
        at = whole_records_end(data, k)
        bad = bytearray(data)
        struct.pack_into("<II", bad, at + 8, 300000, 300000)
        f = tmp_path / "bad.pcap"
        f.write_bytes(bad)
        r = sniff("-r", f, "--summary")
        assert r.returncode == 2
        assert f"corrupt or truncated capture after {k} packets" in r.stderr.decode()
        piped = sniff("-r", "-", "--summary", stdin=bytes(bad))
        assert piped.returncode == 2
        assert f"corrupt or truncated capture after {k} packets" in piped.stderr.decode()


@pytest.mark.parametrize("content", [b"", b"\xd4\xc3\xb2", b"not a capture at all, just text\n" * 4])
def test_not_a_capture(tmp_path, content):
    f = tmp_path / "x.pcap"
    f.write_bytes(content)
    r = sniff("-r", f)
    assert r.returncode == 2
    assert r.stderr.decode().startswith(f"calc-sniff: {f}: cannot read capture")
    assert not r.stdout


def test_missing_file_and_directory(tmp_path):
    for path in (tmp_path / "nope.pcap", tmp_path):
        r = sniff("-r", path)
        assert r.returncode == 2
        assert r.stderr.decode().startswith(f"calc-sniff: {path}: cannot read capture"), r.stderr


def test_lab_status_is_the_verdict_record(capture, tmp_path, monkeypatch):
    """The lab's verify status is calc-sniff's --json verdict (the lab keeps no table of exit
    numbers): pass, fail, inconclusive (a capture with a gap), and a usage error when calc-sniff
    writes no verdict (a capture it cannot read), with calc-sniff's message as the reason."""
    sys.path.insert(0, str(REPO / "lab"))
    from calclab_lab import paths, sniff as lab_sniff
    monkeypatch.setattr(paths, "BUILD", str(build_dir()))
    golden = paths.CAPTURES + "/3.2.pcap"
    v = lab_sniff.verify(golden, golden)
    assert (v["status"], v["reason"]) == ("pass", None)
    assert v["checks"] and all(c["passed"] for c in v["checks"])
    v = lab_sniff.verify(paths.CAPTURES + "/3.1.pcap", golden)
    assert (v["status"], v["reason"]) == ("fail", None)
    assert not all(c["passed"] for c in v["checks"])
    recs = records(conns=3)
    whole, gap = tmp_path / "whole.pcap", tmp_path / "gap.pcap"
    whole.write_bytes(pcap_bytes(recs))
    gap.write_bytes(pcap_bytes(recs[:3] + recs[4:]))  # the first request's first segment is lost
    v = lab_sniff.verify(str(gap), str(whole), ports={"proxy": 9998, "server": 9999})
    assert v["status"] == "inconclusive"
    assert "misses bytes" in v["reason"]
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all, just text\n" * 4)
    v = lab_sniff.verify(str(junk), golden)
    assert v["status"] == "usage"
    assert v["reason"].startswith(f"calc-sniff: {junk}: cannot read capture"), v["reason"]
    assert v["checks"] == []


def test_both_pickle_flavours_show_their_expressions(tmp_path):
    """A capture of scenario 3.2 whose requests are pickled as CPython 3.11.2 (Debian 12's
    python3) pickles them (enum members by name: E1 706 bytes, E2 395) reads as the by-value one
    does: every request shows its expression, none is malformed, the same expressions and
    answers in the same places; only the request sizes (and so the sequence numbers) differ."""
    vectors = REPO / "captures" / "vectors"
    craft = REPO / "tests" / "bench" / "craft_capture.py"
    msgs = {}
    for flavour, name in (("value", "legacy-expressions.jsonl"), ("getattr", "legacy-expressions-py3.11.2.jsonl")):
        pcap = tmp_path / f"{flavour}.pcap"
        subprocess.run([sys.executable, str(craft), str(pcap), str(vectors / name), "3.2", "1"], check=True,
                       capture_output=True)
        out = sniff("-r", str(pcap), "--json")
        assert out.returncode == 0, out.stderr
        records = [__import__("json").loads(line) for line in out.stdout.decode().splitlines()]
        msgs[flavour] = [r for r in records if r["type"] == "msg"]
        assert b"undecodable request" not in sniff("-r", str(pcap)).stdout
    for flavour in msgs:
        requests = [m for m in msgs[flavour] if m["kind"] == "request"]
        assert len(requests) == 5 and all(not m["malformed"] and m["expression"] for m in requests)
    sizes = {f: sorted({m["size"] for m in msgs[f] if m["kind"] == "request"}) for f in msgs}
    assert sizes == {"value": [376, 687], "getattr": [395, 706]}

    def shown(ms):
        return [(m["conn"], m["kind"], m.get("expression"), m.get("result")) for m in ms]
    assert shown(msgs["getattr"]) == shown(msgs["value"])
    assert {m["expression"] for m in msgs["getattr"] if m["kind"] == "request"} == {
        "(sin(max(2, (3 * 4), 5, (6 * ((7 * 8) / 9)), (10 / 11))) / 12) * 13", "max(2, 3) + 3"}


def student_pickle(build):
    """pickle.dumps of build(calculator) with tests/student's calculator module: the bytes the
    course's client sends for that tree."""
    sys.path.insert(0, str(REPO / "tests" / "student"))
    try:
        import calculator
    finally:
        sys.path.pop(0)
    return pickle.dumps(build(calculator))


def nested(calc, depth):
    """((1 + 1) + 1) + ... nested depth deep."""
    e = calc.Constant(1)
    for _ in range(depth - 1):
        e = calc.BinaryExpr(e, calc.ADD, calc.Constant(1))
    return e


def conversation(payloads):
    """One client->server connection carrying each payload as a request, each answered by an
    empty 400 response, as (ts_usec, frame) records."""
    t, out = 1_670_340_000_000_000, []
    n = [1001, 5001]

    def seg(side, flags, data=b""):
        nonlocal t
        t += 10
        a, b = (40000, 9999) if side == 0 else (9999, 40000)
        out.append((t, frame(a, b, n[side], n[1 - side], flags, data)))
        n[side] += len(data)
    out.append((t, frame(40000, 9999, 1000, 0, 0x02)))
    out.append((t + 1, frame(9999, 40000, 5000, 1001, 0x12)))
    seg(0, 0x10)
    for p in payloads:
        seg(0, 0x18, struct.pack(">IHHHH", 0x638F6089, 12 + len(p), 0x1C00, 65535, 0) + p)
        seg(1, 0x18, struct.pack(">IHHHH", 0x638F6089, 12, 0x1990, 65535, 0))
    return out


def test_refused_payloads_are_named_and_kept(tmp_path):
    """A request the decoder refuses carries the decoder's error's name and its payload in hex
    (what a reader needs to ask whether the course's own code would take it): a tree nested
    past calclab's depth limit (refused on the limit, though pickled by the course's classes),
    the same bytes again, a cut pickle twice (the second from the decoder's cache) and a payload
    too long for the text cache (both invalid: the decoder gets a whole payload, so running out
    of bytes inside it is no "truncated" message); a request it decodes carries neither."""
    deep = student_pickle(lambda c: nested(c, 250))
    good = student_pickle(lambda c: nested(c, 3))
    cut = good[:-5]
    big = b"\x80\x04" + b"N" * 20000 + b"."
    payloads = [deep, good, deep, cut, cut, big]
    pcap = tmp_path / "refused.pcap"
    pcap.write_bytes(pcap_bytes(conversation(payloads)))
    out = sniff("-r", pcap, "--json")
    assert out.returncode in (0, 1), out.stderr
    reqs = [r for r in map(json.loads, out.stdout.decode().splitlines())
            if r["type"] == "msg" and r["kind"] == "request"]
    assert [r["malformed"] for r in reqs] == [True, False, True, True, True, True]
    assert [r.get("error") for r in reqs] == ["limit", None, "limit", "invalid", "invalid", "invalid"]
    assert [r.get("payload") for r in reqs] == [deep.hex(), None, deep.hex(), cut.hex(), cut.hex(), big.hex()]
    assert all(reqs[i]["expression"].startswith("undecodable request: ") for i in (0, 2, 3, 4, 5))
    assert "nested" in reqs[0]["expression"]
    assert reqs[1]["expression"] == "(1 + 1) + 1"
