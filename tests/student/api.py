"""Exceptions shared by the student-style server, proxy and client (module name `api`, as the
course's reference: pickles of these name `api.CalculatorClientError` / `api.CalculatorServerError`)."""


class CalculatorError(Exception):
    pass


class CalculatorClientError(CalculatorError):
    pass


class CalculatorServerError(CalculatorError):
    pass


# ---------------------------------------------------------------- wire format (docs/protocol.md section 1)
import io
import pickle
import socket
import struct
import time

HEADER = struct.Struct("!LHHHH")
HEADER_LEN = 12
MAX_LEN = 65535
STATUS_OK, STATUS_CLIENT_ERROR, STATUS_SERVER_ERROR = 200, 400, 500


class Header:
    def __init__(self, is_request, cache=True, steps=True, cache_control=65535, status=0,
                 length=HEADER_LEN, time_stamp=None, reserved=0):
        self.time_stamp = int(time.time()) if time_stamp is None else time_stamp
        self.length = length
        self.is_request = is_request
        self.cache = cache
        self.steps = steps
        self.cache_control = cache_control
        self.status = status
        self.reserved = reserved
        self.normalize()

    def normalize(self):
        if self.cache_control != 0 and not self.cache:
            self.cache_control = 0
        if not self.is_request and self.cache_control == 0 and self.cache:
            self.cache = False

    def pack(self):
        flags = (self.cache << 12) | (self.steps << 11) | (self.is_request << 10) | (self.status & 0x3ff)
        return HEADER.pack(self.time_stamp & 0xffffffff, self.length, flags, self.cache_control, 0)

    @classmethod
    def unpack(cls, data):
        if len(data) < HEADER_LEN:
            raise CalculatorClientError(f"The data is too short ({len(data)} bytes) to be a valid header")
        ts, length, flags, cc, _pad = HEADER.unpack(data[:HEADER_LEN])
        if length < HEADER_LEN:
            raise CalculatorClientError(
                f"Invalid total length: {length} (must be between 12 and 65536 bytes inclusive)")
        return cls(bool(flags & (1 << 10)), bool(flags & (1 << 12)), bool(flags & (1 << 11)), cc,
                   flags & 0x3ff, length, ts, flags >> 13)


def pack_message(header, payload):
    header.length = HEADER_LEN + len(payload)
    return header.pack() + payload


def recv_message(sock, first_wait=0.3):
    """Read one message framed by its total length.  Returns b'' on a clean EOF before any byte.
    A fragment shorter than a header that is followed by silence is returned as is (the caller
    answers it like the reference: 'too short')."""
    buf = b""
    while len(buf) < HEADER_LEN:
        if buf:
            sock.settimeout(first_wait)
        try:
            d = sock.recv(65536)
        except socket.timeout:
            d = b""
        finally:
            sock.settimeout(None)
        if not d:
            return buf
        buf += d
    need = HEADER.unpack(buf[:HEADER_LEN])[1]
    while len(buf) < need:
        d = sock.recv(65536)
        if not d:
            break
        buf += d
    return buf


_ALLOWED = {
    "calculator": {"Constant", "NamedConstant", "BinaryExpr", "UnaryExpr", "FunctionCallExpr",
                   "BinaryOperator", "UnaryOperator", "Function", "Associativity"},
    "_operator": {"add", "sub", "mul", "truediv", "mod", "pow", "neg", "pos"},
    "math": {"sin", "cos", "tan", "sqrt", "log"},
    "builtins": {"max", "min", "pow", "getattr", "complex"},
    "random": {"Random"},
    "api": {"CalculatorClientError", "CalculatorServerError"},
}


class SafeUnpickler(pickle.Unpickler):
    """The reference calls pickle.loads on network input; this student at least refuses globals
    that are not part of the protocol (and exception classes from builtins)."""

    def find_class(self, module, name):
        ok = name in _ALLOWED.get(module, ())
        if module == "builtins" and not ok:
            import builtins
            obj = getattr(builtins, name, None)
            ok = isinstance(obj, type) and issubclass(obj, BaseException)
        if not ok:
            raise pickle.UnpicklingError(f"global {module}.{name} is forbidden")
        return super().find_class(module, name)


def loads(data):
    return SafeUnpickler(io.BytesIO(data)).load()
