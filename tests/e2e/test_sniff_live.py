"""calc-sniff live on lo: a golden capture replayed with tcpreplay verifies live (the lab judges
runs as they happen, so the live path must reach the same verdict as a file), also
with a small kernel buffer (-B), and -B's bad values are usage errors. Every replay runs on the lo
of a network namespace of its own: the goldens use the fixed ports 9998 and 9999, and other tests'
traffic on the host's lo must not mix in."""
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


def replay_and_verify(tmp_path, golden, replayed, extra=(), pace=("--topspeed",)):
    """calc-sniff verify live on lo while tcpreplay plays `replayed` (at `pace`), both in a
    network namespace of their own (skipped where the kernel refuses one)."""
    own_netns_or_skip()
    ready = tmp_path / "ready"
    argv = [exe("calc-sniff"), "verify", "--golden", str(CAPTURES / golden), "-i", "lo",
            "--duration", "8", "--ready-file", str(ready), *extra]
    sniff = subprocess.Popen(IN_OWN_NETNS + argv,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 10
        while not ready.exists():
            assert sniff.poll() is None, sniff.communicate()[0]
            assert time.time() < deadline, "calc-sniff never became ready"
            time.sleep(0.05)
        assert ready.read_text() == f"ready lo {sniff.pid}\n"
        join = ["nsenter", "-t", str(sniff.pid), "-n"]
        r = subprocess.run(join + ["tcpreplay", "-i", "lo", *pace, str(CAPTURES / replayed)],
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
    # -B 64: the smallest kernel buffer (64 KiB instead of 64 MiB) is taken and the capture runs
    # to a verdict. Whether 3.2's packets all fit a buffer that small depends on how soon the
    # reader is scheduled (a sanitizer build in a busy CI run dropped 2 of 100 even paced at 1000
    # packets a second): a race, not a property of calc-sniff. What calc-sniff owes is honesty:
    # with nothing dropped it verifies the scenario (PASS), with drops it says so and gives no
    # PASS or FAIL (inconclusive, exit 3)
    rc, out = replay_and_verify(tmp_path, "3.2.pcap", "3.2.pcap", extra=["-B", "64"], pace=("--pps", "1000"))
    if rc == 0:
        assert "0 dropped by kernel" in out and out.rstrip().endswith("PASS"), out
    else:
        assert rc == 3, out
        assert "0 dropped by kernel" not in out and "INCONCLUSIVE: the kernel dropped" in out, out


@pytest.mark.parametrize("value", ["0", "63", "1048577", "", "abc", "64k", "1.5", "-64", "99999999999999999999",
                                   " 64", "+64", "64 ", "0x40", "18446744073709551680"])
@pytest.mark.parametrize("verify", [False, True])
def test_bad_kernel_buffer_is_a_usage_error(value, verify):
    argv = [exe("calc-sniff")] + (["verify", "--golden", str(CAPTURES / "3.2.pcap")] if verify else []) + \
        ["-i", "lo", "--duration", "1", "-B", value]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr == f'calc-sniff: -B: expected KiB from 64 to 1048576, got "{value}"\n'
    assert r.stdout == ""


@pytest.mark.parametrize("value", ["64", "0064", "1048576"])
def test_kernel_buffer_bounds_are_accepted(value):
    # the bounds parse: the run gets as far as the interface, which does not exist (so no
    # buffer of up to 1 GiB is made); the message is the interface's, not -B's
    r = subprocess.run([exe("calc-sniff"), "-i", "calcsniffnone0", "--duration", "1", "--stats", "-B", value],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.startswith("calc-sniff: calcsniffnone0: cannot capture: "), r.stderr
    assert "-B" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize("option", [["-B", "64"], ["--buffer-size", "64"], ["--duration", "1"],
                                    ["--ready-file", "READY"]])
@pytest.mark.parametrize("verify", [False, True])
def test_live_only_options_with_a_file_are_usage_errors(tmp_path, option, verify):
    # a file read would ignore them (no buffer, no time limit, no ready file for a script
    # waiting on it): a usage error naming the option instead
    ready = tmp_path / "ready"
    option = [str(ready) if o == "READY" else o for o in option]
    argv = [exe("calc-sniff")] + (["verify", "--golden", str(CAPTURES / "3.2.pcap")] if verify else []) + \
        ["-r", str(CAPTURES / "3.2.pcap"), *option]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    name = "-B" if option[0] == "--buffer-size" else option[0]
    assert r.stderr == f"calc-sniff: {name} is for a live capture (-i), not for reading a file (-r)\n"
    assert r.stdout == "" and not ready.exists()


def test_write_with_a_file_copies_its_packets(tmp_path):
    # -w is no live-only option: with -r it saves the packets read, which analyse the same
    copy = tmp_path / "copy.pcap"
    runs = [subprocess.run([exe("calc-sniff"), "-r", str(f), "--summary"] + (["-w", str(copy)] if f != copy else []),
                           capture_output=True, text=True, timeout=30) for f in (CAPTURES / "3.2.pcap", copy)]
    assert [x.returncode for x in runs] == [0, 0], runs
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout
