"""calc-sniff live on lo: a golden capture replayed with tcpreplay verifies live (issue 5)."""
import os
import subprocess
import time

from calcproc import REPO, exe

CAPTURES = REPO / "captures"


def replay_and_verify(tmp_path, golden, replayed):
    ready = tmp_path / "ready"
    sniff = subprocess.Popen([exe("calc-sniff"), "verify", "--golden", str(CAPTURES / golden), "-i", "lo",
                              "--duration", "8", "--ready-file", str(ready)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 10
        while not ready.exists():
            assert sniff.poll() is None, sniff.communicate()[0]
            assert time.time() < deadline, "calc-sniff never became ready"
            time.sleep(0.05)
        r = subprocess.run(["tcpreplay", "-i", "lo", "--topspeed", str(CAPTURES / replayed)],
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
