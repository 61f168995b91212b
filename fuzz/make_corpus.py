#!/usr/bin/env python3
"""fuzz/make_corpus.py: seed corpora for fuzz_unpickle, fuzz_frame, fuzz_conn and
fuzz_proxy_conn from the reference's vectors (captures/vectors): every request and response
payload (some of them also as CPython 3.11.2 pickles requests), the protocol vectors, a few
hand-made hostile payloads, and event scripts for the
connection machines. Run from the repository root; rewrites fuzz/corpus/<target>/."""
import hashlib
import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VEC = os.environ.get('CALC_VECTORS', os.path.join(ROOT, 'captures', 'vectors'))


def put(target, data):
    d = os.path.join(ROOT, 'fuzz', 'corpus', target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), 'wb') as f:
        f.write(data)


def header(n, flags):
    return (0x638f6089).to_bytes(4, 'big') + (12 + n).to_bytes(2, 'big') + flags.to_bytes(2, 'big') + b'\xff\xff\x00\x00'


def rand_seeds():
    """pickle.dumps of calculator graphs holding rand (random.uniform of a random.Random),
    made with stand-ins for the reference's classes (docs/protocol.md section 2.1: same names, same
    attribute order)."""
    import enum, math, operator, pickle, random, types
    mod = types.ModuleType('calculator')
    sys.modules['calculator'] = mod

    def cls(name, *attrs):
        def init(self, *a):
            for k, v in zip(attrs, a):
                setattr(self, k, v)
        c = type(name, (), {'__init__': init, '__module__': 'calculator'})
        setattr(mod, name, c)
        return c
    Assoc = enum.Enum('Associativity', [('LEFT', 0), ('RIGHT', 1)], module='calculator')
    mod.Associativity = Assoc
    Const = cls('Constant', 'value')
    Bin = cls('BinaryExpr', 'left_operand', 'operator', 'right_operand')
    Call = cls('FunctionCallExpr', 'function', 'args')
    BinOp = cls('BinaryOperator', 'symbol', 'function', 'associativity')
    Fn = cls('Function', 'name', 'function')
    out = []
    for seed, gauss in ((1, False), (2, True)):
        r = random.Random(seed)
        if gauss:
            r.gauss(0, 1)
        rand = Fn('rand', r.uniform)
        add = BinOp('+', operator.add, Assoc.LEFT)
        call = Call(rand, [Const(1), Const(2.5)])
        out.append(pickle.dumps(call))
        out.append(pickle.dumps(Bin(call, add, Call(rand, [Const(-7), Const(10**30)]))))
    del sys.modules['calculator']
    return out


def shared_tuple_key(levels):
    """{t: 1} with t = (u, u, u), u = (v, v, v), ... levels deep, every level one memo entry."""
    p = b'\x80\x04)\x94'
    for i in range(levels):
        p += (b'h' + bytes([i])) * 3 + b'\x87\x94'
    return p + b'}\x94h' + bytes([levels]) + b'K\x01s.'


TARGETS = ('fuzz_unpickle', 'fuzz_frame', 'fuzz_conn', 'fuzz_proxy_conn')


def feed(op, data):
    """A script op carrying bytes: the op, a 2-byte length, the bytes."""
    return bytes([op]) + len(data).to_bytes(2, 'big') + data


def conn_scripts(pairs):
    """Event scripts (see fuzz/fuzz_conn.c, fuzz/fuzz_proxy_conn.c): whole, pipelined, split
    and truncated requests with the peer reading, not reading, then closing; for the proxy,
    each request with its server answer, refused, reset and garbage upstreams."""
    # fuzz_conn ops: 0 receive, 1 drive, 2 partial drive, 3 writable, 4 FIN, 5 timeout.
    for req, ans in pairs[:20]:
        put('fuzz_conn', feed(0, req) + b'\x01' + feed(0, req * 3) + b'\x01\x04\x01')
        put('fuzz_conn', feed(0, req[:7]) + feed(0, req[7:]) + b'\x08\x03\x01' + feed(0, req[:30]) + b'\x04\x01')
        put('fuzz_conn', feed(0, req * 90)[:65000] + b'\x05\x01')
        # fuzz_proxy_conn ops: 0 client bytes, 1 server bytes, 2 connected, 3 server FIN,
        # 4 upstream error (op // 12 % 10 is the calc_err), 5 client FIN, 6 timeout, 7 drive,
        # 8 partial drive, 9/10 writable, 11 drive nothing.
        miss = feed(0, req) + b'\x07\x02\x07' + feed(1, ans) + b'\x07'
        put('fuzz_proxy_conn', miss + feed(0, req) + b'\x07\x05\x07')
        put('fuzz_proxy_conn', feed(0, req) + b'\x07' + bytes([4 + 12 * 5]) + b'\x07\x05\x07')
        put('fuzz_proxy_conn', feed(0, req + req[:40]) + b'\x07\x02\x07' + feed(1, ans[:20]) + b'\x03\x07\x05\x07')
        put('fuzz_proxy_conn', feed(0, req) + b'\x07\x02\x07' + feed(1, b'\0\0\0\0\0\x03garbage') + b'\x07')


