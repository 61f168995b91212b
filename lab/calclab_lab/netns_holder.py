"""The lab's end of calc-netns, the process that makes one run's network namespace and keeps it
alive (src/bin/calc-netns: what it does and why the namespace is a child of another).

NetnsHolder.start() runs it with one end of a socketpair and waits for its "ready"; socket()
asks it for a TCP socket made inside the namespace; stop() closes the pair, and calc-netns
exits (the namespace goes once the run's programs are gone too)."""
import socket
import subprocess
import threading

from . import paths


class NetnsHolder:
    def __init__(self, rootless):
        self.rootless = rootless
        self.proc = None
        self._ctl = None
        self._lock = threading.Lock()   # a scenario's clients at once ask from several threads
        self.why = None                 # calc-netns's last words, once it has stopped

    @property
    def pid(self):
        return self.proc.pid

    def ns(self, kind):
        """/proc/PID/ns/KIND of the namespace ('net', 'user')."""
        return f"/proc/{self.proc.pid}/ns/{kind}"

    def start(self, timeout=10):
        """Make the namespace; OSError with calc-netns's reason when it cannot."""
        tool = paths.netns()
        if tool is None:
            raise OSError(f"calc-netns is not built in {paths.BUILD}")
        mine, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen([tool] + (["--map-root-user"] if self.rootless else []) + [str(theirs.fileno())],
                                         pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        finally:
            theirs.close()
        mine.settimeout(timeout)
        try:
            ready = mine.recv(16)
        except OSError:
            ready = b""
        if ready != b"ready\n":
            mine.close()
            self.stop()
            raise OSError(self.why or "the namespace holder did not start")
        mine.settimeout(None)
        self._ctl = mine
        return self

    def stop(self):
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            err = self.proc.stderr.read().decode(errors="replace").strip()
            self.proc.stderr.close()
            self.why = err[-300:] or None
            self.proc = None

    def tcp_socket(self, family):
        """A new, unconnected TCP socket of the namespace."""
        with self._lock:
            self._ctl.sendall(b"tcp6" if family == socket.AF_INET6 else b"tcp4")
            _, fds, _, _ = socket.recv_fds(self._ctl, 16, 1)
        if not fds:
            raise OSError("the namespace holder could not make a socket")
        return socket.socket(fileno=fds[0])
