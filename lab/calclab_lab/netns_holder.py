"""The process that keeps one run's network namespace alive (started by sandbox.py as
`unshare --net [--user --map-root-user] -- python3 -I -S netns_holder.py FD`).

It first moves into a child namespace with TCP tables of its own (private_tcp_tables), brings
that namespace's lo up, says "ready" on the control socket FD, then hands out TCP
sockets created inside the namespace (the lab connects with them to the programs under test;
a socket keeps the namespace it was made in).  It exits when the lab closes the control socket
or dies, and with it the namespace, once the run's programs are gone too.  Stdlib only."""
import ctypes
import fcntl
import socket
import struct
import sys

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFREQ = "16sh22x"  # struct ifreq: the name, then ifr_flags in the 24-byte union
CLONE_NEWNET = 0x40000000
# A namespace created from one whose net.ipv4.tcp_child_ehash_entries is set gets a TCP
# established-connection table of that many buckets instead of sharing the host's (Linux 6.1+).
# Reading /proc/PID/net/tcp walks the whole table: about 4 ms of kernel time for a host's 262144
# buckets against 0.07 ms for these, and the lab reads it every few ms while it waits for a run's
# ports.  The table also caps TIME_WAIT sockets at half its size: a run makes about ten.
PRIVATE_TCP_TABLE = 1024


def private_tcp_tables():
    """Move this process into a new network namespace, child of the one unshare made, with TCP
    tables of its own; where the kernel has no tcp_child_ehash_entries, stay in this one."""
    try:
        with open("/proc/sys/net/ipv4/tcp_child_ehash_entries", "w") as f:
            f.write(str(PRIVATE_TCP_TABLE))
    except OSError:
        return False
    return ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) == 0


def bring_lo_up():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        got = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack(IFREQ, b"lo", 0))
        flags = struct.unpack(IFREQ, got)[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


def main():
    ctl = socket.socket(fileno=int(sys.argv[1]))
    private_tcp_tables()
    bring_lo_up()
    ctl.sendall(b"ready\n")
    while True:
        try:
            request = ctl.recv(64)
        except OSError:
            break
        if not request:
            break
        family = socket.AF_INET6 if request.startswith(b"tcp6") else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            socket.send_fds(ctl, [b"s"], [s.fileno()])


if __name__ == "__main__":
    main()
