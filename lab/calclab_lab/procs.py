"""Programs under test: each in its own process group, its output time-stamped line by line and
capped, all of them stopped however the run ends (stop_all from finally blocks and signal
handlers)."""
import os
import select
import signal
import socket
import subprocess
import threading
import time

# Every Proc started and not yet reaped, for the signal handlers.  Process-wide on purpose: a
# signal stops the whole process, and its handler has no caller to be handed a list by, so the
# registry is the process's own (as its children and its signal dispositions are).  Only Proc
# adds and removes entries, under the lock (a class's scenario clients start from threads).
_LIVE = []
_LOCK = threading.Lock()
# how often the waits below look at the TCP tables: a look costs ~0.1 ms, a late one adds
# its delay to every run
POLL = 0.005


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
            rc = self._wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return None
        self._reader.join(2)
        _forget(self)
        return rc

    def _wait(self, timeout):
        """Popen.wait(timeout), woken by the exit itself: Popen polls with sleeps of up to 50 ms,
        which every client run and every stop of a run would add to its wall time.  A pidfd
        (Linux 5.3) becomes readable when the process exits; without one, Popen's polling."""
        if self.p.returncode is None:
            try:
                fd = os.pidfd_open(self.p.pid)
            except (AttributeError, OSError):
                fd = None  # reaped already (its code is kept), or no pidfd here
            if fd is not None:
                try:
                    select.select([fd], [], [], timeout)
                finally:
                    os.close(fd)
                timeout = 0
        return self.p.wait(timeout=timeout)

    def stop(self, grace=3.0):
        if self.p.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
                try:
                    os.killpg(self.p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self._wait(wait)
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


# TCP socket states as /proc/net/tcp writes them (the kernel's tcp_states.h)
TCP_TIME_WAIT, TCP_CLOSE, TCP_LISTEN = "06", "07", "0A"
# a socket in these has sent every packet of its connection (TIME_WAIT: the last ACK too)
_DONE_STATES = (TCP_TIME_WAIT, TCP_CLOSE, TCP_LISTEN)


def _tcp_sockets(net_dir):
    """(local port, remote port, state) of every TCP socket in NET_DIR/tcp{,6} (/proc/PID/net for
    the network namespace of process PID): read, not probed, so nothing shows up in a capture or
    in a program's log."""
    for name in (f"{net_dir}/tcp", f"{net_dir}/tcp6"):
        try:
            with open(name) as f:
                next(f)
                rows = [line.split() for line in f]
        except OSError:
            continue
        for parts in rows:
            yield int(parts[1].rsplit(":", 1)[1], 16), int(parts[2].rsplit(":", 1)[1], 16), parts[3]


def listening(port, net_dir="/proc/net"):
    """Whether some socket listens on TCP `port`."""
    return any(state == TCP_LISTEN and local == port for local, _, state in _tcp_sockets(net_dir))


def wait_not_listening(port, timeout, net_dir="/proc/net"):
    """True once nothing listens on `port`; False after `timeout` seconds.  A program stopped
    by the run before may still be exiting (its group was signalled, its leader reaped): its
    listening socket closes only when its last process is gone."""
    end = time.time() + timeout
    while listening(port, net_dir):
        if time.time() >= end:
            return False
        time.sleep(POLL)
    return True


def connections_over(ports, net_dir="/proc/net"):
    """Whether every connection to or from `ports` is over on the wire: each of their sockets
    listens, is closed or waits in TIME_WAIT, so the last FIN and ACK have been sent."""
    return all(state in _DONE_STATES for local, remote, state in _tcp_sockets(net_dir)
               if local in ports or remote in ports)


def wait_connections_over(ports, timeout, net_dir="/proc/net"):
    """True once connections_over(ports); False after `timeout` seconds (a program that keeps a
    connection open)."""
    end = time.time() + timeout
    while not connections_over(ports, net_dir):
        if time.time() >= end:
            return False
        time.sleep(POLL)
    return True


def wait_port(host, port, proc=None, timeout=10.0, net_dir="/proc/net"):
    """True once something listens on port; False on timeout or when proc exits first."""
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and not proc.alive():
            return False
        if listening(port, net_dir):
            return True
        time.sleep(POLL)
    return False


def wait_port_closed(host, port, timeout=5.0, net_dir="/proc/net"):
    end = time.time() + timeout
    while time.time() < end:
        if not listening(port, net_dir):
            return True
        time.sleep(POLL)
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