def main():
    for t in TARGETS:
        shutil.rmtree(os.path.join(ROOT, 'fuzz', 'corpus', t), ignore_errors=True)
    msgs, pairs = [], []
    with open(os.path.join(VEC, 'legacy-expressions.jsonl')) as f:
        for line in f:
            v = json.loads(line)
            req = bytes.fromhex(v['request']['payload'])
            put('fuzz_unpickle', req)
            msgs.append(header(len(req), 0x1c00) + req)
            for k in ('steps', 'nosteps'):
                p = bytes.fromhex(v[k]['payload'])
                put('fuzz_unpickle', p)
                msgs.append(header(len(p), 0x1000 | v[k]['status']) + p)
            pairs.append((msgs[-3], msgs[-2]))   # a request and its answer with steps
    with open(os.path.join(VEC, 'legacy-protocol.jsonl')) as f:
        for line in f:
            v = json.loads(line)
            for k in ('request', 'response'):
                if v.get(k):
                    raw = bytes.fromhex(v[k])
                    msgs.append(raw)
                    if len(raw) > 12:
                        put('fuzz_unpickle', raw[12:])
    # The same requests as CPython 3.11.2 pickles them (enum members by name, getattr): every
    # 8th of those that differ from the by-value ones.
    with open(os.path.join(VEC, 'legacy-expressions-py3.11.2.jsonl')) as f:
        differ = [bytes.fromhex(v['request']['payload']) for v in map(json.loads, f)
                  if b'getattr' in bytes.fromhex(v['request']['payload'])]
    for req in differ[::8]:
        put('fuzz_unpickle', req)
        msgs.append(header(len(req), 0x1c00) + req)
    # rand: no vector has one, so build the reference's graph from stand-in classes.
    for seed in rand_seeds():
        put('fuzz_unpickle', seed)
    # Protocols 0-3 (text opcodes, GLOBAL, copyreg._reconstructor): every 25th request and
    # answer re-pickled through the student-style classes (tests/student), as students'
    # programs may send them.
    sys.path.insert(0, os.path.join(ROOT, 'tests', 'student'))
    import pickle
    import api
    with open(os.path.join(VEC, 'legacy-expressions.jsonl')) as f:
        for i, line in enumerate(f):
            if i % 25:
                continue
            v = json.loads(line)
            for hexp in (v['request']['payload'], v['steps']['payload']):
                obj = api.loads(bytes.fromhex(hexp))
                for proto in range(4):
                    put('fuzz_unpickle', pickle.dumps(obj, protocol=proto))
    # Hostile seeds: a GLOBAL/INST pickle, a billion-laughs list, a huge FRAME claim, a dict
    # key of 40 levels of t = (t, t, t) shared through the memo (3^40 paths).
    put('fuzz_unpickle', b"cos\nsystem\n(S'ls'\ntR.")
    put('fuzz_unpickle', b'\x80\x04]\x94(h\x00h\x00h\x00e]\x94(h\x01h\x01e.')
    put('fuzz_unpickle', b'\x80\x04\x95\xff\xff\xff\xff\x00\x00\x00\x00K\x01.')
    put('fuzz_unpickle', shared_tuple_key(40))
    # Frames: first byte is the chunk size; then one, two and three messages back to back,
    # a partial one, and a bad total length.
    for i, m in enumerate(msgs[:60]):
        put('fuzz_frame', bytes([i % 37]) + m)
        if i + 2 < len(msgs):
            put('fuzz_frame', bytes([(i * 7) % 37]) + m + msgs[i + 1] + msgs[i + 2][:20])
    put('fuzz_frame', b'\x05' + header(0, 0x0400)[:4] + b'\x00\x05' + b'\x04\x00\x00\x00\x00\x00')
    conn_scripts(pairs)
    print('corpus:', {t: len(os.listdir(os.path.join(ROOT, 'fuzz', 'corpus', t))) for t in TARGETS})


if __name__ == '__main__':
    sys.exit(main())
