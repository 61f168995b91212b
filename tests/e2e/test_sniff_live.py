"""calc-sniff live on lo: a golden capture replayed with tcpreplay verifies live (issue 5), also
with a small kernel buffer (-B), and -B's bad values are usage errors."""
import os
import subprocess
import time

import pytest

from calcproc import REPO, exe

CAPTURES = REPO / "captures"

# Runs a command in a network namespace of its own with lo up (exec keeps its pid, so that
# nsenter -t PID can join it).
IN_OWN_NETNS = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']


def own_netns_or_skip():
    r = subprocess.run(IN_OWN_NETNS + ["true"], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        pytest.skip(f"the kernel refuses a network namespace here: {r.stderr.strip()}")


def replay_and_verify(tmp_path, golden, replayed, extra=(), own_netns=False):
    """calc-sniff verify live on lo while tcpreplay plays `replayed`; own_netns: both in a
    network namespace of their own, so that no other test's traffic on lo can mix in."""
    ready = tmp_path / "ready"
    argv = [exe("calc-sniff"), "verify", "--golden", str(CAPTURES / golden), "-i", "lo",
            "--duration", "8", "--ready-file", str(ready), *extra]
    sniff = subprocess.Popen((IN_OWN_NETNS if own_netns else []) + argv,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 10
        while not ready.exists():
            assert sniff.poll() is None, sniff.communicate()[0]
            assert time.time() < deadline, "calc-sniff never became ready"
            time.sleep(0.05)
        assert ready.read_text() == f"ready lo {sniff.pid}\n"
        join = ["nsenter", "-t", str(sniff.pid), "-n"] if own_netns else []
        r = subprocess.run(join + ["tcpreplay", "-i", "lo", "--topspeed", str(CAPTURES / replayed)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        time.sleep(0.3)
        sniff.send_signal(2)  # SIGINT: stop capturing and verify
        out = sniff.communicate(timeout=30)[0]
    finally:
        if sniff.poll() is None:
            sniff.kill()
            sniff.wait()
    return sniff.returncode, out


def test_golden_replayed_with_tcpreplay_verifies_live(tmp_path):
    rc, out = replay_and_verify(tmp_path, "3.2.pcap", "3.2.pcap")
    assert rc == 0, out
    assert "0 dropped by kernel" in out and out.rstrip().endswith("PASS")


def test_other_scenario_replayed_fails_live(tmp_path):
    # Scenario 3.1 (three direct connections) is no 3.2: verify names what differs.
    rc, out = replay_and_verify(tmp_path, "3.2.pcap", "3.1.pcap")
    assert rc == 1, out
    assert "FAIL" in out


def test_small_kernel_buffer_verifies_live(tmp_path):
    # -B 64: the smallest kernel buffer (64 KiB instead of 64 MiB) still holds scenario 3.2's
    # burst of 50 packets, none dropped
    own_netns_or_skip()
    rc, out = replay_and_verify(tmp_path, "3.2.pcap", "3.2.pcap", extra=["-B", "64"], own_netns=True)
    assert rc == 0, out
    assert "0 dropped by kernel" in out and out.rstrip().endswith("PASS")


@pytest.mark.parametrize("value", ["0", "63", "1048577", "", "abc", "64k", "1.5", "-64", "99999999999999999999"])
@pytest.mark.parametrize("verify", [False, True])
def test_bad_kernel_buffer_is_a_usage_error(value, verify):
    argv = [exe("calc-sniff")] + (["verify", "--golden", str(CAPTURES / "3.2.pcap")] if verify else []) + \
        ["-i", "lo", "--duration", "1", "-B", value]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr == f'calc-sniff: -B: expected KiB from 64 to 1048576, got "{value}"\n'
    assert r.stdout == ""


@pytest.mark.parametrize("value", ["64", "1048576"])
def test_kernel_buffer_bounds_are_accepted(value):
    # the bounds parse (a file is read as without -B: the kernel buffer is the live capture's)
    plain = subprocess.run([exe("calc-sniff"), "-r", str(CAPTURES / "3.2.pcap"), "--summary"],
                           capture_output=True, text=True, timeout=30)
    r = subprocess.run([exe("calc-sniff"), "-r", str(CAPTURES / "3.2.pcap"), "--summary", "-B", value],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == plain.stdout and r.stdout
