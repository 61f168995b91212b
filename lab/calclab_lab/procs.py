"""Programs under test: each in its own process group, its output time-stamped line by line and
capped, all of them stopped however the run ends (stop_all from finally blocks and signal
handlers)."""
import os
import signal
import socket
import subprocess
import threading
import time

_LIVE = []          # every Proc started and not yet reaped, for the signal handlers
_LOCK = threading.Lock()


class Proc:
    def __init__(self, role, argv, log_path=None, env=None, cwd=None, max_output=None):
        self.role = role
        self.argv = argv
        self.lines = []            # (time, text)
        self.log_path = log_path
        self.max_output = max_output   # bytes kept; a program printing more is killed
        self.capped = False
        self.started = time.time()
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True, env=env, cwd=cwd)
        with _LOCK:
            _LIVE.append(self)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        logf = open(self.log_path, "a") if self.log_path else None
        kept = 0
        try:
            for raw in iter(lambda: self.p.stdout.readline(65536), b""):
                if self.capped:
                    continue  # draining what was written before the kill
                kept += len(raw)
                if self.max_output is not None and kept > self.max_output:
                    self._cap()
                    raw = b"[calclab: output cut at %d bytes, program killed]\n" % self.max_output
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.lines.append((time.time(), line))
                if logf:
                    logf.write(line + "\n")
                    logf.flush()
        finally:
            if logf:
                logf.close()

    def _cap(self):
        self.capped = True
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def output(self):
        self._reader.join(2)
        return "".join(l + "\n" for _, l in self.lines)

    def wait(self, timeout):
        """Wait for exit; on timeout the whole group is killed.  Returns the exit code or None."""
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return None
        self._reader.join(2)
        _forget(self)
        return rc

    def stop(self, grace=3.0):
        if self.p.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
                try:
                    os.killpg(self.p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.p.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        else:
            try:  # the leader is gone; anything it left in its group goes too
                os.killpg(self.p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._reader.join(2)
        _forget(self)
        return self.p.returncode


def _forget(proc):
    with _LOCK:
        if proc in _LIVE:
            _LIVE.remove(proc)


def stop_all(procs=None):
    """Stop `procs` (default: every Proc of this process), the last started first."""
    if procs is None:
        with _LOCK:
            procs = list(_LIVE)
    for proc in reversed(list(procs)):
        try:
            proc.stop(grace=1.0)
        except Exception:
            pass


def install_signal_handlers():
    def handler(signum, _frame):
        stop_all()
        raise SystemExit(128 + signum)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):
            pass  # not the main thread


def port_open(host, port):
    try:
        socket.create_connection((host, port), timeout=0.3).close()
        return True
    except OSError:
        return False


def listening(port, net_dir="/proc/net"):
    """Whether some socket listens on TCP `port`, read from NET_DIR/tcp{,6} (/proc/PID/net for the
    network namespace of process PID): no probe connection, so nothing shows up in a capture or
    in the program's log."""
    found = False
    for name in (f"{net_dir}/tcp", f"{net_dir}/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        found = True
        except OSError:
            continue
    return found


def wait_port(host, port, proc=None, timeout=10.0, net_dir="/proc/net"):
    """True once something listens on port; False on timeout or when proc exits first."""
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and not proc.alive():
            return False
        if listening(port, net_dir):
            return True
        time.sleep(0.05)
    return False


def wait_port_closed(host, port, timeout=5.0, net_dir="/proc/net"):
    end = time.time() + timeout
    while time.time() < end:
        if not listening(port, net_dir):
            return True
        time.sleep(0.05)
    return False


def free_port_pair(host="127.0.0.1", lo=20000, hi=60000):
    """A base B such that B (proxy) and B+1 (server) are both free right now."""
    import random
    rng = random.Random(os.getpid() ^ int(time.time() * 1000))
    for _ in range(200):
        base = rng.randrange(lo, hi, 2)
        ok = True
        for p in (base, base + 1):
            s = socket.socket()
            try:
                s.bind((host, p))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return base
    raise RuntimeError("no free port pair")
