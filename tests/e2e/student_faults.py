"""Student-style programs with a fault, for the tests that grade them: tests/student's server or
proxy with one of its functions or its cache replaced, written as a file of their own."""
import os
import textwrap

STUDENT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "student")

# stores nothing: every request goes to the server, a hit included
PROXY_NEVER_CACHES = """
import calc_proxy
class NoCache(dict):
    def __setitem__(self, k, v):
        pass
calc_proxy.CACHE = NoCache()
calc_proxy.main()
"""


def closes_first(role, cork):
    """calc_ROLE closing each connection as soon as it has answered, before its client does.
    Corked, the answer and the FIN leave in one segment, so the program's FIN leads the teardown
    however late the process runs again after its send; uncorked, as students write it, the FIN
    races the client's (what the close-wait hold settles)."""
    answer = "calc_server.process(data)" if role == "server" else 'calc_proxy.process(data, f"{addr[0]}:{addr[1]}")'
    cork = "        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)\n" if cork else ""
    return (f"import socket, calc_{role}, api\n"
            "def handle(conn, addr):\n"
            "    data = api.recv_message(conn)\n"
            "    if data:\n"
            f"        answer = {answer}\n"
            f"{cork}"
            "        conn.sendall(answer)\n"
            "    conn.close()\n"
            f"calc_{role}.handle = handle\n"
            f"calc_{role}.main()\n")


def write(tmp_path, name, code):
    """`code` (indented or not) as tmp_path/broken/NAME.py, importing tests/student's modules; its
    path.  A folder of their own: the sandbox shows a program the folder it lives in, and
    tmp_path also holds the runs' work folders, which other runs write while this one copies it."""
    (tmp_path / "broken").mkdir(exist_ok=True)
    p = tmp_path / "broken" / f"{name}.py"
    p.write_text(f"import sys\nsys.path.insert(0, {STUDENT!r})\n" + textwrap.dedent(code))
    return str(p)
