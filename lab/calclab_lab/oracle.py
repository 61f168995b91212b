"""What the reference answers and its client prints for an expression: calclab's own calc-client,
whose printouts are the reference client's byte for byte, asked with --local (the request is
answered in that process by calc-server's own rules, with no connection).

The lab's expected printouts come from here, never from a Python stand-in: what calc-client
prints is what the programs the goldens are played with print."""
import functools
import json
import os
import subprocess

from . import paths

REFUSED_ERROR = ("Got error: ('Internal proxy error', CalculatorServerError('Connection refused by server "
                 "and the request was not in the cache/it was stale'))")
REFUSED_LEN = 170
# what calc-sniff decodes the reference proxy's refused answer to: the error's type and text
REFUSED_TEXT = "CalculatorServerError: " + REFUSED_ERROR.split(": ", 1)[1]


class OracleError(Exception):
    """calc-client cannot say (not built, or the expression is not one it accepts)."""


def _client():
    exe = os.path.join(paths.BUILD, "calc-client")
    if not os.access(exe, os.X_OK):
        raise OracleError(f"{exe} is not built: calclab's client is the lab's oracle for expected printouts")
    return exe


def _run(expr, steps, json_out):
    argv = [_client(), "--local"] + (["--json"] if json_out else []) + ([] if steps else ["--no-steps"])
    try:
        r = subprocess.run(argv + ["--", expr], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise OracleError(f"calc-client --local: {e}")
    if r.returncode not in (0, 1):
        why = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise OracleError(f"{expr!r}: {why.removeprefix('calc-client: ')}")
    return r.stdout


@functools.lru_cache(maxsize=4096)
def answer(expr, steps=True):
    """calc-client --local --json's record for `expr`: status, result or error (and error_type),
    steps, expression (as the server prints it: what calc-sniff decodes the request to),
    deterministic (no rand), request_bytes, response_bytes."""
    try:
        return json.loads(_run(expr, steps, True))
    except ValueError as e:
        raise OracleError(f"calc-client --local --json printed no JSON for {expr!r}: {e}")


@functools.lru_cache(maxsize=4096)
def _prints(expr, steps):
    lines = _run(expr, steps, False).splitlines()
    body = [l for l in lines if not l.startswith("{local} ")
            or not l.endswith(("Connection established", "Connection closed"))
            and " Sending request of length " not in l and " Got response of length " not in l]
    return tuple(l.removeprefix("{local} ") for l in body)


def prints(expr, steps=True):
    """What the reference client prints between its 'Got response' and 'Connection closed' lines
    for the answer to `expr` (the error line without its address prefix)."""
    return list(_prints(expr, steps))


def canonical(expr):
    """The expression as the server prints it, or None when calc-client does not accept it."""
    try:
        return answer(expr, True)["expression"]
    except OracleError:
        return None


def answer_text(expr, steps=True):
    """The text calc-sniff decodes the server's answer to: the result, or 'Type: message'."""
    a = answer(expr, steps)
    return a["result"] if a["status"] == 200 else f"{a.get('error_type', 'Exception')}: {a['error']}"
